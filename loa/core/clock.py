"""The one clock of the media path.

Everything that paces audio or schedules work asks a `Clock` for the time and sleeps on it, so
tests can swap in a `FakeClock` and run hours of programme in milliseconds.

The real clock reads ``time.monotonic_ns()`` rather than ``loop.time()``: uvloop caches its loop
time once per iteration at millisecond resolution, which is too coarse to measure the
milliseconds the server adds to a packet.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo
from typing import Any, ParamSpec, Protocol, TypeVar
from zoneinfo import ZoneInfo

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
# The station's local time: the calendar's, and what a time written without a UTC offset
# (a CAP message's, an operator's) is read in.
STATION_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

P = ParamSpec("P")
T = TypeVar("T")


class Clock(Protocol):
    def now_ns(self) -> int: ...

    async def sleep_until(self, deadline_ns: int) -> None: ...

    async def to_thread(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
                        ) -> T: ...


class MonotonicClock:
    """Wall-independent real time (CLOCK_MONOTONIC), in nanoseconds."""

    def now_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep_until(self, deadline_ns: int) -> None:
        """Sleep until ``deadline_ns``; past it, still yield once, so that a task running
        late (the master clock catching up) never keeps the loop from its other work."""
        delay_ns = deadline_ns - time.monotonic_ns()
        await asyncio.sleep(delay_ns / NS_PER_S if delay_ns > 0 else 0)

    async def to_thread(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
                        ) -> T:
        """``func(*args, **kwargs)`` in a worker thread (``asyncio.to_thread``): blocking
        work that paced code waits for, beside the loop."""
        return await asyncio.to_thread(func, *args, **kwargs)


# Loop turns granted after each wake-up, at most, for the woken task to run and sleep again.
MAX_YIELDS_PER_WAKE = 20
SETTLE_YIELDS = 5


class FakeClock:
    """A clock that moves only when a test says so.

    ``advance`` wakes every sleeper whose deadline has passed, in deadline order, and lets each
    run before moving on, so code paced by this clock behaves as it would in real time.
    Work that real time would have let finish (a file reader decoding ahead) is awaited
    through ``settle`` hooks before each wake-up: ``clock.settle.append(engine.inputs_ready)``.
    Work handed to ``to_thread`` stops time until it returns: ``advance`` waits for it (and
    gives its caller fresh loop turns to act on the result) before it moves on, so paced code
    that plans beside the loop stays deterministic.
    """

    def __init__(self, start_ns: int = 1_000 * NS_PER_S) -> None:
        self.settle: list[Callable[[], Awaitable[None]]] = []
        self._now_ns = start_ns
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._beside: set[asyncio.Future[Any]] = set()  # to_thread calls not returned yet

    def now_ns(self) -> int:
        return self._now_ns

    async def sleep_until(self, deadline_ns: int) -> None:
        if deadline_ns <= self._now_ns:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline_ns, next(self._seq), fut))
        await fut

    async def to_thread(self, func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
                        ) -> T:
        """``asyncio.to_thread``, while time stands still: ``advance`` waits for it."""
        fut = asyncio.ensure_future(asyncio.to_thread(func, *args, **kwargs))
        self._beside.add(fut)
        fut.add_done_callback(self._beside.discard)
        return await fut

    async def _yield(self, turns: int, armed: int | None = None) -> None:
        """Up to ``turns`` loop turns for the tasks, a fresh count after each wait for work
        in a thread (its caller acts on the result next); done early once a sleeper more than
        ``armed`` is waiting."""
        left = turns
        while left > 0:
            await asyncio.sleep(0)
            left -= 1
            if self._beside:
                await asyncio.wait(set(self._beside))
                left = turns
            if armed is not None and len(self._sleepers) > armed:
                return

    async def advance(self, delta_ns: int) -> None:
        """Move time forward by ``delta_ns``, waking sleepers on the way."""
        target_ns = self._now_ns + delta_ns
        await self._yield(SETTLE_YIELDS)  # tasks started just now get to arm their sleeps
        while self._sleepers and self._sleepers[0][0] <= target_ns:
            deadline_ns, _, fut = heapq.heappop(self._sleepers)
            self._now_ns = max(self._now_ns, deadline_ns)
            if fut.done():
                continue  # its sleeper gave up waiting (cancelled)
            for hook in self.settle:
                await hook()
            fut.set_result(None)
            # Let the woken task (and whatever it wakes) run before time moves on: until it
            # sleeps again, or a bounded number of loop turns if it does not.
            await self._yield(MAX_YIELDS_PER_WAKE, armed=len(self._sleepers))
        self._now_ns = target_ns

    def set_ns(self, now_ns: int) -> None:
        """Jump without waking anyone (for pure-core tests that pass time explicitly)."""
        self._now_ns = now_ns


class WallClock:
    """Wall time (aware datetimes in ``tz``, or unix seconds) read off the pipeline's clock,
    so that a ``FakeClock`` moves the calendar too; the one wall clock of the server.

    It is anchored on the system's real-time clock (``system``: unix seconds, ``time.time``)
    when made, and ``correct()`` re-anchors it when the two have drifted apart by more than
    ``max_drift_s`` (NTP stepping the system clock, a VM resumed after a pause, the monotonic
    clock's own drift over weeks). ``system=None`` never corrects (tests on a fake clock).
    """

    def __init__(self, clock: Clock, tz: tzinfo, *,
                 system: Callable[[], float] | None = time.time, max_drift_s: float = 0.5,
                 start: datetime | None = None) -> None:
        self.clock = clock
        self.tz = tz
        self._system = system
        self._max_drift_ns = int(max_drift_s * NS_PER_S)
        self.steps = 0  # corrections made
        self.last_step_s = 0.0  # the last correction, s (+: the wall clock jumped forward)
        wall = start if start is not None else datetime.fromtimestamp(
            (system or time.time)(), tz)
        self._anchor_ns = clock.now_ns()
        self._anchor_unix_ns = int(wall.timestamp() * NS_PER_S)

    def now(self) -> datetime:
        """Wall time now, as the pipeline's clock has advanced since the anchor."""
        return self.at(self.clock.now_ns())

    def timestamp(self) -> float:
        """Now, in unix seconds."""
        return self.unix_ns(self.clock.now_ns()) / NS_PER_S

    def unix_ns(self, ns: int) -> int:
        """The unix time (ns) of a clock reading."""
        return self._anchor_unix_ns + (ns - self._anchor_ns)

    def at(self, ns: int) -> datetime:
        """The wall time of a clock reading (ns), in ``tz``."""
        return datetime.fromtimestamp(self.unix_ns(ns) / NS_PER_S, self.tz)

    def ns_of(self, when: datetime) -> int:
        """The clock reading (ns) at which a wall time falls: what the schedule sleeps until."""
        return self._anchor_ns + round(when.timestamp() * NS_PER_S) - self._anchor_unix_ns

    def correct(self) -> float:
        """Compare with the system clock; past ``max_drift_s``, re-anchor on it. Returns the
        step made (s; 0.0 when none). Whoever sleeps until a wall time must re-plan after a
        step (the schedule does)."""
        if self._system is None:
            return 0.0
        now_ns = self.clock.now_ns()
        drift = int(self._system() * NS_PER_S) - self.unix_ns(now_ns)
        if abs(drift) <= self._max_drift_ns:
            return 0.0
        self._anchor_ns, self._anchor_unix_ns = now_ns, self.unix_ns(now_ns) + drift
        self.steps += 1
        self.last_step_s = drift / NS_PER_S
        return self.last_step_s
