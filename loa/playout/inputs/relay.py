"""Relay (tiếp sóng): play another station's link, whatever it turns out to be.

Provinces and VOV publish links of several kinds; the relay tells them apart by the response
(its ``Content-Type``, its first bytes, then the URL's extension: ``loa.protocol.playlists``):

- a **stream** (Icecast, SHOUTcast, another Loa; no ``Content-Length``): decoded as it comes
  into a `LiveSource`, whose jitter buffer keeps the delay small;
- a **file** on a web server (a ``Content-Length``): read no faster than it plays, into
  `PacedFrames` (every frame plays, nothing is trimmed), once, to its end;
- an **M3U or PLS playlist**: its entries take its place and play in order; an entry that
  fails gives way to the next (failover), nested playlists included;
- **HLS** (an M3U8 with ``#EXT-X-`` tags): its segments are followed by `HlsFollower` and
  paced like a file; a finished (VOD) playlist plays once, a live one for as long as it runs.

Each input is decoded by a `LiveIngest` on its own thread. The relay ends by itself only
after a pass through its entries that played a file (or VOD) to its end: its programme plays
out what it holds, then ends (its requests end "completed", the zones fall back). A stream
never ends a relay: when every entry has failed in a row, the relay waits its backoff on the
injected clock and starts over, the playlist fetched afresh. A connection the fetch policy
refuses (``[network]``, `loa.playout.outbound`: loopback and private addresses by default) is
such a failure, backoff and all, and ``last_error`` names the address and why.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator

import aiohttp

from loa.codecs.decode import DecodeError, format_for_content_type
from loa.core.clock import NS_PER_S, Clock
from loa.core.counters import Counters
from loa.core.fetch_policy import refusal_in
from loa.core.lifecycle import cancel_and_wait
from loa.core.pcm import SILENCE, Samples
from loa.playout.inputs.hls import HlsFollower, beside_if_large, read_limited
from loa.playout.inputs.ingest import FEED_LIMIT_BYTES, FrameSink, LiveIngest
from loa.playout.inputs.live import LiveSettings, LiveSource
from loa.playout.inputs.paced import PacedFrames
from loa.playout.programme import Programme, ProgrammeKind
from loa.protocol.playlists import (
    MAX_PLAYLIST_BYTES,
    SNIFF_BYTES,
    PlaylistError,
    decode_text,
    is_hls,
    parse_playlist,
    playlist_kind,
)

log = logging.getLogger(__name__)

# A session that played this long counts as healthy: the next failure starts backoff afresh.
HEALTHY_SESSION_NS = 10 * NS_PER_S
TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_read=10)
# A paced input is handed to its decoder in pieces this size, each once there is room: the
# bytes in flight (feed and decoder) stay well under a second of audio at usual bit rates.
PACED_PIECE_BYTES = 2048
PACED_FEED_BYTES = 4096
MAX_NESTED_PLAYLISTS = 4  # a playlist that lists itself, or playlists of playlists of...
MAX_ENTRIES = 100
MAX_RESUMES = 3  # a file's transfer broken this many times over is given up
# What ends one entry's session and lets the relay try the next.
FAILURES = (TimeoutError, aiohttp.ClientError, DecodeError, OSError, PlaylistError)


class Backoff:
    """Exponential backoff with full jitter in [delay*(1-jitter), delay]; pure, seedable."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0, factor: float = 2.0,
                 jitter: float = 0.5, rng: random.Random | None = None) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._delay_s = initial_s

    def next_delay_ns(self) -> int:
        """The next wait in ns (jittered), then grow the base delay by ``factor`` up to ``max_s``.
        """
        delay = self._delay_s * (1 - self.jitter * self._rng.random())
        self._delay_s = min(self._delay_s * self.factor, self.max_s)
        return int(delay * NS_PER_S)

    def reset(self) -> None:
        """Back to ``initial_s`` (after a healthy session)."""
        self._delay_s = self.initial_s


class RelayState(enum.StrEnum):
    """What a relay is doing, as the status API shows it."""

    CONNECTING = "connecting"  # fetching an entry (a playlist, a stream, a file, HLS)
    PLAYING = "playing"  # an input is being decoded
    WAITING = "waiting"  # every entry failed: waiting its backoff before starting over
    COMPLETED = "completed"  # played its file(s) to the end: the programme plays out and ends
    STOPPED = "stopped"


class RelaySource:
    """The relay programme's frames: a stream's from the `LiveSource`, a file's or HLS's from
    the `PacedFrames`. What an input that has ended left in either plays out before the next
    input's frames. Never pausable (a preempted relay keeps its pace and rejoins where it has
    got to). ``read`` gives silence between inputs, and None once the relay has finished and
    all is played: its programme then ends."""

    pausable = False

    def __init__(self, live: LiveSource, paced: PacedFrames) -> None:
        self.live = live
        self.paced = paced
        self.finished = False  # set by the relay: no input will follow

    @property
    def available(self) -> bool:
        """Playing or about to (a finished relay stays on until ``read`` says it is over)."""
        return self.finished or self.live.available or self.paced.available

    @property
    def connected(self) -> bool:
        """An input is feeding one of the two."""
        return self.live.connected or self.paced.connected

    @property
    def frames_in(self) -> int:
        """Frames decoded into either, so far."""
        return self.live.frames_in + self.paced.frames_in

    def read(self, now_ns: int) -> tuple[Samples, int] | None:
        """This tick's frame: an ended input's rest first, then the input playing; silence
        between inputs; None once the relay has finished and nothing is left."""
        paced, live = self.paced, self.live
        if len(paced) and not paced.connected:  # the rest of an input that has ended
            return paced.read(now_ns)
        if live.connected or live.ending:
            return live.read(now_ns)
        if paced.connected:
            return paced.read(now_ns)
        if self.finished:
            return None
        return SILENCE, now_ns

    def close(self) -> None:
        self.live.close()
        self.paced.close()


class Relay:
    """Keeps a station's link playing into its programme until stopped, or until the file(s)
    it names have played once (see the module).

    ``describe()`` says what it does (``RelayState``), which entry it plays and of which kind
    ("stream", "file", "hls"), and its last error: a link Loa cannot play (an encrypted HLS
    stream, a playlist of no http(s) entry) is named there. Raises ValueError for a URL that
    is not http(s).
    """

    def __init__(
        self,
        url: str,
        clock: Clock,
        counters: Counters,
        live: LiveSettings,
        http: aiohttp.ClientSession,
        name: str | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"relay URL must be http:// or https://, not {url!r}")
        self.url = url
        self._clock = clock
        self._counters = counters
        self._http = http
        self.backoff = backoff or Backoff()
        self.live = LiveSource(f"relay/{url}", clock, counters, live)
        self.paced = PacedFrames(f"relay/{url}", clock, counters, live)
        self.source = RelaySource(self.live, self.paced)
        self.programme = Programme(name or f"Tiếp sóng {url}", ProgrammeKind.RELAY, self.source)
        self.state = RelayState.CONNECTING
        self.entries: list[str] = [url]  # the link, or what its playlist(s) list
        self.entry = url  # the one being played (or tried)
        self.kind: str | None = None  # what that entry is: "stream", "file", "hls"
        self.connects = 0
        self.failures = 0
        self.last_error = ""
        self._bytes_done = 0  # bytes handed to the decoders of inputs that have ended
        self._current: LiveIngest | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def bytes_in(self) -> int:
        """Bytes of audio read from the network and handed to a decoder, so far."""
        return self._bytes_done + (self._current.bytes_in if self._current is not None else 0)

    def start(self) -> None:
        """Start ``run`` as a task."""
        self._task = asyncio.create_task(self.run(), name=f"relay {self.url}")

    async def stop(self) -> None:
        """Cancel the task and wait for it (its decoder thread joined), and cut the source."""
        await cancel_and_wait(self._task)
        self._task = None
        self.live.disconnect()
        self.paced.disconnect()
        if self.state is not RelayState.COMPLETED:
            self.state = RelayState.STOPPED

    async def run(self) -> None:
        """Play the entries in order, each until it ends or fails, then the next; until
        cancelled, or until a pass has played a finite input to its end (then the source is
        marked finished and this returns). When every entry has failed in a row, wait a
        backoff delay on the injected clock and start over. A session longer than 10 s resets
        the backoff; every failure counts in ``relay_failures``."""
        entries = [self.url]
        index = failed_in_row = nested = 0
        completed = False  # this pass played a file (or VOD) to its end
        while True:
            if index >= len(entries):  # the end of a pass
                if completed:
                    self.state = RelayState.COMPLETED
                    self.source.finished = True
                    log.info("relay %s: played to its end", self.url)
                    return
                index = 0  # streams: round again
            self.entry = entries[index]
            self.state = RelayState.CONNECTING
            started_ns = self._clock.now_ns()
            outcome: list[str] | bool | Exception
            try:
                outcome = await self._play(self.entry)
            except FAILURES as exc:
                outcome = exc
            if isinstance(outcome, list):  # a playlist: its entries take its place
                nested += 1
                if nested <= MAX_NESTED_PLAYLISTS:
                    entries[index : index + 1] = outcome
                    del entries[MAX_ENTRIES:]
                    self.entries = list(entries)
                    continue
                outcome = PlaylistError(f"playlists nested more than {MAX_NESTED_PLAYLISTS} deep")
            if outcome is True:  # a finite input, played to its end
                completed = True
                failed_in_row = 0
                self.backoff.reset()
                index += 1
                continue
            self.last_error = "stream ended" if outcome is False else _failure(outcome)
            self.failures += 1
            self._counters.inc("relay_failures")
            if self._clock.now_ns() - started_ns > HEALTHY_SESSION_NS:
                self.backoff.reset()
                failed_in_row = 0
            failed_in_row += 1
            index += 1
            if failed_in_row < len(entries):
                log.warning("relay %s: %s: %s; trying the next entry", self.url, self.entry,
                            self.last_error)
                continue
            delay_ns = self.backoff.next_delay_ns()
            self.state = RelayState.WAITING
            log.warning("relay %s: %s; reconnecting in %.1f s", self.url, self.last_error,
                        delay_ns / NS_PER_S)
            await self._clock.sleep_until(self._clock.now_ns() + delay_ns)
            entries, self.entries = [self.url], [self.url]  # the playlist fetched afresh
            index = failed_in_row = nested = 0
            completed = False

    async def _play(self, url: str) -> list[str] | bool:
        """One entry: a playlist's entries (to play in its place); True for a file or a
        finished HLS stream played to its end; False for a stream that ended. Raises one of
        ``FAILURES``."""
        async with self._http.get(url, timeout=TIMEOUT, headers={"Icy-MetaData": "0"}) as resp:
            if resp.status != 200:
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status,
                                                  message=f"HTTP {resp.status}")
            ctype = resp.headers.get("Content-Type", "")
            base_url = str(resp.url)  # after redirects: what relative entries resolve against
            head = await _head(resp)
            kind = playlist_kind(ctype, base_url, head)
            if kind is None and resp.content_length is None:
                self.kind = "stream"
                log.info("relay %s: stream (%s)", url, ctype or "unknown type")
                await self._ingest(url, self.live, _format(ctype), _body(resp, head))
                return False  # a stream that ends is a failure: the next entry, or backoff
            if kind is None:
                self.kind = "file"
                log.info("relay %s: file of %d bytes (%s)", url, resp.content_length,
                         ctype or "unknown type")
                await self._ingest(url, self.paced, _format(ctype),
                                   self._file_body(url, resp, head))
                return True
            data = await read_limited(resp, MAX_PLAYLIST_BYTES, head)
        if kind == "xspf":  # XML: its parser loads with the first one (~4 ms): beside the loop
            text, entries = await asyncio.to_thread(_read_playlist, kind, data, base_url)
        else:
            text, entries = await beside_if_large(len(data), _read_playlist, kind, data,
                                                  base_url)
        if entries is None:
            return await self._hls(url, base_url, text)
        log.info("relay %s: %s playlist of %d entries", url, kind.upper(), len(entries))
        return entries

    async def _file_body(self, url: str, resp: aiohttp.ClientResponse, head: bytes
                         ) -> AsyncGenerator[bytes, None]:
        """A file's bytes: ``head``, the rest of ``resp``, and if the connection breaks
        before the end, the rest from where it broke: a ``Range`` request, when the server
        offers ranges (``Accept-Ranges: bytes``), at once, up to ``MAX_RESUMES`` times. Raises
        what broke the transfer when it cannot resume."""
        total = resp.content_length
        resumable = resp.headers.get("Accept-Ranges", "").lower() == "bytes"
        got = len(head)
        if head:
            yield head
        current = resp
        try:
            for resumes in range(MAX_RESUMES + 1):  # bounded: each pass is one request
                if resumes:
                    if current is not resp:
                        current.release()
                    current = await self._http.get(
                        url, timeout=TIMEOUT, headers={"Range": f"bytes={got}-"})
                    if current.status != 206 or not current.headers.get(
                            "Content-Range", "").startswith(f"bytes {got}-"):
                        raise aiohttp.ClientResponseError(
                            current.request_info, (), status=current.status,
                            message=f"cannot resume {url} at byte {got} "
                                    f"(HTTP {current.status})")
                    log.warning("relay %s: resumed at byte %d of %s", self.url, got, total)
                try:
                    async for chunk in current.content.iter_any():
                        got += len(chunk)
                        yield chunk
                    return
                except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError,
                        TimeoutError) as exc:
                    if not resumable or total is None or resumes == MAX_RESUMES:
                        raise
                    log.warning("relay %s: %s broke at byte %d of %d (%s)", self.url, url,
                                got, total, exc)
        finally:
            if current is not resp:
                current.release()

    async def _hls(self, url: str, base_url: str, text: str) -> bool:
        self.kind = "hls"
        follower = HlsFollower(self._http, self._clock, base_url, text)
        chunks = follower.chunks()
        async with contextlib.aclosing(chunks):
            first = await anext(chunks, None)  # fetched before the decoder starts: its format
            if first is None:
                raise PlaylistError(f"the HLS playlist {follower.media_url} has no segment")
            log.info("relay %s: HLS, %s segments", url, follower.format or "packed audio")
            await self._ingest(url, self.paced, follower.format, _after(first, chunks))
        return follower.ended

    async def _ingest(self, url: str, sink: FrameSink, fmt: str | None,
                      chunks: AsyncGenerator[bytes, None]) -> None:
        """Decode ``chunks`` into ``sink`` until they end or fail; what arrived before a
        failure plays out all the same. Into ``self.paced``, each piece waits for room."""
        paced = sink is self.paced
        ingest = LiveIngest(sink, format=fmt, label=f"relay {url}",
                            feed_limit_bytes=PACED_FEED_BYTES if paced else FEED_LIMIT_BYTES,
                            # a live stream nobody hears is parsed, not decoded (LiveSource)
                            demand=None if paced else self.live.demand)
        self.connects += 1
        self.state = RelayState.PLAYING
        self._current = ingest
        ingest.start()
        lost: Exception | None = None
        try:
            try:
                async with contextlib.aclosing(chunks):
                    async for chunk in chunks:
                        step = PACED_PIECE_BYTES if paced else len(chunk)
                        for at in range(0, len(chunk), step):
                            if paced:
                                await self.paced.wait_room()
                            if ingest.ended:
                                break
                            if not ingest.write(chunk[at : at + step]):
                                await ingest.wait_writable()
                        if ingest.ended:
                            break
            except (TimeoutError, aiohttp.ClientError, OSError, PlaylistError) as exc:
                lost = exc  # what arrived before the cut still plays out
            ingest.finish_input()
            await ingest.wait_ended()  # the decoder hands over the tail of the input
        finally:
            await ingest.stop()  # joins the decoder thread (cuts the source if cancelled)
            self._bytes_done += ingest.bytes_in
            self._current = None
        if ingest.error is not None:
            raise ingest.error
        if lost is not None:
            raise lost

    def describe(self) -> dict[str, object]:
        """Status snapshot: URL, state, the entries (the link, or what its playlists list),
        the entry playing and its kind, connected, connects, failures, bytes in, last error."""
        return {"url": self.url, "state": self.state.value, "entries": list(self.entries),
                "entry": self.entry, "kind": self.kind, "connected": self.source.connected,
                "connects": self.connects, "failures": self.failures, "bytes_in": self.bytes_in,
                "last_error": self.last_error}


async def _head(resp: aiohttp.ClientResponse) -> bytes:
    """The first ``SNIFF_BYTES`` of a body or more (what has arrived), fewer at its end."""
    head = b""
    while len(head) < SNIFF_BYTES:  # bounded: each read brings at least one byte
        chunk = await resp.content.readany()
        if not chunk:
            break
        head += chunk
    return head


async def _body(resp: aiohttp.ClientResponse, head: bytes) -> AsyncGenerator[bytes, None]:
    """``head`` (already read), then the rest of the body as it arrives."""
    if head:
        yield head
    async for chunk in resp.content.iter_any():
        yield chunk


async def _after(first: bytes, rest: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    yield first
    async for chunk in rest:
        yield chunk


def _read_playlist(kind: str, data: bytes, base_url: str) -> tuple[str, list[str] | None]:
    """(the playlist's text, its entries), the entries None for HLS. Raises PlaylistError."""
    text = decode_text(data)
    if kind == "m3u" and is_hls(text):
        return text, None
    return text, parse_playlist(kind, text, base_url)


def _failure(exc: Exception) -> str:
    """What an entry's failure says in ``last_error``: a connection the fetch policy refused
    as "relay to 10.0.0.5 refused: private address; allow it in [network] fetch_allow"."""
    refused = refusal_in(exc)
    if refused is not None:
        return refused.explain("relay to")
    return str(exc) or type(exc).__name__


def _format(content_type: str) -> str | None:
    """The demuxer for a response's ``Content-Type``; None to sniff the bytes (a file server's
    generic type, say)."""
    try:
        return format_for_content_type(content_type)
    except DecodeError:
        return None
