"""The schedule engine: slots become programme requests on the core's clock.

It sleeps on the injected clock until the next slot opens or a window closes, so a fake clock
runs a week of schedule in moments. Lateness (slot time to request) is measured per start.

The rules are expanded beside the loop (issue 10: the loop is sacred). On every wake the run
loop hands a snapshot of the items to a worker thread (``Clock.to_thread``), which works out
the slots due and when to wake next (``make_plan``); the loop only acts on that plan: it
starts the slots due, closes the windows that ended and sleeps until the next event.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from loa.control.schedule.recurrence import CACHE_SPAN, MAX_WINDOW_S, STATION_TZ, ScheduleItem
from loa.core.clock import WallClock

log = logging.getLogger(__name__)

IDLE_RECHECK = timedelta(minutes=10)  # with nothing due, look again this often
LATENESS_KEPT = 10_000  # starts whose lateness the metrics still see
# Slots are started up to and including ``now``: what is done ends just after it.
TICK = timedelta(microseconds=1)


@dataclass
class Running:
    """A slot that started and whose window has not closed yet."""

    item: ScheduleItem
    slot: datetime
    handle: object  # what start() returned (the engine request)


@dataclass(frozen=True)
class Plan:
    """What the engine acts on, worked out beside the loop (``make_plan``) from a snapshot.

    ``now``: the wall time planned for (aware). ``since``: the engine's done-until when the
    snapshot was taken. ``due``: every item of the snapshot, each with its slots from its own
    start time (``since``, or earlier for an item put while the last plan was worked out) up
    to and including ``now``, in order, often none. ``joined``: for the items just saved
    (``ScheduleEngine.put``), their slots from before that start time whose windows are
    still open at ``now`` (they start late, for what is left of the window). ``wake``: the
    soonest slot after ``now`` and before ``now`` + ``IDLE_RECHECK``, else that bound."""

    now: datetime
    since: datetime
    due: list[tuple[ScheduleItem, list[datetime]]]
    wake: datetime
    joined: list[tuple[ScheduleItem, list[datetime]]] = field(default_factory=list)


def make_plan(todo: list[tuple[ScheduleItem, datetime]], now: datetime, since: datetime,
              ahead: bool = True, joining: frozenset[str] = frozenset()) -> Plan:
    """Blocking (expands each rule; from the items' day caches once warm, so a plan over
    hundreds of items takes a few milliseconds): the plan for ``todo``, (item, the time its
    slots are due from) pairs, at ``now``. ``since``: the engine's done-until, kept in the
    plan. ``ahead``: also work out ``wake`` (else it is ``now`` + ``IDLE_RECHECK``).
    ``joining``: the ids of the items whose slots under way join late (``Plan.joined``)."""
    end = now + TICK
    due = [(item, item.slots(start, end)) for item, start in todo]
    joined = [(item, open_slots(item, start, now)) for item, start in todo
              if item.id in joining]
    wake = now + IDLE_RECHECK
    if ahead:
        wake = soonest_slot([(item, end) for item, _ in todo], wake)
    return Plan(now, since, due, wake, [(item, slots) for item, slots in joined if slots])


def open_slots(item: ScheduleItem, before: datetime, now: datetime) -> list[datetime]:
    """Blocking: the item's slots that began before ``before`` and whose windows are still
    open at ``now`` (a window lasts at most ``MAX_WINDOW_S``)."""
    return [slot for slot in item.slots(before - timedelta(seconds=MAX_WINDOW_S), before)
            if item.window(slot)[1] > now]


def soonest_slot(todo: Iterable[tuple[ScheduleItem, datetime]], cap: datetime) -> datetime:
    """Blocking: the earliest slot before ``cap`` of the items, each at or after its own time
    in ``todo`` ((item, after) pairs), else ``cap``. The same as the least of ``cap`` and each
    ``item.next_slot(after)``, but read from the items' day caches when ``cap`` is within a
    day: no search years ahead (seconds for a dense rule that starts late) for a slot that
    would not be the soonest anyway."""
    best = cap
    for item, after in todo:
        if after >= best:
            continue
        if best - after > CACHE_SPAN:  # only a done-until left far behind: search
            nxt = item.next_slot(after)
            if nxt is not None and nxt < best:
                best = nxt
            continue
        got = item.slots(after, best)
        if got:
            best = got[0]
    return best


class ScheduleEngine:
    """Turns the items' slots into calls of ``start(item, slot)`` as they open, and of
    ``close_window(running)`` when their windows end, on the wall time of ``wall`` (so the
    injected clock). Keeps the items by id, what runs, and each start's lateness (s).

    ``start`` and ``close_window`` are called on the loop; the rules are expanded beside it
    (``run``). Every slot starts once, none is skipped: a slot is due from the done-until
    time (just after the last plan's ``now``) on, and an item put while a plan was worked out
    has its slots taken from where that plan began.

    An item saved while one of its windows is open (``put`` with ``join``: a bulletin from
    10:00 to 11:00 saved at 10:10) starts that slot at once, late, and it ends with its
    window, as a slot missed during an outage plays late (``MissedPolicy.LATE``): what the
    operator saved for now plays now. A slot of the item already running is not started
    again (an item changed while it plays)."""

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
        # items put (new or replaced) while a plan was worked out, and the time their slots
        # are due from: the plan acted on never saw them
        self._behind: dict[str, datetime] = {}
        self._joining: set[str] = set()  # items put whose open windows a plan must look at
        self._changed = asyncio.Event()

    def put(self, item: ScheduleItem, *, join: bool = True) -> None:
        """Add or replace an item; the run loop re-plans at once. ``join``: a slot of it
        whose window is open now starts at once, late (an item saved by an operator); False
        for the items loaded at start-up, whose missed slots follow their ``MissedPolicy``."""
        self.items[item.id] = item
        if join:
            self._joining.add(item.id)
        else:
            self._joining.discard(item.id)
        self._changed.set()  # the next event may now be sooner

    def remove(self, item_id: str) -> None:
        """Forget an item (a window already running still closes on time); unknown ids are
        ignored."""
        self.items.pop(item_id, None)
        self._joining.discard(item_id)
        self._changed.set()

    def replan(self) -> None:
        """Wake the run loop to plan again: the wall clock was stepped."""
        self._changed.set()

    def start_late(self, item: ScheduleItem, slot: datetime, now: datetime) -> None:
        """A slot missed during an outage, started now (its window still ends on time)."""
        self.lateness_s.append((now - slot).total_seconds())
        self.running.append(Running(item, slot, self._start(item, slot)))

    def due(self, now: datetime) -> None:
        """Start every slot that opened in (done_until, now]; close windows that ended.
        Blocking (the rules are expanded here): for direct calls, such as a test that steps a
        fake clock frame by frame; ``run`` does the same with the expansion beside the loop."""
        self._act(make_plan(self._todo(), now, self._done_until, ahead=False,
                            joining=frozenset(self._joining)), now)

    def next_event(self, now: datetime) -> datetime:
        """When to wake next: the soonest slot still to start, or window to close, and at the
        latest ``now`` + 10 minutes. Blocking, as ``due``."""
        times = [soonest_slot(self._todo(), now + IDLE_RECHECK)]
        times += [r.item.window(r.slot)[1] for r in self.running]
        return min(times)

    def _todo(self) -> list[tuple[ScheduleItem, datetime]]:
        """A snapshot of the items, each with the time its slots are due from."""
        return [(item, self._behind.get(item.id, self._done_until))
                for item in self.items.values()]

    def _act(self, plan: Plan, now: datetime) -> None:
        """On the loop, without expanding anything: start the plan's slots of the items that
        are still there as planned (one removed or replaced meanwhile starts nothing from it),
        keep the items put meanwhile behind (their slots are due from where the plan began),
        move done-until past the plan's ``now`` and close the windows ended by ``now``."""
        planned = {id(item) for item, _ in plan.due}
        for item, slots in plan.joined:
            if self.items.get(item.id) is not item:
                continue  # removed or replaced while the plan was worked out
            for slot in slots:
                if any(r.item.id == item.id and r.slot == slot for r in self.running):
                    continue  # it plays already: the item was changed while it ran
                # not counted as lateness: the engine was not late, the item came late
                self.running.append(Running(item, slot, self._start(item, slot)))
                log.info("schedule %s (%s): slot %s started late, at %s: saved while its "
                         "window was open", item.id, item.title,
                         slot.astimezone(STATION_TZ).isoformat(),
                         now.astimezone(STATION_TZ).isoformat(timespec="seconds"))
        self._joining -= {item.id for item, _ in plan.due if self.items.get(item.id) is item}
        for item, slots in plan.due:
            if self.items.get(item.id) is not item:
                continue  # removed or replaced while the plan was worked out
            for slot in slots:
                self.lateness_s.append((now - slot).total_seconds())
                handle = self._start(item, slot)
                self.running.append(Running(item, slot, handle))
                log.info("schedule %s (%s): slot %s started", item.id, item.title,
                         slot.astimezone(STATION_TZ).isoformat())
        self._behind = {item.id: self._behind.get(item.id, plan.since)
                        for item in self.items.values() if id(item) not in planned}
        self._done_until = plan.now + TICK
        for run in [r for r in self.running if r.item.window(r.slot)[1] <= now]:
            self.running.remove(run)
            self._close_window(run)

    async def run(self) -> None:
        """Plan beside the loop, act on the plan on the loop, then sleep until the next slot
        or window end, or until the schedule changes. A plan is made from a snapshot of the
        items; when the items changed while it was worked out (``put``, ``remove``,
        ``replan``), the loop acts on it for the items that did not change and plans again at
        once. A plan is dropped whole if ``due`` was called directly meanwhile."""
        clock = self.wall.clock
        while True:
            self._changed.clear()
            since = self._done_until
            plan = await clock.to_thread(make_plan, self._todo(), self.wall.now(), since,
                                         True, frozenset(self._joining))
            if self._done_until != since:
                continue  # due() acted meanwhile: this plan could start its slots again
            self._act(plan, self.wall.now())
            if self._changed.is_set():
                continue  # what changed meanwhile is planned now
            wake = min([plan.wake, *(r.item.window(r.slot)[1] for r in self.running)])
            sleep = asyncio.ensure_future(clock.sleep_until(self.wall.ns_of(wake)))
            changed = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait({sleep, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleep.cancel()
                changed.cancel()
