"""Ogg/Opus over HTTP (``/zones/<zone>/stream.ogg``): what ffplay, VLC and mpv play."""

from __future__ import annotations

from collections.abc import Mapping

from loa.codecs.encoder import EncodedPacket
from loa.codecs.ogg import OggOpusPager
from loa.core.pcm import FRAME_SAMPLES
from loa.playout.outputs.base import OnAir, StreamInfo, register

OGG_PAGE_OVERHEAD_BYTES = 28  # 27-byte header + one lacing byte


class OggFormat:
    """The "ogg" format: Ogg/Opus with the zone's name as title; every Opus packet becomes
    one Ogg page of its own. A new listener gets the stream's header pages first."""

    name = "ogg"
    codec = "opus"
    batchable = True
    content_type = "audio/ogg"

    def __init__(self, info: StreamInfo, bitrates_bps: Mapping[str, int]) -> None:
        bitrate_bps = bitrates_bps[self.codec]
        self._pager = OggOpusPager(info.serial, title=info.zone_name)
        self.nominal_bytes_per_s = bitrate_bps // 8 + 50 * OGG_PAGE_OVERHEAD_BYTES

    def join_header(self) -> bytes:
        return self._pager.headers

    def packet(self, pkt: EncodedPacket, on_air: OnAir, switched: bool) -> bytes:
        """One Ogg page carrying the packet; granule position advances by its samples (48 kHz)."""
        return self._pager.page(pkt.data, pkt.duration_samples or FRAME_SAMPLES)

    def switch_notice(self, on_air: OnAir) -> bytes | None:
        return None


register("ogg", OggFormat)
