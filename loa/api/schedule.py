"""The schedule (lịch phát): items with RFC 5545 recurrence in station time, their slots in a
time window, and the whole schedule as an iCalendar file, out and in.

Scope: an item is added, changed or deleted only by a caller whose scope holds every one of
its zones (before and after a change); it is listed (and exported, and its slots listed) to
those whose scope it plays in (a zone of it or above it). A draft without zones plays
nowhere: anyone with the operate right sees and completes it.

A change can be tried first: ``POST schedules?dry_run=1`` and ``PATCH
schedules/{id}?dry_run=1`` check the item as the change itself does and answer the conflicts
it would report, storing and auditing nothing (an editor asks before saving)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from loa.api.audit import Changed, audited
from loa.api.errors import language_of
from loa.api.resource import (
    ApiError,
    json_response,
    read_body,
    read_json,
    require,
    scope_of,
    scoped,
    scoped_content,
    server_of,
)
from loa.control.auth import Right, Scope
from loa.control.schedule.ical import export_ics, import_ics, refusal
from loa.control.schedule.recurrence import (
    MAX_WINDOW_S,
    STATION_TZ,
    ScheduleItem,
    conflicts,
    item_from_json,
    local,
)
from loa.core.content import TextContent
from loa.core.i18n import N_, Message

if TYPE_CHECKING:
    from loa.app import LoaServer

MAX_ICS_BYTES = 1 << 20
# GET schedules/occurrences: the longest window (two months, for a month view and its
# edges) and the most slots one answer lists
MAX_OCCURRENCE_DAYS = 62
MAX_OCCURRENCES = 5000
DRY_RUN = "dry_run"  # the query parameter of a change that is only tried
TRUE_WORDS = frozenset({"1", "true", "yes"})
FALSE_WORDS = frozenset({"", "0", "false", "no"})

routes = web.RouteTableDef()


@routes.post("/api/v1/schedules")
async def add_schedule(request: web.Request) -> web.Response:
    """``{"title", "zones", "start": local ISO time, "tz", "duration_s", "rrule",
    "overrides", "class", "content": (``loa.core.content``, ``SCHEDULE_KINDS``), "missed",
    "late_minutes", "draft"}`` (``recurrence.item_from_json``) (OPERATE): 201 with the item,
    the items it conflicts with and its next slot; 404 for an unknown zone, 400 for a bad
    item, a missing media item or text that cannot be read aloud, 403 for a zone or a
    library item outside the caller's scope.

    ``?dry_run=1``: checked the same way, with the same refusals (the same statuses and
    messages), and answered 200 with ``"dry_run": true``, the item as it would be saved
    (``"id": null``), its conflicts and its next slot; nothing is stored, scheduled or
    audited. Text is checked (empty, too long, an unknown voice) but not read aloud yet:
    a failure of the speech engine itself comes with the save. 400 for another value of
    ``dry_run`` than 1/0 (true/false, yes/no)."""
    if dry_run(request):
        return (await _add(request, dry=True)).response
    return await _add_and_audit(request)


async def _add(request: web.Request, dry: bool) -> Changed:
    require(request, Right.OPERATE)
    body = await read_json(request)
    s = server_of(request)
    # beside the loop: making an item expands its rule once (a probe of its first slot)
    item = await asyncio.to_thread(item_from_json, body, secrets.token_hex(6))
    scoped_content(request, item.content)
    scoped(request, *item.zones)
    return await _save(s, item, 201, dry)


async def _add_saving(request: web.Request) -> Changed:
    return await _add(request, dry=False)


_add_and_audit = audited("schedule.add")(_add_saving)


@routes.patch("/api/v1/schedules/{id}")
async def update_schedule(request: web.Request) -> web.Response:
    """``PATCH schedules/{id}`` (OPERATE): change the fields given (those of ``POST``), e.g.
    the zones and content of a draft imported from another calendar, after which it plays.
    A complete item becomes a draft again only with ``"draft": true``. 200 with the item,
    its conflicts and its next slot; 404 for an unknown item or zone, 400 for a bad item,
    403 for a zone (before or after) or a library item outside the caller's scope.

    ``?dry_run=1``: as ``POST``'s, the change checked and its conflicts answered (200,
    ``"dry_run": true``, the item as it would be after the change), nothing changed or
    audited."""
    if dry_run(request):
        return (await _update(request, dry=True)).response
    return await _update_and_audit(request)


async def _update(request: web.Request, dry: bool) -> Changed:
    require(request, Right.OPERATE)
    body = await read_json(request)
    s = server_of(request)
    sid = request.match_info["id"]
    old = s.schedule.items.get(sid)
    if old is None:
        raise ApiError(404, N_("no schedule item {id!r}"), id=sid)
    scoped(request, *old.zones)
    merged = {**old.to_json(), **body, "id": sid,
              "draft": old.draft or body.get("draft") is True}
    item = await asyncio.to_thread(item_from_json, merged, sid)  # as in _add
    scoped(request, *item.zones)
    scoped_content(request, item.content)
    return await _save(s, item, 200, dry)


async def _update_saving(request: web.Request) -> Changed:
    return await _update(request, dry=False)


_update_and_audit = audited("schedule.update")(_update_saving)


def dry_run(request: web.Request) -> bool:
    """Whether the query asks only to try the change: ``dry_run=1`` (``true``, ``yes``);
    ``0``, ``false``, ``no`` or none: do it. ApiError 400 for another value."""
    value = request.query.get(DRY_RUN, "").strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ApiError(400, N_("{name} must be 1 (only check the change) or 0, not {value!r}"),
                   name=DRY_RUN, value=value)


async def _save(s: LoaServer, item: ScheduleItem, status: int, dry: bool = False) -> Changed:
    """Check the zones, prepare the content (now, so the slot starts on the frame), report
    conflicts, store and schedule the item; a draft is stored and listed, never started.
    ``dry``: the same checks and conflicts, answered 200 and not stored (text checked,
    not read aloud: a dry run per edit would fill the speech cache with every draft).

    The item's rule is expanded beside the loop (a dense rule's day of slots takes tens of
    milliseconds): it is not shared with the engine until it is put there."""
    for z in item.zones:
        s.zones.get(z)
    now = s.wall.now()
    # refused when every window has closed (one open now still counts: it can start late)
    if not item.draft and await asyncio.to_thread(
            item.next_slot, now - timedelta(seconds=item.duration_s)) is None:
        raise ApiError(400, N_("every slot of {title!r} is in the past (it started {start}; "
                               "now is {now}): give a later start or a rule that repeats"),
                       title=item.title, start=item.start.isoformat(),
                       now=now.isoformat(timespec="seconds"))
    if item.content is not None:
        if dry and isinstance(item.content, TextContent):
            await s.programmes.resolve(item.content)
        else:
            await s.programmes.prepare(item.content)
    found, nxt = await find_conflicts(s, item)
    answer = {"schedule": item.to_json(), "conflicts": found,
              "next": nxt.isoformat() if nxt else None}
    if dry:
        return Changed(json_response({**answer, "dry_run": True, "schedule": {
            **item.to_json(), "id": _kept_id(s, item)}}), item.id)
    s.store.save_schedule(item.id, item.to_json())
    s.schedule.put(item)
    return Changed(json_response(answer, status=status), item.id, item.to_json())


def _kept_id(s: LoaServer, item: ScheduleItem) -> str | None:
    """The id a dry run answers: the item's when it exists (a PATCH), else None (a POST's id
    is drawn when it is saved)."""
    return item.id if item.id in s.schedule.items else None


async def find_conflicts(s: LoaServer, item: ScheduleItem
                         ) -> tuple[list[dict[str, Any]], datetime | None]:
    """``recurrence.conflicts`` of ``item`` against the schedule (the next 14 days), and its
    next slot: the items of its class on overlapping zones picked on the loop, the slots
    expanded beside it (each rule's expansion can take milliseconds). ``ScheduleItem`` is
    safe to expand there while the engine's plan (in a thread of its own) expands the same
    items: its caches are replaced whole, and its queries are used under their locks."""
    others = [o for o in s.schedule.items.values()
              if o.id != item.id and o.cls is item.cls and not o.draft
              and zones_overlap(s, item.zones, o.zones)]
    now = s.wall.now()

    def check() -> tuple[list[dict[str, Any]], datetime | None]:
        found = conflicts(item, others, lambda _a, _b: True, now) if others else []
        return found, item.next_slot(now)

    return await asyncio.to_thread(check)


def visible_item(scope: Scope, item: ScheduleItem) -> bool:
    """Whether the item plays in the scope (a zone of it or above it); a draft without zones
    is everyone's."""
    return not item.zones or any(scope.overlaps(z) for z in item.zones)


def zones_overlap(server: LoaServer, a: list[str], b: list[str]) -> bool:
    """Zones overlap when one is the other or lies below it (unknown zones overlap none)."""
    below = {z: {x.id for x in server.zones.subtree(z)} for z in set(a) | set(b)
             if z in server.zones}
    return any(y in below.get(x, set()) or x in below.get(y, set()) for x in a for y in b)


@routes.get("/api/v1/schedules")
async def list_schedules(request: web.Request) -> web.Response:
    """``GET schedules``: every item with its next slot (ISO 8601, station time) or None;
    drafts (``"draft": true``, imported without zones or content) among them; the items
    that play in the caller's scope; a library item's content with its ``title``
    (``with_titles``). The next slots are found beside the loop
    (``listed``): finding one years ahead can take seconds the first time."""
    s = server_of(request)
    scope = scope_of(request)
    items = [i for i in s.schedule.items.values() if visible_item(scope, i)]
    out = await asyncio.to_thread(listed, items, s.wall.now())
    for entry in out:
        entry["content"] = with_titles(s, entry.get("content"))
    return json_response({"schedules": out})


def with_titles(server: LoaServer, content: dict[str, Any] | None) -> dict[str, Any] | None:
    """A content's JSON as a list shows it: a library item with its ``title`` (None when it
    is gone from the library), a playlist with its items' ``titles``; anything else as it
    is. (What is stored and exported names the ids alone.)"""
    if content is None:
        return None
    media = server.media
    if content.get("kind") == "media":
        item = media.get(str(content.get("id")))
        return {**content, "title": item.title if item is not None else None}
    if content.get("kind") == "playlist":
        found = [media.get(str(i)) for i in content.get("items") or []]
        return {**content, "titles": [m.title if m is not None else None for m in found]}
    return content


def listed(items: list[ScheduleItem], now: datetime) -> list[dict[str, Any]]:
    """Blocking (``ScheduleItem.next_slot`` searches each rule; call it beside the loop):
    the items as ``list_schedules`` answers them, each ``to_json`` with ``"next"``, its first
    slot at or after ``now`` (ISO 8601, station time) or None."""
    out = []
    for item in items:
        nxt = item.next_slot(now)
        out.append({**item.to_json(), "next": nxt.isoformat() if nxt else None})
    return out


@routes.get("/api/v1/schedules/occurrences")
async def list_occurrences(request: web.Request) -> web.Response:
    """``GET schedules/occurrences?from=…&to=…[&zone=…]``: the slots whose windows meet
    [from, to), of the items that play in the caller's scope (only those on zones that
    overlap ``zone``, when given), expanded by the scheduler's own recurrence code (RFC 5545,
    ``ScheduleItem.slots``) beside the loop. ``from`` and ``to``: Unix seconds, or ISO 8601
    (station time without an offset; a date alone is its midnight).

    ``{"from", "to": ISO 8601 station time, "zone": str | None, "occurrences": [{"item",
    "title", "zones", "class", "start", "end": Unix seconds, "start_local", "end_local":
    ISO 8601 station time, "moved": whether an override moved it}], "truncated": bool,
    "limit": int}``, in order of start: at most ``limit`` (5000) slots, the earliest;
    ``truncated`` when there were more. 400 for a missing or unreadable time, ``to`` not
    after ``from``, or a window over 62 days; 404 for an unknown zone, 403 for a zone
    neither in the caller's scope nor above it."""
    s = server_of(request)
    start, end = _query_time(request, "from"), _query_time(request, "to")
    if end <= start:
        raise ApiError(400, N_('"to" must be later than "from"'))
    if end - start > timedelta(days=MAX_OCCURRENCE_DAYS):
        raise ApiError(400, N_("the window from {start} to {end} is longer than {days} days: "
                               "ask for a shorter one"),
                       start=start.astimezone(STATION_TZ).isoformat(),
                       end=end.astimezone(STATION_TZ).isoformat(), days=MAX_OCCURRENCE_DAYS)
    scope = scope_of(request)
    zone = request.query.get("zone") or None
    if zone is not None:
        s.zones.get(zone)  # ZoneError (404) if unknown
        if not scope.overlaps(zone):
            scope.check(zone)  # ScopeError: what plays there is nothing of theirs
    items = [i for i in s.schedule.items.values()
             if not i.draft and visible_item(scope, i)
             and (zone is None or zones_overlap(s, [zone], i.zones))]
    found, truncated = await asyncio.to_thread(occurrences, items, start, end,
                                               MAX_OCCURRENCES)
    return json_response({"from": start.astimezone(STATION_TZ).isoformat(),
                          "to": end.astimezone(STATION_TZ).isoformat(), "zone": zone,
                          "occurrences": found, "truncated": truncated,
                          "limit": MAX_OCCURRENCES})


def _query_time(request: web.Request, name: str) -> datetime:
    """The query parameter ``name`` as an aware time: Unix seconds, or ISO 8601 (station
    time when it has no offset). ApiError 400 when it is missing or neither."""
    text = request.query.get(name, "").strip()
    if not text:
        raise ApiError(400, N_("{name} is needed: a time as Unix seconds or ISO 8601"),
                       name=name)
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        return local(text)
    except ValueError:
        raise ApiError(400, N_("{name}={value!r} is not a time: give Unix seconds or ISO "
                               "8601, such as 2026-12-01T06:00 (station time) or "
                               "2026-12-01T06:00+07:00"), name=name, value=text) from None


def occurrences(items: list[ScheduleItem], start: datetime, end: datetime, limit: int
                ) -> tuple[list[dict[str, Any]], bool]:
    """Blocking (an expansion walks each rule; call it beside the loop): the slots of
    ``items`` whose windows meet [start, end), as ``list_occurrences`` answers them, the
    earliest ``limit`` of them, and whether there were more."""
    found: list[tuple[datetime, str, dict[str, Any]]] = []
    for item in items:
        moved = {o.start for o in item.overrides}
        # a window is at most MAX_WINDOW_S long: a slot that began that much earlier may
        # still be open at ``start``
        for slot in item.slots(start - timedelta(seconds=MAX_WINDOW_S), end):
            slot_start, slot_end = item.window(slot)
            if slot_end <= start:
                continue
            found.append((slot_start, item.id, {
                "item": item.id, "title": item.title, "zones": item.zones,
                "class": item.cls.value,
                "start": slot_start.timestamp(), "end": slot_end.timestamp(),
                "start_local": slot_start.astimezone(STATION_TZ).isoformat(),
                "end_local": slot_end.astimezone(STATION_TZ).isoformat(),
                "moved": slot in moved}))
    found.sort(key=lambda f: (f[0], f[1]))
    return [f[2] for f in found[:limit]], len(found) > limit


@routes.delete("/api/v1/schedules/{id}")
@audited("schedule.delete")
async def delete_schedule(request: web.Request) -> Changed:
    """``DELETE schedules/{id}`` (OPERATE): 404 if unknown."""
    require(request, Right.OPERATE)
    s = server_of(request)
    sid = request.match_info["id"]
    if sid not in s.schedule.items:
        raise ApiError(404, N_("no schedule item {id!r}"), id=sid)
    scoped(request, *s.schedule.items[sid].zones)
    s.schedule.remove(sid)
    s.store.delete_schedule(sid)
    return Changed(json_response({"deleted": sid}), sid)


@routes.get("/api/v1/schedules.ics")
async def export_schedules(request: web.Request) -> web.Response:
    """``GET schedules.ics``: the schedule (the items that play in the caller's scope) as an
    iCalendar file (RFC 5545), DTSTAMP the server's wall time."""
    s = server_of(request)
    scope = scope_of(request)
    items = [i for i in s.schedule.items.values() if visible_item(scope, i)]
    # beside the loop: a VTIMEZONE per zone used takes milliseconds to write
    ics = await asyncio.to_thread(export_ics, items, s.wall.now())
    return web.Response(body=ics,
                        content_type="text/calendar", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="loa.ics"'})


@routes.post("/api/v1/schedules.ics")
@audited("schedule.import")
async def import_schedules(request: web.Request) -> Changed:
    """``POST schedules.ics`` (OPERATE): add the events of an iCalendar body (at most
    1 MiB; 413 over, 400 if unreadable), an event already imported (the same UID) replacing
    its item. An event without Loa's zones and content comes in as a draft (``imported``
    and ``drafts`` name it) to complete with ``PATCH schedules/{id}``. Events naming an
    unknown zone, or one outside the caller's scope, are refused, not fatal: ``refused``
    says why for each (``"title: why"``, in the caller's language)."""
    require(request, Right.OPERATE)
    data = await read_body(request, MAX_ICS_BYTES)
    if len(data) > MAX_ICS_BYTES:
        raise ApiError(413, N_("calendars are limited to {kib} KiB"), kib=MAX_ICS_BYTES >> 10)
    s = server_of(request)
    known = dict(s.schedule.items)
    items, refused = await asyncio.to_thread(import_ics, data, known)  # up to 1 MiB of text
    scope = scope_of(request)
    taken, drafts = [], []
    for item in items:
        if not all(z in s.zones for z in item.zones):
            refused.append(refusal(item.title, Message(N_("unknown zone in {zones}"),
                                                       {"zones": item.zones})))
            continue
        old = known.get(item.id)
        outside = [z for z in [*item.zones, *(old.zones if old else [])]
                   if not scope.contains(z)]
        if outside:
            refused.append(refusal(item.title, Message(
                N_("zone {zone!r} is outside your scope ({scope})"),
                {"zone": outside[0], "scope": scope.label})))
            continue
        if item.content is not None:
            try:  # as when an item is added alone
                await s.programmes.prepare(item.content)
            except ValueError as exc:
                refused.append(refusal(item.title, exc))
                continue
        s.store.save_schedule(item.id, item.to_json())
        s.schedule.put(item)
        taken.append(item.id)
        if item.draft:
            drafts.append(item.id)
    language = language_of(request)  # the answer in the caller's words, the audit in English
    return Changed(json_response({"imported": taken, "drafts": drafts,
                                  "refused": [r.say(language) for r in refused]}), "ics",
                   {"taken": taken, "drafts": drafts, "refused": [str(r) for r in refused]})
