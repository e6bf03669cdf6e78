"""The front of every request aiohttp serves: the bearer token on ``/api/`` and ``/metrics``,
the throttle on wrong credentials, and no keep-alive. (Errors are answered by
``loa.api.errors.error_middleware``.)"""

from __future__ import annotations

import math

from aiohttp import hdrs, web

from loa.api.resource import API_PATHS, PRINCIPAL_KEY, Handler, server_of
from loa.core.clock import NS_PER_S

# What takes credentials through aiohttp: the API's bearer tokens, Icecast's admin (an
# encoder's metadata update, with the source password)
THROTTLED_PATHS = (*API_PATHS, "/admin/")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require ``Authorization: Bearer <token>`` on ``/api/`` and ``/metrics`` (401 with
    ``WWW-Authenticate`` otherwise) and put the caller's Principal on the request."""
    if not request.path.startswith(API_PATHS):
        return await handler(request)
    server = server_of(request)
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
        message = "too many wrong credentials from your address: try again later"
        headers = {"Retry-After": str(math.ceil(wait_s))}
        if request.path.startswith(API_PATHS):
            return web.json_response({"error": message}, status=429, headers=headers)
        return web.Response(status=429, text=message, headers=headers)
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
