"""Accounts (issue 14): users and their personal API tokens.

Only admins manage users, and only within their scope: the users whose scope lies in theirs,
given a scope that lies in theirs (``*``, every zone, to an admin of the whole tree). A user
may see their own account, change their own display name and password (giving the current
one), and make, list and revoke their own tokens. A token is answered once, at its making;
only its SHA-256 is kept.

- ``POST /api/v1/users`` ``{"username", "password", "role", "scope", "display_name"}``
  (``role``: one role, or a list: ``["operator", "alert"]``)
- ``GET /api/v1/users``, ``GET|PATCH|DELETE /api/v1/users/{username}``
- ``POST|GET /api/v1/users/{username}/tokens`` (``{"name"}``), ``DELETE …/tokens/{id}``
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from loa.api.audit import Changed, audited
from loa.api.errors import language_of
from loa.api.resource import (
    ApiError,
    json_response,
    principal_of,
    read_json,
    require,
    scope_of,
    scoped,
    scoped_all,
    server_of,
)
from loa.control.accounts import FIRST_ADMIN_NAME, User
from loa.control.auth import ALL_ZONES, Right, Scope
from loa.core.i18n import N_, Message, translate

routes = web.RouteTableDef()

PATCHABLE = ("display_name", "password", "role", "roles", "scope")


def holds(scope: Scope, account_scope: str) -> bool:
    """Whether an account of ``account_scope`` lies in ``scope``."""
    return scope.covers_all() if account_scope == ALL_ZONES else scope.contains(account_scope)


def scoped_account(request: web.Request, scope: str) -> None:
    """Raise ScopeError unless an account of ``scope`` lies in the caller's scope."""
    if scope == ALL_ZONES:
        scoped_all(request, Message(N_("an account of every zone")))
    else:
        scoped(request, scope)


def scoped_new_scope(request: web.Request, scope: str) -> None:
    """``scoped_account`` for a scope a body gives an account: one that is no zone is left
    to the accounts, which refuse it (400, saying what a scope is)."""
    if scope == ALL_ZONES or scope in server_of(request).zones:
        scoped_account(request, scope)


def admin_over(request: web.Request, user: User) -> None:
    """The caller is an admin whose scope holds the user's (403 otherwise)."""
    require(request, Right.ADMIN)
    scoped_account(request, user.scope)


def self_or_admin(request: web.Request, user: User) -> None:
    """The caller is the user, or an admin over them (403 otherwise)."""
    if principal_of(request).user != user.username:
        admin_over(request, user)
    else:
        scoped_account(request, user.scope)  # their own: where the request acts


def user_view(request: web.Request, user: User) -> dict[str, Any]:
    """A user as the API shows them (``User.describe``): the first admin's display name, as
    Loa made it, in the caller's language."""
    out = user.describe()
    if out["display_name"] == FIRST_ADMIN_NAME:
        out["display_name"] = translate(language_of(request), FIRST_ADMIN_NAME)
    return out


def _roles_of(body: dict[str, Any]) -> Any:
    return body.get("role", body.get("roles"))


@routes.post("/api/v1/users")
@audited("user.add")
async def add_user(request: web.Request) -> Changed:
    """201 with the new user (ADMIN, the scope within the caller's); 400 for a bad field,
    409 for a taken username, 403 for a scope outside the caller's."""
    require(request, Right.ADMIN)
    body = await read_json(request)
    scope = str(body.get("scope") or "")
    if scope:
        scoped_new_scope(request, scope)
    user = await server_of(request).accounts.add(
        body.get("username"), body.get("password"), _roles_of(body), scope,
        body.get("display_name", ""))
    detail = {k: v for k, v in user.describe().items() if k in ("roles", "scope",
                                                                "display_name")}
    return Changed(json_response({"user": user_view(request, user)}, status=201),
                   user.username, detail)


@routes.get("/api/v1/users")
async def list_users(request: web.Request) -> web.Response:
    """The users within the caller's scope (ADMIN); another caller sees only themselves."""
    s = server_of(request)
    p = principal_of(request)
    scope = scope_of(request)
    if not p.may(Right.ADMIN):
        users = [u for u in s.accounts.users() if u.username == p.user]
    else:
        users = [u for u in s.accounts.users() if holds(scope, u.scope)]
    return json_response({"users": [user_view(request, u) for u in users]})


@routes.get("/api/v1/users/{username}")
async def get_user(request: web.Request) -> web.Response:
    """One user (themselves, or an admin over them); 404 if unknown."""
    user = server_of(request).accounts.get(request.match_info["username"])
    self_or_admin(request, user)
    return json_response({"user": user_view(request, user)})


@routes.patch("/api/v1/users/{username}")
@audited("user.update")
async def update_user(request: web.Request) -> Changed:
    """Change ``display_name``, ``password``, ``role`` and ``scope`` (an admin over the user,
    the new scope within theirs too); a user changes their own display name and password,
    with ``current_password``. A new password ends the user's sessions."""
    s = server_of(request)
    user = s.accounts.get(request.match_info["username"])
    body = await read_json(request)
    unknown = sorted(set(body) - {*PATCHABLE, "current_password"})
    if unknown:
        raise ApiError(400, N_("unknown field(s) {fields}; the fields are {known}"),
                       fields=", ".join(unknown), known=", ".join(PATCHABLE))
    p = principal_of(request)
    own = p.user == user.username
    if own and not (p.may(Right.ADMIN) and holds(scope_of(request), user.scope)):
        if _roles_of(body) is not None or "scope" in body:
            raise ApiError(403, N_("only an admin changes roles and scopes"))
        if "password" in body and await s.accounts.check_password(
                user.username, str(body.get("current_password") or "")) is None:
            raise ApiError(403, N_("current_password is not your password"))
        scoped_account(request, user.scope)  # their own: where the request acts
    else:
        admin_over(request, user)
        if "scope" in body:
            scoped_new_scope(request, str(body["scope"] or ""))
    changed = await s.accounts.update(
        user.username, password=body.get("password"), roles=_roles_of(body),
        scope=body.get("scope"), display_name=body.get("display_name"))
    detail = {k: ("***" if k == "password" else v) for k, v in body.items()
              if k in PATCHABLE}
    return Changed(json_response({"user": user_view(request, changed)}), changed.username, detail)


@routes.delete("/api/v1/users/{username}")
@audited("user.delete")
async def delete_user(request: web.Request) -> Changed:
    """Remove a user, their tokens and sessions (an admin over them; not oneself); 409 for
    the last admin of the whole tree (``LastAdmin``), as for making them anything less."""
    s = server_of(request)
    user = s.accounts.get(request.match_info["username"])
    admin_over(request, user)
    if principal_of(request).user == user.username:
        raise ApiError(409, N_("you cannot remove your own account"))
    s.accounts.remove(user.username)
    return Changed(json_response({"deleted": user.username}), user.username)


@routes.post("/api/v1/users/{username}/tokens")
@audited("user.token.add")
async def add_token(request: web.Request) -> Changed:
    """``{"name": "…"}`` (optional): 201 with ``token`` (shown this once) and its record."""
    s = server_of(request)
    user = s.accounts.get(request.match_info["username"])
    self_or_admin(request, user)
    body = await read_json(request)
    token, secret = s.accounts.create_token(user.username, body.get("name", ""))
    return Changed(json_response({"token": secret, **token.describe()}, status=201),
                   user.username, {"id": token.id, "name": token.name})


@routes.get("/api/v1/users/{username}/tokens")
async def list_tokens(request: web.Request) -> web.Response:
    """The user's tokens (never the tokens themselves), with when each was made and last
    used (unix s)."""
    s = server_of(request)
    user = s.accounts.get(request.match_info["username"])
    self_or_admin(request, user)
    return json_response({"tokens": [t.describe() for t in s.accounts.tokens_of(user.username)]})


@routes.delete("/api/v1/users/{username}/tokens/{id}")
@audited("user.token.revoke")
async def revoke_token(request: web.Request) -> Changed:
    """Revoke one of the user's tokens (it stops working at once); 404 if unknown."""
    s = server_of(request)
    user = s.accounts.get(request.match_info["username"])
    self_or_admin(request, user)
    token = s.accounts.revoke_token(user.username, request.match_info["id"])
    return Changed(json_response({"revoked": token.describe()}), user.username,
                   {"id": token.id, "name": token.name})
