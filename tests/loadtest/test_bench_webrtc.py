"""The WebRTC part of ``loa bench`` (issue 16's latency and CPU figures), checked on a small
run, and its instruments: clicks found again after Opus, clicks matched to when they were
written, the figures of the Chromium part."""

from __future__ import annotations

import numpy as np
import pytest

from loa.codecs.encoder import create_encoder
from loa.core.pcm import FRAME_SAMPLES, SAMPLE_RATE
from loa.loadtest.bench import format_results
from loa.loadtest.bench_webrtc import (
    BrowserRun,
    HeardClick,
    Waits,
    browser_available,
    browser_figures,
    legs,
    match_before,
    match_nearest,
    webrtc_run,
)
from loa.loadtest.clicks import ClickTrack, find_clicks
from loa.loadtest.endpoint import OpusDecoder

MS = 1_000_000


def test_clicks_are_found_again_500_ms_apart_after_opus() -> None:
    clicks = ClickTrack(seconds=5.0)
    pcm = clicks.pcm()
    assert clicks.count == 10
    encoder = create_encoder("opus", 32_000)
    decoder = OpusDecoder()
    for i in range(len(pcm) // FRAME_SAMPLES):
        for packet in encoder.encode(pcm[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES],
                                     i * FRAME_SAMPLES, 0):
            decoder.decode(packet.data)
    onsets = find_clicks(decoder.pcm(), threshold=0.1)
    assert len(onsets) == clicks.count
    assert np.diff(onsets) == pytest.approx([SAMPLE_RATE // 2] * 9, abs=48)  # 1 ms
    assert find_clicks(np.zeros(SAMPLE_RATE, np.float32)) == []


def test_a_click_is_matched_to_its_own_writing_and_not_the_one_before() -> None:
    period = 500 * MS
    written = [k * period for k in range(10)]
    assert match_before(written, 3 * period + 40 * MS, period) == 3 * period
    assert match_before(written, -1, period) is None
    assert match_before(written, 20 * period, period) is None  # none within a period
    assert match_nearest(written, 3 * period - 10 * MS, period) == 3 * period
    assert match_nearest(written, 3 * period + 260 * MS, period) == 4 * period
    heard = [HeardClick(k * period + 90 * MS, k * period + 30 * MS) for k in range(1, 9)]
    r = legs(heard, written, 0.5)
    assert r["clicks"] == r["matched"] == 8
    assert r["glass_to_endpoint_ms"]["p50"] == pytest.approx(90)
    assert r["sender_leg_ms"]["p50"] == pytest.approx(30)
    assert r["server_in_to_endpoint_ms"]["p50"] == pytest.approx(60)


def test_the_chromium_figures_bound_the_latency_by_the_getusermedia_window() -> None:
    """Capture started between getUserMedia's call (t = 1 s) and return (1.006 s); the
    page's graph saw click k at 1.108 + k/2 s; the server got it 10 ms later, the
    loudspeaker 30 ms after that; the WHEP monitor heard it 100 ms after the graph."""
    period, offset = 500 * MS, 100 * MS
    before, after = 1000 * MS, 1006 * MS
    graph = [after + offset + 2 * MS + k * period for k in range(20)]
    run = BrowserRun(gum_before_ns=before, gum_after_ns=after, local_ns=graph,
                     monitor_ns=[g + 100 * MS for g in graph[2:18]])
    heard = [HeardClick(g + 40 * MS, g + 10 * MS) for g in graph[2:18]]
    r = browser_figures(run, heard, [], ClickTrack(), graph[2], graph[18])
    assert r["matched"] == 16 and r["getusermedia_ms"] == 6.0
    assert r["page_graph_to_endpoint_ms"]["p50"] == pytest.approx(40)
    assert r["capture_at_getusermedia_return_to_endpoint_ms"]["p50"] == pytest.approx(42)
    assert r["capture_at_getusermedia_call_to_endpoint_ms"]["p50"] == pytest.approx(48)
    monitor = r["browser_whep_monitor"]
    assert monitor["clicks"] == 16
    assert monitor["page_graph_to_heard_ms"]["p50"] == pytest.approx(100)
    assert monitor["server_in_to_heard_ms"]["p50"] == pytest.approx(90)


@pytest.mark.load_generator(
    "the bench is a load generator: its own aiortc peers and connections share the test's "
    "loop and take 10-25 ms in a step on a busy machine; the server under test runs as a "
    "`loa serve` process of its own, still judged")
async def test_a_short_webrtc_bench_hears_every_path() -> None:
    """The part in small (5 s a path, 3 viewers): each path's clicks are heard, matched to
    their writing, well under a second late; the viewers all receive."""
    lines: list[str] = []
    # the bench's workings, not its figures: its waits shortened (59 s -> ~40 s)
    r = await webrtc_run(lines.append, seconds=5.0, viewers=3,
                         waits=Waits(settle_s=1.0, baseline_s=2.0))
    for path in ("aiortc_whip", "icecast_ffmpeg"):
        p = r[path]
        assert p["clicks"] >= 8 and p["matched"] == p["clicks"], (path, p)
        assert 0 < p["glass_to_endpoint_ms"]["p50"] < 500, (path, p)
        assert p["server_in_to_endpoint_ms"]["p50"] > 0, (path, p)
    c = r["chromium_whip"]
    if browser_available() is None:
        assert c["clicks"] >= 8 and c["matched"] == c["clicks"], c
        low = c["capture_at_getusermedia_return_to_endpoint_ms"]["p50"]
        high = c["capture_at_getusermedia_call_to_endpoint_ms"]["p50"]
        assert 0 < low <= high < 500, c
        assert c["browser_whep_monitor"]["clicks"] >= 6, c
        assert c["aiortc_whep_viewer"]["clicks"] >= 6, c
    else:
        assert "skipped" in c
    s = r["whip_sources"]
    assert s["live"] == s["sources"] == 4 and s["cpu_pct_per_source"] is not None, s
    w = r["whep_viewers"]
    assert w["connected"] == w["receiving"] == 3 and w["cpu_pct_per_viewer"] is not None, w
    text = format_results({"webrtc": r})
    assert "| aiortc WHIP (frame handed to the encoder) | " in text
    assert "3 WHEP viewers (3 connected, 3 receiving)" in text
