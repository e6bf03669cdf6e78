"""While nobody listens, the master clock lulls: it ticks five frames at a time, each at its
own deadline, and what plays is exactly what would have played on time (issue 17, idle CPU).
Fake clock: the engine's own ``run``; live sources offered frames as a decoder thread offers
them (stamped on arrival, taken in by the tick)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pytest

from loa.control.schedule.engine import ScheduleEngine
from loa.control.schedule.recurrence import STATION_TZ, ScheduleItem, local
from loa.core.clock import NS_PER_MS, NS_PER_S, FakeClock, WallClock
from loa.core.content import ToneContent
from loa.core.pcm import FRAME_NS, FRAME_SAMPLES
from loa.core.priority import Priority
from loa.playout.engine import LULL_FRAMES, UNHEARD_AFTER_NS, Engine
from loa.playout.fanout import Subscriber
from loa.playout.inputs.live import LiveSettings, LiveSource
from loa.playout.inputs.paced import PacedFrames
from loa.playout.inputs.relay import RelaySource
from loa.playout.inputs.sequence import SilenceFor
from loa.playout.programme import Programme, ProgrammeKind
from tests.conftest import MemoryProtocol
from tests.server.test_engine import heard, listen, make_engine, tone


def noting_ticks(engine: Engine, clock: FakeClock, prog: Programme | None = None
                 ) -> list[tuple[int, int, float]]:
    """Make ``engine`` note each tick it runs: (its time, when it ran, the first sample of
    ``prog``'s frame after it: which frame played)."""
    ticks: list[tuple[int, int, float]] = []
    tick: Callable[..., None] = engine.tick

    def noting(now_ns: int, *, heard: bool = True) -> None:
        tick(now_ns, heard=heard)
        ticks.append((now_ns, clock.now_ns(), float(prog.frame[0]) if prog else 0.0))

    engine.tick = noting  # type: ignore[method-assign]
    return ticks


async def started(engine: Engine, clock: FakeClock) -> int:
    """Start the engine's clock; when its first tick is due (ns)."""
    engine.start()
    await clock.advance(0)
    return clock.now_ns() + FRAME_NS


async def offer_jittery(clock: FakeClock, src: LiveSource, first_ns: int, frames: int,
                        pushed: bool = False) -> None:
    """Frame ``i`` (every sample ``i``/1000) offered as a decoder thread offers it (or pushed
    on the loop, as a WebRTC track's are), on a schedule with jitter: every 7th frame 30 ms
    late (with the next), a page of three every 50th."""
    for i in range(frames):
        late_ns = 30 * NS_PER_MS if i % 7 == 3 else 0
        if i % 50 in (20, 21):
            late_ns = (22 - i % 50) * FRAME_NS  # held back to arrive with frame 22
        await clock.sleep_until(first_ns + i * FRAME_NS + late_ns)
        frame = [np.full(FRAME_SAMPLES, i / 1000, dtype=np.float32)]
        if pushed:
            src.push_frames(frame)
        else:
            src.offer_frames(frame)


async def tone_noted() -> tuple[Engine, FakeClock, Programme, list[tuple[int, int, float]],
                                int]:
    """An engine playing a tone on the district, nobody listening, each tick noted
    (``noting_ticks``), started: (engine, clock, the tone, the ticks, the first deadline)."""
    engine, clock = make_engine()
    prog = tone(440)
    engine.request("huyen", prog, Priority.FILL)
    ticks = noting_ticks(engine, clock)
    return engine, clock, prog, ticks, await started(engine, clock)


async def test_nobody_listening_every_frame_is_ticked_at_its_time_five_at_a_time() -> None:
    engine, clock, prog, ticks, first_ns = await tone_noted()
    await clock.advance(2 * NS_PER_S)
    await engine.stop()
    assert [t for t, _, _ in ticks] == [first_ns + i * FRAME_NS for i in range(100)]
    ran = [r for _, r, _ in ticks]
    assert ran == [first_ns + (i // LULL_FRAMES * LULL_FRAMES + LULL_FRAMES - 1) * FRAME_NS
                   for i in range(100)]  # each lot when its last frame is due
    assert engine.lulled_ticks == 100
    assert prog.position_samples == 100 * FRAME_SAMPLES


async def run_live(lull_frames: int, how: str = "offered"
                   ) -> tuple[list[tuple[int, int, float]], Engine]:
    """A live source of jittery arrivals (``offer_jittery``) on the district for 20 s, nobody
    listening but a level meter watched (so it stays decoded): ``how`` "offered" (a decoder
    thread's), "pushed" (on the loop) or "relay" (a relay's stream)."""
    engine, clock = make_engine()
    engine.lull_frames = lull_frames
    engine.set_meter_watchers(1)
    settings = LiveSettings(2, 100, 200)
    src = LiveSource("live/studio", clock, engine.counters, settings)
    if how == "relay":
        relay = RelaySource(src, PacedFrames("live/studio", clock, engine.counters, settings))
        live = engine.add_programme(Programme("relay", ProgrammeKind.RELAY, relay))
    else:
        live = engine.add_programme(Programme("studio", ProgrammeKind.LIVE, src),
                                    persistent=True)
    engine.request("huyen", live, Priority.DISTRICT_LIVE)
    src.connect()
    ticks = noting_ticks(engine, clock, live)
    first_ns = await started(engine, clock)
    feeder = asyncio.create_task(offer_jittery(clock, src, first_ns + 3 * NS_PER_MS, 1000,
                                               pushed=how == "pushed"))
    await clock.advance(20 * NS_PER_S)
    await engine.stop()
    feeder.cancel()
    await asyncio.gather(feeder, return_exceptions=True)
    return ticks, engine


@pytest.mark.parametrize("how", ["offered", "pushed", "relay"])
async def test_a_jittery_live_source_plays_in_a_lull_exactly_as_on_time(how: str) -> None:
    on_time, engine_on_time = await run_live(1, how)
    lulled, engine = await run_live(LULL_FRAMES, how)
    assert engine_on_time.lulled_ticks == 0 and engine.lulled_ticks > 700
    # the same frame on every tick, the underflow included, the tick's phase following the
    # source alike (a lull ticks the deadlines it owes when its last is due: the last lot may
    # be owed still when the test stops)
    assert engine.phase_shifts == engine_on_time.phase_shifts >= 1
    assert 0 <= len(on_time) - len(lulled) < LULL_FRAMES
    assert [(t, f) for t, _, f in lulled] == [(t, f) for t, _, f in on_time[:len(lulled)]]
    for name in ("jitter_underflows", "jitter_trimmed"):
        assert engine.counters.get(name, source="live/studio") \
            == engine_on_time.counters.get(name, source="live/studio")
    played = [f for _, _, f in lulled if f > 0]
    assert played == sorted(played) and len(played) > 900  # in order, each frame once


async def test_a_listener_ends_the_lull_and_hears_from_the_next_tick() -> None:
    engine, clock = make_engine()
    engine.request("an-binh-1", tone(1000), Priority.SCHEDULED)
    await started(engine, clock)
    await clock.advance(LULL_FRAMES * FRAME_NS + 2 * FRAME_NS)  # a lot, and two owed
    ticks_before = engine.ticks
    ear = listen(engine, "an-binh-1")
    await clock.advance(FRAME_NS)
    assert engine.ticks - ticks_before == 3  # the two owed, then the one due
    packets, pcm = await asyncio.to_thread(heard, ear)
    assert len(packets) == 1 and packets[0].capture_ns == clock.now_ns()  # nothing older
    await clock.advance(10 * FRAME_NS)
    await engine.stop()
    packets, pcm = await asyncio.to_thread(heard, ear)
    assert [p.seq for p in packets] == list(range(11))  # from then on, one packet a tick
    assert engine.ticks == engine.lulled_ticks + 11  # the listener's ticks: on time
    assert float(np.abs(pcm).max()) > 0.1


async def test_a_request_made_in_a_lull_starts_on_its_own_tick() -> None:
    """The schedule asks 10 ms into a frame, mid-lull: the frames owed before it are ticked
    without it, and it plays from the first tick after it, as on time."""
    clock = FakeClock(start_ns=0)
    wall = WallClock(clock, STATION_TZ, system=None,
                     start=local("2026-11-30T06:00") - timedelta(seconds=1.05))
    engine, _ = make_engine(clock)
    prog = tone(880)

    def start(item: ScheduleItem, slot: object) -> object:
        return engine.request(item.zones[0], prog, item.cls.priority)

    schedule = ScheduleEngine(wall, start, lambda running: None)
    schedule.put(ScheduleItem("morning", "Bản tin sáng", ["an-binh-1"],
                              local("2026-11-30T06:00"), 60, ToneContent(), None))
    ticks = noting_ticks(engine, clock)
    tasks = [asyncio.create_task(schedule.run()), asyncio.create_task(engine.run())]
    try:
        await clock.advance(2 * NS_PER_S)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    slot_ns = wall.ns_of(local("2026-11-30T06:00"))
    first_tick_ns = -(-slot_ns // FRAME_NS) * FRAME_NS
    assert (first_tick_ns // FRAME_NS) % LULL_FRAMES != 0  # not the last of its lot: owed
    assert engine.lulled_ticks > 0
    assert prog.first_pulled_ns == first_tick_ns
    # from then on, a frame every tick
    assert prog.position_samples == sum(t >= first_tick_ns for t, _, _ in ticks) * FRAME_SAMPLES


async def test_a_request_and_a_first_listener_in_one_frame_tick_every_deadline_once() -> None:
    engine, clock, prog, ticks, first_ns = await tone_noted()
    await clock.advance(2 * FRAME_NS + 5 * NS_PER_MS)  # mid-lull, 5 ms into a frame
    other = engine.request("an-binh", tone(880), Priority.SCHEDULED)  # the two passed first
    listen(engine, "an-binh-1")  # the lull ends
    await clock.advance(5 * FRAME_NS)
    engine.release(other.id)
    await clock.advance(5 * FRAME_NS)
    await engine.stop()
    times = [t for t, _, _ in ticks]
    assert times == [first_ns + i * FRAME_NS for i in range(len(times))]
    assert prog.position_samples == len(times) * FRAME_SAMPLES


async def test_a_loop_held_past_a_lull_resyncs_once() -> None:
    engine, clock = make_engine()
    engine.request("huyen", tone(440), Priority.FILL)
    ticks = noting_ticks(engine, clock)
    first_ns = await started(engine, clock)
    await clock.advance(2 * FRAME_NS)
    clock.set_ns(first_ns + 40 * FRAME_NS)  # the loop held 0.8 s
    engine.request("an-binh", tone(880), Priority.SCHEDULED)  # before the lull wakes
    await clock.advance(20 * FRAME_NS)
    await engine.stop()
    times = [(t - first_ns) // FRAME_NS for t, _, _ in ticks]
    assert engine.resyncs == 1 and times == list(range(40, 40 + len(times)))
    assert engine.last_resync_behind_ms == 720  # from the lull's last deadline


@pytest.mark.parametrize("lull_frames", [1, LULL_FRAMES])
async def test_an_endpoint_joining_after_an_alert_ended_is_not_counted_as_reached(
        lull_frames: int) -> None:
    """The alert ended in ticks a lull still owed when the endpoint joined: they run first,
    and the endpoint joins what is on air now."""
    engine, clock = make_engine()
    engine.lull_frames = lull_frames
    alert = Programme("alert", ProgrammeKind.ALERT, SilenceFor(7))
    alert.reach = {}
    await started(engine, clock)
    engine.request("an-binh-1", alert, Priority.SCHEDULED)
    await clock.advance(8 * FRAME_NS + 5 * NS_PER_MS)
    engine.channels["an-binh-1"].join(Subscriber(MemoryProtocol(), "ep", "ws", "ep-1"))
    await clock.advance(3 * FRAME_NS)
    await engine.stop()
    assert alert.finished and alert.reach == {}


async def test_a_stopped_engine_owes_nothing() -> None:
    engine, clock = make_engine()
    engine.request("huyen", tone(440), Priority.FILL)
    await started(engine, clock)
    await clock.advance(2 * FRAME_NS + 5 * NS_PER_MS)  # mid-lull
    await engine.stop()
    ticks = engine.ticks
    clock.set_ns(clock.now_ns() + 10 * NS_PER_S)
    engine.request("an-binh", tone(880), Priority.SCHEDULED)
    assert engine.ticks == ticks


async def steady_live(engine: Engine, clock: FakeClock) -> tuple[LiveSource, Programme,
                                                                 asyncio.Task[None]]:
    """A live source on the district, taken, offered frame ``i`` (every sample ``i``/1000) 3 ms
    after each tick from the engine's start: a steady decoder thread."""
    src = LiveSource("live/studio", clock, engine.counters, LiveSettings(2, 100, 200))
    live = engine.add_programme(Programme("studio", ProgrammeKind.LIVE, src), persistent=True)
    engine.request("huyen", live, Priority.DISTRICT_LIVE)
    src.connect()
    first_ns = await started(engine, clock)

    async def offer() -> None:
        for i in range(10_000):
            await clock.sleep_until(first_ns + i * FRAME_NS + 3 * NS_PER_MS)
            src.offer_frames([np.full(FRAME_SAMPLES, i / 1000, dtype=np.float32)] if
                             src.decoding else [])  # a paused decoder: arrivals, no audio

    return src, live, asyncio.create_task(offer())


async def test_a_live_source_nobody_hears_is_no_longer_decoded_then_a_listener_hears_it_live(
        ) -> None:
    engine, clock = make_engine()
    src, live, feeder = await steady_live(engine, clock)
    ticks = noting_ticks(engine, clock, live)
    await clock.advance(UNHEARD_AFTER_NS - 2 * LULL_FRAMES * FRAME_NS)
    assert src.decoding  # a while of lulls: still decoded (an endpoint may be reconnecting)
    await clock.advance(4 * LULL_FRAMES * FRAME_NS)
    assert src.taken and not src.decoding and src.available  # arrivals keep it connected
    unheard = len(ticks)
    await clock.advance(NS_PER_S)
    assert [f for _, _, f in ticks[unheard + LULL_FRAMES:]] == [0.0] * (len(ticks) - unheard
                                                                     - LULL_FRAMES)
    joined_ns = clock.now_ns()
    listen(engine, "an-binh-1")
    assert src.decoding  # at once
    await clock.advance(NS_PER_S)
    feeder.cancel()
    await engine.stop()
    after = [(t, f) for t, _, f in ticks if t > joined_ns]
    assert len(after) == 50 and engine.lulled_ticks < len(ticks) - 49  # heard, on time
    played = [round(f * 1000) for _, f in after if f > 0]  # which frames, by their samples
    # live from the first frame decoded after the join, in order, none lost, none older
    first = played[0]
    assert (first - 1) * FRAME_NS <= joined_ns - ticks[0][0] < (first + 1) * FRAME_NS
    assert played == list(range(first, first + len(played)))
    assert len(played) >= 50 - 3  # silent only while its jitter buffer filled again
    assert engine.counters.get("jitter_underflows", source="live/studio") == 0


async def test_a_level_meter_watched_keeps_live_sources_decoded_through_lulls() -> None:
    engine, clock = make_engine()
    src, _, feeder = await steady_live(engine, clock)
    engine.set_meter_watchers(1)  # the console is open
    await clock.advance(3 * UNHEARD_AFTER_NS)
    assert src.decoding and engine.lulled_ticks > 100
    level = engine.channels["huyen"].levels()["peak_dbfs"]
    assert level > -20  # the meter reads the source (its samples near 0.15 by now)
    engine.set_meter_watchers(0)  # closed (a reload: it opens again ~200 ms later)
    await clock.advance(UNHEARD_AFTER_NS - 2 * LULL_FRAMES * FRAME_NS)
    assert src.decoding  # the second counts from the close
    await clock.advance(4 * LULL_FRAMES * FRAME_NS)
    assert not src.decoding
    engine.set_meter_watchers(1)  # open again: the meter reads it again
    assert src.decoding
    await clock.advance(NS_PER_S // 2)
    feeder.cancel()
    await engine.stop()
    assert engine.channels["huyen"].levels()["peak_dbfs"] > -20


async def test_relays_released_while_nobody_listens_are_not_kept() -> None:
    engine, clock = make_engine()
    await started(engine, clock)
    kept = []
    for i in range(5):
        live = LiveSource(f"relay/{i}", clock, engine.counters, LiveSettings(2, 100, 200))
        paced = PacedFrames(f"relay/{i}", clock, engine.counters, LiveSettings(2, 100, 200))
        prog = Programme(f"relay {i}", ProgrammeKind.RELAY, RelaySource(live, paced))
        req = engine.request("huyen", prog, Priority.SCHEDULED)
        await clock.advance(2 * NS_PER_S)
        assert not live.decoding  # unheard
        engine.release(req.id)
        kept.append(weakref.ref(live))
        del live, paced, prog, req
    await clock.advance(NS_PER_S)
    await engine.stop()
    gc.collect()
    assert [ref() for ref in kept] == [None] * 5


@pytest.mark.parametrize("into_lull", range(LULL_FRAMES))
async def test_an_alert_ending_in_a_lull_leaves_the_ticks_owed_in_order(into_lull: int) -> None:
    """A decoded live source (a meter watched, nobody listening) under an emergency alert
    that ends part-way through a lull: the ticks the lull still owes run after the one in
    which the alert ended, each at its own time and in order, and the live programme is
    pulled once a tick, never back in time (no underflow from a tick read twice)."""
    engine, clock = make_engine()
    engine.set_meter_watchers(1)
    src = LiveSource("live/studio", clock, engine.counters, LiveSettings(2, 100, 200))
    live = engine.add_programme(Programme("studio", ProgrammeKind.LIVE, src), persistent=True)
    engine.request("huyen", live, Priority.DISTRICT_LIVE)
    src.connect()
    times: list[int] = []
    tick: Callable[..., None] = engine.tick

    def noting(now_ns: int, *, heard: bool = True) -> None:
        times.append(now_ns)
        tick(now_ns, heard=heard)
        times.append(now_ns)

    engine.tick = noting  # type: ignore[method-assign]
    first_ns = await started(engine, clock)
    feeder = asyncio.create_task(offer_jittery(clock, src, first_ns + 2 * NS_PER_MS, 500))
    await clock.advance(3 * NS_PER_S + into_lull * FRAME_NS + 5 * NS_PER_MS)
    engine.request("huyen", Programme("alert", ProgrammeKind.ALERT, SilenceFor(2)),
                   Priority.EMERGENCY)
    await clock.advance(2 * NS_PER_S)
    await engine.stop()
    feeder.cancel()
    await asyncio.gather(feeder, return_exceptions=True)
    assert times == sorted(times)  # each tick ends before the next begins, in time order
    assert live.position_samples == engine.ticks * FRAME_SAMPLES
