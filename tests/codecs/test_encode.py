from __future__ import annotations

import numpy as np
import pytest

from loa.codecs.encoder import create_encoder
from loa.core.pcm import FRAME_SAMPLES, SAMPLE_RATE
from loa.loadtest.endpoint import OpusDecoder
from tests.audio import rms


@pytest.mark.parametrize("level_db", [0, -10, -20, -30])
def test_opus_keeps_the_level_of_quiet_tonal_audio(level_db: float) -> None:
    """A bulletin mastered quietly must not come out louder (a hybrid-mode encoder did +15 dB)."""
    t = np.arange(SAMPLE_RATE * 3) / SAMPLE_RATE
    pcm = (0.25 * np.sin(2 * np.pi * 300 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t)
           + 0.1 * np.sin(2 * np.pi * 3100 * t)) * 10 ** (level_db / 20)
    pcm = pcm.astype(np.float32)
    enc, dec = create_encoder("opus", 32_000), OpusDecoder()
    for i in range(len(pcm) // FRAME_SAMPLES):
        for pkt in enc.encode(pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES], i * 960, 0):
            dec.decode(pkt.data)
    out = dec.pcm()[4800:]
    level_in = 20 * np.log10(rms(pcm[4800:]))
    assert 20 * np.log10(rms(out)) == pytest.approx(level_in, abs=1.5)
