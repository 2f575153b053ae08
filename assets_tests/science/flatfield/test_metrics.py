"""Mask and flat metrics on hand-made arrays with exact answers."""

from __future__ import annotations

import numpy as np
import pytest

from astro_assets.science.flatfield import metrics


def test_mask_scores_exact() -> None:
    truth = np.zeros((4, 5), dtype=bool)
    truth[0, :4] = True
    predicted = np.zeros((4, 5), dtype=bool)
    predicted[0, 2:] = True
    predicted[3, 0] = True
    scores = metrics.mask_scores(predicted, truth)
    assert scores["iou"] == pytest.approx(2 / 6)
    assert scores["precision"] == pytest.approx(2 / 4)
    assert scores["recall"] == pytest.approx(2 / 4)


def test_mask_scores_empty_conventions() -> None:
    empty = np.zeros((3, 3), dtype=bool)
    assert metrics.mask_scores(empty, empty)["iou"] == 1.0
    full = np.ones((3, 3), dtype=bool)
    assert metrics.mask_scores(empty, full)["precision"] == 1.0
    assert metrics.mask_scores(full, empty)["recall"] == 1.0


def test_deficit_weighted_recall() -> None:
    transmission = np.ones((2, 3), dtype=np.float32)
    transmission[0, 0] = 0.5
    transmission[1, 2] = 0.9
    mask = np.zeros((2, 3), dtype=bool)
    mask[0, 0] = True
    assert metrics.deficit_weighted_recall(mask, transmission) == pytest.approx(0.5 / 0.6)
    soft = mask.astype(np.float32) * 0.5
    assert metrics.deficit_weighted_recall(soft, transmission) == pytest.approx(0.25 / 0.6)
    assert metrics.deficit_weighted_recall(mask, np.ones((2, 3))) == 1.0


def test_flat_errors_relative_to_transmission() -> None:
    transmission = np.array([[0.8, 0.5, 1.0]])
    flat = np.array([[0.88, 0.5, 3.0]])
    support = np.array([[True, True, False]])
    errors = metrics.flat_errors(flat, transmission, support)
    assert errors["max_abs"] == pytest.approx(0.1)
    assert errors["rms"] == pytest.approx(np.sqrt(0.01 / 2))
    empty = metrics.flat_errors(flat, transmission, np.zeros_like(support))
    assert empty["rms"] == 0.0


def test_unity_outside_counts_exact_ones() -> None:
    flat = np.array([[1.0, 1.0 + 1e-7, 0.9, 1.0]], dtype=np.float64)
    mask = np.array([[0.0, 0.0, 1.0, 0.0]])
    assert metrics.unity_outside(flat, mask) == pytest.approx(2 / 3)
    assert metrics.unity_outside(flat, np.ones_like(mask)) == 1.0


def test_false_positive_area_and_features() -> None:
    predicted = np.zeros((4, 4), dtype=bool)
    predicted[0, :3] = True
    truth = np.zeros((4, 4), dtype=bool)
    truth[0, 0] = True
    features = np.zeros((4, 4), dtype=bool)
    features[0, 2] = True
    result = metrics.false_positive_area(predicted, truth, features)
    assert result["px"] == 2.0
    assert result["fraction"] == pytest.approx(2 / 16)
    assert result["on_features_px"] == 1.0


def test_metrics_do_not_change_their_inputs() -> None:
    predicted = np.eye(4, dtype=bool)
    truth = np.ones((4, 4), dtype=bool)
    transmission = np.full((4, 4), 0.9)
    copies = predicted.copy(), truth.copy(), transmission.copy()
    metrics.mask_scores(predicted, truth)
    metrics.deficit_weighted_recall(predicted, transmission)
    metrics.flat_errors(transmission, transmission, truth)
    for original, copy in zip((predicted, truth, transmission), copies, strict=True):
        np.testing.assert_array_equal(original, copy)


def test_metrics_reject_bad_input() -> None:
    mask = np.zeros((3, 3), dtype=bool)
    with pytest.raises(ValueError, match="boolean"):
        metrics.mask_scores(mask.astype(int), mask)
    with pytest.raises(ValueError, match="same"):
        metrics.mask_scores(mask, np.zeros((3, 4), dtype=bool))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.deficit_weighted_recall(np.full((3, 3), 2.0), np.ones((3, 3)))
    with pytest.raises(ValueError, match="> 0"):
        metrics.flat_errors(np.ones((3, 3)), np.zeros((3, 3)), ~mask)
