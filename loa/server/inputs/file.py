"""A file from disk, decoded lazily and paced by the master clock."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from loa.codecs.decode import FrameDecoder
from loa.codecs.pcm import Samples


class FileSource:
    """Pausable: pulled only while on air, so a preempted file resumes where it stopped."""

    pausable = True
    available = True

    def __init__(self, path: str, gain: float = 1.0) -> None:
        self.path = path
        self.gain = gain  # linear: loudness normalisation to the station's target
        self._decoder = FrameDecoder(path)  # raises DecodeError for a bad file, at once
        self._frames: Iterator[Samples] = iter(self._decoder)

    def read(self, now_ns: int) -> tuple[Samples, int] | None:
        samples = next(self._frames, None)
        if samples is None:
            return None
        if self.gain != 1.0:
            samples = np.clip(samples * np.float32(self.gain), -1.0, 1.0)
        return samples, now_ns

    def close(self) -> None:
        self._decoder.close()
