from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from loa.app import LoaServer
from loa.config import Config, MqttConfig
from loa.core.fetch_policy import FetchPolicy

pytest_plugins = ["tests.loop_watchdog"]  # every loop step under 20 ms

ADMIN_TOKEN = "test-admin-token"
SOURCE_PASSWORD = "test-source-pw"
# The test upstreams (other stations, CAP resource hosts) listen on loopback, which the
# default fetch policy refuses: test servers allow it, as a station would its own LAN.
LOOPBACK_FETCHES = FetchPolicy.parse(allow=["127.0.0.0/8", "::1"])


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if shutil.which("ffmpeg") is None:  # the setup script installs it; say so loudly if not
        raise pytest.UsageError("the ffmpeg command-line tool is required: run ./run test")


class MemoryTransport:
    """A transport that keeps what it is given (for pure-core fan-out tests)."""

    def __init__(self, proto: MemoryProtocol) -> None:
        self.proto = proto
        self.data = bytearray()
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.data += data

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def abort(self) -> None:
        self.aborted = True
        self.proto.transport = None

    close = abort


class MemoryProtocol:
    def __init__(self) -> None:
        self.transport: MemoryTransport | None = MemoryTransport(self)
        self.writing_paused = False
        self.sink = self.transport


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[LoaServer]]]:
    """Start servers on a free loopback port with a fresh data folder; stopped at the end."""
    servers: list[LoaServer] = []

    async def factory(**overrides: Any) -> LoaServer:
        overrides.setdefault("mqtt", MqttConfig(listen_port=0))  # a free port each
        overrides.setdefault("fetch_policy", LOOPBACK_FETCHES)
        cfg = replace(
            Config(),
            listen_host="127.0.0.1",
            listen_port=0,
            data_dir=tmp_path / f"data{len(servers)}",
            demo=False,
            admin_token=ADMIN_TOKEN,
            source_password=SOURCE_PASSWORD,
            **overrides,
        )
        server = await asyncio.to_thread(LoaServer, cfg)  # opens its database: beside the loop
        await server.start()
        servers.append(server)
        return server

    yield factory
    for s in servers:
        await s.stop()


@pytest.fixture
async def server(make_server: Callable[..., Awaitable[LoaServer]]) -> LoaServer:
    return await make_server()


def auth() -> dict[str, str]:
    """The admin's credentials, asking for messages in English (the API's default is
    Vietnamese: tests of the catalogue ask for it themselves)."""
    return {"Authorization": f"Bearer {ADMIN_TOKEN}", "Accept-Language": "en"}


async def run_cli(server: LoaServer, command: str, *args: str) -> tuple[int, dict]:
    """``python -m loa <command> --url … --token … --json <args>`` against ``server``: (exit,
    the API's JSON as the command printed it), in English (``LANGUAGE=en``, as ``auth()``)."""
    import json
    import os
    import subprocess
    import sys

    proc = await asyncio.to_thread(  # the process starts and is waited for beside the loop
        subprocess.run, [sys.executable, "-m", "loa", command, "--url",
                         f"http://127.0.0.1:{server.port}", "--token", ADMIN_TOKEN, "--json",
                         *args],
        capture_output=True, timeout=30, check=False, env={**os.environ, "LANGUAGE": "en"})
    out, err = proc.stdout, proc.stderr
    return proc.returncode or 0, json.loads(out) if out else {"stderr": err.decode()}


def source_sending(mount: Any, frames: int = 10) -> bool:
    """Whether the mount's source is on and has sent more than ``frames`` frames' worth of
    audio (``Mount.frames_in``: whether a zone takes it or not)."""
    return bool(mount.source.connected and mount.frames_in > frames)
