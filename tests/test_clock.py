from __future__ import annotations

import asyncio

from loa.core.clock import NS_PER_S, FakeClock
from loa.core.pcm import FRAME_NS
from loa.core.priority import Priority
from tests.server.test_engine import make_engine, tone


async def test_fake_clock_wakes_sleepers_in_deadline_order() -> None:
    clock = FakeClock(start_ns=0)
    woke: list[tuple[str, int]] = []

    async def sleeper(name: str, at_ns: int) -> None:
        await clock.sleep_until(at_ns)
        woke.append((name, clock.now_ns()))

    tasks = [asyncio.create_task(sleeper(n, t)) for n, t in (("b", 20), ("a", 10), ("c", 99))]
    await asyncio.sleep(0)
    await clock.advance(50)
    assert woke == [("a", 10), ("b", 20)]
    await clock.advance(50)
    assert woke[-1] == ("c", 99)
    await asyncio.gather(*tasks)


async def test_the_master_clock_runs_ten_minutes_in_moments() -> None:
    engine, clock = make_engine()
    engine.request("huyen", tone(440), Priority.FILL)
    engine.start()
    await asyncio.sleep(0)
    await clock.advance(600 * NS_PER_S)
    await engine.stop()
    assert engine.ticks == 600 * NS_PER_S // FRAME_NS
    assert engine.resyncs == 0
