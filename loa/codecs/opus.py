"""Opus: 48 kHz mono, 20 ms packets: the codec of the native protocol and of Ogg streams."""

from __future__ import annotations

from loa.codecs.av_encoder import AvEncoder
from loa.codecs.encoder import register
from loa.core.pcm import FRAME_MS

DEFAULT_OPUS_BITRATE_BPS = 32_000
# CELT-only ("restricted low delay"): the SILK and hybrid modes of the libopus that PyAV
# bundles came out 15 dB too loud on quiet tonal input at 32 kb/s (measured: -32.5 dBFS in,
# -17 dBFS out; the Debian ffmpeg CLI's libopus does not do this), and low delay also means
# 2.5 ms of look-ahead instead of 6.5 ms.
OPUS_APPLICATION = "lowdelay"
# libopus's look-ahead at 48 kHz in that mode: the pre-skip a decoder drops at the start.
OPUS_PRESKIP_SAMPLES = 120


class OpusEncoder(AvEncoder):
    codec = "opus"
    av_codec = "libopus"
    sample_format = "flt"

    def __init__(self, bitrate_bps: int = DEFAULT_OPUS_BITRATE_BPS) -> None:
        super().__init__(
            bitrate_bps,
            # one Opus packet per pipeline frame
            {"application": OPUS_APPLICATION, "frame_duration": str(FRAME_MS), "vbr": "on"},
        )


register("opus", OpusEncoder)
