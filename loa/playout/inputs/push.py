"""Icecast-compatible source push: ``PUT`` (or legacy ``SOURCE``) ``/live/<mount>``.

What ffmpeg's ``icecast://`` output does: ``PUT`` with ``Expect: 100-continue`` and Basic auth
as user ``source``, then the encoded stream as an unbounded body until it closes. We answer
``100 Continue`` (or ``200 OK`` when nothing is expected, as Icecast does), then read until EOF.
The bytes go to a `LiveIngest` (a bounded feed, a decoder thread); its frames land in the mount's
`LiveSource`. A busy mount answers 403, a wrong password 401, an unknown type 415; a push with
no ``Content-Type`` has its format sniffed. Bytes that do not decode end that source alone,
with a 400 where the client still listens for one. When a source hangs up, what it sent plays
out before its zones fall back.

What real encoders and networks add (issue 12):

- A body framed with ``Transfer-Encoding: chunked`` or ``Content-Length`` is unframed before
  the decoder sees it (`loa.protocol.framing`); a framing this route cannot undo is refused
  (``Content-Encoding`` 415, another transfer coding 501), a malformed chunk cuts the source.
  An empty body (``Content-Length: 0``, libshout's credential check) gets 200 and goes nowhere.
- A source that sends nothing for ``source_timeout_s`` (Icecast's ``source-timeout``, 10 s) is
  dropped, and its socket has TCP keepalive (`source_session.IngestSession`), so a dead 4G
  link does not hold the mount. A new source with the right password replaces a stalled one
  at once (the studio's reconnect), without waiting for the timeout.
- libshout (ezstream, Mixxx, BUTT) first probes with ``OPTIONS *`` and ``Upgrade: TLS/1.0``
  (RFC 2817). With TLS configured the front door upgrades the connection before any route sees
  the probe; without, this route answers ``204`` without an upgrade and the client carries on
  in plain HTTP, as it does after Icecast 2.4's answer (which closes). libshout then asks
  without credentials, to be challenged (``Content-Length: 0``, keep-alive): the ``401`` keeps
  the connection, and the front door reads its next request, the real one. Inside TLS the
  password thus never travels in clear (a closed connection would make libshout reconnect,
  and send it in plain).

And what hostile clients taught it (issue 13): wrong passwords are throttled per client
address (`loa.core.throttle.FailureThrottle`, shared with the API's tokens). Past a few, a
wrong password's 401 is held for a delay that doubles, and an address holding its limit of
such answers gets 429 without its password being looked at. A right password is never held.

A mount is shared with WebRTC (issue 16): a WHIP source (``loa.playout.webrtc.whip``) takes it
through ``Mounts.attach``, as its ``MountSession``. One source per mount, whichever kind: a
busy mount refuses the other kind too, and a stalled source of either kind is replaced.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from loa.codecs.decode import DecodeError, format_for_content_type
from loa.core.clock import Clock
from loa.core.counters import Counters
from loa.core.i18n import N_, Explained
from loa.core.text import TextError, decode_text, one_line
from loa.core.throttle import FailureThrottle
from loa.playout.front_door import Routed
from loa.playout.inputs.live import LiveSettings, LiveSource
from loa.playout.inputs.source_session import IngestSession, response_version
from loa.playout.programme import Programme, ProgrammeKind
from loa.protocol.framing import FramingError, Sized, body_reader
from loa.protocol.http import RequestHead, simple_response

log = logging.getLogger(__name__)

MOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_MOUNTS = 64
SOURCE_USER = "source"
SOURCE_TIMEOUT_S = 10.0  # Icecast's source-timeout default
ALLOWED_METHODS = "GET, PUT, SOURCE, OPTIONS"  # the OPTIONS answer: libshout then uses PUT


def check_basic_auth(header: str, password: str) -> bool:
    """Basic auth as user ``source``, compared in constant time."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not password:
        return False
    try:
        user, _, given = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    ok_user = hmac.compare_digest(user.encode(), SOURCE_USER.encode())
    ok_pass = hmac.compare_digest(given.encode(), password.encode())
    return ok_user and ok_pass


class MountError(Explained, ValueError):
    """A mount that cannot be made: a bad name, or one mount too many."""


class MountBusy(MountError):
    """A mount whose source is live (not stalled): a second source is refused."""


class MountSession(Protocol):
    """A mount's connected source, whatever brought it: an Icecast-style push
    (``source_session.IngestSession``, ``kind`` "icecast") or a WHIP session
    (``loa.playout.webrtc.whip.WhipSession``, "webrtc"). One per mount at a time."""

    kind: str
    peer: Any  # the client's address, for the log
    content_type: str

    @property
    def stalled(self) -> bool:
        """Live, but nothing arrived for the stall time: the next source may replace it."""
        ...

    @property
    def packets_skipped(self) -> int:
        """The packets that came in and were not decoded (nobody heard the mount)."""
        ...

    async def stop(self, why: str = "stopped") -> None:
        """Cut the source now; what its mount buffered is dropped."""
        ...


class Mount:
    """A named live input (``studio``): one programme, at most one source at a time."""

    def __init__(self, name: str, programme: Programme, source: LiveSource) -> None:
        self.name = name
        self.programme = programme
        self.source = source
        self.session: MountSession | None = None
        self.sessions_total = 0
        self.title = ""  # "now playing", from the encoder's /admin/metadata updates

    @property
    def frames_in(self) -> int:
        """The audio that came in: the frames of every source of the mount so far, and the
        packets the current source took without decoding (nobody heard the mount)."""
        session = self.session
        return self.source.frames_in + (session.packets_skipped if session is not None else 0)

    def describe(self) -> dict[str, object]:
        """Status snapshot: connection and its kind ("icecast", "webrtc"), stall, whether its
        audio is decoded (``decoding``: one that no zone takes, or nobody hears, is parsed, not
        decoded), the audio
        that came in (``frames_in``: frames, or packets while not decoded), jitter depth and
        target (frames), sessions, title."""
        s = self.session
        return {
            "mount": self.name,
            "programme": self.programme.id,
            "connected": s is not None,
            "kind": s.kind if s else None,
            "stalled": self.source.stalled,
            "content_type": s.content_type if s else None,
            "decoding": self.source.decoding,
            "frames_in": self.frames_in,
            "jitter_frames": len(self.source.jitter),
            "jitter_target_frames": self.source.jitter.target_frames,
            "sessions_total": self.sessions_total,
            "title": self.title,
        }


class Mounts:
    """The Icecast-style mounts (``/live/<name>``): creates each mount's LiveSource and
    programme (registered through ``register``), checks source credentials and accepts source
    connections from the front door. A mount's own password wins over ``global_password``.
    ``source_timeout_s``: a connected source that sends nothing this long is dropped.
    ``throttle``: the wrong-password accounts per client address (a fresh one by default;
    the server shares its own with the API)."""

    def __init__(
        self,
        register: Callable[[Programme], object],  # adds a mount's programme to the engine
        clock: Clock,
        counters: Counters,
        live: LiveSettings,
        global_password: str,
        mount_passwords: dict[str, str],
        sndbuf_bytes: int = 0,
        source_timeout_s: float = SOURCE_TIMEOUT_S,
        throttle: FailureThrottle | None = None,
    ) -> None:
        self._register = register
        self.throttle = throttle if throttle is not None else FailureThrottle(clock.now_ns)
        self._clock = clock
        self._counters = counters
        self._live = live
        self.global_password = global_password
        self.mount_passwords = mount_passwords
        self.sndbuf_bytes = sndbuf_bytes
        self.source_timeout_s = source_timeout_s
        self.mounts: dict[str, Mount] = {}
        self._replacing: set[asyncio.Task[None]] = set()  # a ghost being cut for a new source
        for name in mount_passwords:
            self.get(name)

    def get(self, name: str) -> Mount:
        """The mount of that name, created on first use (MountError, a ValueError, for a bad
        name or one mount too many)."""
        mount = self.mounts.get(name)
        if mount is not None:
            return mount
        if not MOUNT_NAME.match(name):
            raise MountError(N_("mount name {mount!r} must be 1-64 of A-Z a-z 0-9 . _ -"),
                             mount=name)
        if len(self.mounts) >= MAX_MOUNTS:
            raise MountError(N_("too many mounts (at most {limit})"), limit=MAX_MOUNTS)
        source = LiveSource(f"live/{name}", self._clock, self._counters, self._live)
        programme = Programme(f"Trực tiếp /live/{name}", ProgrammeKind.LIVE, source)
        self._register(programme)
        mount = Mount(name, programme, source)
        self.mounts[name] = mount
        return mount

    async def stop(self) -> None:
        """Let any replacement under way finish, then cut every connected source and join its
        decoder thread (server shutdown)."""
        if self._replacing:
            await asyncio.wait(list(self._replacing))
        for mount in list(self.mounts.values()):
            if mount.session is not None:
                await mount.session.stop()

    def check_free(self, mount: Mount) -> None:
        """Raise MountBusy when a source is live on ``mount`` (a stalled one may be
        replaced)."""
        ghost = mount.session
        if ghost is not None and not ghost.stalled:
            raise MountBusy(N_("mount {mount!r} is busy: another source is live on it (a "
                               "source silent for {stall_s:g} s is replaced by the next)"),
                            mount=mount.name, stall_s=self._live.stall_ms / 1000)

    async def attach(self, mount: Mount, session: MountSession) -> None:
        """Make ``session`` (a WHIP source) the source of ``mount``, as ``accept`` does for an
        Icecast one: MountBusy when a source is live on it; a stalled one is cut first (its
        decoder joined), so that the studio's reconnection goes on air at once."""
        self.check_free(mount)
        ghost = mount.session
        mount.session = session
        mount.sessions_total += 1
        if ghost is not None:
            log.warning("source %s on /live/%s replaces the stalled source %s", session.peer,
                        mount.name, ghost.peer)
            self._counters.inc("sources_replaced", mount=mount.name)
            await ghost.stop("replaced by a new source")

    def password_for(self, name: str) -> str:
        """The source password of a mount: its own if set (non-empty), else the global one."""
        return self.mount_passwords.get(name) or self.global_password

    def update_metadata(self, query: Mapping[str, bytes], authorization: str
                        ) -> tuple[int, str]:
        """Icecast's ``GET /admin/metadata?mount=/live/x&mode=updinfo&song=…[&charset=…]``,
        which broadcast software (BUTT, Mixxx, …) sends with the source credentials. ``query``:
        its fields percent-decoded to bytes (``loa.protocol.http.query_bytes``). As Icecast
        does, ``song`` is converted from the ``charset`` it names (UTF-8 when it names none);
        unlike Icecast, an unknown charset or bytes not valid in it are refused (400, saying
        why) rather than stored as mojibake. Returns (status, message)."""
        mode = query.get("mode", b"").decode("latin-1")
        name = query.get("mount", b"").decode("latin-1").removeprefix("/live/").lstrip("/")
        if not MOUNT_NAME.match(name):
            return 400, "unknown mount"
        if not check_basic_auth(authorization, self.password_for(name)):
            return 401, "wrong source password"
        if mode != "updinfo":
            return 400, "only mode=updinfo is supported"
        mount = self.mounts.get(name)
        if mount is None:
            return 400, "unknown mount"
        try:
            song = decode_text(query.get("song", b""), query.get("charset", b"").decode("latin-1"))
        except TextError as exc:
            return 400, f"song: {exc}"
        mount.title = one_line(song)[:256]  # a title is one line of text
        log.info("/live/%s now playing: %s", name, mount.title)
        return 200, "Metadata update successful"

    def accept(self, transport: asyncio.Transport, head: RequestHead, rest: bytes
               ) -> bool | Routed:
        """Raw route for ``PUT``/``SOURCE /live/<mount>``, and for the ``OPTIONS`` probe of
        libshout clients (``*`` or a mount). Returns True if it took the transport,
        ``Routed.NEXT_REQUEST`` after challenging a client that keeps its connection."""
        if head.method == "OPTIONS" and (head.target == "*" or head.path.startswith("/live/")):
            return self._options(transport, head)
        if head.method not in ("PUT", "SOURCE") or not head.path.startswith("/live/"):
            return False
        name = head.path[len("/live/") :]
        peer = transport.get_extra_info("peername")
        authorization = head.header("authorization")

        def refuse(status: int, message: str, extra: dict[str, str] | None = None,
                   hold_s: float = 0.0) -> bool:
            # libshout asks without credentials first, to be challenged: not worth a
            # warning; nor is each guess refused unexamined (they come by the thousand)
            level = logging.INFO if status == 401 and not authorization else \
                logging.DEBUG if status == 429 else logging.WARNING
            log.log(level, "source %s on /live/%s refused: %d %s", peer, name, status, message)
            self._counters.inc("sources_refused", status=str(status))
            response = simple_response(status, message, extra)
            if hold_s > 0:
                transport.set_protocol(HeldAnswer(transport, response, hold_s,
                                                  lambda: self.throttle.done(key)))
                return True
            transport.write(response)
            transport.close()
            return True

        if not MOUNT_NAME.match(name):
            return refuse(404, "mount names are 1-64 of A-Z a-z 0-9 . _ -")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        key = self.throttle.key_for(host, head.header("x-forwarded-for"))
        if authorization and (wait_s := self.throttle.blocked_for_s(key)):
            return refuse(429, "too many wrong passwords from your address: try again later",
                          {"Retry-After": str(math.ceil(wait_s))})
        if not check_basic_auth(authorization, self.password_for(name)):
            challenge = {"WWW-Authenticate": 'Basic realm="Loa source"'}
            message = "wrong source user or password (an Icecast source logs in as user 'source')"
            if not authorization and _bodiless(head) and _keeps_alive(head):
                # libshout's challenge: answered on the connection it keeps for its next try
                log.info("source %s on /live/%s challenged for its credentials", peer, name)
                self._counters.inc("sources_refused", status="401")
                transport.write(simple_response(401, message, challenge,
                                                version=response_version(head),
                                                connection="keep-alive"))
                return Routed.NEXT_REQUEST
            hold_s = self.throttle.failed(key) if authorization else 0.0
            return refuse(401, message, challenge, hold_s)
        try:
            body = body_reader(head.headers)
        except FramingError as exc:
            return refuse(exc.status, str(exc))
        if isinstance(body, Sized) and body.done:
            # libshout's credential check (``Content-Length: 0``): nothing to put on air
            transport.write(simple_response(200, "source credentials accepted",
                                            version=response_version(head)))
            transport.close()
            return True
        content_type = head.header("content-type")
        try:
            fmt = format_for_content_type(content_type) if content_type else None
        except DecodeError as exc:
            return refuse(415, str(exc))
        try:
            mount = self.get(name)
        except ValueError as exc:
            return refuse(403, str(exc))
        ghost = mount.session
        if ghost is not None and not ghost.stalled:
            return refuse(403, f"mount /live/{name} is busy: another source is live on it "
                               f"(a source silent for {self._live.stall_ms / 1000:g} s is "
                               "replaced by the next with the right password)")

        session = IngestSession(mount, transport, head, fmt, content_type, body,
                                counters=self._counters, timeout_s=self.source_timeout_s)
        mount.session = session
        mount.sessions_total += 1
        transport.set_protocol(session)
        if ghost is None:
            session.start(rest)
            return True
        # The mount's source is connected but stalled (a dead link that left its TCP
        # connection open): the right password takes over now, not after the timeout.
        log.warning("source %s on /live/%s replaces the stalled source %s", peer, name,
                    ghost.peer)
        self._counters.inc("sources_replaced", mount=name)
        session.hold()  # until the ghost is cut and the new session starts
        task = asyncio.get_running_loop().create_task(self._replace(ghost, session, rest))
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)
        return True

    async def _replace(self, ghost: MountSession, session: IngestSession, rest: bytes) -> None:
        try:
            await ghost.stop("replaced by a new source")  # cut, its decoder thread joined
        except asyncio.CancelledError:
            await session.stop("shut down before it went live")
            raise
        except Exception:  # a failed cut must not keep the studio off the air
            log.exception("cutting the stalled source on /live/%s failed", session.mount.name)
        session.start(rest)

    def _options(self, transport: asyncio.Transport, head: RequestHead) -> bool | Routed:
        """The RFC 2817 probe libshout sends first (``OPTIONS *``, ``Upgrade: TLS/1.0,
        HTTP/1.1``): 204, ``Allow`` naming the methods (libshout then sources with PUT). On a
        port without TLS, the answer has no ``Upgrade`` (carry on in plain HTTP) and closes,
        as Icecast 2.4's does. With TLS the front door upgrades the connection first and this
        answer comes inside it: it keeps the connection, for libshout to be challenged and
        to source on it (if it reconnected, it would do so in plain HTTP)."""
        secure = transport.get_extra_info("sslcontext") is not None
        log.info("OPTIONS %s from %s (Upgrade: %s): %s", head.target,
                 transport.get_extra_info("peername"), head.header("upgrade") or "-",
                 "upgraded to TLS" if secure else "carrying on in plain HTTP")
        if secure and _keeps_alive(head):
            transport.write(simple_response(204, "", {"Allow": ALLOWED_METHODS},
                                            version=response_version(head),
                                            connection="keep-alive"))
            return Routed.NEXT_REQUEST
        transport.write(simple_response(204, "", {"Allow": ALLOWED_METHODS},
                                        version=response_version(head)))
        transport.close()
        return True


def _bodiless(head: RequestHead) -> bool:
    """A request that says its body is empty (``Content-Length: 0``, no transfer coding)."""
    return head.header("content-length").strip() == "0" and not head.header("transfer-encoding")


def _keeps_alive(head: RequestHead) -> bool:
    """Whether the client keeps its connection after the answer: HTTP/1.1 unless it says
    ``close``, HTTP/1.0 (and ICE) only when it says ``keep-alive``."""
    tokens = {t.strip().lower() for t in head.header("connection").split(",")}
    if "close" in tokens:
        return False
    return head.version == "HTTP/1.1" or "keep-alive" in tokens


class HeldAnswer(asyncio.Protocol):
    """A refused connection whose answer the throttle holds: whatever the client sends is
    dropped; after ``hold_s`` (loop time) ``response`` is written and the connection closed.
    ``release`` runs once, when the answer went or the client left first."""

    def __init__(self, transport: asyncio.Transport, response: bytes, hold_s: float,
                 release: Callable[[], None]) -> None:
        self._transport: asyncio.Transport | None = transport
        self._response = response
        self._release: Callable[[], None] | None = release
        self._timer = asyncio.get_running_loop().call_later(hold_s, self._answer)

    def _answer(self) -> None:
        if self._transport is not None:
            self._transport.write(self._response)
            self._transport.close()
            self._transport = None
        self._released()

    def _released(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return True  # a client that half-closes still gets its answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()
        self._transport = None
        self._released()
