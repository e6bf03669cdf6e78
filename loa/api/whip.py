"""WHIP (RFC 9725) and WHEP (draft-ietf-wish-whep) over HTTP: the resources that make and end
WebRTC sessions (``loa.playout.webrtc``).

- ``POST /whip/<mount>`` (``Content-Type: application/sdp``, the offer) makes a source of the
  mount and answers ``201 Created``: the SDP answer, ``Location: /whip/<mount>/<id>`` (the
  session URL), an ``ETag``, and a ``Link: <url>; rel="ice-server"`` for each configured STUN or
  TURN server (RFC 9725 §4.6; TURN's username and credential as its attributes).
- ``POST /whep/zones/<zone>`` makes a viewer of the zone, answered the same way
  (``Location: /whep/zones/<zone>/<id>``).
- ``DELETE`` on a session URL ends the session (200); an unknown or ended one is 404.
  ``PATCH`` and ``DELETE`` are the session's owner's: the caller that made it (the same
  principal name; for a WHIP session made with the mount's source password, that password
  again), or an admin (the admin right: for WHIP, with a scope holding every zone that takes
  the mount now; for WHEP, the zone). Anyone else gets 403 ``refused: owner``.
- ``PATCH`` on a session URL (``application/trickle-ice-sdpfrag``, RFC 8840) with
  ``If-Match: <the session's ETag>`` adds trickled remote candidates: 204, with the session's
  ``ETag``. As RFC 9725 §4.3.1 asks: no ``If-Match``, 428 Precondition Required; one that is
  not the session's ETag, 412. aiortc takes candidates after the offer but cannot restart
  ICE, so a restart (``If-Match: *``, or a fragment with an ``ice-ufrag`` or ``ice-pwd`` other
  than the session's remote ones) gets 422 Unprocessable Content, what the RFC asks of a
  server that supports one of trickle and restarts but not the other.
- ``OPTIONS`` answers CORS preflights (``Access-Control-Allow-Origin`` per ``[webrtc]
  cors_origins``: ``*``, or the request's origin when listed) and says what each resource
  takes (``Allow``, ``Accept-Post``, ``Accept-Patch``); every answer to a listed origin exposes
  ``Location``, ``ETag`` and ``Link`` to its page.
- ``GET`` or ``HEAD`` on an endpoint or a session URL: 204, no content (RFC 9725 §4.1: they
  have no representation, and MUST answer GET with a 2xx), and no credentials asked; 404
  for a mount name that cannot be one, an unknown zone, no such session. Another method a
  resource does not take: 405 with ``Allow``; a path under ``/whip`` or ``/whep`` that
  names no resource: 404. JSON both, as every error here, not aiohttp's plain text.

Who may (``Authorization: Bearer <token>``, or a console session's cookie with its
``X-CSRF-Token``, as on the API):

- **WHIP**: a token or account with the operate right (a configured token, an account's
  personal token, the admin's), whose scope holds **every zone that takes the mount now**
  (the engine's requests for the mount's programme, made by ``POST zones/<zone>/live`` or a
  live request): a source is heard wherever its mount is taken, so a caller scoped to one
  commune may not push to a mount another commune's zones take (403 ``refused: scope``,
  naming the mount, the first such zone and the caller's scope, as the API's ScopeError). Or the
  mount's source password as the bearer token (an encoder configured like an Icecast one):
  the mount's own secret, asked for no scope.
- **WHEP**: any account or token whose scope contains the zone (a viewer's too: listening is
  reading). A device that speaks WebRTC listens with a personal token of an account scoped to
  its zone; endpoints' own MQTT credentials are not taken here (their hashes are meant for
  the broker, and costly to check by design).

No credentials, or wrong ones: 401 with ``WWW-Authenticate: Bearer`` (wrong ones throttled
per address like the API's); credentials without the right or the scope: 403. A busy mount
(a source of either kind live on it): 409 Conflict, rather than the 403 the Icecast route
answers (what Icecast's clients expect there), so that a WHIP client can tell it from a
refused right; a mount held by a WHIP offer not connected yet says so, and how long until it
is given up. One exception: a mount held by a WHIP session whose peer connection has not
connected yet is given to a new offer **of the same caller** (the same principal, or the
source password both times), the old session ended ("replaced by a new offer"), so that a
client that crashed after its POST, or retries, is not locked out for
``CONNECT_TIMEOUT_S``; anyone else still gets 409. Past ``[webrtc] max_sources`` (WHIP) or
``max_viewers`` (WHEP), limits of their own: 503 with ``Retry-After``. Errors are JSON
``{"error": message}`` in the language of ``Accept-Language``, as the API's.

A WHIP session made with the console's cookie belongs to that login (``login_id``): its
sign-out (``POST /api/v1/logout``) ends it (``WebRtc.end_login``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web
from multidict import CIMultiDict

from loa.api.errors import ERROR_STATUS, Statuses, answer_error
from loa.api.middleware import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE
from loa.api.resource import ApiError, client_address, read_body, server_of
from loa.control.auth import Principal, Right, RightError, Scope, ScopeError
from loa.core.i18n import N_, Message
from loa.core.zones import ZoneError
from loa.playout.inputs.push import MOUNT_NAME, Mount, MountBusy, MountError
from loa.playout.webrtc import WebRtcError, WebRtcSettings
from loa.playout.webrtc.session import PeerSession
from loa.playout.webrtc.whep import WhepSession
from loa.playout.webrtc.whip import WhipSession

if TYPE_CHECKING:
    from loa.app import LoaServer

log = logging.getLogger(__name__)

SDP = "application/sdp"
SDP_FRAG = "application/trickle-ice-sdpfrag"
MAX_SDP_BYTES = 64 * 1024
RETRY_AFTER_S = 5
# what each resource takes (``Allow``): GET and HEAD answer 204 with no content (RFC 9725
# §4.1: an endpoint or session has no representation, and MUST answer GET with a 2xx)
ENDPOINT_METHODS = "GET, HEAD, POST, OPTIONS"
SESSION_METHODS = "GET, HEAD, PATCH, DELETE, OPTIONS"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="Loa"'}
EXPOSED = "Location, ETag, Link"
ALLOWED_HEADERS = f"Authorization, Content-Type, If-Match, {CSRF_HEADER}"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refusal(ApiError):
    """A WHIP/WHEP request refused: ``status``, a msgid and its fields, and the headers the
    answer carries (``WWW-Authenticate``, ``Retry-After``, ``Allow``)."""

    def __init__(self, status: int, message: str | Message, /, *,
                 headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None, **fields: Any) -> None:
        super().__init__(status, message, extra=extra, **fields)
        self.headers = headers or {}


# what WHIP and WHEP answer beside the API's table: a busy mount is a conflict for a WebRTC
# client (an Icecast client expects 403 there), one mount too many is refused, and a session
# that cannot be made says its own status
WEBRTC_STATUS: Statuses = (
    (MountBusy, 409),
    (MountError, 403),
    (WebRtcError, lambda exc: exc.status if isinstance(exc, WebRtcError) else 400),
    *ERROR_STATUS,
)


def routes() -> list[web.RouteDef]:
    """The WHIP and WHEP resources, for the server's aiohttp application. Each resource's
    ``*`` route comes after its own methods (aiohttp tries a resource's routes in order) and
    answers the others (``_other_methods``); a path under ``/whip`` or ``/whep`` that names
    no resource is answered last (``_no_such``): JSON, as every other refusal here, where the
    router would answer 404 and 405 in plain text."""
    whip_unknown = _no_such("WHIP", "/whip/<mount>", "/whip/<mount>/<id>")
    whep_unknown = _no_such("WHEP", "/whep/zones/<zone>", "/whep/zones/<zone>/<id>")
    return [
        web.post("/whip/{mount}", whip_post),
        web.options("/whip/{mount}", endpoint_options),
        web.route("*", "/whip/{mount}", _other_methods(ENDPOINT_METHODS, _whip_endpoint)),
        web.delete("/whip/{mount}/{session}", whip_delete),
        web.patch("/whip/{mount}/{session}", whip_patch),
        web.options("/whip/{mount}/{session}", session_options),
        web.route("*", "/whip/{mount}/{session}", _other_methods(SESSION_METHODS, _whip_session)),
        web.route("*", "/whip", whip_unknown),
        web.route("*", "/whip/{path:.*}", whip_unknown),
        web.post("/whep/zones/{zone}", whep_post),
        web.options("/whep/zones/{zone}", endpoint_options),
        web.route("*", "/whep/zones/{zone}", _other_methods(ENDPOINT_METHODS, _whep_endpoint)),
        web.delete("/whep/zones/{zone}/{session}", whep_delete),
        web.patch("/whep/zones/{zone}/{session}", whep_patch),
        web.options("/whep/zones/{zone}/{session}", session_options),
        web.route("*", "/whep/zones/{zone}/{session}",
                  _other_methods(SESSION_METHODS, _whep_session_of)),
        web.route("*", "/whep", whep_unknown),
        web.route("*", "/whep/{path:.*}", whep_unknown),
    ]


# CORS


def cors_headers(request: web.Request, settings: WebRtcSettings) -> dict[str, str]:
    """The CORS headers of an answer to ``request``: none without an ``Origin``, or for an
    origin not allowed; ``*`` when every origin is; else the origin itself (with ``Vary``)."""
    origin = request.headers.get(hdrs.ORIGIN)
    if not origin:
        return {}
    allowed = settings.cors_origins
    if "*" in allowed:
        found = {"Access-Control-Allow-Origin": "*"}
    elif origin in allowed:
        found = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    else:
        return {}
    found["Access-Control-Expose-Headers"] = EXPOSED
    return found


def _preflight(request: web.Request, methods: str, extra: dict[str, str]) -> web.Response:
    headers = {"Allow": methods, **extra, **cors_headers(request, server_of(request).webrtc
                                                          .settings)}
    if "Access-Control-Allow-Origin" in headers:
        headers.update({"Access-Control-Allow-Methods": methods,
                        "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                        "Access-Control-Max-Age": "600"})
    return web.Response(status=204, headers=headers)


async def endpoint_options(request: web.Request) -> web.Response:
    """``OPTIONS`` on ``/whip/<mount>`` or ``/whep/zones/<zone>``: 204, what it takes, and the
    CORS preflight's answer."""
    return _preflight(request, ENDPOINT_METHODS, {"Accept-Post": SDP})


async def session_options(request: web.Request) -> web.Response:
    """``OPTIONS`` on a session URL: 204, what it takes, and the CORS preflight's answer."""
    return _preflight(request, SESSION_METHODS, {"Accept-Patch": SDP_FRAG})


def _answered(handler: Handler) -> Handler:
    """Answer a refusal (and the domain errors the handlers let through) as JSON in the
    caller's language, with the CORS headers every answer carries."""

    @functools.wraps(handler)
    async def answer(request: web.Request) -> web.StreamResponse:
        cors = cors_headers(request, server_of(request).webrtc.settings)
        try:
            response = await handler(request)
        except Exception as exc:  # one table of answers with the API's, and this surface's
            response = await answer_error(request, exc, WEBRTC_STATUS)
        response.headers.update(cors)
        return response

    return answer


def _other_methods(methods: str, found: Callable[[web.Request], object]) -> Handler:
    """The answer of a WHIP/WHEP resource that takes ``methods`` (its ``Allow``) to a method
    its own routes do not: GET and HEAD, 204 with no content once ``found(request)`` has
    checked the resource exists (it raises a 404 Refusal or ZoneError otherwise), as RFC
    9725 §4.1 and the WHEP draft ask; anything else 405 with ``Allow`` (RFC 9110 §15.5.6).
    Both JSON in the caller's language (``answer_error``), as the API's."""
    allowed = {method.strip() for method in methods.split(",")}

    @_answered
    async def other_method(request: web.Request) -> web.StreamResponse:
        if request.method not in (hdrs.METH_GET, hdrs.METH_HEAD):
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        found(request)
        return web.Response(status=204)

    return other_method


def _no_such(protocol: str, endpoint: str, session: str) -> Handler:
    """The answer to any request under ``/whip`` or ``/whep`` (``protocol``) that names none
    of its resources: 404, naming the shapes of its ``endpoint`` and ``session`` URLs."""

    @_answered
    async def no_such(request: web.Request) -> web.StreamResponse:
        raise Refusal(404, N_("no such {protocol} path: {method} {path} (an offer is posted "
                              "to {endpoint}; a session's URL is {session})"),
                      protocol=protocol, method=request.method, path=request.path,
                      endpoint=endpoint, session=session)

    return no_such


# credentials


def _bearer(request: web.Request) -> str | None:
    """The bearer token of the request; None when it has no ``Authorization``; 401 for
    another scheme or an empty token."""
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Refusal(401, N_("missing or invalid bearer token"), headers=CHALLENGE)
    return token


def login_id(cookie: str) -> str:
    """The id of a console login, from its cookie's value: the cookie's SHA-256 (hex), what
    the accounts key the session by; the cookie itself is never kept beside a session."""
    return hashlib.sha256(cookie.encode()).hexdigest()


def _principal(request: web.Request, token: str | None) -> tuple[Principal | None, str | None]:
    """Who the bearer token or the session cookie speaks for, and the cookie's login
    (``login_id``; None for a bearer token): (None, None) when neither is valid, or there is
    none. A cookie's request that changes something needs its CSRF token (403)."""
    server = server_of(request)
    if token is not None:
        return (server.tokens.authenticate(token) or server.accounts.authenticate_token(token),
                None)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None, None
    session = server.accounts.session(cookie)
    principal = server.accounts.principal(session.username) if session is not None else None
    if session is None or principal is None:
        return None, None
    if request.method not in SAFE_METHODS and \
            not server.accounts.csrf_ok(session, request.headers.get(CSRF_HEADER, "")):
        raise Refusal(403, N_("a change made with the session cookie needs the {header} "
                              "header the login answered (csrf_token)"), header=CSRF_HEADER)
    return principal, login_id(cookie)


@dataclass(frozen=True, slots=True)
class WhipCaller:
    """Who a WHIP request acts as: ``principal`` with the operate right (``name`` its name),
    or the mount's source password (``principal`` None, ``name`` "source"); ``login_id``: the
    console login of its cookie (None for a bearer token)."""

    name: str
    principal: Principal | None = None
    login_id: str | None = None

    @property
    def by_password(self) -> bool:
        """Whether it speaks with the mount's source password."""
        return self.principal is None


def _whip_caller(request: web.Request, mount: str) -> WhipCaller:
    """Who a WHIP request acts as (for the log, the audit, and the session's owner). 401
    without valid credentials, 403 (RightError) for a principal without the operate right."""
    server = server_of(request)
    token = _bearer(request)
    principal, login = _principal(request, token)
    if principal is None:
        password = server.mounts.password_for(mount) if MOUNT_NAME.match(mount) else ""
        if token is not None and password and \
                hmac.compare_digest(token.encode(), password.encode()):
            return WhipCaller("source")
        raise _unauthorized(token)
    if not principal.may(Right.OPERATE):
        raise RightError(Right.OPERATE.value)
    return WhipCaller(principal.name, principal, login)


def check_takers(server: LoaServer, mount: Mount, principal: Principal) -> None:
    """Raise ScopeError (403) unless every zone that takes ``mount`` now (an engine request
    for its programme: a live take, or a live request) lies in ``principal``'s scope: a
    source is heard wherever its mount is taken. The error names the mount, the first zone
    outside and the scope."""
    scope = Scope(server.zones, principal.scope)
    for req in server.engine.requests_for(mount.programme):
        if not scope.contains(req.zone_id):
            raise ScopeError(N_("mount {mount!r} is taken by zone {zone!r}, outside your "
                                "scope ({scope})"), scope=scope.label, mount=mount.name,
                             zone=req.zone_id)


def check_free(server: LoaServer, mount: Mount) -> None:
    """Raise MountBusy (409) when a source is live on ``mount`` (``Mounts.check_free``), or
    a WHIP offer holds it that has not connected yet (saying how long until it is given
    up)."""
    held = mount.session
    if isinstance(held, WhipSession) and not held.ended and not held.connected:
        raise MountBusy(N_("mount {mount!r} is busy: a WebRTC offer for this mount is being "
                           "connected; it is given up after {seconds} s if it does not "
                           "connect"), mount=mount.name,
                        seconds=max(1, math.ceil(held.connect_left_s)))
    server.mounts.check_free(mount)


def _owner_refused(resource: str) -> Refusal:
    message = N_("this WHIP session was started by someone else: only they, or an admin, "
                 "may change or end it") if resource == "whip" else \
        N_("this WHEP session was started by someone else: only they, or an admin, may "
           "change or end it")
    return Refusal(403, message, extra={"refused": "owner"})


def check_whip_owner(server: LoaServer, session: WhipSession, caller: WhipCaller) -> None:
    """Whether ``caller`` may change or end ``session``: its maker (``WhipSession.made_by``),
    or an admin whose scope holds every zone taking the mount (ScopeError otherwise, as
    ``check_takers``); else 403 ``refused: owner``."""
    if session.made_by(caller.name, caller.by_password):
        return
    principal = caller.principal
    if principal is None or Right.ADMIN not in principal.rights:
        raise _owner_refused("whip")
    check_takers(server, session.mount, principal)


def _whep_caller(request: web.Request, zone_id: str) -> Principal:
    """Who a WHEP request acts as: a principal whose scope contains the zone. 401 without
    valid credentials, 403 (ScopeError) outside the scope."""
    server = server_of(request)
    principal, _ = _principal(request, _bearer(request))
    if principal is None:
        raise _unauthorized(request.headers.get(hdrs.AUTHORIZATION))
    Scope(server.zones, principal.scope).check(zone_id)
    return principal


def _unauthorized(given: str | None) -> Refusal:
    if given:
        return Refusal(401, N_("missing or invalid bearer token"), headers=CHALLENGE)
    return Refusal(401, N_("this resource needs credentials: Authorization: Bearer <token> "
                           "(or the console's session)"), headers=CHALLENGE)


# the offer


async def _offer(request: web.Request) -> str:
    """The SDP offer of a POST: 415 unless ``application/sdp``, 413 over 64 KiB, 400 unless
    UTF-8."""
    if request.content_type != SDP:
        raise Refusal(415, N_("the offer must be sent as {type}"), type=SDP)
    if request.content_length and request.content_length > MAX_SDP_BYTES:
        raise Refusal(413, N_("an SDP offer is limited to {kib} KiB"), kib=MAX_SDP_BYTES >> 10)
    data = await read_body(request, MAX_SDP_BYTES)
    if len(data) > MAX_SDP_BYTES:
        raise Refusal(413, N_("an SDP offer is limited to {kib} KiB"), kib=MAX_SDP_BYTES >> 10)
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise Refusal(400, N_("the offer is not UTF-8 text")) from None


def _created(server: LoaServer, session: PeerSession, answer: str, location: str
             ) -> web.Response:
    """201 with the answer, the session URL, its ETag and the ICE servers' links."""
    headers: CIMultiDict[str] = CIMultiDict({"Location": location, "ETag": session.etag})
    for link in ice_links(server.webrtc.settings):
        headers.add("Link", link)
    return web.Response(status=201, text=answer, content_type=SDP, headers=headers)


def ice_links(settings: WebRtcSettings) -> list[str]:
    """A ``Link`` header value for each ICE server (RFC 9725 §4.6): ``<url>;
    rel="ice-server"``, with a TURN server's ``username``, ``credential`` and
    ``credential-type="password"``."""
    links = []
    for ice in settings.ice_servers:
        link = f'<{ice.url}>; rel="ice-server"'
        if ice.username:
            link += (f'; username="{_quoted(ice.username)}"; '
                     f'credential="{_quoted(ice.credential)}"; credential-type="password"')
        links.append(link)
    return links


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _full(server: LoaServer, resource: str) -> Refusal:
    """503 with ``Retry-After``: the limit of ``resource`` ("whip", "whep") is reached."""
    limit = server.webrtc.settings.limit(resource)
    message = N_("too many WHIP sources at once (at most {limit}): try again later") \
        if resource == "whip" else \
        N_("too many WHEP viewers at once (at most {limit}): try again later")
    return Refusal(503, message, headers={"Retry-After": str(RETRY_AFTER_S)}, limit=limit)


async def _negotiate(server: LoaServer, session: WhipSession | WhepSession, offer: str) -> str:
    """Answer ``offer`` for ``session`` (aiortc loaded first, beside the loop, once); the
    session is registered in the place reserved for it, or ended if that fails."""
    webrtc = server.webrtc
    try:
        peer_module = await webrtc.ready()
        answer = await session.negotiate(peer_module, offer)
    except BaseException:
        webrtc.release(session.resource)
        session.end("negotiation failed", cut=True)
        raise
    if session.ended:  # its connection failed at once, or was replaced: no place to keep
        webrtc.release(session.resource)
    else:
        webrtc.add(session)
    return answer


# WHIP


@_answered
async def whip_post(request: web.Request) -> web.StreamResponse:
    """``POST /whip/<mount>``: a WHIP source for the mount (see the module)."""
    server = server_of(request)
    name = request.match_info["mount"]
    if request.content_type != SDP:
        raise Refusal(415, N_("the offer must be sent as {type}"), type=SDP)
    caller = _whip_caller(request, name)
    _whip_endpoint(request)
    mount = server.mounts.get(name)
    if caller.principal is not None:
        check_takers(server, mount, caller.principal)
    if _unconnected_of(mount, caller) is None:
        check_free(server, mount)  # before any work (asked again after it)
    offer = await _offer(request)
    held = _unconnected_of(mount, caller)  # asked again: the body took a while
    if held is not None:
        log.info("WHIP source on /live/%s: session %s (not connected) replaced by a new offer "
                 "of %s", name, held.id, caller.name)
        server.counters.inc("sources_replaced", mount=name)
        held.end("replaced by a new offer", cut=True)
    else:
        check_free(server, mount)
    if not server.webrtc.reserve("whip"):
        raise _full(server, "whip")
    peer = client_address(request)
    try:
        session = WhipSession(server.webrtc, mount, peer, server.clock, server.counters,
                              actor=caller.name, by_password=caller.by_password,
                              login_id=caller.login_id)
        await server.mounts.attach(mount, session)
    except BaseException:
        server.webrtc.release("whip")
        raise
    answer = await _negotiate(server, session, offer)
    log.info("WHIP source %s on /live/%s (as %s): session %s", peer, name, caller.name,
             session.id)
    server.store.audit(caller.name, "source.whip", name, {"session": session.id},
                       address=peer)
    return _created(server, session, answer, f"/whip/{name}/{session.id}")


def _unconnected_of(mount: Mount, caller: WhipCaller) -> WhipSession | None:
    """The WHIP session holding ``mount`` that a new offer of ``caller`` replaces: made by
    the same caller, its peer connection not connected yet; None if there is none."""
    held = mount.session
    if isinstance(held, WhipSession) and held.replaceable_by(caller.name, caller.by_password):
        return held
    return None


def _whip_endpoint(request: web.Request) -> None:
    """Check that the URL names a WHIP endpoint: a mount's name (the mount is made by its
    first source); a 404 Refusal otherwise."""
    name = request.match_info["mount"]
    if not MOUNT_NAME.match(name):
        raise Refusal(404, N_("mount name {mount!r} must be 1-64 of A-Z a-z 0-9 . _ -"),
                      mount=name)


def _whip_session(request: web.Request) -> WhipSession:
    """The WHIP session of the URL, whoever asks: a 404 Refusal for no such session."""
    session = server_of(request).webrtc.get("whip", request.match_info["session"])
    if not isinstance(session, WhipSession) or session.mount.name != request.match_info["mount"]:
        raise Refusal(404, N_("no such WHIP session (it has ended, or never was)"))
    return session


@_answered
async def whip_delete(request: web.Request) -> web.StreamResponse:
    """``DELETE /whip/<mount>/<id>``: the source ends; what it sent plays out, then the
    zones that took the mount fall back. 200; 404 for no such session."""
    caller = _whip_caller(request, request.match_info["mount"])
    session = _whip_session(request)
    check_whip_owner(server_of(request), session, caller)
    session.end("ended by its client (DELETE)" if session.made_by(caller.name,
                                                                  caller.by_password)
                else f"ended by {caller.name} (DELETE)")
    return web.Response(status=200)


@_answered
async def whip_patch(request: web.Request) -> web.StreamResponse:
    """``PATCH /whip/<mount>/<id>``: trickled candidates (see the module)."""
    caller = _whip_caller(request, request.match_info["mount"])
    session = _whip_session(request)
    check_whip_owner(server_of(request), session, caller)
    return await _patch(request, session)


# WHEP


@_answered
async def whep_post(request: web.Request) -> web.StreamResponse:
    """``POST /whep/zones/<zone>``: a viewer of the zone (see the module)."""
    server = server_of(request)
    zone_id = request.match_info["zone"]
    if request.content_type != SDP:
        raise Refusal(415, N_("the offer must be sent as {type}"), type=SDP)
    actor = _whep_caller(request, zone_id).name
    server.zones.get(zone_id)  # ZoneError: 404
    channel = server.engine.channels.get(zone_id)
    if channel is None:
        raise ZoneError(N_("unknown zone {zone!r}"), zone=zone_id)
    offer = await _offer(request)
    if not server.webrtc.reserve("whep"):
        raise _full(server, "whep")
    peer = client_address(request)
    session = WhepSession(server.webrtc, channel, peer, server.clock, server.counters,
                          actor=actor)
    answer = await _negotiate(server, session, offer)
    log.info("WHEP viewer %s of zone %s (as %s): session %s", peer, zone_id, actor, session.id)
    return _created(server, session, answer, f"/whep/zones/{zone_id}/{session.id}")


def _whep_endpoint(request: web.Request) -> None:
    """Check that the URL names a WHEP endpoint: a zone's (ZoneError, 404, otherwise)."""
    server_of(request).zones.get(request.match_info["zone"])


def _whep_session_of(request: web.Request) -> WhepSession:
    """The WHEP session of the URL, whoever asks: a 404 Refusal for no such session."""
    session = server_of(request).webrtc.get("whep", request.match_info["session"])
    if not isinstance(session, WhepSession) or session.zone_id != request.match_info["zone"]:
        raise Refusal(404, N_("no such WHEP session (it has ended, or never was)"))
    return session


def _whep_session(request: web.Request) -> WhepSession:
    """The WHEP session of the URL, for its owner or an admin: 401 without credentials,
    403 outside the zone's scope or for another caller, 404 for no such session."""
    principal = _whep_caller(request, request.match_info["zone"])
    session = _whep_session_of(request)
    if session.actor != principal.name and Right.ADMIN not in principal.rights:
        raise _owner_refused("whep")
    return session


@_answered
async def whep_delete(request: web.Request) -> web.StreamResponse:
    """``DELETE /whep/zones/<zone>/<id>``: the viewer ends. 200; 404 for no such session."""
    _whep_session(request).end("ended by its client (DELETE)")
    return web.Response(status=200)


@_answered
async def whep_patch(request: web.Request) -> web.StreamResponse:
    """``PATCH /whep/zones/<zone>/<id>``: trickled candidates (see the module)."""
    return await _patch(request, _whep_session(request))


# trickle ICE


async def _patch(request: web.Request, session: PeerSession) -> web.StreamResponse:
    """Trickle ICE on a session (RFC 9725 §4.3.1): 204 with the session's ``ETag`` once the
    candidates are added; 415 for another type, 428 without ``If-Match``, 412 for one that
    does not name the session's ETag, 422 for an ICE restart (``If-Match: *``, or new ICE
    credentials in the fragment: ``peer.add_candidates``)."""
    if request.content_type != SDP_FRAG:
        raise Refusal(415, N_("trickled candidates must be sent as {type}"), type=SDP_FRAG)
    match = request.headers.get(hdrs.IF_MATCH, "").strip()
    if not match:
        raise Refusal(428, N_("a PATCH must name the session's ETag in If-Match (RFC 9725)"))
    if match == "*":  # what a client asking for an ICE restart sends
        raise Refusal(422, N_("this session takes trickled candidates but cannot restart "
                              "ICE: make a new session"))
    if session.etag not in (tag.strip() for tag in match.split(",")):
        raise Refusal(412, N_("If-Match does not name this session's ETag"))
    data = await read_body(request, MAX_SDP_BYTES)
    if len(data) > MAX_SDP_BYTES:
        raise Refusal(413, N_("an SDP offer is limited to {kib} KiB"), kib=MAX_SDP_BYTES >> 10)
    peer_module = await server_of(request).webrtc.ready()
    if session.pc is None or session.ended:
        raise Refusal(404, N_("no such WebRTC session (it has ended)"))
    await peer_module.add_candidates(session.pc, data.decode(errors="replace"))
    return web.Response(status=204, headers={"ETag": session.etag})
