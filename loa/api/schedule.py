"""The schedule (lịch phát): items with RFC 5545 recurrence in station time, and the whole
schedule as an iCalendar file, out and in.

Scope: an item is added, changed or deleted only by a caller whose scope holds every one of
its zones (before and after a change); it is listed (and exported) to those whose scope it
plays in (a zone of it or above it). A draft without zones plays nowhere: anyone with the
operate right sees and completes it."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

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
from loa.control.schedule.recurrence import ScheduleItem, conflicts, item_from_json
from loa.core.i18n import N_, Message

if TYPE_CHECKING:
    from loa.app import LoaServer

MAX_ICS_BYTES = 1 << 20

routes = web.RouteTableDef()


@routes.post("/api/v1/schedules")
@audited("schedule.add")
async def add_schedule(request: web.Request) -> Changed:
    """``{"title", "zones", "start": local ISO time, "tz", "duration_s", "rrule",
    "overrides", "class", "content": (``loa.core.content``, ``SCHEDULE_KINDS``), "missed",
    "late_minutes", "draft"}`` (``recurrence.item_from_json``) (OPERATE): 201 with the item,
    the items it conflicts with and its next slot; 404 for an unknown zone, 400 for a bad
    item, a missing media item or text that cannot be read aloud."""
    require(request, Right.OPERATE)
    body = await read_json(request)
    s = server_of(request)
    item = item_from_json(body, secrets.token_hex(6))
    scoped_content(request, item.content)
    scoped(request, *item.zones)
    return await _save(s, item, 201)


@routes.patch("/api/v1/schedules/{id}")
@audited("schedule.update")
async def update_schedule(request: web.Request) -> Changed:
    """``PATCH schedules/{id}`` (OPERATE): change the fields given (those of ``POST``), e.g.
    the zones and content of a draft imported from another calendar, after which it plays.
    A complete item becomes a draft again only with ``"draft": true``. 200 with the item,
    its conflicts and its next slot; 404 for an unknown item or zone, 400 for a bad item."""
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
    item = item_from_json(merged, sid)
    scoped(request, *item.zones)
    scoped_content(request, item.content)
    return await _save(s, item, 200)


async def _save(s: LoaServer, item: ScheduleItem, status: int) -> Changed:
    """Check the zones, prepare the content (now, so the slot starts on the frame), report
    conflicts, store and schedule the item; a draft is stored and listed, never started."""
    for z in item.zones:
        s.zones.get(z)
    now = s.wall.now()
    # refused when every window has closed (one open now still counts: it can start late)
    if not item.draft and item.next_slot(now - timedelta(seconds=item.duration_s)) is None:
        raise ApiError(400, N_("every slot of {title!r} is in the past (it started {start}; "
                               "now is {now}): give a later start or a rule that repeats"),
                       title=item.title, start=item.start.isoformat(),
                       now=now.isoformat(timespec="seconds"))
    if item.content is not None:
        await s.programmes.prepare(item.content)
    found = conflicts(item, list(s.schedule.items.values()),
                      lambda a, b: zones_overlap(s, a, b), s.wall.now())
    s.store.save_schedule(item.id, item.to_json())
    s.schedule.put(item)
    nxt = item.next_slot(s.wall.now())
    return Changed(json_response({"schedule": item.to_json(), "conflicts": found,
                                      "next": nxt.isoformat() if nxt else None},
                                     status=status),
                   item.id, item.to_json())


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
    that play in the caller's scope."""
    s = server_of(request)
    scope = scope_of(request)
    now = s.wall.now()
    out = []
    for item in s.schedule.items.values():
        if not visible_item(scope, item):
            continue
        nxt = item.next_slot(now)
        out.append({**item.to_json(), "next": nxt.isoformat() if nxt else None})
    return json_response({"schedules": out})


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
