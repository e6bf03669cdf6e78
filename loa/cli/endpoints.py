"""``loa endpoints add|list|rm|import|passwd|mosquitto``: the endpoint registry (cụm loa) of a
running server: register endpoints one by one or from CSV, list them with their presence,
issue MQTT passwords, and write a Mosquitto password and ACL file for an external broker."""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from typing import Any
from urllib.parse import quote, urlencode

from loa.cli.client import (
    ApiClient,
    CliExit,
    add_client_parser,
    add_client_subparser,
    add_list_options,
    client_options,
    local_file,
)
from loa.cli.show import NONE, cell, local_time, named, page, pairs, table
from loa.cli.text import _, ngettext


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``endpoints`` and its subcommands to the subcommands ``sub``."""
    token = _("an admin token")
    eps = add_client_parser(sub, "endpoints", _("the endpoint registry (cụm loa) of a running "
                                                "server"), token)
    common = client_options(token)
    esub = eps.add_subparsers(dest="endpoints_command", required=True, metavar="SUBCOMMAND")
    eadd = add_client_subparser(esub, "add", _("register an endpoint; prints its MQTT "
                                               "password once"), common)
    eadd.add_argument("id")
    eadd.add_argument("--zone", required=True, help=_("its zone (a village, usually)"))
    eadd.add_argument("--name", default="")
    eadd.add_argument("--lat", type=float, help=_("latitude, e.g. 15.5012"))
    eadd.add_argument("--lon", type=float, help=_("longitude, e.g. 108.0034"))
    eadd.add_argument("--address", default="")
    eadd.add_argument("--admin-code", default="", help=_("administrative-unit code"))
    elist = add_client_subparser(esub, "list", _("list endpoints with their presence"), common)
    elist.add_argument("--zone", help=_("only this zone and below"))
    elist.add_argument("--offline", action="store_true", help=_("only those offline"))
    elist.add_argument("--online", action="store_true", help=_("only those online"))
    add_list_options(elist)
    erm = add_client_subparser(esub, "rm", _("remove an endpoint (its credentials stop "
                                             "working)"), common)
    erm.add_argument("id")
    eimp = add_client_subparser(esub, "import", _("bulk import from CSV: id,name,zone,lat,lon,"
                                                  "address,admin_code; prints new passwords "
                                                  "as CSV"), common)
    eimp.add_argument("file", help=_("the CSV file (as a spreadsheet saves it)"))
    eimp.add_argument("--dry-run", action="store_true",
                      help=_("check the file and show what it would add and change, doing "
                             "nothing"))
    epw = add_client_subparser(esub, "passwd", _("a new MQTT password for an endpoint"), common)
    epw.add_argument("id")
    emq = add_client_subparser(esub, "mosquitto", _("write a Mosquitto password file and ACL "
                                                    "file"), common)
    emq.add_argument("--dir", default=".", help=_("where to write loa.passwd and loa.acl"))
    eps.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """The subcommand's API call, shown; exit status 0 done, 1 refused or unreachable, 2 when
    the CSV file of ``import`` is missing."""
    c = args.endpoints_command
    csv_file = local_file(args.file) if c == "import" else None  # before asking for a token
    with ApiClient(args) as api:
        if c == "add":
            body = {"id": args.id, "zone": args.zone, "name": args.name, "lat": args.lat,
                    "lon": args.lon, "address": args.address, "admin_code": args.admin_code}
            answer = api.call("POST", "/api/v1/endpoints", body)
            data = api.check(answer, [args.zone])
            return api.show(answer, added(api, data))
        if c == "list":
            return list_endpoints(api, args)
        if c == "rm":
            answer = api.call("DELETE", f"/api/v1/endpoints/{quote(args.id, safe='')}")
            api.check(answer)
            return api.show(answer, _("Removed endpoint {id}: its MQTT login no longer works.",
                                      id=args.id))
        if c == "import":
            assert csv_file is not None
            dry = bool(getattr(args, "dry_run", False))
            answer = api.call("POST", "/api/v1/endpoints.csv" + ("?dry_run=1" if dry else ""),
                              raw=csv_file.read_bytes(), accept="application/json")
            try:
                data = api.check(answer)
            except CliExit:
                if not api.as_json:
                    for line in import_errors(answer.data):
                        print(line, file=sys.stderr)
                raise
            created, updated = data.get("created") or [], data.get("updated") or []
            if dry and data.get("dry_run") is True:
                return api.show(answer, dry_run_text(created, updated))
            if dry:  # a server from before dry runs took the file for real: say so, keep logins
                print(_("This server does not know dry runs: it imported the file. Keep the "
                        "new logins below."), file=sys.stderr)
                api.show(answer, logins_csv(created))
                raise CliExit(1)
            if not api.as_json:  # what was done, beside the passwords' CSV on stdout
                print(_("Imported: {created} new endpoint(s), {updated} updated.",
                        created=len(created), updated=len(updated)), file=sys.stderr)
            return api.show(answer, logins_csv(created))
        if c == "passwd":
            answer = api.call("POST", f"/api/v1/endpoints/{quote(args.id, safe='')}/credentials")
            data = api.check(answer)
            return api.show(answer, login_lines(data.get("mqtt") or {}))
        answer = api.call("GET", "/api/v1/mqtt/mosquitto")
        data = api.check(answer)
        if api.as_json:
            return api.show(answer, "")
        return api.show(answer, write_mosquitto(args.dir, data))


def dry_run_text(created: list[dict[str, Any]], updated: list[dict[str, Any]]) -> str:
    """What an import would do, for people: the endpoints it would add, those it would
    change and how (a line that changes nothing is left out), and that nothing was done."""
    out = [_("Nothing was done (a dry run). The import would add {created} endpoint(s) and "
             "change {changed}.", created=len(created),
             changed=sum(1 for u in updated if u.get("changes"))) + "\n"]
    if created:
        out.append("\n" + table([_("LINE"), _("ID"), _("NAME"), _("ZONE")],
                                [[c.get("line"), c.get("id"), c.get("name") or NONE,
                                  c.get("zone")] for c in created]))
    changed = [u for u in updated if u.get("changes")]
    if changed:
        out.append("\n" + table([_("LINE"), _("ID"), _("CHANGES")],
                                [[u.get("line"), u.get("id"), "; ".join(
                                    f"{name}: {cell(change.get('from'))} → "
                                    f"{cell(change.get('to'))}"
                                    for name, change in (u.get("changes") or {}).items())]
                                 for u in changed]))
    return "".join(out)


def logins_csv(logins: list[dict[str, Any]]) -> str:
    """The new endpoints' MQTT logins as CSV (``id,username,password,client_id,topic_root``:
    the columns ``POST endpoints.csv`` answers ``text/csv`` with), to keep and hand over."""
    out = io.StringIO()
    w = csv.writer(out)  # \r\n, as the API's own CSV and a spreadsheet write it
    w.writerow(["id", "username", "password", "client_id", "topic_root"])
    for login in logins:
        w.writerow([login.get("username"), login.get("username"), login.get("password"),
                    login.get("client_id"), login.get("topic_root")])
    return out.getvalue()


SAME_ERROR_LINES = 5  # the lines named for one error that many lines have; then a count


def import_errors(data: Any) -> list[str]:
    """What a refused import found, for people: the API's ``errors`` (``{"line",
    "message"}``; a plain text from a server of before), one line per message (the lines
    that have it named, the first ``SAME_ERROR_LINES``), and how many more there are."""
    if not isinstance(data, dict):
        return []
    errors = data.get("errors") or []
    out = []
    lines_of: dict[str, list[object]] = {}  # the same message on many lines: said once
    for error in errors:
        if isinstance(error, dict):
            line, message = error.get("line"), str(error.get("message"))
            if line is None:
                out.append(message)
            else:
                lines_of.setdefault(message, []).append(line)
        else:
            out.append(str(error))
    for message, lines in lines_of.items():
        if len(lines) == 1:
            out.append(_("line {line}: {error}", line=lines[0], error=message))
            continue
        shown = ", ".join(str(n) for n in lines[:SAME_ERROR_LINES])
        if len(lines) > SAME_ERROR_LINES:
            shown = _("{lines} and {n} more", lines=shown, n=len(lines) - SAME_ERROR_LINES)
        out.append(_("lines {lines}: {error}", lines=shown, error=message))
    more = int(data.get("error_count") or 0) - len(errors)
    if more > 0:
        out.append(_("(and {n} more)", n=more))
    return out


def list_endpoints(api: ApiClient, args: argparse.Namespace) -> int:
    """``endpoints list``: a table with presence, zone names and local times."""
    query = {}
    if args.zone:
        query["zone"] = args.zone
    if args.offline or args.online:
        if not (args.offline and args.online):
            query["online"] = "false" if args.offline else "true"
    answer = api.call("GET", "/api/v1/endpoints" + (f"?{urlencode(query)}" if query else ""))
    data = api.check(answer, [args.zone] if args.zone else [])
    if api.as_json:
        return api.show(answer, "")
    eps: list[dict[str, Any]] = data.get("endpoints") or []
    rows = []
    for e in eps:
        presence = e.get("presence") or {}
        volume = f"{e.get('effective_volume_pct')}%"
        if e.get("muted"):
            volume += " " + _("(muted)")
        if e.get("power_on") is False:
            volume += " " + _("(off)")
        rows.append([e.get("id"), e.get("name"),
                     named(e.get("zone"), api.zone_name(str(e.get("zone")))),
                     _("online") if presence.get("online") else _("offline"),
                     local_time(presence.get("since")), volume, e.get("connections")])
    shown, footer = page(rows, args.limit, args.offset)
    online = sum(1 for e in eps if (e.get("presence") or {}).get("online"))
    head = ngettext("{n} endpoint, {online} online.", "{n} endpoints, {online} online.",
                    len(eps), online=online)
    return api.show(answer, head + "\n" + table(
        [_("ID"), _("NAME"), _("ZONE"), _("PRESENCE"), _("SINCE"), _("VOLUME"),
         _("STREAMS")], shown) + footer)


def added(api: ApiClient, data: dict[str, Any]) -> str:
    """What ``endpoints add`` shows: the endpoint and its MQTT login (shown once)."""
    ep = data.get("endpoint") or {}
    zone = str(ep.get("zone"))
    return (_("Added endpoint {id} ({name}) in zone {zone}.", id=ep.get("id"),
              name=ep.get("name") or NONE, zone=named(zone, api.zone_name(zone))) + "\n"
            + login_lines(data.get("mqtt") or {}))


def login_lines(mqtt: dict[str, Any]) -> str:
    """An MQTT login as lines for people, with the warning that it is shown once."""
    topics = f"{mqtt.get('topic_root')}/ep/{mqtt.get('username')}/…"
    return (_("MQTT login (shown once: keep it now):") + "\n"
            + pairs([(_("broker"), mqtt.get("broker")), (_("username"), mqtt.get("username")),
                     (_("password"), mqtt.get("password")),
                     (_("client id"), mqtt.get("client_id")), (_("topics"), topics)]))


def write_mosquitto(folder: str, files: dict[str, Any]) -> str:
    """Write the password file (mode 0600) and the ACL file into ``folder`` (from the user's
    working directory); returns what to do next."""
    os.makedirs(folder, exist_ok=True)
    pw = os.path.abspath(os.path.join(folder, "loa.passwd"))
    acl = os.path.abspath(os.path.join(folder, "loa.acl"))
    with open(os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(files["password_file"])
    with open(acl, "w") as f:
        f.write(files["acl_file"])
    return _("Wrote {pw} and {acl}. Add the server's own user with\n"
             "  mosquitto_passwd {pw} loa-server\n"
             "and in mosquitto.conf: password_file {pw} / acl_file {acl} / "
             "allow_anonymous false", pw=pw, acl=acl)
