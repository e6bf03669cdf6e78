"""Decode any input PyAV understands into canonical PCM frames.

Three ways in, one code path:
- ``decode_file(path)``: a file on disk, pulled frame by frame (files are paced by the clock);
- ``FrameDecoder`` over any readable object, e.g. a ``ByteFeed`` filled from a socket;
- ``StreamDecoder``: a ``ByteFeed`` decoded on its own thread, frames handed back to the event loop
  in batches with ``call_soon_threadsafe`` (a live push or a relay).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, cast

import av
import av.error
import numpy as np

from loa.core.pcm import FRAME_SAMPLES, SAMPLE_RATE, Samples

log = logging.getLogger(__name__)

# Content types a station's encoder may push, mapped to the demuxer that reads them.
CONTENT_TYPE_FORMATS = {
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/ogg": "ogg",
    "application/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/aac": "aac",
    "audio/aacp": "aac",
    "audio/x-aac": "aac",
}

# Small probe and I/O buffers: a live source should start playing within a frame or two.
LIVE_OPEN_OPTIONS = {"probesize": "4096", "analyzeduration": "0", "fflags": "nobuffer"}
LIVE_IO_BUFFER_BYTES = 4096


class DecodeError(Exception):
    """The input could not be decoded as audio. The message says why, for the operator."""


class UnsupportedFormat(DecodeError):
    """The input is well-formed but not something Loa plays (no audio stream, unknown type)."""


def format_for_content_type(content_type: str) -> str:
    base = content_type.split(";", 1)[0].strip().lower()
    try:
        return CONTENT_TYPE_FORMATS[base]
    except KeyError:
        accepted = ", ".join(sorted({"audio/mpeg", "audio/ogg", "audio/aac"}))
        raise UnsupportedFormat(
            f"content type {base or '(none)'!r} is not supported; use one of {accepted}"
        ) from None


def to_canonical(out: av.AudioFrame) -> Samples:
    """A resampler output frame as a canonical frame; the last, short one padded with silence."""
    samples: Samples = out.to_ndarray()[0]
    if samples.shape[0] != FRAME_SAMPLES:
        padded = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        padded[: samples.shape[0]] = samples
        samples = padded
    return samples


class FrameDecoder:
    """Demux + decode + resample one input into consecutive canonical frames.

    Iterating yields float32 arrays of ``FRAME_SAMPLES``; the last partial frame is padded with
    silence. Any failure is raised as ``DecodeError`` with a message that names the input.
    """

    def __init__(
        self,
        source: str | IO[bytes] | Any,
        *,
        format: str | None = None,
        label: str | None = None,
        live: bool = False,
    ) -> None:
        self.label = label or (source if isinstance(source, str) else "stream")
        kwargs: dict[str, Any] = {}
        if format:
            kwargs["format"] = format
        if live:
            kwargs["options"] = dict(LIVE_OPEN_OPTIONS)
            kwargs["buffer_size"] = LIVE_IO_BUFFER_BYTES
        try:
            self._container = av.open(source, mode="r", **kwargs)
        except av.error.FileNotFoundError:
            raise DecodeError(f"{self.label}: no such file") from None
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            raise DecodeError(f"{self.label}: not a readable audio stream ({exc})") from exc
        if not self._container.streams.audio:
            self._container.close()
            raise UnsupportedFormat(f"{self.label}: has no audio stream")
        self._stream = self._container.streams.audio[0]
        self.codec_name = self._stream.codec_context.name
        self.input_rate = self._stream.codec_context.sample_rate
        self._resampler = av.AudioResampler(
            format="flt", layout="mono", rate=SAMPLE_RATE, frame_size=FRAME_SAMPLES
        )
        self.frames_out = 0
        self.decode_errors = 0

    def __iter__(self) -> Iterator[Samples]:
        try:
            for packet in self._container.demux(self._stream):
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError:
                    # A corrupt packet in an otherwise good stream: skip it, as players do.
                    self.decode_errors += 1
                    if self.frames_out == 0 and self.decode_errors > 50:
                        raise DecodeError(f"{self.label}: no decodable audio") from None
                    continue
                for frame in decoded:
                    for out in self._resampler.resample(frame):
                        yield self._emit(out)
            for out in self._resampler.resample(None):
                yield self._emit(out)
        except av.error.FFmpegError as exc:
            raise DecodeError(f"{self.label}: decoding failed ({exc})") from exc
        finally:
            self.close()
        if self.frames_out == 0:
            raise DecodeError(f"{self.label}: contains no audio")

    def _emit(self, out: av.AudioFrame) -> Samples:
        self.frames_out += 1
        return to_canonical(out)

    def close(self) -> None:
        self._container.close()


# Elementary streams the codec's own parser can split without a demuxer. ffmpeg's MP3 demuxer
# reads fixed 1 KiB packets, which on a live 128 kb/s push means a burst of frames every ~80 ms
# (four frames of latency); the parser hands over each frame as soon as its bytes are in.
PARSED_FORMATS = {"mp3": "mp3", "aac": "aac"}
PARSE_READ_BYTES = 4096


class ParsedStreamDecoder:
    """Decode an MP3 or ADTS AAC byte stream frame by frame, through the codec's parser."""

    def __init__(self, reader: Any, fmt: str, label: str) -> None:
        self.label = label
        self._reader = reader
        self._ctx = cast(av.AudioCodecContext, av.CodecContext.create(PARSED_FORMATS[fmt], "r"))
        self._resampler = av.AudioResampler(
            format="flt", layout="mono", rate=SAMPLE_RATE, frame_size=FRAME_SAMPLES
        )
        self.frames_out = 0
        self.decode_errors = 0

    def __iter__(self) -> Iterator[Samples]:
        ctx = self._ctx
        while True:
            data = self._reader.read(PARSE_READ_BYTES)
            try:
                packets = ctx.parse(data or None)
            except av.error.FFmpegError as exc:
                raise DecodeError(f"{self.label}: cannot parse the stream ({exc})") from exc
            for packet in packets:
                try:
                    decoded = ctx.decode(packet)
                except av.error.InvalidDataError:
                    self.decode_errors += 1  # a tag or a damaged frame: skip it, as players do
                    continue
                for frame in decoded:
                    for out in self._resampler.resample(frame):
                        yield self._emit(out)
            if not data:
                break
        for out in self._resampler.resample(None):
            yield self._emit(out)
        if self.frames_out == 0:
            raise DecodeError(f"{self.label}: contains no audio")

    def _emit(self, out: av.AudioFrame) -> Samples:
        self.frames_out += 1
        return to_canonical(out)


def decode_file(path: str) -> Iterator[Samples]:
    """All frames of a file, lazily."""
    return iter(FrameDecoder(path))


class ByteFeed:
    """A bounded byte pipe: the event loop writes, a decoder thread reads (blocking).

    ``read`` returns whatever is buffered, up to ``n`` bytes, blocking only while empty; b"" means
    end of stream. ``write`` never blocks the loop: it reports whether the feed is over its limit
    so the writer can pause its socket until the ``on_drained`` callback fires.
    """

    def __init__(self, limit_bytes: int = 256 * 1024) -> None:
        self.limit_bytes = limit_bytes
        self._chunks: list[bytes] = []
        self._size = 0
        self._closed = False
        self._cond = threading.Condition()
        self._over = False
        self._drained_cb: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def write(self, data: bytes) -> bool:
        """Append ``data``; returns True while the feed is under its limit."""
        with self._cond:
            if self._closed:
                return True
            self._chunks.append(data)
            self._size += len(data)
            self._cond.notify()
            over = self._size >= self.limit_bytes
            if over:
                self._over = True
            return not over

    def on_drained(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        """Call ``callback`` on ``loop`` whenever the reader brings an over-full feed down."""
        self._loop = loop
        self._drained_cb = callback

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def read(self, n: int = -1) -> bytes:
        with self._cond:
            while not self._chunks and not self._closed:
                self._cond.wait()
            if not self._chunks:
                return b""
            data = b"".join(self._chunks)
            if 0 < n < len(data):
                self._chunks = [data[n:]]
                data = data[:n]
            else:
                self._chunks = []
            self._size -= len(data)
            if self._over and self._size < self.limit_bytes // 2:
                self._over = False
                if self._drained_cb is not None and self._loop is not None:
                    try:
                        self._loop.call_soon_threadsafe(self._drained_cb)
                    except RuntimeError:
                        pass  # loop closed during shutdown
            return data


# A live stream that has given this many bytes without one decodable frame is not audio.
NO_AUDIO_LIMIT_BYTES = 64 * 1024


class _GuardedReader:
    """Reads a feed for the demuxer, and gives up on a stream that yields no audio.

    Demuxers resynchronise past garbage silently, so an open-ended stream of junk would keep a
    mount busy forever; the guard turns it into a ``DecodeError`` after ``limit_bytes``.
    """

    def __init__(self, feed: ByteFeed, label: str, limit_bytes: int) -> None:
        self.feed = feed
        self.label = label
        self.limit_bytes = limit_bytes
        self.bytes_read = 0
        self.audio_seen = False

    def read(self, n: int = -1) -> bytes:
        if not self.audio_seen and self.bytes_read > self.limit_bytes:
            raise DecodeError(
                f"{self.label}: no decodable audio in the first {self.limit_bytes // 1024} KiB"
            )
        data = self.feed.read(n)
        self.bytes_read += len(data)
        return data


class StreamDecoder:
    """Decodes a ``ByteFeed`` on a thread of its own.

    Frames come back to the loop in batches through ``on_frames``; exactly one of ``on_end``
    (clean end of stream) or ``on_error`` (a ``DecodeError``) is called at the end, on the loop.
    """

    BATCH_FRAMES = 1  # hand each frame over as soon as it exists: latency over call overhead

    def __init__(
        self,
        feed: ByteFeed,
        *,
        format: str | None,
        label: str,
        on_frames: Callable[[list[Samples]], None],
        on_end: Callable[[], None],
        on_error: Callable[[DecodeError], None],
    ) -> None:
        self.feed = feed
        self.format = format
        self.label = label
        self._on_frames = on_frames
        self._on_end = on_end
        self._on_error = on_error
        self._loop = asyncio.get_running_loop()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=f"decode-{label}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to finish; it ends at its next read."""
        self._stop = True
        self.feed.close()

    def _run(self) -> None:
        loop = self._loop
        reader = _GuardedReader(self.feed, self.label, NO_AUDIO_LIMIT_BYTES)
        decoder: Iterable[Samples]
        try:
            if self.format in PARSED_FORMATS:
                decoder = ParsedStreamDecoder(reader, self.format, self.label)
            else:
                decoder = FrameDecoder(reader, format=self.format, label=self.label, live=True)
            batch: list[Samples] = []
            for samples in decoder:
                if self._stop:
                    break
                reader.audio_seen = True
                batch.append(samples)
                if len(batch) >= self.BATCH_FRAMES:
                    loop.call_soon_threadsafe(self._on_frames, batch)
                    batch = []
            if batch:
                loop.call_soon_threadsafe(self._on_frames, batch)
        except DecodeError as exc:
            self._call(self._on_error, exc)
            return
        except Exception as exc:  # a decoder bug must end this source only, with context
            log.exception("decoder for %s failed", self.label)
            self._call(self._on_error, DecodeError(f"{self.label}: decoder failed ({exc})"))
            return
        self._call(self._on_end)

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop has closed: nobody is left to tell
