"""Pausing a live decode: a source no zone takes is parsed, not decoded (issue 17).

``DecodeDemand`` is the one flag a live source (``loa.playout.inputs.live.LiveSource``) shares
with its decoder thread; ``PacketPause`` is each decoder's side of it (``loa.codecs.decode``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

# Packets decoded (and their audio thrown away) to prime a flushed decoder when audio is wanted
# again after a pause: MP3's bit reservoir reaches back up to two frames, Opus asks for 80 ms of
# pre-roll after a jump (RFC 7845 4.6), Vorbis and AAC overlap one packet with the next.
PREROLL_PACKETS = 4


class DecodeDemand:
    """Whether a live source's decoded audio is wanted now: some zone takes the source.

    Set on the loop (``wanted = ...``), read by the decoder thread before each packet (a plain
    attribute: one bool, written whole). While not wanted, packets are still read and parsed,
    so the source stays connected and at its live edge, but not decoded.
    """

    def __init__(self, wanted: bool = True) -> None:
        self.wanted = wanted


class PacketPause:
    """One decoder's side of a ``DecodeDemand``: which packets to skip, and the priming on
    resume. ``skip(packet)`` is True while audio is not wanted (the packet is kept among the
    last ``PREROLL_PACKETS``); the first packet decoded after a pause first gets
    ``resume_with()``: the kept packets, to be decoded by a flushed decoder and thrown away,
    so that the first audio heard is the new packet's, whole, and nothing older.
    ``skipped`` counts the packets not decoded, ``resumes`` the pauses ended.

    Nothing is skipped before the decoder has made audio once (``audio_decoded``, set by the
    decoder): a parser finds frame headers in any bytes, so only a decode shows that a stream
    is audio, and junk is still refused as soon as it was (``live_decode``'s guard)."""

    def __init__(self, demand: DecodeDemand | None) -> None:
        self._demand = demand
        self._kept: deque[Any] = deque(maxlen=PREROLL_PACKETS)
        self.audio_decoded = False
        self.paused = False
        self.skipped = 0
        self.resumes = 0

    def skip(self, packet: Any) -> bool:
        """Whether ``packet`` is not to be decoded (audio not wanted now)."""
        if self._demand is None or self._demand.wanted or not self.audio_decoded:
            return False
        self.paused = True
        self._kept.append(packet)
        self.skipped += 1
        return True

    def resume_with(self) -> list[Any]:
        """End the pause: the packets kept to prime the decoder with (oldest first)."""
        self.paused = False
        self.resumes += 1
        kept = list(self._kept)
        self._kept.clear()
        return kept
