"""The audio timeline against the wall clock, on synthetic arrival times (no sockets, no sleeps)."""

from __future__ import annotations

import random

import pytest

from loa.loadtest.timeline import (
    DELIVERED_MIN_PCT,
    STALL_THRESHOLD_MS,
    TimelineMonitor,
    Verdict,
    aggregate,
)

FRAME = 960  # samples at 48 kHz: 20 ms
MS = 1_000_000
T0 = 5_000 * MS  # monotonic clocks start anywhere


def feed(mon: TimelineMonitor, arrivals_ns: list[int], pts0: int = 0) -> int:
    """One 20 ms packet per arrival, consecutive positions; returns the last arrival."""
    for i, t in enumerate(arrivals_ns):
        mon.on_packet(pts0 + i * FRAME, t)
    return arrivals_ns[-1]


def steady(n: int, start_ns: int = T0) -> list[int]:
    return [start_ns + i * 20 * MS for i in range(n)]


def test_a_steady_stream_has_no_stall_and_delivers_real_time() -> None:
    mon = TimelineMonitor()
    last = feed(mon, steady(500))  # 10 s
    s = mon.summary(last + 20 * MS)
    assert (s.packets, s.stalls) == (500, 0)
    assert s.longest_silence_ms == 20.0 and s.worst_lag_ms == 0.0
    assert s.delivered_pct == pytest.approx(100.0)
    assert s.audio_s == pytest.approx(10.0) and s.wall_s == pytest.approx(10.0)


def test_a_frozen_server_is_one_stall_as_long_as_the_freeze() -> None:
    # 2 s of audio, the clock freezes for 1 s, then it goes on where it was (no catching up):
    # every packet arrives, none lost, and the sequence numbers would say nothing happened.
    mon = TimelineMonitor()
    arrivals = steady(100) + steady(100, T0 + 100 * 20 * MS + 1000 * MS)
    last = feed(mon, arrivals)
    s = mon.summary(last + 20 * MS)
    assert s.stalls == 1
    assert s.longest_silence_ms == pytest.approx(1020.0)  # 20 ms cadence + the 1 s freeze
    assert s.worst_lag_ms == pytest.approx(1000.0)
    assert s.delivered_pct == pytest.approx(100 * 4.0 / 5.0)  # 4 s of audio in 5 s
    assert s.delivered_pct < DELIVERED_MIN_PCT
    assert s.stalls_at_ns == (T0 + 100 * 20 * MS + 1000 * MS,)


def test_jitter_and_a_hiccup_under_the_threshold_are_not_stalls() -> None:
    rng = random.Random(7)
    arrivals = [t + rng.randrange(0, 40 * MS) for t in steady(500)]
    arrivals.sort()  # TCP keeps order
    arrivals[300:] = [t + (STALL_THRESHOLD_MS - 45) * MS for t in arrivals[300:]]  # 55 ms late
    mon = TimelineMonitor()
    last = feed(mon, arrivals)
    s = mon.summary(last + 20 * MS)
    assert s.stalls == 0
    assert 0 < s.worst_lag_ms < STALL_THRESHOLD_MS


def test_a_join_burst_sets_the_baseline_and_is_not_a_stall() -> None:
    # A new listener gets ~200 ms of recent audio at once, then the live edge every 20 ms.
    burst = [T0 + i * 100_000 for i in range(10)]
    live = steady(250, T0 + 20 * MS)
    mon = TimelineMonitor()
    last = feed(mon, burst + live)
    s = mon.summary(last + 20 * MS)
    assert s.stalls == 0 and s.worst_lag_ms == 0.0
    assert s.delivered_pct > 100.0  # the burst brought 200 ms ahead of the clock


def test_each_freeze_counts_and_a_catch_up_burst_ends_one() -> None:
    mon = TimelineMonitor()
    t = T0
    pts = 0
    for freeze_ms in (300, 0, 500):
        for _ in range(50):
            mon.on_packet(pts, t)
            pts += FRAME
            t += 20 * MS
        t += freeze_ms * MS
    # a server that bursts what it owes after a freeze: packets close together, then steady
    for _ in range(25):
        mon.on_packet(pts, t)
        pts += FRAME
        t += MS
    s = mon.summary(t)
    assert s.stalls == 2
    assert s.worst_lag_ms == pytest.approx(500.0)


def test_a_stream_that_stops_before_the_end_delivered_less() -> None:
    mon = TimelineMonitor()
    last = feed(mon, steady(200))  # 4 s of audio ...
    s = mon.summary(last + 20 * MS + 6000 * MS)  # ... in a 10 s run
    assert s.delivered_pct == pytest.approx(40.0)
    assert s.longest_silence_ms == pytest.approx(6020.0)
    assert s.stalls == 1  # the silence still going on at the end is one
    assert mon.summary(last + 20 * MS + 90 * MS).stalls == 0  # 90 ms late: not yet


def test_a_server_slower_than_real_time_stalls_again_and_again() -> None:
    # 95 % of real time: 21.05 ms a packet; 100 ms behind every ~2 s.
    mon = TimelineMonitor()
    last = feed(mon, [T0 + i * 21_052_632 for i in range(500)])
    s = mon.summary(last + 21 * MS)
    assert 4 <= s.stalls <= 6
    # 95 %, less what lateness since the last stall is still under the threshold at the end
    assert 95.0 <= s.delivered_pct <= 95.0 + 100 * 0.1 / s.wall_s


def test_a_reconnect_starts_a_new_timeline_and_its_dead_air_counts() -> None:
    mon = TimelineMonitor()
    last = feed(mon, steady(100), pts0=10_000_000)
    mon.restart()  # reconnected 50 ms later: positions bear no relation to the old ones
    last = feed(mon, steady(100, last + 50 * MS), pts0=3)
    assert mon.stalls == 0 and mon.timelines == 2
    mon.restart()  # reconnected 700 ms later: dead air
    last = feed(mon, steady(100, last + 700 * MS), pts0=12_345)
    s = mon.summary(last + 20 * MS)
    assert (s.stalls, s.timelines) == (1, 3)
    assert s.longest_silence_ms == pytest.approx(700.0)


def test_a_position_that_goes_back_is_a_new_stream_not_a_late_one() -> None:
    mon = TimelineMonitor()
    last = feed(mon, steady(100), pts0=1_000_000)
    last = feed(mon, steady(100, last + 20 * MS), pts0=0)  # a chained stream, unannounced
    s = mon.summary(last + 20 * MS)
    assert (s.stalls, s.timelines, s.worst_lag_ms) == (0, 2, 0.0)


def test_no_packet_at_all_delivered_nothing() -> None:
    s = TimelineMonitor().summary(T0)
    assert (s.packets, s.stalls, s.delivered_pct) == (0, 0, 0.0)
    assert aggregate([s.as_dict()])["verdict"] == Verdict.FAILURE.value


def test_aggregate_figures_and_verdict() -> None:
    good = TimelineMonitor()
    feed(good, steady(250))
    bad = TimelineMonitor()
    feed(bad, steady(100) + steady(150, T0 + 2000 * MS + 1000 * MS))
    end = T0 + 6000 * MS
    g, b = good.summary(T0 + 5000 * MS).as_dict(), bad.summary(end).as_dict()

    passed = aggregate([g, g, g])
    assert passed["verdict"] == Verdict.PASS.value and passed["verdict_reasons"] == []
    assert passed["stalls"] == 0 and passed["endpoints_with_stalls"] == 0

    failed = aggregate([g, g, b])
    assert failed["verdict"] == Verdict.FAILURE.value
    assert failed["stalls"] == 1 and failed["endpoints_with_stalls"] == 1
    assert failed["longest_silence_ms"]["max"] == pytest.approx(1020.0)
    assert failed["longest_silence_ms"]["p50"] == pytest.approx(20.0)
    assert failed["delivered_pct"]["min"] == pytest.approx(100 * 5 / 6, abs=0.01)
    assert failed["delivered_pct"]["p50"] == pytest.approx(100.0)
    assert len(failed["verdict_reasons"]) == 2  # a stall, and less than 99 %

    # an endpoint the test stalled on purpose counts in the figures, not in the verdict
    excused = aggregate([g, g, b], judged=[True, True, False])
    assert excused["verdict"] == Verdict.PASS.value
    assert excused["stalls"] == 1 and excused["endpoints_not_judged"] == 1


def test_the_last_packets_still_on_their_way_are_not_dead_air() -> None:
    # A short healthy run whose last batch is 60 ms late: under the threshold, it is jitter a
    # loudspeaker's buffer covers, not a share of real time lost.
    arrivals = steady(100)
    arrivals[-3:] = [arrivals[-3] + 60 * MS] * 3
    mon = TimelineMonitor()
    last = feed(mon, arrivals)
    s = mon.summary(last + 5 * MS)
    assert s.stalls == 0
    assert s.delivered_pct >= 100.0
