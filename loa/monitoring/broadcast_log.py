"""The broadcast log (nhật ký phát): what each zone actually played, when, for how long, and
why it ended (completed, preempted, cancelled, failed). Built from the engine's switch events,
written to SQLite once a second, off the audio path."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loa.control.store import Store
from loa.core.clock import NS_PER_S, Clock
from loa.playout.programme import EndReason, Programme, ProgrammeKind
from loa.playout.zone_channel import SwitchEvent


@dataclass
class _Open:
    programme: Programme
    priority: int
    started_at: float  # wall time


class BroadcastLog:
    def __init__(self, store: Store, clock: Clock, wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        # one anchor maps the pipeline's clock to wall time, so the log is exact to the tick
        self._anchor_ns = clock.now_ns()
        self._anchor_wall = wall()
        self._open: dict[str, _Open] = {}

    def wall_of(self, at_ns: int) -> float:
        return self._anchor_wall + (at_ns - self._anchor_ns) / NS_PER_S

    def consume(self, events: list[SwitchEvent]) -> int:
        """Close the entries these switches ended, open the ones they started; returns rows
        written."""
        rows = []
        for ev in events:
            at = self.wall_of(ev.at_ns)
            current = self._open.pop(ev.zone_id, None)
            if current is not None and current.programme is ev.ended:
                rows.append(self._row(ev.zone_id, current, at, ev.reason))
            if ev.started.kind is not ProgrammeKind.IDLE:
                self._open[ev.zone_id] = _Open(ev.started, ev.started_priority, at)
        if rows:
            self.store.log_broadcast(rows)
        return len(rows)

    def close_all(self, reason: EndReason = EndReason.STOPPED) -> None:
        at = self.wall_of(self._clock.now_ns())
        rows = [self._row(zone, entry, at, reason) for zone, entry in self._open.items()]
        self._open.clear()
        if rows:
            self.store.log_broadcast(rows)

    def on_air(self) -> list[dict[str, Any]]:
        return [{"zone": zone, "programme": e.programme.name, "kind": e.programme.kind.value,
                 "priority": e.priority, "started_at": e.started_at}
                for zone, e in self._open.items()]

    @staticmethod
    def _row(zone: str, entry: _Open, ended_at: float, reason: EndReason
             ) -> tuple[str, str, str, int, str, float, float, str]:
        prog = entry.programme
        return (zone, prog.name, prog.kind.value, entry.priority, "", entry.started_at,
                ended_at, reason.value)
