"""The broadcast log (nhật ký phát): what each zone actually played, when, for how long, and
why it ended (completed, preempted, cancelled, failed…). Built from the engine's switch events,
written to SQLite once a second, off the audio path.

A segment is written twice: as it starts (an open segment: zone, programme, start), and as it
ends (the log row, with its end and end reason). Each second the open segments are stamped as
still on air. A server that stops without closing them (killed, crashed, its power cut) leaves
them open in the database: the next start (``recover``) closes them at the last second they
were seen on air, ended by ``EndReason.UNCLEAN_STOP``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loa.control.store import BroadcastRow, Store
from loa.core.clock import NS_PER_S, Clock
from loa.playout.programme import EndReason, Programme, ProgrammeKind
from loa.playout.zone_channel import SwitchEvent


@dataclass
class _Open:
    programme: Programme
    priority: int
    started_at: float  # wall time


class BroadcastLog:
    """The open segments by zone (in memory, and in the store as they start), closed into
    the store's log as the engine's switch events end them. Times are unix seconds, mapped
    from ``clock`` through one anchor taken at construction (exact to the tick)."""

    def __init__(self, store: Store, clock: Clock, wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock
        # one anchor maps the pipeline's clock to wall time, so the log is exact to the tick
        self._anchor_ns = clock.now_ns()
        self._anchor_wall = wall()
        self._open: dict[str, _Open] = {}

    def wall_of(self, at_ns: int) -> float:
        """The unix time (s) of ``at_ns`` on the pipeline's clock."""
        return self._anchor_wall + (at_ns - self._anchor_ns) / NS_PER_S

    def recover(self, reason: EndReason = EndReason.UNCLEAN_STOP) -> list[dict[str, Any]]:
        """At start, before anything plays: the segments the last run left open (it did not
        stop cleanly) go into the log, ended at the last time each was seen on air, for
        ``reason``. Returns them as they were left (zone, programme, kind, priority, label,
        started_at, seen_at). Blocking (a store read): call it beside the loop."""
        left = self.store.open_broadcasts()
        if left:
            self.store.close_open_broadcasts(reason.value)
        return left

    def consume(self, events: list[SwitchEvent]) -> int:
        """Close the entries these switches ended and open the ones they started (in one
        transaction), then stamp what is on air as seen now; returns rows written."""
        rows = []
        started: set[str] = set()
        for ev in events:
            at = self.wall_of(ev.at_ns)
            current = self._open.pop(ev.zone_id, None)
            if current is not None and current.programme is ev.ended:
                rows.append(self._row(ev.zone_id, current, at, ev.reason))
            if ev.started.kind is not ProgrammeKind.IDLE:
                self._open[ev.zone_id] = _Open(ev.started, ev.started_priority, at)
                started.add(ev.zone_id)
        opened = [(zone, entry) for zone, entry in self._open.items() if zone in started]
        with self.store.transaction():
            self.store.log_broadcast(rows)
            for zone, entry in opened:
                prog = entry.programme
                self.store.open_broadcast((zone, prog.name, prog.kind.value, entry.priority, "",
                                           entry.started_at))
        if self._open:
            self.store.broadcasts_seen(self.wall_of(self._clock.now_ns()))
        return len(rows)

    def close_all(self, reason: EndReason = EndReason.STOPPED) -> None:
        """End every open segment now, for ``reason`` (the server stopping)."""
        at = self.wall_of(self._clock.now_ns())
        rows = [self._row(zone, entry, at, reason) for zone, entry in self._open.items()]
        self._open.clear()
        if rows:
            self.store.log_broadcast(rows)

    def on_air(self) -> list[dict[str, Any]]:
        """The open segments: zone, programme, kind, priority, started_at (unix s)."""
        return [{"zone": zone, "programme": e.programme.name, "kind": e.programme.kind.value,
                 "priority": e.priority, "started_at": e.started_at}
                for zone, e in self._open.items()]

    @staticmethod
    def _row(zone: str, entry: _Open, ended_at: float, reason: EndReason) -> BroadcastRow:
        prog = entry.programme
        return (zone, prog.name, prog.kind.value, entry.priority, "", entry.started_at,
                ended_at, reason.value)
