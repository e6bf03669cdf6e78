"""A zone's channel: the requests on the zone, and the switch that forwards the winner.

The winner is the available request with the highest priority; between equals the earlier one
keeps the air (requests queue). A switch is a pointer swap between two packets: the next packet
comes from the new programme's rendition, on the same connections, with no re-encode.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from loa.codecs.encoder import EncodedPacket
from loa.core.counters import Counters, LatencyWindow
from loa.core.pcm import FRAME_MS
from loa.core.zones import Zone
from loa.playout.fanout import Audience, Feed, Subscriber
from loa.playout.levels import LevelMeter
from loa.playout.outputs import StreamFormat, create_format
from loa.playout.outputs.base import OnAir, StreamInfo
from loa.playout.programme import EndReason, Programme, ProgrammeKind
from loa.protocol.native import WS_OPCODE_TEXT, ws_frame

log = logging.getLogger(__name__)

_request_ids = itertools.count(1)


@dataclass(eq=False)
class Request:
    """A programme asked for on a zone (and so on every zone below it) at a priority."""

    zone_id: str
    programme: Programme
    priority: int
    label: str = ""
    by: str = ""  # who asked for it (a user or token name); "" for the server's own
    id: int = field(default_factory=lambda: next(_request_ids))
    on_end: list[Callable[[Request, EndReason], None]] = field(default_factory=list)

    def describe(self) -> dict[str, object]:
        """JSON-ready view of the request, with its programme."""
        return {
            "id": self.id,
            "zone": self.zone_id,
            "priority": self.priority,
            "label": self.label,
            "by": self.by or None,
            "programme": self.programme.describe(),
        }


@dataclass(frozen=True, slots=True)
class SwitchEvent:
    """A zone changed what it forwards: the broadcast log's raw material."""

    at_ns: int
    zone_id: str
    ended: Programme
    reason: EndReason
    started: Programme
    started_priority: int


@dataclass(frozen=True, slots=True)
class FanoutSettings:
    """How feeds are sized: bitrate per codec (bit/s), the join burst and each listener's
    backlog (ms of audio), and the write batch for HTTP listeners (ms, whole 20 ms packets
    rounded down), which applies to a feed only while it has more than ``http_batch_above``
    listeners (0: always); above ``http_batch_large_above`` listeners (>= ``http_batch_above``)
    the larger ``http_batch_large_ms`` applies instead (0 ms: no such second tier)."""

    bitrates_bps: dict[str, int]  # per codec
    burst_ms: int
    backlog_ms: int
    http_batch_ms: int = FRAME_MS  # batch size for HTTP (Ogg, MP3) listeners
    http_batch_above: int = 0  # listeners of a feed above which its HTTP writes are batched
    http_batch_large_ms: int = 0  # batch size for a large audience; 0: http_batch_ms throughout
    http_batch_large_above: int = 0  # listeners of a feed above which the large batch applies

    def http_batch_ladder(self) -> tuple[tuple[int, int], ...]:
        """The HTTP write batch by audience, as `Feed` takes it: ascending ``(above,
        packets)`` pairs, packets of FRAME_MS (a batch of ms rounded down, at least one)."""
        ladder = [(self.http_batch_above, max(1, self.http_batch_ms // FRAME_MS))]
        if self.http_batch_large_ms > 0:
            ladder.append((max(self.http_batch_large_above, self.http_batch_above),
                           max(1, self.http_batch_large_ms // FRAME_MS)))
        return tuple(ladder)


class ZoneChannel:
    """One zone's switch: its requests, the programme on air, and one Feed (with its wire
    format) per output format that listeners asked for. Each tick the engine calls ``choose``
    and then ``forward``; times come from ``now_ns`` (ns on the engine's clock)."""

    def __init__(
        self,
        zone: Zone,
        idle: Programme,
        settings: FanoutSettings,
        counters: Counters,
        latency: LatencyWindow,
        now_ns: Callable[[], int],
        serial: int,
        audience: Audience | None = None,
    ) -> None:
        self.zone = zone
        self.audience = audience if audience is not None else Audience()  # every feed's count
        self.idle = idle
        self.requests: list[Request] = []
        self._settings = settings
        self._counters = counters
        self._latency = latency
        self._now_ns = now_ns
        self._info = StreamInfo(zone.id, zone.name, serial)
        self.formats: dict[str, StreamFormat] = {}
        self.feeds: dict[str, Feed] = {}
        self.on_air = OnAir(idle.id, idle.name, 0)
        self.on_air_programme: Programme = idle
        self._pending_switch: set[str] = set()
        self.switches = 0
        self.events: list[SwitchEvent] | None = None  # the engine's, for the broadcast log
        # the level of what the zone forwards, over the last 250 ms: fed by the engine each
        # tick with its on-air programme's frame level (measured once per programme)
        self.meter = LevelMeter()

    # requests

    def add(self, request: Request) -> None:
        """Queue a request; it wins when its priority is strictly higher than the others', or
        equal with it an alert against requests that are not."""
        self.requests.append(request)

    def remove(self, request: Request) -> None:
        """Take a request off the zone; a request not on it is ignored."""
        if request in self.requests:
            self.requests.remove(request)

    def choose(self) -> Programme:
        """Pick the winner for this tick; note a switch. Returns the programme to forward."""
        best: Request | None = None
        for req in self.requests:  # few requests a zone: a scan beats a heap here
            if req.programme.available and (best is None or _outranks(req, best)):
                best = req
        if best is None:
            programme, priority = self.idle, 0
        else:
            programme, priority = best.programme, best.priority
        if programme.id != self.on_air.programme_id or priority != self.on_air.priority:
            self._switch(programme, priority)
        return programme

    def _switch(self, programme: Programme, priority: int) -> None:
        old = self.on_air
        if self.events is not None:
            self.events.append(SwitchEvent(self._now_ns(), self.zone.id, self.on_air_programme,
                                           self._end_reason(), programme, priority))
        self.on_air = OnAir(programme.id, programme.name, priority)
        self.on_air_programme = programme
        self.switches += 1
        self._pending_switch = set(self.feeds)
        log.info("zone %s: %s (priority %d) -> %s (priority %d)", self.zone.id,
                 old.programme_name, old.priority, programme.name, priority)
        for name, feed in self.feeds.items():
            notice = self.formats[name].switch_notice(self.on_air)
            if notice is not None and len(feed):
                feed.publish(notice, burst=False)

    def _end_reason(self) -> EndReason:
        """Why what was on air stops now (called before the switch)."""
        prog = self.on_air_programme
        if prog.completed:
            return EndReason.COMPLETED
        if not any(r.programme is prog for r in self.requests):
            return EndReason.CUT_SHORT if prog.release_reason is EndReason.CUT_SHORT \
                else EndReason.CANCELLED
        if not prog.available:
            return EndReason.FAILED  # a live source dropped or stalled
        return EndReason.PREEMPTED

    # listeners

    def feed(self, format_name: str) -> Feed:
        """The zone's feed in ``format_name`` ("ogg", "mp3", "ws"...), created on first use
        with its burst, backlog and batch sized from the settings (an HTTP format's batch applies
        above ``http_batch_above`` listeners, its large batch above ``http_batch_large_above``;
        other formats are never batched). Raises KeyError for an unknown format."""
        feed = self.feeds.get(format_name)
        if feed is None:
            fmt = create_format(format_name, self._info, self._settings.bitrates_bps)
            burst_packets = self._settings.burst_ms // FRAME_MS
            backlog_bytes = fmt.nominal_bytes_per_s * self._settings.backlog_ms // 1000
            ladder = self._settings.http_batch_ladder() if fmt.batchable else ()
            feed = Feed(f"{self.zone.id}/{format_name}", self._counters, self._latency,
                        burst_packets=burst_packets, backlog_bytes=backlog_bytes,
                        now_ns=self._now_ns, batch_ladder=ladder, audience=self.audience)
            self.formats[format_name] = fmt
            self.feeds[format_name] = feed
        return feed

    def join(self, sub: Subscriber, header: bytes | None = None) -> None:
        """A listener joins this zone's stream in its format (a new connection, or a moved
        endpoint: then ``header`` is what announces the change)."""
        audience = self.audience
        if not audience.listeners and audience.on_first is not None:
            audience.on_first()  # the first listener: what is on air now (``Engine`` lulls)
        feed = self.feed(sub.format_name)
        feed.add(sub, self.formats[sub.format_name].join_header() if header is None else header)
        prog = self.on_air_programme
        reach = prog.reach
        if reach is not None and sub.endpoint_id and sub.endpoint_id not in reach:
            reach[sub.endpoint_id] = self._now_ns()
        reach = prog.message_reach
        if reach is not None and prog.message_started_ns and sub.endpoint_id \
                and sub.endpoint_id not in reach:
            reach[sub.endpoint_id] = self._now_ns()

    def control(self, message: str) -> None:
        """A control message to every native-protocol endpoint of the zone, now (it does not
        wait for the next audio packet)."""
        feed = self.feeds.get("ws")
        if feed is not None and len(feed):
            feed.publish(ws_frame(WS_OPCODE_TEXT, message.encode()), burst=False)

    def listeners(self) -> dict[str, int]:
        """Connected listeners by format name."""
        return {name: len(feed) for name, feed in self.feeds.items()}

    def codecs_listened(self) -> set[str]:
        """The codecs some listener of this zone needs this tick: the renditions to encode."""
        return {self.formats[n].codec for n, feed in self.feeds.items() if len(feed)}

    def forward(self, packets_by_codec: dict[str, list[EncodedPacket]]) -> None:
        """Frame this tick's packets once per format and fan them out."""
        on_air = self.on_air
        for name, feed in self.feeds.items():
            if not len(feed):
                continue
            fmt = self.formats[name]
            packets = packets_by_codec.get(fmt.codec)
            if not packets:
                continue
            switched = name in self._pending_switch
            if switched:
                self._pending_switch.discard(name)
            first = switched
            for pkt in packets:
                feed.publish(fmt.packet(pkt, on_air, switched), pkt.capture_ns)
                switched = False
            prog = self.on_air_programme
            if first and prog.reach is not None:
                _mark_reach(prog.reach, feed, self._now_ns())
            if prog.message_reach is not None and prog.message_started_ns == prog.pulled_at_ns:
                _mark_reach(prog.message_reach, feed, self._now_ns())

    def levels(self) -> dict[str, float]:
        """The level of what the zone forwarded over the last ~250 ms, in dBFS:
        ``{"peak_dbfs": -6.0, "rms_dbfs": -9.0}`` (``loa.playout.levels``; silence reads
        ``FLOOR_DBFS``, -100)."""
        return self.meter.levels()

    def describe(self) -> dict[str, object]:
        """Status snapshot: what is on air, the requests, listeners by format, switch count."""
        return {
            "zone": self.zone.id,
            "on_air": {
                "programme": self.on_air.programme_id,
                "name": self.on_air.programme_name,
                "priority": self.on_air.priority,
            },
            "requests": [r.describe() for r in self.requests],
            "listeners": self.listeners(),
            "switches": self.switches,
        }


def _mark_reach(reach: dict[str, int], feed: Feed, now_ns: int) -> None:
    """The packet just written reached every endpoint of the feed not yet counted."""
    for sub in feed.subscribers():
        if sub.endpoint_id and sub.endpoint_id not in reach:
            reach[sub.endpoint_id] = now_ns


def _outranks(req: Request, best: Request) -> bool:
    """Higher priority wins; at the same level an alert wins over what is not one (an
    operator's request at the emergency level cannot hold the air against an alert); between
    equals the earlier request keeps the air."""
    if req.priority != best.priority:
        return req.priority > best.priority
    return req.programme.kind is ProgrammeKind.ALERT \
        and best.programme.kind is not ProgrammeKind.ALERT
