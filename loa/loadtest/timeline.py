"""Does the audio keep up with the wall clock? Dead air as a simulated endpoint hears it.

Sequence numbers only say whether packets went missing; a server whose clock froze for six
seconds sends every packet, late, and loses none. So every simulated endpoint also compares each
packet's position on the audio timeline (``pts``, 48 kHz samples: the native header's pts, an Ogg
granule position, a count of MP3 frames) with when it arrived on a monotonic clock:

    lag = (arrival - first_arrival) - (pts - first_pts) / 48 kHz

The lag is read against the best (smallest) lag seen so far, so a join burst or network jitter
that brings audio in early sets the baseline, and only falling behind it counts. A **stall** is
audio falling more than ``STALL_THRESHOLD_MS`` behind: a loudspeaker with that much buffer
would have gone quiet. After a stall the baseline is re-anchored at the late level (a device
re-buffers and plays on from there), so a second freeze counts again.

``TimelineMonitor`` is the pure core: ``on_packet(pts_samples, arrival_ns)`` per packet,
``restart()`` where the timeline legitimately begins anew (a reconnect, a move to another zone, a
chained Ogg stream), and ``summary(end_ns)`` at the end. ``aggregate`` turns many summaries into
the load test's figures and its verdict.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from loa.core.pcm import FRAME_SAMPLES, SAMPLE_RATE
from loa.core.percentiles import percentile, percentiles

STALL_THRESHOLD_MS = 100  # audio this far behind wall time: a loudspeaker has gone quiet
DELIVERED_MIN_PCT = 99.0  # a run passes only if every endpoint got this share of real time
NS_PER_S = 1_000_000_000
_STALL_THRESHOLD_NS = STALL_THRESHOLD_MS * 1_000_000
MAX_STALLS_KEPT = 32  # per endpoint, the arrival times of the first stalls (bounded memory)
EXIT_DEAD_AIR = 3  # exit status of ``loa listen`` / ``loa loadtest`` when the verdict is FAILURE


class Verdict(enum.Enum):
    PASS = "PASS"
    FAILURE = "FAILURE"


@dataclass(frozen=True, slots=True)
class TimelineSummary:
    """What one endpoint heard, against the wall clock.

    ``longest_silence_ms``: the longest wait between two packets (or after the last one, up to
    the end); ``worst_lag_ms``: the largest amount audio fell behind its baseline;
    ``delivered_pct``: audio received / wall time from the first packet to the end (0 when no
    packet came; above 100 when a join burst brought recent audio at once).
    """

    packets: int
    stalls: int
    longest_silence_ms: float
    worst_lag_ms: float
    audio_s: float
    wall_s: float
    delivered_pct: float
    timelines: int  # 1 + restarts that saw audio (reconnects, zone moves, chained streams)
    stalls_at_ns: tuple[int, ...]  # monotonic arrival time of the packet that revealed each

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stalls_at_ns"] = list(self.stalls_at_ns)
        return d


class TimelineMonitor:
    """Per endpoint: the audio timeline against arrival times (both in ns, monotonic).

    ``stalls`` is live (the progress display reads it); ``summary`` adds the silence after the
    last packet, up to ``end_ns``. Pure and synchronous: no clock of its own.
    """

    def __init__(self, stall_threshold_ms: float = STALL_THRESHOLD_MS) -> None:
        self.stall_threshold_ns = int(stall_threshold_ms * 1_000_000)
        self.packets = 0
        self.stalls = 0
        self.timelines = 0
        self._stalls_at_ns: list[int] = []
        self._audio_samples = 0
        self._first_arrival_ns: int | None = None  # of the whole run: the delivered share
        self._last_arrival_ns = 0
        self._longest_gap_ns = 0
        self._worst_lag_ns = 0
        # the current timeline (reset by restart)
        self._new_timeline = True
        self._t0_ns = 0  # arrival of its first packet
        self._pts0 = 0  # pts of its first packet, 48 kHz samples
        self._end_pts = 0  # pts + duration of its last packet
        self._base_lag_ns = 0  # the best lag since the last re-anchoring

    def restart(self) -> None:
        """The next packet starts a new timeline (its pts bears no relation to the last)."""
        self._new_timeline = True

    def on_packet(self, pts_samples: int, arrival_ns: int,
                  duration_samples: int = FRAME_SAMPLES) -> None:
        if self._first_arrival_ns is None:
            self._first_arrival_ns = arrival_ns
        elif arrival_ns - self._last_arrival_ns > self._longest_gap_ns:
            self._longest_gap_ns = arrival_ns - self._last_arrival_ns
        if not self._new_timeline and pts_samples < self._end_pts - duration_samples:
            self._new_timeline = True  # the position went back: a new stream, not a late one
        if self._new_timeline:
            if self.packets and arrival_ns - self._last_arrival_ns > self.stall_threshold_ns:
                # dead air between the two connections (or streams)
                self._worst_lag_ns = max(self._worst_lag_ns, arrival_ns - self._last_arrival_ns)
                self._stall(arrival_ns)
            self._new_timeline = False
            self.timelines += 1
            self._t0_ns, self._pts0, self._base_lag_ns = arrival_ns, pts_samples, 0
        else:
            lag_ns = self._lag_ns(pts_samples, arrival_ns)
            excess_ns = lag_ns - self._base_lag_ns  # > 0: audio behind where it should be
            self._worst_lag_ns = max(self._worst_lag_ns, excess_ns)
            if excess_ns > self.stall_threshold_ns:
                self._stall(arrival_ns)
                self._base_lag_ns = lag_ns  # re-buffered: play on from the late level
            elif excess_ns < 0:
                self._base_lag_ns = lag_ns
        self._end_pts = pts_samples + duration_samples
        self._last_arrival_ns = arrival_ns
        self._audio_samples += duration_samples
        self.packets += 1

    def _lag_ns(self, pts_samples: int, arrival_ns: int) -> int:
        return (arrival_ns - self._t0_ns) - (pts_samples - self._pts0) * NS_PER_S // SAMPLE_RATE

    def _stall(self, arrival_ns: int) -> None:
        self.stalls += 1
        if len(self._stalls_at_ns) < MAX_STALLS_KEPT:
            self._stalls_at_ns.append(arrival_ns)

    def summary(self, end_ns: int) -> TimelineSummary:
        """The figures as of ``end_ns``, the end of the run: a stream that stopped before the
        end delivered less, and a silence still going on at the end counts (as a stall too,
        once it exceeds the threshold).

        Lateness under the threshold at the very end (the next packet of a 40 ms HTTP batch
        still on its way) is not dead air, as it is not anywhere else in the run: the wall
        time then ends where the audio received runs out, so that a short healthy run does not
        read below 100 % for the cadence of its last packets.
        """
        if self._first_arrival_ns is None:
            return TimelineSummary(0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, ())
        end_ns = max(end_ns, self._last_arrival_ns)
        stalls, worst_ns, at = self.stalls, self._worst_lag_ns, tuple(self._stalls_at_ns)
        trailing_ns = end_ns - self._last_arrival_ns
        # As if a packet with the next position arrived at the end: is it late?
        behind_ns = (self._lag_ns(self._end_pts, end_ns) - self._base_lag_ns
                     if not self._new_timeline else trailing_ns)
        worst_ns = max(worst_ns, behind_ns)
        if behind_ns > self.stall_threshold_ns:
            stalls += 1
        wall_end_ns = end_ns if behind_ns > self.stall_threshold_ns else end_ns - max(behind_ns, 0)
        wall_ns = wall_end_ns - self._first_arrival_ns
        audio_s = self._audio_samples / SAMPLE_RATE
        return TimelineSummary(
            packets=self.packets,
            stalls=stalls,
            longest_silence_ms=round(max(self._longest_gap_ns, trailing_ns) / 1e6, 3),
            worst_lag_ms=round(max(worst_ns, 0) / 1e6, 3),
            audio_s=round(audio_s, 6),
            wall_s=round(wall_ns / 1e9, 6),
            delivered_pct=round(100 * audio_s * NS_PER_S / wall_ns, 3) if wall_ns > 0 else 100.0,
            timelines=self.timelines,
            stalls_at_ns=at,
        )


def aggregate(summaries: Iterable[dict[str, Any]], judged: Iterable[bool] | None = None
              ) -> dict[str, Any]:
    """The load test's figures over endpoints' ``TimelineSummary.as_dict()`` and its verdict.

    ``judged`` (parallel to ``summaries``) leaves out of the verdict endpoints the test itself
    cut or stalled on purpose; their figures still count in the totals.
    """
    rows = list(summaries)
    judge = list(judged) if judged is not None else [True] * len(rows)
    silences = [float(s["longest_silence_ms"]) for s in rows]
    delivered = [float(s["delivered_pct"]) for s in rows]
    stalled = [s for s in rows if s["stalls"]]
    bad_stall = sum(1 for s, j in zip(rows, judge, strict=True) if j and s["stalls"])
    bad_share = sum(1 for s, j in zip(rows, judge, strict=True)
                    if j and s["delivered_pct"] < DELIVERED_MIN_PCT)
    reasons = []
    if bad_stall:
        reasons.append(f"{bad_stall} endpoint(s) heard a stall (audio > {STALL_THRESHOLD_MS} ms"
                       " behind real time)")
    if bad_share:
        reasons.append(f"{bad_share} endpoint(s) got less than {DELIVERED_MIN_PCT:g} % of real"
                       " time")
    if not rows:
        reasons.append("no endpoint reported")
    return {
        "verdict": (Verdict.FAILURE if reasons else Verdict.PASS).value,
        "verdict_reasons": reasons,
        "stall_threshold_ms": STALL_THRESHOLD_MS,
        "delivered_min_pct": DELIVERED_MIN_PCT,
        "stalls": sum(int(s["stalls"]) for s in rows),
        "endpoints_with_stalls": len(stalled),
        "longest_silence_ms": percentiles(silences, (50, 99)),
        "delivered_pct": {"min": round(min(delivered), 3) if delivered else None,
                          "p50": percentile(delivered, 50)},
        "endpoints_not_judged": sum(1 for j in judge if not j),
    }
