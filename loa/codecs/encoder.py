"""The encoder family: one small interface, variants registered by codec name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from loa.core.pcm import Samples


@dataclass(frozen=True, slots=True)
class EncodedPacket:
    """One encoded packet, shared read-only by every subscriber of its programme."""

    data: bytes
    pts_samples: int  # position in the programme's timeline, 48 kHz samples
    duration_samples: int
    capture_ns: int  # when the newest input sample in it entered the server (Clock time)


class Encoder(Protocol):
    codec: str
    bitrate_bps: int

    def encode(self, samples: Samples, pts_samples: int, capture_ns: int) -> list[EncodedPacket]:
        """Feed one canonical frame; returns the packets that became ready (maybe none)."""
        ...


EncoderFactory = Callable[[int], Encoder]  # bitrate_bps -> Encoder

_REGISTRY: dict[str, EncoderFactory] = {}


def register(codec: str, factory: EncoderFactory) -> None:
    _REGISTRY[codec] = factory


def create_encoder(codec: str, bitrate_bps: int) -> Encoder:
    # Import the family so each variant registers itself.
    from loa.codecs import mp3, opus  # noqa: F401  (imported for their registration)

    try:
        factory = _REGISTRY[codec]
    except KeyError:
        raise ValueError(f"unknown codec {codec!r}; known: {sorted(_REGISTRY)}") from None
    return factory(bitrate_bps)
