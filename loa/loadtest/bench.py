"""``loa bench``: Loa side by side with what a station would otherwise use, in one run.

- Fan-out against Icecast 2 (Debian's package, started here on loopback with its default
  burst and queue): both fed the same Ogg/Opus source, both listened to by the same harness at
  100, 500 and 1,000 listeners: CPU and RSS per listener, startup delay, and the delay a
  listener hears (marker beeps found again by decoding probe listeners).
- Transcode against the ffmpeg CLI: CPU to turn 128 kb/s stereo MP3 into 32 kb/s mono Opus.
- Switching at 1,000 endpoints: live takeover, from the API call returning to the first
  packet of the live programme on every endpoint.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from loa.codecs.decode import ByteFeed, ParsedStreamDecoder
from loa.codecs.encoder import create_encoder
from loa.codecs.ogg import OggReader
from loa.loadtest.bench_source import BenchSource, playout_delays_ms
from loa.loadtest.endpoint import OpusDecoder
from loa.loadtest.fleet import Fleet
from loa.loadtest.report import percentiles
from loa.loadtest.runner import LoadSpec, LoadTest
from loa.loadtest.target import LocalLoa, free_port, stop_process

ICECAST_CONFIG = """<icecast>
  <location>loa bench</location><admin>bench@localhost</admin>
  <limits>
    <clients>5000</clients><sources>4</sources>
    <queue-size>524288</queue-size><client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout><source-timeout>10</source-timeout>
    <burst-on-connect>1</burst-on-connect><burst-size>{burst}</burst-size>
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
SOURCE_WARMUP_S = 15.0  # fills Icecast's burst buffer, as on a station that has been on air
PROBES = 5


class IcecastServer:
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
                                          burst=burst, changeowner=owner))
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
        shutil.rmtree(self._dir, ignore_errors=True)


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


async def fanout_run(kind: str, listeners: int, seconds: float, procs: int,
                     out: Any, warmup_s: float = SOURCE_WARMUP_S) -> dict[str, Any]:
    """One server, one source, ``listeners`` Ogg listeners plus probes."""
    if kind == "icecast":
        server: Any = IcecastServer()
        await server.start()
        source_path, listen_path = "/bench.ogg", "/bench.ogg"
        password = server.password
    else:
        server = LocalLoa(token="bench", source_password="bench", demo=False)
        await server.start()
        source_path, listen_path = "/live/studio", "/zones/huyen/stream.ogg"
        password = "bench"
    source = BenchSource("127.0.0.1", server.port, source_path, password)
    try:
        await source.start()
        if kind == "loa":
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{server.url}/api/v1/zones/huyen/live",
                                     json={"mount": "studio"},
                                     headers={"Authorization": "Bearer bench"}) as resp:
                    assert resp.status in (200, 201), await resp.text()
        await asyncio.sleep(warmup_s)  # the station has been on air a while
        url = server.url + listen_path
        ramp = min(5.0, seconds / 4)
        fleet = Fleet([(url, "ogg", ramp * i / listeners) for i in range(listeners)], procs,
                      seconds, out, server.pid, measure_from_s=ramp + 1)
        fleet.start()
        probes = [Probe(url) for _ in range(PROBES)]
        probe_tasks = [asyncio.create_task(p.run(seconds - ramp)) for p in probes]
        result = await fleet.run()
        await asyncio.gather(*probe_tasks, return_exceptions=True)
    finally:
        await source.stop()
        await server.stop()
    delays = [d for p in probes if p.first_audio_ns
              for d in playout_delays_ms(p.decoder.pcm(), p.first_audio_ns, source.beep_sent_ns)]
    eps = [e for e in result.endpoints if e]
    startup = [e["startup_ns"][0] / 1e6 for e in eps if e["startup_ns"]]
    cpu_ms = (1000 * result.server_cpu_s / result.server_wall_s / listeners
              if result.server_cpu_s is not None and result.server_wall_s else None)
    rss_kb = ((result.server_rss_kb - result.server_rss_before_kb) / listeners
              if result.server_rss_kb and result.server_rss_before_kb else None)
    return {
        "server": kind,
        "listeners": listeners,
        "streaming": sum(1 for e in eps if e["packets"]),
        "cpu_ms_per_listener_second": round(cpu_ms, 4) if cpu_ms is not None else None,
        "server_cpu_pct": round(100 * result.server_cpu_s / result.server_wall_s, 1)
        if result.server_cpu_s is not None else None,
        "rss_kb_per_listener": round(rss_kb, 1) if rss_kb is not None else None,
        "rss_mb": round((result.server_rss_kb or 0) / 1024, 1),
        "startup_ms": percentiles(startup),
        "heard_delay_ms": percentiles(delays),
        "beeps_heard": len(delays),
        "gaps": sum(e["gaps"] for e in eps),
        "generator_cpu_pct": round(100 * result.generator_cpu_s / seconds, 1),
        "source_error": source.error,
    }


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
        data = open(mp3, "rb").read()
        ffmpeg_runs, loa_runs = [], []
        for _ in range(rounds):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-threads", "1", "-i", mp3,
                            "-ac", "1", "-ar", "48000", "-c:a", "libopus", "-b:a", "32k",
                            "-frame_duration", "20", "-f", "ogg", os.devnull], check=True)
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
                encoder.encode(samples, frames * 960, 0)
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


async def bench(counts: list[int], seconds: float, procs: int, skip_icecast: bool,
                out: Any) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": {"cores": os.cpu_count()}, "fanout": []}
    for n in counts:
        for kind in (["loa"] if skip_icecast else ["icecast", "loa"]):
            out(f"fan-out: {kind}, {n} listeners")
            results["fanout"].append(await fanout_run(kind, n, seconds, procs, out))
    out("transcode: 300 s of 128 kb/s stereo MP3 to 32 kb/s mono Opus, least of 3 runs")
    results["transcode"] = transcode_run()
    out(f"switching: live takeover and an alert at {max(counts)} endpoints over 20 zones")
    results["switching"] = await switching_run(max(counts), procs, out)
    return results


def format_results(r: dict[str, Any]) -> str:
    lines = ["| server | listeners | streaming | CPU ms / listener-s | server CPU | RSS KB / "
             "listener | startup p50 / p99 ms | heard delay p50 / p99 ms | gaps |",
             "|---|---|---|---|---|---|---|---|---|"]
    for f in r["fanout"]:
        lines.append(
            f"| {f['server']} | {f['listeners']} | {f['streaming']} | "
            f"{f['cpu_ms_per_listener_second']} | {f['server_cpu_pct']} % | "
            f"{f['rss_kb_per_listener']} | {f['startup_ms']['p50']} / {f['startup_ms']['p99']} | "
            f"{f['heard_delay_ms']['p50']} / {f['heard_delay_ms']['p99']} | {f['gaps']} |")
    by = {(f["server"], f["listeners"]): f for f in r["fanout"]}
    ratios = []
    for (kind, n), f in sorted(by.items()):
        ice = by.get(("icecast", n))
        if kind == "loa" and ice and ice["cpu_ms_per_listener_second"]:
            ratios.append(f"- {n} listeners: Loa / Icecast CPU per listener = "
                          f"{f['cpu_ms_per_listener_second'] / ice['cpu_ms_per_listener_second']:.2f}")
    tc = r["transcode"]
    sw = r["switching"].get("takeover", {})
    al = r["switching"].get("alert", {})
    lines += ["", *ratios, "",
              f"Transcode ({tc['audio_s']:.0f} s of audio): Loa {tc['loa_cpu_s']} s CPU, "
              f"ffmpeg {tc['ffmpeg_cpu_s']} s CPU, ratio {tc['ratio_loa_to_ffmpeg']}",
              f"Switching (live takeover): {sw.get('reached')}/{sw.get('of')} endpoints; after the "
              f"API returned p50 {sw.get('latency_ms', {}).get('p50')} ms, p99 "
              f"{sw.get('latency_ms', {}).get('p99')} ms; {sw.get('within_100ms_pct')} % within "
              "100 ms",
              f"Alert (emergency, every zone): {al.get('reached')}/{al.get('of')} endpoints; p50 "
              f"{al.get('latency_ms', {}).get('p50')} ms, p99 {al.get('latency_ms', {}).get('p99')}"
              f" ms, max {al.get('latency_ms', {}).get('max')} ms; {al.get('within_100ms_pct')} % "
              "within 100 ms"]
    return "\n".join(lines)


def bench_main(counts: list[int], seconds: float, procs: int, skip_icecast: bool,
               json_path: str | None) -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    started = time.monotonic()
    try:
        results = asyncio.run(bench(counts, seconds, procs, skip_icecast, print))
    except RuntimeError as exc:
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


