import io
import json
import math

import numpy as np
import pandas as pd
import pytest
import scipy.special
from PIL import Image

from assets_tests.science.transients.test_cnn import TINY, make_synthetic_dataset
from astro_assets.science.transients.cnn import TrainConfig, train_model
from astro_assets.science.transients.evaluation import (
    LogisticBaseline,
    LogisticConfig,
    SplitError,
    auc_standard_error,
    average_precision,
    binary_metrics,
    evaluate_model,
    expected_calibration_error,
    fnr_at_fpr,
    line_plot_png,
    predict_probabilities,
    reliability_curve,
    roc_auc,
    roc_curve,
    validate_splits,
)
from astro_assets.science.transients.features import FEATURE_COLUMNS, FeatureScaler

LABELS = np.array([0, 0, 1, 1])
SCORES = np.array([0.1, 0.4, 0.35, 0.8])


def test_roc_auc_by_hand():
    # Pairs (real, bogus): (0.35, 0.1) right, (0.35, 0.4) wrong, (0.8, *) right: 3 of 4.
    assert roc_auc(LABELS, SCORES) == 0.75
    assert roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == 0.5
    assert roc_auc(np.array([1, 0, 1]), np.array([0.9, 0.2, 0.2])) == 0.75


def test_auc_standard_error_closed_forms():
    # A = 0.5, n_real = n_bogus = n: Q1 = Q2 = 1/3, variance = (1/4 + (n - 1) / 6) / n^2.
    assert auc_standard_error(0.5, 10, 10) == pytest.approx((0.25 + 9 / 6) ** 0.5 / 10)
    auc, n_real, n_bogus = 0.8, 4, 6
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    expected = ((auc * (1 - auc) + 3 * (q1 - auc**2) + 5 * (q2 - auc**2)) / 24) ** 0.5
    assert auc_standard_error(auc, n_real, n_bogus) == pytest.approx(expected)
    assert binary_metrics(LABELS, SCORES).roc_auc_standard_error == pytest.approx(
        auc_standard_error(0.75, 2, 2)
    )
    with pytest.raises(ValueError, match="auc must be"):
        auc_standard_error(1.5, 3, 3)
    with pytest.raises(ValueError, match="at least one real"):
        auc_standard_error(0.5, 0, 3)


def _hanley_mcneil(auc, n_real, n_bogus):
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = auc * (1 - auc) + (n_real - 1) * (q1 - auc**2) + (n_bogus - 1) * (q2 - auc**2)
    return (variance / (n_real * n_bogus)) ** 0.5


def test_auc_standard_error_does_not_claim_certainty_at_a_perfect_or_inverted_auc():
    # One real and two bogus candidates: A is clipped to [1/2, 1/2] (m = 1): Q2 = 1/3 and the
    # variance is (1/4 + (1/3 - 1/4)) / 2 = 1/6, where the plain formula gives 0.
    assert auc_standard_error(1.0, 1, 2) == pytest.approx(6**-0.5)
    assert auc_standard_error(0.0, 1, 2) == pytest.approx(6**-0.5)
    perfect = binary_metrics(np.array([0, 1, 0]), np.array([0.1, 0.9, 0.2]))
    assert perfect.roc_auc == 1.0
    assert perfect.roc_auc_standard_error == pytest.approx(6**-0.5)
    # m = min(5, 7): A within [0.1, 0.9].
    assert auc_standard_error(1.0, 5, 7) == pytest.approx(_hanley_mcneil(0.9, 5, 7))
    assert auc_standard_error(0.0, 5, 7) == pytest.approx(_hanley_mcneil(0.1, 5, 7))
    assert auc_standard_error(1.0, 50, 500) == pytest.approx(_hanley_mcneil(0.99, 50, 500))
    assert auc_standard_error(0.95, 5, 7) == pytest.approx(_hanley_mcneil(0.9, 5, 7))
    assert auc_standard_error(0.85, 5, 7) == pytest.approx(_hanley_mcneil(0.85, 5, 7))


def test_roc_curve_by_hand():
    fpr, tpr, thresholds = roc_curve(LABELS, SCORES)
    np.testing.assert_array_equal(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_array_equal(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_array_equal(thresholds, [np.inf, 0.8, 0.4, 0.35, 0.1])


def test_average_precision_by_hand():
    # Thresholds 0.8, 0.4, 0.35, 0.1: recall 0.5, 0.5, 1, 1; precision 1, 1/2, 2/3, 1/2.
    assert average_precision(LABELS, SCORES) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_threshold_metrics_by_hand():
    metrics = binary_metrics(LABELS, SCORES)
    # Called real (>= 0.5): only 0.8 -> TP 1, FP 0, FN 1, TN 2.
    assert metrics.accuracy == 0.75
    assert metrics.fpr == 0.0
    assert metrics.fnr == 0.5
    assert metrics.n == 4
    assert metrics.n_real == 2
    boundary = binary_metrics(np.array([0, 1, 1]), np.array([0.2, 0.5, 0.49]))
    assert boundary.fnr == 0.5  # a score of exactly 0.5 is called real


def test_fnr_at_fpr_by_hand():
    assert fnr_at_fpr(LABELS, SCORES, 0.01) == (0.5, 0.8)
    assert fnr_at_fpr(LABELS, SCORES, 0.5) == (0.0, 0.35)
    assert fnr_at_fpr(np.array([1, 0, 1]), np.array([0.5, 0.9, 0.1]), 0.01) == (1.0, math.inf)
    with pytest.raises(ValueError, match="target_fpr"):
        fnr_at_fpr(LABELS, SCORES, 1.5)


def test_calibration_by_hand():
    labels = np.array([0, 1, 1, 1])
    probabilities = np.array([0.05, 0.15, 0.95, 1.0])
    # Bins [0, .1): gap .05; [.1, .2): gap .85; [.9, 1]: mean .975 vs 1 -> gap .025 (x2).
    assert expected_calibration_error(labels, probabilities) == pytest.approx(
        (0.05 + 0.85 + 2 * 0.025) / 4
    )
    curve = reliability_curve(labels, probabilities)
    assert curve.count == (1, 1, 0, 0, 0, 0, 0, 0, 0, 2)
    assert curve.fraction_real[9] == 1.0
    assert curve.mean_score[9] == pytest.approx(0.975)
    assert math.isnan(curve.mean_score[5])
    assert len(curve.bin_edges) == 11
    metrics = binary_metrics(labels, probabilities)
    assert json.loads(json.dumps(metrics.to_dict()))["reliability"]["mean_score"][5] is None


@pytest.mark.parametrize(
    ("labels", "scores", "match"),
    [
        (np.array([0, 0, 0]), np.array([0.1, 0.2, 0.3]), r"'test' split has no real \(label 1\)"),
        (np.array([1, 1]), np.array([0.1, 0.2]), r"'test' split has no bogus \(label 0\)"),
        (np.array([0, 2]), np.array([0.1, 0.2]), "must be 0 \\(bogus\\) or 1"),
        (np.array([], dtype=int), np.array([]), "no labelled candidates"),
    ],
)
def test_metrics_reject_degenerate_labels(labels, scores, match):
    with pytest.raises(SplitError, match=match):
        binary_metrics(labels, scores)


def test_metrics_reject_bad_scores():
    with pytest.raises(ValueError, match="NaN or infinite"):
        roc_auc(LABELS, np.array([0.1, np.nan, 0.3, 0.4]))
    with pytest.raises(ValueError, match="one shape"):
        roc_auc(LABELS, SCORES[:3])
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        expected_calibration_error(LABELS, SCORES * 2)


def test_metrics_do_not_modify_inputs():
    labels, scores = LABELS.copy(), SCORES.copy()
    binary_metrics(labels, scores)
    np.testing.assert_array_equal(labels, LABELS)
    np.testing.assert_array_equal(scores, SCORES)


def test_validate_splits():
    frame = pd.DataFrame({"jid": ["a", "a", "b"], "split": ["train", "train", "test"]})
    validate_splits(frame)
    with pytest.raises(SplitError, match="more than one split"):
        validate_splits(frame.assign(split=["train", "test", "test"]))
    with pytest.raises(SplitError, match="Unknown split"):
        validate_splits(frame.assign(split=["train", "train", "holdout"]))
    with pytest.raises(SplitError, match="'jid' and 'split'"):
        validate_splits(frame.drop(columns=["split"]))


def logistic_frame(n: int, seed: int) -> pd.DataFrame:
    """Labels drawn from a known logistic model on one feature; the others are noise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.standard_normal((n, len(FEATURE_COLUMNS))), columns=FEATURE_COLUMNS)
    probability = scipy.special.expit(3.0 * frame["sharpness"] - 1.0)
    frame["label"] = (rng.random(n) < probability).astype(int)
    return frame


@pytest.mark.parametrize("balance", [True, False])
def test_logistic_baseline_solves_its_objective(balance):
    train = logistic_frame(400, 0)
    scaler = FeatureScaler.fit(train)
    config = LogisticConfig(l2=0.01, balance_classes=balance)
    model = LogisticBaseline.fit(train, scaler, config)
    assert model.converged
    features = scaler.transform(train).astype(float)
    labels = train["label"].to_numpy(float)
    weight_real = (labels.size - labels.sum()) / labels.sum() if balance else 1.0
    weights = np.where(labels == 1, weight_real, 1.0)
    weights /= weights.sum()
    residual = weights * (model.predict_proba(train) - labels)
    # Stationarity of the penalized, weighted log-loss.
    np.testing.assert_allclose(residual.sum(), 0.0, atol=1e-5)
    np.testing.assert_allclose(
        features.T @ residual + 0.01 * np.asarray(model.weights), 0.0, atol=1e-5
    )
    test = logistic_frame(400, 1)
    # The true model's own AUC on this sample bounds what any score can do; the fit gets close.
    true_auc = roc_auc(test["label"].to_numpy(), test["sharpness"].to_numpy())
    assert roc_auc(test["label"].to_numpy(), model.predict_proba(test)) >= true_auc - 0.02


def test_logistic_config_validation():
    with pytest.raises(ValueError, match="l2"):
        LogisticConfig(l2=-1.0)
    with pytest.raises(ValueError, match="max_iterations"):
        LogisticConfig(max_iterations=0)


def test_line_plot_is_a_png():
    png = line_plot_png(
        {"a": (np.arange(5.0), np.arange(5.0) ** 2), "b": (np.arange(3.0), [1.0, np.nan, 2.0])},
        title="t",
        x_label="x",
        y_label="y",
    )
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.size == (520, 400)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    index, root = make_synthetic_dataset(tmp_path_factory.mktemp("eval"))
    result = train_model(index, root, TrainConfig(**TINY.to_dict() | {"epochs": 3}))
    report = evaluate_model(result.model, result.scaler, index, root, history=result.history)
    return index, root, result, report


def test_evaluate_model_reports_test_split_metrics(evaluated):
    index, root, result, report = evaluated
    test = index[index["split"] == "test"]
    expected = binary_metrics(
        test["label"].to_numpy(), predict_probabilities(result.model, test, root)
    )
    assert report.cnn.to_dict() == expected.to_dict()
    assert report.cnn.split == "test"
    assert report.cnn.n == len(test)
    assert report.baseline.n == len(test)
    assert set(report.baseline_weights) == {
        *FEATURE_COLUMNS,
        *(f"{name}_missing" for name in FEATURE_COLUMNS),
        "bias",
    }
    assert report.n_outside_image == 0
    assert set(report.plots) == {"roc", "precision_recall", "calibration", "loss_curves"}
    for png in report.plots.values():
        assert png.startswith(b"\x89PNG")
    summary = json.loads(json.dumps(report.to_dict()))
    assert set(summary) == {
        "cnn",
        "tabular_baseline",
        "tabular_baseline_weights",
        "n_outside_image",
    }
    # Keyed by the evaluated split, as cnn_model adds those training left out.
    assert summary["n_outside_image"] == {"test": 0}


def test_evaluate_model_names_a_split_without_positives(evaluated):
    index, root, result, _ = evaluated
    no_real_test = index.copy()
    no_real_test.loc[no_real_test["split"] == "test", "label"] = 0
    with pytest.raises(SplitError, match="'test' split has no real"):
        evaluate_model(result.model, result.scaler, no_real_test, root)
    no_bogus_train = index.copy()
    no_bogus_train.loc[no_bogus_train["split"] == "train", "label"] = 1
    with pytest.raises(SplitError, match="'train' split has no bogus"):
        evaluate_model(result.model, result.scaler, no_bogus_train, root)
