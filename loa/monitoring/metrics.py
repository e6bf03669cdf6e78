"""Prometheus metrics at ``/metrics`` (prometheus-client), gathered at scrape time.

Nothing here runs per packet: the collector reads the counters and the engine's state when
Prometheus asks. Names are ``loa_*``; counters keep the labels they were counted with.
prometheus-client itself (1.6 MB with the WSGI server it brings) is imported by the first
scrape, not by a server nobody scrapes (issue 17).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from loa.control.alerts.model import AlertStatus
from loa.core.counters import Counters
from loa.core.zones import is_alert_group
from loa.monitoring.alarms import KINDS as ALARM_KINDS
from loa.monitoring.alarms import AlarmBoard
from loa.monitoring.loop_lag import BUCKETS_S as LOOP_LAG_BUCKETS_S
from loa.monitoring.loop_lag import LoopLag
from loa.monitoring.views import (
    AlertsView,
    EngineView,
    FleetView,
    Identified,
    MountsView,
    RegistryView,
    ScheduleView,
    StoreView,
)

if TYPE_CHECKING:
    from prometheus_client.core import (
        CounterMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector


class MetricsSource(Protocol):
    """What a scrape reads: the event counters, the engine, the live mounts, the schedule, the
    alerts, the store, the loop-lag probe, the zones (alert groups are skipped), the endpoint
    registry, the fleet and the alarm board."""

    @property
    def counters(self) -> Counters: ...

    @property
    def engine(self) -> EngineView: ...

    @property
    def mounts(self) -> MountsView: ...

    @property
    def schedule(self) -> ScheduleView: ...

    @property
    def alerts(self) -> AlertsView: ...

    @property
    def store(self) -> StoreView: ...

    @property
    def loop_lag(self) -> LoopLag: ...

    @property
    def zones(self) -> Iterable[Identified]: ...

    @property
    def endpoints(self) -> RegistryView: ...

    @property
    def fleet(self) -> FleetView: ...

    @property
    def alarms(self) -> AlarmBoard: ...


class LoaCollector:
    """Yields every ``loa_*`` family from ``source`` when Prometheus scrapes; reads only,
    and only then (nothing is kept between scrapes). A prometheus-client ``Collector`` once
    ``render`` gives it that base (see ``_registrable``)."""

    def __init__(self, source: MetricsSource) -> None:
        self.s = source

    def collect(self) -> Iterator[Metric]:
        """Every ``loa_*`` metric family, read from the source now."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        s = self.s
        families: dict[str, CounterMetricFamily] = {}
        for name, labels, value in s.counters.items():
            fam = families.get(name)
            if fam is None:
                fam = families[name] = CounterMetricFamily(
                    f"loa_{name}", f"Loa event counter {name}", labels=sorted(labels))
            fam.add_metric([labels[k] for k in sorted(labels)], value)
        yield from families.values()

        listeners = GaugeMetricFamily("loa_listeners", "Connected listeners per zone and output",
                                      labels=["zone", "format"])
        published = CounterMetricFamily("loa_packets_published",
                                        "Packets framed per zone and output",
                                        labels=["zone", "format"])
        sent = CounterMetricFamily("loa_packets_sent", "Packets written to listeners "
                                   "(each listener counts)", labels=["zone", "format"])
        on_air = GaugeMetricFamily("loa_zone_on_air_priority",
                                   "Priority of what each zone forwards (0 idle)", labels=["zone"])
        for zone_id, ch in s.engine.channels.items():
            on_air.add_metric([zone_id], ch.on_air.priority)
            for fmt, feed in ch.feeds.items():
                listeners.add_metric([zone_id, fmt], len(feed))
                published.add_metric([zone_id, fmt], feed.packets_published)
                sent.add_metric([zone_id, fmt], feed.packets_sent)
        yield listeners
        yield published
        yield sent
        yield on_air

        yield GaugeMetricFamily("loa_encoders", "Renditions being encoded",
                                value=len(s.engine.renditions))
        lat = GaugeMetricFamily("loa_server_latency_ms",
                                "Capture to socket write, recent packets", labels=["quantile"])
        for q, v in zip(("0.5", "0.99"), s.engine.latency.percentiles_ms(50, 99), strict=True):
            if v is not None:
                lat.add_metric([q], v)
        yield lat
        sources = GaugeMetricFamily("loa_source_connected", "Live mounts with a source",
                                    labels=["mount"])
        for name, mount in s.mounts.mounts.items():
            sources.add_metric([name], 1.0 if mount.session is not None else 0.0)
        yield sources
        late = s.schedule.lateness_s
        yield GaugeMetricFamily("loa_schedule_lateness_max_seconds",
                                "Worst lateness of a schedule slot start",
                                value=max(late) if late else 0.0)
        yield histogram("loa_schedule_lateness_seconds", "Schedule slot start lateness",
                        list(late), LATENESS_BUCKETS_S)
        reach = GaugeMetricFamily("loa_alert_reached_endpoints",
                                  "Endpoints that got an active alert", labels=["alert"])
        reach_s: list[float] = []
        for alert in s.alerts.alerts.values():
            times = alert.reach_ms()
            reach_s += [ms / 1000 for ms in times.values()]
            if alert.status is AlertStatus.ACTIVE:
                reach.add_metric([alert.id], len(times))
        yield reach
        yield histogram("loa_alert_reach_seconds",
                        "Alert trigger to the first alert packet on an endpoint's socket",
                        reach_s, REACH_BUCKETS_S)
        cpu = CounterMetricFamily("loa_encoder_cpu_seconds", "CPU time spent encoding",
                                  labels=["codec"])
        for codec, ns in s.engine.encode_cpu_ns.items():
            cpu.add_metric([codec], ns / 1e9)
        yield cpu
        dropped = CounterMetricFamily("loa_packets_dropped", "Audio packets dropped, by reason",
                                      labels=["reason"])
        dropped.add_metric(["jitter_overflow"], s.counters.total("jitter_overflow_drops"))
        dropped.add_metric(["jitter_trim"], s.counters.total("jitter_trimmed"))
        yield dropped
        yield CounterMetricFamily("loa_store_failed_writes",
                                  "Database writes refused (each logged, none raised)",
                                  value=s.store.failed_writes)
        yield GaugeMetricFamily("loa_store_queued", "Statements waiting for the database thread",
                                value=s.store.queued)
        yield GaugeMetricFamily("loa_store_held_writes", "Database writes the disk refused, "
                                "held in memory until it has room", value=s.store.held_writes)
        yield CounterMetricFamily("loa_store_lost_writes", "Held database writes given up "
                                  "(over the bound, or the disk still full at stop)",
                                  value=s.store.lost_writes)
        lag = s.loop_lag
        yield HistogramMetricFamily(
            "loa_loop_lag_seconds", "How late the event loop ran the master clock's tick "
            f"(a sample every {lag.every_s * 1000:g} ms)",
            buckets=[(repr(b), float(sum(lag.bucket_counts[:i + 1])))
                     for i, b in enumerate(LOOP_LAG_BUCKETS_S)]
            + [("+Inf", float(lag.count))], sum_value=lag.sum_s)
        yield CounterMetricFamily("loa_clock_resyncs", "Master clock resynchronisations "
                                  "(the clock fell over 100 ms behind)", value=s.engine.resyncs)
        yield from self._fleet()

    def _fleet(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.s
        fleet = s.fleet
        online = GaugeMetricFamily("loa_endpoints_online", "Endpoints online per zone",
                                   labels=["zone"])
        total = GaugeMetricFamily("loa_endpoints", "Endpoints registered per zone",
                                  labels=["zone"])
        for zone in s.zones:
            if is_alert_group(zone.id):
                continue
            eps = s.endpoints.in_zone(zone.id)
            total.add_metric([zone.id], len(eps))
            online.add_metric([zone.id], sum(1 for e in eps if fleet.is_online(e.id)))
        yield online
        yield total
        yield GaugeMetricFamily("loa_mqtt_connected", "The server's broker connection is up",
                                value=1.0 if fleet.connected.is_set() else 0.0)
        alarms = GaugeMetricFamily("loa_alarms_active", "Alarms raised and not cleared",
                                   labels=["kind"])
        raised = CounterMetricFamily("loa_alarms_raised", "Alarms raised since the start",
                                     labels=["kind"])
        active = [a.kind for a in s.alarms.active()]
        for kind in ALARM_KINDS:
            alarms.add_metric([kind.value], active.count(kind))
            raised.add_metric([kind.value], s.alarms.raised_total[kind])
        yield alarms
        yield raised
        states = GaugeMetricFamily("loa_commands", "Endpoint commands kept, by status",
                                   labels=["status"])
        by: dict[str, int] = {}
        for cmd in fleet.commands.values():
            by[cmd.status.value] = by.get(cmd.status.value, 0) + 1
        for status, n in sorted(by.items()):
            states.add_metric([status], n)
        yield states
        yield histogram("loa_command_ack_seconds", "Command sent to acknowledged",
                        [ms / 1000 for ms in fleet.ack_latency_ms], ACK_BUCKETS_S)


REACH_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LATENESS_BUCKETS_S = (0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0)
ACK_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def histogram(name: str, doc: str, values: list[float], bounds: tuple[float, ...]
              ) -> HistogramMetricFamily:
    """A histogram family from raw samples, built at scrape time."""
    from prometheus_client.core import HistogramMetricFamily

    arr = sorted(values)
    buckets, i = [], 0
    for b in bounds:
        while i < len(arr) and arr[i] <= b:
            i += 1
        buckets.append((repr(b), float(i)))
    buckets.append(("+Inf", float(len(arr))))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=float(sum(arr)))


def render(source: MetricsSource) -> bytes:
    """The Prometheus text exposition (format 0.0.4) of every ``loa_*`` metric, read from
    ``source`` now."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_registrable()(source))
    return bytes(generate_latest(registry))


def prepare() -> None:
    """Load prometheus-client (~10 ms of imports, once: blocking, so the server calls it
    beside the loop before its first ``render``); later calls return at once."""
    _registrable()


def prepared() -> bool:
    """Whether prometheus-client is loaded (``render`` then costs only the scrape)."""
    return _registrable.cache_info().currsize > 0


@functools.cache
def _registrable() -> Callable[[MetricsSource], Collector]:
    """``LoaCollector`` as a prometheus-client ``Collector``, the type a registry takes: made
    on the first scrape, because that base class is what loads prometheus-client."""
    from prometheus_client.registry import Collector

    class RegisteredLoaCollector(LoaCollector, Collector):
        pass

    return RegisteredLoaCollector
