"""``loa command``: one control command (volume, mute, power, reboot, play, stop, move) to the
endpoints of a zone, or to one endpoint, through a running server's API (which sends it over
MQTT)."""

from __future__ import annotations

import argparse
import sys

from loa.cli.client import add_client_parser, call_api


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``command`` to the subcommands ``sub``."""
    cmd = add_client_parser(sub, "command", "a command to the endpoints of a zone, or to one",
                            "an operator token")
    target = cmd.add_mutually_exclusive_group(required=True)
    target.add_argument("--zone")
    target.add_argument("--endpoint")
    cmd.add_argument("op", choices=["volume", "mute", "unmute", "power", "reboot", "play",
                                    "stop", "move"])
    cmd.add_argument("value", nargs="?", help="volume 0-100, power on|off, move ZONE")
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Send the command; exit status as ``call_api``'s, or 2 when ``value`` does not fit
    ``op`` (volume not a number, power neither on nor off, move without a zone)."""
    from urllib.parse import quote

    body: dict[str, object] = {"op": args.op}
    try:
        if args.op == "volume":
            body["volume_pct"] = None if args.value in (None, "zone") else int(args.value)
        elif args.op == "power":
            if args.value not in ("on", "off"):
                raise ValueError("power needs on or off")
            body["on"] = args.value == "on"
        elif args.op == "move":
            if not args.value:
                raise ValueError("move needs a zone")
            body["zone"] = args.value
    except ValueError as exc:
        print(f"loa command: {exc}", file=sys.stderr)
        return 2
    path = (f"/api/v1/zones/{quote(args.zone)}/commands" if args.zone
            else f"/api/v1/endpoints/{quote(args.endpoint)}/commands")
    return call_api(args, "POST", path, body)
