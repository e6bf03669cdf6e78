"""Ctrl-C at the terminal that runs ``loa serve``: the terminal sends SIGINT to the whole
foreground process group, the server's worker processes with it. The server stops in order
and exits 0; its workers ignore the signal and are ended by the server, so nothing in the group
prints a traceback (the loudness worker used to, dying of it mid-wait)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from tests.audio import tone_file
from tests.cli.shell import environment, loa
from tests.cli.test_first_start import FIRST_LAST, serve_until_banner


def process_group(pgid: int) -> dict[int, str]:
    """The processes of group ``pgid`` now: pid -> command line (read from /proc)."""
    members = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # ended while we looked
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
        if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
            members[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return members


async def ended(pid: int) -> None:
    """Return once process ``pid`` (not necessarily our child) has ended: its pidfd turns
    readable."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:  # gone already
        return
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(fd, done.set_result, None)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def test_ctrl_c_stops_the_server_and_its_workers_without_a_traceback(
        tmp_path: Path) -> None:
    env = environment(LOA_MQTT_LISTEN="127.0.0.1:0")
    await tone_file(tmp_path / "chuong.wav", 440.0, 2.0, [])
    # its own session and process group, as a shell's foreground job has
    proc, banner = await serve_until_banner(env, tmp_path, FIRST_LAST, "--listen",
                                            "127.0.0.1:0", "--no-demo",
                                            start_new_session=True)
    try:
        url = banner[0].split("running at ")[1].rstrip("/")
        token = next(line for line in banner if "admin token" in line).rsplit(" ", 1)[1]
        # an upload is measured in the loudness worker, which the server starts for it
        added = await loa("media", "add", "chuong.wav", cwd=tmp_path,
                          env={**env, "LOA_URL": url, "LOA_TOKEN": token})
        assert added.code == 0, added.err
        workers = {pid: argv for pid, argv in (await asyncio.to_thread(
            process_group, proc.pid)).items() if pid != proc.pid}
        assert any("multiprocessing.spawn" in argv for argv in workers.values()), workers

        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does
        code = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    async with asyncio.timeout(10):  # the server ended them, or they follow it out at once
        await asyncio.gather(*(ended(pid) for pid in workers))
    err = await asyncio.to_thread((tmp_path / "serve.log").read_text)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert code == 0  # serve's clean stop (``loa.cli.serve.run``)
