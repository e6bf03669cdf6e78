"""A full data disk and a killed server (issue 13, "hostile clients and failing machines"): a
real ``loa serve`` in a child process.

The full disk is the child's file-size limit (``RLIMIT_FSIZE``, ``ulimit -f``) lowered to 0 by
``prlimit`` once it serves, and raised again to give the room back: every write that would
grow a file fails with ``EFBIG``, as every write on a full filesystem fails with ``ENOSPC``
(a tmpfs of a given size would need root to mount). The server ignores ``SIGXFSZ``, as
``loa serve`` does, so the refused write fails instead of killing it. The limit covers every
file the child writes, its log among them (read only outside the window), and the children it
starts: espeak-ng, whose audio library sizes a shared-memory file even when it writes to a
pipe, is killed by ``SIGXFSZ``, which Loa reports as the full disk it is. (Under a real full
disk espeak-ng runs, and Loa's own write of its WAV fails with ``ENOSPC``: tests/test_disk.py
has that write on ``/dev/full``.)

The crashes are ``SIGKILL``: nothing of the server's shutdown runs.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from loa.loadtest.target import LocalLoa
from tests.audio import dominant_hz, ffmpeg_pull, rms, tone_bytes

TOKEN = "disk-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Accept-Language": "en"}
DEADLINE_S = 15.0
ONE_MIB = 1 << 20


@pytest.fixture
async def loa() -> AsyncIterator[LocalLoa]:
    server = LocalLoa(token=TOKEN, source_password="pw", demo=False)
    await server.start()
    try:
        yield server
    finally:
        if server.pid is not None:
            give_room(server.pid)
        await server.stop()


def fill_disk(pid: int) -> None:
    """From now on no file of process ``pid`` may grow: its disk is full."""
    _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))


def give_room(pid: int) -> None:
    """Its disk has room again."""
    try:
        _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))
    except ProcessLookupError:
        pass


async def until(what: str, check: Any, deadline_s: float = DEADLINE_S) -> Any:
    """Poll ``check()`` (an awaitable's factory) until it returns something true; a child
    process's state is watched from outside, so the wait is a poll bounded by a deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while True:
        got = await check()
        if got:
            return got
        if loop.time() > end:
            raise AssertionError(f"{what}: not within {deadline_s:g} s")
        await asyncio.sleep(0.1)  # polling another process, bounded by the deadline


def children(pid: int) -> list[int]:
    """The processes ``pid`` started that still run (Linux: each thread's ``children``)."""
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
            found += [int(p) for p in f.read().split()]
    return found


def read_db(server: LocalLoa, sql: str) -> list[tuple[Any, ...]]:
    """What another process finds in the server's database file now (read-only: it changes
    nothing, not even a checkpoint). Blocking."""
    path = Path(server.data_dir) / "loa.sqlite3"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(db.execute(sql))
    finally:
        db.close()


async def api(http: aiohttp.ClientSession, server: LocalLoa, method: str, path: str,
              **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, server.url + path, headers=AUTH, **kwargs) as resp:
        return resp.status, await resp.json()


def attention_tone_hz(pcm: np.ndarray) -> float:
    """The frequency of the first 240 ms tone after silence (50 ms in, clear of its fade)."""
    frames = pcm[: len(pcm) // 960 * 960].reshape(-1, 960)
    loud = np.flatnonzero(np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)) > 0.1)
    assert len(loud), f"no tone heard (rms {rms(pcm):.4f})"
    start = int(loud[0]) * 960 + 2400
    return dominant_hz(pcm[start : start + 9600])


def partials(server: LocalLoa) -> list[tuple[str, int]]:
    """The upload leftovers in the media library's incoming folder (blocking)."""
    incoming = Path(server.data_dir) / "media" / "library" / ".incoming"
    if not incoming.exists():
        return []
    return [(p.name, p.stat().st_size) for p in incoming.iterdir()]


async def test_on_a_full_disk_alerts_play_uploads_get_507_and_records_follow_the_room(
    loa: LocalLoa, tmp_path: Path,
) -> None:
    assert loa.pid is not None
    wav = await tone_bytes(tmp_path / "tin.wav", 600, 0.5, ["-c:a", "pcm_s16le"])
    async with aiohttp.ClientSession() as http:
        fill_disk(loa.pid)

        async def refusing() -> Any:
            _, status = await api(http, loa, "GET", "/api/v1/status")
            return status["store"]["disk_error"]

        # the server's own once-a-second writes find the disk full
        assert "disk I/O error" in await until("the store sees the full disk", refusing)

        # a listener on each of three villages, connected before the alerts
        villages = ("an-binh-1", "phu-my-1", "an-binh-2")
        ears = [asyncio.create_task(ffmpeg_pull(f"{loa.url}/zones/{zone}/stream.ogg", 5.0))
                for zone in villages]

        async def listening() -> bool:
            _, status = await api(http, loa, "GET", "/api/v1/status")
            return bool(status["listeners"] == len(villages))

        await until("the listeners are connected", listening)
        # an alert with no message, one read aloud, one with a recorded message
        tone_only, tone = await api(http, loa, "POST", "/api/v1/alerts", json={
            "class": "emergency", "zones": ["an-binh-1"]})
        text_status, text = await api(http, loa, "POST", "/api/v1/alerts", json={
            "class": "emergency", "zones": ["phu-my-1"],
            "content": {"kind": "text", "text": "Lũ quét trên sông Ba. Di chuyển ngay."}})
        recorded_form = aiohttp.FormData()
        recorded_form.add_field("spec", '{"class": "emergency", "zones": ["an-binh-2"]}')
        recorded_form.add_field("audio", wav, filename="ban-tin.wav", content_type="audio/wav")
        recorded_status, recorded = await api(http, loa, "POST", "/api/v1/alerts",
                                              data=recorded_form)
        assert (tone_only, text_status, recorded_status) == (201, 201, 201), (
            tone, text, recorded)
        assert recorded["errors"] == [
            "the data disk is full: the upload 'ban-tin.wav' cannot be written (over the "
            "process's file-size limit); only the attention tone plays"]
        ids = {tone["alert"]["id"], text["alert"]["id"], recorded["alert"]["id"]}
        heard = await asyncio.gather(*ears)
        for pcm in heard:  # what each village heard: the two-tone attention signal
            assert attention_tone_hz(pcm) == pytest.approx(853, rel=0.01)
        assert await asyncio.to_thread(os.listdir, Path(loa.data_dir) / "media" / "alerts") \
            == []  # the refused upload left nothing

        async def text_warnings() -> list[str]:
            _, got = await api(http, loa, "GET", f"/api/v1/alerts/{text['alert']['id']}")
            return list(got["alert"].get("warnings") or [])

        warnings = await until("the text alert says why it is not read", text_warnings)
        assert "the data disk is full: the text read aloud cannot be written" in warnings[0]
        assert warnings[0].endswith("only the attention tone plays")

        # an upload is refused, saying why, and leaves nothing behind
        form = aiohttp.FormData()
        form.add_field("file", wav, filename="tin.wav", content_type="audio/wav")
        status, body = await api(http, loa, "POST", "/api/v1/media", data=form)
        assert status == 507
        assert body["error"] == ("the data disk is full: the upload 'tin.wav' cannot be written "
                                 "(over the process's file-size limit)")
        assert await asyncio.to_thread(partials, loa) == []
        # so is a schedule item whose text cannot be read aloud into the disk
        status, body = await api(http, loa, "POST", "/api/v1/schedules", json={
            "title": "Bản tin tối", "zones": ["huyen"], "start": "2100-01-01T19:00",
            "duration_s": 600, "content": {"kind": "text", "text": "Bản tin tối nay."}})
        assert status == 507
        assert body["error"].startswith("the data disk is full: the text read aloud cannot be "
                                        "written")

        status, alarms = await api(http, loa, "GET", "/api/v1/alarms")
        [disk] = [a for a in alarms["alarms"] if a["kind"] == "disk_full"]
        assert "write(s) wait in memory for room" in disk["detail"]
        # the alerts' records are held, not written, not lost
        assert await asyncio.to_thread(read_db, loa, "SELECT id FROM alerts") == []

        give_room(loa.pid)

        async def written() -> bool:
            rows = await asyncio.to_thread(read_db, loa, "SELECT id FROM alerts")
            return {r[0] for r in rows} == ids

        await until("the alert records are written once the disk has room", written)
        audited = await asyncio.to_thread(
            read_db, loa, "SELECT DISTINCT subject FROM audit WHERE action = 'alert.trigger'")
        assert {r[0] for r in audited} == ids

        async def cleared() -> bool:
            _, got = await api(http, loa, "GET", "/api/v1/alarms")
            return all(a["kind"] != "disk_full" for a in got["alarms"])

        await until("the disk alarm clears", cleared)
        _, status = await api(http, loa, "GET", "/api/v1/status")
        assert status["store"]["held_writes"] == 0 and status["store"]["lost_writes"] == 0
        status, body = await api(http, loa, "POST", "/api/v1/media", data=form)
        assert status == 201, body  # room again: the same upload goes in


async def test_a_part_file_left_by_a_server_killed_mid_upload_is_removed_at_the_next_start(
    loa: LocalLoa,
) -> None:
    assert loa.proc is not None
    boundary = "loa-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"dai.wav\"\r\nContent-Type: audio/wav\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = 24 * ONE_MIB
    reader, writer = await asyncio.open_connection("127.0.0.1", loa.port)
    writer.write((f"POST /api/v1/media HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  f"Authorization: Bearer {TOKEN}\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                  f"Content-Length: {len(head) + size + len(tail)}\r\n\r\n").encode() + head)
    writer.write(bytes(3 * ONE_MIB))  # an eighth of it, then the client goes quiet
    await writer.drain()

    async def part_written() -> list[tuple[str, int]]:
        found = await asyncio.to_thread(partials, loa)
        return [p for p in found if p[0].endswith(".part") and p[1] >= 2 * ONE_MIB]

    left = await until("the upload is being written", part_written)
    loa.proc.kill()
    await loa.proc.wait()
    writer.close()
    assert await asyncio.to_thread(partials, loa) == left  # the kill left it there

    await loa.start()  # the same data folder
    assert await asyncio.to_thread(partials, loa) == []
    log_text = await asyncio.to_thread(Path(loa.log_path).read_text)
    assert f"removed 1 partial file(s) ({left[0][1] / 1e6:.1f} MB)" in log_text


async def test_the_programme_on_air_when_the_server_is_killed_is_in_the_log_after_restart(
    loa: LocalLoa, tmp_path: Path,
) -> None:
    assert loa.proc is not None
    async with aiohttp.ClientSession() as http:
        # an upload is measured: the loudness worker starts (it starts on first use)
        form = aiohttp.FormData()
        form.add_field("file", await tone_bytes(tmp_path / "m.wav", 600, 0.5,
                                                ["-c:a", "pcm_s16le"]),
                       filename="m.wav", content_type="audio/wav")
        status, _ = await api(http, loa, "POST", "/api/v1/media", data=form)
        assert status == 201
        status, made = await api(http, loa, "POST", "/api/v1/zones/an-binh/requests", json={
            "source": {"kind": "tone", "freq_hz": 700}, "priority": 50})
        assert status == 201, made

        async def seen_on_air() -> list[tuple[Any, ...]]:
            return [r for r in await asyncio.to_thread(
                read_db, loa, "SELECT programme, started_at, seen_at FROM broadcast_open "
                              "WHERE zone = 'an-binh'") if r[2] - r[1] >= 1.0]

        [(programme, started_at, seen_at)] = await until("the segment is seen on air for 1 s",
                                                         seen_on_air)
        workers = await asyncio.to_thread(children, loa.proc.pid)
        assert workers, "the loudness worker runs beside the server"
        loa.proc.kill()
        killed_at = time.time()
        await loa.proc.wait()

    async def workers_gone() -> bool:
        return not any(await asyncio.to_thread(lambda: [os.path.exists(f"/proc/{pid}")
                                                        for pid in workers]))

    await until("the killed server's worker processes exit with it", workers_gone)

    await loa.start()
    async with aiohttp.ClientSession() as http:
        status, logged = await api(http, loa, "GET", "/api/v1/log?zone=an-binh")
        assert status == 200
        [entry] = [e for e in logged["entries"]  # the zone and those below it: this one
                   if e["programme"] == programme and e["zone"] == "an-binh"]
        assert entry["end_reason"] == "unclean stop"
        assert entry["started_at"] == pytest.approx(started_at)
        # ended at the last second it was seen on air: within a second of the kill
        assert seen_at <= entry["ended_at"] <= killed_at
        assert killed_at - entry["ended_at"] < 1.5
        assert entry["duration_s"] >= 1.0
        status, report = await api(http, loa, "GET", "/api/v1/reports/an-binh?from="
                                   f"{started_at - 60}&to={killed_at + 60}")
        assert status == 200
        assert {(s["zone"], s["last_seen_at"]) for s in report["unclean_stops"]} >= {
            ("an-binh", entry["ended_at"])}
    log_text = await asyncio.to_thread(Path(loa.log_path).read_text)
    assert "the last run stopped uncleanly" in log_text
