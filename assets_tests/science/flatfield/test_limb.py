"""The limb of a round target: its fitted ellipse, the depth below it and the radial profile."""

from __future__ import annotations

import numpy as np
import pytest

from astro_assets.science.flatfield.limb import (
    depth_below_limb,
    fit_limb,
    limb_radius_px,
    radial_profile,
)

SHAPE = (160, 200)
CENTRE = (70.0, 110.0)
RADIUS = 90.0


def limb_darkened_disc(
    u: float = 0.6, shape=SHAPE, centre=CENTRE, limb_radius=RADIUS
) -> tuple[np.ndarray, np.ndarray]:
    """A disc (by default of radius 90 px, whose limb leaves the frame at the top) under the
    linear law ``I = 1000 (1 - u (1 - mu))``, and the true depth below its limb in pixels."""
    yy, xx = np.indices(shape, dtype=np.float64)
    radius = np.hypot(yy - centre[0], xx - centre[1])
    mu = np.sqrt(np.clip(1.0 - (radius / limb_radius) ** 2, 0.0, 1.0))
    image = np.where(radius <= limb_radius, 1000.0 * (1.0 - u * (1.0 - mu)), 0.0)
    return image, limb_radius - radius


def test_depth_below_a_fitted_circle_is_the_distance_to_it() -> None:
    image, true_depth = limb_darkened_disc()
    normalized_radius = fit_limb(image > 150.0)
    assert normalized_radius is not None
    assert limb_radius_px(normalized_radius) == pytest.approx(RADIUS, abs=1.0)
    depth = depth_below_limb(normalized_radius)
    near = np.abs(true_depth) < 40.0
    assert np.abs(depth[near] - true_depth[near]).max() < 1.0


@pytest.mark.parametrize("terminator_col", [80.0, 110.0, 160.0])
def test_the_limb_of_a_target_in_phase_is_fitted_without_its_terminator(
    terminator_col: float,
) -> None:
    # Gibbous, half and crescent: the terminator, half an ellipse across the disc, is up to
    # half of the lit part's edge.
    centre = (90.0, 110.0)
    image, true_depth = limb_darkened_disc(centre=centre, limb_radius=80.0)
    yy, xx = np.indices(SHAPE, dtype=np.float64)
    terminator = centre[1] + (terminator_col - centre[1]) * np.sqrt(
        np.clip(1.0 - ((yy - centre[0]) / 80.0) ** 2, 0.0, 1.0)
    )
    lit = (image > 150.0) & (xx > terminator)
    normalized_radius = fit_limb(lit)
    assert normalized_radius is not None
    assert limb_radius_px(normalized_radius) == pytest.approx(80.0, abs=1.0)
    depth = depth_below_limb(normalized_radius)
    error = np.abs(depth - true_depth)
    assert error[np.abs(true_depth) < 10.0].max() < 1.0
    assert error[np.abs(true_depth) < 40.0].max() < 2.0


def test_a_rounded_corner_is_not_taken_for_a_limb_in_phase() -> None:
    # A quarter circle of 60 px between two straight sides: the circle holds more than half
    # of the edge over a quarter of a turn, but the sides run outside it, where no terminator
    # lies.
    yy, xx = np.indices(SHAPE)
    target = (yy >= 40) & (xx >= 60)
    target &= ~((yy < 100) & (xx < 120) & (np.hypot(yy - 100, xx - 120) > 60))
    assert fit_limb(target) is None


def test_no_limb_on_an_irregular_target() -> None:
    target = np.zeros(SHAPE, dtype=bool)
    target[20:140, 30:170] = True
    assert fit_limb(target) is None


def test_radial_profile_recovers_limb_darkening_from_the_known_pixels() -> None:
    image, true_depth = limb_darkened_disc()
    known = np.ones(SHAPE, dtype=bool)
    hidden = np.zeros(SHAPE, dtype=bool)
    hidden[5:45, 60:120] = True
    known[hidden] = False
    observed = image.copy()
    observed[hidden] = 5.0e4
    kept = observed.copy()
    profile = radial_profile(observed, known, true_depth)
    np.testing.assert_array_equal(observed, kept)
    assert profile.shape == SHAPE and profile.dtype == np.float64
    inside = (true_depth > 2.0) & (true_depth < 60.0)
    np.testing.assert_allclose(profile[inside], image[inside], rtol=0.01)
    # Under the hidden block, where the image is wrong, the profile holds the true darkening.
    under = hidden & inside
    assert under.any()
    np.testing.assert_allclose(profile[under], image[under], rtol=0.01)
    assert np.all(profile[true_depth < -20.0] == pytest.approx(0.0, abs=1e-9))


def test_radial_profile_is_the_median_of_each_depth() -> None:
    # A fifth of the pixels are bright outliers (spots, hot pixels): the median ignores them.
    yy, xx = np.indices(SHAPE, dtype=np.float64)
    depth = RADIUS - np.hypot(yy - CENTRE[0], xx - CENTRE[1])
    image = np.full(SHAPE, 100.0)
    rng = np.random.default_rng(0)
    image[rng.random(SHAPE) < 0.2] = 1.0e6
    profile = radial_profile(image, np.ones(SHAPE, dtype=bool), depth)
    assert np.all(profile == 100.0)


def test_radial_profile_rejects_bad_input() -> None:
    image, depth = limb_darkened_disc()
    known = np.ones(SHAPE, dtype=bool)
    with pytest.raises(ValueError, match="one shape"):
        radial_profile(image, known[:-1], depth)
    with pytest.raises(ValueError, match="one shape"):
        radial_profile(image, known, depth[:, :-1])
    with pytest.raises(ValueError, match="no known pixel"):
        radial_profile(image, np.zeros(SHAPE, dtype=bool), depth)
    with pytest.raises(ValueError, match="max_samples"):
        radial_profile(image, known, depth, max_samples=0)
