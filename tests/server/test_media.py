"""The media library: uploads judged by decoding, loudness measured and normalised on air."""

from __future__ import annotations

import asyncio
import io
import subprocess
from pathlib import Path

import aiohttp
import pytest

from loa.app import LoaServer
from loa.codecs.loudness import integrated_lufs
from loa.control.media import MediaLibrary
from loa.control.store import Store
from loa.core.priority import Priority
from tests.api.accounts import add_user, token_of
from tests.api.test_accounts import tomorrow
from tests.audio import FFMPEG, tone_bytes, tone_file
from tests.conftest import auth, run_cli
from tests.server.test_alerts import fake_clock_server, tick
from tests.server.test_api import call
from tests.server.test_engine import heard
from tests.server.test_ingest import base


async def upload(server: LoaServer, path: Path, **fields: str) -> tuple[int, dict]:
    form = aiohttp.FormData()
    for k, v in fields.items():
        form.add_field(k, v)
    data = await asyncio.to_thread(path.read_bytes)
    form.add_field("file", io.BytesIO(data), filename=path.name)
    async with aiohttp.ClientSession() as http:
        async with http.post(base(server) + "/api/v1/media", data=form, headers=auth()) as resp:
            return resp.status, await resp.json()


def leftovers(server: LoaServer) -> list[str]:
    root = server.media.root
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_upload_measures_and_lists_and_dedupes(server: LoaServer, tmp_path: Path) -> None:
    mp3 = await tone_file(tmp_path / "ban-tin.mp3", 500, 3.0, ["-c:a", "libmp3lame"])
    status, body = await upload(server, mp3, title="Bản tin sáng", tags="sang,tin-tuc")
    assert status == 201 and body["created"]
    item = body["media"]
    assert item["title"] == "Bản tin sáng" and item["tags"] == ["sang", "tin-tuc"]
    assert item["duration_s"] == pytest.approx(3.0, abs=0.06)
    assert -30 < item["loudness_lufs"] < -10
    assert item["uploader"] == "admin" and "path" not in item
    status, again = await upload(server, mp3)
    assert status == 200 and again["media"]["id"] == item["id"] and not again["created"]
    status, listing = await call(server, "GET", "/api/v1/media")
    assert [m["id"] for m in listing["media"]] == [item["id"]]


async def upload_with(server: LoaServer, headers: dict[str, str], path: Path,
                      **fields: str) -> tuple[int, dict]:
    """A media upload as the caller of ``headers``, with form ``fields`` (title, tags)."""
    form = aiohttp.FormData()
    for k, v in fields.items():
        form.add_field(k, v)
    form.add_field("file", io.BytesIO(await asyncio.to_thread(path.read_bytes)),
                   filename=path.name)
    async with aiohttp.ClientSession() as http:
        async with http.post(base(server) + "/api/v1/media", data=form,
                             headers=headers) as resp:
            return resp.status, await resp.json()


async def test_the_same_recording_from_two_communes_is_an_item_of_each(
        server: LoaServer, tmp_path: Path) -> None:
    """Dedupe by content stays within one owner: another commune uploading the same file
    gets an item of its own (its title, usable in its schedule), never the first commune's;
    the audio is stored once, and stays while any item holds it."""
    await add_user(server, "op-an-binh", "operator", "an-binh")
    await add_user(server, "op-phu-my", "operator", "phu-my")
    an_binh, phu_my = await token_of(server, "op-an-binh"), await token_of(server, "op-phu-my")
    mp3 = await tone_file(tmp_path / "ban-tin.mp3", 500, 1.0, ["-c:a", "libmp3lame"])
    status, first = await upload_with(server, an_binh, mp3, title="Tin An Bình")
    assert status == 201 and first["media"]["zone"] == "an-binh"
    status, second = await upload_with(server, phu_my, mp3, title="Tin Phú Mỹ")
    assert status == 201 and second["created"], second
    mine = second["media"]
    assert mine["id"] != first["media"]["id"] and mine["zone"] == "phu-my"
    assert mine["title"] == "Tin Phú Mỹ" and mine["duration_s"] == first["media"]["duration_s"]
    status, listing = await call(server, "GET", "/api/v1/media", headers=phu_my)
    assert [m["title"] for m in listing["media"]] == ["Tin Phú Mỹ"]
    # the same file again from the same commune: its item, as it was
    status, again = await upload_with(server, phu_my, mp3, title="Tên khác")
    assert status == 200 and not again["created"] and again["media"] == mine
    status, planned = await call(server, "POST", "/api/v1/schedules", headers=phu_my, json={
        "title": "Tin xã", "zones": ["phu-my"], "duration_s": 60, "start": tomorrow(server),
        "content": {"kind": "media", "id": mine["id"]}})
    assert status == 201, planned
    assert len(leftovers(server)) == 1  # one file for both
    # the first commune's item goes: the file stays for the other
    status, _ = await call(server, "DELETE", f"/api/v1/media/{first['media']['id']}",
                           headers=an_binh)
    assert status == 200 and len(leftovers(server)) == 1
    async with aiohttp.ClientSession() as http:
        async with http.get(base(server) + mine["audio_url"], headers=phu_my) as resp:
            assert resp.status == 200 and len(await resp.read()) == mp3.stat().st_size
    await call(server, "DELETE", f"/api/v1/schedules/{planned['schedule']['id']}")
    status, _ = await call(server, "DELETE", f"/api/v1/media/{mine['id']}", headers=phu_my)
    assert status == 200 and leftovers(server) == []


async def test_a_text_file_renamed_mp3_is_refused_and_leaves_nothing(server: LoaServer,
                                                                    tmp_path: Path) -> None:
    fake = tmp_path / "nhac.mp3"
    fake.write_text("Đây không phải là âm thanh.\n" * 100)
    status, body = await upload(server, fake)
    assert status == 400 and "not audio" in body["error"]
    truncated = tmp_path / "cut.mp3"
    whole = await tone_bytes(tmp_path / "whole.wav", 500, 1.0, ["-c:a", "pcm_s16le"])
    truncated.write_bytes(whole[:30])  # a WAV header and nothing else
    status, body = await upload(server, truncated)
    assert status == 400
    assert leftovers(server) == []


async def test_oversize_uploads_are_refused(make_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(max_upload_mb=1)
    big = await tone_file(tmp_path / "long.wav", 500, 15.0, ["-c:a", "pcm_s16le"])  # ~2.6 MB
    status, body = await upload(server, big)
    assert status == 413
    assert leftovers(server) == []


async def test_deletion_is_refused_while_the_item_plays(server: LoaServer, tmp_path: Path) -> None:
    mp3 = await tone_file(tmp_path / "x.mp3", 500, 5.0, ["-c:a", "libmp3lame"])
    _, body = await upload(server, mp3)
    mid = body["media"]["id"]
    status, req = await call(server, "POST", "/api/v1/zones/phu-my/requests",
                             json={"source": {"kind": "media", "id": mid}})
    assert status == 201
    status, err = await call(server, "DELETE", f"/api/v1/media/{mid}")
    assert status == 409
    await call(server, "DELETE", f"/api/v1/requests/{req['request']['id']}")
    status, _ = await call(server, "DELETE", f"/api/v1/media/{mid}")
    assert status == 200 and leftovers(server) == []


async def test_files_mastered_10_db_apart_play_at_the_same_loudness(tmp_path: Path) -> None:
    server, clock = await fake_clock_server(tmp_path)
    try:
        src = tmp_path / "music.wav"
        # music-like enough for BS.1770, with a low crest factor so no gain has to clip
        await asyncio.to_thread(
            subprocess.run, [FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i",
                             "aevalsrc=0.25*sin(2*PI*300*t)+0.2*sin(2*PI*1250*t)"
                             "+0.1*sin(2*PI*3100*t):s=48000:d=6", "-ac", "1", str(src)],
            check=True)
        quiet = tmp_path / "quiet.wav"
        await asyncio.to_thread(
            subprocess.run, [FFMPEG, "-loglevel", "error", "-i", str(src), "-af",
                             "volume=-10dB", str(quiet)], check=True)
        heard_lufs = []
        for path in (src, quiet):
            data = await asyncio.to_thread(path.read_bytes)
            item, _ = await server.media.add(data, path.name, "test")
            from tests.server.test_alerts import ear

            listener = ear(server, "an-binh-1", "loa-001")
            req = server.engine.request("an-binh-1", server.programmes.media_programme(item),
                                        Priority.SCHEDULED)
            await tick(server, clock, 300)
            server.engine.release(req.id)
            listener.transport.abort()  # type: ignore[union-attr]
            await tick(server, clock, 1)
            _, pcm = await asyncio.to_thread(heard, listener)
            heard_lufs.append(await asyncio.to_thread(integrated_lufs, pcm[4800:]))
        target = server.config.loudness_target_lufs
        assert heard_lufs[0] == pytest.approx(target, abs=1.0)
        assert heard_lufs[1] == pytest.approx(target, abs=1.0)
        # and the upload measured them 10 LU apart
        items = sorted(server.media.list(), key=lambda m: m.loudness_lufs or 0)
        assert items[1].loudness_lufs - items[0].loudness_lufs == pytest.approx(10, abs=0.2)
    finally:
        await server.stop()


async def test_the_broadcast_log_says_what_played_and_why_it_ended(tmp_path: Path) -> None:
    server, clock = await fake_clock_server(tmp_path)
    try:
        from loa.playout.inputs.generator import tone_source
        from loa.playout.programme import Programme, ProgrammeKind

        server.engine.request("huyen", Programme("Nhạc nền", ProgrammeKind.GENERATOR,
                                                 tone_source(440)), Priority.FILL)
        wav = await tone_bytes(tmp_path / "tin.wav", 600, 1.0, ["-c:a", "pcm_s16le"])
        item, _ = await server.media.add(wav, "tin.wav", "test", "Bản tin")
        server.engine.request("an-binh-1", server.programmes.media_programme(item),
                              Priority.SCHEDULED)
        await tick(server, clock, 25)  # 0.5 s of the bulletin
        live = server.engine.request("an-binh", Programme("Trực tiếp", ProgrammeKind.GENERATOR,
                                                          tone_source(1000)),
                                     Priority.DISTRICT_LIVE)
        await tick(server, clock, 20)  # 0.4 s live
        server.engine.release(live.id)
        await tick(server, clock, 50)  # the rest of the bulletin, then the fill again
        server.broadcast_log.consume(server.engine.drain_switch_events())
        status = [(e["programme"], e["end_reason"], round(e["duration_s"], 2))
                  for e in await server.store.broadcast_log_async("an-binh-1")]
        # (the bulletin was asked for before the first tick: the fill never went on air here)
        assert status == [("Bản tin", "preempted", 0.5), ("Trực tiếp", "cancelled", 0.4),
                          ("Bản tin", "completed", 0.5)]
        assert [e["programme"] for e in server.broadcast_log.on_air()
                if e["zone"] == "an-binh-1"] == ["Nhạc nền"]
        # phu-my never heard anything but the fill: nothing has ended there yet
        assert await server.store.broadcast_log_async("phu-my-1") == []
    finally:
        await server.stop()
    # stopping closes what was still on air
    def stopped_log() -> list[dict]:  # synchronous sqlite: beside the loop
        store = Store(tmp_path / "data" / "loa.sqlite3")
        try:
            return store.broadcast_log("phu-my-1")
        finally:
            store.close()

    assert [e["end_reason"] for e in await asyncio.to_thread(stopped_log)] == ["server stopped"]


async def test_the_media_cli(make_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]

    server = await make_server()
    mp3 = await tone_file(tmp_path / "nhac.mp3", 500, 1.0, ["-c:a", "libmp3lame"])

    def loa(*args: str):  # type: ignore[no-untyped-def]  # -> the CLI's (exit, JSON)
        return run_cli(server, "media", *args)

    rc, added = await loa("add", str(mp3), "--title", "Nhạc hiệu", "--tags", "hieu")
    assert rc == 0 and added["media"]["title"] == "Nhạc hiệu"
    rc, listed = await loa("list")
    assert [m["id"] for m in listed["media"]] == [added["media"]["id"]]
    rc, removed = await loa("rm", added["media"]["id"])
    assert rc == 0 and removed["deleted"] == added["media"]["id"]
    rc, missing = await loa("rm", "nope")
    assert rc == 1 and "no media item" in missing["error"]


async def test_the_library_answers_from_memory_and_keeps_its_index_across_restarts(
    tmp_path: Path,
) -> None:
    """``get`` and ``list`` never touch the database: the scheduler calls them on the loop."""
    data = await tone_bytes(tmp_path / "tin.wav", 500, 0.5, ["-c:a", "pcm_s16le"])
    db = tmp_path / "loa.sqlite3"
    store = await asyncio.to_thread(Store, db)
    lib = await asyncio.to_thread(MediaLibrary, store, tmp_path / "library", -18.0)
    item, created = await lib.add(data, "tin.wav", "test", "Bản tin")
    again, created_again = await lib.add(data, "copy.wav", "test")
    assert created and not created_again and again is item
    await asyncio.to_thread(store.close)
    # the store is closed (a read would raise StoreClosed): the library answers from memory
    assert lib.get(item.id) is item and lib.list() == [item] and lib.get("nope") is None

    store = await asyncio.to_thread(Store, db)
    try:
        lib = await asyncio.to_thread(MediaLibrary, store, tmp_path / "library", -18.0)
        found = lib.get(item.id)
        assert found is not None and (found.title, found.path) == ("Bản tin", item.path)
        assert (await lib.delete(item.id)).id == item.id
        assert lib.list() == [] and not await asyncio.to_thread(Path(item.path).exists)
    finally:
        await asyncio.to_thread(store.close)
