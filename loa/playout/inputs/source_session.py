"""One connected Icecast-style source: the raw transport after its request head, the body
unframed (`loa.protocol.framing`), and the `LiveIngest` that decodes it into the mount's
`LiveSource`. `loa.playout.inputs.push.Mounts` accepts the connection and makes the session.
Once live, a plain TCP connection is read by the decoder thread itself
(`loa.playout.inputs.source_socket`): the loop is woken by the source for nothing but its
timeout; a TLS connection is read by the loop, as before.

The session also watches the connection as Icecast does: a source that sends nothing for
``timeout_s`` (Icecast's ``source-timeout``) is dropped, and its socket has TCP keepalive, so a
dead 4G link that left its TCP connection open does not hold the mount.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from typing import TYPE_CHECKING, Any

from loa.codecs.decode import DecodeError
from loa.core.counters import Counters
from loa.playout.fanout import tune_socket
from loa.playout.inputs.ingest import LiveIngest
from loa.playout.inputs.source_socket import SourceSocket
from loa.protocol.framing import BodyReader, FramingError
from loa.protocol.http import RequestHead, simple_response

if TYPE_CHECKING:
    from loa.playout.inputs.push import Mount

log = logging.getLogger(__name__)

KEEPALIVE_PROBES = 3


def response_version(head: RequestHead) -> str:
    """The HTTP version to answer a request in: HTTP/1.1 to 1.1, else HTTP/1.0."""
    return "HTTP/1.1" if head.version == "HTTP/1.1" else "HTTP/1.0"


def enable_keepalive(transport: Any, idle_s: float) -> None:
    """TCP keepalive on a source's socket: the kernel probes after ``idle_s`` of silence, then
    every third of that, and after 3 unanswered probes drops the connection (the protocol's
    ``connection_lost``). This finds a dead peer even while reading is paused for
    back-pressure, when the inactivity timeout does not run. No-op without a TCP socket."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    idle = max(1, math.ceil(idle_s))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; other systems keep their defaults
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // 3))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)
    except OSError:
        pass  # not a TCP socket (tests over pipes)


class IngestSession(asyncio.Protocol):
    """One connected source: the raw transport after the request head, and its `LiveIngest`.

    Reads the body (unframed as ``body`` says) until the source hangs up or the body ends;
    what it sent plays out, then the mount is free again. Bytes that do not decode, or a
    malformed chunk, end the session with a 400 where the client still waits for an answer
    (``Expect: 100-continue`` and nothing decoded yet). A source that sends nothing for
    ``timeout_s`` (reading paused for back-pressure does not count) is dropped. ``body``
    unframes what the socket delivers; ``counters`` counts timeouts and failures per mount.
    """

    kind = "icecast"  # a mount's source kind (``push.MountSession``): the WHIP one is "webrtc"

    def __init__(
        self,
        mount: Mount,
        transport: asyncio.Transport,
        head: RequestHead,
        fmt: str | None,
        content_type: str,
        body: BodyReader,
        *,
        counters: Counters,
        timeout_s: float,
    ) -> None:
        self.mount = mount
        self._counters = counters
        self.transport: asyncio.Transport | None = transport
        self.content_type = content_type or "(probed)"
        self.peer = transport.get_extra_info("peername")
        self._expects_continue = head.header("expect").lower() == "100-continue"
        self._version = response_version(head)
        self._body = body
        self._loop = asyncio.get_running_loop()
        self._timeout_s = timeout_s
        self._timer: asyncio.TimerHandle | None = None
        self._last_data_at = self._loop.time()  # loop seconds
        self._reading_paused = False
        self._held = False  # reading paused until start (a stalled source being replaced)
        self._started = False
        self._ended = False
        self._end_reason = ""  # why the session is closing, when it is not the source's EOF
        self._socket: SourceSocket | None = None  # the connection, read by the decoder thread
        self.ingest = LiveIngest(
            mount.source,
            format=fmt,
            label=f"/live/{mount.name}",
            on_end=self._on_end,
            pause_reading=self._pause_reading,
            resume_reading=self._resume_reading,
            demand=mount.source.demand,  # no zone takes the mount: parsed, not decoded
        )

    @property
    def bytes_in(self) -> int:
        """Body bytes received so far (framing excluded)."""
        return self.ingest.bytes_in

    @property
    def frames_decoded(self) -> int:
        """Canonical frames decoded so far."""
        return self.ingest.frames_decoded

    @property
    def packets_skipped(self) -> int:
        """Packets parsed and not decoded (nobody heard the mount)."""
        return self.ingest.packets_skipped

    @property
    def stalled(self) -> bool:
        """Live, but its mount's source is stalled: nothing arrived for the stall time and
        nothing is buffered. A new source with the right password may replace it."""
        return self._started and not self._ended and self.mount.source.stalled

    def start(self, rest: bytes) -> None:
        """Answer ``100 Continue`` (or ``200 OK``), start the ingest (which connects the mount's
        source), arm the inactivity timeout and feed it ``rest`` (body bytes read with the
        head). Does nothing if the session was stopped, or its client left, before."""
        tr = self.transport
        if self._ended:
            return
        if tr is None:
            self._end("hung up before it went live")
            return
        self._started = True
        tune_socket(tr, 0)
        enable_keepalive(tr, self._timeout_s)
        if self._expects_continue:
            tr.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        else:
            tr.write(f"{self._version} 200 OK\r\nServer: Loa\r\n\r\n".encode())
        self._socket = SourceSocket.of(tr, self._body, rest, self._fault)
        if self._socket is not None:
            tr.pause_reading()  # for good: the decoder thread reads the connection
            self.ingest.read_from(self._socket)
            rest = b""  # the reader has it
        self.ingest.start()
        log.info("source %s live on /live/%s (%s)", self.peer, self.mount.name, self.content_type)
        self._last_data_at = self._loop.time()
        self._timer = self._loop.call_later(self._timeout_s, self._check_idle)
        if self._held:
            self._held = False
            if self._socket is None:
                tr.resume_reading()
        if rest:
            self.data_received(rest)

    def _fault(self, why: str) -> None:
        """The body's framing broke (the reader saw it, on the decoder thread): cut with 400,
        on the loop."""
        try:
            self._loop.call_soon_threadsafe(self._cut, why, 400)
        except RuntimeError:
            pass  # the loop has closed: nobody is left to answer

    def hold(self) -> None:
        """Read nothing until ``start`` (while the stalled source it replaces is cut)."""
        if self.transport is not None:
            self._held = True
            self.transport.pause_reading()

    # transport side

    def data_received(self, data: bytes) -> None:
        """Unframe body bytes and pass them to the ingest (which pauses reading while its feed
        is full); the end of a framed body ends the input."""
        self._last_data_at = self._loop.time()
        if self._body.done:
            return  # past the end of a framed body: not audio
        try:
            pieces = self._body.feed(data)
        except FramingError as exc:
            for piece in exc.body:  # what came before the fault still plays
                self.ingest.write(piece)
            self._cut(f"malformed body: {exc}", 400)
            return
        for piece in pieces:
            self.ingest.write(piece)
        if self._body.done:
            self._cancel_timer()  # the body is whole: silence from now on is expected
            if self.transport is not None:
                self.transport.pause_reading()
            self.ingest.finish_input()

    def _pause_reading(self) -> None:
        self._reading_paused = True
        if self.transport is not None:
            self.transport.pause_reading()  # the decoder is behind: let TCP push back

    def _resume_reading(self) -> None:
        self._reading_paused = False
        self._last_data_at = self._loop.time()
        if self.transport is not None and not self._body.done:
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        """The source finished sending: the rest is decoded; the connection then closes."""
        self.ingest.finish_input()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """The source hung up (or was cut): what it sent is decoded and played out, then the
        session ends and the mount is free."""
        self.transport = None
        self._cancel_timer()
        self.ingest.finish_input()

    # the inactivity timeout (Icecast's source-timeout)

    def _check_idle(self) -> None:
        self._timer = None
        if self._ended or self.transport is None or self._body.done:
            return
        if self._socket is not None:  # read by the decoder thread: when it last got bytes
            idle = time.monotonic() - self._socket.last_data_s
        else:
            now = self._loop.time()
            if self._reading_paused:
                self._last_data_at = now  # the decoder is behind, not the source
            idle = now - self._last_data_at
        if idle < self._timeout_s:
            self._timer = self._loop.call_later(self._timeout_s - idle, self._check_idle)
            return
        self._counters.inc("sources_timed_out", mount=self.mount.name)
        self._cut(f"nothing received for {idle:.1f} s (source timeout {self._timeout_s:g} s)")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _cut(self, why: str, status: int = 0) -> None:
        """Close the connection for ``why`` (answering ``status`` first where the client still
        waits for an answer); what was received plays out, then the session ends."""
        log.warning("source %s on /live/%s cut: %s", self.peer, self.mount.name, why)
        if status:
            self._counters.inc("sources_failed", mount=self.mount.name)
        self._end_reason = why
        self._cancel_timer()
        tr = self.transport
        if tr is not None:
            if status and self._expects_continue and not self.ingest.audio_seen:
                tr.write(simple_response(status, why, version="HTTP/1.1"))
            tr.close()
        self.ingest.finish_input()

    # the ingest's end (on the loop)

    def _on_end(self, error: DecodeError | None) -> None:
        if error is None:
            tr = self.transport
            if tr is not None:
                if self._body.done and self._expects_continue:
                    # a framed body, read whole: the request gets its final answer
                    tr.write(simple_response(200, "stream received", version="HTTP/1.1"))
                tr.close()  # the stream has ended: whatever else comes is not audio
            self._end(self._end_reason or "end of stream")
            return
        if self._end_reason:  # already cut (and counted): the truncated rest did not decode
            self._end(self._end_reason)
            return
        log.error("source on /live/%s from %s rejected: %s", self.mount.name, self.peer, error)
        self._counters.inc("sources_failed", mount=self.mount.name)
        tr = self.transport
        if tr is not None:
            if self._expects_continue and not self.ingest.audio_seen:
                tr.write(simple_response(400, f"cannot decode the stream: {error}",
                                         version="HTTP/1.1"))
            tr.close()
        self._end("decode error")

    def _end(self, why: str) -> None:
        if self._ended:
            return
        self._ended = True
        self._cancel_timer()
        if self.mount.session is self:
            self.mount.session = None
        log.info("source on /live/%s ended (%s) after %d bytes", self.mount.name, why,
                 self.bytes_in)

    def close(self) -> None:
        """Close the source's connection: what it sent still plays out, then the session ends."""
        if self.transport is not None:
            self.transport.close()
        self.ingest.finish_input()

    async def stop(self, why: str = "stopped") -> None:
        """Cut the source now (shutdown, or a new source replacing a stalled one): close its
        connection, drop what its mount had buffered, and end and join its decoder thread
        beside the loop. ``why`` goes to the log."""
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()
        await self.ingest.stop()
        self._end(why)
