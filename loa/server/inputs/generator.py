"""Built-in generated programmes: the demo chime, test tones, and the idle silence."""

from __future__ import annotations

from typing import Protocol

from loa.codecs.pcm import SILENCE, Samples
from loa.codecs.signals import ChimeGenerator, SineGenerator


class _Gen(Protocol):
    def next_frame(self) -> Samples: ...


class GeneratorSource:
    pausable = True
    available = True

    def __init__(self, gen: _Gen | None) -> None:
        self._gen = gen

    def read(self, now_ns: int) -> tuple[Samples, int] | None:
        return (self._gen.next_frame() if self._gen else SILENCE), now_ns

    def close(self) -> None:
        pass


def tone_source(freq_hz: float, level: float = 0.5) -> GeneratorSource:
    return GeneratorSource(SineGenerator(freq_hz, level))


def chime_source() -> GeneratorSource:
    return GeneratorSource(ChimeGenerator())


def silence_source() -> GeneratorSource:
    return GeneratorSource(None)
