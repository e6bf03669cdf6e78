"""A commune's report to download: ``GET /api/v1/reports/{commune}?format=csv`` (UTF-8 with a
byte-order mark) and ``?format=xlsx`` (an Excel workbook), read back with Python's csv and
with openpyxl: headers in the caller's language (Vietnamese by default), times in the
station's local time, a file name that says the commune and the period."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime, timedelta

import aiohttp
import openpyxl

from loa.app import LoaServer
from loa.core.clock import STATION_TZ
from loa.core.i18n import translate
from tests.api.accounts import add_user, token_of
from tests.server.test_api import auth, base, call

T0 = 1_767_200_400.0  # 2026-01-01 00:00 in Hanoi (UTC+7)
H = 3600.0
ALERT_AT = T0 + 13 * H + 90  # 13:01:30 local, 06:01:30 UTC
AVAILABILITY = ["Cluster id", "Cluster name", "Zone id", "Zone name", "Hours online",
                "Availability (%)"]
ALERTS = ["Alert id", "Alert", "Alert class", "Alert status", "Sent at", "Clusters targeted",
          "Clusters reached", "Reached (%)", "Median time to reach (ms)",
          "Longest time to reach (ms)"]
DAY = "from=2026-01-01&to=2026-01-02"


def history(server: LoaServer) -> None:
    """A day of An Bình: an hour's bulletin, loa-001 online all day, loa-002 half of it, an
    alert to two clusters that reached both."""
    server.store.log_broadcast([
        ("an-binh-1", "Bản tin sáng", "file", 50, "", T0 + 6 * H, T0 + 7 * H, "completed")])
    for ep in server.endpoints.endpoints.values():
        ep.created_at = T0 - 86400
    server.store.log_presence([("loa-001", True, T0 - 100, "connected"),
                               ("loa-002", True, T0 + 12 * H, "connected")])
    server.store.save_alert("a1", "completed", {
        "id": "a1", "class": "emergency", "status": "completed", "created_at": ALERT_AT,
        "content": {"kind": "text", "text": "Lũ về:\nsơ tán ngay"},
        "zones": ["an-binh-1"], "targeted": ["loa-001", "loa-002"],
        "reached_ms": {"loa-001": 12.0, "loa-002": 30.0}})


async def download(server: LoaServer, query: str, headers: dict[str, str]
                   ) -> tuple[aiohttp.ClientResponse, bytes]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base(server)}/api/v1/reports/an-binh?{query}",
                            headers=headers) as resp:
            return resp, await resp.read()


def sections(rows: list[list[str]]) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The CSV's tables by title: (header row, rows); blank rows between tables."""
    out: dict[str, tuple[list[str], list[list[str]]]] = {}
    i = 0
    while i < len(rows):
        title, headers = rows[i][0], rows[i + 1]
        j = i + 2
        while j < len(rows) and rows[j]:
            j += 1
        out[title] = (headers, rows[i + 2 : j])
        i = j + 1
    return out


async def test_the_report_downloads_as_csv_with_a_bom_and_local_times(
        server: LoaServer) -> None:
    history(server)
    resp, body = await download(server, f"{DAY}&format=csv", auth())  # in English
    assert resp.status == 200, body
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert resp.headers["Content-Disposition"] == (
        "attachment; filename=\"bao-cao-an-binh-2026-01-01_2026-01-01.csv\"; "
        "filename*=UTF-8''bao-cao-an-binh-2026-01-01_2026-01-01.csv")
    assert body.startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 by its byte-order mark
    tables = sections(list(csv.reader(io.StringIO(body.decode("utf-8-sig")))))
    headers, rows = tables["Loudspeaker availability"]
    assert headers == AVAILABILITY
    assert ["loa-002", "Cụm loa 2", "an-binh-1", "Thôn An Bình 1", "12.0", "50.0"] in rows
    headers, rows = tables["Alerts in the period"]
    assert headers == ALERTS
    # what it said (one line), local time (not UTC's 06:01:30)
    assert rows == [["a1", "Lũ về: sơ tán ngay", "emergency", "completed",
                     "2026-01-01 13:01:30", "2", "2", "100.0", "21.0", "30.0"]]
    _, rows = tables["Commune report"]
    assert ["Commune", "Xã An Bình"] in rows and ["Period from", "2026-01-01 00:00:00"] in rows
    assert ["emergency bulletins", "0.0", "0:00:00"] in tables["Hours on air by bulletin class"][1]
    assert ["normal bulletins", "1.0", "1:00:00"] in tables["Hours on air by bulletin class"][1]

    resp, body = await download(server, "year=2026&format=csv",  # Vietnamese: the default
                                {"Authorization": auth()["Authorization"]})
    assert resp.status == 200
    assert 'filename="bao-cao-an-binh-2026.csv"' in resp.headers["Content-Disposition"]
    # as a Vietnamese Excel opens it: ';' between cells, a decimal comma
    tables = sections(list(csv.reader(io.StringIO(body.decode("utf-8-sig")), delimiter=";")))
    title = translate("vi", "Loudspeaker availability")
    assert tables[title][0] == [translate("vi", h) for h in AVAILABILITY]
    assert [r[-1] for r in tables[title][1] if r[0] == "loa-001"] == ["100,0"]


async def test_the_report_downloads_as_an_excel_workbook(server: LoaServer) -> None:
    history(server)
    resp, body = await download(server, f"{DAY}&format=xlsx", auth())
    assert resp.status == 200, body
    assert resp.headers["Content-Type"] == \
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert 'filename="bao-cao-an-binh-2026-01-01_2026-01-01.xlsx"' in \
        resp.headers["Content-Disposition"]
    book = await asyncio.to_thread(openpyxl.load_workbook, io.BytesIO(body))
    assert book.sheetnames[:2] == ["Commune report", "Hours on air by bulletin class"]
    sheet = book["Loudspeaker availability"]
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[0] == AVAILABILITY
    assert ["loa-002", "Cụm loa 2", "an-binh-1", "Thôn An Bình 1", 12.0, 50.0] in rows
    assert sheet["A2"].font.b is False and sheet["A1"].font.b is True
    alerts = [list(r) for r in book["Alerts in the period"].iter_rows(values_only=True)]
    assert alerts[0] == ALERTS
    # a real date-time, in local time (Excel has no time zones)
    assert alerts[1] == ["a1", "Lũ về: sơ tán ngay", "emergency", "completed",
                         datetime(2026, 1, 1, 13, 1, 30), 2, 2, 100.0, 21.0, 30.0]
    assert datetime.fromtimestamp(ALERT_AT, STATION_TZ).replace(tzinfo=None) == alerts[1][4]
    assert book["Alerts in the period"]["E2"].number_format == "dd/mm/yyyy hh:mm:ss"
    # a duration is a real duration: an hour's bulletin, not 1.0 of something
    hours = book["Hours on air by bulletin class"]
    assert hours["C5"].value == timedelta(hours=1) and hours["C5"].number_format == "[h]:mm:ss"

    resp, body = await download(server, f"{DAY}&format=xlsx",  # Vietnamese: the default
                                {"Authorization": auth()["Authorization"]})
    book = await asyncio.to_thread(openpyxl.load_workbook, io.BytesIO(body))
    first = book[book.sheetnames[0]]
    assert [c.value for c in first[1]] == [translate("vi", "Report item"),
                                           translate("vi", "Report value")]
    assert [c.value for c in first[2]] == [translate("vi", "Commune"), "Xã An Bình"]


async def test_a_download_is_refused_outside_the_scope_and_for_a_bad_format(
        server: LoaServer) -> None:
    await add_user(server, "op", "operator", "phu-my")
    resp, body = await download(server, f"{DAY}&format=xlsx", await token_of(server, "op"))
    assert resp.status == 403
    status, answer = await call(server, "GET", f"/api/v1/reports/an-binh?{DAY}&format=pdf")
    assert status == 400 and answer["error"] == "format must be json, csv or xlsx"
