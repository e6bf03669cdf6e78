"""A fleet of light endpoints spread over worker processes, driven and measured as one.

The runner and the benchmark both use it: they hand it (url, protocol, start offset) per
endpoint; it spawns the workers, shows progress once a second (with the server's CPU when it
knows the server's pid), passes fault-injection commands on, and merges what comes back.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loa.loadtest.client import LATENCY_BINS
from loa.loadtest.swarm import WorkerSpec, worker_main
from loa.loadtest.target import ProcSample, sample_proc

WORKER_BOOT_S = 2.0  # spawned workers import numpy, av, aiohttp before the ramp starts
RESULT_TIMEOUT_S = 30.0


@dataclass
class FleetResult:
    histogram: np.ndarray
    endpoints: list[dict[str, Any]]  # per endpoint, in the order given
    generator_cpu_s: float
    timeline: list[dict[str, Any]]
    affected: dict[str, list[int]]  # command -> endpoint indices it hit
    server_cpu_s: float | None = None  # over the steady window
    server_wall_s: float = 0.0
    server_rss_kb: int | None = None
    server_rss_before_kb: int | None = None


@dataclass
class Fleet:
    endpoints: list[tuple[str, str, float]]
    procs: int
    seconds: float
    out: Callable[[str], None] = print
    server_pid: int | None = None
    measure_from_s: float = 0.0  # the server's CPU is measured from here (after the ramp)
    start_ns: int = 0
    _conns: list[Any] = field(default_factory=list)
    _procs: list[Any] = field(default_factory=list)
    _index: list[list[int]] = field(default_factory=list)
    _progress: dict[int, dict[str, Any]] = field(default_factory=dict)
    _results: dict[int, dict[str, Any]] = field(default_factory=dict)
    _affected: dict[str, list[int]] = field(default_factory=dict)
    _timeline: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> None:
        procs = max(1, min(self.procs, len(self.endpoints)))
        per_worker: list[list[tuple[str, str, float]]] = [[] for _ in range(procs)]
        self._index = [[] for _ in range(procs)]
        for i, ep in enumerate(self.endpoints):
            per_worker[i % procs].append(ep)
            self._index[i % procs].append(i)
        ctx = multiprocessing.get_context("spawn")
        self.start_ns = time.monotonic_ns() + int(WORKER_BOOT_S * 1e9)
        for w in range(procs):
            parent, child = ctx.Pipe()
            spec = WorkerSpec(per_worker[w], self.start_ns, self.seconds + 5, seed=w)
            p = ctx.Process(target=worker_main, args=(child, spec), daemon=True)
            p.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(p)

    def elapsed_s(self) -> float:
        return (time.monotonic_ns() - self.start_ns) / 1e9

    def command(self, msg: dict[str, Any]) -> None:
        for conn in self._conns:
            conn.send(msg)

    async def run(self) -> FleetResult:
        """Drive the fleet for ``seconds`` after its start, then collect."""
        # Blocking reads on threads: an event-loop reader (uvloop's at least) makes the pipe
        # non-blocking, and a large pickled result then breaks off half-read.
        readers = [asyncio.create_task(self._read(w, conn)) for w, conn in enumerate(self._conns)]
        srv0: ProcSample | None = None
        t_srv0 = 0.0
        rss_before = sample_proc(self.server_pid) if self.server_pid else None
        end_ns = self.start_ns + int(self.seconds * 1e9)
        last = 0.0
        try:
            while time.monotonic_ns() < end_ns:
                await asyncio.sleep(1.0)  # the progress display's cadence
                t = self.elapsed_s()
                if srv0 is None and t >= self.measure_from_s and self.server_pid:
                    srv0, t_srv0 = sample_proc(self.server_pid), time.monotonic()
                if t >= 0:
                    self._tick_progress(t, t - last)
                last = t
            srv1 = sample_proc(self.server_pid) if self.server_pid else None
            wall = time.monotonic() - t_srv0
            self.command({"cmd": "stop"})
            _, late = await asyncio.wait(readers, timeout=RESULT_TIMEOUT_S)
            if late:
                self.out("fleet: some workers sent no result in time")
        finally:
            for conn in self._conns:
                conn.close()  # the workers' command threads get EOF, and they exit
            for w, p in enumerate(self._procs):
                await asyncio.get_running_loop().run_in_executor(None, p.join, 5)
                if p.is_alive():
                    p.kill()
                elif p.exitcode and not self._results.get(w, {}).get("endpoints"):
                    self.out(f"fleet: worker {w} died (exit code {p.exitcode}) before its result")
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
        return self._merge(srv0, srv1, wall, rss_before)

    async def _read(self, w: int, conn: Any) -> None:
        """Everything worker ``w`` says, until its result (or its end)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                msg = await loop.run_in_executor(None, conn.recv)
            except (EOFError, OSError):
                self._results.setdefault(w, {"cpu_s": 0.0, "histogram": {}, "endpoints": []})
                return
            kind = msg.pop("type")
            if kind == "progress":
                self._progress[w] = msg
            elif kind == "affected":
                self._affected.setdefault(msg["cmd"], []).extend(
                    self._index[w][i] for i in msg["indices"])
            elif kind == "result":
                self._results[w] = msg
                return

    def _tick_progress(self, t: float, dt: float) -> None:
        agg = {k: sum(p.get(k, 0) for p in self._progress.values())
               for k in ("connected", "streaming", "packets", "gaps", "stalls", "reconnects",
                         "cpu_s")}
        prev = self._timeline[-1] if self._timeline else {"packets": 0, "cpu_s": 0.0}
        srv = sample_proc(self.server_pid) if self.server_pid else None
        prev_srv: ProcSample | None = getattr(self, "_prev_srv", None)
        srv_pct = (100 * (srv.cpu_s - prev_srv.cpu_s) / dt if srv and prev_srv and dt > 0
                   else None)
        self._prev_srv = srv
        row = {"t": round(t, 2), **agg,
               "packets_per_s": round((agg["packets"] - prev["packets"]) / dt) if dt else 0,
               "generator_cpu_pct": round(100 * (agg["cpu_s"] - prev["cpu_s"]) / dt, 1)
               if dt else 0,
               "server_cpu_pct": round(srv_pct, 1) if srv_pct is not None else None,
               "server_rss_mb": round(srv.rss_kb / 1024, 1) if srv else None}
        self._timeline.append(row)
        srv_txt = f"  server CPU {row['server_cpu_pct']}%" if srv_pct is not None else ""
        self.out(f"  t={t:5.1f}s  streaming {agg['streaming']:>5}/{len(self.endpoints)}"
                 f"  pkts/s {row['packets_per_s']:>7,}  gaps {agg['gaps']:>5}"
                 f"  stalls {agg['stalls']:>5}"
                 f"  reconnects {agg['reconnects']:>5}  generator CPU "
                 f"{row['generator_cpu_pct']:5.1f}%{srv_txt}")

    def _merge(self, srv0: ProcSample | None, srv1: ProcSample | None, wall: float,
               rss_before: ProcSample | None) -> FleetResult:
        hist = np.zeros(LATENCY_BINS, dtype=np.int64)
        eps: list[dict[str, Any]] = [{} for _ in self.endpoints]
        cpu = 0.0
        for w, res in self._results.items():
            cpu += res["cpu_s"]
            for k, v in res["histogram"].items():
                hist[int(k)] += v
            for i, st in zip(self._index[w], res["endpoints"], strict=True):
                eps[i] = st
        return FleetResult(
            histogram=hist, endpoints=eps, generator_cpu_s=cpu, timeline=self._timeline,
            affected=self._affected,
            server_cpu_s=(srv1.cpu_s - srv0.cpu_s) if srv0 and srv1 else None,
            server_wall_s=wall,
            server_rss_kb=srv1.rss_kb if srv1 else None,
            server_rss_before_kb=rss_before.rss_kb if rss_before else None,
        )
