"""Prometheus metrics at ``/metrics`` (prometheus-client), gathered at scrape time.

Nothing here runs per packet: the collector reads the counters and the engine's state when
Prometheus asks. Names are ``loa_*``; counters keep the labels they were counted with.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from loa.server.app import LoaServer


class LoaCollector(Collector):
    def __init__(self, server: LoaServer) -> None:
        self.s = server

    def collect(self) -> Iterator[Metric]:
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
        on_air = GaugeMetricFamily("loa_zone_on_air_priority",
                                   "Priority of what each zone forwards (0 idle)", labels=["zone"])
        for zone_id, ch in s.engine.channels.items():
            on_air.add_metric([zone_id], ch.on_air.priority)
            for fmt, feed in ch.feeds.items():
                listeners.add_metric([zone_id, fmt], len(feed))
                published.add_metric([zone_id, fmt], feed.packets_published)
        yield listeners
        yield published
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
        reach = GaugeMetricFamily("loa_alert_reached_endpoints",
                                  "Endpoints that got an active alert", labels=["alert"])
        for alert in s.alerts.alerts.values():
            if alert.status.value == "active":
                reach.add_metric([alert.id], len(alert.reach_ms()))
        yield reach


def render(server: LoaServer) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LoaCollector(server))
    return bytes(generate_latest(registry))
