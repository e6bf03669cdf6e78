"""The front of every request: the bearer token on ``/api/`` and ``/metrics``, and no
keep-alive. (Errors are answered by ``loa.api.errors.error_middleware``.)"""

from __future__ import annotations

from aiohttp import web

from loa.api.resource import API_PATHS, PRINCIPAL_KEY, Handler, server_of


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
async def close_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No keep-alive: every request arrives on a fresh connection through the front door,
    which routes streams and sources before aiohttp ever sees them."""
    resp = await handler(request)
    if not isinstance(resp, web.WebSocketResponse):
        resp.force_close()
    return resp
