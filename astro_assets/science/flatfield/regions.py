"""Selecting connected regions of a binary mask."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["fill_holes", "grown_box", "regions_touching"]


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


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes(mask)``, exactly, in a fraction of its time.

    A hole is a 4-connected (``ndimage.label``'s default, the structure ``binary_fill_holes``
    defaults to) region of False pixels that reaches no edge of the array. scipy finds the
    rest by growing a dilation in from the edges, many passes over a large frame; here every
    False region is labelled once and those on an edge are kept False.

    Parameters
    ----------
    mask : np.ndarray
        Boolean array of any dimension.

    Returns
    -------
    np.ndarray
        Boolean array of the same shape: ``mask`` with its holes set.
    """
    mask = np.asarray(mask, dtype=bool)
    labels, count = ndimage.label(~mask)
    if count == 0 or labels.size == 0:
        return mask.copy()
    reaches_edge = np.zeros(count + 1, dtype=bool)
    for axis in range(labels.ndim):
        for end in (0, -1):
            reaches_edge[np.take(labels, end, axis=axis)] = True
    reaches_edge[0] = False
    return ~reaches_edge[labels]


def grown_box(box: tuple[slice, slice], margin: int, shape: tuple[int, int]) -> tuple[slice, slice]:
    """``box`` (a 2-D ``ndimage.find_objects`` box) grown by ``margin`` px on every side and
    clipped to an (H, W) array of ``shape``."""
    height, width = shape
    return (
        slice(max(box[0].start - margin, 0), min(box[0].stop + margin, height)),
        slice(max(box[1].start - margin, 0), min(box[1].stop + margin, width)),
    )
