"""Programmes: distinct streams of canonical frames, each pulled once per clock tick.

A programme wraps a source. The engine pulls it while it is on air somewhere (pausable sources:
files, generated audio) or always (live sources, which keep running when preempted so a zone
rejoins at the live edge).
"""

from __future__ import annotations

import enum
import itertools
from typing import Protocol

from loa.codecs.pcm import FRAME_SAMPLES, SILENCE, Samples


class ProgrammeKind(enum.Enum):
    LIVE = "live"  # a station's push to a mount
    RELAY = "relay"  # pulling another station's stream (tiếp sóng)
    FILE = "file"
    GENERATOR = "generator"  # built-in tones: the demo chime, test signals
    IDLE = "idle"  # silence that keeps connections warm
    ALERT = "alert"  # an alert's tone, message and repeats


class FrameSource(Protocol):
    @property
    def available(self) -> bool:
        """Whether the source can play now (a mount with its encoder connected)."""
        ...

    @property
    def pausable(self) -> bool:
        """True: pulled only while on air, resumes where it stopped. False: always running."""
        ...

    def read(self, now_ns: int) -> tuple[Samples, int] | None:
        """The next frame and its capture time, or None once the source has ended for good."""
        ...

    def close(self) -> None: ...


_ids = itertools.count(1)


class Programme:
    """One distinct programme; its frame of the current tick is encoded once per codec."""

    __slots__ = (
        "id",
        "name",
        "kind",
        "source",
        "position_samples",
        "frame",
        "capture_ns",
        "finished",
        "pulled_at_ns",
        "reach",
        "message_reach",
        "first_pulled_ns",
        "message_started_ns",
        "completed",
        "release_reason",
    )

    def __init__(self, name: str, kind: ProgrammeKind, source: FrameSource) -> None:
        self.id = next(_ids)
        self.name = name
        self.kind = kind
        self.source = source
        self.position_samples = 0  # samples pulled so far: the programme's own timeline
        self.frame: Samples = SILENCE
        self.capture_ns = 0
        self.finished = False
        self.completed = False  # finished because its source ran out (not released)
        self.release_reason = ""  # why its last request was released, for the broadcast log
        self.pulled_at_ns = -1
        self.first_pulled_ns = 0  # the tick it first played (0: not yet)
        # endpoint id -> when its first packet of this programme was written (Clock ns);
        # None: not tracked (only alerts need proof of reach)
        self.reach: dict[str, int] | None = None
        # the same for the part after the attention tone (an alert's message): when its first
        # packet was written to each endpoint; message_started_ns is the tick it began (0: not yet)
        self.message_reach: dict[str, int] | None = None
        self.message_started_ns = 0

    @property
    def available(self) -> bool:
        return not self.finished and self.source.available

    @property
    def pausable(self) -> bool:
        return self.source.pausable

    def pull(self, now_ns: int) -> bool:
        """Take this tick's frame. Returns False when the programme has just ended."""
        if self.pulled_at_ns == now_ns:
            return not self.finished
        self.pulled_at_ns = now_ns
        if not self.first_pulled_ns:
            self.first_pulled_ns = now_ns
        got = self.source.read(now_ns)
        if got is None:
            self.finished = True
            self.completed = True
            self.frame = SILENCE
            return False
        self.frame, self.capture_ns = got
        self.position_samples += FRAME_SAMPLES
        return True

    def close(self) -> None:
        self.finished = True
        self.source.close()

    def describe(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind.value,
            "available": self.available,
            "finished": self.finished,
            "position_s": round(self.position_samples / 48_000, 3),
        }
