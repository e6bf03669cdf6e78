"""The Opus payloads of a WHIP source's RTP packets (RFC 7587) as canonical frames.

Each payload is decoded once, by libopus (through PyAV, as every Opus in Loa), straight to
48 kHz mono (libopus mixes a stereo stream down itself): no resampler, and no second decode of
frames a WebRTC stack decoded already. The decoded samples are cut into the pipeline's 20 ms
frames whatever the packets' duration (2.5 to 120 ms).

The RTP sequence numbers and timestamps tell what the network and the sender left out:

- **loss**: sequence numbers skipped. The samples the sender's clock moved on by are played
  as silence (up to ``MAX_CONCEALED_MS``; a longer gap is an outage, left to the jitter buffer
  to resynchronise), so the timeline keeps its length and the buffer its depth;
- **DTX** (discontinuous transmission): the sender stops sending while it is silent, after a
  packet of at most 2 bytes, and then sends one every 400 ms. Its gaps are filled with
  silence as they happen (``fill``, driven by the session's timer at real time: filling them
  afterwards would add the gap to the delay); the next packet's timestamp says how much more
  was due;
- **late or repeated** packets (a sequence number at or before the last one) are dropped: the
  frames after them were played already.

Everything is counted (``packets``, ``lost``, ``late``, ``concealed_samples``, ``dtx_gaps``,
``decode_errors``, ``skipped``). Each decode costs ~0.04 ms (p99 0.1 ms) on the project's
machine: it runs on the loop, and only while someone hears the source (``skip`` follows the
timeline of a packet nobody hears without decoding it).
"""

from __future__ import annotations

import logging

import av
import numpy as np

from loa.core.pcm import FRAME_SAMPLES, SAMPLE_RATE, Samples

log = logging.getLogger(__name__)

MAX_CONCEALED_MS = 200
MAX_CONCEALED_SAMPLES = SAMPLE_RATE * MAX_CONCEALED_MS // 1000
DTX_PAYLOAD_BYTES = 2  # a payload this short is a DTX frame (RFC 7587 §3.1.3): silence follows
_SCALE = np.float32(1 / 32768)


# An Opus frame's samples at 48 kHz by its TOC's configuration (RFC 6716 §3.1, table 2):
# SILK 10/20/40/60 ms (configurations 0-11), hybrid 10/20 ms (12-15), CELT 2.5/5/10/20 ms
# (16-31)
_FRAME_SAMPLES_BY_CONFIG = tuple(
    (480, 960, 1920, 2880)[c & 3] if c < 12 else (480, 960)[c & 1] if c < 16 else
    (120, 240, 480, 960)[c & 3] for c in range(32))


def packet_samples(payload: bytes) -> int:
    """How many 48 kHz samples an Opus packet holds, from its TOC byte and, for code 3, its
    frame count byte (RFC 6716 §3.1-3.2); 0 for an empty or malformed packet."""
    if not payload:
        return 0
    toc = payload[0]
    code = toc & 3
    frames = 1 if code == 0 else 2 if code in (1, 2) else \
        (payload[1] & 0x3F if len(payload) > 1 else 0)
    return frames * _FRAME_SAMPLES_BY_CONFIG[toc >> 3]


def _seq_ahead(seq: int, expected: int) -> int:
    """How far ``seq`` is past ``expected`` (16-bit, wrapping); negative when before it."""
    d = (seq - expected) & 0xFFFF
    return d - 0x10000 if d >= 0x8000 else d


def _ts_ahead(ts: int, expected: int) -> int:
    """How far RTP timestamp ``ts`` is past ``expected`` (32-bit, wrapping), in samples."""
    d = (ts - expected) & 0xFFFFFFFF
    return d - 0x100000000 if d >= 0x80000000 else d


class OpusRtp:
    """Opus RTP payloads in, canonical frames out (float32 arrays of ``FRAME_SAMPLES``,
    48 kHz mono, each a fresh array). ``push(seq, timestamp, payload)`` returns the frames the
    packet completed, silence for what was lost before it included; ``fill(samples)`` adds
    silence while a DTX sender is quiet (``in_dtx``)."""

    def __init__(self) -> None:
        self._decoder = av.CodecContext.create("libopus", "r")
        self._decoder.sample_rate = SAMPLE_RATE
        self._decoder.layout = "mono"
        self._next_seq: int | None = None
        self._next_ts = 0  # the timestamp the next packet has if nothing is left out
        self._filled = 0  # silence added by ``fill`` since the last packet (samples)
        self._out = np.empty(FRAME_SAMPLES, dtype=np.float32)
        self._fill_at = 0
        self.in_dtx = False
        self.packets = 0
        self.lost = 0
        self.late = 0
        self.decode_errors = 0
        self.concealed_samples = 0
        self.dtx_gaps = 0
        self.outages = 0
        self.skipped = 0  # packets taken while nobody heard the source (``skip``)
        self._skipping = False  # the last packet was skipped: the next decode starts afresh

    def push(self, seq: int, timestamp: int, payload: bytes) -> list[Samples]:
        """Decode one packet (``seq``: its 16-bit sequence number, ``timestamp``: its 32-bit
        RTP timestamp at 48 kHz) into the frames it completes. A packet that does not decode
        is counted and taken as lost."""
        done: list[Samples] = []
        if not self._sequence(seq, timestamp, payload, done):
            return done
        if self._skipping:  # heard again: the decoder's state is of the audio before the skips
            self._skipping = False
            self._decoder.flush_buffers()
        try:
            frames = self._decoder.decode(av.Packet(payload))
        except av.FFmpegError as exc:
            self.decode_errors += 1
            if self.decode_errors in (1, 10, 100, 1000):
                log.warning("an Opus packet did not decode (%d so far): %s",
                            self.decode_errors, exc)
            return done
        for frame in frames:
            pcm = frame.to_ndarray()[0]  # packed s16 mono: shape (1, n)
            self._next_ts = (self._next_ts + len(pcm)) & 0xFFFFFFFF
            self._take(pcm.astype(np.float32) * _SCALE, done)
        return done

    def skip(self, seq: int, timestamp: int, payload: bytes) -> None:
        """Take one packet without decoding it (nobody hears the source): its sequence and
        timestamp followed and counted as ``push`` does (``skipped`` too), its length read from
        its TOC (``packet_samples``), no frame made; the frame ``push`` had begun is dropped.
        The next ``push`` then decodes on from the packet's timeline, without a gap to fill,
        from a decoder reset (its state was of the audio before the skips)."""
        if not self._sequence(seq, timestamp, payload, None):
            return
        self.skipped += 1
        self._skipping = True
        self._fill_at = 0
        self._next_ts = (self._next_ts + packet_samples(payload)) & 0xFFFFFFFF

    def _sequence(self, seq: int, timestamp: int, payload: bytes,
                  done: list[Samples] | None) -> bool:
        """Follow one packet's sequence number and timestamp: False if it is late (dropped);
        else what was lost before it concealed into ``done`` (when frames are made), and it
        counted."""
        if self._next_seq is None:
            self._next_ts = timestamp
        else:
            ahead = _seq_ahead(seq, self._next_seq)
            if ahead < 0:
                self.late += 1
                return False
            self.lost += ahead
            gap = _ts_ahead(timestamp, self._next_ts)
            missing = gap - self._filled
            if missing > 0:
                if missing > MAX_CONCEALED_SAMPLES:
                    self.outages += 1  # the jitter buffer resynchronises on its own
                elif done is not None:
                    self._silence(missing, done)
                    self.concealed_samples += missing
            if gap > 0 and ahead == 0:
                self.dtx_gaps += 1  # nothing lost: the sender paused (DTX)
            self._next_ts = timestamp
        self._filled = 0
        self._next_seq = (seq + 1) & 0xFFFF
        self.packets += 1
        self.in_dtx = len(payload) <= DTX_PAYLOAD_BYTES
        return True

    def fill(self, samples: int) -> list[Samples]:
        """``samples`` of silence now, for a sender quiet in DTX (the next packet's timestamp
        then counts them as played)."""
        done: list[Samples] = []
        self._silence(samples, done)
        self._filled += samples
        return done

    def _silence(self, samples: int, done: list[Samples]) -> None:
        self._take(np.zeros(samples, dtype=np.float32), done)

    def _take(self, samples: Samples, done: list[Samples]) -> None:
        pos, n = 0, len(samples)
        while pos < n:
            k = min(FRAME_SAMPLES - self._fill_at, n - pos)
            self._out[self._fill_at : self._fill_at + k] = samples[pos : pos + k]
            self._fill_at += k
            pos += k
            if self._fill_at == FRAME_SAMPLES:
                done.append(self._out)
                self._out = np.empty(FRAME_SAMPLES, dtype=np.float32)
                self._fill_at = 0

    def describe(self) -> dict[str, int]:
        """Counts: packets taken, lost (sequence numbers skipped), late (dropped), decode
        errors, concealed ms (silence for losses), DTX gaps, outages (gaps too long to
        conceal) and packets skipped (taken while nobody heard the source: not decoded)."""
        return {"packets": self.packets, "lost": self.lost, "late": self.late,
                "decode_errors": self.decode_errors,
                "concealed_ms": self.concealed_samples * 1000 // SAMPLE_RATE,
                "dtx_gaps": self.dtx_gaps, "outages": self.outages, "skipped": self.skipped}
