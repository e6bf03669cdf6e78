"""Where audit entries are filed (review of issue 14): going live and requests are audited
like every other change; an entry that touched several zones (an alert on two communes, a
schedule item on both, a CSV import) is in the audit log of every scope holding one of them,
not only under the district that holds them all; and the chain covers the touched zones
without breaking the entries written before they were kept."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from loa.app import LoaServer
from loa.control.audit import ChainProblem, verify
from loa.control.store import Store
from tests.api.accounts import add_user, token_of
from tests.api.test_accounts import tomorrow
from tests.conftest import auth
from tests.server.test_api import call
from tests.server.test_ingest import base


async def audit_of(server: LoaServer, headers: dict[str, str] | None = None,
                   **query: Any) -> list[dict[str, Any]]:
    """The audit entries ``GET audit`` answers (newest first); asserts a 200."""
    status, body = await call(server, "GET", f"/api/v1/audit?{urlencode(query)}",
                              headers=headers)
    assert status == 200, body
    return list(body["audit"])


async def test_going_live_and_requests_are_audited(server: LoaServer) -> None:
    status, live = await call(server, "POST", "/api/v1/zones/an-binh/live",
                              json={"mount": "studio"})
    assert status == 201, live
    status, added = await call(server, "POST", "/api/v1/zones/phu-my-1/requests",
                               json={"source": {"kind": "tone"}, "priority": 55})
    assert status == 201, added
    rid = added["request"]["id"]
    assert (await call(server, "DELETE", f"/api/v1/requests/{rid}"))[0] == 200
    assert (await call(server, "DELETE", "/api/v1/zones/an-binh/live", json={}))[0] == 200
    # refused ones leave nothing
    assert (await call(server, "DELETE", "/api/v1/requests/999999"))[0] == 404
    assert (await call(server, "POST", "/api/v1/zones/nowhere/live", json={}))[0] == 404
    entries = [e for e in await audit_of(server) if e["action"].startswith(("live.",
                                                                            "request."))]
    assert [(e["action"], e["subject"], e["actor"], e["zone"], e["zones"])
            for e in reversed(entries)] == [
        ("live.take", "an-binh", "admin", "an-binh", ["an-binh"]),
        ("request.add", "phu-my-1", "admin", "phu-my-1", ["phu-my-1"]),
        ("request.release", "phu-my-1", "admin", "phu-my-1", ["phu-my-1"]),
        ("live.release", "an-binh", "admin", "an-binh", ["an-binh"]),
    ]
    take, add, release, give_back = reversed(entries)
    assert take["detail"] == {"mount": "studio", "priority": 80,
                              "request": live["request"]["id"], "created": True}
    assert add["detail"]["request"] == rid and add["detail"]["priority"] == 55
    assert add["detail"]["source"] == {"kind": "tone", "freq_hz": 1000.0}
    assert release["detail"]["request"] == rid
    assert give_back["detail"] == {"mount": None, "released": [live["request"]["id"]]}
    assert all(e["address"] == "127.0.0.1" for e in entries)


async def test_an_entry_is_in_the_log_of_every_zone_it_touched(server: LoaServer) -> None:
    await add_user(server, "qt-an-binh", "admin", "an-binh")
    await add_user(server, "qt-phu-my", "admin", "phu-my")
    await add_user(server, "qt-phu-my-2", "admin", "phu-my-2")
    an_binh = await token_of(server, "qt-an-binh")
    phu_my = await token_of(server, "qt-phu-my")
    phu_my_2 = await token_of(server, "qt-phu-my-2")
    # the district acts on a village of each commune at once
    status, alert = await call(server, "POST", "/api/v1/alerts", json={
        "zones": ["an-binh-1", "phu-my-1"], "content": {"kind": "tone"}})
    assert status == 201, alert
    alert_id = alert["alert"]["id"]
    status, item = await call(server, "POST", "/api/v1/schedules", json={
        "title": "Bản tin chung", "zones": ["an-binh", "phu-my"], "duration_s": 60,
        "start": tomorrow(server), "content": {"kind": "tone"}})
    assert status == 201, item
    item_id = item["schedule"]["id"]
    assert (await call(server, "DELETE", f"/api/v1/alerts/{alert_id}"))[0] == 200
    # and on one commune alone
    assert (await call(server, "POST", "/api/v1/zones/phu-my-2/commands",
                       json={"op": "volume", "volume_pct": 40}))[0] == 202

    def mine(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return sorted((e["action"], e["subject"]) for e in entries
                      if e["subject"] in (alert_id, item_id, "phu-my-2"))

    both = [("alert.cancel", alert_id), ("alert.cancelled", alert_id),
            ("alert.trigger", alert_id), ("schedule.add", item_id)]
    everything = sorted([*both, ("alert.active", alert_id), ("command", "phu-my-2")])
    assert mine(await audit_of(server)) == everything
    # the trigger is filed under the district (the smallest zone holding both) and names each
    trigger = next(e for e in await audit_of(server, subject=alert_id)
                   if e["action"] == "alert.trigger")
    assert trigger["zone"] == "huyen" and trigger["zones"] == ["an-binh-1", "phu-my-1"]
    # each commune's admin sees what touched their commune, and not the other's alone
    assert mine(await audit_of(server, an_binh)) == sorted([*both, ("alert.active", alert_id)])
    assert mine(await audit_of(server, phu_my)) == everything
    # a village's admin: the command to their village; neither the alert (on another
    # village) nor the schedule item (on the commune above them: the commune's doing)
    assert mine(await audit_of(server, phu_my_2)) == [("command", "phu-my-2")]
    # a zone asked for: entries that touched it or a zone below it
    assert mine(await audit_of(server, an_binh, zone="an-binh-1")) == sorted(
        [("alert.cancel", alert_id), ("alert.cancelled", alert_id),
         ("alert.trigger", alert_id), ("alert.active", alert_id)])
    assert mine(await audit_of(server, zone="phu-my-2")) == [("command", "phu-my-2")]


async def test_a_csv_import_is_in_the_log_of_its_endpoints_zones(server: LoaServer) -> None:
    await add_user(server, "qt-an-binh", "admin", "an-binh")
    await add_user(server, "qt-phu-my", "admin", "phu-my")
    csv = "id,name,zone\nloa-201,Cụm loa chợ,an-binh-2\n"
    async with aiohttp.ClientSession() as http:
        async with http.post(base(server) + "/api/v1/endpoints.csv", data=csv.encode(),
                             headers={**auth(), "Content-Type": "text/csv"}) as resp:
            status, body = resp.status, await resp.json()
    assert status == 201, body
    entry = next(e for e in await audit_of(server) if e["action"] == "endpoint.import")
    assert entry["zone"] is None and entry["zones"] == ["an-binh-2"]
    seen = await audit_of(server, await token_of(server, "qt-an-binh"), q="endpoint.import")
    assert [e["id"] for e in seen] == [entry["id"]]
    assert await audit_of(server, await token_of(server, "qt-phu-my"),
                          q="endpoint.import") == []


def test_the_chain_covers_the_touched_zones(tmp_path: Path) -> None:
    path = tmp_path / "loa.sqlite3"
    store = Store(path)
    store.audit("op", "alert.trigger", "a1", {"x": 1}, zone="huyen",
                zones=["an-binh-1", "phu-my-1"])
    store.audit("op", "plain", "s", zone="an-binh")  # no zones: hashed as before
    store.close()
    assert verify(path).whole and verify(path).entries == 2
    copy = tmp_path / "edited.sqlite3"
    shutil.copy(path, copy)
    db = sqlite3.connect(copy)
    with db:  # someone takes a commune out of the entry, to hide it from its admin
        db.execute("""UPDATE audit SET zones = '["an-binh-1"]' WHERE id = 1""")
    db.close()
    found = verify(copy)
    assert (found.bad_id, found.problem) == (1, ChainProblem.EDITED)


def _old_hash(previous: str, row: tuple[Any, ...]) -> str:
    """An entry's hash as the chain made it before the touched zones were kept (its JSON
    without a ``zones`` key), computed here apart from the code under test."""
    keys = ("id", "at", "actor", "action", "subject", "zone", "address", "detail")
    text = json.dumps(dict(zip(keys, row, strict=True)), sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((previous + text).encode()).hexdigest()


def test_a_chain_written_before_the_touched_zones_stays_whole_and_unsealed(
        tmp_path: Path) -> None:
    path = tmp_path / "loa.sqlite3"
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, "
                   "actor TEXT NOT NULL, action TEXT NOT NULL, subject TEXT NOT NULL, "
                   "detail TEXT NOT NULL, zone TEXT, address TEXT, hash TEXT)")
        db.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        previous = "0" * 64
        for i in (1, 2):
            row = (i, 1.5 * i, "admin", f"old {i}", "s", "an-binh", "10.0.0.7", "{}")
            previous = _old_hash(previous, row)
            db.execute("INSERT INTO audit(id, at, actor, action, subject, zone, address, "
                       "detail, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (*row, previous))
        db.execute("INSERT INTO kv(key, value) VALUES ('audit_head', ?)",
                   (json.dumps({"id": 2, "hash": previous}),))
    db.close()
    assert verify(path).whole
    # an old entry edited before the upgrade: the upgrade must not seal it as it is
    tampered = tmp_path / "tampered.sqlite3"
    shutil.copy(path, tampered)
    db = sqlite3.connect(tampered)
    with db:
        db.execute("UPDATE audit SET actor = 'someone-else' WHERE id = 1")
    db.close()
    for file in (path, tampered):
        store = Store(file)  # the upgrade: the zones column, nothing else
        store.audit("admin", "new", "s", zones=["an-binh-1"])
        store.close()
    found = verify(path)
    assert found.whole and found.entries == 3
    db = sqlite3.connect(path)
    assert db.execute("SELECT zones FROM audit ORDER BY id").fetchall() == [
        (None,), (None,), ('["an-binh-1"]',)]
    db.close()
    found = verify(tampered)
    assert (found.bad_id, found.problem) == (1, ChainProblem.EDITED)
