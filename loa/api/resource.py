"""What every ``/api/v1`` handler stands on: the server and the caller on the request, the
right a call needs, the caller's scope, request bodies read within their limits, and JSON
answers as UTF-8 text (``json_response``: Vietnamese names as they are, not
``\\u``-escaped).

Scope (issue 14) is checked here, the one way every handler does it: a handler that acts on
or reads one thing names the zones it lies in with ``scoped`` (``scoped_endpoint`` for an
endpoint; ``scoped_all`` for what lies in no zone), which raises ``ScopeError`` (403, the
error table) naming the zone and the caller's scope, and notes the zone as where the request
acts for its audit entries; a list keeps what ``scope_of(request)`` contains (or overlaps,
for things that play on several zones)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from loa.control.audit import AUDIT_SOURCE
from loa.control.auth import Principal, Right, RightError, Scope
from loa.core.content import ContentSpec, MediaContent, PlaylistContent
from loa.core.i18n import N_, Explained, Message
from loa.core.peers import client_host
from loa.core.zones import ZoneError, home_zone_id

if TYPE_CHECKING:
    from loa.app import LoaServer
    from loa.control.endpoints import Endpoint

SERVER_KEY: web.AppKey[Any] = web.AppKey("loa_server", object)
PRINCIPAL_KEY = web.RequestKey("principal", Principal)
API_PATHS = ("/api/", "/metrics")  # what the bearer token guards and the error table answers
MAX_JSON_BYTES = 64 * 1024
JSON_TOO_LARGE = N_("JSON bodies are limited to {kib} KiB")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Explained):
    """A request refused by its handler: answered (``loa.api.errors.error_middleware``) with
    ``status`` and the JSON body ``{"error": <message in the caller's language>, **extra}``;
    ``message`` an ``N_``-marked msgid whose ``{name}`` fields come from ``fields`` (or a
    ``Message``)."""

    def __init__(self, status: int, message: str | Message, /, *,
                 extra: Mapping[str, Any] | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.status = status
        self.extra = dict(extra or {})


def dumps(data: Any) -> str:
    """``data`` as the API's JSON text: non-ASCII characters as they are (the body is UTF-8),
    not ``\\u``-escaped as ``json.dumps`` does by default."""
    return json.dumps(data, ensure_ascii=False)


# Things a handler describes per loop step: an endpoint takes ~8 µs (its presence said in the
# caller's language), and a district's 1,010 took 8-9 ms of one step (the suite's watchdog
# log, 2026-12-01); thousands would hold the master clock past a frame.
DESCRIBE_SLICE = 250
T = TypeVar("T")
V = TypeVar("V")


async def described(items: Sequence[T], describe: Callable[[T], V],
                    keep: Callable[[T], bool] | None = None) -> list[V]:
    """``describe`` of each item in order (of those ``keep`` keeps, if given: the caller's
    scope), ``DESCRIBE_SLICE`` items a loop step (the loop's other work, the master clock,
    runs between)."""
    out: list[V] = []
    for start in range(0, len(items), DESCRIBE_SLICE):
        if start:
            await asyncio.sleep(0)
        part = items[start:start + DESCRIBE_SLICE]
        out += [describe(item) for item in part if keep is None or keep(item)]
    return out


def json_response(data: Any = None, *, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    """``data`` as a JSON answer (``application/json; charset=utf-8``, through ``dumps``), the
    one way every API handler answers JSON."""
    return web.json_response(data, status=status, headers=headers, dumps=dumps)


def server_of(request: web.Request) -> LoaServer:
    """The LoaServer the application was built for (``app[SERVER_KEY]``, set by ``loa.app``)."""
    server: LoaServer = request.app[SERVER_KEY]
    return server


def actor(request: web.Request) -> str:
    """The caller's name, as the audit log and the fleet's commands record it (set by
    ``auth_middleware``; KeyError on a route it did not guard)."""
    return request[PRINCIPAL_KEY].name


def principal_of(request: web.Request) -> Principal:
    """The caller (set by ``auth_middleware``; KeyError on a route it did not guard)."""
    return request[PRINCIPAL_KEY]


def client_address(request: web.Request) -> str:
    """The client's address: the peer's, or the one a trusted proxy forwards for."""
    server = server_of(request)
    return client_host(request.remote or "", request.headers.get("X-Forwarded-For", ""),
                       server.config.limits.trusted_proxies)


def scope_of(request: web.Request) -> Scope:
    """The caller's scope over the server's zone tree (``loa.control.auth.Scope``)."""
    return Scope(server_of(request).zones, request[PRINCIPAL_KEY].scope)


def scoped(request: web.Request, *zone_ids: str) -> None:
    """Raise ScopeError (403: "zone 'phu-my' is outside your scope (an-binh)") unless every
    one of ``zone_ids`` lies in the caller's scope; then note them as where the request acts
    (its audit entries' ``zone``, the smallest zone holding them all, and ``zones``, each of
    them: the entry is in the audit log of every scope holding one). A zone that does not
    exist is ZoneError (404, "unknown zone") whoever asks: zone ids are no secret, and a
    caller told "outside your scope" would look for a mistake in their rights, not in the
    name. (A caller of the whole tree is left to the handler, which says the same, or acts
    on what names a zone gone since, as deleting a schedule item of a removed zone.)"""
    scope = scope_of(request)
    tree = server_of(request).zones
    whole = scope.covers_all()
    for zone_id in zone_ids:
        if home_zone_id(zone_id) not in tree:
            if whole:
                continue
            raise ZoneError(N_("unknown zone {zone!r}"), zone=zone_id)
        scope.check(zone_id)
    source = AUDIT_SOURCE.get()
    if source is not None and zone_ids:
        source.zone = scope.meet([*([source.zone] if source.zone else []), *zone_ids])
        touched(request, *zone_ids)


def touched(request: web.Request, *zone_ids: str) -> None:
    """Note zones the request touched, for its audit entries' ``zones`` (``scoped`` does it
    for the zones it checks; this for those a caller of the whole tree acts on without a
    check, as the endpoints of a CSV import)."""
    source = AUDIT_SOURCE.get()
    if source is not None:
        known = set(source.zones)
        for zone_id in zone_ids:
            home = home_zone_id(zone_id)
            if home not in known:
                known.add(home)
                source.zones.append(home)


def scoped_content(request: web.Request, content: ContentSpec | None) -> None:
    """Raise ScopeError unless every library item ``content`` names (a media item, a
    playlist's items) is the caller's to play: one of a zone in their scope, or the whole
    station's (no zone). As ``GET media/{id}`` refuses another commune's item, so does
    playing it."""
    ids: tuple[str, ...] = ()
    if isinstance(content, MediaContent):
        ids = (content.id,)
    elif isinstance(content, PlaylistContent):
        ids = content.items
    media = server_of(request).media
    for media_id in ids:
        item = media.get(media_id)
        if item is not None and item.zone is not None:
            scoped(request, item.zone)


def scoped_all(request: web.Request, what: str | Message) -> None:
    """Raise ScopeError unless the caller's scope is the whole tree: for what lies in no one
    zone (``what`` names it in the message)."""
    scope_of(request).check_all(what)


def scoped_endpoint(request: web.Request, endpoint_id: str) -> Endpoint:
    """The endpoint (EndpointError, 404, if unknown), once its zone is in the caller's scope
    (``scoped``)."""
    endpoint = server_of(request).endpoints.get(endpoint_id)
    scoped(request, endpoint.zone_id)
    return endpoint


def require(request: web.Request, right: Right) -> None:
    """Raise RightError (403, "needs the operator right") unless the caller holds
    ``right``."""
    principal = request[PRINCIPAL_KEY]
    if not principal.may(right):
        raise RightError(right.value)


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
    """The body as a JSON object (``{}`` when there is none). UTF-8 with or without a
    byte-order mark (as Windows tools save it), or UTF-16/32 (RFC 8259 detection, as
    ``json.loads`` does it); the Content-Type's charset is not needed. Raises 413 over
    64 KiB (by Content-Length, or as read), 400 when it is not JSON or not an object; each
    answered as ``{"error": message}``."""
    if request.content_length and request.content_length > MAX_JSON_BYTES:
        raise ApiError(413, JSON_TOO_LARGE, kib=MAX_JSON_BYTES >> 10)
    if not request.can_read_body:
        return {}
    data = await read_body(request, MAX_JSON_BYTES)
    if len(data) > MAX_JSON_BYTES:
        raise ApiError(413, JSON_TOO_LARGE, kib=MAX_JSON_BYTES >> 10)
    try:
        body = json.loads(data)  # bytes: a BOM is skipped, UTF-16/32 detected
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, N_("body is not valid JSON")) from None
    if not isinstance(body, dict):
        raise ApiError(400, N_("body must be a JSON object"))
    return body

