"""Level metering per zone (``loa.playout.levels``): a zone playing a file of a 1 kHz sine at a
known level reports that level (peak, and RMS 3 dB below it); the zones that play nothing read
the floor; the level follows a switch within the 250 ms window."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from loa.core.pcm import SILENCE
from loa.core.priority import Priority
from loa.playout.inputs.file import FileSource, ReaderPool
from loa.playout.levels import FLOOR_DBFS, WINDOW_FRAMES, LevelMeter, dbfs, frame_level
from loa.playout.programme import Programme, ProgrammeKind
from tests.server.test_engine import make_engine, run, tone

SILENT = {"peak_dbfs": FLOOR_DBFS, "rms_dbfs": FLOOR_DBFS}


def sine_wav(path: Path, freq_hz: float, level_dbfs: float, seconds: float) -> Path:
    """A 48 kHz 16-bit mono WAV of a sine whose peak is ``level_dbfs``."""
    rate = 48_000
    t = np.arange(int(rate * seconds)) / rate
    amplitude = 10 ** (level_dbfs / 20)
    pcm = np.round(amplitude * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


@pytest.mark.parametrize("level_dbfs", [-6.0, -20.0])
async def test_a_zone_playing_a_tone_reports_its_level(tmp_path: Path, level_dbfs: float) -> None:
    path = await asyncio.to_thread(sine_wav, tmp_path / "tone.wav", 1000.0, level_dbfs, 2.0)
    pool = ReaderPool(threads=1)
    await asyncio.to_thread(pool.start)
    try:
        engine, clock = make_engine()
        source = FileSource(str(path), gain=1.0, readers=pool)  # played as it is: no levelling
        engine.request("an-binh", Programme("tone", ProgrammeKind.FILE, source),
                       Priority.SCHEDULED)
        for _ in range(25):  # half a second: the window holds only the tone
            await engine.inputs_ready()
            run(engine, clock, 1)
        assert source.underruns == 0
        for village in ("an-binh-1", "an-binh-2"):  # the commune's programme, in each village
            level = engine.channels[village].levels()
            assert level["peak_dbfs"] == pytest.approx(level_dbfs, abs=1.0)
            assert level["rms_dbfs"] == pytest.approx(level_dbfs - 3.0, abs=1.0)
        assert engine.channels["phu-my-1"].levels() == SILENT
        assert engine.channels["huyen"].levels() == SILENT
    finally:
        await asyncio.to_thread(pool.stop, 2.0)


def test_the_level_follows_a_switch_within_the_window() -> None:
    engine, clock = make_engine()
    run(engine, clock, 5)
    assert engine.channels["an-binh-1"].levels() == SILENT
    loud = engine.request("an-binh-1", tone(1000), Priority.SCHEDULED)  # half of full scale
    run(engine, clock, 3)  # 60 ms of it: the peak shows at once, the RMS rises
    level = engine.channels["an-binh-1"].levels()
    assert level["peak_dbfs"] == pytest.approx(-6.0, abs=0.2)
    assert -20.0 < level["rms_dbfs"] < -9.5
    run(engine, clock, WINDOW_FRAMES)
    assert engine.channels["an-binh-1"].levels()["rms_dbfs"] == pytest.approx(-9.0, abs=0.2)
    engine.release(loud.id)
    run(engine, clock, WINDOW_FRAMES)  # a window of silence: down to the floor
    assert engine.channels["an-binh-1"].levels() == SILENT


def test_frame_levels_and_their_decibels() -> None:
    assert frame_level(SILENCE) == (0.0, 0.0)
    frame = np.full(960, -0.25, dtype=np.float32)
    assert frame_level(frame) == (0.25, 0.0625)
    assert dbfs(1.0) == 0.0 and dbfs(0.5) == -6.0 and dbfs(0.01, power=True) == -20.0
    assert dbfs(0.0) == FLOOR_DBFS and dbfs(1e-9) == FLOOR_DBFS
    meter = LevelMeter()
    meter.add(0.5, 0.125)
    assert meter.levels() == {"peak_dbfs": -6.0, "rms_dbfs": dbfs(0.125 / WINDOW_FRAMES,
                                                                 power=True)}
