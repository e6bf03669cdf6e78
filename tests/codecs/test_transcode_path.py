"""The live decode path made cheaper (issue 17): decoded audio resampled a read at a time and
cut into frames in numpy, a copy-free byte feed, a reused encoder frame, and a paused decode for
a source no zone takes. Each is checked on audio that decodes: against the ffmpeg CLI's own
decode, against the frame-by-frame path, and for what a listener would hear after a pause."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import cast

import av
import numpy as np
import pytest

from loa.codecs.canonical import CanonicalFrames
from loa.codecs.decode import ByteFeed, DecodeError, ParsedStreamDecoder
from loa.codecs.demand import PREROLL_PACKETS, DecodeDemand
from loa.codecs.encoder import create_encoder
from loa.codecs.live_decode import LiveDecoder
from loa.core.pcm import FRAME_SAMPLES
from tests.audio import FFMPEG, dominant_hz, rms
from tests.codecs.test_live_decode import (
    MP3,
    Pieces,
    ffmpeg_decode,
    longest_quiet_ms,
    tones_per_frame,
)

# 1 s of 500 Hz, 2 s of silence, 1 s of 1000 Hz: one continuous stream (one encoder, one Ogg
# link), stereo with different levels in each channel so that the downmix shows.
SCRIPT = ("if(lt(t,1),{a}*sin(2*PI*500*t),if(lt(t,3),0,{a}*sin(2*PI*1000*t)))")
STREAMS = {
    "mp3": (MP3, 44100),
    "aac": (["-c:a", "aac", "-b:a", "96k", "-f", "adts"], 44100),
    "ogg": (["-c:a", "libopus", "-b:a", "64k", "-page_duration", "20000", "-f", "ogg"], 48000),
}
PACKET_SAMPLES = {"mp3": 1152, "aac": 1024, "ogg": 960}  # at the stream's own rate


def make_stream(path: Path, args: list[str], rate: int) -> bytes:
    """Tone, silence, tone: left at 0.3, right at 0.1 (mono 0.283 after swr's downmix)."""
    left, right = SCRIPT.format(a=0.3), SCRIPT.format(a=0.1)
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"aevalsrc='{left}|{right}':s={rate}:d=4", *args, str(path)], check=True)
    return path.read_bytes()


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, bytes]]:
    d = tmp_path_factory.mktemp("streams")
    out = {}
    for fmt, (args, rate) in STREAMS.items():
        path = d / f"stream.{fmt}"
        out[fmt] = (path, make_stream(path, args, rate))
    return out


@pytest.mark.parametrize("fmt", list(STREAMS))
def test_the_batched_decode_is_what_ffmpeg_decodes(streams: dict[str, tuple[Path, bytes]],
                                                   fmt: str) -> None:
    path, data = streams[fmt]
    live = LiveDecoder(Pieces(data), fmt, "test")
    pcm = np.concatenate(list(live))
    assert not pcm[: live.lead_samples].any()  # the silence put first: less than a frame
    pcm = pcm[live.lead_samples :]
    reference = ffmpeg_decode(path)  # the ffmpeg CLI: its own decoder, downmix and resampler
    assert 0 <= len(pcm) - len(reference) < FRAME_SAMPLES  # the last frame's padding only
    # sample for sample the same audio, to well under what any codec leaves (-50 dB)
    diff = pcm[: len(reference)] - reference
    assert rms(diff) < rms(reference) / 300
    # the first tone (0.1 s to 0.9 s) at swr's downmix level: (0.3 + 0.1) x sqrt(1/2), as rms
    assert rms(pcm[4800:43200]) == pytest.approx(0.4 * np.sqrt(0.5) / np.sqrt(2), rel=0.1)


@pytest.mark.parametrize("fmt", ["mp3", "ogg"])
def test_a_read_at_a_time_makes_the_same_frames_as_a_frame_at_a_time(
        streams: dict[str, tuple[Path, bytes]], fmt: str) -> None:
    path, _ = streams[fmt]
    with av.open(str(path)) as container:
        decoded = [f for p in container.demux(audio=0) for f in p.decode()]
    one = CanonicalFrames()
    singly = [s for f in decoded for s in one.push(f)] + one.flush()
    many = CanonicalFrames()
    batched = [s for i in range(0, len(decoded), 7) for s in many.push_many(decoded[i:i + 7])]
    batched += many.flush()
    assert len(batched) == len(singly)
    assert all(s.shape == (FRAME_SAMPLES,) and s.dtype == np.float32 for s in batched)
    np.testing.assert_allclose(np.concatenate(batched), np.concatenate(singly), atol=1e-6)
    # each frame is its own memory: a consumer scaling one in place leaves the others
    batched[0] *= 0
    assert np.abs(batched[1]).max() == np.abs(singly[1]).max()


def test_a_44k1_stereo_input_changing_to_48k_mono_drains_the_resampler() -> None:
    """The fast paths (48 kHz mono passes straight through) still follow a change."""
    canonical = CanonicalFrames()

    def frames(rate: int, layout: str, n: int) -> list[av.AudioFrame]:
        out = []
        channels = 2 if layout == "stereo" else 1
        for i in range(n):
            t = (np.arange(1024) + i * 1024) / rate
            tone = (0.25 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.tile(tone, (channels, 1)), format="fltp",
                                               layout=layout)
            frame.sample_rate = rate
            out.append(frame)
        return out

    first = canonical.push_many(frames(44100, "stereo", 43))  # ~1 s
    second = canonical.push_many(frames(48000, "mono", 47)) + canonical.flush()
    assert canonical.reopened == 1
    pcm = np.concatenate(first + second)
    assert len(pcm) == pytest.approx(43 * 1024 * 48000 / 44100 + 47 * 1024, abs=FRAME_SAMPLES)
    assert tones_per_frame(pcm).count(1000) >= len(pcm) // FRAME_SAMPLES - 2
    assert longest_quiet_ms(pcm) == 0  # nothing lost where the format changed


def test_the_byte_feed_hands_chunks_over_whole_and_copies_a_byte_at_most_once() -> None:
    data = np.random.default_rng(1).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    feed = ByteFeed(limit_bytes=len(data) + 1)
    feed.write(data)  # one large write (a file, or a burst), read in small pieces
    feed.write(b"")
    chunk = b"x" * 1000
    feed.write(chunk)
    feed.close()
    got = []
    while piece := feed.read(4096):
        got.append(piece)
    assert b"".join(got) == data + chunk
    assert all(len(p) <= 4096 for p in got)
    # a chunk read whole is the same object: nothing copied
    feed = ByteFeed()
    feed.write(chunk)
    assert feed.read(4096) is chunk
    feed.write(chunk)
    feed.write(chunk)
    assert feed.read(1500) == chunk + chunk[:500] and feed.read() == chunk[500:]


@pytest.mark.parametrize("codec", ["opus", "mp3"])
def test_the_reused_encoder_frame_encodes_each_frame_as_given(codec: str) -> None:
    """The encoder copies each frame into the one frame it keeps: rows of one array, or an
    array the caller changes afterwards, encode as they were given. MP3 takes 1152 samples a
    packet, so part of each frame waits inside the encoder for the next one."""
    t = np.arange(50 * FRAME_SAMPLES) / 48000
    block = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(50, FRAME_SAMPLES)
    encoder = create_encoder(codec, 64_000)
    packets = []
    for i, row in enumerate(block):
        packets += encoder.encode(row, i * FRAME_SAMPLES, i)
        row[:] = 0  # the caller reuses its buffer: what was encoded stays encoded
    ctx = cast(av.AudioCodecContext,
               av.CodecContext.create("opus" if codec == "opus" else "mp3float", "r"))
    pcm = np.concatenate([f.to_ndarray()[0] for p in packets
                          for f in ctx.decode(av.Packet(p.data))])
    assert len(pcm) >= 40 * FRAME_SAMPLES
    steady = pcm[4800 : len(pcm) - 4800]
    assert dominant_hz(steady) == pytest.approx(440, rel=0.01)
    assert rms(steady) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)
    assert longest_quiet_ms(pcm) == 0  # no frame lost or overwritten by the next
    assert [p.capture_ns for p in packets] == sorted(p.capture_ns for p in packets)


class Flipping(Pieces):
    """Socket-sized pieces; before each read, ``flip`` may change the demand (as a take
    would, on the loop, between two reads of the decoder thread)."""

    def __init__(self, data: bytes, flip: Callable[[], None]) -> None:
        super().__init__(data)
        self.flip = flip

    def read(self, n: int = -1) -> bytes:
        self.flip()
        return super().read(n)


@pytest.mark.parametrize("fmt", list(STREAMS))
def test_a_paused_decode_decodes_nothing_and_resumes_at_the_live_edge(
        streams: dict[str, tuple[Path, bytes]], fmt: str) -> None:
    _, data = streams[fmt]
    demand = DecodeDemand(wanted=False)
    calls_at_take: list[int] = []
    rate = STREAMS[fmt][1]
    take_after = 2 * rate // PACKET_SAMPLES[fmt]  # packets: the tone, and into the silence

    def flip() -> None:
        if not demand.wanted and decoder.packets_skipped >= take_after:
            calls_at_take.append(decoder.decoder_calls)
            demand.wanted = True

    decoder = LiveDecoder(Flipping(data, flip), fmt, "test", demand)
    batches, alive = [], 0
    for batch in decoder.batches():
        if demand.wanted:
            batches.append(batch)
        else:  # what the first packets made before the take, the source drops
            assert len(batch) <= 3
            alive += not batch
    # before the take, only what showed the stream to be audio: its first packet or two
    assert len(calls_at_take) == 1 and 0 < calls_at_take[0] <= 3
    assert alive > 10  # the paused input still showed it was alive
    pcm = np.concatenate([f for b in batches for f in b])
    tones = tones_per_frame(pcm)
    assert 500 not in tones  # nothing from before the take is heard
    assert abs(tones.count(1000) - 50) <= 2  # the whole second tone, after it
    assert longest_quiet_ms(pcm) <= 20  # and no gap in it
    # the decoder did the packets after the take and its pre-roll: no more
    packets = 4 * rate // PACKET_SAMPLES[fmt] + 3  # 4 s, and the encoder's delay and padding
    assert 0 < decoder.decoder_calls <= packets - take_after + PREROLL_PACKETS


def test_a_source_never_taken_decodes_only_its_first_packets() -> None:
    data = subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                           "sine=frequency=500:duration=2", *MP3, "-"], check=True,
                          capture_output=True).stdout
    decoder = LiveDecoder(Pieces(data), "mp3", "test", DecodeDemand(wanted=False))
    batches = list(decoder.batches())
    # the first packets decode (the bytes are audio, not junk); then only parsing, to the end
    assert 0 < decoder.decoder_calls <= 3 and decoder.packets_skipped > 70
    assert sum(len(b) for b in batches) <= 3 and batches[-1] == []
    parsed = ParsedStreamDecoder(Pieces(data), "mp3", "test")
    assert sum(len(b) for b in parsed.batches()) > 90  # the same bytes do decode


def test_junk_is_refused_even_when_no_zone_takes_it() -> None:
    """A parser finds frame headers in random bytes: only a decode can tell junk from audio,
    so a paused source is decoded until it has shown audio once."""
    junk = np.random.default_rng(3).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    with pytest.raises(DecodeError, match="test"):
        list(LiveDecoder(Pieces(junk), "mp3", "test", DecodeDemand(wanted=False)).batches())
