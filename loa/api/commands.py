"""Fleet commands (over MQTT, acknowledged): to every endpoint of a zone and below, or to one
endpoint; and the commands' status. Each within the caller's scope: the zone, the endpoint's
zone (and a move's new zone); the lists keep the commands of the endpoints in scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from loa.api.audit import Changed, audited
from loa.api.errors import error_status
from loa.api.resource import (
    ApiError,
    actor,
    json_response,
    read_json,
    require,
    scope_of,
    scoped,
    scoped_all,
    scoped_endpoint,
    server_of,
)
from loa.control.auth import Right, Scope
from loa.control.endpoints import Endpoint
from loa.core.i18n import N_, Message
from loa.core.percentiles import percentiles
from loa.core.zones import ZoneError

routes = web.RouteTableDef()


@routes.post("/api/v1/zones/{zone}/commands")
@audited("command")
async def zone_command(request: web.Request) -> Changed:
    """``{"op": "volume", "volume_pct": 80}`` (also mute, unmute, power, reboot, play,
    stop) to every endpoint of the zone and below (OPERATE); 202 with the commands to
    follow, 404 for an unknown zone, 400 for a bad command."""
    zone_id = request.match_info["zone"]
    require(request, Right.OPERATE)
    scoped(request, zone_id)
    return await _command(request, zone_id, server_of(request).fleet.zone_command)


@routes.post("/api/v1/endpoints/{id}/commands")
@audited("command")
@error_status({ZoneError: 400})  # a move's zone is named in the body
async def endpoint_command(request: web.Request) -> Changed:
    """The same for one endpoint, and ``{"op": "move", "zone": …}``; 404 for an unknown
    endpoint, 400 for a bad command or an unknown zone to move to."""
    eid = request.match_info["id"]
    require(request, Right.OPERATE)
    scoped_endpoint(request, eid)
    return await _command(request, eid, server_of(request).fleet.endpoint_command)


async def _command(request: web.Request, subject: str,
                   send: Callable[[str, dict[str, Any], str], list[Any]]) -> Changed:
    body = await read_json(request)
    if body.get("op") == "move" and isinstance(body.get("zone"), str):
        scoped(request, body["zone"])  # and to a zone of the caller's
    cmds = send(subject, body, actor(request))
    batch = cmds[0].batch if cmds else None
    return Changed(
        json_response({"batch": batch, "commands": [c.describe() for c in cmds]},
                          status=202),
        subject, {**body, "batch": batch, "endpoints": len(cmds)})


@routes.get("/api/v1/commands")
async def list_commands(request: web.Request) -> web.Response:
    """``?batch=…`` or ``?endpoint=…``: a summary by status and the acknowledgement times,
    and the commands themselves (the last 5,000) unless ``?summary=1``."""
    batch = request.query.get("batch")
    eid = request.query.get("endpoint")
    s = server_of(request)
    scope = scope_of(request)
    cmds = [c for c in s.fleet.commands.values()
            if (not batch or c.batch == batch) and (not eid or c.endpoint_id == eid)
            and _in_scope(s.endpoints.endpoints.get(c.endpoint_id), scope)]
    summary: dict[str, int] = {}
    for c in cmds:
        summary[c.status.value] = summary.get(c.status.value, 0) + 1
    acks = [c.ack_ms for c in cmds if c.ack_ms is not None]
    return json_response({
        "summary": summary,
        "ack_ms": percentiles(acks, (50, 99)) if acks else None,
        "commands": [] if request.query.get("summary") == "1"
        else [c.describe() for c in cmds[-5000:]]})


@routes.get("/api/v1/commands/{id}")
async def get_command(request: web.Request) -> web.Response:
    """``GET commands/{id}``: a fleet command and its status; 404 if unknown (or forgotten)."""
    s = server_of(request)
    cmd = s.fleet.commands.get(request.match_info["id"])
    if cmd is None:
        raise ApiError(404, N_("no command {command!r}"), command=request.match_info["id"])
    ep = s.endpoints.endpoints.get(cmd.endpoint_id)
    if ep is None:
        scoped_all(request, Message(N_("the command to the forgotten endpoint {endpoint!r}"),
                                    {"endpoint": cmd.endpoint_id}))
    else:
        scoped(request, ep.zone_id)
    return json_response({"command": cmd.describe()})


def _in_scope(ep: Endpoint | None, scope: Scope) -> bool:
    """A command's endpoint lies in the scope (a forgotten one: only in the whole tree's)."""
    return scope.contains(ep.zone_id) if ep is not None else scope.covers_all()
