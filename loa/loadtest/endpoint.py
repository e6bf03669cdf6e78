"""A simulated endpoint (cụm loa): pulls a zone stream, optionally decodes it, and measures.

Per packet it records the arrival time, and on the native protocol the sequence number,
programme, priority and the server's capture time, so it can report latency (through a
clock-offset estimate from ping/pong), gaps, duplicates and the startup delay. On every protocol
it also holds the audio timeline (native pts, Ogg granule positions, MP3 frame counts) against
the arrival times, so dead air shows as stalls (`loa.loadtest.timeline`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import av
import numpy as np

from loa.codecs.ogg import OggReader
from loa.core.pcm import FRAME_SAMPLES, SAMPLE_RATE
from loa.core.percentiles import percentile, percentiles
from loa.loadtest.mp3_frames import Mp3FrameReader
from loa.loadtest.timeline import (
    DELIVERED_MIN_PCT,
    EXIT_DEAD_AIR,
    TimelineMonitor,
    TimelineSummary,
    Verdict,
    aggregate,
)
from loa.protocol.native import parse_packet

CLOCK_SYNC_PINGS = 5
EXIT_ERRORS = 1  # ``loa listen``: an endpoint could not connect, or was cut off


@dataclass
class EndpointReport:
    url: str
    packets: int = 0
    bytes: int = 0
    gaps: int = 0  # packets missing, by sequence number
    duplicates: int = 0
    startup_ms: float | None = None  # connect → first audio packet
    latencies_ms: list[float] = field(default_factory=list)
    clock_offset_ns: int = 0
    rtt_ms: float | None = None
    programmes: list[tuple[float, int, int]] = field(default_factory=list)  # (t_s, id, priority)
    texts: list[dict[str, object]] = field(default_factory=list)
    error: str | None = None
    crc_errors: int = 0
    timeline: TimelineSummary | None = None  # set when ``run`` returns

    def latency_percentiles(self) -> dict[str, float | None]:
        return percentiles(self.latencies_ms, (50, 99))


class OpusDecoder:
    """Decodes Opus packets to 48 kHz mono float32, through the endpoint's amplifier:
    ``gain()`` is what its volume, mute and power make of the signal (1.0: as sent)."""

    def __init__(self, gain: Callable[[], float] | None = None) -> None:
        self._ctx = av.CodecContext.create("opus", "r")
        self._ctx.sample_rate = SAMPLE_RATE
        self._ctx.layout = "mono"
        self.chunks: list[np.ndarray] = []
        self.gain = gain

    def decode(self, packet: bytes) -> None:
        for frame in self._ctx.decode(av.Packet(packet)):
            pcm = frame.to_ndarray()[0].astype(np.float32, copy=False)
            self.chunks.append(pcm if self.gain is None else pcm * np.float32(self.gain()))

    def pcm(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)


class SimulatedEndpoint:
    def __init__(self, url: str, *, decode: bool = False,
                 now_ns: Callable[[], int] = time.monotonic_ns,
                 gain: Callable[[], float] | None = None) -> None:
        self.url = url
        self.report = EndpointReport(url)
        self.decoder = OpusDecoder(gain) if decode else None
        self._now_ns = now_ns
        self.timeline = TimelineMonitor()
        self._last_seq: int | None = None
        self._t0_ns = 0
        self.on_packet: Callable[[SimulatedEndpoint, object], None] | None = None

    async def run(self, session: aiohttp.ClientSession, seconds: float,
                  stop: asyncio.Event | None = None) -> EndpointReport:
        """Listen for ``seconds`` (or until ``stop`` is set); errors end up in the report.

        The timeline summary runs to the end of the listening period: cut off early by an
        error, the endpoint heard silence for the rest of it.
        """
        start_ns = self._now_ns()
        end_ns: int | None = None
        try:
            await asyncio.wait_for(self._run(session, stop), timeout=seconds)
        except TimeoutError:
            end_ns = self._now_ns()
        except aiohttp.WSServerHandshakeError as exc:  # refused: say what the server said
            self.report.error = await _refusal(session, self.url, exc.status)
        except (aiohttp.ClientError, OSError) as exc:
            self.report.error = f"{type(exc).__name__}: {exc}"
        if end_ns is None:
            stopped = stop is not None and stop.is_set()
            end_ns = self._now_ns() if stopped else start_ns + int(seconds * 1e9)
        self.report.timeline = self.timeline.summary(end_ns)
        return self.report

    async def _run(self, session: aiohttp.ClientSession, stop: asyncio.Event | None) -> None:
        self._t0_ns = self._now_ns()
        if self.url.startswith(("ws://", "wss://")):
            await self._run_ws(session, stop)
        else:
            await self._run_http(session, stop)

    async def _run_ws(self, session: aiohttp.ClientSession, stop: asyncio.Event | None) -> None:
        async with session.ws_connect(self.url, autoping=True, max_msg_size=1 << 20) as ws:
            await self._sync_clock(ws)
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    self._on_native(msg.data)
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    self._on_text(json.loads(msg.data))
                else:
                    break
                if stop is not None and stop.is_set():
                    break
        if stop is None or not stop.is_set():
            self.report.error = self.report.error or "server closed the connection"

    async def _sync_clock(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """NTP-style: offset = server - midpoint, from the ping with the shortest round trip."""
        best: tuple[int, int] | None = None
        pending: list[tuple[aiohttp.WSMessage, int]] = []  # (message, arrival ns)
        for _ in range(CLOCK_SYNC_PINGS):
            t0 = self._now_ns()
            await ws.send_str(json.dumps({"type": "ping", "t0": t0}))
            while True:
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if data.get("type") == "pong" and data.get("t0") == t0:
                        t2 = self._now_ns()
                        rtt = t2 - t0
                        offset = int(data["server_ns"]) - (t0 + t2) // 2
                        if best is None or rtt < best[0]:
                            best = (rtt, offset)
                        break
                elif msg.type != aiohttp.WSMsgType.BINARY:
                    return
                pending.append((msg, self._now_ns()))
        if best is not None:
            self.report.rtt_ms = best[0] / 1e6
            self.report.clock_offset_ns = best[1]
        for msg, arrival_ns in pending:
            if msg.type == aiohttp.WSMsgType.BINARY:
                self._on_native(msg.data, arrival_ns)
            else:
                self._on_text(json.loads(msg.data))

    def _on_text(self, msg: dict[str, object]) -> None:
        self.report.texts.append(msg)
        if msg.get("type") == "zone":
            self._last_seq = None  # moved to another zone's stream: its own sequence numbers
            self.timeline.restart()  # and its own pts

    def _on_native(self, data: bytes, arrival_ns: int | None = None) -> None:
        now = self._now_ns() if arrival_ns is None else arrival_ns
        pkt = parse_packet(data)
        r = self.report
        if r.startup_ms is None:
            r.startup_ms = (now - self._t0_ns) / 1e6
        if self._last_seq is not None:
            delta = (pkt.seq - self._last_seq) & 0xFFFFFFFF
            if delta == 0 or delta > 0x7FFFFFFF:
                r.duplicates += 1
                return
            r.gaps += delta - 1
        self._last_seq = pkt.seq
        r.packets += 1
        r.bytes += len(data)
        r.latencies_ms.append((now - r.clock_offset_ns - pkt.capture_ns) / 1e6)
        self.timeline.on_packet(pkt.pts_samples, now)
        if not r.programmes or r.programmes[-1][1:] != (pkt.programme_id, pkt.priority):
            r.programmes.append(((now - self._t0_ns) / 1e9, pkt.programme_id, pkt.priority))
        if self.decoder is not None:
            self.decoder.decode(pkt.payload)
        if self.on_packet is not None:
            self.on_packet(self, pkt)

    async def _run_http(self, session: aiohttp.ClientSession, stop: asyncio.Event | None) -> None:
        ogg = self.url.endswith(".ogg")
        reader = OggReader() if ogg else None
        mp3 = None if ogg else Mp3FrameReader()  # anything else is taken for MP3
        serial: int | None = None
        granule0: int | None = None  # the last audio page's granule, on this logical stream
        async with session.get(self.url) as resp:
            if resp.status != 200:
                self.report.error = _said(resp.status, await resp.read())
                return
            async for chunk in resp.content.iter_any():
                now = self._now_ns()
                r = self.report
                r.bytes += len(chunk)
                if mp3 is not None:
                    for frame in mp3.feed(chunk):
                        self._first_audio(now)
                        r.packets += 1
                        self.timeline.on_packet(frame.pts_samples, now, frame.duration_samples)
                elif reader is not None:
                    for page_serial, granule, packet, bos in reader.feed(chunk):
                        if page_serial != serial:
                            serial, granule0 = page_serial, None
                            self.timeline.restart()  # a chained stream: granules start anew
                        if bos or packet.startswith((b"OpusHead", b"OpusTags")):
                            continue
                        self._first_audio(now)
                        r.packets += 1
                        # The granule position is where the page's audio ends (48 kHz samples).
                        duration = (granule - granule0
                                    if granule0 is not None and granule > granule0
                                    else FRAME_SAMPLES)
                        granule0 = granule
                        self.timeline.on_packet(granule - duration, now, duration)
                        if self.decoder is not None:
                            self.decoder.decode(packet)
                    r.crc_errors = reader.crc_errors
                if stop is not None and stop.is_set():
                    return

    def _first_audio(self, now: int) -> None:
        if self.report.startup_ms is None:
            self.report.startup_ms = (now - self._t0_ns) / 1e6


async def run_endpoints(urls: list[str], seconds: float, *, decode: bool = False
                        ) -> list[EndpointReport]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        eps = [SimulatedEndpoint(u, decode=decode) for u in urls]
        return list(await asyncio.gather(*(e.run(session, seconds) for e in eps)))


def listen_report(url: str, seconds: float, count: int) -> dict[str, Any]:
    """``loa listen``'s figures: ``count`` endpoints on ``url`` for ``seconds`` (blocking: runs
    its own event loop). ``short_endpoints``: those that got less than
    ``DELIVERED_MIN_PCT`` of real time; ``verdict_reasons`` in English (``loa listen`` says
    them in its reader's language from the figures)."""
    reports = asyncio.run(run_endpoints([url] * count, seconds))
    lat = [x for r in reports for x in r.latencies_ms]
    summaries = [r.timeline.as_dict() for r in reports if r.timeline is not None]
    timeline = aggregate(summaries)
    return {
        "endpoints": count,
        "seconds": seconds,
        "packets": sum(r.packets for r in reports),
        "gaps": sum(r.gaps for r in reports),
        "duplicates": sum(r.duplicates for r in reports),
        "errors": sorted({r.error for r in reports if r.error}),
        "startup_ms_median": percentile([r.startup_ms for r in reports
                                         if r.startup_ms is not None] or [0], 50),
        "latency_ms": percentiles(lat, (50, 99), with_max=False),
        # the audio timeline against the wall clock (a stall: > STALL_THRESHOLD_MS behind)
        "stalls": timeline["stalls"],
        "endpoints_with_stalls": timeline["endpoints_with_stalls"],
        "short_endpoints": sum(1 for t in summaries if t["delivered_pct"] < DELIVERED_MIN_PCT),
        "longest_silence_ms": timeline["longest_silence_ms"]["max"],
        "delivered_pct": timeline["delivered_pct"]["min"],  # of real time, the worst endpoint
        "verdict": timeline["verdict"],
        "verdict_reasons": timeline["verdict_reasons"],
    }


async def _refusal(session: aiohttp.ClientSession, url: str, status: int) -> str:
    """A WebSocket upgrade refused with ``status``: the refusal as the server words it (its
    JSON ``error``, read again over plain HTTP at the same address), else ``HTTP <status>``."""
    plain = "http" + url[2:] if url.startswith("ws") else url  # ws → http, wss → https
    try:
        async with session.get(plain, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            body = await resp.read() if resp.status == status else b""
    except (aiohttp.ClientError, OSError, TimeoutError):
        body = b""
    return _said(status, body)


def _said(status: int, body: bytes) -> str:
    """``HTTP <status>``, and what the server said: the API's JSON ``error``, or a stream
    route's one line of text (``HTTP 404: unknown zone 'an-bihn'``)."""
    text = body[:400].decode("utf-8", "replace").strip()
    try:
        error = json.loads(text).get("error") if text.startswith("{") else text
    except (ValueError, AttributeError):
        error = None
    if not isinstance(error, str) or not error or "\n" in error or "<" in error:
        return f"HTTP {status}"  # nothing, or a page not meant to be read here
    return f"HTTP {status}: {error}"


def listen_status(report: dict[str, Any]) -> int:
    """``loa listen``'s exit status: 0 when all was heard in time, ``EXIT_ERRORS`` when an
    endpoint could not connect or was cut off, ``EXIT_DEAD_AIR`` when it heard a stall (or
    got less than ``DELIVERED_MIN_PCT`` of real time)."""
    if report["errors"]:
        return EXIT_ERRORS
    return EXIT_DEAD_AIR if report["verdict"] != Verdict.PASS.value else 0
