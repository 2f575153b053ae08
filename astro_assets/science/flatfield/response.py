"""The sensor's smooth response (vignetting, illumination gradients), measured from a drifting
video.

A frame records ``b + V(p) * S(p - d_k)``: the scene ``S`` displaced by ``d_k``, the smooth
response ``V`` of the optics and sensor at the sensor pixel ``p``, and the sensor's pedestal
``b``, which is not light and which neither the response nor dust multiplies. Where two frames
see the same part of the scene through different pixels, the scene cancels in the ratio of
their light and the response remains:
``log(f_k(p) - b) - log(f_j(p - (d_k - d_j)) - b) = v(p) - v(p - (d_k - d_j))`` with
``v = log V``. Fitted over many pixels and pairs of frames as a polynomial, this gives ``v`` up to
a constant and up to any part that no displacement of the video changes (a function constant
along the drift), which is also the part that cancels wherever the frames are compared.

The dust-free prediction (``science.flatfield.motion``) compares each pixel with other frames
that saw its part of the scene through other pixels. Without the response, a vignetted frame
predicts its corners from pixels nearer the centre, and near the frame's edges, where only the
frames displaced one way see a part of the scene, the ratio of the median to the prediction
keeps a deficit as deep as faint dust (4-8 % along the edge of a frame vignetted by 40 % at the
corners and drifting by a sixth of its width).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from astro_assets.science.flatfield.drift import checked_offsets, common_frame_shape
from astro_assets.science.flatfield.levels import target_level
from astro_assets.science.threads import in_threads

__all__ = ["ResponseCorrectedFrame", "estimate_sensor_response"]

_CLIP_SIGMA = 3.0
_CLIP_PASSES = 3
_MIN_SAMPLES_PER_TERM = 50


def _powers(degree: int) -> list[tuple[int, int]]:
    """``(a, b)`` of the terms ``x**a * y**b`` with ``2 <= a + b <= degree``."""
    return [(a, total - a) for total in range(2, degree + 1) for a in range(total + 1)]


def _whole_frame(frame) -> np.ndarray:
    """(H, W) float64 copy of a frame given as an array or as a view read by windows."""
    return np.asarray(frame[:, :], dtype=np.float64)


def _monomials(rows: np.ndarray, cols: np.ndarray, degree: int) -> np.ndarray:
    """(N, T) terms of :func:`_powers` at normalized coordinates."""
    col_powers = [np.ones_like(cols)]
    row_powers = [np.ones_like(rows)]
    for _ in range(degree):
        col_powers.append(col_powers[-1] * cols)
        row_powers.append(row_powers[-1] * rows)
    return np.stack([col_powers[a] * row_powers[b] for a, b in _powers(degree)], axis=1)


def estimate_sensor_response(
    frames: Sequence[np.ndarray],
    shifts: np.ndarray,
    *,
    degree: int = 4,
    dark_fraction: float = 0.05,
    max_samples: int = 200_000,
    black_level: float = 0.0,
) -> np.ndarray:
    """The sensor's smooth multiplicative response ``V``, from frames of a moving scene.

    Each frame of the first half is paired with the one half the sequence later (the frames
    in the order given, usually time). Where the two see the same part of the scene, the log of
    their ratio is fitted by ``v(p) - v(p - delta) + c_pair``: ``v`` a polynomial of
    ``degree`` in the sensor coordinates, ``c_pair`` the change of transparency or exposure
    between the two frames.
    Samples darker than ``dark_fraction`` of the frames' brightness (sky, deep sunspot umbrae)
    are left out, and so, by iterative 3-sigma clipping of the residuals, are dust shadows,
    limbs (where a fraction of a pixel of misregistration changes the ratio) and scene changes.

    Parameters
    ----------
    frames : sequence of np.ndarray
        Registered frames, each (H, W), linear data in ADU (not modified).
    shifts : np.ndarray
        (len(frames), 2) displacement (dy, dx) of the scene in each frame, pixels: a scene
        feature at (y, x) is at (y + dy, x + dx) in that frame.
    degree : int
        Degree of the polynomial ``v``; below 2 returns ones. Vignetting ``1 - a r**2`` has a
        log with ``r**4`` terms as large as ``a**2 / 2`` at the corners, so the default is 4:
        from frames displaced in every direction it recovers vignetting of 25 % at the
        corners (centred 8 px off the frame's centre) to 0.3 %, and 40 % to 0.4 % at the 99th
        percentile (2 % at the farthest corner, where ``r**6`` terms reach that).
        ``v`` has no linear term: a response tilted across the sensor records the scene tilted,
        each frame scaled by the tilt over its displacement, which no comparison of frames can
        tell from a change of transparency; and like one, it changes all of a frame alike.
    dark_fraction : float
        Samples below this fraction of the frames' bright level (``levels.target_level``) are
        not used. In [0, 1).
    max_samples : int
        Pixels sampled in all, on a regular grid spread over the pairs.
    black_level : float
        The frames' pedestal, ADU: the response scales only the light above it. Left in, a
        pedestal half as bright as the target halves the vignetting measured.

    Returns
    -------
    np.ndarray
        (H, W) float32, positive, with median 1 over the pixels sampled, and within the range
        it takes over the pixels it was measured on (lit in both frames of a pair) everywhere
        else; ones where the frames did not move enough to tell (fewer than 50 samples per
        term, or no displacement between the paired frames).

    Raises
    ------
    ValueError
        For fewer than two frames, shifts that do not match them, non-finite shifts, frames of
        different shapes, a negative degree, ``dark_fraction`` outside [0, 1), or a non-finite
        ``black_level``.
    """
    offsets = checked_offsets(frames, shifts)
    if not np.isfinite(black_level):
        raise ValueError(f"black_level must be finite, got {black_level}.")
    if degree < 0:
        raise ValueError(f"degree must be >= 0, got {degree}.")
    if not 0.0 <= dark_fraction < 1.0:
        raise ValueError(f"dark_fraction must be in [0, 1), got {dark_fraction}.")
    shape = common_frame_shape(frames)
    height, width = shape
    ones = np.ones(shape, dtype=np.float32)
    if degree < 2:
        return ones
    count = len(frames)
    half_way = count // 2
    pairs = [(k, k + half_way) for k in range(count - half_way)]
    pairs = [(k, j) for k, j in pairs if np.hypot(*(offsets[k] - offsets[j])) >= 0.5]
    if not pairs:
        return ones
    step = max(1, math.ceil(math.sqrt(len(pairs) * height * width / max_samples)))
    grid_rows, grid_cols = np.mgrid[step // 2 : height : step, step // 2 : width : step]
    grid_rows, grid_cols = grid_rows.ravel(), grid_cols.ravel()
    centre_y, centre_x = (height - 1) / 2, (width - 1) / 2
    half = max(centre_y, centre_x, 1.0)

    def normalized(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return _monomials((rows - centre_y) / half, (cols - centre_x) / half, degree)

    at_grid = normalized(grid_rows, grid_cols)

    def sample(pair: tuple[int, int]) -> tuple[np.ndarray, ...]:
        k, j = pair
        delta = offsets[k] - offsets[j]
        there_rows, there_cols = grid_rows - delta[0], grid_cols - delta[1]
        here = _whole_frame(frames[k])[grid_rows, grid_cols] - black_level
        there = ndimage.map_coordinates(
            _whole_frame(frames[j]) - black_level,
            [there_rows, there_cols],
            order=1,
            mode="constant",
            cval=np.nan,
        )
        return here, there, there_rows, there_cols

    sampled = in_threads(sample, pairs)
    level = max(target_level(here) for here, *_ in sampled)
    floor = max(dark_fraction * level, 0.0)
    values, designs, pair_index = [], [], []
    measured = np.zeros(grid_rows.size, dtype=bool)
    for number, (here, there, there_rows, there_cols) in enumerate(sampled):
        with np.errstate(invalid="ignore"):
            usable = (here > floor) & (there > floor)
        if not usable.any():
            continue
        measured |= usable
        values.append(np.log(here[usable]) - np.log(there[usable]))
        designs.append(at_grid[usable] - normalized(there_rows[usable], there_cols[usable]))
        pair_index.append(np.full(int(usable.sum()), number))
    terms = at_grid.shape[1]
    if not values or sum(v.size for v in values) < _MIN_SAMPLES_PER_TERM * terms:
        return ones
    target = np.concatenate(values)
    design = np.concatenate(designs)
    group = np.concatenate(pair_index)
    # A constant per pair: the two frames may differ in transparency or exposure.
    intercepts = np.zeros((target.size, len(pairs)))
    intercepts[np.arange(target.size), group] = 1.0
    full = np.hstack([design, intercepts])
    keep = np.ones(target.size, dtype=bool)
    coefficients = np.zeros(full.shape[1])
    for _ in range(_CLIP_PASSES):
        # Normal equations: a few dozen unknowns over some 10**5 samples. The pseudo-inverse
        # leaves out what the displacements cannot tell (a part of ``v`` constant along them).
        used = full[keep]
        coefficients = np.linalg.pinv(used.T @ used, rcond=1e-10, hermitian=True) @ (
            used.T @ target[keep]
        )
        residual = target - full @ coefficients
        spread = 1.4826 * float(np.median(np.abs(residual[keep] - np.median(residual[keep]))))
        if not spread > 0:
            break
        keep = np.abs(residual) <= _CLIP_SIGMA * spread
    polynomial = coefficients[:terms]
    y = (np.arange(height) - centre_y) / half
    x = (np.arange(width) - centre_x) / half
    log_response = np.zeros(shape)
    for (a, b), coefficient in zip(_powers(degree), polynomial, strict=True):
        log_response += coefficient * np.outer(y**b, x**a)
    log_response -= float(np.median(at_grid @ polynomial))
    # Beyond the pixels it was measured on (over the sky around a planet) the polynomial is
    # an extrapolation that can fall to a fraction of the light: it stays within the range
    # it takes where it was measured, which reaches the grid's step around each sample (a
    # steeply vignetted corner falls by several percent between the last sample and the
    # frame's edge).
    near_measured = np.zeros(shape, dtype=bool)
    near_measured[grid_rows[measured], grid_cols[measured]] = True
    near_measured = ndimage.maximum_filter(near_measured, size=2 * step + 1)
    at_measured = log_response[near_measured]
    log_response = np.clip(log_response, at_measured.min(), at_measured.max())
    return np.exp(log_response).astype(np.float32)


class ResponseCorrectedFrame:
    """A frame's light divided by the sensor's response, read one window at a time:
    ``b + (frame - b) / response``, the pedestal ``b`` left as it is.

    Parameters
    ----------
    frame : array-like
        (H, W) frame that supports 2-D slicing (an array, a memory map, a lazy view).
    response : np.ndarray or float
        (H, W) positive response, as from :func:`estimate_sensor_response`, or one positive
        factor for the whole frame (its transparency,
        :func:`.transparency.frame_transparency`).
    black_level : float
        The frame's pedestal, ADU.
    """

    def __init__(self, frame, response: np.ndarray | float, black_level: float = 0.0) -> None:
        self._uniform = np.ndim(response) == 0
        if self._uniform:
            if not (np.isfinite(response) and response > 0):
                raise ValueError(
                    f"a response of the whole frame must be finite and positive, got {response}."
                )
            response = np.float32(response)
        elif np.shape(frame) != np.shape(response):
            raise ValueError(
                f"frame shape {np.shape(frame)} differs from the response's {np.shape(response)}."
            )
        if not np.isfinite(black_level):
            raise ValueError(f"black_level must be finite, got {black_level}.")
        self._frame = frame
        self._response = response
        self._black_level = np.float32(black_level)
        self.shape = tuple(np.shape(frame))

    def __getitem__(self, window: tuple[slice, slice]) -> np.ndarray:
        """(h, w) float32 values of ``window``, their light divided by the response there."""
        light = np.asarray(self._frame[window], dtype=np.float32) - self._black_level
        light /= self._response if self._uniform else self._response[window]
        light += self._black_level
        return light
