"""The pure core: the engine ticked by hand on a fake clock, listeners in memory."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import numpy as np
import pytest

from loa.codecs.ogg import OggReader
from loa.config import default_zones
from loa.core.clock import FakeClock
from loa.core.counters import Counters
from loa.core.pcm import FRAME_NS, FRAME_SAMPLES
from loa.core.priority import Priority
from loa.core.zones import ZoneTree
from loa.loadtest.endpoint import OpusDecoder
from loa.playout.engine import Engine
from loa.playout.fanout import Subscriber
from loa.playout.inputs.file import FileSource
from loa.playout.inputs.generator import tone_source
from loa.playout.inputs.live import LiveSettings, LiveSource
from loa.playout.programme import Programme, ProgrammeKind
from loa.playout.zone_channel import FanoutSettings
from loa.protocol.native import HEADER_BYTES, parse_packet
from tests.audio import FFMPEG, dominant_hz
from tests.conftest import MemoryProtocol


def make_engine(clock: FakeClock | None = None) -> tuple[Engine, FakeClock]:
    clock = clock or FakeClock()
    engine = Engine(ZoneTree(default_zones()), clock, Counters(),
                    FanoutSettings({"opus": 32000, "mp3": 64000}, burst_ms=200, backlog_ms=2000))
    return engine, clock


def listen(engine: Engine, zone: str, fmt: str = "ws") -> MemoryProtocol:
    proto = MemoryProtocol()
    ch = engine.channels[zone]
    ch.feed(fmt).add(Subscriber(proto, "mem", fmt), ch.formats[fmt].join_header())
    return proto


def run(engine: Engine, clock: FakeClock, frames: int) -> None:
    for _ in range(frames):
        clock.set_ns(clock.now_ns() + FRAME_NS)
        engine.tick(clock.now_ns())


def ws_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split unmasked server WebSocket frames into (opcode, payload)."""
    out, i = [], 0
    while i < len(data):
        opcode, n = data[i] & 0x0F, data[i + 1] & 0x7F
        i += 2
        if n == 126:
            n = int.from_bytes(data[i : i + 2], "big")
            i += 2
        out.append((opcode, bytes(data[i : i + n])))
        i += n
    return out


def ws_messages(data: bytes) -> list[bytes]:
    """The binary payloads (audio packets) among the frames."""
    return [payload for opcode, payload in ws_frames(data) if opcode == 2]


def heard(proto: MemoryProtocol) -> tuple[list, np.ndarray]:
    packets = [parse_packet(m) for m in ws_messages(bytes(proto.sink.data))]
    dec = OpusDecoder()
    for p in packets:
        dec.decode(p.payload)
    return packets, dec.pcm()


def tone(freq: float) -> Programme:
    return Programme(f"tone {freq}", ProgrammeKind.GENERATOR, tone_source(freq))


def test_higher_request_takes_the_zone_at_a_packet_boundary_and_gives_it_back() -> None:
    engine, clock = make_engine()
    ear = listen(engine, "an-binh-1")
    engine.request("huyen", tone(440), Priority.FILL)
    run(engine, clock, 50)
    live = engine.request("an-binh", tone(1000), Priority.DISTRICT_LIVE)
    run(engine, clock, 50)
    engine.release(live.id)
    run(engine, clock, 50)

    packets, pcm = heard(ear)
    seqs = [p.seq for p in packets]
    assert seqs == list(range(len(seqs)))  # one unbroken stream: nobody reconnected
    priorities = [p.priority for p in packets]
    assert priorities == [10] * 50 + [80] * 50 + [10] * 50
    # flagged: the first packet (idle -> fill), the takeover and the return
    assert [i for i, p in enumerate(packets) if p.switched] == [0, 50, 100]
    second = 48000
    assert dominant_hz(pcm[int(0.1 * second) : second]) == pytest.approx(440, rel=0.01)
    assert dominant_hz(pcm[int(1.1 * second) : 2 * second]) == pytest.approx(1000, rel=0.01)
    assert dominant_hz(pcm[int(2.1 * second) :]) == pytest.approx(440, rel=0.01)


def test_a_request_on_a_commune_leaves_other_communes_alone() -> None:
    engine, clock = make_engine()
    engine.request("huyen", tone(440), Priority.FILL)
    engine.request("an-binh", tone(1000), Priority.COMMUNE_LIVE)
    run(engine, clock, 1)
    assert engine.channels["an-binh-2"].on_air.priority == 70
    assert engine.channels["phu-my-1"].on_air.priority == 10
    assert engine.channels["huyen"].on_air.priority == 10


def test_equal_priorities_queue_earliest_first() -> None:
    engine, clock = make_engine()
    first = engine.request("an-binh-1", tone(440), Priority.SCHEDULED)
    engine.request("an-binh-1", tone(880), Priority.SCHEDULED)
    run(engine, clock, 1)
    assert engine.channels["an-binh-1"].on_air.programme_id == first.programme.id


def test_a_thousand_listeners_share_one_encoder() -> None:
    engine, clock = make_engine()
    engine.request("huyen", tone(1000), Priority.FILL)
    ears = [listen(engine, zone) for zone in ("an-binh-1", "an-binh-2", "phu-my-1", "phu-my-2")
            for _ in range(250)]
    run(engine, clock, 25)
    assert engine.counters.get("encoders_created", codec="opus") == 1
    rend = next(iter(engine.renditions.values()))
    assert rend.encoder.frames_in == 25  # type: ignore[attr-defined]
    zone_stream = bytes(ears[0].sink.data)
    assert all(bytes(e.sink.data) == zone_stream for e in ears[:250])
    # another zone has its own sequence numbers and framing, but the same encoded audio
    other = [parse_packet(m).payload for m in ws_messages(bytes(ears[-1].sink.data))]
    assert other == [parse_packet(m).payload for m in ws_messages(zone_stream)]


def test_nothing_is_encoded_while_nobody_listens() -> None:
    engine, clock = make_engine()
    engine.request("huyen", tone(1000), Priority.FILL)
    run(engine, clock, 10)
    assert engine.renditions == {}
    ear = listen(engine, "phu-my", "mp3")
    run(engine, clock, 10)
    assert set(engine.renditions) == {(engine.channels["phu-my"].on_air.programme_id, "mp3")}
    ear.transport.abort()  # type: ignore[union-attr]
    run(engine, clock, 200)
    assert engine.renditions == {}


@pytest.fixture
def stepped_file(tmp_path: Path) -> Path:
    """A WAV whose frequency rises 100 Hz each second: 300, 400, 500 … Hz, 6 s."""
    rate = 48000
    parts = []
    for sec in range(6):
        t = np.arange(rate) / rate
        parts.append(0.5 * np.sin(2 * np.pi * (300 + 100 * sec) * t))
    pcm = (np.concatenate(parts) * 32767).astype("<i2")
    path = tmp_path / "steps.wav"
    subprocess.run([FFMPEG, "-loglevel", "error", "-f", "s16le", "-ar", "48000", "-ac", "1",
                    "-i", "-", str(path)], input=pcm.tobytes(), check=True)
    return path


async def run_with_files(engine: Engine, clock: FakeClock, frames: int) -> None:
    """Like ``run``, one loop step a tick, giving file readers the real time they would have
    had (they decode a second ahead beside the loop)."""
    for _ in range(frames):
        await engine.inputs_ready()
        run(engine, clock, 1)
        await asyncio.sleep(0)


async def test_a_preempted_file_resumes_where_it_stopped(stepped_file: Path) -> None:
    engine, clock = make_engine()
    ear = listen(engine, "an-binh-1")
    prog = Programme("steps", ProgrammeKind.FILE, FileSource(str(stepped_file)))
    engine.request("an-binh-1", prog, Priority.SCHEDULED)
    await run_with_files(engine, clock, 125)  # 2.5 s into the file
    paused_at = prog.position_samples
    live = engine.request("huyen", tone(1000), Priority.DISTRICT_LIVE)
    await run_with_files(engine, clock, 150)  # 3 s of live
    assert prog.position_samples == paused_at  # not pulled while preempted
    engine.release(live.id)
    await run_with_files(engine, clock, 500)  # the rest of the file, then idle
    assert prog.source.underruns == 0  # type: ignore[attr-defined]

    assert prog.finished and not engine.requests_on("an-binh-1")
    packets, pcm = await asyncio.to_thread(heard, ear)
    # what the listener heard after the live: the file from 2.5 s, i.e. 0.5 s more of 500 Hz
    resume = next(i for i, p in enumerate(packets) if i > 0 and p.switched and p.priority == 50)
    start = resume * FRAME_SAMPLES
    after = pcm[start:]
    assert dominant_hz(after[2400:21600]) == pytest.approx(500, rel=0.01)
    # find the 500 -> 600 Hz step, 20 ms at a time: it must come 0.5 s (25 frames) in, ±1 frame
    step = next(i for i in range(0, 60) if dominant_hz(after[i * 960 : (i + 2) * 960]) > 550)
    assert abs(step - 25) <= 1
    # and the file played in full: 6 s in total, no frame lost or repeated
    assert prog.position_samples == pytest.approx(6 * 48000, abs=FRAME_SAMPLES)


def test_a_live_source_that_drops_gives_the_zone_back_on_the_next_tick() -> None:
    engine, clock = make_engine()
    counters = engine.counters
    src = LiveSource("live/studio", clock, counters, LiveSettings(2, 10, 50))
    live = Programme("studio", ProgrammeKind.LIVE, src)
    engine.add_programme(live, persistent=True)
    engine.request("huyen", tone(440), Priority.FILL)
    engine.request("an-binh", live, Priority.DISTRICT_LIVE)
    run(engine, clock, 1)
    assert engine.channels["an-binh-1"].on_air.priority == 10  # no source yet: not available
    src.connect()
    gen = tone_source(1000)
    for _ in range(5):
        src.push_frames([gen.read(0)[0]])  # type: ignore[index]
    run(engine, clock, 3)
    assert engine.channels["an-binh-1"].on_air.priority == 80
    src.disconnect()
    run(engine, clock, 1)
    assert engine.channels["an-binh-1"].on_air.priority == 10
    src.connect()  # the mount is taken again: the zone rejoins live
    for _ in range(3):
        src.push_frames([gen.read(0)[0]])  # type: ignore[index]
    run(engine, clock, 1)
    assert engine.channels["an-binh-1"].on_air.priority == 80


def test_underflow_plays_silence_and_is_counted() -> None:
    engine, clock = make_engine()
    src = LiveSource("live/x", clock, engine.counters, LiveSettings(1, 4, 8))
    live = engine.add_programme(Programme("x", ProgrammeKind.LIVE, src), persistent=True)
    engine.request("huyen", live, Priority.DISTRICT_LIVE)
    ear = listen(engine, "huyen")
    src.connect()
    src.push_frames([np.full(960, 0.5, np.float32)])
    run(engine, clock, 10)
    assert engine.counters.get("jitter_underflows", source="live/x") == 1
    packets, _ = heard(ear)
    assert len(packets) == 10  # the zone kept its packet clock through the underflow


def test_the_websocket_header_carries_capture_time_and_programme() -> None:
    engine, clock = make_engine()
    prog = tone(1000)
    engine.request("huyen", prog, Priority.SCHEDULED)
    ear = listen(engine, "huyen")
    run(engine, clock, 3)
    msgs = ws_messages(bytes(ear.sink.data))
    first = parse_packet(msgs[0])
    assert len(msgs[0]) > HEADER_BYTES
    assert first.programme_id == prog.id and first.priority == 50
    assert [parse_packet(m).pts_samples for m in msgs] == [0, 960, 1920]
    assert first.capture_ns == clock.now_ns() - 2 * FRAME_NS


def test_a_connected_but_silent_source_gives_the_zone_back_and_rejoins_when_it_sends() -> None:
    engine, clock = make_engine()
    src = LiveSource("live/studio", clock, engine.counters, LiveSettings(2, 10, 50, stall_ms=3000))
    live = engine.add_programme(Programme("studio", ProgrammeKind.LIVE, src), persistent=True)
    engine.request("huyen", tone(440), Priority.FILL)
    engine.request("huyen", live, Priority.DISTRICT_LIVE)
    src.connect()
    gen = tone_source(1000)
    for _ in range(10):
        src.push_frames([gen.read(0)[0]])  # type: ignore[index]
    run(engine, clock, 10)
    assert engine.channels["phu-my"].on_air.priority == 80
    run(engine, clock, 130)  # 2.8 s since the last frame: underflow silence, still on air
    assert engine.channels["phu-my"].on_air.priority == 80
    run(engine, clock, 11)  # 3.02 s without a frame: the encoder has stalled
    assert engine.channels["phu-my"].on_air.priority == 10
    assert src.connected and src.stalled
    src.push_frames([gen.read(0)[0], gen.read(0)[0]])  # type: ignore[index]
    run(engine, clock, 1)
    assert engine.channels["phu-my"].on_air.priority == 80


def test_http_listeners_get_packets_in_batches_and_miss_none() -> None:
    clock = FakeClock()
    engine = Engine(ZoneTree(default_zones()), clock, Counters(),
                    FanoutSettings({"opus": 32000, "mp3": 64000}, burst_ms=200, backlog_ms=2000,
                                   http_batch_ms=40))
    engine.request("huyen", tone(1000), Priority.SCHEDULED)
    ogg = listen(engine, "an-binh-1", "ogg")
    ws = listen(engine, "an-binh-1", "ws")
    writes = {"ogg": 0}
    original = ogg.sink.write

    def counting(data: bytes) -> None:
        writes["ogg"] += 1
        original(data)

    ogg.sink.write = counting  # type: ignore[method-assign]
    run(engine, clock, 100)
    reader = OggReader()
    packets = [p for _, _, p, bos in reader.feed(bytes(ogg.sink.data)) if not bos]
    assert len(packets) == 1 + 100  # OpusTags, then every packet
    assert reader.crc_errors == 0
    assert writes["ogg"] == 50  # two packets a write
    assert len(ws_messages(bytes(ws.sink.data))) == 100  # the native protocol: one at a time
    # a listener joining mid-batch gets the burst, then the batch: nothing twice
    late = listen(engine, "an-binh-1", "ogg")
    run(engine, clock, 1)
    run(engine, clock, 10)
    late_pkts = [p for _, _, p, bos in OggReader().feed(bytes(late.sink.data)) if not bos]
    # tags, the 200 ms burst, then 10 of the 11 new packets (the 11th waits for its batch)
    assert len(late_pkts) == 1 + 10 + 10


@pytest.mark.parametrize("level_db", [-28.0, -8.0])  # within the AGC's ±12 dB
def test_a_live_feed_is_brought_slowly_to_the_loudness_target(level_db: float) -> None:
    from loa.codecs.loudness import integrated_lufs

    engine, clock = make_engine()
    src = LiveSource("live/x", clock, engine.counters,
                     LiveSettings(1, 4, 50, agc_target_lufs=-18.0))
    live = engine.add_programme(Programme("x", ProgrammeKind.LIVE, src), persistent=True)
    engine.request("huyen", live, Priority.DISTRICT_LIVE)
    ear = listen(engine, "huyen")
    src.connect()
    gen = tone_source(1000, level=float(np.sqrt(2) * 10 ** (level_db / 20)))
    for _ in range(1500):  # 30 s, one frame in and one out per tick
        src.push_frames([gen.read(0)[0]])  # type: ignore[index]
        run(engine, clock, 1)
    _, pcm = heard(ear)
    assert integrated_lufs(pcm[-5 * 48000 :]) == pytest.approx(-18.0, abs=1.0)
