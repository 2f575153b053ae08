"""Evaluation of real/bogus scores on held-out jobs, a tabular baseline, and plots.

Metrics (all on one split, usually ``test``: jobs never seen in training):

- ROC-AUC: the probability that a random real candidate scores above a random bogus one (ties
  count one half), i.e. the normalized Mann-Whitney U statistic, with its Hanley-McNeil
  standard error, the AUC clipped half a candidate inside [0, 1] so that it never claims
  certainty (small test splits give wide uncertainties: report them; see
  :func:`auc_standard_error`);
- PR-AUC: average precision, ``sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds
  (the step-wise area, which does not interpolate optimistically between points);
- accuracy, FPR = FP / (FP + TN) and FNR = FN / (FN + TP) at a threshold (a candidate is called
  real when its score is >= the threshold; 0.5 by default);
- FNR at 1 % FPR: the lowest FNR among thresholds whose FPR is <= 1 % (the iPTF/ZTF operating
  point), with that threshold;
- expected calibration error over 10 equal-width probability bins,
  ``sum_b (n_b / n) |mean(label_b) - mean(score_b)|``, and the reliability curve behind it.

The baseline is an L2-regularized logistic regression on the same scaled features and the same
class weighting as the CNN, fitted on the training split (scikit-learn is not a dependency; the
convex problem is solved with scipy's L-BFGS).
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.optimize
import scipy.special
import scipy.stats
import torch
from PIL import Image, ImageDraw, ImageFont

from astro_assets.science.transients.cutouts import CutoutDataset, drop_outside_image
from astro_assets.science.transients.features import FeatureScaler

SPLITS: tuple[str, ...] = ("train", "validation", "test")
DEFAULT_THRESHOLD = 0.5
DEFAULT_TARGET_FPR = 0.01
DEFAULT_CALIBRATION_BINS = 10


class SplitError(ValueError):
    """Raised when a split is missing, leaks jobs into another split, or lacks a class."""


def validate_splits(index: pd.DataFrame) -> None:
    """Check the ``split`` column: known names only, and every job in exactly one split.

    Raises
    ------
    SplitError
        If the column is missing, holds an unknown split name, or a job appears in several
        splits (candidates of one job share images, so that would leak test data into training).
    """
    if "split" not in index.columns or "jid" not in index.columns:
        raise SplitError(
            "The candidate index needs 'jid' and 'split' columns (train/validation/test "
            "assigned per job); rebuild master_index.csv."
        )
    unknown = sorted(set(index["split"].astype(str)) - set(SPLITS))
    if unknown:
        raise SplitError(f"Unknown split name(s) {unknown}; expected only {list(SPLITS)}.")
    splits_per_job = index.groupby(index["jid"].astype(str))["split"].nunique()
    leaking = splits_per_job[splits_per_job > 1]
    if len(leaking):
        raise SplitError(
            f"{len(leaking)} job(s) appear in more than one split (e.g. {list(leaking.index[:3])})"
            "; splits must be assigned per job, never per candidate. Reassign the splits."
        )


def split_rows(index: pd.DataFrame, split: str) -> pd.DataFrame:
    """Return the rows of ``split`` (a copy), raising :class:`SplitError` if there are none."""
    rows = index[index["split"].astype(str) == split]
    if rows.empty:
        raise SplitError(
            f"The {split!r} split has no candidates; every split in {list(SPLITS)} needs at "
            "least one job (add jobs or change the split fractions)."
        )
    return rows.copy()


def require_both_classes(labels: np.ndarray, split: str) -> np.ndarray:
    """Return ``labels`` as an int array after checking they are 0/1 and hold both classes.

    Raises
    ------
    SplitError
        If a label is not 0 or 1, or the split has no real (1) or no bogus (0) candidate.
    """
    labels = np.asarray(labels, dtype=np.float64)
    if labels.ndim != 1 or labels.size == 0:
        raise SplitError(f"The {split!r} split has no labelled candidates.")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise SplitError(
            f"Labels of the {split!r} split must be 0 (bogus) or 1 (real); found "
            f"{sorted(set(labels[~np.isin(labels, (0.0, 1.0))].tolist()))[:5]}."
        )
    n_real = int(labels.sum())
    if n_real == 0 or n_real == labels.size:
        missing = "real (label 1)" if n_real == 0 else "bogus (label 0)"
        raise SplitError(
            f"The {split!r} split has no {missing} candidates ({labels.size} candidates in all); "
            "ROC-AUC and error rates are undefined. Add jobs or reassign the splits."
        )
    return labels.astype(np.int64)


def _check_scores(labels: np.ndarray, scores: np.ndarray, split: str) -> tuple[np.ndarray, ...]:
    labels = require_both_classes(labels, split)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must have one shape.")
    if not np.isfinite(scores).all():
        raise ValueError(f"Scores of the {split!r} split contain NaN or infinite values.")
    return labels, scores


def roc_auc(labels: np.ndarray, scores: np.ndarray, split: str = "test") -> float:
    """ROC-AUC of ``scores`` (higher = more likely real) against 0/1 ``labels``; ties count 1/2."""
    labels, scores = _check_scores(labels, scores, split)
    ranks = scipy.stats.rankdata(scores)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_standard_error(auc: float, n_real: int, n_bogus: int) -> float:
    """Standard error of a ROC-AUC estimate (Hanley & McNeil 1982, Radiology 143, 29).

    ``sqrt((A(1-A) + (n_r - 1)(Q1 - A^2) + (n_b - 1)(Q2 - A^2)) / (n_r n_b))`` with
    ``Q1 = A / (2 - A)`` and ``Q2 = 2 A^2 / (1 + A)``, evaluated at ``A`` clipped to
    ``[1 / (2 m), 1 - 1 / (2 m)]``, ``m = min(n_r, n_b)``.

    The formula is 0 at ``A`` = 0 or 1, which would claim certainty from perfectly separated
    scores however few candidates there are (one real and two bogus ones). How far the true AUC
    may lie from a perfect one is resolved only to about one candidate of the smaller class, so
    ``A`` is moved half a candidate's share inside the interval (a continuity correction, as
    adding 1/2 to an empty cell of a table): with one real candidate ``A`` is taken as 0.5
    (nothing known), with 50 real among 500 bogus candidates a perfect AUC gives 0.0099. Values
    of ``A`` within the interval are unchanged.

    Parameters
    ----------
    auc : float
        The estimate, in [0, 1].
    n_real, n_bogus : int
        Number of real and bogus candidates it was measured on, at least 1 each.

    Returns
    -------
    float
        The standard error, > 0.

    Raises
    ------
    ValueError
        If ``auc`` is outside [0, 1] or a class is empty.
    """
    if not 0.0 <= auc <= 1.0:
        raise ValueError(f"auc must be in [0, 1], got {auc}.")
    if n_real < 1 or n_bogus < 1:
        raise ValueError(
            f"Need at least one real and one bogus candidate, got {n_real}, {n_bogus}."
        )
    margin = 1.0 / (2.0 * min(n_real, n_bogus))
    auc = min(max(auc, margin), 1.0 - margin)
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc**2 / (1.0 + auc)
    variance = (
        auc * (1.0 - auc) + (n_real - 1) * (q1 - auc**2) + (n_bogus - 1) * (q2 - auc**2)
    ) / (n_real * n_bogus)
    return float(math.sqrt(max(variance, 0.0)))


def _threshold_counts(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cumulative TP and FP when calling real every score >= each distinct threshold."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(sorted_scores) != 0), sorted_scores.size - 1]
    tp = np.cumsum(sorted_labels)[last_of_group]
    fp = (last_of_group + 1) - tp
    return sorted_scores[last_of_group], tp.astype(np.float64), fp.astype(np.float64)


def roc_curve(
    labels: np.ndarray, scores: np.ndarray, split: str = "test"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(fpr, tpr, thresholds)``, starting at (0, 0) with threshold +inf."""
    labels, scores = _check_scores(labels, scores, split)
    thresholds, tp, fp = _threshold_counts(labels, scores)
    n_pos, n_neg = labels.sum(), labels.size - labels.sum()
    return (
        np.r_[0.0, fp / n_neg],
        np.r_[0.0, tp / n_pos],
        np.r_[np.inf, thresholds],
    )


def precision_recall_curve(
    labels: np.ndarray, scores: np.ndarray, split: str = "test"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(precision, recall, thresholds)`` for decreasing thresholds."""
    labels, scores = _check_scores(labels, scores, split)
    thresholds, tp, fp = _threshold_counts(labels, scores)
    return tp / (tp + fp), tp / labels.sum(), thresholds


def average_precision(labels: np.ndarray, scores: np.ndarray, split: str = "test") -> float:
    """PR-AUC as average precision ``sum_k (R_k - R_{k-1}) P_k`` (R_0 = 0)."""
    precision, recall, _ = precision_recall_curve(labels, scores, split)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fnr_at_fpr(
    labels: np.ndarray,
    scores: np.ndarray,
    target_fpr: float = DEFAULT_TARGET_FPR,
    split: str = "test",
) -> tuple[float, float]:
    """Lowest FNR among thresholds with FPR <= ``target_fpr``; returns ``(fnr, threshold)``.

    The threshold is +inf (nothing called real, FNR 1) when even the top score is a false
    positive beyond the allowed rate.
    """
    if not 0.0 <= target_fpr <= 1.0:
        raise ValueError(f"target_fpr must be in [0, 1], got {target_fpr}.")
    fpr, tpr, thresholds = roc_curve(labels, scores, split)
    allowed = np.flatnonzero(fpr <= target_fpr)
    best = allowed[np.argmax(tpr[allowed])]
    return float(1.0 - tpr[best]), float(thresholds[best])


@dataclasses.dataclass(frozen=True)
class ReliabilityCurve:
    """Per-bin calibration: bin edges (n_bins + 1), mean score, observed real fraction, count.

    Empty bins have NaN mean score and fraction and count 0.
    """

    bin_edges: tuple[float, ...]
    mean_score: tuple[float, ...]
    fraction_real: tuple[float, ...]
    count: tuple[int, ...]


def reliability_curve(
    labels: np.ndarray,
    probabilities: np.ndarray,
    n_bins: int = DEFAULT_CALIBRATION_BINS,
    split: str = "test",
) -> ReliabilityCurve:
    """Bin probabilities into ``n_bins`` equal-width bins on [0, 1] (the last bin includes 1)."""
    labels, probabilities = _check_scores(labels, probabilities, split)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}.")
    if probabilities.min() < 0.0 or probabilities.max() > 1.0:
        raise ValueError("Calibration needs probabilities in [0, 1]; got values outside.")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.minimum((probabilities * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_score = np.bincount(bins, probabilities, n_bins) / count
        fraction = np.bincount(bins, labels.astype(np.float64), n_bins) / count
    return ReliabilityCurve(
        bin_edges=tuple(edges.tolist()),
        mean_score=tuple(mean_score.tolist()),
        fraction_real=tuple(fraction.tolist()),
        count=tuple(int(c) for c in count),
    )


def expected_calibration_error(
    labels: np.ndarray,
    probabilities: np.ndarray,
    n_bins: int = DEFAULT_CALIBRATION_BINS,
    split: str = "test",
) -> float:
    """ECE: count-weighted mean of |observed real fraction - mean probability| over bins."""
    curve = reliability_curve(labels, probabilities, n_bins, split)
    count = np.asarray(curve.count, dtype=np.float64)
    used = count > 0
    gaps = np.abs(np.asarray(curve.fraction_real) - np.asarray(curve.mean_score))[used]
    return float(np.sum(count[used] * gaps) / count.sum())


@dataclasses.dataclass(frozen=True)
class BinaryMetrics:
    """Metrics of probabilities on one split (see the module docstring for definitions)."""

    split: str
    n: int
    n_real: int
    roc_auc: float
    roc_auc_standard_error: float
    pr_auc: float
    accuracy: float
    fpr: float
    fnr: float
    threshold: float
    fnr_at_target_fpr: float
    target_fpr: float
    threshold_at_target_fpr: float
    ece: float
    reliability: ReliabilityCurve

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable dict (NaN and inf become None)."""

        def clean(value: Any) -> Any:
            if isinstance(value, float) and not np.isfinite(value):
                return None
            if isinstance(value, dict):
                return {key: clean(item) for key, item in value.items()}
            if isinstance(value, list | tuple):
                return [clean(item) for item in value]
            return value

        return clean(dataclasses.asdict(self))


def binary_metrics(
    labels: np.ndarray,
    probabilities: np.ndarray,
    *,
    split: str = "test",
    threshold: float = DEFAULT_THRESHOLD,
    target_fpr: float = DEFAULT_TARGET_FPR,
    n_bins: int = DEFAULT_CALIBRATION_BINS,
) -> BinaryMetrics:
    """Compute all metrics of ``probabilities`` (in [0, 1]) against 0/1 ``labels``.

    Raises
    ------
    SplitError
        If ``split`` lacks real or bogus candidates.
    ValueError
        On shape mismatch or non-finite/out-of-range probabilities.
    """
    labels, probabilities = _check_scores(labels, probabilities, split)
    called_real = probabilities >= threshold
    tp = int(np.sum(called_real & (labels == 1)))
    fp = int(np.sum(called_real & (labels == 0)))
    n_real = int(labels.sum())
    n_bogus = labels.size - n_real
    fnr_target, threshold_target = fnr_at_fpr(labels, probabilities, target_fpr, split)
    auc = roc_auc(labels, probabilities, split)
    return BinaryMetrics(
        split=split,
        n=int(labels.size),
        n_real=n_real,
        roc_auc=auc,
        roc_auc_standard_error=auc_standard_error(auc, n_real, n_bogus),
        pr_auc=average_precision(labels, probabilities, split),
        accuracy=float(np.mean(called_real == (labels == 1))),
        fpr=fp / n_bogus,
        fnr=(n_real - tp) / n_real,
        threshold=float(threshold),
        fnr_at_target_fpr=fnr_target,
        target_fpr=float(target_fpr),
        threshold_at_target_fpr=threshold_target,
        ece=expected_calibration_error(labels, probabilities, n_bins, split),
        reliability=reliability_curve(labels, probabilities, n_bins, split),
    )


@dataclasses.dataclass(frozen=True)
class LogisticConfig:
    """Parameters of the logistic-regression baseline.

    Attributes
    ----------
    l2 : float
        Penalty ``l2 / 2 * ||w||^2`` on the weights (not the intercept), added to the mean
        (class-weighted) log-loss.
    balance_classes : bool
        Weight real candidates by n_bogus / n_real, as the CNN's ``pos_weight`` does.
    max_iterations : int
    """

    l2: float = 1e-3
    balance_classes: bool = True
    max_iterations: int = 500

    def __post_init__(self) -> None:
        if not (np.isfinite(self.l2) and self.l2 >= 0):
            raise ValueError(f"l2 must be finite and >= 0, got {self.l2}.")
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {self.max_iterations}.")


def baseline_inputs(scaler: FeatureScaler) -> tuple[str, ...]:
    """Names of the scaler's outputs: the columns, then ``<column>_missing`` indicators."""
    names = tuple(scaler.columns)
    if scaler.n_outputs > len(names):
        names += tuple(f"{name}_missing" for name in scaler.columns)
    return names


@dataclasses.dataclass(frozen=True)
class LogisticBaseline:
    """A fitted logistic regression on scaled features: p = sigmoid(features @ weights + bias)."""

    weights: tuple[float, ...]
    bias: float
    scaler: FeatureScaler
    config: LogisticConfig
    converged: bool

    @classmethod
    def fit(
        cls, train: pd.DataFrame, scaler: FeatureScaler, config: LogisticConfig | None = None
    ) -> LogisticBaseline:
        """Fit on the training rows (labels 0/1 with both classes present)."""
        config = config or LogisticConfig()
        labels = require_both_classes(train["label"].to_numpy(), "train").astype(np.float64)
        features = scaler.transform(train).astype(np.float64)
        n_real = labels.sum()
        weight_real = (labels.size - n_real) / n_real if config.balance_classes else 1.0
        sample_weight = np.where(labels == 1, weight_real, 1.0)
        sample_weight /= sample_weight.sum()

        def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
            weights, bias = params[:-1], params[-1]
            logits = features @ weights + bias
            # log(1 + e^z) - y z is the log-loss written stably via logaddexp.
            losses = np.logaddexp(0.0, logits) - labels * logits
            residual = sample_weight * (scipy.special.expit(logits) - labels)
            loss = float(np.sum(sample_weight * losses) + 0.5 * config.l2 * weights @ weights)
            gradient = np.r_[features.T @ residual + config.l2 * weights, residual.sum()]
            return loss, gradient

        solution = scipy.optimize.minimize(
            loss_and_gradient,
            np.zeros(features.shape[1] + 1),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": config.max_iterations},
        )
        return cls(
            weights=tuple(float(w) for w in solution.x[:-1]),
            bias=float(solution.x[-1]),
            scaler=scaler,
            config=config,
            converged=bool(solution.success),
        )

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Probabilities of being real (float64, shape (n,)) for the rows of ``frame``."""
        logits = self.scaler.transform(frame).astype(np.float64) @ np.asarray(self.weights)
        return scipy.special.expit(logits + self.bias)


def predict_probabilities(
    model: torch.nn.Module,
    index: pd.DataFrame,
    dataset_dir: str | os.PathLike[str],
    *,
    batch_size: int = 256,
    num_workers: int = 0,
) -> np.ndarray:
    """Run ``model(cutouts, raw_features) -> probabilities`` over every row of ``index``.

    ``model`` is an eager ``ScoredModel`` or its TorchScript export; its ``cutout_size``
    attribute sets the cutout size and batches go to the device of its parameters. It runs in
    eval mode and its training flag is restored afterwards.

    Returns
    -------
    numpy.ndarray
        float64 probabilities of shape (len(index),), in the row order of ``index``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    device = next(model.parameters()).device
    dataset = CutoutDataset(index, dataset_dir, cutout_size=int(model.cutout_size))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    was_training = model.training
    model.eval()
    outputs: list[np.ndarray] = []
    try:
        with torch.inference_mode():
            for cutouts, features, _ in loader:
                probabilities = model(cutouts.to(device), features.to(device))
                outputs.append(probabilities.float().cpu().numpy().astype(np.float64))
    finally:
        model.train(was_training)
    return np.concatenate(outputs) if outputs else np.zeros(0)


@dataclasses.dataclass(frozen=True)
class EvaluationReport:
    """Test-split metrics of the CNN and of the tabular baseline, plus PNG plots.

    ``n_outside_image`` counts candidates of the evaluated split left out because their pixel
    lies outside their image (no centred cutout exists for them); training counts the other
    splits' (``TrainResult.n_outside_image``).
    """

    cnn: BinaryMetrics
    baseline: BinaryMetrics
    baseline_weights: Mapping[str, float]
    n_outside_image: int
    plots: Mapping[str, bytes]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable metrics (plots excluded).

        ``n_outside_image`` maps the evaluated split to its count, the shape in which the
        caller adds the other splits' counts (training's ``TrainResult.n_outside_image``).
        """
        return {
            "cnn": self.cnn.to_dict(),
            "tabular_baseline": self.baseline.to_dict(),
            "tabular_baseline_weights": dict(self.baseline_weights),
            "n_outside_image": {self.cnn.split: self.n_outside_image},
        }


def evaluate_model(
    model: torch.nn.Module,
    scaler: FeatureScaler,
    index: pd.DataFrame,
    dataset_dir: str | os.PathLike[str],
    *,
    history: Sequence[Mapping[str, float]] = (),
    split: str = "test",
    baseline_config: LogisticConfig | None = None,
    batch_size: int = 256,
) -> EvaluationReport:
    """Evaluate the CNN and a logistic baseline (fitted on ``train``) on ``split``.

    Parameters
    ----------
    model : torch.nn.Module
        ``ScoredModel`` or its TorchScript export: (cutouts, raw features) -> probabilities.
    scaler : FeatureScaler
        The scaling fitted on the training split (shared with the baseline).
    index : pandas.DataFrame
        The whole master index with ``split`` and ``label`` columns; not modified.
    dataset_dir : path-like
    history : sequence of dict
        Per-epoch ``train_loss``, ``val_loss``, ``val_auc`` for the loss-curve plot.

    Raises
    ------
    SplitError
        If jobs leak across splits, or ``train``/``split`` lacks one class.
    """
    validate_splits(index)
    train, _ = drop_outside_image(split_rows(index, "train"), dataset_dir)
    evaluated, n_outside = drop_outside_image(split_rows(index, split), dataset_dir)
    labels = require_both_classes(evaluated["label"].to_numpy(), split)
    cnn_scores = predict_probabilities(model, evaluated, dataset_dir, batch_size=batch_size)
    baseline = LogisticBaseline.fit(train, scaler, baseline_config)
    baseline_scores = baseline.predict_proba(evaluated)
    cnn_metrics = binary_metrics(labels, cnn_scores, split=split)
    baseline_metrics = binary_metrics(labels, baseline_scores, split=split)
    plots = {
        "roc": roc_plot(labels, {"CNN": cnn_scores, "tabular": baseline_scores}),
        "precision_recall": pr_plot(labels, {"CNN": cnn_scores, "tabular": baseline_scores}),
        "calibration": calibration_plot(
            {"CNN": cnn_metrics.reliability, "tabular": baseline_metrics.reliability}
        ),
    }
    if history:
        plots["loss_curves"] = loss_plot(history)
    return EvaluationReport(
        cnn=cnn_metrics,
        baseline=baseline_metrics,
        baseline_weights=dict(zip(baseline_inputs(scaler), baseline.weights, strict=True))
        | {"bias": baseline.bias},
        n_outside_image=n_outside,
        plots=plots,
    )


_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))
_PLOT_SIZE = (520, 400)
_MARGIN = (64, 24, 24, 52)  # left, top, right, bottom


def line_plot_png(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    diagonal: bool = False,
) -> bytes:
    """Draw named (x, y) line series on labelled axes with Pillow; return PNG bytes.

    Matplotlib is not a dependency; this draws axes, 5 ticks per axis, a legend and an
    optional dashed y = x reference line. Non-finite points are skipped.
    """
    font = ImageFont.load_default()
    image = Image.new("RGB", _PLOT_SIZE, "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = _MARGIN
    x0, y0, x1, y1 = left, top, _PLOT_SIZE[0] - right, _PLOT_SIZE[1] - bottom

    finite = [
        (np.asarray(x, float)[ok], np.asarray(y, float)[ok])
        for x, y in series.values()
        for ok in [np.isfinite(np.asarray(x, float)) & np.isfinite(np.asarray(y, float))]
    ]

    def data_range(axis: int, given: tuple[float, float] | None) -> tuple[float, float]:
        if given is not None:
            return given
        values = np.concatenate([pair[axis] for pair in finite] or [np.zeros(1)])
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        pad = 0.05 * (high - low) if high > low else 0.5
        return low - pad, high + pad

    (xa, xb), (ya, yb) = data_range(0, x_range), data_range(1, y_range)

    def to_pixel(x: np.ndarray, y: np.ndarray) -> list[tuple[float, float]]:
        px = x0 + (x - xa) / (xb - xa) * (x1 - x0)
        py = y1 - (y - ya) / (yb - ya) * (y1 - y0)
        return list(zip(px.tolist(), py.tolist(), strict=True))

    draw.rectangle((x0, y0, x1, y1), outline="black")
    for fraction in np.linspace(0.0, 1.0, 5):
        tx = x0 + fraction * (x1 - x0)
        ty = y1 - fraction * (y1 - y0)
        draw.line((tx, y1, tx, y1 + 4), fill="black")
        draw.line((x0 - 4, ty, x0, ty), fill="black")
        draw.text(
            (tx, y1 + 6), f"{xa + fraction * (xb - xa):.3g}", fill="black", font=font, anchor="ma"
        )
        draw.text(
            (x0 - 6, ty), f"{ya + fraction * (yb - ya):.3g}", fill="black", font=font, anchor="rm"
        )
    draw.text(((x0 + x1) / 2, 4), title, fill="black", font=font, anchor="ma")
    draw.text(((x0 + x1) / 2, _PLOT_SIZE[1] - 14), x_label, fill="black", font=font, anchor="ma")
    draw.text((4, y0 - 14), y_label, fill="black", font=font)
    if diagonal:
        low, high = max(xa, ya), min(xb, yb)
        points = to_pixel(np.linspace(low, high, 41), np.linspace(low, high, 41))
        for start, end in zip(points[::2], points[1::2], strict=False):
            draw.line((start, end), fill=(150, 150, 150))
    for number, (name, (x, y)) in enumerate(zip(series, finite, strict=True)):
        colour = _COLOURS[number % len(_COLOURS)]
        points = to_pixel(x, y)
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        for px, py in points if len(points) <= 30 else ():
            draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=colour)
        legend_y = y0 + 8 + 14 * number
        draw.line((x1 - 110, legend_y + 5, x1 - 90, legend_y + 5), fill=colour, width=2)
        draw.text((x1 - 86, legend_y), name, fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def roc_plot(labels: np.ndarray, scores: Mapping[str, np.ndarray]) -> bytes:
    """ROC curves (FPR vs TPR) of named score arrays as PNG bytes."""
    series = {}
    for name, values in scores.items():
        fpr, tpr, _ = roc_curve(labels, values)
        series[f"{name} (AUC {roc_auc(labels, values):.3f})"] = (fpr, tpr)
    return line_plot_png(
        series,
        title="ROC",
        x_label="false positive rate",
        y_label="true positive rate",
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.0),
        diagonal=True,
    )


def pr_plot(labels: np.ndarray, scores: Mapping[str, np.ndarray]) -> bytes:
    """Precision-recall curves of named score arrays as PNG bytes."""
    series = {}
    for name, values in scores.items():
        precision, recall, _ = precision_recall_curve(labels, values)
        label = f"{name} (AP {average_precision(labels, values):.3f})"
        series[label] = (np.r_[0.0, recall], np.r_[precision[0], precision])
    return line_plot_png(
        series,
        title="Precision-recall",
        x_label="recall",
        y_label="precision",
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.0),
    )


def calibration_plot(curves: Mapping[str, ReliabilityCurve]) -> bytes:
    """Reliability diagrams (mean probability vs observed real fraction) as PNG bytes."""
    series = {
        name: (np.asarray(curve.mean_score), np.asarray(curve.fraction_real))
        for name, curve in curves.items()
    }
    return line_plot_png(
        series,
        title="Calibration",
        x_label="mean predicted probability",
        y_label="fraction real",
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.0),
        diagonal=True,
    )


def loss_plot(history: Sequence[Mapping[str, float]]) -> bytes:
    """Training and validation loss per epoch as PNG bytes."""
    epochs = np.array([row["epoch"] for row in history], dtype=float)
    series = {
        "train loss": (epochs, np.array([row["train_loss"] for row in history], dtype=float)),
        "validation loss": (epochs, np.array([row["val_loss"] for row in history], dtype=float)),
    }
    return line_plot_png(series, title="Loss", x_label="epoch", y_label="BCE loss")
