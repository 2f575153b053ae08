"""Referee for dust masks proposed by an image model: keep only regions the data confirm.

A generative model can draw dust where there is none. Dust is a multiplicative shadow, so a true
dust region is darker than its immediate surroundings in the median. For every connected region
of a proposed mask the referee measures the relative deficit

    D = 1 - median(M[region]) / median(M[ring])

against a background ring around the region (a small gap away from it, other regions excluded),
and compares it with the deficit that the same footprint shows where there is no proposed dust.

Noise estimate. Solar and planetary texture, not photon noise, limits what is measurable, and
texture is spatially correlated, so an independent-pixel error (ring MAD / sqrt(N)) is far too
optimistic for large regions. The referee therefore places the region's own footprint, with its
own ring, at ``null_placements`` positions around it (clear of every proposed region and inside
the frame) and measures the same deficit there; the robust spread of these null deficits
(1.4826 x median |D_null|) is the noise, whatever the correlation length of the texture. The
independent-pixel error is a floor, and the only estimate when too few null placements fit (a
region near the frame edge or crowded by others); each verdict records which one was used.

A confirmed region is darker than its surroundings; it may still be a dark scene feature (a
sunspot in a well-tracked video): the referee rejects hallucinations, not look-alikes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from astro_assets.science.flatfield.regions import fill_holes

_MAD_TO_SIGMA = 1.4826
_MEDIAN_EFFICIENCY = math.sqrt(math.pi / 2.0)
_MIN_RING_PX = 8
_NOISE_FLOOR = 1e-6


@dataclass(frozen=True)
class RefereeParams:
    """Parameters of ``referee_mask``.

    Attributes
    ----------
    significance : float
        A region is kept when its deficit is at least this many noise units (and positive).
    ring_gap_px : int
        Pixels left out between a region and its background ring (the shadow's soft edge).
    ring_width_px : int
        Width of the background ring, pixels.
    min_area_px : int
        Regions smaller than this are rejected as unmeasurable (single hot/cold pixels).
    null_placements : int
        Positions per circle at which the footprint is re-measured for the noise estimate.
    min_null_placements : int
        Fewest usable null placements for the empirical noise; below, the ring MAD is used.
    """

    significance: float = 3.0
    ring_gap_px: int = 2
    ring_width_px: int = 6
    min_area_px: int = 4
    null_placements: int = 16
    min_null_placements: int = 6

    def __post_init__(self) -> None:
        if not (self.significance > 0 and math.isfinite(self.significance)):
            raise ValueError(f"significance must be a positive number, got {self.significance}")
        if self.ring_gap_px < 0:
            raise ValueError(f"ring_gap_px must be >= 0, got {self.ring_gap_px}")
        if self.ring_width_px < 1:
            raise ValueError(f"ring_width_px must be >= 1, got {self.ring_width_px}")
        if self.min_area_px < 1:
            raise ValueError(f"min_area_px must be >= 1, got {self.min_area_px}")
        if not 2 <= self.min_null_placements <= self.null_placements:
            raise ValueError(
                "need 2 <= min_null_placements <= null_placements, got "
                f"{self.min_null_placements} and {self.null_placements}"
            )


@dataclass(frozen=True)
class RegionVerdict:
    """The referee's measurement of one proposed region.

    Attributes
    ----------
    label : int
        Connected-component label (1-based, scipy.ndimage.label order).
    centroid : tuple of float
        (y, x) pixel coordinates.
    area_px : int
        Pixels in the region.
    background : float
        Median of the background ring, in the median's units (NaN if not measurable).
    deficit : float
        Relative deficit 1 - median(region) / background (NaN if not measurable).
    noise : float
        One-sigma uncertainty of ``deficit`` (NaN if not measurable).
    significance : float
        deficit / noise (NaN if not measurable).
    kept : bool
        True when the data confirm the region.
    noise_method : str
        ``"null_placements"``, ``"ring_mad"`` or ``"none"``.
    null_samples : int
        Null placements used.
    reason : str
        Why the region was kept or rejected, in words.
    """

    label: int
    centroid: tuple[float, float]
    area_px: int
    background: float
    deficit: float
    noise: float
    significance: float
    kept: bool
    noise_method: str
    null_samples: int
    reason: str

    def describe(self) -> dict[str, Any]:
        """JSON-serializable summary (NaN becomes None)."""

        def number(value: float, digits: int) -> float | None:
            return round(float(value), digits) if math.isfinite(value) else None

        return {
            "label": self.label,
            "centroid_yx": [round(self.centroid[0], 2), round(self.centroid[1], 2)],
            "area_px": self.area_px,
            "background": number(self.background, 6),
            "deficit": number(self.deficit, 5),
            "noise": number(self.noise, 5),
            "significance": number(self.significance, 2),
            "kept": self.kept,
            "noise_method": self.noise_method,
            "null_samples": self.null_samples,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class RefereeResult:
    """Outcome of ``referee_mask``.

    Attributes
    ----------
    kept : np.ndarray
        (H, W) bool: the proposed mask restricted to the confirmed regions.
    regions : tuple of RegionVerdict
        One verdict per connected region of the proposed mask, in label order.
    """

    kept: np.ndarray
    regions: tuple[RegionVerdict, ...]

    @property
    def n_kept(self) -> int:
        return sum(region.kept for region in self.regions)

    @property
    def n_rejected(self) -> int:
        return len(self.regions) - self.n_kept


def _validate(median: np.ndarray, core: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    median = np.asarray(median)
    core = np.asarray(core)
    if median.ndim != 2:
        raise ValueError(f"median must be a 2-D (H, W) image, got shape {median.shape}")
    if not np.issubdtype(median.dtype, np.number) or np.iscomplexobj(median):
        raise ValueError(f"median must hold real numbers, got dtype {median.dtype}")
    if core.shape != median.shape:
        raise ValueError(
            f"core {core.shape} and median {median.shape} must have the same shape; decode the "
            "model's mask onto the median's pixel grid first"
        )
    if core.dtype != bool:
        raise ValueError(
            f"core must be a bool array, got dtype {core.dtype}; threshold a soft mask first "
            "(e.g. core = mask >= 0.5)"
        )
    return median.astype(np.float64), core


def _unmeasured(
    label: int,
    centroid: tuple[float, float],
    area: int,
    reason: str,
    background: float = float("nan"),
) -> RegionVerdict:
    nan = float("nan")
    return RegionVerdict(
        label=label,
        centroid=centroid,
        area_px=area,
        background=background,
        deficit=nan,
        noise=nan,
        significance=nan,
        kept=False,
        noise_method="none",
        null_samples=0,
        reason=reason,
    )


def _mad_sigma(values: np.ndarray) -> float:
    return _MAD_TO_SIGMA * float(np.median(np.abs(values - np.median(values))))


def _null_deficits(
    image: np.ndarray,
    usable_background: np.ndarray,
    blocked: np.ndarray,
    footprint: tuple[np.ndarray, np.ndarray],
    ring: tuple[np.ndarray, np.ndarray],
    centroid: tuple[float, float],
    params: RefereeParams,
) -> list[float]:
    """Deficits of the region's footprint placed around it, away from every proposed region."""
    height, width = image.shape
    foot_y, foot_x = footprint
    ring_y, ring_x = ring
    reach = float(np.max(np.hypot(foot_y - centroid[0], foot_x - centroid[1])))
    base_distance = 2.0 * reach + params.ring_gap_px + 1.0
    deficits: list[float] = []
    for circle, distance in enumerate((base_distance, 2.0 * base_distance)):
        for k in range(params.null_placements):
            angle = 2.0 * math.pi * (k + 0.5 * circle) / params.null_placements
            dy = round(distance * math.sin(angle))
            dx = round(distance * math.cos(angle))
            ys, xs = foot_y + dy, foot_x + dx
            if ys.min() < 0 or xs.min() < 0 or ys.max() >= height or xs.max() >= width:
                continue
            if blocked[ys, xs].any() or not usable_background[ys, xs].all():
                continue
            rys, rxs = ring_y + dy, ring_x + dx
            inside = (rys >= 0) & (rxs >= 0) & (rys < height) & (rxs < width)
            rys, rxs = rys[inside], rxs[inside]
            usable = usable_background[rys, rxs]
            if usable.sum() < _MIN_RING_PX:
                continue
            background = float(np.median(image[rys[usable], rxs[usable]]))
            if background <= 0:
                continue
            deficits.append(1.0 - float(np.median(image[ys, xs])) / background)
        if len(deficits) >= params.min_null_placements:
            break
    return deficits


def referee_mask(
    median: np.ndarray, core: np.ndarray, params: RefereeParams | None = None
) -> RefereeResult:
    """Keep only the regions of a proposed dust mask that the median confirms as darker.

    Parameters
    ----------
    median : np.ndarray
        (H, W) temporal median, any real dtype, linear units (not gamma-encoded). Non-finite
        pixels are ignored.
    core : np.ndarray
        (H, W) bool proposed dust mask (8-connected regions are judged one by one).
    params : RefereeParams, optional

    Returns
    -------
    RefereeResult
        The confirmed part of ``core`` and a verdict for every region.

    Raises
    ------
    ValueError
        If the shapes differ, ``median`` is not a 2-D real image or ``core`` is not bool.
    """
    params = params or RefereeParams()
    image, core = _validate(median, core)
    finite = np.isfinite(image)
    labels, count = ndimage.label(core, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return RefereeResult(kept=np.zeros(core.shape, dtype=bool), regions=())

    if params.ring_gap_px > 0:
        blocked = ndimage.distance_transform_edt(~core) <= params.ring_gap_px
    else:
        blocked = core.copy()
    usable_background = finite & ~blocked
    margin = params.ring_gap_px + params.ring_width_px
    height, width = image.shape
    verdicts: list[RegionVerdict] = []
    for label, region_slice in enumerate(ndimage.find_objects(labels), start=1):
        y0 = max(region_slice[0].start - margin, 0)
        y1 = min(region_slice[0].stop + margin, height)
        x0 = max(region_slice[1].start - margin, 0)
        x1 = min(region_slice[1].stop + margin, width)
        local = labels[y0:y1, x0:x1] == label
        area = int(local.sum())
        foot_y, foot_x = np.nonzero(local)
        foot_y, foot_x = foot_y + y0, foot_x + x0
        centroid = (float(foot_y.mean()), float(foot_x.mean()))

        if area < params.min_area_px:
            verdicts.append(
                _unmeasured(label, centroid, area, f"smaller than min_area_px={params.min_area_px}")
            )
            continue
        # Distance from the hole-filled region, so a donut's centre never counts as background.
        distance = ndimage.distance_transform_edt(~fill_holes(local))
        ring_local = (distance > params.ring_gap_px) & (distance <= margin)
        ring_y, ring_x = np.nonzero(ring_local)
        ring_y, ring_x = ring_y + y0, ring_x + x0
        ring_usable = usable_background[ring_y, ring_x]
        ring_values = image[ring_y[ring_usable], ring_x[ring_usable]]
        region_values = image[foot_y, foot_x][finite[foot_y, foot_x]]
        if ring_values.size < _MIN_RING_PX or region_values.size < params.min_area_px:
            verdicts.append(
                _unmeasured(
                    label,
                    centroid,
                    area,
                    "not measurable: too few usable background or region pixels",
                )
            )
            continue
        background = float(np.median(ring_values))
        if background <= 0:
            verdicts.append(
                _unmeasured(
                    label,
                    centroid,
                    area,
                    "not measurable: background is not positive (dark sky or off the disc)",
                    background=background,
                )
            )
            continue
        deficit = 1.0 - float(np.median(region_values)) / background
        ring_sigma = _mad_sigma(ring_values)
        noise_iid = (
            _MEDIAN_EFFICIENCY
            * ring_sigma
            * math.sqrt(1.0 / region_values.size + 1.0 / ring_values.size)
            / background
        )
        nulls = _null_deficits(
            image,
            usable_background,
            blocked,
            (foot_y, foot_x),
            (ring_y, ring_x),
            centroid,
            params,
        )
        if len(nulls) >= params.min_null_placements:
            noise_null = _MAD_TO_SIGMA * float(np.median(np.abs(nulls)))
            noise, method = max(noise_null, noise_iid, _NOISE_FLOOR), "null_placements"
        else:
            noise, method = max(noise_iid, _NOISE_FLOOR), "ring_mad"
        significance = deficit / noise
        kept = bool(deficit > 0 and significance >= params.significance)
        reason = (
            f"darker than its surroundings at {significance:.1f} sigma"
            if kept
            else f"not darker than its surroundings ({significance:.1f} sigma < "
            f"{params.significance}): unconfirmed by the data"
        )
        verdicts.append(
            RegionVerdict(
                label=label,
                centroid=centroid,
                area_px=area,
                background=background,
                deficit=deficit,
                noise=noise,
                significance=significance,
                kept=kept,
                noise_method=method,
                null_samples=len(nulls),
                reason=reason,
            )
        )

    kept_labels = np.zeros(count + 1, dtype=bool)
    kept_labels[[v.label for v in verdicts if v.kept]] = True
    return RefereeResult(kept=kept_labels[labels], regions=tuple(verdicts))
