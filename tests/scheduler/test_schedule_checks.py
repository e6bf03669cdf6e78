"""What the console's schedule page asks the API (issue 15) instead of working it out
itself: a dry run of a change (the same refusals as the change, the conflicts it would report,
nothing stored or audited), and the slots of a time window, expanded by the scheduler's own
recurrence code."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from loa.api.schedule import occurrences
from loa.app import LoaServer
from loa.control.schedule.recurrence import STATION_TZ
from tests.api.accounts import add_user, session_of, token_of
from tests.api.test_accounts import OUTSIDE, outside
from tests.server.test_api import call


def local_time(server: LoaServer, days: float, hour: int = 6) -> str:
    """A station-time start ``days`` from today at ``hour``:00, as the schedule takes it."""
    day = (server.wall.now() + timedelta(days=days)).astimezone(STATION_TZ)
    return day.replace(hour=hour, minute=0, second=0, microsecond=0, tzinfo=None).isoformat()


async def stored_and_audited(server: LoaServer) -> tuple[list[str], list[dict[str, Any]]]:
    """The schedule's ids as the engine and the database have them, and the audit log of
    what people did (not the server's own alarms: a busy machine may raise ``loop_lag``)."""
    await server.store.flush()
    in_db = await asyncio.to_thread(server.store.load_schedules)
    assert sorted(server.schedule.items) == sorted(d["id"] for d in in_db)
    audited = [e for e in await server.store.audit_log_async()
               if not e["action"].startswith("alarm.")]
    return sorted(server.schedule.items), audited


async def test_a_dry_run_answers_the_conflicts_and_keeps_nothing(server: LoaServer) -> None:
    daily = {"title": "Bản tin sáng", "zones": ["an-binh"], "start": local_time(server, 1),
             "duration_s": 900, "rrule": "FREQ=DAILY", "content": {"kind": "tone"}}
    status, first = await call(server, "POST", "/api/v1/schedules", json=daily)
    assert status == 201 and first["conflicts"] == []
    first_id = first["schedule"]["id"]
    before = await stored_and_audited(server)

    # a village of that commune, ten minutes into its window, on the third day
    clash = {**daily, "title": "Thông báo thôn", "zones": ["an-binh-1"], "rrule": None,
             "start": local_time(server, 3).replace(":00:00", ":10:00")}
    status, tried = await call(server, "POST", "/api/v1/schedules?dry_run=1", json=clash)
    assert status == 200, tried
    assert tried["dry_run"] is True and tried["schedule"]["id"] is None
    assert tried["schedule"]["title"] == "Thông báo thôn" and not tried["schedule"]["draft"]
    expected_slot = datetime.fromisoformat(local_time(server, 3)).replace(tzinfo=STATION_TZ)
    assert tried["conflicts"] == [{"item": first_id, "title": "Bản tin sáng",
                                   "slot": expected_slot.isoformat()}]
    assert tried["next"] == datetime.fromisoformat(str(clash["start"])).replace(
        tzinfo=STATION_TZ).isoformat()
    assert await stored_and_audited(server) == before  # nothing stored, nothing audited

    # what the save then reports is what the dry run said
    status, saved = await call(server, "POST", "/api/v1/schedules", json=clash)
    assert status == 201
    assert saved["conflicts"] == tried["conflicts"] and saved["next"] == tried["next"]
    assert {k: v for k, v in saved["schedule"].items() if k != "id"} == {
        k: v for k, v in tried["schedule"].items() if k != "id"}
    clash_id = saved["schedule"]["id"]

    # a change tried: the item as it would be, its own slots not counted against it
    before = await stored_and_audited(server)
    status, tried = await call(server, "PATCH", f"/api/v1/schedules/{clash_id}?dry_run=1",
                               json={"zones": ["phu-my-1"]})
    assert status == 200 and tried["dry_run"] is True
    assert tried["schedule"]["id"] == clash_id and tried["schedule"]["zones"] == ["phu-my-1"]
    assert tried["conflicts"] == []
    status, tried = await call(server, "PATCH", f"/api/v1/schedules/{first_id}?dry_run=true",
                               json={"title": "Bản tin sáng mới"})
    assert status == 200 and [c["item"] for c in tried["conflicts"]] == [clash_id]
    assert await stored_and_audited(server) == before
    assert server.schedule.items[clash_id].zones == ["an-binh-1"]
    assert server.schedule.items[first_id].title == "Bản tin sáng"
    # a priority bulletin does not conflict with an ordinary one
    status, tried = await call(server, "POST", "/api/v1/schedules?dry_run=yes",
                               json={**clash, "class": "priority"})
    assert status == 200 and tried["conflicts"] == []
    # dry_run=0 is the change itself
    status, saved = await call(server, "POST", "/api/v1/schedules?dry_run=0",
                               json={**clash, "title": "Lần nữa"})
    assert status == 201 and "dry_run" not in saved
    assert saved["schedule"]["id"] in server.schedule.items
    status, answer = await call(server, "POST", "/api/v1/schedules?dry_run=maybe", json=clash)
    assert (status, answer) == (400, {"error": "dry_run must be 1 (only check the change) or "
                                               "0, not 'maybe'"})


async def test_a_dry_run_refuses_what_the_change_refuses(server: LoaServer) -> None:
    await add_user(server, "op-an-binh", "operator", "an-binh")
    await add_user(server, "nghe", "viewer", "an-binh")
    op = await token_of(server, "op-an-binh")
    base = {"title": "Bản tin", "zones": ["an-binh-1"], "start": local_time(server, 2),
            "duration_s": 600, "content": {"kind": "tone"}}
    status, own = await call(server, "POST", "/api/v1/schedules", json=base, headers=op)
    assert status == 201
    own_id = own["schedule"]["id"]
    status, other = await call(server, "POST", "/api/v1/schedules",
                               json={**base, "zones": ["phu-my"]})
    assert status == 201
    other_id = other["schedule"]["id"]
    past = (server.wall.now() - timedelta(days=2)).astimezone(STATION_TZ).replace(
        microsecond=0, tzinfo=None).isoformat()
    viewer = await session_of(server, "nghe")
    refused: list[tuple[str, str, dict[str, Any], dict[str, str] | None, int]] = [
        ("POST", "/api/v1/schedules", {**base, "zones": ["nowhere"]}, None, 404),
        ("POST", "/api/v1/schedules", {**base, "rrule": "FREQ=OFTEN"}, None, 400),
        ("POST", "/api/v1/schedules", {**base, "content": {"kind": "media", "id": "nope"}},
         None, 400),
        ("POST", "/api/v1/schedules", {**base, "content": {"kind": "text", "text": " "}},
         None, 400),
        ("POST", "/api/v1/schedules", {**base, "duration_s": 0}, None, 400),
        ("POST", "/api/v1/schedules", {**base, "class": "loud"}, None, 400),
        ("POST", "/api/v1/schedules", {**base, "zones": []}, None, 400),
        ("POST", "/api/v1/schedules", {**base, "start": past}, None, 400),
        ("POST", "/api/v1/schedules", {**base, "zones": ["phu-my-1"]}, op, 403),
        ("POST", "/api/v1/schedules", base, viewer, 403),
        ("PATCH", f"/api/v1/schedules/{other_id}", {"title": "x"}, op, 403),
        ("PATCH", f"/api/v1/schedules/{own_id}", {"zones": ["phu-my"]}, op, 403),
        ("PATCH", f"/api/v1/schedules/{own_id}", {"rrule": "FREQ=DAILY;COUNT=x"}, op, 400),
        ("PATCH", "/api/v1/schedules/nope", {"title": "x"}, op, 404),
    ]
    before = await stored_and_audited(server)
    for method, path, body, headers, expected in refused:
        tried = await call(server, method, f"{path}?dry_run=1", json=body, headers=headers)
        done = await call(server, method, path, json=body, headers=headers)
        assert tried == done and tried[0] == expected, (method, path, body, tried, done)
    assert await stored_and_audited(server) == before
    # in the caller's language, as the change's own refusal
    vi = {"Authorization": op["Authorization"], "Accept-Language": "vi"}
    tried = await call(server, "POST", "/api/v1/schedules?dry_run=1",
                       json={**base, "zones": ["phu-my-1"]}, headers=vi)
    done = await call(server, "POST", "/api/v1/schedules", json={**base, "zones": ["phu-my-1"]},
                      headers=vi)
    assert tried == done and tried[0] == 403 and "phu-my-1" in tried[1]["error"]
    assert tried[1] != outside(f"zone 'phu-my-1' {OUTSIDE}")  # Vietnamese, not English


async def test_the_slots_of_a_window_follow_the_schedulers_rules(server: LoaServer) -> None:
    await add_user(server, "op-an-binh", "operator", "an-binh")
    op = await token_of(server, "op-an-binh")
    tone = {"kind": "tone"}
    made = {}
    for title, zones, start, duration_s, rrule, extra in [
        # every day at 06:00 in a commune, but the 9th skipped
        ("Bản tin sáng", ["an-binh"], "2030-01-07T06:00", 900,
         "RRULE:FREQ=DAILY\nEXDATE:20300109T060000", {}),
        # Monday, Wednesday and Friday evenings in a village; the 11th's moved to 20:00
        ("Thông báo thôn", ["an-binh-1"], "2030-01-07T18:00", 1800,
         "FREQ=WEEKLY;BYDAY=MO,WE,FR",
         {"overrides": [{"recurrence_id": "2030-01-11T18:00", "start": "2030-01-11T20:00",
                         "duration_s": 600}]}),
        # across midnight: from 23:30 on the 6th until 00:30 on the 7th
        ("Đêm", ["huyen"], "2030-01-06T23:30", 3600, None, {}),
        # another commune's: not the operator's to see
        ("Phú Mỹ", ["phu-my-1"], "2030-01-08T07:00", 600, "FREQ=DAILY", {}),
    ]:
        status, body = await call(server, "POST", "/api/v1/schedules", json={
            "title": title, "zones": zones, "start": start, "duration_s": duration_s,
            "rrule": rrule, "content": tone, **extra})
        assert status == 201, body
        made[title] = body["schedule"]["id"]
    # a draft has no slots
    status, _ = await call(server, "POST", "/api/v1/schedules", json={
        "title": "Nháp", "start": "2030-01-08T08:00", "duration_s": 60, "draft": True})
    assert status == 201

    def slots(body: dict[str, Any]) -> list[tuple[str, str, str]]:
        return [(o["title"], o["start_local"], o["end_local"]) for o in body["occurrences"]]

    week = "from=2030-01-07T00:00&to=2030-01-14T00:00"
    status, body = await call(server, "GET", f"/api/v1/schedules/occurrences?{week}",
                              headers=op)
    assert status == 200, body
    z = "+07:00"
    assert slots(body) == [
        ("Đêm", f"2030-01-06T23:30:00{z}", f"2030-01-07T00:30:00{z}"),  # still open at 00:00
        ("Bản tin sáng", f"2030-01-07T06:00:00{z}", f"2030-01-07T06:15:00{z}"),
        ("Thông báo thôn", f"2030-01-07T18:00:00{z}", f"2030-01-07T18:30:00{z}"),
        ("Bản tin sáng", f"2030-01-08T06:00:00{z}", f"2030-01-08T06:15:00{z}"),
        ("Thông báo thôn", f"2030-01-09T18:00:00{z}", f"2030-01-09T18:30:00{z}"),
        ("Bản tin sáng", f"2030-01-10T06:00:00{z}", f"2030-01-10T06:15:00{z}"),
        ("Bản tin sáng", f"2030-01-11T06:00:00{z}", f"2030-01-11T06:15:00{z}"),
        ("Thông báo thôn", f"2030-01-11T20:00:00{z}", f"2030-01-11T20:10:00{z}"),
        ("Bản tin sáng", f"2030-01-12T06:00:00{z}", f"2030-01-12T06:15:00{z}"),
        ("Bản tin sáng", f"2030-01-13T06:00:00{z}", f"2030-01-13T06:15:00{z}"),
    ]
    first = body["occurrences"][1]
    assert first == {"item": made["Bản tin sáng"], "title": "Bản tin sáng",
                     "zones": ["an-binh"], "class": "normal",
                     "start": datetime(2030, 1, 7, 6, tzinfo=STATION_TZ).timestamp(),
                     "end": datetime(2030, 1, 7, 6, 15, tzinfo=STATION_TZ).timestamp(),
                     "start_local": f"2030-01-07T06:00:00{z}",
                     "end_local": f"2030-01-07T06:15:00{z}", "moved": False}
    assert [o["moved"] for o in body["occurrences"]].count(True) == 1
    assert body["occurrences"][7]["moved"] is True
    assert body["truncated"] is False and body["limit"] == 5000
    assert (body["from"], body["to"]) == (f"2030-01-07T00:00:00{z}", f"2030-01-14T00:00:00{z}")
    # the same window in Unix seconds, and with an offset (a '+' in a query is %2B)
    unix = (f"from={datetime(2030, 1, 7, tzinfo=STATION_TZ).timestamp():.0f}"
            f"&to={datetime(2030, 1, 14, tzinfo=STATION_TZ).timestamp():.0f}")
    status, again = await call(server, "GET", f"/api/v1/schedules/occurrences?{unix}",
                               headers=op)
    assert status == 200 and again == body
    status, again = await call(
        server, "GET", "/api/v1/schedules/occurrences?from=2030-01-06T17:00:00Z"
                       "&to=2030-01-13T17:00%2B00:00", headers=op)
    assert status == 200 and again == body
    # the district sees the other commune's item too; a zone narrows it
    status, body = await call(server, "GET", f"/api/v1/schedules/occurrences?{week}")
    assert "Phú Mỹ" in {t for t, _, _ in slots(body)} and len(body["occurrences"]) == 16
    status, body = await call(server, "GET",
                              f"/api/v1/schedules/occurrences?{week}&zone=phu-my")
    assert {t for t, _, _ in slots(body)} == {"Phú Mỹ", "Đêm"}  # its village's, and above
    status, body = await call(server, "GET",
                              f"/api/v1/schedules/occurrences?{week}&zone=an-binh-2",
                              headers=op)
    assert {t for t, _, _ in slots(body)} == {"Bản tin sáng", "Đêm"}
    # refusals
    for query, expected in [
        (f"{week}&zone=phu-my", (403, outside(f"zone 'phu-my' {OUTSIDE}"))),
        (f"{week}&zone=nowhere", (404, {"error": "unknown zone 'nowhere'"})),
        ("to=2030-01-14", (400, {"error": "from is needed: a time as Unix seconds or "
                                          "ISO 8601"})),
        ("from=2030-01-07&to=next%20week", (400, {
            "error": "to='next week' is not a time: give Unix seconds or ISO 8601, such as "
                     "2026-12-01T06:00 (station time) or 2026-12-01T06:00+07:00"})),
        ("from=2030-01-07&to=2030-01-07", (400, {"error": '"to" must be later than "from"'})),
        ("from=2030-01-01&to=2030-03-05", (400, {
            "error": "the window from 2030-01-01T00:00:00+07:00 to 2030-03-05T00:00:00+07:00 "
                     "is longer than 62 days: ask for a shorter one"})),
    ]:
        got = await call(server, "GET", f"/api/v1/schedules/occurrences?{query}", headers=op)
        assert got == expected, (query, got)
    status, body = await call(server, "GET", "/api/v1/schedules/occurrences"
                                             "?from=2030-01-01&to=2030-03-04")
    assert status == 200 and len(body["occurrences"]) > 60  # 62 days is allowed


async def test_the_slots_keep_their_own_zones_hours_and_are_bounded(
        server: LoaServer) -> None:
    # an event imported from Berlin: 09:00 there, so 15:00 here until its clocks go forward
    # on 31 March 2030, then 14:00
    status, body = await call(server, "POST", "/api/v1/schedules", json={
        "title": "Berlin", "zones": ["huyen"], "start": "2030-03-28T09:00",
        "tz": "Europe/Berlin", "duration_s": 60, "rrule": "FREQ=DAILY",
        "content": {"kind": "tone"}})
    assert status == 201, body
    status, body = await call(server, "GET", "/api/v1/schedules/occurrences"
                                             "?from=2030-03-29&to=2030-04-02")
    assert [o["start_local"] for o in body["occurrences"]] == [
        "2030-03-29T15:00:00+07:00", "2030-03-30T15:00:00+07:00",
        "2030-03-31T14:00:00+07:00", "2030-04-01T14:00:00+07:00"]
    # every five minutes from the next hour on: more slots than an answer holds, the
    # earliest kept (a dense rule starting years ahead would make the save's own check of
    # its next slot slow: recurring_ical_events widens its search window in steps)
    start = (server.wall.now() + timedelta(hours=1)).astimezone(STATION_TZ).replace(
        minute=0, second=0, microsecond=0)
    status, body = await call(server, "POST", "/api/v1/schedules", json={
        "title": "Dày", "zones": ["an-binh"], "duration_s": 60,
        "start": start.replace(tzinfo=None).isoformat(),
        "rrule": "FREQ=MINUTELY;INTERVAL=5", "content": {"kind": "tone"}})
    assert status == 201, body
    items = list(server.schedule.items.values())
    found, truncated = await asyncio.to_thread(occurrences, items, start,
                                               start + timedelta(hours=2), 10)
    assert truncated and [o["start"] for o in found] == [
        (start + timedelta(minutes=5 * i)).timestamp() for i in range(10)]
    found, truncated = await asyncio.to_thread(occurrences, items, start,
                                               start + timedelta(hours=2), 100)
    assert not truncated and len(found) == 24
