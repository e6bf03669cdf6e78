"""Decode any input PyAV understands into canonical PCM frames.

Three ways in, one code path:
- ``decode_file(path)``: a file on disk, pulled frame by frame (files are paced by the clock);
- ``FrameDecoder`` over any readable object, e.g. a ``ByteFeed`` filled from a socket;
- ``ParsedStreamDecoder``: an MP3 or ADTS AAC byte stream split by the codec's own parser.

Every path ends in ``CanonicalFrames``, which follows the input's format as it changes. A live
stream (a push or a relay) is decoded by ``loa.codecs.live_decode.LiveDecoder`` on a thread that
``loa.playout.inputs.ingest.LiveIngest`` owns; ``ByteFeed`` is the pipe between them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from typing import IO, Any, cast

import av
import av.error
import numpy as np

from loa.core.i18n import N_, Explained
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
# Not ``fflags=nobuffer``: it throws away the packets read while the stream is analysed, the
# first 20-40 ms of every source and of every chained Ogg link.
LIVE_OPEN_OPTIONS = {"probesize": "4096", "analyzeduration": "0"}
LIVE_IO_BUFFER_BYTES = 4096


class DecodeError(Explained):
    """The input could not be decoded as audio. The message says why, for the operator."""


class UnsupportedFormat(DecodeError):
    """The input is well-formed but not something Loa plays (no audio stream, unknown type)."""


def format_for_content_type(content_type: str) -> str:
    """The demuxer name ("mp3", "ogg", "aac") for an HTTP ``Content-Type`` (parameters such as
    ``; codecs=opus`` ignored). Raises ``UnsupportedFormat`` naming the accepted types."""
    base = content_type.split(";", 1)[0].strip().lower()
    try:
        return CONTENT_TYPE_FORMATS[base]
    except KeyError:
        accepted = ", ".join(sorted({"audio/mpeg", "audio/ogg", "audio/aac"}))
        raise UnsupportedFormat(
            N_("content type {type!r} is not supported; use one of {accepted}"),
            type=base or "(none)", accepted=accepted) from None


def to_canonical(out: av.AudioFrame) -> Samples:
    """A resampler output frame as a canonical frame; the last, short one padded with silence."""
    samples: Samples = out.to_ndarray()[0]
    if samples.shape[0] != FRAME_SAMPLES:
        padded = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        padded[: samples.shape[0]] = samples
        samples = padded
    return samples


class CanonicalFrames:
    """Decoded audio of any sample format, channel layout and rate, as canonical frames.

    ``push(frame)`` takes one decoded ``av.AudioFrame`` and returns the canonical frames it
    completed (float32 arrays of ``FRAME_SAMPLES``, 48 kHz mono, each a fresh array);
    ``flush()`` ends the input and returns the rest, the last frame padded with silence.

    A frame whose format, layout or rate differs from the one before reopens the resampler
    (counted in ``reopened``), after draining what the old one still holds: a stream that
    changes under way (a chained Ogg link, an MP3 stream going from 44.1 kHz stereo to 48 kHz
    mono) plays on without losing a sample.
    """

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._input: tuple[str, str, int] | None = None  # (sample format, layout, rate)
        self._out = np.empty(FRAME_SAMPLES, dtype=np.float32)
        self._fill = 0  # samples of ``_out`` filled so far
        self.reopened = 0

    def push(self, frame: av.AudioFrame) -> list[Samples]:
        """The canonical frames ``frame`` completes (often one, sometimes none or two)."""
        done: list[Samples] = []
        shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        if shape != self._input or self._resampler is None:
            if self._resampler is not None:
                self._take(self._resampler.resample(None), done)
                self.reopened += 1
                log.info("input format changed to %s %s %d Hz: resampler reopened", *shape)
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            self._input = shape
        self._take(self._resampler.resample(frame), done)
        return done

    def flush(self) -> list[Samples]:
        """End of input: the rest, the last frame padded with silence. Pushing again starts
        afresh."""
        done: list[Samples] = []
        if self._resampler is not None:
            self._take(self._resampler.resample(None), done)
            self._resampler = None
            self._input = None
        if self._fill:
            self._out[self._fill :] = 0.0
            done.append(self._out)
            self._out = np.empty(FRAME_SAMPLES, dtype=np.float32)
            self._fill = 0
        return done

    def _take(self, frames: list[av.AudioFrame], done: list[Samples]) -> None:
        for frame in frames:
            samples = frame.to_ndarray()[0]  # packed float mono: shape (1, n)
            pos, n = 0, samples.shape[0]
            while pos < n:
                k = min(FRAME_SAMPLES - self._fill, n - pos)
                self._out[self._fill : self._fill + k] = samples[pos : pos + k]
                self._fill += k
                pos += k
                if self._fill == FRAME_SAMPLES:
                    done.append(self._out)
                    self._out = np.empty(FRAME_SAMPLES, dtype=np.float32)
                    self._fill = 0


class FrameDecoder:
    """Demux + decode + resample one input into consecutive canonical frames.

    Iterating yields float32 arrays of ``FRAME_SAMPLES``; the last partial frame is padded with
    silence. ``decoded()`` yields the decoded ``av.AudioFrame`` objects instead, for a caller
    that resamples across several inputs (the links of a chained Ogg stream). Any failure is
    raised as ``DecodeError`` with a message that names the input.
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
            raise DecodeError(N_("{label}: no such file"), label=self.label) from None
        except av.error.InvalidDataError:
            # FFmpeg's words name the file's path (a server's folder, to an uploader): not said
            raise DecodeError(N_("{label}: not audio in any format Loa knows"),
                              label=self.label) from None
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            raise DecodeError(N_("{label}: not a readable audio stream ({problem})"),
                              label=self.label, problem=str(exc)) from exc
        if not self._container.streams.audio:
            self._container.close()
            raise UnsupportedFormat(N_("{label}: has no audio stream"), label=self.label)
        self._stream = self._container.streams.audio[0]
        self.codec_name = self._stream.codec_context.name
        self.input_rate = self._stream.codec_context.sample_rate
        self.frames_out = 0
        self.decode_errors = 0
        self._decoded = 0

    def decoded(self) -> Iterator[av.AudioFrame]:
        """The input's decoded frames, as decoded (any rate and layout); closes the input at
        the end. Corrupt packets are skipped as players do, unless nothing decodes at all."""
        try:
            for packet in self._container.demux(self._stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    self.decode_errors += 1
                    if self._decoded == 0 and self.decode_errors > 50:
                        raise DecodeError(N_("{label}: no decodable audio"),
                                          label=self.label) from None
                    continue
                for frame in frames:
                    self._decoded += 1
                    yield frame
        except av.error.FFmpegError as exc:
            raise DecodeError(N_("{label}: decoding failed ({problem})"), label=self.label,
                              problem=str(exc)) from exc
        finally:
            self.close()

    def __iter__(self) -> Iterator[Samples]:
        canonical = CanonicalFrames()
        for frame in self.decoded():
            for samples in canonical.push(frame):
                self.frames_out += 1
                yield samples
        for samples in canonical.flush():
            self.frames_out += 1
            yield samples
        if self.frames_out == 0:
            raise DecodeError(N_("{label}: contains no audio"), label=self.label)

    def close(self) -> None:
        """Close the input (done by ``decoded`` at its end, and by iterating to the end)."""
        self._container.close()


# Elementary streams the codec's own parser can split without a demuxer. ffmpeg's MP3 demuxer
# reads fixed 1 KiB packets, which on a live 128 kb/s push means a burst of frames every ~80 ms
# (four frames of latency); the parser hands over each frame as soon as its bytes are in.
PARSED_FORMATS = {"mp3": "mp3", "aac": "aac"}
PARSE_READ_BYTES = 4096


class ParsedStreamDecoder:
    """Decode an MP3 or ADTS AAC byte stream frame by frame, through the codec's parser.

    ``reader`` has ``read(n) -> bytes`` (b"" at the end); ``fmt`` is a key of
    ``PARSED_FORMATS``. Iterating yields canonical frames; a change of rate or channels under
    way is followed. Raises ``DecodeError`` when the stream cannot be parsed or holds no audio.
    """

    def __init__(self, reader: Any, fmt: str, label: str) -> None:
        self.label = label
        self._reader = reader
        self._ctx = cast(av.AudioCodecContext, av.CodecContext.create(PARSED_FORMATS[fmt], "r"))
        self._canonical = CanonicalFrames()
        self.frames_out = 0
        self.decode_errors = 0

    def __iter__(self) -> Iterator[Samples]:
        ctx = self._ctx
        canonical = self._canonical
        while True:
            data = self._reader.read(PARSE_READ_BYTES)
            try:
                packets = ctx.parse(data or None)
            except av.error.FFmpegError as exc:
                raise DecodeError(N_("{label}: cannot parse the stream ({problem})"),
                                  label=self.label, problem=str(exc)) from exc
            for packet in packets:
                try:
                    decoded = ctx.decode(packet)
                except av.error.InvalidDataError:
                    self.decode_errors += 1  # a tag or a damaged frame: skip it, as players do
                    continue
                for frame in decoded:
                    for samples in canonical.push(frame):
                        self.frames_out += 1
                        yield samples
            if not data:
                break
        for samples in canonical.flush():
            self.frames_out += 1
            yield samples
        if self.frames_out == 0:
            raise DecodeError(N_("{label}: contains no audio"), label=self.label)


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
        """No more bytes will come: the reader gets what is buffered, then b"" (end of stream).
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` buffered bytes (all of them if ``n`` < 1), blocking while the feed is
        empty and open; b"" once it is closed and empty. Called from the decoder thread."""
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
