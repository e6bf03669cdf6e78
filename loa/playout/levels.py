"""Level metering: the peak and RMS level, in dBFS, of what a zone forwards.

The engine measures each programme on air once per tick, on the 20 ms frame it already has
(``frame_level``: two numpy reductions over 960 samples, a few microseconds; a frame of
``SILENCE`` costs nothing), and hands the figures to every zone channel that forwards it; each
channel keeps them for its last ``WINDOW_FRAMES`` frames (``LevelMeter``). Nothing is decoded
again: the metered frame is the one the encoders take.

Levels are of the canonical PCM (float, full scale ±1.0): peak ``20·log10(max |x|)``, RMS
``10·log10(mean x²)``, so a full-scale sine reads 0.0 dBFS peak and -3.0 dBFS RMS. Silence has
no finite level: it reads ``FLOOR_DBFS``.
"""

from __future__ import annotations

import math

import numpy as np

from loa.core.pcm import FRAME_MS, SILENCE, Samples

WINDOW_MS = 250
WINDOW_FRAMES = round(WINDOW_MS / FRAME_MS)  # 12 frames: 240 ms
FLOOR_DBFS = -100.0  # what silence (and anything quieter) reads


def frame_level(frame: Samples) -> tuple[float, float]:
    """(peak, mean square) of one frame, linear (full scale 1.0). ``SILENCE`` (the idle
    programme's frame, and every ended source's) is (0.0, 0.0) without a look."""
    if frame is SILENCE or not len(frame):
        return 0.0, 0.0
    peak = max(float(frame.max()), -float(frame.min()))  # no |x| array made
    return peak, float(np.dot(frame, frame)) / len(frame)


def dbfs(linear: float, power: bool = False) -> float:
    """A linear level (an amplitude; a mean square when ``power``) in dBFS, rounded to
    0.1 dB, never below ``FLOOR_DBFS``."""
    if linear <= 0.0:
        return FLOOR_DBFS
    level = (10.0 if power else 20.0) * math.log10(linear)
    return round(max(level, FLOOR_DBFS), 1)


class LevelMeter:
    """The levels of the last ``WINDOW_FRAMES`` frames: ``add`` once a tick (a store into
    two rings), ``levels`` when asked (a max and a mean over 12 numbers)."""

    __slots__ = ("_peaks", "_squares", "_next")

    def __init__(self) -> None:
        self._peaks = [0.0] * WINDOW_FRAMES
        self._squares = [0.0] * WINDOW_FRAMES
        self._next = 0

    def add(self, peak: float, mean_square: float) -> None:
        """One frame's (peak, mean square), linear, as ``frame_level`` gives them."""
        i = self._next
        self._peaks[i] = peak
        self._squares[i] = mean_square
        self._next = (i + 1) % WINDOW_FRAMES

    def levels(self) -> dict[str, float]:
        """``{"peak_dbfs", "rms_dbfs"}`` over the window (``FLOOR_DBFS`` for silence)."""
        return {"peak_dbfs": dbfs(max(self._peaks)),
                "rms_dbfs": dbfs(sum(self._squares) / WINDOW_FRAMES, power=True)}
