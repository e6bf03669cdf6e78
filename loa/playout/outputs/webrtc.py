"""The "webrtc" format: a zone's Opus rendition, packet by packet, for WHEP viewers.

A WHEP viewer (``loa.playout.webrtc.whep``) joins its zone's feed like any listener, with a
``PacketProtocol`` in place of a socket: each packet the feed publishes arrives whole at its
``PacketSink``, which hands the Opus bytes to the viewer's WebRTC sender. Nothing is encoded per
viewer: the zone's one Opus encoding (the packets endpoints and Ogg listeners get) is framed
here once per zone, with a 4-byte head (length, duration) so that a write of several packets
(a join burst) still splits into packets.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from loa.codecs.encoder import EncodedPacket
from loa.playout.outputs.base import OnAir, StreamInfo, register

HEAD = struct.Struct(">HH")  # Opus bytes, duration in 48 kHz samples


class WebRtcFormat:
    """Each Opus packet as-is behind ``HEAD``; unbatched; no header, no switch notice (the
    viewer hears the switch)."""

    name = "webrtc"
    codec = "opus"
    batchable = False
    content_type = "application/x-loa-opus-packets"

    def __init__(self, info: StreamInfo, bitrates_bps: Mapping[str, int]) -> None:
        self.nominal_bytes_per_s = bitrates_bps[self.codec] // 8 + 50 * HEAD.size

    def join_header(self) -> bytes:
        return b""

    def packet(self, pkt: EncodedPacket, on_air: OnAir, switched: bool) -> bytes:
        """``HEAD`` (length, duration) and the Opus packet."""
        return HEAD.pack(len(pkt.data), pkt.duration_samples) + pkt.data

    def switch_notice(self, on_air: OnAir) -> bytes | None:
        return None


register("webrtc", WebRtcFormat)


class PacketSink:
    """The "transport" a feed writes a viewer's packets to: ``on_packet(opus, duration)``
    per packet. ``muted`` drops writes (the join burst: a viewer starts at the live edge).
    ``close``/``abort`` (the feed cutting the viewer, or the zone closing) call ``on_close``
    once."""

    def __init__(self, protocol: PacketProtocol, on_packet: Callable[[bytes, int], None],
                 on_close: Callable[[], None]) -> None:
        self._protocol = protocol
        self._on_packet = on_packet
        self._on_close: Callable[[], None] | None = on_close
        self.muted = False

    def write(self, data: bytes) -> None:
        """Split ``data`` (whole framed packets) and hand each packet on."""
        if self.muted:
            return
        view = memoryview(data)
        while len(view) >= HEAD.size:
            size, duration = HEAD.unpack_from(view)
            end = HEAD.size + size
            self._on_packet(bytes(view[HEAD.size : end]), duration)
            view = view[end:]

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass  # the track bounds its own queue

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None:
        """The feed is done with this viewer: it is gone for the feed from now on."""
        self._protocol.transport = None
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()

    abort = close


class PacketProtocol:
    """What a feed sees of a viewer: its ``transport`` (a ``PacketSink``; None once it is
    gone) and ``writing_paused`` (never: a viewer's track drops its oldest packets instead)."""

    def __init__(self) -> None:
        self.transport: PacketSink | None = None
        self.writing_paused = False
