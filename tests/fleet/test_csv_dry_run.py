"""A CSV import tried first (``POST endpoints.csv?dry_run=1``), through the real API: checked
exactly as the import is (the same refusals, the same errors by line, in the caller's
language), answering what it would create and change, saving and auditing nothing; and the
command line saying a refused import's errors line by line."""

from __future__ import annotations

import asyncio
import io
import os
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from loa.app import LoaServer
from loa.core.i18n import translate
from tests.api.accounts import add_user, token_of
from tests.conftest import ADMIN_TOKEN
from tests.server.test_api import auth, base, call

GOOD = ("id,name,zone,lat,lon,address,admin_code\n"
        "xa-01,Cụm 1,an-binh-1,\"15,5\",108.0,Thôn 1,20551\n"
        "loa-001,Cụm loa đổi tên,phu-my-1,,,,\n"
        "loa-002,Cụm loa 2,an-binh-1,15.501,108,,\n")
TOO_BIG = b"id,zone\n" + b"x" * (8 << 20)  # made once, at import: not in a loop step
BAD = ("id,name,zone\n"
       "xa-01,Cụm 1,an-binh-1\n"
       "xa-02,Cụm 2,nowhere\n"
       "xa-01,Again,an-binh-1\n")


async def post(server: LoaServer, body: str | bytes, query: str = "?dry_run=1",
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.post(base(server) + "/api/v1/endpoints.csv" + query,
                             data=io.BytesIO(body.encode() if isinstance(body, str) else body),
                             headers={**(headers or auth()), "Content-Type": "text/csv"}
                             ) as resp:
            return resp.status, await resp.json()


def rows_on_disk(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return list(db.execute("SELECT id FROM endpoints WHERE id LIKE 'xa-%'"))


async def test_a_dry_run_says_what_the_import_would_do_and_does_none_of_it(
    server: LoaServer,
) -> None:
    before = {e.id: e.describe() for e in server.endpoints.endpoints.values()}
    status, body = await post(server, GOOD)
    assert status == 200, body
    assert body["dry_run"] is True and body["errors"] == []
    assert body["created"] == [{"line": 2, "id": "xa-01", "name": "Cụm 1", "zone": "an-binh-1",
                                "lat": 15.5, "lon": 108.0, "address": "Thôn 1",
                                "admin_code": "20551"}]
    # what each line for an endpoint that exists would change (empty cells clear a
    # coordinate, as the import does); none for one that says what the registry holds
    assert body["updated"] == [
        {"line": 3, "id": "loa-001", "zone": "phu-my-1",
         "changes": {"name": {"from": "Cụm loa 1", "to": "Cụm loa đổi tên"},
                     "lat": {"from": 15.5, "to": None}, "lon": {"from": 108.0, "to": None},
                     "zone": {"from": "an-binh-1", "to": "phu-my-1"}}},
        {"line": 4, "id": "loa-002", "zone": "an-binh-1", "changes": {}}]
    # nothing saved, nothing audited, no credential made
    assert {e.id: e.describe() for e in server.endpoints.endpoints.values()} == before
    await server.store.flush()
    assert await asyncio.to_thread(rows_on_disk, server.store.path) == []
    status, log = await call(server, "GET", "/api/v1/audit?subject=csv")
    assert status == 200 and log["audit"] == []

    # the import itself then does what the dry run said
    status, done = await post(server, GOOD, "")
    assert status == 201
    assert [c["username"] for c in done["created"]] == [c["id"] for c in body["created"]]
    assert done["updated"] == [u["id"] for u in body["updated"]]
    assert server.endpoints.get("loa-001").zone_id == "phu-my-1"


async def test_a_dry_run_refuses_as_the_import_does_with_the_errors_by_line(
    server: LoaServer,
) -> None:
    dry_status, dry = await post(server, BAD)
    status, real = await post(server, BAD, "")
    assert (dry_status, status) == (400, 400)
    assert dry["error"] == "nothing would be imported" and real["error"] == "nothing imported"
    assert dry["errors"] == real["errors"] == [
        {"line": 3, "message": "unknown zone 'nowhere'"},
        {"line": 4, "message": "id 'xa-01' appears twice (first on line 2)"}]
    assert dry["error_count"] == real["error_count"] == 2
    assert "xa-01" not in server.endpoints.endpoints
    # in the caller's language: Vietnamese by default
    vi = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    status, body = await post(server, BAD, headers=vi)
    assert status == 400
    assert body["error"] == translate("vi", "nothing would be imported")
    assert body["errors"][0] == {"line": 3, "message": translate(
        "vi", "unknown zone {zone!r}", zone="nowhere")}
    assert body["errors"][0]["message"] != "unknown zone 'nowhere'"  # it is translated
    # an error of the whole file has no line
    status, body = await post(server, "\n\n")
    assert status == 400 and [e["line"] for e in body["errors"]] == [None]


async def test_a_dry_run_is_refused_whatever_the_import_would_refuse(
    server: LoaServer,
) -> None:
    await add_user(server, "op", "operator", "huyen")
    await add_user(server, "qt-an-binh", "admin", "an-binh")
    for who in ("op", "qt-an-binh"):
        headers = await token_of(server, who)
        for query in ("?dry_run=1", ""):
            status, body = await post(server, GOOD, query, headers)
            assert status == 403, (who, query, body)
    for query in ("?dry_run=1", ""):
        status, body = await post(server, TOO_BIG, query)
        assert status == 413 and "8 MiB" in body["error"]
    status, body = await post(server, GOOD, "?dry_run=maybe")
    assert status == 400 and "dry_run" in body["error"]
    status, log = await call(server, "GET", "/api/v1/audit?subject=csv")
    assert log["audit"] == []


async def test_the_command_line_says_a_refused_imports_errors_line_by_line(
    make_server: Callable[..., Awaitable[LoaServer]], tmp_path: Path,
) -> None:
    lines = await refused_import(await make_server(), tmp_path / "ds.csv", BAD)
    assert "nothing imported" in lines[0]
    assert lines[1:] == ["line 3: unknown zone 'nowhere'",
                         "line 4: id 'xa-01' appears twice (first on line 2)"]


async def refused_import(server: LoaServer, path: Path, rows: str) -> list[str]:
    """``loa endpoints import`` of ``rows`` (written to ``path``), refused: what it said on
    stderr, a line each, in English (nothing on stdout, exit status 1)."""
    await asyncio.to_thread(path.write_text, rows, encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loa", "endpoints", "--url", f"http://127.0.0.1:{server.port}",
        "--token", ADMIN_TOKEN, "import", str(path), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "LANGUAGE": "en"})
    out, err = await proc.communicate()
    assert proc.returncode == 1 and out == b""
    return err.decode().splitlines()


async def test_the_same_error_on_many_lines_is_said_once_naming_the_first_lines(
    make_server: Callable[..., Awaitable[LoaServer]], tmp_path: Path,
) -> None:
    """150 rows naming a zone that does not exist: one line for the lot, the first five line
    numbers and how many more, rather than 150 lines of the same."""
    rows = "id,name,zone\n" + "".join(f"xa-{i:03d},,phu-my-9\n" for i in range(150))
    lines = await refused_import(await make_server(), tmp_path / "ds.csv", rows)
    assert "nothing imported" in lines[0]
    assert lines[1:] == ["lines 2, 3, 4, 5, 6 and 145 more: unknown zone 'phu-my-9'; the "
                         "nearest: phu-my-2 (Thôn Phú Mỹ 2), phu-my-1 (Thôn Phú Mỹ 1), "
                         "phu-my (Xã Phú Mỹ)"]


async def test_a_row_with_an_unknown_zone_is_told_the_nearest_by_id_or_by_name(
    server: LoaServer,
) -> None:
    """A typo in a zone id, or a zone's name written where its id goes (with or without its
    accents), is answered with the zones it most likely meant, closest first; a value near
    no zone only with what is wrong."""
    rows = ("id,name,zone\n"
            "xa-01,,an-bihn-1\n"  # a typo
            "xa-02,,Thôn An Bình 2\n"  # the name for the id
            "xa-03,,thon an binh 2\n"  # the same, typed without accents
            "xa-04,,nowhere\n"
            "xa-05,,\n")  # no zone at all
    status, body = await post(server, rows)
    assert status == 400
    assert body["errors"] == [
        {"line": 2, "message": "unknown zone 'an-bihn-1'; the nearest: an-binh-1 (Thôn An "
                               "Bình 1), an-binh-2 (Thôn An Bình 2), an-binh (Xã An Bình)"},
        {"line": 3, "message": "unknown zone 'Thôn An Bình 2'; the nearest: an-binh-2 (Thôn "
                               "An Bình 2), an-binh-1 (Thôn An Bình 1), an-binh (Xã An Bình)"},
        {"line": 4, "message": "unknown zone 'thon an binh 2'; the nearest: an-binh-2 (Thôn "
                               "An Bình 2), an-binh-1 (Thôn An Bình 1), an-binh (Xã An Bình)"},
        {"line": 5, "message": "unknown zone 'nowhere'"},
        {"line": 6, "message": "zone is empty: give a zone id (see: loa zones)"}]
