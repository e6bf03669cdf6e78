from __future__ import annotations

import numpy as np

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
    jb = JitterBuffer(target_frames=2, max_target_frames=10, capacity_frames=100)
    for i in range(12):  # the decoder's probe arrives as one burst
        jb.push(frame(i), 0)
    for i in range(12, 12 + JitterBuffer.WINDOW_FRAMES):  # then steady, one in, one out
        jb.pop(0)
        jb.push(frame(i), 0)
    assert jb.trimmed == 10
    assert len(jb) == 2
    # what plays next is the newest audio but one: latency is back to the target
    assert jb.pop(0)[0][0] == 12 + JitterBuffer.WINDOW_FRAMES - 2  # type: ignore[index]
