"""The canonical PCM form every stage upstream of the encoders speaks.

A frame is a float32 numpy array of ``FRAME_SAMPLES`` samples, mono (loudspeakers are mono),
full scale ±1.0. Time inside the pipeline is counted in samples at ``SAMPLE_RATE``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 48_000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 960
FRAME_NS = FRAME_MS * 1_000_000

Samples = npt.NDArray[np.float32]

SILENCE: Samples = np.zeros(FRAME_SAMPLES, dtype=np.float32)
SILENCE.setflags(write=False)

