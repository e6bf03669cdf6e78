"""The schedule as iCalendar (RFC 5545): export for people's calendars, import from them.

Loa's own fields ride in X- properties; a plain event from another calendar imports as an
item that needs its zones and content set (import reports what it could not take)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import icalendar

from loa.control.schedule.recurrence import (
    STATION_TZ,
    ScheduleError,
    ScheduleItem,
    item_from_json,
)

PRODID = "-//Loa//lich phat//VI"


def export_ics(items: list[ScheduleItem]) -> bytes:
    """The items as one iCalendar file (RFC 5545), UTF-8 bytes: DTSTART in station time,
    DURATION, an RRULE when the rule is a plain one, and Loa's own fields (zones, class,
    content, missed policy, the exact rule) in X-LOA- properties."""
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("x-wr-timezone", str(STATION_TZ))
    for item in items:
        ev = icalendar.Event()
        ev.add("uid", f"{item.id}@loa")
        ev.add("summary", item.title)
        ev.add("dtstart", item.start.astimezone(STATION_TZ))
        ev.add("duration", timedelta(seconds=item.duration_s))
        if item.rrule:
            # exact, RDATE and EXDATE lines included (one content line: lines joined by " | ")
            ev.add("x-loa-rrule", " | ".join(item.rrule.splitlines()))
            plain = item.rrule.removeprefix("RRULE:")
            if "\n" not in plain and ":" not in plain:
                ev.add("rrule", icalendar.vRecur.from_ical(plain))
        ev.add("x-loa-zones", ",".join(item.zones))
        ev.add("x-loa-class", item.cls.value)
        ev.add("x-loa-content", json.dumps(item.content.to_json(), ensure_ascii=False))
        ev.add("x-loa-missed", f"{item.missed};{item.late_minutes}")
        cal.add_component(ev)
    return bytes(cal.to_ical())


def import_ics(data: bytes) -> tuple[list[ScheduleItem], list[str]]:
    """Items, and the reasons events were not taken."""
    try:
        cal = icalendar.Calendar.from_ical(data)
    except ValueError as exc:
        raise ScheduleError(f"not an iCalendar file: {exc}") from None
    items, refused = [], []
    for ev in cal.walk("VEVENT"):
        title = str(ev.get("summary", ""))
        try:
            start = ev.decoded("dtstart")
            if not isinstance(start, datetime):
                raise ScheduleError("all-day events have no time to play at")
            if start.tzinfo is None:
                start = start.replace(tzinfo=STATION_TZ)
            if ev.get("duration") is not None:
                duration = ev.decoded("duration").total_seconds()
            elif ev.get("dtend") is not None:
                end = ev.decoded("dtend")
                if end.tzinfo is None:
                    end = end.replace(tzinfo=STATION_TZ)
                duration = (end - start).total_seconds()
            else:
                raise ScheduleError("needs DURATION or DTEND")
            missed, _, late = str(ev.get("x-loa-missed", "skip;0")).partition(";")
            rrule = ev.get("rrule")
            exact = ev.get("x-loa-rrule")
            body: dict[str, Any] = {
                "title": title,
                "zones": [z for z in str(ev.get("x-loa-zones", "")).split(",") if z],
                "start": start.astimezone(STATION_TZ).isoformat(),
                "duration_s": duration,
                "rrule": "\n".join(str(exact).split(" | ")) if exact is not None else (
                    rrule.to_ical().decode() if rrule is not None else None),
                "class": str(ev.get("x-loa-class", "normal")),
                "content": json.loads(str(ev.get("x-loa-content", "null")) or "null"),
                "missed": missed, "late_minutes": int(late or 0),
            }
            uid = str(ev.get("uid", "")).removesuffix("@loa") or None
            items.append(item_from_json(body, uid))
        except (ScheduleError, ValueError, KeyError, TypeError) as exc:
            refused.append(f"{title or '(untitled)'}: {exc}")
    return items, refused
