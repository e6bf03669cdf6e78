"""Programmes: distinct streams of canonical frames, each pulled once per clock tick.

A programme wraps a source. The engine pulls it while it is on air somewhere (pausable sources:
files, generated audio) or always (live sources, which keep running when preempted so a zone
rejoins at the live edge).
"""

from __future__ import annotations

import enum
import itertools
from typing import Protocol

from loa.core.pcm import FRAME_SAMPLES, SAMPLE_RATE, SILENCE, Samples


class ProgrammeKind(enum.Enum):
    """Where a programme's frames come from; the status pages and the broadcast log show it."""

    LIVE = "live"  # a station's push to a mount
    RELAY = "relay"  # pulling another station's stream (tiếp sóng)
    FILE = "file"
    GENERATOR = "generator"  # built-in tones: the demo chime, test signals
    IDLE = "idle"  # silence that keeps connections warm
    ALERT = "alert"  # an alert's tone, message and repeats


class EndReason(enum.StrEnum):
    """Why a request or a programme's time on air ended: the values are the broadcast log's
    ``end_reason`` (stored as they are) and what request callbacks are told."""

    COMPLETED = "completed"  # its source ran out: played in full
    RELEASED = "released"  # an operator (or the API) released its request
    PREEMPTED = "preempted"  # a higher priority took the zone
    CANCELLED = "cancelled"  # released before it finished (an alert's cancel, an operator)
    CUT_SHORT = "cut short"  # its schedule window closed before it could finish
    FAILED = "failed"  # a live source dropped or stalled
    EXPIRED = "expired"  # an alert's expiry came while it still played
    STOPPED = "stopped"  # the broadcast log was closed
    SERVER_STOPPED = "server stopped"  # the server shut down while it played
    # the server ended without closing the log (killed, crashed, its power cut): closed at
    # its next start, at the last second it was seen on air
    UNCLEAN_STOP = "unclean stop"


class FrameSource(Protocol):
    """What a programme plays from: canonical frames (960 float32 samples, 48 kHz mono)
    read once per tick, with the capture time in ns on the engine's clock."""

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
        # why its last request was released, for the broadcast log (None: not released)
        self.release_reason: EndReason | None = None
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
        """Mark the programme finished and close its source."""
        self.finished = True
        self.source.close()

    def describe(self) -> dict[str, object]:
        """Status snapshot; ``position_s`` is the programme's own timeline in seconds."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind.value,
            "available": self.available,
            "finished": self.finished,
            "position_s": round(self.position_samples / SAMPLE_RATE, 3),
        }
