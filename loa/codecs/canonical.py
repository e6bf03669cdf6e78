"""Decoded audio of any format, as canonical frames: 48 kHz mono float32, ``FRAME_SAMPLES`` each.

Every decode path (``loa.codecs.decode``: files, parsed MP3/AAC streams, the links of a chained
Ogg stream) ends here. Float audio of one or two channels, what every decoder Loa meets live
gives, is mixed to mono in numpy and cut into frames in numpy; only a rate other than 48 kHz
needs libswresample, called once for all a read of the input decoded (issue 17: the resampler's
cost is mostly per call).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import av
import numpy as np

from loa.core.pcm import FRAME_SAMPLES, SAMPLE_RATE, Samples

log = logging.getLogger(__name__)

# Decoded formats downmixed to mono in numpy, without the resampler: float samples, one or two
# channels (every decoder Loa meets live: mp3float, aac, opus, vorbis). 48 kHz input then needs
# no resampler at all, and other rates go through it as one mono channel instead of two.
_FLOAT_FORMATS = frozenset({"flt", "fltp"})
_NUMPY_LAYOUTS = frozenset({"mono", "stereo"})
# libswresample's stereo-to-mono matrix for float output: each channel times sqrt(1/2), not
# normalised (swr normalises only for integer formats). Kept so levels stay what they were.
_STEREO_TO_MONO = np.float32(np.sqrt(0.5))
_MONO_FLOAT = ("flt", "mono")

_Shape = tuple[str, str, int]  # (sample format, channel layout, rate) of a decoded frame


def _shape_of(frame: av.AudioFrame) -> _Shape:
    return frame.format.name, frame.layout.name, frame.sample_rate


def _plane(plane: Any, count: int) -> Samples:
    """The first ``count`` float32 samples of a frame's plane: a view, not a copy."""
    return np.frombuffer(plane, np.float32, count)


def _downmixed(frames: Sequence[av.AudioFrame], fmt: str, layout: str) -> Samples:
    """Float frames of one or two channels as one fresh mono float32 array (the frames'
    samples one after another), stereo mixed as libswresample mixes it."""
    total = sum(f.samples for f in frames)
    out = np.empty(total, dtype=np.float32)
    pos = 0
    for frame in frames:
        n = frame.samples
        planes = frame.planes
        if layout == "mono":
            out[pos : pos + n] = _plane(planes[0], n)
        elif fmt == "fltp":
            np.add(_plane(planes[0], n), _plane(planes[1], n), out=out[pos : pos + n])
        else:  # packed stereo: L R L R ...
            pairs = _plane(planes[0], 2 * n).reshape(n, 2)
            np.add(pairs[:, 0], pairs[:, 1], out=out[pos : pos + n])
        pos += n
    if layout == "stereo":
        out *= _STEREO_TO_MONO
    return out


class CanonicalFrames:
    """Decoded audio of any sample format, channel layout and rate, as canonical frames.

    ``push_many(frames)`` takes decoded ``av.AudioFrame`` objects (all there is now: one, or
    the several a read of a socket gave) and returns the canonical frames they completed:
    float32 arrays of ``FRAME_SAMPLES``, 48 kHz mono, rows of one fresh array per call (so no
    two share memory). ``push(frame)`` is the same for one frame; ``flush()`` ends the input
    and returns the rest, the last frame padded with silence.

    Float input of one or two channels is mixed to mono in numpy; 48 kHz input then skips the
    resampler, other rates go through it once per call, not once per decoded frame (its cost
    is mostly per call). Anything else goes through the resampler frame by frame.

    A change of format, layout or rate reopens the resampler (counted in ``reopened``), after
    draining what the old one still holds: a stream that changes under way (a chained Ogg
    link, an MP3 stream going from 44.1 kHz stereo to 48 kHz mono) plays on without losing a
    sample.

    ``align_start`` (a live Opus stream): the first decoded frame, when it is 48 kHz float (no
    resampler between it and the frames), is preceded by the silence (less than a frame) that
    makes it end on a frame boundary; the same for every way the input is cut into pushes. A
    stream whose packets are whole frames (Opus in 20, 40 or 60 ms packets) then completes its
    frames with each packet. Without it, the pre-skip (RFC 7845 section 4.2: the samples a
    decoder drops at the start; libopus's encoders ask for their look-ahead, 120 samples in
    low-delay mode, 312 otherwise) leaves the first packet short of a frame, and every frame
    after it waits for the next packet for its last samples: 17.5 or 13.5 ms more for every
    frame heard, for 2.5 or 6.5 ms of silence put once before the first (measured 2026-11-30,
    issue 17: a listener of a live Opus push heard it 50-57 ms after the source sent it,
    twice what Icecast's pass-through gave). Packets that no lead lines up with (MP3's 1152
    samples, AAC's 1024) gain nothing from it: not for them.
    """

    def __init__(self, align_start: bool = False) -> None:
        self._resampler: av.AudioResampler | None = None  # None: 48 kHz mono, passed through
        self._input: _Shape | None = None  # what the resampler (or the pass-through) takes
        self._rest = np.empty(0, dtype=np.float32)  # samples short of a whole frame
        self._align = align_start  # until the first samples: see the class
        self.lead_samples = 0  # silence put in to keep frames in step (``align_start``)
        self.reopened = 0

    def push(self, frame: av.AudioFrame) -> list[Samples]:
        """The canonical frames ``frame`` completes (often one, sometimes none or two)."""
        return self.push_many((frame,))

    def push_many(self, frames: Sequence[av.AudioFrame]) -> list[Samples]:
        """The canonical frames ``frames`` (decoded in this order) complete."""
        pieces: list[Samples] = []
        start, count = 0, len(frames)
        while start < count:
            shape = _shape_of(frames[start])
            end = start + 1
            while end < count and _shape_of(frames[end]) == shape:
                end += 1
            fmt, layout, rate = shape
            if fmt in _FLOAT_FORMATS and layout in _NUMPY_LAYOUTS:
                mono = _downmixed(frames[start:end], fmt, layout)
                self._open(("flt", "mono", rate), pieces)
                if self._resampler is None:
                    if self._align:
                        self._lead(frames[start].samples, pieces)
                    pieces.append(mono)
                else:
                    one = av.AudioFrame.from_ndarray(mono.reshape(1, -1), format="flt",
                                                     layout="mono")
                    one.sample_rate = rate
                    self._resampled(one, pieces)
            else:
                self._open(shape, pieces)
                for frame in frames[start:end]:
                    self._resampled(frame, pieces)
            start = end
        return self._cut(pieces)

    def flush(self) -> list[Samples]:
        """End of input: the rest, the last frame padded with silence. Pushing again starts
        afresh."""
        pieces: list[Samples] = []
        self._drain(pieces)
        self._input = None
        done = self._cut(pieces)
        if len(self._rest):
            last = np.zeros(FRAME_SAMPLES, dtype=np.float32)
            last[: len(self._rest)] = self._rest
            done.append(last)
            self._rest = np.empty(0, dtype=np.float32)
        return done

    def realign(self) -> None:
        """Put the next 48 kHz float frame pushed in step, as ``align_start`` does the first:
        preceded by the silence that makes it end on a frame boundary, counting what is carried
        over. For a chained Ogg/Opus stream's new link, whose own pre-skip would otherwise put
        every frame after it out of step with the packets again (less than 20 ms of silence at
        the join, nothing lost)."""
        self._align = True

    def _lead(self, first_samples: int, pieces: list[Samples]) -> None:
        """Put before a decoded frame of ``first_samples`` (48 kHz) the silence that makes it
        end on a frame boundary, after what is carried over and ``pieces``."""
        self._align = False
        pad = -(len(self._rest) + sum(len(p) for p in pieces) + first_samples) % FRAME_SAMPLES
        if pad:
            pieces.append(np.zeros(pad, dtype=np.float32))
            self.lead_samples += pad

    def _open(self, shape: _Shape, pieces: list[Samples]) -> None:
        """Make the conversion take ``shape``: the old resampler drained into ``pieces``."""
        if shape == self._input:
            return
        if self._input is not None:
            self._drain(pieces)
            self.reopened += 1
            log.info("input format changed to %s %s %d Hz: resampler reopened", *shape)
        self._input = shape
        fmt, layout, rate = shape
        passthrough = (fmt, layout) == _MONO_FLOAT and rate == SAMPLE_RATE
        self._resampler = None if passthrough else av.AudioResampler(
            format="flt", layout="mono", rate=SAMPLE_RATE)

    def _drain(self, pieces: list[Samples]) -> None:
        if self._resampler is not None:
            self._taken(self._resampler.resample(None), pieces)
            self._resampler = None

    def _resampled(self, frame: av.AudioFrame, pieces: list[Samples]) -> None:
        assert self._resampler is not None  # opened by ``_open`` for this shape
        self._taken(self._resampler.resample(frame), pieces)

    @staticmethod
    def _taken(frames: list[av.AudioFrame], pieces: list[Samples]) -> None:
        for out in frames:  # packed float mono: a view of the frame's buffer, copied by _cut
            pieces.append(_plane(out.planes[0], out.samples))

    def _cut(self, pieces: list[Samples]) -> list[Samples]:
        """What was carried over plus ``pieces``, cut into whole frames (rows of one fresh
        array); the remainder is carried to the next call."""
        if not pieces:
            return []
        self._align = False  # the first samples are cut: too late to put silence first
        buf = np.concatenate([self._rest, *pieces])
        whole = len(buf) // FRAME_SAMPLES
        end = whole * FRAME_SAMPLES
        self._rest = buf[end:].copy()  # not a view: the frames' array is theirs alone
        return list(buf[:end].reshape(whole, FRAME_SAMPLES))
