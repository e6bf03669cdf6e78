"""A pushed source's connection read by its own decoder thread, beside the loop.

An Icecast-style source sends a page every 20 ms or so. Read on the loop, each page wakes the
loop, which wakes the decoder thread, which (before) woke the loop again with the frames: on an
idle server each of those wake-ups costs ~0.3 % of a core (issue 17, measured 2026-11-30 with
strace and thread CPU: three loop wake-ups a page). Here the decoder thread reads the socket
itself, as Icecast's source thread does: the loop is not woken by a source at all, and the
frames reach the tick through the source's inbox (``LiveSource.offer_frames``).

The connection's transport stays the loop's for everything but reading: its reading is paused
for good, and the thread reads a duplicate of its descriptor (one socket, two descriptors).
The answers a source gets (``100 Continue``, ``200``, an error) are still written, and the
connection closed, by the loop. Only a plain TCP (or Unix) socket is read this way: a TLS
connection's bytes must go through the loop's TLS layer, and a transport with no socket (a
test's) has nothing to read, so both keep the loop's reading (``SourceSocket.of`` says None).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from loa.protocol.framing import BodyReader, FramingError

log = logging.getLogger(__name__)

RECV_BYTES = 16 * 1024
# A blocked read looks at its stop flag this often; ``close`` wakes it at once (a shutdown of
# the reading side), this only bounds a read the shutdown did not reach.
POLL_S = 1.0


class SourceSocket:
    """The body of one source connection, read (blocking) by the decoder thread.

    ``read(n)`` gives up to ``n`` body bytes (the framing undone by ``body``: until close, a
    length, chunks), blocking until some arrive, and b"" at the end: the source hung up, the
    body ended, the connection failed, or ``close`` was called. Malformed framing ends the body
    where it broke: the body bytes before the fault are read, then the end, and ``on_fault``
    is called (on the decoder thread) with what was wrong. ``bytes_in`` counts body bytes,
    ``last_data_s`` is when bytes last came (``time.monotonic``).
    """

    def __init__(self, sock: socket.socket, body: BodyReader, rest: bytes,
                 on_fault: Callable[[str], None]) -> None:
        sock.settimeout(POLL_S)
        self._sock = sock
        self._body = body
        self._on_fault = on_fault
        self._pending: deque[bytes] = deque()
        self._ended = False  # nothing more to read once pending is empty
        self._closed = False
        self._released = False
        self._lock = threading.Lock()  # close (the loop) and release (the thread) apart
        self.bytes_in = 0
        self.last_data_s = time.monotonic()
        self._take(rest)

    @classmethod
    def of(cls, transport: asyncio.Transport, body: BodyReader, rest: bytes,
           on_fault: Callable[[str], None]) -> SourceSocket | None:
        """A reader of ``transport``'s connection (a duplicate of its descriptor), ``rest``
        (body bytes read with the request head) first; None when the connection cannot be
        read directly (TLS, no socket: see the module). The caller pauses the transport's
        reading for good."""
        if transport.get_extra_info("sslcontext") is not None \
                or transport.get_extra_info("ssl_object") is not None:
            return None
        raw = transport.get_extra_info("socket")
        if raw is None:
            return None
        try:
            fd = os.dup(raw.fileno())
        except (OSError, ValueError):
            return None
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            os.close(fd)
            return None
        if sock.type != socket.SOCK_STREAM:
            sock.close()
            return None
        return cls(sock, body, rest, on_fault)

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` body bytes (all of a received piece if ``n`` < 1), blocking while there
        are none; b"" at the end. On the decoder thread."""
        pending = self._pending
        while not pending:
            if self._ended or self._closed:
                return b""
            try:
                data = self._sock.recv(RECV_BYTES)
            except TimeoutError:
                continue  # nothing for POLL_S: look at the stop flag, then wait on
            except OSError:
                data = b""  # reset, shut down: the end of the body
            if not data:
                self._ended = True
                return b""
            self.last_data_s = time.monotonic()
            self._take(data)
        chunk = pending.popleft()
        if 0 < n < len(chunk):
            pending.appendleft(chunk[n:])
            chunk = chunk[:n]
        return chunk

    def _take(self, data: bytes) -> None:
        """``data`` as received: its body bytes queued; the end noted when the body ends."""
        if not data or self._body.done:
            return
        try:
            pieces = self._body.feed(data)
        except FramingError as exc:
            pieces = exc.body  # what came before the fault still plays
            self._ended = True
            self._on_fault(f"malformed body: {exc}")
        for piece in pieces:
            self._pending.append(piece)
            self.bytes_in += len(piece)
        if self._body.done:
            self._ended = True

    def close(self) -> None:
        """Read no more (from any thread): a blocked read returns at once, then the end. The
        connection itself stays open for the loop to answer on and close."""
        with self._lock:
            self._closed = True
            if self._released:
                return  # the descriptor is closed, perhaps reused: leave it alone
            try:
                self._sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass  # already gone

    def release(self) -> None:
        """Close the duplicate descriptor, once the decoder thread is done reading it."""
        with self._lock:
            self._released = True
            self._sock.close()
