"""Issue 12 (6): station links that are not a bare stream, relayed as stations publish them.

Playlists (M3U, PLS, XSPF) are followed and fail over to their next entry; a file on a web
server is read at the clock's pace and played once; HLS plays (VOD once, live from its live
edge) or says plainly what it cannot play. Test content comes from the ffmpeg CLI, served by a
local aiohttp server (and a local Icecast 2 for a live mount); what a listener hears is
decoded and checked.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from loa.app import LoaServer
from loa.codecs.live_decode import LiveDecoder
from loa.core.clock import NS_PER_S, FakeClock
from loa.core.counters import Counters
from loa.core.pcm import FRAME_NS
from loa.loadtest.bench import IcecastServer
from loa.loadtest.endpoint import SimulatedEndpoint
from loa.loadtest.target import free_port
from loa.playout.inputs.hls import HlsFollower, segment_format
from loa.playout.inputs.live import LiveSettings
from loa.playout.inputs.paced import LEAD_FRAMES
from loa.playout.inputs.relay import Relay, RelayState
from loa.playout.programme import EndReason
from loa.protocol.playlists import (
    HlsVariant,
    PlaylistError,
    choose_variant,
    is_hls,
    live_start,
    parse_hls,
    parse_m3u,
    parse_pls,
    parse_xspf,
    playlist_kind,
)
from tests.audio import FFMPEG, dominant_hz
from tests.codecs.test_live_decode import Pieces
from tests.server.test_api import call
from tests.server.test_ingest import assert_heard, wait_for

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TONES = ((500, 2.0), (1000, 2.0), (1500, 2.0))  # longer than the relay's lead (3 s)

# the formats, pure


def test_m3u_entries_in_order_resolved_against_the_playlist() -> None:
    text = ("\ufeff#EXTM3U\r\n#EXTINF:-1,Đài PT-TH tỉnh\r\nhttp://a.example/live.mp3\r\n\r\n"
            "# a comment\r\nmirror/live.mp3\r\nC:\\Music\\local.mp3\r\nrtsp://x/y\r\n")
    assert parse_m3u(text, "http://b.example/lists/radio.m3u") == [
        "http://a.example/live.mp3", "http://b.example/lists/mirror/live.mp3"]
    with pytest.raises(PlaylistError, match="no http"):
        parse_m3u("#EXTM3U\n#EXTINF:-1,nothing\n", "http://b.example/")


def test_pls_entries_in_the_order_of_their_numbers() -> None:
    text = ("[playlist]\nNumberOfEntries=3\nfile3=http://c.example/3\nTitle3=ba\n"
            "File1 = http://c.example/1\nFile2=two.mp3\nLength1=-1\nVersion=2\n")
    assert parse_pls(text, "http://c.example/x/list.pls") == [
        "http://c.example/1", "http://c.example/x/two.mp3", "http://c.example/3"]
    with pytest.raises(PlaylistError, match=r"\[playlist\]"):
        parse_pls("File1=http://c.example/1\n", "http://c.example/")


def test_xspf_locations_and_unsafe_xml_refused() -> None:
    text = ('<?xml version="1.0" encoding="UTF-8"?>\n<playlist xmlns="http://xspf.org/ns/0/" '
            'version="1"><trackList><track><location>http://d.example/live.mp3</location>'
            '</track><track><location>file:///x</location><location>b.ogg</location></track>'
            '</trackList></playlist>')
    assert parse_xspf(text, "http://d.example/p/") == ["http://d.example/live.mp3",
                                                        "http://d.example/p/b.ogg"]
    bomb = '<!DOCTYPE p [<!ENTITY a "aaaa">]><playlist xmlns="http://xspf.org/ns/0/"/>'
    with pytest.raises(PlaylistError):
        parse_xspf(bomb, "http://d.example/")


@pytest.mark.parametrize(("content_type", "url", "head", "kind"), [
    ("text/plain", "http://s/listen", b"#EXTM3U\n#EXTINF:-1,x\nhttp://s/a\n", "m3u"),
    ("application/octet-stream", "http://s/listen", b"[Playlist]\nFile1=http://s/a\n", "pls"),
    ("text/plain", "http://s/listen", b"http://s/live.mp3\r\n", "m3u"),
    ("audio/x-scpls", "http://s/listen", b"; SHOUTcast\n[playlist]\n", "pls"),
    ("application/xspf+xml; charset=UTF-8", "http://s/a.xspf", b"<?xml version='1.0'?>", "xspf"),
    ("text/plain", "http://s/radio.m3u?x=1", b"# my stations\nhttp://s/a\n", "m3u"),
    ("audio/x-mpegurl", "http://s/radio.m3u", b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb", None),
    ("audio/mpeg", "http://s/live", b"\xff\xfb\x90\x64\x00\x00\x00\x00", None),
    ("text/html", "http://s/index.html", b"<html><body>Radio</body></html>", None),
])
def test_a_playlist_is_told_by_its_body_its_type_or_its_extension(
        content_type: str, url: str, head: bytes, kind: str | None) -> None:
    assert playlist_kind(content_type, url, head) == kind


MASTER = """#EXTM3U
#EXT-X-STREAM-INF:BANDWIDTH=1280000,CODECS="avc1.4d401f,mp4a.40.2"
video/hi.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=48000,CODECS="mp4a.40.5"
audio/lo.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=128000,CODECS="mp4a.40.2"
audio/hi.m3u8
"""
MEDIA = """#EXTM3U
#EXT-X-VERSION:4
#EXT-X-TARGETDURATION:6
#EXT-X-MEDIA-SEQUENCE:120
#EXTINF:6.0,
s120.ts
#EXTINF:6.0,
s121.ts
#EXT-X-BYTERANGE:1000@0
#EXTINF:6.0,
all.aac
#EXT-X-BYTERANGE:500
#EXTINF:6.0,
all.aac
"""


def test_hls_master_and_media_playlists() -> None:
    assert is_hls(MASTER) and is_hls(MEDIA) and not is_hls("#EXTM3U\nhttp://a/b\n")
    master = parse_hls(MASTER, "http://h/tv/index.m3u8")
    assert master.is_master and len(master.variants) == 3
    # audio only, and the best of it: Loa re-encodes anyway
    assert choose_variant(master.variants).url == "http://h/tv/audio/hi.m3u8"
    assert choose_variant((HlsVariant("http://h/1", 3_000_000, "avc1,mp4a"),
                           HlsVariant("http://h/2", 800_000, ""))).url == "http://h/2"
    media = parse_hls(MEDIA, "http://h/tv/audio/hi.m3u8")
    assert [s.sequence for s in media.segments] == [120, 121, 122, 123]
    assert media.segments[0].url == "http://h/tv/audio/s120.ts"
    assert [s.byte_range for s in media.segments] == [None, None, (0, 1000), (1000, 500)]
    assert media.target_duration_s == 6 and not media.ended and media.encryption is None
    # live: the last segment that starts three target durations (18 s) from the end
    assert live_start(media) == 1  # RFC 8216 6.3.3
    vod = parse_hls(MEDIA + "#EXT-X-ENDLIST\n", "http://h/a.m3u8")
    assert vod.ended and live_start(vod) == 0
    locked = parse_hls(MEDIA.replace("#EXT-X-VERSION:4",
                                     '#EXT-X-KEY:METHOD=AES-128,URI="k.bin"'), "http://h/")
    assert locked.encryption == "AES-128"
    with pytest.raises(PlaylistError, match="TARGETDURATION"):
        parse_hls(MEDIA.replace("#EXT-X-TARGETDURATION:6", "#EXT-X-TARGETDURATION:six"),
                  "http://h/")
    assert segment_format(b"\x47" + bytes(187) + b"\x47", fragmented=False) == "mpegts"
    assert segment_format(b"ID3\x04", fragmented=False) is None


# content, served on loopback


def make_tones(path: Path, tones: tuple[tuple[int, float], ...], args: list[str]) -> Path:
    """One tone after another, (Hz, seconds) each, encoded by the ffmpeg CLI with ``args``."""
    inputs: list[str] = []
    for hz, seconds in tones:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency={hz}:sample_rate=44100:duration={seconds}"]
    joined = "".join(f"[{i}:a]" for i in range(len(tones)))
    subprocess.run([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *inputs,
                    "-filter_complex", f"{joined}concat=n={len(tones)}:v=0:a=1", "-ac", "2",
                    *args, str(path)], check=True)
    return path


MP3_FILE = ["-c:a", "libmp3lame", "-b:a", "128k"]


def hls_vod(folder: Path, tones: tuple[tuple[int, float], ...]) -> Path:
    """An HLS VOD stream (AAC in MPEG-TS, 1 s segments) made by the ffmpeg CLI's muxer."""
    folder.mkdir()
    return make_tones(folder / "index.m3u8", tones, [
        "-c:a", "aac", "-b:a", "64k", "-f", "hls", "-hls_time", "1", "-hls_playlist_type",
        "vod", "-hls_segment_filename", str(folder / "seg%03d.ts")])


def text(body: str, content_type: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(text=body, headers={"Content-Type": content_type})
    return handler


async def station(routes: dict[str, Handler], files: Path | None = None
                  ) -> tuple[web.AppRunner, int, Counter[str]]:
    """A station's web server on 127.0.0.1: ``routes``, and ``files`` under /files/ (a static
    server: Content-Length, ranges). Returns (runner to clean up, port, requests per path)."""
    hits: Counter[str] = Counter()

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        hits[request.path] += 1
        return await handler(request)

    app = web.Application(middlewares=[count])
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    if files is not None:
        app.router.add_static("/files/", files)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1], hits


# pacing, on a fake clock


async def play_on_fake_clock(url: str, frames: int
                             ) -> tuple[list[np.ndarray], Relay, Counters, list[int]]:
    """Relay ``url`` on a ``FakeClock``, ticking its programme until it ends (at most five
    times ``frames`` ticks): (what it played, the relay, its counters, the bytes it had read
    after each tick)."""
    clock = FakeClock()
    counters = Counters()
    played: list[np.ndarray] = []
    bytes_read: list[int] = []
    async with aiohttp.ClientSession() as http:
        relay = Relay(url, clock, counters, LiveSettings(2, 100, 200), http)
        relay.start()
        try:
            await wait_for(lambda: relay.paced.connected)
            for _ in range(5 * frames):  # bounded: it ends after ``frames``
                # what real time would have let happen before the tick: a frame decoded, and
                # after the input's end, the relay deciding that it has finished
                await relay.paced.ready()
                if not relay.paced.connected and not len(relay.paced):
                    await wait_for(lambda: relay.state is RelayState.COMPLETED)
                clock.set_ns(clock.now_ns() + FRAME_NS)
                if not relay.programme.pull(clock.now_ns()):
                    break
                played.append(relay.programme.frame)
                bytes_read.append(relay.bytes_in)
                await asyncio.sleep(0)  # a turn of the loop for the relay's writer
        finally:
            await relay.stop()
    return played, relay, counters, bytes_read


async def test_a_file_on_a_web_server_is_read_at_the_clock_pace_and_played_once(
        tmp_path: Path) -> None:
    tones = ((500, 4.0), (1000, 3.0), (1500, 3.0))
    mp3 = await asyncio.to_thread(make_tones, tmp_path / "show.mp3", tones, MP3_FILE)
    data = await asyncio.to_thread(mp3.read_bytes)
    expected = await asyncio.to_thread(lambda: list(LiveDecoder(Pieces(data), "mp3", "peer")))
    runner, port, hits = await station({}, tmp_path)
    try:
        played, relay, counters, bytes_read = await play_on_fake_clock(
            f"http://127.0.0.1:{port}/files/show.mp3", len(expected))
    finally:
        await runner.cleanup()
    assert relay.programme.completed and relay.state is RelayState.COMPLETED
    # all of it, once, in order, as the peer decodes it
    assert len(played) == len(expected)
    assert np.array_equal(np.concatenate(played), np.concatenate(expected))
    assert hits["/files/show.mp3"] == 1
    # read no faster than the clock plays it, plus the lead and the bytes in the decoder
    bytes_per_frame = len(data) / len(expected)
    ahead_frames = [read / bytes_per_frame - tick for tick, read in enumerate(bytes_read, 1)]
    assert max(ahead_frames) <= LEAD_FRAMES + 40 < len(expected) / 2
    assert counters.total("paced_underflows") == 0
    assert counters.total("paced_overflow_drops") == 0


async def test_a_file_whose_transfer_breaks_resumes_where_it_broke(tmp_path: Path) -> None:
    mp3 = await asyncio.to_thread(make_tones, tmp_path / "show.mp3", TONES, MP3_FILE)
    data = await asyncio.to_thread(mp3.read_bytes)
    expected = await asyncio.to_thread(lambda: list(LiveDecoder(Pieces(data), "mp3", "peer")))
    ranges: list[str] = []

    async def flaky(request: web.Request) -> web.StreamResponse:
        """The whole file with its length, cut at a third; a range of it, in full."""
        if "Range" in request.headers:
            ranges.append(request.headers["Range"])
            return web.FileResponse(mp3)
        resp = web.StreamResponse(headers={"Content-Type": "audio/mpeg",
                                           "Accept-Ranges": "bytes"})
        resp.content_length = len(data)
        await resp.prepare(request)
        await resp.write(data[: len(data) // 3])
        assert request.transport is not None
        request.transport.close()  # a 4G link dropping mid-file
        return resp

    runner, port, hits = await station({"/bulletin.mp3": flaky})
    try:
        played, relay, _, _ = await play_on_fake_clock(
            f"http://127.0.0.1:{port}/bulletin.mp3", len(expected))
    finally:
        await runner.cleanup()
    assert relay.state is RelayState.COMPLETED and relay.failures == 0
    assert len(ranges) == 1 and hits["/bulletin.mp3"] == 2
    # nothing lost, nothing twice: what the peer decodes of the whole file
    assert len(played) == len(expected)
    assert np.array_equal(np.concatenate(played), np.concatenate(expected))


async def test_a_live_hls_playlist_is_followed_from_its_live_edge_on_the_clock() -> None:
    clock = FakeClock()
    start_ns = clock.now_ns()
    freeze_s = 20.0  # the station's segmenter stops here
    loads: list[int] = []

    def published() -> int:
        """Segments 0..n-1 exist: ten at the start, one more every 2 s until the freeze."""
        elapsed_s = min((clock.now_ns() - start_ns) / NS_PER_S, freeze_s)
        return 10 + int(elapsed_s // 2)

    def playlist() -> str:
        newest = published()
        lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{newest - 6}"]
        for n in range(newest - 6, newest):
            lines += ["#EXTINF:2.0,", f"seg{n}.ts"]
        return "\n".join(lines) + "\n"

    async def reload(request: web.Request) -> web.StreamResponse:
        loads.append(clock.now_ns())
        return web.Response(text=playlist(), content_type="application/vnd.apple.mpegurl")

    async def segment(request: web.Request) -> web.StreamResponse:
        return web.Response(body=request.match_info["n"].encode())

    runner, port, hits = await station({"/live.m3u8": reload, "/seg{n}.ts": segment})
    got: list[bytes] = []
    try:
        async with aiohttp.ClientSession() as http:
            follower = HlsFollower(http, clock, f"http://127.0.0.1:{port}/live.m3u8", playlist())

            async def follow() -> None:
                async for chunk in follower.chunks():
                    got.append(chunk)

            task = asyncio.create_task(follow())
            for _ in range(600):  # 60 s of the fake clock at most
                if task.done():
                    break
                await clock.advance(NS_PER_S // 10)
            with pytest.raises(PlaylistError, match="stopped updating"):
                await task
    finally:
        await runner.cleanup()
    # from three target durations before the live edge, every segment once, in order
    assert got == [str(n).encode() for n in range(7, 20)]
    assert follower.skipped == 0 and not follower.ended
    # reloaded about once a target duration, never more than twice (RFC 8216 6.3.4)...
    elapsed_s = (loads[-1] - start_ns) / NS_PER_S
    assert elapsed_s / 2 - 1 <= len(loads) <= elapsed_s + 1
    # ... and it gave up after 10 s without a new segment, not before
    assert elapsed_s >= freeze_s + 10


# what a listener hears, in real time


class Ear:
    """A native endpoint of ``an-binh-1`` that keeps every packet's (priority, decoded 20 ms)
    and stops a little after the zone has fallen back from ``priority``; ``probe`` (if set)
    runs at each packet of ``priority``."""

    def __init__(self, server: LoaServer, priority: int = 50) -> None:
        self.priority = priority
        self.ep = SimulatedEndpoint(f"ws://127.0.0.1:{server.port}/zones/an-binh-1/ws",
                                    decode=True)
        self.heard: list[tuple[int, np.ndarray]] = []
        self.probe: Callable[[], None] | None = None
        self.done = asyncio.Event()
        self.ep.on_packet = self._on_packet  # type: ignore[assignment]
        self._http = aiohttp.ClientSession()
        self.task = asyncio.create_task(self.ep.run(self._http, seconds=40, stop=self.done))

    def _on_packet(self, ep: SimulatedEndpoint, pkt: object) -> None:
        prio = pkt.priority  # type: ignore[attr-defined]
        self.heard.append((prio, ep.decoder.chunks[-1]))  # type: ignore[union-attr]
        if prio == self.priority and self.probe is not None:
            self.probe()
        ours = [i for i, (p, _) in enumerate(self.heard) if p == self.priority]
        if ours and len(self.heard) - ours[-1] > 10:  # fell back 10 packets ago
            self.done.set()

    async def fallen_back(self) -> np.ndarray:
        """Wait until the zone has fallen back; what it heard at ``priority``, 48 kHz mono."""
        try:
            await asyncio.wait_for(self.task, 45)
        finally:
            await self._http.close()
        assert self.done.is_set(), "the zone never fell back"
        ours = [i for i, (p, _) in enumerate(self.heard) if p == self.priority]
        assert ours == list(range(ours[0], ours[-1] + 1))  # one unbroken stretch on air
        return np.concatenate([chunk for p, chunk in self.heard if p == self.priority])

    async def close(self) -> None:
        self.done.set()
        await asyncio.wait_for(self.task, 10)
        await self._http.close()


async def start_ear(server: LoaServer) -> Ear:
    ear = Ear(server)
    await wait_for(lambda: len(ear.heard) > 5)  # listening before the relay starts
    return ear


async def relay_request(server: LoaServer, url: str) -> tuple[int, list[EndReason]]:
    status, body = await call(server, "POST", "/api/v1/zones/an-binh/requests",
                              json={"source": {"kind": "relay", "url": url}, "priority": 50})
    assert status == 201, body
    rid = body["request"]["id"]
    reasons: list[EndReason] = []
    server.engine.requests[rid].on_end.append(lambda req, reason: reasons.append(reason))
    return rid, reasons


LINKS = {
    # a static MP3 file on a web server
    "mp3": ("/files/show.mp3", ["/files/show.mp3"]),
    # an M3U whose first entries are dead (nothing listening; 404): failover to the file
    "m3u": ("/radio.m3u", ["/radio.m3u", "/files/missing.mp3", "/files/show.mp3"]),
    # a PLS sent as text/plain (told by its body), its first entry dead
    "pls": ("/listen", ["/listen", "/files/show.mp3"]),
    # HLS VOD from ffmpeg's segmenter: AAC in MPEG-TS, 1 s segments (and each segment)
    "hls": ("/files/hls/index.m3u8", ["/files/hls/index.m3u8"]),
}


@pytest.mark.parametrize("link", list(LINKS))
async def test_a_station_link_plays_in_real_time_once_from_start_to_end(
        server: LoaServer, tmp_path: Path, link: str) -> None:
    path, fetched = LINKS[link]
    files = tmp_path / "www"
    files.mkdir()
    await asyncio.to_thread(make_tones, files / "show.mp3", TONES, MP3_FILE)
    await asyncio.to_thread(hls_vod, files / "hls", TONES)
    if link == "hls":
        fetched = fetched + [f"/files/hls/{p.name}" for p in
                             await asyncio.to_thread(sorted, (files / "hls").glob("*.ts"))]
    dead = f"http://127.0.0.1:{free_port()}/live.mp3"
    runner, port, hits = await station({
        "/radio.m3u": text(f"#EXTM3U\n#EXTINF:-1,Đài tỉnh\n{dead}\nfiles/missing.mp3\n"
                           "#EXTINF:-1,Bản tin\nfiles/show.mp3\n", "audio/x-mpegurl"),
        "/listen": text(f"[playlist]\nNumberOfEntries=2\nFile1={dead}\n"
                        "File2=/files/show.mp3\nVersion=2\n", "text/plain"),
    }, files)
    try:
        ear = await start_ear(server)
        rid, reasons = await relay_request(server, f"http://127.0.0.1:{port}{path}")
        relay = server.relays[rid]
        timeline: list[tuple[int, int]] = []  # (packets heard, bytes the relay has read)
        ear.probe = lambda: timeline.append((len(timeline) + 1, relay.bytes_in))
        pcm = await ear.fallen_back()
    finally:
        await runner.cleanup()
    # from start to end: every tone, in order, for its whole length, nothing else
    await asyncio.to_thread(assert_heard, pcm, *TONES)
    # once: the request completed, the zone fell back, the relay is gone; fetched once
    assert reasons == [EndReason.COMPLETED]
    assert rid not in server.relays and relay.state is RelayState.COMPLETED
    assert {p: hits[p] for p in fetched} == dict.fromkeys(fetched, 1)
    assert relay.failures == {"mp3": 0, "m3u": 2, "pls": 1, "hls": 0}[link]
    # in real time: on the listener's audio timeline, reading never ran further ahead of
    # what was heard than the lead (and the bytes inside the decoder), well short of all
    duration_s = sum(seconds for _, seconds in TONES)
    bytes_per_s = relay.bytes_in / duration_s
    ahead_s = max(read / bytes_per_s - heard * FRAME_NS / NS_PER_S for heard, read in timeline)
    # (HLS is read a whole 1 s segment at a time: up to one more; measured 4.2 s once on a
    # busy machine)
    segment_s = 1.0 if link == "hls" else 0.0
    assert ahead_s <= LEAD_FRAMES * FRAME_NS / NS_PER_S + 1.0 + segment_s < duration_s
    assert server.counters.total("paced_overflow_drops") == 0
    assert server.counters.total("jitter_overflow_drops") == 0


async def test_a_live_mount_behind_a_pls_and_icecasts_m3u(server: LoaServer) -> None:
    """A live Icecast 2 mount, linked as stations do: a PLS whose first entry is dead, whose
    second is the ``.m3u`` Icecast serves for the mount. It plays as a live stream (jitter
    buffer, no end), and says so in the status API."""
    ice = await asyncio.to_thread(IcecastServer, "hackme")  # writes its config: beside the loop
    await ice.start()
    push = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
        "sine=frequency=700:sample_rate=44100:duration=60", "-c:a", "libmp3lame", "-b:a",
        "128k", "-f", "mp3", "-content_type", "audio/mpeg",
        f"icecast://source:hackme@127.0.0.1:{ice.port}/vov1.mp3",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    dead = f"http://127.0.0.1:{free_port()}/vov1.mp3"
    runner, port, _ = await station({"/vov1.pls": text(
        f"[playlist]\nFile1={dead}\nFile2={ice.url}/vov1.mp3.m3u\nNumberOfEntries=2\n",
        "audio/x-scpls")})
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):  # bounded: 10 s for the mount to come up
                async with http.get(f"{ice.url}/status-json.xsl") as resp:
                    if "vov1.mp3" in await resp.text():
                        break
                await asyncio.sleep(0.1)
        ear = await start_ear(server)
        rid, reasons = await relay_request(server, f"http://127.0.0.1:{port}/vov1.pls")
        relay = server.relays[rid]
        await wait_for(lambda: sum(p == 50 for p, _ in ear.heard) >= 75)  # 1.5 s on air
        _, body = await call(server, "GET", "/api/v1/status")
        await ear.close()
        status = body["relays"][str(rid)]
        assert status["state"] == "playing" and status["kind"] == "stream"
        assert status["entry"] == f"{ice.url}/vov1.mp3" and status["failures"] == 1
        assert status["entries"] == [dead, f"{ice.url}/vov1.mp3"]
        heard = np.concatenate([c for p, c in ear.heard if p == 50])
        assert dominant_hz(heard[-24000:]) == pytest.approx(700, rel=0.01)
        assert relay.live.frames_in > 0 and relay.paced.frames_in == 0
        status_code, _ = await call(server, "DELETE", f"/api/v1/requests/{rid}")
        assert status_code == 200 and reasons == [EndReason.RELEASED]
    finally:
        push.kill()
        await push.wait()
        await runner.cleanup()
        await ice.stop()


async def test_what_hls_cannot_play_is_said_plainly(server: LoaServer) -> None:
    locked = ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=AES-128,URI=\"key.bin\"\n"
              "#EXTINF:2.0,\nseg0.ts\n#EXT-X-ENDLIST\n")
    runner, port, hits = await station(
        {"/locked.m3u8": text(locked, "application/vnd.apple.mpegurl")})
    try:
        rid, _ = await relay_request(server, f"http://127.0.0.1:{port}/locked.m3u8")
        relay = server.relays[rid]
        await wait_for(lambda: relay.failures >= 1)
        _, body = await call(server, "GET", "/api/v1/status")
    finally:
        await runner.cleanup()
    status = body["relays"][str(rid)]
    assert status["kind"] == "hls"
    assert "HLS encrypted with AES-128 is not supported" in status["last_error"]
    assert hits["/seg0.ts"] == 0  # nothing fetched that could not play
    assert not server.engine.requests[rid].programme.available  # the zone stays as it was
