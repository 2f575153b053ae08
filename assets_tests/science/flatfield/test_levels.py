from __future__ import annotations

import numpy as np
import pytest

from astro_assets.science.flatfield.levels import (
    BRIGHTER_FACTOR,
    MIN_TARGET_FRACTION,
    coverage_verdict,
    dark_threshold,
    lit_fraction,
    signal_spread,
    target_level,
    typical_spread,
    unsearched_fraction,
    with_signal,
)

SHAPE = (300, 400)
PEDESTAL = 1000.0


def small_planet(radius: float, *, pedestal: float = PEDESTAL, seed: int = 0) -> np.ndarray:
    """A limb-darkened disc peaking at ``pedestal + 40000`` on a noisy sky at ``pedestal``."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices(SHAPE, dtype=np.float64)
    s = np.hypot(rows - 150, cols - 200) / radius
    disc = 40000.0 * np.sqrt(np.clip(1.0 - s**2, 0.0, 1.0))
    return pedestal + disc + 5.0 * rng.standard_normal(SHAPE)


def test_a_target_over_one_percent_of_the_frame_has_the_frames_99th_percentile() -> None:
    image = small_planet(80.0)
    assert target_level(image) == pytest.approx(np.percentile(image, 99.0), abs=0)


def test_a_target_under_one_percent_of_the_frame_is_not_taken_for_the_sky() -> None:
    image = small_planet(15.0)  # 707 px, 0.59 % of the frame
    on_disc = image > PEDESTAL + 50.0
    assert 0.005 < on_disc.mean() < 0.01
    assert np.percentile(image, 99.0) < PEDESTAL + 50.0
    assert target_level(image) == pytest.approx(np.percentile(image[on_disc], 99.0), rel=0.02)


def test_a_sky_with_its_pedestal_removed_leaves_the_level_on_the_target() -> None:
    image = small_planet(15.0, pedestal=0.0)
    exact_zero_sky = np.where(image > 50.0, image, 0.0)
    for values in (image, exact_zero_sky):
        assert target_level(values) > 0.9 * 40000.0


def test_hot_pixels_and_tiny_targets_do_not_move_the_level() -> None:
    image = small_planet(80.0)
    level = target_level(image)
    hot = image.copy()
    rng = np.random.default_rng(1)
    count = int(0.5 * MIN_TARGET_FRACTION * image.size)
    hot.flat[rng.choice(image.size, count, replace=False)] = BRIGHTER_FACTOR * level * 1.5
    assert target_level(hot) == pytest.approx(np.percentile(hot, 99.0), abs=0)
    assert target_level(small_planet(2.0)) == pytest.approx(PEDESTAL, abs=30.0)


def test_samples_of_any_shape_are_accepted_and_never_modified() -> None:
    image = small_planet(15.0)
    before = image.copy()
    assert target_level(image.ravel()) == target_level(image)
    np.testing.assert_array_equal(image, before)


def test_no_values_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        target_level(np.array([]))


def test_the_lit_fraction_is_the_share_above_the_dark_threshold() -> None:
    image = small_planet(60.0)
    kept = image.copy()
    rows, cols = np.indices(SHAPE)
    s = np.hypot(rows - 150, cols - 200) / 60.0
    # The disc's light sqrt(1 - s**2) passes 5 % of its bright level (99th percentile of the
    # disc, about 0.99) where s < sqrt(1 - 0.0495**2).
    expected = np.mean(s < np.sqrt(1.0 - (0.05 * 0.99) ** 2))
    assert lit_fraction(image) == pytest.approx(expected, rel=0.02)
    assert lit_fraction(image, dark_fraction=0.5) < 0.8 * lit_fraction(image)
    np.testing.assert_array_equal(image, kept)
    assert lit_fraction(np.full(SHAPE, 7.0)) == 0.0
    with pytest.raises(ValueError, match="dark_fraction"):
        lit_fraction(image, dark_fraction=1.0)


def test_a_median_the_target_left_is_dark_against_the_frames_threshold() -> None:
    # A 30 px planet drifting 120 px across a vignetted sky: a pixel holds it in at most half
    # of the frames, so the median is sky, whose own range makes a third of it "lit".
    rng = np.random.default_rng(3)
    rows, cols = np.indices(SHAPE, dtype=np.float64)
    vignetting = 1.0 - 0.3 * np.hypot(rows - 150, cols - 200) ** 2 / 250.0**2
    frames = []
    for x in np.linspace(140.0, 260.0, 40):
        s = np.hypot(rows - 150, cols - x) / 30.0
        disc = 40000.0 * np.sqrt(np.clip(1.0 - s**2, 0.0, 1.0))
        frames.append(PEDESTAL + (200.0 + disc) * vignetting + 5.0 * rng.standard_normal(SHAPE))
    median = np.median(frames, axis=0)
    threshold = float(np.median([dark_threshold(frame.ravel(), 0.05) for frame in frames]))
    frames_lit = float(np.median([lit_fraction(frame) for frame in frames]))
    assert frames_lit == pytest.approx(np.pi * 30.0**2 / median.size, rel=0.1)
    assert lit_fraction(median) > 0.3
    median_lit = lit_fraction(median, threshold=threshold)
    assert median_lit < 0.1 * frames_lit
    ok, message = coverage_verdict(median_lit, frames_lit)
    assert not ok and "the median lights only 0.2% of the frame" in message
    with pytest.raises(ValueError, match="threshold must be finite"):
        lit_fraction(median, threshold=float("nan"))
    with pytest.raises(ValueError, match="dark_fraction"):
        lit_fraction(median, dark_fraction=1.0, threshold=threshold)


def test_a_median_lighting_under_half_of_what_the_frames_light_is_flagged() -> None:
    ok, message = coverage_verdict(0.20, 0.25)
    assert ok and "20.0%" in message
    ok, message = coverage_verdict(0.01, 0.08)
    assert not ok
    assert "only 1.0% of the frame where single frames light 8.0%" in message
    assert coverage_verdict(0.0, 0.0)[0]
    for bad in ((1.5, 0.2), (0.1, -0.1)):
        with pytest.raises(ValueError, match="must lie in"):
            coverage_verdict(*bad)
    with pytest.raises(ValueError, match="min_share"):
        coverage_verdict(0.1, 0.2, min_share=0.0)


def test_a_spread_ignores_the_pedestal_and_scales_with_the_light() -> None:
    image = np.random.default_rng(3).uniform(0.0, 1000.0, (60, 80))
    spread = signal_spread(image)
    assert spread == pytest.approx(np.percentile(image, 99.9) - np.percentile(image, 0.1))
    assert signal_spread(image + 5000.0) == pytest.approx(spread)
    assert signal_spread(0.3 * image + 5000.0) == pytest.approx(0.3 * spread)


def test_frames_below_a_fifth_of_the_typical_spread_lack_signal() -> None:
    # The typical spread (the 90th percentile) is 101.2: a fifth of it is 20.24.
    spreads = np.array([100.0, 98.0, 3.0, 102.0, 19.0, 21.0, 0.0, 99.0, 101.0])
    np.testing.assert_array_equal(
        with_signal(spreads), [True, True, False, True, False, True, False, True, True]
    )
    np.testing.assert_array_equal(
        with_signal(spreads, min_fraction=0.0), np.ones(spreads.size, bool)
    )


def test_the_typical_spread_is_a_lit_frames_where_most_frames_are_blank() -> None:
    spreads = np.array([1.0] * 80 + [100.0] * 20)
    assert typical_spread(spreads) == 100.0
    np.testing.assert_array_equal(with_signal(spreads), spreads == 100.0)


def test_a_few_odd_frames_do_not_set_the_typical_spread() -> None:
    # Five frames of full-range noise in 100 of a dim target.
    spreads = np.array([30.0] * 95 + [255.0] * 5)
    assert typical_spread(spreads) == 30.0
    assert with_signal(spreads).all()


@pytest.mark.parametrize("spreads", [[5.0], [100.0, 1.0, 1.0, 1.0, 1.0], [0.0, 0.0]])
def test_with_fewer_than_two_frames_passing_every_frame_is_kept(spreads) -> None:
    assert with_signal(np.array(spreads)).all()


@pytest.mark.parametrize(
    ("spreads", "kwargs", "message"),
    [
        ([], {}, "non-empty 1-D"),
        ([[1.0, 2.0]], {}, "non-empty 1-D"),
        ([1.0, np.nan], {}, "finite"),
        ([1.0, 2.0], {"min_fraction": 1.5}, r"\[0, 1\]"),
    ],
)
def test_bad_spreads_are_refused(spreads, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        with_signal(np.array(spreads), **kwargs)


def test_the_lit_target_below_the_detectors_level_is_reported_unsearched() -> None:
    # A Moon at half phase: a bright half at 1000 ADU, a terminator zone at 300 ADU (lit, but
    # under 0.4 of the bright level), the sky at 100 ADU of pedestal.
    image = np.full((100, 100), 100.0)
    image[:, :50] = 1000.0
    image[:, 50:70] = 300.0
    assert unsearched_fraction(image, 0.4) == pytest.approx(20 / 70)
    assert unsearched_fraction(image, 0.25) == 0.0
    assert unsearched_fraction(np.full((4, 4), 7.0), 0.4) == 0.0
    with pytest.raises(ValueError, match="dark_fraction"):
        unsearched_fraction(image, 1.0)
