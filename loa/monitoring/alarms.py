"""Alarms (cảnh báo kỹ thuật): conditions that need an engineer, raised once they have lasted
long enough and cleared when they end; every raise and clear goes to the audit log.

    endpoint_offline   offline longer than ``offline_minutes``
    zone_silent        a scheduled programme's window is open but the zone does not carry it
                       (nor anything above it)
    source_down        a live feed or relay that a zone asks for is not sending
    underruns          an endpoint reports more underruns per window than ``underruns_max``
    supply_voltage     an endpoint's supply voltage is outside the band
    relay_fault        an endpoint's protection relay has tripped
    broker_down        the server has lost its MQTT broker (no control, no presence)
    loop_lag           the event loop ran late by more than ``loop_lag_ms`` in the last 10 s
                       (the audio of every zone is at risk; see ``loa_loop_lag_seconds``)
    clock_resync       the master clock fell so far behind that it resynchronised: every zone
                       lost that much audio (also a whole-process pause, which the loop-lag
                       probe, paused with it, cannot see); raised for ``RESYNC_ALARM_S``
    disk_full          the data disk refuses the store's writes (full, over a quota or a
                       file-size limit, or failing): records wait in memory for room (alerts
                       still play); raised at once, cleared when the held writes are written
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from loa.config import AlarmConfig
from loa.core.clock import NS_PER_S
from loa.monitoring.loop_lag import LoopLag
from loa.monitoring.views import EngineView, FleetView, RegistryView, ScheduleView, StoreView
from loa.playout.programme import ProgrammeKind


class AlarmKind(enum.StrEnum):
    """What an alarm is about (the module docstring says when each is raised); the values are
    the API's and the audit log's ``kind`` and the metrics' label."""

    ENDPOINT_OFFLINE = "endpoint_offline"
    ZONE_SILENT = "zone_silent"
    SOURCE_DOWN = "source_down"
    UNDERRUNS = "underruns"
    SUPPLY_VOLTAGE = "supply_voltage"
    RELAY_FAULT = "relay_fault"
    BROKER_DOWN = "broker_down"
    LOOP_LAG = "loop_lag"
    CLOCK_RESYNC = "clock_resync"
    DISK_FULL = "disk_full"


KINDS = tuple(AlarmKind)
RESYNC_ALARM_S = 60


@dataclass
class Alarm:
    """One condition on one subject (an endpoint id, a zone id, a source name, ...), pending
    until it has held for its hold time, then raised."""

    kind: AlarmKind
    subject: str
    detail: str
    first_ns: int  # when the condition was first seen
    raised_at: float | None = None  # wall time, once it lasted long enough
    zone: str | None = None  # where it is, as it was raised: the audit log's zone

    def describe(self) -> dict[str, Any]:
        """The API view (``raised_at`` unix seconds, None while pending)."""
        return {"kind": self.kind.value, "subject": self.subject, "detail": self.detail,
                "raised_at": self.raised_at}


# kind, subject, detail, since (clock ns), hold s
Condition = tuple[AlarmKind, str, str, int, float]


# (action, subject, detail, zone): how the board writes a raise or a clear to the audit log
AuditAlarm = Callable[[str, str, dict[str, Any], str | None], None]


def no_zone(subject: str) -> str | None:
    """``AlarmBoard``'s default ``zone_of``: every alarm is the whole station's."""
    return None


class AlarmBoard:
    """The alarms pending and raised, keyed by (kind, subject), with a count of raises per
    kind; each raise and clear goes to ``audit(action, subject, detail, zone)``: ``zone``
    the zone the subject lies in when the alarm is raised (``zone_of(subject)``: an
    endpoint's zone, a zone itself; None for the whole station's), the same for its clear,
    so that the history of an alarm is read in the scope that saw it raised."""

    def __init__(self, audit: AuditAlarm,
                 zone_of: Callable[[str], str | None] = no_zone) -> None:
        self.audit = audit  # (action, subject, detail, zone)
        self.zone_of = zone_of
        self.pending: dict[tuple[AlarmKind, str], Alarm] = {}
        self.raised_total: dict[AlarmKind, int] = dict.fromkeys(KINDS, 0)

    def update(self, conditions: list[Condition], now_ns: int, wall: float) -> None:
        """Take the conditions that hold now (``now_ns`` injected clock, ``wall`` unix
        seconds): raise those held long enough, clear those no longer among them."""
        seen = set()
        for kind, subject, detail, since_ns, hold_s in conditions:
            key = (kind, subject)
            seen.add(key)
            alarm = self.pending.get(key)
            if alarm is None:
                alarm = self.pending[key] = Alarm(kind, subject, detail, since_ns)
            alarm.detail = detail
            if alarm.raised_at is None and now_ns - alarm.first_ns >= hold_s * NS_PER_S:
                alarm.raised_at = wall
                alarm.zone = self.zone_of(subject)
                self.raised_total[kind] += 1
                self.audit("alarm.raised", subject, {"kind": kind.value, "detail": detail},
                           alarm.zone)
        for key in [k for k in self.pending if k not in seen]:
            alarm = self.pending.pop(key)
            if alarm.raised_at is not None:
                self.audit("alarm.cleared", alarm.subject, {"kind": alarm.kind.value},
                           alarm.zone)

    def active(self) -> list[Alarm]:
        """The raised alarms (pending ones are not yet shown)."""
        return [a for a in self.pending.values() if a.raised_at is not None]


class AlarmSource(Protocol):
    """What the alarm rules read: the fleet, the engine, the loop-lag probe, the endpoint
    registry, the schedule, the store, and when the server started (``started_ns``, injected
    clock: an endpoint never seen counts as offline since then)."""

    @property
    def fleet(self) -> FleetView: ...

    @property
    def engine(self) -> EngineView: ...

    @property
    def loop_lag(self) -> LoopLag: ...

    @property
    def endpoints(self) -> RegistryView: ...

    @property
    def schedule(self) -> ScheduleView: ...

    @property
    def store(self) -> StoreView: ...

    @property
    def started_ns(self) -> int: ...


def conditions(s: AlarmSource, cfg: AlarmConfig, now_ns: int) -> list[Condition]:
    """The conditions that hold now (``now_ns`` on the injected clock), each with the time it
    has held since and how long it must hold before its alarm is raised (``Condition``);
    ``AlarmBoard.update`` raises and clears the alarms from them."""
    out: list[Condition] = []
    fleet = s.fleet
    if not fleet.connected.is_set() and fleet.broker_url:
        out.append((AlarmKind.BROKER_DOWN, fleet.broker_url,
                    f"no connection to the MQTT broker: {fleet.last_error or 'connecting'}",
                    now_ns, cfg.hold_s))
    engine = s.engine
    if engine.last_resync_ns and now_ns - engine.last_resync_ns < RESYNC_ALARM_S * NS_PER_S:
        out.append((AlarmKind.CLOCK_RESYNC, "master clock",
                    f"the master clock fell {engine.last_resync_behind_ms:.0f} ms behind and "
                    "resynchronised: every zone lost that much audio", engine.last_resync_ns, 0))
    store = s.store
    if store.disk_error is not None:
        out.append((AlarmKind.DISK_FULL, "data disk",
                    f"the data disk refuses writes ({store.disk_error}): {store.held_writes} "
                    f"write(s) wait in memory for room, {store.lost_writes} lost so far",
                    now_ns, 0))
    worst = s.loop_lag.recent_ms()["max"]
    if worst is not None and worst > cfg.loop_lag_ms:
        out.append((AlarmKind.LOOP_LAG, "server", f"the event loop ran {worst:.0f} ms late "
                    f"(limit {cfg.loop_lag_ms:g} ms)", now_ns, 0))
    for eid in s.endpoints.endpoints:
        h = fleet.health.get(eid)
        if h is None or not h.online:
            since = h.changed_ns if h is not None and h.changed_ns else s.started_ns
            reason = h.reason if h is not None else "not seen since the server started"
            out.append((AlarmKind.ENDPOINT_OFFLINE, eid, f"offline: {reason}", since,
                        cfg.offline_minutes * 60))
        if h is None:
            continue
        t = h.telemetry
        v = t.get("supply_v")
        if v is not None and not cfg.supply_v_min <= v <= cfg.supply_v_max:
            out.append((AlarmKind.SUPPLY_VOLTAGE, eid, f"supply {v:g} V outside "
                        f"{cfg.supply_v_min:g}–{cfg.supply_v_max:g} V", now_ns, 0))
        if t.get("relay") == "tripped":
            out.append((AlarmKind.RELAY_FAULT, eid, "protection relay tripped", now_ns, 0))
        if h.underruns:  # the count's growth since the window began (cumulative counter)
            start_ns = now_ns - int(cfg.underrun_window_s * NS_PER_S)
            base = h.underruns[0][1]
            for at, n in h.underruns:
                if at > start_ns:
                    break
                base = n
            grew = h.underruns[-1][1] - base
            if grew > cfg.underruns_max:
                out.append((AlarmKind.UNDERRUNS, eid, f"{grew} underruns in "
                            f"{cfg.underrun_window_s:g} s", now_ns, 0))
    for run in s.schedule.running:
        prio = run.item.cls.priority
        for zid in run.item.zones:
            ch = engine.channels.get(zid)
            if ch is not None and ch.on_air.priority < prio:
                out.append((AlarmKind.ZONE_SILENT, zid,
                            f"scheduled {run.item.title!r} is not on air "
                            f"(on air: {ch.on_air.programme_name})", now_ns, cfg.hold_s))
    down: dict[str, str] = {}
    for req in engine.requests.values():
        prog = req.programme
        if prog.kind is ProgrammeKind.LIVE and not prog.finished and not prog.available:
            down[prog.name] = f"{prog.name} is not sending (asked for by {req.zone_id})"
    out += [(AlarmKind.SOURCE_DOWN, name, detail, now_ns, cfg.hold_s)
            for name, detail in down.items()]
    return out
