"""What the station is doing and did: status, Prometheus metrics, alarms and their history,
the broadcast log (nhật ký phát) and the audit log, the logs filtered and paged on the server.
Reads only. The alarms and the logs are those of the caller's scope: its zones and their
endpoints (what concerns the whole station, to a scope of the whole tree); so are the zones,
alerts, alarms and fleet counts of the status. The status's other counters and the metrics
are the station's: ``/metrics`` answers a scope of the whole tree only."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aiohttp import web

from loa.api.alerts import alert_in_scope
from loa.api.errors import language_of
from loa.api.resource import (
    ApiError,
    described,
    dumps,
    json_response,
    require,
    scope_of,
    scoped,
    scoped_all,
    server_of,
)
from loa.control.auth import Right, Scope
from loa.control.schedule.recurrence import local
from loa.control.store import LogQuery, contains, fold
from loa.core.i18n import N_, SOURCE_LANGUAGE, Message
from loa.core.zones import home_zone_id
from loa.monitoring.alarms import said_alarms, say_detail
from loa.monitoring.metrics import prepare, prepared, render

if TYPE_CHECKING:
    from loa.app import LoaServer

LOG_LIMIT = 200  # entries a log page holds unless ``limit`` says
MAX_LOG_LIMIT = 1000  # the most a page holds
MAX_LOG_TEXT = 200  # characters of ``q``
MAX_ID = (1 << 63) - 1  # SQLite's largest row id

routes = web.RouteTableDef()


@routes.get("/api/v1/status")
async def status(request: web.Request) -> web.Response:
    """``GET status``: ``LoaServer.status``, its zones, alerts and alarms those of the
    caller's scope."""
    s = server_of(request)
    return json_response(scoped_status(s, scope_of(request), s.status(),
                                       language_of(request)))


# The alarms a status shows, newest raised first (``alarms_total`` counts them all; GET alarms
# lists them all): a district whose endpoints lost the broker has thousands, and the status
# goes to every console every second.
STATUS_ALARMS = 100


def scoped_status(server: LoaServer, scope: Scope, full: dict[str, Any],
                  language: str = SOURCE_LANGUAGE) -> dict[str, Any]:
    """The status a caller of ``scope`` sees, from the station's (``full``:
    ``LoaServer.status()``, left as it is): its zones, and the alerts and alarms of its
    scope (``visible_alert``, ``visible_alarm``), the alarms' details said in ``language``
    (the ``STATUS_ALARMS`` newest raised; ``alarms_total`` counts them all); the rest as it
    is. It depends on the scope and the language alone, so callers of one
    scope and language may share it (the events stream does)."""
    out = dict(full)
    out["zones"] = [z for z in full["zones"] if scope.contains(z["zone"])]
    out["alerts"] = [a for a in full["alerts"] if alert_in_scope(server, scope, a)]
    alarms = full["alarms"] if scope.covers_all() else _alarms_within(server, scope,
                                                                       full["alarms"])
    out["alarms"] = said_alarms(alarms[:STATUS_ALARMS], language)
    out["alarms_total"] = len(alarms)
    if not scope.covers_all():
        out["fleet"] = {**full["fleet"], **scoped_fleet(server, scope)}
    return out


def _alarms_within(server: LoaServer, scope: Scope, views: list[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    """The alarm views whose subject lies in ``scope`` (not a whole tree's), as
    ``alarm_in_scope`` says, against the scope's zone ids gathered once (thousands of alarms
    each second, for every scope that watches)."""
    inside = frozenset(scope.zone_ids() or ())
    out = []
    for view in views:
        zone = alarm_zone(server, str(view.get("subject")))
        if zone is not None and home_zone_id(zone) in inside:
            out.append(view)
    return out


def scoped_fleet(server: LoaServer, scope: Scope) -> dict[str, int]:
    """The fleet's counts within ``scope``: ``endpoints`` (registered in its zones),
    ``online`` (of them, online now) and ``commands_open`` (not yet final, to them)."""
    endpoints = [e for e in server.endpoints.endpoints.values() if scope.contains(e.zone_id)]
    ids = {e.id for e in endpoints}
    return {"endpoints": len(endpoints),
            "online": sum(1 for e in endpoints if server.fleet.is_online(e.id)),
            "commands_open": sum(1 for c in server.fleet.open_commands()
                                 if c.endpoint_id in ids)}


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; scrape it with the bearer token. The station's metrics (every
    zone, every endpoint): a scope of the whole tree only (403 otherwise, as a scope
    refusal)."""
    scoped_all(request, Message(N_("the station's metrics")))
    if not prepared():  # the first scrape loads prometheus-client: beside the loop
        await asyncio.to_thread(prepare)
    return web.Response(body=render(server_of(request)), content_type="text/plain",
                        headers={"X-Content-Type-Options": "nosniff"})


@routes.get("/api/v1/alarms")
async def list_alarms(request: web.Request) -> web.Response:
    """``GET alarms``: re-evaluate the alarm rules now, then list the active alarms of the
    caller's scope, newest raised first (as the status has them): those of its zones and
    endpoints (the station's, to a whole tree)."""
    s = server_of(request)
    await s.check_alarms()
    language = language_of(request)
    newest = sorted(s.alarms.active(), key=lambda a: a.raised_at or 0.0, reverse=True)
    views = await described(newest, lambda a: a.describe(language),
                            keep=lambda a: visible_alarm(request, {"subject": a.subject}))
    # a district's thousands offline: their JSON is written beside the loop
    body = await asyncio.to_thread(dumps, {"alarms": views})
    return web.Response(text=body, content_type="application/json", charset="utf-8")


def visible_alarm(request: web.Request, view: dict[str, Any]) -> bool:
    """Whether an alarm is the caller's: its subject (an endpoint, or a zone) lies in their
    scope; an alarm of the whole station (the disk, the loop) is a whole tree's."""
    return alarm_in_scope(server_of(request), scope_of(request), view)


def alarm_in_scope(server: LoaServer, scope: Scope, view: dict[str, Any]) -> bool:
    """``visible_alarm`` for a scope rather than a request."""
    zone = alarm_zone(server, str(view.get("subject")))
    return scope.covers_all() if zone is None else scope.contains(zone)


def alarm_zone(server: LoaServer, subject: str) -> str | None:
    """Where an alarm's subject lies now: an endpoint's zone, a zone itself; None for what
    is the whole station's (the disk, the loop)."""
    ep = server.endpoints.endpoints.get(subject)
    if ep is not None:
        return ep.zone_id
    return subject if subject in server.zones else None


def _unix(request: web.Request, name: str) -> float | None:
    """A time of the query as unix seconds, None when it names none: unix seconds, or ISO
    8601 (station time without an offset, as ``GET schedules/occurrences`` takes it; a date
    alone is its midnight). ApiError 400 for another value, showing the forms."""
    value = request.query.get(name, "").strip()
    if not value:
        return None
    try:
        unix = float(value)
    except ValueError:
        unix = math.nan
    if math.isfinite(unix):
        return unix
    try:
        return local(value).timestamp()  # station time, as the schedule reads it
    except (ValueError, OverflowError):
        raise ApiError(400, N_("{name}={value!r} is not a time: give Unix seconds or ISO "
                               "8601, such as 2026-12-01T06:00 (station time) or "
                               "2026-12-01T06:00+07:00"), name=name, value=value) from None


def _whole(request: web.Request, name: str, low: int, high: int) -> int | None:
    """A whole number of the query from ``low`` to ``high``, None when it names none;
    ApiError 400 for another value."""
    value = request.query.get(name, "").strip()
    if not value:
        return None
    if not value.isdecimal() or not low <= int(value) <= high:
        raise ApiError(400, N_("{name} must be a whole number from {low} to {high}"),
                       name=name, low=low, high=high)
    return int(value)


def log_query(request: web.Request) -> LogQuery:
    """The filters and page of a log request (``GET log``, ``GET audit``, ``GET
    alarms/history``), within the caller's scope: ``since`` and ``until`` (unix seconds, or
    ISO 8601: station time without an offset),
    ``zone`` (it and the zones below it; 404 if unknown, 403 outside the scope; without
    it, the whole scope), ``q`` (text held, in any case; at most ``MAX_LOG_TEXT``
    characters), ``limit`` (1 to ``MAX_LOG_LIMIT``, ``LOG_LIMIT`` without it), and
    ``before`` or ``after`` (an entry id: the page from there). ApiError 400 for a bad
    value."""
    s = server_of(request)
    text = request.query.get("q", "").strip()
    if len(text) > MAX_LOG_TEXT:
        raise ApiError(400, N_("{name} is over {limit} characters"), name="q",
                       limit=MAX_LOG_TEXT)
    before = _whole(request, "before", 0, MAX_ID)
    after = _whole(request, "after", 0, MAX_ID)
    if before is not None and after is not None:
        raise ApiError(400, N_("ask for the entries before an id or after one, not both"))
    zone = request.query.get("zone", "").strip()
    if zone:
        s.zones.get(zone)  # ZoneError (404) if unknown
        scoped(request, zone)
        zones: list[str] | None = [z.id for z in s.zones.subtree(zone)]
    else:
        zones = scope_of(request).zone_ids()
    limit = _whole(request, "limit", 1, MAX_LOG_LIMIT)
    return LogQuery(since=_unix(request, "since"), until=_unix(request, "until"), zones=zones,
                    text=text, limit=LOG_LIMIT if limit is None else limit, before=before,
                    after=after)


def _in_view(request: web.Request, query: LogQuery, zone: str) -> bool:
    """Whether a zone's entry (an alert's group counting as its home zone) is among those
    the query asks for: the query's zone and below, else the caller's scope."""
    home = home_zone_id(zone)
    return scope_of(request).contains(zone) and (query.zones is None or home in query.zones)


@routes.get("/api/v1/log")
async def broadcast_log(request: web.Request) -> web.Response:
    """The broadcast log (nhật ký phát) of the caller's scope, filtered and paged as
    ``log_query`` reads the query: ``{"entries": [...], "next": id | null, "on_air":
    [...]}``. ``entries``: the ended segments (``id``, zone, programme, kind, priority,
    label, started_at, ended_at, duration_s, end_reason) that overlap [since, until] and
    whose programme, label, kind or end reason holds ``q``; newest first, in the order
    they ended (``after``: oldest first). ``next``: the id to ask the following page
    from (as ``before``, or ``after`` for a page asked ``after``), null at the end.
    ``on_air``: the segments on air now that match (zone, programme, kind, priority,
    started_at), on the first page only (without ``before`` or ``after``). 400 for a bad
    value, 403 for a zone outside the scope, 404 for an unknown zone."""
    s = server_of(request)
    query = log_query(request)
    page = await s.store.broadcast_page_async(query)
    on_air: list[dict[str, Any]] = []
    if query.before is None and query.after is None:
        needle = fold(query.text)
        on_air = [e for e in s.broadcast_log.on_air()
                  if _in_view(request, query, e["zone"])
                  and (query.until is None or e["started_at"] <= query.until)
                  and contains(needle, e["programme"], e["kind"])]
    return json_response({"entries": page.entries, "next": page.next, "on_air": on_air})


@routes.get("/api/v1/audit")
async def audit_log(request: web.Request) -> web.Response:
    """``GET audit`` (ADMIN): the audit log of the caller's scope (the entries made in its
    zones, or that touched one of them: an alert on two communes is in each commune's log;
    with a scope of the whole tree, every entry, those of no zone too), filtered and paged
    as ``log_query`` reads the query (``zone``: made in it and below, or touching one of
    those), and ``subject`` (that subject's entries only): ``{"audit": [...], "next": id |
    null}``. Each entry: id, at, actor, action, subject, zone (the smallest zone holding
    every zone it touched), zones (each zone it touched; [] for none, and for entries
    written before they were kept), address, detail; those made from ``since`` to
    ``until`` whose actor, action, subject or detail (its JSON text) holds ``q``; newest
    first (``after``: oldest first). ``next``: the id to ask the following page from (as
    ``before``, or ``after`` for a page asked ``after``), null at the end. 400 for a bad
    value, 403 for a zone outside the scope, 404 for an unknown zone."""
    require(request, Right.ADMIN)
    query = replace(log_query(request), subject=request.query.get("subject") or None)
    page = await server_of(request).store.audit_page_async(query)
    language = language_of(request)
    for entry in page.entries:  # an alarm's detail, in the caller's language
        detail = entry.get("detail")
        if str(entry.get("action", "")).startswith("alarm.") and isinstance(detail, dict) \
                and isinstance(detail.get("detail"), str):
            entry["detail"] = {**detail, "detail": say_detail(detail["detail"], language)}
    return json_response({"audit": page.entries, "next": page.next})


@routes.get("/api/v1/alarms/history")
async def alarm_history(request: web.Request) -> web.Response:
    """``GET alarms/history``: when each alarm of the caller's scope was raised and cleared
    (``Store.alarm_history_async``, from the audit log), those overlapping [since, until],
    of ``zone`` and below if named, whose subject or detail holds ``q``, newest raise first
    (``after``: oldest first), paged as ``log_query`` reads the query: ``{"alarms":
    [{"id", "kind", "subject", "zone", "detail", "raised_at", "cleared_at", "ended",
    "active"}], "next": id | null}``. ``cleared_at``: null while it is raised (``active``
    true), or when the server stopped before it cleared (``ended`` "raised again" if it
    was raised anew since, else null). An alarm's zone is its subject's when it was raised
    (an endpoint's, a zone itself); those of no zone (the broker, the disk, the server) are
    a whole tree's. 400 for a bad value, 403 for a zone outside the scope, 404 for an
    unknown zone."""
    s = server_of(request)
    page = await s.store.alarm_history_async(log_query(request))
    raised = {(a.kind.value, a.subject): a for a in s.alarms.active()}
    for entry in page.entries:
        entry["active"] = entry["ended"] is None and (entry["kind"], entry["subject"]) in raised
    return json_response({"alarms": said_alarms(page.entries, language_of(request)),
                          "next": page.next})
