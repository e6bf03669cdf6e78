"""Zones with nothing to do rest: the tick skips them, and wakes them on the tick that brings
them a request or a listener (issue 17, fixed cost). Fake clock; listeners in memory."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from loa.control.schedule.engine import ScheduleEngine
from loa.control.schedule.recurrence import STATION_TZ, ScheduleItem, local
from loa.core.clock import NS_PER_S, FakeClock, WallClock
from loa.core.content import ToneContent
from loa.core.pcm import FRAME_NS, FRAME_SAMPLES
from loa.core.priority import Priority
from loa.playout.engine import QUIET_TICKS_BEFORE_REST
from loa.playout.levels import FLOOR_DBFS
from tests.audio import dominant_hz
from tests.server.test_engine import heard, listen, make_engine, run, tone

ZONES = 7  # default_zones(): the district, two communes, four villages


def test_zones_with_nothing_to_do_rest_after_a_meter_window() -> None:
    engine, clock = make_engine()
    run(engine, clock, QUIET_TICKS_BEFORE_REST)
    assert engine.zones_ticked == ZONES * QUIET_TICKS_BEFORE_REST
    assert engine.resting == set(engine.channels)
    run(engine, clock, 500)  # ten seconds of nothing: no zone ticked
    assert engine.zones_ticked == ZONES * QUIET_TICKS_BEFORE_REST
    assert all(ch.levels()["peak_dbfs"] == FLOOR_DBFS for ch in engine.channels.values())


def test_a_zone_that_goes_quiet_reads_silence_before_it_rests() -> None:
    engine, clock = make_engine()
    req = engine.request("an-binh-1", tone(1000), Priority.SCHEDULED)
    run(engine, clock, 10)
    assert engine.channels["an-binh-1"].levels()["peak_dbfs"] > -10
    engine.release(req.id)
    run(engine, clock, QUIET_TICKS_BEFORE_REST + 1)  # the switch back to idle, then the window
    assert "an-binh-1" in engine.resting
    assert engine.channels["an-binh-1"].levels()["peak_dbfs"] == FLOOR_DBFS


def test_a_request_on_a_resting_zone_plays_on_the_next_tick() -> None:
    engine, clock = make_engine()
    ear = listen(engine, "phu-my-1")  # a zone someone hears never rests
    run(engine, clock, 50)
    assert engine.resting == set(engine.channels) - {"phu-my-1"}
    before = engine.zones_ticked
    prog = tone(440)
    engine.request("an-binh", prog, Priority.COMMUNE_LIVE)
    run(engine, clock, 1)
    # pulled on the very tick after the request, as on a zone that never rested
    assert prog.first_pulled_ns == clock.now_ns()
    assert engine.channels["an-binh-2"].on_air.programme_id == prog.id
    assert engine.resting == {"huyen", "phu-my", "phu-my-2"}
    assert engine.zones_ticked - before == 4  # an-binh and its two villages, phu-my-1
    events = engine.drain_switch_events()
    assert {e.zone_id for e in events if e.started is prog} == {"an-binh", "an-binh-1",
                                                                "an-binh-2"}
    assert all(e.at_ns == clock.now_ns() for e in events if e.started is prog)
    packets, _ = heard(ear)
    assert len(packets) == 51  # the listened zone kept its packet every tick


def test_a_listener_joining_a_resting_zone_hears_from_its_first_tick() -> None:
    engine, clock = make_engine()
    run(engine, clock, 50)
    assert "an-binh-2" in engine.resting
    ear = listen(engine, "an-binh-2")
    run(engine, clock, 1)
    assert "an-binh-2" not in engine.resting
    packets, _ = heard(ear)
    assert len(packets) == 1 and packets[0].capture_ns == clock.now_ns()  # silence, at once
    engine.request("huyen", tone(1000), Priority.FILL)
    run(engine, clock, 49)
    packets, pcm = heard(ear)
    assert [p.seq for p in packets] == list(range(50))  # one packet a tick, none missed
    assert packets[1].switched and packets[1].priority == Priority.FILL
    assert dominant_hz(pcm[5 * FRAME_SAMPLES :]) == pytest.approx(1000, rel=0.01)
    # the other zones carry the request too (nobody hears them, but they switch on time)
    assert engine.resting == set()


def test_an_encoder_runs_only_for_a_heard_zone() -> None:
    engine, clock = make_engine()
    engine.request("an-binh-1", tone(440), Priority.SCHEDULED)
    run(engine, clock, 50)
    assert engine.renditions == {}  # requested, nobody hears it: nothing encoded
    assert engine.resting == set(engine.channels) - {"an-binh-1"}
    ear = listen(engine, "an-binh-1")
    run(engine, clock, 10)
    [rend] = engine.renditions.values()
    assert rend.encoder.frames_in == 10  # type: ignore[attr-defined]
    packets, _ = heard(ear)
    assert len(packets) == 10


async def test_a_scheduled_item_on_a_resting_zone_starts_on_its_tick() -> None:
    clock = FakeClock(start_ns=0)
    # the slot falls 10 ms into a frame (9.99 s after the engine starts)
    wall = WallClock(clock, STATION_TZ, system=None,
                     start=local("2026-11-30T06:00") - timedelta(seconds=9.99))
    engine, _ = make_engine(clock)
    engine.lull_frames = 1  # every tick on time: counted as it comes (the lull: test_lull.py)
    prog = tone(880)
    started_ns: list[int] = []

    def start(item: ScheduleItem, slot: object) -> object:
        started_ns.append(clock.now_ns())
        return engine.request(item.zones[0], prog, item.cls.priority)

    schedule = ScheduleEngine(wall, start, lambda running: None)
    schedule.put(ScheduleItem("morning", "Bản tin sáng", ["an-binh-1"],
                              local("2026-11-30T06:00"), 60, ToneContent(), None))
    tasks = [asyncio.create_task(schedule.run()), asyncio.create_task(engine.run())]
    try:
        await clock.advance(5 * NS_PER_S)
        assert engine.resting == set(engine.channels)  # all rest while nothing is due
        rested_ticks = engine.zones_ticked
        await clock.advance(5 * NS_PER_S + FRAME_NS)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    slot_ns = wall.ns_of(local("2026-11-30T06:00"))
    assert started_ns == [slot_ns]
    # the engine ticks on multiples of 20 ms from 0: the first tick at or after the slot
    first_tick_ns = -(-slot_ns // FRAME_NS) * FRAME_NS
    assert first_tick_ns - slot_ns == pytest.approx(FRAME_NS // 2, abs=1000)
    assert prog.first_pulled_ns == first_tick_ns
    assert engine.channels["an-binh-1"].on_air.programme_id == prog.id
    # only the village was ticked after the rest, from the slot on
    assert engine.zones_ticked - rested_ticks == (clock.now_ns() - first_tick_ns) // FRAME_NS + 1
