from __future__ import annotations

import numpy as np

from loa.core.clock import FakeClock
from loa.core.counters import Counters
from loa.core.pcm import FRAME_MS, FRAME_NS, SILENCE
from loa.playout.inputs.live import LiveSettings, LiveSource
from loa.playout.jitter import JitterBuffer, JitterState

MS = 1_000_000


def frame(i: int) -> np.ndarray:
    return np.full(960, i, dtype=np.float32)


def test_waits_for_its_target_then_plays_in_order() -> None:
    jb = JitterBuffer(target_frames=3, max_target_frames=10, capacity_frames=20)
    jb.push(frame(0), 0)
    jb.push(frame(1), 0)
    assert jb.pop(0) is None and jb.underflows == 0  # still buffering: not an underflow
    jb.push(frame(2), 0)
    assert jb.state is JitterState.PLAYING
    assert [jb.pop(0)[0][0] for _ in range(3)] == [0, 1, 2]  # type: ignore[index]


def test_underflow_is_counted_and_the_target_grows_by_the_gap_seen() -> None:
    jb = JitterBuffer(target_frames=2, max_target_frames=60, capacity_frames=100)
    for i in range(2):
        jb.push(frame(i), 0)
    jb.pop(20 * MS)
    jb.pop(40 * MS)
    assert jb.pop(60 * MS) is None
    assert jb.underflows == 1
    assert jb.state is JitterState.BUFFERING
    jb.push(frame(2), 90 * MS)  # a 30 ms hiccup: two frames, one more than before
    assert jb.target_frames == 3
    jb.push(frame(3), 90 * MS)
    jb.push(frame(4), 90 * MS)
    for t in range(3):
        jb.pop((100 + 20 * t) * MS)
    assert jb.pop(160 * MS) is None
    jb.push(frame(5), 1160 * MS)  # a source that arrives a second at a time
    assert jb.target_frames == 51  # one underflow, then it rides the bursts
    assert jb.underflows == 2


def test_overflow_drops_the_oldest_and_counts() -> None:
    jb = JitterBuffer(target_frames=1, max_target_frames=2, capacity_frames=4)
    for i in range(6):
        jb.push(frame(i), 0)
    assert jb.overflow_drops == 2
    assert jb.pop(0)[0][0] == 2  # type: ignore[index]


def test_a_startup_burst_is_trimmed_back_to_the_target() -> None:
    # fixed: the depth rule, on times all 0 (adaptive, by waits: tests/playout/test_adaptive_jitter)
    jb = JitterBuffer(target_frames=2, max_target_frames=10, capacity_frames=100, adaptive=False)
    for i in range(12):  # the decoder's probe arrives as one burst
        jb.push(frame(i), 0)
    for i in range(12, 12 + JitterBuffer.WINDOW_FRAMES):  # then steady, one in, one out
        jb.pop(0)
        jb.push(frame(i), 0)
    assert jb.trimmed == 10
    assert len(jb) == 2
    # what plays next is the newest audio but one: latency is back to the target
    assert jb.pop(0)[0][0] == 12 + JitterBuffer.WINDOW_FRAMES - 2  # type: ignore[index]


# --- outages: a gap far longer than the jitter seen is not learned; the buffer resyncs ---

S = 1_000_000_000


def steady_with_jitter(first: int, last: int, seed: int = 7) -> list[tuple[int, int]]:
    """(arrival ns, frame index) of frames sent at index * 20 ms over a network that delays
    each by 0-30 ms, never overtaking (TCP)."""
    rng = np.random.default_rng(seed)
    out, prev = [], 0
    for i in range(first, last):
        prev = max(prev, i * FRAME_NS + int(rng.integers(0, 31)) * MS)
        out.append((prev, i))
    return out


def run_live(arrivals: list[tuple[int, int]], seconds: float, source: LiveSource,
             clock: FakeClock) -> list[tuple[int, int | None]]:
    """Drive ``source`` on the fake clock: each 20 ms tick (at 10 ms past the frame boundary),
    the frames that have arrived since the last one are pushed at their arrival times, then
    the tick reads. Each frame carries its index as its samples. Returns (tick ns, index
    played or None for silence)."""
    pending = sorted(arrivals)
    k = 0
    played: list[tuple[int, int | None]] = []
    for n in range(int(seconds * S // FRAME_NS)):
        now = n * FRAME_NS + 10 * MS
        while k < len(pending) and pending[k][0] <= now:
            clock.set_ns(pending[k][0])
            source.push_frames([frame(pending[k][1])])
            k += 1
        clock.set_ns(now)
        got, _ = source.read(now)
        played.append((now, int(got[0]) if got is not SILENCE else None))
    return played


def heard_delays_ms(played: list[tuple[int, int | None]]) -> list[tuple[float, float]]:
    """(tick s, how late the frame played then was: tick - index * 20 ms, in ms)."""
    return [(now / S, (now - i * FRAME_NS) / MS) for now, i in played if i is not None]


def jumps(played: list[tuple[int, int | None]]) -> int:
    """Discontinuities heard: places where the next frame played is not the one after."""
    idx = [i for _, i in played if i is not None]
    return sum(1 for a, b in zip(idx, idx[1:], strict=False) if b != a + 1)


def live_source(clock: FakeClock, counters: Counters) -> LiveSource:
    # Loa's defaults: 40 ms target, 2 s ceiling, 4 s capacity
    source = LiveSource("live/studio", clock, counters, LiveSettings(2, 100, 200))
    clock.set_ns(0)
    source.connect()
    return source


def test_after_a_5_second_outage_the_delay_is_back_to_the_target_within_5_s() -> None:
    """The 4G link dies for 5 s with the TCP connection open, then comes back and delivers the
    5 s the encoder sent meanwhile in one burst (the decoder hands it over in ~30 ms, across
    two ticks). Before, the target grew to 2 s and took ~8 minutes to come back down."""
    clock, counters = FakeClock(), Counters()
    source = live_source(clock, counters)
    outage_from, outage_to = 10 * S, 15 * S
    sent = steady_with_jitter(0, 1500)
    arrivals = [(t, i) for t, i in sent if t < outage_from]
    backlog = [i for t, i in sent if t >= outage_from and i * FRAME_NS < outage_to]
    arrivals += [(outage_to + k * 120_000, i) for k, i in enumerate(backlog)]  # 8 frames/ms
    arrivals += [(t, i) for t, i in sent if i * FRAME_NS >= outage_to]

    played = run_live(arrivals, 30, source, clock)
    delays = heard_delays_ms(played)

    jb = source.jitter
    assert jb.outages == 1 and counters.get("jitter_outages", source="live/studio") == 1
    assert jb.target_frames <= 4  # the 5 s gap was not learned as jitter
    assert counters.get("jitter_resync_drops", source="live/studio") == jb.resync_drops
    assert jb.resync_drops >= len(backlog) - 4  # the backlog was cut, not played late
    baseline_ms = max(d for t, d in delays if 5 < t < outage_from / S)
    back = [(t - outage_to / S, d) for t, d in delays if t >= outage_to / S]
    first_back_s = next(t for t, d in back if d <= baseline_ms + FRAME_MS)
    assert first_back_s < 5.0  # what the issue asks for...
    assert first_back_s < 0.2  # ...and in fact at once: the first frame back is the live edge
    assert all(d <= baseline_ms + FRAME_MS for _, d in back)  # and it stays there
    assert jumps(played) == 1  # the one cut: from before the outage to the live edge


def test_an_outage_without_backlog_resumes_at_the_target_at_once() -> None:
    """An encoder that restarts its clock after the gap (nothing queued): the first frames
    back play at the usual delay."""
    clock, counters = FakeClock(), Counters()
    source = live_source(clock, counters)
    arrivals = [(t, i) for t, i in steady_with_jitter(0, 1500)
                if not 10 * S <= i * FRAME_NS < 15 * S]
    played = run_live(arrivals, 30, source, clock)
    delays = heard_delays_ms(played)
    before = max(d for t, d in delays if 5 < t < 10)
    after = [d for t, d in delays if t >= 15]
    assert source.jitter.outages == 1 and source.jitter.target_frames <= 4
    assert max(after) <= before + FRAME_MS
    assert len(after) >= (30 - 15.1) * 50
    assert jumps(played) == 1


def test_jitter_is_still_learned_and_an_outage_is_measured_against_it() -> None:
    """An Ogg encoder flushing a page a second: 1 s gaps are jitter; a 5 s outage on that
    source, 5 times the jitter seen, is an outage: the target stays where the jitter put it,
    and the delay comes back at once to what it was, a page."""
    jb = JitterBuffer(target_frames=2, max_target_frames=100, capacity_frames=200)
    page = 50  # frames a page

    def page_at(p: int, t: int) -> None:
        for i in range(p * page, (p + 1) * page):
            jb.push(frame(i), t)

    played: list[tuple[int, int | None]] = []

    def tick(now: int) -> None:
        got = jb.pop(now)
        played.append((now, int(got[0][0]) if got is not None else None))

    # page p is flushed at p + 1 s and arrives 0-100 ms later; pages 20-23 are held up by a
    # 5 s outage and come with page 24
    rng = np.random.default_rng(3)
    due = [(p + 1) * S + int(rng.integers(0, 101)) * MS for p in range(40)]
    arrivals = {p: due[max(p, 24)] if 20 <= p < 24 else due[p] for p in range(40)}
    target_before = 0
    for n in range(30 * 50):
        now = n * FRAME_NS + 10 * MS
        for p in [p for p, t in arrivals.items() if now - FRAME_NS < t <= now]:
            page_at(p, arrivals[p])
        if now // S == 20 and target_before == 0:
            target_before = jb.target_frames
        tick(now)
    assert jb.outages == 1
    assert jb.target_frames <= target_before + 2  # not learned from the 5 s outage (100)
    delays = heard_delays_ms(played)
    before = max(d for t, d in delays if 10 < t < 20)
    assert before > 900  # such a source is heard about a page late
    first_back_s = next(t for t, d in delays if t > 25)
    assert first_back_s < 25.2
    # back at once to about where it was (a page and the longest gap seen, 1.08 s, deep), and
    # to within a frame of it after the drift trim: two windows after the cut, once the
    # lateness measured afresh from the live edge shows the pages as late as before it
    assert max(d for t, d in delays if t > 25) <= before + 5 * FRAME_MS
    assert max(d for t, d in delays if t > 28) <= before + FRAME_MS
    # the resync kept a page's worth (the longest gap seen), so the next page arrives before
    # that runs out: no silence after the cut
    assert [i for t, i in played if first_back_s <= t / S < first_back_s + 2].count(None) == 0
    idx = [i for t, i in played if i is not None]
    assert sum(1 for a, b in zip(idx, idx[1:], strict=False) if a < 1000 <= b) == 1


def test_gaps_below_the_outage_floor_are_jitter() -> None:
    jb = JitterBuffer(target_frames=2, max_target_frames=100, capacity_frames=200)
    jb.push(frame(0), 0)
    jb.push(frame(1), 0)
    jb.pop(20 * MS)
    jb.pop(40 * MS)
    assert jb.pop(60 * MS) is None
    jb.push(frame(2), 1_400 * MS)  # 1.4 s: long, but under OUTAGE_MIN_MS
    assert jb.outages == 0 and jb.target_frames == 68
    assert jb.outage_threshold_ns == 3 * 1_400 * MS  # and now a gap must be 3x that


def test_a_source_that_reconnects_after_a_while_is_not_an_outage() -> None:
    clock, counters = FakeClock(), Counters()
    source = live_source(clock, counters)
    source.push_frames([frame(0), frame(1)])
    source.disconnect()
    clock.set_ns(10 * S)
    source.connect()  # a new source: it starts from nothing, nothing to resync
    source.push_frames([frame(2), frame(3)])
    assert source.jitter.outages == 0 and source.jitter.state is JitterState.PLAYING
