"""The schedule as iCalendar (RFC 5545): export for people's calendars, import from them.

Export: a complete RFC 5545 file. Each item is one event (UID ``<id>@loa``, DTSTAMP, SUMMARY,
DTSTART with its TZID, DURATION, RRULE, RDATE, EXDATE) and one more event per override
(RECURRENCE-ID), with a VTIMEZONE for every TZID used.

Which copy wins after an edit in a calendar app: X- properties carry only what RFC 5545 has no
property for (``X-LOA-ZONES``, ``X-LOA-CLASS``, ``X-LOA-CONTENT``, ``X-LOA-MISSED``). The
time, the duration, the title and the whole recurrence set travel only as standard
properties, so whatever an app changed there is what Loa reads back; nothing stale can
override it. (Files exported before this carried the exact rule in ``X-LOA-RRULE``; it is
read only from an event that has no RRULE, RDATE or EXDATE of its own.)

Import reads the full recurrence set (RRULE, RDATE, EXDATE and RECURRENCE-ID overrides, a
cancelled occurrence as an exclusion) in the event's own time zone: a TZID that is an IANA
name, a Windows name (Outlook), a vendor-prefixed name (``/mozilla.org/…/Europe/Berlin``) or
a file's own VTIMEZONE matched to the IANA zone with the same offsets; times in UTC or
floating are read in the calendar's ``X-WR-TIMEZONE`` (Google), else in the station's zone.
Folded lines are unfolded on the bytes, before decoding (RFC 5545 §3.1), so a fold inside a
UTF-8 sequence costs nothing. An event without Loa's zones or content (a plain event from
Google Calendar, say) is imported as a draft: kept and listed, never played until its zones
and content are set (``PATCH /api/v1/schedules/{id}``). Re-importing an event keeps the zones
and content that Loa already has for its UID when the file carries none.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import re
import warnings
import zoneinfo
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from loa.control.schedule.recurrence import (
    STATION_TZ,
    UTC,
    Override,
    ScheduleError,
    ScheduleItem,
    item_from_json,
)
from loa.core.i18n import N_, Explained, Message

if TYPE_CHECKING:
    # icalendar (with x-wr-timezone) is imported by the functions that read or write a file,
    # which run beside the loop: a server that never imports or exports does not load it
    import icalendar

PRODID = "-//Loa//lich phat//VI"
FOLD = re.compile(rb"\r?\n[ \t]")  # RFC 5545 §3.1; a bare LF as some exporters write it
SAFE_ID = re.compile(r"[A-Za-z0-9._@-]{1,128}")  # what may stand in /api/v1/schedules/{id}
MATCH_DAYS = 366  # a VTIMEZONE is matched to an IANA zone on a year of daily offsets


def export_ics(items: list[ScheduleItem], stamp: datetime) -> bytes:
    """The items as one iCalendar file (RFC 5545), UTF-8 bytes with CRLF line ends, every
    line folded at 75 octets. ``stamp`` (aware) is every event's DTSTAMP (written in UTC).
    A draft carries no X-LOA-ZONES or X-LOA-CONTENT, and imports as a draft again."""
    import icalendar

    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-timezone", str(STATION_TZ))  # Google shows the calendar in station time
    stamp = stamp.astimezone(UTC)
    for item in items:
        events = item.components(f"{item.id}@loa")
        for ev in events:
            ev.add("dtstamp", stamp)
            ev.add("summary", item.title)
        master = events[0]
        # X- values are TEXT (RFC 5545 §3.8.8.2): commas and semicolons escaped
        if item.zones:
            master.add("x-loa-zones", icalendar.vText(",".join(item.zones)))
        master.add("x-loa-class", icalendar.vText(item.cls.value))
        if item.content is not None:
            master.add("x-loa-content", icalendar.vText(
                json.dumps(item.content.to_json(), ensure_ascii=False)))
        master.add("x-loa-missed", icalendar.vText(f"{item.missed};{item.late_minutes}"))
        for ev in events:
            cal.add_component(ev)
    # VTIMEZONEs that cover the items' times (icalendar's default ends in 2038)
    first = min([i.start.date() for i in items] + [stamp.date()]) - timedelta(days=366)
    cal.add_missing_timezones(first_date=first,
                              last_date=max(first + timedelta(days=366 * 30),
                                            date(2038, 1, 1)))
    return bytes(cal.to_ical())


def unfold(data: bytes) -> bytes:
    """RFC 5545 §3.1 unfolding on the bytes: each line break followed by one space or tab is
    removed, so a fold that split a UTF-8 sequence joins it back before anything decodes."""
    return FOLD.sub(b"", data)


def import_ics(data: bytes, known: Mapping[str, ScheduleItem] | None = None
               ) -> tuple[list[ScheduleItem], list[Message]]:
    """Items, and the reasons events were not taken (``"title: why"`` once said: ``str()``
    in English, ``.say(language)`` in the caller's). ``known`` maps item
    ids to the items Loa has now: an event that carries no X-LOA- property keeps the known
    item's zones, content, class and missed policy. Raises ScheduleError when the whole
    file is unreadable (not UTF-8, not iCalendar)."""
    import icalendar
    import x_wr_timezone
    from icalendar.error import GloballyUniqueTZIDGuessed

    try:
        text = unfold(data).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScheduleError(N_("not an iCalendar file: not UTF-8 at byte {at} "
                               "(RFC 5545 §3.1.4)"), at=exc.start) from None
    try:
        with warnings.catch_warnings():  # "/vendor/Area/City": _Zones names it the same way
            warnings.simplefilter("ignore", GloballyUniqueTZIDGuessed)
            parsed = icalendar.Calendar.from_ical(text)
    except ValueError as exc:
        raise ScheduleError(N_("not an iCalendar file: {error}"), error=str(exc)) from None
    if not isinstance(parsed, icalendar.Calendar):
        raise ScheduleError(N_("not an iCalendar file: no VCALENDAR"))
    try:  # Google: UTC and floating times mean the calendar's zone
        cal: icalendar.Calendar = x_wr_timezone.to_standard(parsed)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        cal = parsed  # an unknown X-WR-TIMEZONE: read as if absent
    zones = _Zones(cal)
    series: dict[str, list[icalendar.Event]] = {}
    for ev in cal.events:
        uid = str(ev.get("uid", "")) or _anonymous_uid(ev)
        series.setdefault(uid, []).append(ev)
    items: list[ScheduleItem] = []
    refused: list[Message] = []
    for uid, events in series.items():
        masters = [e for e in events if "RECURRENCE-ID" not in e]
        if not masters:  # only moved occurrences (an invitation to one of them): each alone
            masters, overrides = events, []
        else:
            overrides = [e for e in events if "RECURRENCE-ID" in e]
        for i, master in enumerate(masters):
            title = str(master.get("summary", "")) or Message(N_("(untitled)"))
            try:
                if i > 0 and overrides:
                    raise ScheduleError(N_("a second event with UID {uid!r}"), uid=uid)
                if str(master.get("status", "")).upper() == "CANCELLED":
                    raise ScheduleError(N_("the event is cancelled"))
                item_id = _item_id(uid if len(masters) == 1 or overrides else
                                   f"{uid}/{_raw(master, 'DTSTART')}")
                items.append(_item(master, overrides, item_id, zones,
                                   (known or {}).get(item_id)))
            except (ScheduleError, ValueError, KeyError, TypeError, AttributeError) as exc:
                refused.append(refusal(title, exc))
    return items, refused


def refusal(title: str | Message, why: Exception | str | Message) -> Message:
    """``"title: why"``, an event or item not taken: ``why`` an error (its ``Message`` when
    it is ``Explained``, else its English text) or a message."""
    if isinstance(why, Explained):
        why = why.message
    elif isinstance(why, Exception):
        why = str(why)
    return Message(N_("{title}: {reason}"), {"title": title, "reason": why})


def _item(master: icalendar.Event, overrides: list[icalendar.Event], item_id: str,
          zones: _Zones, prev: ScheduleItem | None) -> ScheduleItem:
    """One item from a series: the master event and its overrides."""
    start = zones.aware(master, "DTSTART")
    if start is None:
        raise ScheduleError(N_("needs DTSTART"))
    if not isinstance(start, datetime):
        raise ScheduleError(N_("all-day events have no time to play at"))
    zone = start.tzinfo
    assert isinstance(zone, zoneinfo.ZoneInfo)
    duration = _duration(master, start, zones)
    if duration is None:
        raise ScheduleError(N_("needs DURATION or DTEND"))
    rrules = [r.to_ical().decode() for r in _listed(master.get("RRULE"))]
    rdates, exdates, moved = [], [], []
    for when in zones.aware_list(master, "RDATE", start):
        if isinstance(when, tuple):  # a PERIOD: an occurrence with its own duration
            rdates.append(when[0])
            moved.append(Override(when[0], when[0], (when[1] - when[0]).total_seconds()))
        else:
            rdates.append(when)
    exdates += [w for w in zones.aware_list(master, "EXDATE", start) if isinstance(w, datetime)]
    for ov in overrides:
        rid = zones.aware(ov, "RECURRENCE-ID")
        if not isinstance(rid, datetime):
            raise ScheduleError(N_("a RECURRENCE-ID needs a date-time"))
        if str(ov["RECURRENCE-ID"].params.get("RANGE", "")).upper() == "THISANDFUTURE":
            raise ScheduleError(N_("RANGE=THISANDFUTURE is not taken: split the series in two"))
        if str(ov.get("status", "")).upper() == "CANCELLED":
            exdates.append(rid)
            continue
        at = zones.aware(ov, "DTSTART") or rid
        if not isinstance(at, datetime):
            raise ScheduleError(N_("a moved occurrence needs a date-time DTSTART"))
        length = _duration(ov, at, zones) or duration
        if at != rid or length != duration:  # a changed title alone changes nothing on air
            moved.append(Override(rid, at, length))
    legacy = _x(master, "X-LOA-RRULE")
    if rrules or rdates or exdates:
        rrule = _rule_text(rrules, rdates, exdates, zone)
    elif legacy is not None:  # an export from before X- kept only what has no standard form
        rrule = "\n".join(legacy.split(" | "))
    else:
        rrule = None
    body: dict[str, Any] = {
        "title": str(master.get("summary", "")), "start": start.isoformat(), "tz": zone.key,
        "duration_s": duration, "rrule": rrule, "draft": True,
        "overrides": [o.to_json() for o in moved]}
    body.update(_loa_fields(master, prev))
    return item_from_json(body, item_id)


def _loa_fields(ev: icalendar.Event, prev: ScheduleItem | None) -> dict[str, Any]:
    """Zones, content, class and missed policy from X-LOA- properties, or from the item Loa
    has for the same UID, or none (a draft)."""
    out: dict[str, Any] = {}
    zones, content, cls, missed = (_x(ev, f"X-LOA-{n}") for n in
                                   ("ZONES", "CONTENT", "CLASS", "MISSED"))
    if zones is not None:
        out["zones"] = [z.strip() for z in zones.split(",") if z.strip()]
    elif prev is not None:
        out["zones"] = prev.zones
    if content is not None:  # strict=False: a newline unescaped inside a JSON string
        out["content"] = json.loads(content or "null", strict=False)
    elif prev is not None and prev.content is not None:
        out["content"] = prev.content.to_json()
    if cls is not None:
        out["class"] = cls
    elif prev is not None:
        out["class"] = prev.cls.value
    if missed is not None:
        policy, _, late = missed.partition(";")
        out["missed"], out["late_minutes"] = policy, int(late or 0)
    elif prev is not None:
        out["missed"], out["late_minutes"] = prev.missed, prev.late_minutes
    return out


def _duration(ev: icalendar.Event, start: datetime, zones: _Zones) -> float | None:
    if ev.get("duration") is not None:
        length: timedelta = ev.decoded("duration")
        return length.total_seconds()
    end = zones.aware(ev, "DTEND")
    if isinstance(end, datetime):
        return (end - start).total_seconds()
    return None


def _rule_text(rrules: list[str], rdates: list[datetime], exdates: list[datetime],
               zone: zoneinfo.ZoneInfo) -> str:
    """The rule as ``ScheduleItem.rrule`` keeps it: times local in the item's zone; a lone
    RRULE as its bare value, as the API takes it."""
    def stamp(times: list[datetime]) -> str:
        seen = dict.fromkeys(t.astimezone(zone).strftime("%Y%m%dT%H%M%S") for t in times)
        return ",".join(seen)
    if len(rrules) == 1 and not rdates and not exdates:
        return rrules[0]
    lines = [f"RRULE:{r}" for r in rrules]
    if rdates:
        lines.append(f"RDATE:{stamp(rdates)}")
    if exdates:
        lines.append(f"EXDATE:{stamp(exdates)}")
    return "\n".join(lines)


def _x(ev: icalendar.Event, name: str) -> str | None:
    """An X- property's TEXT value, unescaped (icalendar keeps unknown properties raw); older
    exports wrote it unescaped, which reads the same unless it held a backslash."""
    from icalendar.parser import unescape_backslash

    value = ev.get(name)
    return None if value is None else unescape_backslash(str(value))


def _listed(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def _raw(ev: icalendar.Event, name: str) -> str:
    value = ev.get(name)
    return "" if value is None else value.to_ical().decode()


def _anonymous_uid(ev: icalendar.Event) -> str:
    """An event without a UID (RFC 5545 requires one) gets one from its title and start, so
    importing the same file twice replaces rather than doubles it."""
    return "ics-" + hashlib.sha1(
        f"{ev.get('summary', '')}|{_raw(ev, 'DTSTART')}".encode()).hexdigest()[:16]


def _item_id(uid: str) -> str:
    """The item id for a UID: Loa's own without ``@loa``; another calendar's as it is when it
    can stand in a URL path, else a digest of it (the same UID, the same id)."""
    uid = uid.removesuffix("@loa")
    if SAFE_ID.fullmatch(uid):
        return uid
    return "ics-" + hashlib.sha1(uid.encode()).hexdigest()[:16]


class _Zones:
    """Names the time zones of one calendar's times as IANA zones (what an item keeps), and
    reads date-times in them. The file's own VTIMEZONEs are read fresh here: icalendar caches
    a custom zone by its TZID for the whole process, and Outlook names many different ones
    "Customized Time Zone"."""

    def __init__(self, cal: icalendar.Calendar) -> None:
        self._vtimezones = {str(tz["TZID"]): tz for tz in cal.timezones if "TZID" in tz}
        self._named: dict[str, zoneinfo.ZoneInfo] = {}

    def aware(self, ev: icalendar.Event, name: str) -> datetime | date | None:
        """The property's value (a date stays a date) as an aware datetime in its zone."""
        prop = ev.get(name)
        if prop is None:
            return None
        return self._read(prop.dt, prop.params.get("TZID"), name)

    def aware_list(self, ev: icalendar.Event, name: str, start: datetime
                   ) -> Iterator[datetime | tuple[datetime, datetime]]:
        """Every value of an RDATE or EXDATE property (all its lines): date-times aware, a
        date at ``start``'s local time, a PERIOD as (start, end)."""
        for prop in _listed(ev.get(name)):
            tzid = prop.params.get("TZID")
            for value in prop.dts:
                dt = value.dt
                if isinstance(dt, tuple):
                    begin = self._read(dt[0], tzid, name)
                    end = (begin + dt[1] if isinstance(begin, datetime)
                           and isinstance(dt[1], timedelta) else self._read(dt[1], tzid, name))
                    if not (isinstance(begin, datetime) and isinstance(end, datetime)
                            and end > begin):
                        raise ScheduleError(N_("{property}: a period must end after it "
                                               "starts"), property=name)
                    yield begin, end
                    continue
                got = self._read(dt, tzid, name)
                if isinstance(got, datetime):
                    yield got
                elif got is not None:  # a date: that day, at the series' time
                    yield datetime.combine(got, start.timetz().replace(tzinfo=None),
                                           tzinfo=start.tzinfo)

    def _read(self, dt: object, tzid: object, what: str) -> datetime | date | None:
        if not isinstance(dt, datetime):
            return dt if isinstance(dt, date) else None
        if tzid:  # the wall time as written, in the zone the TZID names
            zone = self.zone(str(tzid), what, dt.year)
            return dt.replace(tzinfo=None).replace(tzinfo=zone)
        if dt.tzinfo is None:
            return dt.replace(tzinfo=STATION_TZ)  # floating, and no X-WR-TIMEZONE
        if isinstance(dt.tzinfo, zoneinfo.ZoneInfo):
            return dt
        return dt.astimezone(UTC)  # "Z" and every other bare offset

    def zone(self, tzid: str, what: str, year: int) -> zoneinfo.ZoneInfo:
        """The IANA zone a TZID names (a VTIMEZONE is matched on the offsets of ``year``);
        ScheduleError if none can be found."""
        if tzid not in self._named:
            self._named[tzid] = self._name(tzid, what, year)
        return self._named[tzid]

    def _name(self, tzid: str, what: str, year: int) -> zoneinfo.ZoneInfo:
        from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

        clean = tzid.strip().strip('"').strip("/")
        candidates = [clean, WINDOWS_TO_OLSON.get(clean, "")]
        parts = clean.split("/")
        candidates += ["/".join(parts[i:]) for i in range(1, len(parts))]  # /vendor/Area/City
        for name in candidates:
            if name and name in _available():
                return zoneinfo.ZoneInfo(name)
        vtz = self._vtimezones.get(tzid)
        if vtz is not None:
            found = _same_offsets(_offsets(vtz), year)
            if found is not None:
                return found
        raise ScheduleError(N_("{property}: time zone {tzid!r} is neither an IANA or Windows "
                               "name nor a VTIMEZONE that matches one"), property=what, tzid=tzid)


def _offsets(vtz: icalendar.Timezone) -> Callable[[datetime], timedelta] | None:
    """A VTIMEZONE's UTC offset at an instant, from its transitions (icalendar lists them up
    to 2038); None if it has none."""
    times, info = vtz.get_transitions()  # naive UTC, and (offset after, dst, name)
    if not times:
        return None

    def at(instant: datetime) -> timedelta:
        i = bisect.bisect_right(times, instant.astimezone(UTC).replace(tzinfo=None)) - 1
        return info[max(i, 0)][0]
    return at


def _same_offsets(offset_at: Callable[[datetime], timedelta] | None, year: int
                  ) -> zoneinfo.ZoneInfo | None:
    """The IANA zone whose UTC offset is ``offset_at``'s at noon UTC every day of ``year``
    and every hour of the days it changes (zones that change on the same day at another hour,
    New York and Havana, differ there): the station's first, then the zones Windows names map
    to, then the rest by name."""
    if offset_at is None:
        return None
    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

    noon = datetime(min(year, 2037), 1, 1, 12, tzinfo=UTC)
    days = [noon + timedelta(days=d) for d in range(MATCH_DAYS)]
    offsets = [offset_at(d) for d in days]
    hours = [days[i - 1] + timedelta(hours=h) for i in range(1, len(days))
             if offsets[i] != offsets[i - 1] for h in range(1, 24)]
    samples = days + hours
    want = offsets + [offset_at(h) for h in hours]
    names = [str(STATION_TZ), *WINDOWS_TO_OLSON.values(), *sorted(_available())]
    for name in dict.fromkeys(names):
        if name not in _available():
            continue
        zone = zoneinfo.ZoneInfo(name)
        if all(s.astimezone(zone).utcoffset() == w for s, w in zip(samples, want, strict=True)):
            return zone
    return None


@functools.cache
def _available() -> frozenset[str]:
    """The IANA names this machine knows (tzdata), read once."""
    return frozenset(zoneinfo.available_timezones())
