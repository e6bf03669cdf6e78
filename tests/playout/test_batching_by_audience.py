"""HTTP write batching by audience size: a feed with ``http_batch_above`` listeners or fewer
writes every packet at once; above that, one write per batch; above ``http_batch_large_above``,
one write per larger batch. Real loopback sockets, the clock ticked by hand; and the feed alone
over memory transports for the moment the audience shrinks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from loa.app import LoaServer
from loa.codecs.ogg import OggReader
from loa.config import ConfigError, load_config
from loa.core.clock import FakeClock
from loa.core.counters import Counters, LatencyWindow
from loa.core.priority import Priority
from loa.playout.fanout import Feed
from loa.playout.inputs.generator import tone_source
from loa.playout.programme import Programme, ProgrammeKind
from loa.playout.zone_channel import FanoutSettings
from tests.audio import closed
from tests.server.test_fanout import start_server, tick
from tests.server.test_feed import listener, packets

ZONE = "an-binh-1"
THRESHOLD = 3  # http_batch_above in these tests
GRANULE_STEP = 960  # one 20 ms Opus packet a page, 48 kHz


class OggListener:
    """A raw HTTP listener of the zone's Ogg stream: the granule of every audio page heard."""

    def __init__(self) -> None:
        self.reader = OggReader()
        self.granules: list[int] = []
        self.writer: asyncio.StreamWriter | None = None

    async def run(self, port: int) -> None:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.writer.write(f"GET /zones/{ZONE}/stream.ogg HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        while data := await reader.read(65536):
            self.granules += [g for _, g, _, bos in self.reader.feed(data) if not bos and g > 0]

    async def close(self) -> None:
        if self.writer is not None:
            await closed(self.writer)


async def audience(server: LoaServer, clock: FakeClock, n: int) -> Feed:
    """The zone's Ogg feed once it has ``n`` listeners (the clock ticked meanwhile)."""
    channel = server.engine.channels[ZONE]
    for _ in range(500):
        await tick(server, clock)
        feed = channel.feeds.get("ogg")
        if feed is not None and len(feed) == n:
            return feed
    raise AssertionError(f"the feed never had {n} listeners")


async def writes_in(server: LoaServer, clock: FakeClock, ticks: int, feed: Feed) -> int:
    """The writes ``feed`` made to its listeners over ``ticks`` ticks."""
    before = feed.writes_sent
    await tick(server, clock, ticks)
    return feed.writes_sent - before


async def hang_up(ears: list[OggListener], tasks: list[asyncio.Task[None]],
                  server: LoaServer) -> None:
    """Every listener closed, its task ended, the server stopped."""
    for ear in ears:
        await ear.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await server.stop()


def assert_heard_whole(ear: OggListener, pages: int) -> None:
    """``ear`` heard at least ``pages`` audio pages, every one from its first, in order, none
    twice, none damaged."""
    assert ear.reader.crc_errors == 0
    assert len(ear.granules) >= pages
    steps = {b - a for a, b in zip(ear.granules, ear.granules[1:], strict=False)}
    assert steps == {GRANULE_STEP}


async def test_batching_switches_on_above_the_threshold_and_off_below_it(tmp_path: Path) -> None:
    server, clock = await start_server(tmp_path, http_batch_ms=40, http_batch_above=THRESHOLD,
                                       burst_ms=0)
    ears = [OggListener() for _ in range(THRESHOLD + 1)]
    tasks: list[asyncio.Task[None]] = []
    try:
        server.engine.request("huyen", Programme("tone", ProgrammeKind.GENERATOR,
                                                 tone_source(1000)), Priority.SCHEDULED)

        tasks = [asyncio.create_task(e.run(server.port)) for e in ears[:THRESHOLD]]
        feed = await audience(server, clock, THRESHOLD)
        assert not feed.batching
        assert await writes_in(server, clock, 10, feed) == THRESHOLD * 10  # every packet, at once

        tasks.append(asyncio.create_task(ears[THRESHOLD].run(server.port)))
        feed = await audience(server, clock, THRESHOLD + 1)
        assert feed.batching
        assert await writes_in(server, clock, 10, feed) == (THRESHOLD + 1) * 5  # 2 packets a write

        await ears[THRESHOLD].close()
        feed = await audience(server, clock, THRESHOLD)
        assert not feed.batching
        await tick(server, clock)  # what a batch held goes out with the next packet
        assert await writes_in(server, clock, 10, feed) == THRESHOLD * 10

        # every listener heard every packet from its first, in order, none twice
        for ear in ears[:THRESHOLD]:
            await tick(server, clock, 2)
            assert_heard_whole(ear, 30)  # the 30 ticks measured, at least
    finally:
        await hang_up(ears, tasks, server)


async def test_the_large_batch_switches_on_above_its_threshold_and_off_below_it(
        tmp_path: Path) -> None:
    # 1 listener: every packet; 2: 40 ms batches; 3: 80 ms batches.
    server, clock = await start_server(tmp_path, http_batch_ms=40, http_batch_above=1,
                                       http_batch_large_ms=80, http_batch_large_above=2,
                                       burst_ms=0)
    ears = [OggListener() for _ in range(3)]
    tasks: list[asyncio.Task[None]] = []
    try:
        server.engine.request("huyen", Programme("tone", ProgrammeKind.GENERATOR,
                                                 tone_source(1000)), Priority.SCHEDULED)

        tasks = [asyncio.create_task(e.run(server.port)) for e in ears[:2]]
        feed = await audience(server, clock, 2)
        assert feed.batch_packets == 2
        assert await writes_in(server, clock, 20, feed) == 2 * 10  # two packets a write

        tasks.append(asyncio.create_task(ears[2].run(server.port)))
        feed = await audience(server, clock, 3)
        assert feed.batch_packets == 4
        assert await writes_in(server, clock, 20, feed) == 3 * 5  # four packets a write

        await ears[2].close()
        feed = await audience(server, clock, 2)
        assert feed.batch_packets == 2
        await tick(server, clock)  # what the large batch held goes out with the next packet
        assert await writes_in(server, clock, 20, feed) == 2 * 10

        await ears[1].close()
        feed = await audience(server, clock, 1)
        assert not feed.batching
        await tick(server, clock)
        assert await writes_in(server, clock, 20, feed) == 20  # every packet, at once

        # the one who stayed heard every packet from its first, in order, none twice
        await tick(server, clock, 2)
        ear = ears[0]
        assert_heard_whole(ear, 80)  # the 80 ticks measured, at least
    finally:
        await hang_up(ears, tasks, server)


def test_a_shrinking_audience_gets_the_held_packet_with_the_next_one() -> None:
    feed = Feed("z/ogg", Counters(), LatencyWindow(), burst_packets=0, backlog_bytes=0,
                now_ns=FakeClock().now_ns, batch_ladder=((1, 2),))
    (a, tr_a), (b, _) = listener("a"), listener("b")
    feed.add(a, b"")
    feed.add(b, b"")
    pkts = packets(5)
    feed.publish(pkts[0])
    feed.publish(pkts[1])
    feed.publish(pkts[2])  # held: half a batch
    assert tr_a.writes == [pkts[0] + pkts[1]]
    feed.remove(b)
    feed.publish(pkts[3])
    feed.publish(pkts[4])
    assert tr_a.writes == [pkts[0] + pkts[1], pkts[2] + pkts[3], pkts[4]]
    assert feed.packets_sent == 2 * 2 + 3 and feed.writes_sent == 2 + 2


def test_an_audience_shrinking_from_the_large_batch_loses_nothing() -> None:
    # 2 listeners: 2 packets a write; 3: 4 packets a write
    feed = Feed("z/ogg", Counters(), LatencyWindow(), burst_packets=8, backlog_bytes=0,
                now_ns=FakeClock().now_ns, batch_ladder=((1, 2), (2, 4)))
    (a, tr_a), (b, _), (c, _) = listener("a"), listener("b"), listener("c")
    for sub in (a, b, c):
        feed.add(sub, b"")
    assert feed.batch_packets == 4 and feed.batch_above == 1
    pkts = packets(11)
    for p in pkts[:6]:
        feed.publish(p)  # the first four in one write, two held
    assert tr_a.writes == [b"".join(pkts[:4])]
    feed.publish(b"NOTICE", burst=False)  # at once, ahead of what is held
    feed.remove(c)
    assert feed.batch_packets == 2
    feed.publish(pkts[6])  # three held now, over the new size: out they go
    feed.publish(pkts[7])
    feed.publish(pkts[8])
    feed.remove(b)
    assert not feed.batching
    feed.publish(pkts[9])  # the held one with the next, then each at once
    feed.publish(pkts[10])
    assert tr_a.writes == [b"".join(pkts[:4]), b"NOTICE", b"".join(pkts[4:7]),
                           pkts[7] + pkts[8], pkts[9], pkts[10]]
    late, tr_late = listener("late")
    feed.add(late, b"H")
    assert tr_late.writes == [b"H" + b"".join(pkts[3:11])]  # the join burst: the last eight


def test_a_growing_audience_gathers_what_is_held_into_the_large_batch() -> None:
    feed = Feed("z/ogg", Counters(), LatencyWindow(), burst_packets=0, backlog_bytes=0,
                now_ns=FakeClock().now_ns, batch_ladder=((0, 2), (1, 4)))
    sub, tr = listener()
    feed.add(sub, b"")
    pkts = packets(5)
    for p in pkts[:3]:
        feed.publish(p)
    assert tr.writes == [pkts[0] + pkts[1]]  # one listener: pairs
    big, tr_big = listener("big")
    feed.add(big, b"")  # two: the held packet waits for three more
    for p in pkts[3:]:
        feed.publish(p)
    assert tr.writes == [pkts[0] + pkts[1]] and tr_big.writes == []
    with pytest.raises(ValueError):
        Feed("z/ogg", Counters(), LatencyWindow(), burst_packets=0, backlog_bytes=0,
             now_ns=FakeClock().now_ns, batch_ladder=((5, 2), (1, 4)))


def test_a_feed_with_no_threshold_batches_for_any_audience() -> None:
    feed = Feed("z/ogg", Counters(), LatencyWindow(), burst_packets=0, backlog_bytes=0,
                now_ns=FakeClock().now_ns, batch_ladder=((0, 2),))
    sub, tr = listener()
    feed.add(sub, b"")
    for p in packets(4):
        feed.publish(p)
    assert len(tr.writes) == 2


def test_the_threshold_is_read_from_the_fanout_section(tmp_path: Path) -> None:
    assert load_config(None, env={}).http_batch_above == 200
    path = tmp_path / "loa.toml"
    path.write_text("[fanout]\nhttp_batch_above = 5\n")
    assert load_config(path, env={}).http_batch_above == 5
    path.write_text("[fanout]\nhttp_batch_above = -1\n")
    with pytest.raises(ConfigError):
        load_config(path, env={})


def test_the_large_batch_is_read_from_the_fanout_section_and_sized_in_packets(
        tmp_path: Path) -> None:
    cfg = load_config(None, env={})
    assert (cfg.http_batch_large_ms, cfg.http_batch_large_above) == (80, 400)
    settings = FanoutSettings(cfg.bitrates_bps, cfg.burst_ms, cfg.backlog_ms, cfg.http_batch_ms,
                              cfg.http_batch_above, cfg.http_batch_large_ms,
                              cfg.http_batch_large_above)
    assert settings.http_batch_ladder() == ((200, 2), (400, 4))
    assert FanoutSettings({}, 0, 0, http_batch_ms=40).http_batch_ladder() == ((0, 2),)
