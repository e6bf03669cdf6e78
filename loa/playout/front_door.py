"""The front door: one TCP port, routed on each request head.

Icecast-style sources (``PUT``/``SOURCE /live/<mount>``) stream an unbounded body with neither
Content-Length nor chunking, which an HTTP/1.1 parser (aiohttp's included) would read as an
empty body followed by garbage. Listener streams want a bare ``HTTP/1.0`` response and the raw
transport for fan-out. So this protocol reads the request head itself, hands those two kinds of
connection to their own protocols, and passes everything else, bytes untouched, to aiohttp
(but for raw UTF-8 in the request target, which it percent-encodes: aiohttp refuses it).

What hostile clients taught it (issue 13):

- **Every request passes here, its head timed.** aiohttp closes the connection after its
  answer, whatever the answer (``loa.api.middleware.close_after_response``), so no second
  request ever reaches aiohttp unseen. A raw route that answers and keeps the connection
  (libshout's credential challenge) returns ``Routed.NEXT_REQUEST``: the next head is read
  here, with a fresh timeout, and routed like any first one.
- **Admission** (``loa.playout.admission``): a cap on connections per client address and a
  reserve of descriptors. Under pressure, connections idle before their head are closed
  oldest first, and only the API and sources are served (``RESERVED_PATHS``).
- **TLS** (``TlsSettings``): the port speaks TLS when a certificate is configured. A connection
  whose first byte opens a TLS handshake is wrapped at once (RFC 2818: browsers, curl, ffmpeg's
  ``tls=1``); a plain one may ask to upgrade (RFC 2817: libshout sends ``OPTIONS *`` with
  ``Upgrade: TLS/1.0``) and gets ``101``, the handshake on the same connection, then the
  answer to its request inside TLS (RFC 2817 §3.3; libshout waits for it), and its next
  requests there too. Other plain requests get ``426 Upgrade Required``, unless plain HTTP is
  allowed too. The handshake must end within the head timeout.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import ssl
from asyncio.sslproto import SSLProtocol
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from loa.core.i18n import N_, language_from_header, translate
from loa.protocol.http import (
    HEAD_TIMEOUT_S,
    MAX_HEAD_BYTES,
    HeadError,
    RequestHead,
    ascii_request_line,
    parse_head,
    simple_response,
)

if TYPE_CHECKING:
    from loa.playout.admission import Admission, Ticket

log = logging.getLogger(__name__)


def _said(head: RequestHead, message: str) -> str:
    """``message`` (an English msgid) in the language the request's ``Accept-Language``
    prefers (Vietnamese when it names none of Loa's). The catalogues are read at start-up."""
    return translate(language_from_header(head.header("accept-language") or None), message)


class Routed(enum.Enum):
    """What a raw route may return besides True (it took the transport) and False (not its
    request: aiohttp's)."""

    NEXT_REQUEST = "next request"  # answered on the transport and kept it: read the next head


# A raw route takes the transport, the parsed head and any bytes read past the head. It
# returns True if it took the connection (it then owns the transport), False to pass it on,
# or Routed.NEXT_REQUEST after answering a bodiless request on a connection the client keeps
# (the bytes past the head are then the next request's).
RawRoute = Callable[[asyncio.Transport, RequestHead, bytes], bool | Routed]

# What the descriptor reserve is kept for: the API, Prometheus, Icecast's admin (encoders'
# metadata) and the sources (WHIP's too); a listener stream or an endpoint's WebSocket waits
# (503).
RESERVED_PATHS = ("/api/", "/metrics", "/admin/", "/live/", "/whip/")
TLS_HANDSHAKE_RECORD = 0x16  # the first byte of every TLS ClientHello
TLS_READ_BUFFER_BYTES = 17 * 1024  # one TLS record and its overhead
BUSY_RETRY_S = 5


def server_tls_context(cert_file: str, key_file: str | None = None) -> ssl.SSLContext:
    """A server context (TLS 1.2 and up, HTTP/1.1 by ALPN) with the PEM certificate chain and
    private key (``key_file`` None: the key is in ``cert_file``). Reads the files: call it
    beside the loop. Raises OSError naming the files when they cannot be read or do not
    belong together."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise OSError(f"cannot use the TLS certificate {cert_file} with the key "
                      f"{key_file or cert_file}: {exc}") from None
    return ctx


@dataclass(frozen=True)
class TlsSettings:
    """TLS on the public port: the server context, and whether plain HTTP requests are still
    served (endpoints that cannot speak TLS) or answered 426."""

    context: ssl.SSLContext
    allow_plain: bool = False


class _TlsProtocol(SSLProtocol):
    """asyncio's TLS protocol with a read buffer of one TLS record instead of its 256 KiB,
    which it allocates (and zeroes) for every connection: thousands of endpoints listen."""

    max_size = TLS_READ_BUFFER_BYTES


def is_tls_upgrade(head: RequestHead) -> bool:
    """An RFC 2817 mandatory upgrade: ``OPTIONS`` with ``Upgrade: TLS/1.x`` (libshout's
    probe). Other requests that offer an upgrade are served as they are (RFC 2817 §3.2)."""
    offered = (token.strip().upper() for token in head.header("upgrade").split(","))
    return head.method == "OPTIONS" and any(t.startswith("TLS/") for t in offered)


def reserved(head: RequestHead) -> bool:
    """Whether a request may use the descriptor reserve (the API and sources)."""
    return head.target == "*" or head.path.startswith(RESERVED_PATHS)


class FrontProtocol(asyncio.Protocol):
    """The protocol of every connection on the public port while a request head is awaited
    (at most 16 KiB, within 10 s: else 431 or 408). Then ``raw_route`` may take the transport
    (sources, listener streams), or answer and hand the connection back for its next request;
    otherwise the bytes read so far go, untouched (raw UTF-8 in the target percent-encoded),
    to a fresh ``fallback()`` protocol (aiohttp). A route that raises answers 503.

    ``admission``: who may connect (a connection refused there is answered 503); ``tls``: the
    port speaks TLS (see the module). ``ticket``: the admission of a connection this protocol
    continues (inside TLS); the front door makes it."""

    def __init__(self, raw_route: RawRoute, fallback: Callable[[], asyncio.Protocol], *,
                 admission: Admission | None = None, tls: TlsSettings | None = None,
                 ticket: Ticket | None = None, replay: bytes = b"") -> None:
        self._raw_route = raw_route
        self._fallback = fallback
        self._admission = admission
        self._tls = tls  # set on a plain connection to a TLS port only
        self._ticket = ticket
        self._buf = bytearray()
        self._first = True  # nothing received yet (a TLS handshake can only start there)
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._replay = replay  # a request to route first, as if received (RFC 2817 §3.3)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Admit the connection (else 503), then start the 10 s deadline for its head."""
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        if self._ticket is None and self._admission is not None:
            self._ticket = self._admission.admit(transport)
            if self._ticket is None:
                self._reply_and_close(503, "too many connections from your address",
                                      {"Retry-After": str(BUSY_RETRY_S)})
                return
        self._await_head()
        if self._replay:
            replay, self._replay = self._replay, b""
            self.data_received(replay)

    def _await_head(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(HEAD_TIMEOUT_S, self._timeout)
        if self._ticket is not None:
            self._ticket.idle(self._evict)

    def _timeout(self) -> None:
        if self._transport is not None:
            self._reply_and_close(408, "request head not received in time")

    def _evict(self) -> None:
        """Admission needs this connection's descriptor: it has sent no head yet."""
        self._reply_and_close(503, "the server is busy: try again",
                              {"Retry-After": str(BUSY_RETRY_S)})

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._transport = None
        if self._ticket is not None:
            self._ticket.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def data_received(self, data: bytes) -> None:
        """Gather bytes until the head ends (``CRLF CRLF``), then route: a raw route may take
        the transport (with the bytes read past the head) or answer and keep it; anything
        else, and a head that does not parse, goes to aiohttp with every byte read so far (a
        raw non-ASCII byte in the request line percent-encoded). On a TLS port, a first byte
        that opens a TLS handshake wraps the connection in TLS."""
        if self._transport is None:
            return  # answered and closing: nothing more is read here
        first, self._first = self._first, False
        if first and self._tls is not None and data[:1] == bytes([TLS_HANDSHAKE_RECORD]):
            self._start_tls(data)
            return
        self._buf += data
        while self._transport is not None and self._route_one():
            pass

    def _route_one(self) -> bool:
        """Route the head in the buffer, if whole; True if the connection comes back for
        another request (whose bytes may be in the buffer already)."""
        transport = self._transport
        assert transport is not None
        end = self._buf.find(b"\r\n\r\n")
        if end > MAX_HEAD_BYTES or (end < 0 and len(self._buf) > MAX_HEAD_BYTES):
            # the limit holds however TCP split the head (whole in one read, or in pieces)
            self._reply_and_close(431, "request head too large")
            return False
        if end < 0:
            return False
        self._cancel_timer()
        if self._ticket is not None:
            self._ticket.busy()
        try:
            head = parse_head(bytes(self._buf[:end]))
        except HeadError as exc:  # one line in the log, not aiohttp's traceback
            peer = transport.get_extra_info("peername")
            log.warning("bad request head from %s: %s", peer, exc)
            self._reply_and_close(400, f"bad request: {exc}")
            return False
        rest = bytes(self._buf[end + 4 :])
        if self._tls is not None:  # a plain request on a TLS port
            if is_tls_upgrade(head):
                transport.write(simple_response(101, "", {"Upgrade": "TLS/1.0, HTTP/1.1"},
                                                version="HTTP/1.1", connection="Upgrade"))
                # then the answer to the request itself, inside TLS (libshout waits for it)
                self._start_tls(rest, replay=bytes(self._buf[: end + 4]))
                return False
            if not self._tls.allow_plain:  # said in the reader's language (a person in a
                self._reply_and_close(  # browser who typed http://)
                    426, _said(head, N_("this port speaks TLS: use https://")),
                    {"Upgrade": "TLS/1.2, HTTP/1.1"},
                    as_json=head.path.startswith(("/api/", "/metrics")))
                return False
        if self._admission is not None and not reserved(head) and \
                self._admission.under_pressure:
            self._admission.turned_away()
            self._reply_and_close(
                503, _said(head, N_("the server is near its connection limit: try again")),
                {"Retry-After": str(BUSY_RETRY_S)})
            return False
        try:
            routed = self._raw_route(transport, head, rest)
        except Exception:  # a route bug ends this connection only
            log.exception("error routing %s %r", head.method, head.path)
            self._reply_and_close(503, "internal error")
            return False
        if routed is Routed.NEXT_REQUEST:
            self._buf = bytearray(rest)
            self._await_head()
            return True
        if routed:
            self._transport = None
            self._buf = bytearray()
        else:
            # aiohttp refuses raw UTF-8 in a target (400): it gets the target escaped
            self._buf = bytearray(ascii_request_line(bytes(self._buf)))
            self._hand_over(transport)
        return False

    def _hand_over(self, transport: asyncio.Transport) -> None:
        proto = self._fallback()
        transport.set_protocol(proto)
        proto.connection_made(transport)
        data, self._buf = bytes(self._buf), bytearray()
        self._transport = None
        proto.data_received(data)

    def _start_tls(self, received: bytes, replay: bytes = b"") -> None:
        """Wrap the connection in TLS; ``received``: the bytes of the handshake read so far.
        A fresh FrontProtocol reads the requests inside, under the same admission ticket,
        the upgrading request (``replay``) first."""
        assert self._tls is not None and self._transport is not None
        self._cancel_timer()
        transport, self._transport = self._transport, None
        inner = FrontProtocol(self._raw_route, self._fallback, admission=self._admission,
                              ticket=self._ticket, replay=replay)
        tls = _TlsProtocol(asyncio.get_running_loop(), inner, self._tls.context,
                           None,  # type: ignore[arg-type]  # no waiter: asyncio takes None
                           server_side=True, ssl_handshake_timeout=math.ceil(HEAD_TIMEOUT_S))
        if self._ticket is not None:
            self._ticket.idle(transport.abort)  # mid-handshake there is nobody to answer
        transport.set_protocol(tls)
        tls.connection_made(transport)
        view = memoryview(received)
        while view and not transport.is_closing():
            buf = tls.get_buffer(len(view))
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            tls.buffer_updated(n)
            view = view[n:]

    def _reply_and_close(self, status: int, body: str, extra: dict[str, str] | None = None,
                         as_json: bool = False) -> None:
        self._cancel_timer()
        if self._ticket is not None:
            self._ticket.busy()
        if self._transport is not None:
            self._transport.write(simple_response(status, body, extra, as_json=as_json))
            self._transport.close()
            self._transport = None
