"""A live source: frames pushed by a decoder thread, drained one per tick via a jitter buffer."""

from __future__ import annotations

from loa.clock import Clock
from loa.codecs.pcm import SILENCE, Samples
from loa.monitoring.counters import Counters
from loa.server.jitter import JitterBuffer


class LiveSource:
    """The receiving end of a push or relay. Connected = available; never finishes by itself."""

    pausable = False

    def __init__(
        self,
        label: str,
        clock: Clock,
        counters: Counters,
        *,
        target_frames: int,
        max_target_frames: int,
        capacity_frames: int,
    ) -> None:
        self.label = label
        self._clock = clock
        self._counters = counters
        self.jitter = JitterBuffer(target_frames, max_target_frames, capacity_frames)
        self.connected = False
        self.frames_in = 0
        self._underflows_seen = 0
        self._overflows_seen = 0
        self._trimmed_seen = 0

    @property
    def available(self) -> bool:
        return self.connected

    def connect(self) -> None:
        self.jitter.reset()
        self.connected = True

    def disconnect(self) -> None:
        self.connected = False
        self.jitter.reset()

    def push_frames(self, frames: list[Samples]) -> None:
        """Called on the loop with freshly decoded frames; stamps their arrival."""
        if not self.connected:
            return
        now_ns = self._clock.now_ns()
        for samples in frames:
            self.jitter.push(samples, now_ns)
        self.frames_in += len(frames)
        self._sync_counters()

    def read(self, now_ns: int) -> tuple[Samples, int] | None:
        got = self.jitter.pop(now_ns) if self.connected else None
        if got is None:
            self._sync_counters()
            return SILENCE, now_ns
        if self.jitter.trimmed != self._trimmed_seen:
            self._sync_counters()
        return got

    def _sync_counters(self) -> None:
        jb = self.jitter
        if jb.underflows != self._underflows_seen:
            self._counters.inc("jitter_underflows", jb.underflows - self._underflows_seen,
                               source=self.label)
            self._underflows_seen = jb.underflows
        if jb.overflow_drops != self._overflows_seen:
            self._counters.inc("jitter_overflow_drops", jb.overflow_drops - self._overflows_seen,
                               source=self.label)
            self._overflows_seen = jb.overflow_drops
        if jb.trimmed != self._trimmed_seen:
            self._counters.inc("jitter_trimmed", jb.trimmed - self._trimmed_seen,
                               source=self.label)
            self._trimmed_seen = jb.trimmed

    def close(self) -> None:
        self.disconnect()
