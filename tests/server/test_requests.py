"""Requests take every kind of content through the one factory: what the listener hears."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from loa.core.pcm import SAMPLE_RATE
from tests.audio import dominant_hz, rms, tone_bytes
from tests.server.test_alerts import ear, fake_clock_server, tick
from tests.server.test_api import call
from tests.server.test_engine import heard


async def test_a_playlist_request_plays_its_items_in_order_then_gives_the_zone_back(
        tmp_path: Path) -> None:
    server, clock = await fake_clock_server(tmp_path)
    try:
        ids = []
        for hz in (500, 900):
            wav = await tone_bytes(tmp_path / f"{hz}.wav", hz, 1.0, ["-c:a", "pcm_s16le"])
            item, _ = await server.media.add(wav, f"{hz}.wav", "test", f"Âm {hz}")
            ids.append(item.id)
        listener = ear(server, "an-binh-1", "loa-001")
        status, body = await call(server, "POST", "/api/v1/zones/an-binh-1/requests",
                                  json={"source": {"kind": "playlist", "items": ids}})
        assert status == 201, body
        await tick(server, clock, 150)  # 2 s of playlist, then 1 s of nothing
        assert server.engine.requests == {}  # played out: released by itself
        _, pcm = await asyncio.to_thread(heard, listener)
        second = SAMPLE_RATE
        assert abs(dominant_hz(pcm[int(0.2 * second):int(0.8 * second)]) - 500) < 5
        assert abs(dominant_hz(pcm[int(1.2 * second):int(1.8 * second)]) - 900) < 5
        assert rms(pcm[int(2.3 * second):]) < 1e-3
    finally:
        await server.stop()


async def test_a_text_request_is_read_aloud_before_it_is_granted(tmp_path: Path) -> None:
    server, clock = await fake_clock_server(tmp_path)
    try:
        listener = ear(server, "an-binh-1", "loa-001")
        status, body = await call(server, "POST", "/api/v1/zones/an-binh-1/requests",
                                  json={"source": {"kind": "text",
                                                   "text": "Thông báo lịch tiêm chủng."}})
        assert status == 201, body
        await tick(server, clock, 50)
        _, pcm = await asyncio.to_thread(heard, listener)
        speech = pcm[: SAMPLE_RATE]
        assert rms(speech) > 0.01 and np.count_nonzero(np.abs(speech) > 0.05) > 1000
    finally:
        await server.stop()


async def test_content_a_request_cannot_play_is_a_400_naming_what_to_fix(
        tmp_path: Path) -> None:
    server, _ = await fake_clock_server(tmp_path)
    try:
        for source, says in [
            ({"kind": "video"}, "live, media, playlist, relay, text, tone"),
            ({"kind": "media", "id": "nope"}, "no media item 'nope'"),
            ({"kind": "playlist", "items": ["nope"]}, "for the playlist"),
            ({"kind": "file", "path": "../../etc/passwd"}, "inside the media folder"),
            ({"kind": "file", "path": "missing.mp3"}, "no file 'missing.mp3'"),
            ({"kind": "text", "text": "x", "voice": "klingon"}, "unknown voice"),
            ({"kind": "relay", "url": "ftp://x"}, "http://"),
        ]:
            status, body = await call(server, "POST", "/api/v1/zones/an-binh-1/requests",
                                      json={"source": source})
            assert status == 400 and says in body["error"], (source, body)
        assert server.engine.requests == {}
    finally:
        await server.stop()
