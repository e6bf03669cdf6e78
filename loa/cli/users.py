"""``loa users add|list|passwd|rm|token|tokens|revoke``: the accounts of a running server
(``/api/v1/users``): people with a role (admin, operator, alert, viewer; alert may go with
operator) and a scope (the zone whose subtree they act on, ``*`` for every zone), and their
personal API tokens. Only an admin manages accounts, within their own scope.

A password is asked twice on a terminal, without echo; from a pipe, the first line of the
standard input is the password (``printf '%s\\n' "$PW" | loa users add …``)."""

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
from loa.cli.text import _


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
    """A new password: asked twice without echo on a terminal, else the first line of the
    standard input. Raises CliExit (2) when none is given or the two differ."""
    if sys.stdin.isatty():
        first = getpass.getpass(_("New password: "))
        if getpass.getpass(_("Again: ")) != first:
            raise CliExit(2, _("the two passwords differ: nothing was changed"))
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    if not first:
        raise CliExit(2, _("no password given (type it, or give it on the standard input)"))
    return first


def run(args: argparse.Namespace) -> int:
    """The subcommand's API call, shown; exit status 0 done, 1 refused or unreachable, 2 for
    a password not given."""
    c = args.users_command
    path = f"/api/v1/users/{quote(getattr(args, 'username', ''), safe='')}"
    with ApiClient(args) as api:  # a token first: then the password is asked
        password = read_password() if c in ("add", "passwd") else None
        if c == "add":
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
            answer = api.call("PATCH", path, {"password": password})
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
