"""ZScale limits and normalization against astropy, and the degenerate cases."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.visualization import ZScaleInterval

from astro_assets.science.transients.zscale import (
    NoFinitePixelsError,
    ZScaleResult,
    zscale_limits,
    zscale_normalize,
)


def _sky(shape=(72, 96), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.normal(100.0, 10.0, shape).astype(np.float32)
    image[30:33, 40:43] += 5000.0  # a bright star must not set the range
    return image


def test_limits_equal_astropy():
    image = _sky()
    expected = ZScaleInterval().get_limits(image)
    assert zscale_limits(image) == pytest.approx(expected, abs=0, rel=0)
    vmin, vmax = zscale_limits(image)
    assert 40 < vmin < 100 < vmax < 160


def test_limits_use_finite_pixels_only():
    image = _sky(seed=1)
    dirty = image.copy()
    dirty[::7, ::5] = np.nan
    dirty[1, 1] = np.inf
    dirty[2, 2] = -np.inf
    finite = dirty[np.isfinite(dirty)]
    assert zscale_limits(dirty) == tuple(float(v) for v in ZScaleInterval().get_limits(finite))


def test_parameters_are_passed_to_astropy():
    image = _sky(seed=2)
    expected = ZScaleInterval(n_samples=300, contrast=0.5).get_limits(image)
    assert zscale_limits(image, n_samples=300, contrast=0.5) == tuple(float(v) for v in expected)


def test_normalize_is_the_clipped_linear_map():
    image = _sky(seed=3)
    normalized, result = zscale_normalize(image)
    vmin, vmax = zscale_limits(image)
    expected = np.clip((image.astype(np.float64) - vmin) / (vmax - vmin), 0, 1).astype(np.float32)
    assert normalized.dtype == np.float32 and normalized.shape == image.shape
    np.testing.assert_array_equal(normalized, expected)
    assert result == ZScaleResult(vmin, vmax, 0, 0, False)
    assert normalized.min() == 0.0 and normalized.max() == 1.0


def test_non_finite_pixels_become_zero_and_are_counted():
    image = _sky(seed=4)
    image[0, :3] = np.nan
    image[1, 0] = np.inf
    image[2, 0] = -np.inf
    normalized, result = zscale_normalize(image)
    assert result.nan_count == 3 and result.inf_count == 2
    assert np.all(normalized[0, :3] == 0) and normalized[1, 0] == 0 and normalized[2, 0] == 0
    assert np.all(np.isfinite(normalized))


def test_constant_image_is_mid_grey_and_flagged():
    normalized, result = zscale_normalize(np.full((6, 8), 7.0))
    assert result.degenerate and result.vmin == result.vmax == 7.0
    np.testing.assert_array_equal(normalized, np.full((6, 8), 0.5, np.float32))


def test_degenerate_limits_are_a_step_around_the_level():
    image = np.zeros((40, 40), np.float32)
    image[5, 5] = 10.0
    image[6, 6] = -10.0
    image[7, 7] = np.nan
    normalized, result = zscale_normalize(image)
    assert result.degenerate and result.vmin == result.vmax == 0.0
    assert normalized[5, 5] == 1.0 and normalized[6, 6] == 0.0 and normalized[7, 7] == 0.0
    assert normalized[0, 0] == 0.5


def test_all_nan_image_is_refused():
    with pytest.raises(NoFinitePixelsError, match=r"all 12 pixels .* NaN or infinite"):
        zscale_normalize(np.full((3, 4), np.nan))
    with pytest.raises(NoFinitePixelsError, match="drop this job"):
        zscale_limits(np.array([[np.inf, -np.inf], [np.nan, np.nan]]))


def test_integer_input():
    image = np.arange(100, dtype=np.int16).reshape(10, 10)
    normalized, result = zscale_normalize(image)
    assert normalized.dtype == np.float32
    assert 0 <= normalized.min() <= normalized.max() <= 1
    assert (result.vmin, result.vmax) == zscale_limits(image.astype(np.float64))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((2, 3, 4)), "2-D image"),
        (np.zeros(5), "2-D image"),
        (np.zeros((0, 4)), "empty"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
    ],
)
def test_bad_images(bad, message):
    with pytest.raises(ValueError, match=message):
        zscale_normalize(bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"contrast": 0.0}, "contrast"), ({"n_samples": 0}, "n_samples")],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        zscale_limits(_sky(), **kwargs)


def test_input_is_not_modified():
    image = _sky(seed=5)
    image[0, 0] = np.nan
    before = image.copy()
    zscale_normalize(image)
    zscale_limits(image)
    np.testing.assert_array_equal(image, before)
