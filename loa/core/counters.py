"""Labelled event counters: cheap to bump on the hot path, read as a snapshot by the API."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from loa.core.percentiles import percentile_values


class Counters:
    """``inc("packets_dropped", reason="slow")``; every drop is counted with its reason."""

    def __init__(self) -> None:
        self._values: defaultdict[tuple[str, tuple[tuple[str, str], ...]], int] = defaultdict(int)

    def inc(self, name: str, n: int = 1, **labels: str) -> None:
        self._values[(name, tuple(sorted(labels.items())))] += n

    def get(self, name: str, **labels: str) -> int:
        return self._values.get((name, tuple(sorted(labels.items()))), 0)

    def total(self, name: str) -> int:
        return sum(v for (n, _), v in self._values.items() if n == name)

    def items(self) -> list[tuple[str, dict[str, str], int]]:
        """(name, labels, value) for every labelled counter."""
        return [(name, dict(labels), value) for (name, labels), value in
                sorted(self._values.items())]

    def snapshot(self) -> dict[str, int]:
        out = {}
        for (name, labels), value in sorted(self._values.items()):
            key = name + ("{" + ",".join(f"{k}={v}" for k, v in labels) + "}" if labels else "")
            out[key] = value
        return out


class LatencyWindow:
    """The most recent ``size`` latency samples (ns) in a preallocated ring."""

    def __init__(self, size: int = 4096) -> None:
        self._ring = np.zeros(size, dtype=np.int64)
        self._count = 0

    def add(self, latency_ns: int) -> None:
        self._ring[self._count % self._ring.shape[0]] = latency_ns
        self._count += 1

    @property
    def count(self) -> int:
        return self._count

    def percentiles_ms(self, *pcts: float) -> list[float | None]:
        n = min(self._count, self._ring.shape[0])
        return percentile_values(self._ring[:n], pcts, divisor=1e6)
