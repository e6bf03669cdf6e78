from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from loa.codecs.encoder import create_encoder
from loa.codecs.ogg import OggOpusPager, OggReader, build_page, ogg_crc
from loa.codecs.signals import SineGenerator
from tests.audio import FFMPEG, dominant_hz


def reference_crc(data: bytes) -> int:
    """Ogg's CRC straight from RFC 3533's description, bit by bit."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
            crc &= 0xFFFFFFFF
    return crc


@pytest.mark.parametrize("data", [b"", b"OggS", bytes(range(256)), b"\xff" * 1000])
def test_crc_matches_the_specification(data: bytes) -> None:
    assert ogg_crc(data) == reference_crc(data)


def test_reader_reassembles_what_the_pager_wrote() -> None:
    pager = OggOpusPager(serial=7, title="Thôn 1")
    packets = [bytes([i]) * n for i, n in enumerate([1, 254, 255, 256, 700])]
    stream = pager.headers + b"".join(pager.page(p, 960) for p in packets)
    reader = OggReader()
    got = [p for _, _, p, _ in reader.feed(stream)]
    assert got[0].startswith(b"OpusHead") and got[1].startswith(b"OpusTags")
    assert got[2:] == packets
    assert reader.crc_errors == 0


def test_reader_rejects_a_corrupted_page() -> None:
    page = bytearray(build_page(b"hello", serial=1, sequence=5, granule=960))
    page[-1] ^= 0xFF
    reader = OggReader()
    assert reader.feed(bytes(page)) == []
    assert reader.crc_errors == 1


def test_ffmpeg_decodes_our_ogg_opus_pages(tmp_path: Path) -> None:
    """The independent peer: ffmpeg checks the CRCs and decodes the tone."""
    enc = create_encoder("opus", 32000)
    gen = SineGenerator(1000)
    pager = OggOpusPager(serial=1234)
    out = bytearray(pager.headers)
    for i in range(100):
        for pkt in enc.encode(gen.next_frame(), i * 960, 0):
            out += pager.page(pkt.data, pkt.duration_samples)
    path = tmp_path / "ours.ogg"
    path.write_bytes(bytes(out))
    raw = subprocess.run([FFMPEG, "-loglevel", "error", "-i", str(path), "-f", "f32le", "-ac",
                          "1", "-ar", "48000", "-"], check=True, capture_output=True).stdout
    pcm = np.frombuffer(raw, dtype=np.float32)
    assert len(pcm) == pytest.approx(2 * 48000, abs=1000)
    assert dominant_hz(pcm[4800:]) == pytest.approx(1000, rel=0.01)
