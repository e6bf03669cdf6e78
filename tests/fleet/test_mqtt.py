"""The endpoint fleet over MQTT, against Loa's own broker (a Mosquitto it starts: "embedded")
and the machine's Mosquitto on 1883."""

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
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import aiomqtt
import numpy as np
import pytest

from loa.app import LoaServer
from loa.config import MqttConfig
from loa.loadtest.endpoint import SimulatedEndpoint
from loa.loadtest.mqtt_endpoint import MqttEndpoint
from loa.protocol.mqtt import Kind
from tests.audio import closed, dominant_hz, rms
from tests.server.test_alerts import fake_clock_server
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


async def login(server: LoaServer, eid: str) -> str:
    """A new MQTT password for ``eid``, returned once Loa's own broker takes it (at once with
    an external broker, which reads no registry)."""
    password = server.endpoints.rotate_secret(eid)
    if server.broker is not None:
        assert await server.broker.synced()
    return password


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
            root = server.fleet.topics.root  # a broker shared with other tests' loa-001...
            ep = MqttEndpoint(eid, await login(server, eid), host, port, topic_root=root,
                              telemetry_s=3600, client_id=f"{root}-{eid}")
            eps[eid] = ep
            tasks.append(asyncio.create_task(ep.run(stop)))
        await server.fleet.until(lambda: all(server.fleet.is_online(e) for e in ids))
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
    chunks = listener.decoder.chunks  # type: ignore[union-attr]  # decode=True: it has one
    marks: dict[str, int] = {}
    ear.on_command = lambda cmd: marks.setdefault(cmd["op"], len(chunks))
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
        await heard(listener, len(chunks) + 50)
        stop.set()
        await listening

    status, body = await call(server, "GET", f"/api/v1/commands?batch={batch}")
    assert body["summary"] == {"acked": 4}
    assert 0 < body["ack_ms"]["p50"] <= body["ack_ms"]["max"]  # each acknowledgement timed
    assert all(e.state.volume_pct == 50 for eid, e in eps.items() if eid in commune)
    assert eps["loa-005"].state.volume_pct == 70  # Xã Phú Mỹ was not addressed
    assert all(not e.state.acks for eid, e in eps.items() if eid not in commune)

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
        await login(server, "loa-003"), host, str(port), server.fleet.topics.root)
    try:
        await server.fleet.until(lambda: server.fleet.is_online("loa-003"))
        proc.send_signal(signal.SIGKILL)
        # by its last will (the reason below), not by the 10 s heartbeat timeout
        await server.fleet.until(lambda: not server.fleet.is_online("loa-003"), 10)
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
    server, clock = await fake_clock_server(
        tmp_path, mqtt=MqttConfig(listen_port=0, heartbeat_s=30, heartbeat_timeout_s=90))
    try:
        await asyncio.wait_for(server.fleet.connected.wait(), 10)
        host, port = broker_address(server)
        ep = MqttEndpoint("loa-002", await login(server, "loa-002"), host, port,
                          telemetry_s=3600)
        stop = asyncio.Event()
        task = asyncio.create_task(ep.run(stop))
        await server.fleet.until(lambda: server.fleet.is_online("loa-002"))
        clock.set_ns(clock.now_ns() + 60 * 10**9)
        server.fleet.tick()
        assert server.fleet.is_online("loa-002")  # 60 s of silence: still within 90 s
        await ep.send_telemetry()  # a heartbeat resets the count
        await server.fleet.until(lambda: bool(server.fleet.health["loa-002"].telemetry))
        clock.set_ns(clock.now_ns() + 89 * 10**9)
        server.fleet.tick()
        assert server.fleet.is_online("loa-002")
        clock.set_ns(clock.now_ns() + 2 * 10**9)
        server.fleet.tick()
        health = server.fleet.health["loa-002"]
        assert not health.online and "no word for 90 s" in health.reason
        await ep.send_telemetry()  # it speaks again: back online
        await server.fleet.until(lambda: server.fleet.is_online("loa-002"))
        server.fleet.flush_presence()
        history = server.store.presence(["loa-002"], 2e9)["loa-002"]
        assert [online for _, online in history] == [True, False, True]
        stop.set()
        await task
    finally:
        await server.stop()


def mqtt_connect_packet(client_id: str, username: str, password: str,
                        will: tuple[str, bytes] | None = None) -> bytes:
    """An MQTT 3.1.1 CONNECT, by hand, so a test controls every field (the will too)."""
    def s(b: bytes) -> bytes:
        return len(b).to_bytes(2, "big") + b

    flags = 0xC2  # username, password, clean session
    payload = s(client_id.encode())
    if will is not None:
        flags |= 0x04 | 0x08 | 0x20  # will flag, QoS 1, retained
        payload += s(will[0].encode()) + s(will[1])
    payload += s(username.encode()) + s(password.encode())
    body = s(b"MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big") + payload
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


async def connack(host: str, port: int, packet: bytes) -> tuple[int, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(packet)
    try:
        head = await asyncio.wait_for(reader.readexactly(4), 5)
    except (asyncio.IncompleteReadError, ConnectionError):
        return -1, writer  # closed without an answer: refused too
    assert head[0] == 0x20
    return head[3], writer


@pytest.fixture
async def private_mosquitto(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[int]]]:
    """A Mosquitto of the test's own, run with the password and ACL files Loa exports."""
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is required: run ./run test")
    procs: list[subprocess.Popen[bytes]] = []

    def launch(port: int, password_file: str, acl_file: str) -> subprocess.Popen[bytes]:
        (tmp_path / "passwd").write_text(password_file)
        (tmp_path / "acl").write_text(acl_file)
        os.chmod(tmp_path / "passwd", 0o600)
        (tmp_path / "mosquitto.conf").write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n"
            f"password_file {tmp_path / 'passwd'}\nacl_file {tmp_path / 'acl'}\n"
            "user root\nlog_dest stderr\nlog_type error\n")
        return subprocess.Popen(["mosquitto", "-c", str(tmp_path / "mosquitto.conf")],
                                stderr=subprocess.DEVNULL)

    async def start(port: int, password_file: str, acl_file: str) -> int:
        # files written and the broker spawned beside the loop
        procs.append(await asyncio.to_thread(launch, port, password_file, acl_file))
        return port

    yield start
    for p in procs:
        p.terminate()
        await asyncio.to_thread(p.wait, 5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("broker", ["embedded", "mosquitto-acl"])
async def test_endpoint_a_cannot_speak_or_listen_as_endpoint_b(
    make_server: Callable[..., Awaitable[LoaServer]],
    private_mosquitto: Callable[..., Awaitable[int]], broker: str,
) -> None:
    from loa.protocol.credentials import hash_password

    if broker == "embedded":
        server = await make_server(mqtt=MqttConfig(listen_port=0))
    else:
        port, server_pw = free_port(), secrets.token_urlsafe(12)
        server = await make_server(
            mqtt=MqttConfig(url=f"mqtt://loa-server:{server_pw}@127.0.0.1:{port}"))
    pw = {e: await login(server, e) for e in ("loa-001", "loa-002")}
    if broker != "embedded":
        status, files = await call(server, "GET", "/api/v1/mqtt/mosquitto")
        assert status == 200
        await private_mosquitto(
            port, files["password_file"] + f"loa-server:{hash_password(server_pw)}\n",
            files["acl_file"])
    await asyncio.wait_for(server.fleet.connected.wait(), 15)
    host, port = broker_address(server)
    topics = server.fleet.topics

    # unknown devices and wrong passwords are refused at the door
    for eid, password in (("loa-003", "wrong"), ("loa-999", "whatever"),
                          ("loa-001", pw["loa-002"])):
        rc, writer = await connack(host, port, mqtt_connect_packet(eid, eid, password))
        await closed(writer)
        assert rc != 0, eid
    # A may not leave a last will on B's presence
    rc, writer = await connack(host, port, mqtt_connect_packet(
        "loa-001", "loa-001", pw["loa-001"], (topics.topic("loa-002", Kind.STATE),
                                              b'{"online":false}')))
    writer.transport.abort()  # dies without a goodbye: a will, if taken, would fire now
    # (Mosquitto takes the CONNECT and checks the will's topic when it would send it: never)

    stop = asyncio.Event()
    b = MqttEndpoint("loa-002", pw["loa-002"], host, port, telemetry_s=3600)
    b_task = asyncio.create_task(b.run(stop))
    await server.fleet.until(lambda: server.fleet.is_online("loa-002"))
    async with aiomqtt.Client(host, port, username="loa-001", password=pw["loa-001"],
                              identifier="loa-001") as a:
        await a.subscribe(topics.topic("loa-002", Kind.CMD), qos=1)  # refused or never fed
        await a.subscribe(topics.topic("loa-001", Kind.CMD), qos=1)
        for kind, payload in ((Kind.STATE, {"online": False}),
                              (Kind.TELEMETRY, {"relay": "tripped", "supply_v": 3.0}),
                              (Kind.ACK, {"id": "c-forged", "ok": True})):
            await a.publish(topics.topic("loa-002", kind), json.dumps(payload), qos=1)
        await a.publish(topics.topic("loa-001", Kind.TELEMETRY), b'{"supply_v": 12.5}', qos=1)
        await server.fleet.until(lambda: "loa-001" in server.fleet.health
                                 and "supply_v" in server.fleet.health["loa-001"].telemetry)
        cmds = server.fleet.endpoint_command("loa-002", {"op": "mute"}, "test")
        await server.fleet.until(lambda: cmds[0].status == "acked")
        received = []
        while len(a.messages):
            received.append(await anext(a.messages))
        # nothing meant for B
        assert [(m.topic.value, m.payload, m.retain, m.qos) for m in received] == []
    assert server.fleet.is_online("loa-002"), "A's forged offline (or will) was delivered"
    telemetry = server.fleet.health["loa-002"].telemetry
    assert telemetry.get("relay") == "ok" and telemetry.get("supply_v") == 12.6  # B's own
    assert b.state.muted
    stop.set()
    await b_task
    server.fleet.flush_presence()
    await server.store.flush()
    history = await asyncio.to_thread(server.store.presence, ["loa-002"], time.time() + 60)
    assert [online for _, online in history["loa-002"]][:1] == [True]  # no will from A first


@pytest.mark.parametrize("broker", BROKERS)
async def test_bad_payloads_are_refused_counted_and_harm_nobody(
    fleet_of: Callable[..., Awaitable[tuple[LoaServer, dict[str, MqttEndpoint]]]],
    broker: str,
) -> None:
    server, eps = await fleet_of(broker, ["loa-001", "loa-002"])
    bad = eps["loa-001"]
    assert bad.client is not None
    topics = server.fleet.topics
    telemetry = topics.topic("loa-001", Kind.TELEMETRY)
    for payload in (b"not json at all", b"[1, 2, 3]", b'{"supply_v": "twelve"}',
                    b'{"underruns": -5}', b'{"relay": "melted"}', b'{"buffer_ms": true}',
                    b"\xff\xfe\x00", b'{"rssi_dbm": -50, "pad": "' + b"x" * 5000 + b'"}'):
        await bad.client.publish(telemetry, payload, qos=1)
    await bad.client.publish(topics.topic("loa-001", Kind.ACK), b'{"id": 7, "ok": "yes"}', qos=1)
    await bad.client.publish(topics.topic("loa-001", Kind.STATE), b'{"online": "maybe"}', qos=1)
    await bad.client.publish(telemetry, b'{"supply_v": 12.1, "future_field": [1]}', qos=1)
    await server.fleet.until(lambda: server.fleet.health["loa-001"].telemetry.get("supply_v")
                             == 12.1)
    c = server.counters
    assert c.get("mqtt_rejected", reason="json") == 3
    assert c.get("mqtt_rejected", reason="type") == 6
    assert c.get("mqtt_rejected", reason="size") == 1
    assert server.fleet.health["loa-001"].telemetry == {"supply_v": 12.1}  # unknown: dropped
    assert server.fleet.is_online("loa-001")  # "maybe" changed nothing
    # the control plane goes on: both still obey
    cmds = server.fleet.zone_command("an-binh-1", {"op": "volume", "volume_pct": 40}, "t")
    await server.fleet.until(lambda: all(c.status == "acked" for c in cmds))
    assert eps["loa-001"].state.volume_pct == eps["loa-002"].state.volume_pct == 40
    metrics = await metrics_text(server)
    assert 'loa_mqtt_rejected_total{reason="json"} 3.0' in metrics


async def metrics_text(server: LoaServer) -> str:
    from tests.server.test_api import auth, base

    async with aiohttp.ClientSession() as http:
        async with http.get(base(server) + "/metrics", headers=auth()) as resp:
            return await resp.text()


async def test_commands_are_retried_until_acknowledged_and_wait_for_offline_endpoints(
    tmp_path: Path,
) -> None:
    server, clock = await fake_clock_server(
        tmp_path, mqtt=MqttConfig(listen_port=0, retry_s=5, command_ttl_s=60))
    stop = asyncio.Event()
    tasks = []
    try:
        await asyncio.wait_for(server.fleet.connected.wait(), 10)
        host, port = broker_address(server)
        deaf = MqttEndpoint("loa-001", await login(server, "loa-001"), host, port,
                            telemetry_s=3600, ack=False)  # takes commands, never answers
        tasks.append(asyncio.create_task(deaf.run(stop)))
        await server.fleet.until(lambda: server.fleet.is_online("loa-001"))
        heard: list[int] = []
        arrived = asyncio.Event()

        def on_command(cmd: dict) -> None:
            heard.append(cmd["attempt"])
            arrived.set()

        async def until_heard(attempts: list[int]) -> None:
            async with asyncio.timeout(10):
                while heard != attempts:
                    arrived.clear()
                    await arrived.wait()

        deaf.on_command = on_command
        (cmd,) = server.fleet.endpoint_command("loa-001", {"op": "power", "on": False}, "t")
        (late,) = server.fleet.endpoint_command("loa-002", {"op": "reboot"}, "t")
        assert late.status == "pending"  # loa-002 is offline: it waits
        (vol1,) = server.fleet.endpoint_command("loa-002", {"op": "volume", "volume_pct": 30}, "t")
        (vol2,) = server.fleet.endpoint_command("loa-002", {"op": "volume", "volume_pct": 55}, "t")
        (mute,) = server.fleet.endpoint_command("loa-002", {"op": "mute"}, "t")
        assert vol1.status == "superseded"  # only the newest volume goes; the mute as well
        await until_heard([1])
        clock.set_ns(clock.now_ns() + 4 * 10**9)
        server.fleet.tick()
        assert cmd.attempts == 1  # not yet: retry_s is 5
        clock.set_ns(clock.now_ns() + 1 * 10**9)
        server.fleet.tick()
        await until_heard([1, 2])
        deaf.ack = True  # the firmware recovers
        clock.set_ns(clock.now_ns() + 5 * 10**9)
        server.fleet.tick()
        await server.fleet.until(lambda: cmd.status == "acked")
        assert cmd.attempts == 3 and not deaf.state.power

        back = MqttEndpoint("loa-002", await login(server, "loa-002"), host, port,
                            telemetry_s=3600)
        tasks.append(asyncio.create_task(back.run(stop)))
        await server.fleet.until(lambda: late.status == vol2.status == mute.status == "acked")
        assert back.state.volume_pct == 55 and back.state.muted  # nothing lost while offline
        (never,) = server.fleet.endpoint_command("loa-003", {"op": "mute"}, "t")
        clock.set_ns(clock.now_ns() + 61 * 10**9)
        server.fleet.tick()
        assert never.status == "expired" and "never came online" in (never.error or "")
        status, body = await call(server, "GET", f"/api/v1/commands/{never.id}")
        assert body["command"]["status"] == "expired"
    finally:
        stop.set()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await server.stop()


async def test_an_external_broker_over_tls_with_a_password(
    make_server: Callable[..., Awaitable[LoaServer]], tmp_path: Path,
) -> None:
    """mqtts:// to a Mosquitto of the test's own, with a self-signed CA Loa is told to trust;
    a wrong server password is refused and said so in the status."""
    from loa.protocol.credentials import hash_password

    if shutil.which("openssl") is None:
        pytest.fail("openssl is required for the TLS test")
    await asyncio.to_thread(  # key generation and the process itself: beside the loop
        subprocess.run, ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
        check=True, capture_output=True)
    port, server_pw = free_port(), secrets.token_urlsafe(12)
    (tmp_path / "passwd").write_text(f"loa-server:{hash_password(server_pw)}\n")
    (tmp_path / "acl").write_text("user loa-server\ntopic readwrite loa/#\n")
    (tmp_path / "tls.conf").write_text(
        f"listener {port} 127.0.0.1\ncertfile {tmp_path / 'cert.pem'}\n"
        f"keyfile {tmp_path / 'key.pem'}\nallow_anonymous false\npersistence false\n"
        f"password_file {tmp_path / 'passwd'}\nacl_file {tmp_path / 'acl'}\nuser root\n"
        "log_dest stderr\nlog_type error\n")
    broker = await asyncio.to_thread(  # spawned beside the loop
        subprocess.Popen, ["mosquitto", "-c", str(tmp_path / "tls.conf")],
        stderr=subprocess.DEVNULL)
    try:
        ca = str(tmp_path / "cert.pem")
        server = await make_server(mqtt=MqttConfig(
            url=f"mqtts://loa-server:{server_pw}@127.0.0.1:{port}", ca_file=ca))
        await asyncio.wait_for(server.fleet.connected.wait(), 15)
        assert server.fleet.broker_url == f"mqtts://127.0.0.1:{port}"
        assert server_pw not in json.dumps(server.config.redacted())
        wrong = await make_server(mqtt=MqttConfig(
            url=f"mqtts://loa-server:wrong@127.0.0.1:{port}", ca_file=ca))
        async with asyncio.timeout(15):
            while wrong.fleet.last_error is None:  # noqa: ASYNC110  # no event says it failed
                await asyncio.sleep(0.05)
        assert not wrong.fleet.connected.is_set()
        status, body = await call(wrong, "GET", "/api/v1/status")
        assert body["fleet"]["connected"] is False and body["fleet"]["last_error"]
    finally:
        broker.terminate()
        await asyncio.to_thread(broker.wait, 5)


async def test_a_taken_broker_port_is_a_clear_start_up_error(
    make_server: Callable[..., Awaitable[LoaServer]],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as err:
            await make_server(mqtt=MqttConfig(listen_port=port))
    message = str(err.value)
    assert f"127.0.0.1:{port} is taken" in message and 'url = "mqtt://' in message


def test_mqtt_settings_are_checked_and_the_password_never_shown() -> None:
    from loa.config import ConfigError, apply_toml, load_config

    cfg = load_config(None, {"LOA_MQTT_URL": "mqtts://loa-server:s3cret@broker.example:8883"})
    assert not cfg.mqtt.embedded
    assert "s3cret" not in json.dumps(cfg.redacted())
    assert cfg.redacted()["mqtt"] == "mqtts://loa-server:***@broker.example:8883"
    for bad in ({"url": "http://x"}, {"topic_root": "a/b"}, {"topic_root": "#"},
                {"heartbeat_s": 60, "heartbeat_timeout_s": 30}, {"retry_s": 0}):
        with pytest.raises(ConfigError):
            apply_toml(cfg, {"mqtt": bad})
    got = apply_toml(cfg, {"mqtt": {"listen": "0.0.0.0:1883", "topic_root": "tinh"},
                            "alarms": {"offline_minutes": 5}})
    assert (got.mqtt.listen_host, got.mqtt.listen_port, got.mqtt.topic_root) == \
        ("0.0.0.0", 1883, "tinh")
    assert got.alarms.offline_minutes == 5


async def test_the_server_rides_out_a_broker_restart_and_raises_an_alarm_meanwhile(
    make_server: Callable[..., Awaitable[LoaServer]], tmp_path: Path,
) -> None:
    from loa.config import AlarmConfig

    port = free_port()
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "user root\nlog_dest stderr\nlog_type error\n")

    def start_broker() -> subprocess.Popen[bytes]:
        return subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)

    broker = start_broker()
    stop = asyncio.Event()
    try:
        server = await make_server(mqtt=MqttConfig(url=f"mqtt://127.0.0.1:{port}"),
                                   alarms=AlarmConfig(hold_s=0))
        await asyncio.wait_for(server.fleet.connected.wait(), 15)
        ep = MqttEndpoint("loa-004", "any", "127.0.0.1", port, telemetry_s=3600)
        first = asyncio.create_task(ep.run(stop))
        await server.fleet.until(lambda: server.fleet.is_online("loa-004"))

        broker.kill()  # the station's broker dies
        await asyncio.to_thread(broker.wait, 5)
        async with asyncio.timeout(15):
            while server.fleet.connected.is_set():  # noqa: ASYNC110  # no event says it is lost
                await asyncio.sleep(0.05)
        with pytest.raises(aiomqtt.MqttError):
            await first  # the endpoint lost it too
        await server.check_alarms()
        assert [a.kind for a in server.alarms.active()] == ["broker_down"]
        (cmd,) = server.fleet.endpoint_command("loa-004", {"op": "volume", "volume_pct": 33}, "t")

        broker = start_broker()  # back on the same port: the server reconnects by itself
        await asyncio.wait_for(server.fleet.connected.wait(), 20)
        again = asyncio.create_task(ep.run(stop))  # and the device reconnects
        await server.fleet.until(lambda: cmd.status == "acked", 15)
        assert ep.state.volume_pct == 33  # the command made while the broker was down arrived
        await server.check_alarms()
        assert "broker_down" not in [a.kind for a in server.alarms.active()]
        stop.set()
        await again
    finally:
        stop.set()
        broker.kill()
        await asyncio.to_thread(broker.wait, 5)
