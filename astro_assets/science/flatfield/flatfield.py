"""Flat-field synthesis from the median and its dust-free reference, and flat application.

Model: a raw pixel is ``R = F * S + b`` with flat ``F``, signal ``S`` and black level (pedestal)
``b``. The temporal median ``M`` and the matched inpainted reference ``I`` (the median with dust
removed) give ``F = (M - b) / (I - b)`` under the dust. Ignoring a non-zero ``b`` under-estimates
the dust depth by the factor ``S / (S + b)``, hence the black-level options. A master dark is
subtracted from the frames before all of this (``darks``): ``b`` is then what is left of the
pedestal, usually nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from astro_assets.science.compiled import compiled
from astro_assets.science.flatfield.levels import dark_threshold, target_level

__all__ = [
    "BLACK_LEVEL_MODES",
    "FlatParams",
    "FlatResult",
    "IntegerCalibrator",
    "apply_flat",
    "estimate_black_level",
    "saturated_fraction",
    "signal_level",
    "sky_black_level",
    "synthesize_flat",
    "synthesize_plane_flats",
]

BLACK_LEVEL_MODES = ("none", "value", "sky")

_MIN_SKY_FRACTION = 0.01
"""Smallest fraction of the frame that must be sky for a sky black-level estimate."""

_PLATEAU_FRACTION = 1e-3
"""Fraction of the frame sharing the maximum value from which the maximum is a clip level."""


@dataclass(frozen=True)
class FlatParams:
    """Parameters of :func:`synthesize_flat` and :func:`estimate_black_level`.

    Attributes
    ----------
    dark_fraction : float
        Masked pixels whose dust-free reference (``matched_inpaint - b``) is below
        ``dark_fraction`` times the bright signal level (:func:`signal_level`) are
        off-target (sky, off-disc): there is no light to measure a flat with, and the flat is
        forced to 1.0. Also the sky threshold for ``black_level_mode="sky"``.
    min_flat : float
        Ratios below this (including zero or negative ``median - b`` under a bright reference)
        mean an opaque shadow that hides the signal: no correction can recover it, so the flat
        is forced to 1.0 there rather than amplifying noise (or dividing by zero) later.
    max_flat : float
        Ratios above this cannot come from dust, which only blocks light: the reference is
        wrong there (a mask across a limb whose reference mixes in the sky, a scene feature
        that moved). The flat is forced to 1.0 there and the pixels are counted
        (``forced_implausible_px``), rather than amplifying the data later.
    saturation_fraction : float
        Pixels at or above ``saturation_fraction * saturation_level`` are forced to 1.0: a
        saturated pixel hides the dust shadow.
    saturation_level : float or None
        Clip level of the data in the median's units (e.g. 65535 for 16-bit frames). ``None``:
        the median's maximum counts as a clip level only when at least 0.1 % of the pixels share
        it exactly (a clipped plateau) and some do not (a uniform median shows no clipping);
        otherwise no pixel is treated as saturated.
    black_level : float or None
        The pedestal in the median's units, used when ``black_level_mode="value"`` (e.g. from a
        dark frame).
    black_level_mode : {"none", "value", "sky"}
        ``none``: the flat applies to raw values (b = 0); ``value``: use ``black_level``;
        ``sky``: estimate ``b`` from the sky with :func:`estimate_black_level`.
    """

    dark_fraction: float = 0.05
    min_flat: float = 0.02
    max_flat: float = 1.5
    saturation_fraction: float = 0.98
    saturation_level: float | None = None
    black_level: float | None = None
    black_level_mode: Literal["none", "value", "sky"] = "none"

    def __post_init__(self) -> None:
        if not 0.0 <= self.dark_fraction < 1.0:
            raise ValueError(f"dark_fraction must lie in [0, 1), got {self.dark_fraction}.")
        if not 0.0 <= self.min_flat < 1.0:
            raise ValueError(f"min_flat must lie in [0, 1), got {self.min_flat}.")
        if not (np.isfinite(self.max_flat) and self.max_flat > 1.0):
            raise ValueError(f"max_flat must be a finite value > 1, got {self.max_flat}.")
        if not 0.0 < self.saturation_fraction <= 1.0:
            raise ValueError(
                f"saturation_fraction must lie in (0, 1], got {self.saturation_fraction}."
            )
        if self.saturation_level is not None and not (
            np.isfinite(self.saturation_level) and self.saturation_level > 0
        ):
            raise ValueError(f"saturation_level must be > 0, got {self.saturation_level}.")
        if self.black_level_mode not in BLACK_LEVEL_MODES:
            raise ValueError(
                f"black_level_mode must be one of {BLACK_LEVEL_MODES}, got "
                f"{self.black_level_mode!r}."
            )
        if self.black_level_mode == "value" and (
            self.black_level is None or not np.isfinite(self.black_level)
        ):
            raise ValueError(
                "black_level_mode='value' needs a finite black_level (the pedestal in ADU)."
            )
        if self.black_level is not None and self.black_level < 0:
            raise ValueError(
                f"black_level must be at least 0 ADU, got {self.black_level}: it is the "
                "pedestal the camera adds to every pixel, which unsigned frames cannot hold "
                "below 0. Give the level of a dark frame, or use black_level_mode 'sky'."
            )


@dataclass(frozen=True)
class FlatResult:
    """A synthesized flat.

    Attributes
    ----------
    flat : np.ndarray
        (H, W) float32, unclipped (values above 1.0 are kept); exactly 1.0 where mask == 0.
    forced_unity : np.ndarray
        (H, W) bool, masked pixels forced to 1.0 (too dark to measure or near saturation).
    black_level : float
        The black level ``b`` subtracted; the flat applies to ``frame - b``.
    stats : dict
        JSON-serializable summary (masked fraction, forced pixels, min/max/mean of the flat under
        the mask, fraction above 1.0, black-level mode, signal and saturation levels).
    """

    flat: np.ndarray
    forced_unity: np.ndarray
    black_level: float
    stats: dict[str, Any] = field(default_factory=dict)


def _as_finite_image(name: str, value: np.ndarray, *, planes: bool = False) -> np.ndarray:
    """``value`` as float64, refused unless real, finite and (H, W), or (H, W, 3) with
    ``planes``."""
    array = np.asarray(value)
    if not (array.ndim == 2 or (planes and array.ndim == 3 and array.shape[2] == 3)):
        expected = "(H, W) or (H, W, 3)" if planes else "(H, W)"
        raise ValueError(f"{name} must be a {expected} array, got shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f"{name} must be real-valued, got dtype {array.dtype}.")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf; replace or mask them first.")
    return array


def signal_level(median: np.ndarray, black_level: float = 0.0) -> float:
    """Bright signal level of a median above the black level: ``levels.target_level`` of
    ``median - b``, the 99th percentile of the target's pixels even where it covers less than
    1 % of the frame."""
    data = _as_finite_image("median", median)
    return target_level(data - float(black_level))


def estimate_black_level(median: np.ndarray, params: FlatParams = FlatParams()) -> float:
    """Estimate the pedestal from the sky (the dark part of the frame around a disc).

    Sky pixels are those below ``low + dark_fraction * (high - low)``, with ``low`` and ``high``
    the median's 0.1th percentile and its bright level (``levels.target_level``), in connected
    parts that reach the frame's edge (a dark patch enclosed by the target is a shadow on it).
    The estimate is their median. Scattered light makes the sky slightly brighter than the true
    pedestal, so this is an upper bound of ``b`` (it deepens the estimated dust a little, never
    the opposite).

    Parameters
    ----------
    median : np.ndarray
        (H, W) temporal median, in ADU.
    params : FlatParams
        ``dark_fraction`` sets the sky threshold.

    Returns
    -------
    float
        The black level, in the median's units.

    Raises
    ------
    ValueError
        When less than 1 % of the frame is sky (the target fills the frame; a full-disc sun
        cropped to the disc, a lunar or planetary close-up): pass a measured value instead
        (``black_level_mode="value"``, e.g. from a dark frame), or use ``"none"``.
    """
    level, problem = _sky_level(_as_finite_image("median", median), params)
    if level is None:
        raise ValueError(problem)
    return level


def sky_black_level(median: np.ndarray, params: FlatParams = FlatParams()) -> float | None:
    """The pedestal as :func:`estimate_black_level` measures it from the sky, or None where
    it cannot (a median without contrast, or less than 1 % of the frame sky).

    Raises
    ------
    ValueError
        For a median that is not a finite 2-D image.
    """
    level, _ = _sky_level(_as_finite_image("median", median), params)
    return level


def _sky_level(data: np.ndarray, params: FlatParams) -> tuple[float | None, str]:
    """The median of the sky pixels of ``data``, or None and why there is no sky to measure."""
    sky, problem = _sky_pixels(data, params)
    if sky is None:
        return None, problem
    return float(np.median(data[sky])), ""


def _sky_pixels(data: np.ndarray, params: FlatParams) -> tuple[np.ndarray | None, str]:
    """The sky pixels of ``data`` (bool, its shape), or None and why there is no sky."""
    threshold = dark_threshold(data, max(params.dark_fraction, 0.01))
    if threshold is None:
        return None, (
            "the median is flat (no contrast), so sky and target cannot be told apart; pass "
            "black_level_mode='value' with a measured pedestal."
        )
    sky = _reaching_the_edge(data <= threshold)
    fraction = float(np.mean(sky))
    if fraction < _MIN_SKY_FRACTION:
        return None, (
            f"only {fraction:.2%} of the frame is sky (below {threshold:.4g} and reaching the "
            "frame's edge); the target fills the frame, so the black level cannot be estimated "
            "from the sky. Pass black_level_mode='value' with a pedestal from a dark frame, or "
            "'none'."
        )
    return sky, ""


def _reaching_the_edge(dark: np.ndarray) -> np.ndarray:
    """The connected parts of ``dark`` (bool, (H, W)) that touch the frame's edge.

    The sky lies around the target and runs out of the frame; a dark patch enclosed by the
    target is a shadow on it (near-opaque dust on a disc that fills the frame), whose level is
    not the pedestal.
    """
    labels, _ = ndimage.label(dark)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    touching = np.unique(edge[edge > 0])
    return np.isin(labels, touching)


def _resolve_black_level(median: np.ndarray, params: FlatParams) -> float:
    if params.black_level_mode == "none":
        return 0.0
    if params.black_level_mode == "value":
        return float(params.black_level)
    return estimate_black_level(median, params)


def _saturation_level(median: np.ndarray, params: FlatParams) -> float | None:
    if params.saturation_level is not None:
        return float(params.saturation_level)
    peak = float(median.max())
    plateau = np.count_nonzero(median == peak)
    if max(2, _PLATEAU_FRACTION * median.size) <= plateau < median.size:
        return peak
    return None


def saturated_fraction(median: np.ndarray, params: FlatParams = FlatParams()) -> float:
    """Share of the target's pixels that :func:`synthesize_flat` takes as near saturation.

    Parameters
    ----------
    median : np.ndarray
        (H, W) temporal median, ADU.
    params : FlatParams
        ``saturation_level`` (else a plateau of the median's maximum, as the synthesis finds
        it), ``saturation_fraction`` and ``dark_fraction``.

    Returns
    -------
    float
        The fraction of the pixels above ``dark_fraction`` of the signal level that are at or
        above ``saturation_fraction`` of the saturation level; 0 without one.
    """
    data = _as_finite_image("median", median)
    saturation = _saturation_level(data, params)
    on_target = data > params.dark_fraction * signal_level(data)
    if saturation is None or not on_target.any():
        return 0.0
    return float(np.mean(data[on_target] >= params.saturation_fraction * saturation))


def synthesize_flat(
    median: np.ndarray,
    matched_inpaint: np.ndarray,
    mask: np.ndarray,
    params: FlatParams = FlatParams(),
) -> FlatResult:
    """Synthesize the flat ``(1 - mask) * 1 + mask * (median - b) / (matched_inpaint - b)``.

    Parameters
    ----------
    median : np.ndarray
        (H, W) temporal median, in ADU.
    matched_inpaint : np.ndarray
        (H, W) dust-free reference in the same units (inpainted, then histogram-matched).
    mask : np.ndarray
        (H, W) float in [0, 1] (or bool): the expanded, feathered dust support.
    params : FlatParams
        Dark/saturation handling and black level.

    Returns
    -------
    FlatResult
        The float32 flat is exactly 1.0 wherever ``mask == 0`` and wherever a masked pixel is
        off-target (``matched_inpaint - b`` below ``dark_fraction`` of the signal level), near
        saturation, behind an opaque shadow (ratio below ``min_flat``) or implausibly bright
        (ratio above ``max_flat``); elsewhere it is the ratio, unclipped.

    Raises
    ------
    ValueError
        On shape mismatch, NaN/inf, a mask outside [0, 1], no signal above the black level
        (black level at or above the signal), or a non-finite result.
    """
    med = _as_finite_image("median", median)
    ref = _as_finite_image("matched_inpaint", matched_inpaint)
    weights = _as_finite_image("mask", np.asarray(mask, dtype=np.float64))
    if ref.shape != med.shape or weights.shape != med.shape:
        raise ValueError(
            f"median {med.shape}, matched_inpaint {ref.shape} and mask {weights.shape} must "
            "have the same shape."
        )
    if weights.min() < 0 or weights.max() > 1:
        raise ValueError("mask values must lie in [0, 1] (0 = clean, 1 = dust support).")
    black = _resolve_black_level(med, params)
    level = signal_level(med, black)
    if not level > 0:
        raise ValueError(
            f"no usable signal: the black level {black:.6g} is at or above the bright level of "
            f"the median ({level + black:.6g}). Lower the black level or check the input."
        )
    saturation = _saturation_level(med, params)
    masked = weights > 0
    too_dark = ref - black <= params.dark_fraction * level
    near_saturation = (
        med >= params.saturation_fraction * saturation
        if saturation is not None
        else np.zeros(med.shape, dtype=bool)
    )
    measurable = masked & ~too_dark & ~near_saturation
    ratio = np.ones(med.shape, dtype=np.float64)
    ratio[measurable] = (med[measurable] - black) / (ref[measurable] - black)
    opaque = measurable & (ratio < params.min_flat)
    implausible = measurable & (ratio > params.max_flat)
    forced = masked & (too_dark | near_saturation | opaque | implausible)
    use_ratio = masked & ~forced
    flat = np.ones(med.shape, dtype=np.float64)
    flat[use_ratio] = (1.0 - weights[use_ratio]) + weights[use_ratio] * ratio[use_ratio]
    if not np.isfinite(flat).all():
        raise ValueError("the flat has non-finite values; check the median and reference.")
    flat32 = flat.astype(np.float32)
    under_mask = flat32[masked]
    stats: dict[str, Any] = {
        "masked_fraction": float(np.mean(masked)),
        "masked_px": int(np.count_nonzero(masked)),
        "forced_unity_px": int(np.count_nonzero(forced)),
        "forced_dark_px": int(np.count_nonzero(masked & too_dark)),
        "forced_saturated_px": int(np.count_nonzero(masked & near_saturation)),
        "forced_opaque_px": int(np.count_nonzero(opaque)),
        "forced_implausible_px": int(np.count_nonzero(implausible)),
        "flat_min": float(under_mask.min()) if under_mask.size else 1.0,
        "flat_max": float(under_mask.max()) if under_mask.size else 1.0,
        "flat_mean_masked": float(under_mask.mean()) if under_mask.size else 1.0,
        "fraction_above_one": float(np.mean(under_mask > 1.0)) if under_mask.size else 0.0,
        "black_level": black,
        "black_level_mode": params.black_level_mode,
        "signal_level": level,
        "saturation_level": saturation,
    }
    return FlatResult(flat=flat32, forced_unity=forced, black_level=black, stats=stats)


def synthesize_plane_flats(
    medians: Sequence[np.ndarray],
    matched_inpaints: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    params: Sequence[FlatParams],
) -> list[FlatResult]:
    """The flats of the colour planes of one median, each :func:`synthesize_flat`'s.

    Two rules tie the planes together, for a plane that a filter leaves without light (an
    H-alpha filter on a colour camera lights R alone, a Ca-K filter B): such a plane has no
    target, no sky of its own to tell apart and no light to measure a flat with.

    - With ``black_level_mode="sky"`` every plane's pedestal is the median of that plane over
      the sky of the planes' sum (:func:`estimate_black_level`'s sky, the same pixels in every
      plane, cropped to the smallest plane where a mosaic's planes differ by a row).
    - A plane whose bright level above its black level (:func:`signal_level`) is below its
      ``dark_fraction`` of the brightest plane's has a flat of exactly 1.0 (``stats``
      ``without_light`` True; its masked pixels count as forced to 1.0, too dark), where
      :func:`synthesize_flat` alone would refuse a plane at its black level or divide noise.

    Parameters
    ----------
    medians, matched_inpaints, masks : sequence of np.ndarray
        One (H, W) image per plane, as for :func:`synthesize_flat`; planes may differ in shape.
    params : sequence of FlatParams
        One per plane.

    Returns
    -------
    list of FlatResult
        One per plane; ``stats["without_light"]`` tells which planes had none.

    Raises
    ------
    ValueError
        As :func:`synthesize_flat`, when the planes' counts differ, or, with
        ``black_level_mode="sky"``, when their sum has less than 1 % of the frame sky.
    """
    if not len(medians) == len(matched_inpaints) == len(masks) == len(params) > 0:
        raise ValueError(
            f"one median, matched_inpaint, mask and FlatParams per plane, got {len(medians)}, "
            f"{len(matched_inpaints)}, {len(masks)} and {len(params)}."
        )
    planes = [_as_finite_image("median", median) for median in medians]
    skies, problem = _sky_of_the_sum(planes, params)
    resolved = []
    for plane_params, sky in zip(params, skies, strict=True):
        if plane_params.black_level_mode == "sky":
            if sky is None:
                raise ValueError(problem)
            plane_params = replace(plane_params, black_level_mode="value", black_level=sky)
        resolved.append(plane_params)
    blacks = [
        _resolve_black_level(plane, plane_params)
        for plane, plane_params in zip(planes, resolved, strict=True)
    ]
    # Light is what lies above the pedestal: with black_level_mode none the flat keeps the
    # pedestal in its ratio, but a plane holding the pedestal alone has none.
    lights = [
        signal_level(plane, black if sky is None else max(black, sky))
        for plane, black, sky in zip(planes, blacks, skies, strict=True)
    ]
    brightest = max(lights)
    results = []
    for plane, matched, mask, plane_params, asked, black, light in zip(
        planes, matched_inpaints, masks, resolved, params, blacks, lights, strict=True
    ):
        if brightest > 0 and light < plane_params.dark_fraction * brightest:
            result = _unity_flat(mask, black, light)
        else:
            result = synthesize_flat(plane, matched, mask, plane_params)
        stats = {
            **result.stats,
            "black_level_mode": asked.black_level_mode,
            "without_light": bool(result.stats.get("without_light", False)),
        }
        results.append(replace(result, stats=stats))
    return results


def _sky_of_the_sum(
    planes: list[np.ndarray], params: Sequence[FlatParams]
) -> tuple[list[float | None], str]:
    """Each plane's median over the sky of the planes' sum (cropped to the smallest plane),
    or Nones and why the sum has no sky."""
    rows = min(plane.shape[0] for plane in planes)
    cols = min(plane.shape[1] for plane in planes)
    cropped = [plane[:rows, :cols] for plane in planes]
    fraction = max(plane_params.dark_fraction for plane_params in params)
    sky, problem = _sky_pixels(np.sum(cropped, axis=0), FlatParams(dark_fraction=fraction))
    if sky is None:
        return [None] * len(planes), problem
    return [float(np.median(plane[sky])) for plane in cropped], ""


def _unity_flat(mask: np.ndarray, black_level: float, level: float) -> FlatResult:
    """The flat of a plane without light: exactly 1.0, its masked pixels forced (too dark)."""
    masked = _as_finite_image("mask", np.asarray(mask, dtype=np.float64)) > 0
    count = int(np.count_nonzero(masked))
    stats: dict[str, Any] = {
        "masked_fraction": float(np.mean(masked)),
        "masked_px": count,
        "forced_unity_px": count,
        "forced_dark_px": count,
        "forced_saturated_px": 0,
        "forced_opaque_px": 0,
        "forced_implausible_px": 0,
        "flat_min": 1.0,
        "flat_max": 1.0,
        "flat_mean_masked": 1.0,
        "fraction_above_one": 0.0,
        "black_level": black_level,
        "signal_level": level,
        "saturation_level": None,
        "without_light": True,
    }
    return FlatResult(
        flat=np.ones(masked.shape, dtype=np.float32),
        forced_unity=masked,
        black_level=black_level,
        stats=stats,
    )


def apply_flat(
    frame: np.ndarray,
    flat: np.ndarray,
    black_level: float | np.ndarray = 0.0,
    pedestal: float | np.ndarray = 0.0,
) -> np.ndarray:
    """Calibrate a raw frame: ``(frame - b) / flat + p``.

    ``(calibrated - p) * flat == frame - b`` (to float32 rounding, and exactly where the flat is
    1.0: clean pixels come out as ``frame - b + p`` bit for bit). The flat applies to the light
    above the black level alone; an output pedestal ``p`` (the black level's own, typically)
    keeps the calibrated frame's sky where the raw frame has it, instead of around 0 where
    rounding to unsigned integers would clip half its noise.

    Parameters
    ----------
    frame : np.ndarray
        (H, W) raw frame, mono or a colour mosaic, or (H, W, 3) RGB (any real dtype, e.g.
        uint16 ADU).
    flat : np.ndarray
        Flat of the frame's shape, finite and > 0 (the unclipped float32 flat of
        :func:`synthesize_flat`, or the planes of an RGB video merged).
    black_level : float or np.ndarray
        The pedestal ``b`` the flat was synthesized with: a level (ADU), or an array of the
        frame's shape (a master dark, or a level per colour plane laid out as the frame).
    pedestal : float or np.ndarray
        Output pedestal ``p`` added after the division (ADU): a level or an array of the
        frame's shape.

    Returns
    -------
    np.ndarray
        float32 calibrated frame of the frame's shape.
    """
    data = _as_finite_image("frame", frame, planes=True)
    gain = _checked_flat(flat)
    if gain.shape != data.shape:
        raise ValueError(f"flat shape {gain.shape} differs from frame shape {data.shape}.")
    black = _checked_level(black_level, gain.shape)
    offset = _checked_level(pedestal, gain.shape, "pedestal")
    return ((data - black) / gain + offset).astype(np.float32)


def _checked_flat(flat: np.ndarray) -> np.ndarray:
    """The flat as float32, refused unless finite and > 0."""
    gain = _as_finite_image("flat", flat, planes=True)
    if not np.all(gain > 0):
        raise ValueError("flat must be > 0 everywhere; a zero or negative flat cannot divide.")
    return gain.astype(np.float32)


def _checked_level(
    level: float | np.ndarray, shape: tuple[int, ...], name: str = "black_level"
) -> np.ndarray:
    """A level named ``name`` in errors, as float64: a scalar or an array of ``shape``,
    refused unless finite."""
    checked = np.asarray(level, dtype=np.float64)
    if checked.ndim and checked.shape != shape:
        raise ValueError(
            f"the {name} has shape {checked.shape}; give one level or an array of the "
            f"frame's shape {shape}."
        )
    if not np.isfinite(checked).all():
        raise ValueError(f"{name} must be finite.")
    return checked


def _flat_levels(
    level: float | np.ndarray, shape: tuple[int, ...], name: str = "black_level"
) -> tuple[np.ndarray, int]:
    """A checked level as a flat float64 array and its step per pixel for the compiled pass:
    one value and step 0, or one value per pixel and step 1."""
    checked = _checked_level(level, shape, name)
    return np.ascontiguousarray(checked.reshape(-1)), 1 if checked.ndim else 0


class IntegerCalibrator:
    """Raw frames divided by a flat and rounded back to their integer type.

    ``calibrator(frame)`` is ``np.clip(np.rint(apply_flat(frame, flat, b, p)), 0, max_value)``
    cast to ``dtype``, value for value, computed in one compiled pass per frame instead of
    about a dozen numpy passes over float64 copies, with the flat checked once instead of per
    frame: 1.4 s against 4.0 s for 440 frames of 1280 x 960 16-bit on 2 cores.

    Parameters
    ----------
    flat : np.ndarray
        (H, W) or (H, W, 3) flat, finite and > 0.
    black_level : float or np.ndarray
        The pedestal ``b`` (ADU) the flat was synthesized with: a level, or an array of the
        flat's shape (a master dark, or a level per colour plane laid out as the frame).
    dtype : numpy dtype
        Integer type of the calibrated frames (that of the raw frames).
    max_value : int
        Largest value written, e.g. ``2**depth - 1`` for data of ``depth`` bits; values below
        0 become 0 and values above ``max_value`` become ``max_value``.
    pedestal : float or np.ndarray
        Output pedestal ``p`` (ADU) added after the division (see :func:`apply_flat`): a
        level, or an array of the flat's shape.

    Attributes
    ----------
    clipped_pixels : int
        Values clipped to 0 or ``max_value`` so far, over every frame calibrated.
    """

    def __init__(
        self,
        flat: np.ndarray,
        black_level: float | np.ndarray,
        dtype: np.dtype | type,
        max_value: int,
        pedestal: float | np.ndarray = 0.0,
    ) -> None:
        out_dtype = np.dtype(dtype)
        if out_dtype.kind not in "iu":
            raise ValueError(f"dtype must be an integer type, got {out_dtype}.")
        limit = np.iinfo(out_dtype).max
        if not 0 < max_value <= limit:
            raise ValueError(
                f"max_value must lie in [1, {limit}] for {out_dtype}, got {max_value}."
            )
        self._flat = _checked_flat(flat)
        self._black_level, self._black_step = _flat_levels(black_level, self._flat.shape)
        self._pedestal, self._pedestal_step = _flat_levels(pedestal, self._flat.shape, "pedestal")
        self._dtype = out_dtype.newbyteorder("=")
        self._max_value = float(max_value)
        self.clipped_pixels = 0

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """The calibrated frame: ``frame``'s shape, ``dtype``; ``frame`` is not modified."""
        data = np.asarray(frame)
        if data.shape != self._flat.shape:
            raise ValueError(
                f"frame shape {data.shape} differs from the flat's shape {self._flat.shape}."
            )
        if data.dtype.kind not in "iu":
            raise ValueError(f"frame must hold raw integers, got dtype {data.dtype}.")
        native = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("="))
        out = np.empty(data.shape, dtype=self._dtype)
        self.clipped_pixels += int(
            _divide_and_round(
                native.reshape(-1),
                self._flat.reshape(-1),
                self._black_level,
                self._black_step,
                self._pedestal,
                self._pedestal_step,
                self._max_value,
                out.reshape(-1),
            )
        )
        return out


@compiled
def _divide_and_round(
    frame, flat, black_level, black_step, pedestal, pedestal_step, max_value, out
):  # pragma: no cover - compiled
    """``out = clip(rint(float32((frame - black_level) / flat + pedestal)), 0, max_value)``
    (in float64, as numpy computes float64 by float32); returns the clipped count.
    ``black_level`` and ``pedestal`` each hold one level per pixel (step 1) or one for all
    (step 0)."""
    clipped = 0
    for index in range(frame.size):
        black = black_level[index * black_step]
        value = np.float32(
            (np.float64(frame[index]) - black) / np.float64(flat[index])
            + pedestal[index * pedestal_step]
        )
        rounded = np.float64(np.rint(value))
        if rounded < 0.0:
            rounded = 0.0
            clipped += 1
        elif rounded > max_value:
            rounded = max_value
            clipped += 1
        out[index] = rounded
    return clipped
