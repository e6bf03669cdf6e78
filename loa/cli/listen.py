"""``loa listen``: one or more simulated endpoints pull a stream from a server and report what
they heard (the decoding endpoint of ``loa.loadtest.endpoint``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from loa.cli.show import NONE, pairs
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
    from loa.loadtest.endpoint import listen_report, listen_status

    report = listen_report(args.url, args.seconds, args.endpoints)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(report_text(report), end="")
    return listen_status(report)


def report_text(r: dict[str, Any]) -> str:
    """The report for people: figures in the reader's language, then the verdict and why."""
    from loa.loadtest.timeline import DELIVERED_MIN_PCT, STALL_THRESHOLD_MS, Verdict

    latency = r.get("latency_ms") or {}
    if not r["packets"]:  # nothing heard: no figure was measured (not 0 ms)
        r = {**r, "startup_ms_median": None, "longest_silence_ms": None}
        latency = {}
    rows: list[tuple[str, object]] = [
        (_("Endpoints"), r["endpoints"]),
        (_("Seconds"), r["seconds"]),
        (_("Packets"), r["packets"]),
        (_("Gaps (packets missing)"), r["gaps"]),
        (_("Duplicates"), r["duplicates"]),
        (_("Errors"), "; ".join(r["errors"]) or NONE),
        (_("First audio after (median)"), _("{ms} ms", ms=_figure(r["startup_ms_median"]))),
        (_("Latency p50 / p99"), _("{p50} / {p99} ms", p50=_figure(latency.get("p50")),
                                   p99=_figure(latency.get("p99")))),
        (_("Stalls"), r["stalls"]),
        (_("Longest silence"), _("{ms} ms", ms=_figure(r["longest_silence_ms"]))),
        (_("Delivered (worst endpoint)"), NONE if r["delivered_pct"] is None else
         _("{share} of real time", share=f"{r['delivered_pct']} %")),
    ]
    passed = r["verdict"] == Verdict.PASS.value
    reasons = []
    if r["endpoints_with_stalls"]:
        reasons.append(_("{count} endpoint(s) heard a stall (audio more than {ms} ms behind "
                         "real time)", count=r["endpoints_with_stalls"], ms=STALL_THRESHOLD_MS))
    if r["short_endpoints"]:
        reasons.append(_("{count} endpoint(s) got less than {share} of real time",
                         count=r["short_endpoints"], share=f"{DELIVERED_MIN_PCT:g} %"))
    if not passed and not reasons:
        reasons.append(_("no endpoint reported"))
    rows.append((_("Verdict"), _("PASS") if passed else _("FAILURE")))
    return pairs(rows, indent="") + "".join(f"  {why}\n" for why in reasons)


def _figure(value: object) -> object:
    """A figure as shown: ``NONE`` when there is none (no packet timed: an HTTP stream has no
    latency stamps)."""
    return NONE if value is None else value
