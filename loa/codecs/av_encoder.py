"""PyAV-backed encoding shared by the codec variants."""

from __future__ import annotations

from collections import deque
from typing import cast

import av

from loa.codecs.encoder import EncodedPacket
from loa.core.pcm import FRAME_SAMPLES, SAMPLE_RATE, Samples


class AvEncoder:
    """Wraps an ``av`` encoder context fed with canonical mono frames.

    Encoders that buffer (MP3 emits 1152-sample frames, with delay) return packets later than
    the input that made them; a short history of (pts, capture time) lets each packet carry the
    capture time of the input it came from.
    """

    codec = ""
    av_codec = ""
    sample_format = "flt"

    def __init__(self, bitrate_bps: int, options: dict[str, str] | None = None) -> None:
        self.bitrate_bps = bitrate_bps
        ctx = cast(av.AudioCodecContext, av.CodecContext.create(self.av_codec, "w"))
        ctx.sample_rate = SAMPLE_RATE
        ctx.layout = "mono"
        ctx.format = self.sample_format
        ctx.bit_rate = bitrate_bps
        if options:
            ctx.options = options
        ctx.open()
        self._ctx = ctx
        self._frame = av.AudioFrame(format=self.sample_format, layout="mono",
                                    samples=FRAME_SAMPLES)
        self._frame.sample_rate = SAMPLE_RATE
        self._captures: deque[tuple[int, int]] = deque(maxlen=16)
        self.frames_in = 0
        self.packets_out = 0

    def encode(self, samples: Samples, pts_samples: int, capture_ns: int) -> list[EncodedPacket]:
        frame = self._frame_of(samples)
        frame.pts = pts_samples
        self._captures.append((pts_samples, capture_ns))
        self.frames_in += 1
        out = []
        for packet in self._ctx.encode(frame):
            pts = int(packet.pts or 0)
            duration = int(packet.duration or 0)
            out.append(EncodedPacket(data=bytes(packet), pts_samples=pts,
                                     duration_samples=duration,
                                     capture_ns=self._capture_for(pts + duration)))
        self.packets_out += len(out)
        return out

    def _frame_of(self, samples: Samples) -> av.AudioFrame:
        """``samples`` copied into the one input frame this encoder reuses: a new frame from
        ``from_ndarray`` cost ~5 µs a frame (its allocation, and the format and layout looked
        up by name), 2 % of a transcode. A frame of another length gets a frame of its own."""
        frame = self._frame
        if samples.shape[0] != FRAME_SAMPLES:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1),
                                               format=self.sample_format, layout="mono")
            frame.sample_rate = SAMPLE_RATE
            return frame
        # The encoder has let go of the frame by the time ``encode`` returns; if anything
        # still held its buffer, make_writable gives the frame a fresh one instead.
        frame.make_writable()
        frame.planes[0].update(samples)  # type: ignore[arg-type]  # stub says bytes; any buffer
        return frame

    def _capture_for(self, end_pts: int) -> int:
        """Capture time of the newest input frame that ends at or before ``end_pts`` (the
        history is in pts order; the packet is nearly always one of the last frames)."""
        for pts, capture_ns in reversed(self._captures):
            if pts < end_pts:
                return capture_ns
        return self._captures[0][1]
