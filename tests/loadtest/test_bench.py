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


@pytest.mark.parametrize("kind", ["loa", "icecast"])
async def test_fanout_run_against_each_server(kind: str) -> None:
    if kind == "icecast" and shutil.which("icecast2") is None:
        raise pytest.UsageError("icecast2 is required: run ./run test")
    lines: list[str] = []
    r = await fanout_run(kind, listeners=10, seconds=6.0, procs=1, out=lines.append,
                         warmup_s=2.5)
    assert r["streaming"] == 10 and r["gaps"] == 0
    assert r["beeps_heard"] >= 3
    assert r["cpu_ms_per_listener_second"] is not None and r["source_error"] is None
    if kind == "loa":
        assert r["heard_delay_ms"]["p99"] < 1000
    else:  # Icecast's burst: a new listener starts with the whole warm-up behind it
        assert r["heard_delay_ms"]["p50"] > 1500


def test_the_alert_text_is_long_vietnamese_cut_at_a_sentence() -> None:
    text = alert_text(2000)
    assert 1800 <= len(text) <= 2000 and text.endswith(".")
    assert "Xin nhắc lại" in text and "khẩn cấp" in text


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
        assert a["tone_arrived_ms"]["max"] is not None, kind
    assert r["alerts"]["cap"]["content"] == "media"  # the resource, not the text read aloud
    text = format_results({"alerts": r})
    assert "untouched zones (2 zones, 10/10 endpoints): PASS" in text
    assert all(f"| {kind} |" in text for kind in ALERT_KINDS)
