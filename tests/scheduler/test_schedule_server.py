"""Schedules through the API, started on the core's clock, with windows and conflicts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from loa.scheduler.recurrence import STATION_TZ
from loa.server.inputs.generator import tone_source
from loa.server.priority import Priority
from loa.server.programme import Programme, ProgrammeKind
from tests.audio import dominant_hz
from tests.server.test_alerts import ear, fake_clock_server, tick
from tests.server.test_api import call
from tests.server.test_engine import heard


def step(server, clock, frames: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(frames):
        tick(server, clock, 1)
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
        step(server, clock, 150)  # the slot at 2 s; live takes over at 3 s for 0.5 s
        live = server.engine.request("huyen", Programme("Trực tiếp", ProgrammeKind.GENERATOR,
                                                        tone_source(1000)),
                                     Priority.DISTRICT_LIVE)
        step(server, clock, 25)
        server.engine.release(live.id)
        step(server, clock, 150)  # the window closes at 5 s
        packets, pcm = heard(listener)
        prios = [p.priority for p in packets]
        first = prios.index(50)
        assert abs(first - 100) <= 1  # within one frame of its slot
        assert max(server.schedule.lateness_s) < 0.021
        assert dominant_hz(pcm[first * 960 + 2400 : first * 960 + 24000]) == pytest.approx(
            700, rel=0.01)
        assert prios[150:175] == [80] * 25  # the live takeover
        assert set(prios[175:250]) == {50}  # the bulletin again, until its window closes
        assert 50 not in prios[252:]
        assert [e["action"] for e in server.store.audit_log(created["schedule"]["id"])
                ][0] == "schedule.cut_short"
        status, listing = await call(server, "GET", "/api/v1/schedules")
        assert [s["title"] for s in listing["schedules"]] == ["Bản tin trưa"]
        server.broadcast_log.consume(server.engine.drain_switch_events())
        assert [(e["programme"], e["end_reason"]) for e in server.store.broadcast_log("phu-my-1")
                ] == [("Bản tin trưa", "preempted"), ("Trực tiếp", "cancelled"),
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


async def test_slots_missed_during_an_outage_follow_each_items_policy(tmp_path: Path) -> None:
    from loa.server.store import Store

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
        notes = {a["subject"]: a["detail"]["note"] for a in again.store.audit_log()
                 if a["action"] == "schedule.missed"}
        assert "late" in notes[late["schedule"]["id"]]
        assert "skipped" in notes[skip["schedule"]["id"]]
        assert 29 < max(again.schedule.lateness_s) < 120
    finally:
        await again.stop()


async def test_the_schedule_cli_and_ics_import_export(make_server) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import json
    import sys

    import aiohttp

    from tests.conftest import auth
    from tests.server.test_ingest import base

    server = await make_server()

    async def loa(*args: str) -> tuple[int, dict]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loa", "schedule", "--url", f"http://127.0.0.1:{server.port}",
            "--token", "test-admin-token", *args, stdout=asyncio.subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        return proc.returncode or 0, json.loads(out)

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
    assert st["schedule"]["lateness_ms"]["starts"] == 1
    assert st["schedule"]["lateness_ms"]["max"] < 25  # on the frame
