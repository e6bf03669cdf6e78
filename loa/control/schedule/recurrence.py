"""Schedule items and their recurrence (RFC 5545 RRULE, python-dateutil), in the station's
local time (Asia/Ho_Chi_Minh by default). Wall-clock time exists only here, in the calendar."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.rrule import rruleset as RRuleSet
from dateutil.rrule import rrulestr

from loa.core.clock import STATION_TZ as STATION_TZ  # defined below protocol/, for CAP
from loa.core.content import SCHEDULE_KINDS, ContentError, ContentSpec, parse_content

CONFLICT_HORIZON = timedelta(days=14)


class ScheduleError(ValueError):
    """A bad schedule item; the message says what to fix."""


class BulletinClass(enum.Enum):
    """Circular 39/2020/TT-BTTTT's classes a schedule item may have (emergency bulletins
    are alerts, not schedule items); ``priority`` is the request priority."""

    NORMAL = "normal"  # bản tin thông thường, priority 50
    PRIORITY = "priority"  # bản tin ưu tiên, priority 60

    @property
    def priority(self) -> int:
        return 60 if self is BulletinClass.PRIORITY else 50


@dataclass
class ScheduleItem:
    """A bulletin on zones from ``start`` (aware), repeating by an RFC 5545 rule
    (RRULE/RDATE/EXDATE lines), with a window of ``duration_s`` seconds (at most 24 h) per
    slot. Construction raises ScheduleError for a naive start, a bad duration, an unknown
    ``missed`` policy or a rule that does not parse."""

    id: str
    title: str
    zones: list[str]
    start: datetime  # the first slot, aware, in the station's time zone
    duration_s: float  # the window: the item may play (or resume) until start + duration
    content: ContentSpec
    # RFC 5545: "FREQ=DAILY", "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;COUNT=10", or lines with chosen
    # dates and exceptions: "RDATE:20261203T060000,20261210T060000", "EXDATE:…"
    rrule: str | None = None
    cls: BulletinClass = BulletinClass.NORMAL
    missed: str = "skip"  # after an outage: "skip", or "late" within late_minutes
    late_minutes: int = 0
    _rule: RRuleSet | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ScheduleError("start needs a time zone (the station's local time)")
        if not 0 < self.duration_s <= 24 * 3600:
            raise ScheduleError("duration must be more than 0 and at most 24 hours")
        if self.missed not in ("skip", "late"):
            raise ScheduleError('missed must be "skip" or "late"')
        if self.rrule:
            try:
                self._rule = rrulestr(self.rrule.replace("\\n", "\n"), dtstart=self.start,
                                      forceset=True,
                                      tzinfos={None: self.start.tzinfo})
            except (ValueError, TypeError) as exc:
                raise ScheduleError(f"bad recurrence rule {self.rrule!r}: {exc}") from None

    def slots(self, after: datetime, before: datetime) -> list[datetime]:
        """Slot starts with after <= start < before, in the station's time zone."""
        if self._rule is None:
            return [self.start] if after <= self.start < before else []
        return [s for s in self._rule.between(after, before, inc=True) if s < before]

    def next_slot(self, after: datetime) -> datetime | None:
        """The first slot at or after ``after``, or None if there is no more."""
        if self._rule is None:
            return self.start if self.start >= after else None
        found: datetime | None = self._rule.after(after, inc=True)
        return found

    def window(self, slot: datetime) -> tuple[datetime, datetime]:
        """(start, end) of a slot's window: the item may play or resume until the end."""
        return slot, slot + timedelta(seconds=self.duration_s)

    def to_json(self) -> dict[str, Any]:
        """The item as the API and the store keep it (start as ISO 8601 with its offset)."""
        return {"id": self.id, "title": self.title, "zones": self.zones,
                "start": self.start.isoformat(), "duration_s": self.duration_s,
                "content": self.content.to_json(), "rrule": self.rrule, "class": self.cls.value,
                "missed": self.missed, "late_minutes": self.late_minutes}


def item_from_json(d: dict[str, Any], item_id: str | None = None) -> ScheduleItem:
    """A schedule item from the API's (or the store's) JSON; ScheduleError says what is off."""
    try:
        cls = BulletinClass(str(d.get("class", "normal")))
    except ValueError:
        raise ScheduleError('class must be "normal" or "priority"') from None
    zones = d.get("zones")
    if not isinstance(zones, list) or not zones or not all(isinstance(z, str) for z in zones):
        raise ScheduleError('"zones" must be a non-empty list of zone ids')
    try:
        content = parse_content(d.get("content"), SCHEDULE_KINDS)
    except ContentError as exc:
        raise ScheduleError(str(exc)) from None
    try:
        start = local(str(d["start"]))
        duration = float(d.get("duration_s", 0))
        late = int(d.get("late_minutes", 0))
    except (KeyError, ValueError, TypeError):
        raise ScheduleError('"start" (local ISO time) and "duration_s" are needed') from None
    return ScheduleItem(item_id or str(d.get("id", "")), str(d.get("title", "")) or "lịch phát",
                        zones, start, duration, content, d.get("rrule") or None, cls,
                        str(d.get("missed", "skip")), late)


def local(text: str, tz: ZoneInfo = STATION_TZ) -> datetime:
    """``2026-12-01T06:00`` (local) or with an offset, as an aware datetime."""
    dt = datetime.fromisoformat(text)
    return dt.replace(tzinfo=tz) if dt.tzinfo is None else dt.astimezone(tz)


def conflicts(item: ScheduleItem, others: list[ScheduleItem], overlapping_zones: Any,
              now: datetime, horizon: timedelta = CONFLICT_HORIZON) -> list[dict[str, Any]]:
    """Same class, zones that overlap (the same, or one above the other), windows that
    overlap, within the horizon: reported when an item is saved, not discovered on air."""
    found = []
    end = now + horizon
    mine = [item.window(s) for s in item.slots(now, end)]
    for other in others:
        if other.id == item.id or other.cls is not item.cls:
            continue
        if not overlapping_zones(item.zones, other.zones):
            continue
        for slot in other.slots(now - timedelta(seconds=other.duration_s), end):
            o_start, o_end = other.window(slot)
            if any(s < o_end and o_start < e for s, e in mine):
                found.append({"item": other.id, "title": other.title,
                              "slot": slot.isoformat()})
                break
    return found
