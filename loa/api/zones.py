"""Zones and what they play: the zone tree, live takeovers, requests (a source on a zone at a
priority) and a zone's alert volume."""

from __future__ import annotations

from aiohttp import web

from loa.api.audit import Changed, audited
from loa.api.resource import (
    PRINCIPAL_KEY,
    ApiError,
    json_response,
    read_json,
    require,
    scope_of,
    scoped,
    scoped_content,
    server_of,
)
from loa.control.auth import Right, right_name
from loa.core.content import REQUEST_KINDS, parse_content
from loa.core.i18n import N_
from loa.core.priority import Priority, parse_priority

routes = web.RouteTableDef()


def below_root(request: web.Request) -> bool:
    """Whether the caller's scope lies below a root of the zone tree (a commune's, a
    village's): Circular 39 leaves the district's levels to the district."""
    scope = request[PRINCIPAL_KEY].scope
    zones = server_of(request).zones
    return scope is not None and scope in zones and zones.get(scope).parent_id is not None


def allowed_priority(request: web.Request, priority: int) -> int:
    """``priority``, unless it is at or above the emergency level and the caller lacks the
    ``alert`` right (403): an operator's request must not hold the air against an alert;
    or, for a caller scoped below a root (a commune), from district live (80) up to the
    emergency level (403): a commune's request must not hold the air against the district's
    live broadcast (its own live is 70)."""
    if priority >= Priority.EMERGENCY:
        if not request[PRINCIPAL_KEY].may(Right.ALERT):
            raise ApiError(403, N_("priority {priority} is reserved to emergency alerts (the "
                                   "{right} right); use at most {highest}"),
                           priority=priority, right=right_name(Right.ALERT.value),
                           highest=int(Priority.EMERGENCY) - 1)
    elif priority >= Priority.DISTRICT_LIVE and below_root(request):
        raise ApiError(403, N_("priority {priority} is above what a commune may use: district "
                               "live is {district}; use at most {highest}"),
                       priority=priority, district=int(Priority.DISTRICT_LIVE),
                       highest=int(Priority.DISTRICT_LIVE) - 1)
    return priority


@routes.get("/api/v1/zones")
async def zones(request: web.Request) -> web.Response:
    """``GET zones``: every zone of the caller's scope with what is on air and its listeners
    by format."""
    s = server_of(request)
    scope = scope_of(request)
    return json_response({"zones": [_zone_view(request, zone.id) for zone in s.zones
                                    if scope.contains(zone.id)]})


@routes.get("/api/v1/zones/{zone}")
async def zone(request: web.Request) -> web.Response:
    """``GET zones/{zone}``: one zone as ``GET zones`` lists it; 404 for an unknown zone, 403
    for one outside the caller's scope (a client tells "no such zone" from "not yours")."""
    zone_id = request.match_info["zone"]
    if zone_id not in server_of(request).zones:
        raise ApiError(404, N_("unknown zone {zone!r}"), zone=zone_id)
    scoped(request, zone_id)
    return json_response(_zone_view(request, zone_id))


def _zone_view(request: web.Request, zone_id: str) -> dict[str, object]:
    """The zone, what is on air, its listeners by format, and ``waiting``: the requests above
    what is on air that cannot play now (a live mount whose source is not connected, or
    dropped), each as ``Request.describe`` gives it. Such a request plays again as soon as
    its source comes back, until it is released: shown so that nobody takes the zone for
    given back."""
    s = server_of(request)
    d = s.zones.get(zone_id).describe()
    ch = s.engine.channels[zone_id]
    d["on_air"] = ch.describe()["on_air"]
    d["listeners"] = ch.listeners()
    d["waiting"] = [r.describe() for r in ch.requests
                    if r.priority > ch.on_air.priority and not r.programme.available]
    return d


@routes.post("/api/v1/zones/{zone}/live")
@audited("live.take")
async def take_live(request: web.Request) -> Changed:
    """``POST zones/{zone}/live`` (OPERATE): put a mount (default "studio") on the zone at
    ``priority``: by default district live (80) for a caller whose scope is a root zone (or
    every zone), commune live (70) for one scoped below it (DESIGN.md's table: a district's
    live preempts a commune's; such a caller may use at most 79, ``allowed_priority``). 201
    when a new request is made, 200 when it already existed; 404 for an unknown zone, 400
    for a bad mount or priority. Audited (``live.take``, the zone as its subject)."""
    require(request, Right.OPERATE)
    body = await read_json(request)
    zone_id = request.match_info["zone"]
    scoped(request, zone_id)
    mount_name = body.get("mount", "studio")
    s = server_of(request)
    default = Priority.COMMUNE_LIVE if below_root(request) else Priority.DISTRICT_LIVE
    priority = allowed_priority(request, parse_priority(body.get("priority", int(default))))
    req, created = s.take_live(zone_id, str(mount_name), priority,
                               by=request[PRINCIPAL_KEY].name)
    return Changed(json_response({"request": req.describe()}, status=201 if created else 200),
                   zone_id, {"mount": str(mount_name), "priority": priority,
                             "request": req.id, "created": created})


@routes.delete("/api/v1/zones/{zone}/live")
@audited("live.release")
async def release_live(request: web.Request) -> Changed:
    """``DELETE zones/{zone}/live`` (OPERATE): release the zone's live requests (only
    ``mount``'s, if given); 404 for an unknown zone. Audited (``live.release``)."""
    require(request, Right.OPERATE)
    body = await read_json(request)
    zone_id = request.match_info["zone"]
    s = server_of(request)
    if zone_id not in s.zones:
        raise ApiError(404, N_("unknown zone {zone!r}"), zone=zone_id)
    scoped(request, zone_id)
    released = s.release_live(zone_id, body.get("mount"))
    return Changed(json_response({"released": released}), zone_id,
                   {"mount": body.get("mount"), "released": released})


@routes.post("/api/v1/zones/{zone}/requests")
@audited("request.add")
async def add_request(request: web.Request) -> Changed:
    """``{"source": content (``loa.core.content``, ``REQUEST_KINDS``), "priority": 50}``: 201
    with the request; 404 for an unknown zone, 400 for content that cannot play or a bad
    priority, 403 for a priority above the caller's (``allowed_priority``). Audited
    (``request.add``, the zone as its subject)."""
    require(request, Right.OPERATE)
    body = await read_json(request)
    zone_id = request.match_info["zone"]
    scoped(request, zone_id)
    content = parse_content(body.get("source"), REQUEST_KINDS)
    scoped_content(request, content)
    priority = allowed_priority(request, parse_priority(body.get("priority",
                                                                 int(Priority.SCHEDULED))))
    req = await server_of(request).add_request(zone_id, content, priority,
                                               by=request[PRINCIPAL_KEY].name)
    return Changed(json_response({"request": req.describe()}, status=201), zone_id,
                   {"request": req.id, "source": content.to_json(), "priority": priority,
                    "label": req.label})


@routes.get("/api/v1/requests")
async def list_requests(request: web.Request) -> web.Response:
    """``GET requests``: every request on the engine that plays in the caller's scope (on a
    zone of it, or above it), with its programme."""
    scope = scope_of(request)
    return json_response(
        {"requests": [r.describe() for r in server_of(request).engine.requests.values()
                      if scope.overlaps(r.zone_id)]}
    )


@routes.delete("/api/v1/requests/{id}")
@audited("request.release")
async def delete_request(request: web.Request) -> Changed:
    """``DELETE requests/{id}`` (OPERATE): release a request; 400 for a non-integer id,
    404 if unknown. Audited (``request.release``, the request's zone as its subject)."""
    require(request, Right.OPERATE)
    try:
        rid = int(request.match_info["id"])
    except ValueError:
        raise ApiError(400, N_("request ids are integers")) from None
    held = server_of(request).engine.requests.get(rid)
    if held is not None:
        scoped(request, held.zone_id)
    req = await server_of(request).release_request(rid)
    if req is None:
        raise ApiError(404, N_("no request {id}"), id=rid)
    return Changed(json_response({"released": req.describe()}), req.zone_id,
                   {"request": req.id, "priority": req.priority, "label": req.label})


@routes.patch("/api/v1/zones/{zone}")
@audited("zone.update")
async def update_zone(request: web.Request) -> Changed:
    """``{"alert_volume_pct": 100}``: the volume a zone's endpoints rise to in an alert, for the
    zone and the zones below. (Its everyday volume is a command: POST …/commands
    {"op": "volume"}.) 404 for an unknown zone, 400 for a bad volume."""
    require(request, Right.OPERATE)
    body = await read_json(request)
    s = server_of(request)
    zone = s.zones.get(request.match_info["zone"])
    scoped(request, zone.id)
    pct = body.get("alert_volume_pct")
    if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
        raise ApiError(400, N_("alert_volume_pct must be an integer from 0 to 100"))
    for z in s.zones.subtree(zone.id):
        z.alert_volume_pct = pct
    s.save_zone_settings()
    return Changed(json_response({"zone": zone.describe()}), zone.id, body)
