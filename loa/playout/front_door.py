"""The front door: one TCP port, routed on the first request line.

Icecast-style sources (``PUT``/``SOURCE /live/<mount>``) stream an unbounded body with neither
Content-Length nor chunking, which an HTTP/1.1 parser (aiohttp's included) would read as an
empty body followed by garbage. Listener streams want a bare ``HTTP/1.0`` response and the raw
transport for fan-out. So this protocol reads the request head itself, hands those two kinds of
connection to their own protocols, and passes everything else, bytes untouched, to aiohttp
(but for raw UTF-8 in the request target, which it percent-encodes: aiohttp refuses it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from loa.protocol.http import (
    HEAD_TIMEOUT_S,
    MAX_HEAD_BYTES,
    HeadError,
    RequestHead,
    ascii_request_line,
    parse_head,
    simple_response,
)

log = logging.getLogger(__name__)
# A raw route takes the transport, the parsed head and any bytes read past the head, and
# returns True if it took the connection (it then owns the transport).
RawRoute = Callable[[asyncio.Transport, RequestHead, bytes], bool]


class FrontProtocol(asyncio.Protocol):
    """The protocol of every connection on the public port until its request head is read
    (at most 16 KiB, within 10 s: else 431 or 408). Then ``raw_route`` may take the transport
    (sources, listener streams); otherwise the bytes read so far go, untouched (raw UTF-8 in
    the target percent-encoded), to a fresh ``fallback()`` protocol (aiohttp). A route that
    raises answers 503."""

    def __init__(self, raw_route: RawRoute, fallback: Callable[[], asyncio.Protocol]) -> None:
        self._raw_route = raw_route
        self._fallback = fallback
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the 10 s deadline for the request head."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT_S, self._timeout)

    def _timeout(self) -> None:
        if self._transport is not None:
            self._reply_and_close(408, "request head not received in time")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._transport = None

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def data_received(self, data: bytes) -> None:
        """Gather bytes until the head ends (``CRLF CRLF``), then route: a raw route may take
        the transport (with the bytes read past the head); anything else, and a head that
        does not parse, goes to aiohttp with every byte read so far (a raw non-ASCII byte
        in the request line percent-encoded)."""
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end > MAX_HEAD_BYTES or (end < 0 and len(self._buf) > MAX_HEAD_BYTES):
            # the limit holds however TCP split the head (whole in one read, or in pieces)
            self._reply_and_close(431, "request head too large")
            return
        if end < 0:
            return
        self._cancel_timer()
        transport = self._transport
        assert transport is not None
        try:
            head = parse_head(bytes(self._buf[:end]))
        except HeadError:
            self._hand_over(transport)  # let aiohttp give its standard 400
            return
        rest = bytes(self._buf[end + 4 :])
        try:
            taken = self._raw_route(transport, head, rest)
        except Exception:  # a route bug ends this connection only
            log.exception("error routing %s %s", head.method, head.path)
            self._reply_and_close(503, "internal error")
            return
        if taken:
            self._transport = None
            self._buf = bytearray()
        else:
            # aiohttp refuses raw UTF-8 in a target (400): it gets the target escaped
            self._buf = bytearray(ascii_request_line(bytes(self._buf)))
            self._hand_over(transport)

    def _hand_over(self, transport: asyncio.Transport) -> None:
        proto = self._fallback()
        transport.set_protocol(proto)
        proto.connection_made(transport)
        data, self._buf = bytes(self._buf), bytearray()
        self._transport = None
        proto.data_received(data)

    def _reply_and_close(self, status: int, body: str) -> None:
        if self._transport is not None:
            self._transport.write(simple_response(status, body))
            self._transport.close()
            self._transport = None
