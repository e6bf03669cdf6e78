"""Loa's native endpoint protocol over WebSocket, version 1 (see docs/endpoint-protocol.md).

Binary messages: a 28-byte header, then one Opus packet.

    offset size  field
    0      1     version (1)
    1      1     payload type (1 = Opus, 48 kHz mono)
    2      1     priority of the request on air (0-100)
    3      1     flags: bit 0 = first packet after a programme switch
    4      4     sequence number, per zone stream, wraps at 2**32
    8      8     pts in 48 kHz samples, on the zone stream's timeline (signed)
    16     8     capture time, server clock, ns (signed; see the clock-sync ping/pong)
    24     4     programme id
    28     ...   the Opus packet

All integers big-endian. WebSocket frames from the server are unmasked, so one frame's bytes
are built once and written to every endpoint of the zone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from loa.codecs.encoder import EncodedPacket
from loa.core.pcm import FRAME_SAMPLES
from loa.playout.outputs.base import OnAir, StreamInfo, register
from loa.protocol.native import (
    FLAG_SWITCH,
    HEADER,
    HEADER_BYTES,
    PAYLOAD_OPUS,
    PROTOCOL_VERSION,
    WS_OPCODE_BINARY,
    WS_OPCODE_TEXT,
    ws_frame,
)


def programme_message(on_air: OnAir, zone_id: str) -> str:
    """The "programme" text message: what a zone now forwards (id, name, priority)."""
    return json.dumps(
        {
            "type": "programme",
            "zone": zone_id,
            "programme": on_air.programme_id,
            "name": on_air.programme_name,
            "priority": on_air.priority,
        },
        ensure_ascii=False,
    )


class WsFormat:
    """The "ws" format (native protocol v1): every packet, unbatched, as a binary WebSocket
    frame with the 28-byte header; switches are also announced by a "programme" text message.
    Sequence numbers and pts (48 kHz samples) run per zone stream, across programmes."""

    name = "ws"
    codec = "opus"
    batchable = False
    content_type = "application/x-loa-native"

    def __init__(self, info: StreamInfo, bitrates_bps: Mapping[str, int]) -> None:
        bitrate_bps = bitrates_bps[self.codec]
        self._zone_id = info.zone_id
        self._seq = 0
        self._pts_samples = 0
        self.nominal_bytes_per_s = bitrate_bps // 8 + 50 * (HEADER_BYTES + 2)

    def join_header(self) -> bytes:
        return b""  # the handler greets each endpoint with a hello text message

    def packet(self, pkt: EncodedPacket, on_air: OnAir, switched: bool) -> bytes:
        """The packet as one binary frame: header (priority, switch flag, seq, pts, capture ns,
        programme id) and the Opus data; advances seq (mod 2**32) and pts."""
        head = HEADER.pack(
            PROTOCOL_VERSION,
            PAYLOAD_OPUS,
            on_air.priority,
            FLAG_SWITCH if switched else 0,
            self._seq,
            self._pts_samples,
            pkt.capture_ns,
            on_air.programme_id,
        )
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        self._pts_samples += pkt.duration_samples or FRAME_SAMPLES
        return ws_frame(WS_OPCODE_BINARY, head + pkt.data)

    def switch_notice(self, on_air: OnAir) -> bytes | None:
        return ws_frame(WS_OPCODE_TEXT, programme_message(on_air, self._zone_id).encode())


register("ws", WsFormat)
