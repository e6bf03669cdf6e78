"""MP3 over HTTP (``/zones/<zone>/stream.mp3``) for legacy players and devices."""

from __future__ import annotations

from collections.abc import Mapping

from loa.codecs.encoder import EncodedPacket
from loa.playout.outputs.base import OnAir, StreamInfo, register


class Mp3Format:
    """The "mp3" format: the MP3 rendition's bytes as they are (no header, no switch
    notice), written in batches to HTTP listeners."""

    name = "mp3"
    codec = "mp3"
    batchable = True
    content_type = "audio/mpeg"

    def __init__(self, info: StreamInfo, bitrates_bps: Mapping[str, int]) -> None:
        bitrate_bps = bitrates_bps[self.codec]
        self.nominal_bytes_per_s = bitrate_bps // 8

    def join_header(self) -> bytes:
        return b""  # MP3 frames are self-describing

    def packet(self, pkt: EncodedPacket, on_air: OnAir, switched: bool) -> bytes:
        return pkt.data

    def switch_notice(self, on_air: OnAir) -> bytes | None:
        return None


register("mp3", Mp3Format)
