"""The station goes live with the real ffmpeg CLI; real ffmpeg and simulated endpoints listen."""

from __future__ import annotations

import asyncio
import base64
import time

import aiohttp
import numpy as np
import pytest

from loa.app import LoaServer
from loa.loadtest.endpoint import SimulatedEndpoint
from tests.audio import MP3_PUSH, OPUS_PUSH, closed, dominant_hz, ffmpeg_pull, ffmpeg_push, rms
from tests.conftest import SOURCE_PASSWORD, auth


def source_url(server: LoaServer, mount: str = "studio", password: str = SOURCE_PASSWORD) -> str:
    return f"icecast://source:{password}@127.0.0.1:{server.port}/live/{mount}"


def base(server: LoaServer) -> str:
    return f"http://127.0.0.1:{server.port}"


async def wait_for(predicate, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Poll a condition on the server's own state (not a sleep to synchronise on)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def take_live(server: LoaServer, zone: str, mount: str = "studio") -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base(server)}/api/v1/zones/{zone}/live", json={"mount": mount},
                             headers=auth()) as resp:
            assert resp.status in (200, 201), await resp.text()
            return await resp.json()


async def raw_request(server: LoaServer, head: str, body: bytes = b"") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(head.encode() + body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(4096), 10)
    await closed(writer)
    return data


def basic(password: str) -> str:
    return base64.b64encode(f"source:{password}".encode()).decode()


@pytest.mark.parametrize("codec_args", [MP3_PUSH, OPUS_PUSH], ids=["mp3", "ogg-opus"])
async def test_ffmpeg_goes_live_and_ffmpeg_hears_the_tone(server: LoaServer,
                                                          codec_args: list[str]) -> None:
    push = await ffmpeg_push(source_url(server), freq_hz=1000, codec_args=codec_args)
    try:
        mount = server.mounts.get("studio")
        await wait_for(lambda: mount.source.frames_in > 10)
        await take_live(server, "an-binh")
        pcm = await ffmpeg_pull(f"{base(server)}/zones/an-binh-1/stream.ogg", seconds=2.0)
        assert len(pcm) == pytest.approx(96000, abs=960)
        assert dominant_hz(pcm[9600:]) == pytest.approx(1000, rel=0.01)
        assert rms(pcm[9600:]) > 0.03
        # the native protocol, through an endpoint of that zone, carries the same tone
        ep = SimulatedEndpoint(f"ws://127.0.0.1:{server.port}/endpoints/loa-001/ws", decode=True)
        async with aiohttp.ClientSession() as http:
            report = await ep.run(http, seconds=1.5)
        assert report.error is None and report.gaps == 0 and report.packets >= 60
        assert {prio for _, _, prio in report.programmes} == {80}
        heard = ep.decoder.pcm()  # type: ignore[union-attr]
        assert dominant_hz(heard[4800:]) == pytest.approx(1000, rel=0.01)
    finally:
        push.kill()
        await push.wait()


async def test_mp3_stream_out(server: LoaServer) -> None:
    push = await ffmpeg_push(source_url(server), freq_hz=800, codec_args=MP3_PUSH)
    try:
        await wait_for(lambda: server.mounts.get("studio").source.frames_in > 10)
        await take_live(server, "phu-my")
        pcm = await ffmpeg_pull(f"{base(server)}/endpoints/loa-005/stream.mp3", seconds=1.5)
        assert dominant_hz(pcm[9600:]) == pytest.approx(800, rel=0.01)
    finally:
        push.kill()
        await push.wait()


async def test_wrong_password_gets_401(server: LoaServer) -> None:
    head = ("PUT /live/studio HTTP/1.1\r\nHost: x\r\nContent-Type: audio/mpeg\r\n"
            f"Authorization: Basic {basic('wrong')}\r\nExpect: 100-continue\r\n\r\n")
    reply = await raw_request(server, head)
    assert reply.startswith(b"HTTP/1.0 401 ")
    assert b"WWW-Authenticate: Basic" in reply
    # and ffmpeg itself is refused
    push = await ffmpeg_push(source_url(server, password="nope"), seconds=2, codec_args=MP3_PUSH)
    _, err = await asyncio.wait_for(push.communicate(), 15)
    assert push.returncode != 0
    assert b"401" in err or b"Unauthorized" in err


async def test_legacy_source_method_and_unsupported_type(server: LoaServer) -> None:
    head = ("SOURCE /live/old HTTP/1.0\r\nContent-Type: video/mp4\r\n"
            f"Authorization: Basic {basic(SOURCE_PASSWORD)}\r\n\r\n")
    assert (await raw_request(server, head)).startswith(b"HTTP/1.0 415 ")
    head = ("SOURCE /live/old ICE/1.0\r\nContent-Type: audio/mpeg\r\n"
            f"Authorization: Basic {basic(SOURCE_PASSWORD)}\r\n\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(head.encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.0 200 OK")
    await wait_for(lambda: server.mounts.get("old").session is not None)
    await closed(writer)
    await wait_for(lambda: server.mounts.get("old").session is None)


async def test_encoder_metadata_updates_as_icecast_takes_them(server: LoaServer) -> None:
    url = f"{base(server)}/admin/metadata"
    params = {"mount": "/live/studio", "mode": "updinfo", "song": "Bản tin sáng"}
    async with aiohttp.ClientSession() as http:
        ok = {"Authorization": f"Basic {basic(SOURCE_PASSWORD)}"}
        async with http.get(url, params=params, headers=ok) as resp:
            assert resp.status == 400  # no such mount yet
        await take_live(server, "huyen", "studio")
        async with http.get(url, params=params,
                            headers={"Authorization": f"Basic {basic('wrong')}"}) as resp:
            assert resp.status == 401
        async with http.get(url, params=params, headers=ok) as resp:
            assert resp.status == 200
            assert "<return>1</return>" in await resp.text()
    assert server.mounts.get("studio").title == "Bản tin sáng"


async def test_second_source_on_a_busy_mount_gets_403(server: LoaServer) -> None:
    push = await ffmpeg_push(source_url(server), codec_args=MP3_PUSH)
    try:
        await wait_for(lambda: server.mounts.get("studio").session is not None)
        second = await ffmpeg_push(source_url(server), seconds=2, codec_args=MP3_PUSH)
        _, err = await asyncio.wait_for(second.communicate(), 15)
        assert second.returncode != 0
        assert b"403" in err or b"Forbidden" in err
        assert server.mounts.get("studio").session is not None  # the first is undisturbed
    finally:
        push.kill()
        await push.wait()


async def test_garbage_ends_only_that_source(server: LoaServer) -> None:
    good = await ffmpeg_push(source_url(server), freq_hz=1000, codec_args=MP3_PUSH)
    try:
        await wait_for(lambda: server.mounts.get("studio").source.frames_in > 10)
        await take_live(server, "an-binh")
        ep = SimulatedEndpoint(f"ws://127.0.0.1:{server.port}/zones/an-binh-1/ws", decode=True)
        async with aiohttp.ClientSession() as http:
            listening = asyncio.create_task(ep.run(http, seconds=3.0))
            head = ("PUT /live/junk HTTP/1.1\r\nContent-Type: audio/mpeg\r\n"
                    f"Authorization: Basic {basic(SOURCE_PASSWORD)}\r\n"
                    "Expect: 100-continue\r\n\r\n")
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(head.encode())
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100 Continue")
            rng = np.random.default_rng(7)
            writer.write(rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes())
            reply = await asyncio.wait_for(reader.read(4096), 10)
            assert reply.startswith(b"HTTP/1.1 400 ")
            assert b"cannot decode" in reply
            await closed(writer)
            report = await listening
        assert server.mounts.get("junk").session is None
        assert server.counters.get("sources_failed", mount="junk") == 1
        # the live stream carried on: every packet, still the tone
        assert report.error is None and report.gaps == 0 and report.packets >= 140
        assert dominant_hz(ep.decoder.pcm()[4800:]) == pytest.approx(1000, rel=0.01)  # type: ignore[union-attr]
    finally:
        good.kill()
        await good.wait()


async def test_a_dropped_source_falls_back_within_a_second_and_the_mount_is_free_again(
    server: LoaServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base(server)}/api/v1/zones/huyen/requests", headers=auth(),
                             json={"source": {"kind": "tone", "freq_hz": 440},
                                   "priority": "fill"}) as resp:
            assert resp.status == 201
    push = await ffmpeg_push(source_url(server), freq_hz=1000, codec_args=MP3_PUSH)
    await wait_for(lambda: server.mounts.get("studio").source.frames_in > 10)
    await take_live(server, "an-binh")
    ep = SimulatedEndpoint(f"ws://127.0.0.1:{server.port}/endpoints/loa-002/ws")
    switched_at: list[float] = []
    ep.on_packet = lambda e, pkt: switched_at.append(time.monotonic()) if (
        pkt.priority == 10 and not switched_at) else None  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as http:
        listening = asyncio.create_task(ep.run(http, seconds=3.0))
        await wait_for(lambda: ep.report.packets > 25)
        assert ep.report.programmes[-1][2] == 80
        killed_at = time.monotonic()
        push.kill()
        await push.wait()
        report = await listening
    assert switched_at, "the zone never fell back to the fill programme"
    assert switched_at[0] - killed_at < 1.0
    assert report.gaps == 0
    # the mount can be taken again, and the zone rejoins it without a new request
    again = await ffmpeg_push(source_url(server), freq_hz=1000, codec_args=MP3_PUSH)
    try:
        await wait_for(lambda: server.engine.channels["an-binh-1"].on_air.priority == 80)
    finally:
        again.kill()
        await again.wait()
