"""Decoding a live byte stream (a push, a relay) that may change its format under way.

A file is what it is from start to end; a live source is not. Stations' encoders start a new
chained Ogg link at every track change (Liquidsoap, ices), with a new rate or channel count;
an MP3 stream may switch from 44.1 kHz stereo to 48 kHz mono; an encoder may push without a
``Content-Type``. ``LiveDecoder`` turns such a stream into canonical frames:

- no format given: the first bytes are sniffed (Ogg page, MP3 or ADTS frame headers) and then
  decoded like any other bytes, so nothing is lost to probing (ffmpeg's MP3 probe skips the
  first ~0.3-0.5 s of a live stream); anything else goes to the demuxer's own probe;
- MP3 and ADTS AAC go through the codec's parser (``ParsedStreamDecoder``);
- Ogg is split into its links at page boundaries (``OggLinks``) and each link gets a fresh
  demuxer and decoder: ffmpeg's Ogg demuxer cannot follow a link whose parameters differ
  ("Not yet implemented in FFmpeg");
- ``CanonicalFrames`` reopens the resampler whenever the decoded format changes, so a change
  loses no audio.

Everything here blocks on its reader: it runs on the ingest's decoder thread, never the loop.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from typing import Protocol

import av

from loa.codecs.canonical import CanonicalFrames
from loa.codecs.decode import (
    PARSED_FORMATS,
    DecodeError,
    FrameDecoder,
    ParsedStreamDecoder,
)
from loa.codecs.demand import DecodeDemand, PacketPause
from loa.codecs.ogg import HEADER_TYPE_BOS, HEADER_TYPE_CONTINUED, HEADER_TYPE_EOS, ogg_crc
from loa.core.pcm import Samples

log = logging.getLogger(__name__)

# A live stream that has given this many bytes without one decodable frame is not audio.
NO_AUDIO_LIMIT_BYTES = 64 * 1024
# How far into a stream of unknown type the sniffer looks before leaving it to the demuxer.
SNIFF_LIMIT_BYTES = 16 * 1024
READ_BYTES = 4096


class Reader(Protocol):
    """A blocking byte source: ``read(n)`` returns 1..n bytes, or b"" at the end."""

    def read(self, n: int = -1) -> bytes: ...


# What ``sniff_format`` can tell apart: a stream declared as one of these is decoded as what
# its bytes are; any other declared container (MPEG-TS, MP4 from HLS) is taken as declared.
SNIFFABLE = frozenset({"mp3", "ogg", "aac"})


class _GuardedReader:
    """Reads a feed for the decoder, and gives up on a stream that yields no audio.

    Demuxers resynchronise past garbage silently, so an open-ended stream of junk would keep a
    mount busy forever; the guard turns it into a ``DecodeError`` after ``limit_bytes``.
    """

    def __init__(self, reader: Reader, label: str, limit_bytes: int) -> None:
        self.reader = reader
        self.label = label
        self.limit_bytes = limit_bytes
        self.bytes_read = 0
        self.audio_seen = False

    def read(self, n: int = -1) -> bytes:
        if not self.audio_seen and self.bytes_read > self.limit_bytes:
            raise DecodeError(
                f"{self.label}: no decodable audio in the first {self.limit_bytes // 1024} KiB"
            )
        data = self.reader.read(n)
        self.bytes_read += len(data)
        return data


class _Prefixed:
    """A reader that gives ``head`` (bytes already read, to sniff them) before the rest."""

    def __init__(self, head: bytes, reader: Reader) -> None:
        self._head = head
        self._reader = reader

    def read(self, n: int = -1) -> bytes:
        head = self._head
        if not head:
            return self._reader.read(n)
        if 0 < n < len(head):
            self._head = head[n:]
            return head[:n]
        self._head = b""
        return head


# sniffing

_MPEG1_L3_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG2_L3_KBPS = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_MPEG_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025,
               8000, 7350)


def _mp3_frame(head: bytes, pos: int) -> tuple[int, int] | None:
    """(frame length in bytes, rate) of an MPEG audio layer III header at ``pos``, or None."""
    b1, b2 = head[pos + 1], head[pos + 2]
    if head[pos] != 0xFF or b1 & 0xE0 != 0xE0:
        return None
    version, layer = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_index, rate_index = b2 >> 4, (b2 >> 2) & 3
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    rate = _MPEG_RATES[version][rate_index]
    table, coef = (_MPEG1_L3_KBPS, 144) if version == 3 else (_MPEG2_L3_KBPS, 72)
    return coef * table[bitrate_index] * 1000 // rate + ((b2 >> 1) & 1), rate


def _adts_frame(head: bytes, pos: int) -> tuple[int, int] | None:
    """(frame length in bytes, rate) of an ADTS (AAC) header at ``pos``, or None."""
    b1, b2 = head[pos + 1], head[pos + 2]
    if head[pos] != 0xFF or b1 & 0xF6 != 0xF0:
        return None
    rate_index = (b2 >> 2) & 0xF
    if pos + 6 > len(head) or rate_index >= len(_ADTS_RATES):
        return None
    length = ((head[pos + 3] & 3) << 11) | (head[pos + 4] << 3) | (head[pos + 5] >> 5)
    return (length, _ADTS_RATES[rate_index]) if length > 7 else None


def sniff_format(head: bytes) -> str | None:
    """What the first bytes of a stream are: "ogg" (an Ogg page), "mp3" (two consecutive
    MPEG layer III frame headers, after an ID3v2 tag if any) or "aac" (two ADTS headers);
    None while undecided (read more, up to ``SNIFF_LIMIT_BYTES``, then let the demuxer probe).
    """
    if head.startswith(b"OggS"):
        return "ogg"
    start = 0
    if head.startswith(b"ID3"):
        if len(head) < 10:
            return None
        size = 10 + ((head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7
                     | (head[9] & 0x7F))
        start = size + 10 if head[5] & 0x10 else size  # a footer repeats the header
        if start > SNIFF_LIMIT_BYTES:
            return "mp3"  # a tag too large to look past: ID3v2 all but always heads MP3
    for pos in range(start, len(head) - 3):
        if head[pos] != 0xFF:
            if head.startswith(b"OggS", pos):
                return "ogg"  # joined mid-stream: the link splitter finds the page boundary
            continue
        for fmt, frame in (("mp3", _mp3_frame), ("aac", _adts_frame)):
            got = frame(head, pos)
            if got is None:
                continue
            nxt = pos + got[0]
            if nxt + 6 > len(head):
                return None  # a likely header: wait for the next one to confirm it
            again = frame(head, nxt)
            if again is not None and again[1] == got[1]:
                return fmt
    return None


# chained Ogg

_PAGE_HEAD = struct.Struct("<4sBBqIII B")  # capture, version, type, granule, serial, seq, crc, n


class OggLinks:
    """Splits a chained Ogg stream into its links, at page boundaries.

    RFC 3533: a chained stream is whole logical streams one after another; a link opens with
    its beginning-of-stream (BOS) pages. ``next_link()`` returns a reader of the next link's
    pages (whole, CRC-checked pages; b"" where the link ends), or None once the stream has
    ended. Bytes between pages are skipped and counted in ``skipped_bytes``; so are pages
    before the first BOS page (a stream joined mid-link has no headers to decode with).
    """

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self._buf = bytearray()
        self._eof = False
        self._carry: bytes | None = None  # the BOS page that ended the previous link
        self._current: OggLink | None = None
        self._started = False
        self.links = 0
        self.skipped_bytes = 0

    def next_link(self) -> OggLink | None:
        """A reader of the next link, None at the end of the stream. What the previous link's
        reader was not asked for (a demuxer that stopped at its last page) is skipped."""
        if self._current is not None:
            while rest := self._current.read(READ_BYTES):
                self.skipped_bytes += len(rest)
        if not self._started:
            self._started = True
            while (page := self.next_page()) is not None and not page[5] & HEADER_TYPE_BOS:
                self.skipped_bytes += len(page)
            self._carry = page
        page, self._carry = self._carry, None
        if page is None:
            return None
        self.links += 1
        self._current = OggLink(self, page)
        return self._current

    def end_link(self, bos_page: bytes) -> None:
        """Called by a link that met the next link's first page."""
        self._carry = bos_page

    def next_page(self) -> bytes | None:
        """The next whole page with a good CRC, or None at the end of the stream."""
        buf = self._buf
        while True:
            start = buf.find(b"OggS")
            if start < 0:
                keep = min(len(buf), 3)  # "Ogg" may be the start of a capture pattern
                self.skipped_bytes += len(buf) - keep
                del buf[: len(buf) - keep]
            elif start > 0:
                self.skipped_bytes += start
                del buf[:start]
            if start == 0 and len(buf) >= 27:
                header_end = 27 + buf[26]
                if len(buf) >= header_end:
                    size = header_end + sum(buf[27:header_end])
                    if len(buf) >= size:
                        page = bytes(buf[:size])
                        crc = _PAGE_HEAD.unpack_from(page)[6]
                        if ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) == crc:
                            del buf[:size]
                            return page
                        self.skipped_bytes += 1  # "OggS" inside other bytes: look further
                        del buf[:1]
                        continue
            if self._eof:
                return None
            data = self._reader.read(READ_BYTES)
            if not data:
                self._eof = True
            buf += data


class OggLink:
    """A reader of one link's pages, for a demuxer (``read(n)`` returns at most ``n`` bytes);
    b"" where the link ends: at the next link's BOS page, or at the end of the stream."""

    def __init__(self, links: OggLinks, first_page: bytes) -> None:
        self._links = links
        self.first_page = first_page  # its BOS page (what the link carries)
        self._page = first_page
        self._pos = 0
        self._data_seen = not first_page[5] & HEADER_TYPE_BOS
        self._done = False

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes of this link's pages (all of one page if ``n`` < 1); b"" at its
        end."""
        while self._pos >= len(self._page):
            if self._done:
                return b""
            page = self._links.next_page()
            if page is None:
                self._done = True
                return b""
            if page[5] & HEADER_TYPE_BOS:
                if self._data_seen:  # the next link begins
                    self._links.end_link(page)
                    self._done = True
                    return b""
            else:
                self._data_seen = True
            self._page, self._pos = page, 0
        end = len(self._page) if n < 1 else min(len(self._page), self._pos + n)
        data = self._page[self._pos : end]
        self._pos = end
        return data


# The first packet of an Ogg/Opus stream (RFC 7845 section 5.1), and of its tags (5.2).
OPUS_HEAD = b"OpusHead"
OPUS_TAGS = b"OpusTags"
# A link whose first packets all fail to decode is not Opus after all.
OPUS_BAD_PACKETS_LIMIT = 50


def opens_opus(page: bytes) -> bool:
    """Whether ``page`` (a whole Ogg page) begins an Opus stream: a BOS page whose first packet
    is the Opus ID header."""
    return bool(page[5] & HEADER_TYPE_BOS) and page.startswith(OPUS_HEAD, 27 + page[26])


class OggOpusDecoder:
    """One Ogg/Opus link (RFC 7845) decoded packet by packet, with no demuxer: its whole,
    CRC-checked pages (an `OggLink`'s) are cut into packets here (RFC 3533 lacing), and the
    Opus stream's audio packets go to libavcodec's Opus decoder, opened with the ID header as
    extradata (which carries the pre-skip and the channel mapping, as the demuxer would pass
    them). Pages of the link's other logical streams are passed over.

    Why not the demuxer: a live push wakes the decoder thread once a page, and each call made
    there runs with cold caches. A demuxer reading through a Python file object costs ~60 µs
    more a 20 ms page in that thread (measured 2026-11-30, thread CPU per frame of a paced
    32 kb/s push: 305-342 µs through the demuxer, 234-278 µs here): 0.3 % of a core per live
    source (issue 17, idle CPU).

    The interface ``LiveDecoder`` uses of a ``FrameDecoder``: ``decoded_packets()`` yields the
    decoded frames of each audio packet (an empty list for one skipped while audio is not
    wanted); ``pause``, ``decoder_calls``, ``decode_errors``. A damaged packet is skipped and
    counted; raises ``DecodeError`` when the first ``OPUS_BAD_PACKETS_LIMIT`` packets all fail,
    or the decoder fails outright.
    """

    def __init__(self, link: OggLink, label: str, demand: DecodeDemand | None = None) -> None:
        self.label = label
        self.pause = PacketPause(demand)
        self.decoder_calls = 0
        self.decode_errors = 0
        self._link = link
        self._serial = int.from_bytes(link.first_page[14:18], "little")
        self._partial = b""  # a packet continued on the next page
        self._sequence: int | None = None  # the last page's sequence number
        self._ctx: av.AudioCodecContext | None = None
        self._decoded = 0
        self._headers = 0  # of the two header packets, how many seen
        self._preskip = 0  # samples the decoder drops at the start (the ID header's)
        self._samples = 0  # samples decoded (48 kHz, after the pre-skip)

    def decoded_packets(self) -> Iterator[list[av.AudioFrame]]:
        """The decoded frames of each audio packet, a list a packet (see the class). At the
        stream's last page, what its granule position says is padding is cut (RFC 7845
        section 4.4: end trimming), so chained links join without a gap."""
        while page := self._link.read(-1):  # a whole page a read
            if int.from_bytes(page[14:18], "little") != self._serial:
                continue  # another logical stream of the link
            packets = self._packets(page)
            last_page = bool(page[5] & HEADER_TYPE_EOS)
            for i, packet in enumerate(packets):
                frames = self._decode(packet)
                if frames is None:
                    yield []
                    continue
                self._samples += sum(f.samples for f in frames)
                if last_page and i == len(packets) - 1:
                    granule = int.from_bytes(page[6:14], "little", signed=True)
                    frames = _trim_end(frames, self._samples - (granule - self._preskip))
                yield frames

    def _decode(self, packet: bytes) -> list[av.AudioFrame] | None:
        """``packet``'s decoded frames (perhaps none: a damaged one is counted and skipped),
        or None when it is not decoded (no ID header; audio not wanted)."""
        pause = self.pause
        ctx = self._ctx
        if ctx is None or pause.skip(packet):
            return None
        if pause.paused:
            self._prime(ctx, pause.resume_with())
        self.decoder_calls += 1
        try:
            frames = ctx.decode(av.Packet(packet))
        except av.error.InvalidDataError:
            self.decode_errors += 1
            if self._decoded == 0 and self.decode_errors > OPUS_BAD_PACKETS_LIMIT:
                raise DecodeError(f"{self.label}: no decodable audio") from None
            return []
        except av.error.FFmpegError as exc:
            raise DecodeError(f"{self.label}: decoding failed ({exc})") from exc
        self._decoded += len(frames)
        if frames:
            pause.audio_decoded = True
        return frames

    def _packets(self, page: bytes) -> list[bytes]:
        """The Opus stream's whole audio packets that ``page`` (one of its pages) completes;
        its header packets open the decoder (the ID header) or are passed over (the tags)."""
        sequence = int.from_bytes(page[18:22], "little")
        lost = self._sequence is not None and sequence != (self._sequence + 1) & 0xFFFFFFFF
        self._sequence = sequence
        nsegs = page[26]
        pos = 27 + nsegs
        # a page lost before this one (a damaged page the link skipped): the packet it held
        # the start of is not glued to another's pieces, and the rest of it here is not audio
        continued = bool(page[5] & HEADER_TYPE_CONTINUED)
        acc = self._partial if continued and not lost else b""
        skipping = continued and lost
        out: list[bytes] = []
        for lace in page[27 : 27 + nsegs]:
            acc += page[pos : pos + lace]
            pos += lace
            if lace < 255:  # the packet ends here
                if skipping:
                    skipping = False  # the tail of a packet whose start was lost
                elif acc and (self._headers >= 2 or not self._header(acc)):
                    out.append(acc)  # an empty packet (RFC 3533 allows one) is no audio
                acc = b""
        self._partial = b"" if skipping else acc
        return out

    def _header(self, packet: bytes) -> bool:
        """Take one of the stream's first two packets as its header; False when the second
        is not the tags header (RFC 7845 wants one; players play on): it is audio."""
        self._headers += 1
        if self._headers == 1:  # the ID header (``opens_opus`` saw it)
            ctx = av.CodecContext.create("opus", "r")
            ctx.extradata = packet
            self._ctx = ctx
            self._preskip = int.from_bytes(packet[10:12], "little")
            return True
        return packet.startswith(OPUS_TAGS)

    def _prime(self, ctx: av.AudioCodecContext, packets: list[bytes]) -> None:
        """After a pause: a fresh decoder state, warmed up on the last packets skipped."""
        ctx.flush_buffers()
        for packet in packets:
            self.decoder_calls += 1
            try:
                ctx.decode(av.Packet(packet))  # the audio of the pause: not heard
            except av.error.InvalidDataError:
                pass


def _trim_end(frames: list[av.AudioFrame], excess: int) -> list[av.AudioFrame]:
    """``frames`` less their last ``excess`` samples (none when ``excess`` <= 0)."""
    out = list(frames)
    while excess > 0 and out:
        last = out.pop()
        if last.samples <= excess:
            excess -= last.samples
            continue
        keep = last.samples - excess
        arr = last.to_ndarray()  # planar: (channels, samples); packed: (1, samples x channels)
        width = keep if last.format.is_planar else keep * len(last.layout.channels)
        cut = av.AudioFrame.from_ndarray(arr[:, :width].copy(), format=last.format.name,
                                         layout=last.layout.name)
        cut.sample_rate = last.sample_rate
        out.append(cut)
        excess = 0
    return out


class LiveDecoder:
    """A live byte stream as canonical frames, across format changes.

    ``reader`` blocks for bytes and returns b"" at the end (a ``ByteFeed``); ``format`` is a
    demuxer name ("mp3", "ogg", "aac", ...) or None to sniff it. Iterating yields float32
    arrays of ``FRAME_SAMPLES`` (48 kHz mono) until the stream ends; ``batches()`` yields them
    in lists, as they become ready (a list per read of the reader for MP3 and AAC, per packet
    otherwise; never held back to fill one). Raises ``DecodeError`` for a stream that is not
    audio (nothing decodable in its first ``NO_AUDIO_LIMIT_BYTES``, or not readable at all) or
    that fails to decode, the message naming ``label``.

    ``demand``: while not wanted (no zone takes the source), the stream is still read and
    parsed, but not decoded once its first audio has decoded (showing that it is audio);
    ``batches()`` then yields empty lists as packets go by (the source is alive). When wanted
    again, decoding resumes at the live edge: the decoder is flushed and primed, and nothing
    decoded before the pause follows. ``decoder_calls`` counts the packets given to
    decoders, ``packets_skipped`` those passed over.
    """

    def __init__(self, reader: Reader, format: str | None, label: str,
                 demand: DecodeDemand | None = None) -> None:
        self._reader = reader
        self.format = format
        self.label = label
        self.demand = demand
        self.frames_out = 0
        self.links = 0  # chained Ogg links opened
        self._decoders: list[ParsedStreamDecoder | FrameDecoder | OggOpusDecoder] = []
        # the Ogg link now is Opus: frames aligned with its packets (``lead_samples``)
        self._opus = False
        self._canonical = CanonicalFrames()  # Ogg and demuxed streams'
        self._lead_before = 0  # the lead of canonical frames left at a resume

    @property
    def lead_samples(self) -> int:
        """Samples of silence put into an Ogg/Opus stream so that its frames end where its
        packets end (``CanonicalFrames``: ``align_start``, ``realign``): before its first
        samples, at the join of each chained Opus link, and after a resume where its first
        frame is short of a whole one. A packet of 20 ms (or 40, 60) then completes its frames
        when it arrives, instead of the pre-skip leaving every frame waiting for the next
        packet. Less than a frame each time; 0 for other formats, whose packets (MP3's 1152
        samples, AAC's 1024, Vorbis's) no lead lines up with. In a stream of one link and no
        pause, what ``LiveDecoder`` gives minus the lead is the stream's audio, sample for
        sample."""
        return self._lead_before + self._canonical.lead_samples

    def _restart_frames(self) -> CanonicalFrames:
        """Fresh canonical frames after a resume (nothing of before the pause follows), an
        Opus link's in step with its packets."""
        self._lead_before += self._canonical.lead_samples
        self._canonical = CanonicalFrames(align_start=self._opus)
        return self._canonical

    @property
    def decoder_calls(self) -> int:
        """Packets given to a decoder so far (a paused source's stay where they were)."""
        return sum(d.decoder_calls for d in self._decoders)

    @property
    def packets_skipped(self) -> int:
        """Packets parsed and not decoded so far, the demand not wanted."""
        return sum(d.pause.skipped for d in self._decoders)

    def __iter__(self) -> Iterator[Samples]:
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[Samples]]:
        """Canonical frames in lists, as they become ready (see the class)."""
        guard = _GuardedReader(self._reader, self.label, NO_AUDIO_LIMIT_BYTES)
        source: Reader = guard
        # The bytes, not the label, say what the stream is: an encoder that sends MP3 as
        # audio/ogg (or sends no type) is decoded as what it sends. A declared format the
        # sniffer does not know (FLAC, WebM…) is taken as declared.
        declared = self.format
        if declared is not None and declared not in SNIFFABLE:
            yield from self._decoded(guard, declared, guard)  # a container not sniffed
            return
        sniffed, head = self._sniff(guard)
        source = _Prefixed(head, guard)
        self.format = sniffed or declared
        if declared is None:
            log.info("%s: sniffed as %s", self.label, self.format or "(left to the demuxer)")
        elif sniffed is not None and sniffed != declared:
            log.warning("%s: sent as %s, but its bytes are %s: decoded as %s", self.label,
                        declared, sniffed, sniffed)
        yield from self._decoded(source, self.format, guard)

    def _decoded(self, source: Reader, fmt: str | None, guard: _GuardedReader
                 ) -> Iterator[list[Samples]]:
        for batch in self._batches(source, fmt):
            if batch or self.packets_skipped:  # frames; or packets passed over, which only
                guard.audio_seen = True  # happens once some have decoded
            self.frames_out += len(batch)
            yield batch

    @staticmethod
    def _sniff(reader: Reader) -> tuple[str | None, bytes]:
        head = b""
        while len(head) < SNIFF_LIMIT_BYTES:
            data = reader.read(READ_BYTES)
            if not data:
                break
            head += data
            fmt = sniff_format(head)
            if fmt is not None:
                return fmt, head
        return None, head

    def _batches(self, source: Reader, fmt: str | None) -> Iterator[list[Samples]]:
        if fmt in PARSED_FORMATS:
            parsed = ParsedStreamDecoder(source, fmt, self.label, self.demand)
            self._decoders.append(parsed)
            return parsed.batches()
        if fmt == "ogg":
            return self._ogg(source)
        return self._demuxed(source, fmt)

    def _demuxed(self, source: Reader, fmt: str | None) -> Iterator[list[Samples]]:
        """Any other container, through its demuxer: a list per packet."""
        decoder = FrameDecoder(source, format=fmt, label=self.label, live=True,
                               demand=self.demand)
        self._decoders.append(decoder)
        canonical = self._canonical
        resumes = 0
        for frames in decoder.decoded_packets():
            if decoder.pause.resumes != resumes:  # nothing of before the pause: start afresh
                resumes = decoder.pause.resumes
                canonical = self._restart_frames()
            done = canonical.push_many(frames)
            decoder.frames_out += len(done)
            if done or not frames:  # frames, or a packet skipped: the input is alive
                yield done
        if not decoder.pause.paused and (done := canonical.flush()):  # paused: nothing new
            decoder.frames_out += len(done)
            yield done
        if decoder.frames_out == 0 and not decoder.pause.skipped:
            raise DecodeError(f"{self.label}: contains no audio")

    def _ogg(self, source: Reader) -> Iterator[list[Samples]]:
        # one for all links: a link of the same format joins seamlessly, another one reopens
        # it without a gap
        canonical = self._canonical
        links = OggLinks(source)
        out = skipped = 0
        paused = False
        while (link := links.next_link()) is not None:
            self.links += 1
            if self.links > 1:  # joins the frames of the link before (class docstring)
                log.info("%s: chained Ogg link %d", self.label, self.links)
            self._opus = opens_opus(link.first_page)
            if self._opus:  # a link of Opus packets: its frames in step with them
                canonical.realign()
            decoder: FrameDecoder | OggOpusDecoder
            if opens_opus(link.first_page):
                decoder = OggOpusDecoder(link, self.label, self.demand)
            else:  # Vorbis, FLAC, Speex...: through the demuxer
                decoder = FrameDecoder(link, format="ogg", label=self.label, live=True,
                                       demand=self.demand)
            self._decoders.append(decoder)
            resumes = 0
            for frames in decoder.decoded_packets():
                if decoder.pause.resumes != resumes:  # nothing of before the pause follows
                    resumes = decoder.pause.resumes
                    canonical = self._restart_frames()
                done = canonical.push_many(frames)
                out += len(done)
                if done or not frames:  # frames, or a packet skipped: the input is alive
                    yield done
            skipped += decoder.pause.skipped
            paused = decoder.pause.paused
        if not paused and (done := canonical.flush()):  # paused: what it holds is not new
            out += len(done)
            yield done
        if out == 0 and not skipped:
            raise DecodeError(f"{self.label}: contains no audio")
