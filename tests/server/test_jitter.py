from __future__ import annotations

import numpy as np

from loa.server.jitter import JitterBuffer, JitterState


def frame(i: int) -> np.ndarray:
    return np.full(960, i, dtype=np.float32)


def test_waits_for_its_target_then_plays_in_order() -> None:
    jb = JitterBuffer(target_frames=3, max_target_frames=10, capacity_frames=20)
    jb.push(frame(0), 0)
    jb.push(frame(1), 0)
    assert jb.pop() is None and jb.underflows == 0  # still buffering: not an underflow
    jb.push(frame(2), 0)
    assert jb.state is JitterState.PLAYING
    assert [jb.pop()[0][0] for _ in range(3)] == [0, 1, 2]  # type: ignore[index]


def test_underflow_is_counted_and_the_target_grows() -> None:
    jb = JitterBuffer(target_frames=2, max_target_frames=8, capacity_frames=20)
    for i in range(2):
        jb.push(frame(i), 0)
    jb.pop()
    jb.pop()
    assert jb.pop() is None
    assert jb.underflows == 1
    assert jb.target_frames == 4
    assert jb.state is JitterState.BUFFERING


def test_overflow_drops_the_oldest_and_counts() -> None:
    jb = JitterBuffer(target_frames=1, max_target_frames=2, capacity_frames=4)
    for i in range(6):
        jb.push(frame(i), 0)
    assert jb.overflow_drops == 2
    assert jb.pop()[0][0] == 2  # type: ignore[index]


def test_a_startup_burst_is_trimmed_back_to_the_target() -> None:
    jb = JitterBuffer(target_frames=2, max_target_frames=10, capacity_frames=100)
    for i in range(12):  # the decoder's probe arrives as one burst
        jb.push(frame(i), 0)
    for i in range(12, 12 + JitterBuffer.WINDOW_FRAMES):  # then steady, one in, one out
        jb.pop()
        jb.push(frame(i), 0)
    assert jb.trimmed == 10
    assert len(jb) == 2
    # what plays next is the newest audio but one: latency is back to the target
    assert jb.pop()[0][0] == 12 + JitterBuffer.WINDOW_FRAMES - 2  # type: ignore[index]
