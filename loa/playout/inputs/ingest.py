"""One live input's way in: a byte stream from a socket to frames in a `LiveSource`.

The Icecast-style push (``source_session.IngestSession``) and the relay (``relay.Relay``)
differ in how the bytes arrive (a raw transport; an HTTP client response) and share
everything after that, here: the bounded `ByteFeed` the loop writes into, the thread that decodes it
(``LiveDecoder``: sniffing, chained Ogg links, format changes), the decoded frames handed to the
`LiveSource` on the loop, back-pressure when the decoder falls behind, and the end:

- the input ends (``finish_input``): the decoder decodes what was received, the source plays it
  out (``LiveSource.end``), and ``on_end(None)`` follows on the loop;
- the bytes are not audio, or stop decoding: ``on_end(error)``, the same way;
- ``stop()`` (a released relay, shutdown): the source is cut at once, and the decoder thread is
  ended and joined beside the loop, so no decoder thread outlives its source.

Frames cross to the loop in batches, never held back. A sink that takes frames from any
thread (one with ``offer_frames``: a `LiveSource`) is offered each batch by the decoder thread
directly: it stamps the arrival and keeps the batch until the tick looks, and the loop is not
woken at all. Any other sink (a relay's ``PacedFrames``): the thread appends what it decoded
to a list and wakes the loop (``call_soon_threadsafe``) only when no wake-up is pending;
everything appended before the loop gets to it goes in the same delivery. Either way the first
frame is there as early as it was with one call a frame, instead of a queue of one callback
per 20 ms frame per source.

The bytes come one of two ways. Written on the loop (``write``: a relay's HTTP response, a
source whose connection the loop must read, TLS), into a bounded `ByteFeed` the thread reads.
Or read by the thread itself from the connection (``read_from``: a pushed source's plain TCP
socket, ``source_socket.SourceSocket``): then neither the bytes nor the frames wake the loop.

With a ``DecodeDemand`` (a live stream's: ``LiveSource.demand``), a source no zone takes, or
that nobody hears, is read and parsed but not decoded; its packets still count as arrivals (an
empty batch at most every ``HEARTBEAT_NS``), so it stays connected and is not taken for
stalled.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from loa.codecs.decode import ByteFeed, DecodeError
from loa.codecs.demand import DecodeDemand
from loa.codecs.live_decode import LiveDecoder, Reader
from loa.core.pcm import Samples

log = logging.getLogger(__name__)

FEED_LIMIT_BYTES = 256 * 1024  # past this the writer pauses reading: TCP pushes back
JOIN_TIMEOUT_S = 5.0  # a decoder thread ends at its next frame; this only bounds a stuck one
# A paused decoder tells the loop its input is alive at the first empty batch (a packet or a
# read) this long after the last it told (ns): well inside the source's stall time (3 s), also
# for a sender that sends a burst a second (an MP3 read a second: a count of batches would
# have said so once every ten seconds).
HEARTBEAT_NS = 250_000_000


class FrameSink(Protocol):
    """Where an ingest puts its frames, on the loop: a `LiveSource` (a live stream, through its
    jitter buffer), or a relay's ``PacedFrames`` (a file or HLS, read ahead at the clock's
    pace). ``connect`` as the input starts, ``push_frames`` as frames are decoded (a batch
    in decoding order, perhaps empty: input arrived, nothing decoded from it), then ``end``
    (the input is over: what it sent plays out) or ``disconnect`` (cut now)."""

    def connect(self) -> None: ...

    def push_frames(self, frames: list[Samples]) -> None: ...

    def end(self) -> None: ...

    def disconnect(self) -> None: ...


class ThreadReader(Protocol):
    """Input the decoder thread reads itself (``LiveIngest.read_from``): ``read`` blocks for
    bytes (b"" at the end); ``close`` (from any thread) makes it end now; ``release`` frees it
    once the thread is done; ``bytes_in`` counts what it read."""

    bytes_in: int

    def read(self, n: int = -1) -> bytes: ...

    def close(self) -> None: ...

    def release(self) -> None: ...


class LiveIngest:
    """Decodes one source's byte stream into ``source`` (a `FrameSink`, usually a
    `LiveSource`) on a thread of its own.

    ``format`` is a demuxer name ("mp3", "ogg", "aac") or None to sniff it from the bytes;
    ``label`` names the source in logs, errors and the thread's name. Call ``start()`` on the
    loop, then ``write`` the bytes as they arrive. ``write`` returns False once the feed holds
    more than ``feed_limit_bytes``: ``pause_reading`` has then been called, and
    ``resume_reading`` is called (and ``wait_writable`` returns) when the decoder has caught up.
    ``on_end`` is called once, on the loop, when the decoder ends by itself: with None after
    the end of the input, with the ``DecodeError`` when the stream could not be decoded; never
    after ``stop()``. Every callback runs on the loop. ``demand``: decode only while it is
    wanted (see the module); None decodes everything. ``now_ns``: the clock of its heartbeat
    while paused (``HEARTBEAT_NS``).
    """

    def __init__(
        self,
        source: FrameSink,
        *,
        format: str | None,
        label: str,
        on_end: Callable[[DecodeError | None], None] | None = None,
        pause_reading: Callable[[], None] | None = None,
        resume_reading: Callable[[], None] | None = None,
        feed_limit_bytes: int = FEED_LIMIT_BYTES,
        demand: DecodeDemand | None = None,
        now_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.source = source
        self._now_ns = now_ns  # the heartbeat's clock (read on the thread)
        self.demand = demand
        self.format = format
        self.label = label
        self.feed = ByteFeed(feed_limit_bytes)
        self._reader: ThreadReader | None = None  # read by the thread instead (``read_from``)
        self._on_end = on_end
        self._pause_reading = pause_reading
        self._resume_reading = resume_reading
        self._bytes_written = 0
        self.frames_decoded = 0
        self.deliveries = 0  # handoffs to the sink: at most one a batch, often fewer
        # offered from the thread, no loop wake-up (``LiveSource.offer_frames``), or delivered
        # on the loop
        self._offer: Callable[[list[Samples]], None] | None = getattr(
            source, "offer_frames", None)
        self._pending: list[Samples] = []  # decoded, not yet handed over (guarded by _lock)
        self._wake_pending = False  # a _deliver is scheduled and has not taken _pending yet
        self._lock = threading.Lock()
        self._decoder: LiveDecoder | None = None
        self.error: DecodeError | None = None
        self.ended = False  # the decoder finished, or the ingest was stopped
        self._stopping = False  # read by the thread: stop at the next frame, report nothing
        self._paused = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._done = asyncio.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Connect the source (an empty jitter buffer) and start the decoder thread."""
        loop = asyncio.get_running_loop()
        self.feed.on_drained(loop, self._drained)
        self.source.connect()
        self._thread = threading.Thread(target=self._run, args=(loop,),
                                        name=f"decode-{self.label}", daemon=True)
        self._thread.start()

    # the writer's side (on the loop)

    def write(self, data: bytes) -> bool:
        """Queue received bytes for the decoder; False when the feed is full (reading paused)."""
        if self.ended:
            return True
        self._bytes_written += len(data)
        if self.feed.write(data):
            return True
        if not self._paused:
            self._paused = True
            self._writable.clear()
            if self._pause_reading is not None:
                self._pause_reading()
        return False

    async def wait_writable(self) -> None:
        """Return once the feed has room again (or the ingest has ended)."""
        await self._writable.wait()

    def read_from(self, reader: ThreadReader) -> None:
        """Before ``start``: the decoder thread reads ``reader`` itself (blocking) instead of
        the feed ``write`` fills; ``finish_input`` and ``stop`` close it."""
        self._reader = reader

    @property
    def bytes_in(self) -> int:
        """Bytes of input received so far (written, or read by the thread)."""
        reader = self._reader
        return self._bytes_written + (reader.bytes_in if reader is not None else 0)

    def finish_input(self) -> None:
        """No more bytes will come: the decoder decodes what it has, then the ingest ends."""
        self.feed.close()
        if self._reader is not None:
            self._reader.close()

    async def wait_ended(self) -> None:
        """Return once the ingest has ended (its last frame delivered) or was stopped."""
        await self._done.wait()

    async def stop(self, timeout_s: float = JOIN_TIMEOUT_S) -> None:
        """End now: the source is cut (what it had buffered is dropped, unless the ingest had
        already ended and is playing it out), and the decoder thread is ended and joined beside
        the loop, waiting at most ``timeout_s``. Safe to call more than once."""
        if not self.ended:
            self.ended = True
            self.source.disconnect()
            self._writable.set()
            self._done.set()
        self._stopping = True
        self.feed.close()
        if self._reader is not None:
            self._reader.close()
        thread = self._thread
        if thread is not None and thread.is_alive():
            await asyncio.to_thread(thread.join, timeout_s)
            if thread.is_alive():
                log.warning("decoder thread of %s still running %.0f s after stop", self.label,
                            timeout_s)

    @property
    def decoder_calls(self) -> int:
        """Packets given to a decoder so far (none while the demand is not wanted)."""
        return self._decoder.decoder_calls if self._decoder is not None else 0

    @property
    def packets_skipped(self) -> int:
        """Packets parsed and not decoded so far (while the demand was not wanted)."""
        return self._decoder.packets_skipped if self._decoder is not None else 0

    @property
    def audio_seen(self) -> bool:
        """Whether the input has shown itself to be audio: frames decoded, or (a source no
        zone takes) audio packets parsed."""
        return self.frames_decoded > 0 or self.packets_skipped > 0

    @property
    def decoder_alive(self) -> bool:
        """Whether the decoder thread is still running."""
        return self._thread is not None and self._thread.is_alive()

    # the decoder's side (run on the loop by the thread)

    def _drained(self) -> None:
        if self.ended or not self._paused:
            return
        self._paused = False
        self._writable.set()
        if self._resume_reading is not None:
            self._resume_reading()

    def _deliver(self) -> None:
        with self._lock:
            frames, self._pending = self._pending, []
            self._wake_pending = False
        if self.ended:
            return
        self.deliveries += 1
        self.frames_decoded += len(frames)
        self.source.push_frames(frames)

    def _finished(self, error: DecodeError | None) -> None:
        if self.ended:
            return
        # No frame is left behind: the thread posted this after its last wake-up, and the loop
        # runs callbacks in order.
        self.ended = True
        self.error = error
        self.source.end()  # what was received plays out; then the zones fall back
        self._writable.set()
        self._done.set()
        if self._on_end is not None:
            self._on_end(error)

    # the thread

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            self._decode(loop)
        finally:
            if self._reader is not None:
                self._reader.release()  # this thread was its only reader

    def _decode(self, loop: asyncio.AbstractEventLoop) -> None:
        error: DecodeError | None = None
        reader: Reader = self._reader if self._reader is not None else self.feed
        self._decoder = decoder = LiveDecoder(reader, self.format, self.label, self.demand)
        try:
            told_ns = 0  # when the last batch was handed over
            for batch in decoder.batches():
                if self._stopping:
                    return
                if self.demand is not None:
                    now_ns = self._now_ns()
                    if not batch and now_ns - told_ns < HEARTBEAT_NS:
                        continue  # packets parsed, nothing decoded: told lately
                    told_ns = now_ns
                elif not batch:  # a header: nothing to tell
                    continue
                if not self._hand_over(loop, batch):
                    return
        except DecodeError as exc:
            error = exc
        except Exception as exc:  # a decoder bug must end this source only, with context
            log.exception("decoder for %s failed", self.label)
            error = DecodeError(f"{self.label}: decoder failed ({exc})")
        if not self._stopping:
            _post(loop, self._finished, error)

    def _hand_over(self, loop: asyncio.AbstractEventLoop, batch: list[Samples]) -> bool:
        """Offer ``batch`` to a thread-safe sink, or queue it for the loop (from the thread),
        waking it unless a wake-up is already pending (it takes this batch too). False once
        the loop has closed."""
        offer = self._offer
        if offer is not None:
            if loop.is_closed() or self._stopping or self.ended:
                return False  # stopped: what is decoded now is nobody's
            self.deliveries += 1  # only this thread writes either count
            self.frames_decoded += len(batch)
            offer(batch)
            return True
        with self._lock:
            self._pending += batch
            if self._wake_pending:
                return True
            self._wake_pending = True
        return _post(loop, self._deliver)


def _post(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> bool:
    """Run ``fn(*args)`` on ``loop`` from the decoder thread; False once the loop has closed."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        return False  # the loop has closed: nobody is left to tell
    return True
