"""Loudness (ITU-R BS.1770 / EBU R128) measured with pyloudnorm, and the gain to a target."""

from __future__ import annotations

import numpy as np
import pyloudnorm

from loa.codecs.pcm import SAMPLE_RATE, Samples

DEFAULT_TARGET_LUFS = -16.0  # speech on outdoor loudspeakers: louder than broadcast's -23
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
