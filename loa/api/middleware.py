"""The front of every request aiohttp serves: who is calling on ``/api/`` and ``/metrics``
(a bearer token, or a browser session's cookie with its CSRF token), the throttle on wrong
credentials, and no keep-alive. (Errors are answered by ``loa.api.errors.error_middleware``;
the refusals made here, 401, 403 and 429, are said as it says them, in the language of the
request's ``Accept-Language``.)

Credentials, in order: ``Authorization: Bearer <token>`` (the environment's admin token, the
config's ``[[tokens]]``, or an account's personal token); else the ``loa_session`` cookie of
a login (``loa.api.sessions``). CSRF protection is the synchronizer-token pattern: the
session keeps the CSRF token its login answered, and every request made with the cookie whose
method changes something (anything but GET, HEAD and OPTIONS) must carry it in the
``X-CSRF-Token`` header, or it is refused (403) before its handler runs. A bearer token needs
no CSRF token: a browser never sends one by itself. The cookie itself is HttpOnly,
SameSite=Strict, and Secure when the port speaks TLS.
"""

from __future__ import annotations

import math

from aiohttp import hdrs, web

from loa.api.errors import error_response, language_of
from loa.api.resource import (
    API_PATHS,
    PRINCIPAL_KEY,
    Handler,
    client_address,
    server_of,
)
from loa.control.audit import AUDIT_SOURCE, AuditSource
from loa.control.auth import Principal
from loa.core.clock import NS_PER_S
from loa.core.i18n import N_, Message, translate

SESSION_COOKIE = "loa_session"
CSRF_HEADER = "X-CSRF-Token"
LOGIN_PATH = "/api/v1/login"  # the one API path that takes no credentials: it makes them
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# What takes credentials through aiohttp: the API's bearer tokens, Icecast's admin (an
# encoder's metadata update, with the source password), WHIP and WHEP (``loa.api.whip``)
THROTTLED_PATHS = (*API_PATHS, "/admin/", "/whip/", "/whep/")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """On ``/api/`` and ``/metrics``: find the caller (see the module docstring) and put their
    Principal on the request, or answer 401 (with ``WWW-Authenticate``), or 403 for a
    cookie's state-changing request without its CSRF token. Every request there (the login
    too) is served with its client's address as the source of its audit entries."""
    if not request.path.startswith(API_PATHS):
        return await handler(request)
    if request.path != LOGIN_PATH:
        found = _caller(request)
        if isinstance(found, web.Response):
            return found
        request[PRINCIPAL_KEY] = found
    token = AUDIT_SOURCE.set(AuditSource(client_address(request)))
    try:
        return await handler(request)
    finally:
        AUDIT_SOURCE.reset(token)


def _caller(request: web.Request) -> Principal | web.Response:
    """The request's principal, or the answer refusing it."""
    server = server_of(request)
    if hdrs.AUTHORIZATION in request.headers:
        scheme, _, token = request.headers[hdrs.AUTHORIZATION].partition(" ")
        token = token.strip()
        principal = None
        if scheme.lower() == "bearer" and token:
            principal = server.tokens.authenticate(token) or \
                server.accounts.authenticate_token(token)
        return principal if principal is not None else _unauthorized(
            request, N_("missing or invalid bearer token"))
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return _unauthorized(request, N_("missing or invalid bearer token (or log in: POST "
                                         "{login})"), login=LOGIN_PATH)
    session = server.accounts.session(cookie)
    principal = server.accounts.principal(session.username) if session is not None else None
    if session is None or principal is None:
        return _unauthorized(request, N_("your session has ended (logged out, or idle too "
                                         "long): log in again (POST {login})"),
                             login=LOGIN_PATH)
    if request.method not in SAFE_METHODS and \
            not server.accounts.csrf_ok(session, request.headers.get(CSRF_HEADER, "")):
        return error_response(request, 403, Message(
            N_("a change made with the session cookie needs the {header} header the login "
               "answered (csrf_token)"), {"header": CSRF_HEADER}))
    return principal


def _unauthorized(request: web.Request, message: str, /, **fields: object) -> web.Response:
    """401 with ``WWW-Authenticate``: ``message`` (a msgid, its fields) in the request's
    language."""
    return error_response(request, 401, Message(message, fields),
                          headers={"WWW-Authenticate": 'Bearer realm="Loa"'})


@web.middleware
async def throttle_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Wrong credentials, throttled per client address (``loa.core.throttle``, the account
    the source route uses too). On the API and Icecast's admin, a request that carries
    credentials from an address at its limit of held failures is answered 429 with
    ``Retry-After`` and not examined; a 401 to one that carried credentials counts as a
    failure, and its answer is held as long as the throttle says. A request without
    credentials, and any success, is never held."""
    if not request.path.startswith(THROTTLED_PATHS) or hdrs.AUTHORIZATION not in request.headers:
        return await handler(request)
    server = server_of(request)
    throttle = server.throttle
    key = throttle.key_for(request.remote or "", request.headers.get("X-Forwarded-For", ""))
    if wait_s := throttle.blocked_for_s(key):
        message = N_("too many wrong credentials from your address: try again later")
        headers = {"Retry-After": str(math.ceil(wait_s))}
        if request.path.startswith(API_PATHS):
            return error_response(request, 429, Message(message), headers=headers)
        return web.Response(status=429, text=translate(language_of(request), message),
                            headers=headers)
    resp = await handler(request)
    if resp.status != 401:
        return resp
    hold_s = throttle.failed(key)
    if hold_s > 0:
        try:
            await server.clock.sleep_until(server.clock.now_ns() + int(hold_s * NS_PER_S))
        finally:
            throttle.done(key)  # answered, or the client left (this task cancelled)
    return resp


async def close_after_response(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every answer aiohttp gives closes its connection, whatever
    the path or status (aiohttp's own 404, 405 and 413 included), but for an accepted
    WebSocket. So every request arrives on a fresh connection through the front door, which
    times its head and routes streams and sources before aiohttp sees anything. (aiohttp's
    answers to requests it cannot parse close the connection by themselves.)"""
    if response.status == 101:
        return
    response.force_close()
    response.headers[hdrs.CONNECTION] = "close"
