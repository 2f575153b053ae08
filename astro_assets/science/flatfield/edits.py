"""A reviewer's corrections to a dust core: regions dropped where they point, discs added.

No eye is right on every video: a sunspot on a tracked Sun, a crater streak or a filament can
be taken for dust, and a faint shadow can be missed. The reviewer reads positions off the
overlay (``dust_mask_overlay.png``, or the median in PixInsight) and names them here.

Positions are in pixels of the raw frames, 0-based, ``x`` to the right and ``y`` down from the
centre of the top-left pixel: the convention of numpy and PixInsight. Siril counts ``y`` up from
the bottom row, so there ``y = H - 1 - y_siril``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from astro_assets.science.flatfield.motion import label_candidates
from astro_assets.science.flatfield.regions import grown_box

__all__ = ["EditedCore", "edit_core"]


@dataclass(frozen=True)
class EditedCore:
    """The result of :func:`edit_core`.

    Attributes
    ----------
    core : np.ndarray
        (H, W) bool, the edited core (a new array).
    dropped_regions : np.ndarray
        (H, W) bool, the pixels of the regions dropped.
    dropped : tuple of dict
        Per drop position, in the order given: the position (``x``, ``y``), the distance (px)
        to the region it dropped, and that region's centroid (``region_x``, ``region_y``) and
        area (``region_area_px``).
    added : tuple of dict
        Per disc, in the order given: its centre, radius and the pixels it added to the core
        (``added_px``, those not already in it).
    """

    core: np.ndarray
    dropped_regions: np.ndarray
    dropped: tuple[dict[str, Any], ...]
    added: tuple[dict[str, Any], ...]


def edit_core(
    core: np.ndarray,
    drop_at: Sequence[Sequence[float]] = (),
    add_discs: Sequence[Sequence[float]] = (),
    *,
    reach_px: float = 0.0,
) -> EditedCore:
    """Drop the regions of a dust core nearest given positions, then add discs to it.

    Parameters
    ----------
    core : np.ndarray
        (H, W) bool dust core; not modified. Its regions are 8-connected
        (:func:`~astro_assets.science.flatfield.motion.label_candidates`), as ``dust_mask``
        counts them.
    drop_at : sequence of (x, y)
        Positions (px). Each drops the whole region with the pixel nearest to it, which must
        lie within ``reach_px`` of it: a position on a region, or on the margin the mask adds
        around it, names that region. Several positions may name one region.
    add_discs : sequence of (x, y, radius)
        Discs (px) whose pixels, those with centres within ``radius`` of ``(x, y)``, become
        core. Added after the drops, so a region can be dropped and drawn again.
    reach_px : float
        How far (px, >= 0) a drop position may lie from the region it names.

    Returns
    -------
    EditedCore

    Raises
    ------
    ValueError
        For a core that is not 2-D, a position that is not two finite numbers inside the frame,
        a disc that is not three finite numbers with a positive radius and a centre inside the
        frame, or a drop position with no region within ``reach_px``.
    """
    source = np.asarray(core, dtype=bool)
    if source.ndim != 2:
        raise ValueError(f"the core must be a 2-D mask, got shape {source.shape}.")
    if not (math.isfinite(reach_px) and reach_px >= 0):
        raise ValueError(f"reach_px must be >= 0, got {reach_px}.")
    shape = source.shape
    labels, _ = label_candidates(source)
    chosen: set[int] = set()
    dropped = []
    for entry in drop_at:
        x, y = _position(entry, 2, shape, "drop_regions_at")
        label, distance = _nearest_region(labels, x, y, reach_px)
        chosen.add(label)
        region_rows, region_cols = np.nonzero(labels == label)
        dropped.append(
            {
                "x": x,
                "y": y,
                "distance_px": distance,
                "region_x": float(region_cols.mean()),
                "region_y": float(region_rows.mean()),
                "region_area_px": int(region_rows.size),
            }
        )
    dropped_regions = np.isin(labels, sorted(chosen)) if chosen else np.zeros(shape, bool)
    edited = source & ~dropped_regions
    added = []
    rows, cols = np.indices(shape, sparse=True)
    for entry in add_discs:
        x, y, radius = _position(entry, 3, shape, "add_dust_discs")
        if not radius > 0:
            raise ValueError(
                f"add_dust_discs: the disc at ({x:g}, {y:g}) has radius {radius:g}; give a "
                "radius > 0 px, as [x, y, radius]."
            )
        disc = (cols - x) ** 2 + (rows - y) ** 2 <= radius**2
        added.append({"x": x, "y": y, "radius_px": radius, "added_px": int(np.sum(disc & ~edited))})
        edited |= disc
    return EditedCore(
        core=edited, dropped_regions=dropped_regions, dropped=tuple(dropped), added=tuple(added)
    )


def _position(
    entry: Sequence[float], length: int, shape: tuple[int, int], name: str
) -> tuple[float, ...]:
    """``entry`` as ``length`` floats whose first two, (x, y), lie inside a frame of
    ``shape``."""
    form = "[x, y]" if length == 2 else "[x, y, radius]"
    malformed = ValueError(
        f"{name}: each entry must be {length} finite numbers, {form} in pixels, got {entry!r}."
    )
    try:
        values = tuple(float(value) for value in entry)
    except (TypeError, ValueError):
        raise malformed from None
    if len(values) != length or not all(math.isfinite(value) for value in values):
        raise malformed
    x, y = values[:2]
    height, width = shape
    if not (-0.5 <= x < width - 0.5 and -0.5 <= y < height - 0.5):
        raise ValueError(
            f"{name}: ({x:g}, {y:g}) lies outside the {width} x {height} frame. Positions are "
            "0-based pixels, x to the right and y down from the top-left pixel (PixInsight's "
            "convention; in Siril, y = height - 1 - y_siril)."
        )
    return values


def _nearest_region(labels: np.ndarray, x: float, y: float, reach_px: float) -> tuple[int, float]:
    """The label of the region with the pixel nearest to ``(x, y)`` and that distance (px),
    searched within ``reach_px``."""
    row, col = round(y), round(x)
    margin = math.ceil(reach_px) + 1
    window = grown_box((slice(row, row + 1), slice(col, col + 1)), margin, labels.shape)
    local = labels[window]
    rows, cols = np.nonzero(local)
    if rows.size:
        squared = (rows + window[0].start - y) ** 2 + (cols + window[1].start - x) ** 2
        nearest = int(np.argmin(squared))
        distance = math.sqrt(float(squared[nearest]))
        if distance <= reach_px:
            return int(local[rows[nearest], cols[nearest]]), distance
    raise ValueError(_no_region_message(labels, x, y, reach_px))


def _no_region_message(labels: np.ndarray, x: float, y: float, reach_px: float) -> str:
    head = (
        f"drop_regions_at: no region of the dust core lies within {reach_px:g} px of ({x:g}, {y:g})"
    )
    rows, cols = np.nonzero(labels)
    if rows.size == 0:
        return f"{head}: the core is empty, so there is nothing to drop. Remove the entry."
    nearest = int(np.argmin((rows - y) ** 2 + (cols - x) ** 2))
    label = labels[rows[nearest], cols[nearest]]
    region_rows, region_cols = np.nonzero(labels == label)
    return (
        f"{head}. The nearest region is centred at ({region_cols.mean():.0f}, "
        f"{region_rows.mean():.0f}); the regions are listed in dust_mask's metadata "
        "('regions'). Positions are 0-based pixels, x to the right and y down from the "
        "top-left pixel (in Siril, y = height - 1 - y_siril)."
    )
