"""A programme made of parts played one after another: an alert's attention tone, its
message, the gap, the repeats. Pausable as a whole: preempted, it resumes in the same part at
the same frame."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from loa.core.pcm import FRAME_SAMPLES, SAMPLE_RATE, Samples
from loa.playout.programme import FrameSource

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
    """The attention signal: two tones alternating every 240 ms, with soft edges."""

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
        """The next frame of the alternating pair, faded in on the first frame and out on the
        last; None after ``seconds``."""
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
    """Parts played back to back, each opened one part ahead so a file part's reader has
    decoded its first second before the part before it ends (no gap at the join)."""

    pausable = True

    def __init__(self, parts: Sequence[PartFactory]) -> None:
        self._parts = list(parts)
        self._index = 0
        self._current: FrameSource | None = None
        self._next: FrameSource | None = None  # the part after the current one, opened early
        self.part_index = 0  # which part is playing, for status

    @property
    def available(self) -> bool:
        return True

    def read(self, now_ns: int) -> tuple[Samples, int] | None:
        """The current part's next frame; when a part ends it is closed and the next one (already
        opened) takes over in the same tick. None after the last part."""
        while self._index < len(self._parts):
            if self._current is None:
                self._current = self._next or self._parts[self._index]()
                self._next = None
                self.part_index = self._index
                if self._index + 1 < len(self._parts):
                    self._next = self._parts[self._index + 1]()
            got = self._current.read(now_ns)
            if got is not None:
                return got
            self._current.close()
            self._current = None
            self._index += 1
        return None

    async def ready(self) -> None:
        """The parts open now (this one and the next) have their next frame decoded."""
        for part in (self._current, self._next):
            await _ready(part)

    def close(self) -> None:
        """Close the open parts; the sequence then ends."""
        for part in (self._current, self._next):
            if part is not None:
                part.close()
        self._current = self._next = None
        self._index = len(self._parts)


class Pending:
    """A part whose content is still being prepared (text being read aloud, a file being
    checked): silence until ``resolve`` gives it the real part, which then plays from its
    start; ``fail`` ends it. ``on_first_frame(now_ns)`` is told when real audio first plays."""

    pausable = True
    available = True

    def __init__(self, on_first_frame: Callable[[int], None] | None = None) -> None:
        self._inner: FrameSource | None = None
        self._failed = False
        self._closed = False
        self._started = False
        self._on_first_frame = on_first_frame

    def resolve(self, part: FrameSource) -> None:
        """Give the real part (it plays from its start); closed already, the part is closed."""
        if self._closed:
            part.close()
        else:
            self._inner = part

    def fail(self) -> None:
        """Preparation failed: if still unresolved, the part ends at the next read."""
        self._failed = True

    def read(self, now_ns: int) -> tuple[Samples, int] | None:
        """Silence until resolved, then the real part's frames;
        None once it ends, or at once if failed or closed before resolving."""
        inner = self._inner
        if inner is None:
            if self._failed or self._closed:
                return None
            return np.zeros(FRAME_SAMPLES, dtype=np.float32), now_ns
        got = inner.read(now_ns)
        real: int | None = getattr(inner, "frames_read", None)  # a file's underruns are not
        if got is not None and not self._started and (real is None or real > 0):
            self._started = True
            if self._on_first_frame is not None:
                self._on_first_frame(now_ns)
        return got

    async def ready(self) -> None:
        """The real part's next frame is decoded (returns at once while still pending)."""
        await _ready(self._inner)

    def close(self) -> None:
        """Close it and the real part, if any; a later ``resolve`` closes its part at once."""
        self._closed = True
        if self._inner is not None:
            self._inner.close()


async def _ready(part: FrameSource | None) -> None:
    ready = getattr(part, "ready", None)
    if ready is not None:
        await ready()
