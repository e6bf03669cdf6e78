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

import asyncio
import enum
import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from loa.config import AlarmConfig
from loa.core.clock import NS_PER_S
from loa.core.i18n import N_, SOURCE_LANGUAGE, Message, catalogue
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
_KIND_VALUES = {kind: kind.value for kind in KINDS}  # a plain str each (``.value`` is slow)
RESYNC_ALARM_S = 60

# What the alarms say of themselves (an alarm's ``detail``): messages whose fields are text
# (numbers formatted here, in the one way every language writes them) or messages themselves.
# The English is what the audit log keeps, so ``say_detail`` can read a detail back from it.
BROKER_DOWN = N_("no connection to the MQTT broker: {error}")
CONNECTING = N_("connecting")
CLOCK_RESYNC = N_("the master clock fell {behind} ms behind and resynchronised: every zone "
                  "lost that much audio")
DISK_FULL = N_("the data disk refuses writes ({error}): {held} write(s) wait in memory for "
               "room, {lost} lost so far")
LOOP_LAG = N_("the event loop ran {late} ms late (limit {limit} ms)")
OFFLINE = N_("offline: {reason}")
NOT_SEEN = N_("not seen since the server started")
SUPPLY = N_("supply {volts} V outside {low}–{high} V")
RELAY = N_("protection relay tripped")
UNDERRUNS = N_("{count} underruns in {window} s")
ZONE_SILENT = N_("scheduled {title!r} is not on air (on air: {on_air})")
SOURCE_DOWN = N_("{source} is not sending (asked for by {zone})")
DETAILS = (BROKER_DOWN, CLOCK_RESYNC, DISK_FULL, LOOP_LAG, OFFLINE, SUPPLY, RELAY, UNDERRUNS,
           ZONE_SILENT, SOURCE_DOWN)
# what may fill a detail's field (why an endpoint is offline: loa.control.fleet.control)
PHRASES = (NOT_SEEN, CONNECTING, "connected", "disconnected (last will or goodbye)",
           "heard from again", "no word for {seconds} s")


class Detail(str):
    """An alarm's detail: its English text (a ``str``: the audit log's, the logs', equal to
    the text), with the ``Message`` it says (``message``) for a reader of another
    language."""

    message: Message
    _said: dict[str, str]

    def __new__(cls, message: Message) -> Detail:
        out = super().__new__(cls, str(message))
        out.message = message
        out._said = {SOURCE_LANGUAGE: str(out)}
        return out

    def say(self, language: str) -> str:
        """The detail in ``language``, said once per language: one detail is shared by
        every endpoint offline for the same reason (``offline_detail``)."""
        said = self._said.get(language)
        if said is None:
            said = self._said[language] = self.message.say(language)
        return said


def detail(msgid: str, **fields: object) -> Detail:
    """A ``Detail`` of ``msgid`` (``N_``-marked) and its fields."""
    return Detail(Message(msgid, fields))


class _Repr(str):
    """Text read back from a ``{name!r}`` field: its ``repr`` is the text as it was shown."""

    def __repr__(self) -> str:
        return str(self)


@functools.cache
def _pattern(msgid: str) -> re.Pattern[str]:
    """A regular expression that reads ``msgid``'s English back: a group per field."""
    parts = re.split(r"\{(\w+)(?:![rs])?\}", msgid)
    return re.compile("".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.*?)"
                              for i, p in enumerate(parts)) + r"\Z", re.S)


def read_detail(text: str, msgids: tuple[str, ...] = DETAILS) -> Message | None:
    """The message whose English ``text`` is, among ``msgids``, its fields read back (a
    field that is itself one of ``PHRASES`` read as that message); None if none says it."""
    for msgid in msgids:
        found = _pattern(msgid).match(text)
        if found is None:
            continue
        fields: dict[str, object] = {}
        for name, value in found.groupdict().items():
            if f"{{{name}!r}}" in msgid:
                fields[name] = _Repr(value)
            else:
                fields[name] = read_detail(value, PHRASES) or value
        return Message(msgid, fields)
    return None


@functools.lru_cache(maxsize=4096)
def say_detail(text: str, language: str) -> str:
    """An alarm's detail, as the audit log and the status keep it (English), said in
    ``language``: read back as its message (``read_detail``), else translated whole if the
    catalogue has it, else as it is (an older server's wording). Cached: the status says
    the same details every second."""
    if language == SOURCE_LANGUAGE or not text:
        return text
    message = read_detail(text)
    return message.say(language) if message is not None else catalogue(language).gettext(text)


def said_alarms(views: Sequence[Mapping[str, Any]], language: str) -> list[dict[str, Any]]:
    """Alarm views (``Alarm.describe``'s, or the alarm history's) with their ``detail`` said
    in ``language`` (``say_detail``)."""
    return [{**v, "detail": say_detail(str(v.get("detail") or ""), language)} for v in views]


@dataclass
class Alarm:
    """One condition on one subject (an endpoint id, a zone id, a source name, ...), pending
    until it has held for its hold time, then raised."""

    kind: AlarmKind
    subject: str
    detail: str  # English; a ``Detail`` says it in other languages too
    first_ns: int  # when the condition was first seen
    raised_at: float | None = None  # wall time, once it lasted long enough
    zone: str | None = None  # where it is, as it was raised: the audit log's zone
    seen: int = 0  # the board's last check that found its condition (``AlarmBoard.begin``)

    def describe(self, language: str = SOURCE_LANGUAGE) -> dict[str, Any]:
        """The API view (``raised_at`` unix seconds, None while pending), its ``detail`` said
        in ``language`` (English by default)."""
        detail = self.detail
        text = detail.say(language) if isinstance(detail, Detail) else \
            say_detail(detail, language)
        return {"kind": _KIND_VALUES[self.kind], "subject": self.subject, "detail": text,
                "raised_at": self.raised_at}


# kind, subject, detail (a ``Detail``: English, and its message), since (clock ns), hold s
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
        self._check = 0  # the check under way (``begin``)
        # since ``views`` was last asked: alarms raised, keys cleared, raised alarms whose
        # detail changed (what it changes in its list, rather than making it anew)
        self._views: list[dict[str, Any]] = []
        self._raised: list[Alarm] = []
        self._cleared: set[tuple[AlarmKind, str]] = set()
        self._redescribe: set[tuple[AlarmKind, str]] = set()

    def update(self, conditions: Iterable[Condition], now_ns: int, wall: float) -> None:
        """Take the conditions that hold now (``now_ns`` injected clock, ``wall`` unix
        seconds): raise those held long enough, clear those no longer among them. One check
        whole: ``begin``, ``take``, ``sweep``."""
        self.begin()
        self.take(conditions, now_ns, wall)
        self.sweep()

    def begin(self) -> None:
        """Start a check whose conditions come in parts (``take``, one per loop step, say),
        ended by ``sweep``. Checks must not overlap: the caller holds them apart."""
        self._check += 1

    def take(self, conditions: Iterable[Condition], now_ns: int, wall: float) -> None:
        """Some of the conditions that hold now: raise those held long enough."""
        check = self._check
        for kind, subject, detail, since_ns, hold_s in conditions:
            key = (kind, subject)
            alarm = self.pending.get(key)
            if alarm is None:
                alarm = self.pending[key] = Alarm(kind, subject, detail, since_ns)
            elif alarm.detail != detail and alarm.raised_at is not None:
                self._redescribe.add(key)  # its view only, at the next ``views``
            alarm.detail = detail
            alarm.seen = check
            if alarm.raised_at is None and now_ns - alarm.first_ns >= hold_s * NS_PER_S:
                alarm.raised_at = wall
                alarm.zone = self.zone_of(subject)
                self.raised_total[kind] += 1
                self._raised.append(alarm)
                self.audit("alarm.raised", subject, {"kind": kind.value, "detail": detail},
                           alarm.zone)

    def sweep(self) -> None:
        """End the check: clear the alarms whose condition it did not find."""
        check = self._check
        for key in [k for k, a in self.pending.items() if a.seen != check]:
            alarm = self.pending.pop(key)
            if alarm.raised_at is not None:
                self._cleared.add(key)
                self.audit("alarm.cleared", alarm.subject, {"kind": alarm.kind.value},
                           alarm.zone)

    def active(self) -> list[Alarm]:
        """The raised alarms (pending ones are not yet shown)."""
        return [a for a in self.pending.values() if a.raised_at is not None]

    def views(self) -> list[dict[str, Any]]:
        """The raised alarms' API views (``Alarm.describe``, English), newest raised first.
        Kept between calls and changed by what changed since: the views of the alarms
        cleared dropped, of those whose detail changed made again, of those raised made and
        put first (the status shows every alarm every second, thousands when a district's
        endpoints lost the broker: a broker that comes back clears them all at once). The
        list is shared: read it, do not change it (a change makes a new list)."""
        if not (self._raised or self._cleared or self._redescribe):
            return self._views
        views = self._views
        gone, again, pending = self._cleared, self._redescribe, self.pending
        if gone or again:
            kept = []
            for view in views:
                key = (view["kind"], view["subject"])  # an AlarmKind is its str value
                if key in gone:
                    continue
                alarm = pending.get(key) if key in again else None
                kept.append(alarm.describe() if alarm is not None else view)
            views = kept
        if self._raised:
            fresh = [a for a in self._raised
                     if pending.get((a.kind, a.subject)) is a]  # not cleared meanwhile
            fresh.sort(key=lambda a: a.raised_at or 0.0, reverse=True)
            views = [a.describe() for a in fresh] + views
        self._views = views
        self._raised, self._cleared, self._redescribe = [], set(), set()
        return views


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


# Endpoints whose conditions one loop step reads (``check``): a district of 1,010 took 9 ms
# of one step when each offline endpoint's detail was written anew every second (the suite's
# watchdog log, 2026-12-01); a province's thousands would hold the master clock past a frame.
CHECK_SLICE = 500


def conditions(s: AlarmSource, cfg: AlarmConfig, now_ns: int) -> list[Condition]:
    """The conditions that hold now (``now_ns`` on the injected clock), each with the time it
    has held since and how long it must hold before its alarm is raised (``Condition``);
    ``AlarmBoard.update`` raises and clears the alarms from them. All in one go: ``check``
    reads the endpoints' a slice a loop step."""
    return station_conditions(s, cfg, now_ns) + \
        endpoint_conditions(s, cfg, now_ns, s.endpoints.endpoints)


async def check(s: AlarmSource, cfg: AlarmConfig, board: AlarmBoard, now_ns: int,
                wall: float, per_step: int = CHECK_SLICE) -> None:
    """Evaluate the rules into ``board`` (``now_ns`` injected clock, ``wall`` unix seconds):
    the station's conditions, then the endpoints' ``per_step`` a loop step. The endpoints are
    those registered when it starts; checks must not overlap (``AlarmBoard.begin``)."""
    board.begin()
    board.take(station_conditions(s, cfg, now_ns), now_ns, wall)
    eids = list(s.endpoints.endpoints)
    for start in range(0, len(eids), per_step):
        await asyncio.sleep(0)  # the loop's other work (the master clock) between slices
        board.take(endpoint_conditions(s, cfg, now_ns, eids[start:start + per_step]), now_ns,
                   wall)
    board.sweep()


def station_conditions(s: AlarmSource, cfg: AlarmConfig, now_ns: int) -> list[Condition]:
    """The conditions of the station, its zones and sources (``conditions`` less the
    endpoints')."""
    out: list[Condition] = []
    fleet = s.fleet
    if not fleet.connected.is_set() and fleet.broker_url:
        out.append((AlarmKind.BROKER_DOWN, fleet.broker_url,
                    detail(BROKER_DOWN, error=fleet.last_error or Message(CONNECTING)),
                    now_ns, cfg.hold_s))
    engine = s.engine
    if engine.last_resync_ns and now_ns - engine.last_resync_ns < RESYNC_ALARM_S * NS_PER_S:
        out.append((AlarmKind.CLOCK_RESYNC, "master clock",
                    detail(CLOCK_RESYNC, behind=f"{engine.last_resync_behind_ms:.0f}"),
                    engine.last_resync_ns, 0))
    store = s.store
    if store.disk_error is not None:
        out.append((AlarmKind.DISK_FULL, "data disk",
                    detail(DISK_FULL, error=store.disk_error, held=str(store.held_writes),
                           lost=str(store.lost_writes)), now_ns, 0))
    worst = s.loop_lag.recent_ms()["max"]
    if worst is not None and worst > cfg.loop_lag_ms:
        out.append((AlarmKind.LOOP_LAG, "server",
                    detail(LOOP_LAG, late=f"{worst:.0f}", limit=f"{cfg.loop_lag_ms:g}"),
                    now_ns, 0))
    for run in s.schedule.running:
        prio = run.item.cls.priority
        for zid in run.item.zones:
            ch = engine.channels.get(zid)
            if ch is not None and ch.on_air.priority < prio:
                out.append((AlarmKind.ZONE_SILENT, zid,
                            detail(ZONE_SILENT, title=run.item.title,
                                   on_air=ch.on_air.programme_name), now_ns, cfg.hold_s))
    down: dict[str, Detail] = {}
    for req in engine.requests.values():
        prog = req.programme
        if prog.kind is ProgrammeKind.LIVE and not prog.finished and not prog.available:
            down[prog.name] = detail(SOURCE_DOWN, source=prog.name, zone=req.zone_id)
    out += [(AlarmKind.SOURCE_DOWN, name, text, now_ns, cfg.hold_s)
            for name, text in down.items()]
    return out


# An offline endpoint's detail, by its reason's English: the same for most of a district's
# (never seen, last will), and writing it is most of what an endpoint's check costs
_offline_details: dict[str, Detail] = {}
OFFLINE_DETAILS_KEPT = 1024
_NOT_SEEN = Message(NOT_SEEN)


def offline_detail(reason: str, why: object = None) -> Detail:
    """The ``OFFLINE`` detail of ``reason`` (English), said as ``why`` when that is a
    ``Message`` of the same English (the fleet's ``Health.why``), written once per reason."""
    said = _offline_details.get(reason)
    if said is None:
        if len(_offline_details) >= OFFLINE_DETAILS_KEPT:  # "no word for N s": N varies
            _offline_details.clear()
        message = why if isinstance(why, Message) and str(why) == reason else reason
        said = _offline_details[reason] = detail(OFFLINE, reason=message)
    return said


def endpoint_conditions(s: AlarmSource, cfg: AlarmConfig, now_ns: int,
                        eids: Iterable[str]) -> list[Condition]:
    """The conditions of the endpoints ``eids`` (offline, supply, relay, underruns); an id no
    longer registered (removed while a sliced ``check`` ran) has none."""
    out: list[Condition] = []
    health = s.fleet.health
    registered = s.endpoints.endpoints
    offline_hold = cfg.offline_minutes * 60
    for eid in eids:
        if eid not in registered:  # removed since the check began: nothing to say of it
            continue
        h = health.get(eid)
        if h is None:
            out.append((AlarmKind.ENDPOINT_OFFLINE, eid, offline_detail(NOT_SEEN, _NOT_SEEN),
                        s.started_ns, offline_hold))
            continue
        if not h.online:
            out.append((AlarmKind.ENDPOINT_OFFLINE, eid,
                        offline_detail(h.reason, getattr(h, "why", None)),
                        h.changed_ns or s.started_ns, offline_hold))
        t = h.telemetry
        if t:
            v = t.get("supply_v")
            if v is not None and not cfg.supply_v_min <= v <= cfg.supply_v_max:
                out.append((AlarmKind.SUPPLY_VOLTAGE, eid,
                            detail(SUPPLY, volts=f"{v:g}", low=f"{cfg.supply_v_min:g}",
                                   high=f"{cfg.supply_v_max:g}"), now_ns, 0))
            if t.get("relay") == "tripped":
                out.append((AlarmKind.RELAY_FAULT, eid, detail(RELAY), now_ns, 0))
        if h.underruns:  # the count's growth since the window began (cumulative counter)
            start_ns = now_ns - int(cfg.underrun_window_s * NS_PER_S)
            base = h.underruns[0][1]
            for at, n in h.underruns:
                if at > start_ns:
                    break
                base = n
            grew = h.underruns[-1][1] - base
            if grew > cfg.underruns_max:
                out.append((AlarmKind.UNDERRUNS, eid,
                            detail(UNDERRUNS, count=str(grew),
                                   window=f"{cfg.underrun_window_s:g}"), now_ns, 0))
    return out
