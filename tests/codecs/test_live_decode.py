"""Live streams that change under way, decoded: streams made by the real ffmpeg CLI, fed to the
decoder in socket-sized pieces, and what comes out checked against ffmpeg's own decode."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from loa.codecs.canonical import CanonicalFrames
from loa.codecs.decode import ByteFeed, DecodeError
from loa.codecs.encoder import create_encoder
from loa.codecs.live_decode import LiveDecoder, OggLinks, OggOpusDecoder, sniff_format
from loa.codecs.ogg import OggOpusPager
from loa.core.pcm import FRAME_SAMPLES
from tests.audio import FFMPEG, dominant_hz, make_tone_file

VORBIS = ["-c:a", "libvorbis", "-page_duration", "20000"]
OPUS = ["-c:a", "libopus", "-page_duration", "20000"]
# no Xing/LAME header and no ID3 tag: what an encoder switching its rate mid-stream sends
MP3 = ["-c:a", "libmp3lame", "-b:a", "128k", "-write_xing", "0", "-id3v2_version", "0", "-f",
       "mp3"]


class Pieces:
    """A reader giving ``data`` in socket-sized pieces, as a ``ByteFeed`` would."""

    def __init__(self, data: bytes, size: int = 1000) -> None:
        self.data = data
        self.size = size
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        size = self.size if n < 1 else min(n, self.size)
        out = self.data[self.pos : self.pos + size]
        self.pos += len(out)
        return out


def decode(data: bytes, fmt: str | None) -> np.ndarray:
    """The stream's audio as ``LiveDecoder`` gives it, after the silence it puts first."""
    live = LiveDecoder(Pieces(data), fmt, "test")
    frames = list(live)
    assert all(f.dtype == np.float32 and f.shape == (FRAME_SAMPLES,) for f in frames)
    return after_lead(np.concatenate(frames), live)


def after_lead(pcm: np.ndarray, live: LiveDecoder) -> np.ndarray:
    """``pcm`` without the lead ``live`` put before the stream: less than a frame, silent."""
    assert 0 <= live.lead_samples < FRAME_SAMPLES
    assert not pcm[: live.lead_samples].any()
    return pcm[live.lead_samples :]


def ffmpeg_decode(path: Path) -> np.ndarray:
    """The independent peer: the ffmpeg CLI's decode of one file, 48 kHz mono float32."""
    out = subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-i", str(path), "-f",
                          "f32le", "-ac", "1", "-ar", "48000", "-"], check=True,
                         capture_output=True).stdout
    return np.frombuffer(out, dtype=np.float32)


def longest_quiet_ms(pcm: np.ndarray) -> int:
    """The longest run of silence (1 ms blocks under -40 dBFS) between the first and the last
    sound: a gap, as a listener hears one."""
    blocks = np.abs(pcm[: len(pcm) // 48 * 48]).reshape(-1, 48).max(axis=1) >= 0.01
    loud = np.flatnonzero(blocks)
    inside = blocks[loud[0] : loud[-1] + 1]
    longest = run = 0
    for b in inside:
        run = 0 if b else run + 1
        longest = max(longest, run)
    return longest


def tones_per_frame(pcm: np.ndarray) -> list[int]:
    """The dominant frequency of every 20 ms frame that is not silent, rounded to 100 Hz."""
    frames = pcm[: len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES)
    return [round(dominant_hz(f), -2) for f in frames if np.abs(f).max() >= 0.01]


def assert_in_order(tones: list[int], first: tuple[int, int], second: tuple[int, int]) -> None:
    """(Hz, frames) of one tone, then of the other (±1 frame each: the frame where they meet
    holds both), nothing else, nothing out of order."""
    a = [i for i, t in enumerate(tones) if t == first[0]]
    b = [i for i, t in enumerate(tones) if t == second[0]]
    assert abs(len(a) - first[1]) <= 1 and abs(len(b) - second[1]) <= 1, (len(a), len(b))
    assert a[-1] < b[0]
    assert len(tones) - len(a) - len(b) <= 1, tones  # at most the frame of the join itself


CHAINS = {
    "vorbis 44.1 kHz stereo, then 22.05 kHz mono": (VORBIS, 44100, 2, VORBIS, 22050, 1),
    "opus stereo, then mono": (OPUS, 48000, 2, OPUS, 48000, 1),
    "vorbis, then opus": (VORBIS, 44100, 2, OPUS, 48000, 2),
    "vorbis of one format (joins seamlessly)": (VORBIS, 44100, 2, VORBIS, 44100, 2),
}


@pytest.mark.parametrize("chain", list(CHAINS), ids=list(CHAINS))
def test_a_chained_ogg_stream_plays_every_link_whatever_its_format(tmp_path: Path,
                                                                   chain: str) -> None:
    args1, rate1, ch1, args2, rate2, ch2 = CHAINS[chain]
    one = make_tone_file(tmp_path / "one.ogg", 500, 1.0, args1, rate1, ch1)
    two = make_tone_file(tmp_path / "two.ogg", 1000, 1.0, args2, rate2, ch2)
    live = LiveDecoder(Pieces(one.read_bytes() + two.read_bytes()), "ogg", "test")
    pcm = np.concatenate(list(live))
    reference = np.concatenate([ffmpeg_decode(one), ffmpeg_decode(two)])
    # everything ffmpeg hears, Loa hears: at most the last frame's padding more, nothing less,
    # besides the silence that puts an Opus link's packets in step with the frames (less
    # than a frame at the start, and at the join)
    assert 0 <= len(pcm) - live.lead_samples - len(reference) < FRAME_SAMPLES
    assert live.lead_samples < (2 if "opus" in chain else 1) * FRAME_SAMPLES
    assert_in_order(tones_per_frame(pcm), (500, 50), (1000, 50))
    assert longest_quiet_ms(pcm) <= 20  # no gap at the join (issue 12: 0.6 s with Vorbis)


def test_an_mp3_stream_going_from_44k1_stereo_to_48k_mono_plays_on(tmp_path: Path) -> None:
    one = make_tone_file(tmp_path / "one.mp3", 500, 1.0, MP3, 44100, 2)
    two = make_tone_file(tmp_path / "two.mp3", 1000, 1.0, MP3, 48000, 1)
    pcm = decode(one.read_bytes() + two.read_bytes(), "mp3")
    reference = np.concatenate([ffmpeg_decode(one), ffmpeg_decode(two)])
    assert abs(len(pcm) - len(reference)) < FRAME_SAMPLES  # at most one frame lost
    assert_in_order(tones_per_frame(pcm), (500, 50), (1000, 50))
    # the encoders' own delay and padding are silent in ffmpeg's decode too; Loa adds no gap
    assert longest_quiet_ms(pcm) <= longest_quiet_ms(reference) + 20


SNIFFED = {
    "mp3 as ffmpeg pushes it (ID3 tag, Xing frame)": (["-c:a", "libmp3lame", "-f", "mp3"],
                                                       "mp3"),
    "bare mp3 frames": (MP3, "mp3"),
    "adts aac": (["-c:a", "aac", "-f", "adts"], "aac"),
    "ogg opus": (OPUS + ["-f", "ogg"], "ogg"),
}


@pytest.mark.parametrize("case", list(SNIFFED), ids=list(SNIFFED))
def test_a_stream_of_unknown_type_is_sniffed_and_loses_nothing(tmp_path: Path,
                                                               case: str) -> None:
    args, fmt = SNIFFED[case]
    half = make_tone_file(tmp_path / "a", 500, 0.5, args)
    rest = make_tone_file(tmp_path / "b", 1000, 1.0, args)
    data = half.read_bytes()
    assert sniff_format(data[:4096]) == fmt
    sniffed = decode(data, None)
    assert np.array_equal(sniffed, decode(data, fmt))  # as if the type had been given
    # issue 12: MP3 without a Content-Type lost its first 0.3-0.5 s to the demuxer's probe
    tones = tones_per_frame(sniffed)
    assert abs(tones.count(500) - 25) <= 1 and len(tones) - tones.count(500) <= 1
    assert len(decode(data + rest.read_bytes(), None)) > 1.45 * 48000


@pytest.mark.parametrize("case", list(SNIFFED), ids=list(SNIFFED))
def test_a_stream_sent_under_the_wrong_type_is_decoded_as_what_it_is(tmp_path: Path,
                                                                     case: str) -> None:
    args, fmt = SNIFFED[case]
    data = make_tone_file(tmp_path / "a", 500, 1.0, args).read_bytes()
    wrong = "mp3" if fmt != "mp3" else "ogg"  # e.g. MP3 sent as audio/ogg
    assert np.array_equal(decode(data, wrong), decode(data, fmt))


def test_junk_of_unknown_type_is_not_audio() -> None:
    junk = np.random.default_rng(3).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    assert sniff_format(junk[:16384]) is None
    with pytest.raises(DecodeError, match="test"):
        decode(junk, None)
    feed = ByteFeed()
    feed.write(b"not audio at all\n" * 10)
    feed.close()
    with pytest.raises(DecodeError, match="test"):
        list(LiveDecoder(feed, None, "test"))


def test_bytes_between_ogg_pages_are_skipped_and_links_found(tmp_path: Path) -> None:
    one = make_tone_file(tmp_path / "one.ogg", 500, 0.5, OPUS, 48000, 2).read_bytes()
    two = make_tone_file(tmp_path / "two.ogg", 1000, 0.5, OPUS, 48000, 1).read_bytes()
    junk = b"OggS" + bytes(range(256)) * 4  # a capture pattern too, whose page CRC fails
    links = OggLinks(Pieces(junk + one + junk + two, size=777))
    sizes = []
    while (link := links.next_link()) is not None:
        sizes.append(sum(len(d) for d in iter(lambda: link.read(4096), b"")))
    assert sizes == [len(one), len(two)]
    assert links.skipped_bytes == 2 * len(junk)


def test_an_ogg_opus_stream_is_decoded_without_the_demuxer_sample_for_sample(
        tmp_path: Path) -> None:
    """Ogg/Opus, what most live encoders push, is cut into packets here and decoded packet by
    packet (``OggOpusDecoder``: a demuxer costs the decoder thread more each page); what a
    listener hears is what the ffmpeg CLI decodes, pre-skip and end trimming included."""
    one = make_tone_file(tmp_path / "one.ogg", 700, 1.5, OPUS, 48000, 1)
    live = LiveDecoder(Pieces(one.read_bytes()), "ogg", "test")
    pcm = after_lead(np.concatenate(list(live)), live)
    assert [type(d) for d in live._decoders] == [OggOpusDecoder]
    reference = ffmpeg_decode(one)
    assert 0 <= len(pcm) - len(reference) < FRAME_SAMPLES  # the last frame padded, no more
    assert np.allclose(pcm[: len(reference)], reference, atol=1e-6)
    assert not pcm[len(reference):].any()
    assert live.decoder_calls == 1.5 / 0.02 + 1  # each 20 ms packet once: ffmpeg's last is short


def opus_tone_packets(hz: float, count: int) -> list[bytes]:
    """``count`` 20 ms Opus packets (32 kb/s, Loa's encoder) of a steady ``hz`` tone."""
    encoder = create_encoder("opus", 32_000)
    t = np.arange(FRAME_SAMPLES) / 48000
    return [p.data for i in range(count)
            for p in encoder.encode((0.3 * np.sin(2 * np.pi * hz * (t + i * 0.02)))
                                    .astype(np.float32), i * FRAME_SAMPLES, 0)]


def test_an_ogg_opus_stream_with_an_empty_packet_and_a_lost_page_plays_on() -> None:
    """RFC 3533 allows an empty packet (a lacing value of 0): no audio, and no end to the
    stream (an empty packet given to the decoder would drain it for good). A page lost on the
    way (a damaged page the link skips) costs its packet only."""
    packets = opus_tone_packets(600, 100)
    pager = OggOpusPager(serial=7)
    pages = [pager.page(packet, FRAME_SAMPLES) for packet in packets]
    empty = pager.page(b"", 0)
    stream = pager.headers + b"".join(pages[:40]) + empty + b"".join(pages[40:60] + pages[61:])
    live = LiveDecoder(Pieces(stream), "ogg", "test")
    pcm = np.concatenate(list(live))
    assert live.decoder_calls == len(packets) - 1  # every packet but the lost one, once
    assert abs(len(pcm) - (len(packets) - 1) * FRAME_SAMPLES) <= 2 * FRAME_SAMPLES
    assert dominant_hz(pcm[FRAME_SAMPLES:]) == pytest.approx(600, rel=0.01)
    assert longest_quiet_ms(pcm) <= 20


class PageAtATime:
    """A reader giving one whole Ogg page a read, as a paced live push arrives: ``handed``
    counts the pages given so far."""

    def __init__(self, pages: list[bytes]) -> None:
        self.pages = pages
        self.handed = 0

    def read(self, n: int = -1) -> bytes:
        if self.handed == len(self.pages):
            return b""
        self.handed += 1
        return self.pages[self.handed - 1]


def test_each_packet_of_a_live_opus_push_completes_its_frame_when_it_arrives() -> None:
    """A live Ogg/Opus push in 20 ms packets: the frame a packet completes is ready as soon as
    that packet is in. The pre-skip (120 samples in libopus's low-delay mode) leaves the first
    packet short of a frame; cut on the stream's own grid, every frame after it would wait for
    its last 120 samples in the next packet: 17.5 ms more for everything a listener hears.
    The silence put first instead (the lead) is 120 samples, and nothing of the stream is lost:
    what follows the lead is the tone, whole (``test_an_ogg_opus_stream_is_decoded_without_the_
    demuxer_sample_for_sample`` holds it to ffmpeg's decode, sample for sample)."""
    packets = opus_tone_packets(700, 50)
    pager = OggOpusPager(serial=9)
    headers = pager.headers
    reader = PageAtATime([headers] + [pager.page(p, FRAME_SAMPLES) for p in packets])
    live = LiveDecoder(reader, "ogg", "test")
    frames = []
    for batch in live.batches():
        if not batch:
            continue
        assert len(batch) == 1  # one packet in, its frame out
        assert reader.handed == 1 + len(frames) + 1  # the headers, and up to this packet
        frames += batch
    assert len(frames) == len(packets)  # each one its own frame; no padded last frame to flush
    assert live.lead_samples == 120  # OpusHead's pre-skip, made up to a frame
    pcm = after_lead(np.concatenate(frames), live)
    assert dominant_hz(pcm[FRAME_SAMPLES:]) == pytest.approx(700, rel=0.01)
    assert longest_quiet_ms(pcm) == 0


def test_a_chained_opus_push_is_in_step_again_after_each_join() -> None:
    """Liquidsoap and ices start an Ogg link a track, each with its own pre-skip: after the
    join, each packet of the new link again completes its frame when it arrives (not one packet
    later), for less than a frame of silence at the join."""
    first, second = OggOpusPager(serial=1), OggOpusPager(serial=2)
    link1 = [first.headers] + [first.page(p, FRAME_SAMPLES) for p in opus_tone_packets(500, 25)]
    link2 = [second.headers] + [second.page(p, FRAME_SAMPLES)
                                for p in opus_tone_packets(900, 25)]
    reader = PageAtATime(link1 + link2)
    live = LiveDecoder(reader, "ogg", "test")
    made: dict[int, int] = {}  # pages read -> frames ready then
    for batch in live.batches():
        if batch:
            made[reader.handed] = made.get(reader.handed, 0) + len(batch)
    second_link_audio = range(len(link1) + 3, len(link1) + len(link2) + 1)  # after its first
    assert all(made.get(page) == 1 for page in second_link_audio), made
    assert live.links == 2 and 120 < live.lead_samples < 120 + FRAME_SAMPLES
    tones = tones_per_frame(np.concatenate([f for f in LiveDecoder(
        PageAtATime(link1 + link2), "ogg", "test")]))
    assert_in_order(tones, (500, 25), (900, 25))


def test_a_live_stream_starting_on_a_frame_boundary_gets_no_lead() -> None:
    """The lead is only what aligns: a stream whose first read gives whole frames gets none,
    and a stream's frames are its samples, in order, after the lead."""
    def frame_of(samples: np.ndarray) -> av.AudioFrame:
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = 48000
        return frame

    ramp = np.arange(10 * FRAME_SAMPLES, dtype=np.float32) + 1
    whole = CanonicalFrames(align_start=True)
    assert len(whole.push(frame_of(ramp[:FRAME_SAMPLES]))) == 1 and whole.lead_samples == 0
    short = CanonicalFrames(align_start=True)
    out = short.push(frame_of(ramp[:840]))
    out += [f for i in range(840, len(ramp), FRAME_SAMPLES)
            for f in short.push(frame_of(ramp[i : i + FRAME_SAMPLES]))]
    assert short.lead_samples == 120 and len(out) == 10
    pcm = np.concatenate(out)
    assert not pcm[:120].any() and np.array_equal(pcm[120:], ramp[: len(pcm) - 120])
    # the last push (the ramp's last 120 samples) is carried, and flushed as a padded frame
    assert len(short.flush()) == 1


LEADS = {  # codec args, format, the lead: only Opus packets line up with frames
    # the first packet decodes to 960 - 312 samples: 312 of silence make it a frame
    "opus (libopus: pre-skip 312)": (OPUS, "ogg", 312),
    "vorbis at 48 kHz": (VORBIS, "ogg", 0),
    "mp3 at 48 kHz": (MP3, "mp3", 0),
}


@pytest.mark.parametrize("case", list(LEADS), ids=list(LEADS))
def test_only_an_opus_stream_is_put_in_step_with_its_packets(tmp_path: Path, case: str) -> None:
    """An MP3 or Vorbis stream's packets (1152 samples, 256-2048) do not line up with 20 ms
    frames whatever comes first: silence before them would only be silence (found in
    review). An Opus stream's do, once its pre-skip is made up to a frame."""
    args, fmt, lead = LEADS[case]
    path = make_tone_file(tmp_path / f"a.{fmt}", 600, 0.5, args, 48000, 1)
    live = LiveDecoder(Pieces(path.read_bytes()), fmt, "test")
    pcm = after_lead(np.concatenate(list(live)), live)
    assert live.lead_samples == lead
    reference = ffmpeg_decode(path)
    assert 0 <= len(pcm) - len(reference) < FRAME_SAMPLES
    assert np.allclose(pcm[: len(reference)], reference, atol=1e-5)
