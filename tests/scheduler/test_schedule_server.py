"""Schedules through the API, started on the core's clock, with windows and conflicts."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loa.control.schedule.recurrence import STATION_TZ
from loa.core.priority import Priority
from loa.playout.inputs.generator import tone_source
from loa.playout.programme import Programme, ProgrammeKind
from tests.audio import dominant_hz
from tests.server.test_alerts import ear, fake_clock_server, tick
from tests.server.test_api import call
from tests.server.test_engine import heard


async def step(server, clock, frames: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(frames):
        await tick(server, clock, 1)
        server.schedule.due(server.wall.now())


async def test_a_slot_starts_on_the_frame_and_its_window_closes(tmp_path: Path) -> None:
    server, clock = await fake_clock_server(tmp_path)
    try:
        listener = ear(server, "phu-my-1", "loa-005")
        start = (server.wall.now() + timedelta(seconds=2)).astimezone(STATION_TZ)
        body = {"title": "Bản tin trưa", "zones": ["phu-my"], "duration_s": 3,
                "start": start.replace(tzinfo=None).isoformat(timespec="microseconds"),
                "content": {"kind": "tone", "freq_hz": 700}}
        status, created = await call(server, "POST", "/api/v1/schedules", json=body)
        assert status == 201 and created["conflicts"] == []
        status, clash = await call(server, "POST", "/api/v1/schedules",
                                   json=dict(body, zones=["phu-my-1"], title="Trùng giờ"))
        assert status == 201 and [c["item"] for c in clash["conflicts"]] == [
            created["schedule"]["id"]]
        await call(server, "DELETE", f"/api/v1/schedules/{clash['schedule']['id']}")
        await step(server, clock, 150)  # the slot at 2 s; live takes over at 3 s for 0.5 s
        live = server.engine.request("huyen", Programme("Trực tiếp", ProgrammeKind.GENERATOR,
                                                        tone_source(1000)),
                                     Priority.DISTRICT_LIVE)
        await step(server, clock, 25)
        server.engine.release(live.id)
        await step(server, clock, 150)  # the window closes at 5 s
        packets, pcm = await asyncio.to_thread(heard, listener)
        prios = [p.priority for p in packets]
        first = prios.index(50)
        assert abs(first - 100) <= 1  # within one frame of its slot
        assert max(server.schedule.lateness_s) < 0.021
        assert dominant_hz(pcm[first * 960 + 2400 : first * 960 + 24000]) == pytest.approx(
            700, rel=0.01)
        assert prios[150:175] == [80] * 25  # the live takeover
        assert set(prios[175:250]) == {50}  # the bulletin again, until its window closes
        assert 50 not in prios[252:]
        assert [e["action"] for e in await server.store.audit_log_async(created["schedule"]["id"])
                ][0] == "schedule.cut_short"
        status, listing = await call(server, "GET", "/api/v1/schedules")
        assert [s["title"] for s in listing["schedules"]] == ["Bản tin trưa"]
        server.broadcast_log.consume(server.engine.drain_switch_events())
        logged = await server.store.broadcast_log_async("phu-my-1")
        assert [(e["programme"], e["end_reason"]) for e in logged] == [
            ("Bản tin trưa", "preempted"), ("Trực tiếp", "cancelled"),
            ("Bản tin trưa", "cut short")]
    finally:
        await server.stop()


async def test_bad_schedules_are_refused(tmp_path: Path) -> None:
    server, _ = await fake_clock_server(tmp_path)
    try:
        base = {"zones": ["phu-my"], "start": "2030-01-01T06:00", "duration_s": 60,
                "content": {"kind": "tone"}}
        for change, status in [({"zones": ["nowhere"]}, 404), ({"rrule": "FREQ=OFTEN"}, 400),
                               ({"content": {"kind": "media", "id": "nope"}}, 400),
                               ({"duration_s": 0}, 400), ({"class": "loud"}, 400)]:
            got, body = await call(server, "POST", "/api/v1/schedules", json={**base, **change})
            assert got == status, (change, body)
    finally:
        await server.stop()


async def test_an_item_saved_during_its_slot_plays_at_once_until_its_window_ends(
        tmp_path: Path) -> None:
    """Saved at 10:10 for 10:00-11:00: it goes on air now (late), not never."""
    server, clock = await fake_clock_server(tmp_path)
    try:
        began = (server.wall.now() - timedelta(minutes=10)).astimezone(STATION_TZ)
        status, created = await call(server, "POST", "/api/v1/schedules", json={
            "title": "Bản tin đang giờ", "zones": ["an-binh"], "duration_s": 3600,
            "start": began.replace(tzinfo=None).isoformat(timespec="seconds"),
            "content": {"kind": "tone"}})
        assert status == 201 and created["next"] is None, created
        await step(server, clock, 1)
        label = f"schedule/{created['schedule']['id']}"
        assert [r.zone_id for r in server.engine.requests.values() if r.label == label] == [
            "an-binh"]
        assert server.schedule.running[0].slot == began.replace(microsecond=0)
    finally:
        await server.stop()


async def test_slots_missed_during_an_outage_follow_each_items_policy(tmp_path: Path) -> None:
    from loa.control.store import Store

    server, _ = await fake_clock_server(tmp_path)
    now = server.wall.now().astimezone(STATION_TZ)
    slot = (now - timedelta(seconds=30)).replace(tzinfo=None).isoformat(timespec="seconds")
    common = {"zones": ["an-binh"], "start": slot, "duration_s": 600,
              "content": {"kind": "tone"}}
    _, late = await call(server, "POST", "/api/v1/schedules",
                         json={**common, "title": "late", "missed": "late", "late_minutes": 5})
    _, skip = await call(server, "POST", "/api/v1/schedules",
                         json={**common, "title": "skip", "missed": "skip"})
    await server.stop()
    store = Store(tmp_path / "data" / "loa.sqlite3")  # the outage began before the slot
    store.set_value("schedule_done_until", (now - timedelta(seconds=60)).isoformat())
    store.close()
    again, _ = await fake_clock_server(tmp_path)
    try:
        labels = {r.label for r in again.engine.requests.values()}
        assert f"schedule/{late['schedule']['id']}" in labels
        assert f"schedule/{skip['schedule']['id']}" not in labels
        notes = {a["subject"]: a["detail"]["note"] for a in await again.store.audit_log_async()
                 if a["action"] == "schedule.missed"}
        assert "late" in notes[late["schedule"]["id"]]
        assert "skipped" in notes[skip["schedule"]["id"]]
        assert 29 < max(again.schedule.lateness_s) < 120
    finally:
        await again.stop()


async def test_the_schedule_cli_and_ics_import_export(make_server) -> None:  # type: ignore[no-untyped-def]

    import aiohttp

    from tests.conftest import auth, run_cli
    from tests.server.test_ingest import base

    server = await make_server()

    def loa(*args: str):  # type: ignore[no-untyped-def]  # -> the CLI's (exit, JSON)
        return run_cli(server, "schedule", *args)

    rc, added = await loa("add", "--title", "Bản tin sáng", "--zones", "an-binh",
                          "--start", "2030-01-01T06:00", "--duration", "900",
                          "--rrule", "FREQ=DAILY", "--text", "Chào buổi sáng")
    assert rc == 0 and added["next"].startswith("2030-01-01T06:00:00+07:00")
    async with aiohttp.ClientSession() as http:
        async with http.get(base(server) + "/api/v1/schedules.ics", headers=auth()) as resp:
            ics = await resp.read()
    assert b"RRULE:FREQ=DAILY" in ics and "Bản tin sáng".encode() in ics
    rc, _ = await loa("rm", added["schedule"]["id"])
    rc, listed = await loa("list")
    assert listed["schedules"] == []
    async with aiohttp.ClientSession() as http:
        async with http.post(base(server) + "/api/v1/schedules.ics", data=ics,
                             headers=auth()) as resp:
            imported = await resp.json()
    assert imported["imported"] == [added["schedule"]["id"]] and imported["refused"] == []
    rc, listed = await loa("list")
    assert [s["title"] for s in listed["schedules"]] == ["Bản tin sáng"]


async def test_ffmpeg_hears_the_scheduled_programme_at_its_slot(make_server) -> None:  # type: ignore[no-untyped-def]
    """The one real-time schedule test: a slot 1.5 s ahead, the ffmpeg CLI listening."""
    import asyncio

    from tests.audio import ffmpeg_pull, rms
    from tests.server.test_ingest import base

    server = await make_server()
    start = (server.wall.now() + timedelta(seconds=1.5)).astimezone(STATION_TZ)
    status, _ = await call(server, "POST", "/api/v1/schedules", json={
        "title": "Thử", "zones": ["phu-my"], "duration_s": 4,
        "start": start.replace(tzinfo=None).isoformat(timespec="microseconds"),
        "content": {"kind": "tone", "freq_hz": 700}})
    assert status == 201
    pulling = asyncio.create_task(ffmpeg_pull(f"{base(server)}/zones/phu-my-1/stream.ogg", 3.5))
    pcm = await pulling
    sr = 48000
    loud = [i for i in range(0, len(pcm) - 960, 960) if rms(pcm[i : i + 960]) > 0.05]
    onset_s = loud[0] / sr
    assert 0.8 < onset_s < 2.2  # silence (idle) first, then the slot
    assert rms(pcm[: int(0.5 * sr)]) < 0.01
    assert dominant_hz(pcm[loud[0] + 4800 :]) == pytest.approx(700, rel=0.01)
    status, st = await call(server, "GET", "/api/v1/status")
    # one start (on the frame: the fake-clock test above; how late on a real clock is a
    # figure to watch, not a gate)
    assert st["schedule"]["lateness_ms"]["starts"] == 1


async def test_a_preempted_scheduled_file_resumes_in_place_then_its_window_cuts_it_short(
    tmp_path: Path,
) -> None:
    import subprocess

    import numpy as np

    from tests.audio import FFMPEG

    server, clock = await fake_clock_server(tmp_path)
    try:
        rate = 48000
        steps = np.concatenate([0.3 * np.sin(2 * np.pi * (300 + 100 * s) * np.arange(rate)
                                             / rate) for s in range(6)])
        wav = tmp_path / "steps.wav"
        await asyncio.to_thread(  # ffmpeg run and waited for beside the loop
            subprocess.run, [FFMPEG, "-loglevel", "error", "-f", "s16le", "-ar", "48000", "-ac",
                             "1", "-i", "-", str(wav)],
            input=(steps * 32767).astype("<i2").tobytes(), check=True)
        media, _ = await server.media.add(await asyncio.to_thread(wav.read_bytes), "steps.wav",
                                          "test")
        listener = ear(server, "an-binh-2", "loa-003")
        start = (server.wall.now() + timedelta(seconds=1)).astimezone(STATION_TZ)
        status, _ = await call(server, "POST", "/api/v1/schedules", json={
            "title": "Bậc thang", "zones": ["an-binh"], "duration_s": 5,
            "start": start.replace(tzinfo=None).isoformat(timespec="microseconds"),
            "content": {"kind": "media", "id": media.id}})
        assert status == 201
        await step(server, clock, 50 + 125)  # the slot at 1 s, then 2.5 s of the file
        live = server.engine.request("huyen", Programme("Trực tiếp", ProgrammeKind.GENERATOR,
                                                        tone_source(1000)),
                                     Priority.DISTRICT_LIVE)
        await step(server, clock, 50)  # 1 s live
        server.engine.release(live.id)
        await step(server, clock, 150)  # 1.5 s more of the file: the window (5 s) closes at 6 s
        packets, pcm = await asyncio.to_thread(heard, listener)
        back = next(i for i, p in enumerate(packets)
                    if i > 0 and p.priority == 50 and packets[i - 1].priority == 80)
        after = pcm[back * 960 :]
        assert dominant_hz(after[2400:19200]) == pytest.approx(500, rel=0.01)  # 2.5 s in
        step_at = next(i for i in range(60) if dominant_hz(after[i * 960 : (i + 2) * 960]) > 550)
        assert abs(step_at - 25) <= 1  # the 500 -> 600 Hz step, 0.5 s later: nothing lost
        server.broadcast_log.consume(server.engine.drain_switch_events())
        assert [e["end_reason"] for e in await server.store.broadcast_log_async("an-binh-2")] == [
            "preempted", "cancelled", "cut short"]
    finally:
        await server.stop()


async def test_playlists_and_text_play_in_order_at_the_loudness_target(tmp_path: Path) -> None:
    from loa.codecs.loudness import integrated_lufs
    from tests.audio import tone_bytes

    server, clock = await fake_clock_server(tmp_path)
    try:
        ids = []
        for hz, db in ((600, "-12dB"), (900, "-2dB")):
            f = tmp_path / f"t{hz}.wav"
            data = await tone_bytes(f, hz, 1.0, ["-af", f"volume={db}", "-c:a", "pcm_s16le"],
                                    channels=1)  # made and read beside the loop
            ids.append((await server.media.add(data, f.name, "test"))[0].id)
        listener = ear(server, "phu-my-1", "loa-005")
        start = (server.wall.now() + timedelta(seconds=0.5)).astimezone(STATION_TZ)
        when = start.replace(tzinfo=None).isoformat(timespec="microseconds")
        status, body = await call(server, "POST", "/api/v1/schedules", json={
            "title": "Hai bài", "zones": ["phu-my-1"], "duration_s": 10, "start": when,
            "content": {"kind": "playlist", "items": ids}})
        assert status == 201, body
        await step(server, clock, 25 + 100 + 10)
        packets, pcm = await asyncio.to_thread(heard, listener)
        first = [p.priority for p in packets].index(50) * 960
        a, b = pcm[first + 4800 : first + 43200], pcm[first + 52800 : first + 91200]
        assert dominant_hz(a) == pytest.approx(600, rel=0.01)
        assert dominant_hz(b) == pytest.approx(900, rel=0.01)
        # mastered 10 dB apart, both heard within 1 LU of the target
        target = server.config.loudness_target_lufs
        # measured beside the loop (the first measurement imports scipy: a second)
        assert await asyncio.to_thread(integrated_lufs, a) == pytest.approx(target, abs=1.0)
        assert await asyncio.to_thread(integrated_lufs, b) == pytest.approx(target, abs=1.0)
        status, err = await call(server, "DELETE", f"/api/v1/media/{ids[0]}")
        assert status == 409  # it is in a schedule's playlist
    finally:
        await server.stop()


async def test_text_read_aloud_plays_at_the_loudness_target(tmp_path: Path) -> None:
    from loa.codecs.loudness import integrated_lufs

    server, clock = await fake_clock_server(tmp_path)
    try:
        listener = ear(server, "phu-my-2", "loa-007")
        start = (server.wall.now() + timedelta(seconds=0.5)).astimezone(STATION_TZ)
        status, body = await call(server, "POST", "/api/v1/schedules", json={
            "title": "Thông báo", "zones": ["phu-my-2"], "duration_s": 30,
            "start": start.replace(tzinfo=None).isoformat(timespec="microseconds"),
            "content": {"kind": "text", "text": "Thông báo lịch tiêm chủng cho trẻ em "
                                                "tại trạm y tế xã vào sáng thứ bảy."}})
        assert status == 201, body
        await step(server, clock, 25 + 400)
        packets, pcm = await asyncio.to_thread(heard, listener)
        first = [p.priority for p in packets].index(50) * 960
        # some 8 s of audio measured beside the loop (tens of ms of numpy)
        lufs = await asyncio.to_thread(integrated_lufs, pcm[first:])
        assert lufs == pytest.approx(server.config.loudness_target_lufs, abs=1.0)
    finally:
        await server.stop()


def plain_event(slot: datetime, minutes: int) -> bytes:
    """A plain event as Google Calendar exports it: UTC times, the calendar's zone in
    X-WR-TIMEZONE, no Loa fields."""
    def utc(t: datetime) -> str:
        return t.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    lines = ["BEGIN:VCALENDAR", "PRODID:-//Google Inc//Google Calendar 70.9054//EN",
             "VERSION:2.0", "CALSCALE:GREGORIAN", "METHOD:PUBLISH",
             "X-WR-TIMEZONE:Asia/Ho_Chi_Minh", "BEGIN:VEVENT", f"DTSTART:{utc(slot)}",
             f"DTEND:{utc(slot + timedelta(minutes=minutes))}", "DTSTAMP:20261115T020304Z",
             "UID:0a9s8d7f6g5h4j3k2l1q0w9e8r@google.com", "SEQUENCE:0", "STATUS:CONFIRMED",
             "SUMMARY:Họp giao ban thôn Phú Mỹ", "TRANSP:OPAQUE", "END:VEVENT", "END:VCALENDAR"]
    return "".join(f"{ln}\r\n" for ln in lines).encode()


async def test_a_plain_calendar_event_is_a_draft_until_its_zones_and_content_are_set(
    tmp_path: Path,
) -> None:
    import aiohttp

    from tests.conftest import auth
    from tests.server.test_ingest import base

    async def post_ics(data: bytes) -> dict:  # type: ignore[type-arg]
        async with aiohttp.ClientSession() as http:
            async with http.post(base(server) + "/api/v1/schedules.ics", data=data,
                                 headers=auth()) as resp:
                assert resp.status == 200
                return await resp.json()  # type: ignore[no-any-return]

    server, clock = await fake_clock_server(tmp_path)
    try:
        listener = ear(server, "phu-my-1", "loa-005")
        t0 = server.wall.now()
        slot = (t0 + timedelta(seconds=3)).replace(microsecond=0)  # 2-3 s ahead
        ics = plain_event(slot, minutes=1)
        got = await post_ics(ics)
        sid = "0a9s8d7f6g5h4j3k2l1q0w9e8r@google.com"
        assert got == {"imported": [sid], "drafts": [sid], "refused": []}
        _, listing = await call(server, "GET", "/api/v1/schedules")
        (draft,) = listing["schedules"]
        assert draft["draft"] is True and draft["next"] is None and draft["zones"] == []
        assert draft["title"] == "Họp giao ban thôn Phú Mỹ" and draft["content"] is None
        await step(server, clock, 25)
        status, half = await call(server, "PATCH", f"/api/v1/schedules/{sid}",
                                  json={"zones": ["phu-my"]})
        assert status == 200 and half["schedule"]["draft"] is True and half["next"] is None
        status, done = await call(server, "PATCH", f"/api/v1/schedules/{sid}",
                                  json={"content": {"kind": "tone", "freq_hz": 700}})
        assert status == 200 and done["schedule"]["draft"] is False
        assert done["next"] == slot.astimezone(STATION_TZ).isoformat()
        await step(server, clock, int((slot - t0).total_seconds() * 50) - 25 + 50)
        packets, pcm = await asyncio.to_thread(heard, listener)
        prios = [p.priority for p in packets]
        first = prios.index(50)
        assert abs(first - (slot - t0).total_seconds() * 50) <= 1  # on its slot's frame
        assert dominant_hz(pcm[first * 960 + 2400 : first * 960 + 24000]) == pytest.approx(
            700, rel=0.01)
        # the calendar exported again: the event keeps what the operator gave it
        again = await post_ics(ics)
        assert again == {"imported": [sid], "drafts": [], "refused": []}
        assert server.schedule.items[sid].zones == ["phu-my"]
        # a complete item does not lose its zones by accident; unknown items and zones
        status, err = await call(server, "PATCH", f"/api/v1/schedules/{sid}",
                                 json={"zones": []})
        assert status == 400 and "zones" in err["error"]
        status, _ = await call(server, "PATCH", f"/api/v1/schedules/{sid}",
                               json={"zones": ["nowhere"]})
        assert status == 404
        status, _ = await call(server, "PATCH", "/api/v1/schedules/nope", json={})
        assert status == 404
    finally:
        await server.stop()
