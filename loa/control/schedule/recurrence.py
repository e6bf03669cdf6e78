"""Schedule items and their recurrence set (RFC 5545 §3.8.5: RRULE, RDATE, EXDATE and
RECURRENCE-ID overrides), expanded by recurring-ical-events in each item's own time zone: the
station's (Asia/Ho_Chi_Minh) unless an imported event named another, so a weekly event from a
zone with daylight saving keeps its local hour there and moves by an hour in station time when
that zone changes. Wall-clock time exists only here, in the calendar."""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from loa.core.clock import STATION_TZ as STATION_TZ  # defined below protocol/, for CAP
from loa.core.content import SCHEDULE_KINDS, ContentError, ContentSpec, parse_content
from loa.core.i18n import N_, Explained
from loa.core.priority import Priority

if TYPE_CHECKING:
    # icalendar and recurring-ical-events (~5 MB, 0.15 s to import) are imported where a
    # rule is read or expanded, always beside the loop: a server with no recurring item
    # never loads them (issue 17)
    import icalendar

CONFLICT_HORIZON = timedelta(days=14)
UTC = ZoneInfo("UTC")
RULE_PROPERTIES = ("RRULE", "RDATE", "EXDATE")  # what the rule text may hold
# Slots are expanded a day ahead at a time and kept: the engine asks again on every wake, and
# an expansion walks the rule from its first slot (a long-running rule costs milliseconds).
# Every expansion is blocking work for a worker thread, never for the event loop: a dense rule
# whose next slot lies years ahead takes seconds to find it (``next_slot``).
CACHE_SPAN = timedelta(days=1)
MAX_WINDOW_S = 24 * 3600


class ScheduleError(Explained, ValueError):
    """A bad schedule item; the message says what to fix."""


class BulletinClass(enum.Enum):
    """Circular 39/2020/TT-BTTTT's classes a schedule item may have (emergency bulletins
    are alerts, not schedule items); ``priority`` is the request priority."""

    NORMAL = "normal"  # bản tin thông thường, priority 50
    PRIORITY = "priority"  # bản tin ưu tiên, priority 60

    @property
    def priority(self) -> int:
        return int(Priority.PRIORITY_BULLETIN if self is BulletinClass.PRIORITY
                   else Priority.SCHEDULED)


class MissedPolicy(enum.StrEnum):
    """What a slot missed while the server was down becomes at the next start."""

    SKIP = "skip"  # logged and audited, not played
    LATE = "late"  # played late, if within the item's late_minutes


@dataclass(frozen=True)
class Override:
    """One occurrence of the set moved or re-timed (RFC 5545 RECURRENCE-ID): the slot that the
    rule gives at ``recurrence_id`` plays at ``start`` for ``duration_s`` seconds instead (both
    aware). A cancelled occurrence is not an override but an EXDATE."""

    recurrence_id: datetime
    start: datetime
    duration_s: float

    def to_json(self) -> dict[str, Any]:
        """``{"recurrence_id", "start": ISO 8601 with offset, "duration_s"}``."""
        return {"recurrence_id": self.recurrence_id.isoformat(),
                "start": self.start.isoformat(), "duration_s": self.duration_s}


@dataclass
class ScheduleItem:
    """A bulletin on zones from ``start`` (aware; its zone is the one the rule is expanded
    in), repeating by an RFC 5545 rule text (RRULE/RDATE/EXDATE lines) with ``overrides`` of
    single occurrences, with a window of ``duration_s`` seconds (at most 24 h) per slot.

    ``start`` always counts as the first slot (RFC 5545 §3.8.5.3), whether the rule matches it
    or not. An item without zones or content is a draft (``draft``): it has no slots, so it
    never plays, until both are set. Construction raises ScheduleError for a naive start, a
    bad duration, an unknown ``missed`` policy or a rule that does not parse.

    Construction, ``slots`` and ``next_slot`` expand the rule: blocking, call them beside the
    loop (``asyncio.to_thread``). They may run in several threads at once (the engine's plan,
    the API's answers): the caches are replaced as whole tuples (a reader takes one reference,
    never a half-updated one), and a recurring-ical-events query serves one thread at a time
    (dateutil's cached rule iteration is not safe to share between threads: a rule that runs
    out keeps its cache lock). An expansion uses the item's query when no other thread does,
    else one of its own rather than wait for a long one (two months of a dense rule);
    ``next_slot``'s search always has one of its own (dropped after it, with the occurrences
    its rules cached) under a lock of its own, so seconds spent searching hold up nothing."""

    id: str
    title: str
    zones: list[str]  # empty only in a draft
    start: datetime  # the first slot, aware, in the zone the rule is expanded in
    duration_s: float  # the window: the item may play (or resume) until start + duration
    content: ContentSpec | None  # None only in a draft
    # RFC 5545: "FREQ=DAILY", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;COUNT=10", or lines with chosen
    # dates and exceptions: "RDATE:20261203T060000,20261210T060000", "EXDATE:…" (times without
    # TZID or Z are in the item's zone)
    rrule: str | None = None
    cls: BulletinClass = BulletinClass.NORMAL
    missed: MissedPolicy = MissedPolicy.SKIP  # after an outage (late: within late_minutes)
    late_minutes: int = 0
    overrides: tuple[Override, ...] = ()
    _query: Any = field(default=None, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(  # held by the thread that uses _query
        default_factory=threading.Lock, init=False, repr=False, compare=False)
    _walk_lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False)  # next_slot's
    # (from, to, slot starts in [from, to)) and (after, the next slot at or after it)
    _cache: tuple[datetime, datetime, list[datetime]] | None = field(
        default=None, init=False, repr=False, compare=False)
    _next: tuple[datetime, datetime | None] | None = field(
        default=None, init=False, repr=False, compare=False)
    _durations: dict[datetime, float] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ScheduleError(N_("start needs a time zone (the station's local time)"))
        if not isinstance(self.start.tzinfo, ZoneInfo):  # a bare offset: no rules to expand in
            self.start = self.start.astimezone(
                UTC if self.start.utcoffset() == timedelta(0) else STATION_TZ)
        if not 0 < self.duration_s <= MAX_WINDOW_S:
            raise ScheduleError(N_("duration must be more than 0 and at most 24 hours"))
        self.missed = _missed(self.missed)
        for ov in self.overrides:
            if ov.start.tzinfo is None or ov.recurrence_id.tzinfo is None:
                raise ScheduleError(N_("an override's times need a time zone"))
            if not 0 < ov.duration_s <= MAX_WINDOW_S:
                raise ScheduleError(N_("an override's duration must be more than 0 and at "
                                       "most 24 hours"))
            self._durations[ov.start] = ov.duration_s
        if self.rrule or self.overrides:
            try:
                self._query = self._new_query()
                self._query.between(self.start, self.start + timedelta(seconds=1))  # a probe
            except (ValueError, TypeError) as exc:
                raise ScheduleError(N_("bad recurrence rule {rule!r}: {error}"),
                                    rule=self.rrule, error=str(exc)) from None

    @property
    def zone(self) -> ZoneInfo:
        """The time zone the rule is expanded in (the start's)."""
        assert isinstance(self.start.tzinfo, ZoneInfo)  # made so in __post_init__
        return self.start.tzinfo

    @property
    def draft(self) -> bool:
        """Whether zones or content are still missing: a draft never plays."""
        return not self.zones or self.content is None

    def components(self, uid: str) -> list[icalendar.Event]:
        """The recurrence set as iCalendar events, new on every call: the master (UID,
        DTSTART with its TZID, DURATION, RRULE, RDATE, EXDATE) and one event per override
        (UID, RECURRENCE-ID, DTSTART, DURATION). Both the expansion and the export read these.
        Raises ScheduleError for a rule that does not parse."""
        import icalendar

        master = icalendar.Event()
        master.add("uid", uid)
        master.add("dtstart", self.start)
        master.add("duration", timedelta(seconds=self.duration_s))
        if self.rrule:
            rrules, rdates, exdates = parse_rule(self.rrule, self.zone)
            for rule in rrules:
                master.add("rrule", rule)
            if rdates:
                master.add("rdate", rdates)
            if exdates:
                master.add("exdate", exdates)
        out = [master]
        for ov in self.overrides:
            ev = icalendar.Event()
            ev.add("uid", uid)
            ev.add("recurrence-id", ov.recurrence_id.astimezone(self.zone))
            ev.add("dtstart", ov.start.astimezone(self.zone))
            ev.add("duration", timedelta(seconds=ov.duration_s))
            out.append(ev)
        return out

    def _new_query(self) -> Any:
        """A recurring-ical-events query over the recurrence set (for one thread at a time)."""
        import icalendar
        import recurring_ical_events

        cal = icalendar.Calendar()
        for comp in self.components(f"{self.id}@loa"):
            cal.add_component(comp)
        return recurring_ical_events.of(cal)

    def slots(self, after: datetime, before: datetime) -> list[datetime]:
        """Slot starts with after <= start < before, in the station's time zone, in order.
        Blocking (a window over a day, or one the cached day does not cover, is expanded)."""
        if self.draft:
            return []
        if self._query is None:
            return [self.start] if after <= self.start < before else []
        if before - after > CACHE_SPAN:
            return self._expand(after, before)
        cache = self._cache  # one reference: another thread may replace it meanwhile
        if cache is None or after < cache[0] or before > cache[1]:
            cache = (after, after + 2 * CACHE_SPAN, self._expand(after, after + 2 * CACHE_SPAN))
            self._cache = cache
        return [s for s in cache[2] if after <= s < before]

    def next_slot(self, after: datetime) -> datetime | None:
        """The first slot at or after ``after``, or None if there is no more (or a draft).
        Blocking: with no slot within a day, recurring-ical-events searches ahead in ever
        wider windows (seconds for a 5-minute rule that starts years ahead), once per item
        and span without a slot (the answer is kept)."""
        if self.draft:
            return None
        if self._query is None:
            return self.start if self.start >= after else None
        soon = self.slots(after, after + CACHE_SPAN)
        if soon:
            return soon[0]
        hit, found = self._memo(after)
        if hit:
            return found
        with self._walk_lock:
            hit, found = self._memo(after)  # another thread may have searched meanwhile
            if hit:
                return found
            # a query of its own: its rules cache every occurrence they pass (hundreds of
            # thousands for a 5-minute rule searched years ahead), kept only while searching
            found = None
            for occ in self._new_query().after(after):
                start = occ.start
                if isinstance(start, datetime) and start >= after:
                    found = start.astimezone(STATION_TZ)
                    break
            self._next = (after, found)
        return found

    def _memo(self, after: datetime) -> tuple[bool, datetime | None]:
        """(whether the kept search answers for ``after``, its answer)."""
        memo = self._next  # no slot in [memo after, memo next): the answer holds in between
        if memo is not None and memo[0] <= after and (memo[1] is None or after <= memo[1]):
            return True, memo[1]
        return False, None

    def _expand(self, after: datetime, before: datetime) -> list[datetime]:
        # the item's query keeps what its rules computed (a long-running rule is then walked
        # from a cache); while another thread uses it, one of our own rather than a wait
        if self._lock.acquire(blocking=False):
            try:
                got = [occ.start for occ in self._query.between(after, before)]
            finally:
                self._lock.release()
        else:
            got = [occ.start for occ in self._new_query().between(after, before)]
        return sorted(s.astimezone(STATION_TZ) for s in got
                      if isinstance(s, datetime) and after <= s < before)

    def window(self, slot: datetime) -> tuple[datetime, datetime]:
        """(start, end) of a slot's window: the item may play or resume until the end (an
        override's own duration for a slot it moved)."""
        return slot, slot + timedelta(seconds=self._durations.get(slot, self.duration_s))

    def to_json(self) -> dict[str, Any]:
        """The item as the API and the store keep it: start as ISO 8601 with its offset,
        ``tz`` the zone its rule is expanded in, ``content`` None and ``draft`` true while
        zones or content are missing."""
        return {"id": self.id, "title": self.title, "zones": self.zones,
                "start": self.start.isoformat(), "tz": self.zone.key,
                "duration_s": self.duration_s,
                "content": None if self.content is None else self.content.to_json(),
                "rrule": self.rrule, "overrides": [o.to_json() for o in self.overrides],
                "class": self.cls.value, "missed": self.missed.value,
                "late_minutes": self.late_minutes, "draft": self.draft}


def parse_rule(text: str, zone: ZoneInfo
               ) -> tuple[list[icalendar.vRecur], list[datetime], list[datetime]]:
    """(RRULEs, RDATEs, EXDATEs) of a rule text: a bare RRULE value ("FREQ=DAILY") or RFC 5545
    content lines (RRULE, RDATE, EXDATE; with or without TZID) one a line. Times without TZID
    or Z are read in ``zone``; dates are aware in ``zone``; a floating UNTIL becomes UTC, as RFC
    5545 asks beside a zoned start. Raises ScheduleError naming what is wrong."""
    import icalendar

    lines = [ln.strip() for ln in text.replace("\\n", "\n").splitlines() if ln.strip()]
    lines = [ln if ":" in ln else f"RRULE:{ln}" for ln in lines]
    body = "".join(f"{ln}\r\n" for ln in lines)
    try:
        parsed = icalendar.Event.from_ical(f"BEGIN:VEVENT\r\n{body}END:VEVENT\r\n")
    except ValueError as exc:
        raise ScheduleError(N_("bad recurrence rule {rule!r}: {error}"),
                            rule=text, error=str(exc)) from None
    if not isinstance(parsed, icalendar.Event) or parsed.subcomponents:
        raise ScheduleError(N_("bad recurrence rule {rule!r}: only {properties} lines"),
                            rule=text, properties=", ".join(RULE_PROPERTIES))
    if parsed.errors:
        name, why = parsed.errors[0]
        raise ScheduleError(N_("bad recurrence rule {rule!r}: {property}: {error}"),
                            rule=text, property=name, error=str(why))
    other = sorted(set(parsed) - set(RULE_PROPERTIES))
    if other:
        raise ScheduleError(N_("bad recurrence rule {rule!r}: {properties} is not taken "
                               "(only {allowed})"), rule=text, properties=", ".join(other),
                            allowed=", ".join(RULE_PROPERTIES))
    rrules = [_until_in_utc(r, zone) for r in _listed(parsed.get("RRULE"))]
    return rrules, _times(parsed.get("RDATE"), "RDATE", zone), _times(
        parsed.get("EXDATE"), "EXDATE", zone)


def _listed(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def _until_in_utc(rule: icalendar.vRecur, zone: ZoneInfo) -> icalendar.vRecur:
    until = rule.get("UNTIL")
    if until:
        end = until[0]
        if not isinstance(end, datetime):  # a date: the whole of that day
            end = datetime.combine(end, time(23, 59, 59))
        if end.tzinfo is None:
            end = end.replace(tzinfo=zone)
        rule["UNTIL"] = [end.astimezone(UTC)]
    return rule


def _times(value: Any, name: str, zone: ZoneInfo) -> list[datetime]:
    out: list[datetime] = []
    for prop in _listed(value):
        for dt in (v.dt for v in prop.dts):
            if isinstance(dt, tuple):
                raise ScheduleError(N_("{property} periods are not taken: give that slot an "
                                       "override with its own duration"), property=name)
            if not isinstance(dt, datetime):
                raise ScheduleError(N_("{property} needs date-times, not the date {date}"),
                                    property=name, date=str(dt))
            out.append(dt.replace(tzinfo=zone) if dt.tzinfo is None else dt.astimezone(zone))
    return out


def zone_named(name: object) -> ZoneInfo:
    """The IANA time zone ``name`` (the station's for None); ScheduleError if unknown."""
    if name is None:
        return STATION_TZ
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(N_("unknown time zone {zone!r} (an IANA name such as "
                               "Asia/Ho_Chi_Minh)"), zone=name) from None


def item_from_json(d: dict[str, Any], item_id: str | None = None) -> ScheduleItem:
    """A schedule item from the API's (or the store's) JSON; ScheduleError says what is off.

    ``start`` (and the overrides' times) without an offset are local time in ``tz`` (the
    station's zone by default). ``"draft": true`` lets zones and content be missing: the item
    is kept but never plays until both are set."""
    draft_ok = d.get("draft") is True
    try:
        cls = BulletinClass(str(d.get("class", "normal")))
    except ValueError:
        raise ScheduleError(N_('class must be "normal" or "priority"')) from None
    zones = d.get("zones")
    if zones is None and draft_ok:
        zones = []
    if not isinstance(zones, list) or not all(isinstance(z, str) for z in zones) or (
            not zones and not draft_ok):
        raise ScheduleError(N_('"zones" must be a non-empty list of zone ids'))
    content: ContentSpec | None = None
    if d.get("content") is not None or not draft_ok:
        try:
            content = parse_content(d.get("content"), SCHEDULE_KINDS)
        except ContentError as exc:
            raise ScheduleError(exc.message) from None  # the same words, in any language
    zone = zone_named(d.get("tz"))
    try:
        start = local(str(d["start"]), zone)
        duration = float(d.get("duration_s", 0))
        late = int(d.get("late_minutes", 0))
    except (KeyError, ValueError, TypeError):
        raise ScheduleError(N_('"start" (local ISO time) and "duration_s" are needed')) from None
    return ScheduleItem(item_id or str(d.get("id", "")), str(d.get("title", "")) or "lịch phát",
                        zones, start, duration, content, d.get("rrule") or None, cls,
                        _missed(d.get("missed", "skip")), late,
                        _overrides(d.get("overrides"), zone, duration))


def _overrides(raw: object, zone: ZoneInfo, duration: float) -> tuple[Override, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        # the braces of the shape are a field's value, not the msgid's: it is formatted
        raise ScheduleError(N_('"overrides" must be a list of {shape}'),
                            shape='{"recurrence_id", "start", "duration_s"}')
    out = []
    for o in raw:
        try:
            out.append(Override(local(str(o["recurrence_id"]), zone),
                                local(str(o.get("start", o["recurrence_id"])), zone),
                                float(o.get("duration_s", duration))))
        except (KeyError, ValueError, TypeError, AttributeError):
            raise ScheduleError(N_('an override needs "recurrence_id" (the slot it '
                                   'replaces), "start" and "duration_s"')) from None
    return tuple(out)


def local(text: str, tz: ZoneInfo = STATION_TZ) -> datetime:
    """``2026-12-01T06:00`` (local) or with an offset, as an aware datetime in ``tz``."""
    dt = datetime.fromisoformat(text)
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt.astimezone(tz)


def conflicts(item: ScheduleItem, others: list[ScheduleItem], overlapping_zones: Any,
              now: datetime, horizon: timedelta = CONFLICT_HORIZON) -> list[dict[str, Any]]:
    """Same class, zones that overlap (the same, or one above the other), windows that
    overlap, within the horizon: reported when an item is saved, not discovered on air.
    Drafts have no slots and so no conflicts. Blocking (every item's slots are expanded)."""
    found = []
    end = now + horizon
    mine = [item.window(s) for s in item.slots(now, end)]
    for other in others:
        if other.id == item.id or other.cls is not item.cls:
            continue
        if not overlapping_zones(item.zones, other.zones):
            continue
        for slot in other.slots(now - timedelta(seconds=MAX_WINDOW_S), end):
            o_start, o_end = other.window(slot)
            if o_end > now and any(s < o_end and o_start < e for s, e in mine):
                found.append({"item": other.id, "title": other.title,
                              "slot": slot.isoformat()})
                break
    return found


def _missed(value: object) -> MissedPolicy:
    try:
        return MissedPolicy(str(value))
    except ValueError:
        raise ScheduleError(N_('missed must be "skip" or "late"')) from None
