"""Alerts: targeted zones switch to the alert and back; proof of reach; rights; persistence."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from loa.app import LoaServer
from loa.codecs.tts import Tts
from loa.config import Config, MqttConfig, TokenConfig
from loa.control.alerts.model import AlertStatus, parse_spec
from loa.control.auth import token_hash
from loa.control.store import Store
from loa.core.clock import FakeClock
from loa.core.pcm import FRAME_NS, FRAME_SAMPLES
from loa.core.priority import Priority
from loa.playout.fanout import Subscriber
from loa.playout.inputs.generator import tone_source
from loa.playout.programme import Programme, ProgrammeKind
from tests.audio import dominant_hz, rms, tone_file
from tests.conftest import ADMIN_TOKEN, LOOPBACK_FETCHES, MemoryProtocol, run_cli
from tests.server.test_api import call
from tests.server.test_engine import heard, ws_frames

OPERATOR_TOKEN = "operator-without-alert-right"


async def fake_clock_server(tmp_path: Path, **overrides: object) -> tuple[LoaServer, FakeClock]:
    clock = FakeClock()
    overrides = {"mqtt": MqttConfig(listen_port=0), "fetch_policy": LOOPBACK_FETCHES,
                 **overrides}
    cfg = replace(Config(), listen_port=0, data_dir=tmp_path / "data", demo=False,
                  admin_token=ADMIN_TOKEN, source_password="pw", alert_tone_s=1.0,
                  alert_gap_s=0.5, **overrides)  # type: ignore[arg-type]
    server = await asyncio.to_thread(LoaServer, cfg, clock)  # opens its database
    await server.start(run_clock=False)
    return server, clock


def ear(server: LoaServer, zone: str, endpoint: str) -> MemoryProtocol:
    proto = MemoryProtocol()
    server.engine.channels[zone].join(Subscriber(proto, endpoint, "ws", endpoint))
    return proto


def texts(proto: MemoryProtocol) -> list[dict]:
    return [json.loads(p) for op, p in ws_frames(bytes(proto.sink.data)) if op == 1]


async def tick(server: LoaServer, clock: FakeClock, frames: int) -> None:
    """``frames`` ticks of fake time, one loop step each, file readers given the real time
    they would have had."""
    for _ in range(frames):
        await server.engine.inputs_ready()
        clock.set_ns(clock.now_ns() + FRAME_NS)
        server.engine.tick(clock.now_ns())
        await asyncio.sleep(0)


async def test_a_tone_and_speech_alert_reaches_only_the_targeted_zones_and_gives_them_back(
    tmp_path: Path,
) -> None:
    server, clock = await fake_clock_server(tmp_path)
    try:
        server.engine.request("huyen", Programme("nhạc", ProgrammeKind.GENERATOR,
                                                 tone_source(440)), Priority.SCHEDULED)
        inside, outside = ear(server, "an-binh-1", "loa-001"), ear(server, "phu-my-1", "loa-005")
        await tick(server, clock, 50)
        spec = parse_spec({"class": "emergency", "zones": ["an-binh"],
                           "content": {"kind": "text", "text": "Cảnh báo lũ khẩn cấp."}},
                          default_gap_s=0.5, now=1e9)
        alert = await server.alerts.trigger(spec, "test")
        await alert.message_ready()  # read aloud beside the loop (the tone does not wait)
        assert alert.status is AlertStatus.ACTIVE and alert.warnings == []
        await tick(server, clock, 1)
        assert alert.describe()["reach"]["reached"] == 1  # loa-001, at the next packet
        for _ in range(30):  # the alert plays out: 1 s of tone, then ~2 s of speech
            await tick(server, clock, 50)
            if alert.status is AlertStatus.COMPLETED:
                break
        assert alert.status is AlertStatus.COMPLETED
        await tick(server, clock, 50)

        packets, pcm = await asyncio.to_thread(heard, inside)
        prios = [p.priority for p in packets]
        start = prios.index(100)
        end = len(prios) - prios[::-1].index(100)
        assert set(prios[:start]) == {50} and set(prios[end:]) == {50}
        assert set(prios[start:end]) == {100}  # one unbroken alert
        sr = 48000
        a, b = start * FRAME_SAMPLES, end * FRAME_SAMPLES
        assert dominant_hz(pcm[a - sr // 2 : a]) == pytest.approx(440, rel=0.01)
        two_tone = pcm[a + 2400 : a + 2400 + 11520]  # the first 240 ms tone
        assert dominant_hz(two_tone) == pytest.approx(853, rel=0.01)
        speech = pcm[a + sr + 4800 : b]
        assert rms(speech) > 0.01  # something is said after the tone
        assert dominant_hz(pcm[b + 2400 : b + sr // 2]) == pytest.approx(440, rel=0.01)
        # the other commune heard its programme throughout
        other, other_pcm = await asyncio.to_thread(heard, outside)
        assert {p.priority for p in other} == {50}
        assert await asyncio.to_thread(dominant_hz, other_pcm) == pytest.approx(440, rel=0.01)
        # volume: raised for the alert, restored after, only where it played
        vols = [t for t in texts(inside) if t["type"] == "volume"]
        assert [v["volume_pct"] for v in vols] == [100, 70]
        assert not [t for t in texts(outside) if t["type"] == "volume"]
        # proof of reach: loa-001 reached, loa-002 (same commune, not connected) not
        full = alert.describe(full=True)["reach"]
        assert full["targeted"] == 4 and full["reached"] == 1
        assert "loa-002" in full["not_reached_endpoints"]
        assert await server.store.audit_log_async(alert.id)
    finally:
        await server.stop()


async def test_without_tts_the_tone_still_plays_and_the_error_says_why(tmp_path: Path) -> None:
    server, clock = await fake_clock_server(tmp_path)
    try:
        server.programmes.tts = Tts(tmp_path / "tts", engine="no-such-tts-engine")
        spec = parse_spec({"zones": ["phu-my"], "content": {"kind": "text", "text": "Xin chào"}},
                          default_gap_s=0.5, now=1e9)
        alert = await server.alerts.trigger(spec, "test")
        await alert.message_ready()
        assert alert.warnings and "not installed" in alert.warnings[0]
        listener = ear(server, "phu-my-2", "loa-007")
        await tick(server, clock, 60)
        packets, pcm = await asyncio.to_thread(heard, listener)
        assert packets[5].priority == 100
        assert dominant_hz(pcm[2400:14000]) == pytest.approx(853, rel=0.01)
        assert alert.status is AlertStatus.COMPLETED
    finally:
        await server.stop()


async def test_alert_api_rights_reach_and_cancel(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(tokens=[TokenConfig("truc-ban", token_hash(OPERATOR_TOKEN),
                                                   ("operate",))])
    body = {"class": "emergency", "zones": ["phu-my"],
            "content": {"kind": "text", "text": "Thử nghiệm"}, "repeat": 3}
    op = {"Authorization": f"Bearer {OPERATOR_TOKEN}", "Accept-Language": "en"}
    status, err = await call(server, "POST", "/api/v1/alerts", json=body, headers=op)
    assert status == 403 and "alert" in err["error"]
    status, _ = await call(server, "POST", "/api/v1/zones/huyen/live", json={}, headers=op)
    assert status == 201  # the operator may still operate
    status, created = await call(server, "POST", "/api/v1/alerts", json=body)
    assert status == 201 and created["alert"]["status"] == "active"
    aid = created["alert"]["id"]
    status, got = await call(server, "GET", f"/api/v1/alerts/{aid}", headers=op)
    assert status == 200 and got["alert"]["reach"]["targeted"] == 4
    status, _ = await call(server, "DELETE", f"/api/v1/alerts/{aid}", headers=op)
    assert status == 403
    status, cancelled = await call(server, "DELETE", f"/api/v1/alerts/{aid}")
    assert status == 200 and cancelled["alert"]["status"] == "cancelled"
    assert all(not r["label"].startswith("alert/") for z in (await call(
        server, "GET", "/api/v1/status"))[1]["zones"] for r in z["requests"])
    status, log = await call(server, "GET", f"/api/v1/audit?subject={aid}")
    actions = [e["action"] for e in log["audit"]]
    assert "alert.trigger" in actions and "alert.cancel" in actions
    status, bad = await call(server, "POST", "/api/v1/alerts",
                             json={"zones": ["nowhere"], "content": {"kind": "tone"}})
    assert status == 400 and "nowhere" in bad["error"]


async def test_an_active_alert_resumes_after_a_restart_unless_expired(tmp_path: Path) -> None:
    server, clock = await fake_clock_server(tmp_path)
    body = {"zones": ["an-binh"], "content": {"kind": "text", "text": "Bão số 3"}, "repeat": 5}
    keep = await server.alerts.trigger(parse_spec(body, default_gap_s=0.5, now=1e9), "t")
    short = await server.alerts.trigger(
        parse_spec(dict(body, expires_in_s=3600), default_gap_s=0.5, now=time.time()), "t")
    await server.stop()
    # while the server is down, `short` passes its expiry time
    def expire() -> None:
        store = Store(tmp_path / "data" / "loa.sqlite3")
        record = store.get_alert(short.id)
        assert record is not None
        store.save_alert(short.id, "active", dict(record, expires_at=time.time() - 1))
        store.close()

    await asyncio.to_thread(expire)
    again, _ = await fake_clock_server(tmp_path)
    try:
        assert again.alerts.alerts[keep.id].status is AlertStatus.ACTIVE
        assert again.alerts.alerts[short.id].status is AlertStatus.EXPIRED
        assert any(r.label == f"alert/{keep.id}" for r in again.engine.requests.values())
    finally:
        await again.stop()


def test_alert_specs_are_checked() -> None:
    for body, msg in [({"zones": []}, "say where"), ({"all": True, "repeat": 0}, "repeat"),
                      ({"all": True, "class": "loud"}, "class"),
                      ({"all": True, "content": {"kind": "video"}}, "content"),
                      ({"all": True, "expires_at": 5}, "future"),
                      ({"all": True, "expires_in_s": [60]}, "seconds"),
                      ({"all": True, "expires_at": float("nan")}, "future"),
                      ({"all": True, "gap_s": True}, "gap_s")]:
        with pytest.raises(ValueError, match=msg):
            parse_spec(body, default_gap_s=1, now=1000)


async def test_the_cli_triggers_lists_and_cancels(make_server) -> None:  # type: ignore[no-untyped-def]

    server = await make_server()

    def loa(*args: str):  # type: ignore[no-untyped-def]  # -> the CLI's (exit, JSON)
        return run_cli(server, "alert", *args)

    rc, out = await loa("--zones", "an-binh-1,phu-my-2", "--text", "Mất điện lúc 14 giờ",
                        "--repeat", "2")
    assert rc == 0 and out["alert"]["status"] == "active"
    assert out["alert"]["zones"] == ["an-binh-1", "phu-my-2"] and out["alert"]["repeat"] == 2
    rc, listed = await loa("--list")
    assert [a["id"] for a in listed["alerts"]] == [out["alert"]["id"]]
    rc, cancelled = await loa("--cancel", out["alert"]["id"])
    assert rc == 0 and cancelled["alert"]["status"] == "cancelled"
    rc, bad = await loa("--zones", "nowhere")
    assert rc == 1 and "nowhere" in bad["error"]


async def test_an_uploaded_message_plays_and_a_fake_one_is_refused(make_server, tmp_path: Path  # type: ignore[no-untyped-def]
                                                                   ) -> None:

    server = await make_server()
    good = await tone_file(tmp_path / "thong-bao.mp3", 600, 1.0, ["-c:a", "libmp3lame"])
    fake = tmp_path / "fake.mp3"
    fake.write_text("this is text, not audio\n" * 50)

    def loa(*args: str):  # type: ignore[no-untyped-def]  # -> the CLI's (exit, JSON)
        return run_cli(server, "alert", *args)

    rc, out = await loa("--zones", "phu-my-1", "--file", str(good), "--class", "priority")
    assert rc == 0 and out["alert"]["content"]["kind"] == "file"
    assert out["alert"]["priority"] == 60
    rc, bad = await loa("--zones", "phu-my-1", "--file", str(fake))
    assert rc == 1 and "not audio" in bad["error"]
    leftovers = [p.name for p in (server.media_dir / "alerts").iterdir()]
    assert len(leftovers) == 1 and not any(n.endswith(".part") for n in leftovers)


async def test_an_alert_for_single_endpoints_leaves_their_neighbours_alone(tmp_path: Path) -> None:
    server, clock = await fake_clock_server(tmp_path)
    try:
        server.engine.request("huyen", Programme("nhạc", ProgrammeKind.GENERATOR,
                                                 tone_source(440)), Priority.SCHEDULED)
        ears = {}
        for eid in ("loa-001", "loa-002"):
            proto = MemoryProtocol()
            sub = Subscriber(proto, eid, "ws", eid)
            server.endpoints.attach(server.endpoints.get(eid), sub)
            server.engine.channels["an-binh-1"].join(sub)
            ears[eid] = proto
        await tick(server, clock, 25)
        spec = parse_spec({"endpoints": ["loa-001"], "content": {"kind": "tone"}},
                          default_gap_s=0.5, now=1e9)
        alert = await server.alerts.trigger(spec, "test")
        assert alert.targeted == ["loa-001"]
        assert server.endpoints.get("loa-001").zone_id == f"an-binh-1~{alert.id}"
        await tick(server, clock, 100)
        assert alert.status is AlertStatus.COMPLETED
        assert server.endpoints.get("loa-001").zone_id == "an-binh-1"  # home again
        assert f"an-binh-1~{alert.id}" not in server.engine.channels
        await tick(server, clock, 25)
        one, _ = await asyncio.to_thread(heard, ears["loa-001"])
        two, _ = await asyncio.to_thread(heard, ears["loa-002"])
        assert 100 in {p.priority for p in one}
        assert {p.priority for p in two} == {50}
        assert alert.describe()["reach"]["reached"] == 1
    finally:
        await server.stop()


async def test_overlapping_alerts_queue_by_class_then_by_time(tmp_path: Path) -> None:
    server, clock = await fake_clock_server(tmp_path)
    try:
        listener = ear(server, "an-binh-1", "loa-001")

        async def alert(cls: str, zone: str) -> object:
            spec = parse_spec({"class": cls, "zones": [zone], "content": {"kind": "tone"}},
                              default_gap_s=0.5, now=1e9)
            return await server.alerts.trigger(spec, "test")

        normal = await alert("normal", "an-binh-1")
        await tick(server, clock, 10)
        first = await alert("emergency", "an-binh")
        second = await alert("emergency", "an-binh-1")
        await tick(server, clock, 200)
        packets, _ = await asyncio.to_thread(heard, listener)
        order = [p.programme_id for i, p in enumerate(packets)
                 if i == 0 or p.programme_id != packets[i - 1].programme_id]
        ids = [a.programme.id for a in (normal, first, second)]  # type: ignore[attr-defined]
        # normal starts; the emergency preempts it; the later emergency waits its turn;
        # then the normal one resumes where it stopped and finishes
        assert order == [ids[0], ids[1], ids[2], ids[0], server.engine.idle.id]
        assert all(a.status is AlertStatus.COMPLETED for a in (normal, first, second))  # type: ignore[attr-defined]
    finally:
        await server.stop()


async def test_an_alert_is_named_by_its_message_not_its_id(server: LoaServer) -> None:
    """What plays shows the alert's words wherever it is named (console, broadcast log)."""
    status, alert = await call(server, "POST", "/api/v1/alerts", json={
        "zones": ["an-binh-1"], "tone": False,
        "content": {"kind": "text", "text": "Lũ quét\ntrên suối Nậm Pàn, sơ tán ngay."}})
    assert status == 201, alert
    programme = server.alerts.alerts[alert["alert"]["id"]].programme
    assert programme is not None
    name = programme.name
    assert name == "Cảnh báo: Lũ quét trên suối Nậm Pàn, sơ tán ngay."
    assert alert["alert"]["id"] not in name
