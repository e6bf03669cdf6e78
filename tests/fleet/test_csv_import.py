"""CSV imports as spreadsheets save them (issue 13): the fixture files of tests/fixtures/csv
through the real API, each as Excel or a station writes it; refusals that say what was seen;
the rows and their audit entry in one transaction. Then the reading itself (separator,
header, encoding), pure."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import loa.control.endpoints as endpoints_module
from loa.app import LoaServer
from loa.control.spreadsheet import TableError, column_key, decimal, decode, read_table
from loa.core.zones import Zone, alert_group_id
from loa.playout.fanout import Subscriber
from tests.conftest import MemoryProtocol
from tests.server.test_alerts import texts
from tests.server.test_api import auth, base, call

FIXTURES = Path(__file__).parents[1] / "fixtures" / "csv"
KNOWN = {"id": ("id", "ma"), "zone": ("zone", "vung"), "name": ("name", "ten")}


async def post_file(server: LoaServer, name: str, content_type: str = "text/csv"
                    ) -> tuple[int, dict[str, Any]]:
    data = await asyncio.to_thread((FIXTURES / name).read_bytes)
    async with aiohttp.ClientSession() as http:
        async with http.post(base(server) + "/api/v1/endpoints.csv", data=data,
                             headers={**auth(), "Content-Type": content_type}) as resp:
            return resp.status, await resp.json()


def place(server: LoaServer, eid: str) -> tuple[str, str, float | None, float | None]:
    ep = server.endpoints.get(eid)
    return ep.name, ep.zone_id, ep.lat, ep.lon


async def test_excel_with_semicolons_and_decimal_commas_is_taken(server: LoaServer) -> None:
    """Excel in a comma-decimal locale (Vietnamese): "CSV UTF-8" is semicolon-separated,
    with ``15,5`` for a coordinate and the header as the user typed it."""
    status, body = await post_file(server, "excel-vi-semicolon.csv")
    assert status == 201, body
    assert [login["username"] for login in body["created"]] == ["xa-101", "xa-102"]
    assert body["updated"] == ["loa-001"]
    assert place(server, "xa-101") == ("Cụm loa chợ, Thôn 1", "an-binh-1", 15.5612, 108.0213)
    assert place(server, "xa-102") == ('Cụm loa "đình"', "an-binh-2", 15.57, 108.03)
    assert place(server, "loa-001") == ("Cụm loa UBND xã", "phu-my-1", -15.5, 108.0)


async def test_a_header_in_another_case_is_taken(server: LoaServer) -> None:
    status, body = await post_file(server, "utf8-bom-header-case.csv")  # ID,Name,Zone
    assert status == 201, body
    assert place(server, "xa-111") == ("Cụm loa Bình Minh", "phu-my-2", None, None)
    assert place(server, "xa-112") == ("Cụm loa Hòa, Thôn 3", "an-binh-1", None, None)


async def test_a_vietnamese_header_is_taken(server: LoaServer) -> None:
    """Mã cụm loa, Tên, Vùng, Vĩ độ, Kinh độ, Địa chỉ, Mã hành chính."""
    status, body = await post_file(server, "tieu-de-tieng-viet.csv")
    assert status == 201, body
    ep = server.endpoints.get("xa-121")
    assert (ep.name, ep.zone_id, ep.lat, ep.lon, ep.address, ep.admin_code) == (
        "Cụm loa trường học", "an-binh-2", 15.58, 108.04, "Trường Tiểu học An Bình", "20551")
    assert server.endpoints.get("xa-122").address == "Bến đò Phú Mỹ"


async def test_excel_unicode_text_in_utf16_is_taken(server: LoaServer) -> None:
    """Excel's "Unicode Text": UTF-16 with its byte-order mark, tab-separated."""
    status, body = await post_file(server, "excel-unicode-text.txt", "text/plain")
    assert status == 201, body
    assert place(server, "xa-131") == ("Cụm loa Đồng Xuân", "an-binh-1", 15.59, 108.05)
    assert server.endpoints.get("xa-131").address == "Thôn Đồng Xuân"
    assert place(server, "xa-132") == ("Cụm loa Ngọc Sơn", "phu-my-2", None, None)


async def test_a_windows_code_page_is_read_when_named_and_refused_clearly_when_not(
    server: LoaServer,
) -> None:
    """Excel's plain "CSV" on Vietnamese Windows is in code page 1258, with tone marks as
    separate characters: read as the Content-Type names it, and composed; without the
    name, refused, saying which encoding was tried, where it failed and what to do."""
    status, body = await post_file(server, "excel-windows-1258.csv")
    assert status == 400 and body["error"] == "nothing imported"
    [error] = body["errors"]
    assert error["line"] == 2
    assert "not valid UTF-8" in error["message"] and "charset=windows-1258" in error["message"]
    assert "xa-141" not in server.endpoints.endpoints
    status, body = await post_file(server, "excel-windows-1258.csv",
                                   "text/csv; charset=windows-1258")
    assert status == 201, body
    ep = server.endpoints.get("xa-141")
    assert (ep.name, ep.address) == ("Cụm loa Hội trường thôn", "Nhà văn hoá thôn Mỹ Lợi")
    status, body = await post_file(server, "excel-windows-1258.csv", "text/csv; charset=tcvn")
    assert status == 400 and body["errors"] == [
        {"line": None, "message": "unknown charset 'tcvn' in the Content-Type"}]


async def test_a_header_without_the_needed_columns_is_refused_saying_what_was_seen(
    server: LoaServer,
) -> None:
    status, body = await post_file(server, "khong-co-cot-vung.csv")
    assert status == 400
    assert body["errors"] == [{"line": 1, "message":
        "the header must name at least the columns id and zone; found 'Mã', 'Tên', "
        "'Xã' with semicolon as the separator"}]
    assert "xa-151" not in server.endpoints.endpoints


def on_disk(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """What another connection (another process, after a crash) finds in the file."""
    with sqlite3.connect(path) as db:
        return list(db.execute(sql))


async def test_the_rows_and_their_audit_entry_are_one_transaction(
    make_server: Callable[..., Awaitable[LoaServer]],
) -> None:
    """Both are on the disk, or neither: the database refusing the audit entry (as a full
    disk would) leaves no row of the import either."""
    server = await make_server()
    status, _ = await post_file(server, "utf8-bom-header-case.csv")
    assert status == 201
    await server.store.flush()
    path = server.store.path
    rows = await asyncio.to_thread(on_disk, path, "SELECT id FROM endpoints WHERE id LIKE 'xa-%'")
    assert sorted(rows) == [("xa-111",), ("xa-112",)]
    audit = await asyncio.to_thread(on_disk, path, "SELECT action, subject, detail FROM audit "
                                                   "WHERE action = 'endpoint.import'")
    assert [(a, s, json.loads(d)["created"]) for a, s, d in audit] == [
        ("endpoint.import", "csv", ["xa-111", "xa-112"])]

    def refuse_import_entries() -> None:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TRIGGER refuse_import BEFORE INSERT ON audit WHEN NEW.action = "
                       "'endpoint.import' BEGIN SELECT RAISE(ABORT, 'disk says no'); END")

    await asyncio.to_thread(refuse_import_entries)
    failed = server.store.failed_writes
    status, _ = await post_file(server, "tieu-de-tieng-viet.csv")
    assert status == 201  # taken in memory: the store logs and counts what it cannot write
    await server.store.flush()
    assert server.store.failed_writes == failed + 1  # one transaction, one failure
    rows = await asyncio.to_thread(on_disk, path, "SELECT id FROM endpoints WHERE id LIKE 'xa-12%'")
    assert rows == []
    status, body = await call(server, "GET", "/api/v1/audit?subject=csv")
    assert status == 200 and len(body["audit"]) == 1


async def test_a_district_re_imported_moves_its_endpoints_and_an_edit_meanwhile_stops_it(
        server: LoaServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 endpoints imported, then imported again into other villages: every one moved,
    in memory and on the disk, an open connection carried to its new zone's stream. An
    endpoint edited while a later import was being planned (beside the loop) makes that
    import take nothing, saying which line."""
    rows = "".join(f"xa-{i:04d},Cụm loa {i},an-binh-1\n" for i in range(2000))
    first = await server.endpoints.import_csv(("id,name,zone\n" + rows).encode())
    assert not first.errors and len(first.created) == 2000
    ear = MemoryProtocol()
    ep = server.endpoints.get("xa-0007")
    sub = Subscriber(ear, "xa-0007", "ws", "xa-0007")
    server.engine.channels["an-binh-1"].join(sub)
    server.endpoints.attach(ep, sub)
    moved = rows.replace("an-binh-1", "phu-my-2")
    again = await server.endpoints.import_csv(("id,name,zone\n" + moved).encode())
    assert not again.errors and not again.created and len(again.updated) == 2000
    assert {e.zone_id for e in server.endpoints.endpoints.values()
            if e.id.startswith("xa-")} == {"phu-my-2"}
    assert sub.feed is server.engine.channels["phu-my-2"].feeds.get("ws")  # carried along
    assert {"type": "zone", "zone": "phu-my-2"} in texts(ear)  # and told where it is now
    await server.store.flush()
    on_disk_zones = await asyncio.to_thread(
        on_disk, server.store.path,
        "SELECT DISTINCT json_extract(data, '$.zone') FROM endpoints WHERE id LIKE 'xa-%'")
    assert on_disk_zones == [("phu-my-2",)]

    planning, edited = threading.Event(), threading.Event()
    plan = endpoints_module.plan_csv_import

    def slow_plan(*args: Any, **kw: Any) -> Any:  # in the worker thread
        planning.set()
        assert edited.wait(10)
        return plan(*args, **kw)

    monkeypatch.setattr(endpoints_module, "plan_csv_import", slow_plan)
    back = rows.replace("Cụm loa 5,", "Cụm loa số 5,") + "xa-9999,Mới,an-binh-2\n"
    importing = asyncio.create_task(server.endpoints.import_csv(("id,name,zone\n" + back)
                                                                .encode()))
    assert await asyncio.to_thread(planning.wait, 10)
    server.endpoints.update("xa-0005", {"name": "Đổi tên"})  # meanwhile, on the loop
    edited.set()
    result = await importing
    assert [str(e) for e in result.errors] == [
        "line 7: endpoint 'xa-0005' was changed while the import ran"]
    assert "xa-9999" not in server.endpoints.endpoints
    assert server.endpoints.get("xa-0001").zone_id == "phu-my-2"  # nothing taken
    assert server.endpoints.get("xa-0005").name == "Đổi tên"


# the reading itself, pure


def test_header_cells_match_whatever_their_case_accents_spacing_or_notes() -> None:
    assert column_key("Mã cụm loa") == "ma_cum_loa"
    assert column_key("  ĐỊA CHỈ ") == "dia_chi"
    assert column_key("Vĩ độ (WGS 84)") == "vi_do"
    assert column_key("Admin-Code") == column_key("admin code") == "admin_code"
    assert column_key("\u0056u\u0300ng") == "vung"  # decomposed accents (macOS) too


def test_a_decimal_comma_becomes_a_point_and_nothing_else_changes() -> None:
    assert [decimal(v) for v in ("15,5", "-108,25", "15.5", "1,2,3", "north", "")] == [
        "15.5", "-108.25", "15.5", "1,2,3", "north", ""]


@pytest.mark.parametrize(("text", "delimiter"), [
    ("id,zone,name\nx,a,b\n", ","),
    ("id;zone;name\nx;a;b,c\n", ";"),
    ("id\tzone\nx\ta\n", "\t"),
    ("sep=|\nid|zone\nx|a\n", "|"),  # Excel's own hint
    ("id;zone\n", ";"),  # too little for csv.Sniffer: the header decides
    ("id;ten;zone\nx;Cụm, chợ; a\ny;b;c\n", ";"),  # a comma in a cell misleads the sniffer
])
def test_the_separator_is_guessed(text: str, delimiter: str) -> None:
    table = read_table(text, KNOWN, ("id", "zone"))
    assert table.delimiter == delimiter
    assert {row.values["id"] for row in table.rows()} <= {"x", "y"}


def test_records_keep_the_line_they_start_on() -> None:
    text = "\r\nID,Tên,Vùng\r\nx,\"two\nlines\",a\r\n\r\n,,\r\ny,b,c\r\n"
    table = read_table(text, KNOWN, ("id", "zone"))
    assert table.header_line == 2
    assert [(row.line, row.values["id"]) for row in table.rows()] == [(3, "x"), (7, "y")]


def test_two_cells_naming_one_column_are_refused() -> None:
    with pytest.raises(TableError, match="columns 'ID' and 'Mã' both name id"):
        read_table("ID,Mã,Zone\n", KNOWN, ("id", "zone"))


def test_an_empty_file_is_refused_as_such() -> None:
    with pytest.raises(TableError, match="the file has no header"):
        read_table("\n\n", KNOWN, ("id", "zone"))


def test_encodings_by_byte_order_mark_by_charset_or_refused() -> None:
    text = "id,name\nxa,Cụm loa Bình\n"
    assert decode(b"\xef\xbb\xbf" + text.encode()) == text
    assert decode(text.encode("utf-16")) == text  # the mark says which byte order
    assert decode(text.encode("utf-16-be"), "utf-16-be") == text
    assert decode(text.encode("utf-32")) == text
    with pytest.raises(TableError, match="NUL bytes"):  # UTF-16 without its mark
        decode(text.encode("utf-16-le"))
    with pytest.raises(TableError, match=r"not valid UTF-16 \(byte 0x00 at byte 2\)"):
        decode(b"\xff\xfe\x00")  # an odd length


def test_an_error_names_the_column_as_the_file_names_it() -> None:
    from loa.control.endpoints import plan_csv_import

    text = "Mã loa;Vùng;Vĩ độ;Kinh độ\nloa-x1;an-binh-1;95,0;106,1\nloa-x1;an-binh-1;;\n"
    plan = plan_csv_import(text, frozenset(), {"an-binh-1": "Thôn 1"}, 0.0, secrets=False)
    assert [str(e) for e in plan.errors] == [
        "line 2: Vĩ độ '95.0' must be from -90 to 90",
        "line 3: Mã loa 'loa-x1' appears twice (first on line 2)"]


def test_only_the_first_unknown_zones_of_a_file_are_looked_up_for_their_nearest() -> None:
    """Each unknown zone's nearest costs a ratio per zone (0.4 s against 10,000 zones): a
    file naming many is told the nearest for the first ``NEAREST_LOOKUPS`` values, once
    each, and the plain error for the rest."""
    from loa.control.endpoints import NEAREST_LOOKUPS, plan_csv_import

    typos = [f"an-binh-{n}" for n in range(3, 3 + NEAREST_LOOKUPS + 2)]
    text = "id,zone\n" + "".join(f"x{i},{z}\n" for i, z in enumerate(typos + typos[:1]))
    plan = plan_csv_import(text, frozenset(), {"an-binh-1": "Thôn 1"}, 0.0, secrets=False)
    said = [str(e) for e in plan.errors]
    assert said[:NEAREST_LOOKUPS] == [
        f"line {i + 2}: unknown zone {z!r}; the nearest: an-binh-1 (Thôn 1)"
        for i, z in enumerate(typos[:NEAREST_LOOKUPS])]
    assert said[NEAREST_LOOKUPS:-1] == [f"line {i + 2}: unknown zone {z!r}" for i, z in
                                        enumerate(typos) if i >= NEAREST_LOOKUPS]
    assert said[-1] == f"line {len(typos) + 2}: " + said[0].split(": ", 1)[1]  # a value seen


async def test_an_import_during_an_alert_leaves_its_endpoints_to_the_alert(
        server: LoaServer) -> None:
    """An endpoint an alert holds in its run-time group: a re-import naming its home zone
    renames it and leaves it in the group (the alert ends it there); the disk keeps its home
    zone, never the group's."""
    rows = "id,name,zone\nxa-01,Cụm loa 1,an-binh-1\nxa-02,Cụm loa 2,an-binh-1\n"
    assert not (await server.endpoints.import_csv(rows.encode())).errors
    group = alert_group_id("an-binh-1", "a1")
    server.zones.add_child(Zone(group, "An Bình 1 (cảnh báo a1)", "an-binh-1"))
    server.engine.add_channel(server.zones.get(group))
    server.endpoints.move("xa-01", group)
    again = await server.endpoints.import_csv(rows.replace("Cụm loa 1", "Loa chợ").encode())
    assert not again.errors
    ep = server.endpoints.get("xa-01")
    assert (ep.zone_id, ep.name) == (group, "Loa chợ")
    await server.store.flush()
    saved = await asyncio.to_thread(on_disk, server.store.path,
                                    "SELECT json_extract(data, '$.zone'), "
                                    "json_extract(data, '$.name') FROM endpoints "
                                    "WHERE id = 'xa-01'")
    assert saved == [("an-binh-1", "Loa chợ")]
