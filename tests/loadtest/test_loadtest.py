"""The load tester end to end: its own server process, worker processes, faults, reports."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from loa.core.percentiles import histogram_percentiles
from loa.loadtest.client import LATENCY_BIN_NS
from loa.loadtest.report import write_html, write_json
from loa.loadtest.runner import LoadSpec, LoadTest


async def test_a_small_fleet_with_takeover_source_cut_and_reconnect_storm(tmp_path: Path) -> None:
    spec = LoadSpec(endpoints=30, procs=2, ramp_s=1.0, seconds=7.0, takeover_at=2.0,
                    takeover_hold_s=30.0, cut_source_at=4.0, storm_at=5.0,
                    storm_fraction=0.5)
    lines: list[str] = []
    report = await LoadTest(spec, out=lines.append).run()

    assert report["endpoints_reporting"] == 30
    assert report["gaps"] == 0 and report["duplicates"] == 0
    assert report["packets"] > 30 * 50 * 4  # at least 4 s of 20 ms packets each
    latency, startup = report["latency_ms"], report["startup_ms"]
    assert latency["samples"] == report["packets"]  # every packet's latency measured
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    assert len(report["startup_samples_ms"]) == 30  # every endpoint's start-up timed
    assert 0 < startup["p50"] <= startup["p99"] <= startup["max"]
    scen = {s["name"]: s for s in report["scenarios"]}
    assert scen["takeover"]["reached"] == 30  # every endpoint heard the live programme
    assert scen["cut_source"]["reached"] == 30  # and fell back when the source was cut
    # (how soon, for each scenario, is the report's figure to read, not a gate)
    storm = scen["storm"]
    assert storm["dropped"] > 0 and storm["back"] == storm["dropped"]
    assert report["reconnects"] >= storm["dropped"]
    assert report["server"]["cpu_pct"] > 0 and report["generator_cpu_pct"] > 0
    assert any("streaming" in line for line in lines)  # the progress display

    write_json(report, str(tmp_path / "r.json"))
    write_html(report, str(tmp_path / "r.html"))
    page = (tmp_path / "r.html").read_text()
    assert page.count("<svg") >= 3 and page.count("<polyline") >= 2
    for fetch in ("src=", "href=", "<script", "<link", "@import"):  # self-contained
        assert fetch not in page


def test_histogram_percentiles() -> None:
    counts = np.zeros(1000, dtype=np.int64)
    counts[9] = 50  # 1.0 ms
    counts[99] = 49  # 10.0 ms
    counts[999] = 1  # 100.0 ms
    p = histogram_percentiles(counts, LATENCY_BIN_NS / 1e6)
    assert (p["p50"], p["p99"], p["max"]) == (1.0, 10.0, 100.0)
    assert LATENCY_BIN_NS == 100_000


@pytest.mark.load_generator(
    "the load test's MQTT devices and listeners runs on the test's loop and opens hundreds of "
    "connections in a step; the server it measures is a `loa serve` process, still judged")
async def test_the_mqtt_load_test_brings_a_fleet_online_and_times_zone_wide_commands() -> None:
    from loa.loadtest.mqtt_fleet import MqttLoadSpec, MqttLoadTest

    lines: list[str] = []
    report = await MqttLoadTest(MqttLoadSpec(endpoints=40, procs=2, villages=4, ramp_s=0.5,
                                             idle_s=1, rounds=2), out=lines.append).run()
    assert [(r["acked"], r["of"]) for r in report["volume_rounds"]] == [(40, 40), (40, 40)]
    assert report["acks_seen_by_endpoints"] == 80  # each endpoint acknowledged both
    assert report["worker_errors"] == 0
    assert 0 < report["volume_ack_ms"]["p50"] <= report["volume_ack_ms"]["max"]
    # Idle CPU over 1 s is zero or a 10 ms clock tick or two: nothing to compare it with, but
    # it was sampled over the whole window, as a share of the cores there are. Commanding 40
    # endpoints is work, so that CPU must show.
    idle = report["idle"]
    assert idle["seconds"] >= 1.0 and idle["server_rss_mb"] > 0
    assert 0 <= idle["server_cpu_pct"] <= 100 * (os.cpu_count() or 1)
    assert report["cpu_during_rounds"]["server_cpu_pct"] > 0
    assert any("online" in line for line in lines)  # progress was shown
