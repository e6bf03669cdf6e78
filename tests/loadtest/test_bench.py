"""The benchmark's instruments, checked on small runs (the figures come from `loa bench`)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from loa.core.pcm import SAMPLE_RATE
from loa.loadtest.bench import (
    ALERT_KINDS,
    alert_text,
    alerts_run,
    fanout_run,
    format_results,
    outage_run,
    transcode_run,
)
from loa.loadtest.bench_source import (
    BEEP_EVERY_FRAMES,
    find_beeps,
    marker_frame,
    playout_delays_ms,
)


def test_marker_beeps_are_found_and_matched_to_when_they_were_sent() -> None:
    pcm = np.concatenate([marker_frame(i) for i in range(BEEP_EVERY_FRAMES * 25)])
    lead = 12_345  # the listener's stream starts mid-way through the first second
    heard = pcm[lead:]
    beeps = find_beeps(heard)
    assert [k for _, k in beeps] == [i % 20 for i in range(1, 25)]
    assert abs(beeps[0][0] - (SAMPLE_RATE - lead)) <= 10  # within the attack: 0.2 ms
    # the source sent beep b at b seconds; the player starts at 10 s with sample `lead`, so it
    # hears every beep 10 s - lead/48000 s after it was sent (less the onset's rise time)
    sent = {b: b * 1_000_000_000 for b in range(25)}
    delays = playout_delays_ms(heard, 10_000_000_000, sent)
    assert len(delays) == 24
    assert all(d == pytest.approx(10_000 - lead / 48, abs=0.2) for d in delays)


def test_transcode_measures_both_sides() -> None:
    r = transcode_run(seconds=5.0)
    assert r["ffmpeg_cpu_s"] > 0 and r["loa_cpu_s"] > 0
    assert 0.2 < r["ratio_loa_to_ffmpeg"] < 5


@pytest.mark.load_generator(
    "the bench's fleet of simulated endpoints runs on the test's loop and opens hundreds of "
    "connections in a step; the server it measures is a `loa serve` process, still judged")
@pytest.mark.parametrize("kind", ["loa", "icecast"])
async def test_fanout_run_against_each_server(kind: str) -> None:
    if kind == "icecast" and shutil.which("icecast2") is None:
        raise pytest.UsageError("icecast2 is required: run ./run test")
    lines: list[str] = []
    warmup_s = 2.5
    r = await fanout_run(kind, listeners=10, seconds=6.0, procs=1, out=lines.append,
                         warmup_s=warmup_s)
    assert r["streaming"] == 10 and r["gaps"] == 0
    assert r["beeps_heard"] >= 3
    assert r["cpu_ms_per_listener_second"] > 0 and r["source_error"] is None
    # What a new listener is given first (how soon it hears is `loa bench`'s figure): Icecast's
    # burst, the whole warm-up behind the live edge; Loa, the live edge.
    behind_ms = 1000 * warmup_s / 2
    if kind == "loa":
        assert r["heard_delay_ms"]["p99"] < behind_ms
    else:
        assert r["heard_delay_ms"]["p50"] > behind_ms


def test_the_alert_text_is_long_vietnamese_cut_at_a_sentence() -> None:
    text = alert_text(2000)
    assert 1800 <= len(text) <= 2000 and text.endswith(".")
    assert "Xin nhắc lại" in text and "khẩn cấp" in text


@pytest.mark.load_generator(
    "the bench's fleet of simulated endpoints runs on the test's loop and opens hundreds of "
    "connections in a step; the server it measures is a `loa serve` process, still judged")
async def test_alerts_beside_fanout_small() -> None:
    """The alerts scenario in small: 40 endpoints over 8 villages, a file, a text and a CAP
    alert on 2 villages each; the 2 untouched villages hear no dead air, and every kind has
    its tone-first and message-first figures for every targeted endpoint."""
    lines: list[str] = []
    r = await alerts_run(40, 2, lines.append, villages=8, zones_per_kind=2, ramp_s=1.0,
                         alert_at=3.0, lag_after_s=3.0, seconds=7.5, file_s=30.0, cap_s=3.0)
    assert r["errors"] == []
    assert r["zones"]["untouched"] == ["thon-07", "thon-08"]
    assert r["zones"]["cap"] == ["thon-05", "thon-06"]  # found by the geocodes of the CAP
    u = r["untouched"]
    assert (u["endpoints"], u["reporting"]) == (10, 10)
    assert u["verdict"] == "PASS" and u["stalls"] == 0 and u["gaps"] == 0
    assert 0 < u["longest_silence_ms"]["max"] < 100 and u["delivered_pct"]["min"] >= 99
    for when in ("before", "after"):
        lag = r["loop_lag_ms"][when]
        assert 0 <= lag["p50"] <= lag["p99"] <= lag["max"]
    assert set(r["alerts"]) == set(ALERT_KINDS)
    for kind, a in r["alerts"].items():
        assert a["targeted"] == 10 and a["tone_reached"] == 10 and a["message_reached"] == 10, kind
        tone, message = a["tone_first_ms"], a["message_first_ms"]
        assert 0 < tone["p50"] <= tone["p99"] <= tone["max"], kind
        # the message follows the 2 s attention tone
        assert 1900 < message["p50"] <= message["p99"] <= message["max"], kind
        # call sent -> heard at the endpoint spans call arrived -> written by the server
        arrived = a["tone_arrived_ms"]
        assert tone["p50"] <= arrived["p50"] and tone["max"] <= arrived["max"], (kind, arrived)
    assert r["alerts"]["cap"]["content"] == "file"  # the resource, not the text read aloud
    text = format_results({"alerts": r})
    assert "untouched zones (2 zones, 10/10 endpoints): PASS" in text
    assert all(f"| {kind} |" in text for kind in ALERT_KINDS)


async def test_after_a_5_second_source_outage_the_heard_delay_is_back_within_5_s() -> None:
    """The outage part in small: ffmpeg pushes beeps live, is stopped for 5 s with its
    connection open, then goes on (catching up at full speed). The delay the decoding listener
    hears is back to what it was before within 5 s of the source's return (in fact at the
    first beep: the server cuts the backlog and plays on from the live edge)."""
    lines: list[str] = []
    r = await outage_run(lines.append, before_s=7.0, outage_s=5.0, after_s=6.0)
    assert r["errors"] == []
    assert r["beeps_before"] >= 3 and r["beeps_after"] >= 4
    assert r["counters"]["jitter_outages{source=live/studio}"] == 1
    assert r["back_to_target_s"] is not None and r["back_to_target_s"] < 5.0
    assert r["first_heard_after_s"] == r["back_to_target_s"]
    assert r["delay_after_ms"]["p50"] <= r["back_within_ms"]
    assert r["sound_back_s"] is not None and r["sound_back_s"] < 1.0  # the live edge, at once
    assert all(j["target_frames"] < 10 for j in r["jitter"])  # never learned as jitter
    text = format_results({"outage": r})
    assert "Source outage (5" in text and "| t (s from the outage's start) |" in text
