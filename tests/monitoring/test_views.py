"""Metrics and alarm rules read only the narrow views of ``loa.monitoring.views`` (issue 11):
here they read a small district made of plain dataclasses, with no server, engine or broker."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client.parser import text_string_to_metric_families

from loa.config import AlarmConfig
from loa.control.alerts.model import AlertStatus
from loa.control.fleet.control import CommandStatus, Health
from loa.control.schedule.engine import Running
from loa.control.schedule.recurrence import STATION_TZ, ScheduleItem
from loa.core.counters import Counters, LatencyWindow
from loa.core.i18n import N_, Message
from loa.monitoring.alarms import (
    CHECK_SLICE,
    OFFLINE,
    AlarmBoard,
    AlarmKind,
    check,
    conditions,
)
from loa.monitoring.loop_lag import LoopLag
from loa.monitoring.metrics import render
from loa.playout.outputs.base import OnAir
from loa.playout.programme import ProgrammeKind

S = 10**9
NOW_NS = 3600 * S  # an hour after the fake clock's zero


@dataclass
class Feed:
    listeners: int
    packets_published: int
    packets_sent: int

    def __len__(self) -> int:
        return self.listeners


@dataclass
class Channel:
    on_air: OnAir
    feeds: dict[str, Feed] = field(default_factory=dict)


@dataclass
class Programme:
    name: str
    kind: ProgrammeKind
    finished: bool = False
    available: bool = True


@dataclass
class Request:
    zone_id: str
    programme: Programme


@dataclass
class Engine:
    channels: dict[str, Channel]
    requests: dict[int, Request]
    renditions: list[object]
    latency: LatencyWindow
    encode_cpu_ns: dict[str, int]
    resyncs: int = 0
    last_resync_ns: int = 0
    last_resync_behind_ms: float = 0.0


@dataclass
class Mount:
    session: object | None


@dataclass
class Mounts:
    mounts: dict[str, Mount]


@dataclass
class Schedule:
    running: list[Running]
    lateness_s: list[float]


@dataclass
class Alert:
    id: str
    status: AlertStatus
    reached_ms: dict[str, float]

    def reach_ms(self) -> dict[str, float]:
        return self.reached_ms


@dataclass
class Alerts:
    alerts: dict[str, Alert]


@dataclass
class Store:
    failed_writes: int
    queued: int
    held_writes: int = 0
    lost_writes: int = 0
    disk_error: str | None = None


@dataclass
class Zone:
    id: str


@dataclass
class Endpoint:
    id: str
    zone_id: str


@dataclass
class Registry:
    """A flat zone list: a zone's endpoints are those whose zone it is."""

    endpoints: dict[str, Endpoint]

    def in_zone(self, zone_id: str) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.zone_id == zone_id]


@dataclass
class Flag:
    up: bool

    def is_set(self) -> bool:
        return self.up


@dataclass
class Command:
    status: CommandStatus


@dataclass
class Fleet:
    connected: Flag
    broker_url: str
    last_error: str | None
    health: dict[str, Health]
    commands: dict[str, Command]
    ack_latency_ms: list[float]

    def is_online(self, eid: str) -> bool:
        h = self.health.get(eid)
        return h is not None and h.online


@dataclass
class District:
    """Both a ``MetricsSource`` and an ``AlarmSource``."""

    counters: Counters
    engine: Engine
    mounts: Mounts
    schedule: Schedule
    alerts: Alerts
    store: Store
    loop_lag: LoopLag
    zones: list[Zone]
    endpoints: Registry
    fleet: Fleet
    alarms: AlarmBoard
    started_ns: int = 0


def district() -> District:
    """Two communes. An Bình plays a bulletin to 3 listeners and asks for the studio, which
    sends nothing; Bình Minh is idle though a slot scheduled there is open. Of the three
    endpoints one is online, one has been offline 20 minutes with a low supply, a tripped relay
    and 12 new underruns, one was never seen. The broker is down, the clock resynchronised a
    second ago and the loop ran 200 ms late."""
    counters = Counters()
    counters.inc("jitter_overflow_drops", 2, mount="studio")
    counters.inc("jitter_trimmed", 5, mount="studio")
    latency = LatencyWindow()
    latency.add(4_000_000)
    studio = Programme("studio", ProgrammeKind.LIVE, available=False)
    engine = Engine(
        channels={"an-binh": Channel(OnAir(7, "Bản tin sáng", 50),
                                     {"ogg": Feed(3, 100, 300), "mp3": Feed(0, 0, 0)}),
                  "binh-minh": Channel(OnAir(1, "Im lặng", 0)),
                  "an-binh~a1": Channel(OnAir(9, "Cảnh báo", 100))},
        requests={1: Request("an-binh", studio),
                  2: Request("an-binh", Programme("Bản tin sáng", ProgrammeKind.FILE))},
        renditions=[object(), object()], latency=latency, encode_cpu_ns={"opus": 2 * S},
        resyncs=1, last_resync_ns=NOW_NS - S, last_resync_behind_ms=250.0)
    slot = datetime(2026, 12, 1, 6, 0, tzinfo=STATION_TZ)
    item = ScheduleItem("s1", "Bản tin chiều", ["binh-minh"], slot, 1800.0, {"kind": "tone"})
    lag = LoopLag()
    lag.observe(0.0005)
    lag.observe(0.2)
    sick = Health(online=False, changed_ns=NOW_NS - 20 * 60 * S, reason="last will",
                  telemetry={"supply_v": 9.5, "relay": "tripped"},
                  underruns=deque([(NOW_NS - 400 * S, 3), (NOW_NS - 100 * S, 5),
                                   (NOW_NS - 10 * S, 17)]))
    fleet = Fleet(Flag(up=False), "mqtt://broker:1883", "connection refused",
                  {"loa-001": Health(online=True), "loa-002": sick},
                  {"c1": Command(CommandStatus.ACKED), "c2": Command(CommandStatus.ACKED),
                   "c3": Command(CommandStatus.EXPIRED)}, [20.0, 80.0])
    return District(
        counters, engine, Mounts({"studio": Mount(None), "tinh": Mount(object())}),
        Schedule([Running(item, slot, None)], [0.004, 0.03]),
        Alerts({"a1": Alert("a1", AlertStatus.ACTIVE, {"loa-001": 40.0}),
                "a0": Alert("a0", AlertStatus.COMPLETED, {"loa-001": 30.0, "loa-002": 70.0})}),
        Store(failed_writes=1, queued=4), lag,
        [Zone("an-binh"), Zone("binh-minh"), Zone("an-binh~a1")],
        Registry({"loa-001": Endpoint("loa-001", "an-binh"),
                  "loa-002": Endpoint("loa-002", "an-binh"),
                  "loa-003": Endpoint("loa-003", "binh-minh")}),
        fleet, AlarmBoard(lambda action, subject, detail, zone: None))


def test_the_alarm_rules_read_a_district_of_plain_records() -> None:
    got = conditions(district(), AlarmConfig(), NOW_NS)
    assert sorted(got) == sorted([
        (AlarmKind.BROKER_DOWN, "mqtt://broker:1883",
         "no connection to the MQTT broker: connection refused", NOW_NS, 10.0),
        (AlarmKind.CLOCK_RESYNC, "master clock", "the master clock fell 250 ms behind and "
         "resynchronised: every zone lost that much audio", NOW_NS - S, 0),
        (AlarmKind.LOOP_LAG, "server", "the event loop ran 200 ms late (limit 50 ms)",
         NOW_NS, 0),
        (AlarmKind.ENDPOINT_OFFLINE, "loa-002", "offline: last will", NOW_NS - 20 * 60 * S,
         600.0),
        (AlarmKind.SUPPLY_VOLTAGE, "loa-002", "supply 9.5 V outside 11–15 V", NOW_NS, 0),
        (AlarmKind.RELAY_FAULT, "loa-002", "protection relay tripped", NOW_NS, 0),
        (AlarmKind.UNDERRUNS, "loa-002", "14 underruns in 300 s", NOW_NS, 0),
        (AlarmKind.ENDPOINT_OFFLINE, "loa-003", "offline: not seen since the server started",
         0, 600.0),
        (AlarmKind.ZONE_SILENT, "binh-minh",
         "scheduled 'Bản tin chiều' is not on air (on air: Im lặng)", NOW_NS, 10.0),
        (AlarmKind.SOURCE_DOWN, "studio", "studio is not sending (asked for by an-binh)",
         NOW_NS, 10.0),
    ])


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_the_metrics_read_a_district_of_plain_records() -> None:
    d = district()
    d.alarms.update(conditions(d, AlarmConfig(hold_s=0, offline_minutes=0), NOW_NS), NOW_NS,
                    1.8e9)
    got = samples(render(d).decode())

    def value(name: str, **labels: str) -> float:
        return got[(name, frozenset(labels.items()))]

    assert value("loa_jitter_overflow_drops_total", mount="studio") == 2
    assert value("loa_packets_dropped_total", reason="jitter_trim") == 5
    assert value("loa_listeners", zone="an-binh", format="ogg") == 3
    assert value("loa_listeners", zone="an-binh", format="mp3") == 0
    assert value("loa_packets_sent_total", zone="an-binh", format="ogg") == 300
    assert value("loa_zone_on_air_priority", zone="an-binh") == 50
    assert value("loa_zone_on_air_priority", zone="binh-minh") == 0
    assert value("loa_encoders") == 2
    assert value("loa_server_latency_ms", quantile="0.99") == 4.0
    assert value("loa_encoder_cpu_seconds_total", codec="opus") == 2.0
    assert value("loa_source_connected", mount="studio") == 0
    assert value("loa_source_connected", mount="tinh") == 1
    assert value("loa_schedule_lateness_max_seconds") == 0.03
    assert value("loa_schedule_lateness_seconds_bucket", le="0.005") == 1
    # only the active alert counts its reach now; the histogram has every alert's
    assert value("loa_alert_reached_endpoints", alert="a1") == 1
    assert ("loa_alert_reached_endpoints", frozenset({("alert", "a0")})) not in got
    assert value("loa_alert_reach_seconds_count") == 3
    assert value("loa_alert_reach_seconds_bucket", le="0.05") == 2
    assert value("loa_store_failed_writes_total") == 1
    assert value("loa_store_queued") == 4
    assert value("loa_loop_lag_seconds_count") == 2
    assert value("loa_loop_lag_seconds_bucket", le="0.001") == 1
    assert value("loa_clock_resyncs_total") == 1
    # the alert's run-time group is no zone of its own
    assert value("loa_endpoints", zone="an-binh") == 2
    assert value("loa_endpoints_online", zone="an-binh") == 1
    assert value("loa_endpoints", zone="binh-minh") == 1
    assert ("loa_endpoints", frozenset({("zone", "an-binh~a1")})) not in got
    assert value("loa_mqtt_connected") == 0
    assert value("loa_alarms_active", kind="endpoint_offline") == 2
    assert value("loa_alarms_raised_total", kind="zone_silent") == 1
    assert value("loa_alarms_active", kind="underruns") == 1
    assert value("loa_commands", status="acked") == 2
    assert value("loa_commands", status="expired") == 1
    assert value("loa_command_ack_seconds_count") == 2
    assert value("loa_command_ack_seconds_bucket", le="0.05") == 1


def test_a_disk_that_refuses_writes_raises_its_alarm_at_once_and_shows_in_the_metrics() -> None:
    d = district()
    d.store = Store(failed_writes=3, queued=0, held_writes=12, lost_writes=3,
                    disk_error="OperationalError: database or disk is full")
    got = [c for c in conditions(d, AlarmConfig(), NOW_NS) if c[0] is AlarmKind.DISK_FULL]
    assert got == [(AlarmKind.DISK_FULL, "data disk", "the data disk refuses writes "
                    "(OperationalError: database or disk is full): 12 write(s) wait in "
                    "memory for room, 3 lost so far", NOW_NS, 0)]
    d.alarms.update(conditions(d, AlarmConfig(), NOW_NS), NOW_NS, 1.8e9)
    metrics = samples(render(d).decode())
    assert metrics[("loa_alarms_active", frozenset({("kind", "disk_full")}))] == 1
    assert metrics[("loa_store_held_writes", frozenset())] == 12
    assert metrics[("loa_store_lost_writes_total", frozenset())] == 3
    d.store.disk_error = None  # the disk takes writes again
    assert not [c for c in conditions(d, AlarmConfig(), NOW_NS) if c[0] is AlarmKind.DISK_FULL]


async def test_a_province_of_offline_endpoints_is_checked_a_slice_a_loop_step() -> None:
    """Thousands of endpoints offline: ``check`` reads them ``CHECK_SLICE`` a loop step (the
    master clock runs between), raises every offline alarm once it has held, keeps each
    endpoint's reason (said in Vietnamese from its message), and clears the alarm of one
    that came back, as ``update`` of ``conditions`` would in one go."""
    d = district()
    n = 4 * CHECK_SLICE + 7
    eps = {f"ep-{i:05d}": Endpoint(f"ep-{i:05d}", "an-binh") for i in range(n)}
    d.endpoints = Registry(eps)
    quiet = Message(N_("no word for {seconds} s"), {"seconds": 90})
    d.fleet.health = {"ep-00001": Health(online=False, changed_ns=NOW_NS - 700 * S,
                                         reason=str(quiet), why=quiet)}
    seen: list[int] = []  # what the board had taken each time the loop ran something else

    async def other_work() -> None:
        while True:
            seen.append(len(d.alarms.pending))
            await asyncio.sleep(0)

    cfg = AlarmConfig(offline_minutes=10)
    watcher = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    await check(d, cfg, d.alarms, NOW_NS, 1.8e9)
    watcher.cancel()
    steps = [b - a for a, b in itertools.pairwise(seen) if b != a]
    assert len(steps) >= 4 and max(steps) <= CHECK_SLICE  # a slice a step, never all at once
    offline = {a.subject: a for a in d.alarms.active() if a.kind is AlarmKind.ENDPOINT_OFFLINE}
    assert set(offline) == set(eps)  # an hour since the start: every one held long enough
    assert offline["ep-00001"].describe("vi")["detail"] == \
        Message(OFFLINE, {"reason": quiet}).say("vi") != str(offline["ep-00001"].detail)
    assert offline["ep-00002"].detail == "offline: not seen since the server started"
    whole = AlarmBoard(lambda action, subject, detail, zone: None)
    whole.update(conditions(d, cfg, NOW_NS), NOW_NS, 1.8e9)
    assert {(a.kind, a.subject, a.detail) for a in whole.active()} == \
        {(a.kind, a.subject, a.detail) for a in d.alarms.active()}

    d.fleet.health["ep-00003"] = Health(online=True)  # back on air
    cleared: list[str] = []
    d.alarms.audit = lambda action, subject, detail, zone: cleared.append(subject)
    await check(d, cfg, d.alarms, NOW_NS + S, 1.8e9 + 1)
    assert cleared == ["ep-00003"]
    assert len([a for a in d.alarms.active() if a.kind is AlarmKind.ENDPOINT_OFFLINE]) == n - 1


async def test_an_endpoint_removed_while_a_check_runs_raises_nothing() -> None:
    """Removed between two slices of a check: no alarm is raised for it (it would be "not
    seen since the start", an hour ago), nor written to the audit log."""
    d = district()
    audited: list[tuple[str, str]] = []
    d.alarms.audit = lambda action, subject, detail, zone: audited.append((action, subject))
    cfg = AlarmConfig(offline_minutes=10)
    checking = asyncio.create_task(check(d, cfg, d.alarms, NOW_NS, 1.8e9, per_step=2))
    await asyncio.sleep(0)  # the check has begun: its first slice waits for the next step
    del d.endpoints.endpoints["loa-003"]  # in the second slice
    await checking
    assert ("alarm.raised", "loa-003") not in audited
    assert ("alarm.raised", "loa-002") in audited  # its own offline alarm, 20 minutes on
    assert "loa-003" not in {a.subject for a in d.alarms.active()}


def test_the_views_follow_a_changed_detail_and_keep_the_rest() -> None:
    """The board's views (what the status shows every second) are made once, then only an
    alarm whose detail changed is described again; a raise or a clear makes them anew,
    newest first."""
    d = district()
    cfg = AlarmConfig(hold_s=0, offline_minutes=0)
    d.alarms.update(conditions(d, cfg, NOW_NS), NOW_NS, 1.8e9)
    first = d.alarms.views()
    assert d.alarms.views() is first  # nothing changed: the same list
    d.loop_lag.observe(0.4)  # the loop ran later still: the loop-lag alarm's detail moves
    d.alarms.update(conditions(d, cfg, NOW_NS + S), NOW_NS + S, 1.8e9 + 1)
    second = d.alarms.views()
    assert second is not first and len(second) == len(first)
    changed = [(a, b) for a, b in zip(first, second, strict=True) if a is not b]
    assert [(a["kind"], b["detail"]) for a, b in changed] == [
        ("loop_lag", "the event loop ran 400 ms late (limit 50 ms)")]
    d.fleet.health["loa-003"] = Health(online=True)  # back: its alarm clears
    d.endpoints.endpoints["loa-004"] = Endpoint("loa-004", "binh-minh")  # never seen: raised
    d.alarms.update(conditions(d, cfg, NOW_NS + 2 * S), NOW_NS + 2 * S, 1.8e9 + 2)
    third = d.alarms.views()
    assert "loa-003" not in {v["subject"] for v in third}
    assert (third[0]["subject"], third[0]["raised_at"]) == ("loa-004", 1.8e9 + 2)  # newest
    assert third[1:] == [v for v in second if v["subject"] != "loa-003"]
    whole = AlarmBoard(lambda action, subject, detail, zone: None)  # the same, made at once
    whole.update(conditions(d, cfg, NOW_NS + 2 * S), NOW_NS + 2 * S, 1.8e9 + 2)
    assert sorted(map(str, whole.views())) == sorted(map(str, [
        {**v, "raised_at": 1.8e9 + 2} for v in third]))
