"""The limb of a round target (the Sun, the Moon, a planet) in an image: its ellipse, fitted to
the edge of the lit disc, and the target's mean brightness at each depth below it.

Limb darkening and the seeing that blurs the edge depend, to first order, on the depth below the
limb alone; vignetting and the scene add slow variations on top, which a local fit can follow.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["depth_below_limb", "fit_limb", "limb_radius_px", "radial_profile"]

_MIN_LIMB_POINTS = 24
_LIMB_TOLERANCE_PX = 1.0
"""A limb fit is accepted when its rms radial residual is below this plus 1 % of its radius."""


def fit_limb(on_target: np.ndarray, *, in_phase: bool = True) -> np.ndarray | None:
    """Normalized radius ``s`` of the best-fitting limb ellipse or circle (1 on the limb).

    The limb is the edge of the largest on-target component, without the frame border. An
    ellipse (algebraic least squares) is preferred when it fits clearly better than a circle
    (oblate planets); a circle is more robust when only short arcs are visible. Two rounds drop
    edge points far from the fit (dust notches, prominences). When no conic fits the whole edge
    (a terminator: the Moon or a planet in phase), the fit starts again from the circle through
    three edge points that most edge points lie on, and is kept if the rest of the edge can be
    a terminator (:func:`_holds_a_terminator`).

    Parameters
    ----------
    on_target : np.ndarray
        (H, W) bool, the lit disc (e.g. the image above a fraction of its bright level, holes
        filled).
    in_phase : bool
        Look for the limb of a target in phase when no conic fits the whole edge; False
        returns None then.

    Returns
    -------
    np.ndarray or None
        (H, W) float64 ``s = sqrt((p - c)^T M (p - c))``: 0 at the centre, 1 on the limb,
        dimensionless; None when the edge has fewer than 24 pixels or no conic fits it (or
        half of it, as above) to within 1 px plus 1 % of its radius rms (an irregular target,
        a crop).
    """
    labels, n = ndimage.label(on_target)
    if n > 1:
        sizes = ndimage.sum_labels(on_target, labels, index=np.arange(1, n + 1))
        target = labels == 1 + int(np.argmax(sizes))
    else:
        target = on_target
    edge = target & ~ndimage.binary_erosion(target, border_value=1)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = False
    rows, cols = np.nonzero(edge)
    if rows.size < _MIN_LIMB_POINTS:
        return None
    # Coordinates centred inside the target and scaled to order one, for a well-posed fit.
    target_rows, target_cols = np.nonzero(target)
    origin = np.array([target_rows.mean(), target_cols.mean()])
    scale = float(max(on_target.shape))
    points = (np.stack([rows, cols], axis=1) - origin) / scale
    best = _best_conic(points, np.ones(len(points), dtype=bool), scale)
    if best is None and in_phase:
        # A terminator (a phase of the Moon or a planet) is part of the edge but not of the
        # limb; the limb is the larger part of the edge at any phase. A limb larger than the
        # frame could not be told from a straight stretch of an irregular edge.
        arc = _circle_consensus(points, scale)
        if arc is not None:
            best = _best_conic(points, arc, scale)
            if best is not None and not _holds_a_terminator(points, best, scale):
                best = None
    if best is None:
        return None
    _, centre, metric, _ = best
    height, width = on_target.shape
    dy = ((np.arange(height) - origin[0]) / scale - centre[0])[:, None]
    dx = ((np.arange(width) - origin[1]) / scale - centre[1])[None, :]
    quadratic = metric[0, 0] * dy**2 + 2.0 * metric[0, 1] * dy * dx + metric[1, 1] * dx**2
    return np.sqrt(np.maximum(quadratic, 0.0))


def _best_conic(
    points: np.ndarray, keep: np.ndarray, scale: float
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray] | None:
    """``(rms_px, centre, metric, kept)`` of the better of a circle and an ellipse fitted to
    ``points[keep]`` and refitted twice to the points within 3 robust sigmas of the fit; the
    ellipse wins when its rms is under 0.7 of the circle's. None when neither fits to within
    ``_LIMB_TOLERANCE_PX`` plus 1 % of its radius rms."""
    best = None
    for shape in ("circle", "ellipse"):
        kept = keep.copy()
        fit = None
        for _round in range(3):
            if kept.sum() < _MIN_LIMB_POINTS:
                fit = None
                break
            fit = _fit_conic(points[kept], shape)
            if fit is None:
                break
            residual = _radial_residual(points, *fit) * scale
            spread = max(1.4826 * float(np.median(np.abs(residual[kept]))), 0.5)
            kept = np.abs(residual) <= 3.0 * spread
        if fit is None:
            continue
        centre, metric = fit
        residual = _radial_residual(points[kept], centre, metric) * scale
        rms = float(np.sqrt(np.mean(residual**2)))
        if rms > _tolerance_px(_conic_radius(metric, scale)):
            continue
        if best is None or rms < 0.7 * best[0]:
            best = (rms, centre, metric, kept)
    return best


def _holds_a_terminator(
    points: np.ndarray, fit: tuple[float, np.ndarray, np.ndarray, np.ndarray], scale: float
) -> bool:
    """Whether the conic ``fit`` (of :func:`_best_conic`) is the limb of a target in phase whose
    terminator is the rest of the edge: it holds at least half of the edge, over at least a
    quarter of a turn (a shorter arc can be any bend of an irregular edge), it is no larger
    than the frame (``scale`` px), and every other edge point lies inside it, as a terminator
    does (a straight stretch of edge beyond a rounded corner runs outside)."""
    _, centre, metric, kept = fit
    radius = _conic_radius(metric, scale)
    if kept.sum() < 0.5 * len(points) or radius > scale:
        return False
    if _arc_span(points[kept], centre) < 0.5 * math.pi:
        return False
    outward = _radial_residual(points[~kept], centre, metric) * scale
    return bool(np.all(outward <= _tolerance_px(radius)))


def _arc_span(points: np.ndarray, centre: np.ndarray) -> float:
    """Angle, in radians, of the arc around ``centre`` that holds ``points`` (the full turn
    less the largest gap between them)."""
    angles = np.sort(np.arctan2(points[:, 0] - centre[0], points[:, 1] - centre[1]))
    gaps = np.diff(np.concatenate([angles, angles[:1] + 2.0 * math.pi]))
    return float(2.0 * math.pi - gaps.max())


def _tolerance_px(radius_px: float) -> float:
    """Rms (or, for single points, largest) radial distance of edge points from a limb of
    ``radius_px``: ``_LIMB_TOLERANCE_PX`` plus 1 % of the radius."""
    return _LIMB_TOLERANCE_PX + 0.01 * radius_px


def _conic_radius(metric: np.ndarray, scale: float) -> float:
    """Geometric mean of the conic's semi-axes, in pixels (``metric`` in units of ``scale``)."""
    return scale / math.sqrt(float(np.sqrt(np.linalg.det(metric))))


_CONSENSUS_TRIALS = 256
"""Circles through random triples of edge points tried by :func:`_circle_consensus`: with the
limb at least half of the edge, all three points lie on it in one trial in eight, so every
trial misses it with a probability of (7/8)**256 ~ 1e-15."""


def _circle_consensus(points: np.ndarray, scale: float) -> np.ndarray | None:
    """The points within ``_LIMB_TOLERANCE_PX`` plus 1 % of the radius of the circle through
    three of them, no larger than ``scale`` (the frame's longer side), that holds the most
    (random triples, seeded: the same edge gives the same answer); None when no triple spans
    such a circle."""
    rng = np.random.default_rng(0)
    triples = rng.integers(0, len(points), size=(_CONSENSUS_TRIALS, 3))
    best_count, best = 0, None
    for triple in triples:
        fit = _fit_conic(points[triple], "circle")
        if fit is None:
            continue
        centre, metric = fit
        radius_px = _conic_radius(metric, scale)
        if radius_px > scale:
            continue
        distance = np.hypot(*(points - centre).T) * scale
        near = np.abs(distance - radius_px) <= _tolerance_px(radius_px)
        count = int(near.sum())
        if count > best_count:
            best_count, best = count, near
    return best


def _fit_conic(points: np.ndarray, shape: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Centre and metric ``M`` of the conic ``(p - c)^T M (p - c) = 1`` through ``points``.

    Algebraic least squares: ``a y^2 + b yx + c x^2 + d y + e x = 1`` for an ellipse (the origin
    lies inside the target), ``y^2 + x^2 + d y + e x + f = 0`` for a circle. None when the fit
    is not a real ellipse or is too eccentric for a limb (axis ratio below 0.7).
    """
    y, x = points[:, 0], points[:, 1]
    if shape == "circle":
        design = np.stack([y, x, np.ones_like(y)], axis=1)
        (d, e, f), *_ = np.linalg.lstsq(design, -(y**2 + x**2), rcond=None)
        centre = np.array([-d / 2.0, -e / 2.0])
        radius_sq = float(centre @ centre - f)
        if not radius_sq > 0:
            return None
        return centre, np.eye(2) / radius_sq
    design = np.stack([y**2, y * x, x**2, y, x], axis=1)
    (a, b, c, d, e), *_ = np.linalg.lstsq(design, np.ones_like(y), rcond=None)
    metric = np.array([[a, b / 2.0], [b / 2.0, c]])
    eigenvalues = np.linalg.eigvalsh(metric)
    if not eigenvalues[0] > 0:
        return None
    centre = -0.5 * np.linalg.solve(metric, np.array([d, e]))
    norm = 1.0 + float(centre @ metric @ centre)
    if not norm > 0:
        return None
    metric = metric / norm
    if math.sqrt(eigenvalues[0] / eigenvalues[1]) < 0.7:
        return None
    return centre, metric


def _radial_residual(points: np.ndarray, centre: np.ndarray, metric: np.ndarray) -> np.ndarray:
    """Distance of each point from the conic along the ray from its centre (signed, outward)."""
    offset = points - centre
    s = np.sqrt(np.maximum(np.einsum("ni,ij,nj->n", offset, metric, offset), 1e-300))
    return np.linalg.norm(offset, axis=1) * (1.0 - 1.0 / s)


def limb_radius_px(normalized_radius: np.ndarray) -> float:
    """Mean radius of the fitted limb in pixels, from the gradient of ``s`` (``1 / R``).

    Parameters
    ----------
    normalized_radius : np.ndarray
        (H, W) ``s`` of :func:`fit_limb`.

    Returns
    -------
    float
        The median of ``1 / |grad s|`` within 5 % of the limb, in pixels; the frame's longer
        side when the limb lies that far outside the frame.
    """
    grad_y, grad_x = np.gradient(normalized_radius)
    slope = np.hypot(grad_y, grad_x)
    near = np.abs(normalized_radius - 1.0) < 0.05
    return float(1.0 / np.median(slope[near])) if near.any() else float(max(slope.shape))


def depth_below_limb(normalized_radius: np.ndarray) -> np.ndarray:
    """Depth of each pixel below the fitted limb, in pixels (negative outside the limb).

    Parameters
    ----------
    normalized_radius : np.ndarray
        (H, W) ``s`` of :func:`fit_limb`.

    Returns
    -------
    np.ndarray
        (H, W) float64 ``(1 - s) * R``, with ``R`` the mean radius of the limb
        (:func:`limb_radius_px`): exact along a circle's radii, within the axis ratio on an
        ellipse's.
    """
    return (1.0 - normalized_radius) * limb_radius_px(normalized_radius)


_PROFILE_MIN_SAMPLES = 25
"""Depth bins holding fewer known pixels than this are left out of the profile."""

_PROFILE_OUTSIDE_PX = 16.0
"""The profile starts this far outside the limb; the sky beyond is taken as constant."""

_PROFILE_RELATIVE_BIN = 0.1
"""Depth bins are 1 px wide near the limb and this fraction of their depth further in, where
limb darkening (``mu = sqrt(2 d / R)`` near the limb) bends so little over a bin that linear
interpolation between bins errs by under 0.1 %."""


def radial_profile(
    image: np.ndarray,
    known: np.ndarray,
    depth_px: np.ndarray,
    *,
    max_samples: int = 200_000,
) -> np.ndarray:
    """The target's median brightness at each depth below its limb, at every pixel.

    The known pixels are gathered in bins of depth, 1 px wide near the limb, where limb
    darkening falls fastest and seeing blurs the edge, and 10 % of their depth further in. The
    median of each bin (robust to the scene's texture, shadows and spots) is interpolated
    linearly to every pixel's depth; beyond the outermost bins it stays constant.

    Parameters
    ----------
    image : np.ndarray
        (H, W) real image in any units.
    known : np.ndarray
        (H, W) bool, the pixels whose values the profile is measured on.
    depth_px : np.ndarray
        (H, W) depth below the limb in pixels (:func:`depth_below_limb`).
    max_samples : int
        At most this many known pixels, evenly spaced in raster order, enter the bins.

    Returns
    -------
    np.ndarray
        (H, W) float64 profile, in the image's units; the median of the sampled pixels
        everywhere when no bin holds 25 of them.

    Raises
    ------
    ValueError
        For arrays of different shapes, no known pixel or ``max_samples < 1``.
    """
    values = np.asarray(image, dtype=np.float64)
    chosen = np.asarray(known, dtype=bool)
    depth = np.asarray(depth_px, dtype=np.float64)
    if chosen.shape != values.shape or depth.shape != values.shape:
        raise ValueError(
            f"image {values.shape}, known {chosen.shape} and depth_px {depth.shape} must have "
            "one shape."
        )
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}.")
    indices = np.flatnonzero(chosen & (depth >= -_PROFILE_OUTSIDE_PX))
    if indices.size == 0:
        indices = np.flatnonzero(chosen)
    if indices.size == 0:
        raise ValueError("no known pixel to measure a radial profile on.")
    indices = indices[:: max(1, math.ceil(indices.size / max_samples))]
    sample_depth = depth.ravel()[indices]
    sample_values = values.ravel()[indices]
    edges = _depth_bin_edges(float(sample_depth.min()), float(sample_depth.max()))
    bins = np.digitize(sample_depth, edges)
    counts = np.bincount(bins, minlength=edges.size + 1)
    filled = np.flatnonzero(counts >= _PROFILE_MIN_SAMPLES)
    if filled.size == 0:
        return np.full(values.shape, float(np.median(sample_values)))
    medians = ndimage.median(sample_values, bins, filled)
    centres = ndimage.median(sample_depth, bins, filled)
    return np.interp(depth, np.asarray(centres), np.asarray(medians))


def _depth_bin_edges(shallowest: float, deepest: float) -> np.ndarray:
    """Bin edges from ``shallowest`` to past ``deepest``: 1 px wide, or 10 % of the depth."""
    edges = [math.floor(shallowest)]
    while edges[-1] <= deepest:
        edges.append(edges[-1] + max(1.0, _PROFILE_RELATIVE_BIN * edges[-1]))
    return np.asarray(edges)
