"""What monitoring reads, and nothing more: narrow read-only views of the playout engine, the
live mounts, the schedule, the alerts, the store, the endpoint registry and the fleet.

Metrics and alarms take these (``MetricsSource`` in ``metrics``, ``AlarmSource`` in
``alarms``), never the server that owns the parts. The real objects satisfy the views as they
are (structural typing: no adapters, nothing copied at scrape time), the composition root
hands them over, and a test satisfies them with small dataclasses. Every member is a
read-only property: monitoring never writes through a view. Plain records that are cheap to
build (``OnAir``, ``Health``, ``Running``, ``LatencyWindow``) are used as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from loa.control.alerts.model import AlertStatus
    from loa.control.fleet.control import CommandStatus, Health
    from loa.control.schedule.engine import Running
    from loa.core.counters import LatencyWindow
    from loa.playout.outputs.base import OnAir
    from loa.playout.programme import ProgrammeKind


class Identified(Protocol):
    """Anything known by an ``id`` (a zone, an endpoint)."""

    @property
    def id(self) -> str: ...


class Flag(Protocol):
    """A condition that is either set or not (``asyncio.Event`` is one)."""

    def is_set(self) -> bool: ...


class FeedView(Protocol):
    """One zone's output in one wire format; ``len()`` is its listeners now."""

    def __len__(self) -> int: ...

    @property
    def packets_published(self) -> int:
        """Packets framed for this output since it opened."""
        ...

    @property
    def packets_sent(self) -> int:
        """Packets written to listeners (each listener counts)."""
        ...


class ChannelView(Protocol):
    """One zone's channel: what it forwards now and its outputs by format name."""

    @property
    def on_air(self) -> OnAir: ...

    @property
    def feeds(self) -> Mapping[str, FeedView]: ...


class ProgrammeView(Protocol):
    """A programme as monitoring sees it: its name, kind and whether it sends audio."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> ProgrammeKind: ...

    @property
    def finished(self) -> bool: ...

    @property
    def available(self) -> bool:
        """Whether it has audio to give now (a live source that stopped sending has not)."""
        ...


class RequestView(Protocol):
    """A programme asked for on a zone."""

    @property
    def zone_id(self) -> str: ...

    @property
    def programme(self) -> ProgrammeView: ...


class EngineView(Protocol):
    """The master clock's engine: channels by zone id, requests by id, renditions being
    encoded, capture-to-socket latency (ns samples), encoder CPU time (ns) by codec and the
    clock's resynchronisations (``last_resync_ns`` on the injected clock, 0: never)."""

    @property
    def channels(self) -> Mapping[str, ChannelView]: ...

    @property
    def requests(self) -> Mapping[int, RequestView]: ...

    @property
    def renditions(self) -> Sized: ...

    @property
    def latency(self) -> LatencyWindow: ...

    @property
    def encode_cpu_ns(self) -> Mapping[str, int]: ...

    @property
    def resyncs(self) -> int: ...

    @property
    def last_resync_ns(self) -> int: ...

    @property
    def last_resync_behind_ms(self) -> float: ...


class MountView(Protocol):
    """A live mount; ``session`` is its connected source, None when nobody sends."""

    @property
    def session(self) -> object | None: ...


class MountsView(Protocol):
    """The live mounts by name."""

    @property
    def mounts(self) -> Mapping[str, MountView]: ...


class ScheduleView(Protocol):
    """The schedule: slots whose window is open, and each slot start's lateness (s)."""

    @property
    def running(self) -> Sequence[Running]: ...

    @property
    def lateness_s(self) -> Sequence[float]: ...


class AlertView(Protocol):
    """One alert: its id, status and reach (endpoint id → ms from activation to its first
    alert packet on that endpoint's socket)."""

    @property
    def id(self) -> str: ...

    @property
    def status(self) -> AlertStatus: ...

    def reach_ms(self) -> Mapping[str, float]: ...


class AlertsView(Protocol):
    """The alerts by id."""

    @property
    def alerts(self) -> Mapping[str, AlertView]: ...


class StoreView(Protocol):
    """The store's health: writes refused so far, statements waiting for its thread, and,
    while the disk refuses writes, why (``disk_error``, None when it takes them), the writes
    held for room and those given up."""

    @property
    def failed_writes(self) -> int: ...

    @property
    def queued(self) -> int: ...

    @property
    def held_writes(self) -> int: ...

    @property
    def lost_writes(self) -> int: ...

    @property
    def disk_error(self) -> str | None: ...


class RegistryView(Protocol):
    """The endpoint registry: endpoints by id, and those of a zone and the zones below it."""

    @property
    def endpoints(self) -> Mapping[str, object]: ...

    def in_zone(self, zone_id: str) -> Sequence[Identified]: ...


class CommandView(Protocol):
    """An endpoint command, by its status."""

    @property
    def status(self) -> CommandStatus: ...


class FleetView(Protocol):
    """Fleet control (MQTT): the broker connection (``broker_url`` empty before it starts),
    endpoint health by id, commands kept by id, recent command acknowledgement times (ms)."""

    @property
    def connected(self) -> Flag: ...

    @property
    def broker_url(self) -> str: ...

    @property
    def last_error(self) -> str | None: ...

    @property
    def health(self) -> Mapping[str, Health]: ...

    @property
    def commands(self) -> Mapping[str, CommandView]: ...

    @property
    def ack_latency_ms(self) -> Iterable[float]: ...

    def is_online(self, eid: str) -> bool: ...
