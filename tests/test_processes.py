"""Children started beside the loop (``loa.core.processes``): their exit status, stderr and
signals, awaited without a thread per child (the suite's watchdog sees every loop step)."""

from __future__ import annotations

import asyncio
import signal

import pytest

from loa.core.processes import spawn


async def test_a_child_s_stderr_and_exit_status_come_back() -> None:
    child = await spawn(["sh", "-c", "echo 'mosquitto: bye' >&2; exit 3"], stderr_pipe=True)
    assert child.stderr is not None
    assert await child.stderr.readline() == b"mosquitto: bye\n"
    assert await asyncio.wait_for(child.wait(), 10) == 3
    assert child.returncode == 3 and await child.stderr.read() == b""


async def test_a_signalled_child_reports_its_signal_and_a_reaped_one_is_left_alone() -> None:
    child = await spawn(["sleep", "30"])
    assert child.returncode is None
    child.terminate()
    assert await asyncio.wait_for(child.wait(), 10) == -signal.SIGTERM
    child.kill()  # reaped: its pid may belong to another process now, nothing is sent
    assert child.returncode == -signal.SIGTERM


async def test_a_missing_program_is_said_at_once() -> None:
    with pytest.raises(FileNotFoundError):
        await spawn(["/nonexistent/mosquitto"])
