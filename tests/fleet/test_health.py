"""Alert volume over MQTT, alarms and reports."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import aiohttp

from loa.config import AlarmConfig, MqttConfig
from loa.control.alerts.model import parse_spec
from loa.control.schedule.recurrence import item_from_json
from loa.core.priority import Priority
from loa.loadtest.mqtt_endpoint import MqttEndpoint
from loa.playout.inputs.generator import tone_source
from loa.playout.programme import Programme, ProgrammeKind
from tests.fleet.test_mqtt import broker_address, login
from tests.server.test_alerts import fake_clock_server, tick
from tests.server.test_api import auth, base, call

S = 10**9


async def test_an_alert_raises_the_volume_over_mqtt_and_puts_it_back(tmp_path: Path) -> None:
    server, clock = await fake_clock_server(tmp_path, mqtt=MqttConfig(listen_port=0))
    stop = asyncio.Event()
    tasks = []
    try:
        await asyncio.wait_for(server.fleet.connected.wait(), 10)
        host, port = broker_address(server)
        eps = {e: MqttEndpoint(e, await login(server, e), host, port,
                               telemetry_s=3600) for e in ("loa-001", "loa-005")}
        tasks = [asyncio.create_task(ep.run(stop)) for ep in eps.values()]
        await server.fleet.until(lambda: all(server.fleet.is_online(e) for e in eps))
        # the operator mutes loa-001's village and sets its own volume: the alert overrides
        server.fleet.endpoint_command("loa-001", {"op": "mute"}, "t")
        server.fleet.endpoint_command("loa-001", {"op": "volume", "volume_pct": 35}, "t")
        await server.fleet.until(lambda: eps["loa-001"].state.volume_pct == 35
                                 and eps["loa-001"].state.muted)
        server.zones.get("an-binh-1").alert_volume_pct = 95
        spec = parse_spec({"class": "emergency", "zones": ["an-binh"], "tone": True,
                           "content": {"kind": "tone"}}, default_gap_s=0.5, now=1e9)
        alert = await server.alerts.trigger(spec, "test")
        await server.fleet.until(lambda: eps["loa-001"].state.volume_pct == 95)
        assert not eps["loa-001"].state.muted  # an alert is heard even where muted
        assert eps["loa-005"].state.volume_pct == 70  # Phú Mỹ is not in the alert
        # an endpoint that comes back during the alert is raised as it connects
        late = MqttEndpoint("loa-002", await login(server, "loa-002"), host, port,
                            telemetry_s=3600)
        late.state.muted = True
        tasks.append(asyncio.create_task(late.run(stop)))
        await server.fleet.until(lambda: late.state.volume_pct == 95 and not late.state.muted)
        server.alerts.cancel(alert.id, "test")
        await server.fleet.until(lambda: eps["loa-001"].state.volume_pct == 35
                                 and late.state.volume_pct == 70)
        assert eps["loa-001"].state.muted  # back as the operator left it
        reasons = [c.reason for c in server.fleet.commands.values()
                   if c.endpoint_id == "loa-001"]
        assert reasons[-2:] == ["alert", "alert-ended"]
        ended = [c for c in server.fleet.commands.values() if c.reason == "alert-ended"]
        await server.fleet.until(lambda: ended[0].status == "acked")
        assert not any(c.endpoint_id == "loa-005" for c in server.fleet.commands.values())
    finally:
        stop.set()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await server.stop()


async def test_alarms_rise_after_their_hold_and_clear(tmp_path: Path) -> None:
    server, clock = await fake_clock_server(
        tmp_path, mqtt=MqttConfig(listen_port=0),
        alarms=AlarmConfig(offline_minutes=10, hold_s=10, underruns_max=5,
                           underrun_window_s=60, supply_v_min=11, supply_v_max=15))
    try:
        await asyncio.wait_for(server.fleet.connected.wait(), 10)
        topics = server.fleet.topics
        fleet = server.fleet

        def say(eid: str, kind: str, payload: bytes) -> None:
            fleet.on_message(f"{topics.base}/ep/{eid}/{kind}", payload)

        async def active() -> set[tuple[str, str]]:
            await server.check_alarms()
            return {(a.kind, a.subject) for a in server.alarms.active()}

        for eid in server.endpoints.endpoints:
            say(eid, "state", b'{"online": true}')
        say("loa-002", "telemetry", b'{"supply_v": 9.8, "relay": "ok", "underruns": 100}')
        say("loa-003", "telemetry", b'{"supply_v": 12.4, "relay": "tripped"}')
        assert (await active()) == {("supply_voltage", "loa-002"), ("relay_fault", "loa-003")}
        say("loa-004", "state", b'{"online": false}')
        clock.set_ns(clock.now_ns() + 9 * 60 * S)
        say("loa-002", "telemetry", b'{"supply_v": 12.0, "underruns": 103}')
        assert ("endpoint_offline", "loa-004") not in (await active())  # 9 of 10 minutes
        clock.set_ns(clock.now_ns() + 61 * S)
        say("loa-002", "telemetry", b'{"supply_v": 12.0, "underruns": 110}')  # +7 in 60 s
        assert (await active()) == {("relay_fault", "loa-003"), ("endpoint_offline", "loa-004"),
                                    ("underruns", "loa-002")}
        status, body = await call(server, "GET", "/api/v1/alarms")
        kinds = {(a["kind"], a["subject"]) for a in body["alarms"]}
        assert ("endpoint_offline", "loa-004") in kinds
        say("loa-004", "state", b'{"online": true}')
        say("loa-003", "telemetry", b'{"relay": "ok"}')
        assert ("endpoint_offline", "loa-004") not in (await active())
        assert ("relay_fault", "loa-003") not in (await active())
        actions = [a["action"] for a in await server.store.audit_log_async()]
        assert actions.count("alarm.raised") >= 4 and actions.count("alarm.cleared") >= 2
        metrics = await metrics_text(server)
        assert 'loa_alarms_active{kind="underruns"} 1.0' in metrics
        assert 'loa_endpoints_online{zone="an-binh"} 4.0' in metrics
    finally:
        await server.stop()


async def test_a_silent_zone_and_a_dead_source_raise_alarms(tmp_path: Path) -> None:
    server, clock = await fake_clock_server(
        tmp_path, mqtt=MqttConfig(listen_port=0), alarms=AlarmConfig(hold_s=10))
    try:
        mount = server.mounts.get("studio")
        server.take_live("phu-my", "studio", int(Priority.DISTRICT_LIVE))  # nobody pushes
        prog = Programme("nhạc", ProgrammeKind.GENERATOR, tone_source(440))
        server.engine.request("an-binh-1", prog, Priority.FILL)
        await tick(server, clock, 5)

        class Run:  # a schedule slot whose programme is missing from the zone
            item = item_from_json({"title": "Bản tin sáng", "zones": ["an-binh-1"],
                                   "start": "2026-01-01T06:00:00", "duration_s": 600,
                                   "class": "normal", "content": {"kind": "tone"}}, "s1")
            slot = None
            handle: list = []

        server.schedule.running.append(Run())  # type: ignore[arg-type]
        await server.check_alarms()
        assert server.alarms.active() == []  # held for 10 s first
        await tick(server, clock, 550)  # 11 s
        await server.check_alarms()
        got = {(a.kind, a.subject): a.detail for a in server.alarms.active()}
        assert ("zone_silent", "an-binh-1") in got and "Bản tin sáng" in got[
            ("zone_silent", "an-binh-1")]
        assert ("source_down", mount.programme.name) in got
        server.schedule.running.clear()
        server.release_live("phu-my")
        await server.check_alarms()
        assert not [a for a in server.alarms.active() if a.kind in ("zone_silent",
                                                                    "source_down")]
    finally:
        await server.stop()


async def metrics_text(server) -> str:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as http:
        async with http.get(base(server) + "/metrics", headers=auth()) as resp:
            return await resp.text()


async def test_the_report_matches_a_scripted_history(tmp_path: Path) -> None:
    server, clock = await fake_clock_server(tmp_path, mqtt=MqttConfig(listen_port=0))
    try:
        t0 = 1_767_200_400.0  # 2026-01-01 00:00 in Hanoi (UTC+7)
        h = 3600.0
        server.store.log_broadcast([
            # zone, programme, kind, priority, label, start, end, reason
            ("an-binh", "Bản tin sáng", "file", 50, "", t0 + 6 * h, t0 + 7 * h, "completed"),
            ("an-binh-1", "Bản tin sáng", "file", 50, "", t0 + 6 * h, t0 + 7 * h, "completed"),
            ("an-binh-2", "Tiếp sóng VOV", "live", 50, "", t0 + 7 * h, t0 + 8.5 * h,
             "completed"),
            ("an-binh", "Trực tiếp huyện", "live", 80, "", t0 + 12 * h, t0 + 12.5 * h,
             "released"),
            ("an-binh-1", "Cảnh báo lũ", "alert", 100, "", t0 + 13 * h, t0 + 13.1 * h,
             "completed"),
            ("an-binh", "Nhạc chờ", "generator", 10, "", t0, t0 + 24 * h, "completed"),
            ("phu-my", "Bản tin khác", "file", 50, "", t0 + 6 * h, t0 + 9 * h, "completed"),
            ("an-binh", "Hôm trước", "file", 50, "", t0 - 2 * h, t0 + 1 * h, "completed"),
        ])
        for ep in server.endpoints.endpoints.values():
            ep.created_at = t0 - 86400
        server.store.log_presence([
            ("loa-001", True, t0 - 100, "connected"),  # online all day
            ("loa-002", True, t0 + 6 * h, "connected"),  # 18 of 24 h
            ("loa-003", True, t0 + 0 * h, "connected"),
            ("loa-003", False, t0 + 12 * h, "no word"),  # 12 of 24 h
            ("loa-003", True, t0 + 30 * h, "connected"),  # after the period: ignored
            # loa-004: never seen: 0 %
        ])
        server.store.save_alert("a1", "completed", {
            "id": "a1", "class": "emergency", "status": "completed", "created_at": t0 + 13 * h,
            "zones": ["an-binh-1"], "targeted": ["loa-001", "loa-002"],
            "reached_ms": {"loa-001": 12.0, "loa-002": 30.0}})
        server.store.save_alert("a2", "completed", {
            "id": "a2", "class": "emergency", "status": "completed", "created_at": t0 + 14 * h,
            "zones": ["phu-my"], "targeted": ["loa-005"], "reached_ms": {"loa-005": 9.0}})
        status, rep = await call(server, "GET", "/api/v1/reports/an-binh?from=2026-01-01"
                                                "&to=2026-01-02")
        assert status == 200, rep
        air = rep["on_air_hours"]["by_class"]
        assert air == {"emergency": 0.1, "live": 0.5, "priority": 0.0,
                       "normal": 1 + 1.5 + 1,  # 06-07 counted once, VOV 07-08:30, 00-01
                       "fill": 24.0}
        assert rep["on_air_hours"]["total_without_fill"] == 0.1 + 0.5 + 3.5
        assert rep["on_air_hours"]["by_zone"]["an-binh-2"]["normal"] == 1.5
        per = {r["endpoint"]: r["availability_pct"] for r in rep["availability"]["per_endpoint"]}
        assert per == {"loa-001": 100.0, "loa-002": 75.0, "loa-003": 50.0, "loa-004": 0.0}
        assert rep["availability"]["pct"] == 56.25
        assert rep["alerts"]["count"] == 1
        (a,) = rep["alerts"]["list"]
        assert (a["id"], a["targeted"], a["reached"], a["reach_max_ms"]) == ("a1", 2, 2, 30.0)

        async with aiohttp.ClientSession() as http:
            async with http.get(base(server) + "/api/v1/reports/an-binh?year=2026&format=csv",
                                headers=auth()) as resp:
                assert resp.status == 200 and resp.content_type == "text/csv"
                rows = list(csv.reader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
        assert ["emergency bulletins", "0.1", "0:06:00"] in rows  # time on air by class
        assert any(r[:3] == ["loa-002", "Cụm loa 2", "an-binh-1"] for r in rows)  # availability
        status, body = await call(server, "GET", "/api/v1/reports/an-binh?from=x&to=y")
        assert status == 400
        status, body = await call(server, "GET", "/api/v1/reports/nowhere?year=2026")
        assert status == 404
    finally:
        await server.stop()
