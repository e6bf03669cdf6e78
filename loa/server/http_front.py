"""The front door: one TCP port, routed on the first request line.

Icecast-style sources (``PUT``/``SOURCE /live/<mount>``) stream an unbounded body with neither
Content-Length nor chunking, which an HTTP/1.1 parser (aiohttp's included) would read as an
empty body followed by garbage. Listener streams want a bare ``HTTP/1.0`` response and the raw
transport for fan-out. So this protocol reads the request head itself, hands those two kinds of
connection to their own protocols, and passes everything else, bytes untouched, to aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
HEAD_TIMEOUT_S = 10.0

REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A request line and headers as the front door parsed them; ``path`` is percent-decoded."""

    method: str
    target: str
    path: str
    query: str
    version: str
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value

    def header(self, name: str, default: str = "") -> str:
        """A header's value by case-insensitive name, or ``default``."""
        return self.headers.get(name.lower(), default)


class HeadError(ValueError):
    """A request head that is not HTTP/1.x or ICE/1.x, or has a malformed line."""

    pass


def parse_head(raw: bytes) -> RequestHead:
    """Parse a request head (the bytes before the blank line, latin-1). Accepts
    ``HTTP/1.x`` and Icecast's ``ICE/1.x``; raises HeadError otherwise."""
    try:
        text = raw.decode("latin-1")
        lines = text.split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise HeadError("malformed request line") from None
    if not version.startswith(("HTTP/1.", "ICE/1.")):
        raise HeadError("unsupported protocol version")
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise HeadError("malformed header line")
        headers[name.strip().lower()] = value.strip()
    split = urlsplit(target)
    return RequestHead(method.upper(), target, unquote(split.path), split.query, version, headers)


def simple_response(status: int, body: str = "", extra: dict[str, str] | None = None,
                    version: str = "HTTP/1.0") -> bytes:
    """A complete ``Connection: close`` response: status line, optional text/plain body
    (a newline is added) and ``extra`` headers, encoded latin-1."""
    payload = (body + "\n").encode() if body else b""
    lines = [f"{version} {status} {REASONS.get(status, '')}", "Server: Loa",
             "Connection: close"]
    if payload:
        lines += ["Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(payload)}"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


# A raw route takes the transport, the parsed head and any bytes read past the head, and
# returns True if it took the connection (it then owns the transport).
RawRoute = Callable[[asyncio.Transport, RequestHead, bytes], bool]


class FrontProtocol(asyncio.Protocol):
    """The protocol of every connection on the public port until its request head is read
    (at most 16 KiB, within 10 s: else 431 or 408). Then ``raw_route`` may take the transport
    (sources, listener streams); otherwise the bytes read so far go, untouched, to a fresh
    ``fallback()`` protocol (aiohttp). A route that raises answers 503."""

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
        does not parse, goes to aiohttp with every byte read so far."""
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
