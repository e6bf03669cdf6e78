"""Instruments that hear dead air: freeze a real server's master clock and every simulated
endpoint, and the load test's verdict, must say so; without a freeze they must not.

The server runs in-process (``make_server``), so the test can stop and restart its clock task
(``server.engine``) for a second without blocking the event loop. The waits here are the point
of the test: real time passing while the clock is, or is not, frozen.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from loa.app import LoaServer
from loa.cli.listen import report_text
from loa.cli.text import language, use
from loa.loadtest.client import LATENCY_BINS, LightEndpoint, Protocol
from loa.loadtest.endpoint import EXIT_ERRORS, SimulatedEndpoint, listen_status
from loa.loadtest.report import summary_table, write_html, write_json
from loa.loadtest.runner import LoadSpec, LoadTest
from loa.loadtest.timeline import (
    DELIVERED_MIN_PCT,
    EXIT_DEAD_AIR,
    STALL_THRESHOLD_MS,
    TimelineSummary,
    Verdict,
)
from tests.conftest import ADMIN_TOKEN

FREEZE_S = 1.0
TOLERANCE_MS = 150
ZONE = "an-binh-1"

MakeServer = Callable[..., Awaitable[LoaServer]]


async def freeze(server: LoaServer, seconds: float) -> None:
    """Stop the master clock, let real time pass, start it again (the loop stays free)."""
    await server.engine.stop()
    await asyncio.sleep(seconds)  # the freeze itself: real time passing
    server.engine.start()


async def hear(server: LoaServer, freeze_s: float) -> dict[str, TimelineSummary]:
    """Every kind of simulated endpoint on one zone: 0.8 s of audio, the freeze, 0.8 s more."""
    host = f"127.0.0.1:{server.port}"
    urls = {Protocol.WS: f"ws://{host}/zones/{ZONE}/ws",
            Protocol.OGG: f"http://{host}/zones/{ZONE}/stream.ogg",
            Protocol.MP3: f"http://{host}/zones/{ZONE}/stream.mp3"}
    hist = np.zeros(LATENCY_BINS, dtype=np.int64)
    light = {f"light-{p.value}": LightEndpoint(u, p, hist) for p, u in urls.items()}
    probes = {f"decoding-{p.value}": SimulatedEndpoint(u, decode=p is not Protocol.MP3)
              for p, u in urls.items()}
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        tasks: list[asyncio.Task[object]] = [
            asyncio.create_task(ep.run(stop)) for ep in light.values()]
        tasks += [asyncio.create_task(ep.run(session, 30.0, stop)) for ep in probes.values()]
        await asyncio.sleep(0.8)  # real time: a stretch of normal audio
        if freeze_s:
            await freeze(server, freeze_s)
        await asyncio.sleep(0.8)
        stop.set()
        end_ns = time.monotonic_ns()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
    heard = {name: ep.timeline.summary(end_ns) for name, ep in light.items()}
    for name, probe in probes.items():
        assert probe.report.error is None, (name, probe.report.error)
        assert probe.report.timeline is not None
        heard[name] = probe.report.timeline
    for name, ep in light.items():
        assert not ep.stats.errors, (name, ep.stats.errors)
    return heard


async def test_every_kind_of_endpoint_hears_a_frozen_clock_as_a_stall(
        make_server: MakeServer) -> None:
    server = await make_server()
    heard = await hear(server, FREEZE_S)
    for name, s in heard.items():
        assert s.packets > 0, name
        assert s.stalls == 1, (name, s)
        assert abs(s.longest_silence_ms - 1000 * FREEZE_S) <= TOLERANCE_MS, (name, s)
        assert abs(s.worst_lag_ms - 1000 * FREEZE_S) <= TOLERANCE_MS, (name, s)
        assert s.delivered_pct < DELIVERED_MIN_PCT, (name, s)


async def test_without_a_freeze_no_endpoint_hears_a_stall(make_server: MakeServer) -> None:
    server = await make_server()
    heard = await hear(server, 0.0)
    for name, s in heard.items():
        assert s.packets > 0, name
        assert s.stalls == 0, (name, s)
        assert s.longest_silence_ms < 100, (name, s)
        assert s.delivered_pct >= DELIVERED_MIN_PCT, (name, s)


@pytest.mark.parametrize("freeze_s", [FREEZE_S, 0.0], ids=["frozen", "steady"])
async def test_the_load_test_reads_a_frozen_clock_as_failure(
        make_server: MakeServer, tmp_path: Path, freeze_s: float) -> None:
    server = await make_server()
    spec = LoadSpec(url=f"http://127.0.0.1:{server.port}", token=ADMIN_TOKEN, endpoints=6,
                    procs=1, ramp_s=0.3, seconds=3.0)
    actions = [(1.0, "freeze", lambda: freeze(server, freeze_s))] if freeze_s else []
    lines: list[str] = []
    report = await LoadTest(spec, out=lines.append, actions=actions).run()
    table = summary_table(report)
    write_json(report, str(tmp_path / "r.json"))
    write_html(report, str(tmp_path / "r.html"))
    saved = json.loads((tmp_path / "r.json").read_text())
    page = (tmp_path / "r.html").read_text()

    assert report["endpoints_reporting"] == 6
    assert report["gaps"] == 0 and report["duplicates"] == 0  # the old figures saw nothing
    assert saved["verdict"] == report["verdict"]
    if freeze_s:
        assert report["verdict"] == Verdict.FAILURE.value
        assert report["stalls"] == 6 and report["endpoints_with_stalls"] == 6
        assert abs(report["longest_silence_ms"]["max"] - 1000 * freeze_s) <= TOLERANCE_MS
        assert abs(report["longest_silence_ms"]["p99"] - 1000 * freeze_s) <= TOLERANCE_MS
        assert report["delivered_pct"]["min"] < DELIVERED_MIN_PCT
        assert report["delivered_pct"]["p50"] < DELIVERED_MIN_PCT
        worst = report["worst_endpoints"][0]
        assert worst["stalls"] == 1 and 1.0 <= worst["stalls_at_s"][0] <= 2.2
        assert "FAILURE" in table and "*** FAILURE" in table
        assert 'class="verdict FAILURE"' in page and "FAILURE" in page
    else:
        assert report["verdict"] == Verdict.PASS.value, report["verdict_reasons"]
        assert report["stalls"] == 0 and report["endpoints_with_stalls"] == 0
        assert report["longest_silence_ms"]["max"] < 100
        assert report["delivered_pct"]["min"] >= DELIVERED_MIN_PCT
        assert "PASS" in table and "FAILURE" not in table
        assert 'class="verdict PASS"' in page
    for key in ("stalls", "endpoints_with_stalls", "longest_silence_ms", "delivered_pct",
                "verdict_reasons", "stall_threshold_ms"):
        assert key in saved


async def listener_on(server: LoaServer, kind: str, timeout_s: float = 15.0) -> None:
    """Until the zone has a ``kind`` listener (the server's own state; bounded)."""
    channel = server.engine.channels[ZONE]
    deadline = time.monotonic() + timeout_s
    while not channel.listeners().get(kind):
        assert time.monotonic() < deadline, "loa listen did not connect"
        await asyncio.sleep(0.02)  # polling the server's state, bounded by the deadline


@pytest.mark.parametrize("freeze_s", [FREEZE_S, 0.0], ids=["frozen", "steady"])
async def test_loa_listen_reports_dead_air_and_exits_non_zero(
        make_server: MakeServer, freeze_s: float) -> None:
    server = await make_server()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loa", "listen", f"ws://127.0.0.1:{server.port}/zones/{ZONE}/ws",
        "--seconds", "2.5", "--json", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        await listener_on(server, "ws")
        await asyncio.sleep(0.5)  # real time: audio before the freeze
        if freeze_s:
            await freeze(server, freeze_s)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    heard = json.loads(out)
    assert heard["errors"] == [], err.decode()
    assert heard["gaps"] == 0
    if freeze_s:
        assert proc.returncode == EXIT_DEAD_AIR
        assert heard["stalls"] == 1 and heard["verdict"] == Verdict.FAILURE.value
        assert abs(heard["longest_silence_ms"] - 1000 * freeze_s) <= TOLERANCE_MS
        assert heard["delivered_pct"] < DELIVERED_MIN_PCT
    else:
        assert proc.returncode == 0
        assert heard["stalls"] == 0 and heard["verdict"] == Verdict.PASS.value
        assert heard["longest_silence_ms"] < 100
        assert heard["delivered_pct"] >= DELIVERED_MIN_PCT


def test_loa_listen_says_its_report_and_why_it_failed_in_the_readers_language() -> None:
    """The figures of a run that heard a stall, for people: in Vietnamese (then English),
    the verdict and each reason with its figures; the exit status says dead air."""
    report = {"endpoints": 2, "seconds": 2.5, "packets": 230, "gaps": 0, "duplicates": 0,
              "errors": [], "startup_ms_median": 21.5,
              "latency_ms": {"p50": 1.2, "p99": 3.4}, "stalls": 1, "endpoints_with_stalls": 1,
              "short_endpoints": 1, "longest_silence_ms": 1010.0, "delivered_pct": 61.2,
              "verdict": Verdict.FAILURE.value, "verdict_reasons": ["(English, for scripts)"]}
    before = language()
    try:
        use("vi")
        said = report_text(report)
        assert "Kết luận                    KHÔNG ĐẠT" in said
        assert "Im lặng dài nhất            1010.0 ms" in said
        assert f"1 cụm loa bị tắc tiếng (âm thanh chậm hơn thời gian thực quá " \
               f"{STALL_THRESHOLD_MS} ms)" in said
        assert f"1 cụm loa nhận được ít hơn {DELIVERED_MIN_PCT:g} % thời gian thực" in said
        use("en")
        assert "Verdict                     FAILURE" in report_text(report)
        # an HTTP stream has no latency stamps: no figure, said as such
        untimed = report_text({**report, "latency_ms": {"p50": None, "p99": None}})
        assert "Latency p50 / p99           – / – ms" in untimed and "None" not in untimed
    finally:
        use(before)
    assert listen_status(report) == EXIT_DEAD_AIR
    assert listen_status({**report, "errors": ["refused"]}) == EXIT_ERRORS
    assert listen_status({**report, "verdict": Verdict.PASS.value}) == 0


@pytest.mark.parametrize("scheme, path", [("ws", "ws"), ("http", "stream.ogg")])
async def test_loa_listen_to_a_zone_that_does_not_exist_says_the_servers_refusal(
        make_server: MakeServer, scheme: str, path: str) -> None:
    """A mistyped zone: the refusal as the server words it (a WebSocket upgrade refused is
    read again over HTTP), no figure shown as if measured, and the exit status of an
    endpoint that could not connect."""
    server = await make_server()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loa", "listen",
        f"{scheme}://127.0.0.1:{server.port}/zones/an-bihn/{path}", "--seconds", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "LANGUAGE": "en"})
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    said = out.decode()
    assert proc.returncode == EXIT_ERRORS, err.decode()
    assert "HTTP 404: unknown zone 'an-bihn'" in said
    assert "First audio after (median)  – ms" in said and "Longest silence             – ms" \
        in said and "0.0 ms" not in said
