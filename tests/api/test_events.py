"""The console's live stream, ``GET /api/v1/events`` (server-sent events), read through the
server's real port (the front door, which closes every connection after its answer): the
status and levels of the caller's scope, endpoints online against registered per zone, a
tone's level, the heartbeat; the stream ends at logout, at the session's idle timeout and when
the server stops; a client that does not read is dropped, not buffered without limit."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import pytest

from loa.api.events import COUNT_SLICE, EndReason, EventHub, StreamLimits
from loa.app import LoaServer
from loa.config import SessionsConfig
from loa.core.clock import NS_PER_S
from loa.core.zones import Zone, alert_group_id
from loa.loadtest.mqtt_endpoint import MqttEndpoint
from tests.api.accounts import add_user, session_of
from tests.conftest import ADMIN_TOKEN, auth
from tests.fleet.test_mqtt import broker_address, login, mqtt_config
from tests.server.test_alerts import fake_clock_server
from tests.server.test_api import call
from tests.server.test_ingest import base

OP_ZONES = {"an-binh", "an-binh-1", "an-binh-2"}


@dataclass
class EventReader:
    """A server-sent events client on an aiohttp response: events and comments as they come."""

    resp: aiohttp.ClientResponse
    comments: list[str] = field(default_factory=list)
    retry: str | None = None

    async def next(self) -> tuple[str, dict]:
        """The next event (name, JSON data); EOFError when the stream has ended."""
        name, data = "message", []
        while True:
            raw = await self.resp.content.readline()
            if not raw:
                raise EOFError
            line = raw.decode().rstrip("\r\n")
            if not line:
                if data:
                    return name, json.loads("\n".join(data))
                name, data = "message", []
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "":
                self.comments.append(value)
            elif key == "event":
                name = value
            elif key == "data":
                data.append(value)
            elif key == "retry":
                self.retry = value

    async def until(self, name: str, accept: Callable[[dict], bool] = lambda d: True,
                    timeout_s: float = 10.0) -> dict:
        """The first ``name`` event whose data ``accept`` takes, within ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while True:
                got, data = await self.next()
                if got == name and accept(data):
                    return data

    async def ended(self, timeout_s: float = 10.0) -> None:
        """Read on until the server ends the stream, within ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while True:
                try:
                    await self.next()
                except EOFError:
                    return


@asynccontextmanager
async def stream(server: LoaServer, headers: dict[str, str]) -> AsyncIterator[EventReader]:
    async with aiohttp.ClientSession() as http:
        async with http.get(base(server) + "/api/v1/events", headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            yield EventReader(resp)


async def changed(hub: EventHub, predicate: Callable[[], bool], timeout_s: float = 30) -> None:
    """Wait until ``predicate()`` holds, re-checking each time a stream opens or ends."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            hub.changed.clear()
            await hub.changed.wait()


async def test_the_stream_carries_the_status_and_levels_of_the_callers_scope(
        make_server: Callable[..., Awaitable[LoaServer]]) -> None:
    server = await make_server(mqtt=mqtt_config("embedded"))
    server.events.limits = StreamLimits(heartbeat_s=0.5)
    await add_user(server, "op", "operator", "an-binh")
    await asyncio.wait_for(server.fleet.connected.wait(), 10)
    host, port = broker_address(server)
    stop = asyncio.Event()
    endpoint = MqttEndpoint("loa-001", await login(server, "loa-001"), host, port,
                            topic_root=server.fleet.topics.root, telemetry_s=3600)
    task = asyncio.create_task(endpoint.run(stop))
    try:
        await server.fleet.until(lambda: server.fleet.is_online("loa-001"))
        async with stream(server, await session_of(server, "op")) as events:
            headers = events.resp.headers
            assert headers["Content-Type"] == "text/event-stream"
            assert headers["Cache-Control"] == "no-store"
            assert headers["Connection"] == "close"  # the front door's rule holds
            name, first = await events.next()  # at once, on connect
            assert name == "status" and events.retry == "2000"
            assert {z["zone"] for z in first["zones"]} == OP_ZONES
            # two endpoints a village, loa-001 of an-binh-1 online; a commune counts its own
            # (no audio connection open: none connected)
            assert first["endpoints_by_zone"] == {
                "an-binh": {"registered": 4, "online": 1, "connected": 0},
                "an-binh-1": {"registered": 2, "online": 1, "connected": 0},
                "an-binh-2": {"registered": 2, "online": 0, "connected": 0}}
            assert "counters" in first and "fleet" in first  # the status as GET status has it
            status, polled = await call(server, "GET", "/api/v1/status",
                                        headers=await session_of(server, "op"))
            assert status == 200 and [z["zone"] for z in polled["zones"]] == \
                [z["zone"] for z in first["zones"]]
            levels = await events.until("levels")
            assert set(levels["zones"]) == OP_ZONES
            assert levels["zones"]["an-binh-1"] == {"peak_dbfs": -100.0, "rms_dbfs": -100.0}
            again = await events.until("status")  # every second
            assert set(again["endpoints_by_zone"]) == OP_ZONES
            await events.until("levels")
            await events.until("status")
            assert "heartbeat" in events.comments
    finally:
        stop.set()
        await task


async def test_the_levels_follow_what_a_zone_plays(server: LoaServer) -> None:
    async with stream(server, auth()) as events:
        status, body = await call(server, "POST", "/api/v1/zones/an-binh-1/requests",
                                  json={"source": {"kind": "tone", "freq_hz": 1000}})
        assert status == 201, body
        # the test tone is a sine at half of full scale: -6.0 dBFS peak, -9.0 dBFS RMS
        levels = await events.until("levels", lambda d: d["zones"]["an-binh-1"]["peak_dbfs"]
                                    > -7.0)
        level = levels["zones"]["an-binh-1"]
        assert level["peak_dbfs"] == pytest.approx(-6.0, abs=1.0)
        assert level["rms_dbfs"] == pytest.approx(-9.0, abs=1.0)
        assert levels["zones"]["phu-my-1"]["peak_dbfs"] == -100.0  # the rest stays silent
        assert set(levels["zones"]) == {z.id for z in server.zones}  # the admin: every zone


async def test_logout_ends_the_stream(server: LoaServer) -> None:
    await add_user(server, "op", "operator", "an-binh")
    session = await session_of(server, "op")
    async with stream(server, session) as events:
        await events.until("status")
        status, _ = await call(server, "POST", "/api/v1/logout", headers=session)
        assert status == 200
        await events.ended(timeout_s=5)
    async with aiohttp.ClientSession() as http:  # and it cannot be opened again
        async with http.get(base(server) + "/api/v1/events", headers=session) as resp:
            assert resp.status == 401


async def test_revoking_a_personal_token_ends_its_stream(server: LoaServer) -> None:
    await add_user(server, "op", "operator", "an-binh")
    status, made = await call(server, "POST", "/api/v1/users/op/tokens", json={"name": "tv"})
    assert status == 201, made
    async with stream(server, {"Authorization": f"Bearer {made['token']}"}) as events:
        first = await events.until("status")
        assert {z["zone"] for z in first["zones"]} == OP_ZONES
        status, _ = await call(server, "DELETE", f"/api/v1/users/op/tokens/{made['id']}")
        assert status == 200
        await events.ended(timeout_s=5)


async def test_the_idle_timeout_ends_the_stream_which_does_not_keep_the_session_alive(
        tmp_path: Path) -> None:
    server, clock = await fake_clock_server(
        tmp_path, sessions=SessionsConfig(idle_timeout_s=60.0))
    try:
        await add_user(server, "op", "operator", "an-binh")
        session = await session_of(server, "op")
        async with stream(server, session) as events:
            await events.until("status")
            await clock.advance(30 * NS_PER_S)  # rounds run; the session is re-checked
            assert server.events.streams and not events.resp.content.at_eof()
            clock.set_ns(clock.now_ns() + 31 * NS_PER_S)  # unused for 61 s
            await clock.advance(2 * NS_PER_S)
            await events.ended(timeout_s=5)
        assert not server.events.streams
        status, _ = await call(server, "GET", "/api/v1/session", headers=session)
        assert status == 401
    finally:
        await server.stop()


async def test_the_server_stopping_ends_the_stream(server: LoaServer) -> None:
    async with stream(server, auth()) as events:
        await events.until("status")
        stopping = asyncio.create_task(server.stop())
        await events.ended(timeout_s=5)
        async with asyncio.timeout(15):
            await stopping
    assert not server.events.streams


@pytest.mark.loop_blocking(
    "known, under investigation: run after the file's other tests, a round of the events "
    "hub holds the loop up to ~30 ms here (server.status() alone 5-9 ms, against 1.6 ms in "
    "a fresh process); the drop itself is what this test checks")
async def test_a_client_that_does_not_read_is_dropped(server: LoaServer) -> None:
    hub = server.events
    hub.limits = StreamLimits(max_pending_bytes=8 * 1024, sndbuf_bytes=4096)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and it never reads
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        await loop.sock_sendall(sock, (f"GET /api/v1/events HTTP/1.1\r\nHost: loa\r\n"
                                       f"Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n").encode())
        await changed(hub, lambda: bool(hub.streams))
        (slow,) = hub.streams
        # a reader beside it keeps up and stays
        async with stream(server, auth()) as events:
            await changed(hub, lambda: slow.end_reason is not None and slow not in hub.streams,
                          timeout_s=60)
            assert slow.end_reason is EndReason.SLOW_CLIENT
            assert hub.dropped == 1 and server.counters.get("event_streams_dropped") == 1
            await events.until("status")
            assert len(hub.streams) == 1
    finally:
        sock.close()


async def test_a_round_counts_thousands_of_endpoints_a_slice_a_loop_step(server: LoaServer
                                                                        ) -> None:
    """3,000 endpoints counted by zone for the status of every stream: the same counts as in
    one go, ``COUNT_SLICE`` a loop step (other work runs between the slices)."""
    rows = "".join(f"xa-{i:04d},Cụm loa {i},{'an-binh-1' if i % 3 else 'phu-my-2'}\n"
                   for i in range(3000))
    assert not (await server.endpoints.import_csv(("id,name,zone\n" + rows).encode())).errors
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    hub = server.events
    hub._step_started = 0.0  # (a round's bookkeeping, as _round starts it)
    whole = hub._endpoint_counts()
    other = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    before = turns
    sliced = await hub._count_endpoints()
    other.cancel()
    assert sliced == whole
    assert whole["huyen"]["registered"] == len(server.endpoints.endpoints) >= 3000
    assert whole["an-binh-1"]["registered"] == 2000 + 2
    assert turns - before >= len(server.endpoints.endpoints) // COUNT_SLICE


async def test_an_alert_group_made_while_a_round_counts_changes_nothing(server: LoaServer
                                                                        ) -> None:
    """An alert's run-time group made between two slices of a count: the round's counts
    are of the tree as it was when the count began, whole."""
    rows = "".join(f"xa-{i:04d},Cụm loa {i},an-binh-1\n" for i in range(2 * COUNT_SLICE + 5))
    assert not (await server.endpoints.import_csv(("id,name,zone\n" + rows).encode())).errors
    hub = server.events
    hub._step_started = 0.0
    counting = asyncio.create_task(hub._count_endpoints())
    await asyncio.sleep(0)  # the first slice counted
    group = alert_group_id("an-binh-1", "a1")
    server.zones.add_child(Zone(group, "An Bình 1 (cảnh báo)", "an-binh-1"))
    server.endpoints.get("xa-0003").info = replace(server.endpoints.get("xa-0003").info,
                                                   zone_id=group)
    counts = await counting
    assert group not in counts
    assert counts["an-binh-1"]["registered"] == 2 * COUNT_SLICE + 5 + 2
