"""Built-in generated programmes: the demo chime, test tones, and the idle silence."""

from __future__ import annotations

from typing import Protocol

from loa.codecs.signals import ChimeGenerator, SineGenerator
from loa.core.pcm import SILENCE, Samples


class _Gen(Protocol):
    def next_frame(self) -> Samples: ...


class GeneratorSource:
    """A pausable, always-available source of generated frames (960 float32 samples); with
    no generator, silence. Never ends; the capture time is the tick's ``now_ns``."""

    pausable = True
    available = True

    def __init__(self, gen: _Gen | None) -> None:
        self._gen = gen

    def read(self, now_ns: int) -> tuple[Samples, int] | None:
        return (self._gen.next_frame() if self._gen else SILENCE), now_ns

    def close(self) -> None:
        pass


def tone_source(freq_hz: float, level: float = 0.5) -> GeneratorSource:
    """A steady sine at ``freq_hz`` Hz, ``level`` of full scale (a test signal)."""
    return GeneratorSource(SineGenerator(freq_hz, level))


def chime_source() -> GeneratorSource:
    """The demo chime, endlessly."""
    return GeneratorSource(ChimeGenerator())


def silence_source() -> GeneratorSource:
    """Endless silence: the idle programme's source."""
    return GeneratorSource(None)
