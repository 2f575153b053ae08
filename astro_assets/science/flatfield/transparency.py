"""Each frame's transparency: the target's light it received, relative to the video's
typical frame.

Passing clouds, haze, and an exposure or gain changed during the capture scale all of a frame's
light above the pedestal alike. The temporal median outvotes a minority of such frames, but
the comparisons that tell dust from the scene (``science.flatfield.motion``) do not: each
pixel's dust-free light is predicted from the frames that saw its part of the scene elsewhere
on the sensor, and where frames dimmed by a cloud weigh in, the prediction is darker in some
places than in others. On a drifting Sun of 40 frames, 4 of them at 30 % of the light, the
ratio of the median to that prediction then showed shadows that are not there over 0.25 % of
the frame (precision 0.68), and the flat's rms error in dust was 3.7 % against 0.58 % with
the gains divided out (three seeds, ``benchmarks/quality_flatfield_beyond.py``, set 8).

Where two registered frames see the same part of the scene, their light there differs by the
ratio of their transparencies and of the sensor's smooth response at the two pixels
(``science.flatfield.response``). Frames are compared with their neighbours in time, a few
frames apart, so that over the short displacement between them the response changes little;
the pairs' ratios are then solved for one gain per frame. What the response still leaves (a
small target crossing a vignetted field dims as it nears a corner: 0.35 % over the grid's
drifting planet, vignetted by 10 % at the corners) is taken for transparency, so
``science.flatfield.motion`` measures the gains again on frames divided by the response once
it is known (0.1-0.2 % left there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from astro_assets.science.flatfield.drift import block_means, checked_offsets, common_frame_shape
from astro_assets.science.flatfield.levels import target_level
from astro_assets.science.flatfield.response import ResponseCorrectedFrame

__all__ = [
    "GAIN_TOLERANCE",
    "FrameTransparency",
    "divided_by_transparency",
    "frame_transparency",
]

_PAIR_LAGS = (1, 2, 4, 8)
"""Each frame is compared with the frames these many places later: short lags keep the
response's change small, the longer ones keep the chain of ratios from drifting."""

GAIN_TOLERANCE = 0.003
"""Gains within this fraction of 1 are taken as 1 (:meth:`FrameTransparency.divisors`). On
clear synthetic videos (the grid's Sun, its planet crossing a vignetted field once the
response is divided out, a drifting lunar photograph) the gains measured spread by 0.03-0.2 %
about 1: divided out, such departures change nothing the ratio search can resolve (its
shallowest shadow is 0.5 % deep) but still flip decisions at the detector's margin (on the
lunar photograph under f/10 donuts, 0.49 -> 0.61 % of the frame in false shadow on one seed
with gains of 0.9998-1.0003)."""
_CLIP_SIGMA = 3.0
_CLIP_PASSES = 3
_MIN_RESIDUAL_SPREAD = 1e-4
"""Floor of the pairs' residual spread (log units) used for clipping: pairs of a noiseless
video agree exactly, and none would survive a zero threshold."""


@dataclass(frozen=True)
class FrameTransparency:
    """The result of :func:`frame_transparency`.

    Attributes
    ----------
    gains : np.ndarray
        (n,) float64, each frame's light above the pedestal over the typical frame's: the
        median over the frames measured is 1. 1.0 for a frame not measured.
    measured : np.ndarray
        (n,) bool, frames that shared enough lit pixels with another frame to be measured.
    pairs_used : int
        Pairs of frames whose ratios the gains were solved from (after clipping).
    """

    gains: np.ndarray
    measured: np.ndarray
    pairs_used: int

    def dimmer_than(self, fraction: float) -> np.ndarray:
        """(n,) bool, frames measured with a gain below ``fraction``."""
        return self.measured & (self.gains < fraction)

    def divisors(self) -> np.ndarray:
        """(n,) float64, the gains to divide the frames by: 1 where a gain is within
        ``GAIN_TOLERANCE`` of it (or not measured)."""
        departs = self.measured & (np.abs(self.gains - 1.0) > GAIN_TOLERANCE)
        return np.where(departs, self.gains, 1.0)


def _binned_light(frame, factor: int, black_level: float) -> np.ndarray:
    """Block means over ``factor`` x ``factor`` pixels of a frame's light above the pedestal
    (the partial last row and column dropped), read in bands so that the frame is never
    converted whole."""
    rows = np.shape(frame)[0] // factor
    band = max(1, 256 // factor) * factor
    binned = [
        block_means(np.asarray(frame[start : start + band, :], dtype=np.float32), factor)
        for start in range(0, rows * factor, band)
    ]
    return np.concatenate(binned).astype(np.float64) - black_level


def frame_transparency(
    frames: Sequence[np.ndarray],
    shifts: np.ndarray,
    *,
    black_level: float = 0.0,
    bright_fraction: float = 0.25,
    max_side_px: int = 256,
    min_samples: int = 64,
) -> FrameTransparency:
    """Measure each registered frame's transparency from the parts of the scene it shares
    with its neighbours.

    Frames are binned to at most ``max_side_px`` on their long side. Each frame ``k`` is
    paired with the frames ``k + 1``, ``k + 2``, ``k + 4`` and ``k + 8`` (in the order given,
    usually time); over the binned pixels where both see the target lit (above
    ``bright_fraction`` of each frame's own bright level, ``levels.target_level``: no sky, no
    umbra, no limb's edge), the median log ratio of their light is ``log g_k - log g_j``,
    dust and misregistered edges outvoted. The ratios are solved for ``log g`` by least
    squares, pairs more than 3 spreads from the solution clipped (a frame the cloud covered in
    part, a scene that changed).

    Parameters
    ----------
    frames : sequence of array-like
        Registered frames, each (H, W) in ADU, supporting 2-D slicing (arrays, memory maps,
        lazy views; read band by band, not modified).
    shifts : np.ndarray
        (len(frames), 2) displacement (dy, dx) of the scene in each frame, pixels.
    black_level : float
        The frames' pedestal, ADU, which transparency does not scale.
    bright_fraction : float
        Pixels below this fraction of a frame's bright level are not compared. In (0, 1).
    max_side_px : int
        Binned size of the frames' long side (at least 16).
    min_samples : int
        Binned pixels a pair needs in common to be used.

    Returns
    -------
    FrameTransparency

    Raises
    ------
    ValueError
        For fewer than two frames, shifts that do not match them, frames of different shapes,
        a non-finite ``black_level``, ``bright_fraction`` outside (0, 1), ``max_side_px``
        below 16 or ``min_samples`` below 1.
    """
    offsets = checked_offsets(frames, shifts)
    if not np.isfinite(black_level):
        raise ValueError(f"black_level must be finite, got {black_level}.")
    if not 0.0 < bright_fraction < 1.0:
        raise ValueError(f"bright_fraction must be in (0, 1), got {bright_fraction}.")
    if max_side_px < 16:
        raise ValueError(f"max_side_px must be at least 16, got {max_side_px}.")
    if min_samples < 1:
        raise ValueError(f"min_samples must be at least 1, got {min_samples}.")
    shape = common_frame_shape(frames)
    count = len(frames)
    factor = max(1, math.ceil(max(shape) / max_side_px))
    factor = min(factor, max(1, min(shape) // 8))
    light = [_binned_light(frame, factor, float(black_level)) for frame in frames]
    floors = []
    for binned in light:
        finite = binned[np.isfinite(binned)]
        level = target_level(finite) if finite.size else math.nan
        floors.append(bright_fraction * level if level > 0 else math.inf)
    # Binned pixel centres lie at factor * (i + 1/2) - 1/2 in frame pixels: a displacement
    # divided by the factor carries them in binned pixels.
    binned_offsets = offsets / factor
    rows, cols = np.indices(light[0].shape, dtype=np.float64)
    pairs: list[tuple[int, int]] = []
    ratios: list[float] = []
    for k in range(count):
        with np.errstate(invalid="ignore"):
            lit_here = light[k] > floors[k]
        if not lit_here.any():
            continue
        for lag in _PAIR_LAGS:
            j = k + lag
            if j >= count or not math.isfinite(floors[j]):
                continue
            delta = binned_offsets[k] - binned_offsets[j]
            light_there = ndimage.map_coordinates(
                light[j], [rows - delta[0], cols - delta[1]], order=1, mode="constant", cval=0.0
            )
            with np.errstate(invalid="ignore"):
                usable = lit_here & (light_there > floors[j])
            if np.count_nonzero(usable) < min_samples:
                continue
            pairs.append((k, j))
            ratios.append(float(np.median(np.log(light[k][usable] / light_there[usable]))))
    gains = np.ones(count, dtype=np.float64)
    measured = np.zeros(count, dtype=bool)
    if not pairs:
        return FrameTransparency(gains=gains, measured=measured, pairs_used=0)
    first = np.array([k for k, _ in pairs])
    second = np.array([j for _, j in pairs])
    target = np.array(ratios)
    keep = np.ones(len(pairs), dtype=bool)
    log_gains = np.zeros(count)
    for _ in range(_CLIP_PASSES):
        design = np.zeros((int(keep.sum()), count))
        design[np.arange(design.shape[0]), first[keep]] = 1.0
        design[np.arange(design.shape[0]), second[keep]] = -1.0
        # The ratios fix the gains up to one constant per connected group of frames; the
        # minimum-norm solution sets each group's mean, and the median is taken below.
        log_gains = np.linalg.lstsq(design, target[keep], rcond=None)[0]
        residual = target - (log_gains[first] - log_gains[second])
        spread = max(
            1.4826 * float(np.median(np.abs(residual[keep] - np.median(residual[keep])))),
            _MIN_RESIDUAL_SPREAD,
        )
        clipped = np.abs(residual) <= _CLIP_SIGMA * spread
        if np.array_equal(clipped, keep) or not clipped.any():
            break
        keep = clipped
    measured[first[keep]] = True
    measured[second[keep]] = True
    log_gains = log_gains - float(np.median(log_gains[measured]))
    gains[measured] = np.exp(log_gains[measured])
    return FrameTransparency(gains=gains, measured=measured, pairs_used=int(keep.sum()))


def divided_by_transparency(
    frames: Sequence, divisors: np.ndarray, black_level: float = 0.0
) -> list:
    """``frames`` with those whose divisor is not 1 divided by it
    (:class:`.response.ResponseCorrectedFrame`), the others as given.

    Parameters
    ----------
    frames : sequence of array-like
        (H, W) frames.
    divisors : np.ndarray
        (len(frames),) positive gains, as from :meth:`FrameTransparency.divisors`.
    black_level : float
        The frames' pedestal, ADU.
    """
    if len(divisors) != len(frames):
        raise ValueError(f"need one divisor per frame ({len(frames)}), got {len(divisors)}.")
    return [
        frame if divisor == 1.0 else ResponseCorrectedFrame(frame, divisor, black_level)
        for frame, divisor in zip(frames, divisors, strict=True)
    ]
