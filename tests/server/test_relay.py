from __future__ import annotations

import random
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from loa.loadtest.endpoint import SimulatedEndpoint
from loa.playout.inputs.relay import Backoff
from tests.audio import dominant_hz, tone_bytes
from tests.server.test_api import call
from tests.server.test_ingest import wait_for
from tests.upstream import http_upstream


def test_backoff_grows_with_jitter_and_caps() -> None:
    b = Backoff(initial_s=0.5, max_s=4.0, factor=2.0, jitter=0.5, rng=random.Random(1))
    delays = [b.next_delay_ns() / 1e9 for _ in range(8)]
    nominal = [0.5, 1, 2, 4, 4, 4, 4, 4]
    for d, n in zip(delays, nominal, strict=True):
        assert n * 0.5 <= d <= n
    assert len(set(delays)) == len(delays)  # jittered: a fleet does not reconnect in lockstep
    b.reset()
    assert b.next_delay_ns() <= 0.5e9


async def test_relay_of_another_station(make_server) -> None:  # type: ignore[no-untyped-def]
    province = await make_server()  # the provincial station: another Loa, live on loopback
    await call(province, "POST", "/api/v1/zones/huyen/requests",
               json={"source": {"kind": "tone", "freq_hz": 660}, "priority": 50})
    district = await make_server()
    url = f"http://127.0.0.1:{province.port}/zones/huyen/stream.ogg"
    status, body = await call(district, "POST", "/api/v1/zones/an-binh/requests",
                              json={"source": {"kind": "relay", "url": url}, "priority": 50})
    assert status == 201
    await wait_for(lambda: district.engine.channels["an-binh-1"].on_air.priority == 50)
    ep = SimulatedEndpoint(f"ws://127.0.0.1:{district.port}/zones/an-binh-1/ws", decode=True)
    async with aiohttp.ClientSession() as http:
        await ep.run(http, seconds=1.5)
    assert ep.report.gaps == 0
    assert dominant_hz(ep.decoder.pcm()[9600:]) == pytest.approx(660, rel=0.01)  # type: ignore[union-attr]
    # releasing the request stops the relay
    status, _ = await call(district, "DELETE", f"/api/v1/requests/{body['request']['id']}")
    assert status == 200 and not district.relays


async def test_relay_reconnects_when_the_upstream_ends(make_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clip = await tone_bytes(tmp_path / "clip.mp3", 1000, 1.0, ["-c:a", "libmp3lame"])
    hits = []

    async def upstream(request: web.Request) -> web.StreamResponse:
        hits.append(1)
        if len(hits) == 2:
            return web.Response(status=503)  # a failure in between: backoff, then try again
        resp = web.StreamResponse(headers={"Content-Type": "audio/mpeg"})
        await resp.prepare(request)
        await resp.write(clip)
        return resp

    runner, port = await http_upstream("/radio.mp3", upstream)
    try:
        server = await make_server()
        status, body = await call(server, "POST", "/api/v1/zones/huyen/requests",
                                  json={"source": {"kind": "relay",
                                                   "url": f"http://127.0.0.1:{port}/radio.mp3"},
                                        "priority": "fill"})
        assert status == 201
        relay = next(iter(server.relays.values()))
        await wait_for(lambda: relay.connects >= 2, timeout_s=15)
        assert relay.failures >= 2 and len(hits) >= 3
        assert "503" in relay.last_error or relay.last_error == "stream ended"
    finally:
        await runner.cleanup()


async def test_relay_url_must_be_http(server) -> None:  # type: ignore[no-untyped-def]
    status, body = await call(server, "POST", "/api/v1/zones/huyen/requests",
                              json={"source": {"kind": "relay", "url": "file:///etc/passwd"}})
    assert status == 400 and "http" in body["error"]
