"""The API's one error table and one audit decorator, seen from a client over loopback: a
domain error gets the table's status with ``{"error": message}``, a handler's own reading of
an error wins over the table, and a change is audited once while a refused one leaves no
entry."""

from __future__ import annotations

import aiohttp

from loa.app import LoaServer
from tests.conftest import auth
from tests.server.test_api import call
from tests.server.test_ingest import base


async def test_the_error_table_answers_domain_errors(server: LoaServer) -> None:
    # ZoneError for a zone in the URL: 404
    assert await call(server, "POST", "/api/v1/zones/nowhere/commands", json={"op": "mute"}) \
        == (404, {"error": "unknown zone 'nowhere'"})
    # EndpointError: 404 unknown, 409 taken, 400 a bad field
    assert await call(server, "GET", "/api/v1/endpoints/nope") \
        == (404, {"error": "unknown endpoint 'nope'"})
    new = {"id": "loa-900", "zone": "phu-my-2"}
    assert (await call(server, "POST", "/api/v1/endpoints", json=new))[0] == 201
    assert await call(server, "POST", "/api/v1/endpoints", json=new) \
        == (409, {"error": "endpoint 'loa-900' exists already"})
    status, body = await call(server, "PATCH", "/api/v1/endpoints/loa-900", json={"lat": 123})
    assert status == 400 and "lat" in body["error"]
    # any other ValueError: 400
    status, body = await call(server, "POST", "/api/v1/zones/huyen/commands", json={"op": "fly"})
    assert status == 400 and body["error"].startswith("op must be one of")
    # CapError: 400
    async with aiohttp.ClientSession() as http:
        async with http.post(base(server) + "/api/v1/cap", data=b"not xml",
                             headers=auth()) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"].startswith("malformed XML")


async def test_a_handler_reads_an_error_its_own_way(server: LoaServer) -> None:
    assert (await call(server, "POST", "/api/v1/endpoints",
                       json={"id": "loa-901", "zone": "phu-my-2"}))[0] == 201
    # a zone named in the body is a bad request, not a missing page
    assert await call(server, "POST", "/api/v1/endpoints/loa-901/commands",
                      json={"op": "move", "zone": "nowhere"}) \
        == (400, {"error": "unknown zone 'nowhere'"})
    assert await call(server, "POST", "/api/v1/endpoints",
                      json={"id": "loa-902", "zone": "nowhere"}) \
        == (400, {"error": "unknown zone 'nowhere'"})
    # refusals of the handler's own
    assert await call(server, "GET", "/api/v1/log?since=yesterday") \
        == (400, {"error": "since='yesterday' is not a time: give Unix seconds or ISO 8601, "
                           "such as 2026-12-01T06:00 (station time) or 2026-12-01T06:00+07:00"})
    assert await call(server, "DELETE", "/api/v1/requests/abc") \
        == (400, {"error": "request ids are integers"})
    assert await call(server, "DELETE", "/api/v1/alerts/nope") \
        == (404, {"error": "no alert 'nope'"})


async def test_a_change_is_audited_once_and_a_refused_one_not_at_all(server: LoaServer) -> None:
    new = {"id": "loa-903", "zone": "phu-my-2"}
    assert (await call(server, "POST", "/api/v1/endpoints", json=new))[0] == 201
    assert (await call(server, "POST", "/api/v1/endpoints", json=new))[0] == 409
    assert (await call(server, "PATCH", "/api/v1/endpoints/loa-903", json={"lat": 123}))[0] \
        == 400
    assert (await call(server, "PATCH", "/api/v1/endpoints/loa-903",
                       json={"name": "Cụm loa chợ"}))[0] == 200
    status, log = await call(server, "GET", "/api/v1/audit?subject=loa-903")
    assert status == 200
    assert [(e["actor"], e["action"]) for e in log["audit"]] == [
        ("admin", "endpoint.update"), ("admin", "endpoint.add")]
    assert log["audit"][0]["detail"] == {"name": "Cụm loa chợ"}
