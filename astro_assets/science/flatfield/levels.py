"""The bright level of the target in an image that may be mostly sky.

Thresholds across the flat-field pipeline (what is on the target, what is too dark to measure)
are fractions of the target's bright level. The 99th percentile of the frame is that level
when the target covers at least 1 % of the frame. A smaller target (a planet far from the
sensor's size, or the median of a thin crescent that drifted across its own width) leaves the
99th percentile on the sky, whose pedestal (black level, sky glow) then passes for the target.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "LIT_DARK_FRACTION",
    "MIN_SIGNAL_FRACTION",
    "coverage_verdict",
    "dark_threshold",
    "lit_fraction",
    "signal_spread",
    "target_level",
    "typical_spread",
    "unsearched_fraction",
    "with_signal",
]

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


LIT_DARK_FRACTION = 0.05
"""Fraction of the way from the sky to the target's bright level under which
:func:`lit_fraction` counts a pixel as dark: the flat's own ``dark_fraction``."""

MIN_SIGNAL_FRACTION = 0.2
"""A frame whose :func:`signal_spread` is below this fraction of the video's typical frame's
shows too little of the scene to use (a blank frame, a thick cloud): registered, a phase
correlation of its noise lands anywhere; in the temporal median, each such frame pulls every
pixel's median towards its darker values. A fifth leaves a margin to the scene's own changes
(a sunspot or limb leaving the field narrows the spread by far less)."""


def signal_spread(image: np.ndarray) -> float:
    """The spread of an image's values between its 0.1th and 99.9th percentiles.

    Parameters
    ----------
    image : np.ndarray
        Finite values, any shape (a frame binned and despeckled, so that noise and hot
        pixels do not set the spread), in ADU; not modified.

    Returns
    -------
    float
        >= 0, in the units of ``image``: a pedestal adds nothing, and a frame's light scaled
        by a factor scales it by that factor.
    """
    low, high = np.percentile(image, [0.1, 99.9])
    return float(high - low)


TYPICAL_SPREAD_PERCENTILE = 90.0
"""The typical frame's spread is this percentile of the frames' spreads. Their median would be
a blank frame's where most frames are blank (a capture started long before the target was in
the field), and nothing would then be left out; their largest would be that of one odd frame
(a frame of full-range noise from a glitch of the camera), under a fifth of which a dim
target's frames can fall. Fewer than a tenth of such frames, and up to nine tenths of blank
ones, leave the typical spread a lit frame's."""


def typical_spread(spreads: np.ndarray) -> float:
    """The :data:`TYPICAL_SPREAD_PERCENTILE` th percentile of the frames' :func:`signal_spread`.

    Parameters
    ----------
    spreads : np.ndarray
        (n,) finite spreads of frames binned alike, n >= 1.

    Returns
    -------
    float
        In the units of ``spreads``.
    """
    return float(np.percentile(spreads, TYPICAL_SPREAD_PERCENTILE))


def with_signal(spreads: np.ndarray, min_fraction: float = MIN_SIGNAL_FRACTION) -> np.ndarray:
    """Which frames show the scene: a :func:`signal_spread` of at least ``min_fraction`` of the
    :func:`typical_spread`.

    Parameters
    ----------
    spreads : np.ndarray
        (n,) :func:`signal_spread` of each frame, binned alike, n >= 1.
    min_fraction : float
        In [0, 1].

    Returns
    -------
    np.ndarray
        (n,) bool. Every frame when fewer than two would pass: with at most one frame left
        there is no typical frame to compare with, and nothing to leave out for.
    """
    spreads = np.asarray(spreads, dtype=np.float64)
    if spreads.ndim != 1 or spreads.size == 0 or not np.isfinite(spreads).all():
        raise ValueError(
            f"spreads must be a non-empty 1-D finite array, got shape {spreads.shape}."
        )
    if not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"min_fraction must lie in [0, 1], got {min_fraction}.")
    kept = spreads >= min_fraction * typical_spread(spreads)
    if np.count_nonzero(kept) < 2:
        kept[:] = True
    return kept


def dark_threshold(
    values: np.ndarray, dark_fraction: float, *, level: float | None = None
) -> float | None:
    """``low + dark_fraction * (high - low)``: below it a pixel is sky (or too dark to measure
    a flat on), with ``low`` the 0.1th percentile of ``values`` (the pedestal, the sky) and
    ``high`` their :func:`target_level`.

    Parameters
    ----------
    values : np.ndarray
        Finite pixel values, any shape, in ADU; not modified.
    dark_fraction : float
        In [0, 1).
    level : float, optional
        ``values``' :func:`target_level`, when the caller has it already.

    Returns
    -------
    float or None
        The threshold in the units of ``values``; None when they have no contrast
        (``high <= low``), so sky and target cannot be told apart.

    Raises
    ------
    ValueError
        If ``values`` is empty or ``dark_fraction`` lies outside [0, 1).
    """
    if not 0.0 <= dark_fraction < 1.0:
        raise ValueError(f"dark_fraction must lie in [0, 1), got {dark_fraction}.")
    high = target_level(values) if level is None else level
    low = float(np.percentile(values, 0.1))
    if not high > low:
        return None
    return low + dark_fraction * (high - low)


def lit_fraction(
    image: np.ndarray,
    dark_fraction: float = LIT_DARK_FRACTION,
    *,
    threshold: float | None = None,
) -> float:
    """Share of the pixels lit by the target: above :func:`dark_threshold`, under which no
    flat is measured.

    Parameters
    ----------
    image : np.ndarray
        Finite pixel values, any shape, in ADU; not modified.
    dark_fraction : float
        In [0, 1).
    threshold : float, optional
        The level above which a pixel counts as lit, in ADU, instead of the image's own
        :func:`dark_threshold`: a median measured against the frames' threshold, because a
        median in which the target left every pixel for most of the video is sky alone, whose
        own range makes its noise and vignetting look lit.

    Returns
    -------
    float
        In [0, 1]; 0 for an image without contrast.

    Raises
    ------
    ValueError
        If ``image`` is empty, ``dark_fraction`` lies outside [0, 1) or ``threshold`` is not
        finite.
    """
    values = np.ravel(image)
    if values.size == 0:
        raise ValueError("lit_fraction needs at least one value.")
    if not 0.0 <= dark_fraction < 1.0:
        raise ValueError(f"dark_fraction must lie in [0, 1), got {dark_fraction}.")
    if threshold is None:
        threshold = dark_threshold(values, dark_fraction)
        if threshold is None:
            return 0.0
    elif not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}.")
    return float(np.count_nonzero(values > threshold) / values.size)


def unsearched_fraction(image: np.ndarray, dark_fraction: float) -> float:
    """Share of the lit target too dark for the dust detector to search.

    The detector looks for dust only where the median is above ``dark_fraction`` of its bright
    level (:func:`target_level`); a lunar terminator, maria, a planet's limb darkening or a
    corner vignetted deep lie below it while still lit (above :func:`dark_threshold` at
    ``LIT_DARK_FRACTION``), and dust there is neither found nor corrected.

    Parameters
    ----------
    image : np.ndarray
        The temporal median, finite values in ADU, any shape; not modified.
    dark_fraction : float
        The detector's ``dark_fraction``, in [0, 1).

    Returns
    -------
    float
        In [0, 1]: the lit pixels at or below the detector's level over all lit pixels; 0 for
        an image without contrast.

    Raises
    ------
    ValueError
        If ``image`` is empty or ``dark_fraction`` lies outside [0, 1).
    """
    values = np.ravel(image)
    if values.size == 0:
        raise ValueError("unsearched_fraction needs at least one value.")
    if not 0.0 <= dark_fraction < 1.0:
        raise ValueError(f"dark_fraction must lie in [0, 1), got {dark_fraction}.")
    level = target_level(values)
    lit_level = dark_threshold(values, LIT_DARK_FRACTION, level=level)
    if lit_level is None:
        return 0.0
    lit = values > lit_level
    lit_count = np.count_nonzero(lit)
    if lit_count == 0:
        return 0.0
    searched = values > dark_fraction * level
    return float(np.count_nonzero(lit & ~searched) / lit_count)


def coverage_verdict(
    median_lit: float, frames_lit: float, *, min_share: float = 0.5
) -> tuple[bool, str]:
    """Say whether the temporal median lights about as much of the frame as the frames do.

    A target that drifted across much of its own width (a thin crescent moving across its
    width) is lit at a pixel in fewer than half of the frames over most of its track, and the
    median leaves that pixel dark: the flat is measured only where the median is lit, and is
    1.0 elsewhere, dust or not.

    Parameters
    ----------
    median_lit : float
        :func:`lit_fraction` of the median, in [0, 1].
    frames_lit : float
        :func:`lit_fraction` of single frames (e.g. the median over a few of them), in [0, 1].
    min_share : float
        Smallest ``median_lit / frames_lit`` that passes, in (0, 1].

    Returns
    -------
    ok : bool
        False when the median lights less than ``min_share`` of what the frames light.
    message : str
        A sentence for the asset metadata and the log.

    Raises
    ------
    ValueError
        For fractions outside [0, 1] or ``min_share`` outside (0, 1].
    """
    for name, value in (("median_lit", median_lit), ("frames_lit", frames_lit)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {value}.")
    if not 0.0 < min_share <= 1.0:
        raise ValueError(f"min_share must lie in (0, 1], got {min_share}.")
    if frames_lit == 0.0 or median_lit >= min_share * frames_lit:
        return True, (
            f"the median lights {median_lit:.1%} of the frame, single frames {frames_lit:.1%}."
        )
    return False, (
        f"the median lights only {median_lit:.1%} of the frame where single frames light "
        f"{frames_lit:.1%}: the target moved across much of its own width, and the median, "
        "which the flat is measured on, holds it only where it stayed in more than half of "
        "the frames: elsewhere on its track dust is neither found nor corrected, and what "
        "the median shows there (sky, noise) is no reference. Capture with less drift "
        "across the target's width (a crescent: drift along its length)."
    )
