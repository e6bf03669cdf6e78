from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiohttp
import pytest

from loa.app import LoaServer
from loa.loadtest.endpoint import SimulatedEndpoint
from tests.audio import dominant_hz, tone_file
from tests.conftest import auth
from tests.server.test_ingest import base, wait_for


async def call(server: LoaServer, method: str, path: str, *, json: object = None,
               headers: dict[str, str] | None = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, base(server) + path, json=json,
                                headers=auth() if headers is None else headers) as resp:
            return resp.status, await resp.json()


@pytest.mark.parametrize("path", ["/api/v1/status", "/api/v1/zones", "/api/v1/endpoints"])
async def test_every_api_call_needs_a_valid_token(server: LoaServer, path: str) -> None:
    status, body = await call(server, "GET", path, headers={"Accept-Language": "en"})
    assert status == 401 and "token" in body["error"]
    status, _ = await call(server, "GET", path, headers={"Authorization": "Bearer wrong"})
    assert status == 401
    status, _ = await call(server, "POST", "/api/v1/zones/huyen/live", headers={},
                           json={"mount": "studio"})
    assert status == 401


async def test_first_start_makes_an_admin_token_and_keeps_only_its_hash(tmp_path: Path) -> None:
    from dataclasses import replace

    from loa.config import Config, MqttConfig

    cfg = replace(Config(), listen_host="127.0.0.1", listen_port=0, data_dir=tmp_path / "d",
                  demo=False, mqtt=MqttConfig(listen_port=0))
    never = await asyncio.to_thread(LoaServer, cfg)  # opens its database: beside the loop
    assert never.new_admin_token
    await never.stop()  # never started: it keeps no token it did not show
    assert not await asyncio.to_thread((tmp_path / "d" / "tokens.json").exists)
    s = await asyncio.to_thread(LoaServer, cfg)
    await s.start()
    token = s.new_admin_token
    assert token and len(token) >= 32 and token != never.new_admin_token
    stored = await asyncio.to_thread((tmp_path / "d" / "tokens.json").read_text)
    assert token not in stored
    await s.stop()
    again = await asyncio.to_thread(LoaServer, cfg)  # a restart: the same token works,
    try:                                              # no new one is printed
        assert again.new_admin_token is None
        assert again.tokens.authenticate(token) is not None
        assert again.tokens.authenticate(token + "x") is None
    finally:
        await again.stop()


async def test_zones_tree(server: LoaServer) -> None:
    status, body = await call(server, "GET", "/api/v1/zones")
    assert status == 200
    zones = {z["id"]: z for z in body["zones"]}
    assert zones["huyen"]["children"] == ["an-binh", "phu-my"]
    assert zones["an-binh-1"]["parent"] == "an-binh"


async def test_live_takeover_and_release_over_the_api(server: LoaServer) -> None:
    status, body = await call(server, "POST", "/api/v1/zones/huyen/requests",
                              json={"source": {"kind": "tone", "freq_hz": 440},
                                    "priority": "fill"})
    assert status == 201
    status, body = await call(server, "POST", "/api/v1/zones/an-binh/live",
                              json={"mount": "studio"})
    assert status == 201 and body["request"]["priority"] == 80
    status, again = await call(server, "POST", "/api/v1/zones/an-binh/live",
                               json={"mount": "studio"})
    assert status == 200 and again["request"]["id"] == body["request"]["id"]  # idempotent
    status, st = await call(server, "GET", "/api/v1/status")
    zone = next(z for z in st["zones"] if z["zone"] == "an-binh-2")
    assert [r["priority"] for r in zone["requests"]] == [10, 80]
    status, body = await call(server, "DELETE", "/api/v1/zones/an-binh/live")
    assert status == 200 and len(body["released"]) == 1
    status, st = await call(server, "GET", "/api/v1/status")
    zone = next(z for z in st["zones"] if z["zone"] == "an-binh-2")
    assert [r["priority"] for r in zone["requests"]] == [10]


async def test_bad_requests_get_clear_errors(server: LoaServer) -> None:
    status, body = await call(server, "POST", "/api/v1/zones/nowhere/live", json={})
    assert status == 404 and "nowhere" in body["error"]
    status, body = await call(server, "POST", "/api/v1/zones/huyen/requests",
                              json={"source": {"kind": "file", "path": "../../etc/passwd"}})
    assert status == 400 and "media folder" in body["error"]
    status, body = await call(server, "POST", "/api/v1/zones/huyen/requests",
                              json={"source": {"kind": "tone"}, "priority": 101})
    assert status == 400 and "priority" in body["error"]
    status, body = await call(server, "POST", "/api/v1/zones/huyen/requests",
                              json={"source": {"kind": "warp"}})
    assert status == 400 and "warp" in body["error"]
    async with aiohttp.ClientSession() as http:
        async with http.post(base(server) + "/api/v1/zones/huyen/live", data=b"{not json",
                             headers=auth()) as resp:
            assert resp.status == 400


async def test_a_file_plays_from_the_media_folder(server: LoaServer, tmp_path: Path) -> None:
    src = await tone_file(tmp_path / "notice.mp3", 700, 3.0, ["-c:a", "libmp3lame"])
    await asyncio.to_thread(shutil.copy, src, server.media_dir / "notice.mp3")
    bad = server.media_dir / "fake.mp3"
    bad.write_text("not audio at all\n" * 100)
    status, body = await call(server, "POST", "/api/v1/zones/phu-my/requests",
                              json={"source": {"kind": "file", "path": "fake.mp3"}})
    assert status == 400 and "fake.mp3" in body["error"]
    status, body = await call(server, "POST", "/api/v1/zones/phu-my/requests",
                              json={"source": {"kind": "file", "path": "notice.mp3"}})
    assert status == 201
    ep = SimulatedEndpoint(f"ws://127.0.0.1:{server.port}/zones/phu-my-1/ws", decode=True)
    async with aiohttp.ClientSession() as http:
        await ep.run(http, seconds=1.0)
    assert dominant_hz(ep.decoder.pcm()[4800:]) == pytest.approx(700, rel=0.01)  # type: ignore[union-attr]


async def test_moving_an_endpoint_needs_no_reconnect(server: LoaServer) -> None:
    await call(server, "POST", "/api/v1/zones/an-binh/requests",
               json={"source": {"kind": "tone", "freq_hz": 500}, "priority": 50})
    await call(server, "POST", "/api/v1/zones/phu-my/requests",
               json={"source": {"kind": "tone", "freq_hz": 900}, "priority": 50})
    ep = SimulatedEndpoint(f"ws://127.0.0.1:{server.port}/endpoints/loa-001/ws", decode=True)
    async with aiohttp.ClientSession() as http:
        listening = asyncio.create_task(ep.run(http, seconds=2.0))
        await wait_for(lambda: ep.report.packets >= 50)
        status, body = await call(server, "PATCH", "/api/v1/endpoints/loa-001",
                                  json={"zone": "phu-my-2"})
        assert status == 200 and body["endpoint"]["connections"] == 1
        report = await listening
    assert report.error is None
    assert any(t.get("type") == "zone" and t.get("zone") == "phu-my-2" for t in report.texts)
    pcm = ep.decoder.pcm()  # type: ignore[union-attr]
    assert dominant_hz(pcm[4800:48000]) == pytest.approx(500, rel=0.01)
    assert dominant_hz(pcm[-48000:]) == pytest.approx(900, rel=0.01)


async def test_unknown_streams_are_404(server: LoaServer) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/zones/nowhere/stream.ogg", "/endpoints/nobody/stream.mp3",
                     "/endpoints/nobody/ws"):
            async with http.get(base(server) + path) as resp:
                assert resp.status == 404, path


async def test_prometheus_metrics_need_the_token_and_say_what_plays(server: LoaServer) -> None:
    await call(server, "POST", "/api/v1/zones/phu-my/requests",
               json={"source": {"kind": "tone", "freq_hz": 500}, "priority": 50})
    ep = SimulatedEndpoint(f"ws://127.0.0.1:{server.port}/zones/phu-my-1/ws")
    async with aiohttp.ClientSession() as http:
        listening = asyncio.create_task(ep.run(http, seconds=1.0))
        await wait_for(lambda: ep.report.packets > 5)
        async with http.get(base(server) + "/metrics") as resp:
            assert resp.status == 401
        async with http.get(base(server) + "/metrics", headers=auth()) as resp:
            assert resp.status == 200
            text = await resp.text()
        await listening
    assert 'loa_listeners{format="ws",zone="phu-my-1"} 1.0' in text
    assert 'loa_zone_on_air_priority{zone="phu-my-2"} 50.0' in text
    assert 'loa_encoders_created_total{codec="opus"} 1.0' in text
    assert "loa_server_latency_ms" in text and "loa_schedule_lateness_max_seconds" in text
    sent = next(float(line.split()[-1]) for line in text.splitlines()
                if line.startswith('loa_packets_sent_total{format="ws",zone="phu-my-1"}'))
    assert sent >= 5  # what the listener had received by then, at least
    assert 'loa_encoder_cpu_seconds_total{codec="opus"}' in text
    assert "loa_alert_reach_seconds_bucket" in text and "loa_command_ack_seconds_count" in text
    assert 'loa_endpoints_online{zone="phu-my"} 0.0' in text
