"""What the station is doing and did: status, Prometheus metrics, alarms, the broadcast log
(nhật ký phát) and the audit log. Reads only. The alarms and the logs are those of the
caller's scope: its zones and their endpoints (what concerns the whole station, to a scope of
the whole tree); so are the zones, alerts and alarms of the status. The status's counters and
the metrics are the station's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from loa.api.alerts import alert_in_scope
from loa.api.resource import ApiError, json_response, require, scope_of, scoped, server_of
from loa.control.auth import Right, Scope
from loa.core.i18n import N_
from loa.monitoring.metrics import render

if TYPE_CHECKING:
    from loa.app import LoaServer

routes = web.RouteTableDef()


@routes.get("/api/v1/status")
async def status(request: web.Request) -> web.Response:
    """``GET status``: ``LoaServer.status``, its zones, alerts and alarms those of the
    caller's scope."""
    s = server_of(request)
    return json_response(scoped_status(s, scope_of(request), s.status()))


def scoped_status(server: LoaServer, scope: Scope, full: dict[str, Any]) -> dict[str, Any]:
    """The status a caller of ``scope`` sees, from the station's (``full``:
    ``LoaServer.status()``, left as it is): its zones, and the alerts and alarms of its
    scope (``visible_alert``, ``visible_alarm``); the rest as it is. It depends on the scope
    alone, so callers of one scope may share it (the events stream does)."""
    out = dict(full)
    out["zones"] = [z for z in full["zones"] if scope.contains(z["zone"])]
    out["alerts"] = [a for a in full["alerts"] if alert_in_scope(server, scope, a)]
    out["alarms"] = [a for a in full["alarms"] if alarm_in_scope(server, scope, a)]
    return out


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; scrape it with the bearer token."""
    return web.Response(body=render(server_of(request)), content_type="text/plain",
                        headers={"X-Content-Type-Options": "nosniff"})


@routes.get("/api/v1/alarms")
async def list_alarms(request: web.Request) -> web.Response:
    """``GET alarms``: re-evaluate the alarm rules now, then list the active alarms of the
    caller's scope: those of its zones and endpoints (the station's, to a whole tree)."""
    s = server_of(request)
    s.check_alarms()
    views = [a.describe() for a in s.alarms.active()]
    return json_response({"alarms": [a for a in views if visible_alarm(request, a)]})


def visible_alarm(request: web.Request, view: dict[str, Any]) -> bool:
    """Whether an alarm is the caller's: its subject (an endpoint, or a zone) lies in their
    scope; an alarm of the whole station (the disk, the loop) is a whole tree's."""
    return alarm_in_scope(server_of(request), scope_of(request), view)


def alarm_in_scope(server: LoaServer, scope: Scope, view: dict[str, Any]) -> bool:
    """``visible_alarm`` for a scope rather than a request."""
    subject = str(view.get("subject"))
    registry = server.endpoints.endpoints
    zone = registry[subject].zone_id if subject in registry else (
        subject if subject in server.zones else None)
    return scope.covers_all() if zone is None else scope.contains(zone)


@routes.get("/api/v1/log")
async def broadcast_log(request: web.Request) -> web.Response:
    """The broadcast log (nhật ký phát): ``?zone=…&since=<unix time>``, the zones of the
    caller's scope; 400 for a bad ``since``, 403 for a zone outside the scope."""
    s = server_of(request)
    try:
        since = float(request.query.get("since", "0"))
    except ValueError:
        raise ApiError(400, N_("since is a unix time")) from None
    zone = request.query.get("zone")
    if zone:
        scoped(request, zone)
    scope = scope_of(request)
    return json_response({
        "entries": await s.store.broadcast_log_async(zone, since, zones=scope.zone_ids()),
        "on_air": [e for e in s.broadcast_log.on_air()
                   if (not zone or e["zone"] == zone) and scope.contains(e["zone"])],
    })


@routes.get("/api/v1/audit")
async def audit_log(request: web.Request) -> web.Response:
    """``GET audit`` (ADMIN): the newest 200 audit entries of the caller's scope (made in
    its zones; with a scope of the whole tree, every entry), optionally for one
    ``subject``."""
    require(request, Right.ADMIN)
    return json_response({"audit": await server_of(request).store.audit_log_async(
        request.query.get("subject"), zones=scope_of(request).zone_ids())})
