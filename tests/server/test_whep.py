"""WHEP monitoring (draft-ietf-wish-whep, issue 16): what a zone plays, over WebRTC.

A real aiortc viewer on loopback host candidates asks a real server for a zone, receives its
Opus rendition (packetised as the zone encoded it: nothing encoded per viewer) and decodes the
tone the zone plays. Then credentials and scope, CORS, the session's end (by the viewer that
made it, or an admin), and the viewers' limit, which is not the sources' (viewers' offers
never keep the studio off the air).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import numpy as np
import pytest

from loa.app import LoaServer
from loa.playout.webrtc import WebRtcSettings
from loa.playout.webrtc.whep import WhepSession
from tests.api.accounts import add_user, session_of, token_of
from tests.audio import dominant_hz, rms
from tests.conftest import auth, source_sending
from tests.server.test_ingest import base, wait_for
from tests.server.test_whip import fill_tone, post_offer, stalled_offer
from tests.server.webrtc_client import SDP, receive, whep_client, whip_client


def sessions(server: LoaServer) -> list[WhepSession]:
    return [s for s in server.webrtc.sessions.values() if isinstance(s, WhepSession)]


async def test_a_viewer_hears_the_zone_sub_second_from_its_own_opus_packets(
        server: LoaServer) -> None:
    await fill_tone(server, "an-binh", 700)
    started = time.monotonic()
    viewer = await whep_client(server, "an-binh-1", auth())
    try:
        assert viewer.status == 201, viewer.body
        assert viewer.location.startswith("/whep/zones/an-binh-1/")
        first = await receive(viewer, 0.02)
        assert len(first) > 0
        assert time.monotonic() - started < 3.0  # offer, ICE, DTLS and the first packet
        pcm = await receive(viewer, 1.5)
        # the analysis beside the loop: an FFT of 1.5 s is the test's work, not the server's
        assert await asyncio.to_thread(dominant_hz, pcm[4800:]) == pytest.approx(700, rel=0.01)
        assert rms(pcm[4800:]) > 0.05
        # the viewer is a listener of the zone's "webrtc" feed: the zone's one Opus rendition
        channel = server.engine.channels["an-binh-1"]
        assert channel.listeners().get("webrtc") == 1
        assert channel.formats["webrtc"].codec == "opus"
        (session,) = sessions(server)
        assert session.packets_in > 50
        assert session.track.sent >= session.packets_in - session.track.dropped - 5
        # a second viewer: the same packets, each encoded once for both
        second = await whep_client(server, "an-binh-1", auth())
        try:
            assert second.status == 201
            pcm2 = await receive(second, 0.5)
            assert await asyncio.to_thread(dominant_hz, pcm2[2400:]) == pytest.approx(700,
                                                                       rel=0.01)
            assert channel.listeners()["webrtc"] == 2
        finally:
            await second.close()
        # DELETE ends the viewer: it leaves the feed
        assert await viewer.delete(auth()) == 200
        assert session.ended and not sessions(server) or len(sessions(server)) <= 1
        await wait_for(lambda: channel.listeners().get("webrtc", 0) == 0)
        assert await viewer.delete(auth()) == 404
    finally:
        await viewer.close()


async def test_credentials_scope_and_cors(server: LoaServer) -> None:
    user = await server.accounts.add("xa-phu-my", "mat-khau-du-dai", "viewer", "phu-my")
    _, token = server.accounts.create_token(user.username, "loa-thong-minh")
    theirs = {"Authorization": f"Bearer {token}", "Accept-Language": "en"}
    outside = await whep_client(server, "an-binh-1", theirs)
    await outside.close()
    assert outside.status == 403 and '"refused": "scope"' in outside.body
    inside = await whep_client(server, "phu-my-1", theirs)  # a viewer may listen in scope
    try:
        assert inside.status == 201, inside.body
        pcm = await receive(inside, 0.2)
        assert len(pcm) > 0
    finally:
        await inside.close()
    nobody = await whep_client(server, "phu-my-1", {})
    await nobody.close()
    assert nobody.status == 401 and nobody.headers["WWW-Authenticate"].startswith("Bearer")
    unknown = await whep_client(server, "no-such-zone", auth())
    await unknown.close()
    assert unknown.status == 404
    async with aiohttp.ClientSession() as http:
        for offer, status in (("hello", 400), ("v=0\r\n", 422)):
            async with http.post(f"{base(server)}/whep/zones/huyen", data=offer,
                                 headers={**auth(), "Content-Type": SDP}) as resp:
                assert resp.status == status, await resp.text()  # not SDP; no audio
        async with http.options(f"{base(server)}/whep/zones/huyen", headers={
                "Origin": "https://console.example", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type"}) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            assert "POST" in resp.headers["Access-Control-Allow-Methods"]
            assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
        # a refusal carries CORS too, so the page can read why
        async with http.post(f"{base(server)}/whep/zones/huyen", data="x",
                             headers={"Content-Type": SDP,
                                      "Origin": "https://console.example"}) as resp:
            assert resp.status == 401
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert server.webrtc.describe()["sessions"] == {}


async def test_the_console_listens_with_its_session_cookie_and_csrf_token(
        server: LoaServer) -> None:
    await add_user(server, "truc-ban", "operator", "an-binh")
    browser = await session_of(server, "truc-ban")
    without_csrf = {k: v for k, v in browser.items() if k != "X-CSRF-Token"}
    refused = await whep_client(server, "an-binh-1", without_csrf)
    await refused.close()
    assert refused.status == 403 and "X-CSRF-Token" in refused.body
    viewer = await whep_client(server, "an-binh-1", browser)
    try:
        assert viewer.status == 201, viewer.body
        assert len(await receive(viewer, 0.2)) > 0
        assert await viewer.delete(browser) == 200
    finally:
        await viewer.close()


async def test_only_the_viewer_that_made_it_or_an_admin_may_change_or_end_a_session(
        server: LoaServer) -> None:
    await add_user(server, "nghe-1", "viewer", "an-binh")
    await add_user(server, "nghe-2", "operator", "huyen")
    await add_user(server, "qtv-an-binh", "admin", "an-binh")
    maker, other = await token_of(server, "nghe-1"), await token_of(server, "nghe-2")
    admin = await token_of(server, "qtv-an-binh")
    viewer = await whep_client(server, "an-binh-1", maker)
    try:
        assert viewer.status == 201, viewer.body
        (session,) = sessions(server)
        assert session.actor == "nghe-1"
        # another account whose scope holds the zone: not its session
        status, body = await viewer.patch(other)
        assert status == 403 and '"refused": "owner"' in body, body
        assert "started by someone else" in body
        assert await viewer.delete(other) == 403
        assert not session.ended
        # the viewer itself may, and so may an admin of the zone
        status, body = await viewer.patch(maker)
        assert status == 204, body
        status, body = await viewer.patch(admin)
        assert status == 204, body
        assert await viewer.delete(admin) == 200
        assert session.ended
    finally:
        await viewer.close()
    second = await whep_client(server, "an-binh-1", maker)
    try:
        assert second.status == 201, second.body
        assert await second.delete(maker) == 200
    finally:
        await second.close()


async def test_the_viewers_limit_refuses_with_503_and_each_session_fails_alone(
        make_server: Any) -> None:
    server = await make_server(webrtc=WebRtcSettings(max_viewers=1))
    first = await whep_client(server, "huyen", auth())
    try:
        assert first.status == 201
        second = await whep_client(server, "huyen", auth())
        await second.close()
        assert second.status == 503 and second.headers["Retry-After"]
        pcm = await receive(first, 0.2)  # the first goes on
        assert np.isfinite(pcm).all()
    finally:
        await first.close()
    await wait_for(lambda: not sessions(server))  # the peer closed: the session ends
    third = await whep_client(server, "huyen", auth())
    try:
        assert third.status == 201
    finally:
        await third.close()


async def test_viewers_offers_never_keep_the_studio_off_the_air(make_server: Any) -> None:
    server = await make_server(webrtc=WebRtcSettings(max_sources=1, max_viewers=2))
    offer = await stalled_offer(server, "recvonly")
    # viewers' offers that never connect hold their places (until CONNECT_TIMEOUT_S)...
    for _ in range(2):
        status, _, body = await post_offer(server, "/whep/zones/huyen", offer, auth())
        assert status == 201, body
    status, headers, body = await post_offer(server, "/whep/zones/huyen", offer, auth())
    assert status == 503 and headers["Retry-After"]
    assert "too many WHEP viewers at once (at most 2)" in body
    # ... but not the sources' places: the studio goes on air
    await fill_tone(server, "huyen", 440)
    studio = await whip_client(server, "studio", auth(), freq_hz=1000)
    try:
        assert studio.status == 201, studio.body
        await wait_for(lambda: source_sending(server.mounts.get("studio"), 5))
        # a second source is past max_sources: 503 too, naming its own limit
        second = await whip_client(server, "ward", auth())
        await second.close()
        assert second.status == 503 and second.headers["Retry-After"]
        assert "too many WHIP sources at once (at most 1)" in second.body
        described = server.webrtc.describe()
        assert described["sessions"] == {"whep": 2, "whip": 1}
        assert (described["max_sources"], described["max_viewers"]) == (1, 2)
        assert described["refused_full"] == {"whip": 1, "whep": 1}
        assert server.status()["webrtc"]["max_sources"] == 1
    finally:
        await studio.close()
