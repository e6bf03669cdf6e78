"""Loa's percentiles are numpy's (linear, type 7) to the bit, without numpy's first-call import
of ``numpy.ma`` (45 ms: too long for a loop step)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from loa.core.percentiles import linear_percentiles, percentile_values


def test_the_same_numbers_as_numpy_to_the_bit() -> None:
    rng = np.random.default_rng(1)
    cases = 0
    for n in [*range(1, 40), 100, 1000, 4096]:
        arrays = [rng.normal(size=n) * 1e6, rng.integers(0, 5, size=n).astype(float),
                  rng.exponential(size=n) * 37.3, rng.normal(size=n)]
        arrays[3][rng.integers(0, n)] = np.nan
        for arr in arrays:
            for pcts in ([50, 90, 99], [0, 100], [12.5, 33.3, 66.7, 99.9], [25],
                         list(rng.uniform(0, 100, 7))):
                want = np.percentile(arr, pcts)
                got = linear_percentiles(arr, pcts)
                assert np.array_equal(want, got, equal_nan=True), (n, pcts)
                cases += 1
    assert cases == 42 * 4 * 5
    assert percentile_values([], [50, 99]) == [None, None]
    assert percentile_values([1e6, 3e6], [50], divisor=1e6) == [2.0]
    with pytest.raises(ValueError, match="0, 100"):
        linear_percentiles(np.arange(3.0), [101])


def test_the_first_percentile_imports_nothing_more() -> None:
    code = ("import sys; from loa.core.percentiles import percentile_values; "
            "percentile_values([3.0, 1.0, 2.0], [50, 99]); print('numpy.ma' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"
