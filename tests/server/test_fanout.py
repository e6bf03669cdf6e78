"""Fan-out over real loopback sockets, the clock ticked by hand."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from pathlib import Path

import aiohttp

from loa.app import LoaServer
from loa.codecs.ogg import OggReader
from loa.config import Config, MqttConfig
from loa.core.clock import FakeClock
from loa.core.pcm import FRAME_NS
from loa.core.priority import Priority
from loa.loadtest.endpoint import SimulatedEndpoint
from loa.playout.inputs.generator import tone_source
from loa.playout.programme import Programme, ProgrammeKind
from tests.audio import closed


async def start_server(tmp_path: Path, **overrides: object) -> tuple[LoaServer, FakeClock]:
    clock = FakeClock()
    overrides = {"mqtt": MqttConfig(listen_port=0), **overrides}
    cfg = replace(Config(), listen_port=0, data_dir=tmp_path / "data", demo=False,
                  admin_token="t", source_password="pw", **overrides)  # type: ignore[arg-type]
    server = await asyncio.to_thread(LoaServer, cfg, clock)  # opens its database: beside the loop
    await server.start(run_clock=False)
    return server, clock


async def tick(server: LoaServer, clock: FakeClock, n: int = 1) -> None:
    for _ in range(n):
        clock.set_ns(clock.now_ns() + FRAME_NS)
        server.engine.tick(clock.now_ns())
        for _ in range(3):
            await asyncio.sleep(0)  # let the sockets move; nothing here waits on time


async def read_ogg(port: int, zone: str, reader_out: OggReader, stop: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /zones/{zone}/stream.ogg HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    packets = []
    while not stop.is_set():
        data = await reader.read(65536)
        if not data:
            break
        packets += reader_out.feed(data)
    await closed(writer)


async def test_a_stalled_listener_is_cut_off_and_nobody_else_notices(tmp_path: Path) -> None:
    server, clock = await start_server(tmp_path, sndbuf_bytes=4096, backlog_ms=100,
                                       opus_bitrate_bps=256_000, burst_ms=0)
    # the stalled one: a tiny receive window, and it never reads
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        prog = Programme("noise-ish", ProgrammeKind.GENERATOR, tone_source(3000))
        server.engine.request("huyen", prog, Priority.SCHEDULED)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(b"GET /zones/an-binh-1/stream.ogg HTTP/1.1\r\nHost: x\r\n\r\n")
        stop = asyncio.Event()
        healthy = [OggReader() for _ in range(3)]
        tasks = [asyncio.create_task(read_ogg(server.port, "an-binh-1", r, stop))
                 for r in healthy]
        ws_ep = SimulatedEndpoint(f"ws://127.0.0.1:{server.port}/zones/an-binh-1/ws")
        async with aiohttp.ClientSession() as http:
            ws_task = asyncio.create_task(ws_ep.run(http, seconds=60, stop=stop))
            feed = server.engine.channels["an-binh-1"].feeds
            for _ in range(500):
                await tick(server, clock)
                if "ogg" in feed and len(feed["ogg"]) == 4 and "ws" in feed and len(feed["ws"]):
                    break
            joined_ticks = server.engine.ticks
            for _ in range(3000):
                await tick(server, clock)
                if server.counters.total("subscribers_cut"):
                    break
            cut_at = server.engine.ticks
            await tick(server, clock, 50)  # and the stream goes on for the others
            sent = server.engine.ticks - joined_ticks
            stop.set()
            await tick(server, clock, 2)
            await asyncio.gather(*tasks)
            await ws_task
        assert server.counters.get("subscribers_cut", feed="an-binh-1/ogg", reason="slow") == 1
        assert cut_at < joined_ticks + 3000
        for r in healthy:
            assert r.crc_errors == 0
            # two header pages, then one page per tick since joining: nothing lost
            assert r.pages >= sent + 2 - 1
        assert ws_ep.report.gaps == 0 and ws_ep.report.packets >= sent - 1
    finally:
        stalled.close()  # closed whether the test passed or not: no socket left to the GC
        await server.stop()


async def test_a_hundred_websocket_endpoints_share_one_encoder(tmp_path: Path) -> None:
    server, clock = await start_server(tmp_path)
    try:
        # (registered as an import does it: each credential hashed beside the loop, 100 of
        # them one after another held the test's loop step 17-22 ms)
        rows = "".join(f"sim-{i:03d},,phu-my-1\n" for i in range(100))
        assert not (await server.endpoints.import_csv("id,name,zone\n" + rows)).errors
        server.engine.request("huyen", Programme("tone", ProgrammeKind.GENERATOR,
                                                 tone_source(1000)), Priority.SCHEDULED)
        stop = asyncio.Event()
        eps = [SimulatedEndpoint(f"ws://127.0.0.1:{server.port}/endpoints/sim-{i:03d}/ws")
               for i in range(100)]
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            tasks = [asyncio.create_task(e.run(http, seconds=60, stop=stop)) for e in eps]
            ws_feed = lambda: server.engine.channels["phu-my-1"].feeds.get("ws")  # noqa: E731
            for _ in range(2000):
                await tick(server, clock)
                f = ws_feed()
                if f is not None and len(f) == 100:
                    break
            await tick(server, clock, 100)
            stop.set()
            await tick(server, clock, 2)
            reports = await asyncio.gather(*tasks)
        assert server.counters.get("encoders_created", codec="opus") == 1
        assert len(server.engine.renditions) == 1
        assert all(r.error is None and r.gaps == 0 and r.packets >= 100 for r in reports)
    finally:
        await server.stop()
