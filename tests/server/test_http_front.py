"""The front door's head reader (``FrontProtocol``) over an in-memory transport.

The head timeout is a ``call_later`` on the running loop, so it is driven by the loop's own
time: the test moves ``loop.time`` forward and lets the loop turn, without sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from loa.control.streams import ListenerProtocol, Streams
from loa.core.clock import FakeClock
from loa.core.counters import Counters
from loa.playout.front_door import FrontProtocol
from loa.playout.inputs.live import LiveSettings
from loa.playout.inputs.push import Mounts
from loa.protocol.http import HEAD_TIMEOUT_S, MAX_HEAD_BYTES, HeadError, RequestHead, parse_head
from tests.server.memory_transport import MemoryTransport
from tests.server.test_zone_channel import make_channel


class Fallback(asyncio.Protocol):
    """Stands in for aiohttp's protocol: records what it is handed."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.data = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data


class Door:
    """A FrontProtocol on a memory transport, with a recording route and fallback."""

    def __init__(self, take: bool = True, route: Any = None) -> None:
        self.routed: list[tuple[RequestHead, bytes]] = []
        self.fallbacks: list[Fallback] = []

        def record(transport: Any, head: RequestHead, rest: bytes) -> bool:
            self.routed.append((head, rest))
            return take

        def fallback() -> Fallback:
            self.fallbacks.append(Fallback())
            return self.fallbacks[-1]

        self.proto = FrontProtocol(route or record, fallback)
        self.tr = MemoryTransport(self.proto)
        self.proto.connection_made(self.tr)  # type: ignore[arg-type]

    def send(self, *chunks: bytes) -> None:
        for c in chunks:
            self.proto.data_received(c)


@contextlib.contextmanager
def loop_time_moved(seconds: float) -> Iterator[None]:
    """The running loop's clock, ``seconds`` ahead (its timers fall due on the next turn)."""
    loop = asyncio.get_running_loop()
    real = loop.time
    loop.time = lambda: real() + seconds  # type: ignore[method-assign]
    try:
        yield
    finally:
        loop.time = real  # type: ignore[method-assign]


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)  # a loop turn, not a wait


HEAD = b"GET /zones/an-binh-1/stream.ogg HTTP/1.1\r\nHost: loa\r\nIcy-MetaData: 1\r\n\r\n"


# the head


def test_parse_head_reads_request_line_and_headers() -> None:
    head = parse_head(b"SOURCE /live/st%C3%BAdio?x=1 ICE/1.0\r\nContent-Type: audio/ogg\r\n"
                      b"X-A: 1\r\nx-a:  2 ")
    assert (head.method, head.path, head.query, head.version) == (
        "SOURCE", "/live/st\u00fadio", "x=1", "ICE/1.0")
    assert head.header("CONTENT-TYPE") == "audio/ogg"
    assert head.header("x-a") == "1, 2"  # a repeated field is one list (RFC 9110 §5.3)
    for bad in (b"GET /", b"GET / SPDY/3", b"GET  / HTTP/1.1", b"GET / HTTP/1.1\r\nno colon"):
        with pytest.raises(HeadError):
            parse_head(bad)


async def test_a_complete_head_goes_to_the_raw_route() -> None:
    door = Door()
    door.send(HEAD)
    [(head, rest)] = door.routed
    assert (head.method, head.path, head.header("icy-metadata")) == (
        "GET", "/zones/an-binh-1/stream.ogg", "1")
    assert rest == b"" and door.fallbacks == [] and door.tr.writes == []


async def test_a_head_split_across_reads_is_put_together() -> None:
    door = Door()
    cuts = [0, 1, 7, 30, len(HEAD) - 3, len(HEAD) - 2, len(HEAD) - 1, len(HEAD)]
    for a, b in zip(cuts, cuts[1:], strict=False):
        assert door.routed == []
        door.send(HEAD[a:b])  # the blank line itself arrives in three pieces
    [(head, rest)] = door.routed
    assert head.path == "/zones/an-binh-1/stream.ogg" and rest == b""


async def test_bytes_after_the_head_reach_the_route_intact() -> None:
    door = Door()
    body = bytes(range(256)) * 3 + b"\r\n\r\nOggS"  # binary, even a second blank line
    put = b"PUT /live/studio HTTP/1.1\r\nContent-Type: audio/ogg\r\n\r\n"
    door.send(put + body[:100], body[100:101])  # the route sees what came with the head
    [(head, rest)] = door.routed
    assert head.method == "PUT" and rest == body[:100]


async def test_a_head_not_taken_is_handed_over_byte_for_byte() -> None:
    door = Door(take=False)
    request = b"POST /api/requests HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    door.send(request[:20], request[20:])
    [fb] = door.fallbacks
    assert fb.transport is door.tr and door.tr.protocol is fb
    assert fb.data == request  # head and body, untouched, for aiohttp to parse again
    assert len(door.routed) == 1


async def test_a_malformed_head_is_a_400_and_one_log_line(
        caplog: pytest.LogCaptureFixture) -> None:
    door = Door()
    door.send(b"GARBAGE\r\n\r\nmore")
    assert door.routed == [] and door.fallbacks == []
    assert door.tr.data.split(b"\r\n")[0].endswith(b" 400 Bad Request") and door.tr.closed
    [record] = [r for r in caplog.records if "bad request head" in r.getMessage()]
    assert record.levelname == "WARNING" and record.exc_info is None


async def test_an_over_long_head_is_refused_with_431() -> None:
    door = Door()
    door.send(b"GET / HTTP/1.1\r\n")
    filler = b"X-Pad: " + b"a" * 1000 + b"\r\n"
    while not door.tr.closed:
        door.send(filler)
    assert door.tr.data.startswith(b"HTTP/1.0 431 Request Header Fields Too Large\r\n")
    assert door.routed == [] and door.fallbacks == []


async def test_a_head_of_exactly_the_limit_is_still_waited_for() -> None:
    door = Door()
    door.send(b"G" * MAX_HEAD_BYTES)
    assert not door.tr.closed and door.tr.writes == []


async def test_an_over_long_head_in_one_read_is_refused_too() -> None:
    """Found by this file: the limit was checked only while the blank line had not arrived."""
    door = Door()
    door.send(b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * (2 * MAX_HEAD_BYTES) + b"\r\n\r\n")
    assert door.routed == []
    assert door.tr.data.startswith(b"HTTP/1.0 431 ")


async def test_a_route_that_raises_ends_that_connection_with_503() -> None:
    def broken(transport: Any, head: RequestHead, rest: bytes) -> bool:
        raise RuntimeError("route bug")

    door = Door(route=broken)
    door.send(HEAD)
    assert door.tr.data.startswith(b"HTTP/1.0 503 ") and door.tr.closed


# the head timeout, on the loop's clock


async def test_a_head_not_complete_in_time_is_answered_408() -> None:
    door = Door()
    door.send(b"GET /zones/an-binh-1/str")  # then nothing more
    with loop_time_moved(HEAD_TIMEOUT_S - 0.5):
        await turns()
    assert not door.tr.closed
    with loop_time_moved(HEAD_TIMEOUT_S + 0.01):
        await turns()
    assert door.tr.closed
    assert door.tr.data.startswith(b"HTTP/1.0 408 Request Timeout\r\n")
    assert door.routed == [] and door.fallbacks == []


async def test_a_complete_head_stops_the_timer() -> None:
    for take in (True, False):
        door = Door(take=take)
        door.send(HEAD)
        with loop_time_moved(HEAD_TIMEOUT_S * 3):
            await turns()
        assert door.tr.writes == [] and not door.tr.closed


async def test_a_lost_connection_stops_the_timer() -> None:
    door = Door()
    door.send(b"GET")
    door.tr.lose_connection()
    with loop_time_moved(HEAD_TIMEOUT_S * 3):
        await turns()
    assert door.tr.writes == []


# routing decisions, with the server's own raw routes (source mounts, then listener streams)


PASSWORD = "pw"


def basic(password: str) -> bytes:
    return b"Basic " + base64.b64encode(b"source:" + password.encode())


def server_door() -> tuple[Door, Counters, Any]:
    counters = Counters()
    mounts = Mounts(lambda p: None, FakeClock(), counters, LiveSettings(3, 10, 50), PASSWORD, {})
    channel = make_channel()
    streams = Streams(SimpleNamespace(channels={"an-binh-1": channel}),  # type: ignore[arg-type]
                      None, FakeClock(), 0)  # type: ignore[arg-type]

    def route(tr: Any, head: RequestHead, rest: bytes) -> bool:  # as LoaServer._raw_route
        return mounts.accept(tr, head, rest) or streams.accept(tr, head, rest)

    return Door(route=route), counters, channel


@pytest.mark.parametrize("method", [b"SOURCE", b"PUT"])
@pytest.mark.parametrize(("auth", "mount", "status"), [
    (basic("wrong"), b"studio", b"401"),
    (basic(PASSWORD), b"bad%20name", b"404"),
])
async def test_sources_are_taken_by_the_mount_route(method: bytes, auth: bytes, mount: bytes,
                                                    status: bytes) -> None:
    door, counters, _ = server_door()
    door.send(method + b" /live/" + mount + b" HTTP/1.1\r\nAuthorization: " + auth
              + b"\r\n\r\n")
    assert door.fallbacks == []
    assert door.tr.data.split(b" ")[1] == status and door.tr.closed
    assert counters.get("sources_refused", status=status.decode()) == 1


async def test_a_source_of_unknown_type_is_refused_415() -> None:
    door, _, _ = server_door()
    door.send(b"PUT /live/studio HTTP/1.1\r\nAuthorization: " + basic(PASSWORD)
              + b"\r\nContent-Type: text/html\r\n\r\n")
    assert door.tr.data.startswith(b"HTTP/1.0 415 ")


async def test_a_listener_stream_is_taken_onto_the_zone_feed() -> None:
    door, _, channel = server_door()
    door.send(HEAD)
    assert door.fallbacks == []
    assert isinstance(door.tr.protocol, ListenerProtocol)
    head, _, body = door.tr.data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK\r\n") and b"Content-Type: audio/ogg" in head
    assert body.startswith(b"OggS")  # the join header follows at once
    assert channel.listeners() == {"ogg": 1}


@pytest.mark.parametrize(("request_line", "status"), [
    (b"POST /zones/an-binh-1/stream.ogg HTTP/1.1", b"405"),
    (b"GET /zones/nowhere/stream.mp3 HTTP/1.1", b"404"),
])
async def test_bad_stream_requests_are_answered_on_the_raw_transport(
        request_line: bytes, status: bytes) -> None:
    door, _, channel = server_door()
    door.send(request_line + b"\r\n\r\n")
    assert door.fallbacks == [] and door.tr.closed
    assert door.tr.data.split(b" ")[1] == status
    assert channel.listeners() == {}


@pytest.mark.parametrize("request_line", [
    b"GET /zones/an-binh-1/ws HTTP/1.1",  # the native protocol: aiohttp's WebSocket
    b"GET /api/zones HTTP/1.1",
    b"PUT /api/zones/an-binh-1 HTTP/1.1",  # a PUT that is not a source
    b"GET /live/studio HTTP/1.1",  # a GET on a mount is not a source
])
async def test_everything_else_is_passed_to_aiohttp(request_line: bytes) -> None:
    door, _, _ = server_door()
    request = request_line + b"\r\nHost: loa\r\n\r\n{}"
    door.send(request)
    [fb] = door.fallbacks
    assert fb.data == request and door.tr.writes == []
