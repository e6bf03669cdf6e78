"""The endpoint registry (cụm loa): list, add, change, forget, MQTT credentials, CSV import
and export, and the files for running the fleet on an external Mosquitto. Each within the
caller's scope (the endpoint's zone); what spans the whole fleet (a CSV import, the
Mosquitto files) needs a scope of the whole tree."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import TYPE_CHECKING, Any

from aiohttp import web

from loa.api.audit import Changed, audited
from loa.api.errors import error_status, language_of
from loa.api.resource import (
    ApiError,
    actor,
    described,
    dumps,
    json_response,
    read_body,
    read_json,
    require,
    scope_of,
    scoped,
    scoped_all,
    scoped_endpoint,
    server_of,
    touched,
)
from loa.api.schedule import dry_run
from loa.control.auth import Right
from loa.control.endpoints import CSV_FIELDS, located
from loa.core.i18n import N_, Message
from loa.core.zones import ZoneError
from loa.protocol.credentials import mosquitto_acl, mosquitto_passwd_lines

if TYPE_CHECKING:
    from loa.app import LoaServer

MAX_CSV_BYTES = 8 << 20

routes = web.RouteTableDef()


async def broker_has_logins(server: LoaServer) -> None:
    """Wait (bounded) until Loa's own broker has the registry's credential changes, so a
    password in the answer works at once and a replaced or removed one no longer does. With
    an external broker there is nothing to wait for (its files come from ``loa endpoints
    mosquitto``)."""
    if server.broker is not None:
        await server.broker.synced()


def mqtt_login(server: LoaServer, eid: str, password: str) -> dict[str, Any]:
    """What a device needs to log in to the fleet's broker: username, password, client id,
    topic root and broker URL."""
    return {"username": eid, "password": password, "client_id": eid,
            "topic_root": server.fleet.topics.base, "broker": server.fleet.broker_url}


@routes.get("/api/v1/endpoints")
async def list_endpoints(request: web.Request) -> web.Response:
    """``?zone=`` (and below; 404 if unknown), ``?online=true|false``; only the endpoints of
    the caller's scope."""
    s = server_of(request)
    zone = request.query.get("zone")
    scope = scope_of(request)
    if zone and zone in s.zones:
        scoped(request, zone)
    eps = s.endpoints.in_zone(zone) if zone else list(s.endpoints.endpoints.values())
    language = language_of(request)
    out = await described(eps, lambda e: s.fleet.describe(e, language),
                          keep=lambda e: scope.contains(e.zone_id))
    online = request.query.get("online")
    if online in ("true", "false"):
        out = [e for e in out if e["presence"]["online"] is (online == "true")]
    # a district's registry is thousands of rows: its JSON is written beside the loop
    body = await asyncio.to_thread(dumps, {"endpoints": out})
    return web.Response(text=body, content_type="application/json", charset="utf-8")


@routes.post("/api/v1/endpoints")
@audited("endpoint.add")
@error_status({ZoneError: 400})  # the zone is named in the body
async def add_endpoint(request: web.Request) -> Changed:
    """``{"id", "zone", "name", "lat", "lon", "address", "admin_code"}`` (ADMIN); the answer
    carries the endpoint's MQTT password, once. 409 for a taken id, 400 for a bad field or
    an unknown zone."""
    require(request, Right.ADMIN)
    body = await read_json(request)
    s = server_of(request)
    if str(body.get("zone", "")) in s.zones:  # an unknown one: the registry's 400
        scoped(request, str(body.get("zone", "")))
    ep = s.endpoints.add(
        str(body.get("id", "")), str(body.get("zone", "")), body.get("name", ""),
        body.get("lat"), body.get("lon"), body.get("address", ""),
        body.get("admin_code", ""))
    password = s.endpoints.rotate_secret(ep.id)
    await broker_has_logins(s)
    detail = ep.describe()
    return Changed(json_response({"endpoint": s.fleet.describe(ep, language_of(request)),
                                      "mqtt": mqtt_login(s, ep.id, password)}, status=201),
                   ep.id, detail)


@routes.patch("/api/v1/endpoints/{id}")
@audited("endpoint.update")
@error_status({ZoneError: 400})  # the zone is named in the body
async def update_endpoint(request: web.Request) -> Changed:
    """Name, lat, lon, address, admin_code; ``zone`` moves it (connections and all) and
    tells the device (OPERATE). 404 for an unknown endpoint, 400 for a bad field or zone."""
    require(request, Right.OPERATE)
    body = await read_json(request)
    eid = request.match_info["id"]
    s = server_of(request)
    scoped_endpoint(request, eid)
    if "zone" in body and str(body["zone"]) in s.zones:  # an unknown one: the registry's 400
        scoped(request, str(body["zone"]))
    ep = s.endpoints.update(eid, body)
    if "zone" in body and str(body["zone"]) != ep.zone_id:
        s.fleet.endpoint_command(eid, {"op": "move", "zone": str(body["zone"])},
                                 actor(request))
    return Changed(json_response({"endpoint": s.fleet.describe(ep, language_of(request))}),
                   eid, body)


@routes.delete("/api/v1/endpoints/{id}")
@audited("endpoint.delete")
async def delete_endpoint(request: web.Request) -> Changed:
    """``DELETE endpoints/{id}`` (ADMIN): forget an endpoint; 404 if unknown."""
    require(request, Right.ADMIN)
    eid = request.match_info["id"]
    scoped_endpoint(request, eid)
    server_of(request).endpoints.remove(eid)
    await broker_has_logins(server_of(request))
    return Changed(json_response({"deleted": eid}), eid)


@routes.get("/api/v1/endpoints/{id}")
async def get_endpoint(request: web.Request) -> web.Response:
    """``GET endpoints/{id}``: the endpoint with its presence and effective volume; 404 if
    unknown."""
    s = server_of(request)
    ep = scoped_endpoint(request, request.match_info["id"])
    return json_response({"endpoint": s.fleet.describe(ep, language_of(request))})


@routes.post("/api/v1/endpoints/{id}/credentials")
@audited("endpoint.credentials")
async def rotate_credentials(request: web.Request) -> Changed:
    """A new MQTT password for the endpoint (ADMIN; the old one stops working at once);
    404 if unknown."""
    require(request, Right.ADMIN)
    eid = request.match_info["id"]
    s = server_of(request)
    scoped_endpoint(request, eid)
    password = s.endpoints.rotate_secret(eid)
    await broker_has_logins(s)
    return Changed(json_response({"mqtt": mqtt_login(s, eid, password)}), eid)


@routes.post("/api/v1/endpoints.csv")
async def import_endpoints(request: web.Request) -> web.Response:
    """A CSV body (ADMIN): id,name,zone,lat,lon,address,admin_code, as a spreadsheet saves
    it: UTF-8 (with or without its byte-order mark), UTF-16 with its mark, or the
    ``charset`` the Content-Type names; comma, semicolon or tab separated; the header in any
    case, with or without accents, in English or Vietnamese (``CSV_COLUMNS``). All or
    nothing: 400 with ``errors``, the first 200 (``error_count`` says how many), each
    ``{"line": n, "message": "…"}`` (``line`` 1-based, null for the file as a whole; the
    message in the caller's language, saying what was seen). New endpoints come back with
    their MQTT passwords: ``{"created": [login…], "updated": [id…]}`` (201 if any is new,
    else 200), or as CSV with ``Accept: text/csv``. 413 over 8 MiB. A scope of the whole
    tree only.

    ``?dry_run=1``: checked exactly as the import is (the same refusals: statuses and
    errors), and answered 200 with what it would do: ``{"dry_run": true, "created":
    [{"line", "id", "name", "zone", "lat", "lon", "address", "admin_code"}…], "updated":
    [{"line", "id", "zone", "changes": {field: {"from", "to"}}}…], "errors": []}`` (a line
    that changes nothing has empty ``changes``); nothing is saved or audited and no
    password is made. 400 for another value of ``dry_run`` than 1/0 (true/false,
    yes/no)."""
    if dry_run(request):
        return await _preview_import(request)
    return await _import_endpoints(request)


async def _csv_body(request: web.Request) -> bytes:
    """The import's body, once the caller may import (ADMIN, a scope of the whole tree)."""
    require(request, Right.ADMIN)
    scoped_all(request, Message(N_("a CSV import of the whole registry")))
    data = await read_body(request, MAX_CSV_BYTES)
    if len(data) > MAX_CSV_BYTES:
        raise ApiError(413, N_("CSV imports are limited to {limit_mib} MiB"),
                       limit_mib=MAX_CSV_BYTES >> 20)
    return data


def _refused(request: web.Request, errors: list[Message], message: str) -> ApiError:
    """The 400 of an import with errors: the first 200, each by its line."""
    language = language_of(request)
    listed = []
    for error in errors[:200]:
        line, said = located(error, language)
        listed.append({"line": line, "message": said})
    return ApiError(400, message, extra={"errors": listed, "error_count": len(errors)})


async def _preview_import(request: web.Request) -> web.Response:
    data = await _csv_body(request)
    preview = await server_of(request).endpoints.preview_csv(data, request.charset)
    if preview.errors:
        raise _refused(request, preview.errors, N_("nothing would be imported"))
    created = [{"line": new.line, **{k: v for k, v in new.endpoint.describe().items()
                                     if k in CSV_FIELDS}} for new in preview.new]
    updated = [{"line": row.line, "id": row.id, "zone": row.zone_id,
                "changes": {name: {"from": old, "to": new}
                            for name, (old, new) in row.changes.items()}}
               for row in preview.changes]
    return json_response({"dry_run": True, "created": created, "updated": updated,
                          "errors": []})


@audited("endpoint.import", atomic=True)  # the rows and their audit entry: one transaction
async def _import_endpoints(request: web.Request) -> Changed:
    data = await _csv_body(request)
    s = server_of(request)
    # decoded beside the loop, with the parsing; aiohttp's charset is None when none is named.
    # Loa's broker is not awaited after it: the rows and the audit entry are one transaction
    # with no await between their writes; the broker has the new logins a reload later.
    result = await s.endpoints.import_csv(data, request.charset)
    created, updated = result.created, result.updated
    if result.errors:
        raise _refused(request, result.errors, N_("nothing imported"))
    touched(request, *(ep.zone_id for ep in (*created, *updated)))  # in their zones' logs
    logins = [mqtt_login(s, ep.id, result.passwords[ep.id]) for ep in created]
    detail = {"created": [e.id for e in created], "updated": [e.id for e in updated]}
    if "text/csv" in request.headers.get("Accept", ""):
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["id", "username", "password", "client_id", "topic_root"])
        for login in logins:
            w.writerow([login["username"], login["username"], login["password"],
                        login["client_id"], login["topic_root"]])
        return Changed(web.Response(text=out.getvalue(), content_type="text/csv"), "csv",
                       detail)
    return Changed(json_response({"created": logins, "updated": [e.id for e in updated]},
                                     status=201 if created else 200), "csv", detail)


@routes.get("/api/v1/endpoints.csv")
async def export_endpoints(request: web.Request) -> web.Response:
    """``GET endpoints.csv``: the registry in the import format (``CSV_FIELDS`` columns), the
    caller's scope of it."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(CSV_FIELDS)
    scope = scope_of(request)
    for ep in server_of(request).endpoints.endpoints.values():
        if not scope.contains(ep.zone_id):
            continue
        w.writerow([ep.id, ep.name, ep.zone_id, "" if ep.lat is None else ep.lat,
                    "" if ep.lon is None else ep.lon, ep.address, ep.admin_code])
    return web.Response(text=out.getvalue(), content_type="text/csv")


@routes.get("/api/v1/mqtt/mosquitto")
async def mosquitto_files(request: web.Request) -> web.Response:
    """A password file and an ACL file for running the fleet on an external Mosquitto
    (ADMIN, scope of the whole tree); ``?server_user=`` names the server's own user there."""
    require(request, Right.ADMIN)
    scoped_all(request, Message(N_("the whole fleet's broker files")))
    s = server_of(request)
    server_user = request.query.get("server_user", "loa-server")
    users = {e.id: e.secret_hash for e in s.endpoints.endpoints.values() if e.secret_hash}
    return json_response({
        "password_file": mosquitto_passwd_lines(users),
        "acl_file": mosquitto_acl(s.fleet.topics.root, server_user)})
