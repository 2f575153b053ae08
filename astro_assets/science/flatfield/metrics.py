"""Quality metrics of a dust mask and a flat field against ground truth.

What the flat should equal
--------------------------
The median of a video is ``M = T * V * S`` (dust transmission ``T``, vignetting ``V``, mean scene
``S``, black level removed). The inpainted reference replaces the dust region by a smooth
continuation of its surroundings, ``I ~= V * S``, because vignetting and the washed-out scene are
smooth on the scale of a dust shadow. The synthesized flat ``F = M / I`` therefore estimates the
dust transmission ``T`` alone, not ``T * V``: vignetting stays in the data (it is the same for
every frame and is left to a conventional flat). Every flat metric here is written against ``T``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "deficit_weighted_recall",
    "false_positive_area",
    "flat_errors",
    "mask_scores",
    "unity_outside",
]


def _as_bool_image(name: str, value: np.ndarray) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {array.shape}.")
    if array.dtype != bool:
        raise ValueError(
            f"{name} must be a boolean mask, got dtype {array.dtype}; threshold it first "
            "(for a feathered mask use mask > 0)."
        )
    return array


def _same_shape(**arrays: np.ndarray) -> None:
    shapes = {name: np.shape(a) for name, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"arrays must have the same (H, W) shape, got {shapes}.")


def mask_scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Intersection over union, precision and recall of a binary mask.

    Parameters
    ----------
    predicted, truth : np.ndarray
        (H, W) bool masks.

    Returns
    -------
    dict
        ``iou``, ``precision`` (fraction of predicted pixels that are true), ``recall`` (fraction
        of true pixels that are predicted), plus the pixel counts ``predicted_px``, ``truth_px``.
        An empty prediction has precision 1.0; an empty truth has recall 1.0; both empty give
        IoU 1.0 (nothing to find, nothing found).
    """
    pred = _as_bool_image("predicted", predicted)
    true = _as_bool_image("truth", truth)
    _same_shape(predicted=pred, truth=true)
    intersection = float(np.count_nonzero(pred & true))
    union = float(np.count_nonzero(pred | true))
    n_pred = float(np.count_nonzero(pred))
    n_true = float(np.count_nonzero(true))
    return {
        "iou": intersection / union if union else 1.0,
        "precision": intersection / n_pred if n_pred else 1.0,
        "recall": intersection / n_true if n_true else 1.0,
        "predicted_px": n_pred,
        "truth_px": n_true,
    }


def deficit_weighted_recall(mask: np.ndarray, transmission: np.ndarray) -> float:
    """Fraction of the light lost to dust that the mask covers: ``sum(mask*(1-T)) / sum(1-T)``.

    Parameters
    ----------
    mask : np.ndarray
        (H, W) bool, or float in [0, 1] (a feathered mask counts with its weight).
    transmission : np.ndarray
        (H, W) true dust transmission ``T`` (1.0 clean, < 1 under dust).

    Returns
    -------
    float
        In [0, 1]; 1.0 when there is no dust at all (nothing to recall).
    """
    weights = np.asarray(mask, dtype=np.float64)
    trans = np.asarray(transmission, dtype=np.float64)
    _same_shape(mask=weights, transmission=trans)
    if weights.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) array, got shape {weights.shape}.")
    if np.any(weights < 0) or np.any(weights > 1):
        raise ValueError("mask values must lie in [0, 1].")
    deficit = np.clip(1.0 - trans, 0.0, None)
    total = float(deficit.sum())
    if total == 0.0:
        return 1.0
    return float((weights * deficit).sum() / total)


def flat_errors(
    flat: np.ndarray, transmission: np.ndarray, support: np.ndarray
) -> dict[str, float]:
    """Relative error of a flat against the true transmission inside the dust.

    Parameters
    ----------
    flat : np.ndarray
        (H, W) synthesized flat ``F`` (unclipped float).
    transmission : np.ndarray
        (H, W) true dust transmission ``T``; the flat estimates ``T`` (see the module docstring).
    support : np.ndarray
        (H, W) bool, the pixels to score (usually the true dust support, ``1 - T > 0.005``).

    Returns
    -------
    dict
        ``rms`` and ``max_abs`` of ``F / T - 1`` over the support, and ``n_px``; zeros when the
        support is empty.
    """
    f = np.asarray(flat, dtype=np.float64)
    t = np.asarray(transmission, dtype=np.float64)
    inside = _as_bool_image("support", support)
    _same_shape(flat=f, transmission=t, support=inside)
    if np.any(t[inside] <= 0):
        raise ValueError("transmission must be > 0 on the support to compute F / T - 1.")
    if not inside.any():
        return {"rms": 0.0, "max_abs": 0.0, "n_px": 0.0}
    err = f[inside] / t[inside] - 1.0
    return {
        "rms": float(np.sqrt(np.mean(err**2))),
        "max_abs": float(np.max(np.abs(err))),
        "n_px": float(err.size),
    }


def unity_outside(flat: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of the pixels outside the mask (``mask == 0``) where the flat is exactly 1.0.

    Returns 1.0 when the mask covers everything (no pixel to check).
    """
    f = np.asarray(flat)
    m = np.asarray(mask)
    _same_shape(flat=f, mask=m)
    outside = m == 0
    if not outside.any():
        return 1.0
    return float(np.mean(f[outside] == 1.0))


def false_positive_area(
    predicted: np.ndarray,
    truth_dust_support: np.ndarray,
    scene_features: np.ndarray | None = None,
) -> dict[str, float]:
    """Area of the predicted mask that is not dust.

    Parameters
    ----------
    predicted : np.ndarray
        (H, W) bool predicted dust core.
    truth_dust_support : np.ndarray
        (H, W) bool true dust support.
    scene_features : np.ndarray, optional
        (H, W) bool support of scene features that can be mistaken for dust (sunspots, limb).

    Returns
    -------
    dict
        ``px`` (false-positive pixels), ``fraction`` (of the frame), and, with
        ``scene_features``, ``on_features_px`` (false positives that lie on a scene feature).
    """
    pred = _as_bool_image("predicted", predicted)
    true = _as_bool_image("truth_dust_support", truth_dust_support)
    _same_shape(predicted=pred, truth_dust_support=true)
    false_pos = pred & ~true
    result = {
        "px": float(np.count_nonzero(false_pos)),
        "fraction": float(np.count_nonzero(false_pos)) / pred.size,
    }
    if scene_features is not None:
        features = _as_bool_image("scene_features", scene_features)
        _same_shape(predicted=pred, scene_features=features)
        result["on_features_px"] = float(np.count_nonzero(false_pos & features))
    return result
