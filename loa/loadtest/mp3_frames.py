"""Where an MP3 stream is on its audio timeline: whole MPEG Layer III frames, counted.

An MP3 stream over HTTP carries no timestamps, but every frame holds a fixed number of samples
(1152 for MPEG-1, 576 for MPEG-2 and 2.5), so counting whole frames gives the position. This
reads frame headers only (a few microseconds a frame, fit for the light endpoints) and finds
the sync again after bytes it does not understand. Layer I and II frames are not Loa's and are
skipped as noise.
"""

from __future__ import annotations

from dataclasses import dataclass

from loa.core.pcm import SAMPLE_RATE

# kbit/s by bitrate index, Layer III
_BITRATES_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_BITRATES_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_RATES_V1 = (44100, 48000, 32000)
_HEADER_BYTES = 4
MAX_BUFFER_BYTES = 1 << 16  # without a sync in this much, drop what was read


@dataclass(frozen=True, slots=True)
class Mp3Frame:
    """One whole frame: where it starts on the timeline and how long it is, both in 48 kHz
    samples, and its size on the wire."""

    pts_samples: int
    duration_samples: int
    size_bytes: int


def frame_header(b: bytes | bytearray, pos: int) -> tuple[int, int, int] | None:
    """(frame bytes, samples, sample rate) of a Layer III header at ``pos``, or None."""
    b0, b1, b2 = b[pos], b[pos + 1], b[pos + 2]
    if b0 != 0xFF or b1 & 0xE0 != 0xE0:
        return None
    version = (b1 >> 3) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5, 1: reserved
    layer = (b1 >> 1) & 3  # 1: Layer III
    bitrate_index, rate_index, padding = b2 >> 4, (b2 >> 2) & 3, (b2 >> 1) & 1
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    rate = _RATES_V1[rate_index] >> {3: 0, 2: 1, 0: 2}[version]
    if version == 3:
        return 144_000 * _BITRATES_V1[bitrate_index] // rate + padding, 1152, rate
    return 72_000 * _BITRATES_V2[bitrate_index] // rate + padding, 576, rate


class Mp3FrameReader:
    """Feed bytes as they arrive; get the whole frames they complete, with positions."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._source_samples = 0  # at the stream's own sample rate
        self._rate = SAMPLE_RATE
        self.skipped_bytes = 0

    def feed(self, data: bytes | bytearray) -> list[Mp3Frame]:
        buf = self._buf
        buf += data
        out: list[Mp3Frame] = []
        pos, n = 0, len(buf)
        while n - pos >= _HEADER_BYTES:
            head = frame_header(buf, pos)
            if head is None:
                nxt = buf.find(b"\xff", pos + 1)
                skip_to = nxt if nxt >= 0 else n
                self.skipped_bytes += skip_to - pos
                pos = skip_to
                continue
            size, samples, rate = head
            if n - pos < size:
                break
            if rate != self._rate:  # a new rate: positions go on from where they are
                self._source_samples = self._source_samples * rate // self._rate
                self._rate = rate
            pts = self._source_samples * SAMPLE_RATE // rate
            self._source_samples += samples
            end = self._source_samples * SAMPLE_RATE // rate
            out.append(Mp3Frame(pts, end - pts, size))
            pos += size
        del buf[:pos]
        if len(buf) > MAX_BUFFER_BYTES:
            self.skipped_bytes += len(buf)
            buf.clear()
        return out
