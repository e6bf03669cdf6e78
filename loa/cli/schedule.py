"""``loa schedule add|list|rm``: the schedule of a running server. An item plays a media
library file, text read aloud or a station's relay (tiếp sóng) on zones, in a window that
recurs by an RFC 5545 rule, in local time (Asia/Ho_Chi_Minh)."""

from __future__ import annotations

import argparse

from loa.cli.client import add_client_parser, call_api


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``schedule`` and its subcommands to the subcommands ``sub``."""
    sched = add_client_parser(sub, "schedule", "the schedule of a running server",
                              "an operator token")
    ssub = sched.add_subparsers(dest="schedule_command", required=True)
    sadd = ssub.add_parser("add", help="add an item")
    sadd.add_argument("--title", default="")
    sadd.add_argument("--zones", required=True, help="comma-separated zone ids")
    sadd.add_argument("--start", required=True, help="local time, e.g. 2026-12-01T06:00")
    sadd.add_argument("--duration", type=float, required=True, help="window, seconds")
    sadd.add_argument("--rrule", help='RFC 5545, e.g. "FREQ=DAILY" or '
                                      '"FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"')
    sadd.add_argument("--class", dest="cls", default="normal", choices=["normal", "priority"])
    group = sadd.add_mutually_exclusive_group(required=True)
    group.add_argument("--media", help="a media library id")
    group.add_argument("--text", help="text read aloud")
    group.add_argument("--relay", help="a station's stream URL (tiếp sóng)")
    sadd.add_argument("--missed", default="skip", choices=["skip", "late"])
    sadd.add_argument("--late-minutes", type=int, default=0)
    ssub.add_parser("list", help="list the items and their next slots")
    srm = ssub.add_parser("rm", help="delete an item")
    srm.add_argument("id")
    sched.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """The one API call of the subcommand; exit status as ``call_api``'s."""
    if args.schedule_command == "list":
        return call_api(args, "GET", "/api/v1/schedules")
    if args.schedule_command == "rm":
        return call_api(args, "DELETE", f"/api/v1/schedules/{args.id}")
    if args.media:
        content: dict[str, str] = {"kind": "media", "id": args.media}
    elif args.text:
        content = {"kind": "text", "text": args.text}
    else:
        content = {"kind": "relay", "url": args.relay}
    return call_api(args, "POST", "/api/v1/schedules", {
        "title": args.title, "zones": args.zones.split(","), "start": args.start,
        "duration_s": args.duration, "rrule": args.rrule, "class": args.cls,
        "content": content, "missed": args.missed, "late_minutes": args.late_minutes})
