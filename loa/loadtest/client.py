"""Light simulated endpoints for load: raw asyncio protocols, a few microseconds a packet.

A load generator that spends more CPU than the server it measures tells nothing, so these
clients do the WebSocket handshake and framing, or the Ogg paging, themselves, and record only
numbers: packets, sequence gaps, duplicates, start-up delay, latency (native protocol) into a
fixed histogram, programme switches, reconnects, and the audio timeline against the wall clock
(stalls, longest silence, share of real time delivered: `loa.loadtest.timeline`), on every
protocol: the native header's pts, Ogg granule positions, MP3 frame counts. Decoding is left to
the probe endpoints (`loa.loadtest.endpoint.SimulatedEndpoint`).
"""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import os
import struct
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np

from loa.core.pcm import FRAME_SAMPLES
from loa.loadtest.mp3_frames import Mp3FrameReader
from loa.loadtest.timeline import TimelineMonitor
from loa.protocol.native import HEADER, HEADER_BYTES

# Latency histogram: 0.1 ms bins up to 10 s; later samples land in the last bin.
LATENCY_BIN_NS = 100_000
LATENCY_BINS = 100_000
_OGG_HEADER = struct.Struct("<4sBBqIIIB")


class Protocol(enum.Enum):
    WS = "ws"
    OGG = "ogg"
    MP3 = "mp3"


@dataclass
class EndpointStats:
    packets: int = 0
    bytes: int = 0
    gaps: int = 0
    duplicates: int = 0
    connects: int = 0
    reconnects: int = 0
    startup_ns: list[int] = field(default_factory=list)  # per connection: connect -> 1st audio
    # (arrival ns, programme id, priority) whenever the programme or priority changes
    switches: list[tuple[int, int, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    first_audio_after_ns: list[int] = field(default_factory=list)  # per (re)connect


class LightEndpoint(asyncio.Protocol):
    """One endpoint. ``start()`` connects; after a drop it reconnects after ``retry_s``."""

    def __init__(self, url: str, proto: Protocol, histogram: np.ndarray,
                 retry_s: float = 1.0) -> None:
        split = urlsplit(url)
        self.host = split.hostname or "127.0.0.1"
        self.port = split.port or 80
        self.path = split.path + (f"?{split.query}" if split.query else "")
        self.proto = proto
        self.hist = histogram
        self.retry_s = retry_s
        self.stats = EndpointStats()
        self.timeline = TimelineMonitor()
        self._granule: int | None = None  # Ogg: the last page's, on the current logical stream
        self._mp3 = Mp3FrameReader()
        self.transport: asyncio.Transport | None = None
        self.clock_offset_ns = 0
        self._buf = bytearray()
        self._head_done = False
        self._connect_ns = 0
        self._got_audio = False
        self._last_seq: int | None = None
        self._on_air: tuple[int, int] | None = None
        self._closing = False  # we closed it on purpose (drop, end of run)
        self._retry_now = False
        self._lost = asyncio.Event()
        self._ping_sent_ns = 0
        self._best_rtt = 1 << 62
        self.wanted = True

    # connection management

    async def connect(self) -> bool:
        loop = asyncio.get_running_loop()
        self._closing = False
        try:
            await loop.create_connection(lambda: self, self.host, self.port)
        except OSError as exc:
            self.stats.errors.append(f"connect: {exc.strerror or exc}")
            return False
        return True

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until ``stop``; after a drop, reconnect after ``retry_s``."""
        while not stop.is_set():
            if self.wanted and self.transport is None:
                if self.stats.connects:
                    self.stats.reconnects += 1
                if await self.connect():
                    lost = asyncio.ensure_future(self._lost.wait())
                    stopped = asyncio.ensure_future(stop.wait())
                    await asyncio.wait({lost, stopped}, return_when=asyncio.FIRST_COMPLETED)
                    lost.cancel()
                    stopped.cancel()
                    if self._retry_now:  # a reconnect storm: straight back in
                        self._retry_now = False
                        continue
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.retry_s)
            except TimeoutError:
                pass
        self.close()

    def close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    def drop(self, reconnect_now: bool = False) -> None:
        """Fault injection: cut the connection; it comes back after ``retry_s``, or at once."""
        if self.transport is not None:
            self._retry_now = reconnect_now
            self._closing = True  # not an error of the server's
            self.transport.abort()

    def stall(self, seconds: float) -> None:
        """Fault injection: stop reading, like a device whose radio link froze."""
        if self.transport is not None:
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(seconds, self._unstall)

    def _unstall(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._lost = asyncio.Event()
        self.stats.connects += 1
        self._connect_ns = time.monotonic_ns()
        self._buf = bytearray()
        self._head_done = False
        self._got_audio = False
        self._last_seq = None
        self._granule = None
        self._mp3 = Mp3FrameReader()
        self.timeline.restart()  # the dead air of a reconnect counts; positions start anew
        host = f"{self.host}:{self.port}"
        if self.proto is Protocol.WS:
            key = base64.b64encode(os.urandom(16)).decode()
            req = (f"GET {self.path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n")
        else:
            req = f"GET {self.path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: loa-loadtest\r\n\r\n"
        self.transport.write(req.encode())  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self._closing:
            self.stats.errors.append("connection lost" + (f": {exc}" if exc else ""))
        self._closing = False
        self._lost.set()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self._head_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status_line = bytes(buf[: buf.find(b"\r\n")])
            ok = b" 101 " in status_line if self.proto is Protocol.WS else b" 200 " in status_line
            if not ok:
                self.stats.errors.append(status_line.decode("latin-1", "replace"))
                self.wanted = False  # a refusal is final for this endpoint
                self.close()
                return
            del buf[: end + 4]
            self._head_done = True
            if self.proto is Protocol.WS:
                self._send_ping()
        if self.proto is Protocol.WS:
            self._parse_ws(buf)
        elif self.proto is Protocol.OGG:
            self._parse_ogg(buf)
        else:
            self._parse_mp3(buf)

    # the native protocol

    def _send_ping(self) -> None:
        self._ping_sent_ns = time.monotonic_ns()
        payload = json.dumps({"type": "ping", "t0": self._ping_sent_ns}).encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        assert len(payload) < 126
        if self.transport is not None:
            self.transport.write(bytes((0x81, 0x80 | len(payload))) + mask + masked)

    def _parse_ws(self, buf: bytearray) -> None:
        now = time.monotonic_ns()
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length, hdr = b1 & 0x7F, 2
            if length == 126:
                if n - pos < 4:
                    break
                length, hdr = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if n - pos < 10:
                    break
                length, hdr = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if n - pos < hdr + length:
                break
            start = pos + hdr
            opcode = b0 & 0x0F
            if opcode == 2 and length >= HEADER_BYTES:
                self._native(buf, start, length, now)
            elif opcode == 1:
                self._text(bytes(buf[start : start + length]), now)
            elif opcode == 9 and self.transport is not None:  # ping: answer, masked
                self.transport.write(bytes((0x8A, 0x80)) + b"\0\0\0\0")
            elif opcode == 8:
                self.close()
            pos = start + length
        del buf[:pos]

    def _native(self, buf: bytearray, start: int, length: int, now: int) -> None:
        _, _, priority, _, seq, pts, capture_ns, programme = HEADER.unpack_from(buf, start)
        st = self.stats
        last = self._last_seq
        if last is not None:
            delta = (seq - last) & 0xFFFFFFFF
            if delta == 0 or delta > 0x7FFFFFFF:
                st.duplicates += 1
                return
            st.gaps += delta - 1
        self._last_seq = seq
        st.packets += 1
        st.bytes += length
        lat = (now - self.clock_offset_ns - capture_ns) // LATENCY_BIN_NS
        self.hist[min(max(lat, 0), LATENCY_BINS - 1)] += 1
        if self._on_air != (programme, priority):
            self._on_air = (programme, priority)
            st.switches.append((now, programme, priority))
        self.timeline.on_packet(pts, now)
        self._audio(now)

    def _text(self, data: bytes, now: int) -> None:
        try:
            msg = json.loads(data)
        except ValueError:
            return
        kind = msg.get("type")
        if kind == "pong" and msg.get("t0") == self._ping_sent_ns:
            rtt = now - self._ping_sent_ns
            if rtt < self._best_rtt:
                self._best_rtt = rtt
                self.clock_offset_ns = int(msg["server_ns"]) - (self._ping_sent_ns + now) // 2
        elif kind == "zone":
            self._last_seq = None
            self.timeline.restart()  # the new zone's stream has its own pts

    # Ogg over HTTP: count pages, check page sequence numbers

    def _parse_ogg(self, buf: bytearray) -> None:
        now = time.monotonic_ns()
        pos, n = 0, len(buf)
        while n - pos >= 27:
            if buf[pos : pos + 4] != b"OggS":
                nxt = buf.find(b"OggS", pos + 1)
                if nxt < 0:
                    pos = max(pos, n - 3)
                    break
                pos = nxt
                continue
            nsegs = buf[pos + 26]
            if n - pos < 27 + nsegs:
                break
            size = 27 + nsegs + sum(buf[pos + 27 : pos + 27 + nsegs])
            if n - pos < size:
                break
            _, _, htype, granule, _serial, seq, _, _ = _OGG_HEADER.unpack_from(buf, pos)
            if htype & 0x02 or buf[pos + 27 + nsegs : pos + 35 + nsegs] == b"OpusTags":
                self._last_seq = None  # header pages: a (new) logical stream begins
                if htype & 0x02:
                    self._granule = None
                    self.timeline.restart()  # a chained stream: granules start anew
            else:
                st = self.stats
                pages = 1  # since the last page we got: more when some were lost
                if self._last_seq is not None:
                    delta = (seq - self._last_seq) & 0xFFFFFFFF
                    if delta == 0 or delta > 0x7FFFFFFF:
                        st.duplicates += 1
                    else:
                        st.gaps += delta - 1
                        pages = delta
                self._last_seq = seq
                st.packets += 1
                st.bytes += size
                # The granule position is where the page's audio ends, in 48 kHz samples.
                prev, self._granule = self._granule, granule
                duration = ((granule - prev) // pages if prev is not None and granule > prev
                            else FRAME_SAMPLES)
                self.timeline.on_packet(granule - duration, now, duration)
                self._audio(now)
            pos += size
        del buf[:pos]

    # MP3 over HTTP: whole frames, their position counted from the frames before

    def _parse_mp3(self, buf: bytearray) -> None:
        now = time.monotonic_ns()
        st = self.stats
        for frame in self._mp3.feed(buf):
            st.packets += 1
            st.bytes += frame.size_bytes
            self.timeline.on_packet(frame.pts_samples, now, frame.duration_samples)
            self._audio(now)
        buf.clear()

    def _audio(self, now: int) -> None:
        if not self._got_audio:
            self._got_audio = True
            self.stats.startup_ns.append(now - self._connect_ns)
            self.stats.first_audio_after_ns.append(now)
