"""``loa serve`` as a person starts it for the first time: a start that fails (the port is
taken) says why in the user's language and keeps no secret it could not show, so the next
start shows the admin token, the admin password and the source password; a second server on
the same data folder is refused, naming the folder by its absolute path."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.cli.shell import environment, loa

FIRST_LAST = "  Tài khoản / account"  # the banner's last line on a first start
LATER_LAST = "  Mật khẩu nguồn / source password"  # and on a later one


async def serve_until_banner(env: dict[str, str], cwd: Path, last: str, *args: str,
                             **popen: Any) -> tuple[asyncio.subprocess.Process, list[str]]:
    """``python -m loa serve ARGS`` started in ``cwd`` (with ``popen``'s further keywords for
    the process, ``start_new_session``…); its banner's lines, read up to the one that starts
    with ``last`` (the logs go to ``serve.log`` beside it)."""
    log = await asyncio.to_thread(open, cwd / "serve.log", "wb")
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loa", "serve", *args, env=env, cwd=cwd,
            stdout=asyncio.subprocess.PIPE, stderr=log, **popen)
    finally:
        log.close()
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(60):
        while not lines or not lines[-1].startswith(last):
            line = await proc.stdout.readline()
            assert line, f"loa serve ended: {lines}"
            lines.append(line.decode().rstrip("\n"))
    return proc, lines


async def test_a_first_start_that_fails_keeps_nothing_and_the_next_shows_every_secret(
        tmp_path: Path) -> None:
    env = environment(LOA_MQTT_LISTEN="127.0.0.1:0")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        failed = await loa("serve", "--listen", f"127.0.0.1:{port}", "--data-dir", "du-lieu",
                           "--no-demo", env=env, cwd=tmp_path)
        english = await loa("serve", "--listen", f"127.0.0.1:{port}", "--data-dir", "du-lieu",
                            "--no-demo", env={**env, "LANG": "en_US.UTF-8"}, cwd=tmp_path)
    assert english.code == 1 and english.err.endswith(
        f"loa: cannot listen on 127.0.0.1:{port}: the port is already in use (another server, "
        "or another Loa?): stop it, or give this one another port with --listen\n")
    assert failed.code == 1 and failed.out == ""
    assert failed.err.endswith(
        f"loa: không nghe được trên 127.0.0.1:{port}: cổng đã có chương trình khác dùng (một "
        "máy chủ khác, hay một Loa khác?): hãy dừng chương trình đó, hoặc cho Loa này cổng "
        "khác bằng --listen\n"), failed.err
    folder = tmp_path / "du-lieu"
    assert not (folder / "tokens.json").exists() and not (folder / "source_password").exists()

    proc, banner = await serve_until_banner(env, tmp_path, FIRST_LAST, "--listen",
                                            "127.0.0.1:0", "--data-dir", "du-lieu", "--no-demo")
    try:
        url = banner[0].split("running at ")[1].rstrip("/")
        token = next(line for line in banner if "admin token" in line).rsplit(" ", 1)[1]
        assert banner[-1].startswith("  Tài khoản / account (chỉ hiện lần này, chỉ lưu mã băm "
                                     "/ shown once, only its hash is kept): admin  mật khẩu/"
                                     "password ")
        password = banner[-1].split("mật khẩu/password ")[1].split()[0]
        assert any(line.startswith(f"  Mật khẩu nguồn / source password (chỉ hiện lần này, "
                                   f"lưu ở / shown once, kept in {folder}/source_password): ")
                   for line in banner)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/api/v1/login",
                                 json={"username": "admin", "password": password}) as resp:
                assert resp.status == 200
            async with http.get(f"{url}/api/v1/zones",
                                headers={"Authorization": f"Bearer {token}"}) as resp:
                assert resp.status == 200

        # a second server on the folder, named as the user named it: refused, with its path
        second = await loa("serve", "--listen", "127.0.0.1:0", "--data-dir", "du-lieu",
                           env=env, cwd=tmp_path)
        assert second.code == 1
        assert second.err.endswith(
            f"loa: thư mục dữ liệu {folder} đang được một Loa khác dùng (pid {proc.pid}, {url}): "
            "hãy dừng Loa đó, hoặc cho Loa này thư mục riêng bằng --data-dir\n"), second.err
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0

    # kept: a later start shows no secret again, and says where the source password is
    proc, banner = await serve_until_banner(env, tmp_path, LATER_LAST, "--listen",
                                            "127.0.0.1:0", "--data-dir", "du-lieu", "--no-demo")
    try:
        assert banner[-1] == ("  Mật khẩu nguồn / source password: trong cấu hình, "
                              "LOA_SOURCE_PASSWORD hoặc / from config, LOA_SOURCE_PASSWORD or "
                              f"{folder}/source_password")
        assert not any("admin token" in line for line in banner)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    # nothing more printed after the banner (read once it has ended: bounded, as a worker
    # process of its that outlived it would keep the pipe open)
    assert proc.stdout is not None
    with contextlib.suppress(TimeoutError):
        assert await asyncio.wait_for(proc.stdout.read(), 5) == b""
