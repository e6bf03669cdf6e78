"""Loa's own MQTT broker (a Mosquitto it starts and supervises), held to MQTT 3.1.1 and 5 with
real clients: ``mosquitto_sub``/``mosquitto_pub`` with ``-V 5`` and with a duplicate ``-i``,
raw sockets for connections that never log in, and the registry's credentials and ACL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiomqtt
import pytest

from loa.app import LoaServer
from loa.config import MqttConfig
from loa.control.endpoints import EndpointRegistry
from loa.control.fleet.broker import (
    PROBE_USER,
    SERVER_USER,
    BrokerError,
    MosquittoBroker,
    connect_packet,
    log_level,
)
from loa.core.counters import Counters
from loa.core.zones import Zone, ZoneTree
from loa.loadtest.mqtt_endpoint import MqttEndpoint
from loa.protocol.mqtt import Kind, Topics
from tests.audio import closed
from tests.fleet.test_mqtt import broker_address, connack, login, mqtt_connect_packet
from tests.server.test_api import call

CLOSE_WAIT = "08"  # the state column of /proc/net/tcp


def client(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required (Debian's mosquitto-clients, coreutils): "
                    "run ./run test")
    return path


async def spawn(*argv: str) -> asyncio.subprocess.Process:
    """A client whose output (its ``-d`` trace too) comes a line at a time: on a pipe the C
    library would hold it until exit."""
    return await asyncio.create_subprocess_exec(
        client("stdbuf"), "-oL", *argv, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def ended(proc: asyncio.subprocess.Process) -> None:
    """Kill a client and reap it (SIGTERM is not enough: a ``mosquitto_sub`` that has lost its
    broker keeps trying to reconnect)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    await proc.communicate()


async def line_with(proc: asyncio.subprocess.Process, text: str, timeout_s: float = 10.0
                    ) -> str:
    """The next line of the client's output that holds ``text`` (its ``-d`` trace included)."""
    assert proc.stdout is not None
    async with asyncio.timeout(timeout_s):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError(f"the client ended before saying {text!r}")
            if text in line:
                return line


async def session(host: str, port: int, packet: bytes
                  ) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    """Log in with a hand-made CONNECT: (CONNACK return code or -1, reader, writer)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(packet)
    try:
        head = await asyncio.wait_for(reader.readexactly(4), 5)
    except (asyncio.IncompleteReadError, ConnectionError):
        return -1, reader, writer
    assert head[0] == 0x20
    return head[3], reader, writer


async def closed_by_broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Wait until the broker closes the session (EOF), then close our side."""
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    await writer.wait_closed()


def sub_argv(server: LoaServer, eid: str, password: str, topic: str, *extra: str) -> list[str]:
    host, port = broker_address(server)
    return [client("mosquitto_sub"), "-h", host, "-p", str(port), "-u", eid, "-P", password,
            "-t", topic, "-q", "1", "-d", *extra]


async def test_an_mqtt_5_device_connects_and_gets_its_commands(
    make_server: Callable[..., Awaitable[LoaServer]],
) -> None:
    """MQTT 5 (the protocol level amqtt never answered): ``mosquitto_pub -V 5`` says the device
    is online, ``mosquitto_sub -V 5`` gets the command the server sends it."""
    server = await make_server()
    await asyncio.wait_for(server.fleet.connected.wait(), 10)
    host, port = broker_address(server)
    topics = server.fleet.topics
    password = await login(server, "loa-002")
    said = await spawn(client("mosquitto_pub"), "-V", "5", "-h", host, "-p", str(port),
                       "-u", "loa-002", "-P", password, "-i", "loa-002", "-q", "1", "-r",
                       "-t", topics.topic("loa-002", Kind.STATE), "-m", '{"online": true}')
    out, _ = await said.communicate()
    assert said.returncode == 0, out
    await server.fleet.until(lambda: server.fleet.is_online("loa-002"))
    sub = await spawn(*sub_argv(server, "loa-002", password, topics.topic("loa-002", Kind.CMD),
                                "-V", "5", "-i", "loa-002", "-C", "1"))
    try:
        assert "CONNACK (0)" in await line_with(sub, "CONNACK")
        await line_with(sub, "Subscribed")
        (cmd,) = server.fleet.endpoint_command("loa-002", {"op": "volume", "volume_pct": 42},
                                               "test")
        got = json.loads(await line_with(sub, '"op"'))
        assert (got["id"], got["op"], got["volume_pct"]) == (cmd.id, "volume", 42)
        await asyncio.wait_for(sub.wait(), 10)  # -C 1: one message, then a clean exit
        assert sub.returncode == 0
    finally:
        await ended(sub)


async def test_a_second_login_with_the_same_client_id_drops_the_first(
    make_server: Callable[..., Awaitable[LoaServer]], caplog: pytest.LogCaptureFixture,
) -> None:
    """MQTT 3.1.1 §3.1.4-2: cloned firmware, two devices with one client id; the older
    session is closed (the clone's libmosquitto reconnects and closes the other's in turn,
    each time logged). A client id is the username here, so a clone with another id too."""
    server = await make_server()
    await asyncio.wait_for(server.fleet.connected.wait(), 10)
    host, port = broker_address(server)
    password = await login(server, "loa-001")
    cmd_topic = server.fleet.topics.topic("loa-001", Kind.CMD)
    caplog.set_level(logging.WARNING, "loa.control.fleet.broker")

    first = await spawn(*sub_argv(server, "loa-001", password, cmd_topic, "-i", "loa-001"))
    clone = None
    try:
        await line_with(first, "Subscribed")
        clone = await spawn(*sub_argv(server, "loa-001", password, cmd_topic, "-V", "5",
                                      "-i", "loa-001"))
        await line_with(clone, "Subscribed")
        # the first was dropped: its client logs in again
        assert "sending CONNECT" in await line_with(first, "sending CONNECT")
    finally:
        await ended(first)
        if clone is not None:
            await ended(clone)
    assert any("already connected, closing old connection" in r.getMessage()
               for r in caplog.records), "the take-over is in Loa's log"

    # a clone with another client id is the same endpoint: one session still
    rc, old_reader, old = await session(host, port,
                                        mqtt_connect_packet("id-a", "loa-001", password))
    assert rc == 0
    rc, _, new = await session(host, port, mqtt_connect_packet("id-b", "loa-001", password))
    assert rc == 0
    await closed_by_broker(old_reader, old)
    new.close()
    await new.wait_closed()


async def test_connections_that_never_log_in_are_closed_and_leave_nothing_behind(
    make_server: Callable[..., Awaitable[LoaServer]],
) -> None:
    """600 connect-and-close cycles (with and without a CONNECT) leave no socket of the
    broker in CLOSE-WAIT (amqtt left 308), and a connection that never sends CONNECT stops
    nobody from logging in meanwhile. (Mosquitto itself drops such a connection after 1.5 ×
    its default keepalive, ~90 s: its own behaviour, not waited for here — it cost the suite
    a minute and a half.)"""
    server = await make_server()
    await asyncio.wait_for(server.fleet.connected.wait(), 10)
    host, port = broker_address(server)
    password = await login(server, "loa-001")
    silent_reader, silent = await asyncio.open_connection(host, port)

    for i in range(600):
        _, writer = await asyncio.open_connection(host, port)
        if i % 2:
            writer.write(mqtt_connect_packet(f"cycle-{i}", "loa-001", password))
            await writer.drain()
        writer.close()
        await writer.wait_closed()
    await broker_turns(server, host, port, password)
    assert await close_wait_left(port) == 0

    assert not silent_reader.at_eof()  # the silent one is still open: it held nobody up
    silent.close()
    await silent.wait_closed()
    await broker_turns(server, host, port, password)
    assert await close_wait_left(port) == 0


async def broker_turns(server: LoaServer, host: str, port: int, password: str) -> None:
    """A login and a subscription: two answers, two turns of the broker's loop, by which it
    has read every close that reached it before them (a close is read on the broker's next
    turn, not when our side's ``wait_closed`` returns)."""
    async with aiomqtt.Client(host, port, username="loa-001", password=password,
                              identifier="loa-001") as c:
        await c.subscribe(server.fleet.topics.topic("loa-001", Kind.CMD), qos=1)


async def close_wait_left(port: int, within_s: float = 5.0) -> int:
    """``close_wait(port)`` once it is 0, or after ``within_s`` of looking (20 looks a
    second): the broker closes its side when its loop next turns, which a loaded machine may
    put off past the turns ``broker_turns`` waits for. A socket it never closes (amqtt's
    308) is still counted."""
    deadline = time.monotonic() + within_s
    for _ in range(int(within_s * 20)):
        left = await asyncio.to_thread(close_wait, port)
        if not left or time.monotonic() >= deadline:
            return left
        await asyncio.sleep(0.05)
    return await asyncio.to_thread(close_wait, port)


def close_wait(port: int) -> int:
    """Sockets on local ``port`` in CLOSE-WAIT (the peer closed, we never did): blocking."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.read().splitlines()[1:]:
                fields = row.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == CLOSE_WAIT:
                    count += 1
    return count


async def test_a_new_password_or_a_removal_takes_effect_before_the_api_answers(
    make_server: Callable[..., Awaitable[LoaServer]],
) -> None:
    """Credentials are the registry's: the API's answer comes once the broker has them, so the
    new password logs in at once, and the old one, or a removed endpoint's, is refused and
    its open session closed."""
    server = await make_server()
    host, port = broker_address(server)
    status, body = await call(server, "POST", "/api/v1/endpoints",
                              json={"id": "loa-201", "zone": "an-binh-1"})
    assert status == 201
    first = body["mqtt"]["password"]
    rc, reader, writer = await session(host, port,
                                       mqtt_connect_packet("loa-201", "loa-201", first))
    assert rc == 0  # at once: no retry

    status, body = await call(server, "POST", "/api/v1/endpoints/loa-201/credentials")
    assert status == 200
    second = body["mqtt"]["password"]
    await closed_by_broker(reader, writer)  # dropped at the reload
    rc, writer = await connack(host, port, mqtt_connect_packet("loa-201", "loa-201", first))
    assert rc == 5  # not authorised
    await closed(writer)
    rc, reader, writer = await session(host, port,
                                       mqtt_connect_packet("loa-201", "loa-201", second))
    assert rc == 0

    status, _ = await call(server, "DELETE", "/api/v1/endpoints/loa-201")
    assert status == 200
    await closed_by_broker(reader, writer)
    rc, writer = await connack(host, port, mqtt_connect_packet("loa-201", "loa-201", second))
    assert rc == 5
    await closed(writer)


async def test_the_broker_is_restarted_when_it_dies_and_stopped_with_the_server(
    make_server: Callable[..., Awaitable[LoaServer]],
) -> None:
    server = await make_server()
    broker = server.broker
    assert broker is not None and broker.pid is not None
    await asyncio.wait_for(server.fleet.connected.wait(), 10)
    host, port = broker_address(server)
    stop = asyncio.Event()
    ep = MqttEndpoint("loa-004", await login(server, "loa-004"), host, port, telemetry_s=3600)
    first = asyncio.create_task(ep.run(stop))
    await server.fleet.until(lambda: server.fleet.is_online("loa-004"))

    dead = broker.pid
    os.kill(dead, signal.SIGKILL)
    with pytest.raises(aiomqtt.MqttError):
        await first  # the device lost it
    await broker.until_started(2)
    assert broker.pid not in (None, dead) and broker.restarts == 1
    assert broker.last_exit == "was killed by SIGKILL"
    assert server.counters.get("mqtt_broker_restarts") == 1
    again = asyncio.create_task(ep.run(stop))  # the device logs in again, same password
    (cmd,) = server.fleet.endpoint_command("loa-004", {"op": "volume", "volume_pct": 33}, "t")
    await server.fleet.until(lambda: cmd.status == "acked", 20)  # the server is back too
    assert ep.state.volume_pct == 33
    stop.set()
    await again

    pid, folder = broker.pid, broker.folder
    assert pid is not None
    files = await asyncio.to_thread(lambda: {p.name: p for p in folder.iterdir()})
    assert {"mosquitto.conf", "passwd", "acl"} <= set(files)
    modes = {n: p.stat().st_mode & 0o777 for n, p in files.items()}
    assert modes["passwd"] == 0o600, modes
    kept = await asyncio.to_thread(lambda: "".join(p.read_text() for p in files.values()))
    assert broker.server_password not in kept  # hashed, like every login
    await server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with socket.socket() as s:  # the port is free again (for a listener, as Mosquitto binds)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


async def test_a_missing_mosquitto_says_how_to_install_it(tmp_path: Path) -> None:
    zones = ZoneTree([Zone("huyen", "Huyện", None)])
    broker = MosquittoBroker("127.0.0.1", 0, tmp_path / "mosquitto", Topics("loa"),
                             EndpointRegistry(zones, {}), Counters(),
                             executable=str(tmp_path / "no-such-mosquitto"))
    with pytest.raises(BrokerError) as err:
        await broker.start()
    assert "apt-get install mosquitto" in str(err.value) and "[mqtt] url" in str(err.value)
    await broker.stop()


async def test_an_external_broker_starts_no_broker_of_its_own(
    make_server: Callable[..., Awaitable[LoaServer]],
) -> None:
    server = await make_server(mqtt=MqttConfig(url="mqtt://127.0.0.1:1883"))
    assert server.broker is None


def test_mosquitto_log_lines_are_logged_at_the_level_they_deserve() -> None:
    assert log_level("New client connected from 127.0.0.1:5 as loa-001 (p2, c1, k60, "
                     "u'loa-001').") == logging.DEBUG
    assert log_level(f"Client {PROBE_USER} disconnected, not authorised.") == logging.DEBUG
    assert log_level("mosquitto version 2.0.11 running") == logging.INFO
    for line in ("Client loa-001 already connected, closing old connection.",
                 "Client <unknown> disconnected, not authorised.",
                 "Client loa-002 disconnected due to malformed packet.",
                 "Error: Unable to open pwfile \"/x\"."):
        assert log_level(line) == logging.WARNING, line


def test_the_probe_login_is_a_plain_mqtt_3_1_1_connect() -> None:
    packet = connect_packet(PROBE_USER, PROBE_USER, "x" * 300)  # 334: two length bytes
    assert packet[0] == 0x10 and packet[1] & 0x80 and packet[2] == 2
    assert len(packet) == 3 + (packet[1] & 0x7F) + 128 * packet[2]
    assert packet[3:11] == b"\x00\x04MQTT\x04\xc2"  # level 4, user, password, clean
    assert SERVER_USER != PROBE_USER and "@" in PROBE_USER  # never an endpoint's id
