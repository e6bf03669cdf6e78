"""MP3 for legacy players and cheap HTTP boxes."""

from __future__ import annotations

from loa.codecs.av_encoder import AvEncoder
from loa.codecs.encoder import register

DEFAULT_MP3_BITRATE_BPS = 64_000


class Mp3Encoder(AvEncoder):
    codec = "mp3"
    av_codec = "libmp3lame"
    sample_format = "fltp"  # planar; for mono the memory layout equals packed

    def __init__(self, bitrate_bps: int = DEFAULT_MP3_BITRATE_BPS) -> None:
        super().__init__(bitrate_bps)


register("mp3", Mp3Encoder)
