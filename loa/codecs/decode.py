"""Decode any input PyAV understands into canonical PCM frames.

Three ways in, one code path:
- ``decode_file(path)``: a file on disk, pulled frame by frame (files are paced by the clock);
- ``FrameDecoder`` over any readable object, e.g. a ``ByteFeed`` filled from a socket;
- ``ParsedStreamDecoder``: an MP3 or ADTS AAC byte stream split by the codec's own parser.

Every path ends in ``loa.codecs.canonical.CanonicalFrames``, which follows the input's format
as it changes. A live stream (a push or a relay) is decoded by
``loa.codecs.live_decode.LiveDecoder`` on a thread that ``loa.playout.inputs.ingest.LiveIngest``
owns; ``ByteFeed`` is the pipe between them. A live decoder given a
``loa.codecs.demand.DecodeDemand`` parses but does not decode while nobody takes its source.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import IO, Any, cast

import av
import av.error

from loa.codecs.canonical import CanonicalFrames
from loa.codecs.demand import DecodeDemand, PacketPause
from loa.core.i18n import N_, Explained
from loa.core.pcm import Samples

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


class FrameDecoder:
    """Demux + decode + resample one input into consecutive canonical frames.

    Iterating yields float32 arrays of ``FRAME_SAMPLES``; the last partial frame is padded with
    silence. ``decoded()`` yields the decoded ``av.AudioFrame`` objects instead, for a caller
    that resamples across several inputs (the links of a chained Ogg stream), and
    ``decoded_packets()`` the same grouped by packet. Any failure is raised as ``DecodeError``
    with a message that names the input. With a ``demand`` (a live input), packets are demuxed
    but not decoded while it is not wanted (``PacketPause``). ``decoder_calls`` counts the
    packets given to the decoder.
    """

    def __init__(
        self,
        source: str | IO[bytes] | Any,
        *,
        format: str | None = None,
        label: str | None = None,
        live: bool = False,
        demand: DecodeDemand | None = None,
    ) -> None:
        self.label = label or (source if isinstance(source, str) else "stream")
        self.pause = PacketPause(demand)
        self.decoder_calls = 0
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
        for frames in self.decoded_packets():
            yield from frames

    def decoded_packets(self) -> Iterator[list[av.AudioFrame]]:
        """The decoded frames of each packet demuxed, a list a packet: empty for a packet
        skipped while audio is not wanted (the input is alive) or that gave nothing yet.
        Closes the input at the end."""
        pause = self.pause
        try:
            for packet in self._container.demux(self._stream):
                if pause.skip(packet):
                    yield []
                    continue
                if pause.paused:
                    self._prime(pause.resume_with())
                self.decoder_calls += 1
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    self.decode_errors += 1
                    if self._decoded == 0 and self.decode_errors > 50:
                        raise DecodeError(N_("{label}: no decodable audio"),
                                          label=self.label) from None
                    continue
                self._decoded += len(frames)
                if frames:
                    pause.audio_decoded = True
                yield cast(list[av.AudioFrame], frames)
        except av.error.FFmpegError as exc:
            raise DecodeError(N_("{label}: decoding failed ({problem})"), label=self.label,
                              problem=str(exc)) from exc
        finally:
            self.close()

    def _prime(self, packets: list[Any]) -> None:
        """After a pause: a fresh decoder state, warmed up on the last packets skipped."""
        self._stream.codec_context.flush_buffers()
        for packet in packets:
            self.decoder_calls += 1
            try:
                packet.decode()  # the audio of the pause: not heard
            except av.error.InvalidDataError:
                pass  # a reservoir reaching further back: the next packets decode whole

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
# Format name -> decoder: the float MP3 decoder, as the ffmpeg CLI picks it (PyAV's "mp3" is the
# fixed-point one: 60 % more CPU, and its 16-bit output is then converted to float anyway).
PARSED_FORMATS = {"mp3": "mp3float", "aac": "aac"}
PARSE_READ_BYTES = 4096


class ParsedStreamDecoder:
    """Decode an MP3 or ADTS AAC byte stream frame by frame, through the codec's parser.

    ``reader`` has ``read(n) -> bytes`` (b"" at the end); ``fmt`` is a key of
    ``PARSED_FORMATS``. Iterating yields canonical frames; ``batches()`` yields them grouped
    as each read of the reader completes them. A change of rate or channels under way is
    followed. Raises ``DecodeError`` when the stream cannot be parsed or holds no audio.
    With a ``demand``, packets are parsed but not decoded while it is not wanted
    (``PacketPause``); ``decoder_calls`` counts the packets given to the decoder.
    """

    def __init__(self, reader: Any, fmt: str, label: str,
                 demand: DecodeDemand | None = None) -> None:
        self.label = label
        self.pause = PacketPause(demand)
        self._reader = reader
        self._ctx = cast(av.AudioCodecContext, av.CodecContext.create(PARSED_FORMATS[fmt], "r"))
        self._canonical = CanonicalFrames()
        self.frames_out = 0
        self.decode_errors = 0
        self.decoder_calls = 0

    def __iter__(self) -> Iterator[Samples]:
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[Samples]]:
        """Canonical frames, a list per read that completed any: whatever the bytes read so
        far make, never waiting for more bytes to fill a batch. The decoded audio of a whole
        read is resampled at once (one resampler call, not one a packet). While paused, an
        empty list per read that parsed packets: the input is alive."""
        ctx = self._ctx
        pause = self.pause
        while True:
            data = self._reader.read(PARSE_READ_BYTES)
            try:
                packets = ctx.parse(data or None)
            except av.error.FFmpegError as exc:
                raise DecodeError(N_("{label}: cannot parse the stream ({problem})"),
                                  label=self.label, problem=str(exc)) from exc
            decoded: list[av.AudioFrame] = []
            skipped = pause.skipped
            for packet in packets:
                if pause.skip(packet):
                    continue
                if pause.paused:
                    decoded = []  # older than the pause: not heard either
                    self._prime(pause.resume_with())
                self.decoder_calls += 1
                try:
                    decoded += ctx.decode(packet)
                except av.error.InvalidDataError:
                    self.decode_errors += 1  # a tag or a damaged frame: skip it, as players do
                    continue
                pause.audio_decoded = pause.audio_decoded or bool(decoded)
            done = self._canonical.push_many(decoded) if decoded else []
            if done or pause.skipped != skipped:
                self.frames_out += len(done)
                yield done
            if not data:
                break
        if not pause.paused and (done := self._canonical.flush()):  # paused: nothing new
            self.frames_out += len(done)
            yield done
        if self.frames_out == 0 and not pause.skipped:
            raise DecodeError(N_("{label}: contains no audio"), label=self.label)

    def _prime(self, packets: list[Any]) -> None:
        """After a pause: a fresh decoder and resampler (nothing of before the pause left in
        them), the decoder warmed up on the last packets skipped."""
        self._ctx.flush_buffers()
        self._canonical = CanonicalFrames()
        for packet in packets:
            self.decoder_calls += 1
            try:
                self._ctx.decode(packet)  # the audio of the pause: not heard
            except av.error.InvalidDataError:
                pass  # a reservoir reaching further back: the next packets decode whole


def decode_file(path: str) -> Iterator[Samples]:
    """All frames of a file, lazily."""
    return iter(FrameDecoder(path))


class ByteFeed:
    """A bounded byte pipe: the event loop writes, a decoder thread reads (blocking).

    ``read`` returns whatever is buffered, up to ``n`` bytes, blocking only while empty; b"" means
    end of stream. ``write`` never blocks the loop: it reports whether the feed is over its limit
    so the writer can pause its socket until the ``on_drained`` callback fires.

    The written ``bytes`` are kept as they came, in a queue; a read hands a whole chunk over
    as it is, or copies just the bytes it returns out of the chunk it ends in: each byte is
    copied at most once, however large the chunks and small the reads.
    """

    def __init__(self, limit_bytes: int = 256 * 1024) -> None:
        self.limit_bytes = limit_bytes
        self._chunks: deque[bytes] = deque()
        self._head_pos = 0  # bytes of ``_chunks[0]`` already read
        self._size = 0  # bytes buffered and not yet read
        self._closed = False
        self._cond = threading.Condition()
        self._over = False
        self._drained_cb: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def write(self, data: bytes) -> bool:
        """Append ``data`` (kept, not copied: bytes are immutable); returns True while the
        feed is under its limit."""
        with self._cond:
            if self._closed:
                return True
            if data:
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
            while not self._size and not self._closed:
                self._cond.wait()
            if not self._size:
                return b""
            want = self._size if n < 1 else min(n, self._size)
            data = self._take(want)
            self._size -= want
            if self._over and self._size < self.limit_bytes // 2:
                self._over = False
                if self._drained_cb is not None and self._loop is not None:
                    try:
                        self._loop.call_soon_threadsafe(self._drained_cb)
                    except RuntimeError:
                        pass  # loop closed during shutdown
            return data

    def _take(self, want: int) -> bytes:
        """``want`` bytes (no more than are buffered) off the front of the queue."""
        chunks = self._chunks
        head = chunks[0]
        if self._head_pos == 0 and len(head) == want:
            chunks.popleft()  # the usual case: a socket read handed on whole, not copied
            return head
        parts: list[memoryview] = []
        need = want
        while need:
            head = chunks[0]
            pos = self._head_pos
            k = min(len(head) - pos, need)
            parts.append(memoryview(head)[pos : pos + k])
            need -= k
            if pos + k == len(head):
                chunks.popleft()
                self._head_pos = 0
            else:
                self._head_pos = pos + k
        return b"".join(parts)
