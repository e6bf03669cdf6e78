"""The buffer of an input that arrives faster than it plays: a file on a web server, HLS.

A live stream arrives in real time, and its jitter buffer (``live.LiveSource``) keeps its delay
small: it trims a backlog and, after an outage, cuts to the live edge. A file on a web server
has no live edge: the network delivers it as fast as it can, and every frame must play, once,
in order. HLS is alike: whole segments of several seconds arrive at once. ``PacedFrames`` is
the buffer of such an input:

- its writer (the relay) feeds the input only while the buffer holds less than
  ``lead_frames``: ``wait_room`` is the back-pressure, and the tick that takes a frame
  releases it, so the input is read no faster than real time plus that lead;
- nothing is trimmed or skipped: a slow network delays the audio (silence while the buffer is
  empty, counted in ``paced_underflows``), never loses it; after an underflow it gathers
  ``start_frames`` again (or the rest of an input that has ended) before it plays on, so a
  slow link stutters once rather than every frame;
- inputs follow one another (the entries of a playlist): a new input's frames queue behind
  what the previous one left, and one plays into the next without a gap;
- a writer that keeps to ``wait_room`` never overflows it; as a bound all the same, past
  ``capacity_frames`` the oldest frame is dropped and counted (``paced_overflow_drops``).

Everything here runs on the loop: the ingest's decoder thread hands frames over through it.
"""

from __future__ import annotations

import asyncio
from collections import deque

from loa.codecs.loudness import SlowAgc
from loa.core.clock import NS_PER_MS, Clock
from loa.core.counters import Counters
from loa.core.pcm import SILENCE, Samples
from loa.playout.inputs.live import LiveSettings

LEAD_FRAMES = 150  # 3 s decoded ahead of the clock: rides a 4G link's hiccups
START_FRAMES = 25  # 0.5 s gathered before playing, at the start and after an underflow
CAPACITY_FRAMES = 1500  # 30 s: never reached by a writer that waits for room


class PacedFrames:
    """Frames of an input that arrives faster than real time, played one a tick, all of them.

    The input side, as a ``LiveIngest`` drives it: ``connect`` (an input starts; frames still
    queued from the previous one stay ahead of it), ``push_frames``, then ``end`` (the input
    is over: the rest plays out) or ``disconnect`` (cut: the queue is dropped). The writer
    awaits ``wait_room`` before each piece of input. The clock's side: ``read`` (never None).
    Sizes are 20 ms frames; raises ValueError unless
    ``1 <= start_frames <= lead_frames <= capacity_frames``.
    """

    pausable = False

    def __init__(self, label: str, clock: Clock, counters: Counters, settings: LiveSettings,
                 *, lead_frames: int = LEAD_FRAMES, start_frames: int = START_FRAMES,
                 capacity_frames: int = CAPACITY_FRAMES) -> None:
        if not 1 <= start_frames <= lead_frames <= capacity_frames:
            raise ValueError("need 1 <= start_frames <= lead_frames <= capacity_frames")
        self.label = label
        self.lead_frames = lead_frames
        self.start_frames = start_frames
        self.capacity_frames = capacity_frames
        self._clock = clock
        self._counters = counters
        self._stall_ns = settings.stall_ms * NS_PER_MS
        self.agc = SlowAgc(settings.agc_target_lufs) if settings.agc_target_lufs is not None \
            else None
        self._frames: deque[Samples] = deque()
        self.connected = False  # an input is feeding it
        self.buffering = True  # gathering start_frames before playing
        self.frames_in = 0
        self.frames_out = 0  # real frames played (not underflow silence)
        self.underflows = 0
        self.overflow_drops = 0
        self.last_arrival_ns = 0
        self._room = asyncio.Event()
        self._room.set()
        self._waiters: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def available(self) -> bool:
        """Frames queued, or an input feeding it that has not stalled (``stall_ms``)."""
        if self._frames:
            return True
        return self.connected and self._clock.now_ns() - self.last_arrival_ns < self._stall_ns

    # the input's side

    def connect(self) -> None:
        """An input starts feeding; what the previous one left still plays first (with
        nothing left, it gathers its start frames again)."""
        self.connected = True
        if not self._frames:
            self.buffering = True
        self.last_arrival_ns = self._clock.now_ns()

    def push_frames(self, frames: list[Samples]) -> None:
        """Queue freshly decoded frames (ignored when no input is connected)."""
        if not self.connected:
            return
        queue = self._frames
        for samples in frames:
            queue.append(samples)
            if len(queue) > self.capacity_frames:
                queue.popleft()
                self.overflow_drops += 1
                self._counters.inc("paced_overflow_drops", source=self.label)
        self.frames_in += len(frames)
        self.last_arrival_ns = self._clock.now_ns()
        if len(queue) >= self.lead_frames:
            self._room.clear()
        if self._waiters and (not self.buffering or len(queue) >= self.start_frames):
            self._wake()

    def end(self) -> None:
        """The input is over: what it sent plays out to its last frame."""
        self.connected = False
        self._room.set()
        self._wake()

    def disconnect(self) -> None:
        """Cut (a relay stopped): nothing more plays, the queue is dropped."""
        self.connected = False
        self._frames.clear()
        self.buffering = True
        self._room.set()
        self._wake()

    def close(self) -> None:
        self.disconnect()

    async def wait_room(self) -> None:
        """Return once fewer than ``lead_frames`` are queued, or no input is connected."""
        while self.connected and len(self._frames) >= self.lead_frames:
            self._room.clear()
            await self._room.wait()

    async def ready(self) -> None:
        """Return once ``read`` would play a frame of the input rather than silence (a frame
        is queued and its start frames are in), or the input has gone. Only a driver faster
        than real time needs this: a test on a ``FakeClock``."""
        while self.connected and (not self._frames
                                  or self.buffering and len(self._frames) < self.start_frames):
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            await fut

    # the clock's side

    def read(self, now_ns: int) -> tuple[Samples, int]:
        """This tick's frame (AGC applied if set), or silence stamped ``now_ns`` while it
        gathers its start frames, on an underflow, or when nothing is queued."""
        queue = self._frames
        if queue and (not self.buffering or not self.connected
                      or len(queue) >= self.start_frames):
            self.buffering = False
            samples = queue.popleft()
            self.frames_out += 1
            if len(queue) < self.lead_frames:
                self._room.set()
            if self.agc is not None:
                samples = self.agc.process(samples)
            return samples, now_ns
        if self.connected and not self.buffering:  # ran dry while its input still comes
            self.buffering = True
            self.underflows += 1
            self._counters.inc("paced_underflows", source=self.label)
        return SILENCE, now_ns

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
