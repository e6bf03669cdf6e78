"""A programme made of parts played one after another: an alert's attention tone, its
message, the gap, the repeats. Pausable as a whole: preempted, it resumes in the same part at
the same frame."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from loa.codecs.pcm import FRAME_SAMPLES, SAMPLE_RATE, Samples
from loa.server.programme import FrameSource

PartFactory = Callable[[], FrameSource]  # opened when the part starts, not before


class SilenceFor:
    """``frames`` of silence, then the end."""

    pausable = True
    available = True

    def __init__(self, frames: int) -> None:
        self._left = frames

    def read(self, now_ns: int) -> tuple[Samples, int] | None:
        if self._left <= 0:
            return None
        self._left -= 1
        return np.zeros(FRAME_SAMPLES, dtype=np.float32), now_ns

    def close(self) -> None:
        pass


class TwoTone:
    """The attention signal: two tones alternating every 250 ms, with soft edges."""

    pausable = True
    available = True
    FREQS_HZ = (853.0, 960.0)  # the two-tone pair of broadcast emergency alerting
    SWITCH_FRAMES = 12  # 240 ms

    def __init__(self, seconds: float, level: float = 0.5) -> None:
        self._frames = int(seconds * SAMPLE_RATE / FRAME_SAMPLES)
        self._i = 0
        self._phase = 0.0
        self.level = level

    def read(self, now_ns: int) -> tuple[Samples, int] | None:
        if self._i >= self._frames:
            return None
        freq = self.FREQS_HZ[(self._i // self.SWITCH_FRAMES) % 2]
        step = 2 * np.pi * freq / SAMPLE_RATE
        phases = self._phase + step * np.arange(1, FRAME_SAMPLES + 1)
        self._phase = float(phases[-1] % (2 * np.pi))
        out = (self.level * np.sin(phases)).astype(np.float32)
        if self._i == 0:
            out *= np.linspace(0, 1, FRAME_SAMPLES, dtype=np.float32)
        elif self._i == self._frames - 1:
            out *= np.linspace(1, 0, FRAME_SAMPLES, dtype=np.float32)
        self._i += 1
        return out, now_ns

    def close(self) -> None:
        pass


class SequenceSource:
    pausable = True

    def __init__(self, parts: Sequence[PartFactory]) -> None:
        self._parts = list(parts)
        self._index = 0
        self._current: FrameSource | None = None
        self.part_index = 0  # which part is playing, for status

    @property
    def available(self) -> bool:
        return True

    def read(self, now_ns: int) -> tuple[Samples, int] | None:
        while self._index < len(self._parts):
            if self._current is None:
                self._current = self._parts[self._index]()
                self.part_index = self._index
            got = self._current.read(now_ns)
            if got is not None:
                return got
            self._current.close()
            self._current = None
            self._index += 1
        return None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None
        self._index = len(self._parts)
