"""How far the target moved over a video, and whether that is enough to tell dust from the scene.

A temporal median keeps what is fixed on the sensor (dust) and also what is fixed in the scene
when tracking is good (sunspots, limb). Dust can be told from a scene feature of the same size
only if the scene moved by more than about twice that size (then the feature covers any pixel in
fewer than half of the frames and drops out of the median). The frames are registered by a
shift; where the field turns (an alt-az mount), no shift registers the whole scene, so the
rotation is measured too and, beyond the registration's tolerance, the frames count as not
registered.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache, partial
from typing import NamedTuple

import numpy as np
import scipy.fft
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from astro_assets.science.compiled import compiled
from astro_assets.science.flatfield.levels import signal_spread, with_signal
from astro_assets.science.flatfield.median import selected_frames

__all__ = [
    "DriftEstimate",
    "DriftParams",
    "binning_factor",
    "block_means",
    "checked_offsets",
    "common_frame_shape",
    "drift_verdict",
    "estimate_drift",
    "median_filter_reflect",
    "scaled_to_grid",
]


@dataclass(frozen=True)
class DriftParams:
    """Parameters of :func:`estimate_drift`.

    Attributes
    ----------
    max_frames : int
        At most this many frames, evenly spaced over the video (first and last included), are
        registered against the first one.
    highpass_sigma_px : float
        Gaussian scale removed before registration: vignetting and the smooth disc brightness are
        fixed on the sensor or nearly flat and would pull the peak to zero shift. On frames
        whose short side (binned) is under 16 times this scale, it and
        ``seeing_smoothing_px`` are scaled down in proportion (:func:`scaled_to_grid`).
    despeckle_size_px : int
        Median-filter size applied first, so that static hot pixels do not anchor the
        correlation at zero shift (1 disables it).
    upsample_factor : int
        Sub-pixel precision of the phase correlation (1/upsample_factor px).
    exclude_dilation_px : int
        The excluded region (dust) is grown by this much before it is blanked.
    refinements : int
        Re-registrations after shifting the frame back by the current estimate; each removes
        most of the pull of static features towards zero shift.
    max_closure_px : float
        The frames count as registered when the shifts of a few pairs of frames measured
        against each other agree with those measured against the first frame within this
        distance, binned pixels (the median over the pairs, ``DriftEstimate.closure_px``), and
        the field's rotation moves no part of the textured scene farther than this from where
        the shifts put it (``DriftEstimate.rotation_px``).
    seeing_smoothing_px : float
        When the registrations fail their closure, they are made again on the band-passed
        frames smoothed by this Gaussian scale, binned pixels (0: not tried), and those are
        taken when they pass it and their path lies within ``max_closure_px`` (median over the
        frames) of the first one. Differential seeing moves each part of a frame by its own
        pixel or two, and the correlation of the finest texture peaks where the parts that
        moved alike pile up, which changes from pair to pair; smoothed, the parts' peaks
        merge into one near their mean. Only a retry: on a 96 x 72 px frame with little
        texture above that scale, smoothing moved a rigid drift's registration by 2.8 px.
    max_side_px : int
        Frames larger than this on their long side are block-averaged by the smallest integer
        factor that brings them under it before registration, and the shifts scaled back: the
        verdict needs the drift to a fraction of a dust diameter, not of a pixel, and the cost
        of registration grows with the area. The factor is held so that the short side keeps
        at least 128 binned pixels: a long, narrow region of interest is binned less, or not
        at all. The filter sizes above are in binned pixels.
    """

    max_frames: int = 32
    highpass_sigma_px: float = 8.0
    despeckle_size_px: int = 3
    upsample_factor: int = 20
    exclude_dilation_px: int = 3
    refinements: int = 1
    max_closure_px: float = 2.0
    seeing_smoothing_px: float = 2.0
    max_side_px: int = 512

    def __post_init__(self) -> None:
        if self.max_frames < 2:
            raise ValueError(f"max_frames must be >= 2, got {self.max_frames}.")
        if not self.highpass_sigma_px > 0:
            raise ValueError(f"highpass_sigma_px must be > 0, got {self.highpass_sigma_px}.")
        if self.despeckle_size_px < 1:
            raise ValueError(f"despeckle_size_px must be >= 1, got {self.despeckle_size_px}.")
        if self.upsample_factor < 1:
            raise ValueError(f"upsample_factor must be >= 1, got {self.upsample_factor}.")
        if self.refinements < 0:
            raise ValueError(f"refinements must be >= 0, got {self.refinements}.")
        if self.exclude_dilation_px < 0:
            raise ValueError(f"exclude_dilation_px must be >= 0, got {self.exclude_dilation_px}.")
        if not self.max_closure_px > 0:
            raise ValueError(f"max_closure_px must be > 0, got {self.max_closure_px}.")
        if not 0 <= self.seeing_smoothing_px < self.highpass_sigma_px:
            raise ValueError(
                "seeing_smoothing_px must be >= 0 and below highpass_sigma_px "
                f"({self.highpass_sigma_px}), got {self.seeing_smoothing_px}."
            )
        if self.max_side_px < 64:
            raise ValueError(f"max_side_px must be >= 64, got {self.max_side_px}.")


@dataclass(frozen=True)
class DriftEstimate:
    """Measured motion of the target.

    Attributes
    ----------
    shifts : np.ndarray
        (n_used, 2) float64, (dy, dx) in pixels: position of the scene in each used frame
        relative to the first one used (a feature at (y, x) there is at (y + dy, x + dx)).
    total_px : float
        Largest displacement from the first frame used, in pixels.
    rms_px : float
        RMS distance of the scene positions from their mean position, in pixels.
    frames_used : np.ndarray
        (n_used,) int64 indices of the registered frames.
    static_pattern_removed : bool
        True when the frames' static pattern (dust the exclusion missed, sensor line defects)
        held the first registration near zero shift, and the shifts are those measured on the
        frames less that pattern.
    exclusion_dropped : bool
        True when the shifts are those measured without the exclusion: it held the first
        registration near zero shift (it blanked the path of a moving scene feature the eye
        took for dust, leaving a shadow it missed to anchor the rest), or, with fewer than
        ``_MIN_TRAJECTORY_FRAMES`` frames, it left too little of the scene to register (the
        median of two frames is their mean, in which every sunspot shows at both of its
        places: the eye takes both for dust and the exclusion blanks the scene's strongest
        features in both frames; see :func:`_few_frames_path`).
    closure_px : float
        Median distance, pixels, between the shifts of a few pairs of frames registered
        against each other and those the shifts from the first frame imply: a fraction of a pixel
        where the frames show a scene to follow; infinite when every frame is uniform, NaN
        with two frames (one pair, which cannot be checked against itself:
        ``closure_checked`` is then False).
    registered : bool
        Whether ``closure_px`` is not above ``DriftParams.max_closure_px``: when it is, the frames
        show too little of a scene (noise, an empty field) for the shifts to mean anything.
        True where the closure could not be checked (``closure_checked`` False): the shifts
        were not refuted, which is less than confirmed. False also where the field rotated
        (``field_rotated``): no shift registers the whole scene.
    frames_without_signal : np.ndarray
        (k,) int64 indices of sampled frames left out of ``frames_used`` because they show too
        little of the scene to register (``levels.with_signal``): blank frames, thick clouds.
    smoothed_for_seeing : bool
        True when the first registrations failed their closure and the shifts are those
        measured again, blanked, on smoothed frames (``DriftParams.seeing_smoothing_px``;
        ``static_pattern_removed`` and ``exclusion_dropped`` are then False).
    binning : int
        The block size the frames were averaged over before registration
        (:func:`binning_factor`): ``closure_px / binning`` is the closure on the registration's
        grid, which ``DriftParams.max_closure_px`` bounds.
    highpass_sigma_px : float
        The high-pass scale the registrations used, binned pixels (:func:`scaled_to_grid`).
    rotation_deg : float
        Rotation of the field from the first frame used to the last, degrees, positive
        counter-clockwise as displayed (row 0 at the top): an alt-az mount turns the scene
        while the dust stays still. Measured on patches of the registered frames where they
        show texture, as a rotation steady in time; NaN where the frames were not registered
        by their closure or too few patches show texture.
    rotation_px : float
        The largest displacement, pixels, that rotation gives the scene over the frame, about
        the middle of the patches it was measured on (where a registration by a shift holds
        the scene): how far the frame's far parts lie from where ``shifts`` put them at the
        end of the video.
    field_rotated : bool
        Whether the rotation is at least ``_ROTATION_SIGNIFICANCE`` times its standard error
        (the patches' seeing) and ``rotation_px`` is above ``DriftParams.max_closure_px`` of
        the registration's grid; ``registered`` is then False.
    """

    shifts: np.ndarray
    total_px: float
    rms_px: float
    frames_used: np.ndarray
    static_pattern_removed: bool = False
    exclusion_dropped: bool = False
    closure_px: float = 0.0
    registered: bool = True
    frames_without_signal: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    smoothed_for_seeing: bool = False
    binning: int = 1
    highpass_sigma_px: float = DriftParams.highpass_sigma_px
    rotation_deg: float = math.nan
    rotation_px: float = math.nan
    field_rotated: bool = False

    @property
    def closure_checked(self) -> bool:
        """Whether a pair of frames registered against each other checked the shifts: False
        with two frames (``closure_px`` NaN), whose one registration nothing can confirm, so
        that a wrong one (a correlation peak of what the exclusion left) would go unnoticed."""
        return not math.isnan(self.closure_px)


_MIN_BINNED_SIDE_PX = 128
"""The drift's short side is not binned below this (unless the frame's is shorter): on a
1000 x 120 ROI binned by 2 to 60 px rows, the drift of 40 px was measured as 14-22 px."""


def binning_factor(
    shape: tuple[int, ...], max_side_px: int, min_side_px: int = _MIN_BINNED_SIDE_PX
) -> int:
    """The smallest factor (>= 1) that brings the long side of ``shape`` under
    ``max_side_px``, held so that the short side keeps at least ``min_side_px`` binned pixels
    (unless it is shorter already)."""
    factor = -(-max(shape) // max_side_px)
    return max(1, min(factor, min(shape) // min_side_px))


_GRID_PER_HIGHPASS_SIGMA = 16
"""The registration's grid spans at least this many high-pass scales on its short side: the
binning keeps 128 px, where the default 8 px scale applies unchanged."""


def scaled_to_grid(params: DriftParams, shape: tuple[int, ...]) -> DriftParams:
    """``params`` with the high-pass and seeing scales reduced in proportion on a grid of
    ``shape`` (binned) whose short side is under ``_GRID_PER_HIGHPASS_SIGMA`` high-pass scales.

    What the high-pass leaves on a small frame is a handful of features about twice the scale
    across (dust shadows, sunspots, the limb), and the Hann window keeps about half of the
    frame: too few for the scene's texture to outweigh the fixed shadows. On eight 64 x 48 Suns
    drifting 13 px, the 8 px scale registered 4 right, 3 wrong with the closure passing (two
    at 1-5 px of drift) and 1 not at all; at 3 px (48 / 16) all 8 were right. Over twelve
    sizes from 64 x 48 to 224 x 168 (Suns and planets, mono and on a mosaic's 2 x 2 cells,
    8 seeds each, drift 20 % of the width), every frame within 2 grid px of the truth in 90 of 96
    videos, 6 registered with a frame farther off and none unregistered; at 8 px, 76, 12 and 8.
    """
    limit = min(shape) / _GRID_PER_HIGHPASS_SIGMA
    if params.highpass_sigma_px <= limit:
        return params
    scale = limit / params.highpass_sigma_px
    return replace(
        params,
        highpass_sigma_px=limit,
        seeing_smoothing_px=params.seeing_smoothing_px * scale,
    )


def block_means(image: np.ndarray, factor: int) -> np.ndarray:
    """Block means over ``factor`` x ``factor`` pixels (a partial last row/column is dropped)."""
    if factor == 1:
        return image
    height, width = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    blocks = image[:height, :width].reshape(height // factor, factor, width // factor, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def _despeckle(frame: np.ndarray, params: DriftParams) -> np.ndarray:
    """The frame as float32, median-filtered so that static hot pixels are gone."""
    data = np.asarray(frame, dtype=np.float32)
    if params.despeckle_size_px > 1:
        data = median_filter_reflect(data, params.despeckle_size_px)
    return data


def median_filter_reflect(image: np.ndarray, size: int) -> np.ndarray:
    """``scipy.ndimage.median_filter(image, size=size)`` (mode ``reflect``), value for value.

    Compiled, because drift registration despeckles every sampled frame and scipy's rank
    filter takes about 15 ms on a 0.14-megapixel frame for a 3 x 3 window. A 3 x 3 window is
    taken from its sorted columns (0.4 ms on that frame); other sizes insertion-sort each
    window in a small buffer (about as fast as scipy).

    Parameters
    ----------
    image : np.ndarray
        (H, W) float32, finite.
    size : int
        Window side, px (>= 1); for an even side the window reaches one pixel further up and
        left than down and right, and the upper of the two middle values is taken, as scipy
        does.

    Returns
    -------
    np.ndarray
        (H, W) float32.
    """
    data = np.ascontiguousarray(image, dtype=np.float32)
    out = np.empty_like(data)
    _median_filter_kernel(data, size, out)
    return out


@compiled
def _median_filter_kernel(image, size, out):  # pragma: no cover - compiled
    height, width = image.shape
    before = size // 2
    rows = _reflected_indices(height, before, size)
    cols = _reflected_indices(width, before, size)
    if size == 3:
        _median_filter_3x3(image, rows, cols, out)
        return
    rank = size * size // 2
    window = np.empty(size * size, dtype=np.float32)
    for row in range(height):
        for col in range(width):
            count = 0
            for dy in range(size):
                source = image[rows[row + dy]]
                for dx in range(size):
                    value = source[cols[col + dx]]
                    slot = count
                    while slot > 0 and window[slot - 1] > value:
                        window[slot] = window[slot - 1]
                        slot -= 1
                    window[slot] = value
                    count += 1
            out[row, col] = window[rank]


@compiled
def _median_filter_3x3(image, rows, cols, out):  # pragma: no cover - compiled
    """3 x 3 median from sorted columns: the median of nine values is the median of the
    largest column minimum, the median of the column medians and the smallest column maximum.
    Each column of three is sorted once per row and shared by the three windows over it."""
    height, width = image.shape
    lows = np.empty(width + 2, dtype=np.float32)
    middles = np.empty(width + 2, dtype=np.float32)
    highs = np.empty(width + 2, dtype=np.float32)
    for row in range(height):
        above, centre, below = image[rows[row]], image[rows[row + 1]], image[rows[row + 2]]
        for position in range(width + 2):
            col = cols[position]
            low, middle, high = _sorted3(above[col], centre[col], below[col])
            lows[position] = low
            middles[position] = middle
            highs[position] = high
        for col in range(width):
            largest_low = max(lows[col], max(lows[col + 1], lows[col + 2]))
            _, middle_of_middles, _ = _sorted3(middles[col], middles[col + 1], middles[col + 2])
            smallest_high = min(highs[col], min(highs[col + 1], highs[col + 2]))
            _, median, _ = _sorted3(largest_low, middle_of_middles, smallest_high)
            out[row, col] = median


@compiled
def _sorted3(a, b, c):  # pragma: no cover - compiled
    if a > b:
        a, b = b, a
    if b > c:
        b, c = c, b
    if a > b:
        a, b = b, a
    return a, b, c


@compiled
def _reflected_indices(length, before, size):  # pragma: no cover - compiled
    """Source index of positions ``-before .. length - 1 + size - 1 - before`` mirrored into
    ``[0, length)`` about the edges (``d c b a | a b c d``), from 0."""
    indices = np.empty(length + size - 1, dtype=np.int64)
    period = 2 * length
    for position in range(indices.size):
        index = (position - before) % period
        indices[position] = index if index < length else period - 1 - index
    return indices


_MIN_TRAJECTORY_FRAMES = 5
"""Fewest registered frames whose static pattern is estimated and whose path is judged."""
_TRAJECTORY_SIGNAL = 10.0
"""A path counts as the scene's when it reaches this many times its scatter about a quadratic
in time: seeing and noise scatter a registration without a scene to follow by about as much as
they move it."""
_ANCHOR_DEPARTURE = 3.0
"""The first registration was held by the static pattern when the static-free path departs
from it by more than this many times that scatter (at least a binned pixel)."""


class _Blanking(NamedTuple):
    """Pixels left out of the correlation, in the forms ``_prepare`` uses: the same for every
    frame prepared with the same blank, so made once per blank."""

    mask: np.ndarray
    keep: np.ndarray
    weight: np.ndarray


def _blanking(blank: np.ndarray | None, params: DriftParams) -> _Blanking | None:
    """``blank`` (bool), its complement as float32 and the low-pass of that complement (the
    normalization of ``_prepare``'s blanked low-pass); None without a blank."""
    if blank is None:
        return None
    keep = (~blank).astype(np.float32)
    return _Blanking(blank, keep, ndimage.gaussian_filter(keep, params.highpass_sigma_px))


def _prepare(data: np.ndarray, blanking: _Blanking | None, params: DriftParams) -> np.ndarray:
    """High-passed, blanked and apodized copy of a despeckled frame, ready to correlate."""
    data = _highpassed(data, blanking, params)
    return data * _apodization(data.shape)


def _highpassed(data: np.ndarray, blanking: _Blanking | None, params: DriftParams) -> np.ndarray:
    """High-passed and blanked copy of a despeckled frame."""
    if blanking is None:
        return data - ndimage.gaussian_filter(data, params.highpass_sigma_px)
    # The low-pass ignores the blanked dust (normalized convolution); a plain blur would
    # spread the static shadow into a halo that anchors the correlation at zero shift.
    low = ndimage.gaussian_filter(data * blanking.keep, params.highpass_sigma_px)
    return (data - low / np.maximum(blanking.weight, 1e-6)) * blanking.keep


def _register(
    reference: np.ndarray,
    prepared_reference: np.ndarray,
    moving: np.ndarray,
    blanking: _Blanking | None,
    params: DriftParams,
    guess: np.ndarray | None = None,
) -> np.ndarray:
    """Scene displacement (dy, dx) from ``reference`` to ``moving`` (both despeckled);
    ``prepared_reference`` is ``_prepare(reference, blanking, params)``, the same for every
    frame.

    The blanked (static) dust and the apodization pull a single estimate slightly towards zero
    shift, in proportion to the shift; so the moving frame is shifted back by the estimate and
    the small residual is measured again (``refinements`` times). With a ``guess``, the moving
    frame is shifted back by it before the first measurement. Frames are despeckled once,
    before any shift: a small median filter commutes with a shift up to the interpolation.
    """
    total = np.zeros(2)
    aligned, aligned_blanking = moving, blanking
    if guess is not None:
        total += guess
        aligned, aligned_blanking, prepared_reference = _aligned(
            reference, moving, blanking, total, params
        )
    for iteration in range(1 + params.refinements):
        total += _displacement(
            prepared_reference, _prepare(aligned, aligned_blanking, params), params
        )
        if iteration == params.refinements:
            break
        aligned, aligned_blanking, prepared_reference = _aligned(
            reference, moving, blanking, total, params
        )
    return total


def _aligned(
    reference: np.ndarray,
    moving: np.ndarray,
    blanking: _Blanking | None,
    shift: np.ndarray,
    params: DriftParams,
) -> tuple[np.ndarray, _Blanking | None, np.ndarray]:
    """``moving`` shifted back by ``shift``, the blanking grown by its own shifted copy (the
    dust is fixed on the sensor, so it lies at both places in the moving frame's new grid),
    and ``reference`` prepared with that blanking."""
    aligned = ndimage.shift(moving, -shift, order=3, mode="nearest")
    if blanking is None:
        return aligned, None, _prepare(reference, None, params)
    mask = blanking.mask
    shifted = ndimage.shift(mask.astype(np.float32), -shift, order=0, mode="constant")
    grown = _blanking(mask | (shifted > 0.5), params)
    return aligned, grown, _prepare(reference, grown, params)


def estimate_drift(
    frames: np.ndarray | Sequence[np.ndarray],
    *,
    exclude: np.ndarray | None = None,
    max_frames: int | None = None,
    params: DriftParams = DriftParams(),
    candidates: Sequence[int] | np.ndarray | None = None,
) -> DriftEstimate:
    """Measure the motion of the target across a video by phase correlation.

    Frames are despeckled, high-passed and apodized, the excluded region (the dust, which is
    fixed on the sensor) is blanked, and each sampled frame is registered against the first one
    with ``phase_cross_correlation(..., normalization=None)``: the default phase normalization
    whitens the spectrum and locks onto static sensor features. What the exclusion does not
    cover (dust the eye missed, a sensor line defect) can still hold that registration near
    zero shift; the frames are therefore also registered less their median over the sampled
    frames, and that path is taken when it is a smooth trajectory that departs from the first
    (``DriftEstimate.static_pattern_removed``) and reaches farther than the first one, unless
    that one failed its closure (:func:`_closure`). Failing that, they are registered without
    the exclusion, which may have blanked the scene's strongest moving feature (a sunspot's
    path the eye took for dust), and that path is taken on the same terms
    (``DriftEstimate.exclusion_dropped``); failing that too, without the exclusion and less
    their median (both flags set). With fewer than five frames, too few to judge a path by,
    the registration without the exclusion is taken where it reaches farther and the frames
    agree better under it (:func:`_few_frames_path`: the median of two frames holds every
    sunspot at both its places, and the exclusion would blank them). Two frames have no pair
    to check their registration (``DriftEstimate.closure_checked``). Frames that pass the
    closure check are checked for a rotation of the field (:func:`_video_rotation`), which no
    shift registers: where it moves the scene's far parts by more than
    ``params.max_closure_px``, they count as not registered (``DriftEstimate.field_rotated``).

    Parameters
    ----------
    frames : array-like
        (n, H, W) frames (an array, a memmap, or a sequence of (H, W) arrays); only the sampled
        frames are read.
    exclude : np.ndarray, optional
        (H, W) bool, pixels to ignore (the dust core mask).
    max_frames : int, optional
        Overrides ``params.max_frames``.
    params : DriftParams
        Sampling and filtering.
    candidates : sequence of int, optional
        The frames the samples are drawn from, strictly increasing (e.g. those the temporal
        median kept, blank frames left out, so that none of the samples is spent on them); all
        by default.

    Returns
    -------
    DriftEstimate

    Raises
    ------
    ValueError
        With fewer than two frames (or candidates), frames that are not 2-D or differ in
        shape, a mask of the wrong shape, or frames with NaN/inf.
    """
    if max_frames is not None:
        params = replace(params, max_frames=max_frames)
    n_frames = len(frames)
    if n_frames < 2:
        raise ValueError(f"need at least 2 frames to measure drift, got {n_frames}.")
    pool = selected_frames(n_frames, 1, candidates)
    if pool.size < 2:
        raise ValueError(
            f"need at least 2 candidate frames to measure drift, got {pool.size} ({pool.tolist()})."
        )
    first = np.asarray(frames[int(pool[0])])
    if first.ndim != 2:
        raise ValueError(f"each frame must be 2-D (H, W), got shape {first.shape}.")
    blank = None
    if exclude is not None:
        blank = np.asarray(exclude)
        if blank.shape != first.shape or blank.dtype != bool:
            raise ValueError(
                f"exclude must be a bool (H, W) = {first.shape} mask, got {blank.dtype} "
                f"{blank.shape}."
            )
    factor = binning_factor(first.shape, params.max_side_px)
    params = scaled_to_grid(params, (first.shape[0] // factor, first.shape[1] // factor))
    if blank is not None:
        blank = block_means(blank.astype(np.float32), factor) > 0
        if params.exclude_dilation_px > 0 and blank.any():
            blank = ndimage.binary_dilation(blank, iterations=params.exclude_dilation_px)
    blanking = _blanking(blank, params)
    count = min(params.max_frames, pool.size)
    used = pool[np.unique(np.linspace(0, pool.size - 1, count).round().astype(np.int64))]
    despeckled = []
    for frame_index in used:
        frame = first if frame_index == pool[0] else np.asarray(frames[int(frame_index)])
        if frame.shape != first.shape:
            raise ValueError(
                f"frame {frame_index} has shape {frame.shape}, the first has {first.shape}."
            )
        if not np.isfinite(frame).all():
            raise ValueError(f"frame {frame_index} contains NaN or inf.")
        despeckled.append(_despeckle(block_means(frame.astype(np.float32), factor), params))
    static_removed = exclusion_dropped = False
    if not any(np.ptp(frame) > 0 for frame in despeckled):
        # Uniform frames have nothing to correlate: phase correlation would return a shift
        # that depends on nothing but the frame's size.
        return DriftEstimate(
            shifts=np.zeros((used.size, 2)),
            total_px=0.0,
            rms_px=0.0,
            frames_used=used,
            closure_px=math.inf,
            registered=False,
            binning=factor,
            highpass_sigma_px=params.highpass_sigma_px,
        )
    # A frame without signal registered first would be every other frame's reference.
    showing = with_signal(np.array([signal_spread(frame) for frame in despeckled]))
    without_signal = used[~showing]
    used = used[showing]
    despeckled = [frame for frame, kept in zip(despeckled, showing, strict=True) if kept]
    register = _BlankedRegistration(despeckled, blanking, params)
    shifts = _path(register, used.size)
    first_register = register
    # Cached: the alternatives ask whether the first path failed, and when none of them is
    # taken the same closure is the estimate's.
    first_closure = cache(partial(_closure, register, shifts))
    if len(despeckled) >= _MIN_TRAJECTORY_FRAMES:

        def first_failed() -> bool:
            return first_closure() > params.max_closure_px

        moved = _static_free(despeckled, params)
        static_free = _static_free_registration(moved, blanking, params)
        shifts, static_removed = _departing_path(
            static_free, used, shifts, farther=True, first_failed=first_failed
        )
        if static_removed:
            register = static_free
        elif blanking is not None:
            # The exclusion blanks whatever the eye took for dust. Where that is the path of a
            # sunspot, the scene's strongest moving feature is gone from every frame, and a
            # shadow the eye missed can hold the registration of what is left at zero shift
            # (on a 160 x 120 view of an 8-bit mosaic, 15 px of drift were read as 0.5). Static
            # features only pull towards zero shift: a smooth path without the exclusion that
            # reaches farther is the scene's.
            unblanked = _BlankedRegistration(despeckled, None, params)
            shifts, exclusion_dropped = _departing_path(
                unblanked, used, shifts, farther=True, first_failed=first_failed
            )
            if exclusion_dropped:
                register = unblanked
            else:
                # Both at once: the exclusion blanked the sunspot's path and a static pattern
                # it did not cover holds the registration of what is left.
                unblanked_static_free = _static_free_registration(moved, None, params)
                shifts, exclusion_dropped = _departing_path(
                    unblanked_static_free, used, shifts, farther=True, first_failed=first_failed
                )
                if exclusion_dropped:
                    register = unblanked_static_free
                    static_removed = True
    elif blanking is not None:
        # Too few frames for the trajectory tests above, whose paths would be judged on two
        # to four points.
        unblanked = _BlankedRegistration(despeckled, None, params)
        shifts, exclusion_dropped = _few_frames_path(register, unblanked, shifts)
        if exclusion_dropped:
            register = unblanked
    closure = first_closure() if register is first_register else _closure(register, shifts)
    smoothed_for_seeing = False
    if closure > params.max_closure_px and params.seeing_smoothing_px > 0:
        smoothed_for_seeing, shifts, closure = _smoothed_for_seeing(
            despeckled, blank, shifts, closure, params
        )
        if smoothed_for_seeing:
            static_removed = exclusion_dropped = False
    closed = not closure > params.max_closure_px
    rotation = _NO_ROTATION
    if closed:
        rotation = _video_rotation(despeckled, used, shifts, blank, params)
    rotated = rotation.significant and rotation.displacement_px > params.max_closure_px
    shifts *= factor
    distances = np.hypot(shifts[:, 0], shifts[:, 1])
    centred = shifts - shifts.mean(axis=0)
    rms = float(np.sqrt(np.mean(np.sum(centred**2, axis=1))))
    return DriftEstimate(
        shifts=shifts,
        total_px=float(distances.max()),
        rms_px=rms,
        frames_used=used,
        static_pattern_removed=static_removed,
        exclusion_dropped=exclusion_dropped,
        closure_px=factor * closure,
        registered=closed and not rotated,
        rotation_deg=math.degrees(rotation.angle_rad),
        rotation_px=factor * rotation.displacement_px,
        field_rotated=rotated,
        frames_without_signal=without_signal,
        smoothed_for_seeing=smoothed_for_seeing,
        binning=factor,
        highpass_sigma_px=params.highpass_sigma_px,
    )


def _few_frames_path(
    blanked: _BlankedRegistration, unblanked: _BlankedRegistration, shifts: np.ndarray
) -> tuple[np.ndarray, bool]:
    """The path registered without the exclusion where it is the scene's, else ``shifts`` (the
    path registered with it); and whether it was taken. For videos too short for
    :func:`_departing_path`'s trajectory test.

    The exclusion comes from the median, and the median of two frames is their mean: every
    sunspot shows in it at both of its places, half deep, the eye takes both for dust, and the
    exclusion blanks the scene's strongest features in both frames. On a 320 x 240 Sun whose
    fine texture the despeckling removes, 94 % of what the two frames share at the true shift
    lay under it, and the rest peaked at 18 px of a 48 px drift (without the exclusion:
    48.3 px). Taken are the shifts without it that reach farther from the first frame than
    those with it (static features only pull a registration towards zero shift, so a
    registration held by the dust the exclusion would have hidden is not farther) and under
    which the frames agree better (``_BlankedRegistration.agreement`` without the exclusion:
    the dust it leaves in adds to the agreement only near zero shift, that is to the shifts
    kept, so it errs towards them).
    """
    limit = blanked.params.max_closure_px
    alternative = _path(unblanked, len(shifts))
    if np.hypot(*(alternative - shifts).T).max() <= limit:
        return shifts, False
    reach = float(np.hypot(*shifts.T).max())
    if float(np.hypot(*alternative.T).max()) <= reach + limit:
        return shifts, False
    frames = range(1, len(shifts))
    kept = sum(unblanked.agreement(0, index, shifts[index]) for index in frames)
    dropped = sum(unblanked.agreement(0, index, alternative[index]) for index in frames)
    if dropped > kept:
        return alternative, True
    return shifts, False


def _smoothed_for_seeing(
    despeckled: list[np.ndarray],
    blank: np.ndarray | None,
    shifts: np.ndarray,
    closure: float,
    params: DriftParams,
) -> tuple[bool, np.ndarray, float]:
    """The registrations made again, blanked, on frames smoothed by
    ``params.seeing_smoothing_px``: (taken, shifts, closure), with ``shifts`` and ``closure``
    (binned pixels) those given unless taken.

    Taken when they pass the closure and their path lies within ``params.max_closure_px`` of
    the first one (the median over the frames). Registrations of noise land anywhere, so a
    first path of noise lies tens of pixels from any other; and a smoothed path that static
    features hold at zero shift agrees with itself from any frame, but lies as far from a
    first path that follows the scene as the scene moved.
    """
    smoothing = params.seeing_smoothing_px
    frames = [ndimage.gaussian_filter(frame, smoothing) for frame in despeckled]
    if blank is not None and blank.any():
        # The smoothing spreads the blanked shadows' edges outwards by about twice its scale.
        blank = ndimage.binary_dilation(blank, iterations=math.ceil(2 * smoothing))
    register = _BlankedRegistration(frames, _blanking(blank, params), params)
    smoothed = _path(register, len(frames))
    smoothed_closure = _closure(register, smoothed)
    apart = float(np.median(np.hypot(*(smoothed - shifts).T)))
    if smoothed_closure <= params.max_closure_px and apart <= params.max_closure_px:
        return True, smoothed, smoothed_closure
    return False, shifts, closure


_ROTATION_GRID = 4
"""The field's rotation is measured on a grid of this many patches a side, evenly spread over
the frame (:func:`_pair_rotation`)."""
_ROTATION_PATCH_FRACTION = 1 / 3
"""A patch's side over the frame's short side: large enough to hold texture and to follow a
patch that the rotation moved by a tenth of its side (2 degrees from the middle of the video,
10 px at the corners of a 480 x 360 frame)."""
_MIN_PATCH_SIDE_PX = 24
_MIN_PATCH_CORRELATION = 0.3
"""A patch is measured when its two windows, aligned, correlate at least this well: noise
alone correlates about 0, a textured patch bent by seeing 0.6-0.95."""
_MIN_PATCH_ISOTROPY = 0.2
"""A patch is measured when its texture runs in every direction (:func:`_isotropy`): along a
limb alone a displacement is not measured but made up, by noise or by the dust left in
pulling towards the sensor; around a disc, those made-up displacements read as a rotation about
its centre."""
_MIN_ROTATION_PATCHES = 4
_HELD_PATCH_PX = 1.0
_MIN_SHIFT_FOR_HELD_PX = 4.0
_ROTATION_GROUPS = 8
"""The registered frames are averaged in this many consecutive groups, and the rotation of
each group from the middle one is measured (:func:`_video_rotation`)."""
_ROTATION_SIGNIFICANCE = 4.0
"""The rotation counts when it is this many times its standard error: differential seeing
turns each frame's parts by its own fraction of a degree."""


class _Rotation(NamedTuple):
    """The field's rotation over the video.

    Attributes
    ----------
    angle_rad : float
        Rotation of the scene from the first registered frame to the last, radians,
        counter-clockwise as displayed (row 0 at the top) positive; NaN where too few patches
        could be measured.
    standard_error_rad : float
        Its standard error.
    displacement_px : float
        The largest displacement that rotation gives over the frame, about the middle of the
        measured patches (where a registration by a shift holds the scene), pixels of the
        registration's grid.
    """

    angle_rad: float
    standard_error_rad: float
    displacement_px: float

    @property
    def significant(self) -> bool:
        return bool(abs(self.angle_rad) >= _ROTATION_SIGNIFICANCE * self.standard_error_rad)


_NO_ROTATION = _Rotation(math.nan, math.nan, math.nan)


class _PairRotation(NamedTuple):
    """The rotation between two frames: ``angle_rad`` and its ``standard_error_rad`` from the
    patches' scatter about the fitted field, and ``reach_px``, the largest distance from the
    middle of the measured patches (where a registration by a shift holds the scene) to a
    corner of the frame."""

    angle_rad: float
    standard_error_rad: float
    reach_px: float


def _video_rotation(
    despeckled: list[np.ndarray],
    used: np.ndarray,
    shifts: np.ndarray,
    blank: np.ndarray | None,
    params: DriftParams,
) -> _Rotation:
    """The field's rotation from the first registered frame to the last.

    An alt-az mount turns the field about some point while the dust stays fixed, and a
    registration by translation leaves the parts of the scene far from that point several
    pixels off. The frames are averaged in ``_ROTATION_GROUPS`` consecutive groups (each frame
    moved by its registered shift, to whole pixels, onto the first of its group), the rotation
    of every group's mean from the middle group's is measured (:func:`_pair_rotation`), and a
    rotation steady in time is fitted to them: its rate times the video's span is the angle,
    and the groups' scatter about the line its standard error. Differential seeing bends each
    frame by its own pixel or two over tens of pixels, which reads as a rotation of a fraction
    of a degree that changes from frame to frame (on 320 x 240 px, 1.5 px rms in 32 px cells:
    up to 0.9 degrees between the means of the first and last six of 24 frames): averaging
    shrinks it, and the scatter about a steady rotation measures what is left.

    Parameters
    ----------
    despeckled : list of np.ndarray
        (h, w) float32 registered frames on the registration's grid.
    used : np.ndarray
        (n,) int64 their indices in the video (the time).
    shifts : np.ndarray
        (n, 2) float64 their registered shifts (dy, dx), grid pixels.
    blank : np.ndarray or None
        (h, w) bool, the dust (fixed on the sensor) to leave out.
    params : DriftParams
        ``highpass_sigma_px``.
    """
    groups = np.array_split(np.arange(len(despeckled)), min(len(despeckled), _ROTATION_GROUPS))
    means = [_registered_mean(despeckled, shifts, blank, members, params) for members in groups]
    times = np.array([used[members].mean() for members in groups], dtype=np.float64)
    middle = len(groups) // 2
    measured = []
    for group in range(len(groups)):
        if group == middle:
            continue
        shift = shifts[groups[group][0]] - shifts[groups[middle][0]]
        pair = _pair_rotation(means[middle], means[group], shift)
        if math.isfinite(pair.angle_rad):
            measured.append((times[group] - times[middle], pair))
    if not measured:
        return _NO_ROTATION
    elapsed = np.array([time for time, _ in measured])
    angles = np.array([pair.angle_rad for _, pair in measured])
    span = float(used[-1] - used[0])
    reach = float(np.median([pair.reach_px for _, pair in measured]))
    if len(measured) >= 4:
        # The middle group's own seeing is in every angle alike: a free intercept takes it.
        design = np.stack([np.ones_like(elapsed), elapsed], axis=1)
        coefficients, *_ = np.linalg.lstsq(design, angles, rcond=None)
        residual = angles - design @ coefficients
        variance = float(residual @ residual) / (len(measured) - 2)
        rate = float(coefficients[1])
        rate_error = math.sqrt(variance * float(np.linalg.pinv(design.T @ design)[1, 1]))
    else:
        # Too few groups to see the seeing's scatter: the patches' scatter has to do.
        errors = np.array([pair.standard_error_rad for _, pair in measured])
        weight = float(elapsed @ elapsed)
        rate = float(angles @ elapsed) / weight
        rate_error = math.sqrt(float((elapsed**2) @ (errors**2))) / weight
    angle = rate * span
    return _Rotation(angle, rate_error * span, abs(angle) * reach)


def _registered_mean(
    despeckled: list[np.ndarray],
    shifts: np.ndarray,
    blank: np.ndarray | None,
    members: np.ndarray,
    params: DriftParams,
) -> np.ndarray:
    """The high-passed mean of the frames at ``members``, each moved by its registered shift
    (to whole pixels: the half pixel this leaves blurs less than the seeing) onto the scene's
    position in the first of them; zero where the blank (the dust, which moves with each
    frame) lies in any of them, or where a frame moved in from outside."""
    height, width = despeckled[0].shape
    total = np.zeros((height, width), dtype=np.float64)
    covered = np.zeros((height, width), dtype=np.int64)
    blanked = np.zeros((height, width), dtype=bool)
    reference = shifts[members[0]]
    for member in members:
        dy, dx = (int(v) for v in np.rint(reference - shifts[member]))
        if abs(dy) >= height or abs(dx) >= width:
            continue
        target = np.s_[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)]
        source = np.s_[max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)]
        total[target] += despeckled[member][source]
        covered[target] += 1
        if blank is not None:
            blanked[target] |= blank[source]
    seen = covered == covered.max()
    mean = np.where(seen, total / np.maximum(covered, 1), 0.0).astype(np.float32)
    # Outside the part every frame covers, the mean is blanked like the dust: an edge there
    # would be a feature fixed on the sensor.
    left_out = blanked | ~seen
    blanking = _blanking(left_out, params) if left_out.any() else None
    return _highpassed(mean, blanking, params)


def _pair_rotation(reference: np.ndarray, moving: np.ndarray, shift: np.ndarray) -> _PairRotation:
    """The rotation of the scene from ``reference`` to ``moving`` (two high-passed, blanked
    frames), whose registered displacement is ``shift`` (dy, dx), grid pixels.

    Patches on a grid over ``reference`` are registered against ``moving``'s windows at
    ``shift`` (cut at whole pixels, so that nothing is interpolated, and cut again once at the
    patch's own whole-pixel displacement); patches without texture (the sky, noise) are left
    out by their correlation. A small rotation with a translation, ``dy = ty - angle * x`` and
    ``dx = tx + angle * y`` about the frame's centre, is fitted to the displacements left, and
    patches more than three times the median miss (and a pixel) off it are dropped once.
    """
    height, width = reference.shape
    side = max(round(min(height, width) * _ROTATION_PATCH_FRACTION), _MIN_PATCH_SIDE_PX)
    if side > min(height, width):
        return _PairRotation(math.nan, math.nan, math.nan)
    window = _apodization((side, side))
    corners, displacements = [], []
    for top in np.unique(np.linspace(0, height - side, _ROTATION_GRID).round().astype(np.int64)):
        for left in np.unique(
            np.linspace(0, width - side, _ROTATION_GRID).round().astype(np.int64)
        ):
            patch = reference[top : top + side, left : left + side] * window
            measured = _patch_displacement(patch, moving, (int(top), int(left)), shift, window)
            if measured is not None:
                corners.append((top, left))
                displacements.append(measured - shift)
    if len(corners) < _MIN_ROTATION_PATCHES:
        return _PairRotation(math.nan, math.nan, math.nan)
    centre = np.array([(height - 1) / 2, (width - 1) / 2])
    positions = np.asarray(corners, dtype=np.float64) + (side - 1) / 2 - centre
    misses = np.asarray(displacements)
    kept = np.ones(len(positions), dtype=bool)
    fit = _fitted_rotation(positions, misses)
    if fit is None:
        return _PairRotation(math.nan, math.nan, math.nan)
    off = np.hypot(*(misses - _rotation_field(fit[0], positions)).T)
    outliers = off > max(3 * float(np.median(off)), 1.0)
    if outliers.any() and (~outliers).sum() >= _MIN_ROTATION_PATCHES:
        kept = ~outliers
        fit = _fitted_rotation(positions[kept], misses[kept])
        if fit is None:
            return _PairRotation(math.nan, math.nan, math.nan)
    coefficients, standard_error = fit
    middle = positions[kept].mean(axis=0)
    corners_of_frame = np.array([(y, x) for y in (-1, 1) for x in (-1, 1)]) * centre
    reach = float(np.hypot(*(corners_of_frame - middle).T).max())
    return _PairRotation(float(coefficients[2]), standard_error, reach)


def _patch_displacement(
    patch: np.ndarray,
    moving: np.ndarray,
    corner: tuple[int, int],
    shift: np.ndarray,
    window: np.ndarray,
) -> np.ndarray | None:
    """The displacement (dy, dx) of the scene in ``patch`` (apodized, cut at ``corner`` of the
    reference frame) to the high-passed ``moving`` frame, looked for from ``shift``; None where
    the window it moved to leaves the frame or the two do not correlate."""
    side = patch.shape[0]
    if _isotropy(patch) < _MIN_PATCH_ISOTROPY:
        return None
    offset = np.rint(shift).astype(np.int64)
    measured = None
    for _ in range(2):
        top, left = corner[0] + offset[0], corner[1] + offset[1]
        if not (0 <= top <= moving.shape[0] - side and 0 <= left <= moving.shape[1] - side):
            break
        other = moving[top : top + side, left : left + side] * window
        norm = math.sqrt(float(np.sum(patch**2)) * float(np.sum(other**2)))
        if norm == 0 or float(np.sum(patch * other)) / norm < _MIN_PATCH_CORRELATION:
            break
        residual = _correlation_peak(patch, other)
        measured = offset + residual
        offset = offset + np.rint(residual).astype(np.int64)
    if measured is not None and _held_by_the_sensor(measured, shift):
        return None
    return measured


def _held_by_the_sensor(measured: np.ndarray, shift: np.ndarray) -> bool:
    """Whether a patch's displacement ``measured`` stayed near zero on the sensor while the
    frames were registered ``shift`` apart (both (dy, dx), grid pixels): a patch whose scene
    has little texture is held there by what is fixed on the sensor (the dust's halo outside
    the blank, vignetting), and on a 160 x 120 Sun drifting 20 px such patches read a
    rotation of 1.9 degrees. A rotation that truly holds a patch still on the sensor does so
    only about one point, where one patch is lost."""
    distance = float(np.hypot(*shift))
    held_within = max(_HELD_PATCH_PX, distance / 4)
    return distance >= _MIN_SHIFT_FOR_HELD_PX and float(np.hypot(*measured)) <= held_within


def _isotropy(patch: np.ndarray) -> float:
    """The smaller over the larger eigenvalue of the patch's structure tensor (the sums of the
    products of its gradients): near 1 for texture, near 0 where one edge holds the patch (a
    limb), and 0 for a blank patch."""
    rows, cols = np.gradient(patch)
    tensor = np.array(
        [
            [float(np.sum(rows * rows)), float(np.sum(rows * cols))],
            [float(np.sum(rows * cols)), float(np.sum(cols * cols))],
        ]
    )
    smaller, larger = np.linalg.eigvalsh(tensor)
    return smaller / larger if larger > 0 else 0.0


def _correlation_peak(reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Displacement (dy, dx) of the scene from ``reference`` to ``moving`` (two apodized
    patches of one shape): the peak of their circular cross-correlation, refined to a fraction
    of a pixel by a parabola through it and its neighbours along each axis. Cheaper than
    ``phase_cross_correlation``'s upsampled peak (0.3 ms rather than 15 ms on 107 px), and as
    precise as differential seeing lets a patch be."""
    spectrum = scipy.fft.rfft2(moving) * np.conj(scipy.fft.rfft2(reference))
    correlation = scipy.fft.irfft2(spectrum, s=reference.shape)
    peak = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
    displacement = np.zeros(2)
    for axis, size in enumerate(correlation.shape):
        index = list(peak)
        values = []
        for step in (-1, 0, 1):
            index[axis] = (peak[axis] + step) % size
            values.append(float(correlation[tuple(index)]))
        below, centre, above = values
        curvature = below - 2 * centre + above
        fraction = 0.5 * (below - above) / curvature if curvature < 0 else 0.0
        whole = peak[axis] if peak[axis] <= size // 2 else peak[axis] - size
        displacement[axis] = whole + fraction
    return displacement


def _rotation_field(coefficients: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(n, 2) displacements (dy, dx) at ``positions`` ((n, 2), from the frame's centre) of a
    small rotation ``coefficients[2]`` (radians) with the translation ``coefficients[:2]``."""
    ty, tx, angle = coefficients
    return np.stack([ty - angle * positions[:, 1], tx + angle * positions[:, 0]], axis=1)


def _fitted_rotation(
    positions: np.ndarray, displacements: np.ndarray
) -> tuple[np.ndarray, float] | None:
    """Least-squares (ty, tx, angle) of :func:`_rotation_field` and the angle's standard
    error; None with fewer than ``_MIN_ROTATION_PATCHES`` patches."""
    count = len(positions)
    if count < _MIN_ROTATION_PATCHES:
        return None
    design = np.zeros((2 * count, 3))
    design[0::2, 0] = 1.0
    design[0::2, 2] = -positions[:, 1]
    design[1::2, 1] = 1.0
    design[1::2, 2] = positions[:, 0]
    observed = displacements.reshape(-1)
    coefficients, *_ = np.linalg.lstsq(design, observed, rcond=None)
    residual = observed - design @ coefficients
    variance = float(residual @ residual) / (2 * count - 3)
    covariance = variance * np.linalg.pinv(design.T @ design)
    return coefficients, math.sqrt(max(float(covariance[2, 2]), 0.0))


_Registration = Callable[[int, int], np.ndarray]
"""``register(reference, moving)``: the scene's displacement (dy, dx) from the registered frame
at position ``reference`` to the one at ``moving``, binned pixels."""


class _BlankedRegistration:
    """:func:`_register` between two of the ``despeckled`` frames, each reference prepared
    once; called as a ``_Registration``, with an optional ``guess`` of the shift."""

    def __init__(
        self, despeckled: list[np.ndarray], blanking: _Blanking | None, params: DriftParams
    ) -> None:
        self.despeckled = despeckled
        self.blanking = blanking
        self.params = params
        self._prepared: dict[int, np.ndarray] = {}

    def __call__(self, reference: int, moving: int, guess: np.ndarray | None = None) -> np.ndarray:
        if reference not in self._prepared:
            self._prepared[reference] = _prepare(
                self.despeckled[reference], self.blanking, self.params
            )
        return _register(
            self.despeckled[reference],
            self._prepared[reference],
            self.despeckled[moving],
            self.blanking,
            self.params,
            guess,
        )

    def agreement(self, reference: int, moving: int, shift: np.ndarray) -> float:
        """Correlation coefficient of the two prepared frames, the moving one shifted back by
        ``shift``, over the pixels both frames hold there (-1 to 1; 0 where none)."""
        first = self.despeckled[reference]
        aligned, blanking, prepared_reference = _aligned(
            first, self.despeckled[moving], self.blanking, shift, self.params
        )
        inside = ndimage.shift(np.ones(first.shape, np.float32), -shift, order=0, mode="constant")
        prepared = _prepare(aligned, blanking, self.params) * inside
        prepared_reference = prepared_reference * inside
        norm = math.sqrt(float(np.sum(prepared**2)) * float(np.sum(prepared_reference**2)))
        return float(np.sum(prepared * prepared_reference)) / norm if norm > 0 else 0.0


def _static_free_registration(
    moved: np.ndarray, blanking: _Blanking | None, params: DriftParams
) -> _Registration:
    """:func:`_register_moved` between two of the despeckled frames less their static pattern
    (``moved``, from :func:`_static_free`), blanked like the first measurement.

    Dust the exclusion missed, a column of lower gain or any other fixed pattern correlates
    perfectly at zero shift and can hold the registration there however far the scene moved.
    Less their median over the sampled frames (the static pattern; the scene, which moved,
    leaves it), the frames keep only what moved, and registered again they show the scene's
    own path. On a tracked video that difference holds noise and seeing, and its registration
    wanders by a few pixels: it is taken only on the terms of :func:`_departing_path`.
    """
    if blanking is not None:
        moved = moved * blanking.keep
    return lambda reference, moving: _register_moved(moved[reference], moved[moving], params)


def _path(register: _BlankedRegistration, count: int) -> np.ndarray:
    """(count, 2) shifts of every registered frame from the first (zero for the first).

    Each frame is registered from the first. Where that lands far from the frame before it
    (more than twice the closure limit and the step before it), it is made again starting
    from the frame before's shift, and of the two the one whose frames agree better
    (``_BlankedRegistration.agreement``) is taken when they differ by more than the closure
    limit. Once the scene has moved by a quarter of the frame, little of it lies in both
    windowed frames and the correlation can peak anywhere: on a 120 x 90 view drifting 25 px,
    the last five of 30 frames landed 30-64 px off while the other frames' closure passed;
    from the frame before's shift, what is left to measure is one step.
    """
    limit = register.params.max_closure_px
    shifts = np.zeros((count, 2), dtype=np.float64)
    for position in range(1, count):
        shift = register(0, position)
        previous = shifts[position - 1]
        step = float(np.hypot(*(previous - shifts[position - 2]))) if position > 1 else 0.0
        if np.hypot(*(shift - previous)) > 2 * (limit + step):
            guessed = register(0, position, guess=previous)
            if np.hypot(*(guessed - shift)) > limit and register.agreement(
                0, position, guessed
            ) > register.agreement(0, position, shift):
                shift = guessed
        shifts[position] = shift
    return shifts


def _closure(register: _Registration, shifts: np.ndarray) -> float:
    """Median distance, binned pixels, between the shifts of a few pairs of registered frames
    measured from one to the other and those ``shifts`` (measured from the first) imply.

    Registrations of frames that show the scene agree to a fraction of a pixel whatever the
    reference; where noise or a featureless field is all they correlate, each lands anywhere,
    and two references disagree by about the frame's size. The pairs lie half the registered
    frames apart (so across most of the drift), each measured from its later frame, and no
    frame is in two pairs: the median leaves one frame that failed alone (a cloud, a blink of
    the camera) to the motion test, whose many frames outvote it. No pair holds the first
    frame, whose registration from another one mirrors the shift measured to it; so with two
    frames there is none, and the closure is NaN.
    """
    count = len(shifts)
    half = max(count // 2, 1)
    starts = {round(count * eighth / 8) for eighth in (1, 2, 3)}
    pairs = [(start + half, start) for start in sorted(starts - {0}) if start + half < count]
    if not pairs:
        return math.nan
    misses = [
        float(np.hypot(*(register(later, earlier) - (shifts[earlier] - shifts[later]))))
        for later, earlier in pairs
    ]
    return float(np.median(misses))


def _never_failed() -> bool:
    return False


def _departing_path(
    register: _Registration,
    used: np.ndarray,
    shifts: np.ndarray,
    *,
    farther: bool = False,
    first_failed: Callable[[], bool] = _never_failed,
) -> tuple[np.ndarray, bool]:
    """The shifts ``register(0, index)`` measures for every registered frame but the first,
    where they form a trajectory that departs from ``shifts``, else ``shifts``; and whether
    they did.

    The path is a trajectory when it reaches ``_TRAJECTORY_SIGNAL`` times its scatter about a
    quadratic in time, and departs when it lies more than ``_ANCHOR_DEPARTURE`` times that
    scatter from ``shifts``; with ``farther``, its fitted quadratic must also reach farther
    from the first frame than that of ``shifts`` does (one wild frame does not move a fit over
    many), unless ``first_failed()`` says that those failed their closure (:func:`_closure`:
    noise). Static features only pull a registration towards zero shift, so of two registered
    paths the one that reaches farther is the scene's: a path less the frames' median can
    stall at about half the drift, because that median holds the scene as it lay midway and
    correlates with the later frames there (32 frames of an 8-bit Sun drifting 30 px: 21 px
    read), while the first path was right. The last and middle frames are measured first, and
    the others only when they disagree with ``shifts`` by more than a pixel (of the binned
    frames) and, with ``farther``, one of them lies more than a pixel farther from the first
    frame than ``shifts`` does there, or ``first_failed()``: a path that stalls midway was
    otherwise registered in full only to be refused (1.4 s of the 3.9 s drift of a
    1280 x 960 video).
    """
    count = len(shifts)
    probes = sorted({count - 1, count // 2})
    probed = {index: register(0, index) for index in probes}
    if all(np.abs(probed[index] - shifts[index]).max() <= 1.0 for index in probes):
        return shifts, False
    no_farther = all(np.hypot(*probed[index]) <= np.hypot(*shifts[index]) + 1.0 for index in probes)
    if farther and no_farther and not first_failed():
        return shifts, False
    retried = np.zeros_like(shifts)
    for index in range(1, count):
        retried[index] = probed[index] if index in probed else register(0, index)
    departure = float(np.hypot(*(retried - shifts).T).max())
    fit = _TrajectoryFit.of(used, retried)
    departs = departure > _ANCHOR_DEPARTURE * max(fit.scatter, 1.0)
    outreaches = True
    if farther:
        first_reach = _TrajectoryFit.of(used, shifts).fitted_reach
        outreaches = fit.fitted_reach > first_reach or first_failed()
    if fit.trajectory and departs and outreaches:
        return retried, True
    return shifts, False


class _TrajectoryFit(NamedTuple):
    """A path of shifts ((n, 2), binned pixels) against a quadratic in time.

    Attributes
    ----------
    scatter : float
        The rms distance of the path from the quadratic.
    reach : float
        The path's largest distance from the first frame.
    fitted_reach : float
        The quadratic's largest distance from the first frame's position.
    """

    scatter: float
    reach: float
    fitted_reach: float

    @classmethod
    def of(cls, used: np.ndarray, path: np.ndarray) -> _TrajectoryFit:
        times = used.astype(np.float64)
        design = np.vander((times - times[0]) / max(times[-1] - times[0], 1.0), 3)
        coefficients, *_ = np.linalg.lstsq(design, path, rcond=None)
        fitted = design @ coefficients
        return cls(
            scatter=float(np.sqrt(np.mean(np.sum((path - fitted) ** 2, axis=1)))),
            reach=float(np.hypot(path[:, 0], path[:, 1]).max()),
            fitted_reach=float(np.hypot(*(fitted - fitted[0]).T).max()),
        )

    @property
    def trajectory(self) -> bool:
        """Whether the path reaches ``_TRAJECTORY_SIGNAL`` times its scatter and more than a
        binned pixel: a path that stays within a pixel of the first frame is what a static
        pattern holds a registration to, however smooth."""
        return self.reach >= _TRAJECTORY_SIGNAL * self.scatter and self.reach > 1.0


def _static_free(frames: list[np.ndarray], params: DriftParams) -> np.ndarray:
    """(n, h, w) float32: the despeckled frames high-passed, less their median over the frames
    (what is fixed on the sensor). Computed once for the registrations with and without the
    exclusion, which blank it or not."""
    moved = np.stack(
        [frame - ndimage.gaussian_filter(frame, params.highpass_sigma_px) for frame in frames]
    )
    moved -= np.median(moved, axis=0)
    return moved


def _register_moved(reference: np.ndarray, moving: np.ndarray, params: DriftParams) -> np.ndarray:
    """Scene displacement (dy, dx) from ``reference`` to ``moving``, two frames less their
    static pattern (``_static_free``), refined as in :func:`_register`."""
    window = _apodization(reference.shape)
    total = np.zeros(2)
    aligned = moving
    for iteration in range(1 + params.refinements):
        total += _displacement(reference * window, aligned * window, params)
        if iteration == params.refinements:
            break
        aligned = ndimage.shift(moving, -total, order=3, mode="nearest")
    return total


def _displacement(reference: np.ndarray, moving: np.ndarray, params: DriftParams) -> np.ndarray:
    """Scene displacement (dy, dx) from ``reference`` to ``moving``, two prepared (apodized)
    frames, by phase correlation without the phase normalization."""
    registration, _, _ = phase_cross_correlation(
        reference, moving, upsample_factor=params.upsample_factor, normalization=None
    )
    # `registration` is the shift that registers the moving frame onto the reference; the
    # scene moved by the opposite amount.
    return -np.asarray(registration, dtype=np.float64)


def _apodization(shape: tuple[int, ...]) -> np.ndarray:
    """(H, W) float32 Hann window: the frame's edges, where the scene enters and leaves, fade
    out of the correlation."""
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)


def drift_verdict(
    total_px: float,
    dust_diameters_px: Sequence[float],
    *,
    min_ratio: float = 2.0,
    registered: bool = True,
    closure_px: float | None = None,
    registration_px: float = 1.0,
    field_rotated: bool = False,
    rotation_deg: float = math.nan,
    rotation_px: float = math.nan,
) -> tuple[bool, str]:
    """Say whether the target moved enough to tell dust from scene features of the same size.

    Parameters
    ----------
    total_px : float
        Largest displacement of the target over the video (``DriftEstimate.total_px``).
    dust_diameters_px : sequence of float
        Equivalent diameters of the detected dust regions, in pixels.
    min_ratio : float
        Required drift in units of the largest dust diameter (2: a feature that size then covers
        any pixel in fewer than half of the frames of a steady drift and leaves the median).
    registered, closure_px : bool, float or None
        ``DriftEstimate.registered`` and ``DriftEstimate.closure_px`` (on the same pixel grid
        as ``total_px``; None: not known): frames that could not be registered say nothing of
        the drift. A NaN closure of registered frames (two frames, which no other pair can
        check) is said in the message.
    registration_px : float
        The size of a pixel of the registration's grid, in pixels of ``total_px``'s grid
        (``DriftEstimate.binning``, times the colour cell on a mosaic's raw grid): the closure
        limit the message tells the user to raise is on that grid.
    field_rotated, rotation_deg, rotation_px : bool, float, float
        ``DriftEstimate.field_rotated``, ``.rotation_deg`` and ``.rotation_px`` (the last on
        ``total_px``'s grid): frames whose field turned too far to be registered by a shift
        count as not registered whatever ``registered`` says, and the message says by how
        much the field turned and what to do.

    Returns
    -------
    ok : bool
        False when the drift is too small (a sunspot the size of the dust would survive in the
        median and look exactly like dust, so the mask needs review) or unknown.
    message : str
        A sentence for the asset metadata and the log.
    """
    if not np.isfinite(total_px) or total_px < 0:
        raise ValueError(f"total_px must be a finite distance >= 0, got {total_px}.")
    diameters = [float(d) for d in dust_diameters_px]
    if any(not np.isfinite(d) or d <= 0 for d in diameters):
        raise ValueError(f"dust diameters must be finite and > 0, got {diameters}.")
    if not registration_px >= 1:
        raise ValueError(f"registration_px must be >= 1, got {registration_px}.")
    if field_rotated:
        return False, (
            f"the field rotated by {abs(rotation_deg):.1f} degrees over the video (an alt-az "
            "mount, or a field derotator off or misaligned), which leaves the scene's far parts "
            f"up to {rotation_px:.1f} px from where a registration by a shift puts them, while "
            "the dust stays still: the scene's features would be taken for dust. Every "
            "candidate is kept undecided and the ratio is not searched. Review the mask, and "
            "derotate the frames before they come here (e.g. in PIPP or AutoStakkert!), or "
            "capture on an equatorial mount (or with the derotator tracking), or a shorter video."
        )
    if not registered:
        closure_px = math.inf if closure_px is None else closure_px
        on_grid = ""
        if registration_px != 1 and np.isfinite(closure_px):
            on_grid = (
                f", {closure_px / registration_px:.1f} px on the registration's grid of "
                f"{registration_px:g} px blocks"
            )
        why = (
            "every frame is uniform"
            if not np.isfinite(closure_px)
            else "the shifts of a few pairs of frames measured against each other differ from "
            f"those measured against the first frame by {closure_px:.1f} px (the median"
            f"{on_grid}; frames that show a scene agree to a fraction of a pixel)"
        )
        return False, (
            f"the frames could not be registered: {why}. The target is too faint, noisy, "
            "saturated or featureless to follow, so dust cannot be told from the scene: every "
            "candidate is kept undecided and the ratio is not searched. Review the mask, or "
            "capture frames that show the target's detail (brighter ones, or with less "
            "exposure or gain where they are saturated). In poor seeing, which bends each "
            "frame by its own few pixels, registrations of a scene disagree by a few pixels of "
            "the registration's grid (of noise: by about ten or more); there the dust_mask "
            "config's drift_max_closure_px, on that grid, may be raised to that."
        )
    unchecked = ""
    if closure_px is not None and math.isnan(closure_px):
        unchecked = (
            " That drift was registered between two frames only, which no other pair of "
            "frames can check: a wrong registration would go unnoticed; capture more frames "
            "to have it checked."
        )
    if not diameters:
        return True, (
            f"the target moved {total_px:.1f} px; no dust was detected to compare with." + unchecked
        )
    largest = max(diameters)
    needed = min_ratio * largest
    if total_px >= needed:
        return True, (
            f"the target moved {total_px:.1f} px, at least {min_ratio:g}x the largest dust "
            f"diameter ({largest:.1f} px): scene features of that size wash out of the median."
            + unchecked
        )
    return False, (
        f"the target moved only {total_px:.1f} px, less than {min_ratio:g}x the largest dust "
        f"diameter ({largest:.1f} px): sunspots or other fixed features of that size stay in the "
        "median and look like dust. Review the mask, or capture with the mount drifting."
        + unchecked
    )


def common_frame_shape(frames: Sequence) -> tuple[int, int]:
    """The (H, W) shape every frame of ``frames`` has.

    Raises
    ------
    ValueError
        When a frame is not 2-D or differs in shape from the first.
    """
    shape = np.shape(frames[0])
    if len(shape) != 2 or any(np.shape(frame) != shape for frame in frames):
        raise ValueError(
            f"every frame must be 2-D and of the first frame's shape {shape}; got "
            f"{sorted({np.shape(frame) for frame in frames})}."
        )
    return shape


def checked_offsets(frames: Sequence, shifts) -> np.ndarray:
    """``shifts`` as a float64 (len(frames), 2) array of (dy, dx) displacements, one per
    registered frame (``DriftEstimate.shifts``, scaled to the frames' pixel grid).

    Raises
    ------
    ValueError
        For fewer than two frames, shifts of another shape, or non-finite shifts.
    """
    offsets = np.asarray(shifts, dtype=np.float64)
    if len(frames) < 2:
        raise ValueError(f"need at least 2 registered frames, got {len(frames)}.")
    if offsets.shape != (len(frames), 2):
        raise ValueError(
            f"shifts must have shape ({len(frames)}, 2), one (dy, dx) per frame, got "
            f"{offsets.shape}."
        )
    if not np.isfinite(offsets).all():
        raise ValueError("shifts contain NaN or inf; measure the drift again.")
    return offsets
