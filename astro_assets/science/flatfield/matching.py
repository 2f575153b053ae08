"""Float histogram matching of an inpainted image onto the median, on clean pixels only."""

from __future__ import annotations

import numpy as np

__all__ = ["MIN_CLEAN_PIXELS", "match_histogram"]

MIN_CLEAN_PIXELS = 16
"""Fewest clean pixels from which a quantile function is built."""


def match_histogram(source: np.ndarray, reference: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Map ``source`` so that its clean pixels follow the distribution of ``reference``.

    The mapping is a monotonic float quantile mapping: both quantile functions are built from the
    *same* clean pixels (``clean`` True, i.e. mask == 0) of each image, so dust, which is present
    in the reference (median) but removed from the source (inpainted image), cannot bias it. It
    is then applied to every pixel of ``source``. There is no 8-bit binning: with N clean pixels
    the mapping has N knots (ties in ``source`` are averaged), linear in between. Source values
    outside the clean range are moved by the offset of the nearest end, so the map stays
    continuous and monotonic instead of clamping.

    Parameters
    ----------
    source : np.ndarray
        (H, W) float image to transform (the inpainted image).
    reference : np.ndarray
        (H, W) float image whose clean-pixel distribution is the target (the median).
    clean : np.ndarray
        (H, W) bool, True on pixels untouched by dust and by inpainting.

    Returns
    -------
    np.ndarray
        (H, W) float32. If ``source`` equals ``reference`` on the clean pixels, the map is the
        identity on every value inside the clean range.

    Raises
    ------
    ValueError
        On shape mismatch, non-finite values, a non-boolean ``clean``, or fewer than
        ``MIN_CLEAN_PIXELS`` clean pixels.
    """
    src = np.asarray(source, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    keep = np.asarray(clean)
    if src.ndim != 2:
        raise ValueError(f"source must be a 2-D (H, W) image, got shape {src.shape}.")
    if ref.shape != src.shape or keep.shape != src.shape:
        raise ValueError(
            f"source {src.shape}, reference {ref.shape} and clean {keep.shape} must have the "
            "same shape."
        )
    if keep.dtype != bool:
        raise ValueError(f"clean must be a boolean mask (mask == 0), got dtype {keep.dtype}.")
    if not (np.isfinite(src).all() and np.isfinite(ref).all()):
        raise ValueError("source and reference must be finite; replace NaN/inf before matching.")
    n_clean = int(np.count_nonzero(keep))
    if n_clean < MIN_CLEAN_PIXELS:
        raise ValueError(
            f"only {n_clean} clean pixels (mask == 0); at least {MIN_CLEAN_PIXELS} are needed to "
            "match histograms. The dust mask covers almost the whole frame: check the mask."
        )
    src_sorted = np.sort(src[keep])
    ref_sorted = np.sort(ref[keep])
    knots, first_index, counts = np.unique(src_sorted, return_index=True, return_counts=True)
    # Equal source values get one knot: the mean of the reference values at those ranks.
    targets = np.add.reduceat(ref_sorted, first_index) / counts
    mapped = np.interp(src, knots, targets)
    below = src < knots[0]
    above = src > knots[-1]
    mapped[below] = src[below] + (targets[0] - knots[0])
    mapped[above] = src[above] + (targets[-1] - knots[-1])
    return mapped.astype(np.float32)
