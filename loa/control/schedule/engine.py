"""The schedule engine: slots become programme requests on the core's clock.

It sleeps on the injected clock until the next slot opens or a window closes, so a fake clock
runs a week of schedule in moments. Lateness (slot time to request) is measured per start.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from loa.control.schedule.recurrence import STATION_TZ, ScheduleItem
from loa.core.clock import WallClock

log = logging.getLogger(__name__)

IDLE_RECHECK = timedelta(minutes=10)  # with nothing due, look again this often
LATENESS_KEPT = 10_000  # starts whose lateness the metrics still see


@dataclass
class Running:
    """A slot that started and whose window has not closed yet."""

    item: ScheduleItem
    slot: datetime
    handle: object  # what start() returned (the engine request)


class ScheduleEngine:
    """Turns the items' slots into calls of ``start(item, slot)`` as they open, and of
    ``close_window(running)`` when their windows end, on the wall time of ``wall`` (so the
    injected clock). Keeps the items by id, what runs, and each start's lateness (s)."""

    def __init__(self, wall: WallClock,
                 start: Callable[[ScheduleItem, datetime], object],
                 close_window: Callable[[Running], None]) -> None:
        self.wall = wall
        self._start = start
        self._close_window = close_window
        self.items: dict[str, ScheduleItem] = {}
        self.running: list[Running] = []
        self.lateness_s: deque[float] = deque(maxlen=LATENESS_KEPT)  # the latest starts
        self._done_until = wall.now()
        self._changed = asyncio.Event()

    def put(self, item: ScheduleItem) -> None:
        """Add or replace an item; the run loop re-plans at once."""
        self.items[item.id] = item
        self._changed.set()  # the next event may now be sooner

    def remove(self, item_id: str) -> None:
        """Forget an item (a window already running still closes on time); unknown ids are
        ignored."""
        self.items.pop(item_id, None)
        self._changed.set()

    def replan(self) -> None:
        """Wake the run loop to plan again: the wall clock was stepped."""
        self._changed.set()

    def start_late(self, item: ScheduleItem, slot: datetime, now: datetime) -> None:
        """A slot missed during an outage, started now (its window still ends on time)."""
        self.lateness_s.append((now - slot).total_seconds())
        self.running.append(Running(item, slot, self._start(item, slot)))

    def due(self, now: datetime) -> None:
        """Start every slot that opened in (done_until, now]; close windows that ended."""
        for item in self.items.values():
            for slot in item.slots(self._done_until, now + timedelta(microseconds=1)):
                if slot < self._done_until:
                    continue
                self.lateness_s.append((now - slot).total_seconds())
                handle = self._start(item, slot)
                self.running.append(Running(item, slot, handle))
                log.info("schedule %s (%s): slot %s started", item.id, item.title,
                         slot.astimezone(STATION_TZ).isoformat())
        self._done_until = now + timedelta(microseconds=1)
        for run in [r for r in self.running if r.item.window(r.slot)[1] <= now]:
            self.running.remove(run)
            self._close_window(run)

    def next_event(self, now: datetime) -> datetime:
        """When to wake next: the soonest slot still to start, or window to close, and at the
        latest ``now`` + 10 minutes."""
        times = [now + IDLE_RECHECK]
        for item in self.items.values():
            nxt = item.next_slot(self._done_until)
            if nxt is not None:
                times.append(nxt)
        times += [r.item.window(r.slot)[1] for r in self.running]
        return min(times)

    async def run(self) -> None:
        """Sleep until the next slot or window end, or until the schedule changes."""
        clock = self.wall.clock
        while True:
            now = self.wall.now()
            self.due(now)
            self._changed.clear()
            sleep = asyncio.ensure_future(clock.sleep_until(self.wall.ns_of(self.next_event(now))))
            changed = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait({sleep, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleep.cancel()
                changed.cancel()
