"""The small interface every wire format implements, and the registry that builds them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from loa.codecs.encoder import EncodedPacket


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a wire format knows of its zone stream: the zone's id and name, and its Ogg serial."""

    zone_id: str
    zone_name: str
    serial: int  # distinct per zone stream (Ogg serial number)


@dataclass(frozen=True, slots=True)
class OnAir:
    """What a zone is forwarding: a programme at a priority."""

    programme_id: int
    programme_name: str
    priority: int


class StreamFormat(Protocol):
    """One wire format of one zone stream (stateful: Ogg page numbers, sequence numbers).
    It frames the encoded packets of ``codec`` for the zone's feed; ``nominal_bytes_per_s``
    sizes the listener backlog."""

    name: str
    codec: str  # which rendition it carries: "opus" or "mp3"
    content_type: str
    nominal_bytes_per_s: int
    # HTTP players buffer seconds anyway: their packets may be written in batches (fewer
    # send() calls); endpoints on the native protocol get every packet the moment it exists.
    batchable: bool

    def join_header(self) -> bytes:
        """What a new listener receives before the burst (Ogg header pages, say)."""
        ...

    def packet(self, pkt: EncodedPacket, on_air: OnAir, switched: bool) -> bytes:
        """One packet framed for the wire; ``switched`` marks the first after a programme switch."""
        ...

    def switch_notice(self, on_air: OnAir) -> bytes | None:
        """An out-of-band notice of a programme switch, or None if the format has none."""
        ...


FormatFactory = Callable[[StreamInfo, Mapping[str, int]], StreamFormat]  # info, bitrate per codec
FORMATS: dict[str, FormatFactory] = {}


def register(name: str, factory: FormatFactory) -> None:
    """Make a format buildable by ``create_format`` under ``name`` (a later call replaces it)."""
    FORMATS[name] = factory


def create_format(name: str, info: StreamInfo, bitrates_bps: Mapping[str, int]) -> StreamFormat:
    """Build a new format instance for one zone stream; ``bitrates_bps`` is bit/s per codec.
    Raises ValueError for an unknown name, KeyError if its codec has no bitrate."""
    from loa.playout.outputs import mp3_http, ogg_http, websocket  # noqa: F401  (registration)

    try:
        factory = FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown stream format {name!r}; known: {sorted(FORMATS)}") from None
    return factory(info, bitrates_bps)
