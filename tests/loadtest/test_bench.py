"""The benchmark's instruments, checked on small runs (the figures come from `loa bench`)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from loa.codecs.pcm import SAMPLE_RATE
from loa.loadtest.bench import fanout_run, transcode_run
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
