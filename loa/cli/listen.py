"""``loa listen``: one or more simulated endpoints pull a stream from a server and report what
they heard (the decoding endpoint of ``loa.loadtest.endpoint``)."""

from __future__ import annotations

import argparse

from loa.cli.text import _


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``listen`` to the subcommands ``sub``."""
    text = _("a simulated endpoint: pull a stream and report")
    listen = sub.add_parser(
        "listen", help=text, description=text,
        epilog=_("It also holds the audio timeline against the wall clock: stalls (audio more "
                 "than 100 ms behind real time), the longest silence and the share of real "
                 "time delivered. Exit status: 0 all heard in time; 1 an endpoint could not "
                 "connect or was cut off; 3 it heard a stall or got less than 99 per cent of "
                 "real time."))
    listen.add_argument("url", help=_("ws://…/endpoints/<id>/ws, ws://…/zones/<zone>/ws, "
                                      "http://…/stream.ogg or http://…/stream.mp3"))
    listen.add_argument("--seconds", type=float, default=10.0, help=_("how long to listen"))
    listen.add_argument("--endpoints", type=int, default=1, help=_("how many to run at once"))
    listen.add_argument("--json", action="store_true", help=_("print the report as JSON"))
    listen.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Listen for ``--seconds``; the exit status is the one the epilog describes."""
    from loa.loadtest.endpoint import listen_main

    return listen_main(args.url, args.seconds, args.endpoints, args.json)
