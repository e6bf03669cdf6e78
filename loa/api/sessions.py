"""Browser sessions (issue 14): log in with a username and password, log out, and ask who one
is. The login sets the ``loa_session`` cookie (HttpOnly, SameSite=Strict, Secure when the
port speaks TLS, no expiry: it ends with the browser, or after the idle timeout) and answers
the session's CSRF token, which every state-changing request made with the cookie sends back
in ``X-CSRF-Token`` (``loa.api.middleware``; the synchronizer-token pattern).

Logins are limited per username and per client address (``Accounts.log_in``): a refused one
is answered 429 with ``Retry-After`` and a message saying for whom and how long; a wrong one
401, without saying whether the username exists. Both are audited, as is every login."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from aiohttp import web

from loa.api.errors import error_response
from loa.api.middleware import SESSION_COOKIE
from loa.api.resource import (
    ApiError,
    client_address,
    json_response,
    principal_of,
    read_json,
    server_of,
)
from loa.api.users import user_view
from loa.api.whip import login_id
from loa.control.accounts import LoginFailed, LoginRefused, UnknownAccount
from loa.control.auth import ALL_ZONES, role_names

if TYPE_CHECKING:
    from loa.app import LoaServer

routes = web.RouteTableDef()


@routes.post("/api/v1/login")
async def login(request: web.Request) -> web.Response:
    """``{"username", "password"}``: 200 with the user, the session's ``csrf_token`` and its
    ``idle_timeout_s``, and the session cookie; 401 for a wrong username or password, 429
    (``Retry-After``) while too many wrong ones for the username or from the address are
    not yet forgotten."""
    body = await read_json(request)
    s = server_of(request)
    username = str(body.get("username") or "")[:64]
    address = client_address(request)
    key = s.throttle.key_for(request.remote or "", request.headers.get("X-Forwarded-For", ""))
    try:
        user = await s.accounts.log_in(username, body.get("password"), key)
    except LoginRefused as exc:
        s.store.audit(username or "-", "login.refused", username, zone=_zone(s, username),
                      address=address)
        return error_response(request, 429, exc.message,
                              headers={"Retry-After": str(max(1, math.ceil(exc.wait_s)))})
    except LoginFailed as exc:
        s.store.audit(username or "-", "login.failed", username, zone=_zone(s, username),
                      address=address)
        raise ApiError(401, exc.message) from None
    cookie, session = s.accounts.open_session(user, address)
    s.store.audit(user.username, "login", user.username, zone=_zone(s, user.username),
                  address=address)
    resp = json_response({"user": user_view(request, user), "csrf_token": session.csrf_token,
                          "idle_timeout_s": s.config.sessions.idle_timeout_s})
    resp.set_cookie(SESSION_COOKIE, cookie, path="/", httponly=True, samesite="Strict",
                    secure=request.secure or s.config.tls.enabled)
    return resp


def _zone(server: LoaServer, username: str) -> str | None:
    """Where a login is audited: the account's scope (None for every zone, or no account),
    so that the admins of that scope see it."""
    try:
        scope = server.accounts.get(username).scope
    except UnknownAccount:
        return None
    return None if scope == ALL_ZONES else scope


@routes.post("/api/v1/logout")
async def logout(request: web.Request) -> web.Response:
    """End the session of the cookie (with its CSRF token, as every change) and clear the
    cookie; with a bearer token there is nothing to end. The WHIP sources made with that
    login end too (``WebRtc.end_login``): a studio signed out is off the air."""
    s = server_of(request)
    cookie = request.cookies.get(SESSION_COOKIE, "") \
        if "Authorization" not in request.headers else ""
    ended = s.accounts.close_session(cookie)
    if ended is not None:
        s.webrtc.end_login(login_id(cookie), "its console login signed out")
        s.store.audit(ended.username, "logout", ended.username)
    resp = json_response({"logged_out": ended is not None})
    resp.del_cookie(SESSION_COOKIE, path="/")
    return resp


@routes.get("/api/v1/session")
async def whoami(request: web.Request) -> web.Response:
    """Who the caller is: name, account (None for a configured token) and its
    ``display_name`` (with an account), roles, rights and scope (``*``: every zone); with the
    session cookie, its ``csrf_token`` too (a page reloaded has lost it)."""
    p = principal_of(request)
    out: dict[str, object] = {
        "name": p.name, "user": p.user, "roles": role_names(p.roles),
        "rights": sorted(r.value for r in p.rights), "scope": p.scope or ALL_ZONES}
    if p.user and server_of(request).accounts.principal(p.user) is not None:
        # the account's display name, for the console's header
        out["display_name"] = user_view(request, server_of(request).accounts.get(p.user))[
            "display_name"]  # the first admin's in the caller's language
    if "Authorization" not in request.headers:
        session = server_of(request).accounts.session(request.cookies.get(SESSION_COOKIE, ""))
        if session is not None:
            out["csrf_token"] = session.csrf_token
    return json_response(out)
