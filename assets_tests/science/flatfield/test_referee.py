"""The referee keeps only proposed dust regions that the median shows as darker."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from astro_assets.science.flatfield.referee import RefereeParams, referee_mask

SHAPE = (96, 128)


def disc(y: float, x: float, radius: float, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - y) ** 2 + (xx - x) ** 2 <= radius**2


def textured_field(seed: int, contrast: float = 0.03, correlation_px: float = 3.0) -> np.ndarray:
    """A solar-like field: smooth limb darkening times spatially correlated texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    limb = 1.0 - 0.2 * ((yy - 48) ** 2 + (xx - 64) ** 2) / 80.0**2
    texture = ndimage.gaussian_filter(rng.normal(size=SHAPE), correlation_px)
    photon = 0.002 * rng.normal(size=SHAPE)
    return 4000.0 * limb * (1.0 + contrast * texture / texture.std() + photon)


def apply_dust(field: np.ndarray, dust: list[tuple[float, float, float, float]]) -> np.ndarray:
    transmission = np.ones(SHAPE)
    for y, x, radius, depth in dust:
        transmission[disc(y, x, radius)] -= depth
    return field * transmission


DUST = [(25.0, 30.0, 7.0, 0.20), (70.0, 95.0, 5.0, 0.25), (60.0, 30.0, 9.0, 0.12)]
HALLUCINATIONS = [(25.0, 95.0, 6.0), (80.0, 60.0, 5.0)]


def test_real_dust_is_kept_and_hallucinations_are_rejected():
    median = apply_dust(textured_field(seed=1), DUST)
    core = np.zeros(SHAPE, dtype=bool)
    for y, x, radius, _ in DUST:
        core |= disc(y, x, radius)
    for y, x, radius in HALLUCINATIONS:
        core |= disc(y, x, radius)
    result = referee_mask(median, core)
    assert result.n_kept == len(DUST) and result.n_rejected == len(HALLUCINATIONS)
    for region in result.regions:
        truth = [
            d for d in DUST if np.hypot(d[0] - region.centroid[0], d[1] - region.centroid[1]) < 1
        ]
        if truth:
            assert region.kept and region.significance >= 3.0
            assert region.deficit == pytest.approx(truth[0][3], abs=3 * region.noise)
            assert region.noise_method == "null_placements"
        else:
            assert not region.kept and "unconfirmed" in region.reason
            assert abs(region.deficit) < 3 * region.noise
    expected = np.zeros(SHAPE, dtype=bool)
    for y, x, radius, _ in DUST:
        expected |= disc(y, x, radius)
    np.testing.assert_array_equal(result.kept, expected)


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_random_regions_on_correlated_texture_are_rarely_kept(seed):
    """The empirical noise follows the texture's correlation; an independent-pixel error would
    call most random patches significant."""
    median = textured_field(seed=seed, contrast=0.03, correlation_px=4.0)
    rng = np.random.default_rng(100 + seed)
    core = np.zeros(SHAPE, dtype=bool)
    for _ in range(12):
        y, x = rng.uniform(15, SHAPE[0] - 15), rng.uniform(15, SHAPE[1] - 15)
        core |= disc(y, x, 4.0)
    result = referee_mask(median, core)
    assert result.n_kept <= 1
    naive = [abs(r.deficit) / _iid_noise(median, core, r) for r in result.regions]
    assert sum(value > 3.0 for value in naive) >= 3


def _iid_noise(median: np.ndarray, core: np.ndarray, region) -> float:
    """Independent-pixel error of a region's deficit, for comparison."""
    labels, _ = ndimage.label(core, structure=np.ones((3, 3)))
    footprint = labels == region.label
    distance = ndimage.distance_transform_edt(~footprint)
    ring = (distance > 2) & (distance <= 8) & ~core
    values = median[ring]
    sigma = 1.4826 * np.median(np.abs(values - np.median(values)))
    return float(1.2533 * sigma / np.sqrt(footprint.sum()) / region.background)


def test_a_donut_marked_as_a_ring_is_kept():
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    radius = np.hypot(yy - 48, xx - 64)
    transmission = np.where((radius >= 6) & (radius <= 12), 0.8, 1.0)
    median = textured_field(seed=5) * transmission
    core = (radius >= 6) & (radius <= 12)
    (region,) = referee_mask(median, core).regions
    assert region.kept and region.deficit == pytest.approx(0.2, abs=0.05)


def test_small_regions_and_dark_backgrounds_are_not_measurable():
    median = textured_field(seed=6)
    median[:, :20] = 0.0  # off the disc
    core = np.zeros(SHAPE, dtype=bool)
    core[50, 70] = True  # a single pixel
    core |= disc(40, 8, 4)
    result = referee_mask(median, core, RefereeParams(min_area_px=4))
    reasons = {r.label: r.reason for r in result.regions}
    assert any("min_area_px" in reason for reason in reasons.values())
    assert any("not positive" in reason for reason in reasons.values())
    assert result.n_kept == 0 and not result.kept.any()


def test_region_at_the_frame_edge_falls_back_to_the_ring_noise():
    median = apply_dust(textured_field(seed=7), [(3.0, 3.0, 3.0, 0.3)])
    core = disc(3, 3, 3)
    (region,) = referee_mask(median, core, RefereeParams(min_null_placements=16)).regions
    assert region.noise_method == "ring_mad" and region.null_samples < 16


def test_non_finite_pixels_are_ignored():
    median = apply_dust(textured_field(seed=8), DUST[:1])
    median[20:23, 26:29] = np.nan
    median[10, 40] = np.inf
    (region,) = referee_mask(median, disc(*DUST[0][:3])).regions
    assert region.kept and np.isfinite(region.deficit)


def test_empty_core_gives_an_empty_result():
    result = referee_mask(textured_field(seed=9), np.zeros(SHAPE, dtype=bool))
    assert result.regions == () and not result.kept.any()


def test_significance_threshold_is_configurable():
    median = apply_dust(textured_field(seed=10), [(48.0, 64.0, 6.0, 0.06)])
    core = disc(48, 64, 6)
    (region,) = referee_mask(median, core).regions
    strict = referee_mask(median, core, RefereeParams(significance=region.significance + 0.1))
    lenient = referee_mask(median, core, RefereeParams(significance=region.significance - 0.1))
    assert not strict.regions[0].kept and lenient.regions[0].kept


def test_inputs_are_not_changed_and_descriptions_are_json():
    median = apply_dust(textured_field(seed=11), DUST)
    core = disc(*DUST[0][:3]) | disc(80, 60, 5)
    median_before, core_before = median.copy(), core.copy()
    result = referee_mask(median, core)
    np.testing.assert_array_equal(median, median_before)
    np.testing.assert_array_equal(core, core_before)
    described = json.loads(json.dumps([r.describe() for r in result.regions]))
    assert {d["kept"] for d in described} == {True, False}


@pytest.mark.parametrize(
    ("median", "core", "message"),
    [
        (np.ones((4, 4, 3)), np.zeros((4, 4), dtype=bool), "2-D"),
        (np.ones((4, 4)), np.zeros((5, 4), dtype=bool), "same shape"),
        (np.ones((4, 4)), np.zeros((4, 4)), "bool"),
        (np.full((4, 4), "a"), np.zeros((4, 4), dtype=bool), "real numbers"),
    ],
)
def test_bad_inputs_raise(median, core, message):
    with pytest.raises(ValueError, match=message):
        referee_mask(median, core)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"significance": 0.0}, "significance"),
        ({"ring_gap_px": -1}, "ring_gap_px"),
        ({"ring_width_px": 0}, "ring_width_px"),
        ({"min_area_px": 0}, "min_area_px"),
        ({"null_placements": 4, "min_null_placements": 6}, "min_null_placements"),
    ],
)
def test_params_validate(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RefereeParams(**kwargs)
