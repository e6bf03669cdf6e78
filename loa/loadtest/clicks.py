"""Clicks: a test signal whose every event can be found again after a lossy codec and a
network, and timed.

A click is a short burst of a sine (by default 10 ms of 1 kHz at half of full scale) every
``period_s`` (500 ms), the rest silence. Chromium plays a WAV of them as its fake microphone
(``--use-file-for-fake-audio-capture``, looping it); ffmpeg pushes the same file over Icecast;
a decoded stream is searched for their onsets (``find_clicks``).
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from loa.core.pcm import SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class ClickTrack:
    """What a click WAV holds: ``seconds`` of audio (48 kHz mono), a click of ``burst_ms`` of
    ``freq_hz`` at amplitude ``level`` (0-1) every ``period_s``, the first at ``offset_s``."""

    seconds: float = 10.0
    period_s: float = 0.5
    offset_s: float = 0.1
    burst_ms: float = 10.0
    freq_hz: float = 1000.0
    level: float = 0.5

    @property
    def count(self) -> int:
        """How many clicks the file holds."""
        return len(self.click_times_s())

    def click_times_s(self) -> list[float]:
        """Where each click begins in the file (s)."""
        times = []
        t = self.offset_s
        while t + self.burst_ms / 1000 <= self.seconds + 1e-9:
            times.append(round(t, 9))
            t += self.period_s
        return times

    def pcm(self) -> np.ndarray:
        """The samples: float32, 48 kHz mono, in [-1, 1]."""
        out = np.zeros(int(round(self.seconds * SAMPLE_RATE)), dtype=np.float32)
        n = int(round(self.burst_ms * SAMPLE_RATE / 1000))
        burst = (self.level * np.sin(2 * np.pi * self.freq_hz * np.arange(n) / SAMPLE_RATE)
                 ).astype(np.float32)
        for t in self.click_times_s():
            start = int(round(t * SAMPLE_RATE))
            out[start:start + n] = burst[:len(out) - start]
        return out

    def write_wav(self, path: Path | str) -> Path:
        """Blocking: the clicks as a 16-bit mono 48 kHz WAV at ``path``; returns it."""
        pcm16 = np.round(self.pcm() * 32767).astype("<i2")
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(pcm16.tobytes())
        return Path(path)


def find_clicks(pcm: np.ndarray, *, rate: int = SAMPLE_RATE, threshold: float = 0.05,
                relative: float = 0.25, min_gap_s: float = 0.1) -> list[int]:
    """The sample indices where clicks begin in ``pcm`` (mono float, -1..1): the first
    sample whose magnitude reaches the threshold (``threshold``, or ``relative`` of the
    loudest sample when that is higher) after at least ``min_gap_s`` below it. Empty for
    silence. Blocking (a pass over the samples): call it beside the loop for long
    recordings."""
    if not len(pcm):
        return []
    mag = np.abs(pcm)
    level = max(threshold, relative * float(mag.max()))
    loud = np.flatnonzero(mag >= level)
    if not len(loud):
        return []
    after_quiet = np.flatnonzero(np.diff(loud) >= int(min_gap_s * rate)) + 1
    return [int(loud[0]), *loud[after_quiet].tolist()]
