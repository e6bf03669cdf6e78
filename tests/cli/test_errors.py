"""When something is wrong, the command line says what and what to do: a file is looked for in
the user's own folder (also through ``./run``, which works from the project's) and a missing
one is named with its full path; a zone that does not exist comes with the nearest valid ones;
a bad date with the format and an example; an unreachable server with where its address came
from."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from loa.app import LoaServer
from tests.audio import tone_file
from tests.cli.shell import ROOT, closed_port, environment, loa, server_env, shell


async def user_folder(tmp_path: Path) -> Path:
    """A folder of the user's, away from the project, with ``./run`` the project's own."""
    home = tmp_path / "home" / "tin-tuc"
    await asyncio.to_thread(home.mkdir, parents=True)
    await asyncio.to_thread((home / "run").write_text, f'#!/bin/sh\nexec "{ROOT}/run" "$@"\n')
    await asyncio.to_thread((home / "run").chmod, 0o755)
    return home


async def test_relative_paths_are_the_users_and_a_missing_file_says_so(
    server: LoaServer, tmp_path: Path,
) -> None:
    home = await user_folder(tmp_path)
    await tone_file(home / "ban-tin.mp3", 440, 1.0, ["-c:a", "libmp3lame"])
    env = server_env(server)
    added = await shell(["./run", "loa", "media", "add", "ban-tin.mp3", "--title", "Tin chiều"],
                        env=env, cwd=home, timeout_s=120)
    assert added.code == 0, added.err
    assert [m.filename for m in server.media.list()] == ["ban-tin.mp3"]

    # no server needed to know that a file is missing: none is asked (nothing listens here)
    env["LOA_URL"] = f"http://127.0.0.1:{closed_port()}"
    for args in (["media", "add", "bantin.mp3"], ["endpoints", "import", "ds.csv"]):
        ran = await shell(["./run", "loa", *args], env=env, cwd=home, timeout_s=120)
        assert ran.code == 2 and ran.out == ""
        assert ran.err.endswith(f": không tìm thấy tệp {home / args[-1]}\n"), ran.err
    english = await loa("media", "add", "../bantin.mp3", env={**env, "LANG": "en_US.UTF-8"},
                        cwd=home)
    assert english.err == f"loa media: file not found: {home.parent / 'bantin.mp3'}\n"
    folder = await loa("media", "add", ".", env=env, cwd=home)
    assert folder.code == 2 and folder.err == f"loa media: không phải là tệp: {home}\n"


async def test_run_serve_takes_its_config_from_the_users_folder(tmp_path: Path) -> None:
    """``./run serve`` runs in the project's folder (``./run loa`` finds its data there), but
    ``--config`` names the user's file: a missing one is named with its full path in the
    user's folder, not the project's (a new user's ``./run serve --config loa.toml`` from their
    own folder failed: "cannot read config loa.toml")."""
    home = await user_folder(tmp_path)
    for args in (["--config", "loa.toml"], ["--config=loa.toml"]):
        ran = await shell(["./run", "serve", *args], env=environment(), cwd=home,
                          timeout_s=120)
        assert ran.code == 2, ran.err
        assert f"không đọc được tệp cấu hình {home / 'loa.toml'}: " in ran.err, ran.err


async def test_a_zone_that_does_not_exist_comes_with_the_nearest(server: LoaServer) -> None:
    env = server_env(server)
    typo = await loa("live", "an-binh-1", "an-bnh", "--mount", "studio", env=env)
    assert typo.code == 1 and typo.out == ""
    assert typo.err == ("loa live: Không có vùng 'an-bnh'; gần nhất: an-binh (Xã An Bình), "
                        "an-binh-2 (Thôn An Bình 2), an-binh-1 (Thôn An Bình 1).\n")
    assert not server.engine.requests  # the zone before the typo was not taken either

    # a refusal of the server, with the hint beside it; by name without accents too
    by_name = await loa("endpoints", "list", "--zone", "Phú Mỹ", env=env)
    assert by_name.code == 1
    assert "máy chủ từ chối (404): không có vùng 'Phú Mỹ'" in by_name.err
    assert "gần nhất: phu-my (Xã Phú Mỹ)" in by_name.err
    far = await loa("command", "--zone", "hanoi", "volume", "50", env=env)
    assert far.code == 1 and far.err.endswith(
        "Không có vùng 'hanoi'; xem danh sách vùng bằng: loa zones\n")

    # for scripts: the API's JSON on stdout, the hint on stderr
    scripted = await loa("command", "--zone", "phu-my3", "volume", "50", "--json",
                         env={**env, "LANG": "en_US.UTF-8"})
    assert scripted.code == 1 and scripted.out == '{"error": "unknown zone \'phu-my3\'"}\n'
    assert scripted.err == ("There is no zone 'phu-my3'; the nearest: phu-my (Xã Phú Mỹ), "
                            "phu-my-2 (Thôn Phú Mỹ 2), phu-my-1 (Thôn Phú Mỹ 1).\n")


async def test_a_bad_date_shows_the_format_with_an_example(server: LoaServer) -> None:
    env = server_env(server)
    args = ["schedule", "add", "--zones", "an-binh", "--duration", "30m", "--text", "Chào"]
    bad = await loa(*args, "--start", "ngày mai 6 giờ", env=env)
    assert bad.code == 2 and not server.schedule.items
    assert bad.err.endswith(
        "loa schedule add: lỗi: đối số --start: 'ngày mai 6 giờ' không phải ngày giờ: hãy viết "
        "YYYY-MM-DDTHH:MM theo giờ địa phương, ví dụ 2026-12-01T06:00 (hoặc DD/MM/YYYY HH:MM, "
        "ví dụ 01/12/2026 06:00)\n"), bad.err
    bad = await loa(*args, "--start", "31/02/2030", env={**env, "LANG": "en_US.UTF-8"})
    assert bad.err.endswith("'31/02/2030' is not a date and time: write YYYY-MM-DDTHH:MM in "
                            "local time, e.g. 2026-12-01T06:00 (or DD/MM/YYYY HH:MM, e.g. "
                            "01/12/2026 06:00)\n"), bad.err
    report = await loa("report", "an-binh", "--from", "2026-13-01", "--to", "2027-01-01",
                       env=env)
    assert report.code == 2 and "ví dụ 2026-12-01T06:00" in report.err

    # written as Vietnamese write it, day first: the same local time
    good = await loa(*args, "--start", "01/12/2030 06:00", env=env)
    assert good.code == 0, good.err
    item = next(iter(server.schedule.items.values()))
    assert item.to_json()["start"] == "2030-12-01T06:00:00+07:00"
    assert "lần phát tới 2030-12-01 06:00" in good.out


async def test_an_unreachable_server_is_named_with_where_its_address_came_from(
    tmp_path: Path,
) -> None:
    port = closed_port()
    env = environment(LOA_URL=f"http://127.0.0.1:{port}", LOA_TOKEN="x")
    ran = await loa("zones", env=env, cwd=tmp_path)
    assert ran.code == 1 and ran.out == ""
    first, second = ran.err.splitlines()
    # why, in the user's words: not aiohttp's English
    assert first == (f"loa zones: không kết nối được tới máy chủ Loa ở http://127.0.0.1:{port} "
                     "(lấy từ LOA_URL): kết nối bị từ chối: không có chương trình nào nghe ở "
                     "cổng đó.")
    assert second == ("Máy chủ đã chạy chưa? Khởi động bằng ./run serve, hoặc chỉ tới máy chủ "
                      "khác bằng LOA_URL=http://máy:cổng hoặc --url.")
    given = await loa("zones", "--url", f"http://127.0.0.1:{port}", env=environment(
        LOA_TOKEN="x", LANG="en_US.UTF-8"), cwd=tmp_path)
    assert f"cannot reach the Loa server at http://127.0.0.1:{port} (given with --url): " \
        "connection refused: nothing listens on that port (Cannot connect to host" in given.err
    # an address without its scheme is no address: said as such, a usage error (2)
    bare = await loa("zones", "--url", f"127.0.0.1:{port}", env=env, cwd=tmp_path)
    assert bare.code == 2 and bare.err == (
        f"loa zones: 127.0.0.1:{port} không phải địa chỉ máy chủ: hãy cho địa chỉ dạng "
        "http://127.0.0.1:8080 (--url hoặc LOA_URL)\n")
    unnamed = await loa("zones", "--url", "http://khong-co-may-nay.invalid:8080", env=env,
                        cwd=tmp_path)
    assert unnamed.code == 1 and "(cho bằng --url): không tìm thấy máy nào có tên đó." in \
        unnamed.err


async def test_a_missing_local_file_is_said_first(server: LoaServer, tmp_path: Path) -> None:
    """``alert --file`` takes a local file, else a file of the server's media folder: with
    neither, the local file is what is missing, said first, as a usage error (2)."""
    env = server_env(server)
    ran = await loa("alert", "--zones", "an-binh", "--file", "khong-co.mp3", env=env,
                    cwd=tmp_path)
    assert ran.code == 2 and ran.out == "" and not server.alerts.alerts
    first, second = ran.err.splitlines()
    assert first == f"loa alert: không tìm thấy tệp {tmp_path / 'khong-co.mp3'}"
    assert second.startswith("(Thư mục media của máy chủ cũng không có tệp đó: ")
    scripted = await loa("--json", "alert", "--zones", "an-binh", "--file", "khong-co.mp3",
                         env={**env, "LANG": "en_US.UTF-8"}, cwd=tmp_path)
    assert scripted.code == 2 and "error" in json.loads(scripted.out)
    assert scripted.err.startswith(f"loa alert: file not found: {tmp_path / 'khong-co.mp3'}\n")


async def test_a_negative_count_is_a_usage_error(server: LoaServer) -> None:
    for args in (["zones", "--limit", "-1"], ["media", "list", "--offset", "-5"],
                 ["alert", "--list", "--limit", "x"]):
        ran = await loa(*args, env=server_env(server, LANG="en_US.UTF-8"))
        assert ran.code == 2 and ran.out == "", args
        assert "is not a count: give a whole number from 0 up (0: all)" in ran.err, ran.err
