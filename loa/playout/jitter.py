"""The bounded jitter buffer between a live input and the master clock."""

from __future__ import annotations

import enum
from collections import deque

from loa.core.pcm import FRAME_NS, Samples


class JitterState(enum.Enum):
    """BUFFERING until the buffer holds its target depth, then PLAYING until an underflow."""

    BUFFERING = "buffering"  # waiting for `target_frames` before playing
    PLAYING = "playing"


class JitterBuffer:
    """Frames pushed as they arrive, popped one per clock tick.

    - Underflow (empty while playing): the tick gets ``None`` (the caller plays silence) and
      the buffer re-buffers. When audio comes back, the target grows to cover the gap just
      seen (at least one frame more, at most ``max_target_frames``): a hiccup costs a frame or
      two of latency, while a source that arrives in bursts (an Ogg encoder flushing a page a
      second) settles after a single underflow.
    - Overflow (more than ``capacity_frames`` queued): the oldest frames are dropped, which
      bounds the delay a burst can add.
    - Drift: a burst at start-up (the decoder's probe) would otherwise leave the buffer deeper
      than its target for good, every frame late by the excess. So once per window, if the
      buffer never went below ``target + 1`` frames, the excess oldest frames are trimmed.
    - Calm: after ``CALM_WINDOWS`` windows without an underflow, the target steps back down by
      one frame, towards its initial value.
    """

    WINDOW_FRAMES = 50  # 1 s of ticks
    CALM_WINDOWS = 5

    def __init__(self, target_frames: int, max_target_frames: int, capacity_frames: int) -> None:
        if not 1 <= target_frames <= max_target_frames <= capacity_frames:
            raise ValueError("need 1 <= target <= max_target <= capacity")
        self.initial_target_frames = target_frames
        self.target_frames = target_frames
        self.max_target_frames = max_target_frames
        self.capacity_frames = capacity_frames
        self._frames: deque[tuple[Samples, int]] = deque()
        self.state = JitterState.BUFFERING
        self.underflows = 0  # ticks that found the buffer empty while playing
        self.overflow_drops = 0  # frames dropped, oldest first
        self.trimmed = 0  # frames dropped to bring a drifted-deep buffer back to its target
        self._window_pops = 0
        self._window_min = capacity_frames
        self._calm_windows = 0
        self._underflow_since_ns: int | None = None

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, samples: Samples, arrival_ns: int) -> None:
        """Queue one frame (960 float32 samples) that arrived at ``arrival_ns``. After an
        underflow, the first frame back raises the target to cover the gap; past
        ``capacity_frames`` the oldest frame is dropped and counted."""
        if self._underflow_since_ns is not None:
            gap_frames = -(-(arrival_ns - self._underflow_since_ns) // FRAME_NS)  # ceil
            self.target_frames = min(max(self.target_frames + 1, gap_frames + 1),
                                     self.max_target_frames)
            self._underflow_since_ns = None
        frames = self._frames
        frames.append((samples, arrival_ns))
        if len(frames) > self.capacity_frames:
            frames.popleft()
            self.overflow_drops += 1
        if self.state is JitterState.BUFFERING and len(frames) >= self.target_frames:
            self.state = JitterState.PLAYING

    def pop(self, now_ns: int) -> tuple[Samples, int] | None:
        """This tick's frame and its arrival time, or None while buffering or on underflow
        (the caller plays silence). Once a window (50 pops), trims a drifted-deep buffer and
        relaxes the target."""
        if self.state is JitterState.BUFFERING:
            return None
        frames = self._frames
        if not frames:
            self.underflows += 1
            self.state = JitterState.BUFFERING
            self._underflow_since_ns = now_ns
            self._calm_windows = 0
            self._start_window()
            return None
        got = frames.popleft()
        depth = len(frames)
        if depth < self._window_min:
            self._window_min = depth
        self._window_pops += 1
        if self._window_pops >= self.WINDOW_FRAMES:
            self._end_window()
        return got

    def _start_window(self) -> None:
        self._window_pops = 0
        self._window_min = self.capacity_frames

    def _end_window(self) -> None:
        # depth is measured after a pop, so a buffer at its target bottoms out at target - 1.
        excess = self._window_min - (self.target_frames - 1)
        if excess > 0:
            for _ in range(excess):
                self._frames.popleft()
            self.trimmed += excess
        self._calm_windows += 1
        if self._calm_windows >= self.CALM_WINDOWS:
            self._calm_windows = 0
            self.target_frames = max(self.initial_target_frames, self.target_frames - 1)
        self._start_window()

    def reset(self) -> None:
        """Forget everything (a source left); the next one starts from the initial target."""
        self._frames.clear()
        self.state = JitterState.BUFFERING
        self.target_frames = self.initial_target_frames
        self._calm_windows = 0
        self._underflow_since_ns = None
        self._start_window()
