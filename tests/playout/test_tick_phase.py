"""The master clock's tick follows the arrivals of the live source its listeners hear (issue 17,
latency on a live push): a frame that arrives just after a tick no longer waits most of a frame
for the next one. Fake clock: the engine's own ``run`` and a source pushing on a fixed phase."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from loa.core.clock import NS_PER_MS, NS_PER_S, FakeClock
from loa.core.pcm import FRAME_NS
from loa.core.priority import Priority
from loa.playout.engine import Engine
from loa.playout.inputs.live import LiveSettings, LiveSource
from loa.playout.inputs.paced import PacedFrames
from loa.playout.inputs.relay import RelaySource
from loa.playout.jitter import JitterBuffer
from loa.playout.programme import Programme, ProgrammeKind
from tests.server.test_engine import heard, listen, make_engine, tone

GUARD_NS = JitterBuffer.GUARD_MS * NS_PER_MS


def recording_ticks(engine: Engine) -> list[int]:
    """Make ``engine`` note the time of every tick it runs; returns the list it fills."""
    ticks: list[int] = []
    tick: Callable[..., None] = engine.tick

    def noting(now_ns: int, *, heard: bool = True) -> None:
        ticks.append(now_ns)
        tick(now_ns, heard=heard)

    engine.tick = noting  # type: ignore[method-assign]
    return ticks


async def push_steadily(clock: FakeClock, src: LiveSource, first_ns: int, frames: int,
                        late_every: int = 0, late_ns: int = 0, decode_ns: int = 0) -> None:
    """A steady source: frame ``i`` arrives at ``first_ns + i`` frames, a loud one each; with
    ``late_every``, every ``late_every``-th frame ``late_ns`` later; ``decode_ns`` later still
    while it is decoded (its page's arrival is noted the moment it is parsed)."""
    loud = np.full(960, 0.5, dtype=np.float32)
    for i in range(frames):
        late = late_ns if late_every and i % late_every == late_every - 1 else 0
        await clock.sleep_until(first_ns + i * FRAME_NS + late)
        if decode_ns and src.decoding:
            await clock.sleep_until(clock.now_ns() + decode_ns)
        src.push_frames([loud])


async def stop(engine: Engine, feeder: asyncio.Task[None]) -> None:
    """Stop the engine's clock, then the source feeding it."""
    await engine.stop()
    feeder.cancel()
    await asyncio.gather(feeder, return_exceptions=True)


def live_on_the_district(engine: Engine, clock: FakeClock, zone: str = "huyen"
                         ) -> tuple[LiveSource, Programme]:
    """A connected live source (a 40 ms starting target), taken live on ``zone``."""
    src = LiveSource("live/studio", clock, engine.counters, LiveSettings(2, 100, 200))
    live = engine.add_programme(Programme("studio", ProgrammeKind.LIVE, src), persistent=True)
    engine.request(zone, live, Priority.DISTRICT_LIVE)
    src.connect()
    return src, live


async def first_tick(engine: Engine, clock: FakeClock) -> int:
    """Start the engine's clock; when its first tick will come (ns)."""
    engine.start()
    await clock.advance(0)
    return clock.now_ns() + FRAME_NS


@pytest.mark.parametrize("arrive_after_tick_ms", [2, 17])
async def test_the_tick_moves_to_the_guard_after_the_source_arrivals(
        arrive_after_tick_ms: int) -> None:
    """Frames arriving 2 ms after each tick (each waits ~18 ms and more) or 3 ms before the
    next (closer than the guard): within seconds every frame waits the guard and at most 2 ms
    more, and the listener missed nothing on the way (one packet a tick, no underflow)."""
    engine, clock = make_engine()
    src, live = live_on_the_district(engine, clock)
    ear = listen(engine, "huyen")
    ticks = recording_ticks(engine)
    first_tick_ns = await first_tick(engine, clock)
    seconds = 20
    feeder = asyncio.create_task(push_steadily(
        clock, src, first_tick_ns + arrive_after_tick_ms * NS_PER_MS, seconds * 50 + 50))
    await clock.advance(seconds * NS_PER_S)
    await stop(engine, feeder)

    packets, _ = await asyncio.to_thread(heard, ear)  # Opus decoding: beside the loop
    assert len(packets) == len(ticks)  # one packet a tick
    assert engine.counters.get("jitter_underflows", source="live/studio") == 0
    assert engine.phase_shifts >= 1
    # each packet's capture time is its frame's arrival: the wait is tick minus arrival
    live_waits = [tick - p.capture_ns for tick, p in zip(ticks, packets, strict=True)
                  if p.programme_id == live.id and p.capture_ns != tick]
    last_second = live_waits[-50:]
    assert min(last_second) >= GUARD_NS
    assert max(last_second) <= GUARD_NS + 2 * NS_PER_MS
    # the frames played in order, each once: arrivals 20 ms apart, or 40 where one was dropped
    # to bring the delay down
    captures = [p.capture_ns for tick, p in zip(ticks, packets, strict=True)
                if p.programme_id == live.id and p.capture_ns != tick]
    steps = {b - a for a, b in zip(captures, captures[1:], strict=False)}
    assert steps <= {FRAME_NS, 2 * FRAME_NS}


async def test_the_tick_keeps_its_phase_without_a_live_source_on_air() -> None:
    """A generated programme on air, and a live source connected that no zone takes:
    nothing to follow."""
    engine, clock = make_engine()
    src = LiveSource("live/studio", clock, engine.counters, LiveSettings(2, 100, 200))
    engine.add_programme(Programme("studio", ProgrammeKind.LIVE, src), persistent=True)
    src.connect()
    engine.request("phu-my", tone(440), Priority.FILL)
    listen(engine, "phu-my-1")
    ticks = recording_ticks(engine)
    first_tick_ns = await first_tick(engine, clock)
    feeder = asyncio.create_task(push_steadily(clock, src, first_tick_ns + 2 * NS_PER_MS, 300))
    await clock.advance(5 * NS_PER_S)
    await stop(engine, feeder)
    assert engine.phase_shifts == 0
    assert {t - first_tick_ns for t in ticks} == {i * FRAME_NS for i in range(len(ticks))}


async def test_a_source_late_now_and_then_keeps_the_room_for_its_late_frames() -> None:
    """A frame 12 ms late every 10 s (an encoder's hiccup): the first is later than the guard
    and underflows once, as it would at any phase so close; from then on the tick follows the
    source without taking the room the jitter buffer keeps for such a frame (no underflow),
    and without swinging back and forth around it."""
    engine, clock = make_engine()
    src, _ = live_on_the_district(engine, clock)
    listen(engine, "huyen")
    first_tick_ns = await first_tick(engine, clock)
    seconds = 60
    feeder = asyncio.create_task(push_steadily(
        clock, src, first_tick_ns + 2 * NS_PER_MS, seconds * 50 + 50, late_every=500,
        late_ns=12 * NS_PER_MS))
    await clock.advance(15 * NS_PER_S)  # the first late frame came at 10 s
    underflows = engine.counters.get("jitter_underflows", source="live/studio")
    shifts = engine.phase_shifts
    await clock.advance((seconds - 15) * NS_PER_S)  # four more late frames
    await stop(engine, feeder)
    assert underflows <= 1
    assert engine.counters.get("jitter_underflows", source="live/studio") == underflows
    assert 1 <= shifts and engine.phase_shifts - shifts <= 1


async def test_nobody_listening_the_tick_follows_the_source_so_a_first_listener_is_in_phase(
        ) -> None:
    """A live source on the district, its frames 2 ms after each tick, nobody listening: it is
    soon not decoded (nobody hears it), yet the tick moves to the guard after its arrivals.
    A first listener then hears every live frame the guard after it arrived, from the first:
    a player keeps the pace of its first packet, so a tick moved sooner after it joined would
    not have brought it any nearer the source."""
    engine, clock = make_engine()
    src, live = live_on_the_district(engine, clock)
    ticks = recording_ticks(engine)
    first_tick_ns = await first_tick(engine, clock)
    feeder = asyncio.create_task(push_steadily(
        clock, src, first_tick_ns + 2 * NS_PER_MS, 20 * 50, decode_ns=NS_PER_MS // 2))
    await clock.advance(12 * NS_PER_S)
    assert not src.decoding and engine.lulled_ticks > 500  # unheard: parsed, not decoded
    assert engine.phase_shifts >= 1
    ear = listen(engine, "huyen")
    joined = len(ticks)  # the ticks owed by the lull ran as the listener came, unheard
    await clock.advance(3 * NS_PER_S)
    await stop(engine, feeder)

    packets, _ = await asyncio.to_thread(heard, ear)
    assert len(packets) == len(ticks) - joined  # one packet a tick from the listener's first
    waits = [tick - p.capture_ns for tick, p in zip(ticks[joined:], packets, strict=True)
             if p.programme_id == live.id and p.capture_ns != tick]
    assert len(waits) >= 148  # live from the first ticks (the buffer refilling)
    # each live frame the guard after its arrival, give or take the millisecond the tick's
    # phase may be off (the frames are decoded half a millisecond after the pages the tick
    # was set by, unheard), from the first: the buffer restarts at the target the lateness
    # seen needs (one frame), not the starting target (40 ms) the source, decoded for a
    # second before nobody heard it, had had no time to bring down
    assert all(GUARD_NS - NS_PER_MS <= w <= GUARD_NS + 2 * NS_PER_MS for w in waits), waits
    assert engine.counters.get("jitter_underflows", source="live/studio") == 0


async def test_a_source_with_lateness_keeps_one_phase_while_nobody_hears_it() -> None:
    """Heard 20 s with a frame 15 ms late every 5 s, then nobody listens (not decoded): the
    tick stays the guard and that lateness after the arrivals, modulo a frame, instead of
    moving later at every look (the wait of an undecoded arrival is under a frame: the
    lateness is whole frames of buffer, which the restart holds). The listener who then
    comes hears each frame the guard and the lateness after it arrived, no underflow."""
    engine, clock = make_engine()
    src, live = live_on_the_district(engine, clock)
    first = listen(engine, "huyen")
    ticks = recording_ticks(engine)
    first_tick_ns = await first_tick(engine, clock)
    feeder = asyncio.create_task(push_steadily(
        clock, src, first_tick_ns + 2 * NS_PER_MS, 80 * 50, late_every=250,
        late_ns=15 * NS_PER_MS))
    await clock.advance(20 * NS_PER_S)
    feed = engine.channels["huyen"].feeds["ws"]
    for sub in list(feed.subscribers()):
        feed.remove(sub)
    assert first.sink.data
    await clock.advance(8 * NS_PER_S)  # the phase settles, unheard...
    assert not src.decoding
    shifts = engine.phase_shifts
    await clock.advance(30 * NS_PER_S)  # ...and stays
    assert engine.phase_shifts == shifts
    phase_ns = (ticks[-1] - first_tick_ns - 2 * NS_PER_MS) % FRAME_NS
    assert abs(phase_ns - (GUARD_NS + 15 * NS_PER_MS) % FRAME_NS) <= NS_PER_MS
    ear = listen(engine, "huyen")
    joined = len(ticks)
    await clock.advance(4 * NS_PER_S)
    await stop(engine, feeder)
    packets, _ = await asyncio.to_thread(heard, ear)
    waits = [tick - p.capture_ns for tick, p in zip(ticks[joined:], packets, strict=True)
             if p.programme_id == live.id and p.capture_ns != tick]
    assert len(waits) > 190
    assert all(w >= GUARD_NS for w in waits)
    assert engine.counters.get("jitter_underflows", source="live/studio") <= 1  # the first


async def test_a_relay_playing_a_file_gives_the_phase_to_the_next_live_source() -> None:
    """A commune, listened, carries a relay playing a file (paced: its live input not
    connected); another, unlistened, a live source whose frames come 2 ms after each tick:
    the tick follows that source rather than nothing."""
    engine, clock = make_engine()
    settings = LiveSettings(2, 100, 200)
    paced = PacedFrames("relay/vov", clock, engine.counters, settings)
    relay = RelaySource(LiveSource("relay/vov", clock, engine.counters, settings), paced)
    engine.request("phu-my", engine.add_programme(Programme("vov", ProgrammeKind.RELAY, relay)),
                   Priority.DISTRICT_LIVE)
    paced.connect()
    paced.push_frames([np.full(960, 0.25, dtype=np.float32)] * 50 * 30)  # a 30 s file
    src, _ = live_on_the_district(engine, clock, "an-binh")
    listen(engine, "phu-my-1")
    first_tick_ns = await first_tick(engine, clock)
    feeder = asyncio.create_task(push_steadily(clock, src, first_tick_ns + 2 * NS_PER_MS, 500))
    await clock.advance(9 * NS_PER_S)
    await stop(engine, feeder)
    assert engine.channels["phu-my-1"].on_air_programme.name == "vov"
    assert engine.phase_shifts >= 1
