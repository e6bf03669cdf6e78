"""``loa users add|list|passwd|rm|token|tokens|revoke``: the accounts of a running server
(``/api/v1/users``): people with a role (admin, operator, alert, viewer; alert may go with
operator) and a scope (the zone whose subtree they act on, ``*`` for every zone), and their
personal API tokens. Only an admin manages accounts, within their own scope.

A password is asked twice on a terminal, without echo; from a pipe, the first line of the
standard input is the password (``printf '%s\\n' "$PW" | loa users add …``). A user who is no
admin changes their own password with the current one: asked first on a terminal, the first
line of a pipe (the new one on the second). What the server would refuse anyway (a role that
does not exist, a zone that does not or lies outside the caller's scope, a user not there) is
said before any password is asked."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any
from urllib.parse import quote

from loa.cli.client import (
    ApiClient,
    CliExit,
    add_client_parser,
    add_client_subparser,
    add_list_options,
    client_options,
)
from loa.cli.show import local_time, named, page, table
from loa.cli.text import _, language


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``users`` and its subcommands to the subcommands ``sub``."""
    token = _("an admin token (or your own, for your password and tokens)")
    users = add_client_parser(sub, "users", _("the accounts of a running server, and their "
                                              "tokens"), token)
    common = client_options(token)
    usub = users.add_subparsers(dest="users_command", required=True, metavar="SUBCOMMAND")
    uadd = add_client_subparser(usub, "add", _("make an account (its password is asked)"),
                                common)
    uadd.add_argument("username")
    uadd.add_argument("--role", required=True,
                      help=_("admin, operator, alert or viewer; operator,alert for both"))
    uadd.add_argument("--scope", required=True,
                      help=_("the zone whose subtree they act on (a commune, a village), "
                             "or * for every zone"))
    uadd.add_argument("--name", default="", help=_("their full name"))
    ulist = add_client_subparser(usub, "list", _("list the accounts"), common)
    add_list_options(ulist)
    upw = add_client_subparser(usub, "passwd", _("set an account's password (its sessions "
                                                 "end)"), common)
    upw.add_argument("username")
    urm = add_client_subparser(usub, "rm", _("remove an account, its tokens and sessions"),
                               common)
    urm.add_argument("username")
    utok = add_client_subparser(usub, "token", _("make a personal API token (printed once)"),
                                common)
    utok.add_argument("username")
    utok.add_argument("--name", default="", help=_("what it is for, e.g. the laptop"))
    utoks = add_client_subparser(usub, "tokens", _("list an account's tokens"), common)
    utoks.add_argument("username")
    urev = add_client_subparser(usub, "revoke", _("revoke a token (it stops working at once)"),
                                common)
    urev.add_argument("username")
    urev.add_argument("id", help=_("the token's id (loa users tokens)"))
    users.set_defaults(run=run)


def read_password() -> str:
    """A new password: asked twice without echo on a terminal, else the next line of the
    standard input. Raises CliExit (2) when none is given (Ctrl-D too) or the two differ."""
    if sys.stdin.isatty():
        first = _ask(_("New password: "))
        if _ask(_("Again: ")) != first:
            raise CliExit(2, _("the two passwords differ: nothing was changed"))
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    if not first:
        raise CliExit(2, _("no password given (type it, or give it on the standard input)"))
    return first


def read_current_password() -> str:
    """The user's current password: asked once without echo on a terminal, else the first
    line of the standard input. Raises CliExit (2) when none is given."""
    if sys.stdin.isatty():
        current = _ask(_("Current password: "))
    else:
        current = sys.stdin.readline().rstrip("\r\n")
    if not current:
        raise CliExit(2, _("no current password given: a user who is no admin changes their "
                           "own password with it (on a pipe: the current password on the "
                           "first line, the new one on the second)"))
    return current


def _ask(prompt: str) -> str:
    """A line typed without echo; Ctrl-D (end of input) is no password: CliExit (2)."""
    try:
        return getpass.getpass(prompt)
    except EOFError:
        print(file=sys.stderr)  # the prompt's line ends before the message
        raise CliExit(2, _("no password given: nothing was changed")) from None


def check_roles(value: str) -> None:
    """Refuse (CliExit 2, the reason in the user's language) roles that do not exist or do
    not go together, as the server would, before a password is asked."""
    from loa.control.auth import RoleError, parse_roles
    from loa.core.i18n import say

    try:
        parse_roles(value)
    except RoleError as exc:
        raise CliExit(2, say(exc, language())) from None


def whoami(api: ApiClient) -> dict[str, Any]:
    """``GET session``: who the token is (``user``, ``rights``, ``scope``)."""
    data = api.check(api.call("GET", "/api/v1/session"))
    return data if isinstance(data, dict) else {}


def run(args: argparse.Namespace) -> int:
    """The subcommand's API call, shown; exit status 0 done, 1 refused or unreachable, 2 for
    a password not given."""
    c = args.users_command
    path = f"/api/v1/users/{quote(getattr(args, 'username', ''), safe='')}"
    if c == "add":
        check_roles(args.role)
    with ApiClient(args) as api:  # a token first: then the password is asked
        if c == "add":
            me = whoami(api)
            if "admin" not in (me.get("rights") or []):
                raise CliExit(1, _("only an admin makes accounts; this token is {name}'s, "
                                   "with the rights: {rights}", name=me.get("name") or "?",
                                   rights=", ".join(me.get("rights") or []) or "–"))
            if args.scope != "*":
                api.check_zones([args.scope])
            password = read_password()
            body = {"username": args.username, "password": password, "role": args.role,
                    "scope": args.scope, "display_name": args.name}
            answer = api.call("POST", "/api/v1/users", body)
            data = api.check(answer, [] if args.scope == "*" else [args.scope])
            user = data.get("user") or {}
            return api.show(answer, _("Account {user} made: {roles}, scope {scope}.",
                                      user=user.get("username"),
                                      roles=", ".join(user.get("roles") or []),
                                      scope=scope_text(api, user.get("scope"))))
        if c == "list":
            answer = api.call("GET", "/api/v1/users")
            data = api.check(answer)
            listed: list[dict[str, Any]] = data.get("users") or []
            rows = [[u.get("username"), u.get("display_name"), u.get("roles"),
                     scope_text(api, u.get("scope")), local_time(u.get("created_at"))]
                    for u in listed]
            shown, footer = page(rows, args.limit, args.offset)
            return api.show(answer, table([_("USER"), _("NAME"), _("ROLES"), _("SCOPE"),
                                           _("CREATED")], shown) + footer)
        if c == "passwd":
            api.check(api.call("GET", path))  # the user exists and is theirs to change
            me = whoami(api)
            body = {}
            own = me.get("user") == args.username.strip().lower()
            if own and "admin" not in (me.get("rights") or []):
                body["current_password"] = read_current_password()
            body["password"] = read_password()
            answer = api.call("PATCH", path, body)
            if answer.status == 403 and "current_password" in body and not api.as_json:
                raise CliExit(1, _("the current password is not right: nothing was "
                                   "changed"))
            api.check(answer)
            return api.show(answer, _("Password of {user} changed; their sessions ended.",
                                      user=args.username))
        if c == "rm":
            answer = api.call("DELETE", path)
            api.check(answer)
            return api.show(answer, _("Removed {user}, with their tokens and sessions.",
                                      user=args.username))
        if c == "token":
            answer = api.call("POST", f"{path}/tokens", {"name": args.name})
            data = api.check(answer)
            return api.show(answer, _("Token {id} of {user} (shown once, only its hash is "
                                      "kept):\n{token}", id=data.get("id"), user=args.username,
                                      token=data.get("token")))
        if c == "tokens":
            answer = api.call("GET", f"{path}/tokens")
            data = api.check(answer)
            rows = [[t.get("id"), t.get("name"), local_time(t.get("created_at")),
                     local_time(t.get("last_used_at"))] for t in data.get("tokens") or []]
            return api.show(answer, table([_("ID"), _("NAME"), _("CREATED"), _("LAST USED")],
                                          rows))
        answer = api.call("DELETE", f"{path}/tokens/{quote(args.id, safe='')}")
        api.check(answer)
        return api.show(answer, _("Token {id} of {user} revoked.", id=args.id,
                                  user=args.username))


def scope_text(api: ApiClient, scope: object) -> str:
    """A scope with its zone's name, or "every zone" for ``*``."""
    if scope == "*":
        return _("every zone")
    return named(scope, api.zone_name(str(scope)))
