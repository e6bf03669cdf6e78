"""Loa's native endpoint protocol on the wire (docs/endpoint-protocol.md): WebSocket frames and
the 28-byte binary header of each Opus packet. Shared by the server's output and the load tester.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PROTOCOL_VERSION = 1
PAYLOAD_OPUS = 1
FLAG_SWITCH = 0x01
HEADER = struct.Struct(">BBBBIqqI")
HEADER_BYTES = HEADER.size  # 28

WS_OPCODE_TEXT = 0x1
WS_OPCODE_BINARY = 0x2


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked, final WebSocket frame (RFC 6455 §5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


@dataclass(frozen=True, slots=True)
class NativePacket:
    """A decoded binary message of the native protocol (the header fields, then the Opus
    payload); see the module docstring for sizes and units."""

    version: int
    payload_type: int
    priority: int
    flags: int
    seq: int
    pts_samples: int
    capture_ns: int
    programme_id: int
    payload: bytes

    @property
    def switched(self) -> bool:
        return bool(self.flags & FLAG_SWITCH)


class ProtocolError(ValueError):
    """A binary message shorter than the 28-byte header, or of another protocol version."""

    pass


def parse_packet(message: bytes) -> NativePacket:
    """Decode one binary message (what an endpoint or the load tester receives); raises
    ProtocolError."""
    if len(message) < HEADER_BYTES:
        raise ProtocolError(f"binary message of {len(message)} bytes is shorter than the header")
    fields = HEADER.unpack_from(message)
    if fields[0] != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {fields[0]}")
    version, ptype, priority, flags, seq, pts, capture, programme = fields
    return NativePacket(version, ptype, priority, flags, seq, pts, capture, programme,
                        message[HEADER_BYTES:])
