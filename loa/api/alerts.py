"""Emergency alerts (bản tin khẩn cấp, the ``alert`` right): trigger (JSON, or multipart with
the message as audio), list, show with reach, cancel; and CAP 1.2 messages. The alert manager
audits what it does.

An alert official alerts their own subtree only: every zone an alert targets, and the zone of
every endpoint it targets (a CAP message's area as resolved to them), lies in the caller's
scope (``"all"``: a scope of the whole tree); so does cancelling one. An alert is listed and
shown to those whose scope it plays in (on a zone of it, or above it)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from loa.api.errors import error_status, language_of
from loa.api.resource import (
    ApiError,
    actor,
    json_response,
    read_body,
    read_json,
    require,
    scope_of,
    scoped,
    scoped_all,
    server_of,
)
from loa.api.uploads import read_multipart
from loa.codecs.decode import DecodeError, FrameDecoder
from loa.control.alerts.model import Alert, parse_spec, shown_content
from loa.control.auth import Right, Scope
from loa.control.media import NOT_AUDIO
from loa.core.i18n import N_, Explained, Message
from loa.protocol.cap import MAX_CAP_BYTES, CapError, parse_cap

if TYPE_CHECKING:
    from loa.app import LoaServer

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


@routes.post("/api/v1/alerts")
@error_status({ValueError: 400})  # a bad spec, zone, file or upload: the request is wrong
async def trigger_alert(request: web.Request) -> web.Response:
    """JSON, or multipart with a ``spec`` part (JSON) and an ``audio`` part (the message);
    201 with the alert and the warnings (``errors``) of its preparation so far. An audio part
    the disk has no room for does not refuse the alert: it plays its attention tone alone,
    and the warnings say why."""
    require(request, Right.ALERT)
    s = server_of(request)
    received_ns = s.clock.now_ns()
    uploaded: Path | None = None
    filename = ""
    warnings: list[str] = []
    if request.content_type.startswith("multipart/"):
        body, uploaded, filename, warnings = await _read_alert_upload(request)
        body.pop("content", None)  # the message is the audio part: without it, the tone
    else:
        body = await read_json(request)
    if uploaded is not None:  # shown by the name it was uploaded under, never its path
        body["content"] = {"kind": "file", "path": str(uploaded), "name": filename}
    spec = parse_spec(body, default_gap_s=s.config.alert_gap_s, now=s.wall.timestamp())
    if spec.all_zones:
        scoped_all(request, Message(N_("an alert to every zone")))
    scoped_targets(request, spec.zones, spec.endpoints)
    alert = await s.alerts.trigger(spec, actor(request), received_ns, warnings=warnings)
    return json_response({"alert": alert.describe(full=True),
                              "errors": alert.warnings}, status=201)


def scoped_targets(request: web.Request, zones: list[str], endpoints: list[str]) -> None:
    """``scoped`` for an alert's zones and its endpoints' zones (an unknown endpoint is left
    to the alert manager, which refuses it)."""
    registry = server_of(request).endpoints.endpoints
    scoped(request, *zones, *(registry[e].zone_id for e in endpoints if e in registry))


def alert_zones(request: web.Request, view: dict[str, Any]) -> list[str]:
    """The zones an alert plays on, from its description or stored record: its zones (the
    roots for ``all``) and its single endpoints' zones."""
    return zones_of_alert(server_of(request), view)


def zones_of_alert(server: LoaServer, view: dict[str, Any]) -> list[str]:
    """``alert_zones`` for a server rather than a request."""
    if view.get("all"):
        return [z.id for z in server.zones.roots()]
    registry = server.endpoints.endpoints
    return [*view.get("zones", []),
            *(registry[e].zone_id for e in view.get("endpoints", []) if e in registry)]


def visible_alert(request: web.Request, view: dict[str, Any]) -> bool:
    """Whether an alert plays in the caller's scope (on a zone of it or above it)."""
    return alert_in_scope(server_of(request), scope_of(request), view)


def alert_in_scope(server: LoaServer, scope: Scope, view: dict[str, Any]) -> bool:
    """``visible_alert`` for a scope rather than a request (the events stream's)."""
    return any(scope.overlaps(z) for z in zones_of_alert(server, view))


async def _read_alert_upload(request: web.Request
                             ) -> tuple[dict[str, Any], Path | None, str, list[str]]:
    """The spec, the uploaded audio saved content-addressed once it decodes (None when the
    disk had no room for it), the name it was uploaded under, and the warnings (why it was
    not kept). ApiError 400 when it is not audio Loa can read (the message names the file as
    uploaded; why the decoder refused it, with the server's paths, goes to the log)."""
    s = server_of(request)
    folder = s.media_dir / "alerts"
    fields, files = await read_multipart(request, s.config.max_upload_mb << 20, folder,
                                         without_room=True)
    upload = files.get("audio")
    try:
        try:
            spec = json.loads(fields.get("spec", "{}"))
        except ValueError:
            raise ValueError(N_("the spec part is not valid JSON")) from None
        if not isinstance(spec, dict):
            raise ValueError(N_("the spec part must be a JSON object"))
        if upload is None or upload.size == 0:
            raise ValueError(N_('multipart needs an "audio" part with the message'))
        if upload.refused is not None:
            for f in files.values():
                await asyncio.to_thread(f.discard)
            return spec, None, upload.filename, \
                [f"{upload.refused}; only the attention tone plays"]
        path = folder / upload.sha256
        try:  # judged by decoding, not by its name or type
            await asyncio.to_thread(_probe_and_keep, upload.path, path)
        except DecodeError as exc:
            log.info("alert upload %r refused: %s", upload.filename, exc)
            raise ApiError(400, NOT_AUDIO, filename=upload.filename) from None
    except BaseException:
        for f in files.values():
            await asyncio.to_thread(f.discard)
        raise
    return spec, path, upload.filename, []


def _probe_and_keep(tmp: Path, path: Path) -> None:
    """Open ``tmp`` as audio, then move it to ``path`` (blocking). Raises ``DecodeError``;
    ``tmp`` is then left for the caller to discard."""
    FrameDecoder(str(tmp)).close()
    tmp.replace(path)


@routes.get("/api/v1/alerts")
async def list_alerts(request: web.Request) -> web.Response:
    """``GET alerts``: the alerts held in memory since start (older ones are in the store)
    that play in the caller's scope."""
    views = [a.describe() for a in server_of(request).alerts.alerts.values()]
    return json_response({"alerts": [v for v in views if visible_alert(request, v)]})


@routes.get("/api/v1/alerts/{id}")
async def get_alert(request: web.Request) -> web.Response:
    """One alert with its reach; ``?endpoints=1`` adds, per endpoint, the ms from the
    API call to the first tone packet and to the message's first packet. 404 if unknown."""
    found = await server_of(request).alerts.get(request.match_info["id"])
    if found is None:
        raise ApiError(404, N_("no alert {id!r}"), id=request.match_info["id"])
    view = found if isinstance(found, dict) else found.describe(full=True)
    if not visible_alert(request, view):  # refused, naming a zone outside the scope
        scoped(request, *alert_zones(request, view))
        # it plays on no zone now
        scoped_all(request, Message(N_("alert {id!r}"), {"id": request.match_info["id"]}))
    if isinstance(found, dict):  # a stored record: shown as a live alert is
        return json_response({"alert": {**found, "content": shown_content(
            found.get("content") or {})}})
    out = view
    if request.query.get("endpoints"):  # ?endpoints=1: every endpoint's reach
        out["reach_from_call_ms"] = found.reach_from_call_ms()
    return json_response({"alert": out})


@routes.delete("/api/v1/alerts/{id}")
async def cancel_alert(request: web.Request) -> web.Response:
    """``DELETE alerts/{id}`` (ALERT): cancel it and return its full description; 404 if
    unknown."""
    require(request, Right.ALERT)
    held: Alert | None = server_of(request).alerts.alerts.get(request.match_info["id"])
    if held is not None:
        if held.spec.all_zones:
            scoped_all(request, Message(N_("an alert to every zone")))
        scoped_targets(request, held.spec.zones, held.spec.endpoints)
    try:
        alert = server_of(request).alerts.cancel(request.match_info["id"], actor(request))
    except KeyError:
        raise ApiError(404, N_("no alert {id!r}"), id=request.match_info["id"]) from None
    return json_response({"alert": alert.describe(full=True)})


@routes.post("/api/v1/cap")
async def cap(request: web.Request) -> web.Response:
    """A CAP 1.2 XML document as the request body (ALERT); times without a UTC offset are
    read in the station's time zone. The status is the alert manager's (201 on air, 200
    duplicate or cancel, 202 scheduled for its <effective> time or logged, 422 valid CAP
    that Loa cannot place, with what an Update superseded all the same); 413 over the size
    limit, 400 for a document that is not valid CAP (a code outside its lists named with the
    allowed ones)."""
    require(request, Right.ALERT)
    s = server_of(request)
    received_ns = s.clock.now_ns()
    if request.content_length and request.content_length > MAX_CAP_BYTES:
        raise ApiError(413, N_("CAP messages are limited to {limit} bytes"), limit=MAX_CAP_BYTES)
    data = await read_body(request, MAX_CAP_BYTES)
    try:
        msg = await asyncio.to_thread(parse_cap, data, s.wall.tz)  # XML, base64: beside the loop
        status, body = await s.cap.handle_cap(
            msg, actor(request), test_zone=s.config.cap_test_zone,
            upload_dir=s.media_dir / "cap", received_ns=received_ns,
            guard=lambda zones, endpoints: scoped_targets(request, zones, endpoints),
            language=language_of(request))
    except CapError:
        raise  # the error table: 400, or 413 over a limit
    except ValueError as exc:  # no <info>, no zone in its area, a zone it cannot reach
        raise ApiError(422, exc.message if isinstance(exc, Explained) else str(exc)) from None
    return json_response(body, status=status)
