"""Fleet commands (over MQTT, acknowledged): to every endpoint of a zone and below, or to one
endpoint; and the commands' status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from loa.api.audit import Changed, audited
from loa.api.errors import ApiError, error_status
from loa.api.resource import actor, json_response, read_json, require, server_of
from loa.control.auth import Right
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
    return await _command(request, zone_id, server_of(request).fleet.zone_command)


@routes.post("/api/v1/endpoints/{id}/commands")
@audited("command")
@error_status({ZoneError: 400})  # a move's zone is named in the body
async def endpoint_command(request: web.Request) -> Changed:
    """The same for one endpoint, and ``{"op": "move", "zone": …}``; 404 for an unknown
    endpoint, 400 for a bad command or an unknown zone to move to."""
    eid = request.match_info["id"]
    return await _command(request, eid, server_of(request).fleet.endpoint_command)


async def _command(request: web.Request, subject: str,
                   send: Callable[[str, dict[str, Any], str], list[Any]]) -> Changed:
    require(request, Right.OPERATE)
    body = await read_json(request)
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
    cmds = [c for c in server_of(request).fleet.commands.values()
            if (not batch or c.batch == batch) and (not eid or c.endpoint_id == eid)]
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
    cmd = server_of(request).fleet.commands.get(request.match_info["id"])
    if cmd is None:
        raise ApiError(404, f"no command {request.match_info['id']!r}")
    return json_response({"command": cmd.describe()})
