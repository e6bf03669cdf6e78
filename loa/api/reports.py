"""Reports for a commune (báo cáo): hours on air, availability and alerts over a period, as
JSON, or as a CSV file or an Excel workbook to download; for a zone of the caller's scope."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime

from aiohttp import hdrs, web

from loa.api.errors import language_of
from loa.api.resource import ApiError, scoped, server_of
from loa.control.schedule.recurrence import STATION_TZ
from loa.core.i18n import N_, Explained
from loa.monitoring.report_files import (
    FORMATS,
    content_disposition,
    render_report_file,
    report_filename,
)
from loa.monitoring.reports import render_report, report_scope

routes = web.RouteTableDef()


class PeriodError(Explained, ValueError):
    """A report period that cannot be read (400); the message says what to give."""


@routes.get("/api/v1/reports/{commune}")
async def report(request: web.Request) -> web.Response:
    """``/api/v1/reports/{commune}?from=2026-01-01&to=2027-01-01`` (local dates or unix
    times; ``?year=2026`` for the yearly report) as JSON; ``?format=csv`` (UTF-8 with a
    byte-order mark) or ``?format=xlsx`` (an Excel workbook) for a file to download, its
    headers in the request's language and its times in local time
    (``loa.monitoring.report_files``). 404 for an unknown commune, 403 outside the caller's
    scope, 400 for a bad period or format."""
    s = server_of(request)
    if request.match_info["commune"] in s.zones:  # an unknown one: report_scope's 404
        scoped(request, request.match_info["commune"])
    kind = request.query.get("format", "json")
    if kind != "json" and kind not in FORMATS:
        raise ApiError(400, N_("format must be json, csv or xlsx"))
    start, end = report_period(request.query)
    scope = report_scope(s.zones, s.endpoints, request.match_info["commune"])
    now = s.wall.now().timestamp()
    # months of history: read, computed and rendered beside the loop
    if kind == "json":
        text = await asyncio.to_thread(render_report, s.store, scope, start, end, now)
        return web.Response(text=text, content_type="application/json")  # UTF-8, as dumps
    names = {zone_id: s.zones.get(zone_id).name for zone_id in scope.zone_ids
             if zone_id in s.zones}
    body = await asyncio.to_thread(render_report_file, s.store, scope, start, end, now, kind,
                                   language_of(request), names)
    filename = report_filename(scope, start, end, kind)
    return web.Response(body=body, content_type=FORMATS[kind],
                        charset="utf-8" if kind == "csv" else None,
                        headers={hdrs.CONTENT_DISPOSITION: content_disposition(filename)})


def report_period(query: Mapping[str, str]) -> tuple[float, float]:
    """(start, end) in unix seconds from ``year``, or from ``from``/``to`` as local ISO
    dates/times or unix times. Raises PeriodError (a ValueError) saying what to give."""
    def parse(value: str) -> float:
        try:
            return float(value)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise PeriodError(N_("{value!r} is neither a date nor a unix time"),
                              value=value) from None
        return (dt if dt.tzinfo else dt.replace(tzinfo=STATION_TZ)).timestamp()

    if query.get("year"):
        try:
            year = int(query["year"])
        except ValueError:
            raise PeriodError(N_("year must be a number")) from None
        if not 2000 <= year <= 2200:
            raise PeriodError(N_("year must be from 2000 to 2200"))
        return parse(f"{year}-01-01"), parse(f"{year + 1}-01-01")
    if not query.get("from") or not query.get("to"):
        raise PeriodError(N_("give ?year=YYYY or ?from=…&to=…"))
    return parse(query["from"]), parse(query["to"])
