"""The REST API, ``/api/v1``. Every call needs ``Authorization: Bearer <token>``."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from loa.codecs.decode import DecodeError, FrameDecoder
from loa.codecs.tts import TtsError
from loa.control.alerts import parse_spec
from loa.control.auth import Principal, Right
from loa.control.endpoints import CSV_FIELDS, EndpointError
from loa.control.media import MediaError
from loa.control.schedule.ical import export_ics, import_ics
from loa.control.schedule.recurrence import STATION_TZ, conflicts, item_from_json
from loa.core.percentiles import percentiles
from loa.core.priority import Priority, parse_priority
from loa.core.zones import ZoneError
from loa.monitoring.metrics import render
from loa.monitoring.reports import render_report, report_scope
from loa.protocol.cap import MAX_CAP_BYTES, CapError, parse_cap
from loa.protocol.credentials import mosquitto_acl, mosquitto_passwd_lines

if TYPE_CHECKING:
    from loa.app import LoaServer

log = logging.getLogger(__name__)

SERVER_KEY: web.AppKey[Any] = web.AppKey("loa_server", object)
PRINCIPAL_KEY = web.RequestKey("principal", Principal)
MAX_JSON_BYTES = 64 * 1024
MAX_ICS_BYTES = 1 << 20
MAX_CSV_BYTES = 8 << 20

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require ``Authorization: Bearer <token>`` on ``/api/`` and ``/metrics`` (401 with
    ``WWW-Authenticate`` otherwise) and put the caller's Principal on the request."""
    if not request.path.startswith(("/api/", "/metrics")):
        return await handler(request)
    server: LoaServer = request.app[SERVER_KEY]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    principal = server.tokens.authenticate(token.strip()) if scheme.lower() == "bearer" else None
    if principal is None:
        return web.json_response(
            {"error": "missing or invalid bearer token"}, status=401,
            headers={"WWW-Authenticate": 'Bearer realm="Loa"'},
        )
    request[PRINCIPAL_KEY] = principal
    return await handler(request)


@web.middleware
async def close_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No keep-alive: every request arrives on a fresh connection through the front door,
    which routes streams and sources before aiohttp ever sees them."""
    resp = await handler(request)
    if not isinstance(resp, web.WebSocketResponse):
        resp.force_close()
    return resp


def require(request: web.Request, right: Right) -> None:
    """Raise HTTPForbidden (403, JSON error) unless the caller holds ``right``."""
    principal = request[PRINCIPAL_KEY]
    if not principal.may(right):
        raise web.HTTPForbidden(text=json.dumps({"error": f"needs the {right.value} right"}),
                                content_type="application/json")


async def read_body(request: web.Request, limit_bytes: int) -> bytes:
    """The whole body, or ``limit_bytes + 1`` of it when it is longer (the caller refuses
    it). ``StreamReader.read(n)`` alone returns what has arrived so far, not the body."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit_bytes:
        chunk = await request.content.read(limit_bytes + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object (``{}`` when there is none). Raises 413 over 64 KiB by
    Content-Length, 400 when it is not JSON or not an object."""
    if request.content_length and request.content_length > MAX_JSON_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_JSON_BYTES,
                                            actual_size=request.content_length)
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text=json.dumps({"error": "body is not valid JSON"}),
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "body must be a JSON object"}),
                                 content_type="application/json")
    return body


class Api:
    """The ``/api/v1`` handlers over one LoaServer. Each handler checks its right with
    ``require`` (reads need only a valid token), answers JSON errors as ``{"error": ...}`` and
    audits what it changes."""

    def __init__(self, server: LoaServer) -> None:
        self.s = server

    def routes(self) -> list[web.RouteDef]:
        """Every ``/api/v1`` route with its handler, for the aiohttp application."""
        return [
            web.get("/api/v1/status", self.status),
            web.get("/api/v1/zones", self.zones),
            web.post("/api/v1/zones/{zone}/live", self.take_live),
            web.delete("/api/v1/zones/{zone}/live", self.release_live),
            web.post("/api/v1/zones/{zone}/requests", self.add_request),
            web.get("/api/v1/requests", self.list_requests),
            web.delete("/api/v1/requests/{id}", self.delete_request),
            web.get("/api/v1/endpoints", self.list_endpoints),
            web.post("/api/v1/endpoints", self.add_endpoint),
            web.patch("/api/v1/endpoints/{id}", self.update_endpoint),
            web.delete("/api/v1/endpoints/{id}", self.delete_endpoint),
            web.get("/api/v1/endpoints/{id}", self.get_endpoint),
            web.post("/api/v1/endpoints/{id}/credentials", self.rotate_credentials),
            web.post("/api/v1/endpoints/{id}/commands", self.endpoint_command),
            web.post("/api/v1/endpoints.csv", self.import_endpoints),
            web.get("/api/v1/endpoints.csv", self.export_endpoints),
            web.get("/api/v1/mqtt/mosquitto", self.mosquitto_files),
            web.post("/api/v1/zones/{zone}/commands", self.zone_command),
            web.patch("/api/v1/zones/{zone}", self.update_zone),
            web.get("/api/v1/commands", self.list_commands),
            web.get("/api/v1/commands/{id}", self.get_command),
            web.get("/api/v1/alarms", self.list_alarms),
            web.get("/api/v1/reports/{commune}", self.report),
            web.post("/api/v1/alerts", self.trigger_alert),
            web.get("/api/v1/alerts", self.list_alerts),
            web.get("/api/v1/alerts/{id}", self.get_alert),
            web.delete("/api/v1/alerts/{id}", self.cancel_alert),
            web.get("/api/v1/audit", self.audit),
            web.post("/api/v1/cap", self.cap),
            web.get("/api/v1/log", self.broadcast_log),
            web.get("/metrics", self.metrics),
            web.post("/api/v1/schedules", self.add_schedule),
            web.get("/api/v1/schedules", self.list_schedules),
            web.delete("/api/v1/schedules/{id}", self.delete_schedule),
            web.get("/api/v1/schedules.ics", self.export_schedules),
            web.post("/api/v1/schedules.ics", self.import_schedules),
            web.post("/api/v1/media", self.add_media),
            web.get("/api/v1/media", self.list_media),
            web.get("/api/v1/media/{id}", self.get_media),
            web.delete("/api/v1/media/{id}", self.delete_media),
        ]

    async def add_schedule(self, request: web.Request) -> web.Response:
        """``{"title", "zones", "start": local ISO time, "duration_s", "rrule", "class",
        "content": {"kind": "media"|"text"|"relay"|"tone", …}, "missed", "late_minutes"}``"""
        require(request, Right.OPERATE)
        body = await read_json(request)
        try:
            item = item_from_json(body, secrets.token_hex(6))
            for z in item.zones:
                self.s.zones.get(z)
            kind = item.content.get("kind")
            if kind == "media" and self.s.media.get(str(item.content.get("id"))) is None:
                raise ValueError(f"no media item {item.content.get('id')!r}")
            for mid in item.content.get("items", []) if kind == "playlist" else []:
                if self.s.media.get(str(mid)) is None:
                    raise ValueError(f"no media item {mid!r} for the playlist")
            if kind == "text":  # read aloud now, so the slot starts on the frame
                await self.s.tts.speak(str(item.content.get("text", "")),
                                       str(item.content.get("voice", "vi")))
        except (ValueError, TtsError) as exc:
            status = 404 if isinstance(exc, ZoneError) else 400
            return _error(status, str(exc))
        found = conflicts(item, list(self.s.schedule.items.values()), self._zones_overlap,
                          self.s.wall.now())
        self.s.store.save_schedule(item.id, item.to_json())
        self.s.schedule.put(item)
        self.s.store.audit(request[PRINCIPAL_KEY].name, "schedule.add", item.id, item.to_json())
        nxt = item.next_slot(self.s.wall.now())
        return web.json_response({"schedule": item.to_json(), "conflicts": found,
                                  "next": nxt.isoformat() if nxt else None}, status=201)

    async def export_schedules(self, request: web.Request) -> web.Response:
        """``GET schedules.ics``: the whole schedule as an iCalendar file (RFC 5545)."""
        return web.Response(body=export_ics(list(self.s.schedule.items.values())),
                            content_type="text/calendar", charset="utf-8",
                            headers={"Content-Disposition": 'attachment; filename="loa.ics"'})

    async def import_schedules(self, request: web.Request) -> web.Response:
        """``POST schedules.ics`` (OPERATE): add the events of an iCalendar body (at most
        1 MiB; 413 over, 400 if unreadable). Events naming an unknown zone are refused, not fatal.
        """
        require(request, Right.OPERATE)
        data = await read_body(request, MAX_ICS_BYTES)
        if len(data) > MAX_ICS_BYTES:
            return _error(413, f"calendars are limited to {MAX_ICS_BYTES >> 10} KiB")
        try:
            items, refused = import_ics(data)
        except ValueError as exc:
            return _error(400, str(exc))
        taken = []
        for item in items:
            if not all(z in self.s.zones for z in item.zones):
                refused.append(f"{item.title}: unknown zone in {item.zones}")
                continue
            self.s.store.save_schedule(item.id, item.to_json())
            self.s.schedule.put(item)
            taken.append(item.id)
        self.s.store.audit(request[PRINCIPAL_KEY].name, "schedule.import", "ics",
                           {"taken": taken, "refused": refused})
        return web.json_response({"imported": taken, "refused": refused})

    def _zones_overlap(self, a: list[str], b: list[str]) -> bool:
        """Zones overlap when one is the other or lies below it."""
        below = {z: {x.id for x in self.s.zones.subtree(z)} for z in set(a) | set(b)
                 if z in self.s.zones}
        return any(y in below.get(x, set()) or x in below.get(y, set()) for x in a for y in b)

    async def list_schedules(self, request: web.Request) -> web.Response:
        """``GET schedules``: every item with its next slot (ISO 8601, station time) or None."""
        now = self.s.wall.now()
        out = []
        for item in self.s.schedule.items.values():
            nxt = item.next_slot(now)
            out.append({**item.to_json(), "next": nxt.isoformat() if nxt else None})
        return web.json_response({"schedules": out})

    async def delete_schedule(self, request: web.Request) -> web.Response:
        """``DELETE schedules/{id}`` (OPERATE): 404 if unknown."""
        require(request, Right.OPERATE)
        sid = request.match_info["id"]
        if sid not in self.s.schedule.items:
            return _error(404, f"no schedule item {sid!r}")
        self.s.schedule.remove(sid)
        self.s.store.delete_schedule(sid)
        self.s.store.audit(request[PRINCIPAL_KEY].name, "schedule.delete", sid)
        return web.json_response({"deleted": sid})

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus text format; scrape it with the bearer token."""
        return web.Response(body=render(self.s), content_type="text/plain",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def broadcast_log(self, request: web.Request) -> web.Response:
        """The broadcast log (nhật ký phát): ``?zone=…&since=<unix time>``."""
        try:
            since = float(request.query.get("since", "0"))
        except ValueError:
            return _error(400, "since is a unix time")
        zone = request.query.get("zone")
        return web.json_response({
            "entries": await self.s.store.broadcast_log_async(zone, since),
            "on_air": [e for e in self.s.broadcast_log.on_air() if not zone or e["zone"] == zone],
        })

    async def add_media(self, request: web.Request) -> web.Response:
        """Multipart: a ``file`` part, optional ``title`` and ``tags`` (comma-separated)."""
        require(request, Right.OPERATE)
        if not request.content_type.startswith("multipart/"):
            return _error(415, 'upload as multipart/form-data with a "file" part')
        try:
            fields, files = await read_multipart(request, self.s.config.max_upload_mb << 20,
                                                 self.s.media.incoming)
        except UploadTooLarge as exc:
            return _error(413, str(exc))
        except ValueError as exc:
            return _error(400, str(exc))
        upload = files.get("file")
        if upload is None:
            return _error(400, 'multipart needs a "file" part')
        filename = upload.filename
        try:
            item, created = await self.s.media.add_file(
                upload.path, upload.sha256, filename, request[PRINCIPAL_KEY].name,
                fields.get("title", ""), fields.get("tags", "").split(","))
        except MediaError as exc:
            return _error(400, str(exc))
        self.s.store.audit(request[PRINCIPAL_KEY].name, "media.add", item.id,
                           {"filename": filename, "created": created})
        return web.json_response({"media": item.describe(), "created": created},
                                 status=201 if created else 200)

    async def list_media(self, request: web.Request) -> web.Response:
        """``GET media``: every library item, oldest first."""
        return web.json_response({"media": [m.describe() for m in self.s.media.list()]})

    async def get_media(self, request: web.Request) -> web.Response:
        """``GET media/{id}``: one item; 404 if unknown."""
        item = self.s.media.get(request.match_info["id"])
        if item is None:
            return _error(404, f"no media item {request.match_info['id']!r}")
        return web.json_response({"media": item.describe()})

    async def delete_media(self, request: web.Request) -> web.Response:
        """``DELETE media/{id}`` (OPERATE): 404 if unknown, 409 while it plays or is scheduled."""
        require(request, Right.OPERATE)
        item = self.s.media.get(request.match_info["id"])
        if item is None:
            return _error(404, f"no media item {request.match_info['id']!r}")
        if self.s.media_in_use(item):
            return _error(409, f"{item.title!r} is playing or scheduled; release it first")
        await self.s.media.delete(item.id)
        self.s.store.audit(request[PRINCIPAL_KEY].name, "media.delete", item.id)
        return web.json_response({"deleted": item.id})

    async def cap(self, request: web.Request) -> web.Response:
        """A CAP 1.2 XML document as the request body."""
        require(request, Right.ALERT)
        received_ns = self.s.clock.now_ns()
        if request.content_length and request.content_length > MAX_CAP_BYTES:
            return _error(413, f"CAP messages are limited to {MAX_CAP_BYTES} bytes")
        data = await read_body(request, MAX_CAP_BYTES)
        try:
            msg = await asyncio.to_thread(parse_cap, data)  # XML and base64: beside the loop
            status, body = await self.s.alerts.handle_cap(
                msg, request[PRINCIPAL_KEY].name, test_zone=self.s.config.cap_test_zone,
                upload_dir=self.s.media_dir / "cap", received_ns=received_ns)
        except CapError as exc:
            status = 413 if "limit" in str(exc) else 400
            return _error(status, str(exc))
        except ValueError as exc:
            return _error(422, str(exc))
        return web.json_response(body, status=status)

    async def trigger_alert(self, request: web.Request) -> web.Response:
        """JSON, or multipart with a ``spec`` part (JSON) and an ``audio`` part (the message)."""
        require(request, Right.ALERT)
        received_ns = self.s.clock.now_ns()
        uploaded: Path | None = None
        if request.content_type.startswith("multipart/"):
            try:
                body, uploaded = await self._read_alert_upload(request)
            except ValueError as exc:
                return _error(400, str(exc))
        else:
            body = await read_json(request)
        try:
            if uploaded is not None:
                body["content"] = {"kind": "upload"}
            spec = parse_spec(body, default_gap_s=self.s.config.alert_gap_s, now=time.time())
            if uploaded is not None:
                spec.content = {"kind": "media", "path": str(uploaded), "name": "upload"}
            elif spec.content.get("kind") in ("media", "file"):
                path = media_path(self.s.media_dir, str(spec.content.get("path", "")))
                spec.content = {"kind": "media", "path": str(path),
                                "name": str(spec.content.get("path"))}
            alert = await self.s.alerts.trigger(spec, request[PRINCIPAL_KEY].name, received_ns)
        except ValueError as exc:
            return _error(400, str(exc))
        return web.json_response({"alert": alert.describe(full=True),
                                  "errors": alert.warnings}, status=201)

    async def _read_alert_upload(self, request: web.Request) -> tuple[dict[str, Any], Path]:
        """The spec, and the uploaded audio saved content-addressed once it decodes."""
        folder = self.s.media_dir / "alerts"
        fields, files = await read_multipart(request, self.s.config.max_upload_mb << 20,
                                             folder)
        upload = files.get("audio")
        try:
            try:
                spec = json.loads(fields.get("spec", "{}"))
            except ValueError:
                raise ValueError("the spec part is not valid JSON") from None
            if not isinstance(spec, dict):
                raise ValueError("the spec part must be a JSON object")
            if upload is None or upload.size == 0:
                raise ValueError('multipart needs an "audio" part with the message')
            path = folder / upload.sha256
            try:  # judged by decoding, not by its name or type
                await asyncio.to_thread(_probe_and_keep, upload.path, path)
            except DecodeError as exc:
                raise ValueError(f"the uploaded file is not audio Loa can play: {exc}") from None
        except BaseException:
            for f in files.values():
                await asyncio.to_thread(f.discard)
            raise
        return spec, path

    async def list_alerts(self, request: web.Request) -> web.Response:
        """``GET alerts``: the alerts held in memory since start (older ones are in the store)."""
        return web.json_response(
            {"alerts": [a.describe() for a in self.s.alerts.alerts.values()]})

    async def get_alert(self, request: web.Request) -> web.Response:
        """One alert with its reach; ``?endpoints=1`` adds, per endpoint, the ms from the
        API call to the first tone packet and to the message's first packet."""
        found = await self.s.alerts.get(request.match_info["id"])
        if found is None:
            return _error(404, f"no alert {request.match_info['id']!r}")
        if isinstance(found, dict):
            return web.json_response({"alert": found})
        out = found.describe(full=True)
        if request.query.get("endpoints"):  # ?endpoints=1: every endpoint's reach
            out["reach_from_call_ms"] = found.reach_from_call_ms()
        return web.json_response({"alert": out})

    async def cancel_alert(self, request: web.Request) -> web.Response:
        """``DELETE alerts/{id}`` (ALERT): cancel it and return its full description; 404 if
        unknown."""
        require(request, Right.ALERT)
        try:
            alert = self.s.alerts.cancel(request.match_info["id"], request[PRINCIPAL_KEY].name)
        except KeyError:
            return _error(404, f"no alert {request.match_info['id']!r}")
        return web.json_response({"alert": alert.describe(full=True)})

    async def audit(self, request: web.Request) -> web.Response:
        """``GET audit`` (ADMIN): the newest 200 audit entries, optionally for one ``subject``."""
        require(request, Right.ADMIN)
        return web.json_response(
            {"audit": await self.s.store.audit_log_async(request.query.get("subject"))})

    async def status(self, request: web.Request) -> web.Response:
        """``GET status``: ``LoaServer.status``."""
        return web.json_response(self.s.status())

    async def zones(self, request: web.Request) -> web.Response:
        """``GET zones``: every zone with what is on air and its listeners by format."""
        out = []
        for zone in self.s.zones:
            d = zone.describe()
            ch = self.s.engine.channels[zone.id]
            d["on_air"] = ch.describe()["on_air"]
            d["listeners"] = ch.listeners()
            out.append(d)
        return web.json_response({"zones": out})

    async def take_live(self, request: web.Request) -> web.Response:
        """``POST zones/{zone}/live`` (OPERATE): put a mount (default "studio") on the zone at
        ``priority`` (default district live, 80). 201 when a new request is made, 200 when it
        already existed; 404 for an unknown zone, 400 for a bad mount or priority."""
        require(request, Right.OPERATE)
        body = await read_json(request)
        zone_id = request.match_info["zone"]
        mount_name = body.get("mount", "studio")
        try:
            priority = parse_priority(body.get("priority", int(Priority.DISTRICT_LIVE)))
            req, created = self.s.take_live(zone_id, str(mount_name), priority)
        except (ZoneError, ValueError) as exc:
            status = 404 if isinstance(exc, ZoneError) else 400
            return _error(status, str(exc))
        return web.json_response({"request": req.describe()}, status=201 if created else 200)

    async def release_live(self, request: web.Request) -> web.Response:
        """``DELETE zones/{zone}/live`` (OPERATE): release the zone's live requests (only
        ``mount``'s, if given); 404 for an unknown zone."""
        require(request, Right.OPERATE)
        body = await read_json(request)
        zone_id = request.match_info["zone"]
        if zone_id not in self.s.zones:
            return _error(404, f"unknown zone {zone_id!r}")
        released = self.s.release_live(zone_id, body.get("mount"))
        return web.json_response({"released": released})

    async def add_request(self, request: web.Request) -> web.Response:
        """``{"source": {"kind": "file"|"relay"|"live"|"tone", ...}, "priority": 50}``"""
        require(request, Right.OPERATE)
        body = await read_json(request)
        zone_id = request.match_info["zone"]
        source = body.get("source")
        if not isinstance(source, dict):
            return _error(400, 'needs "source": {"kind": "file"|"relay"|"live"|"tone", ...}')
        try:
            priority = parse_priority(body.get("priority", int(Priority.SCHEDULED)))
            req = await self.s.add_request(zone_id, source, priority)
        except ZoneError as exc:
            return _error(404, str(exc))
        except (ValueError, DecodeError) as exc:
            return _error(400, str(exc))
        return web.json_response({"request": req.describe()}, status=201)

    async def list_requests(self, request: web.Request) -> web.Response:
        """``GET requests``: every request on the engine, with its programme."""
        return web.json_response(
            {"requests": [r.describe() for r in self.s.engine.requests.values()]}
        )

    async def delete_request(self, request: web.Request) -> web.Response:
        """``DELETE requests/{id}`` (OPERATE): release a request; 400 for a non-integer id,
        404 if unknown."""
        require(request, Right.OPERATE)
        try:
            rid = int(request.match_info["id"])
        except ValueError:
            return _error(400, "request ids are integers")
        req = await self.s.release_request(rid)
        if req is None:
            return _error(404, f"no request {rid}")
        return web.json_response({"released": req.describe()})

    async def list_endpoints(self, request: web.Request) -> web.Response:
        """``?zone=`` (and below), ``?online=true|false``."""
        zone = request.query.get("zone")
        try:
            eps = (self.s.endpoints.in_zone(zone) if zone
                   else list(self.s.endpoints.endpoints.values()))
        except ZoneError as exc:
            return _error(404, str(exc))
        out = [self.s.fleet.describe(e) for e in eps]
        online = request.query.get("online")
        if online in ("true", "false"):
            out = [e for e in out if e["presence"]["online"] is (online == "true")]
        return web.json_response({"endpoints": out})

    async def get_endpoint(self, request: web.Request) -> web.Response:
        """``GET endpoints/{id}``: the endpoint with its presence and effective volume; 404 if
        unknown."""
        try:
            ep = self.s.endpoints.get(request.match_info["id"])
        except EndpointError as exc:
            return _error(404, str(exc))
        return web.json_response({"endpoint": self.s.fleet.describe(ep)})

    async def add_endpoint(self, request: web.Request) -> web.Response:
        """``{"id", "zone", "name", "lat", "lon", "address", "admin_code"}``; the answer
        carries the endpoint's MQTT password, once."""
        require(request, Right.ADMIN)
        body = await read_json(request)
        try:
            ep = self.s.endpoints.add(
                str(body.get("id", "")), str(body.get("zone", "")), body.get("name", ""),
                body.get("lat"), body.get("lon"), body.get("address", ""),
                body.get("admin_code", ""))
        except (EndpointError, ZoneError) as exc:
            return _error(409 if "exists" in str(exc) else 400, str(exc))
        password = self.s.endpoints.rotate_secret(ep.id)
        self.s.store.audit(request[PRINCIPAL_KEY].name, "endpoint.add", ep.id, ep.describe())
        return web.json_response({"endpoint": self.s.fleet.describe(ep),
                                  "mqtt": self._mqtt_login(ep.id, password)}, status=201)

    def _mqtt_login(self, eid: str, password: str) -> dict[str, Any]:
        return {"username": eid, "password": password, "client_id": eid,
                "topic_root": self.s.fleet.topics.base, "broker": self.s.fleet.broker_url}

    async def rotate_credentials(self, request: web.Request) -> web.Response:
        """A new MQTT password for the endpoint (the old one stops working at once)."""
        require(request, Right.ADMIN)
        eid = request.match_info["id"]
        try:
            password = self.s.endpoints.rotate_secret(eid)
        except EndpointError as exc:
            return _error(404, str(exc))
        self.s.store.audit(request[PRINCIPAL_KEY].name, "endpoint.credentials", eid)
        return web.json_response({"mqtt": self._mqtt_login(eid, password)})

    async def update_endpoint(self, request: web.Request) -> web.Response:
        """Name, lat, lon, address, admin_code; ``zone`` moves it (connections and all) and
        tells the device."""
        require(request, Right.OPERATE)
        body = await read_json(request)
        eid = request.match_info["id"]
        try:
            ep = self.s.endpoints.update(eid, body)
            if "zone" in body and str(body["zone"]) != ep.zone_id:
                self.s.fleet.endpoint_command(eid, {"op": "move", "zone": str(body["zone"])},
                                              request[PRINCIPAL_KEY].name)
        except EndpointError as exc:
            return _error(404 if "unknown endpoint" in str(exc) else 400, str(exc))
        except ZoneError as exc:
            return _error(400, str(exc))
        self.s.store.audit(request[PRINCIPAL_KEY].name, "endpoint.update", eid, body)
        return web.json_response({"endpoint": self.s.fleet.describe(ep)})

    async def delete_endpoint(self, request: web.Request) -> web.Response:
        """``DELETE endpoints/{id}`` (ADMIN): forget an endpoint; 404 if unknown."""
        require(request, Right.ADMIN)
        try:
            self.s.endpoints.remove(request.match_info["id"])
        except EndpointError as exc:
            return _error(404, str(exc))
        self.s.store.audit(request[PRINCIPAL_KEY].name, "endpoint.delete",
                           request.match_info["id"])
        return web.json_response({"deleted": request.match_info["id"]})

    async def import_endpoints(self, request: web.Request) -> web.Response:
        """A CSV body (UTF-8): id,name,zone,lat,lon,address,admin_code. All or nothing; new
        endpoints come back with their MQTT passwords (as CSV with ``Accept: text/csv``)."""
        require(request, Right.ADMIN)
        data = await read_body(request, MAX_CSV_BYTES)
        if len(data) > MAX_CSV_BYTES:
            return _error(413, f"CSV imports are limited to {MAX_CSV_BYTES >> 20} MiB")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return _error(400, "the CSV must be UTF-8 (save it from the spreadsheet as "
                               "CSV UTF-8)")
        result = await self.s.endpoints.import_csv(text)
        created, updated = result.created, result.updated
        if result.errors:
            return web.json_response({"error": "nothing imported",
                                      "errors": result.errors[:200]}, status=400)
        logins = [self._mqtt_login(ep.id, result.passwords[ep.id]) for ep in created]
        self.s.store.audit(request[PRINCIPAL_KEY].name, "endpoint.import", "csv",
                           {"created": [e.id for e in created],
                            "updated": [e.id for e in updated]})
        if "text/csv" in request.headers.get("Accept", ""):
            out = io.StringIO()
            w = csv.writer(out)
            w.writerow(["id", "username", "password", "client_id", "topic_root"])
            for login in logins:
                w.writerow([login["username"], login["username"], login["password"],
                            login["client_id"], login["topic_root"]])
            return web.Response(text=out.getvalue(), content_type="text/csv")
        return web.json_response({"created": logins, "updated": [e.id for e in updated]},
                                 status=201 if created else 200)

    async def export_endpoints(self, request: web.Request) -> web.Response:
        """``GET endpoints.csv``: the registry in the import format (``CSV_FIELDS`` columns)."""
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(CSV_FIELDS)
        for ep in self.s.endpoints.endpoints.values():
            w.writerow([ep.id, ep.name, ep.zone_id, "" if ep.lat is None else ep.lat,
                        "" if ep.lon is None else ep.lon, ep.address, ep.admin_code])
        return web.Response(text=out.getvalue(), content_type="text/csv")

    async def mosquitto_files(self, request: web.Request) -> web.Response:
        """A password file and an ACL file for running the fleet on an external Mosquitto;
        ``?server_user=`` names the server's own user there."""
        require(request, Right.ADMIN)
        server_user = request.query.get("server_user", "loa-server")
        users = {e.id: e.secret_hash for e in self.s.endpoints.endpoints.values()
                 if e.secret_hash}
        return web.json_response({
            "password_file": mosquitto_passwd_lines(users),
            "acl_file": mosquitto_acl(self.s.fleet.topics.root, server_user)})

    async def zone_command(self, request: web.Request) -> web.Response:
        """``{"op": "volume", "volume_pct": 80}`` (also mute, unmute, power, reboot, play,
        stop) to every endpoint of the zone and below; 202 with the commands to follow."""
        zone_id = request.match_info["zone"]
        return await self._command(request, zone_id, self.s.fleet.zone_command, ZoneError)

    async def endpoint_command(self, request: web.Request) -> web.Response:
        """The same for one endpoint, and ``{"op": "move", "zone": …}``."""
        eid = request.match_info["id"]
        return await self._command(request, eid, self.s.fleet.endpoint_command, EndpointError)

    async def _command(self, request: web.Request, subject: str,
                       send: Callable[[str, dict[str, Any], str], list[Any]],
                       not_found: type[ValueError]) -> web.Response:
        require(request, Right.OPERATE)
        body = await read_json(request)
        actor = request[PRINCIPAL_KEY].name
        try:
            cmds = send(subject, body, actor)
        except not_found as exc:
            return _error(404, str(exc))
        except ValueError as exc:
            return _error(400, str(exc))
        batch = cmds[0].batch if cmds else None
        self.s.store.audit(actor, "command", subject,
                           {**body, "batch": batch, "endpoints": len(cmds)})
        return web.json_response({"batch": batch, "commands": [c.describe() for c in cmds]},
                                 status=202)

    async def update_zone(self, request: web.Request) -> web.Response:
        """``{"alert_volume_pct": 100}``: the volume a zone's endpoints rise to in an alert.
        (Its everyday volume is a command: POST …/commands {"op": "volume"}.)"""
        require(request, Right.OPERATE)
        body = await read_json(request)
        try:
            zone = self.s.zones.get(request.match_info["zone"])
        except ZoneError as exc:
            return _error(404, str(exc))
        pct = body.get("alert_volume_pct")
        if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
            return _error(400, "alert_volume_pct must be an integer from 0 to 100")
        for z in self.s.zones.subtree(zone.id):
            z.alert_volume_pct = pct
        self.s.save_zone_settings()
        self.s.store.audit(request[PRINCIPAL_KEY].name, "zone.update", zone.id, body)
        return web.json_response({"zone": zone.describe()})

    async def list_commands(self, request: web.Request) -> web.Response:
        """``?batch=…`` or ``?endpoint=…``: a summary by status and the acknowledgement times,
        and the commands themselves (the last 5,000) unless ``?summary=1``."""
        batch = request.query.get("batch")
        eid = request.query.get("endpoint")
        cmds = [c for c in self.s.fleet.commands.values()
                if (not batch or c.batch == batch) and (not eid or c.endpoint_id == eid)]
        summary: dict[str, int] = {}
        for c in cmds:
            summary[c.status.value] = summary.get(c.status.value, 0) + 1
        acks = [c.ack_ms for c in cmds if c.ack_ms is not None]
        return web.json_response({
            "summary": summary,
            "ack_ms": percentiles(acks, (50, 99)) if acks else None,
            "commands": [] if request.query.get("summary") == "1"
            else [c.describe() for c in cmds[-5000:]]})

    async def get_command(self, request: web.Request) -> web.Response:
        """``GET commands/{id}``: a fleet command and its status; 404 if unknown (or forgotten)."""
        cmd = self.s.fleet.commands.get(request.match_info["id"])
        if cmd is None:
            return _error(404, f"no command {request.match_info['id']!r}")
        return web.json_response({"command": cmd.describe()})

    async def list_alarms(self, request: web.Request) -> web.Response:
        """``GET alarms``: re-evaluate the alarm rules now, then list the active alarms."""
        self.s.check_alarms()
        return web.json_response({"alarms": [a.describe() for a in self.s.alarms.active()]})

    async def report(self, request: web.Request) -> web.Response:
        """``/api/v1/reports/{commune}?from=2026-01-01&to=2027-01-01`` (local dates or unix
        times; ``?year=2026`` for the yearly report); ``?format=csv`` for a spreadsheet."""
        as_csv = request.query.get("format") == "csv"
        try:
            start, end = report_period(request.query)
            scope = report_scope(self.s.zones, self.s.endpoints, request.match_info["commune"])
            # months of history: read, computed and rendered beside the loop
            text = await asyncio.to_thread(render_report, self.s.store, scope, start, end,
                                           self.s.wall.now().timestamp(), as_csv)
        except ZoneError as exc:
            return _error(404, str(exc))
        except ValueError as exc:
            return _error(400, str(exc))
        if as_csv:
            name = f"bao-cao-{scope.commune_id}.csv"
            return web.Response(text=text, content_type="text/csv",
                                headers={"Content-Disposition": f'attachment; filename="{name}"'})
        return web.json_response(text=text)


def report_period(query: Any) -> tuple[float, float]:
    """From ``year``, or ``from``/``to`` as local ISO dates/times or unix times."""
    def parse(value: str) -> float:
        try:
            return float(value)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is neither a date nor a unix time") from None
        return (dt if dt.tzinfo else dt.replace(tzinfo=STATION_TZ)).timestamp()

    if query.get("year"):
        try:
            year = int(query["year"])
        except ValueError:
            raise ValueError("year must be a number") from None
        if not 2000 <= year <= 2200:
            raise ValueError("year must be from 2000 to 2200")
        return parse(f"{year}-01-01"), parse(f"{year + 1}-01-01")
    if not query.get("from") or not query.get("to"):
        raise ValueError("give ?year=YYYY or ?from=…&to=…")
    return parse(query["from"]), parse(query["to"])


class UploadTooLarge(ValueError):
    """A multipart file part over its size limit (the handler answers 413)."""

    pass


UPLOAD_WRITE_BYTES = 1 << 20  # gathered, then written and hashed beside the loop


@dataclass
class Upload:
    """A file part kept on disk while it arrived: its temp path, SHA-256 and size. The caller
    moves it into place or calls ``discard``."""

    filename: str
    path: Path
    sha256: str
    size: int

    def discard(self) -> None:
        """Blocking (an unlink): call beside the loop, or accept a few microseconds."""
        self.path.unlink(missing_ok=True)


async def read_multipart(request: web.Request, limit_bytes: int, incoming: Path
                         ) -> tuple[dict[str, str], dict[str, Upload]]:
    """Text fields, and files written to ``incoming`` as they arrive (hashing and writing run
    beside the loop, a megabyte at a time); a file over ``limit_bytes`` is refused while it is
    still arriving and leaves nothing behind."""
    reader = await request.multipart()
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    try:
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                raise ValueError("nested multipart is not accepted")
            name = part.name or ""
            if part.filename is None:
                fields[name] = await part.text()
                continue
            files[name] = await _receive_file(part, limit_bytes, incoming)
    except BaseException:
        for upload in files.values():
            await asyncio.to_thread(upload.discard)
        raise
    return fields, files


async def _receive_file(part: BodyPartReader, limit_bytes: int, incoming: Path) -> Upload:
    filename = part.filename or "upload"
    await asyncio.to_thread(incoming.mkdir, parents=True, exist_ok=True)
    path = incoming / f"{secrets.token_hex(8)}.part"
    digest = hashlib.sha256()
    size = 0
    chunks: list[bytes] = []
    pending = 0
    out = await asyncio.to_thread(open, path, "wb")
    try:
        while chunk := await part.read_chunk(65536):
            size += len(chunk)
            if size > limit_bytes:
                raise UploadTooLarge(f"{filename}: over the {limit_bytes >> 20} MiB limit")
            chunks.append(chunk)
            pending += len(chunk)
            if pending >= UPLOAD_WRITE_BYTES:
                await asyncio.to_thread(_write_hashed, out, digest, chunks)
                chunks, pending = [], 0
        await asyncio.to_thread(_write_hashed, out, digest, chunks)
    except BaseException:
        await asyncio.to_thread(_close_and_unlink, out, path)
        raise
    await asyncio.to_thread(out.close)
    return Upload(filename, path, digest.hexdigest(), size)


def _write_hashed(out: Any, digest: Any, chunks: list[bytes]) -> None:
    for chunk in chunks:
        digest.update(chunk)
        out.write(chunk)


def _close_and_unlink(out: Any, path: Path) -> None:
    out.close()
    path.unlink(missing_ok=True)


def media_path(media_dir: Path, relative: str) -> Path:
    """A file inside the media folder; anything that escapes it is refused."""
    base = media_dir.resolve()
    path = (base / relative).resolve()
    if not relative or not path.is_relative_to(base):
        raise ValueError(f"file {relative!r} must be a path inside the media folder")
    if not path.is_file():
        raise ValueError(f"no file {relative!r} in the media folder")
    return path


def _probe_and_keep(tmp: Path, path: Path) -> None:
    """Open ``tmp`` as audio, then move it to ``path`` (blocking). Raises ``DecodeError``;
    ``tmp`` is then left for the caller to discard."""
    FrameDecoder(str(tmp)).close()
    tmp.replace(path)
