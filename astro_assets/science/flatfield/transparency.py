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
import numbers
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from astro_assets.science.compiled import compiled
from astro_assets.science.flatfield.drift import (
    binning_factor,
    block_means,
    checked_offsets,
    common_frame_shape,
    median_filter_reflect,
)
from astro_assets.science.flatfield.levels import (
    MIN_SIGNAL_FRACTION,
    signal_spread,
    target_level,
    typical_spread,
    with_signal,
)
from astro_assets.science.flatfield.median import selected_frames
from astro_assets.science.flatfield.planes import MOSAIC_COLORS
from astro_assets.science.flatfield.response import ResponseCorrectedFrame
from astro_assets.science.threads import in_threads

__all__ = [
    "GAIN_TOLERANCE",
    "MIN_SCREENED_PIXELS",
    "FrameScreening",
    "FrameTransparency",
    "divided_by_transparency",
    "frame_transparency",
    "screen_frames",
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
    factor = binning_factor(shape, max_side_px, min_side_px=8)
    light = in_threads(lambda frame: _binned_light(frame, factor, float(black_level)), frames)
    floors = []
    for binned in light:
        finite = binned[np.isfinite(binned)]
        level = target_level(finite) if finite.size else math.nan
        floors.append(bright_fraction * level if level > 0 else math.inf)
    # Binned pixel centres lie at factor * (i + 1/2) - 1/2 in frame pixels: a displacement
    # divided by the factor carries them in binned pixels.
    binned_offsets = offsets / factor
    rows, cols = np.indices(light[0].shape, dtype=np.float64)

    def pairs_of(k: int) -> list[tuple[int, int, float]]:
        """(k, j, median log ratio of their light) for each usable pair of frame ``k``."""
        with np.errstate(invalid="ignore"):
            lit_here = light[k] > floors[k]
        if not lit_here.any():
            return []
        measured_pairs = []
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
            ratio = float(np.median(np.log(light[k][usable] / light_there[usable])))
            measured_pairs.append((k, j, ratio))
        return measured_pairs

    measured_pairs = [pair for found in in_threads(pairs_of, range(count)) for pair in found]
    pairs = [(k, j) for k, j, _ in measured_pairs]
    ratios = [ratio for _, _, ratio in measured_pairs]
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


MIN_SCREENED_PIXELS = 1024
"""Fewest pixels of a binned frame for which :func:`screen_frames` leaves any frame out. The
0.1th and 99.9th percentiles of fewer values are a frame's extreme one or two, and where the
frames show no scene, only noise, those vary from frame to frame by more than the threshold
allows: on 201 frames of 6 x 8 pixels of 8-bit noise of 0.8 levels, 3 frames fell below a
fifth of the typical spread. Over 1024 Gaussian values that spread varies by 6 % (rms), and
the lowest of 5000 such frames had 0.81 of the median spread."""


_FLOAT32_MAX = float(np.finfo(np.float32).max)
"""Largest binned sum the despeckling's float32 holds."""

_FRAMES_PER_THREAD = 16
"""Fewest frames worth a thread of their own: a thread costs about as much as measuring a few
frames."""


@dataclass(frozen=True)
class FrameScreening:
    """The result of :func:`screen_frames`.

    Attributes
    ----------
    frames : np.ndarray
        (k,) int64, the frames screened, in the video's numbering.
    relative_spreads : np.ndarray
        (k,) float64, each frame's :func:`.levels.signal_spread` (binned, despeckled) over
        the frames' :func:`.levels.typical_spread`: about 1 for a clear frame, its
        transparency for a frame dimmed alike everywhere, about 0 for a blank one.
    with_signal : np.ndarray
        (k,) bool, the frames that show the scene (:func:`.levels.with_signal`).
    applied : bool
        False where the binned frames were too small to tell (:data:`MIN_SCREENED_PIXELS`)
        and every frame was kept.
    """

    frames: np.ndarray
    relative_spreads: np.ndarray
    with_signal: np.ndarray
    applied: bool = True

    @property
    def kept(self) -> np.ndarray:
        """(m,) int64, the frames with signal."""
        return self.frames[self.with_signal]

    @property
    def left_out(self) -> np.ndarray:
        """(k - m,) int64, the frames without signal."""
        return self.frames[~self.with_signal]


def screen_frames(
    frames: Sequence,
    *,
    color: str = "MONO",
    frame_indices: Sequence[int] | np.ndarray | None = None,
    max_side_px: int = 256,
    despeckle_size_px: int = 3,
    min_signal_fraction: float = MIN_SIGNAL_FRACTION,
    workers: int | None = None,
) -> FrameScreening:
    """Tell the frames that show the scene from blank ones and those under thick cloud.

    Each frame is binned (its channels summed) to at most ``max_side_px`` on its long side,
    despeckled, and its :func:`.levels.signal_spread` compared with the frames' typical
    spread (:func:`.levels.with_signal`), as the drift measurement
    (``science.flatfield.drift``) screens the frames it samples. Needs no registration and no
    black level: a pedestal adds nothing to a spread, and a frame dimmed alike everywhere has
    its spread scaled by its transparency.

    Parameters
    ----------
    frames : sequence of array-like
        (n, H, W) mono or raw mosaic frames, or (n, H, W, 3) RGB, any real dtype and byte
        order (e.g. the lazy ``SerVideo.frames``); read one at a time, never modified.
    color : str
        The frames' colour layout; a raw mosaic (e.g. ``"RGGB"``) is binned by an even factor,
        so that every bin holds whole CFA cells.
    frame_indices : sequence of int, optional
        The frames to screen (as for :func:`.median.selected_frames`); all by default.
    max_side_px : int
        Longest side of a binned frame, px (>= 16): binning averages the noise down, so
        that a blank frame's spread is small beside a lit one's.
    despeckle_size_px : int
        Side of the median filter applied to the binned frame (>= 1; 1 applies none).
    min_signal_fraction : float
        In [0, 1]; see :func:`.levels.with_signal`.
    workers : int or None
        Threads that measure frames side by side; ``None`` means ``os.cpu_count()``.

    Returns
    -------
    FrameScreening
        Every frame is taken to show the scene (``applied`` False) when a binned frame has
        fewer than :data:`MIN_SCREENED_PIXELS` pixels.

    Raises
    ------
    ValueError
        For frames of different shapes, a frame with NaN or inf, or parameters out of range.

    Notes
    -----
    Binning runs compiled, straight from the frame's integers (0.26 ms for a 1.2 megapixel
    16-bit frame, against 6 ms for numpy's block means of the same frame); with the
    despeckling and the percentiles, a frame takes 0.7 ms of one core.
    """
    if not (isinstance(max_side_px, int) and max_side_px >= 16):
        raise ValueError(f"max_side_px must be an integer >= 16, got {max_side_px!r}.")
    if not (isinstance(despeckle_size_px, int) and despeckle_size_px >= 1):
        raise ValueError(f"despeckle_size_px must be an integer >= 1, got {despeckle_size_px!r}.")
    if workers is not None and not (isinstance(workers, numbers.Integral) and workers >= 1):
        raise ValueError(f"workers must be an integer >= 1 or None, got {workers!r}.")
    if not 0.0 <= min_signal_fraction <= 1.0:
        raise ValueError(f"min_signal_fraction must lie in [0, 1], got {min_signal_fraction}.")
    screened = selected_frames(len(frames), 1, frame_indices)
    first = np.asarray(frames[int(screened[0])])
    first_shape = first.shape
    if first.ndim not in (2, 3) or (first.ndim == 3 and first_shape[2] != 3):
        raise ValueError(f"each frame must be (H, W) or (H, W, 3), got shape {first_shape}.")
    if first.dtype.kind not in "uif":
        raise ValueError(f"frames must hold integers or floats, got dtype {first.dtype}.")
    height, width = first_shape[:2]
    factor = binning_factor((height, width), max_side_px, min_side_px=1)
    if color in MOSAIC_COLORS and factor % 2 and factor > 1:
        # Whole CFA cells in every bin; rounded down, so that a bin still fits the frame.
        factor -= 1
    binned_shape = (height // factor, width // factor)
    spreads = np.empty(screened.size)

    def measure(positions: range) -> None:
        binned = np.empty(binned_shape, np.float64)
        for position in positions:
            index = int(screened[position])
            frame = np.asarray(frames[index])
            if frame.shape != first_shape:
                raise ValueError(
                    f"frame {index} has shape {frame.shape}, frame {screened[0]} has {first_shape}."
                )
            _block_sums(_pixel_rows(frame), factor, frame.size // (height * width), binned)
            if not np.isfinite(binned).all():
                raise ValueError(f"frame {index} contains NaN or inf.")
            if np.abs(binned).max() > _FLOAT32_MAX:
                raise ValueError(f"frame {index} holds values beyond float32's range.")
            light = binned.astype(np.float32)
            if despeckle_size_px > 1:
                light = median_filter_reflect(light, despeckle_size_px)
            spreads[position] = signal_spread(light)

    threads = max(1, min(workers or os.cpu_count() or 1, screened.size // _FRAMES_PER_THREAD))
    shares = [range(part, screened.size, threads) for part in range(threads)]
    if threads == 1:
        measure(shares[0])
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for done in [pool.submit(measure, share) for share in shares]:
                done.result()
    typical = typical_spread(spreads)
    relative = spreads / typical if typical > 0 else np.ones_like(spreads)
    applied = binned_shape[0] * binned_shape[1] >= MIN_SCREENED_PIXELS
    showing = with_signal(spreads, min_signal_fraction) if applied else np.ones(screened.size, bool)
    return FrameScreening(
        frames=screened, relative_spreads=relative, with_signal=showing, applied=applied
    )


def _pixel_rows(frame: np.ndarray) -> np.ndarray:
    """A frame (H, W) or (H, W, C) as (H, W * C) rows in native byte order: a view where the
    channels lie packed in either order (their sum does not depend on it), else a copy."""
    if frame.ndim == 3 and frame.strides[2] < 0:
        frame = frame[..., ::-1]
    if frame.dtype.kind == "f" and frame.dtype.itemsize < 4:
        frame = frame.astype(np.float32)
    elif not frame.dtype.isnative:
        frame = frame.astype(frame.dtype.newbyteorder("="))
    return frame.reshape(frame.shape[0], -1)


@compiled
def _block_sums(rows, factor, channels, out):  # pragma: no cover - compiled
    """Sums over ``factor`` x ``factor`` pixels, every channel, of ``rows`` (H, W * channels)
    into ``out`` (H // factor, W // factor), float64: each row is added to running column
    sums, which the compiler vectorises, and every ``factor`` rows those are summed in blocks
    of ``factor * channels`` values."""
    rows_out, cols_out = out.shape
    block_values = factor * channels
    width = cols_out * block_values
    columns = np.zeros(width, np.float64)
    for block_row in range(rows_out):
        columns[:] = 0.0
        for row in range(block_row * factor, (block_row + 1) * factor):
            line = rows[row]
            for col in range(width):
                columns[col] += line[col]
        for block_col in range(cols_out):
            total = 0.0
            for col in range(block_col * block_values, (block_col + 1) * block_values):
                total += columns[col]
            out[block_row, block_col] = total
