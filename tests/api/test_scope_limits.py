"""What a scope reaches (review of issue 14), through the real API: the station's metrics
are a whole tree's; the status counts a scope's fleet only; a zone that does not exist is
"unknown" (404) whoever names it; a commune's requests stay below the district's live
level; and the last admin of the whole tree can be neither removed nor demoted."""

from __future__ import annotations

import aiohttp

from loa.app import LoaServer
from tests.api.accounts import add_user, token_of
from tests.conftest import auth
from tests.server.test_api import call
from tests.server.test_ingest import base


async def test_the_metrics_are_a_whole_trees_and_the_status_counts_the_scopes_fleet(
        server: LoaServer) -> None:
    await add_user(server, "op-an-binh", "operator", "an-binh")
    await add_user(server, "qt-huyen", "admin", "huyen")
    op = await token_of(server, "op-an-binh")
    district = await token_of(server, "qt-huyen")
    async with aiohttp.ClientSession() as http:
        async with http.get(base(server) + "/metrics", headers=op) as resp:
            assert resp.status == 403
            assert await resp.json() == {
                "error": "the station's metrics is outside your scope (an-binh)",
                "refused": "scope", "scope": "an-binh"}
        for headers in (district, auth()):  # the tree's only root, and every zone
            async with http.get(base(server) + "/metrics", headers=headers) as resp:
                assert resp.status == 200
                assert 'loa_zone_on_air_priority{zone="phu-my"}' in await resp.text()
    # commands wait for endpoints that are not connected: open, 4 in Phú Mỹ, 2 in An Bình 1
    for zone, body in (("phu-my", {"op": "volume", "volume_pct": 40}),
                       ("an-binh-1", {"op": "mute"})):
        assert (await call(server, "POST", f"/api/v1/zones/{zone}/commands", json=body))[0] \
            == 202
    status, whole = await call(server, "GET", "/api/v1/status")
    assert status == 200
    assert (whole["fleet"]["endpoints"], whole["fleet"]["commands_open"]) == (8, 6)
    status, mine = await call(server, "GET", "/api/v1/status", headers=op)
    assert status == 200
    assert {k: mine["fleet"][k] for k in ("endpoints", "online", "commands_open")} == {
        "endpoints": 4, "online": 0, "commands_open": 2}
    assert mine["fleet"]["broker"] == whole["fleet"]["broker"]  # the rest as it is
    assert {z["zone"] for z in mine["zones"]} == {"an-binh", "an-binh-1", "an-binh-2"}


async def test_an_unknown_zone_is_unknown_whoever_names_it(server: LoaServer) -> None:
    await add_user(server, "op-an-binh", ["operator", "alert"], "an-binh")
    op = await token_of(server, "op-an-binh")
    for method, path, body in [
        ("POST", "/api/v1/zones/an-binh-9/requests", {"source": {"kind": "tone"}}),
        ("POST", "/api/v1/zones/an-binh-9/live", {"mount": "studio"}),
        ("DELETE", "/api/v1/zones/an-binh-9/live", None),
        ("POST", "/api/v1/zones/an-binh-9/commands", {"op": "mute"}),
        ("PATCH", "/api/v1/zones/an-binh-9", {"alert_volume_pct": 90}),
        ("GET", "/api/v1/zones/an-binh-9", None),
        ("GET", "/api/v1/log?zone=an-binh-9", None),
    ]:
        for headers in (op, auth()):
            status, answer = await call(server, method, path, json=body, headers=headers)
            assert (status, answer) == (404, {"error": "unknown zone 'an-binh-9'"}), \
                (method, path, headers is op, answer)
    # a zone named in a body is a bad request, for them as for the admin
    for headers in (op, auth()):
        status, answer = await call(server, "POST", "/api/v1/alerts", headers=headers,
                                    json={"zones": ["an-binh-9"], "content": {"kind": "tone"}})
        assert status == 400 and "an-binh-9" in answer["error"], answer
    # a zone that exists outside their scope is still theirs to be refused
    status, answer = await call(server, "POST", "/api/v1/zones/phu-my/requests",
                                json={"source": {"kind": "tone"}}, headers=op)
    assert status == 403 and answer["refused"] == "scope"


async def test_a_commune_stays_below_the_districts_live_level(server: LoaServer) -> None:
    await add_user(server, "op-an-binh", "operator", "an-binh")
    await add_user(server, "ck-an-binh", ["operator", "alert"], "an-binh")
    await add_user(server, "op-huyen", "operator", "huyen")
    commune = await token_of(server, "op-an-binh")
    official = await token_of(server, "ck-an-binh")
    district = await token_of(server, "op-huyen")
    refusal = ("priority {p} is above what a commune may use: district live is 80; use at "
               "most 79")
    for headers in (commune, official):
        for priority in (80, 99, "district_live"):
            status, answer = await call(server, "POST", "/api/v1/zones/an-binh-1/requests",
                                        json={"source": {"kind": "tone"},
                                              "priority": priority}, headers=headers)
            assert (status, answer["error"]) == (403, refusal.format(p=80 if isinstance(
                priority, str) else priority)), answer
        status, answer = await call(server, "POST", "/api/v1/zones/an-binh/live",
                                    json={"priority": 85}, headers=headers)
        assert (status, answer["error"]) == (403, refusal.format(p=85))
    # up to 79 they may; the emergency level with the alert right, as before
    status, answer = await call(server, "POST", "/api/v1/zones/an-binh-1/requests",
                                json={"source": {"kind": "tone"}, "priority": 79},
                                headers=commune)
    assert status == 201 and answer["request"]["priority"] == 79
    status, answer = await call(server, "POST", "/api/v1/zones/an-binh-1/requests",
                                json={"source": {"kind": "tone"}, "priority": 100},
                                headers=commune)
    assert status == 403 and "reserved to emergency alerts" in answer["error"]
    status, _ = await call(server, "POST", "/api/v1/zones/an-binh-1/requests",
                           json={"source": {"kind": "tone"}, "priority": 100},
                           headers=official)
    assert status == 201
    # the district's operator takes district live, on a commune of theirs too
    status, answer = await call(server, "POST", "/api/v1/zones/an-binh/live", json={},
                                headers=district)
    assert status == 201 and answer["request"]["priority"] == 80
    status, _ = await call(server, "POST", "/api/v1/zones/an-binh-2/requests",
                           json={"source": {"kind": "tone"}, "priority": 90},
                           headers=district)
    assert status == 201


async def test_the_last_admin_of_the_whole_tree_stays(server: LoaServer) -> None:
    # the first start made "admin", of the tree's root; a commune's admin is no whole tree's
    await add_user(server, "qt-an-binh", "admin", "an-binh")
    removed = "'admin' is the last admin of the whole tree and cannot be removed: make " \
              "another account admin of every zone first"
    demoted = "'admin' is the last admin of the whole tree and must stay one: make " \
              "another account admin of every zone first"
    assert await call(server, "DELETE", "/api/v1/users/admin") == (409, {"error": removed})
    for change in ({"role": "operator"}, {"scope": "an-binh"}, {"role": ["operator", "alert"]}):
        assert await call(server, "PATCH", "/api/v1/users/admin", json=change) \
            == (409, {"error": demoted}), change
    status, body = await call(server, "GET", "/api/v1/users/admin")
    assert status == 200 and body["user"]["roles"] == ["admin"]
    assert body["user"]["scope"] == "huyen"
    # its own password and name it may change; "every zone" is still the whole tree
    status, _ = await call(server, "PATCH", "/api/v1/users/admin",
                           json={"display_name": "Chánh văn phòng", "scope": "*"})
    assert status == 200
    # with another admin of every zone, either may go
    await add_user(server, "qt-huyen", "admin", "*")
    assert (await call(server, "PATCH", "/api/v1/users/admin",
                       json={"role": "viewer"}))[0] == 200
    qt = await token_of(server, "qt-huyen")
    assert (await call(server, "DELETE", "/api/v1/users/admin", headers=qt))[0] == 200
    status, body = await call(server, "DELETE", "/api/v1/users/qt-huyen")
    assert status == 409 and "'qt-huyen' is the last admin" in body["error"]
