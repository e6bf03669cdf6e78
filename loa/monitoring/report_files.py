"""A commune's report (``loa.monitoring.reports``) as files people open: CSV and an Excel
workbook (the district offices file the reports in Excel).

The report is laid out as tables (``report_tables``): a summary, the hours on air by bulletin
class and by zone, each endpoint's availability, the alerts of the period and the unclean
stops, each with a title and a header row, in the reader's language (Vietnamese by default,
through the catalogue) and with times in the station's local time (Asia/Ho_Chi_Minh).

- CSV (``report_csv``): the tables one after another, each its title row, its header row and
  its rows, a blank row between them; UTF-8 with a byte-order mark, so that Excel reads the
  Vietnamese right; times as ``2026-01-01 07:30:00`` (read as dates by any locale's Excel),
  durations as ``h:mm:ss``. Its separators follow the language, as the Excel of that
  language's Windows opens a CSV file with a double click (its "list separator" and
  "decimal symbol"): Vietnamese (vi-VN) ``;`` between cells and a decimal comma (``12,5``);
  English ``,`` and a decimal point. A file that goes to an Excel set up otherwise is
  opened with Data > From Text/CSV, which asks.
- Excel (``report_xlsx``, openpyxl): one sheet a table, headers bold and frozen, times as real
  date-times, durations as real durations (``[h]:mm:ss``), numbers as numbers.

Everything here is blocking and CPU-bound (openpyxl takes tens of milliseconds for a small
workbook): run it beside the loop (``render_report_file`` in a worker thread).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from loa.control.store import Store
from loa.core.clock import STATION_TZ
from loa.core.i18n import N_, translate
from loa.monitoring.reports import ReportScope, commune_report

CSV_TYPE = "text/csv"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMATS = {"csv": CSV_TYPE, "xlsx": XLSX_TYPE}
CSV_TIME = "%Y-%m-%d %H:%M:%S"
XLSX_TIME = "dd/mm/yyyy hh:mm:ss"  # the way Vietnam writes dates, on a real date-time value
XLSX_NUMBER = "0.0###"  # up to 4 decimals (hours: 0.0028 is 10 s), at least one
XLSX_DURATION = "[h]:mm:ss"  # hours beyond 24 go on counting
# the CSV's cell separator and decimal mark by language (what that language's Excel expects)
CSV_SEPARATORS = {"vi": (";", ","), "en": (",", ".")}
SHEET_NAME_CHARS = 31  # Excel's limit
SHEET_NAME_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")

# by the priority class of what played (``reports.CLASSES``), as ``loa report`` names them
CLASS_LABELS = {"emergency": N_("emergency bulletins"), "live": N_("live"),
                "priority": N_("priority bulletins"), "normal": N_("normal bulletins"),
                "fill": N_("fill")}

Cell = str | int | float | datetime | timedelta | None


@dataclass(frozen=True)
class Table:
    """One table of a report: its title, header row and rows, said in one language; a cell
    is text, a number, a local time (aware, in the station's zone), a duration or None
    (empty)."""

    title: str
    headers: list[str]
    rows: list[list[Cell]] = field(default_factory=list)


def local(ts: float | None) -> datetime | None:
    """A unix time as the station's local time (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts, STATION_TZ)


def duration(seconds: float | None) -> timedelta | None:
    """Whole seconds as a duration (None stays None)."""
    return None if seconds is None else timedelta(seconds=round(seconds))


def hms(value: timedelta) -> str:
    """A duration as ``h:mm:ss`` (hours beyond 24 go on counting)."""
    total = round(value.total_seconds())
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def report_tables(report: Mapping[str, Any], language: str,
                  zone_names: Mapping[str, str] | None = None) -> list[Table]:
    """The report (``commune_report``'s) as tables, their titles and headers in
    ``language``; ``zone_names`` names the zones beside their ids."""
    def _(msgid: str) -> str:
        return translate(language, msgid)

    def said(value: Any) -> Any:
        """A word of the data (an alert's class or status, a programme's kind) as the
        catalogue says it, if it does."""
        return translate(language, value) if isinstance(value, str) and value else value

    def alert_title(a: Mapping[str, Any]) -> str:
        """What the alert said, or what it played when it said no words."""
        if a.get("title"):
            return str(a["title"])
        if a.get("content") == "live":
            return translate(language, N_("live from /live/{mount}"),
                             mount=a.get("mount") or "studio")
        if a.get("content") == "tone":
            return _(N_("the attention tone alone"))
        return ""

    names = zone_names or {}
    commune, period = report["commune"], report["period"]
    air, availability = report["on_air_hours"], report["availability"]
    # seconds on air (a report of an older server has hours only: from them)
    secs = report.get("on_air_seconds") or {
        "by_class": {c: h * 3600 for c, h in air["by_class"].items()},
        "total_without_fill": air["total_without_fill"] * 3600,
        "by_zone": {z: {c: h * 3600 for c, h in cl.items()} for z, cl in air["by_zone"].items()}}
    alerts = report["alerts"]
    summary = Table(_(N_("Commune report")), [_(N_("Report item")), _(N_("Report value"))], [
        [_(N_("Commune")), commune["name"]],
        [_(N_("Commune zone id")), commune["id"]],
        [_(N_("Administrative unit code")), commune["admin_code"]],
        [_(N_("Period from")), local(period["start"])],
        [_(N_("Period to")), local(period["end"])],
        [_(N_("Hours on air (without fill)")), air["total_without_fill"]],
        [_(N_("Time on air (without fill)")), duration(secs["total_without_fill"])],
        [_(N_("Loudspeaker clusters")), availability["endpoints"]],
        [_(N_("Availability of the clusters (%)")), availability["pct"]],
        [_(N_("Alerts in the period")), alerts["count"]],
        [_(N_("Clusters targeted by alerts")), alerts["targeted"]],
        [_(N_("Clusters reached by alerts")), alerts["reached"]],
    ])
    classes = list(air["by_class"])
    by_class = Table(_(N_("Hours on air by bulletin class")),
                     [_(N_("Bulletin class")), _(N_("Hours on air")),
                      _(N_("Time on air (h:mm:ss)"))],
                     [[_(CLASS_LABELS.get(c, c)), h, duration(secs["by_class"].get(c))]
                      for c, h in air["by_class"].items()])
    # each zone's time on air by class, as durations: an hour's fraction hides a short alert
    by_zone = Table(_(N_("Time on air by zone (h:mm:ss)")),
                    [_(N_("Zone id")), _(N_("Zone name")),
                     *(_(CLASS_LABELS.get(c, c)) for c in classes)],
                    [[zone, names.get(zone, ""), *(duration(spent.get(c)) for c in classes)]
                     for zone, spent in secs["by_zone"].items()])
    endpoints = Table(_(N_("Loudspeaker availability")),
                      [_(N_("Cluster id")), _(N_("Cluster name")), _(N_("Zone id")),
                       _(N_("Zone name")), _(N_("Hours online")), _(N_("Availability (%)"))],
                      [[e["endpoint"], e["name"], e["zone"], names.get(e["zone"], ""),
                        e["online_h"], e["availability_pct"]]
                       for e in availability["per_endpoint"]])
    alert_rows = Table(_(N_("Alerts in the period")),
                       [_(N_("Alert id")), _(N_("Alert")), _(N_("Alert class")),
                        _(N_("Alert status")),
                        _(N_("Sent at")), _(N_("Clusters targeted")), _(N_("Clusters reached")),
                        _(N_("Reached (%)")), _(N_("Median time to reach (ms)")),
                        _(N_("Longest time to reach (ms)"))],
                       [[a["id"], alert_title(a), said(a["class"]), said(a["status"]),
                         local(a["created_at"]),
                         a["targeted"], a["reached"], a["reach_pct"], a["reach_p50_ms"],
                         a["reach_max_ms"]] for a in alerts["list"]])
    stops = Table(_(N_("Unclean stops")),
                  [_(N_("Zone id")), _(N_("Zone name")), _(N_("Programme kind")),
                   _(N_("Priority level")), _(N_("On air since")), _(N_("Last seen on air"))],
                  [[s["zone"], names.get(s["zone"], ""), said(s["kind"]), s["priority"],
                    local(s["started_at"]), local(s["last_seen_at"])]
                   for s in report["unclean_stops"]])
    return [summary, by_class, by_zone, endpoints, alert_rows, stops]


def report_csv(tables: list[Table], language: str = "en") -> bytes:
    """The tables as one CSV file: each its title, header row and rows, a blank row between;
    UTF-8 with a byte-order mark (Excel needs it to read UTF-8), CRLF line ends; cells
    separated, and decimals marked, as ``language``'s Excel expects (``CSV_SEPARATORS``:
    Vietnamese ``;`` and ``12,5``); durations as ``h:mm:ss``."""
    separator, decimal = CSV_SEPARATORS.get(language, CSV_SEPARATORS["en"])

    def cell(c: Cell) -> str | int:
        if c is None:
            return ""
        if isinstance(c, datetime):
            return c.strftime(CSV_TIME)
        if isinstance(c, timedelta):
            return hms(c)
        if isinstance(c, float):
            return repr(c).replace(".", decimal)
        return c

    out = io.StringIO()
    w = csv.writer(out, delimiter=separator)
    for i, table in enumerate(tables):
        if i:
            w.writerow([])
        w.writerow([table.title])
        w.writerow(table.headers)
        for row in table.rows:
            w.writerow([cell(c) for c in row])
    return out.getvalue().encode("utf-8-sig")


def report_xlsx(tables: list[Table], title: str) -> bytes:
    """The tables as an Excel workbook (.xlsx): a sheet each, named by its title; the header
    row bold and frozen, times as date-times (local, ``dd/mm/yyyy hh:mm:ss``), numbers as
    numbers, columns wide enough for their text. ``title``: the document's title."""
    from openpyxl import Workbook  # imported here: in the worker thread, by those who ask
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    book.remove(book.active)
    book.properties.title = title
    book.properties.creator = "Loa"
    bold = Font(bold=True)
    used: set[str] = set()
    for table in tables:
        sheet = book.create_sheet(_sheet_name(table.title, used))
        sheet.append(table.headers)
        for cell in sheet[1]:
            cell.font = bold
        for row in table.rows:
            sheet.append([c.replace(tzinfo=None) if isinstance(c, datetime) else c
                          for c in row])  # Excel has no time zones: the local time it shows
        widths = [len(h) for h in table.headers]
        for row_cells in sheet.iter_rows(min_row=2):
            for i, cell in enumerate(row_cells):
                if isinstance(cell.value, datetime):
                    cell.number_format = XLSX_TIME
                    widths[i] = max(widths[i], len(XLSX_TIME))
                elif isinstance(cell.value, timedelta):
                    cell.number_format = XLSX_DURATION
                    widths[i] = max(widths[i], len(hms(cell.value)))
                elif isinstance(cell.value, float):
                    cell.number_format = XLSX_NUMBER
                    widths[i] = max(widths[i], len(f"{cell.value:.4f}"))
                elif cell.value is not None:
                    widths[i] = max(widths[i], len(str(cell.value)))
        for i, width in enumerate(widths, start=1):
            sheet.column_dimensions[get_column_letter(i)].width = min(60, width + 2)
        sheet.freeze_panes = "A2"
    data = io.BytesIO()
    book.save(data)
    return data.getvalue()


def _sheet_name(title: str, used: set[str]) -> str:
    """An Excel sheet name from a title: no ``[]:*?/\\``, at most 31 characters, unique."""
    base = SHEET_NAME_FORBIDDEN.sub(" ", title).strip()[:SHEET_NAME_CHARS] or "Sheet"
    name, n = base, 2
    while name.lower() in used:
        suffix = f" ({n})"
        name, n = base[: SHEET_NAME_CHARS - len(suffix)] + suffix, n + 1
    used.add(name.lower())
    return name


def report_filename(scope: ReportScope, start: float, end: float, extension: str) -> str:
    """``bao-cao-<commune>-<period>.<extension>``: the period a year (``2026``) when it is one
    calendar year in local time, else its first and last days (``2026-01-01_2026-06-30``)."""
    first, after = local(start), local(end)
    assert first is not None and after is not None
    if (first.month, first.day, first.hour, first.minute, first.second) == (1, 1, 0, 0, 0) \
            and after == first.replace(year=first.year + 1):
        period = f"{first:%Y}"
    else:
        last = local(end - 1)
        assert last is not None
        period = f"{first:%Y-%m-%d}_{last:%Y-%m-%d}"
    return f"bao-cao-{scope.commune_id}-{period}.{extension}"


def content_disposition(filename: str) -> str:
    """``attachment`` with the filename as ASCII (``filename``, anything else a ``-``) and as
    UTF-8 (RFC 6266's ``filename*``), for a zone id that is not ASCII."""
    fallback = re.sub(r"[^A-Za-z0-9._-]", "-", filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def render_report_file(store: Store, scope: ReportScope, start: float, end: float, now: float,
                       kind: str, language: str, zone_names: Mapping[str, str]) -> bytes:
    """The report of ``scope`` over [start, end) as a ``kind`` file (``csv`` or ``xlsx``),
    in ``language``. Blocking (reads the store, builds the file): for a worker thread.
    Raises ValueError for an empty period, KeyError for another ``kind``."""
    tables = report_tables(commune_report(store, scope, start, end, now), language, zone_names)
    if kind == "csv":
        return report_csv(tables, language)
    if kind == "xlsx":
        return report_xlsx(tables, f"{tables[0].title}: {scope.name}")
    raise KeyError(kind)
