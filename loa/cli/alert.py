"""``loa alert``: trigger, list or cancel an alert (bản tin khẩn cấp / ưu tiên / thông thường)
on a running server from a shell, for the official on duty. The body is the API's
``POST /api/v1/alerts``; a local audio file is uploaded with it."""

from __future__ import annotations

import argparse
import sys

from loa.cli.client import add_client_parser, call_api


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``alert`` to the subcommands ``sub``."""
    alert = add_client_parser(sub, "alert", "trigger, list or cancel an alert on a running "
                              "server", "a token with the alert right")
    where = alert.add_mutually_exclusive_group()
    where.add_argument("--zones", help="comma-separated zone ids")
    where.add_argument("--all", action="store_true", help="every zone")
    what = alert.add_mutually_exclusive_group()
    what.add_argument("--text", help="text read aloud (Vietnamese)")
    what.add_argument("--file", help="an audio file to upload (or, if it is not a local file, "
                                     "a path in the server's media folder)")
    what.add_argument("--mount", help="a live mount, after the attention tone")
    alert.add_argument("--voice", default="vi", help="vi, vi-vn-x-central or vi-vn-x-south")
    alert.add_argument("--class", dest="cls", default="emergency",
                       choices=["normal", "priority", "emergency"])
    alert.add_argument("--repeat", type=int, default=1)
    alert.add_argument("--no-tone", action="store_true", help="no attention tone")
    alert.add_argument("--expires-in", type=float, help="seconds until it expires")
    alert.add_argument("--list", action="store_true", help="list alerts instead")
    alert.add_argument("--cancel", metavar="ID", help="cancel an alert instead")
    alert.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """List, cancel or trigger; exit status as ``call_api``'s, or 2 when a trigger names no
    zones (neither ``--zones`` nor ``--all``)."""
    import json
    import os

    if args.list:
        return call_api(args, "GET", "/api/v1/alerts")
    if args.cancel:
        return call_api(args, "DELETE", f"/api/v1/alerts/{args.cancel}")
    if not args.zones and not args.all:
        print("loa alert: say where: --zones Z1,Z2 or --all", file=sys.stderr)
        return 2
    if args.text:
        content: dict[str, str] = {"kind": "text", "text": args.text, "voice": args.voice}
    elif args.file and os.path.isfile(args.file):
        content = {"kind": "upload"}
    elif args.file:
        content = {"kind": "file", "path": args.file}
    elif args.mount:
        content = {"kind": "live", "mount": args.mount}
    else:
        content = {"kind": "tone"}
    body: dict[str, object] = {
        "class": args.cls, "zones": args.zones.split(",") if args.zones else [],
        "all": args.all, "content": content, "repeat": args.repeat, "tone": not args.no_tone}
    if args.expires_in:
        body["expires_in_s"] = args.expires_in
    if content["kind"] == "upload":
        return call_api(args, "POST", "/api/v1/alerts", files={"audio": args.file},
                        fields={"spec": json.dumps(body)})
    return call_api(args, "POST", "/api/v1/alerts", body)
