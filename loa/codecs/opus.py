"""Opus: 48 kHz mono, 20 ms packets: the codec of the native protocol and of Ogg streams."""

from __future__ import annotations

from loa.codecs.av_encoder import AvEncoder
from loa.codecs.encoder import register

DEFAULT_OPUS_BITRATE_BPS = 32_000
# libopus's look-ahead at 48 kHz: the pre-skip a decoder drops at the start of a stream.
OPUS_PRESKIP_SAMPLES = 312


class OpusEncoder(AvEncoder):
    codec = "opus"
    av_codec = "libopus"
    sample_format = "flt"

    def __init__(self, bitrate_bps: int = DEFAULT_OPUS_BITRATE_BPS) -> None:
        super().__init__(
            bitrate_bps,
            # "audio" suits speech and music alike; 20 ms matches the pipeline frame.
            {"application": "audio", "frame_duration": "20", "vbr": "on"},
        )


register("opus", OpusEncoder)
