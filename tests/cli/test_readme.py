"""The README's own commands, as written, against a real server: every command of the code
blocks the README marks ``<!-- tested: tests/cli/test_readme.py … -->``, run by bash in a folder
of the user's (with the files they name), through the real ``./run``, with ``LOA_URL`` and
``LOA_TOKEN`` set as the README says. A placeholder (``<id>``, ``<batch>``) is what the
command before it printed."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from loa.app import LoaServer
from loa.core.i18n import translate
from tests.audio import MP3_PUSH, ffmpeg_push, tone_file
from tests.cli.shell import ROOT, Ran, server_env, shell
from tests.server.test_cap import cap_xml
from tests.server.test_ingest import source_url, wait_for

MARK = "<!-- tested: tests/cli/test_readme.py"


def commands_of(readme: str) -> list[str]:
    """The commands of the marked ``sh`` blocks, in order: continuation lines joined, blank
    and comment lines left out."""
    commands: list[str] = []
    lines = readme.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith(MARK):
            continue
        assert lines[i + 1] == "```sh", f"README line {i + 2}: a marked block is ```sh"
        pending = ""
        for body in lines[i + 2:]:
            if body.startswith("```"):
                break
            if body.rstrip().endswith("\\"):
                pending += body.rstrip()[:-1] + " "
                continue
            command = (pending + body).strip()
            pending = ""
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def fill_in(command: str, server: LoaServer) -> str:
    """The README's placeholders, as the commands before made them: a library item's id for
    ``--media <id>``, the newest alert's for ``--cancel <id>``, the newest command batch for
    ``<batch>``."""
    if "--media <id>" in command:
        command = command.replace("<id>", server.media.list()[-1].id)
    if "--cancel <id>" in command:
        newest = max(server.alerts.alerts.values(), key=lambda a: a.created_at)
        command = command.replace("<id>", newest.id)
    if "<batch>" in command:
        command = command.replace("<batch>", list(server.fleet.commands.values())[-1].batch)
    assert not re.search(r"<[a-z]+>", command), f"a placeholder left: {command}"
    return command


@pytest.mark.timeout(600)
async def test_the_readme_commands_run_as_written(
    make_server: Callable[..., Awaitable[LoaServer]], tmp_path: Path,
) -> None:
    commands = commands_of(await asyncio.to_thread((ROOT / "README.md").read_text))
    covered = {c.split()[2] for c in commands if c.startswith("./run loa ")}
    assert covered >= {"zones", "live", "alert", "media", "schedule", "endpoints", "command",
                       "commands", "report"}, covered

    server = await make_server()
    home = tmp_path / "home"  # the user's folder: the files the README names are here
    await asyncio.to_thread(home.mkdir)
    await tone_file(home / "ban-tin.mp3", 500, 2.0, ["-c:a", "libmp3lame"])
    await tone_file(home / "bulletin.mp3", 700, 1.0, ["-c:a", "libmp3lame"])
    await asyncio.to_thread((home / "danh-sach-cum-loa.csv").write_text,
                            "id,name,zone,lat,lon,address,admin_code\n"
                            "xa-01,Cụm loa chợ Phú Mỹ,phu-my-1,15.51,108.02,Chợ Phú Mỹ,20554\n"
                            "xa-02,Cụm loa trường,an-binh-2,,,,\n")
    await asyncio.to_thread((home / "warning.xml").write_bytes, cap_xml("readme-1"))
    # ./run as the README's reader has it: the project's own, started from their folder
    await asyncio.to_thread((home / "run").write_text, f'#!/bin/sh\nexec "{ROOT}/run" "$@"\n')
    await asyncio.to_thread((home / "run").chmod, 0o755)

    studio = await ffmpeg_push(source_url(server), seconds=120, codec_args=MP3_PUSH)
    try:
        mounts = server.mounts.mounts
        await wait_for(lambda: "studio" in mounts and mounts["studio"].session is not None)
        env = server_env(server)
        ran: dict[str, Ran] = {}
        for command in commands:
            command = fill_in(command, server)
            result = await shell(["bash", "-c", command], env=env, cwd=home, timeout_s=120)
            assert result.code == 0 and "Traceback" not in result.err, (
                f"{command}\nexit {result.code}\n{result.out[-2000:]}\n{result.err[-2000:]}")
            ran[command] = result
    finally:
        studio.terminate()
        await studio.wait()

    def out(prefix: str) -> str:
        return next(r.out for c, r in ran.items() if c.startswith(prefix))

    # tables for people, in Vietnamese, with names beside ids
    assert "Xã An Bình" in out("./run loa zones") and "VÙNG" in out("./run loa zones")
    assert "ZONE" in out("LANG=en_US.UTF-8 ./run loa zones")
    assert "an-binh-1 (Thôn An Bình 1)" in out("./run loa endpoints list --zone an-binh")
    assert "an-binh (Xã An Bình)" in out("./run loa live an-binh")
    assert "đã xác nhận" in out("./run loa commands")
    # what went to files did so in the user's folder
    listed = json.loads(await asyncio.to_thread((home / "cum-loa.json").read_text))
    assert [e["id"] for e in listed["endpoints"]] == [f"loa-00{i}" for i in range(1, 9)]
    passwords = await asyncio.to_thread((home / "mat-khau.csv").read_text)
    assert passwords.startswith("id,username,password") and "xa-02" in passwords
    assert "Bản tin sáng" in await asyncio.to_thread((home / "lich.ics").read_text)
    report = await asyncio.to_thread((home / "bao-cao-2026.csv").read_text, encoding="utf-8-sig")
    assert translate("vi", "Hours on air (without fill)") in report  # Vietnamese headers
    assert "Xã An Bình" in report
    # and the server did what they said
    assert {"loa-101", "xa-01", "xa-02"} <= set(server.endpoints.endpoints)
    assert [s.title for s in server.schedule.items.values()] == ["Bản tin sáng", "Tiếp sóng VOV"]
    assert server.zones.get("an-binh-1").volume_pct == 60
    assert not any(r.label == "live/studio" for r in server.engine.requests.values())
