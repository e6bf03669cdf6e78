"""What the station is doing and did: status, Prometheus metrics, alarms, the broadcast log
(nhật ký phát) and the audit log. Reads only."""

from __future__ import annotations

from aiohttp import web

from loa.api.errors import ApiError
from loa.api.resource import json_response, require, server_of
from loa.control.auth import Right
from loa.monitoring.metrics import render

routes = web.RouteTableDef()


@routes.get("/api/v1/status")
async def status(request: web.Request) -> web.Response:
    """``GET status``: ``LoaServer.status``."""
    return json_response(server_of(request).status())


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format; scrape it with the bearer token."""
    return web.Response(body=render(server_of(request)), content_type="text/plain",
                        headers={"X-Content-Type-Options": "nosniff"})


@routes.get("/api/v1/alarms")
async def list_alarms(request: web.Request) -> web.Response:
    """``GET alarms``: re-evaluate the alarm rules now, then list the active alarms."""
    s = server_of(request)
    s.check_alarms()
    return json_response({"alarms": [a.describe() for a in s.alarms.active()]})


@routes.get("/api/v1/log")
async def broadcast_log(request: web.Request) -> web.Response:
    """The broadcast log (nhật ký phát): ``?zone=…&since=<unix time>``; 400 for a bad
    ``since``."""
    s = server_of(request)
    try:
        since = float(request.query.get("since", "0"))
    except ValueError:
        raise ApiError(400, "since is a unix time") from None
    zone = request.query.get("zone")
    return json_response({
        "entries": await s.store.broadcast_log_async(zone, since),
        "on_air": [e for e in s.broadcast_log.on_air() if not zone or e["zone"] == zone],
    })


@routes.get("/api/v1/audit")
async def audit_log(request: web.Request) -> web.Response:
    """``GET audit`` (ADMIN): the newest 200 audit entries, optionally for one ``subject``."""
    require(request, Right.ADMIN)
    return json_response(
        {"audit": await server_of(request).store.audit_log_async(request.query.get("subject"))})
