"""The fan-out ``Feed`` over in-memory transports: no sockets, no sleeps, time passed by hand."""

from __future__ import annotations

from typing import Any

from loa.control.streams import ListenerProtocol
from loa.core.clock import FakeClock
from loa.core.counters import Counters, LatencyWindow
from loa.playout.fanout import MIN_BACKLOG_BYTES, Audience, Feed, Subscriber
from tests.server.memory_transport import MemoryTransport

NAME = "an-binh-1/ogg"


def make_feed(clock: FakeClock | None = None, **kw: Any) -> tuple[Feed, Counters, LatencyWindow]:
    counters, latency = Counters(), LatencyWindow()
    kw.setdefault("burst_packets", 0)
    kw.setdefault("backlog_bytes", 0)
    feed = Feed(NAME, counters, latency, now_ns=(clock or FakeClock()).now_ns, **kw)
    return feed, counters, latency


def listener(label: str = "l") -> tuple[Subscriber, MemoryTransport]:
    """A subscriber on the production raw-listener protocol, over a memory transport."""
    tr = MemoryTransport()
    proto = ListenerProtocol(tr)  # type: ignore[arg-type]
    tr.set_protocol(proto)
    return Subscriber(proto, label, "ogg"), tr


def packets(n: int, size: int = 100) -> list[bytes]:
    return [bytes([i % 256]) * size for i in range(n)]


def test_every_subscriber_gets_the_same_bytes() -> None:
    feed, counters, _ = make_feed()
    subs = [listener(f"l{i}") for i in range(3)]
    for sub, _ in subs:
        feed.add(sub, b"HEAD")
    pkts = packets(5)
    for p in pkts:
        feed.publish(p)
    for _, tr in subs:
        assert tr.data == b"HEAD" + b"".join(pkts)
        assert tr.writes[1:] == pkts  # one write per packet, in order
    assert feed.packets_published == 5
    assert feed.packets_sent == 15
    assert counters.get("subscribers_joined", feed=NAME) == 3


def test_the_transport_gets_the_backlog_as_its_high_water_mark() -> None:
    feed, _, _ = make_feed(backlog_bytes=100_000)
    sub, tr = listener()
    feed.add(sub, b"")
    assert tr.high == 100_000
    small, _, _ = make_feed(backlog_bytes=10)  # never below the floor
    sub2, tr2 = listener()
    small.add(sub2, b"")
    assert tr2.high == MIN_BACKLOG_BYTES


def test_a_subscriber_over_its_backlog_is_cut_and_counted_while_the_others_go_on() -> None:
    feed, counters, _ = make_feed()  # backlog: MIN_BACKLOG_BYTES
    (fast1, tr1), (slow, tr_slow), (fast2, tr2) = listener("f1"), listener("slow"), listener("f2")
    gone: list[Subscriber] = []
    slow.on_gone = gone.append
    for sub in (fast1, slow, fast2):
        feed.add(sub, b"")
    pkts = packets(40, size=1000)
    cut_at = None
    for i, p in enumerate(pkts):
        feed.publish(p)
        tr1.drain()
        tr2.drain()  # the healthy ones read everything; the slow one never reads
        if cut_at is None and slow not in feed.subscribers():
            cut_at = i
    # cut on the very write that took it over its mark (16 KiB + 1 byte: the 17th packet)
    assert cut_at == MIN_BACKLOG_BYTES // 1000
    assert tr_slow.aborted
    assert tr_slow.data == b"".join(pkts[: cut_at + 1])
    assert gone == [slow] and slow.feed is None
    assert counters.get("subscribers_cut", feed=NAME, reason="slow") == 1
    assert counters.get("subscribers_left", feed=NAME) == 0
    assert len(feed) == 2
    for tr in (tr1, tr2):
        assert tr.data == b"".join(pkts)  # nothing missed, nothing repeated
        assert not tr.aborted


def test_a_subscriber_that_drains_in_time_is_never_cut() -> None:
    feed, counters, _ = make_feed()
    sub, tr = listener()
    feed.add(sub, b"")
    for p in packets(200, size=1000):  # 200 kB through a 16 KiB mark, read every 10 packets
        feed.publish(p)
        if tr.unsent >= 10_000:
            tr.drain()
    assert len(feed) == 1 and not tr.aborted
    assert counters.total("subscribers_cut") == 0


def test_a_closed_connection_leaves_and_is_counted_as_left_not_cut() -> None:
    feed, counters, _ = make_feed()
    (a, tr_a), (b, tr_b) = listener("a"), listener("b")
    gone: list[Subscriber] = []
    a.on_gone = gone.append
    feed.add(a, b"")
    feed.add(b, b"")
    feed.publish(b"one")
    tr_a.lose_connection()  # the player hung up
    feed.publish(b"two")
    assert gone == [a] and len(feed) == 1
    assert counters.get("subscribers_left", feed=NAME) == 1
    assert counters.total("subscribers_cut") == 0
    assert tr_a.data == b"one" and not tr_a.aborted
    assert tr_b.data == b"onetwo"


def test_a_joiner_gets_header_and_the_recent_burst_in_one_write() -> None:
    feed, _, _ = make_feed(burst_packets=3)
    early, tr_early = listener("early")
    feed.add(early, b"HEAD")
    pkts = packets(5)
    for p in pkts:
        feed.publish(p)
    feed.publish(b"NOTICE", burst=False)  # out-of-band: not for later joiners
    late, tr_late = listener("late")
    feed.add(late, b"HEAD")
    assert tr_late.writes == [b"HEAD" + b"".join(pkts[2:])]
    feed.publish(b"next")
    assert tr_late.data.endswith(pkts[4] + b"next")  # the burst joins the live edge seamlessly
    assert tr_early.data == b"HEAD" + b"".join(pkts) + b"NOTICE" + b"next"


def test_without_burst_a_joiner_gets_the_header_only() -> None:
    feed, _, _ = make_feed(burst_packets=0)
    for p in packets(3):
        feed.publish(p)
    sub, tr = listener()
    feed.add(sub, b"HEAD")
    assert tr.writes == [b"HEAD"]


def test_the_burst_is_forgotten_when_the_last_subscriber_leaves() -> None:
    feed, _, _ = make_feed(burst_packets=3)
    sub, _ = listener()
    feed.add(sub, b"")
    for p in packets(3):
        feed.publish(p)
    feed.remove(sub)
    again, tr = listener()
    feed.add(again, b"HEAD")
    assert tr.writes == [b"HEAD"]  # no stale audio from before the gap


def test_batched_feed_writes_once_per_batch_and_bursts_whole_batches() -> None:
    feed, _, _ = make_feed(burst_packets=4, batch_ladder=((0, 2),))
    sub, tr = listener()
    feed.add(sub, b"")
    pkts = packets(5)
    for p in pkts:
        feed.publish(p)
    assert tr.writes == [pkts[0] + pkts[1], pkts[2] + pkts[3]]  # the fifth waits for its pair
    assert feed.packets_sent == 4
    late, tr_late = listener()
    feed.add(late, b"H")
    assert tr_late.data == b"H" + b"".join(pkts[:4])
    feed.publish(b"six")
    assert tr.data == tr_late.data[1:] == b"".join(pkts) + b"six"


def test_latency_is_recorded_from_capture_time_after_the_writes() -> None:
    clock = FakeClock()
    feed, _, latency = make_feed(clock)
    sub, _ = listener()
    feed.add(sub, b"")
    capture = clock.now_ns()
    clock.set_ns(capture + 3_000_000)
    feed.publish(b"x", capture)
    feed.publish(b"y")  # no capture time: not measured
    assert latency.count == 1
    assert latency.percentiles_ms(50) == [3.0]


def test_a_joiner_whose_connection_is_already_gone_is_not_added() -> None:
    feed, counters, _ = make_feed()
    sub, tr = listener()
    tr.lose_connection()
    feed.add(sub, b"HEAD")
    assert len(feed) == 0 and tr.writes == []
    assert counters.total("subscribers_joined") == 0


def test_the_audience_counts_every_feed_s_subscribers_and_calls_out_the_first() -> None:
    """What the engine looks at to lull (nobody listens anywhere): joins, leaves and cuts on
    two feeds, a second join of the same subscriber counted once."""
    audience = Audience()
    firsts: list[int] = []
    audience.on_first = lambda: firsts.append(audience.listeners)
    ogg, _, _ = make_feed(audience=audience)
    mp3, _, _ = make_feed(audience=audience)
    (a, _), (b, _), (slow, tr_slow) = listener("a"), listener("b"), listener("slow")
    ogg.add(a, b"")
    ogg.add(a, b"")
    mp3.add(b, b"")
    assert audience.listeners == 2 and firsts == [1]
    ogg.remove(a)
    mp3.remove(b)
    mp3.remove(b)
    assert audience.listeners == 0
    ogg.add(slow, b"")
    assert firsts == [1, 1]
    for p in packets(20, size=1000):  # never read: cut over its backlog
        ogg.publish(p)
    assert tr_slow.aborted and audience.listeners == 0
