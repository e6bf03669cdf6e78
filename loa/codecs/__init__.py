"""Audio in canonical form: decode anything to 48 kHz mono 20 ms frames, encode once per codec."""

from loa.core.pcm import FRAME_NS, FRAME_SAMPLES, SAMPLE_RATE

__all__ = ["FRAME_NS", "FRAME_SAMPLES", "SAMPLE_RATE"]
