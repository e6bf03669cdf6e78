"""A file from disk, decoded lazily and paced by the master clock."""

from __future__ import annotations

from collections.abc import Iterator

from loa.codecs.decode import FrameDecoder
from loa.codecs.pcm import Samples


class FileSource:
    """Pausable: pulled only while on air, so a preempted file resumes where it stopped."""

    pausable = True
    available = True

    def __init__(self, path: str) -> None:
        self.path = path
        self._decoder = FrameDecoder(path)  # raises DecodeError for a bad file, at once
        self._frames: Iterator[Samples] = iter(self._decoder)

    def read(self, now_ns: int) -> tuple[Samples, int] | None:
        samples = next(self._frames, None)
        if samples is None:
            return None
        return samples, now_ns

    def close(self) -> None:
        self._decoder.close()
