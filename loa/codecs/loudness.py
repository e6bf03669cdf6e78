"""Loudness (ITU-R BS.1770 / EBU R128) measured with pyloudnorm, and the gain to a target."""

from __future__ import annotations

import numpy as np
import pyloudnorm

from loa.codecs.pcm import SAMPLE_RATE, Samples

# Louder than broadcast's -23 for outdoor loudspeakers, yet with the headroom that speech's
# peaks need to reach the target unclipped (there is no limiter).
DEFAULT_TARGET_LUFS = -18.0
MAX_GAIN_DB = 20.0  # never lift a near-silent file into a roar of noise
MIN_MEASURABLE_S = 0.4  # one gating block


def integrated_lufs(pcm: Samples) -> float | None:
    """Integrated loudness of 48 kHz mono audio, or None when too short or silent."""
    if len(pcm) < MIN_MEASURABLE_S * SAMPLE_RATE:
        return None
    value = float(pyloudnorm.Meter(SAMPLE_RATE).integrated_loudness(pcm.astype(np.float64)))
    return value if np.isfinite(value) else None


def gain_to_target(measured_lufs: float | None, target_lufs: float) -> float:
    """Linear gain that brings ``measured_lufs`` to ``target_lufs`` (1.0 when unknown)."""
    if measured_lufs is None:
        return 1.0
    gain_db = max(-MAX_GAIN_DB, min(MAX_GAIN_DB, target_lufs - measured_lufs))
    return float(10 ** (gain_db / 20))


def measure_file(path: str, label: str | None = None) -> tuple[float, float | None, float]:
    """Decode it all: (duration s, integrated loudness LUFS or None, sample peak)."""
    from loa.codecs.decode import (
        FrameDecoder,  # decode imports PyAV; keep this module light
    )

    frames = list(FrameDecoder(path, label=label))
    pcm = np.concatenate(frames) if frames else np.zeros(0, np.float32)
    peak = float(np.max(np.abs(pcm))) if len(pcm) else 0.0
    return len(pcm) / SAMPLE_RATE, integrated_lufs(pcm), peak


def level_gain(lufs: float | None, peak: float, target_lufs: float) -> float:
    """To the target, but never so far that the peaks would clip (there is no limiter)."""
    headroom = 1.0 / peak if peak > 0 else 1.0
    return min(gain_to_target(lufs, target_lufs), headroom)


class Leveller:
    """Gains for files outside the library (text read aloud, alert uploads), measured once."""

    def __init__(self, target_lufs: float) -> None:
        self.target_lufs = target_lufs
        self._gains: dict[str, float] = {}

    def gain_for(self, path: str) -> float:
        gain = self._gains.get(path)
        if gain is None:
            _, lufs, peak = measure_file(path)
            gain = self._gains[path] = level_gain(lufs, peak, self.target_lufs)
        return gain
