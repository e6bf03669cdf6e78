"""``loa bench --only webrtc``: how late a studio that goes live over WebRTC (WHIP) is heard at
a loudspeaker, beside the same clicks pushed over Icecast by ffmpeg, and what WHIP sources and
WHEP viewers cost the server (issue 16, "Measure and report").

One server (``loa serve`` in a child process, loopback) with a village taken live for the
mount ``studio``, and one loudspeaker simulated on the native protocol that decodes every
packet (``SimulatedEndpoint``). The same clicks (``loa.loadtest.clicks``: 10 ms of 1 kHz every
500 ms) go live four ways, one after the other, ``seconds`` each:

1. **aiortc WHIP**: an aiortc client whose track hands the clicks to its Opus encoder at real
   time. *Glass* is the moment a frame holding a click is handed over (the track's ``recv``
   returning it), on this process's clock.
2. **Chromium WHIP** (when Playwright and Debian's Chromium are installed): Chromium's fake
   microphone plays the click WAV (``--use-file-for-fake-audio-capture``, from the start when
   capture starts, looped), a page pushes it to ``/whip/studio``. Chromium says nothing of when
   its fake device writes a click, so it is framed two ways: the click as the page's own
   audio graph sees it (a ScriptProcessor on the microphone's track, a few ms after the
   capture wrote it: the latency from there is a little short), and the capture started
   between the call of ``getUserMedia`` and its return, so that click ``k`` was written
   ``offset + k × period`` after a time in that window (the latency from its two ends: an
   upper and a lower bound). The page opens the capture once and lets it go before the
   measured one: the first asks for permission and lists the devices (50-100 ms), a second
   one starts within a few ms of the call, its file from the start. The browser's own WHEP
   monitor of the zone (a second peer connection in the page, clicks found by a
   ScriptProcessor) and an aiortc WHEP viewer listen meanwhile.
3. **ffmpeg over Icecast**: the WAV's samples written into ffmpeg's stdin at real time (what
   ``-re`` does, with each click's write time known), encoded to Ogg/Opus with 20 ms pages and
   pushed to ``/live/studio``. *Glass* is the write of the 10 ms chunk holding a click.
4. **50 WHEP viewers**: aiortc viewers of the village, in this process, while ffmpeg keeps
   pushing: the server's CPU with them, beside the same without (step 3).
5. **WHIP sources**: four aiortc WHIP sources at once, each on its own mount taken by a
   village of its own: the server's CPU with them, beside the same villages taken once the
   sources have left.

For every click heard, *server-in → endpoint* is exact: the server stamps each frame with
its arrival (the RTP packet's, or the Icecast bytes' decode), that stamp rides in the native
packet (``capture_ns``), and the loudspeaker's clock is synchronised to the server's by
ping/pong. The clocks of this process, the server and Chromium are the same machine's; the
browser's is read against this one's by round trips (``performance.timeOrigin +
performance.now()``, within a millisecond).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from loa.core.pcm import FRAME_SAMPLES, SAMPLE_RATE
from loa.core.percentiles import percentiles
from loa.loadtest.clicks import ClickTrack, find_clicks
from loa.loadtest.endpoint import SimulatedEndpoint
from loa.loadtest.target import LocalLoa, free_port, sample_proc, stop_process, with_parent

CHROMIUM = "/usr/bin/chromium"
ZONE = "an-binh-1"  # a village of the default zone tree
MOUNT = "studio"
TOKEN = "bench"
VIEWERS = 50
VILLAGES = ("an-binh-1", "an-binh-2", "phu-my-1", "phu-my-2")  # one WHIP source each
BASELINE_S = 5.0
SETTLE_S = 3.0  # after sources or viewers connect, before measuring
CLICK_THRESHOLD = 0.1
CHUNK_MS = 10  # what the ffmpeg writer writes at a time
WAIT_S = 20.0
SDP = "application/sdp"
PCTS = (50, 99)

Out = Callable[[str], None]


@dataclass(frozen=True)
class Waits:
    """The bench's waits on the wall clock, s: ``settle_s`` after sources or viewers
    connect, before measuring; ``baseline_s`` measuring the server with no source. A test
    that checks the bench's workings, not its figures, shortens them."""

    settle_s: float = SETTLE_S
    baseline_s: float = BASELINE_S


def _ms(values: list[float]) -> dict[str, float | None]:
    return percentiles(values, PCTS)


# --- the loudspeaker ---


@dataclass
class _Packet:
    arrival_ns: int  # this process's wall clock, once decoded
    server_in_ns: int  # the frame's arrival at the server, on the same clock
    priority: int
    pcm: np.ndarray


@dataclass
class HeardClick:
    """A click heard: when its packet was decoded at the loudspeaker and when it entered the
    server (wall-clock ns)."""

    endpoint_ns: int
    server_in_ns: int


class ClickEar:
    """A loudspeaker of ``ZONE`` on the native protocol, decoding every packet, with each
    packet's arrival and server-in times on this process's wall clock."""

    def __init__(self, url: str) -> None:
        self.sim = SimulatedEndpoint(url, decode=True, now_ns=time.time_ns)
        self.sim.on_packet = self._packet
        self.packets: list[_Packet] = []
        self.stop = asyncio.Event()
        self.task: asyncio.Task[Any] | None = None

    def _packet(self, sim: SimulatedEndpoint, pkt: Any) -> None:
        assert sim.decoder is not None
        # the server's clock to ours: offset = server - ours (the ping/pong's estimate)
        server_in = pkt.capture_ns - sim.report.clock_offset_ns
        self.packets.append(_Packet(time.time_ns(), server_in, pkt.priority,
                                    sim.decoder.chunks[-1]))

    def start(self, http: aiohttp.ClientSession) -> None:
        self.task = asyncio.create_task(self.sim.run(http, 3600, self.stop), name="bench-ear")

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.task, 5)

    def clicks(self, since_ns: int, until_ns: int) -> list[HeardClick]:
        """The clicks heard in packets that arrived between the two times. Blocking (a pass
        over the samples)."""
        window = [p for p in self.packets if since_ns <= p.arrival_ns < until_ns]
        if not window:
            return []
        pcm = np.concatenate([p.pcm for p in window])
        ends = np.cumsum([len(p.pcm) for p in window])
        heard = []
        for onset in find_clicks(pcm, threshold=CLICK_THRESHOLD):
            p = window[int(np.searchsorted(ends, onset, side="right"))]
            heard.append(HeardClick(p.arrival_ns, p.server_in_ns))
        return heard


def match_before(times_ns: list[int], at_ns: int, period_ns: int) -> int | None:
    """The latest of ``times_ns`` (sorted) at or before ``at_ns`` and less than a period
    before it; None when there is none."""
    i = int(np.searchsorted(np.asarray(times_ns, dtype=np.int64), at_ns, side="right")) - 1
    if i < 0 or at_ns - times_ns[i] >= period_ns:
        return None
    return times_ns[i]


def match_nearest(times_ns: list[int], at_ns: int, period_ns: int) -> int | None:
    """The one of ``times_ns`` (sorted) nearest ``at_ns``, if within half a period of it;
    None when there is none."""
    arr = np.asarray(times_ns, dtype=np.int64)
    i = int(np.searchsorted(arr, at_ns))
    near = [times_ns[j] for j in (i - 1, i) if 0 <= j < len(times_ns)]
    best = min(near, key=lambda t: abs(t - at_ns), default=None)
    return best if best is not None and 2 * abs(best - at_ns) < period_ns else None


def legs(heard: list[HeardClick], glass_ns: list[int], period_s: float) -> dict[str, Any]:
    """For clicks ``heard`` and the times their sender wrote clicks (``glass_ns``): the
    latency from each click's writing to the loudspeaker, its sender's leg (writing to
    server-in) and the server-in → loudspeaker leg, in ms (p50, p99, max), and the counts."""
    period = int(period_s * 1e9)
    total, sender = [], []
    for c in heard:
        g = match_before(glass_ns, c.server_in_ns, period)
        if g is not None:
            total.append((c.endpoint_ns - g) / 1e6)
            sender.append((c.server_in_ns - g) / 1e6)
    return {"clicks": len(heard), "matched": len(total),
            "glass_to_endpoint_ms": _ms(total), "sender_leg_ms": _ms(sender),
            "server_in_to_endpoint_ms": _ms([(c.endpoint_ns - c.server_in_ns) / 1e6
                                             for c in heard])}


# --- CPU ---


class CpuWindow:
    """The server process's CPU between ``start`` and ``stop``: percent of one core."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self._t0 = 0.0
        self._cpu0 = 0.0
        self.pct: float | None = None

    def start(self) -> None:
        sample = sample_proc(self.pid) if self.pid else None
        self._t0, self._cpu0 = time.monotonic(), sample.cpu_s if sample else 0.0

    def stop(self) -> float | None:
        sample = sample_proc(self.pid) if self.pid else None
        if sample is not None:
            self.pct = round(100 * (sample.cpu_s - self._cpu0) / (time.monotonic() - self._t0),
                             2)
        return self.pct


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


# --- WebRTC clients (aiortc, imported when first used) ---


def _load_aiortc() -> None:
    """Blocking: import aiortc (through ``loa.playout.webrtc.peer``) and warm it up."""
    from loa.playout.webrtc import peer

    peer.warm_up()


def _loopback() -> Any:
    from loa.playout.webrtc import WebRtcSettings

    return WebRtcSettings(addresses=("127.0.0.1",))


async def _negotiate(http: aiohttp.ClientSession, url: str, pc: Any) -> str:
    """Send ``pc``'s offer to a WHIP or WHEP resource and set the answer: the session URL.
    RuntimeError when refused."""
    from aiortc import RTCSessionDescription

    from loa.playout.webrtc import peer

    peer.restrict_gathering(pc, _loopback())  # loopback host candidates only
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(url, data=pc.localDescription.sdp,
                         headers={"Content-Type": SDP,
                                  "Authorization": f"Bearer {TOKEN}"}) as resp:
        body = await resp.text()
        if resp.status != 201:
            raise RuntimeError(f"{url}: {resp.status} {body[:200]}")
        location = resp.headers["Location"]
    await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
    return location


def click_track_class() -> type:
    """The aiortc track that plays the clicks at real time, noting when it hands each frame
    that holds a click's onset to the encoder (a class made when aiortc is first needed)."""
    import av
    from aiortc import MediaStreamTrack

    class ClickSource(MediaStreamTrack):
        kind = "audio"

        def __init__(self, clicks: ClickTrack) -> None:
            super().__init__()
            self.pcm = np.round(clicks.pcm() * 32767).astype(np.int16)
            onsets = [int(round(t * SAMPLE_RATE)) for t in clicks.click_times_s()]
            self.onset_frames = {o // FRAME_SAMPLES for o in onsets}
            self.glass_ns: list[int] = []
            self._pts = 0
            self._start: float | None = None

        async def recv(self) -> av.AudioFrame:
            if self._start is None:
                self._start = time.monotonic()
            wait = self._start + self._pts / SAMPLE_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # real-time pacing, as a microphone delivers
            i = (self._pts // FRAME_SAMPLES) % (len(self.pcm) // FRAME_SAMPLES)
            chunk = self.pcm[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16",
                                               layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = self._pts
            frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
            self._pts += FRAME_SAMPLES
            if i in self.onset_frames:
                self.glass_ns.append(time.time_ns())
            return frame

    return ClickSource


@dataclass
class Viewer:
    """An aiortc WHEP viewer: its peer connection, session URL, and what it heard (each
    decoded frame's samples and when ``recv`` returned it, wall ns)."""

    pc: Any
    location: str = ""
    frames: int = 0
    keep: bool = False
    heard: list[tuple[int, np.ndarray]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def _drain(self) -> None:
        track = self.pc.getTransceivers()[0].receiver.track
        with contextlib.suppress(Exception):  # the track ends when the connection closes
            while True:
                frame = await track.recv()
                self.frames += 1
                if self.keep:
                    pcm = frame.to_ndarray().astype(np.float32).reshape(
                        -1, len(frame.layout.channels)).mean(axis=1) / 32768
                    self.heard.append((time.time_ns(), pcm))

    def clicks(self) -> list[int]:
        """When each click heard was received (wall ns). Blocking."""
        if not self.heard:
            return []
        pcm = np.concatenate([p for _, p in self.heard])
        ends = np.cumsum([len(p) for _, p in self.heard])
        return [self.heard[int(np.searchsorted(ends, o, side="right"))][0]
                for o in find_clicks(pcm, threshold=CLICK_THRESHOLD)]


async def open_viewer(http: aiohttp.ClientSession, url: str, *, keep: bool = False) -> Viewer:
    """A WHEP viewer of the zone, receiving (and decoding, as aiortc does) its packets."""
    from loa.playout.webrtc import peer

    v = Viewer(peer.peer_connection(_loopback()), keep=keep)
    v.pc.addTransceiver("audio", direction="recvonly")
    v.location = await _negotiate(http, f"{url}/whep/zones/{ZONE}", v.pc)
    v.task = asyncio.create_task(v._drain(), name="bench-viewer")
    return v


async def close_viewer(http: aiohttp.ClientSession, url: str, v: Viewer) -> None:
    with contextlib.suppress(aiohttp.ClientError):
        async with http.delete(url + v.location,
                               headers={"Authorization": f"Bearer {TOKEN}"}):
            pass
    await v.pc.close()
    if v.task is not None:
        v.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await v.task


# --- Chromium ---

BROWSER_JS = """
window.bench = (() => {
  const now = () => performance.timeOrigin + performance.now();
  const bearer = (token) => ({ Authorization: "Bearer " + token });
  const state = { local: [], monitor: [], sessions: [] };
  // clicks found in a stream by a ScriptProcessor: the time (ms, wall) of each onset, as
  // the callback's time less the samples after it in the buffer
  const detect = (ctx, stream, out) => {
    const node = ctx.createScriptProcessor(256, 1, 1);
    let quiet = 1e9;
    node.onaudioprocess = (e) => {
      const t = now();
      const x = e.inputBuffer.getChannelData(0);
      for (let i = 0; i < x.length; i++) {
        if (Math.abs(x[i]) >= THRESHOLD) {
          if (quiet > 0.1 * ctx.sampleRate) out.push(t - 1000 * (x.length - i) / ctx.sampleRate);
          quiet = 0;
        } else quiet++;
      }
    };
    ctx.createMediaStreamSource(stream).connect(node);
    node.connect(ctx.destination);
    return node;
  };
  const negotiate = async (pc, url, token) => {
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((r) => {
      if (pc.iceGatheringState === "complete") r();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && r();
      setTimeout(r, 2000);
    });
    const resp = await fetch(url, { method: "POST", body: pc.localDescription.sdp,
      headers: { "Content-Type": "application/sdp", ...bearer(token) } });
    const text = await resp.text();
    if (resp.status !== 201) throw new Error(url + ": " + resp.status + " " + text);
    state.sessions.push(resp.headers.get("Location"));
    await pc.setRemoteDescription({ type: "answer", sdp: text });
    await new Promise((r, j) => {
      const t = setTimeout(() => j(new Error("not connected")), 15000);
      const check = () => { if (pc.connectionState === "connected") { clearTimeout(t); r(); } };
      pc.onconnectionstatechange = check;
      check();
    });
  };
  return {
    now,
    async whip(mount, token) {
      const asked = { audio: {
        echoCancellation: false, noiseSuppression: false, autoGainControl: false } };
      // the first capture of a page asks for permission and lists devices (50-100 ms); the
      // capture opened again after it is let go starts within a few ms of the call, and
      // its file from the start: the window in which the click times are known
      const first = await navigator.mediaDevices.getUserMedia(asked);
      first.getTracks().forEach((t) => t.stop());
      await new Promise((r) => setTimeout(r, 300));
      const before = now();
      const stream = await navigator.mediaDevices.getUserMedia(asked);
      const after = now();
      state.ctx = new AudioContext();
      await state.ctx.resume();
      state.localNode = detect(state.ctx, stream, state.local);
      state.whip = new RTCPeerConnection();
      state.whip.addTransceiver(stream.getAudioTracks()[0], { direction: "sendonly" });
      await negotiate(state.whip, "/whip/" + mount, token);
      return { before, after };
    },
    async whep(zone, token) {
      const pc = new RTCPeerConnection();
      state.whep = pc;
      pc.addTransceiver("audio", { direction: "recvonly" });
      const got = new Promise((r) => { pc.ontrack = (e) => r(new MediaStream([e.track])); });
      await negotiate(pc, "/whep/zones/" + zone, token);
      const stream = await got;
      // a remote track feeds WebAudio when an element plays it too (muted)
      state.audio = new Audio();
      state.audio.muted = true;
      state.audio.srcObject = stream;
      await state.audio.play();
      state.monitorNode = detect(state.ctx, stream, state.monitor);
    },
    found() { return { local: state.local, monitor: state.monitor }; },
    async stop(token) {
      for (const url of state.sessions) {
        await fetch(url, { method: "DELETE", headers: bearer(token) }).catch(() => {});
      }
      for (const pc of [state.whip, state.whep]) if (pc) pc.close();
    },
  };
})();
"""


@dataclass
class BrowserRun:
    """What the Chromium part found: its clock against ours (ns to add to its ms × 1e6), the
    getUserMedia window and the clicks its graph saw (our wall ns)."""

    offset_ns: int = 0
    gum_before_ns: int = 0
    gum_after_ns: int = 0
    local_ns: list[int] = field(default_factory=list)
    monitor_ns: list[int] = field(default_factory=list)
    error: str | None = None


async def _browser_clock(page: Any) -> int:
    """ns to add to the page's ``now()`` (ms) × 1e6 to get this process's wall clock: the
    reading with the shortest round trip of seven."""
    best: tuple[int, int] | None = None
    for _ in range(7):
        t0 = time.time_ns()
        browser_ms = await page.evaluate("() => window.bench.now()")
        t1 = time.time_ns()
        offset = (t0 + t1) // 2 - int(browser_ms * 1e6)
        if best is None or t1 - t0 < best[0]:
            best = (t1 - t0, offset)
    assert best is not None
    return best[1]


def browser_available() -> str | None:
    """Why the Chromium part cannot run (None: it can). Blocking: it imports Playwright."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    if not os.access(CHROMIUM, os.X_OK):
        return f"Debian's chromium is not installed at {CHROMIUM}"
    return None


# --- ffmpeg over Icecast, fed at real time ---


class FfmpegClicks:
    """ffmpeg reading raw 48 kHz mono samples from its stdin, encoding Ogg/Opus with 20 ms
    pages and pushing it to ``url`` (icecast://); ``run`` writes the clicks into it at real
    time, 10 ms at a time, noting when each chunk holding a click's onset is written."""

    def __init__(self, url: str, clicks: ClickTrack) -> None:
        self.url = url
        self.period_s = clicks.period_s
        self.pcm = np.round(clicks.pcm() * 32767).astype("<i2")
        chunk = SAMPLE_RATE * CHUNK_MS // 1000
        self.chunk = chunk
        self.onset_chunks = {int(round(t * SAMPLE_RATE)) // chunk
                             for t in clicks.click_times_s()}
        self.glass_ns: list[int] = []
        self.proc: asyncio.subprocess.Process | None = None
        self.task: asyncio.Task[None] | None = None
        self.error: str | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *with_parent(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "s16le",
                          "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:0", "-c:a",
                          "libopus", "-b:a", "64k", "-frame_duration", "20",
                          "-page_duration", "20000", "-flush_packets", "1", "-f", "ogg",
                          "-content_type", "audio/ogg", self.url]),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        self.task = asyncio.create_task(self._write(), name="bench-ffmpeg-writer")

    async def _write(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        stdin = self.proc.stdin
        chunks = len(self.pcm) // self.chunk
        start = time.monotonic()
        i = 0
        try:
            while True:
                wait = start + i * CHUNK_MS / 1000 - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)  # real time, as -re reads
                k = i % chunks
                stdin.write(self.pcm[k * self.chunk:(k + 1) * self.chunk].tobytes())
                if k in self.onset_chunks:
                    self.glass_ns.append(time.time_ns())
                await stdin.drain()
                i += 1
        except (BrokenPipeError, ConnectionResetError) as exc:
            self.error = f"ffmpeg stopped: {exc!r}"

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        await stop_process(self.proc, grace_s=3)


# --- the run ---


async def _status(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url + "/api/v1/status") as resp:
        data: dict[str, Any] = await resp.json()
        return data


async def _jitter(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    """The mount's jitter buffer now: depth and target (frames of 20 ms)."""
    st = await _status(http, url)
    mount: dict[str, Any] = next((m for m in st["mounts"] if m["mount"] == MOUNT), {})
    return {"jitter_frames": mount.get("jitter_frames"),
            "jitter_target_frames": mount.get("jitter_target_frames")}


class MachineWindow:
    """The whole machine's CPU between its making and ``pct()``: percent of all cores."""

    def __init__(self) -> None:
        self._start = _machine_jiffies()

    def pct(self) -> float | None:
        busy, total = _machine_jiffies()
        if total <= self._start[1]:
            return None
        return round(100 * (busy - self._start[0]) / (total - self._start[1]), 1)


async def _mount_live(http: aiohttp.ClientSession, url: str, kind: str) -> None:
    """Wait (polling, at most ``WAIT_S``) until the mount has a source of ``kind`` sending."""
    for _ in range(int(WAIT_S * 10)):
        st = await _status(http, url)
        if any(m["mount"] == MOUNT and m["connected"] and m["kind"] == kind
               and m["frames_in"] > 5 for m in st["mounts"]):
            return
        await asyncio.sleep(0.1)  # polling a starting source, bounded
    raise RuntimeError(f"webrtc: the {kind} source did not go live on /live/{MOUNT}")


async def _mount_free(http: aiohttp.ClientSession, url: str) -> None:
    for _ in range(int(WAIT_S * 10)):
        st = await _status(http, url)
        if not any(m["mount"] == MOUNT and m["connected"] for m in st["mounts"]):
            return
        await asyncio.sleep(0.1)  # polling a source that is ending, bounded
    raise RuntimeError(f"webrtc: /live/{MOUNT} stayed busy")


async def webrtc_run(out: Out, seconds: float = 20.0, viewers: int = VIEWERS,
                     browser: bool = True, waits: Waits = Waits()) -> dict[str, Any]:
    """The parts described in the module, ``seconds`` of clicks each (at least 5), then
    ``viewers`` WHEP viewers. ``browser``: run the Chromium part when it can. Returns the
    figures (ms p50/p99/max, CPU % of one core); RuntimeError when a source does not go
    live."""
    if seconds < 5:
        raise ValueError("webrtc: at least 5 s of clicks per part")
    clicks = ClickTrack()
    config = (f'[mqtt]\nlisten = "127.0.0.1:{free_port()}"\n\n'
              f"[webrtc]\nmax_sessions = {viewers + 8}\n")
    server = LocalLoa(token=TOKEN, source_password=TOKEN, demo=False, config_toml=config)
    results: dict[str, Any] = {"seconds_per_part": seconds, "click_period_ms":
                               clicks.period_s * 1000, "errors": []}
    # Playwright's import (~50 ms) beside the loop too
    skip = await asyncio.to_thread(browser_available) if browser else "not asked for"
    tmp = tempfile.mkdtemp(prefix="loa-bench-webrtc-")
    busy0 = _machine_jiffies()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        # aiortc imported and warmed up beside the loop (0.2-0.3 s, and its first certificate
        # and DTLS context), as the server does at its first WebRTC request
        await asyncio.to_thread(_load_aiortc)
        await server.start()
        async with aiohttp.ClientSession(headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.post(f"{server.url}/api/v1/zones/{ZONE}/live",
                                 json={"mount": MOUNT}) as resp:
                if resp.status not in (200, 201):
                    raise RuntimeError(f"webrtc: taking {ZONE} live: {resp.status}")
            ear = ClickEar(f"ws://127.0.0.1:{server.port}/zones/{ZONE}/ws")
            ear.start(http)
            try:
                out(f"webrtc: baseline, {waits.baseline_s:g} s with the village taken and no "
                    "source")
                cpu = CpuWindow(server.pid)
                cpu.start()
                await asyncio.sleep(waits.baseline_s)  # measuring the idle server: wall time
                results["cpu_baseline_pct"] = cpu.stop()

                out(f"webrtc: an aiortc WHIP client sends clicks for {seconds:g} s")
                results["aiortc_whip"] = await _aiortc_part(http, server, ear, clicks, seconds,
                                                                waits)
                await _mount_free(http, server.url)

                if skip is None:
                    out(f"webrtc: Chromium's fake microphone over WHIP for {seconds:g} s, "
                        "with its own WHEP monitor and an aiortc viewer")
                    results["chromium_whip"] = await _browser_part(
                        http, server, ear, clicks, seconds, tmp, waits)
                    await _mount_free(http, server.url)
                else:
                    results["chromium_whip"] = {"skipped": skip}

                out(f"webrtc: ffmpeg pushes the clicks over Icecast for {seconds:g} s")
                ffmpeg = await asyncio.to_thread(  # its samples: numpy work, beside the loop
                    FfmpegClicks,
                    f"icecast://source:{TOKEN}@127.0.0.1:{server.port}/live/{MOUNT}", clicks)
                try:
                    results["icecast_ffmpeg"] = await _ffmpeg_part(http, server, ear, ffmpeg,
                                                                   seconds, waits)
                    out(f"webrtc: {viewers} aiortc WHEP viewers of the village, "
                        f"{seconds:g} s")
                    results["whep_viewers"] = await _viewers_part(
                        http, server, viewers, seconds,
                        results["icecast_ffmpeg"].get("cpu_pct"), waits)
                finally:
                    await ffmpeg.stop()
                out(f"webrtc: {len(VILLAGES)} aiortc WHIP sources, one a village, "
                    f"{seconds:g} s")
                results["whip_sources"] = await _sources_part(http, server, clicks, seconds,
                                                                  waits)
            finally:
                await ear.close()
    finally:
        await server.stop()
        await asyncio.to_thread(shutil.rmtree, tmp, ignore_errors=True)
    busy1 = _machine_jiffies()
    if busy1[1] > busy0[1]:
        results["machine_cpu_pct"] = round(100 * (busy1[0] - busy0[0]) / (busy1[1] - busy0[1]),
                                           1)
    results["cores"] = os.cpu_count()
    return results


async def _aiortc_part(http: aiohttp.ClientSession, server: LocalLoa, ear: ClickEar,
                       clicks: ClickTrack, seconds: float, waits: Waits) -> dict[str, Any]:
    from loa.playout.webrtc import peer

    track = await asyncio.to_thread(click_track_class(), clicks)  # its signal: numpy work
    pc = peer.peer_connection(_loopback())
    pc.addTransceiver(track, direction="sendonly")
    location = ""
    try:
        location = await _negotiate(http, f"{server.url}/whip/{MOUNT}", pc)
        await _mount_live(http, server.url, "webrtc")
        await asyncio.sleep(waits.settle_s)  # the jitter buffer settles: wall time is the point
        cpu = CpuWindow(server.pid)
        machine = MachineWindow()
        since = time.time_ns()
        cpu.start()
        await asyncio.sleep(seconds)  # listening: wall time is the point
        until = time.time_ns()
        cpu_pct = cpu.stop()
        extra = {**await _jitter(http, server.url), "machine_cpu_pct": machine.pct()}
    finally:
        if location:
            async with http.delete(server.url + location):
                pass
        await pc.close()
    heard = await asyncio.to_thread(ear.clicks, since, until)
    return {**legs(heard, track.glass_ns, clicks.period_s), "cpu_pct": cpu_pct, **extra}


async def _browser_part(http: aiohttp.ClientSession, server: LocalLoa, ear: ClickEar,
                        clicks: ClickTrack, seconds: float, tmp: str, waits: Waits
                        ) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    wav = await asyncio.to_thread(clicks.write_wav, os.path.join(tmp, "clicks.wav"))
    run = BrowserRun()
    viewer: Viewer | None = None
    args = ["--disable-dev-shm-usage", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={wav}",
            "--autoplay-policy=no-user-gesture-required"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    page_url = f"{server.url}/bench-webrtc"  # served by Playwright, not by the server
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=args, timeout=60_000)
        try:
            page = await browser.new_page()
            await page.route(page_url, lambda route: route.fulfill(
                body="<!doctype html><title>bench</title>", content_type="text/html"))
            await page.goto(page_url)
            await page.add_script_tag(content=BROWSER_JS.replace(
                "THRESHOLD", str(CLICK_THRESHOLD)))
            run.offset_ns = await _browser_clock(page)
            got = await page.evaluate("([m, t]) => window.bench.whip(m, t)", [MOUNT, TOKEN])
            run.gum_before_ns = int(got["before"] * 1e6) + run.offset_ns
            run.gum_after_ns = int(got["after"] * 1e6) + run.offset_ns
            await _mount_live(http, server.url, "webrtc")
            await page.evaluate("([z, t]) => window.bench.whep(z, t)", [ZONE, TOKEN])
            viewer = await open_viewer(http, server.url, keep=True)
            await asyncio.sleep(waits.settle_s)  # the jitter buffers settle: wall time
            machine = MachineWindow()
            since = time.time_ns()
            await asyncio.sleep(seconds)  # listening: wall time is the point
            until = time.time_ns()
            extra = {**await _jitter(http, server.url), "machine_cpu_pct": machine.pct()}
            found = await page.evaluate("() => window.bench.found()")
            run.local_ns = [int(t * 1e6) + run.offset_ns for t in found["local"]]
            run.monitor_ns = [int(t * 1e6) + run.offset_ns for t in found["monitor"]]
            await page.evaluate("(t) => window.bench.stop(t)", TOKEN)
        finally:
            await browser.close()
            if viewer is not None:
                await close_viewer(http, server.url, viewer)
    heard = await asyncio.to_thread(ear.clicks, since, until)
    viewer_ns = await asyncio.to_thread(viewer.clicks) if viewer is not None else []
    return {**browser_figures(run, heard, viewer_ns, clicks, since, until), **extra}


def browser_figures(run: BrowserRun, heard: list[HeardClick], viewer_ns: list[int],
                    clicks: ClickTrack, since_ns: int, until_ns: int) -> dict[str, Any]:
    """The Chromium part's figures (see the module): the lower bound from the page's graph,
    the upper bound from getUserMedia, server-in → loudspeaker, and the two WHEP monitors
    (server-in → heard, and page graph → heard)."""
    period = int(clicks.period_s * 1e9)
    offset = int(clicks.offset_s * 1e9)
    local = sorted(run.local_ns)
    graph, early, late, sender = [], [], [], []
    for c in heard:
        # the same click as the page's graph saw it: it may see it after the server does
        g = match_nearest(local, c.server_in_ns, period)
        if g is None:
            continue
        graph.append((c.endpoint_ns - g) / 1e6)
        sender.append((c.server_in_ns - g) / 1e6)
        # its number since the capture started, and when it was written had the capture
        # started as getUserMedia was called (the most it can be), or as it returned
        k = round((g - run.gum_before_ns - offset) / period)
        early.append((c.endpoint_ns - (run.gum_before_ns + offset + k * period)) / 1e6)
        late.append((c.endpoint_ns - (run.gum_after_ns + offset + k * period)) / 1e6)
    server_in = sorted(c.server_in_ns for c in heard)

    def monitor(times: list[int]) -> dict[str, Any]:
        """A WHEP monitor's clicks: from server-in, and from the page's graph."""
        times = [t for t in times if since_ns <= t < until_ns + period]
        from_server = [(t - s) / 1e6 for t in times
                       if (s := match_before(server_in, t, period)) is not None]
        from_page = [(t - g) / 1e6 for t in times
                     if (g := match_before(local, t, period)) is not None]
        return {"clicks": len(times), "server_in_to_heard_ms": _ms(from_server),
                "page_graph_to_heard_ms": _ms(from_page)}

    return {"clicks": len(heard), "matched": len(graph),
            "getusermedia_ms": round((run.gum_after_ns - run.gum_before_ns) / 1e6, 1),
            "page_graph_to_endpoint_ms": _ms(graph),
            "capture_at_getusermedia_call_to_endpoint_ms": _ms(early),
            "capture_at_getusermedia_return_to_endpoint_ms": _ms(late),
            "sender_leg_from_page_graph_ms": _ms(sender),
            "server_in_to_endpoint_ms": _ms([(c.endpoint_ns - c.server_in_ns) / 1e6
                                             for c in heard]),
            "browser_whep_monitor": monitor(run.monitor_ns),
            "aiortc_whep_viewer": monitor(viewer_ns),
            "error": run.error}


async def _ffmpeg_part(http: aiohttp.ClientSession, server: LocalLoa, ear: ClickEar,
                       ffmpeg: FfmpegClicks, seconds: float, waits: Waits
                       ) -> dict[str, Any]:
    await ffmpeg.start()
    await _mount_live(http, server.url, "icecast")
    await asyncio.sleep(waits.settle_s)  # the jitter buffer settles: wall time
    cpu = CpuWindow(server.pid)
    machine = MachineWindow()
    since = time.time_ns()
    cpu.start()
    await asyncio.sleep(seconds)  # listening: wall time is the point
    until = time.time_ns()
    cpu_pct = cpu.stop()
    extra = {**await _jitter(http, server.url), "machine_cpu_pct": machine.pct()}
    heard = await asyncio.to_thread(ear.clicks, since, until)
    return {**legs(heard, ffmpeg.glass_ns, ffmpeg.period_s), "cpu_pct": cpu_pct, **extra,
            "error": ffmpeg.error}


async def _sources_part(http: aiohttp.ClientSession, server: LocalLoa, clicks: ClickTrack,
                        seconds: float, waits: Waits) -> dict[str, Any]:
    """The server's CPU with a WHIP source on each of ``VILLAGES`` (each on its own mount,
    taken by its village), beside the same villages taken once the sources have left (a
    mount is made by its first source: the zones can take it only then)."""
    from loa.playout.webrtc import peer

    mounts = [f"bench-{i + 1}" for i in range(len(VILLAGES))]
    cpu = CpuWindow(server.pid)
    pcs: list[tuple[Any, str]] = []
    try:
        for mount in mounts:
            pc = peer.peer_connection(_loopback())
            pc.addTransceiver(await asyncio.to_thread(click_track_class(), clicks),
                              direction="sendonly")
            pcs.append((pc, ""))
            pcs[-1] = (pc, await _negotiate(http, f"{server.url}/whip/{mount}", pc))
        for zone, mount in zip(VILLAGES, mounts, strict=True):
            async with http.delete(f"{server.url}/api/v1/zones/{zone}/live", json={}):
                pass
            async with http.post(f"{server.url}/api/v1/zones/{zone}/live",
                                 json={"mount": mount}) as resp:
                if resp.status not in (200, 201):
                    raise RuntimeError(f"webrtc: taking {zone} live: {resp.status} "
                                       f"{await resp.text()}")
        await asyncio.sleep(waits.settle_s)  # every source live and settled: wall time
        st = await _status(http, server.url)
        live = sum(1 for m in st["mounts"] if m["mount"] in mounts and m["connected"])
        cpu.start()
        await asyncio.sleep(seconds)  # measuring: wall time is the point
        with_pct = cpu.stop()
    finally:
        for pc, location in pcs:
            if location:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.delete(server.url + location):
                        pass
            await pc.close()
    await asyncio.sleep(waits.settle_s)  # the sources' last audio played out: wall time
    cpu.start()
    await asyncio.sleep(waits.baseline_s)  # the same villages, no source: wall time
    without = cpu.stop()
    per = (round((with_pct - without) / len(mounts), 2)
           if with_pct is not None and without is not None else None)
    return {"sources": len(mounts), "live": live, "cpu_pct_without": without,
            "cpu_pct_with": with_pct, "cpu_pct_per_source": per}


async def _viewers_part(http: aiohttp.ClientSession, server: LocalLoa, count: int,
                        seconds: float, without_pct: float | None, waits: Waits
                        ) -> dict[str, Any]:
    viewers: list[Viewer] = []
    errors: list[str] = []
    gen0 = time.process_time()
    try:
        for _ in range(count):
            try:
                viewers.append(await open_viewer(http, server.url))
            except (RuntimeError, aiohttp.ClientError, OSError) as exc:
                errors.append(str(exc)[:200])
        await asyncio.sleep(waits.settle_s)  # handshakes done, streams flowing: wall time
        frames0 = [v.frames for v in viewers]
        cpu = CpuWindow(server.pid)
        cpu.start()
        t0 = time.process_time()
        await asyncio.sleep(seconds)  # measuring: wall time is the point
        with_pct = cpu.stop()
        gen_pct = round(100 * (time.process_time() - t0) / seconds, 1)
        receiving = sum(1 for v, f0 in zip(viewers, frames0, strict=True) if v.frames > f0)
    finally:
        await asyncio.gather(*(close_viewer(http, server.url, v) for v in viewers),
                             return_exceptions=True)
    per = (round((with_pct - without_pct) / len(viewers), 3)
           if with_pct is not None and without_pct is not None and viewers else None)
    return {"viewers": count, "connected": len(viewers), "receiving": receiving,
            "cpu_pct_with": with_pct, "cpu_pct_without": without_pct,
            "cpu_pct_per_viewer": per,
            "cpu_ms_per_viewer_second": round(10 * per, 3) if per is not None else None,
            "generator_cpu_pct": gen_pct,
            "generator_setup_cpu_s": round(t0 - gen0, 2), "errors": errors[:5]}


def format_webrtc(r: dict[str, Any]) -> list[str]:
    """The webrtc part as text: a table of the paths, then the CPU figures."""

    def f(d: dict[str, Any] | None) -> str:
        if not d or d.get("p50") is None:
            return "–"
        return f"{d['p50']:.0f} / {d['p99']:.0f}"

    lines = [f"WebRTC (clicks every {r['click_period_ms']:.0f} ms, {r['seconds_per_part']:g} s "
             "per path; ms p50 / p99)", "",
             "| path | clicks heard | source → loudspeaker | source → server-in | "
             "server-in → loudspeaker |", "|---|---|---|---|---|"]
    a = r.get("aiortc_whip", {})
    lines.append(f"| aiortc WHIP (frame handed to the encoder) | {a.get('clicks')} | "
                 f"{f(a.get('glass_to_endpoint_ms'))} | {f(a.get('sender_leg_ms'))} | "
                 f"{f(a.get('server_in_to_endpoint_ms'))} |")
    c = r.get("chromium_whip", {})
    if "skipped" in c:
        lines.append(f"| Chromium WHIP | skipped: {c['skipped']} | | | |")
    else:
        lines.append(f"| Chromium WHIP, from the click in the page's audio graph | "
                     f"{c.get('clicks')} | {f(c.get('page_graph_to_endpoint_ms'))} | "
                     f"{f(c.get('sender_leg_from_page_graph_ms'))} | "
                     f"{f(c.get('server_in_to_endpoint_ms'))} |")
        lines.append(f"| Chromium WHIP, from the click written by the fake capture, had it "
                     f"started when getUserMedia returned (a lower bound) / was called (an "
                     f"upper bound; {c.get('getusermedia_ms')} ms apart) | {c.get('matched')} | "
                     f"{f(c.get('capture_at_getusermedia_return_to_endpoint_ms'))} … "
                     f"{f(c.get('capture_at_getusermedia_call_to_endpoint_ms'))} | | |")
    i = r.get("icecast_ffmpeg", {})
    lines.append(f"| ffmpeg → Icecast source (samples written to ffmpeg's stdin) | "
                 f"{i.get('clicks')} | {f(i.get('glass_to_endpoint_ms'))} | "
                 f"{f(i.get('sender_leg_ms'))} | {f(i.get('server_in_to_endpoint_ms'))} |")
    if "skipped" not in c and c:
        m, v = c.get("browser_whep_monitor", {}), c.get("aiortc_whep_viewer", {})
        lines += ["", "| WHEP monitor of the village (Chromium WHIP source) | clicks | "
                  "page graph → heard | server-in → heard |", "|---|---|---|---|",
                  f"| Chromium (ScriptProcessor on the track) | {m.get('clicks')} | "
                  f"{f(m.get('page_graph_to_heard_ms'))} | {f(m.get('server_in_to_heard_ms'))} |",
                  f"| aiortc viewer (decoded frames) | {v.get('clicks')} | "
                  f"{f(v.get('page_graph_to_heard_ms'))} | {f(v.get('server_in_to_heard_ms'))} |"]
    w = r.get("whep_viewers", {})
    lines += ["", "- the mount's jitter buffer at the end of each path (depth / target, 20 ms "
              "frames), and the whole machine's CPU meanwhile: " + "; ".join(
                  f"{name} {p.get('jitter_frames')} / {p.get('jitter_target_frames')}, "
                  f"{p.get('machine_cpu_pct')} %" for name, p in (
                      ("aiortc", a), ("Chromium", c), ("ffmpeg", i)) if p and "skipped" not in p)]
    s = r.get("whip_sources", {})
    lines += [f"- server CPU: baseline (village taken, no source) {r.get('cpu_baseline_pct')} "
              f"% of a core; with one aiortc WHIP source {a.get('cpu_pct')} %; with the ffmpeg "
              f"Icecast source {i.get('cpu_pct')} %",
              f"- {s.get('sources')} WHIP sources at once ({s.get('live')} live), each on a "
              f"village of its own: server CPU {s.get('cpu_pct_with')} % beside "
              f"{s.get('cpu_pct_without')} % once they left (the villages still taken): "
              f"{s.get('cpu_pct_per_source')} % of a core per WHIP source",
              f"- {w.get('viewers')} WHEP viewers ({w.get('connected')} connected, "
              f"{w.get('receiving')} receiving): server CPU {w.get('cpu_pct_with')} % beside "
              f"{w.get('cpu_pct_without')} % without: {w.get('cpu_pct_per_viewer')} % of a core "
              f"per viewer ({w.get('cpu_ms_per_viewer_second')} ms per viewer-second); the "
              f"viewers' process {w.get('generator_cpu_pct')} %",
              f"- the whole machine: {r.get('machine_cpu_pct')} % of {r.get('cores')} cores "
              "over the run"]
    for key in ("errors",):
        if r.get(key):
            lines.append("- errors: " + "; ".join(r[key]))
    return lines
