"""A file read ahead beside the loop: the tick takes decoded frames, or silence, never waits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from loa.core.counters import Counters
from loa.core.pcm import FRAME_SAMPLES
from loa.playout.inputs.file import FileSource, ReaderPool
from tests.audio import dominant_hz, tone_file


async def test_with_nothing_decoded_yet_the_tick_gets_silence_and_counts_it(
        tmp_path: Path) -> None:
    path = await tone_file(tmp_path / "t.mp3", 700, 1.0, ["-c:a", "libmp3lame"])
    counters = Counters()
    stalled = ReaderPool(threads=0)  # a reader that never gets to it
    src = FileSource(str(path), counters=counters, readers=stalled)
    frames = [src.read(i) for i in range(5)]
    assert all(f is not None and not np.any(f[0]) and len(f[0]) == FRAME_SAMPLES
               for f in frames)
    assert src.underruns == 5 and counters.get("read_ahead_underruns") == 5
    assert src.frames_read == 0
    src.close()


async def test_once_decoded_the_file_plays_in_order_to_its_end(tmp_path: Path) -> None:
    path = await tone_file(tmp_path / "t.mp3", 700, 2.0, ["-c:a", "libmp3lame"])
    pool = ReaderPool(threads=1)
    await asyncio.to_thread(pool.start)
    try:
        src = FileSource(str(path), gain=0.5, readers=pool, ahead_frames=10)
        pcm = []
        while True:
            await src.ready()  # a test runs faster than real time: give the reader its time
            got = src.read(0)
            if got is None:
                break
            pcm.append(got[0])
            assert src.buffered <= 10  # bounded: the reader stays at most ahead_frames ahead
        audio = np.concatenate(pcm)
        assert src.underruns == 0 and src.error is None
        assert len(audio) == pytest.approx(2 * 48000, abs=2 * FRAME_SAMPLES)
        assert dominant_hz(audio[4800:-4800]) == pytest.approx(700, rel=0.01)
        assert float(np.max(np.abs(audio))) < 0.55  # the gain was applied
    finally:
        await asyncio.to_thread(pool.stop, 2.0)


async def test_a_file_that_cannot_be_read_ends_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "khong-phai-am-thanh.mp3"
    await asyncio.to_thread(bad.write_text, "not audio\n" * 100)
    pool = ReaderPool(threads=1)
    await asyncio.to_thread(pool.start)
    try:
        src = FileSource(str(bad), readers=pool)
        await src.ready()
        assert src.read(0) is None and src.error and "khong-phai-am-thanh" in src.error
    finally:
        await asyncio.to_thread(pool.stop, 2.0)
