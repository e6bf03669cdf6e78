"""How a live ingest hands its frames to the loop, and how it idles (issue 17): decoded frames
cross in batches (in order, none lost, none held back for more input), and a pushed source that
no zone takes is parsed but not decoded, stays connected, and is heard at once when taken."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import numpy as np
import pytest

from loa.codecs.live_decode import LiveDecoder
from loa.core.clock import FakeClock
from loa.core.counters import Counters
from loa.core.pcm import FRAME_NS, FRAME_SAMPLES, Samples
from loa.playout.inputs.ingest import LiveIngest
from loa.playout.inputs.live import LiveSettings, LiveSource
from tests.audio import FFMPEG, dominant_hz, rms
from tests.codecs.test_live_decode import MP3, Pieces, longest_quiet_ms, tones_per_frame
from tests.server.test_ingest import wait_for

MP3_FRAME_S = 1152 / 44100




async def mp3_of(path: Path, script: str, seconds: float, bitrate: str = "128k") -> bytes:
    """Bare MP3 frames (no tag, no Xing frame) of an ``aevalsrc`` expression, 44.1 kHz."""
    mp3 = [bitrate if arg == "128k" else arg for arg in MP3]

    def make() -> bytes:
        subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"aevalsrc='{script}':s=44100:d={seconds}", *mp3, str(path)], check=True)
        return path.read_bytes()
    return await asyncio.to_thread(make)


class Recorder:
    """A `FrameSink` that keeps every batch it is handed, as handed."""

    def __init__(self) -> None:
        self.batches: list[list[Samples]] = []
        self.ended = False

    @property
    def frames(self) -> int:
        return sum(len(b) for b in self.batches)

    def connect(self) -> None:
        pass

    def push_frames(self, frames: list[Samples]) -> None:
        self.batches.append(frames)

    def end(self) -> None:
        self.ended = True

    def disconnect(self) -> None:
        pass


class Stops(Exception):
    """Where a socket would block: no more input for now."""


class Prefix(Pieces):
    """The first bytes of a stream in socket-sized pieces, then nothing more for now."""

    def read(self, n: int = -1) -> bytes:
        data = super().read(n)
        if not data:
            raise Stops
        return data


def ready_from(data: bytes) -> int:
    """How many frames the decoder makes of ``data`` without waiting for more input."""
    decoder = LiveDecoder(Prefix(data), "mp3", "test")
    made = 0
    try:
        for batch in decoder.batches():
            made += len(batch)
    except Stops:
        pass
    return made


async def test_frames_cross_in_batches_in_order_none_lost(tmp_path: Path) -> None:
    data = await mp3_of(tmp_path / "a.mp3", "0.3*sin(2*PI*(300+200*t)*t)", 3.0)  # a chirp
    expected = await asyncio.to_thread(lambda: list(LiveDecoder(Pieces(data), "mp3", "x")))
    sink = Recorder()
    ingest = LiveIngest(sink, format="mp3", label="test")
    ingest.start()
    ingest.write(data)  # a burst: the decoder reads it 4 KiB at a time
    ingest.finish_input()
    await asyncio.wait_for(ingest.wait_ended(), 10)
    got = [f for b in sink.batches for f in b]
    assert len(got) == len(expected) == ingest.frames_decoded
    assert np.array_equal(np.concatenate(got), np.concatenate(expected))  # same, in order
    # one hand-over a read (~10 frames) or fewer, where there was one a frame
    assert ingest.deliveries == len(sink.batches) <= len(expected) / 5
    assert sink.ended
    await ingest.stop()


async def test_a_batch_is_what_is_ready_never_held_for_more_input(tmp_path: Path) -> None:
    data = await mp3_of(tmp_path / "a.mp3", "0.3*sin(2*PI*440*t)", 3.0)
    sink = Recorder()
    ingest = LiveIngest(sink, format="mp3", label="test")
    ingest.start()
    sent = 0
    for end in (1500, 5000, 5417, 20000, 30001):  # pieces that end anywhere in a frame
        ingest.write(data[sent:end])
        sent = end
        ready = await asyncio.to_thread(ready_from, data[:end])
        assert ready > 0
        # everything the bytes so far make reaches the sink with no more bytes sent
        await wait_for(lambda ready=ready: sink.frames == ready)
    await ingest.stop()


def untaken_source(clock: FakeClock, why: str) -> LiveSource:
    """A live source not decoded: ``why`` "untaken" (no zone takes it) or "unheard" (zones
    take it, nobody listens or watches: the engine says so after a while of lulls)."""
    source = LiveSource("live/test", clock, Counters(), LiveSettings(2, 10, 1000))
    if why == "untaken":
        source.set_taken(False)
    else:
        source.set_heard(False)
    assert source.taken == (why == "unheard") and not source.decoding
    return source


def take(source: LiveSource, why: str) -> None:
    """Undo ``untaken_source``: a zone takes it; a listener joins."""
    if why == "untaken":
        source.set_taken(True)
    else:
        source.set_heard(True)
    assert source.decoding


@pytest.mark.parametrize("why", ["untaken", "unheard"])
async def test_a_source_no_zone_takes_is_parsed_not_decoded_and_stays_connected(
        tmp_path: Path, why: str) -> None:
    data = await mp3_of(tmp_path / "a.mp3", "0.3*sin(2*PI*500*t)", 6.0)
    clock = FakeClock()
    source = untaken_source(clock, why)
    ingest = LiveIngest(source, format="mp3", label="test", demand=source.demand,
                        now_ns=clock.now_ns)
    ingest.start()
    half = len(data) // 2
    ingest.write(data[:half])
    await wait_for(lambda: ingest.packets_skipped >= 2.5 / MP3_FRAME_S and ingest.deliveries)
    calls = ingest.decoder_calls
    assert 0 < calls <= 3  # the first packets only: they showed the bytes to be audio
    clock.set_ns(clock.now_ns() + 2_500_000_000)  # 2.5 s on: within the 3 s stall time
    delivered = ingest.deliveries
    ingest.write(data[half:])
    await wait_for(lambda: ingest.deliveries > delivered)  # arrivals seen, nothing decoded
    clock.set_ns(clock.now_ns() + 2_500_000_000)  # 5 s since connect: alive by its arrivals
    assert source.available and not source.stalled
    assert ingest.decoder_calls == calls  # 3 s more of the stream: not one packet decoded
    assert source.frames_in <= calls * 2  # counted as they came, the first packets' only
    samples, _ = source.read(clock.now_ns())  # type: ignore[misc]
    assert not samples.any() and len(source.jitter) == 0 and source.jitter.underflows == 0
    await ingest.stop()


async def test_a_source_not_decoded_that_sends_a_burst_a_second_stays_available(
        tmp_path: Path) -> None:
    """A 32 kb/s MP3 encoder that sends a second's audio at a time (a read a second, and
    nothing decoded: no frame to count): its arrivals still keep it available, as the frames
    in its jitter buffer would if it were heard. (Told every ten reads, it stalled.)"""
    data = await mp3_of(tmp_path / "a.mp3", "0.3*sin(2*PI*500*t)", 8.0, bitrate="32k")
    clock = FakeClock()
    source = untaken_source(clock, "unheard")
    ingest = LiveIngest(source, format="mp3", label="test", demand=source.demand,
                        now_ns=clock.now_ns)
    ingest.start()
    per_s = len(data) // 8
    for s in range(8):
        told = ingest.deliveries
        ingest.write(data[s * per_s : (s + 1) * per_s])  # the encoder's burst of this second
        await wait_for(lambda told=told: ingest.deliveries > told)  # its arrival told
        for _ in range(10):  # the second's ticks look at it
            clock.set_ns(clock.now_ns() + FRAME_NS * 5)
            assert source.available and not source.stalled, s
    assert ingest.packets_skipped > 6 / MP3_FRAME_S and ingest.decoder_calls <= 3
    await ingest.stop()


@pytest.mark.parametrize("why", ["untaken", "unheard"])
async def test_a_source_taken_later_is_heard_at_once_with_nothing_from_before(
        tmp_path: Path, why: str) -> None:
    # 1 s of 500 Hz while nobody takes the source, then 1000 Hz: taken in the middle of it
    data = await mp3_of(tmp_path / "a.mp3",
                        "0.3*sin(2*PI*if(lt(t,1),500,1000)*t)", 4.0)
    clock = FakeClock()
    source = untaken_source(clock, why)
    ingest = LiveIngest(source, format="mp3", label="test", demand=source.demand,
                        now_ns=clock.now_ns)
    ingest.start()
    at = len(data) // 2  # 2 s of a constant-rate stream
    ingest.write(data[:at])
    await wait_for(lambda: ingest.packets_skipped >= 1.7 / MP3_FRAME_S)
    assert ingest.decoder_calls <= 3
    take(source, why)  # a zone takes it, or a listener joins
    ingest.write(data[at:])
    # the loop looks at the source, as the tick does: what the decoder offered goes in
    await wait_for(lambda: source.available and len(source.jitter) >= source.jitter.target_frames)
    clock.set_ns(clock.now_ns() + FRAME_NS)
    first, _ = source.read(clock.now_ns())  # type: ignore[misc]
    # the first tick after the frames came is the tone, whole: no silence, no older audio
    assert dominant_hz(first) == pytest.approx(1000, rel=0.05) and rms(first) > 0.15
    ingest.finish_input()
    await asyncio.wait_for(ingest.wait_ended(), 10)
    out = [first]
    while source.available:
        clock.set_ns(clock.now_ns() + FRAME_NS)
        out.append(source.read(clock.now_ns())[0])  # type: ignore[index]
    pcm = np.concatenate(out)
    tones = tones_per_frame(pcm)
    assert 500 not in tones and tones.count(1000) == len(tones)
    assert len(tones) >= 0.95 * (len(data) - at) / len(data) * 4 / 0.02  # the rest, all of it
    assert longest_quiet_ms(pcm) == 0  # no gap
    assert len(pcm) % FRAME_SAMPLES == 0
    await ingest.stop()


async def test_a_live_source_takes_the_decoders_frames_without_the_loop_stamped_on_arrival(
        tmp_path: Path) -> None:
    """The decoder thread offers a `LiveSource` its frames itself (no loop wake-up): they wait,
    counted, until the loop looks at the source (the tick does), then go into the jitter buffer
    in order, each stamped with when the decoder had it, not when the loop looked."""
    data = await mp3_of(tmp_path / "a.mp3", "0.3*sin(2*PI*440*t)", 3.0)
    expected = await asyncio.to_thread(lambda: list(LiveDecoder(Pieces(data), "mp3", "x")))
    clock = FakeClock()
    source = LiveSource("live/test", clock, Counters(), LiveSettings(2, 500, 1000))
    ingest = LiveIngest(source, format="mp3", label="test")
    ingest.start()
    half = len(data) // 2
    ingest.write(data[:half])
    first_ns = clock.now_ns()
    first_half = await asyncio.to_thread(ready_from, data[:half])
    await wait_for(lambda: source.frames_in == first_half)  # counted as the thread offers them
    assert len(source.jitter) == 0  # the loop has not looked yet
    clock.set_ns(first_ns + 5 * FRAME_NS)
    ingest.write(data[half:])
    ingest.finish_input()
    await wait_for(lambda: source.frames_in == len(expected))
    clock.set_ns(first_ns + 50 * FRAME_NS)
    assert source.available  # the loop looks: every offered frame goes in
    arrivals = [arrival for _, arrival in source.jitter._frames]
    assert len(arrivals) == len(expected) == ingest.frames_decoded
    assert set(arrivals[:first_half]) == {first_ns}
    assert set(arrivals[first_half:]) == {first_ns + 5 * FRAME_NS}
    heard = [samples for samples, _ in source.jitter._frames]
    assert np.array_equal(np.concatenate(heard), np.concatenate(expected))  # in order, whole
    await ingest.stop()
