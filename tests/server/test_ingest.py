"""The station goes live with the real ffmpeg CLI; real ffmpeg and simulated endpoints listen."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from loa.app import LoaServer
from loa.codecs.decode import DecodeError
from loa.core.clock import FakeClock
from loa.core.counters import Counters
from loa.core.pcm import FRAME_NS, FRAME_SAMPLES
from loa.loadtest.endpoint import SimulatedEndpoint
from loa.playout.inputs.ingest import LiveIngest
from loa.playout.inputs.live import LiveSettings, LiveSource
from tests.audio import (
    FFMPEG,
    MP3_PUSH,
    OPUS_PUSH,
    closed,
    dominant_hz,
    ffmpeg_pull,
    ffmpeg_push,
    make_tone_file,
    rms,
    tone_bytes,
)
from tests.codecs.test_live_decode import longest_quiet_ms
from tests.conftest import SOURCE_PASSWORD, auth, source_sending


def source_url(server: LoaServer, mount: str = "studio", password: str = SOURCE_PASSWORD) -> str:
    return f"icecast://source:{password}@127.0.0.1:{server.port}/live/{mount}"


def base(server: LoaServer) -> str:
    return f"http://127.0.0.1:{server.port}"


async def wait_for(predicate, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    """Poll a condition on the server's own state (not a sleep to synchronise on)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def take_live(server: LoaServer, zone: str, mount: str = "studio") -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base(server)}/api/v1/zones/{zone}/live", json={"mount": mount},
                             headers=auth()) as resp:
            assert resp.status in (200, 201), await resp.text()
            return await resp.json()


async def raw_request(server: LoaServer, head: str, body: bytes = b"") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(head.encode() + body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(4096), 10)
    await closed(writer)
    return data


def basic(password: str) -> str:
    return base64.b64encode(f"source:{password}".encode()).decode()


@pytest.mark.parametrize("codec_args", [MP3_PUSH, OPUS_PUSH], ids=["mp3", "ogg-opus"])
async def test_ffmpeg_goes_live_and_ffmpeg_hears_the_tone(server: LoaServer,
                                                          codec_args: list[str]) -> None:
    push = await ffmpeg_push(source_url(server), freq_hz=1000, codec_args=codec_args)
    try:
        mount = server.mounts.get("studio")
        await wait_for(lambda: source_sending(mount))
        await take_live(server, "an-binh")
        pcm = await ffmpeg_pull(f"{base(server)}/zones/an-binh-1/stream.ogg", seconds=2.0)
        assert len(pcm) == pytest.approx(96000, abs=960)
        assert dominant_hz(pcm[9600:]) == pytest.approx(1000, rel=0.01)
        assert rms(pcm[9600:]) > 0.03
        # the native protocol, through an endpoint of that zone, carries the same tone
        ep = SimulatedEndpoint(f"ws://127.0.0.1:{server.port}/endpoints/loa-001/ws", decode=True)
        async with aiohttp.ClientSession() as http:
            report = await ep.run(http, seconds=1.5)
        assert report.error is None and report.gaps == 0 and report.packets >= 60
        assert {prio for _, _, prio in report.programmes} == {80}
        heard = ep.decoder.pcm()  # type: ignore[union-attr]
        assert dominant_hz(heard[4800:]) == pytest.approx(1000, rel=0.01)
    finally:
        push.kill()
        await push.wait()


async def test_mp3_stream_out(server: LoaServer) -> None:
    push = await ffmpeg_push(source_url(server), freq_hz=800, codec_args=MP3_PUSH)
    try:
        await wait_for(lambda: source_sending(server.mounts.get("studio")))
        await take_live(server, "phu-my")
        pcm = await ffmpeg_pull(f"{base(server)}/endpoints/loa-005/stream.mp3", seconds=1.5)
        assert dominant_hz(pcm[9600:]) == pytest.approx(800, rel=0.01)
    finally:
        push.kill()
        await push.wait()


async def test_wrong_password_gets_401(server: LoaServer) -> None:
    head = ("PUT /live/studio HTTP/1.1\r\nHost: x\r\nContent-Type: audio/mpeg\r\n"
            f"Authorization: Basic {basic('wrong')}\r\nExpect: 100-continue\r\n\r\n")
    reply = await raw_request(server, head)
    assert reply.startswith(b"HTTP/1.0 401 ")
    assert b"WWW-Authenticate: Basic" in reply
    # and ffmpeg itself is refused
    push = await ffmpeg_push(source_url(server, password="nope"), seconds=2, codec_args=MP3_PUSH)
    _, err = await asyncio.wait_for(push.communicate(), 15)
    assert push.returncode != 0
    assert b"401" in err or b"Unauthorized" in err


async def test_legacy_source_method_and_unsupported_type(server: LoaServer) -> None:
    head = ("SOURCE /live/old HTTP/1.0\r\nContent-Type: video/mp4\r\n"
            f"Authorization: Basic {basic(SOURCE_PASSWORD)}\r\n\r\n")
    assert (await raw_request(server, head)).startswith(b"HTTP/1.0 415 ")
    head = ("SOURCE /live/old ICE/1.0\r\nContent-Type: audio/mpeg\r\n"
            f"Authorization: Basic {basic(SOURCE_PASSWORD)}\r\n\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(head.encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.0 200 OK")
    await wait_for(lambda: server.mounts.get("old").session is not None)
    await closed(writer)
    await wait_for(lambda: server.mounts.get("old").session is None)


async def test_encoder_metadata_updates_as_icecast_takes_them(server: LoaServer) -> None:
    url = f"{base(server)}/admin/metadata"
    params = {"mount": "/live/studio", "mode": "updinfo", "song": "Bản tin sáng"}
    async with aiohttp.ClientSession() as http:
        ok = {"Authorization": f"Basic {basic(SOURCE_PASSWORD)}"}
        async with http.get(url, params=params, headers=ok) as resp:
            assert resp.status == 400  # no such mount yet
        await take_live(server, "huyen", "studio")
        async with http.get(url, params=params,
                            headers={"Authorization": f"Basic {basic('wrong')}"}) as resp:
            assert resp.status == 401
        async with http.get(url, params=params, headers=ok) as resp:
            assert resp.status == 200
            assert "<return>1</return>" in await resp.text()
    assert server.mounts.get("studio").title == "Bản tin sáng"


async def test_second_source_on_a_busy_mount_gets_403(server: LoaServer) -> None:
    push = await ffmpeg_push(source_url(server), codec_args=MP3_PUSH)
    try:
        await wait_for(lambda: server.mounts.get("studio").session is not None)
        second = await ffmpeg_push(source_url(server), seconds=2, codec_args=MP3_PUSH)
        _, err = await asyncio.wait_for(second.communicate(), 15)
        assert second.returncode != 0
        assert b"403" in err or b"Forbidden" in err
        assert server.mounts.get("studio").session is not None  # the first is undisturbed
    finally:
        push.kill()
        await push.wait()


async def test_garbage_ends_only_that_source(server: LoaServer) -> None:
    good = await ffmpeg_push(source_url(server), freq_hz=1000, codec_args=MP3_PUSH)
    try:
        await wait_for(lambda: source_sending(server.mounts.get("studio")))
        await take_live(server, "an-binh")
        ep = SimulatedEndpoint(f"ws://127.0.0.1:{server.port}/zones/an-binh-1/ws", decode=True)
        async with aiohttp.ClientSession() as http:
            listening = asyncio.create_task(ep.run(http, seconds=3.0))
            head = ("PUT /live/junk HTTP/1.1\r\nContent-Type: audio/mpeg\r\n"
                    f"Authorization: Basic {basic(SOURCE_PASSWORD)}\r\n"
                    "Expect: 100-continue\r\n\r\n")
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(head.encode())
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100 Continue")
            rng = np.random.default_rng(7)
            writer.write(rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes())
            reply = await asyncio.wait_for(reader.read(4096), 10)
            assert reply.startswith(b"HTTP/1.1 400 ")
            assert b"cannot decode" in reply
            await closed(writer)
            report = await listening
        assert server.mounts.get("junk").session is None
        assert server.counters.get("sources_failed", mount="junk") == 1
        # the live stream carried on: every packet, still the tone
        assert report.error is None and report.gaps == 0 and report.packets >= 140
        assert dominant_hz(ep.decoder.pcm()[4800:]) == pytest.approx(1000, rel=0.01)  # type: ignore[union-attr]
    finally:
        good.kill()
        await good.wait()


async def test_a_dropped_source_falls_back_at_its_eof_and_the_mount_is_free_again(
    server: LoaServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base(server)}/api/v1/zones/huyen/requests", headers=auth(),
                             json={"source": {"kind": "tone", "freq_hz": 440},
                                   "priority": "fill"}) as resp:
            assert resp.status == 201
    push = await ffmpeg_push(source_url(server), freq_hz=1000, codec_args=MP3_PUSH)
    await wait_for(lambda: source_sending(server.mounts.get("studio")))
    await take_live(server, "an-binh")
    ep = SimulatedEndpoint(f"ws://127.0.0.1:{server.port}/endpoints/loa-002/ws")
    switched_at: list[float] = []
    ep.on_packet = lambda e, pkt: switched_at.append(time.monotonic()) if (
        pkt.priority == 10 and not switched_at) else None  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as http:
        listening = asyncio.create_task(ep.run(http, seconds=3.0))
        await wait_for(lambda: ep.report.packets > 25)
        assert ep.report.programmes[-1][2] == 80
        killed_at = time.monotonic()
        push.kill()
        await push.wait()
        report = await listening
    # while the listener listened (its 3 s): at the source's EOF, not after the 10 s a silent
    # source is given (how soon: the load test's cut_source scenario reports it)
    assert switched_at, "the zone never fell back to the fill programme"
    assert killed_at < switched_at[0]  # because the source went, not before
    assert report.gaps == 0
    # the mount can be taken again, and the zone rejoins it without a new request
    again = await ffmpeg_push(source_url(server), freq_hz=1000, codec_args=MP3_PUSH)
    try:
        await wait_for(lambda: server.engine.channels["an-binh-1"].on_air.priority == 80)
    finally:
        again.kill()
        await again.wait()


# LiveIngest: one byte stream into one LiveSource (shared by the push and the relay)


def live_source(clock: FakeClock | None = None) -> LiveSource:
    """A LiveSource deep enough to hold a whole test clip (nothing dropped for overflow)."""
    return LiveSource("live/test", clock or FakeClock(), Counters(), LiveSettings(2, 10, 1000))


def play_out(source: LiveSource, clock: FakeClock) -> np.ndarray:
    """Tick the source until it is no longer available; everything it played, in order."""
    out = []
    while source.available:
        clock.set_ns(clock.now_ns() + FRAME_NS)
        out.append(source.read(clock.now_ns())[0])  # type: ignore[index]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


CLIPS = {
    "mp3": (["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"], "mp3"),
    "ogg-opus": (["-c:a", "libopus", "-b:a", "64k", "-f", "ogg"], "ogg"),
    "aac": (["-c:a", "aac", "-b:a", "96k", "-f", "adts"], "aac"),
    "mp3-without-a-type": (["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"], None),
}


@pytest.mark.parametrize("clip", list(CLIPS))
async def test_an_ingest_decodes_on_its_thread_and_its_source_plays_all_of_it(
        tmp_path: Path, clip: str) -> None:
    args, fmt = CLIPS[clip]
    data = await tone_bytes(tmp_path / "clip", 1000, 2.0, args)
    clock = FakeClock()
    source = live_source(clock)
    ended: list[DecodeError | None] = []
    ingest = LiveIngest(source, format=fmt, label="test", on_end=ended.append)
    ingest.start()
    assert source.connected
    for i in range(0, len(data), 1000):  # arrives in pieces, as from a socket
        ingest.write(data[i : i + 1000])
        await asyncio.sleep(0)
    ingest.finish_input()
    await asyncio.wait_for(ingest.wait_ended(), 10)
    assert ended == [None] and ingest.error is None
    assert ingest.bytes_in == len(data) and ingest.frames_decoded == source.frames_in
    # the source has left, and still plays every frame it sent, then falls silent
    assert not source.connected and source.available
    pcm = play_out(source, clock)
    assert len(pcm) == source.frames_in * FRAME_SAMPLES >= 2 * 48000
    assert dominant_hz(pcm[4800:-4800]) == pytest.approx(1000, rel=0.01)
    await ingest.stop()  # after the end: nothing left to cut; the thread is joined
    assert not ingest.decoder_alive and len(play_out(source, clock)) == 0


async def test_garbage_ends_the_ingest_with_an_error_naming_the_source() -> None:
    source = live_source()
    ended: list[DecodeError | None] = []
    ingest = LiveIngest(source, format="mp3", label="/live/x", on_end=ended.append)
    ingest.start()
    ingest.write(bytes(range(256)) * 400)
    ingest.finish_input()
    await asyncio.wait_for(ingest.wait_ended(), 10)
    [error] = ended
    assert isinstance(error, DecodeError) and "/live/x" in str(error)
    assert not source.available
    await ingest.stop()


async def test_stop_cuts_the_source_and_joins_the_decoder_thread(tmp_path: Path) -> None:
    data = await tone_bytes(tmp_path / "clip.mp3", 1000, 2.0, ["-c:a", "libmp3lame"])
    source = live_source()
    ended: list[DecodeError | None] = []
    ingest = LiveIngest(source, format="mp3", label="test", on_end=ended.append)
    ingest.start()
    ingest.write(data[: len(data) // 2])  # the input never ends: the decoder waits for more
    await wait_for(lambda: source.frames_in > 10)
    assert ingest.decoder_alive
    await ingest.stop()
    assert not ingest.decoder_alive  # joined, not just asked to stop
    assert not source.connected and not source.available and len(source.jitter) == 0
    assert ended == []  # a stop is not an end of stream
    await ingest.stop()  # twice is harmless


async def test_a_full_feed_pauses_reading_until_the_decoder_catches_up(tmp_path: Path) -> None:
    data = await tone_bytes(tmp_path / "clip.mp3", 1000, 2.0, ["-c:a", "libmp3lame"])
    calls: list[str] = []
    ingest = LiveIngest(live_source(), format="mp3", label="test", feed_limit_bytes=4096,
                        pause_reading=lambda: calls.append("pause"),
                        resume_reading=lambda: calls.append("resume"))
    ingest.start()
    assert not ingest.write(data)  # far over the limit at once: the writer must stop reading
    assert not ingest.write(b"more")  # still full: paused once, not twice
    assert calls == ["pause"]
    await asyncio.wait_for(ingest.wait_writable(), 10)
    assert calls == ["pause", "resume"]
    await ingest.stop()


def test_an_ended_source_plays_out_below_its_target_and_without_trimming() -> None:
    clock = FakeClock()
    frames = [np.full(FRAME_SAMPLES, i / 1000, np.float32) for i in range(1, 121)]
    short = LiveSource("live/a", clock, Counters(), LiveSettings(5, 10, 200))
    short.connect()
    short.push_frames(frames[:3])  # fewer than the target: it would wait for more
    short.end()
    assert np.array_equal(play_out(short, clock), np.concatenate(frames[:3]))
    deep = LiveSource("live/b", clock, Counters(), LiveSettings(2, 10, 200))
    deep.connect()
    deep.push_frames(frames)  # a burst far deeper than the target: the drift trim's case
    deep.end()
    deep.push_frames(frames[:1])  # after the end: ignored
    assert np.array_equal(play_out(deep, clock), np.concatenate(frames))
    assert deep.jitter.trimmed == 0
    deep.connect()  # a new source starts afresh
    assert len(deep.jitter) == 0 and deep.jitter.target_frames == 2


# what listeners hear when a pushed source changes or ends (issue 12)


def two_tones(path: Path, first: tuple[int, float], second: tuple[int, float],
              rate: int = 44100) -> Path:
    """A WAV file of one tone then another, (Hz, seconds) each, made by the ffmpeg CLI."""
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"sine=frequency={first[0]}:sample_rate={rate}:duration={first[1]}",
         "-f", "lavfi", "-i",
         f"sine=frequency={second[0]}:sample_rate={rate}:duration={second[1]}",
         "-filter_complex", "[0:a][1:a]concat=n=2:v=0:a=1", str(path)],
        check=True)
    return path


def heard_tones(pcm: np.ndarray) -> tuple[dict[int, float], list[int]]:
    """What a listener heard of a sequence of tones, robust to underflow gaps cutting frames:
    the seconds of sound at each tone (rounded to 100 Hz; a frame's sounding 1 ms blocks
    count for its dominant tone), and the tones of the frames that mostly sound, in order."""
    seconds: dict[int, float] = {}
    order: list[int] = []
    for frame in pcm[: len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES].reshape(-1, FRAME_SAMPLES):
        sounding = np.abs(frame).reshape(-1, 48).max(axis=1) >= 0.01
        if not sounding.any():
            continue
        tone = round(dominant_hz(frame), -2)
        seconds[tone] = seconds.get(tone, 0.0) + sounding.sum() / 1000
        if sounding.sum() >= 15:
            order.append(tone)
    return seconds, order


def assert_heard(pcm: np.ndarray, *tones: tuple[int, float], trimmed: int = 0) -> None:
    """Each (Hz, seconds) tone heard in full and in order, and nothing else. In full: within
    30 ms, as the zone's Opus encoder starts afresh with the live programme and fades its first
    frame in (the decoder tests hold the decoding itself to the sample), less the ``trimmed``
    frames (20 ms each) a live source's jitter buffer dropped on purpose to bring its delay
    back down after a late frame (its ``jitter_trimmed`` counter: ``live_trimmed``)."""
    seconds, order = heard_tones(pcm)
    for hz, duration in tones:
        heard = seconds.get(hz, 0.0)
        assert duration - 0.03 - 0.02 * trimmed <= heard <= duration + 0.03, (seconds, trimmed)
    assert sum(seconds.values()) - sum(d for _, d in tones) < 0.03, seconds
    ranks = [[hz for hz, _ in tones].index(t) for t in order if t in dict(tones)]
    assert ranks == sorted(ranks), order


def live_trimmed(server: LoaServer, mount: str = "studio") -> int:
    """Frames the mount's jitter buffer dropped to bring its delay down (a paced push on a
    busy machine: a frame late, the target up, then the excess trimmed)."""
    return server.counters.get("jitter_trimmed", source=f"live/{mount}")


class LiveEar:
    """A native endpoint of ``an-binh-1`` that keeps every packet's (priority, decoded 20 ms)
    and stops listening a little after the zone has fallen back from the live mount."""

    def __init__(self, server: LoaServer) -> None:
        self.ep = SimulatedEndpoint(f"ws://127.0.0.1:{server.port}/zones/an-binh-1/ws",
                                    decode=True)
        self.heard: list[tuple[int, np.ndarray]] = []
        self.done = asyncio.Event()
        self.ep.on_packet = self._on_packet  # type: ignore[assignment]
        self._http = aiohttp.ClientSession()
        self.task = asyncio.create_task(self.ep.run(self._http, seconds=40, stop=self.done))

    def _on_packet(self, ep: SimulatedEndpoint, pkt: object) -> None:
        self.heard.append((pkt.priority, ep.decoder.chunks[-1]))  # type: ignore[attr-defined,union-attr]
        live = [i for i, (prio, _) in enumerate(self.heard) if prio == 80]
        if live and len(self.heard) - live[-1] > 10:  # fell back 10 packets ago
            self.done.set()

    async def fallen_back(self) -> np.ndarray:
        """Wait until the zone has fallen back; what the live mount played, 48 kHz mono."""
        try:
            await asyncio.wait_for(self.task, 45)
        finally:
            await self._http.close()
        assert self.done.is_set(), "the zone never fell back from the live mount"
        live = [i for i, (prio, _) in enumerate(self.heard) if prio == 80]
        # one unbroken stretch on air, from the first live packet to the fallback
        assert live == list(range(live[0], live[-1] + 1))
        return np.concatenate([chunk for prio, chunk in self.heard if prio == 80])


async def start_ear(server: LoaServer) -> LiveEar:
    await take_live(server, "an-binh")  # on air before the source connects: nothing missed
    ear = LiveEar(server)
    await wait_for(lambda: len(ear.heard) > 5)
    return ear


async def raw_source(server: LoaServer, content_type: str | None
                     ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A source client on a raw socket: ``PUT /live/studio`` answered ``100 Continue``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    head = ("PUT /live/studio HTTP/1.1\r\nHost: loa\r\n"
            f"Authorization: Basic {basic(SOURCE_PASSWORD)}\r\nExpect: 100-continue\r\n")
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    writer.write((head + "\r\n").encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100 Continue")
    return reader, writer


async def test_the_last_second_of_a_source_is_heard(server: LoaServer, tmp_path: Path) -> None:
    """Issue 12 (4): ffmpeg's default one-second Ogg pages; the source ends, what it sent is
    played to the end, then the zone falls back."""
    wav = await asyncio.to_thread(two_tones, tmp_path / "show.wav", (500, 2.0), (1000, 1.0))
    ear = await start_ear(server)
    push = await ffmpeg_push(source_url(server), input_file=wav, codec_args=[
        "-c:a", "libopus", "-b:a", "64k", "-flush_packets", "1", "-f", "ogg",
        "-content_type", "audio/ogg"])
    _, err = await asyncio.wait_for(push.communicate(), 20)
    assert push.returncode == 0, err.decode()
    # the whole programme, to its last second, in order
    pcm = await ear.fallen_back()
    await asyncio.to_thread(assert_heard, pcm, (500, 2.0), (1000, 1.0),
                            trimmed=live_trimmed(server))
    assert server.mounts.get("studio").session is None


async def test_mp3_pushed_without_a_content_type_is_heard_from_its_first_frame(
        server: LoaServer, tmp_path: Path) -> None:
    """Issue 12 (9): the format is sniffed from the bytes, not probed at the cost of audio."""
    wav = await asyncio.to_thread(two_tones, tmp_path / "show.wav", (500, 0.5), (1000, 1.0))
    ear = await start_ear(server)
    encoder = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-i", str(wav), "-ac", "2",
        "-c:a", "libmp3lame", "-b:a", "128k", "-flush_packets", "1", "-f", "mp3", "pipe:1",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)
    assert encoder.stdout is not None
    _, writer = await raw_source(server, content_type=None)
    while chunk := await encoder.stdout.read(4096):
        writer.write(chunk)  # the real encoder's bytes, as they come, in real time
    await encoder.wait()
    await closed(writer)
    # every frame of the first half second is heard, and all of the last second
    pcm = await ear.fallen_back()
    await asyncio.to_thread(assert_heard, pcm, (500, 0.5), (1000, 1.0),
                            trimmed=live_trimmed(server))


@pytest.mark.serial  # a live push heard against the wall clock: run alone
async def test_a_chained_ogg_push_whose_links_differ_plays_every_link(server: LoaServer,
                                                                      tmp_path: Path) -> None:
    """Issue 12 (3): the second link has another rate and channel count (Liquidsoap and ices
    start a link per track); both play, in order, with no gap at the join."""
    one = await asyncio.to_thread(make_tone_file, tmp_path / "one.ogg", 500, 1.0,
                                  ["-c:a", "libvorbis"], 44100, 2)
    two = await asyncio.to_thread(make_tone_file, tmp_path / "two.ogg", 1000, 1.0,
                                  ["-c:a", "libvorbis"], 22050, 1)
    chain = await asyncio.to_thread(lambda: one.read_bytes() + two.read_bytes())
    ear = await start_ear(server)
    _, writer = await raw_source(server, content_type="audio/ogg")
    writer.write(chain)  # all at once: the mount buffers it and plays it at its pace
    await closed(writer)
    pcm = await ear.fallen_back()
    await asyncio.to_thread(assert_heard, pcm, (500, 1.0), (1000, 1.0),
                            trimmed=live_trimmed(server))
    assert longest_quiet_ms(pcm) <= 20  # buffered whole: no gap at the join
    assert server.counters.get("sources_failed", mount="studio") == 0


async def test_shutdown_joins_every_decoder_thread(make_server) -> None:  # type: ignore[no-untyped-def]
    province = await make_server()
    district = await make_server()
    url = f"http://127.0.0.1:{province.port}/zones/huyen/stream.ogg"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base(province)}/api/v1/zones/huyen/requests", headers=auth(),
                             json={"source": {"kind": "tone", "freq_hz": 660},
                                   "priority": 50}) as resp:
            assert resp.status == 201
        async with http.post(f"{base(district)}/api/v1/zones/an-binh/requests", headers=auth(),
                             json={"source": {"kind": "relay", "url": url},
                                   "priority": 50}) as resp:
            assert resp.status == 201
    push = await ffmpeg_push(source_url(district), codec_args=MP3_PUSH)
    try:
        relay = next(iter(district.relays.values()))
        await wait_for(lambda: source_sending(district.mounts.get("studio"))
                       and relay.source.frames_in > 10)
        names = {"decode-/live/studio", f"decode-relay {url}"}
        assert names <= {t.name for t in threading.enumerate()}
        await district.stop()
        assert not names & {t.name for t in threading.enumerate()}  # joined, none left over
    finally:
        push.kill()
        await push.wait()
