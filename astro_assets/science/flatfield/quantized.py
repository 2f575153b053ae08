"""The temporal median of coarsely quantized frames, interpolated within its level.

An 8-bit capture of a planet or the Sun holds its signal in a hundred or two levels, and the
noise of one frame spreads a pixel's values over a few of them. The exact median of such
values is one of the levels (or halfway between two), so it misses the median of the signal
by up to half a level whatever the number of frames: 0.29 levels rms for a signal anywhere
between levels. Behind a near-opaque shadow of an 8-bit frame the signal is a few levels, and
half a level is several percent of the flat; across the disc the median's steps draw contours
into the flat.

The median of grouped data removes most of that: each level ``v`` stands for the interval
``[v - step/2, v + step/2)``, the values are taken as spread evenly over it, and the median is
where their count reaches half the frames. Simulated with 400 frames, noise of 0.6-1.5 levels
and a signal spread evenly between levels, its rms error is 0.05-0.09 levels against 0.29 for
the exact median (0.03-0.08 for the mean, which outliers would move).
"""

from __future__ import annotations

import numpy as np

from astro_assets.science.compiled import compiled
from astro_assets.science.flatfield.median import selected_frames

__all__ = ["interpolated_median"]


def interpolated_median(
    frames: np.ndarray,
    median: np.ndarray,
    *,
    step: float = 1.0,
    frame_step: int = 1,
    frame_indices: np.ndarray | None = None,
) -> np.ndarray:
    """The median of integer frames interpolated within its quantization level.

    Where the exact median is a level ``v`` that frames hold, returns
    ``v - step / 2 + step * (n / 2 - below) / at``, with ``n`` the frames used, ``below`` those
    under ``v`` and ``at`` those at ``v``: it lies within half a level of ``v``. Elsewhere (the
    two middle values of an even count differ, so half the values lie on each side of the
    gap between them) the median of grouped data is that of the exact median, which is
    returned.

    Parameters
    ----------
    frames : np.ndarray
        (n, h, w) or (n, h, w, 3) integer frames in ADU, any byte order; read one frame at a
        time (a ``np.memmap`` is not loaded whole) and never modified.
    median : np.ndarray
        ``frames.shape[1:]``, the exact median of the selected frames
        (:func:`~astro_assets.science.flatfield.median.temporal_median` with the same
        ``frame_step`` and ``frame_indices``), in ADU.
    step : float
        Spacing of the levels the data take, in ADU: 1 for 8-bit data, 16 for 12-bit data
        stored in the high bits of 16. > 0.
    frame_step, frame_indices
        The frames ``median`` was taken over, as for
        :func:`~astro_assets.science.flatfield.median.selected_frames`.

    Returns
    -------
    np.ndarray
        float32, ``median``'s shape, in ADU.

    Raises
    ------
    ValueError
        For frames that are not integer or not 3-D or 4-D, a median of another shape, a
        non-finite median, ``step`` out of range, or frames selected as
        :func:`~astro_assets.science.flatfield.median.selected_frames` refuses.
    """
    video = np.asarray(frames)
    if video.ndim not in (3, 4) or not np.issubdtype(video.dtype, np.integer):
        raise ValueError(
            f"frames must be integer (n, h, w) or (n, h, w, 3), got {video.dtype} {video.shape}."
        )
    levels = np.asarray(median)
    if levels.shape != video.shape[1:]:
        raise ValueError(
            f"median has shape {levels.shape}; the frames' pixels have {video.shape[1:]}."
        )
    if not np.isfinite(levels).all():
        raise ValueError("median contains NaN or inf; pass the exact median of the frames.")
    if not (np.isfinite(step) and step > 0):
        raise ValueError(f"step must be a finite number of ADU > 0, got {step!r}.")
    used = selected_frames(video.shape[0], frame_step, frame_indices)
    count = used.size
    flat_levels = np.ascontiguousarray(levels, dtype=np.float64).ravel()
    native = video.dtype.newbyteorder("=")
    info = np.iinfo(native)
    # Only a median some frame holds is interpolated, and such a median is one of the values.
    candidate = (
        (np.floor(flat_levels) == flat_levels)
        & (flat_levels >= info.min)
        & (flat_levels <= info.max)
    )
    keys = np.where(candidate, flat_levels, 0).astype(native)
    below = np.zeros(keys.size, dtype=np.uint32)
    at = np.zeros(keys.size, dtype=np.uint32)
    rows = _frames_as_rows(video)
    if rows is not None and rows.dtype == native:
        _count_in_tiles(rows, used, keys, below, at)
    else:
        only_row = np.zeros(1, np.int64)
        for index in used:
            values = np.ascontiguousarray(video[index], dtype=native).reshape(1, -1)
            _count_in_tiles(values, only_row, keys, below, at)
    # A median no frame holds (halfway between two values) is already the grouped median.
    held = candidate & (at > 0)
    interpolated = flat_levels - 0.5 * step + step * (0.5 * count - below) / np.maximum(at, 1)
    result = np.where(held, interpolated, flat_levels)
    return result.astype(np.float32).reshape(levels.shape)


def _frames_as_rows(frames: np.ndarray) -> np.ndarray | None:
    """``frames`` as an (n, pixels) view with each frame contiguous, or None where that view
    would need a copy (a channel-reversed or cropped view)."""
    rows = frames.view()
    try:
        rows.shape = (frames.shape[0], -1)
    except AttributeError:
        return None
    return rows if rows.strides[1] == rows.itemsize else None


_TILE_PIXELS = 8192
"""Pixels whose counts stay in the core's L1 cache while every frame passes over them."""


@compiled
def _count_in_tiles(rows, used, keys, below, at):  # pragma: no cover - compiled
    """Adds to ``below[p]`` the rows ``used`` whose value at ``p`` is under ``keys[p]`` and to
    ``at[p]`` those equal to it.

    A tile of pixels at a time, for every row, so that its counts stay cached; counted in
    8-bit lanes over up to 255 rows, which the compiler turns into 32-64 compares per
    instruction, then added to the totals.
    """
    count = used.size
    size = rows.shape[1]
    lanes_below = np.zeros(_TILE_PIXELS, np.uint8)
    lanes_at = np.zeros(_TILE_PIXELS, np.uint8)
    for start in range(0, size, _TILE_PIXELS):
        stop = min(start + _TILE_PIXELS, size)
        width = stop - start
        tile_keys = keys[start:stop]
        first = 0
        while first < count:
            last = min(first + 255, count)
            lanes_below[:width] = 0
            lanes_at[:width] = 0
            for frame in range(first, last):
                values = rows[used[frame], start:stop]
                for pixel in range(width):
                    value = values[pixel]
                    key = tile_keys[pixel]
                    lanes_below[pixel] += np.uint8(value < key)
                    lanes_at[pixel] += np.uint8(value == key)
            for pixel in range(width):
                below[start + pixel] += lanes_below[pixel]
                at[start + pixel] += lanes_at[pixel]
            first = last
