"""``loa report``: the report (báo cáo) of a commune for a calendar year or a period, shown as
tables, or as JSON or CSV, from a running server."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote, urlencode

from loa.cli.client import ApiClient, CliExit, add_client_parser
from loa.cli.schedule import local_datetime
from loa.cli.show import NONE, local_time, named, pairs, table
from loa.cli.text import _, ngettext
from loa.core.i18n import N_

HOUR_CLASSES = {"emergency": N_("emergency bulletins"), "live": N_("live"),
                "priority": N_("priority bulletins"), "normal": N_("normal bulletins"),
                "fill": N_("fill")}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``report`` to the subcommands ``sub``."""
    rep = add_client_parser(sub, "report", _("the report (báo cáo) of a commune for a period"),
                            _("a token"))
    rep.add_argument("commune", help=_("a commune's zone id"))
    period = rep.add_mutually_exclusive_group(required=True)
    period.add_argument("--year", type=int, help=_("the calendar year (the yearly report)"))
    period.add_argument("--from", dest="start", type=local_or_unix,
                        help=_("local date/time (e.g. 2026-01-01) or unix time"))
    rep.add_argument("--to", dest="end", type=local_or_unix, help=_("with --from"))
    rep.add_argument("--csv", action="store_true", help=_("CSV for a spreadsheet"))
    rep.set_defaults(run=run)


def local_or_unix(value: str) -> str:
    """An argparse type: unix seconds as given, else a local date/time as ``local_datetime``
    reads it (with its error: the format and an example)."""
    try:
        float(value)
    except ValueError:
        return local_datetime(value)
    return value


def run(args: argparse.Namespace) -> int:
    """Fetch and show the report; exit status 0, 1 when refused or unreachable, 2 for
    ``--from`` without ``--to``."""
    if args.year:
        query = {"year": str(args.year)}
    else:
        if not args.end:
            raise CliExit(2, _("--from needs --to, e.g. --from 2026-01-01 --to 2026-07-01"))
        query = {"from": args.start, "to": args.end}
    if args.csv:
        query["format"] = "csv"
    with ApiClient(args) as api:
        answer = api.call("GET", f"/api/v1/reports/{quote(args.commune, safe='')}?"
                                 f"{urlencode(query)}",
                          accept="text/csv" if args.csv else "application/json")
        data = api.check(answer, [args.commune])
        if args.csv or api.as_json:
            return api.show(answer, answer.text)
        return api.show(answer, human_report(data))


def human_report(r: dict[str, Any]) -> str:
    """The report's figures as people read them: hours on air by class, availability per
    endpoint, alerts and their reach, in local time."""
    commune, period = r.get("commune") or {}, r.get("period") or {}
    air, av = r.get("on_air_hours") or {}, r.get("availability") or {}
    alerts = r.get("alerts") or {}
    out = [_("Report of {commune}, {start} to {end}", commune=named(commune.get("id"),
                                                                     commune.get("name")),
             start=local_time(period.get("start"), seconds=False),
             end=local_time(period.get("end"), seconds=False)), "",
           _("Hours on air:")]
    hours = [(_(HOUR_CLASSES.get(cls, cls)), f"{h:.2f} h") for cls, h in
             (air.get("by_class") or {}).items()]
    hours.append((_("total without fill"), f"{air.get('total_without_fill', 0):.2f} h"))
    out.append(pairs(hours))
    pct = av.get("pct")
    count = int(av.get("endpoints") or 0)
    out.append(ngettext("Availability of {n} endpoint: {pct}", "Availability of {n} endpoints: "
                        "{pct}", count, pct=NONE if pct is None else f"{pct:.2f} %"))
    rows = [[named(e.get("endpoint"), e.get("name")), e.get("zone"), f"{e.get('online_h', 0):.1f}",
             NONE if e.get("availability_pct") is None else f"{e['availability_pct']:.2f} %"]
            for e in av.get("per_endpoint") or []]
    if rows:
        out.append(table([_("ENDPOINT"), _("ZONE"), _("HOURS ONLINE"), _("AVAILABILITY")],
                         rows))
    stops = r.get("unclean_stops") or []
    if stops:
        out.append(_("Unclean stops (last seen on air): {stops}", stops=", ".join(
            f"{s.get('zone')} {local_time(s.get('last_seen_at'))}" for s in stops)))
    out.append(_("Alerts: {count}, endpoints targeted {targeted}, reached {reached}.",
                 count=alerts.get("count", 0), targeted=alerts.get("targeted", 0),
                 reached=alerts.get("reached", 0)))
    return "\n".join(out)
