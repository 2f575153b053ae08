"""Medians over stacks of images with unknown values."""

from __future__ import annotations

import numpy as np

from astro_assets.science.compiled import compiled

__all__ = ["finite_median"]


def finite_median(stack: np.ndarray, minimum: float) -> np.ndarray:
    """Median over axis 0 of the finite values (infinities count as unknown, like NaN); NaN
    where fewer than ``minimum`` values are finite.

    Each pixel's values are sorted with numpy (NaN sort last, -inf first, +inf just before
    the NaN), several times faster than ``np.nanmedian`` on a short axis; one compiled pass
    then finds each pixel's run of finite values and takes its middle.
    """
    count, *rest = stack.shape
    values = np.ascontiguousarray(stack.reshape(count, -1).T)
    values.sort(axis=1)
    median = np.empty(values.shape[0], dtype=np.float32)
    _middle_of_finite_runs(values, float(minimum), median)
    return median.reshape(rest)


@compiled
def _middle_of_finite_runs(rows, minimum, out):  # pragma: no cover - compiled
    """``out[i]``: the median of the finite values of the sorted row ``rows[i]`` (the mean of
    the two middle ones, in float64, for an even count); NaN below ``minimum`` of them."""
    n_rows, length = rows.shape
    for index in range(n_rows):
        row = rows[index]
        first = 0
        while first < length and row[first] == -np.inf:
            first += 1
        stop = length
        while stop > first and not np.isfinite(row[stop - 1]):
            stop -= 1
        size = stop - first
        if size == 0 or size < minimum:
            out[index] = np.nan
        else:
            lower = np.float64(row[first + (size - 1) // 2])
            upper = np.float64(row[first + size // 2])
            out[index] = np.float32(0.5 * (lower + upper))
