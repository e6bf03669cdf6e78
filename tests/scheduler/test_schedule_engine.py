"""A week of recurring schedules on a fake clock, in the station's local time."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from loa.control.schedule.engine import ScheduleEngine
from loa.control.schedule.recurrence import (
    STATION_TZ,
    BulletinClass,
    ScheduleError,
    ScheduleItem,
    conflicts,
    local,
)
from loa.core.clock import NS_PER_S, FakeClock, WallClock
from loa.core.content import ToneContent


def item(id_: str, start: str, rule: str | None, minutes: float = 15,
         cls: BulletinClass = BulletinClass.NORMAL, zones: list[str] | None = None
         ) -> ScheduleItem:
    return ScheduleItem(id_, id_, zones or ["an-binh"], local(start), minutes * 60,
                        ToneContent(), rule, cls)


async def test_a_week_of_recurring_items_starts_on_local_time_in_moments() -> None:
    clock = FakeClock(start_ns=0)
    monday = local("2026-11-30T00:00")  # a Monday, in Asia/Ho_Chi_Minh
    wall = WallClock(clock, STATION_TZ, system=None, start=monday)
    started: list[tuple[str, datetime]] = []
    closed: list[str] = []
    engine = ScheduleEngine(wall, lambda it, slot: started.append((it.id, wall.now())),
                            lambda run: closed.append(run.item.id))
    engine.put(item("morning", "2026-11-30T06:00", "FREQ=DAILY"))
    engine.put(item("evening", "2026-11-30T17:30", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"))
    engine.put(item("vov", "2026-12-02T19:00", None, minutes=60))  # once, Wednesday
    engine.put(item("count", "2026-11-30T11:00", "FREQ=DAILY;COUNT=3", minutes=5))
    task = asyncio.create_task(engine.run())
    await asyncio.sleep(0)
    await clock.advance(7 * 24 * 3600 * NS_PER_S)  # a week
    task.cancel()

    by_id: dict[str, list[str]] = {}
    for id_, when in started:
        by_id.setdefault(id_, []).append(when.astimezone(STATION_TZ).strftime("%a %H:%M"))
    assert by_id["morning"] == [f"{d} 06:00" for d in
                                ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")]
    assert by_id["evening"] == [f"{d} 17:30" for d in ("Mon", "Tue", "Wed", "Thu", "Fri")]
    assert by_id["vov"] == ["Wed 19:00"]
    assert by_id["count"] == ["Mon 11:00", "Tue 11:00", "Wed 11:00"]
    # every item started on its slot, to the microsecond, and its window closed
    assert max(engine.lateness_s) < 1e-3
    assert sorted(closed) == sorted(i for i, _ in started)
    # and 06:00 in Hà Nội is 23:00 UTC the day before
    first = started[0][1]
    assert first.astimezone(STATION_TZ).hour == 6 and first.utcoffset() == timedelta(hours=7)


async def test_a_draft_never_starts() -> None:
    """An item imported without zones or content is in the engine (and the list) but has no
    slot until both are set."""
    clock = FakeClock(start_ns=0)
    wall = WallClock(clock, STATION_TZ, system=None, start=local("2026-11-30T00:00"))
    started: list[str] = []
    engine = ScheduleEngine(wall, lambda it, slot: started.append(it.id), lambda run: None)
    draft = ScheduleItem("draft", "Họp thôn", [], local("2026-11-30T06:00"), 600, None,
                         "FREQ=DAILY")
    engine.put(draft)
    engine.put(item("ready", "2026-11-30T06:00", "FREQ=DAILY"))
    task = asyncio.create_task(engine.run())
    await asyncio.sleep(0)
    await clock.advance(2 * 24 * 3600 * NS_PER_S)
    task.cancel()
    assert draft.draft and started == ["ready", "ready"]
    assert engine.next_event(wall.now()) <= local("2026-12-02T06:00")


def test_conflicts_are_found_when_saving() -> None:
    def overlap(a: list[str], b: list[str]) -> bool:
        tree = {"an-binh": {"an-binh", "an-binh-1", "an-binh-2"}, "an-binh-1": {"an-binh-1"},
                "phu-my": {"phu-my"}}
        return any(x in tree.get(y, {y}) or y in tree.get(x, {x}) for x in a for y in b)

    now = local("2026-11-30T00:00")
    daily = item("daily", "2026-11-30T06:00", "FREQ=DAILY", minutes=30)
    clash = item("clash", "2026-12-03T06:15", None, minutes=10, zones=["an-binh-1"])
    other_zone = item("other", "2026-12-03T06:15", None, zones=["phu-my"])
    higher = item("prio", "2026-12-03T06:15", None, cls=BulletinClass.PRIORITY)
    later = item("later", "2026-12-03T06:30", None)
    found = conflicts(clash, [daily, other_zone, higher, later], overlap, now)
    assert [c["item"] for c in found] == ["daily"]
    assert conflicts(later, [daily], overlap, now) == []  # back to back is no conflict


def test_bad_items_are_clear_errors() -> None:
    with pytest.raises(ScheduleError, match="recurrence"):
        item("x", "2026-11-30T06:00", "FREQ=SOMETIMES")
    with pytest.raises(ScheduleError, match="time zone"):
        ScheduleItem("x", "x", ["a"], datetime(2026, 11, 30, 6), 60, ToneContent(), None)
    with pytest.raises(ScheduleError, match="duration"):
        item("x", "2026-11-30T06:00", None, minutes=0)


def test_ical_round_trip_and_foreign_events() -> None:
    from loa.control.schedule.ical import export_ics, import_ics

    items = [item("morning", "2026-11-30T06:00", "FREQ=WEEKLY;BYDAY=MO,WE,FR", minutes=20),
             item("once", "2026-12-24T19:30", None, cls=BulletinClass.PRIORITY)]
    ics = export_ics(items, local("2026-11-29T12:00"))
    assert b"TZID=Asia/Ho_Chi_Minh:20261130T060000" in ics
    back, refused = import_ics(ics)
    assert refused == []
    assert [(i.id, i.title, i.start, i.duration_s, i.rrule, i.cls, i.zones) for i in back] == [
        (i.id, i.title, i.start, i.duration_s, i.rrule, i.cls, i.zones) for i in items]
    foreign = (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:a\r\n"
               b"SUMMARY:Hop thon\r\nDTSTART:20261201T080000\r\nDTEND:20261201T090000\r\n"
               b"END:VEVENT\r\nEND:VCALENDAR\r\n")
    (got,), refused = import_ics(foreign)
    # a draft: kept, with no zones or content yet, and no slot until it has both
    assert refused == [] and got.draft and got.zones == [] and got.content is None
    assert got.start == local("2026-12-01T08:00") and got.duration_s == 3600


def test_chosen_dates_and_exceptions() -> None:
    from loa.control.schedule.ical import export_ics, import_ics

    chosen = item("chosen", "2026-12-01T06:00", "RDATE:20261203T060000,20261210T060000")
    # the start is always the first slot (RFC 5545 §3.8.5.3), as calendar apps show it
    assert [s.strftime("%d %H:%M") for s in chosen.slots(local("2026-11-30T00:00"),
                                                         local("2026-12-31T00:00"))] == [
        "01 06:00", "03 06:00", "10 06:00"]
    weekdays_but = item("except", "2026-11-30T17:30",
                        "RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR\nEXDATE:20261202T173000")
    days = [s.strftime("%a") for s in weekdays_but.slots(local("2026-11-30T00:00"),
                                                         local("2026-12-05T00:00"))]
    assert days == ["Mon", "Tue", "Thu", "Fri"]
    back, refused = import_ics(export_ics([chosen, weekdays_but], local("2026-11-29T12:00")))
    assert refused == [] and [b.rrule for b in back] == [chosen.rrule, weekdays_but.rrule]


async def test_a_stepped_wall_clock_moves_the_schedule_with_it() -> None:
    """NTP steps the system clock 30 s ahead: the wall clock follows once it has drifted past
    half a second, and the 06:01 slot starts at the new 06:01, not 30 s late."""
    clock = FakeClock(start_ns=0)
    system = [local("2026-11-30T06:00").timestamp()]  # the system's real-time clock, s
    wall = WallClock(clock, STATION_TZ, system=lambda: system[0])
    started: list[datetime] = []
    engine = ScheduleEngine(wall, lambda it, slot: started.append(wall.now()),
                            lambda run: None)
    engine.put(item("bulletin", "2026-11-30T06:01", None, minutes=5))
    task = asyncio.create_task(engine.run())
    await asyncio.sleep(0)
    await clock.advance(10 * NS_PER_S)
    system[0] += 10.4  # 0.4 s of drift: left alone
    assert wall.correct() == 0.0 and wall.steps == 0
    system[0] += 30.0  # the step
    assert wall.correct() == pytest.approx(30.4, abs=1e-6)
    assert wall.timestamp() == pytest.approx(system[0], abs=1e-6)
    engine.replan()
    await asyncio.sleep(0)
    await clock.advance(20 * NS_PER_S)  # fake 06:00:30, wall 06:01:00.4
    task.cancel()
    assert [t.strftime("%H:%M") for t in started] == ["06:01"]
    assert max(engine.lateness_s) < 0.5


def test_the_wall_clock_maps_both_ways_in_the_station_zone() -> None:
    clock = FakeClock(start_ns=5 * NS_PER_S)
    start = local("2026-11-30T06:00")
    wall = WallClock(clock, STATION_TZ, system=None, start=start)
    later = local("2026-11-30T06:00:01.5")
    assert wall.at(wall.ns_of(later)) == later and wall.ns_of(later) == 6_500_000_000
    assert wall.now() == start and wall.now().utcoffset() == timedelta(hours=7)
    assert wall.correct() == 0.0  # no system clock: never stepped


async def test_an_item_saved_while_its_window_is_open_starts_at_once_late() -> None:
    """A bulletin from 10:00 to 11:00 saved at 10:10 plays now, to the end of its window (as a
    slot missed in an outage plays late); a window already closed, an item changed while its
    slot plays and an item loaded at start-up (its own missed-slot policy) start nothing."""
    clock = FakeClock(start_ns=0)
    wall = WallClock(clock, STATION_TZ, system=None, start=local("2026-11-30T10:10"))
    started: list[tuple[str, str, str]] = []
    closed: list[tuple[str, str]] = []
    engine = ScheduleEngine(
        wall, lambda it, slot: started.append((it.id, f"{slot:%H:%M}", f"{wall.now():%H:%M}")),
        lambda run: closed.append((run.item.id, f"{wall.now():%H:%M}")))
    task = asyncio.create_task(engine.run())
    await asyncio.sleep(0)
    await clock.advance(NS_PER_S)
    engine.put(item("bulletin", "2026-11-30T10:00", None, minutes=60))
    engine.put(item("over", "2026-11-30T09:00", None, minutes=60))  # closed at 10:00
    engine.put(item("daily", "2026-11-29T10:05", "FREQ=DAILY", minutes=30))  # today's is open
    engine.put(item("loaded", "2026-11-30T10:00", None, minutes=60), join=False)
    await clock.advance(NS_PER_S)
    assert started == [("bulletin", "10:00", "10:10"), ("daily", "10:05", "10:10")]
    engine.put(item("bulletin", "2026-11-30T10:00", None, minutes=45))  # changed: plays on
    await clock.advance(NS_PER_S)
    assert len(started) == 2
    assert not engine.lateness_s  # the engine was not late: the items came late
    await clock.advance(3600 * NS_PER_S)
    task.cancel()
    # each window closes on time, and nothing more started
    assert ("bulletin", "11:00") in closed and ("daily", "10:35") in closed
    assert started[2:] == []
