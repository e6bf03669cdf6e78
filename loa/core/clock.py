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
from typing import Protocol

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000


class Clock(Protocol):
    def now_ns(self) -> int: ...

    async def sleep_until(self, deadline_ns: int) -> None: ...


class MonotonicClock:
    """Wall-independent real time (CLOCK_MONOTONIC), in nanoseconds."""

    def now_ns(self) -> int:
        return time.monotonic_ns()

    async def sleep_until(self, deadline_ns: int) -> None:
        """Sleep until ``deadline_ns``; past it, still yield once, so that a task running
        late (the master clock catching up) never keeps the loop from its other work."""
        delay_ns = deadline_ns - time.monotonic_ns()
        await asyncio.sleep(delay_ns / NS_PER_S if delay_ns > 0 else 0)


# Loop turns granted after each wake-up, at most, for the woken task to run and sleep again.
MAX_YIELDS_PER_WAKE = 20
SETTLE_YIELDS = 5


class FakeClock:
    """A clock that moves only when a test says so.

    ``advance`` wakes every sleeper whose deadline has passed, in deadline order, and lets each
    run before moving on, so code paced by this clock behaves as it would in real time.
    Work that real time would have let finish (a file reader decoding ahead) is awaited
    through ``settle`` hooks before each wake-up: ``clock.settle.append(engine.inputs_ready)``.
    """

    def __init__(self, start_ns: int = 1_000 * NS_PER_S) -> None:
        self.settle: list[Callable[[], Awaitable[None]]] = []
        self._now_ns = start_ns
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now_ns(self) -> int:
        return self._now_ns

    async def sleep_until(self, deadline_ns: int) -> None:
        if deadline_ns <= self._now_ns:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline_ns, next(self._seq), fut))
        await fut

    async def advance(self, delta_ns: int) -> None:
        """Move time forward by ``delta_ns``, waking sleepers on the way."""
        target_ns = self._now_ns + delta_ns
        for _ in range(SETTLE_YIELDS):  # tasks started just now get to arm their sleeps
            await asyncio.sleep(0)
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
            armed = len(self._sleepers)
            for _ in range(MAX_YIELDS_PER_WAKE):
                await asyncio.sleep(0)
                if len(self._sleepers) > armed:
                    break
        self._now_ns = target_ns

    def set_ns(self, now_ns: int) -> None:
        """Jump without waking anyone (for pure-core tests that pass time explicitly)."""
        self._now_ns = now_ns
