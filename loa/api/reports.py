"""Reports for a commune (báo cáo): hours on air, availability and alerts over a period, as
JSON or CSV; for a zone of the caller's scope."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime

from aiohttp import web

from loa.api.resource import scoped, server_of
from loa.control.schedule.recurrence import STATION_TZ
from loa.monitoring.reports import render_report, report_scope

routes = web.RouteTableDef()


@routes.get("/api/v1/reports/{commune}")
async def report(request: web.Request) -> web.Response:
    """``/api/v1/reports/{commune}?from=2026-01-01&to=2027-01-01`` (local dates or unix
    times; ``?year=2026`` for the yearly report); ``?format=csv`` for a spreadsheet. 404 for
    an unknown commune, 403 outside the caller's scope, 400 for a bad period."""
    s = server_of(request)
    if request.match_info["commune"] in s.zones:  # an unknown one: report_scope's 404
        scoped(request, request.match_info["commune"])
    as_csv = request.query.get("format") == "csv"
    start, end = report_period(request.query)
    scope = report_scope(s.zones, s.endpoints, request.match_info["commune"])
    # months of history: read, computed and rendered beside the loop
    text = await asyncio.to_thread(render_report, s.store, scope, start, end,
                                   s.wall.now().timestamp(), as_csv)
    if as_csv:
        name = f"bao-cao-{scope.commune_id}.csv"
        return web.Response(text=text, content_type="text/csv",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return web.Response(text=text, content_type="application/json")  # UTF-8, as dumps


def report_period(query: Mapping[str, str]) -> tuple[float, float]:
    """(start, end) in unix seconds from ``year``, or from ``from``/``to`` as local ISO
    dates/times or unix times. Raises ValueError saying what to give."""
    def parse(value: str) -> float:
        try:
            return float(value)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is neither a date nor a unix time") from None
        return (dt if dt.tzinfo else dt.replace(tzinfo=STATION_TZ)).timestamp()

    if query.get("year"):
        try:
            year = int(query["year"])
        except ValueError:
            raise ValueError("year must be a number") from None
        if not 2000 <= year <= 2200:
            raise ValueError("year must be from 2000 to 2200")
        return parse(f"{year}-01-01"), parse(f"{year + 1}-01-01")
    if not query.get("from") or not query.get("to"):
        raise ValueError("give ?year=YYYY or ?from=…&to=…")
    return parse(query["from"]), parse(query["to"])
