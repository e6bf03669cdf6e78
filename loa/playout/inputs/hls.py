"""Following an HLS stream (RFC 8216) for a relay: playlists and segments over aiohttp.

The relay hands the segments' bytes, in order, to a ``LiveIngest`` (MPEG-TS, fragmented MP4
after its initialisation section, or packed ADTS/MP3 audio decode as one continuous stream on
the ingest's thread), paced into a ``PacedFrames`` buffer. Nothing here decodes or blocks:
the playlists are parsed by ``loa.protocol.playlists`` (small texts, on the loop) and every
fetch is awaited.

A finished playlist (VOD, ``#EXT-X-ENDLIST``) plays from its first segment to its last, once.
A live one starts three target durations from its end (RFC 8216 §6.3.3) and is reloaded as
§6.3.4 asks: a target duration after a load that brought new segments, half of one after a
load that did not; one that brings nothing new for ``STALLED_TARGETS`` target durations
(at least ``STALLED_MIN_S``) has stopped, and the relay fails over. What Loa does not play is
said plainly in the error: encrypted segments (``#EXT-X-KEY``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from typing import ParamSpec, TypeVar

import aiohttp

from loa.core.clock import NS_PER_S, Clock
from loa.protocol.playlists import (
    MAX_PLAYLIST_BYTES,
    HlsPlaylist,
    PlaylistError,
    choose_variant,
    decode_text,
    live_start,
    parse_hls,
)

log = logging.getLogger(__name__)

MAX_SEGMENT_BYTES = 16 * 1024 * 1024  # a 10 s segment of 320 kb/s audio is 400 KiB
STALLED_TARGETS = 3
STALLED_MIN_S = 10.0
TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_read=10)
FETCH_TRIES = 2
INLINE_PARSE_BYTES = 16 * 1024  # a playlist this small parses in well under a millisecond
P = ParamSpec("P")
T = TypeVar("T")
_TS_PACKET = 188


async def read_limited(resp: aiohttp.ClientResponse, limit: int, head: bytes = b"") -> bytes:
    """The rest of a response's body after ``head`` (bytes already read), whole. Raises
    PlaylistError past ``limit`` bytes (aiohttp.ClientError, TimeoutError from the read)."""
    parts = [head]
    size = len(head)
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise PlaylistError(f"{resp.url}: over {limit // 1024} KiB, too large to follow")
        parts.append(chunk)
    return b"".join(parts)


async def beside_if_large(size: int, fn: Callable[P, T], *args: P.args,
                          **kwargs: P.kwargs) -> T:
    """``fn(*args)``: a pure parser of a text of ``size`` bytes, run on the loop when the text
    is small, beside it when it is large (a long VOD playlist takes tens of ms to parse)."""
    if size <= INLINE_PARSE_BYTES:
        return fn(*args, **kwargs)
    return await asyncio.to_thread(fn, *args, **kwargs)


def _parse_hls_bytes(data: bytes, url: str) -> HlsPlaylist:
    return parse_hls(decode_text(data), url)


def segment_format(data: bytes, fragmented: bool) -> str | None:
    """The demuxer for an HLS stream's bytes: "mp4" after an ``#EXT-X-MAP`` section, "mpegts"
    for transport-stream packets (sync byte 0x47 every 188 bytes), None for packed audio (ADTS
    or MP3 behind an ID3 tag: the live decoder sniffs it)."""
    if fragmented:
        return "mp4"
    if data[:1] == b"\x47" and (len(data) <= _TS_PACKET or data[_TS_PACKET] == 0x47):
        return "mpegts"
    return None


class HlsFollower:
    """One HLS stream's media bytes, in order: ``chunks()`` yields the initialisation section
    (if any) and then each segment, whole, reloading a live playlist as it goes.

    ``url`` and ``text`` are the playlist already fetched (master or media). Once the first
    chunk is out, ``format`` names its demuxer (``segment_format``). ``ended`` turns True when
    the last segment of a finished playlist has been yielded. Raises PlaylistError for what
    cannot be followed (not HLS, encrypted, a stalled live playlist, a segment over
    ``MAX_SEGMENT_BYTES``), aiohttp.ClientError or TimeoutError for a fetch that fails.
    """

    def __init__(self, http: aiohttp.ClientSession, clock: Clock, url: str, text: str) -> None:
        self._http = http
        self._clock = clock
        self.url = url
        self._text = text
        self.media_url = url
        self.format: str | None = None
        self.ended = False
        self.segments = 0  # segments fetched
        self.skipped = 0  # segments gone from a live playlist before they could be fetched
        self.target_duration_s = 0.0

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """The stream's bytes, a segment at a time (see the class)."""
        playlist = await beside_if_large(len(self._text), parse_hls, self._text, self.url)
        if playlist.is_master:
            variant = choose_variant(playlist.variants)
            self.media_url = variant.url
            log.info("HLS %s: variant %s (%d b/s, %s)", self.url, variant.url, variant.bandwidth,
                     variant.codecs or "codecs not given")
            playlist = await self._load()
            if playlist.is_master:
                raise PlaylistError(f"HLS variant {variant.url} is a master playlist again")
        self._check(playlist)
        self.target_duration_s = playlist.target_duration_s
        if playlist.map_url is not None:
            self.format = "mp4"
            yield await self._get(playlist.map_url, None, MAX_SEGMENT_BYTES)
        start = live_start(playlist)
        next_seq = playlist.segments[start].sequence if playlist.segments else 0
        loaded_ns = last_new_ns = self._clock.now_ns()
        while True:
            segments = playlist.segments
            if segments and segments[0].sequence > next_seq:
                self.skipped += segments[0].sequence - next_seq  # the live window moved on
                log.warning("HLS %s: %d segments gone before they were fetched",
                            self.media_url, segments[0].sequence - next_seq)
                next_seq = segments[0].sequence
            fresh = [s for s in segments if s.sequence >= next_seq]
            for seg in fresh:
                data = await self._get(seg.url, seg.byte_range, MAX_SEGMENT_BYTES)
                if self.format is None and self.segments == 0:
                    self.format = segment_format(data, fragmented=False)
                self.segments += 1
                next_seq = seg.sequence + 1
                yield data
            if playlist.ended:
                self.ended = True
                return
            target_ns = int(playlist.target_duration_s * NS_PER_S)
            if fresh:
                last_new_ns = loaded_ns
            elif loaded_ns - last_new_ns > max(STALLED_TARGETS * target_ns,
                                               int(STALLED_MIN_S * NS_PER_S)):
                raise PlaylistError(f"the live HLS playlist {self.media_url} stopped updating")
            await self._clock.sleep_until(loaded_ns + (target_ns if fresh else target_ns // 2))
            loaded_ns = self._clock.now_ns()
            playlist = await self._load()
            self._check(playlist)

    async def _load(self) -> HlsPlaylist:
        data = await self._get(self.media_url, None, MAX_PLAYLIST_BYTES)
        return await beside_if_large(len(data), _parse_hls_bytes, data, self.media_url)

    def _check(self, playlist: HlsPlaylist) -> None:
        if playlist.encryption is not None:
            raise PlaylistError(f"HLS encrypted with {playlist.encryption} is not supported "
                                f"({self.media_url})")

    async def _get(self, url: str, byte_range: tuple[int, int] | None, limit: int) -> bytes:
        """A playlist or segment, whole; a transfer that breaks is tried again, once."""
        for attempt in range(FETCH_TRIES):  # bounded
            try:
                return await self._get_once(url, byte_range, limit)
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError,
                    TimeoutError) as exc:
                if attempt == FETCH_TRIES - 1:
                    raise
                log.warning("HLS %s: fetching %s failed (%s); again", self.url, url, exc)
        raise AssertionError("unreachable")

    async def _get_once(self, url: str, byte_range: tuple[int, int] | None, limit: int
                        ) -> bytes:
        headers = {}
        if byte_range is not None:
            offset, length = byte_range
            headers["Range"] = f"bytes={offset}-{offset + length - 1}"
        async with self._http.get(url, timeout=TIMEOUT, headers=headers) as resp:
            if resp.status not in (200, 206):
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status,
                                                  message=f"HTTP {resp.status} for {url}")
            data = await read_limited(resp, limit)
        if byte_range is not None and resp.status == 200:  # the server sent the whole file
            data = data[byte_range[0] : byte_range[0] + byte_range[1]]
        return data
