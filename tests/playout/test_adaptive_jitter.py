"""The adaptive jitter target on the fake timeline: it falls to one frame on a steady source,
grows at once on a jittery one, and never makes a listener hear a frame out of order, twice, or
late (an underflow) while it falls."""

from __future__ import annotations

import numpy as np

from loa.core.clock import FakeClock
from loa.core.counters import Counters
from loa.core.pcm import FRAME_NS, SILENCE
from loa.playout.inputs.live import LiveSettings, LiveSource
from loa.playout.jitter import JitterBuffer, JitterState

MS = 1_000_000
S = 1_000_000_000
TICK_PHASE_NS = 10 * MS  # the engine's ticks fall 10 ms past each frame boundary
LOUD = 0.5


def frame(i: int, quiet: bool = False) -> np.ndarray:
    """Frame ``i``: its index in the first sample (i / 1e6, inaudible), then a loud level or
    silence."""
    out = np.full(960, 0.0 if quiet else LOUD, dtype=np.float32)
    out[0] = i / 1e6
    return out


def index(samples: np.ndarray) -> int:
    return round(float(samples[0]) * 1e6)


def default_buffer(*, guard_ms: int = 3, **kw: bool) -> JitterBuffer:
    """Loa's defaults (a 40 ms starting target, 2 s ceiling, 4 s capacity), with a 3 ms guard:
    the timelines below put arrivals 5-15 ms before the tick, and test the mechanism (a
    frame is trimmed once every frame waited a frame plus the guard); the server's guard is
    wider (``JitterBuffer.GUARD_MS``), which only moves where that line falls."""
    return JitterBuffer(target_frames=2, max_target_frames=100, capacity_frames=200,
                        guard_ms=guard_ms, **kw)


def play(jb: JitterBuffer, arrivals: list[tuple[int, int]], seconds: float,
         quiet: set[int] | None = None) -> tuple[list[tuple[int, int | None]], list[int]]:
    """Each tick, push the frames that arrived since the last (at their arrival times), then
    pop. ``arrivals``: (arrival ns, frame index), in order; ``quiet``: the frames that are
    silent. Returns (tick ns, index heard or None for silence) and the target after each
    tick."""
    quiet = quiet or set()
    k = 0
    heard: list[tuple[int, int | None]] = []
    targets: list[int] = []
    for n in range(int(seconds * S) // FRAME_NS):
        now = n * FRAME_NS + TICK_PHASE_NS
        while k < len(arrivals) and arrivals[k][0] <= now:
            at, i = arrivals[k]
            jb.push(frame(i, i in quiet), at)
            k += 1
        got = jb.pop(now)
        heard.append((now, index(got[0]) if got is not None else None))
        targets.append(jb.target_frames)
    return heard, targets


def steady(frames: int, offset_ns: int, jitter_ms: int = 0, seed: int = 1) -> list[tuple[int, int]]:
    """Frame i sent at i * 20 ms, arriving ``offset_ns`` later plus 0..``jitter_ms`` (never
    overtaking: TCP)."""
    rng = np.random.default_rng(seed)
    out, prev = [], 0
    for i in range(frames):
        extra = int(rng.integers(0, jitter_ms + 1)) * MS if jitter_ms else 0
        prev = max(prev, i * FRAME_NS + offset_ns + extra)
        out.append((prev, i))
    return out


def delays_ms(heard: list[tuple[int, int | None]]) -> list[float]:
    """How late each frame heard played: tick - its send time, in ms."""
    return [(now - i * FRAME_NS) / MS for now, i in heard if i is not None]


def test_on_a_steady_source_the_target_falls_to_one_frame_and_no_frame_is_lost() -> None:
    jb = default_buffer()
    # every 10th frame is quiet (speech has pauses): the one frame dropped is one of them
    quiet = set(range(0, 1000, 10))
    heard, targets = play(jb, steady(1000, offset_ns=3 * MS), 19, quiet)
    played = [i for _, i in heard if i is not None]
    first = next(k for k, (_, i) in enumerate(heard) if i is not None)
    assert jb.target_frames == 1
    assert jb.underflows == 0
    assert None not in [i for _, i in heard[first:]]  # not a tick of silence once playing
    # in order, none twice; the only frame missing is the one dropped to bring the delay
    # down a frame, and it was a quiet one
    assert played == sorted(set(played))
    missing = set(range(played[0], played[-1] + 1)) - set(played)
    assert len(missing) == jb.skips == jb.trimmed == 1
    assert missing <= quiet
    # the listener hears each frame 30 ms after it was sent at first (40 ms target), then
    # 10 ms: 3 ms on the way, 7 ms to the next tick, no more
    d = delays_ms(heard)
    assert d[0] == 30 and d[-1] == 10
    # the target falls a frame at a time, never rising on a steady source
    assert all(b in (a, a - 1) for a, b in zip(targets, targets[1:], strict=False))


def test_after_a_start_the_delay_falls_within_seconds_and_after_an_underflow_calmly() -> None:
    """The first windows after a (re)start each count as a calm step (``START_WINDOWS``): a
    listener who joins hears the least delay within two seconds, not the starting target's
    for ten. An underflow ends that: calm is earned again, window by window."""
    jb = default_buffer()
    heard, targets = play(jb, steady(300, offset_ns=3 * MS), 5.9)
    d = delays_ms(heard)
    assert d[0] == 30 and targets[0] == 2
    assert targets[100] == 1 and d[100] == 10  # two seconds in
    assert jb.underflows == 0 and jb.trimmed == 1
    jb.restart()  # the target is kept; a source paused comes back to the same
    late = default_buffer()
    arrivals = steady(300, offset_ns=3 * MS)
    arrivals = [(t + (40 * MS if i == 10 else 0), i) for t, i in arrivals]  # an underflow
    arrivals = [(max(t, arrivals[10][0]) if i > 10 else t, i) for t, i in arrivals]
    _, targets = play(late, arrivals, 5.9)
    assert late.underflows == 1
    raised = targets.index(3)  # the underflow raised the target a frame
    # ... and it stays there for CALM_WINDOWS windows (5 s), start windows or not
    assert raised < 20 and min(targets[raised:raised + 245]) == 3


def test_a_frame_is_dropped_only_when_every_frame_would_stay_on_time() -> None:
    """Arrivals 1-2 ms before the tick: with one frame of buffer a frame 2 ms late would be
    heard as a gap. The target steps down (the jitter is small), but the buffer keeps its
    frame: the delay stays about a frame, and nothing underflows."""
    jb = default_buffer()
    heard, _ = play(jb, steady(1000, offset_ns=8 * MS, jitter_ms=1), 19)
    assert jb.skips == 0 and jb.trimmed == 0 and jb.underflows == 0
    assert min(delays_ms(heard)[100:]) == 30  # 8-9 ms on the way, 21-22 ms in the buffer


def test_a_late_burst_raises_the_target_at_once_and_calm_lowers_it_a_frame_at_a_time() -> None:
    jb = default_buffer()
    arrivals = steady(3000, offset_ns=3 * MS)
    # frames 500-504 are held up 90 ms and arrive together with frame 505
    late_at = arrivals[505][0]
    arrivals = [(late_at if 500 <= i <= 505 else t, i) for t, i in arrivals]
    heard, targets = play(jb, arrivals, 60)
    tick_of_burst = (late_at - TICK_PHASE_NS) // FRAME_NS + 1
    before, after = targets[tick_of_burst - 1], targets[tick_of_burst]
    assert before == 1
    assert after == 6  # 90 ms late: five frames more, at the tick the burst came
    # then steps down by single frames, the last of them once the 30 s memory has let the
    # burst go, back to one frame
    steps = [b - a for a, b in zip(targets[tick_of_burst:], targets[tick_of_burst + 1:],
                                   strict=False) if b != a]
    assert steps and all(s == -1 for s in steps)
    assert targets[-1] == 1
    # the listener heard the gap once (the buffer ran dry waiting for frame 500), then every
    # frame in order, none twice, a frame dropped at a time until the delay is back where it
    # was before the burst
    played = [i for _, i in heard if i is not None]
    assert played == sorted(set(played))
    d = delays_ms(heard)
    assert d[-1] == d[400] == 10
    assert max(d) >= 100 and jb.underflows == 1
    late_part = [now for now, i in heard if i is not None and (now - i * FRAME_NS) / MS > 10]
    assert (late_part[-1] - late_at) / S < 45  # 30 s of memory, then a frame a second


def test_a_jittery_source_keeps_a_target_that_covers_its_jitter() -> None:
    jb = default_buffer()
    heard, targets = play(jb, steady(1500, offset_ns=3 * MS, jitter_ms=60, seed=4), 29)
    assert jb.target_frames >= 3  # 60 ms of jitter: three frames at least, held
    assert min(targets[50 * 5:]) >= 3
    late = [i for _, i in heard[50 * 5:]].count(None)
    assert late <= 3  # once learned, the jitter is ridden out


def test_a_restart_after_a_pause_keeps_the_jitter_learned_a_reset_forgets_it() -> None:
    """A source not decoded for a while (nobody heard it) restarts from an empty buffer at the
    target its network's jitter needs; a new source starts from the initial target."""
    jb = default_buffer()
    play(jb, steady(1500, offset_ns=3 * MS, jitter_ms=60, seed=4), 29)
    learned, lateness = jb.target_frames, jb.lateness_seen_ns
    assert learned >= 3 and lateness > 0
    jb.restart()
    assert len(jb) == 0 and jb.state is JitterState.BUFFERING
    assert jb.lateness_seen_ns == lateness
    assert jb.target_frames == jb.need_frames >= 3  # what the lateness learned needs
    learned = jb.target_frames
    # nothing absolute is kept (the timeline may start again from 0): the first frames are
    # buffered to the target, then play on, the jitter ridden out
    heard, _ = play(jb, steady(300, 3 * MS, 60, seed=5), 5.9)
    played = [i for _, i in heard if i is not None]
    assert jb.outages == 0 and played == sorted(set(played)) and len(played) > 280
    assert [i for _, i in heard[:learned]] == [None] * learned and jb.target_frames >= 3
    jb.reset()
    assert jb.target_frames == 2 and jb.lateness_seen_ns == 0


def test_a_restart_of_a_source_barely_measured_keeps_its_target() -> None:
    """A source that connected while nobody heard it (never decoded, or decoded less than
    ``LEARNED_FRAMES``) has shown no lateness yet: a restart keeps its starting target, and
    a frame 25 ms late is ridden out. One measured long enough restarts at what the guard
    and its lateness need: one frame on a steady source."""
    jb = default_buffer(guard_ms=10)
    jb.restart()
    assert jb.target_frames == 2
    arrivals = steady(300, offset_ns=3 * MS)
    arrivals = [(t + (25 * MS if i % 60 == 30 else 0), i) for t, i in arrivals]
    heard, _ = play(jb, arrivals, 1.9)
    assert jb.underflows == 0
    measured = default_buffer(guard_ms=10)
    play(measured, steady(JitterBuffer.LEARNED_FRAMES + 5, offset_ns=3 * MS), 1.0)
    measured.restart()
    assert measured.target_frames == 1


def test_a_startup_burst_is_trimmed_at_once_then_it_plays_at_one_frame() -> None:
    """The decoder's probe hands 12 frames over in one go, then the source is steady."""
    jb = default_buffer()
    arrivals = [(3 * MS, i) for i in range(12)] + [((i - 11) * FRAME_NS + 3 * MS, i)
                                                    for i in range(12, 700)]
    heard, _ = play(jb, arrivals, 13)
    arrived = {i: t for t, i in arrivals}
    waits_ms = [(now - arrived[i]) / MS for now, i in heard if i is not None]
    assert max(waits_ms[:50]) > 200  # frames wait 11 ticks in the buffer at first...
    assert jb.trimmed >= 10 and jb.underflows == 0
    assert waits_ms[-1] == 7  # ...then only until the next tick
    played = [i for _, i in heard if i is not None]
    assert played == sorted(set(played))


def test_fixed_mode_never_goes_below_its_starting_target() -> None:
    jb = default_buffer(adaptive=False)
    play(jb, steady(1000, offset_ns=3 * MS), 19)
    assert jb.target_frames == 2 and jb.skips == 0


def test_a_live_source_is_adaptive_by_default() -> None:
    clock = FakeClock()
    source = LiveSource("live/studio", clock, Counters(), LiveSettings(2, 100, 200))
    source.connect()
    for n in range(19 * 50):
        clock.set_ns(n * FRAME_NS + 3 * MS)
        source.push_frames([frame(n)])
        clock.set_ns(n * FRAME_NS + TICK_PHASE_NS)
        got = source.read(clock.now_ns())
        assert got is not None
        assert n < 2 or got[0] is not SILENCE
    assert source.jitter.target_frames == 1
