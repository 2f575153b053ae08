"""The bright level of the target in an image that may be mostly sky.

Thresholds across the flat-field pipeline (what is on the target, what is too dark to measure)
are fractions of the target's bright level. The 99th percentile of the frame is that level
when the target covers at least 1 % of the frame. A smaller target (a planet far from the
sensor's size, or the median of a thin crescent that drifted across its own width) leaves the
99th percentile on the sky, whose pedestal (black level, sky glow) then passes for the target.
"""

from __future__ import annotations

import numpy as np

__all__ = ["target_level"]

BRIGHTER_FACTOR = 4.0
"""How much brighter than the frame's 99th percentile a population must be to be the target
while that percentile is the sky: within one lit surface, limb darkening, albedo and
chromospheric contrast stay within a factor of about 3 of its brightest 1 %."""

MIN_TARGET_FRACTION = 1e-3
"""Share of the pixels that population needs: fewer are hot pixels or a target too small to
measure a flat on."""


def target_level(values: np.ndarray) -> float:
    """The 99th percentile of the target's pixels.

    Starts from the 99th percentile of ``values``. While at least ``MIN_TARGET_FRACTION`` of
    them are ``BRIGHTER_FACTOR`` times brighter than the level (or positive, for a level at
    or below zero: a sky with its pedestal removed), the level was the sky's and becomes the
    99th percentile of those brighter values.

    Parameters
    ----------
    values : np.ndarray
        Finite pixel values, any shape (an image in ADU, or samples of one); not modified.

    Returns
    -------
    float
        The level, in the units of ``values``.

    Raises
    ------
    ValueError
        If ``values`` is empty.
    """
    flat = np.ravel(values)
    if flat.size == 0:
        raise ValueError("target_level needs at least one value.")
    level = float(np.percentile(flat, 99.0))
    needed = MIN_TARGET_FRACTION * flat.size
    while True:
        # Each round raises the level at least fourfold (or above zero), so it ends.
        brighter = flat[flat > BRIGHTER_FACTOR * max(level, 0.0)]
        if brighter.size < needed:
            return level
        level = float(np.percentile(brighter, 99.0))
