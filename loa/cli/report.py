"""``loa report``: the report (báo cáo) of a commune for a calendar year or a period, as JSON or
CSV, from a running server."""

from __future__ import annotations

import argparse
import sys

from loa.cli.client import add_client_parser, call_api


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``report`` to the subcommands ``sub``."""
    rep = add_client_parser(sub, "report", "the report (báo cáo) of a commune for a period",
                            "a token")
    rep.add_argument("commune", help="a commune's zone id")
    period = rep.add_mutually_exclusive_group(required=True)
    period.add_argument("--year", type=int, help="the calendar year (the yearly report)")
    period.add_argument("--from", dest="start", help="local date/time or unix time")
    rep.add_argument("--to", dest="end", help="with --from")
    rep.add_argument("--csv", action="store_true", help="CSV instead of JSON")
    rep.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Fetch and print the report; exit status as ``call_api``'s, or 2 for ``--from`` without
    ``--to``."""
    from urllib.parse import quote, urlencode

    if args.year:
        query = {"year": str(args.year)}
    else:
        if not args.end:
            print("loa report: --from needs --to", file=sys.stderr)
            return 2
        query = {"from": args.start, "to": args.end}
    if args.csv:
        query["format"] = "csv"
    return call_api(args, "GET", f"/api/v1/reports/{quote(args.commune)}?{urlencode(query)}",
                    accept="text/csv" if args.csv else "application/json")
