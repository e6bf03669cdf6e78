"""The endpoint fleet over MQTT, against the embedded broker and a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import aiomqtt
import numpy as np
import pytest

from loa.config import MqttConfig
from loa.fleet.protocol import Kind, Topics
from loa.loadtest.endpoint import SimulatedEndpoint
from loa.loadtest.mqtt_endpoint import MqttEndpoint
from loa.server.app import LoaServer
from tests.audio import dominant_hz, rms
from tests.server.test_api import call

MOSQUITTO_URL = "mqtt://127.0.0.1:1883"  # the machine's own broker (./run test starts it)
BROKERS = ["embedded", "mosquitto"]


def mqtt_config(broker: str, **kw: object) -> MqttConfig:
    root = f"loatest{secrets.token_hex(4)}"  # a broker shared with others: our own tree
    if broker == "embedded":
        return MqttConfig(listen_port=0, topic_root=root, **kw)  # type: ignore[arg-type]
    return MqttConfig(url=MOSQUITTO_URL, topic_root=root, **kw)  # type: ignore[arg-type]


def broker_address(server: LoaServer) -> tuple[str, int]:
    p = server.fleet.client_params
    return p["hostname"], p["port"]


@pytest.fixture
async def fleet_of(make_server: Callable[..., Awaitable[LoaServer]]
                   ) -> AsyncIterator[Callable[..., Awaitable[tuple[LoaServer,
                                                                  dict[str, MqttEndpoint]]]]]:
    """A server on the given broker and its endpoints online over MQTT."""
    tasks: list[asyncio.Task[None]] = []
    stop = asyncio.Event()

    async def start(broker: str, ids: list[str], **server_kw: object
                    ) -> tuple[LoaServer, dict[str, MqttEndpoint]]:
        server = await make_server(mqtt=mqtt_config(broker), **server_kw)
        await asyncio.wait_for(server.fleet.connected.wait(), 10)
        host, port = broker_address(server)
        eps = {}
        for eid in ids:
            ep = MqttEndpoint(eid, server.endpoints.rotate_secret(eid), host, port,
                              topic_root=server.fleet.topics.root, telemetry_s=3600)
            eps[eid] = ep
            tasks.append(asyncio.create_task(ep.run(stop)))
        await server.fleet.until(lambda: all(server.fleet._is_online(e) for e in ids))
        return server, eps

    yield start
    stop.set()
    if tasks:
        await asyncio.wait(tasks, timeout=5)


async def heard(listener: SimulatedEndpoint, frames: int, timeout_s: float = 10.0) -> None:
    """Wait until the listener has decoded ``frames`` 20 ms frames (woken per packet)."""
    assert listener.decoder is not None
    arrived = asyncio.Event()
    listener.on_packet = lambda _ep, _pkt: arrived.set()
    async with asyncio.timeout(timeout_s):
        while len(listener.decoder.chunks) < frames:
            arrived.clear()
            await arrived.wait()


def level_db(pcm: np.ndarray) -> float:
    return 20 * float(np.log10(max(rms(pcm), 1e-9)))


@pytest.mark.parametrize("broker", BROKERS)
async def test_a_zone_volume_command_is_acknowledged_by_all_and_heard_at_the_endpoint(
    fleet_of: Callable[..., Awaitable[tuple[LoaServer, dict[str, MqttEndpoint]]]],
    broker: str,
) -> None:
    commune = ["loa-001", "loa-002", "loa-003", "loa-004"]  # Xã An Bình, both villages
    server, eps = await fleet_of(broker, commune + ["loa-005"])
    status, _ = await call(server, "POST", "/api/v1/zones/huyen/requests",
                           json={"source": {"kind": "tone", "freq_hz": 880}})
    assert status == 201

    ear = eps["loa-001"]
    listener = SimulatedEndpoint(f"ws://127.0.0.1:{server.port}/endpoints/loa-001/ws",
                                 decode=True, gain=ear.gain)
    assert listener.decoder is not None
    marks: dict[str, int] = {}
    ear.on_command = lambda cmd: marks.setdefault(cmd["op"], len(listener.decoder.chunks))
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as http:
        listening = asyncio.create_task(listener.run(http, 30, stop))
        await heard(listener, 50)  # 1 s of audio

        status, body = await call(server, "POST", "/api/v1/zones/an-binh/commands",
                                  json={"op": "volume", "volume_pct": 50})
        assert status == 202
        batch = body["batch"]
        assert sorted(c["endpoint"] for c in body["commands"]) == commune
        await server.fleet.until(lambda: all(c.status == "acked"
                                             for c in server.fleet.batch(batch)))
        after = len(listener.decoder.chunks)
        await heard(listener, after + 50)
        stop.set()
        await listening

    status, body = await call(server, "GET", f"/api/v1/commands?batch={batch}")
    assert body["summary"] == {"acked": 4}
    assert body["ack_ms"]["max"] < 5000
    assert all(e.state.volume_pct == 50 for eid, e in eps.items() if eid in commune)
    assert eps["loa-005"].state.volume_pct == 70  # Xã Phú Mỹ was not addressed
    assert all(not e.state.acks for eid, e in eps.items() if eid not in commune)

    chunks = listener.decoder.chunks
    cut = marks["volume"]
    before = np.concatenate(chunks[cut - 40:cut - 5])
    later = np.concatenate(chunks[cut + 5:cut + 40])
    assert abs(dominant_hz(later) - 880) < 10
    drop_db = level_db(later) - level_db(before)
    expected_db = 40 * np.log10(50 / 70)  # audio taper: gain = (volume/100)², 70 % → 50 %
    assert abs(drop_db - expected_db) < 1.0, (drop_db, expected_db)
    status, body = await call(server, "GET", "/api/v1/endpoints/loa-001")
    assert body["endpoint"]["effective_volume_pct"] == 50
    assert body["endpoint"]["presence"]["state"]["volume_pct"] == 50


@pytest.mark.parametrize("broker", BROKERS)
async def test_a_killed_endpoint_goes_offline_at_once_by_its_last_will(
    make_server: Callable[..., Awaitable[LoaServer]], broker: str,
) -> None:
    server = await make_server(mqtt=mqtt_config(broker, heartbeat_s=5, heartbeat_timeout_s=10))
    await asyncio.wait_for(server.fleet.connected.wait(), 10)
    host, port = broker_address(server)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loa.loadtest.mqtt_endpoint", "loa-003",
        server.endpoints.rotate_secret("loa-003"), host, str(port), server.fleet.topics.root)
    try:
        await server.fleet.until(lambda: server.fleet._is_online("loa-003"))
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        proc.send_signal(signal.SIGKILL)
        await server.fleet.until(lambda: not server.fleet._is_online("loa-003"), 10)
        assert loop.time() - killed_at < 10  # within the heartbeat timeout
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    status, body = await call(server, "GET", "/api/v1/endpoints?online=false")
    offline = {e["id"]: e for e in body["endpoints"]}
    assert "last will" in offline["loa-003"]["presence"]["reason"]
    status, body = await call(server, "GET", "/api/v1/endpoints/loa-003")
    assert body["endpoint"]["presence"]["online"] is False


async def test_an_endpoint_that_falls_silent_goes_offline_after_the_heartbeat_timeout(
    tmp_path: Path,
) -> None:
    """A connection that stays up but says nothing (a hung device behind NAT): only the
    heartbeat timeout tells. The clock is fake; the MQTT traffic is real."""
    from tests.server.test_alerts import fake_clock_server

    server, clock = await fake_clock_server(
        tmp_path, mqtt=MqttConfig(listen_port=0, heartbeat_s=30, heartbeat_timeout_s=90))
    try:
        await asyncio.wait_for(server.fleet.connected.wait(), 10)
        host, port = broker_address(server)
        ep = MqttEndpoint("loa-002", server.endpoints.rotate_secret("loa-002"), host, port,
                          telemetry_s=3600)
        stop = asyncio.Event()
        task = asyncio.create_task(ep.run(stop))
        await server.fleet.until(lambda: server.fleet._is_online("loa-002"))
        clock.set_ns(clock.now_ns() + 60 * 10**9)
        server.fleet.tick()
        assert server.fleet._is_online("loa-002")  # 60 s of silence: still within 90 s
        await ep.send_telemetry()  # a heartbeat resets the count
        await server.fleet.until(lambda: bool(server.fleet.health["loa-002"].telemetry))
        clock.set_ns(clock.now_ns() + 89 * 10**9)
        server.fleet.tick()
        assert server.fleet._is_online("loa-002")
        clock.set_ns(clock.now_ns() + 2 * 10**9)
        server.fleet.tick()
        health = server.fleet.health["loa-002"]
        assert not health.online and "no word for 90 s" in health.reason
        await ep.send_telemetry()  # it speaks again: back online
        await server.fleet.until(lambda: server.fleet._is_online("loa-002"))
        server.fleet.flush_presence()
        history = server.store.presence(["loa-002"], 2e9)["loa-002"]
        assert [online for _, online in history] == [True, False, True]
        stop.set()
        await task
    finally:
        await server.stop()
