"""Icecast-compatible source push: ``PUT`` (or legacy ``SOURCE``) ``/live/<mount>``.

What ffmpeg's ``icecast://`` output does: ``PUT`` with ``Expect: 100-continue`` and Basic auth
as user ``source``, then the encoded stream as an unbounded body until it closes. We answer
``100 Continue`` (or ``200 OK`` when nothing is expected, as Icecast does), then read until EOF.
The bytes go through a bounded `ByteFeed` to a decoder thread; its frames land in the mount's
`LiveSource`. A busy mount answers 403, a wrong password 401, an unknown type 415; bytes that
do not decode end that source alone, with a 400 where the client still listens for one.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import re
from collections.abc import Callable

from loa.codecs.decode import (
    ByteFeed,
    DecodeError,
    StreamDecoder,
    format_for_content_type,
)
from loa.core.clock import Clock
from loa.core.counters import Counters
from loa.core.pcm import Samples
from loa.playout.fanout import tune_socket
from loa.playout.inputs.live import LiveSettings, LiveSource
from loa.playout.programme import Programme, ProgrammeKind
from loa.protocol.http import RequestHead, simple_response

log = logging.getLogger(__name__)

MOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_MOUNTS = 64
SOURCE_USER = "source"


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


class Mount:
    """A named live input (``studio``): one programme, at most one source at a time."""

    def __init__(self, name: str, programme: Programme, source: LiveSource) -> None:
        self.name = name
        self.programme = programme
        self.source = source
        self.session: IngestSession | None = None
        self.sessions_total = 0
        self.title = ""  # "now playing", from the encoder's /admin/metadata updates

    def describe(self) -> dict[str, object]:
        """Status snapshot: connection, stall, jitter depth and target (frames), sessions, title."""
        s = self.session
        return {
            "mount": self.name,
            "programme": self.programme.id,
            "connected": s is not None,
            "stalled": self.source.stalled,
            "content_type": s.content_type if s else None,
            "frames_in": self.source.frames_in,
            "jitter_frames": len(self.source.jitter),
            "jitter_target_frames": self.source.jitter.target_frames,
            "sessions_total": self.sessions_total,
            "title": self.title,
        }


class Mounts:
    """The Icecast-style mounts (``/live/<name>``): creates each mount's LiveSource and
    programme (registered through ``register``), checks source credentials and accepts source
    connections from the front door. A mount's own password wins over ``global_password``."""

    def __init__(
        self,
        register: Callable[[Programme], object],  # adds a mount's programme to the engine
        clock: Clock,
        counters: Counters,
        live: LiveSettings,
        global_password: str,
        mount_passwords: dict[str, str],
        sndbuf_bytes: int = 0,
    ) -> None:
        self._register = register
        self._clock = clock
        self._counters = counters
        self._live = live
        self.global_password = global_password
        self.mount_passwords = mount_passwords
        self.sndbuf_bytes = sndbuf_bytes
        self.mounts: dict[str, Mount] = {}
        for name in mount_passwords:
            self.get(name)

    def get(self, name: str) -> Mount:
        """The mount of that name, created on first use (a ValueError for a bad name)."""
        mount = self.mounts.get(name)
        if mount is not None:
            return mount
        if not MOUNT_NAME.match(name):
            raise ValueError(f"mount name {name!r} must be 1-64 of A-Z a-z 0-9 . _ -")
        if len(self.mounts) >= MAX_MOUNTS:
            raise ValueError(f"too many mounts (at most {MAX_MOUNTS})")
        source = LiveSource(f"live/{name}", self._clock, self._counters, self._live)
        programme = Programme(f"Trực tiếp /live/{name}", ProgrammeKind.LIVE, source)
        self._register(programme)
        mount = Mount(name, programme, source)
        self.mounts[name] = mount
        return mount

    def password_for(self, name: str) -> str:
        """The source password of a mount: its own if set (non-empty), else the global one."""
        return self.mount_passwords.get(name) or self.global_password

    def update_metadata(self, mount_path: str, mode: str, song: str, authorization: str
                        ) -> tuple[int, str]:
        """Icecast's ``GET /admin/metadata?mount=/live/x&mode=updinfo&song=…``, which broadcast
        software (BUTT, Mixxx, …) sends with the source credentials. Returns (status, message)."""
        name = mount_path.removeprefix("/live/").lstrip("/")
        if not MOUNT_NAME.match(name):
            return 400, "unknown mount"
        if not check_basic_auth(authorization, self.password_for(name)):
            return 401, "wrong source password"
        if mode != "updinfo":
            return 400, "only mode=updinfo is supported"
        mount = self.mounts.get(name)
        if mount is None:
            return 400, "unknown mount"
        mount.title = song[:256]
        log.info("/live/%s now playing: %s", name, mount.title)
        return 200, "Metadata update successful"

    def accept(self, transport: asyncio.Transport, head: RequestHead, rest: bytes) -> bool:
        """Raw route for ``PUT``/``SOURCE /live/<mount>``. Returns True if it took the transport."""
        if head.method not in ("PUT", "SOURCE") or not head.path.startswith("/live/"):
            return False
        name = head.path[len("/live/") :]
        peer = transport.get_extra_info("peername")

        def refuse(status: int, message: str, extra: dict[str, str] | None = None) -> bool:
            log.warning("source %s on /live/%s refused: %d %s", peer, name, status, message)
            self._counters.inc("sources_refused", status=str(status))
            transport.write(simple_response(status, message, extra))
            transport.close()
            return True

        if not MOUNT_NAME.match(name):
            return refuse(404, "mount names are 1-64 of A-Z a-z 0-9 . _ -")
        if not check_basic_auth(head.header("authorization"), self.password_for(name)):
            return refuse(401, "wrong source password (user must be 'source')",
                          {"WWW-Authenticate": 'Basic realm="Loa source"'})
        content_type = head.header("content-type")
        try:
            fmt = format_for_content_type(content_type) if content_type else None
        except DecodeError as exc:
            return refuse(415, str(exc))
        try:
            mount = self.get(name)
        except ValueError as exc:
            return refuse(403, str(exc))
        if mount.session is not None:
            return refuse(403, f"mount /live/{name} is busy: another source is live on it")

        session = IngestSession(self, mount, transport, head, fmt, content_type)
        mount.session = session
        mount.sessions_total += 1
        transport.set_protocol(session)
        session.start(rest)
        return True


class IngestSession(asyncio.Protocol):
    """One connected source. Owns its transport, its feed and its decoder thread."""

    def __init__(
        self,
        mounts: Mounts,
        mount: Mount,
        transport: asyncio.Transport,
        head: RequestHead,
        fmt: str | None,
        content_type: str,
    ) -> None:
        self.mounts = mounts
        self.mount = mount
        self.transport: asyncio.Transport | None = transport
        self.content_type = content_type or "(probed)"
        self.peer = transport.get_extra_info("peername")
        self._expects_continue = head.header("expect").lower() == "100-continue"
        self._version = "HTTP/1.1" if head.version == "HTTP/1.1" else "HTTP/1.0"
        self.feed = ByteFeed()
        self.bytes_in = 0
        self.frames_decoded = 0
        self._ended = False
        self.decoder = StreamDecoder(
            self.feed,
            format=fmt,
            label=f"/live/{mount.name}",
            on_frames=self._on_frames,
            on_end=self._on_end,
            on_error=self._on_error,
        )

    def start(self, rest: bytes) -> None:
        """Answer ``100 Continue`` (or ``200 OK``), connect the mount's source, start the
        decoder thread and feed it ``rest`` (body bytes read with the head)."""
        tr = self.transport
        assert tr is not None
        tune_socket(tr, 0)
        if self._expects_continue:
            tr.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        else:
            tr.write(f"{self._version} 200 OK\r\nServer: Loa\r\n\r\n".encode())
        self.feed.on_drained(asyncio.get_running_loop(), self._resume)
        self.mount.source.connect()
        self.decoder.start()
        log.info("source %s live on /live/%s (%s)", self.peer, self.mount.name, self.content_type)
        if rest:
            self.data_received(rest)

    # transport side

    def data_received(self, data: bytes) -> None:
        """Pass body bytes to the decoder; pause reading while its bounded feed is full."""
        self.bytes_in += len(data)
        if not self.feed.write(data) and self.transport is not None:
            self.transport.pause_reading()  # the decoder is behind: let TCP push back

    def _resume(self) -> None:
        if self.transport is not None and not self._ended:
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        """The source finished sending: end the decoder's feed; the connection then closes."""
        self.feed.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """End the session (disconnected): stop the decoder and free the mount."""
        self.transport = None
        self.feed.close()
        self._end("disconnected")

    # decoder side (called on the loop)

    def _on_frames(self, frames: list[Samples]) -> None:
        if self._ended:
            return
        self.frames_decoded += len(frames)
        self.mount.source.push_frames(frames)

    def _on_end(self) -> None:
        self._end("end of stream")

    def _on_error(self, exc: DecodeError) -> None:
        log.error("source on /live/%s from %s rejected: %s", self.mount.name, self.peer, exc)
        self.mounts._counters.inc("sources_failed", mount=self.mount.name)
        tr = self.transport
        if tr is not None:
            if self._expects_continue and self.frames_decoded == 0:
                tr.write(simple_response(400, f"cannot decode the stream: {exc}",
                                         version="HTTP/1.1"))
            tr.close()
        self._end("decode error")

    def _end(self, why: str) -> None:
        if self._ended:
            return
        self._ended = True
        self.decoder.stop()
        if self.mount.session is self:
            self.mount.session = None
            self.mount.source.disconnect()
        log.info("source on /live/%s ended (%s) after %d bytes", self.mount.name, why,
                 self.bytes_in)

    def close(self) -> None:
        """Close the source's connection and its feed (the session then ends as disconnected)."""
        if self.transport is not None:
            self.transport.close()
        self.feed.close()
