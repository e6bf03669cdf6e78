"""Ogg paging for Opus (RFC 3533, RFC 7845), one packet a page for the lowest latency.

Pages are built once per zone stream and the same bytes go to every listener of it, so the
cost here is per stream, never per listener.
"""

from __future__ import annotations

import struct
import zlib

from loa.codecs.opus import OPUS_PRESKIP_SAMPLES
from loa.core.pcm import SAMPLE_RATE

_HEADER = struct.Struct("<4sBBqIII B")
HEADER_TYPE_CONTINUED = 0x01
HEADER_TYPE_BOS = 0x02
HEADER_TYPE_EOS = 0x04

# Ogg's CRC is CRC-32 with polynomial 0x04c11db7, not reflected, initial value and final xor 0.
# zlib offers the reflected variant, fast in C: reflecting every input byte and the result turns
# one into the other. zlib.crc32(data, 0xFFFFFFFF) ^ 0xFFFFFFFF is the raw register for init 0.
_REVERSE_BITS = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _reflect32(x: int) -> int:
    return int.from_bytes(x.to_bytes(4, "little").translate(_REVERSE_BITS), "big")


def ogg_crc(data: bytes) -> int:
    raw = zlib.crc32(data.translate(_REVERSE_BITS), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return _reflect32(raw)


def _lacing(length: int) -> bytes:
    return bytes([255] * (length // 255) + [length % 255])


def build_page(
    packet: bytes, *, serial: int, sequence: int, granule: int, header_type: int = 0
) -> bytes:
    """One Ogg page holding one whole packet (packets here are far below 64 KiB)."""
    lacing = _lacing(len(packet))
    head = _HEADER.pack(b"OggS", 0, header_type, granule, serial, sequence, 0, len(lacing))
    page = bytearray(head)
    page += lacing
    page += packet
    struct.pack_into("<I", page, 22, ogg_crc(bytes(page)))
    return bytes(page)


def opus_head(channels: int = 1, preskip: int = OPUS_PRESKIP_SAMPLES) -> bytes:
    return struct.pack("<8sBBHIhB", b"OpusHead", 1, channels, preskip, SAMPLE_RATE, 0, 0)


def opus_tags(vendor: str = "Loa", comments: dict[str, str] | None = None) -> bytes:
    vendor_b = vendor.encode()
    out = bytearray(b"OpusTags" + struct.pack("<I", len(vendor_b)) + vendor_b)
    items = [f"{k}={v}".encode() for k, v in (comments or {}).items()]
    out += struct.pack("<I", len(items))
    for item in items:
        out += struct.pack("<I", len(item)) + item
    return bytes(out)


class OggOpusPager:
    """The paging state of one logical Ogg Opus stream (one zone's stream).

    Granule positions count 48 kHz samples and grow monotonically whatever programme the
    packets come from, so a switch of programme is invisible to the Ogg layer.
    """

    def __init__(self, serial: int, title: str = "") -> None:
        self.serial = serial
        comments = {"TITLE": title} if title else None
        self._headers = build_page(
            opus_head(), serial=serial, sequence=0, granule=0, header_type=HEADER_TYPE_BOS
        ) + build_page(opus_tags(comments=comments), serial=serial, sequence=1, granule=0)
        self._sequence = 2
        self._granule = 0

    @property
    def headers(self) -> bytes:
        """The two header pages a listener needs before any audio page."""
        return self._headers

    def page(self, packet: bytes, duration_samples: int) -> bytes:
        self._granule += duration_samples
        page = build_page(
            packet, serial=self.serial, sequence=self._sequence, granule=self._granule
        )
        self._sequence += 1
        return page


class OggReader:
    """Incremental Ogg demuxer: feed bytes, get whole packets (serial, granule, packet, bos).

    Checks each page's CRC, so it doubles as a validator of what the server sends.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._partial: dict[int, bytearray] = {}
        self.pages = 0
        self.crc_errors = 0

    def feed(self, data: bytes) -> list[tuple[int, int, bytes, bool]]:
        self._buf += data
        out: list[tuple[int, int, bytes, bool]] = []
        buf = self._buf
        while True:
            start = buf.find(b"OggS")
            if start < 0:
                del buf[: max(0, len(buf) - 3)]
                return out
            if start:
                del buf[:start]
            if len(buf) < 27:
                return out
            nsegs = buf[26]
            if len(buf) < 27 + nsegs:
                return out
            lacing = buf[27 : 27 + nsegs]
            size = 27 + nsegs + sum(lacing)
            if len(buf) < size:
                return out
            page = bytes(buf[:size])
            del buf[:size]
            _, _, htype, granule, serial, _, crc, _ = _HEADER.unpack_from(page)
            check = bytearray(page)
            check[22:26] = b"\0\0\0\0"
            if ogg_crc(bytes(check)) != crc:
                self.crc_errors += 1
                continue
            self.pages += 1
            bos = bool(htype & HEADER_TYPE_BOS)
            pos = 27 + nsegs
            acc = self._partial.pop(serial, bytearray()) if htype & HEADER_TYPE_CONTINUED \
                else bytearray()
            for lace in lacing:
                acc += page[pos : pos + lace]
                pos += lace
                if lace < 255:
                    out.append((serial, granule, bytes(acc), bos))
                    acc = bytearray()
            if acc:
                self._partial[serial] = acc
