"""``loa endpoints add|list|rm|import|passwd|mosquitto``: the endpoint registry (cụm loa) of a
running server: register endpoints one by one or from CSV, list them with their presence,
issue MQTT passwords, and write a Mosquitto password and ACL file for an external broker."""

from __future__ import annotations

import argparse
import sys

from loa.cli.client import add_client_parser, call_api


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``endpoints`` and its subcommands to the subcommands ``sub``."""
    eps = add_client_parser(sub, "endpoints", "the endpoint registry (cụm loa) of a running "
                            "server", "an admin token")
    esub = eps.add_subparsers(dest="endpoints_command", required=True)
    eadd = esub.add_parser("add", help="register an endpoint; prints its MQTT password once")
    eadd.add_argument("id")
    eadd.add_argument("--zone", required=True)
    eadd.add_argument("--name", default="")
    eadd.add_argument("--lat", type=float)
    eadd.add_argument("--lon", type=float)
    eadd.add_argument("--address", default="")
    eadd.add_argument("--admin-code", default="", help="administrative-unit code")
    elist = esub.add_parser("list", help="list endpoints with their presence")
    elist.add_argument("--zone", help="only this zone and below")
    elist.add_argument("--offline", action="store_true", help="only those offline")
    erm = esub.add_parser("rm", help="remove an endpoint (its credentials stop working)")
    erm.add_argument("id")
    eimp = esub.add_parser("import", help="bulk import from CSV: id,name,zone,lat,lon,"
                                          "address,admin_code; prints new passwords as CSV")
    eimp.add_argument("file")
    epw = esub.add_parser("passwd", help="a new MQTT password for an endpoint")
    epw.add_argument("id")
    emq = esub.add_parser("mosquitto", help="write a Mosquitto password file and ACL file")
    emq.add_argument("--dir", default=".", help="where to write loa.passwd and loa.acl")
    eps.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """The one API call of the subcommand; exit status as ``call_api``'s, or 2 when the CSV
    file of ``import`` cannot be read."""
    from urllib.parse import quote

    c = args.endpoints_command
    if c == "add":
        body = {"id": args.id, "zone": args.zone, "name": args.name, "lat": args.lat,
                "lon": args.lon, "address": args.address, "admin_code": args.admin_code}
        return call_api(args, "POST", "/api/v1/endpoints", body)
    if c == "list":
        query = "&".join(q for q in (f"zone={quote(args.zone)}" if args.zone else "",
                                     "online=false" if args.offline else "") if q)
        return call_api(args, "GET", "/api/v1/endpoints" + (f"?{query}" if query else ""))
    if c == "rm":
        return call_api(args, "DELETE", f"/api/v1/endpoints/{quote(args.id)}")
    if c == "import":
        try:
            data = open(args.file, "rb").read()
        except OSError as exc:
            print(f"loa endpoints import: {exc}", file=sys.stderr)
            return 2
        return call_api(args, "POST", "/api/v1/endpoints.csv", raw=data, accept="text/csv")
    if c == "passwd":
        return call_api(args, "POST", f"/api/v1/endpoints/{quote(args.id)}/credentials")
    # mosquitto: two files beside each other
    import os

    def write(files: object) -> str:
        assert isinstance(files, dict)
        os.makedirs(args.dir, exist_ok=True)
        pw, acl = os.path.join(args.dir, "loa.passwd"), os.path.join(args.dir, "loa.acl")
        with open(os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(files["password_file"])
        with open(acl, "w") as f:
            f.write(files["acl_file"])
        return (f"wrote {pw} and {acl}; add the server's own user with\n"
                f"  mosquitto_passwd {pw} loa-server\n"
                f"and in mosquitto.conf: password_file {pw} / acl_file {acl} / "
                "allow_anonymous false\n")

    return call_api(args, "GET", "/api/v1/mqtt/mosquitto", out=write)
