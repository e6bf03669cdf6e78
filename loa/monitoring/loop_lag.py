"""How late the event loop runs what is due: the server's own measure of "the loop is sacred".

The master clock's tick is due on an absolute deadline every 20 ms (``Engine.run``); how late
the loop ran it (``Engine.on_lateness``) is how late anything that was ready waited for the
loop: a blocking call, a task that runs step after step without yielding, the GIL held by
another thread all delay the next tick. A hold of h ms shows as a tick at least h − 20 ms
late, so every hold past the alarm's default (50 ms) is seen; shorter ones are sampled 50
times a second. The master clock catching up tick after tick shows too: its first late tick
says by how much.

Before, a probe thread handed the loop a callback every 50 ms for the same measure: a thread
wake-up and a loop wake-up 20 times a second, ~0.3 % of a core on an idle server that the
tick's own lateness makes unnecessary (issue 17, idle CPU).
Exported as the ``loa_loop_lag_seconds`` histogram; the alarm ``loop_lag`` is raised when the
worst lag of the last ``RECENT_S`` seconds exceeds ``[alarms] loop_lag_ms``.
"""

from __future__ import annotations

from loa.core.counters import LatencyWindow

# A sample a tick: the master clock's frame (s).
SAMPLE_EVERY_S = 0.02
RECENT_S = 10.0
# Histogram bounds (s): sub-millisecond is healthy, 20 ms is a frame, seconds are an outage.
BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopLag:
    """Cumulative histogram of loop lag (seconds) plus a window of recent samples: fed a
    sample a tick by the master clock (``observe_ns``), or any lag seen (``observe``)."""

    def __init__(self, every_s: float = SAMPLE_EVERY_S) -> None:
        self.every_s = every_s  # how often a sample comes
        self.bucket_counts = [0] * (len(BUCKETS_S) + 1)  # the last one is +Inf
        self.count = 0
        self.sum_s = 0.0
        self.recent = LatencyWindow(int(RECENT_S / every_s))

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

    def observe_ns(self, late_ns: int) -> None:
        """One tick ran ``late_ns`` after its deadline (``Engine.on_lateness``)."""
        self.observe(late_ns / 1e9)
