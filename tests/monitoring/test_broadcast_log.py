"""The broadcast log writes a segment as it starts and stamps it each second while it plays, so
a server that dies without closing it (issue 13: the programme on air at a crash was missing
from the log) finds it at its next start and closes it, ended by an unclean stop, at the last
second it was seen on air; the report counts it so and lists it.

(The crash itself, a SIGKILLed ``loa serve``, is in tests/server/test_disk_and_crashes.py;
here the server is left out: the store is closed without the log being closed, which is what
a killed process leaves on the disk.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

from loa.control.store import Store
from loa.core.clock import NS_PER_S, FakeClock
from loa.monitoring.broadcast_log import BroadcastLog
from loa.monitoring.report_files import local, report_tables
from loa.monitoring.reports import ReportScope, commune_report
from loa.playout.inputs.generator import tone_source
from loa.playout.programme import EndReason, Programme, ProgrammeKind
from loa.playout.zone_channel import SwitchEvent

WALL = 1_800_000_000.0  # unix s at the clock's start
SCOPE = ReportScope("an-binh", "Xã An Bình", None, ("an-binh", "an-binh-1"), ())


def programme(name: str) -> Programme:
    return Programme(name, ProgrammeKind.GENERATOR, tone_source(440))


def run_until_killed(path: Path) -> dict:
    """A run that plays a bulletin for 10 s and a relay for 5 s on an-binh-1, then dies with
    the relay on air (blocking: sqlite). Returns the report the running server would give."""
    clock = FakeClock()
    store = Store(path)
    log = BroadcastLog(store, clock, wall=lambda: WALL)
    idle, bulletin, relay = programme("Im lặng"), programme("Bản tin"), programme("Tiếp sóng")
    idle.kind = ProgrammeKind.IDLE
    t0 = clock.now_ns()
    log.consume([SwitchEvent(t0, "an-binh-1", idle, EndReason.PREEMPTED, bulletin, 50)])
    clock.set_ns(t0 + 10 * NS_PER_S)
    log.consume([SwitchEvent(clock.now_ns(), "an-binh-1", bulletin, EndReason.COMPLETED,
                             relay, 50)])
    for second in range(1, 6):  # the server's once-a-second log task
        clock.set_ns(t0 + (10 + second) * NS_PER_S)
        log.consume([])
    running = commune_report(store, SCOPE, WALL - 60, WALL + 60, WALL + 15)
    store.close()  # killed: the relay's segment was never closed
    return running


def restart(path: Path) -> tuple[list[dict], list[dict], dict]:
    """The next start: what recover() found, the log after it, and the report (blocking)."""
    store = Store(path)
    try:
        left = BroadcastLog(store, FakeClock(), wall=lambda: WALL + 3600).recover()
        return left, store.broadcast_log("an-binh-1"), commune_report(
            store, SCOPE, WALL - 60, WALL + 60, WALL + 3600)
    finally:
        store.close()


async def test_a_segment_on_air_at_a_crash_is_closed_at_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "loa.sqlite3"
    running = await asyncio.to_thread(run_until_killed, path)
    # while it ran, the report counted the relay on air up to the last second it was seen
    assert running["on_air_hours"]["by_class"]["normal"] == round(15 / 3600, 4)
    assert running["unclean_stops"] == []

    left, logged, report = await asyncio.to_thread(restart, path)
    assert [(e["zone"], e["programme"], e["started_at"], e["seen_at"]) for e in left] == [
        ("an-binh-1", "Tiếp sóng", WALL + 10, WALL + 15)]
    assert [(e["programme"], e["started_at"], e["ended_at"], e["duration_s"], e["end_reason"])
            for e in logged] == [
        ("Bản tin", WALL, WALL + 10, 10.0, "completed"),
        ("Tiếp sóng", WALL + 10, WALL + 15, 5.0, EndReason.UNCLEAN_STOP.value)]
    assert report["on_air_hours"]["by_class"]["normal"] == round(15 / 3600, 4)
    assert report["unclean_stops"] == [{"zone": "an-binh-1", "kind": "generator",
                                        "priority": 50, "started_at": WALL + 10,
                                        "last_seen_at": WALL + 15}]
    stops = report_tables(report, "en")[-1]
    assert stops.rows == [["an-binh-1", "", "generator", 50, local(WALL + 10),
                           local(WALL + 15)]]
    # closed once: a second start finds nothing left open
    again, logged_again, _ = await asyncio.to_thread(restart, path)
    assert again == [] and logged_again == logged


async def test_a_clean_stop_leaves_nothing_open(tmp_path: Path) -> None:
    def run() -> tuple[list[dict], list[dict]]:
        clock = FakeClock()
        store = Store(tmp_path / "loa.sqlite3")
        log = BroadcastLog(store, clock, wall=lambda: WALL)
        idle, fill = programme("Im lặng"), programme("Nhạc chờ")
        idle.kind = ProgrammeKind.IDLE
        log.consume([SwitchEvent(clock.now_ns(), "huyen", idle, EndReason.PREEMPTED, fill, 10)])
        clock.set_ns(clock.now_ns() + 3 * NS_PER_S)
        log.close_all(EndReason.SERVER_STOPPED)
        store.close()
        again = Store(tmp_path / "loa.sqlite3")
        try:
            return again.open_broadcasts(), again.broadcast_log("huyen")
        finally:
            again.close()

    left, logged = await asyncio.to_thread(run)
    assert left == []
    assert [(e["programme"], e["duration_s"], e["end_reason"]) for e in logged] == [
        ("Nhạc chờ", 3.0, "server stopped")]
