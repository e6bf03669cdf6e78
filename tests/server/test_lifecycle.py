"""Start and stop in phases with deadlines: a part that hangs at shutdown delays the rest by
its deadline, never forever, and everything after it still closes."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

import loa.app
from tests.server.test_alerts import fake_clock_server


async def test_a_part_that_hangs_at_shutdown_is_left_behind_and_the_rest_closes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = await fake_clock_server(tmp_path)
    port = server.port
    hung = asyncio.Event()

    async def hangs() -> None:  # the fleet's MQTT client stuck on a dead broker, say
        hung.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(server.fleet, "stop", hangs)
    monkeypatch.setattr(loa.app, "STOP_DEADLINE_S", 0.2)
    await server.stop()
    assert hung.is_set()
    assert "stopping the clock and background tasks took over 0.2 s" in caplog.text
    # the phases after it ran: the store is closed, the port is free again
    assert server.store.closed
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
