"""Classical inpainting of masked pixels: harmonic (Laplace) solve of the departure from a
quadratic trend fitted around each region, or scikit-image biharmonic; next to a limb, of the
image's ratio to the target's radial profile.

OpenCV's TELEA is deliberately absent: it is broken on float data in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.linalg import spsolve
from skimage.restoration import inpaint_biharmonic

from astro_assets.science.flatfield.dust import LineGains, line_gains
from astro_assets.science.flatfield.levels import target_level
from astro_assets.science.flatfield.limb import depth_below_limb, fit_limb, radial_profile
from astro_assets.science.flatfield.regions import fill_holes, grown_box, regions_touching

__all__ = [
    "InpaintParams",
    "fill_across_line_defects",
    "guided_regions",
    "inpaint",
    "inpaint_guided",
    "median_line_gains",
]

_BIHARMONIC_MARGIN_PX = 4
"""Known pixels kept around a region for the biharmonic stencil (it reaches two pixels out)."""

_TREND_MIN_PIXELS_PER_TERM = 5
"""Known pixels needed per coefficient before a trend is fitted (fewer: a lower degree)."""

_PROFILE_FLOOR = 1e-3
"""The radial profile is kept above this fraction of the bright level, so the image's ratio to
it stays finite over the sky."""

_TREND_CLIP_SIGMA = 3.0
"""Known pixels further than this many robust sigmas from the first fit (a hot pixel, a star,
the edge of a feature) are left out of the second."""


@dataclass(frozen=True)
class InpaintParams:
    """Parameters of :func:`inpaint`.

    Attributes
    ----------
    method : {"harmonic", "biharmonic"}
        ``harmonic`` (default): solve Laplace's equation on the masked pixels with the known
        neighbours as Dirichlet boundary. Fast (one sparse solve per region) and exact on any
        linear field; the result is the smoothest membrane through the boundary.
        ``biharmonic``: scikit-image ``inpaint_biharmonic`` on each region's bounding box; also
        continues gradients (smoother across the boundary), several times slower.
    trend : {"quadratic", "none"}
        For ``harmonic``: the surface fitted (least squares, one 3-sigma clipping pass) to the
        known pixels around each region, whose departure is then solved for. A membrane is
        the mean of its boundary, so under a curved field it sags by about
        ``|laplacian| * R**2 / 4``: toward a limb the Sun's intensity falls faster and faster
        (laplacian < 0), and near the limb a 22 px region with a laplacian of -8 ADU/px**2 on
        a 30,000 ADU disc is filled some 3 % too dark, which the flat turns into a 3 % error.
        The quadratic carries that curvature; it is reproduced exactly, and so is its slope
        at the frame's edge, where the membrane alone can only assume a zero one. ``none``:
        the plain membrane through the boundary.
    trend_reach_px : float
        The trend is fitted to the known pixels within this distance of the region, or within
        half the region's equivalent radius where that is larger.
    dark_fraction : float
        Known pixels darker than this fraction of the bright level (``levels.target_level`` of
        the known pixels) are off the target (the sky beside a limb): they are not used as boundary
        values, so a region that crosses a limb is continued from the target side only and
        the sky never pulls the reference down. A region with no bright known neighbour uses
        all of them. 0 uses every known pixel.
    limb : {"profile", "none"}
        ``profile`` (default): where an ellipse or circle fits the edge of the target, or in
        phase the larger part of it (:func:`~astro_assets.science.flatfield.limb.fit_limb`),
        a region that comes within its own equivalent diameter of that limb is filled in the
        image's ratio to the median brightness of the target's lit pixels (not darker than
        ``dark_fraction`` of the bright level) at each depth below the limb
        (:func:`~astro_assets.science.flatfield.limb.radial_profile`), and multiplied back;
        lit pixels alone, so that in phase the profile is the lit part's.
        The profile carries limb darkening and the seeing-blurred edge, measured all along the
        limb, into the region; a trend fitted to the region's surroundings sees only their
        inner side when the region covers the limb there (a shadow across the limb in a corner
        of the frame) and cannot follow the limb's steepening fall: over a 30 px region
        across the corner limb of the synthetic Sun it errs by 12-14 % rms, the profile by
        0.3-1.4 % (without and with granulation). Farther in, limb darkening is smooth enough
        for the trend. ``none``: every region is filled in the image itself.
    limb_fraction : float
        The edge of the target is where the image falls below this fraction of the bright level
        (as ``DustDetectionParams.limb_fraction``).
    """

    method: Literal["harmonic", "biharmonic"] = "harmonic"
    dark_fraction: float = 0.05
    trend: Literal["quadratic", "none"] = "quadratic"
    trend_reach_px: float = 8.0
    limb: Literal["profile", "none"] = "profile"
    limb_fraction: float = 0.15

    def __post_init__(self) -> None:
        if self.method not in ("harmonic", "biharmonic"):
            raise ValueError(
                f"InpaintParams.method must be 'harmonic' or 'biharmonic', got {self.method!r}."
            )
        if self.trend not in ("quadratic", "none"):
            raise ValueError(
                f"InpaintParams.trend must be 'quadratic' or 'none', got {self.trend!r}."
            )
        if not (math.isfinite(self.trend_reach_px) and self.trend_reach_px >= 1.0):
            raise ValueError(
                f"InpaintParams.trend_reach_px must be a finite number >= 1, "
                f"got {self.trend_reach_px}."
            )
        if not 0.0 <= self.dark_fraction < 1.0:
            raise ValueError(
                f"InpaintParams.dark_fraction must lie in [0, 1), got {self.dark_fraction}."
            )
        if self.limb not in ("profile", "none"):
            raise ValueError(f"InpaintParams.limb must be 'profile' or 'none', got {self.limb!r}.")
        if not 0.0 < self.limb_fraction < 1.0:
            raise ValueError(
                f"InpaintParams.limb_fraction must lie in (0, 1), got {self.limb_fraction}."
            )


def _validate(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"image must be a 2-D (H, W) array, got shape {img.shape}.")
    if not np.issubdtype(img.dtype, np.number) or np.iscomplexobj(img):
        raise ValueError(f"image must be real-valued, got dtype {img.dtype}.")
    msk = np.asarray(mask)
    if msk.shape != img.shape:
        raise ValueError(f"mask shape {msk.shape} differs from image shape {img.shape}.")
    if msk.dtype != bool:
        msk_float = msk.astype(np.float64)
        if not np.isfinite(msk_float).all() or msk_float.min() < 0 or msk_float.max() > 1:
            raise ValueError("mask must be boolean or hold finite values in [0, 1].")
        msk = msk_float > 0
    unknown = msk.copy()
    known_values = img[~unknown].astype(np.float64)
    if not np.isfinite(known_values).all():
        raise ValueError(
            "image has NaN/inf outside the mask; they cannot serve as boundary values. "
            "Add them to the mask or replace them."
        )
    if unknown.all():
        raise ValueError(
            "the mask covers the whole image: there is no known pixel to inpaint from. "
            "Check the dust mask (it should cover only dust shadows)."
        )
    return img, unknown


def _harmonic_region(
    values: np.ndarray, unknown: np.ndarray, region: np.ndarray, ignored: np.ndarray
) -> np.ndarray:
    """Solve the 5-point Laplace equation on ``region`` (a bool array) inside ``values``.

    Neighbours outside the array and ``ignored`` known neighbours are absent (zero-flux
    boundary); the other known neighbours are Dirichlet. Returns the solved values of the
    region pixels in ``np.nonzero(region)`` order.
    """
    rows, cols = np.nonzero(region)
    n = rows.size
    index = np.full(region.shape, -1, dtype=np.int64)
    index[rows, cols] = np.arange(n)
    height, width = region.shape
    diagonal = np.zeros(n)
    rhs = np.zeros(n)
    off_rows: list[np.ndarray] = []
    off_cols: list[np.ndarray] = []
    for d_row, d_col in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        n_rows = rows + d_row
        n_cols = cols + d_col
        inside = (n_rows >= 0) & (n_rows < height) & (n_cols >= 0) & (n_cols < width)
        inside[inside] &= ~ignored[n_rows[inside], n_cols[inside]]
        diagonal += inside
        src = np.nonzero(inside)[0]
        nr, nc = n_rows[inside], n_cols[inside]
        neighbour_unknown = unknown[nr, nc]
        rhs[src[~neighbour_unknown]] += values[nr[~neighbour_unknown], nc[~neighbour_unknown]]
        off_rows.append(src[neighbour_unknown])
        off_cols.append(index[nr[neighbour_unknown], nc[neighbour_unknown]])
    off_r = np.concatenate(off_rows)
    off_c = np.concatenate(off_cols)
    matrix = sparse.csr_matrix(
        (
            np.concatenate([diagonal, -np.ones(off_r.size)]),
            (np.concatenate([np.arange(n), off_r]), np.concatenate([np.arange(n), off_c])),
        ),
        shape=(n, n),
    )
    if n == 1:
        return rhs / diagonal
    return np.asarray(spsolve(matrix, rhs))


def _trend_design(rows: np.ndarray, cols: np.ndarray, terms: int) -> np.ndarray:
    columns = [np.ones_like(rows), rows, cols]
    if terms == 6:
        columns += [rows * rows, cols * cols, rows * cols]
    return np.stack(columns, axis=1)


def _fit_trend(
    values: np.ndarray, fit: np.ndarray, centre: tuple[float, float], scale: float
) -> tuple[np.ndarray, int] | None:
    """Least-squares quadratic (or, short of pixels or rank, plane) through ``values[fit]``,
    refitted once without the pixels beyond ``_TREND_CLIP_SIGMA`` robust sigmas; coordinates
    relative to ``centre`` in units of ``scale``. None when not even a plane is determined."""
    rows, cols = np.nonzero(fit)
    rows = (rows - centre[0]) / scale
    cols = (cols - centre[1]) / scale
    target = values[fit]
    for terms in (6, 3):
        if rows.size < _TREND_MIN_PIXELS_PER_TERM * terms:
            continue
        design = _trend_design(rows, cols, terms)
        coefficients, _, rank, _ = np.linalg.lstsq(design, target, rcond=None)
        if rank < terms:
            continue
        residual = target - design @ coefficients
        spread = 1.4826 * float(np.median(np.abs(residual)))
        keep = np.abs(residual) <= _TREND_CLIP_SIGMA * spread
        if spread > 0 and terms * _TREND_MIN_PIXELS_PER_TERM <= keep.sum() < keep.size:
            refit, _, rank, _ = np.linalg.lstsq(design[keep], target[keep], rcond=None)
            if rank == terms:
                coefficients = refit
        return coefficients, terms
    return None


def _trend_over(
    values: np.ndarray,
    unknown: np.ndarray,
    dark: np.ndarray,
    labels: np.ndarray,
    label_id: int,
    window: tuple[slice, slice],
    reach: float,
) -> np.ndarray:
    """The trend surface of region ``label_id`` over ``window``, fitted to the known pixels
    within ``reach`` of it that are not ``dark`` (all known ones where every one is dark);
    zero where none can be fitted (the plain membrane)."""
    height, width = labels.shape
    grow = math.ceil(reach)
    box = (
        slice(max(window[0].start - grow, 0), min(window[0].stop + grow, height)),
        slice(max(window[1].start - grow, 0), min(window[1].stop + grow, width)),
    )
    region = labels[box] == label_id
    near = ndimage.distance_transform_edt(~region) <= reach
    fit = near & ~unknown[box] & ~dark[box]
    if not fit.any():
        fit = near & ~unknown[box]
    rows, cols = np.nonzero(region)
    centre = (float(rows.mean()), float(cols.mean()))
    fitted = _fit_trend(values[box], fit, centre, reach)
    shape = (window[0].stop - window[0].start, window[1].stop - window[1].start)
    if fitted is None:
        return np.zeros(shape)
    coefficients, terms = fitted
    grid_rows, grid_cols = np.indices(shape, dtype=np.float64)
    grid_rows = (grid_rows + window[0].start - box[0].start - centre[0]) / reach
    grid_cols = (grid_cols + window[1].start - box[1].start - centre[1]) / reach
    design = _trend_design(grid_rows.ravel(), grid_cols.ravel(), terms)
    return (design @ coefficients).reshape(shape)


def inpaint(
    image: np.ndarray, mask: np.ndarray, params: InpaintParams = InpaintParams()
) -> np.ndarray:
    """Replace the masked pixels of ``image`` by a smooth continuation of their surroundings.

    Parameters
    ----------
    image : np.ndarray
        (H, W) real image (any scale, e.g. the temporal median in ADU).
    mask : np.ndarray
        (H, W) bool, or float in [0, 1]; pixels with ``mask > 0`` are unknown and replaced.
    params : InpaintParams
        Method selection.

    Returns
    -------
    np.ndarray
        (H, W) float32, equal to ``image`` (as float32) exactly wherever ``mask == 0``.

    Raises
    ------
    ValueError
        On shape/dtype problems, a mask outside [0, 1], non-finite known pixels, a mask that
        covers everything, or a masked region with no known pixel adjacent to it.
    """
    img, unknown = _validate(image, mask)
    out = img.astype(np.float32, copy=True)
    if not unknown.any():
        return out
    values = img.astype(np.float64)
    dark = np.zeros(unknown.shape, dtype=bool)
    level = target_level(values[~unknown])
    if params.dark_fraction > 0:
        dark = ~unknown & (values < params.dark_fraction * level)
    labels, n_regions = ndimage.label(unknown)
    boxes = ndimage.find_objects(labels)
    profile, near_limb = None, np.zeros(n_regions + 1, dtype=bool)
    if params.limb == "profile":
        profile, near_limb = _limb_profile(values, unknown, dark, level, labels, boxes, params)
    to_profile = values / profile if profile is not None else None
    for label_id, box in enumerate(boxes, start=1):
        grow = 1 if params.method == "harmonic" else _BIHARMONIC_MARGIN_PX
        window = grown_box(box, grow, unknown.shape)
        region = labels[window] == label_id
        ring = ndimage.binary_dilation(region) & ~unknown[window]
        if not ring.any():
            raise ValueError(
                f"masked region {label_id} of {n_regions} has no known pixel next to it "
                "(it fills the frame), so it cannot be inpainted. Shrink the mask."
            )
        ignored = dark[window]
        if not (ring & ~ignored).any():
            ignored = np.zeros(region.shape, dtype=bool)
        field, scale = values, None
        if to_profile is not None and near_limb[label_id]:
            field, scale = to_profile, profile[window][region]
        if params.method == "harmonic":
            trend = np.zeros(region.shape)
            if params.trend == "quadratic":
                reach = max(params.trend_reach_px, 0.5 * math.sqrt(region.sum() / math.pi))
                trend = _trend_over(field, unknown, dark, labels, label_id, window, reach)
            solved = _harmonic_region(field[window] - trend, unknown[window], region, ignored)
            filled = solved + trend[region]
        else:
            crop = field[window].copy()
            crop_unknown = unknown[window] | ignored
            crop[crop_unknown] = 0.0
            filled = inpaint_biharmonic(crop, crop_unknown)[region]
        if scale is not None:
            filled = filled * scale
        out[window][region] = filled.astype(np.float32)
    return out


def _limb_profile(
    values: np.ndarray,
    unknown: np.ndarray,
    dark: np.ndarray,
    level: float,
    labels: np.ndarray,
    boxes: list[tuple[slice, slice] | None],
    params: InpaintParams,
) -> tuple[np.ndarray | None, np.ndarray]:
    """The target's radial profile (floored at ``_PROFILE_FLOOR`` of the bright ``level``) and,
    per label (index 0 unused), whether the region comes within its own equivalent diameter
    of the fitted limb; ``(None, all False)`` when no limb fits or no region is that near."""
    near = np.zeros(len(boxes) + 1, dtype=bool)
    if not level > 0:
        return None, near
    disc = fill_holes(values > params.limb_fraction * level)
    if not disc.any() or disc.all():
        return None, near
    normalized_radius = fit_limb(disc)
    if normalized_radius is None:
        return None, near
    depth = depth_below_limb(normalized_radius)
    for label_id, box in enumerate(boxes, start=1):
        region = labels[box] == label_id
        diameter = 2.0 * math.sqrt(np.count_nonzero(region) / math.pi)
        near[label_id] = depth[box][region].min() < diameter
    if not near.any():
        return None, near
    # Only the lit pixels: where a terminator darkens part of the disc (a phase), the profile
    # is that of its lit part, at the limb's blurred edge too.
    profile = radial_profile(values, ~unknown & ~dark, depth)
    return np.maximum(profile, _PROFILE_FLOOR * level), near


def inpaint_guided(
    image: np.ndarray,
    mask: np.ndarray,
    guide: np.ndarray,
    params: InpaintParams = InpaintParams(),
    *,
    black_level: float | None = None,
) -> np.ndarray:
    """Inpaint ``image`` along a guide that has the scene's texture but not the dust.

    Where a masked region and the pixels next to it have a guide (for a drifting target, the
    dust-free prediction of the median from the registered frames, see
    :func:`astro_assets.science.flatfield.motion.predict_dust_free`), the ratio
    ``image / guide`` is inpainted instead of the image and multiplied back by the guide: the
    texture the guide shares with the image is kept under the mask, and only the smooth ratio
    (vignetting, colour, the guide's scale) is continued from the surroundings. Other regions
    are inpainted as by :func:`inpaint`.

    Parameters
    ----------
    image : np.ndarray
        (H, W) real image, e.g. one colour plane of the temporal median, in ADU.
    mask : np.ndarray
        (H, W) bool or float in [0, 1]; pixels with ``mask > 0`` are replaced.
    guide : np.ndarray
        (H, W) real image in the units of ``image`` or any multiple of them; NaN (or values
        <= 0) where there is no guide.
    params : InpaintParams
        Method for the ratio and for the unguided regions; ``dark_fraction`` with a black level.
    black_level : float or None
        Pedestal of both the image and the guide, in ADU: the ratio is then taken above it
        where the guide is brighter than ``dark_fraction`` of its bright level, and stands at
        its median elsewhere, as where there is no guide. A guide in another colour than the
        image (the luminance guiding a colour plane) is a fixed multiple of it only above
        the pedestal: across a limb their plain ratio runs from the plane's share of the
        light to 1 on the sky, and a fill of it colours the plane (by 20-45 % under a shadow
        on a planet's limb). On the sky beside a limb, a few ADU of a guide's error are tens
        of per cent of the ratio, which a fill carries onto the target: a colour plane's own
        prediction, sampled half as finely across the limb, left the fill 0.8-4.4 % rms off
        under a shadow on a synthetic limb with the plain ratio, 0.1-0.5 % without the sky's.
        None: the plain ratio everywhere.

    Returns
    -------
    np.ndarray
        (H, W) float32, equal to ``image`` (as float32) exactly wherever ``mask == 0``.

    Raises
    ------
    ValueError
        As :func:`inpaint`, for a guide of another shape, and for a black level that is not
        finite.
    """
    img, unknown = _validate(image, mask)
    if black_level is not None and not math.isfinite(black_level):
        raise ValueError(f"black_level must be finite, got {black_level}.")
    hint = np.asarray(guide, dtype=np.float64)
    guided = guided_regions(unknown, hint)
    result = inpaint(img, unknown & ~guided, params)
    if guided.any():
        usable = usable_guide(hint)
        pedestal = 0.0 if black_level is None else black_level
        above = hint - pedestal
        if black_level is not None:
            lit = above > params.dark_fraction * target_level(above[usable & ~unknown])
            if (lit & usable & ~unknown).any():
                usable &= lit
        ratio = (img - pedestal) / np.where(usable, above, 1.0)
        # Where there is no guide the ratio stands at its median where there is, which the
        # trend of the ratio's fill then reaches towards: the guide may be in other units than
        # the image (the luminance guiding one colour plane), so no fixed value will do.
        ratio[~usable] = np.median(ratio[usable & ~unknown])
        filled = inpaint(ratio, guided, replace(params, limb="none"))
        result[guided] = (filled[guided] * above[guided] + pedestal).astype(np.float32)
    return result


def guided_regions(mask: np.ndarray, guide: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` that :func:`inpaint_guided` fills along ``guide``: the connected
    regions of ``mask > 0`` where the guide is positive and finite on every pixel and on
    every pixel next to them.

    Parameters
    ----------
    mask : np.ndarray
        (H, W) bool or float in [0, 1].
    guide : np.ndarray
        (H, W) real image, NaN where there is no guide.

    Returns
    -------
    np.ndarray
        (H, W) bool.

    Raises
    ------
    ValueError
        For arrays of different shapes.
    """
    unknown = np.asarray(mask) > 0
    hint = np.asarray(guide, dtype=np.float64)
    if hint.shape != unknown.shape:
        raise ValueError(f"guide shape {hint.shape} differs from mask shape {unknown.shape}.")
    usable = usable_guide(hint)
    outside = ndimage.binary_dilation(unknown) & ~unknown
    uncovered = ndimage.binary_dilation(~usable & (unknown | outside))
    return unknown & ~regions_touching(unknown, uncovered)


def usable_guide(guide: np.ndarray) -> np.ndarray:
    """Where ``guide`` (any shape) can guide a fill: finite and positive. Bool, its shape."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(guide) & (guide > 0)


def fill_across_line_defects(
    image: np.ndarray,
    mask: np.ndarray,
    fill: Callable[[np.ndarray], np.ndarray],
    gains: LineGains | None,
) -> np.ndarray:
    """``fill(image)`` with the sensor's line ``gains`` divided out first and multiplied back
    under the mask.

    A column of lower gain crosses a dust shadow as it crosses the rest of the frame. Filled
    from its surroundings, or from a dust-free prediction in which the scene moved over the
    sensor, the masked part of the column comes back at the gain of its neighbours, and the
    flat (the median over the fill) would correct the column there and nowhere else: a
    calibrated frame would show the column interrupted where the dust was. Divided out of
    what is filled and multiplied back, the gains stay in the fill, and the flat corrects the
    dust alone.

    Parameters
    ----------
    image : np.ndarray
        (H, W) median.
    mask : np.ndarray
        (H, W) mask, > 0 where filled.
    fill : callable
        Takes an (H, W) image, returns it filled under the mask (same shape).
    gains : LineGains or None
        Of ``image``'s grid (:func:`median_line_gains`, or measured on the ratio to a dust-free
        prediction, :func:`~astro_assets.science.flatfield.motion.sensor_line_gains`); None
        fills ``image`` as it is.

    Returns
    -------
    np.ndarray
        (H, W): ``image`` itself outside the mask (bit for bit), the fill times the line gains
        under it.
    """
    data = np.asarray(image)
    if gains is None:
        return fill(data)
    if gains.shape != data.shape:
        raise ValueError(
            f"line gains of shape {gains.shape} do not fit an image of shape {data.shape}."
        )
    gain = gains.image()
    return np.where(np.asarray(mask) > 0, fill(data / gain) * gain, data)


def median_line_gains(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    threshold_sigma: float = 5.0,
    dark_fraction: float = 0.05,
) -> LineGains | None:
    """The gains of the defective columns and rows of a median, measured on the median itself
    (:func:`~astro_assets.science.flatfield.dust.line_gains` on the target's unmasked pixels,
    those darker than ``dark_fraction`` of the bright level left out).

    In one image a band of the scene along the rows or columns (a planet's belts) looks like a
    line of different gain; on a drifting video the ratio to the dust-free prediction, in which
    the scene cancels, tells them apart
    (:func:`~astro_assets.science.flatfield.motion.sensor_line_gains`).
    """
    data = np.asarray(image)
    on_target = data > dark_fraction * target_level(data)
    return line_gains(data, on_target & (np.asarray(mask) <= 0), threshold_sigma)
