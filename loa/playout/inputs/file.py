"""A file from disk, decoded ahead of the clock beside the event loop.

The tick never opens, decodes or measures a file. A small pool of reader threads, started
once, does that for every open file: it opens the file, works out its gain (loudness
normalisation may decode a stretch of it first) and decodes into the file's bounded buffer of
``AHEAD_FRAMES``. The tick only takes frames that are already decoded; when the buffer runs
below half it queues the file for a refill (a lock-free ``SimpleQueue.put``: no thread is ever
started, joined or waited for on the loop). With nothing decoded yet it plays a frame of
silence, counts the underrun and moves on: the file's audio is delayed by that frame, never
lost or waited for.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
from collections.abc import Callable

import numpy as np

from loa.codecs.decode import DecodeError, FrameDecoder
from loa.core.counters import Counters
from loa.core.pcm import FRAME_SAMPLES, Samples

log = logging.getLogger(__name__)

AHEAD_FRAMES = 50  # 1 s decoded ahead of the clock: 192 KiB of float32 per open file
READER_THREADS = 2  # opening and levelling a file takes a reader for ~0.3 s

# A linear gain, or a function of the path that works it out (it runs on a reader thread,
# so it may decode and measure).
Gain = float | Callable[[str], float]


class ReaderPool:
    """Threads that fill the buffers of open files, each job up to the file's ``ahead``."""

    def __init__(self, threads: int = READER_THREADS) -> None:
        self._jobs: queue.SimpleQueue[FileSource | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._size = threads
        self._users = 0  # servers in this process using the pool (tests run several)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the threads if they are not running (blocking for a moment each): at server
        start, not on a tick. Each ``start`` is matched by one ``stop``."""
        with self._lock:
            self._users += 1
            self._spawn()

    def _spawn(self) -> None:
        """With the lock held."""
        while len(self._threads) < self._size:
            t = threading.Thread(target=self._work, name=f"file-reader-{len(self._threads)}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, source: FileSource) -> None:
        """Queue a refill (never blocks once started; a pool nobody started starts here)."""
        if not self._threads:
            with self._lock:
                self._spawn()
        self._jobs.put(source)

    def stop(self, timeout_s: float) -> None:
        """Blocking: the last user's stop ends the threads (the work in hand first). Call
        beside the loop."""
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users:
                return
            threads, self._threads = self._threads, []
        for _ in threads:
            self._jobs.put(None)
        for t in threads:
            t.join(timeout_s)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job._fill()


READERS = ReaderPool()


class FileSource:
    """Pausable: pulled only while on air, so a preempted file resumes where it stopped.

    ``read(now_ns)`` returns the next decoded frame (float32, ``FRAME_SAMPLES``), a frame of
    silence while the reader is behind (``underruns`` counts them), or None once the file has
    played to its end. A file that cannot be opened or decoded ends the same way, with the
    reason in ``error`` (``DecodeError``'s message).
    """

    pausable = True
    available = True

    def __init__(self, path: str, gain: Gain = 1.0, *, counters: Counters | None = None,
                 ahead_frames: int = AHEAD_FRAMES, readers: ReaderPool = READERS) -> None:
        self.path = path
        self.gain = float(gain) if isinstance(gain, float | int) else None  # linear, once known
        self.error: str | None = None
        self.underruns = 0
        self.frames_read = 0  # real frames handed to the clock (not underrun silence)
        self._gain_fn = gain
        self._counters = counters
        self._ahead = ahead_frames
        self._readers = readers
        self._buf: collections.deque[Samples] = collections.deque()
        self._lock = threading.Lock()  # the reader's state below; never held while decoding
        self._queued = True  # a refill is queued or running
        self._ended = False  # the reader has put its last frame (or failed)
        self._closed = False
        self._frames: collections.abc.Iterator[Samples] | None = None
        self._decoder: FrameDecoder | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        readers.submit(self)

    # the clock's side

    def read(self, now_ns: int) -> tuple[Samples, int] | None:
        """Take the next decoded frame (never blocks): asks for a refill below half of
        ``ahead_frames``, and plays counted silence when the reader is behind."""
        buf = self._buf
        if buf:
            samples = buf.popleft()
            self.frames_read += 1
            if len(buf) < self._ahead // 2:
                self._refill()
            return samples, now_ns
        if self._ended:
            return None
        self._refill()
        self.underruns += 1
        if self._counters is not None:
            self._counters.inc("read_ahead_underruns")
        return np.zeros(FRAME_SAMPLES, dtype=np.float32), now_ns

    def _refill(self) -> None:
        if self._queued or self._ended or self._closed:
            return  # the common case, decided without the lock
        with self._lock:  # the tick and a finishing reader may both get here
            if self._queued:
                return
            self._queued = True
        self._readers.submit(self)

    def close(self) -> None:
        """Stop reading; a reader busy with this file lets go of it within a frame."""
        self._closed = True
        self._buf.clear()
        with self._lock:
            if self._queued:
                return  # the reader in hand sees _closed and closes the decoder
            self._queued = True
        self._readers.submit(self)  # a reader closes the decoder, on its thread

    @property
    def buffered(self) -> int:
        """Frames decoded and waiting."""
        return len(self._buf)

    async def ready(self) -> None:
        """Wait (without blocking the loop) until a frame is buffered or the file has ended."""
        if self._buf or self._ended:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._buf or self._ended:
                return
            self._waiters.append((loop, fut))
        await fut

    # a reader thread's side

    def _fill(self) -> None:
        try:
            self._decode_ahead()
        except DecodeError as exc:
            self.error = str(exc)
            log.error("cannot play %s: %s", self.path, exc)
            self._end()
        except Exception as exc:  # a reader must end its programme, never hang it
            self.error = f"{self.path}: {exc}"
            log.exception("reading %s failed", self.path)
            self._end()
        finally:
            with self._lock:
                self._queued = False
        # the tick may have emptied the buffer below half while we were finishing
        if not self._ended and not self._closed and len(self._buf) < self._ahead // 2:
            self._refill()
        self._wake()

    def _decode_ahead(self) -> None:
        if self._closed:
            self._end()
            return
        if self._frames is None:
            if self.gain is None:
                fn = self._gain_fn
                assert callable(fn)
                self.gain = fn(self.path)
            self._decoder = FrameDecoder(self.path)
            self._frames = iter(self._decoder)
        gain = np.float32(self.gain)
        while len(self._buf) < self._ahead:
            if self._closed:
                self._end()
                return
            samples = next(self._frames, None)
            if samples is None:
                self._end()
                return
            if gain != 1.0:
                samples = np.clip(samples * gain, -1.0, 1.0)
            self._buf.append(samples)
            if self._waiters:
                self._wake()

    def _end(self) -> None:
        self._ended = True
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
        self._frames = None

    def _wake(self) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:  # that loop has closed
                pass


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
