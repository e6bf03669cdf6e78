"""``loa bench``: Loa side by side with what a station would otherwise use, in one run.

- Fan-out against Icecast 2 (Debian's package, started here on loopback with its default
  burst and queue, and again with no burst: a listener joins at the live edge), Loa the same
  two ways (its default 200 ms join burst, and none): all fed the same Ogg/Opus source,
  all listened to by the same harness at 100, 500 and 1,000 listeners:
  CPU and RSS per listener (every process of the server), startup delay, and the delay a
  listener hears (marker beeps found again by decoding probe listeners).
- Idle: each server carrying that live source on one mount (Loa: taken live by a zone) with
  no listener: CPU (% of one core) and RSS of all its processes (`idle_run`).
- Transcode against the ffmpeg CLI: CPU to turn 128 kb/s stereo MP3 into 32 kb/s mono Opus.
- Switching at 1,000 endpoints: live takeover, from the API call returning to the first
  packet of the live programme on every endpoint.
- Alerts beside fan-out at 1,000 endpoints: emergency alerts with a recorded file, with long
  text, and as CAP with an audio resource, started on a few zones each while the others listen
  to the station live: dead air in the untouched zones, the server's loop lag, and how soon the
  tone and the message reach each alerted endpoint (`alerts_run`).
- A source outage: the ffmpeg CLI pushing live is stopped for 5 s with its connection open,
  then continued; the delay a listener hears, second by second before and after, and how soon
  it is back to what it was (`outage_run`).
- WebRTC: clicks live over WHIP (an aiortc client, and Chromium's fake microphone) and over
  Icecast (ffmpeg), each click timed from its source to its decode at a loudspeaker; the CPU
  of a WHIP source and of 50 WHEP viewers (``loa.loadtest.bench_webrtc``).

The summary (``loa.loadtest.report.bench_summary``) gives each figure of issue 17's table as
the ratio of Loa's to its reference's, measured in the same run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from loa.codecs.decode import ByteFeed, ParsedStreamDecoder
from loa.codecs.encoder import create_encoder
from loa.codecs.ogg import OggReader
from loa.core.lifecycle import cancel_and_wait
from loa.core.pcm import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from loa.core.percentiles import percentiles
from loa.loadtest.bench_source import (
    BEEP_CYCLE,
    BEEP_FRAMES,
    BEEP_LEVEL,
    BenchSource,
    beep_hz,
    find_beeps,
    playout_delays_ms,
)
from loa.loadtest.endpoint import OpusDecoder
from loa.loadtest.fleet import Fleet, FleetResult
from loa.loadtest.report import bench_summary, format_bench_summary
from loa.loadtest.runner import LoadSpec, LoadTest
from loa.loadtest.target import (
    CLK_TCK,
    FfmpegSource,
    LocalLoa,
    free_port,
    stop_process,
    village_admin_code,
    with_parent,
    zone_tree_toml,
)
from loa.loadtest.timeline import aggregate

ICECAST_CONFIG = """<icecast>
  <location>loa bench</location><admin>bench@localhost</admin>
  <limits>
    <clients>5000</clients><sources>4</sources>
    <queue-size>524288</queue-size><client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout><source-timeout>10</source-timeout>
    <burst-on-connect>{burst_on_connect}</burst-on-connect><burst-size>{burst}</burst-size>
  </limits>
  <authentication>
    <source-password>{password}</source-password><relay-password>{password}</relay-password>
    <admin-user>admin</admin-user><admin-password>{password}</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <fileserve>1</fileserve>
  <paths>
    <basedir>/usr/share/icecast2</basedir><logdir>{dir}</logdir>
    <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot>
  </paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog>
    <loglevel>2</loglevel></logging>
  <security><chroot>0</chroot>{changeowner}</security>
</icecast>
"""

ICECAST_DEFAULT_BURST = 65535
# The fan-out's servers: Icecast as Debian ships it (a new listener first gets the last 64 KB,
# ~10 s of 32 kb/s Opus), Icecast with no burst at all (a listener joins at the live edge:
# the least delay it can give), and Loa. Each is a row of the fan-out table.
ICECAST_BURSTS = {"icecast": ICECAST_DEFAULT_BURST, "icecast-burst0": 0}  # kind -> bytes
# Loa as configured by default (a 200 ms join burst: `[fanout] burst_ms`), and with no join
# burst, as Icecast's burst 0: how far behind a probe hears depends on how much of a burst it
# gets (a burst still filling when it joins gives less), so the latency beside Icecast burst 0
# is read off Loa burst 0.
LOA_BURSTS_MS = {"loa": None, "loa-burst0": 0}  # kind -> `[fanout] burst_ms` (None: default)
FANOUT_KINDS = (*ICECAST_BURSTS, *LOA_BURSTS_MS)
SERVER_NAMES = {"icecast": "Icecast 2, default burst", "icecast-burst0": "Icecast 2, burst 0",
                "loa": "Loa", "loa-burst0": "Loa, burst 0"}
SOURCE_WARMUP_S = 15.0  # fills Icecast's burst buffer, as on a station that has been on air
PROBES = 5


class IcecastServer:
    """Icecast 2 in a child process on a free loopback port, with its config written here.

    ``burst``: the bytes a new listener is first sent from behind the live edge
    (``<burst-size>``); 0 also turns ``<burst-on-connect>`` off. Raises ``RuntimeError`` when
    icecast2 is not installed, or from ``start`` when it does not answer within 10 s.
    """

    def __init__(self, password: str = "bench", burst: int = ICECAST_DEFAULT_BURST) -> None:
        self.binary = shutil.which("icecast2") or shutil.which("icecast")
        if self.binary is None:
            raise RuntimeError("icecast2 is not installed (Debian: apt-get install icecast2)")
        self.password = password
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._dir = tempfile.mkdtemp(prefix="loa-bench-icecast-")
        os.chmod(self._dir, 0o777)
        owner = ("<changeowner><user>icecast2</user><group>icecast</group></changeowner>"
                 if os.geteuid() == 0 else "")
        self.config = os.path.join(self._dir, "icecast.xml")
        with open(self.config, "w") as f:
            f.write(ICECAST_CONFIG.format(port=self.port, password=password, dir=self._dir,
                                          burst=burst, burst_on_connect=int(burst > 0),
                                          changeowner=owner))
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        assert self.binary is not None
        self.proc = await asyncio.create_subprocess_exec(
            self.binary, "-c", self.config, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        async with aiohttp.ClientSession() as http:
            for _ in range(100):  # bounded: 10 s
                try:
                    async with http.get(self.url + "/status-json.xsl") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("icecast2 did not start")

    async def stop(self) -> None:
        await stop_process(self.proc)
        await asyncio.to_thread(shutil.rmtree, self._dir, ignore_errors=True)


@dataclass
class Probe:
    """A decoding listener: what a player would hear, and when."""

    url: str
    first_audio_ns: int = 0
    decoder: OpusDecoder = field(default_factory=OpusDecoder)

    async def run(self, seconds: float) -> None:
        reader = OggReader()
        async with aiohttp.ClientSession() as http:
            async with http.get(self.url) as resp:
                end = time.monotonic() + seconds
                async for chunk in resp.content.iter_any():
                    for _, _, packet, bos in reader.feed(chunk):
                        if bos or packet.startswith((b"OpusHead", b"OpusTags")):
                            continue
                        if not self.first_audio_ns:
                            self.first_audio_ns = time.monotonic_ns()
                        self.decoder.decode(packet)
                    if time.monotonic() > end:
                        return


@contextlib.asynccontextmanager
async def live_server(kind: str) -> AsyncIterator[tuple[Any, BenchSource, str]]:
    """``kind``'s server (one of ``FANOUT_KINDS``) started, the bench's live Ogg/Opus source
    pushed to it and, for Loa, the root zone taking that mount live: yields (the server, the
    source, the URL a listener opens). Stops the source, then the server, on the way out.
    Raises ``RuntimeError`` when a server does not start or refuses the source."""
    if kind in ICECAST_BURSTS:
        server: Any = IcecastServer(burst=ICECAST_BURSTS[kind])
        source_path, listen_path = "/bench.ogg", "/bench.ogg"
        password = server.password
    elif kind in LOA_BURSTS_MS:
        burst_ms = LOA_BURSTS_MS[kind]
        server = LocalLoa(token="bench", source_password="bench", demo=False,
                          config_toml=None if burst_ms is None
                          else f"[fanout]\nburst_ms = {burst_ms}\n")
        source_path, listen_path = "/live/studio", "/zones/huyen/stream.ogg"
        password = "bench"
    else:
        raise ValueError(f"unknown server {kind!r}: one of {', '.join(FANOUT_KINDS)}")
    source: BenchSource | None = None
    try:
        await server.start()
        pushing = BenchSource("127.0.0.1", server.port, source_path, password)
        await pushing.start()
        source = pushing
        if kind in LOA_BURSTS_MS:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{server.url}/api/v1/zones/huyen/live",
                                     json={"mount": "studio"},
                                     headers={"Authorization": "Bearer bench"}) as resp:
                    if resp.status not in (200, 201):
                        raise RuntimeError(f"taking the root zone live: {resp.status} "
                                           f"{await resp.text()}")
        yield server, source, server.url + listen_path
    finally:
        if source is not None:
            await source.stop()
        await server.stop()


async def fanout_run(kind: str, listeners: int, seconds: float, procs: int,
                     out: Any, warmup_s: float = SOURCE_WARMUP_S) -> dict[str, Any]:
    """One server (``FANOUT_KINDS``), one source, ``listeners`` Ogg listeners plus probes.

    Every kind is measured the same way, heard delay included: the probes connect when the
    listeners' ramp begins, and a beep's delay is when a player that starts at the probe's
    first audio packet and plays on at real time would play it, minus when the source sent
    it (``playout_delays_ms``)."""
    async with live_server(kind) as (server, source, url):
        await asyncio.sleep(warmup_s)  # the station has been on air a while
        ramp = min(5.0, seconds / 4)
        fleet = Fleet([(url, "ogg", ramp * i / listeners) for i in range(listeners)], procs,
                      seconds, out, server.pid, measure_from_s=ramp + 1)
        rss_before = await asyncio.to_thread(sample_tree, server.pid)
        fleet.start()
        # The fleet samples the server's main process; this, all of it (helper processes
        # too) over the same window: from the end of the ramp to the end of the run.
        window = asyncio.create_task(sample_window(
            server.pid, fleet.start_ns + int(fleet.measure_from_s * 1e9),
            fleet.start_ns + int(seconds * 1e9)))
        probes = [Probe(url) for _ in range(PROBES)]
        probe_tasks = [asyncio.create_task(p.run(seconds - ramp)) for p in probes]
        try:
            result = await fleet.run()
        except BaseException:
            window.cancel()
            await asyncio.gather(window, return_exceptions=True)
            raise
        first, last, wall_s = await window
        await asyncio.gather(*probe_tasks, return_exceptions=True)

    def heard_delays() -> list[float]:  # decoding and beep finding: beside the loop
        return [d for p in probes if p.first_audio_ns
                for d in playout_delays_ms(p.decoder.pcm(), p.first_audio_ns,
                                           source.beep_sent_ns)]

    delays = await asyncio.to_thread(heard_delays)
    eps = [e for e in result.endpoints if e]
    startup = [e["startup_ns"][0] / 1e6 for e in eps if e["startup_ns"]]
    main_cpu_ms = (1000 * result.server_cpu_s / result.server_wall_s / listeners
                   if result.server_cpu_s is not None and result.server_wall_s else None)
    # the whole server (every process of it), over the same window as the fleet's figure
    cpu_s = last.cpu_s - first.cpu_s if first and last and wall_s else None
    cpu_ms = 1000 * cpu_s / wall_s / listeners if cpu_s is not None else None
    rss_kb = ((last.rss_kb - rss_before.rss_kb) / listeners if last and rss_before else None)
    return {
        "server": kind,
        "listeners": listeners,
        "streaming": sum(1 for e in eps if e["packets"]),
        "cpu_ms_per_listener_second": round(cpu_ms, 4) if cpu_ms is not None else None,
        "server_cpu_pct": round(100 * cpu_s / wall_s, 1) if cpu_s is not None else None,
        "rss_kb_per_listener": round(rss_kb, 1) if rss_kb is not None else None,
        "rss_mb": round((last.rss_kb if last else 0) / 1024, 1),
        "startup_ms": percentiles(startup),
        "heard_delay_ms": percentiles(delays),
        "beeps_heard": len(delays),
        "gaps": sum(e["gaps"] for e in eps),
        "generator_cpu_pct": round(100 * result.generator_cpu_s / seconds, 1),
        "source_error": source.error,
        "burst_bytes": ICECAST_BURSTS.get(kind),  # Icecast's; None for Loa
        "burst_ms": LOA_BURSTS_MS.get(kind),  # Loa's, when not its default; None otherwise
        "server_processes": last.processes if last else None,
        # the figures above for the server's main process alone (as the fleet measures it)
        "main_process": {
            "cpu_ms_per_listener_second": round(main_cpu_ms, 4)
            if main_cpu_ms is not None else None,
            "server_cpu_pct": round(100 * result.server_cpu_s / result.server_wall_s, 1)
            if result.server_cpu_s is not None and result.server_wall_s else None,
            "rss_mb": round((result.server_rss_kb or 0) / 1024, 1),
        },
        "by_process": by_process(first, last, wall_s) if first and last else [],
    }


@dataclass(frozen=True, slots=True)
class TreeSample:
    """A process and its descendants at one moment, from /proc (Linux).

    ``cpu_s``: user + system seconds of every live process in the tree, with what each has
    reaped of its children (so a helper that came and went still counts); ``rss_kb``: VmRSS
    summed over the live processes (pages they share count once per process);
    ``by_pid``: pid -> (its command line, cut to 60 characters; its cpu_s; its rss_kb)."""

    cpu_s: float
    rss_kb: int
    by_pid: dict[int, tuple[str, float, int]]

    @property
    def processes(self) -> int:
        """How many processes the tree holds."""
        return len(self.by_pid)


def sample_tree(pid: int) -> TreeSample | None:
    """``pid`` and its descendants (``TreeSample``), or None when ``pid`` is gone. Blocking:
    it reads /proc for every process on the machine; call it beside the loop."""
    parent: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # fields[0] is the state (3rd)
        except (OSError, IndexError):
            continue  # gone since the listing
        stats[int(name)] = fields
        parent[int(name)] = int(fields[1])
    if pid not in stats:
        return None
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += [c for c, pp in parent.items() if pp == p]
    by_pid: dict[int, tuple[str, float, int]] = {}
    for p in tree:
        ticks = sum(int(stats[p][i]) for i in (11, 12, 13, 14))  # utime, stime, cutime, cstime
        rss_kb, command = 0, "?"
        try:
            with open(f"/proc/{p}/status") as f:
                rss_kb = next((int(line.split()[1]) for line in f
                               if line.startswith("VmRSS:")), 0)  # none: a zombie
            with open(f"/proc/{p}/cmdline", "rb") as fb:
                argv = fb.read().decode(errors="replace").split("\0")
            command = " ".join([os.path.basename(argv[0]), *argv[1:]]).strip()[:60]
        except OSError:
            pass  # gone since: its CPU as last read, no memory
        by_pid[p] = (command, ticks / CLK_TCK, rss_kb)
    return TreeSample(sum(c for _, c, _ in by_pid.values()),
                      sum(r for _, _, r in by_pid.values()), by_pid)


async def sample_window(pid: int | None, from_ns: int, to_ns: int
                        ) -> tuple[TreeSample | None, TreeSample | None, float]:
    """``sample_tree(pid)`` at monotonic ``from_ns`` and at ``to_ns``, and the wall seconds
    between the two samples."""
    if pid is None:
        return None, None, 0.0
    await asyncio.sleep(max(0.0, (from_ns - time.monotonic_ns()) / 1e9))
    t0 = time.monotonic()
    first = await asyncio.to_thread(sample_tree, pid)
    await asyncio.sleep(max(0.0, (to_ns - time.monotonic_ns()) / 1e9))
    last = await asyncio.to_thread(sample_tree, pid)
    return first, last, time.monotonic() - t0


def by_process(first: TreeSample, last: TreeSample, wall_s: float) -> list[dict[str, Any]]:
    """Each process of ``last``: its command, CPU between the samples (% of one core) and
    RSS at ``last`` (MB), the busiest first."""
    rows = [{"command": cmd, "cpu_pct": round(100 * (cpu - first.by_pid.get(p, ("", 0.0, 0))[1])
                                              / wall_s, 2) if wall_s else None,
             "rss_mb": round(rss / 1024, 1)} for p, (cmd, cpu, rss) in last.by_pid.items()]
    return sorted(rows, key=lambda r: -(r["cpu_pct"] or 0))


IDLE_SETTLE_S = 10.0  # after the source connects: start-up work done before measuring
IDLE_SECONDS = 20.0


async def idle_run(kind: str, seconds: float = IDLE_SECONDS,
                   settle_s: float = IDLE_SETTLE_S) -> dict[str, Any]:
    """A server (``FANOUT_KINDS``) carrying one live programme that nobody listens to: the
    bench's live Ogg/Opus source pushed to one mount (for Loa, taken live by the root zone),
    no listener. After ``settle_s``, the CPU its processes spend over ``seconds`` (% of one
    core) and their RSS at the end (MB), from /proc."""
    async with live_server(kind) as (server, source, _):
        start_ns = time.monotonic_ns() + int(settle_s * 1e9)
        before, after, wall_s = await sample_window(server.pid, start_ns,
                                                    start_ns + int(seconds * 1e9))
        pages = source.pages
        error = source.error
    if before is None or after is None or not wall_s:
        raise RuntimeError(f"idle: the {kind} server ended while it was measured")
    main = after.by_pid[server.pid]
    return {
        "server": kind,
        "seconds": round(wall_s, 2),
        "cpu_pct": round(100 * (after.cpu_s - before.cpu_s) / wall_s, 2),
        "cpu_s": round(after.cpu_s - before.cpu_s, 3),
        "rss_mb": round(after.rss_kb / 1024, 1),
        "processes": after.processes,
        "main_process": {"cpu_pct": round(100 * (main[1] - before.by_pid[server.pid][1])
                                          / wall_s, 2),
                         "rss_mb": round(main[2] / 1024, 1)},
        "by_process": by_process(before, after, wall_s),
        "source_pages": pages,  # 20 ms each since the source connected
        "source_error": error,
    }


def format_idle(idle: dict[str, Any]) -> list[str]:
    """The idle part as text: a row per server, then Loa / Icecast."""
    lines = ["Idle, one live programme and no listener (CPU over "
             f"{max(r['seconds'] for r in idle.values()):.0f} s, RSS at its end):", "",
             "| server | CPU % of one core | RSS MB | processes |", "|---|---|---|---|"]
    for kind, r in idle.items():
        lines.append(f"| {SERVER_NAMES.get(kind, kind)} | {r['cpu_pct']:.2f} | {r['rss_mb']} | "
                     f"{r['processes']} |" + (f" source: {r['source_error']}"
                                              if r["source_error"] else ""))
        if r["processes"] > 1:
            lines += [f"|   {p['command']} | {p['cpu_pct']:.2f} | {p['rss_mb']} | |"
                      for p in r["by_process"]]
    ice, loa = idle.get("icecast"), idle.get("loa")
    if ice and loa:
        cpu = f"{loa['cpu_pct'] / ice['cpu_pct']:.1f}" if ice["cpu_pct"] else "–"
        lines += ["", f"- Loa / Icecast: CPU {cpu}, RSS {loa['rss_mb'] / ice['rss_mb']:.1f}"]
    return lines


TRANSCODE_ROUNDS = 3


def transcode_run(seconds: float = 300.0, rounds: int = TRANSCODE_ROUNDS) -> dict[str, Any]:
    """CPU seconds to turn ``seconds`` of 128 kb/s stereo MP3 into 32 kb/s mono Opus: the
    least of ``rounds`` runs each, so a burst of other work on the machine does not count."""
    tmp = tempfile.mkdtemp(prefix="loa-bench-tc-")
    try:
        mp3 = os.path.join(tmp, "feed.mp3")
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"sine=frequency=440:sample_rate=44100:duration={seconds}", "-f",
                        "lavfi", "-i", f"anoisesrc=a=0.05:d={seconds}:r=44100",
                        "-filter_complex", "amix=inputs=2", "-ac", "2", "-c:a", "libmp3lame",
                        "-b:a", "128k", mp3], check=True)
        with open(mp3, "rb") as f:
            data = f.read()
        ffmpeg_runs, loa_runs = [], []
        for _ in range(rounds):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-threads", "1", "-i", mp3,
                            "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "libopus", "-b:a", "32k",
                            "-frame_duration", str(FRAME_MS), "-f", "ogg", os.devnull], check=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            ffmpeg_runs.append((after.ru_utime - before.ru_utime)
                               + (after.ru_stime - before.ru_stime))
            # Loa's live path: the MP3 parser, decoder and resampler, then the Opus encoder
            t0 = time.process_time()
            feed = ByteFeed(limit_bytes=len(data) + 1)
            feed.write(data)
            feed.close()
            encoder = create_encoder("opus", 32_000)
            frames = 0
            for samples in ParsedStreamDecoder(feed, "mp3", "bench"):
                encoder.encode(samples, frames * FRAME_SAMPLES, 0)
                frames += 1
            loa_runs.append(time.process_time() - t0)
        ffmpeg_cpu, loa_cpu = min(ffmpeg_runs), min(loa_runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "audio_s": seconds,
        "ffmpeg_cpu_s": round(ffmpeg_cpu, 3),
        "loa_cpu_s": round(loa_cpu, 3),
        "ratio_loa_to_ffmpeg": round(loa_cpu / ffmpeg_cpu, 3) if ffmpeg_cpu else None,
        "loa_cpu_pct_of_realtime": round(100 * loa_cpu / seconds, 2),
        "rounds": rounds,
        "ffmpeg_runs_s": [round(x, 3) for x in ffmpeg_runs],
        "loa_runs_s": [round(x, 3) for x in loa_runs],
    }


async def switching_run(endpoints: int, procs: int, out: Any) -> dict[str, Any]:
    spec = LoadSpec(endpoints=endpoints, procs=procs, ramp_s=5.0, seconds=18.0,
                    takeover_at=9.0, takeover_hold_s=4.0, alert_at=14.0, village_zones=20)
    report = await LoadTest(spec, out=out).run()
    return {s["name"]: {k: v for k, v in s.items() if k != "summary"}
            for s in report["scenarios"]}


# --- alerts beside fan-out ---

ALERT_KINDS = ("file", "text", "cap")
ALERT_KIND_NAMES = {"file": "recorded file (15 min MP3)", "text": "text read aloud",
                    "cap": "CAP, inline audio resource"}
ALERT_FILE = "bench-alert.mp3"  # in the server's media folder
ALERT_NOTICE = (
    "Thông báo khẩn cấp của Ủy ban nhân dân xã về tình hình mưa lũ. Do ảnh hưởng của hoàn lưu "
    "bão, từ đêm qua đến sáng nay trên địa bàn xã đã có mưa to đến rất to, lượng mưa phổ biến "
    "từ một trăm năm mươi đến hai trăm milimét. Mực nước các sông suối đang lên nhanh, nguy cơ "
    "rất cao xảy ra lũ quét tại các thôn ven suối và sạt lở đất tại các khu vực đồi núi có độ "
    "dốc lớn. Ủy ban nhân dân xã đề nghị bà con nhân dân khẩn trương di chuyển người già, trẻ "
    "em, tài sản và gia súc đến nơi cao ráo, an toàn theo hướng dẫn của trưởng thôn và lực "
    "lượng dân quân. Tuyệt đối không đi qua các ngầm tràn, cầu tạm, không vớt củi, đánh bắt "
    "cá trên sông suối khi có lũ. Các hộ gia đình sống gần chân đồi, ven taluy cần rời khỏi "
    "nhà ngay. Nhà văn hóa các thôn và trường tiểu học của xã được mở cửa làm nơi tránh trú. "
    "Mọi trường hợp khẩn cấp xin báo ngay cho Ban chỉ huy phòng chống thiên tai và tìm kiếm "
    "cứu nạn của xã hoặc trạm y tế xã để được hỗ trợ kịp thời.")


def alert_text(chars: int = 2000) -> str:
    """A bulletin of about ``chars`` characters, as a commune reads it out: the notice, then
    "Xin nhắc lại" and the notice again, cut at the end of a sentence."""
    text = ALERT_NOTICE
    while len(text) < chars:
        text += " Xin nhắc lại. " + ALERT_NOTICE
    cut = text.rfind(". ", 0, chars)
    return text[:cut + 1] if cut > 0 else text[:chars]


def alert_cap_xml(identifier: str, geocodes: list[str], audio: bytes) -> bytes:
    """A CAP 1.2 emergency (Actual, Public, Immediate, Severe) for the zones of ``geocodes``
    whose message is ``audio`` (MP3) inline: a ``<resource>`` with ``<derefUri>`` base64."""
    tz = datetime.timezone(datetime.timedelta(hours=7))
    now = datetime.datetime.now(tz).replace(microsecond=0)
    digest = hashlib.sha1(audio).hexdigest()  # CAP 1.2 names SHA-1
    codes = "".join(f"<geocode><valueName>MaDVHC</valueName><value>{c}</value></geocode>"
                    for c in geocodes)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier><sender>kttv@bench.loa</sender>
  <sent>{now.isoformat()}</sent><status>Actual</status><msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>vi-VN</language><category>Met</category><event>Lũ quét</event>
    <urgency>Immediate</urgency><severity>Severe</severity><certainty>Likely</certainty>
    <expires>{(now + datetime.timedelta(hours=1)).isoformat()}</expires>
    <headline>Cảnh báo lũ quét</headline>
    <description>Mưa lớn gây lũ quét tại các thôn ven suối.</description>
    <instruction>Di chuyển ngay đến nơi cao.</instruction>
    <resource><resourceDesc>Bản tin cảnh báo lũ quét</resourceDesc><mimeType>audio/mpeg</mimeType>
      <digest>{digest}</digest><derefUri>{base64.b64encode(audio).decode()}</derefUri></resource>
    <area><areaDesc>Các thôn ven suối</areaDesc>{codes}</area>
  </info>
</alert>""".encode()


def _sine_mp3(path: str, freq_hz: int, seconds: float) -> None:
    """Blocking: a mono 32 kb/s MP3 tone made by the ffmpeg CLI."""
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency={freq_hz}:duration={seconds:g}:sample_rate=22050", "-ac",
                    "1", "-c:a", "libmp3lame", "-b:a", "32k", path], check=True)


def make_alert_media(media_dir: str, file_s: float, cap_s: float) -> bytes:
    """Blocking (ffmpeg): the recorded message ``ALERT_FILE`` in ``media_dir``; returns the
    CAP message's audio."""
    os.makedirs(media_dir, exist_ok=True)
    _sine_mp3(os.path.join(media_dir, ALERT_FILE), 330, file_s)
    cap = os.path.join(media_dir, "cap-source.mp3")
    _sine_mp3(cap, 550, cap_s)
    with open(cap, "rb") as f:
        data = f.read()
    os.unlink(cap)
    return data


class _RegisteredFleetTest(LoadTest):
    """The load test's fleet, each endpoint listening as a registered endpoint
    (``/endpoints/<id>/ws``) so that the server records its reach; keeps the raw result."""

    def __init__(self, spec: LoadSpec, ids: list[str], out: Any,
                 actions: list[tuple[float, str, Any]]) -> None:
        super().__init__(spec, out=out, actions=actions)
        self.ids = ids
        self.result: FleetResult | None = None

    def _endpoints(self, zones: list[str]) -> list[tuple[str, str, float]]:
        host = self.url.split("://", 1)[1].rstrip("/")
        n = len(self.ids)
        return [(f"ws://{host}/endpoints/{eid}/ws", "ws", self.spec.ramp_s * i / n)
                for i, eid in enumerate(self.ids)]

    def _report(self, zones: list[str], result: FleetResult) -> dict[str, Any]:
        self.result = result
        return super()._report(zones, result)


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


async def _call(http: aiohttp.ClientSession, method: str, url: str, **kw: Any
                ) -> tuple[int, Any]:
    async with http.request(method, url, **kw) as resp:
        try:
            body = await resp.json()
        except (aiohttp.ContentTypeError, ValueError):
            body = await resp.text()
        return resp.status, body


async def _source_connected(http: aiohttp.ClientSession, url: str, part: str) -> None:
    """Wait (polling, at most 10 s) until the studio mount has a source sending frames.
    Raises RuntimeError naming the bench ``part`` when it does not."""
    for _ in range(100):  # bounded: 10 s
        _, st = await _call(http, "GET", url + "/api/v1/status")
        if any(m["mount"] == "studio" and m["connected"] and m["frames_in"] > 5
               for m in st["mounts"]):
            return
        await asyncio.sleep(0.1)  # polling a starting source, bounded
    raise RuntimeError(f"{part}: the live source did not connect")


async def alerts_run(endpoints: int, procs: int, out: Any, *, villages: int = 20,
                     zones_per_kind: int = 3, ramp_s: float = 5.0, alert_at: float = 10.0,
                     lag_after_s: float = 10.0, seconds: float | None = None,
                     file_s: float = 900.0, cap_s: float = 15.0, text_chars: int = 2000,
                     kinds: tuple[str, ...] = ALERT_KINDS) -> dict[str, Any]:
    """Emergency alerts beside fan-out. ``endpoints`` registered endpoints over ``villages``
    village zones listen to the station live (an ffmpeg push taken on the root zone); at
    ``alert_at`` s three emergency alerts start at once, each on its own ``zones_per_kind``
    villages: a recorded file (``file_s`` s of MP3 in the media folder), text read aloud
    (``text_chars`` of Vietnamese), and a CAP message whose audio resource is inline (targets
    by geocode = the villages' admin codes). Measured: for the untouched zones, what their
    endpoints heard (stalls, longest silence, share of real time); the server's loop lag over
    the 10 s before the alerts and ``lag_after_s`` after; for each alert, per endpoint, ms
    from the API call's arrival to the first tone packet and the first message packet written
    to its socket (the server's ``reach_from_call_ms``), and, as the endpoints saw it, from
    the call being sent to the first alert packet arriving. ``kinds``: only these alerts
    (their zones stay out of the untouched ones either way)."""
    if not kinds or set(kinds) - set(ALERT_KINDS):
        raise ValueError(f"kinds must be some of {', '.join(ALERT_KINDS)}")
    n_alerted = len(ALERT_KINDS) * zones_per_kind
    if zones_per_kind < 1 or villages <= n_alerted:
        raise ValueError(f"{villages} villages leave none untouched by {n_alerted} alerted")
    if not 0 < ramp_s < alert_at:
        raise ValueError("the alerts must start after the ramp")
    seconds = seconds if seconds is not None else alert_at + lag_after_s + 4.0
    if seconds < alert_at + lag_after_s + 1.5:
        raise ValueError("the run must outlast the loop-lag reading by 1.5 s")
    token = "bench"
    zone_ids = [f"thon-{v + 1:02d}" for v in range(villages)]
    targets = {kind: zone_ids[k * zones_per_kind:(k + 1) * zones_per_kind]
               for k, kind in enumerate(ALERT_KINDS)}
    untouched = zone_ids[n_alerted:]
    ids = [f"bench-{i + 1:04d}" for i in range(endpoints)]
    home = [zone_ids[i % villages] for i in range(endpoints)]
    text = alert_text(text_chars)
    config = (zone_tree_toml(villages, endpoints=list(zip(ids, home, strict=True)),
                              village_codes=True)
              + f'\n[mqtt]\nlisten = "127.0.0.1:{free_port()}"\n')
    server = LocalLoa(token=token, source_password=token, demo=False, config_toml=config)
    source: FfmpegSource | None = None
    state: dict[str, Any] = {"lag": {}, "resyncs": {}, "alerts": {}, "reach": {}, "errors": []}
    headers = {"Authorization": f"Bearer {token}"}
    try:
        out(f"alerts: making the messages ({file_s:g} s MP3, CAP audio {cap_s:g} s)")
        cap_audio = await asyncio.to_thread(make_alert_media,
                                            os.path.join(server.data_dir, "media"), file_s,
                                            cap_s)
        cap_xml = alert_cap_xml(f"bench-{os.getpid()}-{time.time_ns()}",
                                [village_admin_code(zone_ids.index(z) + 1)
                                 for z in targets["cap"]], cap_audio)
        await server.start()
        source = FfmpegSource(f"icecast://source:{token}@127.0.0.1:{server.port}/live/studio")
        await source.start()
        async with aiohttp.ClientSession(headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=30)) as http:
            await _source_connected(http, server.url, "alerts")
            status, body = await _call(http, "POST", server.url + "/api/v1/zones/huyen/live",
                                       json={"mount": "studio"})
            if status not in (200, 201):
                raise RuntimeError(f"alerts: taking the root zone live: {status} {body}")

            async def read_lag(when: str) -> None:
                try:
                    _, st = await _call(http, "GET", server.url + "/api/v1/status")
                    state["lag"][when] = st["loop_lag_ms"]
                    state["resyncs"][when] = st["engine"]["resyncs"]
                except (aiohttp.ClientError, TimeoutError, KeyError, TypeError) as exc:
                    state["errors"].append(f"status ({when}): {exc!r}")

            async def trigger(kind: str) -> None:
                sent_ns = time.monotonic_ns()
                try:
                    if kind == "cap":
                        status, body = await _call(
                            http, "POST", server.url + "/api/v1/cap", data=cap_xml,
                            headers={"Content-Type": "application/xml"})
                    else:
                        content = ({"kind": "file", "path": ALERT_FILE} if kind == "file"
                                   else {"kind": "text", "text": text, "voice": "vi"})
                        status, body = await _call(
                            http, "POST", server.url + "/api/v1/alerts",
                            json={"class": "emergency", "zones": targets[kind],
                                  "content": content})
                except (aiohttp.ClientError, TimeoutError) as exc:
                    state["errors"].append(f"{kind} alert: {exc!r}")
                    return
                answered_ms = (time.monotonic_ns() - sent_ns) / 1e6
                if status != 201 or not isinstance(body, dict) or "alert" not in body:
                    state["errors"].append(f"{kind} alert: {status} {body}")
                    return
                alert = body["alert"]
                state["alerts"][kind] = {
                    "id": alert["id"], "sent_ns": sent_ns, "answered_ms": round(answered_ms, 3),
                    "zones": alert["zones"], "content": alert["content"]["kind"]}
                if body.get("errors"):
                    state["errors"] += [f"{kind} alert: {e}" for e in body["errors"]]

            async def fire() -> None:
                await asyncio.gather(*(trigger(kind) for kind in kinds))

            async def collect() -> None:
                """Every alert's reach, until each message has reached every targeted
                endpoint (polled, bounded by the end of the run)."""
                end = time.monotonic() + seconds - 1.0 - (alert_at + lag_after_s + 0.1)
                while True:
                    done = True
                    for kind, a in state["alerts"].items():
                        try:
                            _, body = await _call(http, "GET", server.url
                                                  + f"/api/v1/alerts/{a['id']}?endpoints=1")
                            found = body["alert"]
                        except (aiohttp.ClientError, TimeoutError, KeyError, TypeError) as exc:
                            state["errors"].append(f"{kind} reach: {exc!r}")
                            return
                        state["reach"][kind] = found
                        if len(found["reach_from_call_ms"]["message"]) < found["reach"]["targeted"]:
                            done = False
                    if done or time.monotonic() > end:
                        return
                    await asyncio.sleep(0.25)  # polling the server, bounded by ``end``

            spec = LoadSpec(url=server.url, token=token, server_pid=server.pid,
                            endpoints=endpoints, protocol="ws", procs=procs, ramp_s=ramp_s,
                            seconds=seconds, zones=zone_ids)
            actions = [(alert_at - 0.5, "loop lag before", lambda: read_lag("before")),
                       (alert_at, "alerts", fire),
                       (alert_at + lag_after_s, "loop lag after", lambda: read_lag("after")),
                       (alert_at + lag_after_s + 0.1, "reach", collect)]
            test = _RegisteredFleetTest(spec, ids, out, actions)
            out(f"alerts: {endpoints} endpoints over {villages} villages, live on the root; "
                f"at t={alert_at:g}s file on {','.join(targets['file'])}, text on "
                f"{','.join(targets['text'])}, CAP on {','.join(targets['cap'])}")
            cpu0 = _machine_jiffies()
            report = await test.run()
            cpu1 = _machine_jiffies()
    finally:
        if source is not None:
            await source.stop()
        await server.stop()
    assert test.result is not None
    eps = test.result.endpoints

    def figures() -> dict[str, Any]:  # 40 to 2000 endpoints' timelines: beside the loop
        start_ns = test.fleet.start_ns

        def heard(zones: list[str]) -> dict[str, Any]:
            idx = [i for i, z in enumerate(home) if z in zones]
            rows = [eps[i]["timeline"] for i in idx if eps[i].get("timeline")]
            agg = aggregate(rows)
            when: dict[float, int] = {}  # stalls by when they were heard (s from the start)
            for row in rows:
                for ns in row["stalls_at_ns"]:
                    t = round((ns - start_ns) / 1e9, 1)
                    when[t] = when.get(t, 0) + 1
            return {"zones": len(zones), "endpoints": len(idx), "reporting": len(rows),
                    "gaps": sum(eps[i].get("gaps", 0) for i in idx),
                    "stalls_at_s": {str(t): n for t, n in sorted(when.items())},
                    **{k: agg[k] for k in ("verdict", "verdict_reasons", "stalls",
                                           "endpoints_with_stalls", "longest_silence_ms",
                                           "delivered_pct")}}

        alerts: dict[str, Any] = {}
        for kind in ALERT_KINDS:
            a, found = state["alerts"].get(kind), state["reach"].get(kind)
            if a is None or found is None:
                continue
            rfc = found.get("reach_from_call_ms", {"tone": {}, "message": {}})
            zone_set = set(targets[kind])
            arrived = []  # as the endpoints saw it: call sent -> first alert packet
            for i, z in enumerate(home):
                if z in zone_set and eps[i]:
                    first = next((t for t, _, prio in eps[i].get("switches", [])
                                  if t >= a["sent_ns"] and prio == 100), None)
                    if first is not None:
                        arrived.append((first - a["sent_ns"]) / 1e6)
            alerts[kind] = {
                "id": a["id"], "zones": a["zones"], "content": a["content"],
                "answered_ms": a["answered_ms"], "targeted": found["reach"]["targeted"],
                "tone_reached": len(rfc["tone"]), "message_reached": len(rfc["message"]),
                "tone_first_ms": percentiles(list(rfc["tone"].values())),
                "message_first_ms": percentiles(list(rfc["message"].values())),
                "tone_arrived_ms": percentiles(arrived),
                "timing_ms": found.get("timing_ms"), "status": found.get("status"),
                "warnings": found.get("warnings", []),
            }
        return {
            "endpoints": endpoints, "villages": villages, "zones_per_kind": zones_per_kind,
            "seconds": seconds, "alert_at_s": alert_at, "lag_read_after_s": lag_after_s,
            "zones": {**targets, "untouched": untouched},
            "content": {"file_s": file_s, "text_chars": len(text),
                        "cap_audio_bytes": len(cap_audio), "cap_xml_bytes": len(cap_xml)},
            "untouched": heard(untouched),
            "alerted": heard([z for zs in targets.values() for z in zs]),
            "loop_lag_ms": state["lag"], "clock_resyncs": state["resyncs"],
            "alerts": alerts,
            "gaps": report["gaps"], "server": report.get("server"),
            "generator_cpu_pct": report["generator_cpu_pct"],
            # everything the machine did meanwhile (server, generator, source and anything else),
            # % of all its cores: a busy machine shows as loop lag that is not the server's own
            "machine_cpu_pct": round(100 * (cpu1[0] - cpu0[0]) / (cpu1[1] - cpu0[1]), 1)
            if cpu1[1] > cpu0[1] else None,
            "errors": state["errors"],
        }

    return await asyncio.to_thread(figures)


# --- a source outage: the delay a listener hears before and after ---

OUTAGE_AT_S = 20.0  # the station has been on air this long when its link dies
OUTAGE_S = 5.0
OUTAGE_AFTER_S = 20.0  # listened to after the link comes back
OUTAGE_SETTLE_S = 3.0  # the first seconds on air (start-up) do not count towards the baseline
# "Back to the target": a delay no more than this above the largest heard before the outage.
# Ordinary jitter moves the delay about that much: an underflow's silence (a frame or two) and
# the frame the jitter target grows by.
OUTAGE_BAND_MS = 50.0


# Between the beeps, a quiet hum: far under the beeps' onset threshold, but it shows when a
# listener hears the source again after an outage, to the 10 ms.
BED_LEVEL = 0.01
BED_HZ = 150


def beeps_expr() -> str:
    """The bench's marker beeps (``bench_source``: a 100 ms beep at the start of each second,
    its frequency naming the second modulo ``BEEP_CYCLE``) over a quiet hum (``BED_LEVEL``),
    as an expression of ffmpeg's ``aevalsrc``, so that ffmpeg itself makes and encodes them."""
    step_hz = beep_hz(1) - beep_hz(0)
    return (f"if(lt(mod(t,1),{BEEP_FRAMES * FRAME_MS / 1000:g}),{BEEP_LEVEL:g}*sin(2*PI*("
            f"{beep_hz(0):g}+{step_hz:g}*mod(floor(t),{BEEP_CYCLE}))*t),"
            f"{BED_LEVEL:g}*sin(2*PI*{BED_HZ}*t))")


def first_sound_ns(pcm: np.ndarray, first_audio_ns: int, after_ns: int, rms: float
                   ) -> int | None:
    """When a player starting at its first audio packet first hears, after ``after_ns``, a
    10 ms block of ``pcm`` louder than ``rms`` (monotonic ns; None: never)."""
    block = SAMPLE_RATE // 100
    start = max(0, (after_ns - first_audio_ns) * SAMPLE_RATE // 1_000_000_000)
    n = (len(pcm) - start) // block
    if n <= 0:
        return None
    env = np.sqrt(np.mean(pcm[start:start + n * block].reshape(n, block) ** 2, axis=1))
    loud = np.flatnonzero(env > rms)
    if not len(loud):
        return None
    return first_audio_ns + (start + int(loud[0]) * block) * 1_000_000_000 // SAMPLE_RATE


class FfmpegBeepSource:
    """The station going live as the ffmpeg CLI pushes it: marker beeps made by ``aevalsrc``,
    128 kb/s stereo MP3 at 44.1 kHz, pushed Icecast-style at real time (``-re``).

    ffmpeg's ``-progress`` reports say how much audio it has written; read as they come, they
    give the monotonic time at which second 0 of the audio left it (``t0_ns``), hence when each
    beep was sent. ``pause()`` / ``resume()`` stop and continue the process (SIGSTOP /
    SIGCONT): its TCP connection stays open and sends nothing, as when a 4G link dies; on
    resuming, ``-re`` catches up at full speed, as TCP delivers what an encoder queued meanwhile.
    """

    PROGRESS_PERIOD_S = 0.05

    def __init__(self, url: str) -> None:
        self.url = url
        self.proc: asyncio.subprocess.Process | None = None
        self.t0_ns: int | None = None  # the earliest (arrival - audio written) seen
        self.reports = 0
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *with_parent([
                "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostats", "-re", "-f", "lavfi",
                "-i", f"aevalsrc=exprs='{beeps_expr()}':s=44100:c=mono", "-ac", "2",
                "-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3", "-content_type", "audio/mpeg",
                "-progress", "pipe:1", "-stats_period", f"{self.PROGRESS_PERIOD_S:g}", self.url]),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        self._reader = asyncio.create_task(self._read_progress(self.proc))

    async def _read_progress(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            arrived_ns = time.monotonic_ns()
            key, _, value = line.decode(errors="replace").strip().partition("=")
            if key != "out_time_us" or not value.isdigit() or int(value) == 0:
                continue  # 0: reported before anything was written
            self.reports += 1
            t0 = arrived_ns - int(value) * 1000
            self.t0_ns = t0 if self.t0_ns is None else min(self.t0_ns, t0)

    def beep_sent_ns(self, until_ns: int) -> dict[int, int]:
        """Beep number -> monotonic ns it was due to be sent (second b of the audio), up to
        ``until_ns``; empty before the first progress report."""
        if self.t0_ns is None:
            return {}
        n = max(0, (until_ns - self.t0_ns) // 1_000_000_000 + 1)
        return {b: self.t0_ns + b * 1_000_000_000 for b in range(n)}

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.returncode is None:
            os.kill(self.proc.pid, sig)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()  # SIGKILL ends a stopped process too
            await self.proc.wait()
        await cancel_and_wait(self._reader)


def heard_delay_series(pcm: np.ndarray, first_audio_ns: int, beep_sent_ns: dict[int, int]
                       ) -> list[tuple[int, float]]:
    """(monotonic ns heard, ms after it was sent) for each beep a player starting at its first
    audio packet hears in ``pcm``: ``playout_delays_ms`` with the time each was heard."""
    series = []
    for onset, k in find_beeps(pcm):
        heard_ns = first_audio_ns + onset * 1_000_000_000 // SAMPLE_RATE
        sent = [s for b, s in beep_sent_ns.items() if b % BEEP_CYCLE == k and s <= heard_ns]
        if sent:
            series.append((heard_ns, (heard_ns - max(sent)) / 1e6))
    return series


def back_to_target(series: list[tuple[float, float]], from_s: float, limit_ms: float
                   ) -> float | None:
    """Seconds after ``from_s`` until a beep is heard within ``limit_ms`` of delay again (None:
    never). ``series``: (s heard, delay ms), in order."""
    return next((t - from_s for t, d in series if t >= from_s and d <= limit_ms), None)


async def outage_run(out: Any, *, before_s: float = OUTAGE_AT_S, outage_s: float = OUTAGE_S,
                     after_s: float = OUTAGE_AFTER_S) -> dict[str, Any]:
    """A live source's link dies for ``outage_s`` and comes back: the delay a listener hears,
    before and after. ffmpeg pushes marker beeps to a ``loa serve`` (``FfmpegBeepSource``),
    taken live on the root zone; a decoding listener (``Probe``) listens from the start. After
    ``before_s`` the ffmpeg process is stopped for ``outage_s`` (its connection open), then
    continued, and the listener goes on for ``after_s``. The server's jitter target and depth
    are read once a second. Figures: the heard delay of every beep as a time series (s from the
    outage's start), its p50 / max before and after, the time from the link coming back to
    the first beep heard within ``OUTAGE_BAND_MS`` of the largest delay heard before, how many
    beeps after it came back were not, and the server's jitter counters. Raises RuntimeError
    if the source does not go live."""
    token = "bench"
    # the default zone tree; the embedded broker on a port of its own (another server may
    # hold the default one)
    server = LocalLoa(token=token, source_password=token, demo=False,
                      config_toml=f'[mqtt]\nlisten = "127.0.0.1:{free_port()}"\n')
    source = FfmpegBeepSource(f"icecast://source:{token}@127.0.0.1:{server.port}/live/studio")
    headers = {"Authorization": f"Bearer {token}"}
    samples: list[dict[str, Any]] = []
    errors: list[str] = []
    marks: dict[str, int] = {}
    counters: dict[str, int] = {}
    try:
        await server.start()
        await source.start()
        async with aiohttp.ClientSession(headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=30)) as http:
            await _source_connected(http, server.url, "outage")
            status, body = await _call(http, "POST", server.url + "/api/v1/zones/huyen/live",
                                       json={"mount": "studio"})
            if status not in (200, 201):
                raise RuntimeError(f"outage: taking the root zone live: {status} {body}")
            probe = Probe(server.url + "/zones/huyen/stream.ogg")
            total_s = before_s + outage_s + after_s
            listening = asyncio.create_task(probe.run(total_s))

            async def sample() -> None:
                """The studio mount's jitter target and depth, once a second."""
                start = time.monotonic()
                for i in range(int(total_s) + 1):
                    await asyncio.sleep(max(0.0, start + i - time.monotonic()))
                    try:
                        _, st = await _call(http, "GET", server.url + "/api/v1/status")
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        errors.append(f"status: {exc!r}")
                        continue
                    m = next((m for m in st["mounts"] if m["mount"] == "studio"), None)
                    if m is not None:
                        samples.append({"at_ns": time.monotonic_ns(),
                                        "target_frames": m["jitter_target_frames"],
                                        "depth_frames": m["jitter_frames"],
                                        "stalled": m["stalled"]})
                    counters.update({k: v for k, v in st["counters"].items()
                                     if k.startswith("jitter_")})

            sampling = asyncio.create_task(sample())
            try:
                await asyncio.sleep(before_s)
                out(f"outage: stopping the source (ffmpeg) for {outage_s:g} s")
                marks["stop_ns"] = time.monotonic_ns()
                source.pause()
                await asyncio.sleep(outage_s)  # the outage itself: wall time is the point
                source.resume()
                marks["resume_ns"] = time.monotonic_ns()
                out(f"outage: the source is back; listening for {after_s:g} s more")
                await listening
            finally:
                await cancel_and_wait(sampling)
                await cancel_and_wait(listening)
    finally:
        await source.stop()
        await server.stop()

    def figures() -> dict[str, Any]:  # beep finding over the whole recording: beside the loop
        stop_ns, resume_ns = marks["stop_ns"], marks["resume_ns"]
        resume_s = (resume_ns - stop_ns) / 1e9
        sent = source.beep_sent_ns(time.monotonic_ns())
        pcm = probe.decoder.pcm()
        heard = heard_delay_series(pcm, probe.first_audio_ns, sent)
        sound_ns = first_sound_ns(pcm, probe.first_audio_ns, resume_ns, BED_LEVEL / 4)
        series = [(round((t - stop_ns) / 1e9, 3), round(d, 1)) for t, d in heard]
        first_s = (probe.first_audio_ns - stop_ns) / 1e9
        before = [d for t, d in series if first_s + OUTAGE_SETTLE_S <= t < 0]
        after = [d for t, d in series if t >= resume_s]
        limit_ms = max(before) + OUTAGE_BAND_MS if before else None
        back_s = back_to_target(series, resume_s, limit_ms) if limit_ms is not None else None
        return {
            "outage_s": round(resume_s, 3),
            "before_s": before_s, "after_s": after_s,
            "beeps_before": len(before), "beeps_after": len(after),
            "delay_before_ms": percentiles(before, (50,)),
            "delay_after_ms": percentiles(after, (50,)),
            "back_within_ms": limit_ms,
            "back_to_target_s": round(back_s, 3) if back_s is not None else None,
            "beeps_after_outside": sum(1 for d in after if limit_ms is None or d > limit_ms),
            "first_heard_after_s": next((round(t - resume_s, 3) for t, _ in series
                                         if t >= resume_s), None),
            "sound_back_s": round((sound_ns - resume_ns) / 1e9, 3) if sound_ns else None,
            "series": series,  # (s from the outage's start, heard delay ms)
            "jitter": [{"t_s": round((s["at_ns"] - stop_ns) / 1e9, 1),
                        **{k: v for k, v in s.items() if k != "at_ns"}} for s in samples],
            "counters": counters,
            "progress_reports": source.reports,
            "errors": errors,
        }

    return await asyncio.to_thread(figures)


def format_outage(o: dict[str, Any]) -> list[str]:
    """The outage part as text: the summary, then the heard delay second by second."""
    b, a = o["delay_before_ms"], o["delay_after_ms"]
    back = o["back_to_target_s"]
    lines = [f"Source outage ({o['outage_s']:g} s, ffmpeg stopped with its connection open): "
             f"heard delay before p50 {b['p50']} ms, max {b['max']} ms ({o['beeps_before']} "
             f"beeps); after p50 {a['p50']} ms, max {a['max']} ms ({o['beeps_after']} beeps)",
             f"- back within {o['back_within_ms']} ms (the largest delay before, plus "
             f"{OUTAGE_BAND_MS:g} ms) "
             + (f"{back:g} s after the source came back" if back is not None else "never")
             + f" (the first beep heard after it came back: {o['first_heard_after_s']} s); "
             f"beeps after it came back outside that: {o['beeps_after_outside']}",
             f"- the source heard again (its hum) {o['sound_back_s']} s after it came back",
             "- jitter counters: " + ", ".join(f"{k} {v}" for k, v in o["counters"].items()),
             "", "| t (s from the outage's start) | heard delay (ms) | jitter target / depth "
             "(frames) |", "|---|---|---|"]
    jitter = o["jitter"]
    for t, d in o["series"]:
        j = min(jitter, key=lambda s: abs(s["t_s"] - t)) if jitter else None
        lines.append(f"| {t:.1f} | {d:.0f} | "
                     + (f"{j['target_frames']} / {j['depth_frames']}" if j else "–") + " |")
    if o["errors"]:
        lines.append("- errors: " + "; ".join(o["errors"]))
    return lines


BENCH_PARTS = ("fanout", "idle", "transcode", "switching", "alerts", "outage", "webrtc")


async def bench(counts: list[int], seconds: float, procs: int, skip_icecast: bool,
                out: Any, only: set[str] | None = None) -> dict[str, Any]:
    """Every part of the bench in turn, or only those in ``only`` (``BENCH_PARTS``)."""
    parts = set(BENCH_PARTS) if not only else only
    results: dict[str, Any] = {"machine": {"cores": os.cpu_count()}}
    if "fanout" in parts:
        results["fanout"] = []
        for n in counts:
            for kind in (list(LOA_BURSTS_MS) if skip_icecast else FANOUT_KINDS):
                out(f"fan-out: {SERVER_NAMES[kind]}, {n} listeners")
                results["fanout"].append(await fanout_run(kind, n, seconds, procs, out))
    if "idle" in parts:
        results["idle"] = {}
        for kind in (["loa"] if skip_icecast else ["icecast", "loa"]):
            out(f"idle: {SERVER_NAMES[kind]}, one live programme and no listener, "
                f"{IDLE_SETTLE_S:g} s to settle, then {IDLE_SECONDS:g} s measured")
            results["idle"][kind] = await idle_run(kind)
    if "transcode" in parts:
        out("transcode: 300 s of 128 kb/s stereo MP3 to 32 kb/s mono Opus, least of 3 runs")
        results["transcode"] = await asyncio.to_thread(transcode_run)
    if "switching" in parts:
        out(f"switching: live takeover and an alert at {max(counts)} endpoints over 20 zones")
        results["switching"] = await switching_run(max(counts), procs, out)
    if "alerts" in parts:
        out(f"alerts: file, text and CAP alerts on 9 of 20 zones beside fan-out at "
            f"{max(counts)} endpoints")
        results["alerts"] = await alerts_run(max(counts), procs, out)
    if "outage" in parts:
        out(f"outage: a live source stopped for {OUTAGE_S:g} s after {OUTAGE_AT_S:g} s on air, "
            "heard by a decoding listener")
        results["outage"] = await outage_run(out)
    if "webrtc" in parts:
        # imported here: aiortc (and Playwright, for its Chromium part) only when asked for
        from loa.loadtest.bench_webrtc import webrtc_run

        out("webrtc: clicks live over WHIP (aiortc, Chromium) and over Icecast (ffmpeg), "
            "heard by a decoding loudspeaker; CPU of a WHIP source and of WHEP viewers")
        results["webrtc"] = await webrtc_run(out)
    results["summary"] = bench_summary(results)
    return results


def format_results(r: dict[str, Any]) -> str:
    lines: list[str] = []
    if r.get("fanout"):
        lines += format_fanout(r["fanout"])
    if r.get("idle"):
        lines += ["", *format_idle(r["idle"])]
    if r.get("transcode"):
        tc = r["transcode"]
        lines += ["", f"Transcode ({tc['audio_s']:.0f} s of audio): Loa {tc['loa_cpu_s']} s CPU, "
                  f"ffmpeg {tc['ffmpeg_cpu_s']} s CPU, ratio {tc['ratio_loa_to_ffmpeg']}"]
    if r.get("switching"):
        sw = r["switching"].get("takeover", {})
        al = r["switching"].get("alert", {})
        lines += ["",
                  f"Switching (live takeover): {sw.get('reached')}/{sw.get('of')} endpoints; "
                  f"after the API returned p50 {sw.get('latency_ms', {}).get('p50')} ms, p99 "
                  f"{sw.get('latency_ms', {}).get('p99')} ms; {sw.get('within_100ms_pct')} % "
                  "within 100 ms",
                  f"Alert (emergency, every zone): {al.get('reached')}/{al.get('of')} endpoints; "
                  f"p50 {al.get('latency_ms', {}).get('p50')} ms, p99 "
                  f"{al.get('latency_ms', {}).get('p99')} ms, max "
                  f"{al.get('latency_ms', {}).get('max')} ms; {al.get('within_100ms_pct')} % "
                  "within 100 ms"]
    if r.get("alerts"):
        lines += ["", *format_alerts(r["alerts"])]
    if r.get("outage"):
        lines += ["", *format_outage(r["outage"])]
    if r.get("webrtc"):
        from loa.loadtest.bench_webrtc import format_webrtc

        lines += ["", *format_webrtc(r["webrtc"])]
    summary = r.get("summary") or bench_summary(r)
    if summary:
        lines += ["", *format_bench_summary(summary)]
    return "\n".join(lines).strip("\n")


def format_fanout(fanout: list[dict[str, Any]]) -> list[str]:
    """The fan-out part as text: a row per server and audience, then the ratios of Loa to
    Icecast at each audience (CPU: to its default; heard delay: to its burst 0)."""
    lines = ["| server | listeners | streaming | CPU ms / listener-s | server CPU | RSS KB / "
             "listener | startup p50 / p99 ms | heard delay p50 / p99 ms | gaps |",
             "|---|---|---|---|---|---|---|---|---|"]
    for f in fanout:
        lines.append(
            f"| {SERVER_NAMES.get(f['server'], f['server'])} | {f['listeners']} | "
            f"{f['streaming']} | {f['cpu_ms_per_listener_second']} | {f['server_cpu_pct']} % | "
            f"{f['rss_kb_per_listener']} | {f['startup_ms']['p50']} / {f['startup_ms']['p99']} | "
            f"{f['heard_delay_ms']['p50']} / {f['heard_delay_ms']['p99']} | {f['gaps']} |")
    by = {(f["server"], f["listeners"]): f for f in fanout}
    ratios = []
    for n in sorted({f["listeners"] for f in fanout}):
        loa, ice, ice0 = by.get(("loa", n)), by.get(("icecast", n)), by.get(("icecast-burst0", n))
        loa0 = by.get(("loa-burst0", n))
        if loa is None and loa0 is None:
            continue
        said = []
        ice_cpu = ice and ice["cpu_ms_per_listener_second"]
        cpu = loa and loa["cpu_ms_per_listener_second"]
        if cpu is not None and ice_cpu:
            said.append(f"CPU per listener {cpu / ice_cpu:.2f} (to its default)")
        ice0_p50 = ice0["heard_delay_ms"].get("p50") if ice0 else None
        for name, run in (("", loa), (", both burst 0", loa0)):
            p50 = run["heard_delay_ms"].get("p50") if run else None
            if p50 is not None and ice0_p50:
                said.append(f"heard delay p50 {p50 / ice0_p50:.2f} (to its burst 0{name})")
        if said:
            ratios.append(f"- {n} listeners: Loa / Icecast " + ", ".join(said))
    for f in fanout:
        if (f.get("server_processes") or 1) > 1:
            main = f["main_process"]
            ratios.append(f"- {SERVER_NAMES.get(f['server'], f['server'])}, {f['listeners']} "
                          f"listeners: {f['server_processes']} processes, all counted above; "
                          f"its main process alone {main['cpu_ms_per_listener_second']} ms / "
                          f"listener-s, {main['server_cpu_pct']} % CPU, {main['rss_mb']} MB")
    return lines + ([""] + ratios if ratios else [])


def _ms3(d: dict[str, Any] | None) -> str:
    if not d:
        return "–"
    return " / ".join("–" if d.get(k) is None else f"{d[k]:.1f}" for k in ("p50", "p99", "max"))


def _stalls_at(heard: dict[str, Any], shown: int = 8) -> str:
    when = list(heard.get("stalls_at_s", {}).items())[:shown]
    return ("; stalls heard at t = " + ", ".join(f"{t} s ×{n}" for t, n in when)) if when else ""


def format_alerts(a: dict[str, Any]) -> list[str]:
    u = a["untouched"]
    srv = a.get("server") or {}
    lines = [
        f"Alerts beside fan-out: {a['endpoints']} endpoints over {a['villages']} villages, live "
        f"on the root; alerts at t={a['alert_at_s']:g}s on {a['zones_per_kind']} villages each",
        f"- untouched zones ({u['zones']} zones, {u['reporting']}/{u['endpoints']} endpoints): "
        f"{u['verdict']}; stalls {u['stalls']} in {u['endpoints_with_stalls']} endpoint(s); "
        f"longest silence p50 / p99 / max {_ms3(u['longest_silence_ms'])} ms; delivered min "
        f"{u['delivered_pct']['min']} %; gaps {u['gaps']}" + _stalls_at(u),
    ]
    for when, label in (("before", "10 s before the alerts"),
                        ("after", f"{a['lag_read_after_s']:g} s after")):
        lag = a["loop_lag_ms"].get(when)
        lines.append(f"- loop lag p50 / p99 / max, {label}: {_ms3(lag)} ms"
                     + (f" (clock resyncs so far: {a['clock_resyncs'][when]})"
                        if when in a["clock_resyncs"] else ""))
    lines += ["", "| alert | answered | tone reached | tone-first p50 / p99 / max ms | "
              "message reached | message-first p50 / p99 / max ms | tone at the endpoints "
              "p50 / p99 / max ms |", "|---|---|---|---|---|---|---|"]
    for kind in ALERT_KINDS:
        k = a["alerts"].get(kind)
        if k is None:
            lines.append(f"| {kind} | – | | | | | |")
            continue
        lines.append(f"| {kind} | {k['answered_ms']:.1f} ms | {k['tone_reached']}/{k['targeted']}"
                     f" | {_ms3(k['tone_first_ms'])} | {k['message_reached']}/{k['targeted']} | "
                     f"{_ms3(k['message_first_ms'])} | {_ms3(k['tone_arrived_ms'])} |")
    lines.append("(tone-first, message-first: the server's ms from the API call's arrival to the "
                 "first packet written to each endpoint's socket; tone at the endpoints: from the "
                 "call being sent to the first alert packet arriving at each simulated endpoint)")
    if srv:
        lines.append(f"- server CPU {srv.get('cpu_pct')} % of one core, RSS {srv.get('rss_mb')} "
                     f"MB; generator CPU {a['generator_cpu_pct']} %; the whole machine "
                     f"{a.get('machine_cpu_pct')} % of {os.cpu_count()} cores")
    if a["errors"]:
        lines.append("- errors: " + "; ".join(a["errors"]))
    return lines


def bench_main(counts: list[int], seconds: float, procs: int, skip_icecast: bool,
               json_path: str | None, only: set[str] | None = None) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    started = time.monotonic()
    try:
        results = asyncio.run(bench(counts, seconds, procs, skip_icecast, print, only))
    except (RuntimeError, ValueError) as exc:
        print(f"loa bench: {exc}", file=sys.stderr)
        return 1
    results["wall_s"] = round(time.monotonic() - started, 1)
    print()
    print(format_results(results))
    print(f"\n(bench took {results['wall_s']:.0f} s)")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2)
    return 0


