"""ZScale display normalization (IRAF's algorithm, as implemented by astropy).

ZScale picks display limits from a sparse sample of the pixels: it fits a line to the sorted
sample and spans the range around the median that the line covers, scaled by ``1 / contrast``.
This keeps faint structure visible and is insensitive to a few very bright or hot pixels, which
is why it is the usual normalization for difference-imaging cutouts.

Decisions, applied identically wherever a tensor channel is produced:

- Limits are computed from finite pixels only.
- Non-finite pixels (NaN, +inf, -inf) become 0.0 in the normalized image and are counted.
- Degenerate limits (``vmax == vmin``, e.g. a constant image) cannot define a linear map; the
  normalization is then the limit of a linear map whose range shrinks symmetrically around
  ``vmin``: pixels below become 0.0, above become 1.0, equal become 0.5. A constant image is
  therefore all 0.5, and the result is flagged ``degenerate``.
- An image without any finite pixel is refused (``NoFinitePixelsError``): there is nothing to
  normalize, and writing a channel of zeros would put an empty image into a training set
  without anybody noticing. Fix or drop that job instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "NoFinitePixelsError",
    "ZScaleParams",
    "ZScaleResult",
    "normalize_rows_into",
    "zscale_limits",
    "zscale_normalize",
]

_ROWS_PER_BLOCK = 256


class NoFinitePixelsError(ValueError):
    """An image in which every pixel is NaN or infinite."""


@dataclass(frozen=True)
class ZScaleParams:
    """Parameters of ZScale (astropy's ``ZScaleInterval``; IRAF's defaults).

    Attributes
    ----------
    n_samples : int
        Number of pixels sampled (evenly strided over the finite pixels).
    contrast : float
        Slope scaling; smaller values widen the range.
    """

    n_samples: int = 1000
    contrast: float = 0.25

    def __post_init__(self) -> None:
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        if not self.contrast > 0:
            raise ValueError(f"contrast must be > 0, got {self.contrast}")


@dataclass(frozen=True)
class ZScaleResult:
    """What a ZScale normalization did.

    Attributes
    ----------
    vmin, vmax : float
        The limits mapped to 0.0 and 1.0 (image units).
    nan_count, inf_count : int
        Pixels that were NaN or +/-inf and were set to 0.0.
    degenerate : bool
        True when ``vmax == vmin`` and the step rule of the module docstring was applied.
    """

    vmin: float
    vmax: float
    nan_count: int
    inf_count: int
    degenerate: bool


def _check_image(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 2:
        raise ValueError(
            f"expected a 2-D image, got an array of shape {array.shape}; pass one image plane"
        )
    if array.size == 0:
        raise ValueError(f"the image is empty (shape {array.shape})")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"expected a numeric image, got dtype {array.dtype}")
    return array


def zscale_limits(
    image: np.ndarray, *, n_samples: int = 1000, contrast: float = 0.25
) -> tuple[float, float]:
    """ZScale display limits of the finite pixels of ``image``.

    Parameters
    ----------
    image : numpy.ndarray
        Shape (H, W), any real dtype, any units. Not modified.
    n_samples : int
        Pixels sampled by ZScale.
    contrast : float
        ZScale contrast (> 0).

    Returns
    -------
    (vmin, vmax) : tuple of float
        In the units of ``image``; ``vmin <= vmax``.

    Raises
    ------
    NoFinitePixelsError
        If no pixel is finite.
    ValueError
        If ``image`` is not a non-empty 2-D numeric array, or a parameter is out of range.
    """
    # astropy.visualization takes 0.2 s to import, and the code location imports this
    # module in every step process.
    from astropy.visualization import ZScaleInterval

    params = ZScaleParams(n_samples=n_samples, contrast=contrast)
    array = _check_image(image)
    if not np.isfinite(array).any():
        raise NoFinitePixelsError(
            f"all {array.size} pixels of the {array.shape} image are NaN or infinite; there "
            "is nothing to normalize: check the input image or drop this job"
        )
    vmin, vmax = ZScaleInterval(n_samples=params.n_samples, contrast=params.contrast).get_limits(
        array
    )
    return float(vmin), float(vmax)


def normalize_rows_into(
    source: np.ndarray, out: np.ndarray, vmin: float, vmax: float
) -> tuple[int, int]:
    """Map ``source`` linearly from [vmin, vmax] to [0, 1] into ``out``, block of rows by block.

    This is the elementwise rule of the module docstring; :func:`zscale_normalize` and the tensor
    writer both use it so that their outputs are bit-identical.

    Parameters
    ----------
    source : numpy.ndarray
        Shape (H, W), real dtype. Not modified.
    out : numpy.ndarray
        Shape (H, W), float32, writable (may be a strided view, e.g. one channel of a
        memory-mapped (H, W, C) tensor).
    vmin, vmax : float
        Limits, ``vmin <= vmax``.

    Returns
    -------
    (nan_count, inf_count) : tuple of int
    """
    degenerate = vmax == vmin
    scale = 0.0 if degenerate else 1.0 / (vmax - vmin)
    nan_count = 0
    inf_count = 0
    for start in range(0, source.shape[0], _ROWS_PER_BLOCK):
        block = np.asarray(source[start : start + _ROWS_PER_BLOCK], dtype=np.float64)
        finite = np.isfinite(block)
        nan_block = np.isnan(block)
        nan_count += int(np.count_nonzero(nan_block))
        inf_count += int(block.size - np.count_nonzero(finite) - np.count_nonzero(nan_block))
        if degenerate:
            values = np.where(block > vmin, 1.0, np.where(block < vmin, 0.0, 0.5))
        else:
            values = np.clip((block - vmin) * scale, 0.0, 1.0)
        values[~finite] = 0.0
        out[start : start + _ROWS_PER_BLOCK] = values.astype(np.float32)
    return nan_count, inf_count


def zscale_normalize(
    image: np.ndarray, *, n_samples: int = 1000, contrast: float = 0.25
) -> tuple[np.ndarray, ZScaleResult]:
    """ZScale-normalize an image to float32 in [0, 1].

    ``(x - vmin) / (vmax - vmin)`` clipped to [0, 1], with the decisions of the module docstring
    for non-finite pixels and degenerate limits.

    Parameters
    ----------
    image : numpy.ndarray
        Shape (H, W), any real dtype. Not modified.
    n_samples, contrast
        As :func:`zscale_limits`.

    Returns
    -------
    normalized : numpy.ndarray
        Shape (H, W), float32, values in [0, 1]; non-finite input pixels are 0.0.
    result : ZScaleResult

    Raises
    ------
    NoFinitePixelsError
        If no pixel is finite.
    ValueError
        If ``image`` is not a non-empty 2-D numeric array.
    """
    array = _check_image(image)
    vmin, vmax = zscale_limits(array, n_samples=n_samples, contrast=contrast)
    normalized = np.empty(array.shape, dtype=np.float32)
    nan_count, inf_count = normalize_rows_into(array, normalized, vmin, vmax)
    return normalized, ZScaleResult(
        vmin=vmin, vmax=vmax, nan_count=nan_count, inf_count=inf_count, degenerate=vmax == vmin
    )
