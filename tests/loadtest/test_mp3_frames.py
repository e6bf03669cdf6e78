"""Counting MP3 frames gives an MP3 stream's position on the audio timeline."""

from __future__ import annotations

import numpy as np

from loa.codecs.mp3 import Mp3Encoder
from loa.core.pcm import FRAME_SAMPLES, SAMPLE_RATE
from loa.loadtest.mp3_frames import Mp3FrameReader, frame_header


def encoded_mp3(seconds: float) -> tuple[bytes, int]:
    """What Loa's encoder sends for a tone, and how many frames (packets) that is."""
    enc = Mp3Encoder(64_000)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pcm = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = bytearray()
    packets = 0
    for i in range(0, len(pcm) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        for pkt in enc.encode(pcm[i : i + FRAME_SAMPLES], i, 0):
            out += pkt.data
            packets += 1
    return bytes(out), packets


def test_frames_in_odd_chunks_after_noise_count_the_samples() -> None:
    data, packets = encoded_mp3(2.0)
    head = frame_header(data, 0)
    assert head is not None and head[1:] == (1152, 48_000)  # MPEG-1 Layer III at 48 kHz
    reader = Mp3FrameReader()
    stream = b"\x00\xff\x12junk" + data
    frames = []
    for i in range(0, len(stream), 97):  # chunk boundaries fall inside headers and frames
        frames += reader.feed(stream[i : i + 97])
    assert len(frames) == packets > 2.0 * SAMPLE_RATE / 1152 - 6  # the encoder holds some back
    assert [f.pts_samples for f in frames] == [1152 * i for i in range(len(frames))]
    assert {f.duration_samples for f in frames} == {1152}
    assert sum(f.size_bytes for f in frames) == len(data)
    assert reader.skipped_bytes == 7  # the noise, and nothing of the audio


def test_a_44_1_khz_stream_is_counted_in_48_khz_samples() -> None:
    # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no padding: 417 bytes a frame
    header = bytes((0xFF, 0xFB, 0x90, 0x00))
    frame = header + bytes(417 - 4)
    frames = Mp3FrameReader().feed(frame * 100)
    assert len(frames) == 100
    assert frames[-1].pts_samples + frames[-1].duration_samples == 100 * 1152 * 48_000 // 44_100
