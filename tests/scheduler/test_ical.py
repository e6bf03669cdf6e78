"""iCalendar in and out: files as Google Calendar, Outlook and Thunderbird export them (written
by hand in tests/fixtures/ical/), and Loa's own export read strictly against RFC 5545."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest

from loa.control.schedule.ical import export_ics, import_ics, unfold
from loa.control.schedule.recurrence import (
    STATION_TZ,
    BulletinClass,
    Override,
    ScheduleError,
    ScheduleItem,
    item_from_json,
    local,
)
from loa.core.content import TextContent, ToneContent

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ical"
STAMP = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def load(name: str, known: dict[str, ScheduleItem] | None = None) -> dict[str, ScheduleItem]:
    """The items of a fixture by title; it must import without refusals."""
    items, refused = import_ics((FIXTURES / name).read_bytes(), known)
    assert refused == []
    return {i.title: i for i in items}


def on_air(item: ScheduleItem) -> ScheduleItem:
    """The item with zones and content, as an operator completes a draft."""
    return dataclasses.replace(item, zones=["an-binh"], content=ToneContent())


def station_slots(item: ScheduleItem, start: str = "2026-10-01T00:00",
                  end: str = "2027-01-01T00:00") -> list[str]:
    """Slots as the station hears them: "Tue 10-20 06:00 30'" (Asia/Ho_Chi_Minh, minutes)."""
    out = []
    for s in item.slots(local(start), local(end)):
        begin, stop = item.window(s)
        out.append(f"{s.astimezone(STATION_TZ):%a %m-%d %H:%M} "
                   f"{(stop - begin).total_seconds() / 60:.0f}'")
    return out


KIEU_BAO = "Chương trình kiều bào phát lại cho xã An Bình"  # Google, weekly from New York


def test_a_fold_inside_a_utf8_sequence_is_joined_before_decoding() -> None:
    raw = (FIXTURES / "google_an_binh.ics").read_bytes()
    assert "Bì".encode()[:-1] + b"\r\n " + "ì".encode()[1:] in raw  # the fold splits "ì"
    assert KIEU_BAO in load("google_an_binh.ics")
    assert unfold(b"SUMMARY:B\xc3\r\n \xacnh\r\nX:a\n\tb\r\n") == (
        "SUMMARY:Bình\r\nX:ab\r\n".encode())


def test_an_exdate_removes_only_that_date() -> None:
    slots = station_slots(on_air(load("google_an_binh.ics")[KIEU_BAO]), end="2026-11-05T00:00")
    # Mondays 19:00 in New York are Tuesdays in Hà Nội; 26 October (New York) is excluded
    assert slots == ["Tue 10-20 06:00 30'", "Tue 11-03 07:00 30'"]


def test_a_weekly_event_from_a_zone_with_dst_keeps_its_local_hour_across_the_change() -> None:
    item = load("google_an_binh.ics")[KIEU_BAO]
    assert item.zone.key == "America/New_York"
    slots = station_slots(on_air(item), end="2026-11-05T00:00")
    # 19:00 EDT is 06:00 here; after New York leaves DST on 1 November, 19:00 EST is 07:00
    assert [s.split()[2] for s in slots] == ["06:00", "07:00"]


def test_a_recurrence_id_override_moves_one_occurrence_and_keeps_the_series() -> None:
    item = on_air(load("google_an_binh.ics")[KIEU_BAO])
    slots = station_slots(item, start="2026-11-05T00:00", end="2026-11-26T00:00")
    # 9 November moved to Tuesday 10 November 20:00 New York, 45 minutes; the rest unchanged
    assert slots == ["Wed 11-11 08:00 45'", "Tue 11-24 07:00 30'"]
    assert item.overrides == (Override(
        datetime(2026, 11, 9, 19, tzinfo=item.zone), datetime(2026, 11, 10, 20, tzinfo=item.zone),
        2700.0),)


def test_a_cancelled_occurrence_is_an_exclusion() -> None:
    slots = station_slots(on_air(load("google_an_binh.ics")[KIEU_BAO]),
                          start="2026-11-15T00:00", end="2026-11-20T00:00")
    assert slots == []  # 16 November (New York): STATUS:CANCELLED


def test_a_plain_google_event_imports_as_a_draft() -> None:
    item = load("google_an_binh.ics")["Họp giao ban thôn Phú Mỹ"]
    assert item.draft and item.zones == [] and item.content is None
    # DTSTART in UTC, read in the calendar's X-WR-TIMEZONE
    assert item.start == local("2026-12-01T08:00") and item.zone == STATION_TZ
    assert item.duration_s == 3600
    assert item.slots(local("2026-11-01T00:00"), local("2027-01-01T00:00")) == []
    assert item.next_slot(local("2026-11-01T00:00")) is None
    stored = item.to_json()
    assert stored["draft"] is True and stored["content"] is None
    assert item_from_json(stored, item.id).to_json() == stored  # the store keeps it
    completed = dict(stored, zones=["phu-my"], content={"kind": "tone"})
    assert not item_from_json(completed, item.id).draft
    assert station_slots(item_from_json(completed, item.id)) == ["Tue 12-01 08:00 60'"]


def test_a_plain_event_that_never_got_zones_is_refused_by_post_but_not_as_a_draft() -> None:
    body = {"start": "2026-12-01T08:00", "duration_s": 60}
    with pytest.raises(ScheduleError, match="zones"):
        item_from_json(body)
    assert item_from_json({**body, "draft": True}, "d").draft


def test_outlook_windows_zone_names_and_their_dst() -> None:
    item = on_air(load("outlook_dw.ics")["Tiếp sóng DW tiếng Việt"])
    assert item.zone.key == "Europe/Berlin"  # "W. Europe Standard Time"
    assert station_slots(item) == [
        "Thu 10-15 15:00 30'", "Thu 10-22 15:00 30'",  # 10:00 CEST
        # 29 October excluded; 5 November moved to 14:00 CET
        "Thu 11-05 20:00 30'",
        "Thu 11-12 16:00 30'", "Thu 11-19 16:00 30'", "Thu 11-26 16:00 30'",  # 10:00 CET
        "Thu 12-03 16:00 30'", "Thu 12-10 16:00 30'", "Thu 12-17 16:00 30'"]  # COUNT=10


def test_an_outlook_customized_time_zone_is_matched_to_the_zone_with_its_rules() -> None:
    item = on_air(load("outlook_dw.ics")["Bản tin cộng đồng (New York)"])
    # US Eastern rules: not Havana, whose clocks change on the same days at another hour
    assert item.zone.key != "America/Havana"
    new_york = ZoneInfo("America/New_York")
    for m, d, h in [(3, 8, 6), (3, 8, 8), (11, 1, 5), (11, 1, 7), (7, 1, 0)]:  # UTC
        at = datetime(2026, m, d, h, tzinfo=UTC)
        assert at.astimezone(item.zone).utcoffset() == at.astimezone(new_york).utcoffset()
    assert station_slots(item) == ["Tue 10-27 20:00 15'", "Tue 11-03 21:00 15'",
                                   "Tue 11-10 21:00 15'"]


def test_thunderbird_rdate_exdate_in_utc_and_an_inclusive_until() -> None:
    item = on_air(load("thunderbird_nong_nghiep.ics")["Bản tin nông nghiệp"])
    assert item.zone.key == "Europe/Berlin"
    assert station_slots(item) == [
        "Tue 10-20 15:00 20'", "Tue 10-27 16:00 20'",
        "Sat 11-07 16:00 20'",  # RDATE; 3 November excluded by an EXDATE written in UTC
        "Tue 11-10 16:00 20'", "Tue 11-17 16:00 20'",
        "Tue 11-24 16:00 20'"]  # UNTIL=20261124T090000Z is that slot, and it counts


def test_an_rrule_edited_in_a_calendar_app_wins_over_the_stale_x_loa_rrule() -> None:
    item = load("loa_old_export_edited.ics")["Bản tin sáng (thứ Hai, Tư, Sáu)"]
    assert item.id == "3b2f9a1c0d4e" and not item.draft
    assert item.rrule == "FREQ=WEEKLY;BYDAY=MO,WE,FR"  # not X-LOA-RRULE:FREQ=DAILY
    assert station_slots(item, start="2026-11-30T00:00", end="2026-12-05T00:00") == [
        "Mon 11-30 06:30 15'", "Wed 12-02 06:30 15'", "Fri 12-04 06:30 15'"]
    assert (item.zones, item.content, item.missed, item.late_minutes) == (
        ["an-binh"], ToneContent(700.0), "late", 10)


def test_an_old_export_whose_rule_had_no_standard_form_is_still_read() -> None:
    item = load("loa_old_export_edited.ics")["Bản tin chiều"]
    assert item.rrule == "RRULE:FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR\nEXDATE:20261202T173000"
    assert item.cls is BulletinClass.PRIORITY
    assert [s.split()[0] for s in station_slots(item, "2026-11-30T00:00", "2026-12-05T00:00")
            ] == ["Mon", "Tue", "Thu", "Fri"]


def test_reimporting_keeps_the_zones_and_content_loa_already_has() -> None:
    draft = load("google_an_binh.ics")["Họp giao ban thôn Phú Mỹ"]
    done = dataclasses.replace(draft, zones=["phu-my"], content=TextContent("Mời họp"),
                               cls=BulletinClass.PRIORITY)
    again = load("google_an_binh.ics", {done.id: done})["Họp giao ban thôn Phú Mỹ"]
    assert not again.draft
    assert (again.zones, again.content, again.cls) == (["phu-my"], TextContent("Mời họp"),
                                                       BulletinClass.PRIORITY)


def test_what_cannot_be_imported_says_why() -> None:
    def event(*lines: str) -> bytes:
        body = "\r\n".join(("BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:x", "BEGIN:VEVENT",
                            "UID:u1", "DTSTAMP:20261101T000000Z", "SUMMARY:x", *lines,
                            "END:VEVENT", "END:VCALENDAR", ""))
        return body.encode()

    cases = [
        (("DTSTART;VALUE=DATE:20261201",), "all-day"),
        (("DTSTART:20261201T080000",), "DURATION or DTEND"),
        (("DTSTART:20261201T080000", "DURATION:PT1H", "STATUS:CANCELLED"), "cancelled"),
        (("DTSTART;TZID=Mars/Olympus:20261201T080000", "DURATION:PT1H"), "Mars/Olympus"),
        (("DTSTART:20261201T080000", "DURATION:PT1H", "RRULE:FREQ=SOMETIMES"), "recurrence"),
    ]
    for lines, why in cases:
        items, refused = import_ics(event(*lines))
        assert items == [] and len(refused) == 1 and why in str(refused[0]), (lines, refused)
    moved = event("DTSTART:20261201T080000", "DURATION:PT1H", "RRULE:FREQ=DAILY",
                  "END:VEVENT", "BEGIN:VEVENT", "UID:u1", "DTSTAMP:20261101T000000Z",
                  "RECURRENCE-ID;RANGE=THISANDFUTURE:20261203T080000",
                  "DTSTART:20261203T090000", "DURATION:PT1H")
    items, refused = import_ics(moved)
    assert items == [] and "THISANDFUTURE" in str(refused[0])
    with pytest.raises(ScheduleError, match="UTF-8"):
        import_ics(event("DTSTART:20261201T080000", "DURATION:PT1H").replace(
            b"SUMMARY:x", b"SUMMARY:B\xecnh"))  # Latin-1, not UTF-8


def assert_rfc5545(data: bytes) -> None:
    """A strict reading of RFC 5545 for what an export must be: CRLF lines of at most 75
    octets (§3.1) in UTF-8 (§3.1.4), every content line well formed (§3.1), one PRODID and
    VERSION:2.0 (§3.6, §3.7.3, §3.7.4), a VTIMEZONE with its observances for every TZID used
    (§3.2.19, §3.6.5), and every VEVENT with one UID and one DTSTAMP in UTC (§3.6.1,
    §3.8.7.2), a DTSTART, not both DTEND and DURATION, an UNTIL in UTC beside a zoned
    DTSTART (§3.3.10), and overrides that name a series of the file (§3.8.4.4). TEXT values
    escape their commas and semicolons (§3.3.11)."""
    assert data.endswith(b"\r\n") and b"\n" not in data.replace(b"\r\n", b"")
    for line in data.split(b"\r\n")[:-1]:
        assert 0 < len(line) <= 75, line
    data.decode("utf-8")
    lines = unfold(data).decode("utf-8").split("\r\n")[:-1]
    param = r'[A-Za-z0-9-]+=(?:"[^"]*"|[^";:,]*)(?:,(?:"[^"]*"|[^";:,]*))*'
    for line in lines:
        assert re.fullmatch(rf"[A-Za-z0-9-]+(?:;{param})*:.*", line), line
        if line.startswith(("SUMMARY", "X-LOA-")):
            assert not re.search(r"(?<!\\)[,;]", line.partition(":")[2]), line
    cal = icalendar.Calendar.from_ical(data)
    for comp in cal.walk():
        assert comp.errors == [], (comp.name, comp.errors)
    assert [ln for ln in lines if ln.startswith("VERSION")] == ["VERSION:2.0"]
    assert len([ln for ln in lines if ln.startswith("PRODID:")]) == 1
    used = {m for ln in lines for m in re.findall(r";TZID=([^;:]+)", ln)}
    defined = [str(tz["TZID"]) for tz in cal.timezones]
    assert sorted(defined) == sorted(used)  # each once, and each used
    for tz in cal.timezones:
        assert tz.subcomponents
        for obs in tz.subcomponents:
            assert obs.name in ("STANDARD", "DAYLIGHT")
            assert {"DTSTART", "TZOFFSETFROM", "TZOFFSETTO"} <= set(obs)
    masters = set()
    for ev in cal.events:
        for name in ("UID", "DTSTAMP", "DTSTART"):
            assert name in ev and not isinstance(ev[name], list), (name, ev)
        assert "DTEND" not in ev or "DURATION" not in ev
        if "RECURRENCE-ID" not in ev:
            masters.add(str(ev["UID"]))
    stamps = [ln for ln in lines if ln.startswith("DTSTAMP")]
    assert stamps and all(re.fullmatch(r"DTSTAMP:\d{8}T\d{6}Z", s) for s in stamps)
    for ev in cal.events:
        if "RECURRENCE-ID" in ev:
            assert str(ev["UID"]) in masters and "RRULE" not in ev
    for ln in lines:
        if ln.startswith("RRULE") and "UNTIL=" in ln:
            assert re.search(r"UNTIL=\d{8}T\d{6}Z", ln), ln


def every_kind_of_item() -> list[ScheduleItem]:
    """Station-time items with a rule, chosen dates, exclusions, an UNTIL in local time and a
    moved slot; the imported ones (New York, Berlin, a draft)."""
    own = [
        ScheduleItem("morning", "Bản tin sáng, xã An Bình; thôn 1", ["an-binh", "phu-my"],
                     local("2026-11-30T06:00"), 900, TextContent("Chào buổi sáng, bà con; "
                                                                 "hôm nay \"trời\" mưa"),
                     "RRULE:FREQ=DAILY;UNTIL=20261231T060000\nEXDATE:20261202T060000",
                     overrides=(Override(local("2026-12-03T06:00"), local("2026-12-03T07:00"),
                                         600),)),
        ScheduleItem("chosen", "Ngày chọn", ["an-binh"], local("2026-12-01T06:00"), 300,
                     ToneContent(), "RDATE:20261203T060000,20261210T060000",
                     BulletinClass.PRIORITY, "late", 5),
    ]
    imported = [*load("google_an_binh.ics").values(), *load("outlook_dw.ics").values(),
                *load("thunderbird_nong_nghiep.ics").values()]
    return own + imported


def test_the_export_is_complete_rfc5545() -> None:
    ics = export_ics(every_kind_of_item(), STAMP)
    assert_rfc5545(ics)
    assert b"DTSTAMP:20261130T060000Z" in ics
    assert b"TZID:America/New_York" in ics and b"TZID:Europe/Berlin" in ics
    assert b"X-LOA-RRULE" not in ics  # the rule travels only as RRULE, RDATE and EXDATE


def test_the_export_reads_back_slot_for_slot() -> None:
    items = every_kind_of_item()
    back, refused = import_ics(export_ics(items, STAMP))
    assert refused == []
    assert [b.id for b in back] == [i.id for i in items]
    for mine, theirs in zip(items, back, strict=True):
        assert (theirs.title, theirs.zones, theirs.content, theirs.cls, theirs.missed,
                theirs.late_minutes, theirs.draft, theirs.zone, theirs.start) == (
            mine.title, mine.zones, mine.content, mine.cls, mine.missed, mine.late_minutes,
            mine.draft, mine.zone, mine.start)
        assert station_slots(on_air(theirs)) == station_slots(on_air(mine)), mine.title
    morning = station_slots(items[0], "2026-11-30T00:00", "2026-12-05T00:00")
    assert morning == ["Mon 11-30 06:00 15'", "Tue 12-01 06:00 15'",  # 2 December excluded
                       "Thu 12-03 07:00 10'", "Fri 12-04 06:00 15'"]  # 3 December moved


def test_an_export_edited_by_a_calendar_app_is_read_as_edited() -> None:
    """The calendar app changed the rule, the length and the title; Loa's X- fields stay."""
    ics = export_ics(every_kind_of_item()[:1], STAMP).decode()
    edited = (ics.replace("RRULE:FREQ=DAILY;UNTIL=20261230T230000Z",
                          "RRULE:FREQ=WEEKLY;BYDAY=MO,TH")
                 .replace("DURATION:PT15M", "DURATION:PT20M")
                 .replace("SUMMARY:Bản tin sáng", "SUMMARY:Bản tin sớm"))
    assert edited.count("RRULE:FREQ=WEEKLY") == edited.count("PT20M") == 1
    (item,), refused = import_ics(edited.encode())
    assert refused == [] and item.title.startswith("Bản tin sớm")
    assert item.zones == ["an-binh", "phu-my"] and isinstance(item.content, TextContent)
    assert station_slots(item, "2026-11-30T00:00", "2026-12-08T00:00") == [
        "Mon 11-30 06:00 20'", "Thu 12-03 07:00 10'", "Mon 12-07 06:00 20'"]


def test_a_rule_in_another_zone_names_it_and_round_trips_through_json() -> None:
    item = on_air(load("thunderbird_nong_nghiep.ics")["Bản tin nông nghiệp"])
    stored = item.to_json()
    assert stored["tz"] == "Europe/Berlin" and stored["start"] == "2026-10-20T10:00:00+02:00"
    again = item_from_json(stored, item.id)
    assert station_slots(again) == station_slots(item)
    with pytest.raises(ScheduleError, match="time zone"):
        item_from_json({**stored, "tz": "Europe/Atlantis"}, item.id)


def test_slots_are_kept_between_asks_and_found_far_ahead() -> None:
    """The engine asks on every wake: a day of slots is expanded once and kept; a slot weeks
    away is found through the library and remembered until it comes."""
    item = ScheduleItem("m", "m", ["a"], local("2016-01-01T06:00"), 60, ToneContent(),
                        "FREQ=MONTHLY;BYMONTHDAY=1")
    now = local("2026-11-30T12:00")
    assert item.next_slot(now) == local("2026-12-01T06:00")
    assert item.next_slot(now + timedelta(days=1)) == local("2027-01-01T06:00")
    assert item.next_slot(now + timedelta(days=10)) == local("2027-01-01T06:00")
    ended = ScheduleItem("e", "e", ["a"], local("2026-11-01T06:00"), 60, ToneContent(),
                         "FREQ=DAILY;COUNT=3")
    assert ended.next_slot(now) is None and ended.slots(now, now + timedelta(days=30)) == []


@pytest.mark.parametrize("tzid", ["Europe/Berlin", '"Europe/Berlin"', "W. Europe Standard Time",
                                  "/mozilla.org/20070129_1/Europe/Berlin"])
def test_every_spelling_of_a_zone_is_named(tzid: str) -> None:
    """IANA, quoted, Windows (Outlook) and vendor-prefixed (old Lightning) TZIDs, each without
    a VTIMEZONE: the rule is expanded in Europe/Berlin."""
    ics = "\r\n".join(("BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:x", "BEGIN:VEVENT", "UID:z",
                       "DTSTAMP:20261101T000000Z", "SUMMARY:z",
                       f"DTSTART;TZID={tzid}:20261020T100000", "DURATION:PT10M",
                       "RRULE:FREQ=WEEKLY;COUNT=2", "END:VEVENT", "END:VCALENDAR", ""))
    (item,), refused = import_ics(ics.encode())
    assert refused == [] and item.zone.key == "Europe/Berlin"
    assert station_slots(on_air(item)) == ["Tue 10-20 15:00 10'", "Tue 10-27 16:00 10'"]
