"""``ZoneChannel``: which request has the air, and how a switch reaches the wire.

Listeners sit on in-memory transports; packets are stand-in bytes (no test here is about
audio, so none is encoded); time is a ``FakeClock`` moved by hand.
"""

from __future__ import annotations

import json

from loa.codecs.encoder import EncodedPacket
from loa.codecs.ogg import OggOpusPager
from loa.control.streams import ListenerProtocol
from loa.core.clock import FakeClock
from loa.core.counters import Counters, LatencyWindow
from loa.core.pcm import FRAME_MS, FRAME_SAMPLES, SILENCE, Samples
from loa.core.zones import Zone
from loa.playout.fanout import Subscriber
from loa.playout.programme import EndReason, Programme, ProgrammeKind
from loa.playout.zone_channel import FanoutSettings, Request, ZoneChannel
from loa.protocol.native import WS_OPCODE_BINARY, WS_OPCODE_TEXT, parse_packet
from tests.server.memory_transport import MemoryTransport, ws_frames

ZONE = "an-binh-1"
SERIAL = 4242
BURST_PACKETS = 3


class Switchable:
    """A frame source whose availability the test sets (a live mount going up and down)."""

    def __init__(self, available: bool = True) -> None:
        self.available = available
        self.pausable = True

    def read(self, now_ns: int) -> tuple[Samples, int] | None:
        return SILENCE, now_ns

    def close(self) -> None:
        pass


def programme(name: str, available: bool = True) -> Programme:
    return Programme(name, ProgrammeKind.GENERATOR, Switchable(available))


def make_channel(clock: FakeClock | None = None) -> ZoneChannel:
    clock = clock or FakeClock()
    settings = FanoutSettings(bitrates_bps={"opus": 32_000, "mp3": 64_000},
                              burst_ms=BURST_PACKETS * FRAME_MS, backlog_ms=5_000)
    return ZoneChannel(Zone(ZONE, "An Bình 1"), programme("idle"), settings, Counters(),
                       LatencyWindow(), clock.now_ns, SERIAL)


def listen(channel: ZoneChannel, fmt: str, endpoint_id: str | None = None
           ) -> tuple[Subscriber, MemoryTransport]:
    tr = MemoryTransport()
    proto = ListenerProtocol(tr)  # type: ignore[arg-type]
    tr.set_protocol(proto)
    sub = Subscriber(proto, endpoint_id or fmt, fmt, endpoint_id)
    channel.join(sub)
    return sub, tr


_tick = iter(range(1, 1_000_000))


def opus(n: int = 1) -> dict[str, list[EncodedPacket]]:
    """This tick's packets for the opus rendition (distinct stand-in payloads)."""
    out = []
    for _ in range(n):
        k = next(_tick)
        out.append(EncodedPacket(b"op" + k.to_bytes(4, "big"), k * FRAME_SAMPLES, FRAME_SAMPLES,
                                 k))
    return {"opus": out}


def native(tr: MemoryTransport, since: int = 0) -> list[tuple[int, bytes]]:
    return ws_frames(tr.data[since:])


# who has the air


def test_the_available_request_with_the_highest_priority_wins() -> None:
    ch = make_channel()
    assert ch.choose() is ch.idle and ch.switches == 0
    low, high, mid = programme("low"), programme("high"), programme("mid")
    for prog, prio in ((low, 10), (high, 50), (mid, 30)):
        ch.add(Request(ZONE, prog, prio))
    assert ch.choose() is high
    assert (ch.on_air.programme_id, ch.on_air.priority) == (high.id, 50)
    high.source.available = False  # type: ignore[attr-defined]  # its source dropped
    assert ch.choose() is mid
    mid.finished = True
    assert ch.choose() is low
    low.source.available = False  # type: ignore[attr-defined]
    assert ch.choose() is ch.idle and ch.on_air.priority == 0
    high.source.available = True  # type: ignore[attr-defined]
    assert ch.choose() is high
    assert ch.switches == 5


def test_between_equal_priorities_the_earlier_request_keeps_the_air() -> None:
    ch = make_channel()
    first, second = programme("first"), programme("second")
    req_first = Request(ZONE, first, 40)
    ch.add(req_first)
    assert ch.choose() is first
    ch.add(Request(ZONE, second, 40))
    assert ch.choose() is first and ch.switches == 1  # the later one queues
    ch.remove(req_first)
    assert ch.choose() is second and ch.switches == 2


def test_choosing_again_without_a_change_is_not_a_switch() -> None:
    ch = make_channel()
    ch.add(Request(ZONE, programme("a"), 20))
    for _ in range(5):
        ch.choose()
    assert ch.switches == 1


def test_each_switch_is_logged_with_why_the_old_programme_ended() -> None:
    clock = FakeClock()
    ch = make_channel(clock)
    ch.events = []
    fill, alert = programme("fill"), programme("alert")
    req_fill, req_alert = Request(ZONE, fill, 20), Request(ZONE, alert, 90)
    ch.add(req_fill)
    ch.choose()
    clock.set_ns(clock.now_ns() + 5)
    ch.add(req_alert)
    ch.choose()  # fill is preempted
    alert.source.available = False  # type: ignore[attr-defined]
    ch.choose()  # the alert's source failed
    ch.remove(req_fill)
    ch.choose()  # fill released: cancelled
    got = [(e.ended.name, e.reason, e.started.name, e.started_priority) for e in ch.events]
    assert got == [
        ("idle", EndReason.CANCELLED, "fill", 20),
        ("fill", EndReason.PREEMPTED, "alert", 90),
        ("alert", EndReason.FAILED, "fill", 20),
        ("fill", EndReason.CANCELLED, "idle", 0),
    ]
    assert ch.events[1].at_ns == clock.now_ns() and ch.events[1].zone_id == ZONE


# how a switch reaches the wire


def test_a_switch_lands_on_the_next_packet_flagged_once_for_every_listener_of_the_format() -> None:
    ch = make_channel()
    _, tr_a = listen(ch, "ws", "ep-a")
    _, tr_b = listen(ch, "ws", "ep-b")
    ch.choose()
    ch.forward(opus(2))  # idle on air
    before = len(tr_a.data)
    news = programme("news")
    ch.add(Request(ZONE, news, 60))
    ch.choose()  # the switch: between two packets
    ch.forward(opus(3))
    ch.forward(opus(1))
    assert tr_a.data == tr_b.data  # the same frames for every endpoint
    after = native(tr_a, before)
    assert [op for op, _ in after] == [WS_OPCODE_TEXT] + [WS_OPCODE_BINARY] * 4
    notice = json.loads(after[0][1])
    assert notice == {"type": "programme", "zone": ZONE, "programme": news.id,
                      "name": "news", "priority": 60}
    pkts = [parse_packet(p) for _, p in after[1:]]
    assert [p.switched for p in pkts] == [True, False, False, False]
    assert {(p.programme_id, p.priority) for p in pkts} == {(news.id, 60)}
    old = [parse_packet(p) for op, p in native(tr_a)[:2]]
    assert {(p.programme_id, p.switched) for p in old} == {(ch.idle.id, False)}
    # the same connection, one unbroken sequence: no gap and no restart at the switch
    assert [p.seq for p in old + pkts] == list(range(6))


def test_a_switch_waits_for_the_formats_own_next_packet() -> None:
    ch = make_channel()
    _, tr = listen(ch, "ws")
    ch.choose()
    ch.add(Request(ZONE, programme("news"), 60))
    ch.choose()
    start = len(tr.data)
    ch.forward({"mp3": [EncodedPacket(b"mp3", 0, 1152, 1)]})  # nothing for opus this tick
    ch.forward({})
    assert native(tr, start) == []
    ch.forward(opus(2))
    assert [parse_packet(p).switched for _, p in native(tr, start)] == [True, False]


def test_an_http_format_gets_no_switch_notice() -> None:
    ch = make_channel()
    _, tr = listen(ch, "ogg")
    ch.choose()
    ch.forward(opus(1))
    start = len(tr.writes)
    ch.add(Request(ZONE, programme("news"), 60))
    ch.choose()
    assert len(tr.writes) == start  # nothing out of band on an Ogg stream
    ch.forward(opus(1))
    assert len(tr.writes) == start + 1 and tr.writes[-1].startswith(b"OggS")


def test_a_late_joiner_gets_the_stream_header_then_the_burst() -> None:
    ch = make_channel()
    _, tr_early = listen(ch, "ogg")
    headers = OggOpusPager(SERIAL, title="An Bình 1").headers
    assert tr_early.writes == [headers]
    ch.choose()
    for _ in range(5):
        ch.forward(opus(1))
    pages = tr_early.writes[1:]
    assert len(pages) == 5
    _, tr_late = listen(ch, "ogg")
    assert tr_late.writes == [headers + b"".join(pages[-BURST_PACKETS:])]
    ch.forward(opus(1))
    assert tr_late.writes[-1] == tr_early.writes[-1]  # then the live edge, as everyone else


def test_a_moved_endpoint_is_announced_with_the_header_it_is_given() -> None:
    ch = make_channel()
    tr = MemoryTransport()
    proto = ListenerProtocol(tr)  # type: ignore[arg-type]
    tr.set_protocol(proto)
    ch.join(Subscriber(proto, "ep", "ws", "ep"), header=b"MOVED")
    assert tr.writes == [b"MOVED"]


def test_control_messages_go_to_native_listeners_only_and_at_once() -> None:
    ch = make_channel()
    ch.control('{"type": "volume"}')  # nobody on the native protocol yet: nothing to do
    assert "ws" not in ch.feeds
    _, tr_ogg = listen(ch, "ogg")
    _, tr_mp3 = listen(ch, "mp3")
    _, tr_ws = listen(ch, "ws")
    ogg_before, mp3_before = tr_ogg.data, tr_mp3.data
    ch.control('{"type": "volume", "pct": 80}')
    assert native(tr_ws) == [(WS_OPCODE_TEXT, b'{"type": "volume", "pct": 80}')]
    assert (tr_ogg.data, tr_mp3.data) == (ogg_before, mp3_before)
    _, tr_later = listen(ch, "ws")
    assert tr_later.data == b""  # a control message is not replayed in the join burst


def test_listeners_and_codecs_listened_follow_the_feeds() -> None:
    ch = make_channel()
    listen(ch, "ogg")
    listen(ch, "ws")
    mp3_sub, _ = listen(ch, "mp3")
    assert ch.listeners() == {"ogg": 1, "ws": 1, "mp3": 1}
    assert ch.codecs_listened() == {"opus", "mp3"}
    ch.feeds["mp3"].remove(mp3_sub)
    assert ch.codecs_listened() == {"opus"}


def test_reach_is_marked_when_the_first_packet_of_a_tracked_programme_is_written() -> None:
    clock = FakeClock()
    ch = make_channel(clock)
    listen(ch, "ws", "ep-a")
    ch.choose()
    alert = programme("alert")
    alert.reach = {}
    ch.add(Request(ZONE, alert, 90))
    ch.choose()
    clock.set_ns(clock.now_ns() + 7)
    ch.forward(opus(1))
    assert alert.reach == {"ep-a": clock.now_ns()}
    clock.set_ns(clock.now_ns() + 7)
    listen(ch, "ws", "ep-b")  # joins while it plays: reached on joining
    assert alert.reach["ep-b"] == clock.now_ns()
