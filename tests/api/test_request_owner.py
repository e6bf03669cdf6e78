"""A zone's requests say who asked for them (issue 15: the console's go-live page "shows who
holds each zone"): the user or token that took a zone live or put a source on it (the
server's own requests, the demo, the schedule and alerts, name nobody)."""

from __future__ import annotations

from loa.app import LoaServer
from tests.api.accounts import add_user, token_of
from tests.server.test_api import call


async def test_who_took_a_zone_live_is_shown_with_the_request(server: LoaServer) -> None:
    await add_user(server, "chi-lan", "operator", "an-binh")
    headers = await token_of(server, "chi-lan")
    status, taken = await call(server, "POST", "/api/v1/zones/an-binh-1/live",
                               json={"mount": "studio"}, headers=headers)
    assert status == 201, taken
    assert taken["request"]["by"] == "chi-lan"
    status, asked = await call(server, "POST", "/api/v1/zones/an-binh-2/requests",
                               json={"source": {"kind": "tone"}}, headers=headers)
    assert status == 201, asked
    assert asked["request"]["by"] == "chi-lan"
    status, zones = await call(server, "GET", "/api/v1/status")
    requests = {r["zone"]: r for z in zones["zones"] for r in z["requests"]}
    assert requests["an-binh-1"]["by"] == "chi-lan"
