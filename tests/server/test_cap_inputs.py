"""CAP 1.2 as senders really write it (tests/fixtures/cap/), posted to a real server over
loopback: wrapped base64, broken optional resources, Updates that cannot be placed, times
without a UTC offset, <effective> times ahead, and codes outside CAP 1.2's lists."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from string import Template

import numpy as np
import pytest

from loa.app import LoaServer
from loa.control.alerts.model import Alert, AlertStatus
from loa.core.clock import NS_PER_S, STATION_TZ, FakeClock
from loa.core.pcm import FRAME_SAMPLES, SAMPLE_RATE
from tests.audio import dominant_hz, rms
from tests.conftest import MemoryProtocol
from tests.server.test_alerts import ear, fake_clock_server, tick
from tests.server.test_cap import post_cap
from tests.server.test_engine import heard

FIXTURES = Path(__file__).parent.parent / "fixtures" / "cap"
MESSAGE_HZ = 600  # the tone recorded in wrapped-base64.xml
ATTENTION_HZ = 853  # the first of the attention tone's two


async def fixture(name: str, **values: str) -> bytes:
    """A CAP fixture, its ``$placeholders`` filled (read beside the loop)."""
    text = await asyncio.to_thread((FIXTURES / name).read_text, "utf-8")
    return Template(text).substitute(values).encode()


def alert_of(server: LoaServer, body: dict) -> Alert:
    return server.alerts.alerts[body["alert"]["id"]]


def on_air(server: LoaServer, alert: Alert) -> bool:
    return any(r.label == f"alert/{alert.id}" for r in server.engine.requests.values())


async def play_out(server: LoaServer, clock: FakeClock, alert: Alert) -> None:
    """Tick until the alert has played in full, then half a second more."""
    await alert.message_ready()
    for _ in range(40):
        await tick(server, clock, 25)
        if alert.status is AlertStatus.COMPLETED:
            break
    assert alert.status is AlertStatus.COMPLETED
    await tick(server, clock, 25)


async def alert_heard(listener: MemoryProtocol) -> np.ndarray:
    """What the listener heard of the alert (priority 100): its PCM, tone first."""
    packets, pcm = await asyncio.to_thread(heard, listener)
    prios = [p.priority for p in packets]
    start, end = prios.index(100), len(prios) - prios[::-1].index(100)
    assert set(prios[start:end]) == {100}
    return pcm[start * FRAME_SAMPLES : end * FRAME_SAMPLES]


async def test_base64_wrapped_at_76_columns_plays_its_audio(tmp_path: Path) -> None:
    server, clock = await fake_clock_server(tmp_path)
    try:
        listener = ear(server, "an-binh-1", "loa-001")
        xml = await fixture("wrapped-base64.xml")
        status, body = await post_cap(server, xml)
        assert status == 201, body
        assert body["alert"]["content"]["kind"] == "file" and body["errors"] == []
        alert = alert_of(server, body)
        await alert.message_ready()
        assert alert.warnings == [] and alert.message is not None
        wrapped = re.search(rb"<derefUri>(.*)</derefUri>", xml, re.S)
        assert wrapped is not None and b"\n" in wrapped[1].strip()
        kept = await asyncio.to_thread(alert.message.read_bytes)
        assert kept == base64.b64decode(b"".join(wrapped[1].split()))
        await play_out(server, clock, alert)
        pcm = await alert_heard(listener)
        sr = SAMPLE_RATE
        assert dominant_hz(pcm[2400:14000]) == pytest.approx(ATTENTION_HZ, rel=0.01)
        message = pcm[sr + sr // 10 : sr + sr // 2]  # after the 1 s tone: the recording
        assert dominant_hz(message) == pytest.approx(MESSAGE_HZ, rel=0.01)
    finally:
        await server.stop()


@pytest.mark.parametrize(("name", "why"), [
    ("bad-base64-resource.xml", "is not base64 data"),
    ("wrong-digest-resource.xml", "digest does not match"),
    ("not-audio-resource.xml", None),  # base64 of text: found out when it is opened
])
async def test_a_broken_optional_resource_falls_back_to_the_text_read_aloud(
        tmp_path: Path, name: str, why: str | None) -> None:
    server, clock = await fake_clock_server(tmp_path)
    try:
        listener = ear(server, "an-binh-1", "loa-001")
        status, body = await post_cap(server, await fixture(name))
        assert status == 201, body  # the alert goes out all the same
        alert = alert_of(server, body)
        assert on_air(server, alert) and alert.status is AlertStatus.ACTIVE
        await alert.message_ready()
        if why is not None:  # judged when the message came: read aloud from the start
            assert body["alert"]["content"]["kind"] == "text"
            assert why in body["errors"][0] and "read aloud instead" in body["errors"][-1]
        assert "read aloud instead" in alert.warnings[-1], alert.warnings
        assert alert.spec.content.kind.value == "text"
        assert "Di chuyển ngay đến nơi cao" in alert.spec.content.to_json()["text"]
        assert alert.message is not None and alert.message.suffix == ".wav"  # espeak-ng's
        assert any("read aloud instead" in h["note"] for h in alert.history)
        await play_out(server, clock, alert)
        pcm = await alert_heard(listener)
        sr = SAMPLE_RATE
        assert dominant_hz(pcm[2400:14000]) == pytest.approx(ATTENTION_HZ, rel=0.01)
        speech = pcm[sr + sr // 10 :]
        assert len(speech) > 2 * sr  # a sentence or three, not a blip
        assert rms(speech) > 0.01  # something is said after the tone
    finally:
        await server.stop()


async def test_an_update_that_cannot_be_placed_still_supersedes(server: LoaServer) -> None:
    status, first = await post_cap(server, await fixture("flood-alert.xml"))
    assert status == 201
    old = alert_of(server, first)
    assert on_air(server, old)
    status, update = await post_cap(server, await fixture("flood-update-outside.xml"))
    assert status == 422 and "area" in update["error"]
    assert update["superseded"] == [old.id]
    assert old.status is AlertStatus.CANCELLED and not on_air(server, old)
    assert "CAP Update KTTV-2026-0101" in old.history[-1]["note"]
    assert not any(r.label.startswith("alert/") for r in server.engine.requests.values())
    # sent again (the sender retries): nothing left to supersede, still not placeable
    status, again = await post_cap(server, await fixture("flood-update-outside.xml"))
    assert status == 422 and again["superseded"] == []


@pytest.fixture
def host_elsewhere() -> Iterator[None]:
    """The host's own time zone is not the station's (UTC-5, no summer time)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "America/Bogota"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.mark.usefixtures("host_elsewhere")
async def test_times_without_an_offset_are_station_time_and_marked_nonconforming(
        tmp_path: Path) -> None:
    server, clock = await fake_clock_server(tmp_path)
    try:
        expires = (server.wall.now() + timedelta(seconds=120)).astimezone(STATION_TZ)
        written = expires.replace(tzinfo=None, microsecond=0).isoformat()  # no offset
        status, body = await post_cap(server, await fixture("local-times.xml",
                                                            expires=written))
        assert status == 201, body
        nonconforming = body["nonconforming"]
        assert [n.split()[0] for n in nonconforming] == ["<sent>", "<expires>"]
        assert all("no UTC offset" in n and "Asia/Ho_Chi_Minh" in n for n in nonconforming)
        alert = alert_of(server, body)
        assert alert.spec.expires_at == expires.replace(microsecond=0).timestamp()
        assert sum("non-conforming CAP" in w for w in alert.warnings) == 2
        assert alert.spec.cap is not None and alert.spec.cap["nonconforming"] == nonconforming
        # it expires at station time, two minutes on (not at the host's, hours away)
        await clock.advance(118 * NS_PER_S)
        assert alert.status is AlertStatus.ACTIVE and on_air(server, alert)
        await clock.advance(3 * NS_PER_S)
        assert alert.status is AlertStatus.EXPIRED and not on_air(server, alert)
    finally:
        await server.stop()


async def test_an_alert_waits_for_its_effective_time_on_the_servers_clock(
        tmp_path: Path) -> None:
    server, clock = await fake_clock_server(tmp_path)
    try:
        listener = ear(server, "an-binh-1", "loa-001")
        effective = (server.wall.now() + timedelta(seconds=60)).replace(microsecond=0)
        status, body = await post_cap(server, await fixture(
            "effective-later.xml", effective=effective.isoformat()))
        assert status == 202 and body["result"] == "scheduled", body
        alert = alert_of(server, body)
        assert body["alert"]["status"] == "pending"
        assert body["alert"]["effective_at"] == effective.timestamp()
        assert "waits until it takes effect" in alert.history[-1]["note"]
        assert not on_air(server, alert)
        # nothing waits on it: another alert goes on air at once, the zones keep playing
        status, other = await post_cap(server, await fixture("flood-alert.xml"))
        assert status == 201 and on_air(server, alert_of(server, other))
        server.alerts.cancel(other["alert"]["id"], "test")
        await tick(server, clock, 10)
        await clock.advance(58 * NS_PER_S)
        assert alert.status is AlertStatus.PENDING and not on_air(server, alert)
        await clock.advance(3 * NS_PER_S)
        assert alert.status is AlertStatus.ACTIVE and on_air(server, alert)
        assert alert.history[-1]["note"] == "took effect"
        await play_out(server, clock, alert)
        pcm = await alert_heard(listener)
        assert dominant_hz(pcm[2400:14000]) == pytest.approx(ATTENTION_HZ, rel=0.01)
        assert rms(pcm[SAMPLE_RATE + SAMPLE_RATE // 10 :]) > 0.01  # the text, read aloud
    finally:
        await server.stop()


async def test_a_cap_cancel_stops_an_alert_before_it_takes_effect(tmp_path: Path) -> None:
    server, clock = await fake_clock_server(tmp_path)
    try:
        effective = (server.wall.now() + timedelta(seconds=60)).replace(microsecond=0)
        status, body = await post_cap(server, await fixture(
            "effective-later.xml", effective=effective.isoformat()))
        assert status == 202
        alert = alert_of(server, body)
        status, cancel = await post_cap(server, await fixture("cancel-effective-later.xml"))
        assert status == 200 and cancel["alerts"] == [alert.id]
        assert alert.status is AlertStatus.CANCELLED
        await clock.advance(61 * NS_PER_S)
        assert alert.status is AlertStatus.CANCELLED and not on_air(server, alert)
        assert alert.waiting is not None and alert.waiting.done()
    finally:
        await server.stop()


async def test_an_alert_waiting_for_its_effective_time_waits_again_after_a_restart(
        tmp_path: Path) -> None:
    server, _ = await fake_clock_server(tmp_path)
    effective = (server.wall.now() + timedelta(seconds=600)).replace(microsecond=0)
    status, body = await post_cap(server, await fixture(
        "effective-later.xml", effective=effective.isoformat()))
    assert status == 202
    await server.stop()
    again, clock = await fake_clock_server(tmp_path)
    try:
        alert = again.alerts.alerts[body["alert"]["id"]]
        assert alert.status is AlertStatus.PENDING and not on_air(again, alert)
        left_s = effective.timestamp() - again.wall.timestamp()
        await clock.advance(int((left_s + 1.5) * NS_PER_S))
        assert alert.status is AlertStatus.ACTIVE and on_air(again, alert)
    finally:
        await again.stop()


@pytest.mark.parametrize(("field", "bad", "allowed"), [
    ("category", "Weather",
     "Geo, Met, Safety, Security, Rescue, Fire, Health, Env, Transport, Infra, CBRNE, Other"),
    ("urgency", "Urgent", "Immediate, Expected, Future, Past, Unknown"),
    ("severity", "severe", "Extreme, Severe, Moderate, Minor, Unknown"),
    ("certainty", "Very Likely", "Observed, Likely, Possible, Unlikely, Unknown"),
])
async def test_info_codes_outside_cap_1_2_are_refused_naming_the_allowed_values(
        server: LoaServer, field: str, bad: str, allowed: str) -> None:
    good = {"category": "Geo", "urgency": "Expected", "severity": "Severe",
            "certainty": "Likely"}
    status, body = await post_cap(server, await fixture(
        "info-codes.xml", identifier="0400", **{**good, field: bad}))
    assert status == 400, body
    assert body["error"] == f"CAP <{field}> must be one of {allowed}, not {bad!r}"
    assert not server.alerts.alerts  # nothing played
    status, body = await post_cap(server, await fixture("info-codes.xml", identifier="0401",
                                                        **good))
    assert status == 201 and body["alert"]["class"] == "emergency"


async def test_a_test_message_never_cancels_an_actual_alert(server: LoaServer) -> None:
    status, first = await post_cap(server, await fixture("flood-alert.xml"))
    assert status == 201
    old = alert_of(server, first)
    cancel = (await fixture("flood-update-outside.xml")).decode() \
        .replace("<status>Actual</status>", "<status>Test</status>") \
        .replace("<msgType>Update</msgType>", "<msgType>Cancel</msgType>")
    status, body = await post_cap(server, cancel.encode())
    assert status == 200 and body["alerts"] == []
    assert old.status is AlertStatus.ACTIVE and on_air(server, old)
