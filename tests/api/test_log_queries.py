"""The logs as the console reads them, through the real API: the broadcast log and the audit
log filtered on the server (time range, a zone and below, text in any case) and paged by a
cursor; and the history of alarms, each with when it was raised and cleared, in the scope of
whoever asks (an alarm is recorded in its subject's zone)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from loa.api.status import STATUS_ALARMS
from loa.app import LoaServer
from loa.config import AlarmConfig
from tests.api.accounts import add_user, token_of
from tests.server.test_api import call

DAY = 86400.0
T0 = 1.7e9  # long before anything the server logs itself


async def get(server: LoaServer, path: str, headers: dict[str, str] | None = None,
              **query: Any) -> tuple[int, dict[str, Any]]:
    return await call(server, "GET", f"{path}?{urlencode(query)}", headers=headers)


async def test_the_audit_log_is_filtered_and_paged_on_the_server(server: LoaServer) -> None:
    zones = ["an-binh-1", "an-binh-2", "phu-my-1", "an-binh", None]
    for i in range(10):
        server.store.audit("tester", "test.entry", f"s{i}",
                           {"note": "Bản tin sáng" if i % 2 else "nhạc"}, zone=zones[i % 5])
    status, first = await get(server, "/api/v1/audit", q="test.entry", limit=4)
    assert status == 200
    assert [e["subject"] for e in first["audit"]] == ["s9", "s8", "s7", "s6"]  # newest first
    status, second = await get(server, "/api/v1/audit", q="test.entry", limit=4,
                               before=first["next"])
    assert [e["subject"] for e in second["audit"]] == ["s5", "s4", "s3", "s2"]
    status, last = await get(server, "/api/v1/audit", q="test.entry", limit=4,
                             before=second["next"])
    assert [e["subject"] for e in last["audit"]] == ["s1", "s0"] and last["next"] is None
    # after an id: the newer entries, oldest first
    status, newer = await get(server, "/api/v1/audit", q="test.entry", limit=3,
                              after=second["audit"][0]["id"])
    assert [e["subject"] for e in newer["audit"]] == ["s6", "s7", "s8"]
    assert newer["next"] == newer["audit"][-1]["id"]

    # text in any case, Vietnamese included, in the detail as in the action
    status, found = await get(server, "/api/v1/audit", q="BẢN TIN SÁNG")
    assert [e["subject"] for e in found["audit"]] == ["s9", "s7", "s5", "s3", "s1"]
    decomposed = "ba\u0309n tin"  # as macOS types it
    status, found = await get(server, "/api/v1/audit", q=decomposed, limit=2)
    assert len(found["audit"]) == 2 and found["next"] is not None
    # a zone and the zones below it
    status, found = await get(server, "/api/v1/audit", q="test.entry", zone="an-binh")
    assert {e["zone"] for e in found["audit"]} == {"an-binh", "an-binh-1", "an-binh-2"}
    assert len(found["audit"]) == 6
    # a time range
    entries = {e["subject"]: e["at"] for e in last["audit"] + second["audit"]}
    status, found = await get(server, "/api/v1/audit", q="test.entry", since=entries["s2"],
                              until=entries["s4"])
    assert [e["subject"] for e in found["audit"]] == ["s4", "s3", "s2"]


async def test_the_audit_log_of_a_commune_admin_is_their_communes_only(
    server: LoaServer,
) -> None:
    for i, zone in enumerate(["an-binh-1", "phu-my-1", None, "an-binh"]):
        server.store.audit("tester", "test.entry", f"s{i}", zone=zone)
    await add_user(server, "qt-an-binh", "admin", "an-binh")
    qt = await token_of(server, "qt-an-binh")
    status, body = await get(server, "/api/v1/audit", qt, q="test.entry")
    assert [e["subject"] for e in body["audit"]] == ["s3", "s0"]
    status, body = await get(server, "/api/v1/audit", qt, zone="phu-my")
    assert status == 403 and body["refused"] == "scope"
    status, body = await get(server, "/api/v1/audit", qt, zone="an-binh-1", q="TEST.ENTRY")
    assert [e["subject"] for e in body["audit"]] == ["s0"]


async def test_log_queries_refuse_what_they_cannot_read(server: LoaServer) -> None:
    for path in ("/api/v1/log", "/api/v1/audit", "/api/v1/alarms/history"):
        for query, status, words in [
            ({"since": "yesterday"}, 400, "since='yesterday' is not a time: give Unix "
             "seconds or ISO 8601, such as 2026-12-01T06:00 (station time)"),
            ({"until": "nan"}, 400, "until='nan' is not a time"),
            ({"limit": "0"}, 400, "limit must be a whole number from 1 to 1000"),
            ({"limit": "1001"}, 400, "from 1 to 1000"),
            ({"before": "-3"}, 400, "before must be a whole number"),
            ({"before": "5", "after": "2"}, 400, "not both"),
            ({"q": "x" * 201}, 400, "q is over 200 characters"),
            ({"zone": "nowhere"}, 404, "unknown zone 'nowhere'"),
        ]:
            got, body = await get(server, path, **query)
            assert (got, words in body["error"]) == (status, True), (path, query, body)


async def test_the_broadcast_log_is_filtered_and_paged_on_the_server(server: LoaServer) -> None:
    rows = []
    for i, zone in enumerate(["an-binh-1", "an-binh-2", "phu-my-1", "an-binh-1", "phu-my-2",
                              "an-binh"]):
        start = T0 + i * DAY
        rows.append((zone, f"prog-{i}", "file", 50, "Bản Tin Sáng" if i % 2 else "Nhạc",
                     start, start + 600, "completed"))
    server.store.log_broadcast(rows)
    window = {"since": T0 - 1, "until": T0 + 10 * DAY}
    status, body = await get(server, "/api/v1/log", **window)
    assert status == 200
    assert [e["programme"] for e in body["entries"]] == [f"prog-{i}" for i in range(5, -1, -1)]
    assert body["next"] is None and all(isinstance(e["id"], int) for e in body["entries"])
    status, page = await get(server, "/api/v1/log", limit=4, **window)
    assert [e["programme"] for e in page["entries"]] == ["prog-5", "prog-4", "prog-3", "prog-2"]
    status, rest = await get(server, "/api/v1/log", limit=4, before=page["next"], **window)
    assert [e["programme"] for e in rest["entries"]] == ["prog-1", "prog-0"]
    assert rest["next"] is None and rest["on_air"] == []  # on air: the first page's
    # segments overlapping the range: one that ends inside it counts
    status, body = await get(server, "/api/v1/log", since=T0 + 2 * DAY + 300,
                             until=T0 + 3 * DAY + 1)
    assert [e["programme"] for e in body["entries"]] == ["prog-3", "prog-2"]
    # text in any case, in the label as in the programme
    status, body = await get(server, "/api/v1/log", q="bản tin sáng", **window)
    assert [e["programme"] for e in body["entries"]] == ["prog-5", "prog-3", "prog-1"]
    status, body = await get(server, "/api/v1/log", q="PROG-4", **window)
    assert [e["programme"] for e in body["entries"]] == ["prog-4"]
    # a zone and below; a commune's operator sees their commune's only
    status, body = await get(server, "/api/v1/log", zone="an-binh", **window)
    assert [e["programme"] for e in body["entries"]] == ["prog-5", "prog-3", "prog-1", "prog-0"]
    await add_user(server, "op", "operator", "phu-my")
    op = await token_of(server, "op")
    status, body = await get(server, "/api/v1/log", op, **window)
    assert [e["programme"] for e in body["entries"]] == ["prog-4", "prog-2"]
    assert all(e["zone"].startswith("phu-my") for e in body["on_air"])
    status, body = await get(server, "/api/v1/log", op, zone="an-binh-1")
    assert status == 403


async def test_the_history_of_alarms_is_each_callers_scope(
    make_server: Callable[..., Awaitable[LoaServer]],
) -> None:
    """Every endpoint has been offline since the start (never seen) and the alarm holds for
    no time: asking for the alarms raises them, each in its endpoint's zone; an endpoint
    removed clears its alarm, in the zone it was raised in."""
    server = await make_server(alarms=AlarmConfig(offline_minutes=0, hold_s=0))
    # what a run before this one left: an alarm raised, then raised again (the server had
    # stopped in between), then cleared
    for action, detail in [("alarm.raised", "before the restart"),
                           ("alarm.raised", "after the restart"), ("alarm.cleared", None)]:
        server.store.audit("loa", action, "phu-my-2",
                           {"kind": "zone_silent", **({"detail": detail} if detail else {})},
                           zone="phu-my-2")
    status, body = await call(server, "GET", "/api/v1/alarms")
    assert status == 200
    assert {a["subject"] for a in body["alarms"] if a["kind"] == "endpoint_offline"} == {
        f"loa-{i:03d}" for i in range(1, 9)}
    assert (await call(server, "DELETE", "/api/v1/endpoints/loa-001"))[0] == 200
    status, body = await call(server, "GET", "/api/v1/alarms")  # the rules, evaluated again
    assert "loa-001" not in {a["subject"] for a in body["alarms"]}

    await add_user(server, "op", "operator", "an-binh")
    op = await token_of(server, "op")
    status, body = await get(server, "/api/v1/alarms/history", op)
    assert status == 200
    seen = {a["subject"]: a for a in body["alarms"]}
    assert set(seen) == {"loa-001", "loa-002", "loa-003", "loa-004"}  # their commune's only
    gone = seen["loa-001"]
    assert (gone["kind"], gone["zone"], gone["ended"], gone["active"]) == (
        "endpoint_offline", "an-binh-1", "cleared", False)
    assert gone["cleared_at"] >= gone["raised_at"] and gone["detail"].startswith("offline")
    assert all(a["active"] and a["cleared_at"] is None for s, a in seen.items() if s != "loa-001")
    status, body = await get(server, "/api/v1/alarms/history", op, zone="an-binh-2")
    assert {a["subject"] for a in body["alarms"]} == {"loa-003", "loa-004"}
    status, body = await get(server, "/api/v1/alarms/history", op, zone="phu-my")
    assert status == 403
    # a range after loa-001 cleared: the alarms still raised only
    status, body = await get(server, "/api/v1/alarms/history", op,
                             since=gone["cleared_at"] + 0.001)
    assert {a["subject"] for a in body["alarms"]} == {"loa-002", "loa-003", "loa-004"}
    status, body = await get(server, "/api/v1/alarms/history", op, until=gone["raised_at"] - 1)
    assert body["alarms"] == []

    # the district sees every one, paged newest raise first
    status, body = await get(server, "/api/v1/alarms/history", zone="huyen")
    history = body["alarms"]
    assert {a["subject"] for a in history} == {
        *(f"loa-{i:03d}" for i in range(1, 9)), "phu-my-2"}
    assert [a["id"] for a in history] == sorted((a["id"] for a in history), reverse=True)
    silent = [(a["detail"], a["ended"], a["cleared_at"] is not None)
              for a in history if a["subject"] == "phu-my-2"]
    assert silent == [("after the restart", "cleared", True),
                      ("before the restart", "raised again", False)]
    status, page = await get(server, "/api/v1/alarms/history", zone="huyen", limit=4)
    status, rest = await get(server, "/api/v1/alarms/history", zone="huyen",
                             before=page["next"])
    assert [a["id"] for a in page["alarms"] + rest["alarms"]] == [a["id"] for a in history]
    status, newer = await get(server, "/api/v1/alarms/history", zone="huyen",
                              after=history[-1]["id"], limit=2)
    assert [a["id"] for a in newer["alarms"]] == [a["id"] for a in history[-3:-1]][::-1]
    status, body = await get(server, "/api/v1/alarms/history", q="BEFORE THE RESTART")
    assert [(a["subject"], a["ended"]) for a in body["alarms"]] == [("phu-my-2", "raised again")]

    # raised and cleared by the server itself, whichever request had the rules evaluated
    status, log = await get(server, "/api/v1/audit", q="alarm.", limit=1000)
    ours = [e for e in log["audit"] if e["subject"].startswith("loa-")]
    assert ours and all(e["address"] is None and e["actor"] == "loa" for e in ours)


async def test_the_status_shows_the_newest_alarms_of_a_scope_and_counts_them_all(
    make_server: Callable[..., Awaitable[LoaServer]],
) -> None:
    """A district whose 300 endpoints were never seen: the status (every console's, every
    second) shows the ``STATUS_ALARMS`` newest raised and counts them all; a commune's
    operator, their own commune's, counted; GET alarms lists every one."""
    server = await make_server(alarms=AlarmConfig(offline_minutes=0, hold_s=0))
    rows = "".join(f"xa-{i:04d},Cụm loa {i},{'an-binh-1' if i % 3 else 'phu-my-1'}\n"
                   for i in range(300))
    assert not (await server.endpoints.import_csv(("id,name,zone\n" + rows).encode())).errors
    total = len(server.endpoints.endpoints)  # the district's 8 and the 300
    await server.check_alarms()
    older = server.alarms.active()[:50]
    for a in older:  # raised a minute before the rest (before the status was first asked)
        a.raised_at = (a.raised_at or 0) - 60
    status, body = await call(server, "GET", "/api/v1/status")
    assert status == 200 and body["alarms_total"] == total
    assert len(body["alarms"]) == STATUS_ALARMS < total
    raised = [a["raised_at"] for a in body["alarms"]]
    assert raised == sorted(raised, reverse=True)
    assert not {a.subject for a in older} & {a["subject"] for a in body["alarms"]}
    status, every = await call(server, "GET", "/api/v1/alarms")
    assert {a["subject"] for a in every["alarms"]} == set(server.endpoints.endpoints)

    await add_user(server, "op", "operator", "phu-my")
    status, body = await get(server, "/api/v1/status", await token_of(server, "op"))
    theirs = [e.id for e in server.endpoints.endpoints.values() if e.zone_id.startswith("phu-my")]
    assert body["alarms_total"] == len(theirs) == 100 + 4  # xa-0000, -0003, ... and 4 of 8
    assert len(body["alarms"]) == STATUS_ALARMS
    assert {a["subject"] for a in body["alarms"]} <= set(theirs)
