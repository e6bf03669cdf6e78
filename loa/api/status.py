"""What the station is doing and did: status, Prometheus metrics, alarms, the broadcast log
(nhật ký phát) and the audit log. Reads only. The alarms and the logs are those of the
caller's scope: its zones and their endpoints (what concerns the whole station, to a scope of
the whole tree); so are the zones, alerts and alarms of the status. The status's counters and
the metrics are the station's."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from loa.api.alerts import visible_alert
from loa.api.resource import ApiError, json_response, require, scope_of, scoped, server_of
from loa.control.auth import Right
from loa.monitoring.metrics import render

routes = web.RouteTableDef()


@routes.get("/api/v1/status")
async def status(request: web.Request) -> web.Response:
    """``GET status``: ``LoaServer.status``, its zones, alerts and alarms those of the
    caller's scope."""
    out = server_of(request).status()
    scope = scope_of(request)
    out["zones"] = [z for z in out["zones"] if scope.contains(z["zone"])]
    out["alerts"] = [a for a in out["alerts"] if visible_alert(request, a)]
    out["alarms"] = [a for a in out["alarms"] if visible_alarm(request, a)]
    return json_response(out)


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
    s = server_of(request)
    scope = scope_of(request)
    subject = str(view.get("subject"))
    registry = s.endpoints.endpoints
    zone = registry[subject].zone_id if subject in registry else (
        subject if subject in s.zones else None)
    return scope.covers_all() if zone is None else scope.contains(zone)


@routes.get("/api/v1/log")
async def broadcast_log(request: web.Request) -> web.Response:
    """The broadcast log (nhật ký phát): ``?zone=…&since=<unix time>``, the zones of the
    caller's scope; 400 for a bad ``since``, 403 for a zone outside the scope."""
    s = server_of(request)
    try:
        since = float(request.query.get("since", "0"))
    except ValueError:
        raise ApiError(400, "since is a unix time") from None
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
