"""Percentiles: the one way Loa turns samples into p50 / p99 / max figures.

The server (latency window, command acknowledgements, commune reports) and the load tester
(its reports, endpoints, timelines, benchmarks) both read figures from here, so the same samples
always give the same numbers. Raw samples use numpy's linear interpolation; fixed-bin
histograms read a bin as its upper edge. Figures are rounded to ``DIGITS`` decimals (µs when in
ms) and are ``None`` when there are no samples. Imports nothing from Loa, so either side can use
it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

DIGITS = 3
DEFAULT_PCTS: tuple[float, ...] = (50, 90, 99)


def linear_percentiles(arr: npt.NDArray[np.float64], pcts: Sequence[float]
                       ) -> npt.NDArray[np.float64]:
    """``np.percentile(arr, pcts)`` (its default "linear" method, Hyndman and Fan's type 7),
    the same numbers to the bit, for a non-empty 1-D float64 ``arr``: numpy 2.4's arithmetic
    (the rank ``(n - 1) p``, its floor and the next, and ``_lerp``, which interpolates from the
    nearer end), over a full sort. Why not ``np.percentile`` itself: its first call imports
    ``numpy.ma`` (through ``np.unique``), 45 ms, which on the loop held the alarm watcher's
    first check over the 20 ms a loop step may take (a CI run, 2026-11-30). A NaN anywhere
    gives NaN, as numpy does. Raises ValueError for a percentile outside 0–100."""
    q = np.asarray(pcts, dtype=np.float64) / 100
    if not ((q >= 0) & (q <= 1)).all():
        raise ValueError("percentiles must be in the range [0, 100]")
    ranked = np.sort(arr)
    n = ranked.size
    rank = (n - 1) * q
    below = np.floor(rank)
    above = below + 1
    at_top = rank >= n - 1
    below[at_top] = -1
    above[at_top] = -1
    below_i = below.astype(np.intp)
    above_i = above.astype(np.intp)
    a, b = ranked[below_i], ranked[above_i]
    gamma = np.asarray(rank - below_i, dtype=np.float64)
    diff = b - a
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    if np.isnan(ranked[-1]):  # sorted last: any NaN makes every percentile NaN
        out[...] = np.nan
    return out


def percentile_values(values: Sequence[float] | npt.NDArray[np.generic], pcts: Sequence[float],
                      *, divisor: float = 1.0) -> list[float | None]:
    """The ``pcts`` percentiles (0–100) of ``values`` divided by ``divisor`` (e.g. 1e6 for ns
    to ms), in order; all ``None`` when there are no values."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        return [None for _ in pcts]
    return [round(float(v), DIGITS) for v in linear_percentiles(arr, list(pcts)) / divisor]


def percentile(values: Sequence[float], pct: float) -> float | None:
    """One percentile (0–100) of ``values``; ``None`` when there are none."""
    return percentile_values(values, (pct,))[0]


def percentiles(values: Sequence[float], pcts: Sequence[float] = DEFAULT_PCTS, *,
                with_max: bool = True) -> dict[str, float | None]:
    """``{"p50": …, "p90": …, "p99": …, "max": …}`` of ``values`` (keys follow ``pcts``)."""
    arr = np.asarray(values, dtype=np.float64)
    figures = percentile_values(arr, pcts)
    out: dict[str, float | None] = {f"p{p:g}": v for p, v in zip(pcts, figures, strict=True)}
    if with_max:
        out["max"] = round(float(arr.max()), DIGITS) if arr.size else None
    return out


def weighted_percentile(values: npt.NDArray[np.float64], weights: npt.NDArray[np.generic],
                        pct: float) -> float:
    """The first of ``values`` (ascending) at which the running weight reaches ``pct`` % of
    the total: no interpolation, so a histogram bin answers with its own edge."""
    cum = np.cumsum(weights)
    idx = int(np.searchsorted(cum, cum[-1] * pct / 100.0))
    return float(values[min(idx, len(values) - 1)])


def histogram_percentiles(counts: npt.NDArray[np.integer], bin_width: float,
                          pcts: Sequence[float] = DEFAULT_PCTS) -> dict[str, float | None]:
    """Percentiles of a fixed-bin histogram (bin ``i`` holds (i, i+1] × ``bin_width``; a bin
    reads as its upper edge), with ``max`` and ``samples``."""
    total = int(counts.sum())
    if total == 0:
        empty: dict[str, float | None] = {f"p{p:g}": None for p in pcts}
        return empty | {"max": None, "samples": 0}
    edges = (np.arange(counts.shape[0], dtype=np.float64) + 1) * bin_width
    out: dict[str, float | None] = {
        f"p{p:g}": round(weighted_percentile(edges, counts, p), DIGITS) for p in pcts}
    out["max"] = round((int(np.nonzero(counts)[0][-1]) + 1) * bin_width, DIGITS)
    out["samples"] = total
    return out
