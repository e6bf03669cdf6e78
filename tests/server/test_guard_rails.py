"""Guard rails an operator expects (issue 14): a typo in a mount name is not taken live."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from loa.app import LoaServer
from loa.config import Config, MqttConfig
from loa.control.datalock import DataDirBusy
from tests.audio import MP3_PUSH, ffmpeg_push
from tests.conftest import ADMIN_TOKEN, SOURCE_PASSWORD
from tests.server.test_api import call
from tests.server.test_ingest import source_url


async def started(data_dir: Path) -> LoaServer:
    cfg = replace(Config(), listen_host="127.0.0.1", listen_port=0, data_dir=data_dir,
                  demo=False, admin_token=ADMIN_TOKEN, source_password=SOURCE_PASSWORD,
                  mqtt=MqttConfig(listen_port=0))
    server = await asyncio.to_thread(LoaServer, cfg)
    await server.start()
    return server


async def test_a_mount_no_source_ever_used_is_not_taken_live(tmp_path: Path) -> None:
    server = await started(tmp_path / "data")
    try:
        status, body = await call(server, "POST", "/api/v1/zones/an-binh/live",
                                  json={"mount": "studoi"})
        assert status == 400 and "did you mean 'studio'" in body["error"], body
        status, _ = await call(server, "POST", "/api/v1/zones/an-binh/live",
                               json={"mount": "studio"})  # the default mount is always known
        assert status == 201
        status, body = await call(server, "POST", "/api/v1/zones/an-binh/live",
                                  json={"mount": "xa-an-binh"})
        assert status == 400 and "no source has ever used" in body["error"]
        push = await ffmpeg_push(source_url(server, "xa-an-binh"), seconds=1,
                                 codec_args=MP3_PUSH)
        assert await asyncio.wait_for(push.wait(), 20) == 0
        status, _ = await call(server, "POST", "/api/v1/zones/phu-my/live",
                               json={"mount": "xa-an-binh"})
        assert status == 201
    finally:
        await server.stop()
    again = await started(tmp_path / "data")  # known across a restart
    try:
        status, _ = await call(again, "POST", "/api/v1/zones/phu-my/live",
                               json={"mount": "xa-an-binh"})
        assert status == 201
    finally:
        await again.stop()


async def test_a_schedule_item_wholly_in_the_past_is_refused(tmp_path: Path) -> None:
    server = await started(tmp_path / "data")
    try:
        yesterday = (server.wall.now() - timedelta(days=1)).replace(microsecond=0)
        item = {"title": "Bản tin", "zones": ["an-binh"], "duration_s": 60,
                "start": yesterday.replace(tzinfo=None).isoformat(),
                "content": {"kind": "tone"}}
        status, body = await call(server, "POST", "/api/v1/schedules", json=item)
        assert status == 400 and "in the past" in body["error"], body
        status, body = await call(server, "POST", "/api/v1/schedules",
                                  json={**item, "rrule": "FREQ=DAILY"})
        assert status == 201 and body["next"] is not None
    finally:
        await server.stop()


async def test_a_second_server_on_one_data_folder_refuses_to_start(tmp_path: Path) -> None:
    first = await started(tmp_path / "data")
    try:
        cfg = replace(Config(), listen_host="127.0.0.1", listen_port=0,
                      data_dir=tmp_path / "data", demo=False)
        with pytest.raises(DataDirBusy, match=f"pid {os.getpid()}, {first.url}"):
            await asyncio.to_thread(LoaServer, cfg)
        # and as a person sees it: `loa serve` says so and exits 1
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loa", "serve", "--listen", "127.0.0.1:0",
            "--data-dir", str(tmp_path / "data"), stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "LANGUAGE": "en"})
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 1 and b"is in use by another Loa" in err
    finally:
        await first.stop()
    again = await started(tmp_path / "data")  # released at stop
    await again.stop()
