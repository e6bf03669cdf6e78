"""A worker process of the load tester: runs its share of light endpoints.

It talks to the runner over a multiprocessing pipe: progress once a second, commands in
(fault injection, stop), one result at the end. Time is CLOCK_MONOTONIC, which every process on
the machine shares, so the runner's trigger times compare directly with arrival times here.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from loa.loadtest.client import LATENCY_BINS, LightEndpoint, Protocol

PROGRESS_EVERY_S = 1.0


@dataclass(frozen=True)
class WorkerSpec:
    endpoints: list[tuple[str, str, float]]  # (url, protocol, start offset s from start_ns)
    start_ns: int  # monotonic time the ramp starts
    seconds: float  # hard limit for the whole run, from start_ns
    retry_s: float = 1.0
    seed: int = 0


def worker_main(conn: Connection, spec: WorkerSpec) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_Worker(conn, spec).run())


class _Worker:
    def __init__(self, conn: Connection, spec: WorkerSpec) -> None:
        self.conn = conn
        self.spec = spec
        self.hist = np.zeros(LATENCY_BINS, dtype=np.int64)
        self.endpoints = [LightEndpoint(url, Protocol(proto), self.hist, spec.retry_s)
                          for url, proto, _ in spec.endpoints]
        self.stop = asyncio.Event()
        self.rng = random.Random(spec.seed)

    async def run(self) -> None:
        commands = asyncio.create_task(self._commands())
        tasks = [asyncio.create_task(self._start(ep, offset))
                 for ep, (_, _, offset) in zip(self.endpoints, self.spec.endpoints, strict=True)]
        deadline_s = (self.spec.start_ns - time.monotonic_ns()) / 1e9 + self.spec.seconds
        progress = asyncio.create_task(self._progress())
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=max(deadline_s, 0))
        except TimeoutError:
            pass
        self.stop.set()
        end_ns = time.monotonic_ns()  # the end of the run: silence up to here counts
        await asyncio.gather(*tasks)
        progress.cancel()
        self.conn.send({"type": "result", **self._result(end_ns)})
        commands.cancel()  # its thread ends when the runner closes the pipe

    async def _start(self, ep: LightEndpoint, offset_s: float) -> None:
        delay = (self.spec.start_ns - time.monotonic_ns()) / 1e9 + offset_s
        if delay > 0:
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=delay)
                return
            except TimeoutError:
                pass
        await ep.run(self.stop)

    async def _commands(self) -> None:
        """Commands from the runner, read on a thread (the pipe stays blocking)."""
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            try:
                msg = await loop.run_in_executor(None, self.conn.recv)
            except (EOFError, OSError):
                self.stop.set()
                return
            self._command(msg)

    def _command(self, msg: dict[str, Any]) -> None:
        cmd = msg.get("cmd")
        if cmd == "stop":
            self.stop.set()
            return
        chosen = [ep for ep in self.endpoints if self.rng.random() < float(msg["fraction"])]
        if cmd == "drop":
            for ep in chosen:
                ep.drop(reconnect_now=bool(msg.get("now", True)))
        elif cmd == "stall":
            for ep in chosen:
                ep.stall(float(msg["seconds"]))
        self.conn.send({"type": "affected", "cmd": cmd, "count": len(chosen),
                        "indices": [self.endpoints.index(ep) for ep in chosen]})

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)  # reporting cadence, not synchronisation
            eps = self.endpoints
            self.conn.send({
                "type": "progress",
                "connected": sum(1 for e in eps if e.transport is not None),
                "streaming": sum(1 for e in eps if e.stats.packets and e.transport is not None),
                "packets": sum(e.stats.packets for e in eps),
                "gaps": sum(e.stats.gaps for e in eps),
                "stalls": sum(e.timeline.stalls for e in eps),
                "reconnects": sum(e.stats.reconnects for e in eps),
                "cpu_s": time.process_time(),
            })

    def _result(self, end_ns: int) -> dict[str, Any]:
        nz = np.nonzero(self.hist)[0]
        return {
            "cpu_s": time.process_time(),
            "histogram": {int(i): int(self.hist[i]) for i in nz},
            "endpoints": [{**asdict(e.stats), "timeline": e.timeline.summary(end_ns).as_dict()}
                          for e in self.endpoints],
        }
