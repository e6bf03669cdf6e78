"""WHIP ingest (RFC 9725, issue 16): a studio goes live over WebRTC.

Real parts on loopback: an aiortc client pushes a tone to a real server over real HTTP and
UDP (host candidates on 127.0.0.1 only); the real ffmpeg CLI pulls the zone that takes the
mount and hears it. Then what the protocol asks of a server (credentials, a busy mount,
trickle ICE and its preconditions, CORS, GET's 204, a wrong method's 405 and an unknown
path's 404 as the API's JSON), the caller's scope over the zones that take the mount, a
session's URL its maker's (or an admin's), an offer that never connected giving
way to its caller's next, a sign-out ending the browser's source, a peer that pauses its RTP
(its zones fall back and come back, its session lives on), a peer that vanishes (ended by
``rtp_gone_s``), and the pure parts: the Opus RTP decoder (loss,
lateness, DTX), the gathering restricted to addresses and ports, the ``[webrtc]`` settings.
"""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from aiortc.mediastreams import VideoStreamTrack

from loa.api.whip import ice_links
from loa.app import LoaServer
from loa.config import Config, ConfigError, apply_toml
from loa.core.pcm import FRAME_SAMPLES
from loa.playout.webrtc import IceServer, WebRtcSettings
from loa.playout.webrtc import peer as webrtc_peer
from loa.playout.webrtc.opus_rtp import OpusRtp, packet_samples
from loa.playout.webrtc.whip import WhipSession
from tests.api.accounts import add_user, token_of
from tests.api.accounts import session_of as browser_of
from tests.audio import MP3_PUSH, dominant_hz, ffmpeg_pull, ffmpeg_push, rms
from tests.conftest import SOURCE_PASSWORD, auth, source_sending
from tests.server.test_ingest import base, source_url, take_live, wait_for
from tests.server.webrtc_client import LOOPBACK, SDP, Peer, ToneTrack, whip_client

FILL = 10  # Priority.FILL: the fallback programme's level
COMMUNE_LIVE = 70  # what a caller scoped below the root takes a zone at
LIVE = 80  # what POST /api/v1/zones/<zone>/live takes a zone at by default
PASSWORD = {"Authorization": f"Bearer {SOURCE_PASSWORD}", "Accept-Language": "en"}


async def fill_tone(server: LoaServer, zone: str, freq_hz: float) -> None:
    """A steady tone at fill priority on ``zone``: what its zones fall back to."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base(server)}/api/v1/zones/{zone}/requests", headers=auth(),
                             json={"source": {"kind": "tone", "freq_hz": freq_hz},
                                   "priority": "fill"}) as resp:
            assert resp.status == 201, await resp.text()


def session_of(server: LoaServer, mount: str = "studio") -> WhipSession:
    session = server.mounts.get(mount).session
    assert isinstance(session, WhipSession)
    return session


async def stalled_offer(server: LoaServer, direction: str = "sendonly") -> str:
    """A real aiortc offer that never connects: its candidates left out (and no
    end-of-candidates), so the server's ICE agent waits for trickled ones, its session
    unconnected until ``CONNECT_TIMEOUT_S``: a client that crashed after its POST."""
    peer = Peer(server)
    if direction == "sendonly":
        peer.pc.addTransceiver(ToneTrack(), direction="sendonly")
    else:
        peer.pc.addTransceiver("audio", direction="recvonly")
    webrtc_peer.restrict_gathering(peer.pc, LOOPBACK)
    await peer.pc.setLocalDescription(await peer.pc.createOffer())
    sdp = peer.pc.localDescription.sdp
    await peer.close()
    return "".join(f"{line}\r\n" for line in sdp.splitlines()
                   if not line.startswith(("a=candidate:", "a=end-of-candidates")))


async def post_offer(server: LoaServer, path: str, offer: str, headers: dict[str, str]
                     ) -> tuple[int, Any, str]:
    """POST an offer as it is: (status, headers, body)."""
    async with aiohttp.ClientSession() as http:
        async with http.post(base(server) + path, data=offer,
                             headers={"Content-Type": SDP, "Accept-Language": "en",
                                      **headers}) as resp:
            return resp.status, resp.headers, await resp.text()


async def test_an_aiortc_client_goes_live_ffmpeg_hears_it_and_delete_falls_back(
        server: LoaServer) -> None:
    await fill_tone(server, "huyen", 440)
    peer = await whip_client(server, "studio", auth(), freq_hz=1000)
    try:
        assert peer.status == 201, peer.body
        assert re.fullmatch(r"/whip/studio/[A-Za-z0-9_-]{22}", peer.location)
        assert peer.headers["Content-Type"].startswith(SDP) and peer.etag.startswith('"')
        # the server's candidates: loopback only, as configured by its listen address
        candidates = [line for line in peer.body.splitlines() if line.startswith("a=candidate")]
        assert candidates and all(" 127.0.0.1 " in c for c in candidates)
        mount = server.mounts.get("studio")
        await wait_for(lambda: source_sending(mount, 10))
        assert mount.describe()["kind"] == "webrtc"
        assert [m["kind"] for m in server.status()["mounts"]] == ["webrtc"]
        # no zone takes it yet: its packets are followed, not decoded
        session = session_of(server)
        assert not mount.source.decoding and session.decoder.skipped > 10
        assert session.packets_skipped == session.decoder.packets == mount.frames_in
        await take_live(server, "an-binh")
        pcm = await ffmpeg_pull(f"{base(server)}/zones/an-binh-1/stream.ogg", seconds=2.0)
        heard_hz = await asyncio.to_thread(dominant_hz, pcm[9600:])
        assert heard_hz == pytest.approx(1000, rel=0.01)
        assert rms(pcm[9600:]) > 0.03
        assert session.decoder.packets - session.decoder.skipped > 50  # decoded, once heard
        assert session.decoder.decode_errors == 0
        # DELETE ends it: 200, the mount is free, the zone falls back to the fill tone
        assert await peer.delete(auth()) == 200
        assert mount.session is None and session.ended
        await wait_for(lambda: server.engine.channels["an-binh-1"].on_air.priority == FILL)
        pcm = await ffmpeg_pull(f"{base(server)}/zones/an-binh-1/stream.ogg", seconds=1.5)
        heard_hz = await asyncio.to_thread(dominant_hz, pcm[9600:])
        assert heard_hz == pytest.approx(440, rel=0.01)
        assert await peer.delete(auth()) == 404  # ended: no such session any more
    finally:
        await peer.close()


async def test_credentials_are_checked_and_a_busy_mount_is_refused(server: LoaServer) -> None:
    url = f"{base(server)}/whip/studio"
    offer_peer = Peer(server)
    offer_peer.pc.addTransceiver(ToneTrack(), direction="sendonly")
    webrtc_peer.restrict_gathering(offer_peer.pc, WebRtcSettings(addresses=("127.0.0.1",)))
    await offer_peer.pc.setLocalDescription(await offer_peer.pc.createOffer())
    offer = offer_peer.pc.localDescription.sdp
    await offer_peer.close()
    user = await server.accounts.add("nghe", "mat-khau-du-dai", "viewer", "huyen")
    _, viewer_token = server.accounts.create_token(user.username, "tv")

    async def post(headers: dict[str, str], content_type: str = SDP) -> tuple[int, Any, str]:
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=offer, headers={"Content-Type": content_type,
                                                           "Accept-Language": "en",
                                                           **headers}) as resp:
                return resp.status, resp.headers, await resp.text()

    status, headers, body = await post({})
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert "needs credentials" in body
    status, headers, _ = await post({"Authorization": "Bearer wrong-token"})
    assert status == 401 and "WWW-Authenticate" in headers
    status, _, body = await post({"Authorization": f"Bearer {viewer_token}"})
    assert status == 403 and '"refused": "right"' in body
    status, _, body = await post(auth(), content_type="text/plain")
    assert status == 415 and "application/sdp" in body
    assert server.mounts.get("studio").session is None  # nothing refused took the mount
    assert server.webrtc.describe()["sessions"] == {}

    # the mount's source password is a bearer token too, as the issue says
    first = await whip_client(server, "studio", {"Authorization": f"Bearer {SOURCE_PASSWORD}"})
    try:
        assert first.status == 201, first.body
        await wait_for(lambda: source_sending(server.mounts.get("studio"), 5))
        second = await whip_client(server, "studio", auth())
        assert second.status == 409 and '"refused": "busy"' in second.body
        await second.close()
        # an Icecast source is refused as Icecast refuses it (403), the WHIP one undisturbed
        push = await ffmpeg_push(source_url(server), seconds=2, codec_args=MP3_PUSH)
        _, err = await asyncio.wait_for(push.communicate(), 15)
        assert push.returncode != 0 and (b"403" in err or b"Forbidden" in err)
        assert isinstance(server.mounts.get("studio").session, WhipSession)
    finally:
        await first.close()
    # and the other way round: a mount an Icecast source holds refuses a WHIP one (409)
    push = await ffmpeg_push(source_url(server, mount="ward"), codec_args=MP3_PUSH)
    try:
        await wait_for(lambda: source_sending(server.mounts.get("ward"), 5))
        third = await whip_client(server, "ward", auth())
        assert third.status == 409, third.body
        await third.close()
    finally:
        push.kill()
        await push.wait()


def frequencies(pcm: np.ndarray, window: int = 4800) -> list[int]:
    """The dominant frequency of each 100 ms of ``pcm``, rounded to 10 Hz (0: silence)."""
    out = []
    for start in range(0, len(pcm) - window + 1, window):
        part = pcm[start:start + window]
        out.append(int(round(dominant_hz(part), -1)) if rms(part) > 0.01 else 0)
    return out


async def test_a_peer_pausing_its_rtp_falls_back_within_a_second_and_comes_back(
        server: LoaServer) -> None:
    await fill_tone(server, "huyen", 440)
    peer = await whip_client(server, "studio", auth(), freq_hz=1000)
    try:
        assert peer.status == 201, peer.body
        assert peer.tone is not None
        mount = server.mounts.get("studio")
        await wait_for(lambda: source_sending(mount, 25))
        await take_live(server, "an-binh")
        channel = server.engine.channels["an-binh-1"]
        await wait_for(lambda: channel.on_air.priority == LIVE)
        session = session_of(server)
        # ffmpeg listens to the zone across the pause: 1000 Hz, the fill tone, 1000 Hz again
        pull = asyncio.create_task(ffmpeg_pull(f"{base(server)}/zones/an-binh-1/stream.ogg",
                                               seconds=5.0))
        await wait_for(lambda: sum(channel.listeners().values()) > 0)
        joined_ns = server.clock.now_ns()
        # ffmpeg hears the studio for a second (the server's clock), then the RTP stops
        await wait_for(lambda: server.clock.now_ns() - joined_ns > 1_000_000_000)
        peer.tone.pause(1.5)  # an encoder stall, a 4G hiccup: the connection lives on
        await asyncio.wait_for(peer.tone.paused.wait(), 5)
        await wait_for(lambda: channel.on_air.priority == FILL, timeout_s=3)
        fell_ns = server.clock.now_ns()
        assert session.held and not session.ended
        # measured by the server's own clock: the zone fell back within ~1 s of the last packet
        assert fell_ns - session.last_rtp_ns <= 1_200_000_000
        await wait_for(lambda: channel.on_air.priority == LIVE, timeout_s=3)
        assert not session.held and session.holds == 1 and not session.ended
        assert server.clock.now_ns() - fell_ns <= 1_500_000_000  # back as RTP came back
        pcm = await pull
        heard = await asyncio.to_thread(frequencies, pcm[9600:])
        studio = [i for i, hz in enumerate(heard) if abs(hz - 1000) <= 10]
        fill = [i for i, hz in enumerate(heard) if abs(hz - 440) <= 10]
        assert fill and studio, heard
        assert studio[0] < fill[0] and studio[-1] > fill[-1], heard  # studio, fill, studio
        assert len(fill) <= 12, heard  # the fill tone only while the RTP was away
        before = max(i for i in studio if i < fill[0])
        assert fill[0] - before <= 13, heard  # dead air before the fall-back: ~1 s
        # the session is still the studio's: its URL takes PATCH and DELETE
        assert session_of(server) is session
        status, body = await peer.patch(auth())
        assert status == 204, body
        assert await peer.delete(auth()) == 200
        assert session.ended and mount.session is None
    finally:
        await peer.close()


async def test_a_vanished_peer_is_heard_no_more_within_a_second_and_ends_by_rtp_gone_s(
        make_server: Any) -> None:
    server = await make_server(webrtc=WebRtcSettings(rtp_gone_s=4.0))
    await fill_tone(server, "huyen", 440)
    peer = await whip_client(server, "studio", auth())
    try:
        assert peer.status == 201, peer.body
        mount = server.mounts.get("studio")
        await wait_for(lambda: source_sending(mount, 25))
        await take_live(server, "an-binh")
        channel = server.engine.channels["an-binh-1"]
        await wait_for(lambda: channel.on_air.priority == LIVE)
        session = session_of(server)
        vanished_ns = server.clock.now_ns()
        peer.vanish()  # no DELETE, no DTLS close, no RTCP BYE: the packets just stop
        await wait_for(lambda: channel.on_air.priority == FILL, timeout_s=3)
        # measured by the server's own clock: its last packet, the fall-back
        fell_ns = server.clock.now_ns()
        assert session.last_rtp_ns <= vanished_ns + 50_000_000
        assert fell_ns - session.last_rtp_ns <= 1_200_000_000
        assert session.held and not session.ended and mount.session is session
        pcm = await ffmpeg_pull(f"{base(server)}/zones/an-binh-1/stream.ogg", seconds=1.0)
        heard_hz = await asyncio.to_thread(dominant_hz, pcm[9600:])
        assert heard_hz == pytest.approx(440, rel=0.01)
        # gone for good: the session ends at rtp_gone_s, the mount is free
        await wait_for(lambda: session.ended, timeout_s=6)
        assert "no RTP" in session.end_reason
        assert 4_000_000_000 <= session.ended_ns - session.last_rtp_ns <= 4_400_000_000
        assert mount.session is None and channel.on_air.priority == FILL
        # the studio's reconnection goes live at once
        again = await whip_client(server, "studio", auth())
        assert again.status == 201, again.body
        await wait_for(lambda: channel.on_air.priority == LIVE)
        await again.close()
    finally:
        await peer.close()


async def test_only_its_maker_or_an_admin_may_change_or_end_a_whip_session(
        server: LoaServer) -> None:
    await add_user(server, "truc-an-binh", "operator", "an-binh")
    await add_user(server, "truc-phu-my", "operator", "phu-my")
    await add_user(server, "qtv-phu-my", "admin", "phu-my")
    await add_user(server, "qtv-huyen", "admin", "huyen")
    maker = await token_of(server, "truc-an-binh")
    other = await token_of(server, "truc-phu-my")
    local_admin = await token_of(server, "qtv-phu-my")
    district_admin = await token_of(server, "qtv-huyen")
    peer = await whip_client(server, "studio", maker)
    encoder = await whip_client(server, "ward", PASSWORD)
    try:
        assert peer.status == 201 and encoder.status == 201, (peer.body, encoder.body)
        session, kept = session_of(server), session_of(server, "ward")
        await take_live(server, "an-binh")  # the studio is heard in An Bình
        # another operator (the review's case: Phú Mỹ ending An Bình's broadcast), the
        # source password, the maker's own token on the other session: refused, nothing ends
        for who, target in ((other, peer), (PASSWORD, peer), (maker, encoder),
                            (other, encoder)):
            status, body = await target.patch(who)
            assert status == 403 and '"refused": "owner"' in body, body
            assert "started by someone else" in body
            assert await target.delete(who) == 403
        # an admin whose scope misses a zone taking the mount: refused by scope
        status, body = await peer.patch(local_admin)
        assert status == 403 and '"refused": "scope"' in body, body
        assert "mount 'studio' is taken by zone 'an-binh', outside your scope" in body
        assert await peer.delete(local_admin) == 403
        assert not session.ended and not kept.ended
        # its maker may; an admin over every zone taking it may; the source password, its own
        status, body = await peer.patch(maker)
        assert status == 204, body
        status, body = await peer.patch(district_admin)
        assert status == 204, body
        status, body = await encoder.patch(PASSWORD)
        assert status == 204, body
        assert await peer.delete(district_admin) == 200
        assert session.ended and session.end_reason == "ended by qtv-huyen (DELETE)"
        assert await encoder.delete(PASSWORD) == 200 and kept.ended
    finally:
        await peer.close()
        await encoder.close()


async def test_trickle_ice_cors_and_the_session_resource(server: LoaServer) -> None:
    peer = await whip_client(server, "studio", auth())
    try:
        assert peer.status == 201
        url = base(server) + peer.location
        fragment = ("a=ice-ufrag:{ufrag}\r\na=mid:0\r\n"
                    "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
                    "a=end-of-candidates\r\n")
        ufrag = re.search(r"a=ice-ufrag:(\S+)", peer.pc.localDescription.sdp)
        assert ufrag is not None
        pwd = re.search(r"a=ice-pwd:(\S+)", peer.pc.localDescription.sdp)
        assert pwd is not None
        restart_pwd = ("a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=mid:0\r\n"
                       "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n")
        frag_type = {"Content-Type": "application/trickle-ice-sdpfrag"}
        async with aiohttp.ClientSession() as http:
            async with http.patch(url, data=fragment.format(ufrag=ufrag[1]),
                                  headers={**auth(), **frag_type,
                                           "If-Match": peer.etag}) as resp:
                assert resp.status == 204, await resp.text()
                assert resp.headers["ETag"] == peer.etag  # RFC 9725 §4.3.1
            # the same credentials, repeated in full: still trickle, not a restart
            async with http.patch(url, data=restart_pwd.format(ufrag=ufrag[1], pwd=pwd[1]),
                                  headers={**auth(), **frag_type,
                                           "If-Match": peer.etag}) as resp:
                assert resp.status == 204, await resp.text()
            async with http.patch(url, data=fragment.format(ufrag=ufrag[1]),
                                  headers={**auth(), **frag_type}) as resp:
                assert resp.status == 428  # no If-Match: Precondition Required
                assert "If-Match" in await resp.text()
            async with http.patch(url, data=fragment.format(ufrag=ufrag[1]),
                                  headers={**auth(), **frag_type,
                                           "If-Match": '"not-it"'}) as resp:
                assert resp.status == 412
            # an ICE restart, asked three ways: trickle is supported, restarts are not (422)
            for data, match in ((fragment.format(ufrag="new1"), "*"),
                                (fragment.format(ufrag="new1"), peer.etag),
                                (restart_pwd.format(ufrag=ufrag[1], pwd="x" * 24), peer.etag)):
                async with http.patch(url, data=data, headers={**auth(), **frag_type,
                                                               "If-Match": match}) as resp:
                    assert resp.status == 422, (match, await resp.text())
                    assert "cannot restart ICE" in await resp.text()
            async with http.patch(url, data="a=end-of-candidates\r\n",
                                  headers={**auth(), "Content-Type": "text/plain"}) as resp:
                assert resp.status == 415
            async with http.patch(url, data=fragment.format(ufrag=ufrag[1]),
                                  headers=frag_type) as resp:
                assert resp.status == 401
            # CORS: the preflight a browser sends before POST and DELETE
            for path in ("/whip/studio", peer.location):
                async with http.options(base(server) + path, headers={
                        "Origin": "https://studio.example",
                        "Access-Control-Request-Method": "POST",
                        "Access-Control-Request-Headers": "authorization, content-type"}) as resp:
                    assert resp.status == 204
                    assert resp.headers["Access-Control-Allow-Origin"] == "*"
                    allowed = resp.headers["Access-Control-Allow-Headers"].lower()
                    assert {"authorization", "content-type", "if-match"} <= {
                        h.strip() for h in allowed.split(",")}
                    assert "Location" in resp.headers["Access-Control-Expose-Headers"]
            async with http.options(base(server) + "/whip/studio") as resp:
                assert resp.status == 204 and resp.headers["Accept-Post"] == SDP
                assert "Access-Control-Allow-Origin" not in resp.headers  # no Origin: no CORS
            async with http.delete(url + "x", headers=auth()) as resp:
                assert resp.status == 404
        await wait_for(lambda: source_sending(server.mounts.get("studio"), 5))
    finally:
        await peer.close()


async def test_get_is_204_and_a_wrong_method_or_path_is_json_as_the_apis(
        server: LoaServer) -> None:
    peer = await whip_client(server, "studio", auth())
    try:
        assert peer.status == 201, peer.body
        origin = {"Origin": "https://studio.example"}
        vi = {**origin, "Accept-Language": "vi"}
        async with aiohttp.ClientSession() as http:
            # RFC 9725 §4.1: an endpoint and a session answer GET with a 2xx and no content
            for method, path in (("GET", "/whip/studio"), ("HEAD", "/whip/studio"),
                                 ("GET", peer.location), ("HEAD", peer.location),
                                 ("GET", "/whep/zones/an-binh")):
                async with http.request(method, base(server) + path, headers=origin) as resp:
                    assert resp.status == 204, (method, path, await resp.text())
                    assert await resp.read() == b""
                    assert resp.headers["Access-Control-Allow-Origin"] == "*"
            # a method a resource does not take: 405 with Allow, the API's JSON, Vietnamese
            for method, path, allowed, said in (
                    ("PUT", "/whip/studio", "GET,HEAD,OPTIONS,POST",
                     "không dùng được PUT trên /whip/studio; được phép: GET, HEAD, "
                     "OPTIONS, POST"),
                    ("POST", peer.location, "DELETE,GET,HEAD,OPTIONS,PATCH",
                     f"không dùng được POST trên {peer.location}; được phép: DELETE, GET, "
                     "HEAD, OPTIONS, PATCH")):
                async with http.request(method, base(server) + path, headers=vi) as resp:
                    assert resp.status == 405, (method, path, await resp.text())
                    assert resp.headers["Allow"] == allowed
                    assert resp.content_type == "application/json"
                    assert await resp.json() == {"error": said}
                    assert resp.headers["Access-Control-Allow-Origin"] == "*"
            # no such session, mount name or path: 404, JSON
            async with http.get(base(server) + peer.location + "x", headers=vi) as resp:
                assert resp.status == 404 and resp.content_type == "application/json"
                assert await resp.json() == {
                    "error": "không có phiên WHIP này (đã kết thúc, hoặc chưa từng có)"}
            async with http.get(base(server) + "/whip/bad name", headers=PASSWORD) as resp:
                assert resp.status == 404 and resp.content_type == "application/json"
                assert "mount name 'bad name' must be" in (await resp.json())["error"]
            for path in ("/whip", "/whip/", peer.location + "/more"):
                async with http.delete(base(server) + path, headers=PASSWORD) as resp:
                    assert resp.status == 404 and resp.content_type == "application/json"
                    assert await resp.json() == {"error": (
                        f"no such WHIP path: DELETE {path} (an offer is posted to "
                        "/whip/<mount>; a session's URL is /whip/<mount>/<id>)")}
        # none of it touched the source: still live, its URL still its maker's
        assert not session_of(server).ended
        assert await peer.delete(auth()) == 200
    finally:
        await peer.close()


async def goes_live_and_ends(server: LoaServer, mount: str, credentials: dict[str, str]
                             ) -> None:
    """A WHIP source made on ``mount`` with ``credentials`` (201), ended by its DELETE (200)."""
    client = await whip_client(server, mount, credentials)
    try:
        assert client.status == 201, client.body
        assert await client.delete(credentials) == 200
    finally:
        await client.close()


async def test_a_scoped_caller_may_push_only_to_a_mount_its_own_zones_take(
        server: LoaServer) -> None:
    await add_user(server, "truc-phu-my", "operator", "phu-my")
    token = await token_of(server, "truc-phu-my")
    browser = await browser_of(server, "truc-phu-my")
    offer = await stalled_offer(server)
    await take_live(server, "an-binh")  # the district takes another commune for the studio
    # a source on the studio would be heard in An Bình: refused, for the token and the cookie
    for headers in (token, browser):
        status, _, body = await post_offer(server, "/whip/studio", offer, headers)
        assert status == 403, body
        assert '"refused": "scope"' in body and '"scope": "phu-my"' in body
        assert "mount 'studio' is taken by zone 'an-binh', outside your scope (phu-my)" in body
    assert server.mounts.get("studio").session is None
    assert server.webrtc.describe()["sessions"] == {}
    # the mount's source password is the mount's own secret: no scope is asked of it
    await goes_live_and_ends(server, "studio", PASSWORD)
    # a mount no zone takes, then one that only the caller's own zones take: allowed
    await goes_live_and_ends(server, "ward", token)
    await take_live(server, "phu-my-1", mount="ward")
    await fill_tone(server, "huyen", 440)
    peer = await whip_client(server, "ward", browser, freq_hz=1000)
    try:
        assert peer.status == 201, peer.body
        channel = server.engine.channels["phu-my-1"]
        await wait_for(lambda: channel.on_air.priority == LIVE)
        pcm = await ffmpeg_pull(f"{base(server)}/zones/phu-my-1/stream.ogg", seconds=1.5)
        heard_hz = await asyncio.to_thread(dominant_hz, pcm[9600:])
        assert heard_hz == pytest.approx(1000, rel=0.01)
    finally:
        await peer.close()


async def test_an_offer_that_never_connected_gives_way_to_its_callers_next_one(
        server: LoaServer) -> None:
    await add_user(server, "truc-ban", "operator", "huyen")
    other = await token_of(server, "truc-ban")
    offer = await stalled_offer(server)
    status, headers, body = await post_offer(server, "/whip/studio", offer, auth())
    assert status == 201, body
    first = session_of(server)
    assert not first.connected and not first.ended
    # anyone else finds the mount busy, as long as the first may still connect, and is told so
    status, _, body = await post_offer(server, "/whip/studio", offer, other)
    assert status == 409 and '"refused": "busy"' in body
    said = re.search(r"a WebRTC offer for this mount is being connected; it is given up after "
                     r"(\d+) s if it does not connect", body)
    assert said is not None, body
    assert 1 <= int(said[1]) <= 15
    status, _, body = await post_offer(server, "/whip/studio", offer, PASSWORD)
    assert status == 409, body  # the source password is another caller
    assert session_of(server) is first and not first.ended
    # the same caller, at once (its client crashed after the POST, and starts again): its
    # new offer replaces the one that never connected, and goes live
    again = await whip_client(server, "studio", auth())
    try:
        assert again.status == 201, again.body
        assert first.ended and first.end_reason == "replaced by a new offer"
        assert session_of(server) is not first
        await wait_for(lambda: source_sending(server.mounts.get("studio"), 5))
        await wait_for(lambda: session_of(server).connected)
        assert server.webrtc.describe()["sessions"] == {"whip": 1}
        async with aiohttp.ClientSession() as http:
            async with http.delete(base(server) + headers["Location"], headers=auth()) as resp:
                assert resp.status == 404  # the replaced session is gone
        # connected, it is no longer replaced: busy for its own caller too
        status, _, body = await post_offer(server, "/whip/studio", offer, auth())
        assert status == 409, body
        assert not session_of(server).ended
    finally:
        await again.close()
    # the source password, likewise: its own offer replaces it, a user's does not
    status, _, body = await post_offer(server, "/whip/ward", offer, PASSWORD)
    assert status == 201, body
    held = session_of(server, "ward")
    status, _, body = await post_offer(server, "/whip/ward", offer, auth())
    assert status == 409, body
    status, _, body = await post_offer(server, "/whip/ward", offer, PASSWORD)
    assert status == 201, body
    assert held.ended and session_of(server, "ward") is not held


async def test_signing_out_ends_the_browsers_whip_source_and_its_zone_falls_back(
        server: LoaServer) -> None:
    await fill_tone(server, "huyen", 440)
    await add_user(server, "truc-ban", "operator", "an-binh")
    browser = await browser_of(server, "truc-ban")
    elsewhere = await browser_of(server, "truc-ban")  # the same user, another login
    peer = await whip_client(server, "studio", browser, freq_hz=1000)
    other = await whip_client(server, "ward", elsewhere)
    try:
        assert peer.status == 201 and other.status == 201, (peer.body, other.body)
        session, kept = session_of(server), session_of(server, "ward")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base(server)}/api/v1/zones/an-binh/live",
                                 json={"mount": "studio"}, headers=browser) as resp:
                assert resp.status == 201, await resp.text()
            channel = server.engine.channels["an-binh-1"]
            await wait_for(lambda: channel.on_air.priority == COMMUNE_LIVE)
            async with http.post(f"{base(server)}/api/v1/logout", headers=browser) as resp:
                assert resp.status == 200 and (await resp.json())["logged_out"]
        # the logout's own answer came after the source ended: nothing waits for media
        assert session.ended and session.end_reason == "its console login signed out"
        assert server.mounts.get("studio").session is None
        await wait_for(lambda: channel.on_air.priority == FILL, timeout_s=3)
        pcm = await ffmpeg_pull(f"{base(server)}/zones/an-binh-1/stream.ogg", seconds=1.5)
        heard_hz = await asyncio.to_thread(dominant_hz, pcm[9600:])
        assert heard_hz == pytest.approx(440, rel=0.01)
        assert not kept.ended  # another login's source is its own
    finally:
        await peer.close()
        await other.close()


async def test_video_beside_the_audio_is_left_inactive(server: LoaServer) -> None:
    peer = Peer(server)  # what OBS sends: audio and video
    peer.pc.addTransceiver(ToneTrack(), direction="sendonly")
    peer.pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
    try:
        assert await peer.post("/whip/studio", auth()) == 201, peer.body
        sections = peer.body.split("m=")[1:]
        assert [m.split()[0] for m in sections] == ["audio", "video"]
        assert "a=recvonly" in sections[0] and "a=inactive" in sections[1]
        assert "opus/48000/2" in sections[0] and "PCMU" not in sections[0]
        await wait_for(lambda: source_sending(server.mounts.get("studio"), 5))
    finally:
        await peer.close()


async def test_no_free_port_in_the_range_is_a_503(make_server: Any) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        server = await make_server(webrtc=WebRtcSettings(udp_ports=(port, port)))
        peer = await whip_client(server, "studio", auth())
        await peer.close()
        assert peer.status == 503, peer.body
        assert server.mounts.get("studio").session is None
        assert server.webrtc.describe()["sessions"] == {}
    finally:
        taken.close()


async def test_cors_answers_only_the_listed_origins(make_server: Any) -> None:
    server = await make_server(webrtc=WebRtcSettings(cors_origins=("https://console.lan",)))
    async with aiohttp.ClientSession() as http:
        for origin, allowed in (("https://console.lan", True), ("https://evil.example", False)):
            async with http.options(f"{base(server)}/whep/zones/huyen",
                                    headers={"Origin": origin,
                                             "Access-Control-Request-Method": "POST"}) as resp:
                assert resp.status == 204
                assert resp.headers.get("Access-Control-Allow-Origin") == (
                    origin if allowed else None)
                if allowed:
                    assert resp.headers["Vary"] == "Origin"


def test_ice_servers_become_link_headers() -> None:
    settings = WebRtcSettings(ice_servers=(
        IceServer("stun:stun.example.net"),
        IceServer("turn:turn.example.net?transport=udp", "user", 'my"Password')))
    assert ice_links(settings) == [
        '<stun:stun.example.net>; rel="ice-server"',
        '<turn:turn.example.net?transport=udp>; rel="ice-server"; username="user"; '
        'credential="my\\"Password"; credential-type="password"']


async def test_gathering_keeps_to_its_addresses_ports_and_announced_address() -> None:
    settings = WebRtcSettings(addresses=("127.0.0.1",), udp_ports=(47100, 47109),
                              public_address="203.0.113.7")
    pcs = [webrtc_peer.peer_connection(settings) for _ in range(3)]
    try:
        for pc in pcs:
            pc.addTransceiver("audio", direction="recvonly")
            webrtc_peer.restrict_gathering(pc, settings)
            await pc.setLocalDescription(await pc.createOffer())
        lines = [line for pc in pcs for line in pc.localDescription.sdp.splitlines()
                 if line.startswith("a=candidate")]
        assert len(lines) == 3
        ports = set()
        for line in lines:
            fields = line.split()
            assert fields[4] == "203.0.113.7" and fields[7] == "host"
            ports.add(int(fields[5]))
        assert len(ports) == 3 and all(47100 <= p <= 47109 for p in ports)
    finally:
        for pc in pcs:
            await pc.close()


# the Opus RTP decoder, pure


def _opus_packets(n: int, freq_hz: float = 1000.0, layout: str = "stereo") -> list[bytes]:
    channels = 2 if layout == "stereo" else 1
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = 48000, layout, "s16", 64000
    enc.options = {"frame_duration": "20"}
    out: list[bytes] = []
    for i in range(n):
        t = (np.arange(960) + i * 960) / 48000
        s = (0.3 * np.sin(2 * np.pi * freq_hz * t) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(s, channels).reshape(1, -1), format="s16",
                                           layout=layout)
        frame.sample_rate, frame.pts = 48000, i * 960
        out += [bytes(p) for p in enc.encode(frame)]
    return out


@pytest.mark.parametrize("layout", ["stereo", "mono"])
def test_opus_rtp_decodes_to_mono_frames_and_conceals_losses(layout: str) -> None:
    packets = _opus_packets(60, layout=layout)
    dec = OpusRtp()
    frames = []
    seq, ts = 65530, 2**32 - 960 * 3  # both wrap within the test
    for i, payload in enumerate(packets):
        if i in (20, 21, 35):  # lost on the way
            continue
        frames += dec.push((seq + i) & 0xFFFF, (ts + 960 * i) & 0xFFFFFFFF, payload)
    assert dec.lost == 3 and dec.concealed_samples == 3 * 960 and dec.outages == 0
    assert len(frames) == 60  # the timeline keeps its length
    assert all(f.shape == (FRAME_SAMPLES,) and f.dtype == np.float32 for f in frames)
    assert float(np.abs(frames[20]).max()) == 0.0  # a lost packet is silence
    pcm = np.concatenate(frames[2:20])
    assert dominant_hz(pcm) == pytest.approx(1000, rel=0.01)
    # a late packet (or a repeated one) is dropped and counted
    assert dec.push((seq + 21) & 0xFFFF, (ts + 960 * 21) & 0xFFFFFFFF, packets[21]) == []
    assert dec.late == 1
    assert dec.describe()["concealed_ms"] == 60


def test_opus_rtp_dtx_gaps_are_filled_at_real_time_not_afterwards() -> None:
    packets = _opus_packets(10)
    dec = OpusRtp()
    for i in range(5):
        dec.push(i, 960 * i, packets[i])
    assert not dec.in_dtx
    dec.push(5, 960 * 5, b"\x08")  # a DTX frame (its TOC alone): the sender goes quiet
    assert dec.in_dtx
    filled = dec.fill(960 * 10)  # the session's timer: 200 ms of silence as it passes
    assert len(filled) == 10
    # the next packet comes 400 ms of timestamps later, in sequence: DTX, not loss; only the
    # part not filled yet is added now
    out = dec.push(6, 960 * 26, packets[6])
    assert dec.lost == 0 and dec.dtx_gaps == 1 and not dec.in_dtx
    assert dec.concealed_samples == 960 * 10  # 20 frames due, 10 filled as they passed
    assert len(out) == 11
    # a gap too long to conceal is an outage, left to the jitter buffer
    dec.push(7, 960 * 27 + 48000 * 5, packets[7])
    assert dec.outages == 1


def test_opus_rtp_follows_packets_nobody_hears_without_decoding_them() -> None:
    """Skipped packets (the source unheard) keep the timeline: the first decoded after them
    needs no silence to fill, and the sequence is still checked (loss, late)."""
    packets = _opus_packets(40)
    dec = OpusRtp()
    frames = []
    for i in range(10):
        frames += dec.push(i, 960 * i, packets[i])
    assert dec.fill(480) == []  # half a frame begun (a DTX pause's silence), then unheard
    for i in range(10, 30):
        if i != 17:  # lost on the way while nobody listened
            dec.skip(i, 960 * i, packets[i])
    dec.skip(12, 960 * 12, packets[12])  # repeated: late
    assert (dec.skipped, dec.lost, dec.late) == (19, 1, 1)
    later = []
    for i in range(30, 40):
        later += dec.push(i, 960 * i, packets[i])
    assert len(frames) == 10 and len(later) == 10  # whole frames, nothing concealed
    assert dec.concealed_samples == 0 and dec.outages == 0
    assert dominant_hz(np.concatenate(later[2:])) == pytest.approx(1000, rel=0.01)
    assert dec.describe()["skipped"] == 19


@pytest.mark.parametrize(("payload", "samples"), [
    (b"", 0),
    (bytes([(1 << 3) | 0]), 960),  # SILK 20 ms, one frame
    (bytes([(3 << 3) | 1, 0]), 2 * 2880),  # SILK 60 ms, two frames
    (bytes([(13 << 3) | 2, 0]), 2 * 960),  # hybrid 20 ms, two frames
    (bytes([(16 << 3) | 3, 0x08]), 8 * 120),  # CELT 2.5 ms, code 3: 8 frames
    (bytes([(31 << 3) | 3]), 0),  # code 3 without its count: malformed
])
def test_an_opus_packets_length_is_read_from_its_toc(payload: bytes, samples: int) -> None:
    assert packet_samples(payload) == samples


def test_an_encoders_packets_are_as_long_as_they_say() -> None:
    assert {packet_samples(p) for p in _opus_packets(5)} == {960}


# the [webrtc] settings


def test_webrtc_settings_from_the_config() -> None:
    cfg = apply_toml(Config(), {"webrtc": {
        "ice_servers": [{"url": "stun:stun.example.org:3478"},
                        {"url": "turn:turn.example.org:3478?transport=udp", "username": "u",
                         "credential": "c"}],
        "public_address": "203.0.113.7", "udp_ports": "40000-40100",
        "cors_origins": ["https://console.lan"], "max_sources": 4, "max_viewers": 100}})
    w = cfg.webrtc
    assert w.ice_servers[1] == IceServer("turn:turn.example.org:3478?transport=udp", "u", "c")
    assert (w.public_address, w.udp_ports, w.cors_origins, w.max_sources, w.max_viewers) == (
        "203.0.113.7", (40000, 40100), ("https://console.lan",), 4, 100)
    assert Config().webrtc.ice_servers == ()  # nothing leaves the machine by default
    assert (Config().webrtc.max_sources, Config().webrtc.max_viewers) == (8, 64)
    assert Config().webrtc.rtp_gone_s == 10.0
    assert apply_toml(Config(), {"webrtc": {"rtp_gone_s": 3}}).webrtc.rtp_gone_s == 3
    assert Config().webrtc.with_listen_host("127.0.0.1").addresses == ("127.0.0.1",)
    assert Config().webrtc.with_listen_host("0.0.0.0").addresses == ()
    # an older config's one limit, max_sessions, is read as the viewers' (max_viewers wins)
    old = apply_toml(Config(), {"webrtc": {"max_sessions": 12}}).webrtc
    assert (old.max_sources, old.max_viewers) == (8, 12)
    both = apply_toml(Config(), {"webrtc": {"max_sessions": 12, "max_viewers": 20}}).webrtc
    assert both.max_viewers == 20
    for bad in ({"udp_ports": "40100-40000"}, {"public_address": "example.org"},
                {"ice_servers": [{"url": "http://x"}]},
                {"ice_servers": [{"url": "turn:turn.example.org"}]},
                {"max_sessions": 0}, {"max_sources": 0}, {"max_viewers": "many"},
                {"rtp_gone_s": 0.5}, {"rtp_gone_s": "long"}):
        with pytest.raises(ConfigError):
            apply_toml(Config(), {"webrtc": bad})
