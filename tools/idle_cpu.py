"""A server's idle CPU by thread: a diagnostic beside `loa bench`'s idle row, not part of it.

Starts one server of `loa bench`'s kinds (``loa``, ``icecast``, …) carrying the bench's live
Ogg/Opus source with nobody listening (for Loa, the root zone takes it live), lets it settle,
then reads each thread's CPU time from ``/proc/<pid>/task/*/stat`` before and after
``--seconds`` and prints every thread that used any, as % of one core, with the total. Short
and repeatable, to compare two commits interleaved (a worktree each):

    PYTHONPATH=. .venv/bin/python tools/idle_cpu.py loa --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from loa.loadtest.bench import FANOUT_KINDS, live_server

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def threads_cpu_s(pid: int) -> dict[str, tuple[str, float]]:
    """Thread id -> (its name, CPU seconds so far: user + system), for ``pid``'s threads."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found[tid] = (name, (int(fields[11]) + int(fields[12])) / TICKS_PER_S)
    return found


async def main(kind: str, seconds: float, settle_s: float) -> None:
    async with live_server(kind) as (server, _, _):
        await asyncio.sleep(settle_s)
        before = await asyncio.to_thread(threads_cpu_s, server.pid)
        start = time.monotonic()
        await asyncio.sleep(seconds)
        after = await asyncio.to_thread(threads_cpu_s, server.pid)
        wall_s = time.monotonic() - start
    total = 0.0
    for tid, (name, cpu_s) in sorted(after.items()):
        if tid in before:
            pct = 100 * (cpu_s - before[tid][1]) / wall_s
            total += pct
            if pct > 0:
                print(f"  thread {tid} {name:<16} {pct:5.2f} %")
    print(f"{kind}: {total:.2f} % of one core over {wall_s:.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=FANOUT_KINDS)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before measuring")
    args = parser.parse_args()
    asyncio.run(main(args.kind, args.seconds, args.settle))
