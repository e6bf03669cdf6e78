"""The loudness worker costs nothing until something is measured, and ends when it has had
nothing to measure for a while (issue 17: RSS at idle). The modules it needs (scipy, via
pyloudnorm) are not loaded by a server that measures nothing."""

from __future__ import annotations

import subprocess
import sys
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from loa.codecs.loudness import MeasurePool

RATE = 48000


@pytest.fixture
def tone_wav(tmp_path: Path) -> Path:
    """Two seconds of a 1 kHz sine at half scale, 16-bit mono WAV."""
    t = np.arange(2 * RATE) / RATE
    pcm = (0.5 * np.sin(2 * np.pi * 1000 * t) * 32767).astype("<i2")
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())
    return path


def until(what: str, check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Poll ``check()`` until true, failing with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.05)  # polling a worker process's end; bounded by the deadline


def test_the_worker_starts_on_the_first_measurement_and_ends_when_idle(tone_wav: Path
                                                                       ) -> None:
    pool = MeasurePool(idle_s=0.5)
    try:
        assert not pool.running and pool.started == 0  # made: nothing started
        duration_s, lufs, peak = pool.measure(str(tone_wav))
        assert pool.running and pool.started == 1
        assert duration_s == pytest.approx(2.0, abs=0.03)
        assert peak == pytest.approx(0.5, abs=0.01)
        # BS.1770: a full-scale 1 kHz sine reads -3.01 LUFS; this one is 6.02 dB below it
        assert lufs == pytest.approx(-9.03, abs=0.1)
        assert pool.measure(str(tone_wav))[1] == lufs  # the same worker, warm
        assert pool.started == 1
        until("the idle worker ends", lambda: not pool.running)
        assert pool.measure(str(tone_wav))[1] == lufs  # a new worker, the same answer
        assert pool.started == 2
    finally:
        pool.shutdown()
    assert not pool.running


def test_warm_starts_the_worker_without_waiting_and_it_ends_when_idle(tone_wav: Path) -> None:
    pool = MeasurePool(idle_s=0.5)
    try:
        pool.warm()
        assert pool.running and pool.started == 1
        assert pool.measure(str(tone_wav))[0] == pytest.approx(2.0, abs=0.03)
        assert pool.started == 1  # the warmed worker measured it
        until("the idle worker ends", lambda: not pool.running)
    finally:
        pool.shutdown()


def test_an_idle_server_does_not_load_the_measuring_modules() -> None:
    """Nor dnspython, which paho-mqtt would load for a lookup Loa never makes (6 MB); loaded
    later, by whoever needs it (aioice, for WebRTC), it imports as usual. Nor what only a
    scrape (prometheus_client), an XML document (defusedxml), a sign-in (argon2) or the
    measuring worker (multiprocessing) needs: each loads at its first use."""
    code = ("import sys, loa.app, loa.cli; "
            "heavy = [m for m in ('scipy', 'pyloudnorm', 'openpyxl', 'aiortc', 'icalendar', "
            "'recurring_ical_events', 'dns.resolver', 'prometheus_client', 'wsgiref', "
            "'defusedxml', 'xml.etree.ElementTree', 'argon2', 'multiprocessing', "
            "'concurrent.futures.process') "
            "if m in sys.modules]; print(','.join(heavy)); "
            "import dns.resolver; print(dns.resolver.Resolver.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split("\n") == ["", "Resolver", ""]
