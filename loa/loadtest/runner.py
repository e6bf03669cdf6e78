"""``loa loadtest``: a fleet of simulated endpoints against a server, with faults, measured.

The runner starts the server (or takes a URL), spreads the endpoints over worker processes so
the generator is not the bottleneck, ramps them up, plays the scenario timeline (live takeover,
source cut, reconnect storm, slow consumers), shows progress each second, and writes the
report. Every loop here is bounded in count and in time, and all traffic stays on loopback
unless you point it elsewhere yourself.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import numpy as np

from loa.core.percentiles import histogram_percentiles, percentiles
from loa.loadtest.client import LATENCY_BIN_NS
from loa.loadtest.fleet import WORKER_BOOT_S, Fleet, FleetResult
from loa.loadtest.report import summary_table
from loa.loadtest.target import FfmpegSource, LocalLoa, zone_tree_toml
from loa.loadtest.timeline import EXIT_DEAD_AIR, Verdict, aggregate

LIVE_PRIORITY = 80
ALERT_PRIORITY = 100
MAX_ENDPOINTS = 20_000
MAX_SECONDS = 3600
WORST_ENDPOINTS = 5  # listed by name in the report

# A step of the scenario given by the caller: (seconds from the start, name, what to do).
Action = tuple[float, str, Callable[[], Awaitable[object]]]


@dataclass
class LoadSpec:
    url: str | None = None  # None: start a server of our own on loopback
    token: str = "loadtest"
    source_password: str = "loadtest"
    server_pid: int | None = None  # to report the CPU and RSS of a server given by URL
    endpoints: int = 1000
    protocol: str = "ws"  # ws | ogg | mp3
    procs: int = field(default_factory=lambda: max(1, (os.cpu_count() or 2)))
    ramp_s: float = 5.0
    seconds: float = 30.0
    zones: list[str] | None = None  # default: every leaf zone
    village_zones: int = 0  # >0: our own server gets a district of this many villages
    takeover_at: float | None = None  # s from the start: take the root zone live
    takeover_hold_s: float = 5.0
    cut_source_at: float | None = None  # s: kill the live source
    alert_at: float | None = None  # s: an emergency alert (tone) on every zone
    storm_at: float | None = None  # s: drop a fraction, all reconnect at once
    storm_fraction: float = 0.3
    slow_at: float | None = None  # s: a fraction stop reading
    slow_fraction: float = 0.05
    slow_seconds: float = 10.0
    json_path: str | None = None
    html_path: str | None = None

    def validate(self) -> None:
        if not 1 <= self.endpoints <= MAX_ENDPOINTS:
            raise ValueError(f"endpoints must be 1 to {MAX_ENDPOINTS}")
        if not 1 <= self.seconds <= MAX_SECONDS:
            raise ValueError(f"seconds must be 1 to {MAX_SECONDS}")
        if self.protocol not in ("ws", "ogg", "mp3"):
            raise ValueError("protocol must be ws, ogg or mp3")
        if not 0 <= self.ramp_s < self.seconds:
            raise ValueError("the ramp must end before the run does")
        for name in ("storm_fraction", "slow_fraction"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1]")


class LoadTest:
    """One load test run. ``actions`` adds steps of the caller's own to the scenario timeline
    (a test that holds the server in-process can freeze its clock, say)."""

    def __init__(self, spec: LoadSpec, out: Callable[[str], None] = print,
                 actions: Sequence[Action] = ()) -> None:
        spec.validate()
        self.spec = spec
        self.out = out
        self.actions = list(actions)
        self.server: LocalLoa | None = None
        self.source: FfmpegSource | None = None
        self.url = spec.url or ""
        self.server_pid = spec.server_pid
        self.events: list[dict[str, Any]] = []
        self.affected: dict[str, list[int]] = {}
        self.status_ms: list[tuple[float, float]] = []  # (t, API response time) during faults
        self._watchers: list[asyncio.Task[None]] = []
        self._start_ns = 0

    # orchestration

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        try:
            if spec.url is None:
                self.server = LocalLoa(
                    spec.token, spec.source_password,
                    config_toml=zone_tree_toml(spec.village_zones) if spec.village_zones else None)
                await self.server.start()
                self.url = self.server.url
                self.server_pid = self.server.pid
                self.out(f"loa loadtest: started a server at {self.url}")
            zones = spec.zones or await self._leaf_zones()
            needs_live = spec.takeover_at is not None or spec.cut_source_at is not None
            if needs_live:
                await self._start_source()
            if spec.cut_source_at is not None and spec.takeover_at is None:
                await self._api("POST", "/api/v1/zones/" + (await self._root()) + "/live",
                                {"mount": "studio"})
            self.fleet = Fleet(self._endpoints(zones), spec.procs, spec.seconds, self.out,
                               self.server_pid, measure_from_s=spec.ramp_s)
            self.fleet.start()
            self._start_ns = self.fleet.start_ns
            scenario = asyncio.create_task(self._scenario())
            try:
                result = await self.fleet.run()
            finally:
                for task in (scenario, *self._watchers):
                    task.cancel()
                await asyncio.gather(scenario, *self._watchers, return_exceptions=True)
            return self._report(zones, result)
        finally:
            if self.source is not None:
                await self.source.stop()
            if self.server is not None:
                await self.server.stop()

    def _endpoints(self, zones: list[str]) -> list[tuple[str, str, float]]:
        spec = self.spec
        host = self.url.split("://", 1)[1].rstrip("/")
        out = []
        for i in range(spec.endpoints):
            zone = zones[i % len(zones)]
            url = (f"ws://{host}/zones/{zone}/ws" if spec.protocol == "ws"
                   else f"http://{host}/zones/{zone}/stream.{spec.protocol}")
            out.append((url, spec.protocol, spec.ramp_s * i / spec.endpoints))
        return out

    # scenarios

    async def _at(self, t_s: float) -> None:
        delay = (self._start_ns + int(t_s * 1e9) - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)  # waiting for a point on the scenario timeline

    async def _scenario(self) -> None:
        spec = self.spec
        actions: list[tuple[float, str]] = []
        if spec.takeover_at is not None:
            actions += [(spec.takeover_at, "takeover"),
                        (spec.takeover_at + spec.takeover_hold_s, "release")]
        if spec.cut_source_at is not None:
            actions.append((spec.cut_source_at, "cut_source"))
        if spec.alert_at is not None:
            actions.append((spec.alert_at, "alert"))
        if spec.storm_at is not None:
            actions.append((spec.storm_at, "storm"))
        if spec.slow_at is not None:
            actions.append((spec.slow_at, "slow"))
        custom = {name: act for _, name, act in self.actions}
        actions += [(at, name) for at, name, _ in self.actions]
        root = await self._root() if actions else ""
        for at, name in sorted(actions):
            await self._at(at)
            t0 = time.monotonic_ns()
            if name == "takeover":
                await self._api("POST", f"/api/v1/zones/{root}/live", {"mount": "studio"})
            elif name == "release":
                await self._api("DELETE", f"/api/v1/zones/{root}/live", None)
            elif name == "cut_source" and self.source is not None:
                await self.source.stop()
            elif name == "alert":
                await self._api("POST", "/api/v1/alerts", {
                    "class": "emergency", "all": True, "content": {"kind": "tone"}})
            elif name == "storm":
                self.fleet.command({"cmd": "drop", "fraction": spec.storm_fraction, "now": True})
            elif name == "slow":
                self.fleet.command({"cmd": "stall", "fraction": spec.slow_fraction,
                                    "seconds": spec.slow_seconds})
            elif name in custom:
                await custom[name]()
            t1 = time.monotonic_ns()
            self.events.append({"name": name, "sent_ns": t0, "done_ns": t1})
            self.out(f"  -> {name} at t={(t0 - self._start_ns) / 1e9:.1f}s "
                     f"({(t1 - t0) / 1e6:.1f} ms)")
            if name in ("storm", "slow"):  # owned: cancelled with the scenario
                self._watchers.append(asyncio.create_task(self._watch_api(5.0)))

    async def _watch_api(self, seconds: float) -> None:
        """Is the server still answering while the fault plays out?"""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.monotonic()
            try:
                await self._api("GET", "/api/v1/status", None)
                self.status_ms.append((t0, (time.monotonic() - t0) * 1000))
            except (TimeoutError, aiohttp.ClientError):
                self.status_ms.append((t0, float("inf")))
            await asyncio.sleep(0.2)  # polling cadence

    # server API

    async def _api(self, method: str, path: str, body: Any) -> Any:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.request(method, self.url + path, json=body,
                                    headers={"Authorization": f"Bearer {self.spec.token}"}
                                    ) as resp:
                data = await resp.json()
                if resp.status >= 400:
                    raise RuntimeError(f"{method} {path}: {resp.status} {data}")
                return data

    async def _leaf_zones(self) -> list[str]:
        zones = (await self._api("GET", "/api/v1/zones", None))["zones"]
        return [z["id"] for z in zones if not z["children"]]

    async def _root(self) -> str:
        zones = (await self._api("GET", "/api/v1/zones", None))["zones"]
        return str(next(z["id"] for z in zones if not z["parent"]))

    async def _start_source(self) -> None:
        host = self.url.split("://", 1)[1].rstrip("/")
        self.source = FfmpegSource(
            f"icecast://source:{self.spec.source_password}@{host}/live/studio")
        await self.source.start()
        for _ in range(100):  # bounded: 10 s
            status = await self._api("GET", "/api/v1/status", None)
            if any(m["mount"] == "studio" and m["connected"] and m["frames_in"] > 5
                   for m in status["mounts"]):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("the live source did not connect")

    # the report

    def _report(self, zones: list[str], result: FleetResult) -> dict[str, Any]:
        spec = self.spec
        hist, eps = result.histogram, result.endpoints
        self.affected = result.affected
        got = [e for e in eps if e]
        packets = sum(e["packets"] for e in got)
        gaps = sum(e["gaps"] for e in got)
        startup = [s / 1e6 for e in got for s in e["startup_ns"][:1]]
        errors: dict[str, int] = {}
        for e in got:
            for msg in e["errors"]:
                errors[msg] = errors.get(msg, 0) + 1
        duration = spec.seconds
        report: dict[str, Any] = {
            "spec": {k: v for k, v in asdict(spec).items() if k != "token"},
            "url": self.url,
            "zones": zones,
            "endpoints": spec.endpoints,
            "protocol": spec.protocol,
            "procs": spec.procs,
            "duration_s": duration,
            "endpoints_reporting": len(got),
            "packets": packets,
            "gaps": gaps,
            "loss_pct": round(100 * gaps / max(packets + gaps, 1), 4),
            "duplicates": sum(e["duplicates"] for e in got),
            "reconnects": sum(e["reconnects"] for e in got),
            "latency_ms": histogram_percentiles(hist, LATENCY_BIN_NS / 1e6)
            if spec.protocol == "ws" else
            {"p50": None, "p90": None, "p99": None, "max": None, "samples": 0},
            "startup_ms": percentiles(startup),
            "errors": errors,
            "generator_cpu_pct": round(100 * result.generator_cpu_s / (duration + WORKER_BOOT_S),
                                       1),
            "timeline": result.timeline,
            "latency_histogram": {str(int(i)): int(hist[i]) for i in np.nonzero(hist)[0]},
            "startup_samples_ms": startup,
            "scenarios": self._scenario_results(eps),
            **self._timeline_results(eps),
        }
        if result.server_cpu_s is not None and result.server_wall_s > 0:
            cpu_pct = 100 * result.server_cpu_s / result.server_wall_s
            report["server"] = {
                "cpu_pct": round(cpu_pct, 1),
                "cpu_ms_per_endpoint_second": round(10 * cpu_pct / spec.endpoints, 4),
                "rss_mb": round((result.server_rss_kb or 0) / 1024, 1),
            }
        return report

    def _timeline_results(self, eps: list[dict[str, Any]]) -> dict[str, Any]:
        """Stalls, longest silence and the share of real time delivered, and the verdict.

        Endpoints the test itself cut or stalled on purpose (storm, slow) count in the figures
        but not in the verdict: their dead air is the fault injected, not the server's.
        """
        faulted = set(self.affected.get("drop", [])) | set(self.affected.get("stall", []))
        rows = [(i, e["timeline"]) for i, e in enumerate(eps) if e.get("timeline")]
        out = aggregate((t for _, t in rows), (i not in faulted for i, _ in rows))
        missing = len(eps) - len(rows)
        if missing:
            out["verdict"] = Verdict.FAILURE.value
            out["verdict_reasons"].append(f"{missing} endpoint(s) sent no report")
        worst = sorted(rows, key=lambda r: (r[1]["stalls"], r[1]["longest_silence_ms"]),
                       reverse=True)[:WORST_ENDPOINTS]
        out["worst_endpoints"] = [{
            "index": i, "url": self.fleet.endpoints[i][0], "judged": i not in faulted,
            "stalls": t["stalls"], "longest_silence_ms": t["longest_silence_ms"],
            "delivered_pct": t["delivered_pct"],
            "stalls_at_s": [round((ns - self._start_ns) / 1e9, 2) for ns in t["stalls_at_ns"]],
        } for i, t in worst]
        out["longest_silence_samples_ms"] = [t["longest_silence_ms"] for _, t in rows]
        return out

    def _scenario_results(self, eps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for ev in self.events:
            name, t_trig = ev["name"], ev["done_ns"]
            if name in ("takeover", "release", "cut_source", "alert"):
                if self.spec.protocol != "ws":
                    continue  # only the native protocol says what programme a packet is
                def reached(prio: int, name: str = name) -> bool:
                    if name == "takeover":
                        return prio == LIVE_PRIORITY
                    if name == "alert":
                        return prio == ALERT_PRIORITY
                    return prio < LIVE_PRIORITY
                delays = []
                for e in eps:
                    first = next((t for t, _, prio in e.get("switches", [])
                                  if t >= ev["sent_ns"] and reached(prio)), None)
                    if first is not None:
                        delays.append(max(first - t_trig, 0) / 1e6)
                n = len([e for e in eps if e])
                within = sum(1 for d in delays if d <= 100)
                pct = percentiles(delays)
                out.append({
                    "name": name, "at_s": round((ev["sent_ns"] - self._start_ns) / 1e9, 2),
                    "reached": len(delays), "of": n, "latency_ms": pct,
                    "within_100ms_pct": round(100 * within / max(n, 1), 2),
                    "summary": f"{len(delays)}/{n} reached; after the API returned "
                               f"p50 {pct['p50']} ms, p99 {pct['p99']} ms, max {pct['max']} ms; "
                               f"{100 * within / max(n, 1):.1f} % within 100 ms",
                })
            elif name == "storm":
                idx = self.affected.get("drop", [])
                back = []
                for i in idx:
                    e = eps[i]
                    t = next((t for t in e.get("first_audio_after_ns", []) if t >= ev["sent_ns"]),
                             None)
                    if t is not None:
                        back.append((t - ev["sent_ns"]) / 1e9)
                api = [ms for t0, ms in self.status_ms]
                all_back = max(back) if len(back) == len(idx) and back else None
                out.append({
                    "name": "storm", "at_s": round((ev["sent_ns"] - self._start_ns) / 1e9, 2),
                    "dropped": len(idx), "back": len(back), "all_back_after_s": all_back,
                    "recovery_s": percentiles(back),
                    "api_ms_during": percentiles(api),
                    "summary": f"{len(idx)} dropped, {len(back)} streaming again, "
                               "all after "
                               f"{all_back if all_back is None else round(all_back, 2)} s;"
                               f" API p99 {percentiles(api)['p99']} ms meanwhile",
                })
            elif name == "slow":
                stalled = set(self.affected.get("stall", []))
                others_gaps = sum(e.get("gaps", 0) for i, e in enumerate(eps) if i not in stalled)
                out.append({
                    "name": "slow", "at_s": round((ev["sent_ns"] - self._start_ns) / 1e9, 2),
                    "stalled": len(stalled), "gaps_in_others": others_gaps,
                    "summary": f"{len(stalled)} stalled for {self.spec.slow_seconds:g} s; "
                               f"{others_gaps} packets lost by the others",
                })
        return out


def loadtest_main(spec: LoadSpec) -> int:
    from loa.loadtest.report import write_html, write_json

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        report = asyncio.run(LoadTest(spec).run())
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"loa loadtest: {exc}", file=sys.stderr)
        return 1
    print()
    print(summary_table(report))
    if spec.json_path:
        write_json(report, spec.json_path)
        print(f"\n  JSON: {spec.json_path}")
    if spec.html_path:
        write_html(report, spec.html_path)
        print(f"  HTML: {spec.html_path}")
    return EXIT_DEAD_AIR if report["verdict"] != Verdict.PASS.value else 0
