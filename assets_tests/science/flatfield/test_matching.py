"""Float quantile matching on clean pixels only."""

from __future__ import annotations

import numpy as np
import pytest

from astro_assets.science.flatfield.matching import MIN_CLEAN_PIXELS, match_histogram


def images(shape=(40, 50)):
    rng = np.random.default_rng(7)
    source = rng.gamma(4.0, 250.0, size=shape)
    clean = np.ones(shape, dtype=bool)
    clean[10:20, 15:30] = False
    return source, clean


def test_identity_when_source_equals_reference_on_clean_pixels() -> None:
    source, clean = images()
    reference = source.copy()
    reference[~clean] = 0.0  # dust in the reference must not matter
    out = match_histogram(source, reference, clean)
    np.testing.assert_array_equal(out[clean], source[clean].astype(np.float32))
    np.testing.assert_allclose(out, source.astype(np.float32), rtol=1e-6)


def test_recovers_a_monotonic_transform_from_clean_pixels_only() -> None:
    source, clean = images()
    reference = 0.002 * source**1.5 + 30.0
    reference[~clean] = 1e9  # garbage under the mask must be ignored
    out = match_histogram(source, reference, clean)
    # Every clean value is a knot of the mapping, so it maps exactly onto its reference value.
    np.testing.assert_allclose(out[clean], reference[clean].astype(np.float32), rtol=1e-6)
    # Masked pixels follow the same transform, linearly between the two neighbouring knots.
    knots = np.sort(source[clean])
    values = source[~clean]
    inside = (values > knots[0]) & (values < knots[-1])
    upper = np.searchsorted(knots, values[inside])
    low_knot, high_knot = knots[upper - 1], knots[upper]
    transform = lambda v: 0.002 * v**1.5 + 30.0  # noqa: E731
    mapped = out[~clean][inside]
    assert np.all(mapped >= transform(low_knot).astype(np.float32))
    assert np.all(mapped <= transform(high_knot).astype(np.float32))


def test_values_outside_the_clean_range_keep_the_end_offset() -> None:
    source, clean = images()
    source[15, 20] = source[clean].max() + 100.0
    reference = source + 5.0
    out = match_histogram(source, reference, clean)
    assert out[15, 20] == pytest.approx(source[15, 20] + 5.0, rel=1e-6)


def test_no_eight_bit_binning() -> None:
    source, clean = images()
    out = match_histogram(source, source * 1.5, clean)
    assert np.unique(out[clean]).size == np.unique(source[clean]).size > 256


def test_match_histogram_does_not_change_its_input() -> None:
    source, clean = images()
    reference = source * 2.0
    copies = source.copy(), reference.copy(), clean.copy()
    match_histogram(source, reference, clean)
    for original, copy in zip((source, reference, clean), copies, strict=True):
        np.testing.assert_array_equal(original, copy)


def test_match_histogram_rejects_bad_input() -> None:
    source, clean = images()
    with pytest.raises(ValueError, match="clean pixels"):
        few = np.zeros(source.shape, dtype=bool)
        few.flat[: MIN_CLEAN_PIXELS - 1] = True
        match_histogram(source, source, few)
    with pytest.raises(ValueError, match="boolean"):
        match_histogram(source, source, clean.astype(np.uint8))
    with pytest.raises(ValueError, match="same shape"):
        match_histogram(source, source[:-1], clean)
    with pytest.raises(ValueError, match="finite"):
        bad = source.copy()
        bad[0, 0] = np.inf
        match_histogram(bad, source, clean)
    with pytest.raises(ValueError, match="2-D"):
        match_histogram(source.ravel(), source.ravel(), clean.ravel())
