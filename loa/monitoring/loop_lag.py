"""How late the event loop runs what is due: the server's own measure of "the loop is sacred".

A probe thread hands the loop a callback every ``PROBE_S`` (``call_soon_threadsafe``) and the
callback records how long it waited to run: the time anything that is ready (a socket's data, a
timer's task) waits for the loop. Anything that holds the loop shows up here: a blocking call,
a task that runs step after step without yielding, the GIL held by another thread. A probe
that sleeps on the loop itself would miss some of these (measured 2026-11-30: while the master
clock caught up tick after tick without yielding, such a probe's timer fired 150 ms late yet
reported nothing until then; callbacks queued meanwhile waited 200 ms).
Exported as the ``loa_loop_lag_seconds`` histogram; the alarm ``loop_lag`` is raised when the
worst lag of the last ``RECENT_S`` seconds exceeds ``[alarms] loop_lag_ms``.
"""

from __future__ import annotations

import asyncio
import threading
import time

from loa.core.counters import LatencyWindow

# Every 50 ms: a hold of the loop at least this long always has a probe waiting behind it, so
# the alarm's default (50 ms) misses none; shorter holds are sampled. Each probe wakes the loop
# and a thread: at 40 a second they cost ~0.5 % of a core on an idle server (issue 17).
PROBE_S = 0.05
RECENT_S = 10.0
# Histogram bounds (s): sub-millisecond is healthy, 20 ms is a frame, seconds are an outage.
BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopLag:
    """Cumulative histogram of loop lag (seconds) plus a window of recent samples."""

    def __init__(self, probe_s: float = PROBE_S) -> None:
        self.probe_s = probe_s
        self.bucket_counts = [0] * (len(BUCKETS_S) + 1)  # the last one is +Inf
        self.count = 0
        self.sum_s = 0.0
        self.recent = LatencyWindow(int(RECENT_S / probe_s))

    def observe(self, lag_s: float) -> None:
        lag_s = max(0.0, lag_s)
        for i, bound in enumerate(BUCKETS_S):
            if lag_s <= bound:
                self.bucket_counts[i] += 1
                break
        else:
            self.bucket_counts[-1] += 1
        self.count += 1
        self.sum_s += lag_s
        self.recent.add(int(lag_s * 1e9))

    def recent_ms(self) -> dict[str, float | None]:
        """p50, p99 and max of the last ``RECENT_S`` seconds, in ms."""
        p50, p99, worst = self.recent.percentiles_ms(50, 99, 100)
        return {"p50": p50, "p99": p99, "max": worst}

    def _arrived(self, sent_ns: int) -> None:
        self.observe((time.monotonic_ns() - sent_ns) / 1e9)

    async def run(self) -> None:
        """Probe the running loop until cancelled (the probe thread ends with it)."""
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def probe() -> None:
            while not stop.wait(self.probe_s):
                try:
                    loop.call_soon_threadsafe(self._arrived, time.monotonic_ns())
                except RuntimeError:  # the loop has closed
                    return

        thread = threading.Thread(target=probe, name="loop-lag-probe", daemon=True)
        thread.start()
        try:
            await asyncio.Event().wait()  # until cancelled
        finally:
            stop.set()  # the thread ends within one probe interval
