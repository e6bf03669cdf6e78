"""``loa bench``: Loa beside Icecast 2 and the ffmpeg command line in one run (fan-out,
transcode, switching, alerts), reported as ratios measured together. The work is
``loa.loadtest.bench``'s; this only maps the options."""

from __future__ import annotations

import argparse

from loa.cli.text import _


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bench`` to the subcommands ``sub``."""
    text = _("Loa beside Icecast 2 and the ffmpeg CLI, in one run")
    bench = sub.add_parser("bench", help=text, description=text)
    bench.add_argument("--listeners", default="100,500,1000",
                       help=_("listener counts for the fan-out comparison"))
    bench.add_argument("--seconds", type=float, default=20.0,
                       help=_("length of each fan-out run"))
    bench.add_argument("--procs", type=int, default=2, help=_("listener worker processes"))
    bench.add_argument("--no-icecast", action="store_true", help=_("measure Loa alone"))
    bench.add_argument("--json", dest="json_path", help=_("write the results as JSON here"))
    bench.add_argument("--only", help=_("only these parts, comma-separated: fanout, idle, "
                                        "transcode, switching, alerts, outage, webrtc (idle: "
                                        "CPU and memory with one live programme and no "
                                        "listener; alerts: file, text "
                                        "and CAP alerts on some zones while the others listen, "
                                        "at the largest --listeners count; outage: the heard "
                                        "delay before and after a 5 s source outage; webrtc: "
                                        "clicks live over WHIP and over Icecast timed to a "
                                        "loudspeaker, and the CPU of WHIP sources and WHEP "
                                        "viewers)"))
    bench.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; the exit status is ``bench_main``'s.

    Raises ``argparse.ArgumentTypeError`` when ``--only`` names a part that does not exist
    (``loa.cli.commands`` reports it as a usage error: exit status 2).
    """
    from loa.loadtest.bench import BENCH_PARTS, bench_main

    counts = [int(x) for x in args.listeners.split(",") if x.strip()]
    only = {x.strip() for x in (args.only or "").split(",") if x.strip()}
    if only - set(BENCH_PARTS):
        raise argparse.ArgumentTypeError(_(
            "--only: unknown part(s) {parts}; choose from {known}",
            parts=", ".join(sorted(only - set(BENCH_PARTS))), known=", ".join(BENCH_PARTS)))
    return bench_main(counts, args.seconds, args.procs, args.no_icecast, args.json_path,
                      only or None)
