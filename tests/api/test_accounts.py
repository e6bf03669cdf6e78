"""Accounts, roles and scopes (issue 14), over loopback: a commune operator acts and reads in
their own commune only, with a personal token as with a browser session; an alert official
alerts their own subtree only; admins manage the users of their scope; personal tokens are
shown once and revocable; the first start makes an admin account."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from loa.app import LoaServer
from loa.config import Config, MqttConfig, default_zones
from loa.control.auth import Role, Scope, ScopeError, parse_roles, rights_of
from loa.core.zones import Zone, ZoneTree, alert_group_id
from tests.api.accounts import (
    PASSWORD,
    add_user,
    log_in,
    session_of,
    token_of,
    upload_as,
)
from tests.audio import tone_file
from tests.conftest import LOOPBACK_FETCHES
from tests.server.test_api import call
from tests.server.test_cap import cap_xml
from tests.server.test_ingest import base

OUTSIDE = "is outside your scope (an-binh)"


def outside(error: str, scope: str = "an-binh") -> dict[str, str]:
    """A 403 scope refusal's body: the message, and the kind of refusal with the caller's
    scope (for clients that explain it)."""
    return {"error": error, "refused": "scope", "scope": scope}


def lacks(right: str) -> dict[str, str]:
    """A 403 rights refusal's body: the message, and the kind of refusal with the right."""
    return {"error": f"needs the {right} right", "refused": "right", "right": right}


def tomorrow(server: LoaServer) -> str:
    """A local start time tomorrow, as the schedule takes it."""
    return (server.wall.now() + timedelta(days=1)).replace(microsecond=0, tzinfo=None) \
        .isoformat()


async def caller(server: LoaServer, kind: str, username: str) -> dict[str, str]:
    """The headers of ``username`` calling with a personal token or a browser session."""
    return await token_of(server, username) if kind == "token" else \
        await session_of(server, username)


@pytest.mark.parametrize("kind", ["token", "session"])
async def test_a_commune_operator_is_refused_another_commune_on_every_surface(
        server: LoaServer, tmp_path: Path, kind: str) -> None:
    await add_user(server, "op-an-binh", ["operator", "alert"], "an-binh")
    await add_user(server, "op-phu-my", "operator", "phu-my")
    op = await caller(server, kind, "op-an-binh")
    # a library item of Phú Mỹ's, uploaded by its own operator
    mp3 = await tone_file(tmp_path / "phu-my.mp3", 500, 1.0, ["-c:a", "libmp3lame"])
    status, body = await upload_as(server, await token_of(server, "op-phu-my"), mp3)
    assert status == 201 and body["media"]["zone"] == "phu-my", body
    media_id = body["media"]["id"]
    schedule = {"title": "Bản tin xã", "duration_s": 60, "start": tomorrow(server),
                "content": {"kind": "tone"}}
    refused = [
        ("POST", "/api/v1/zones/phu-my/live", {"mount": "studio"}),  # live
        ("DELETE", "/api/v1/zones/phu-my/live", None),
        ("POST", "/api/v1/zones/phu-my/requests", {"source": {"kind": "tone"}}),  # request
        ("POST", "/api/v1/schedules", {**schedule, "zones": ["phu-my"]}),  # schedule
        ("POST", "/api/v1/alerts", {"zones": ["phu-my"], "content": {"kind": "tone"}}),
        ("POST", "/api/v1/zones/phu-my/commands", {"op": "volume", "volume_pct": 40}),
        ("PATCH", "/api/v1/zones/phu-my", {"alert_volume_pct": 90}),
        ("DELETE", f"/api/v1/media/{media_id}", None),  # media deletion
        ("GET", f"/api/v1/media/{media_id}", None),
        ("GET", "/api/v1/reports/phu-my?year=2026", None),  # report
        ("GET", "/api/v1/log?zone=phu-my", None),  # log
        # another commune's recording, played on their own commune
        ("POST", "/api/v1/zones/an-binh/requests",
         {"source": {"kind": "media", "id": media_id}}),
        ("POST", "/api/v1/schedules", {**schedule, "zones": ["an-binh"],
                                       "content": {"kind": "playlist", "items": [media_id]}}),
    ]
    for method, path, body in refused:
        status, answer = await call(server, method, path, json=body, headers=op)
        assert (status, answer) == (403, outside(f"zone 'phu-my' {OUTSIDE}")), (path, answer)
    # an endpoint of another commune, and above their own commune: refused too
    for method, path, body, zone in [
        ("POST", "/api/v1/endpoints/loa-005/commands", {"op": "mute"}, "phu-my-1"),
        ("GET", "/api/v1/endpoints/loa-005", None, "phu-my-1"),
        ("POST", "/api/v1/zones/huyen/requests", {"source": {"kind": "tone"}}, "huyen"),
        ("GET", "/api/v1/reports/huyen?year=2026", None, "huyen"),
        ("POST", "/api/v1/endpoints/loa-001/commands", {"op": "move", "zone": "phu-my-2"},
         "phu-my-2"),
    ]:
        status, answer = await call(server, method, path, json=body, headers=op)
        assert (status, answer) == (403, outside(f"zone '{zone}' {OUTSIDE}")), (path, answer)
    # nothing of it happened
    assert not server.schedule.items and not server.alerts.alerts
    assert server.media.get(media_id) is not None
    # their own commune, and below it: done
    for method, path, body, expected in [
        ("POST", "/api/v1/zones/an-binh/commands", {"op": "volume", "volume_pct": 40}, 202),
        ("POST", "/api/v1/endpoints/loa-001/commands", {"op": "mute"}, 202),
        ("POST", "/api/v1/zones/an-binh-1/requests", {"source": {"kind": "tone"}}, 201),
        ("POST", "/api/v1/schedules", {**schedule, "zones": ["an-binh-2"]}, 201),
        ("GET", "/api/v1/reports/an-binh?year=2026", None, 200),
        ("GET", "/api/v1/log?zone=an-binh-1", None, 200),
        ("POST", "/api/v1/alerts", {"zones": ["an-binh-1"], "content": {"kind": "tone"}}, 201),
    ]:
        status, answer = await call(server, method, path, json=body, headers=op)
        assert status == expected, (path, answer)
    # a commune goes live at the commune level by default: the district's live preempts it
    status, answer = await call(server, "POST", "/api/v1/zones/an-binh/live",
                                json={"mount": "studio"}, headers=op)
    assert status == 201 and answer["request"]["priority"] == 70, answer


async def test_lists_hold_only_the_callers_subtree(server: LoaServer) -> None:
    await add_user(server, "op-an-binh", "operator", "an-binh")
    await add_user(server, "qt-an-binh", "admin", "an-binh")
    op = await token_of(server, "op-an-binh")
    # the district's doings, in both communes and above them
    start = tomorrow(server)
    for zone in ("an-binh-1", "phu-my-1", "huyen"):
        status, _ = await call(server, "POST", "/api/v1/schedules", json={
            "title": f"Lịch {zone}", "zones": [zone], "duration_s": 60, "start": start,
            "content": {"kind": "tone"}})
        assert status == 201
        status, _ = await call(server, "POST", f"/api/v1/zones/{zone}/requests",
                               json={"source": {"kind": "tone"}, "priority": 20})
        assert status == 201
    for zone in ("an-binh", "phu-my"):
        status, _ = await call(server, "POST", f"/api/v1/zones/{zone}/commands",
                               json={"op": "volume", "volume_pct": 60})
        assert status == 202
    status, _ = await call(server, "POST", "/api/v1/alerts",
                           json={"zones": ["phu-my"], "content": {"kind": "tone"}})
    assert status == 201
    now = server.wall.timestamp()
    server.store.log_broadcast([(z, "p", "generator", 50, "bản tin", now - 60, now - 30, "done")
                                for z in ("an-binh-1", "phu-my-1")])
    await server.store.flush()

    async def listed(path: str, key: str, field: str) -> list[str]:
        status, body = await call(server, "GET", path, headers=op)
        assert status == 200, body
        return sorted(str(e[field]) for e in body[key])

    assert await listed("/api/v1/zones", "zones", "id") == ["an-binh", "an-binh-1",
                                                          "an-binh-2"]
    assert await listed("/api/v1/endpoints", "endpoints", "id") == [
        "loa-001", "loa-002", "loa-003", "loa-004"]
    # what plays on their zones from above is shown; another commune's is not
    titles = await listed("/api/v1/schedules", "schedules", "title")
    assert titles == ["Lịch an-binh-1", "Lịch huyen"]
    assert await listed("/api/v1/requests", "requests", "zone") == ["an-binh-1", "huyen"]
    assert await listed("/api/v1/alerts", "alerts", "id") == []
    status, body = await call(server, "GET", "/api/v1/status", headers=op)
    assert sorted(z["zone"] for z in body["zones"]) == ["an-binh", "an-binh-1", "an-binh-2"]
    assert body["alerts"] == []
    status, body = await call(server, "GET", "/api/v1/status")  # the district: every zone
    assert len(body["zones"]) == 7 and len(body["alerts"]) == 1
    assert await listed("/api/v1/log", "entries", "zone") == ["an-binh-1"]
    commands = await listed("/api/v1/commands", "commands", "endpoint")
    assert commands and set(commands) <= {"loa-001", "loa-002", "loa-003", "loa-004"}
    async with aiohttp.ClientSession() as http:
        async with http.get(base(server) + "/api/v1/endpoints.csv", headers=op) as resp:
            csv_rows = (await resp.text()).splitlines()
    assert [r.split(",")[0] for r in csv_rows[1:]] == ["loa-001", "loa-002", "loa-003",
                                                       "loa-004"]
    # the audit log of the commune's admin: what was done in its zones only
    qt = await token_of(server, "qt-an-binh")
    status, body = await call(server, "GET", "/api/v1/audit", headers=qt)
    assert status == 200
    entries = body["audit"]
    assert entries and {e["zone"] for e in entries} <= {"an-binh", "an-binh-1", "an-binh-2"}
    commands_seen = [e for e in entries if e["action"] == "command"]
    assert [(e["actor"], e["subject"], e["address"]) for e in commands_seen] == [
        ("admin", "an-binh", "127.0.0.1")]
    # the district sees all of it
    status, body = await call(server, "GET", "/api/v1/audit")
    assert {"an-binh", "phu-my"} <= {e["zone"] for e in body["audit"]}
    status, body = await call(server, "GET", "/api/v1/audit", headers=op)
    assert status == 403  # an operator reads no audit log


async def test_an_alert_official_alerts_their_own_subtree_only(server: LoaServer) -> None:
    await add_user(server, "canh-bao", "alert", "an-binh")
    official = await token_of(server, "canh-bao")
    tone = {"content": {"kind": "tone"}}
    status, body = await call(server, "POST", "/api/v1/alerts",
                              json={"zones": ["an-binh-1"], **tone}, headers=official)
    assert status == 201 and body["alert"]["triggered_by"] == "canh-bao", body
    own = body["alert"]["id"]
    for spec, error in [
        ({"zones": ["phu-my"]}, f"zone 'phu-my' {OUTSIDE}"),
        ({"zones": ["an-binh", "phu-my-2"]}, f"zone 'phu-my-2' {OUTSIDE}"),
        ({"endpoints": ["loa-005"]}, f"zone 'phu-my-1' {OUTSIDE}"),  # an endpoint elsewhere
        ({"zones": ["huyen"]}, f"zone 'huyen' {OUTSIDE}"),
        ({"all": True}, f"an alert to every zone {OUTSIDE}"),
    ]:
        status, answer = await call(server, "POST", "/api/v1/alerts", json={**spec, **tone},
                                    headers=official)
        assert (status, answer) == (403, outside(error)), spec
    # CAP: the area resolved to zones (by geocode) and endpoints (by polygon), then checked
    cap_headers = {**official, "Content-Type": "application/xml"}
    phu_my = "<geocode><valueName>MaDVHC</valueName><value>00002</value></geocode>"
    async with aiohttp.ClientSession() as http:
        async with http.post(base(server) + "/api/v1/cap", headers=cap_headers,
                             data=cap_xml("PM-1", area=phu_my)) as resp:
            assert resp.status == 403
            assert (await resp.json())["error"] == f"zone 'phu-my' {OUTSIDE}"
        polygon = "<polygon>15.59,108.09 15.59,108.11 15.61,108.11 15.61,108.09 " \
                  "15.59,108.09</polygon>"  # around loa-005 and loa-006 (phu-my-1)
        async with http.post(base(server) + "/api/v1/cap", headers=cap_headers,
                             data=cap_xml("PM-2", area=polygon)) as resp:
            assert resp.status == 403
            assert (await resp.json())["error"] == f"zone 'phu-my-1' {OUTSIDE}"
        async with http.post(base(server) + "/api/v1/cap", headers=cap_headers,
                             data=cap_xml("AB-1")) as resp:  # geocode 00001: An Bình
            assert resp.status == 201, await resp.text()
    # an alert of another commune is neither shown nor cancelled by them
    status, body = await call(server, "POST", "/api/v1/alerts",
                              json={"zones": ["phu-my"], **tone})
    other = body["alert"]["id"]
    status, answer = await call(server, "GET", f"/api/v1/alerts/{other}", headers=official)
    assert (status, answer) == (403, outside(f"zone 'phu-my' {OUTSIDE}"))
    status, answer = await call(server, "DELETE", f"/api/v1/alerts/{other}", headers=official)
    assert status == 403 and server.alerts.alerts[other].status.value == "active"
    status, _ = await call(server, "DELETE", f"/api/v1/alerts/{own}", headers=official)
    assert status == 200
    # the alert role alone operates nothing
    status, answer = await call(server, "POST", "/api/v1/zones/an-binh/commands",
                                json={"op": "mute"}, headers=official)
    assert (status, answer) == (403, lacks("operate"))


async def test_admins_manage_the_users_of_their_scope(server: LoaServer) -> None:
    await add_user(server, "qt-an-binh", "admin", "an-binh")
    await add_user(server, "op-phu-my", "operator", "phu-my")
    qt = await token_of(server, "qt-an-binh")
    # within their commune: yes
    made = await add_user(server, "op-thon-1", ["operator", "alert"], "an-binh-1", headers=qt)
    assert made == {**made, "roles": ["operator", "alert"], "scope": "an-binh-1",
                    "display_name": "op-thon-1"}
    for body, expected in [
        ({"scope": "phu-my"}, (403, f"zone 'phu-my' {OUTSIDE}")),
        ({"scope": "*"}, (403, f"an account of every zone {OUTSIDE}")),
        ({"scope": "an-binh", "role": "root"},
         (400, "unknown role 'root': the roles are admin, operator, alert, viewer")),
        ({"scope": "an-binh", "role": ["admin", "alert"]},
         (400, "only alert and operator go together; any other role stands alone")),
        ({"scope": "an-binh", "username": "op-thon-1"}, (409, "user 'op-thon-1' exists already")),
        ({"scope": "an-binh", "password": "short"},
         (400, "password must be text of at least 8 characters")),
    ]:
        status, answer = await call(server, "POST", "/api/v1/users", headers=qt, json={
            "username": "moi", "password": PASSWORD, "role": "viewer", **body})
        assert (status, answer["error"]) == expected, body
    status, body = await call(server, "GET", "/api/v1/users", headers=qt)
    assert [u["username"] for u in body["users"]] == ["op-thon-1", "qt-an-binh"]
    status, body = await call(server, "GET", "/api/v1/users")  # the district: everyone
    assert [u["username"] for u in body["users"]] == [
        "admin", "op-phu-my", "op-thon-1", "qt-an-binh"]
    assert all("password_hash" not in u for u in body["users"])
    for method, path in [("PATCH", "/api/v1/users/op-phu-my"), ("DELETE", "/api/v1/users/admin"),
                         ("POST", "/api/v1/users/op-phu-my/tokens")]:
        status, answer = await call(server, method, path, json={"display_name": "x"},
                                    headers=qt)
        assert status == 403, (path, answer)
    status, answer = await call(server, "DELETE", "/api/v1/users/qt-an-binh", headers=qt)
    assert (status, answer) == (409, {"error": "you cannot remove your own account"})
    # an operator changes their own password (with the current one), not their role
    me = await token_of(server, "op-thon-1")
    status, answer = await call(server, "PATCH", "/api/v1/users/op-thon-1", headers=me,
                                json={"role": "admin"})
    assert (status, answer) == (403, {"error": "only an admin changes roles and scopes"})
    status, answer = await call(server, "PATCH", "/api/v1/users/op-thon-1", headers=me,
                                json={"password": "mat-khau-moi-1", "current_password": "sai"})
    assert (status, answer) == (403, {"error": "current_password is not your password"})
    status, _ = await call(server, "PATCH", "/api/v1/users/op-thon-1", headers=me,
                           json={"password": "mat-khau-moi-1", "current_password": PASSWORD})
    assert status == 200
    assert (await log_in(server, "op-thon-1", "mat-khau-moi-1"))[0] == 200
    assert (await log_in(server, "op-thon-1", PASSWORD))[0] == 401
    # removed: their tokens stop working
    status, _ = await call(server, "DELETE", "/api/v1/users/op-thon-1", headers=qt)
    assert status == 200
    status, _ = await call(server, "GET", "/api/v1/zones", headers=me)
    assert status == 401
    status, answer = await call(server, "GET", "/api/v1/audit?subject=op-thon-1", headers=qt)
    assert [e["action"] for e in answer["audit"]] == [
        "user.delete", "login.failed", "login", "user.update", "user.token.add", "user.add"]
    assert answer["audit"][3]["detail"] == {"password": "***"}  # never the password itself


async def test_personal_tokens_are_shown_once_kept_hashed_and_revocable(
        server: LoaServer) -> None:
    await add_user(server, "op", "viewer", "an-binh")
    status, made = await call(server, "POST", "/api/v1/users/op/tokens",
                              json={"name": "máy tính xã"})
    assert status == 201 and made["name"] == "máy tính xã" and made["last_used_at"] is None
    token = made["token"]
    headers = {"Authorization": f"Bearer {token}", "Accept-Language": "en"}
    status, body = await call(server, "GET", "/api/v1/session", headers=headers)
    assert body == {"name": "op", "user": "op", "display_name": "op", "roles": ["viewer"],
                    "rights": [], "scope": "an-binh"}
    status, body = await call(server, "POST", "/api/v1/zones/an-binh/commands",
                              json={"op": "mute"}, headers=headers)
    assert (status, body) == (403, lacks("operate"))  # a viewer reads
    status, body = await call(server, "GET", "/api/v1/users/op/tokens", headers=headers)
    assert status == 200 and len(body["tokens"]) == 1
    listed = body["tokens"][0]
    assert "token" not in listed and "sha256" not in listed
    assert listed["id"] == made["id"] and listed["last_used_at"] is not None
    assert listed["created_at"] == made["created_at"]
    await server.store.flush()
    rows = await asyncio.to_thread(_rows, server.store.path, "SELECT data FROM user_tokens")
    assert token not in rows[0][0] and hashlib.sha256(token.encode()).hexdigest() in rows[0][0]
    status, _ = await call(server, "DELETE", f"/api/v1/users/op/tokens/{made['id']}")
    assert status == 200
    status, _ = await call(server, "GET", "/api/v1/zones", headers=headers)
    assert status == 401
    status, body = await call(server, "DELETE", f"/api/v1/users/op/tokens/{made['id']}")
    assert (status, body) == (404, {"error": f"user 'op' has no token '{made['id']}'"})


def _rows(path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


async def test_the_first_start_makes_an_admin_account_shown_once(tmp_path: Path) -> None:
    cfg = replace(Config(), listen_host="127.0.0.1", listen_port=0, data_dir=tmp_path / "d",
                  demo=False, mqtt=MqttConfig(listen_port=0), fetch_policy=LOOPBACK_FETCHES)
    server = await asyncio.to_thread(LoaServer, cfg)
    await server.start()
    try:
        password = server.new_admin_password
        assert password and len(password) >= 12
        status, body, _ = await log_in(server, "admin", password)
        assert status == 200 and body["user"]["roles"] == ["admin"]
        assert body["user"]["scope"] == "huyen"  # the tree's one root
        await server.store.flush()
        rows = await asyncio.to_thread(_rows, server.store.path, "SELECT data FROM users")
        assert password not in rows[0][0] and "$argon2id$" in rows[0][0]
    finally:
        await server.stop()
    again = await asyncio.to_thread(LoaServer, cfg)
    await again.start()
    try:
        assert again.new_admin_password is None
        assert (await log_in(again, "admin", password))[0] == 200
    finally:
        await again.stop()


def test_a_scope_is_a_subtree_of_the_zone_tree() -> None:
    tree = ZoneTree(default_zones())
    commune = Scope(tree, "an-binh")
    assert commune.contains("an-binh-2") and not commune.contains("phu-my-1")
    assert commune.contains(alert_group_id("an-binh-1", "a1"))  # an alert's group: its home
    assert not commune.contains("nowhere")
    assert commune.overlaps("huyen") and not commune.overlaps("phu-my")
    assert not commune.covers_all() and Scope(tree, "huyen").covers_all()
    assert Scope(tree, None).contains("nowhere") and Scope(tree, None).zone_ids() is None
    assert commune.zone_ids() == ["an-binh", "an-binh-1", "an-binh-2"]
    assert commune.meet(["an-binh-1", "an-binh-2"]) == "an-binh"
    assert commune.meet(["an-binh-1", "phu-my"]) == "huyen"
    with pytest.raises(ScopeError, match=r"^zone 'phu-my' is outside your scope \(an-binh\)$"):
        commune.check("phu-my")
    # two roots: only the scope of every zone covers them both
    two = ZoneTree([*default_zones(), Zone("huyen-2", "Huyện Hai")])
    assert not Scope(two, "huyen").covers_all() and Scope(two, None).covers_all()
    assert parse_roles("operator, alert") == {Role.OPERATOR, Role.ALERT}
    assert parse_roles(["viewer"]) == {Role.VIEWER} and rights_of({Role.VIEWER}) == set()
    with pytest.raises(ValueError, match="only alert and operator go together"):
        parse_roles(["viewer", "operator"])
