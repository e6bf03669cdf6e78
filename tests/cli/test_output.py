"""What the commands print: tables for people (local times, names beside ids, long lists a page
at a time), the API's own JSON with ``--json`` (UTF-8, as the API now sends it), and a quiet
end when the reader of a pipe goes away (``loa endpoints list | head``)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp

from loa.api.resource import DESCRIBE_SLICE
from loa.app import LoaServer
from loa.core.clock import STATION_TZ
from tests.audio import tone_file
from tests.cli.shell import loa, server_env
from tests.conftest import auth
from tests.server.test_ingest import base


async def many_endpoints(server: LoaServer, n: int = 1010) -> None:
    rows = "".join(f"xa-{i:04d},Cụm loa số {i},phu-my-1\n" for i in range(n))
    result = await server.endpoints.import_csv(("id,name,zone\n" + rows).encode())
    assert not result.errors and len(result.created) == n


async def raw_get(server: LoaServer, path: str, language: str = "en") -> bytes:
    async with aiohttp.ClientSession() as http:
        async with http.get(base(server) + path,
                            headers={**auth(), "Accept-Language": language}) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
            return await resp.read()


async def test_the_api_answers_utf8_json_and_json_prints_it_as_it_came(server: LoaServer) -> None:
    body = await raw_get(server, "/api/v1/zones")
    assert "Xã An Bình".encode() in body and b"\\u" not in body  # not \u-escaped
    env = server_env(server)
    for args in (["--json", "zones"], ["zones", "--json"]):
        ran = await loa(*args, env=env)
        assert ran.code == 0 and ran.out.encode() == body + b"\n"
    report = await raw_get(server, "/api/v1/reports/an-binh?year=2026")
    assert "Xã An Bình".encode() in report and b"\\u" not in report
    async with aiohttp.ClientSession() as http:  # errors too
        async with http.get(base(server) + "/api/v1/endpoints", params={"zone": "Phú Mỹ"},
                            headers=auth()) as resp:
            assert resp.status == 404
            assert await resp.read() == '{"error": "unknown zone \'Phú Mỹ\'"}'.encode()


async def test_tables_give_names_beside_ids_and_the_station_local_time(server: LoaServer) -> None:
    env = server_env(server)
    ran = await loa("endpoints", "list", "--zone", "an-binh", env=env)
    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    assert lines[0] == "4 cụm loa, 0 trực tuyến."
    assert lines[1].split() == ["MÃ", "TÊN", "VÙNG", "TRẠNG", "THÁI", "TỪ", "LÚC", "ÂM",
                                "LƯỢNG", "KẾT", "NỐI"]
    row = lines[2]
    assert row.startswith("loa-001  Cụm loa 1") and "an-binh-1 (Thôn An Bình 1)" in row
    assert "ngoại tuyến" in row
    # the columns line up under their headers, whatever the accents
    assert lines[2].index("an-binh-1") == lines[1].index("VÙNG")

    alerted = await loa("alert", "--zones", "phu-my", "--text", "Thử còi", env=env)
    assert alerted.code == 0 and "Huỷ bằng: loa alert --cancel" in alerted.out, alerted.err
    alert = next(iter(server.alerts.alerts.values()))
    listed = await loa("alert", "--list", env=env)
    local = datetime.fromtimestamp(alert.created_at, STATION_TZ).strftime("%Y-%m-%d %H:%M:%S")
    assert local in listed.out and alert.id in listed.out and "khẩn cấp" in listed.out
    assert "đọc: “Thử còi”" in listed.out


async def test_long_lists_come_a_page_at_a_time_and_whole_with_json(server: LoaServer) -> None:
    await many_endpoints(server)
    env = server_env(server)
    first = await loa("endpoints", "list", env=env)
    lines = first.out.splitlines()
    assert len(lines) == 1 + 1 + 100 + 1  # count, header, 100 rows, footer
    assert lines[-1] == "Dòng 1-100 trong 1018. Xem tiếp: --offset 100; xem hết: --limit 0."
    last = await loa("endpoints", "list", "--limit", "5", "--offset", "1013", env=env)
    assert last.out.splitlines()[-1] == "Dòng 1014-1018 trong 1018."
    assert last.out.splitlines()[-2].startswith("xa-1009")
    everything = await loa("endpoints", "list", "--limit", "0", env=env)
    assert len(everything.out.splitlines()) == 2 + 1018
    english = await loa("endpoints", "list", env={**env, "LANG": "en_US.UTF-8"})
    assert english.out.splitlines()[-1] == "Rows 1-100 of 1018. Next: --offset 100; all: --limit 0."
    whole = await loa("--json", "endpoints", "list", env=env)
    # what people read in it (a presence's reason) in the language the command asked for
    assert whole.out.encode() == await raw_get(server, "/api/v1/endpoints", "vi") + b"\n"


def read_a_little_then_close(argv: list[str], env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Start ``argv`` with stdout on a pipe, read its first 100 bytes, close the pipe (as
    ``head -c 100`` does), then wait for it: (exit status, what was read, stderr). Blocking."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.read(100)
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    return proc.wait(timeout=60), first, err


async def test_a_reader_that_goes_away_ends_the_command_without_a_traceback(
    server: LoaServer,
) -> None:
    await many_endpoints(server)
    for buffered in ({"PYTHONUNBUFFERED": ""}, {"PYTHONUNBUFFERED": "1"}):
        env = server_env(server, **buffered)
        for args in (["endpoints", "list", "--limit", "0"], ["--json", "endpoints", "list"]):
            code, first, err = await asyncio.to_thread(
                read_a_little_then_close, [sys.executable, "-m", "loa", *args], env)
            assert first  # it had started writing
            assert err == b"", err.decode()[-1000:]  # no traceback, no "Exception ignored"
            assert code == 1  # as Python's documentation of SIGPIPE has it


async def test_a_missing_token_says_how_to_give_one(server: LoaServer, tmp_path: Path) -> None:
    env = server_env(server)
    del env["LOA_TOKEN"]
    ran = await loa("zones", env=env, cwd=tmp_path)
    assert ran.code == 2 and ran.out == ""
    assert ran.err.startswith("loa zones: cần mã truy cập: đặt LOA_TOKEN=<mã>")


def test_columns_count_what_a_terminal_shows() -> None:
    from unicodedata import normalize

    from loa.cli.show import duration, table, width

    decomposed = normalize("NFD", "Xã Phú Mỹ")
    assert len(decomposed) > len("Xã Phú Mỹ") and width(decomposed) == width("Xã Phú Mỹ") == 9
    assert width("广播") == 4
    assert table(["A", "B"], [[decomposed, 1], ["x", None]]) == (
        f"A{' ' * 10}B\n{decomposed}  1\nx{' ' * 10}–\n")  # 9 wide, 2 apart
    assert [duration(s) for s in (59.6, 1800, 3725, None)] == ["1:00", "30:00", "1:02:05", "–"]


async def test_what_was_kept_or_started_late_is_said(server: LoaServer, tmp_path: Path) -> None:
    """The same recording again with another title keeps the item (and says so); an item
    saved while its slot is under way says it starts now, late, until its window ends."""
    env = server_env(server)
    await tone_file(tmp_path / "ban-tin.mp3", 440, 1.0, ["-c:a", "libmp3lame"])
    first = await loa("media", "add", "ban-tin.mp3", "--title", "Tin sáng", env=env,
                      cwd=tmp_path, timeout_s=120)
    assert first.code == 0, first.err
    media_id = server.media.list()[0].id
    again = await loa("media", "add", "ban-tin.mp3", "--title", "Tin chiều", "--tags", "chieu",
                      env=env, cwd=tmp_path)
    assert again.code == 0 and again.out == (
        f"Đã có trong thư viện: {media_id}: Tin sáng.\n"
        "Tiêu đề và thẻ vừa nhập không được áp dụng: mục giữ nguyên tiêu đề và thẻ của nó "
        "(thẻ: –).\n")
    assert [m.title for m in server.media.list()] == ["Tin sáng"]

    began = (server.wall.now() - timedelta(minutes=10)).astimezone(STATION_TZ)
    ran = await loa("schedule", "add", "--zones", "an-binh", "--start",
                    began.strftime("%Y-%m-%dT%H:%M"), "--duration", "1h", "--media", media_id,
                    env=env)
    assert ran.code == 0, ran.err
    ends = began.replace(second=0, microsecond=0) + timedelta(hours=1)
    assert ran.out.splitlines()[1] == (
        f"Khung giờ {began:%Y-%m-%d %H:%M} của mục này đã bắt đầu: mục được phát ngay bây giờ "
        f"(trễ) và kết thúc cùng khung giờ lúc {ends:%Y-%m-%d %H:%M}.")
    listed = await loa("schedule", "list", env=env)
    assert f"thư viện {media_id} (Tin sáng)" in listed.out, listed.out


async def test_a_listing_of_thousands_of_endpoints_leaves_the_loop_its_turns(
        server: LoaServer) -> None:
    """2,000 endpoints listed at once (~8 µs each to describe, 16 ms in one loop step): all
    of them, in the registry's order, across the slices between which the loop runs its
    other work (``DESCRIBE_SLICE``), in a zone's listing too."""
    await many_endpoints(server, 2000)
    # 2,000 endpoints' JSON parsed beside the loop too (15-17 ms here: the watchdog's log)
    body = await asyncio.to_thread(json.loads, await raw_get(server, "/api/v1/endpoints"))
    ids = [e["id"] for e in body["endpoints"]]
    assert ids == list(server.endpoints.endpoints) and len(ids) >= 2000 > 4 * DESCRIBE_SLICE
    in_zone = await asyncio.to_thread(json.loads,
                                      await raw_get(server, "/api/v1/endpoints?zone=phu-my-1"))
    assert [e["id"] for e in in_zone["endpoints"]] == [
        e.id for e in server.endpoints.in_zone("phu-my-1")]
