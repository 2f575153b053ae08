"""Selecting connected regions of a binary mask."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["regions_touching"]


def regions_touching(regions: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The connected regions of ``regions`` that hold at least one pixel of ``seeds``.

    Parameters
    ----------
    regions : np.ndarray
        (H, W) bool; regions are 4-connected (``scipy.ndimage.label``'s default).
    seeds : np.ndarray
        (H, W) bool; seeds outside ``regions`` select nothing.

    Returns
    -------
    np.ndarray
        (H, W) bool, a subset of ``regions``.
    """
    labels, _ = ndimage.label(regions)
    touched = np.unique(labels[np.asarray(seeds) & (labels > 0)])
    return np.isin(labels, touched[touched > 0])
