"""regions_touching, fill_holes and grown_box: connected regions of a mask."""

import numpy as np
from scipy import ndimage

from astro_assets.science.flatfield.regions import fill_holes, grown_box, regions_touching


def test_regions_holding_a_seed_are_kept_whole_and_others_dropped():
    regions = np.zeros((6, 9), dtype=bool)
    regions[1:3, 1:4] = True
    regions[4, 5:8] = True
    regions[0, 8] = True
    # Diagonal neighbours are separate regions (4-connectivity).
    regions[3, 4] = True
    seeds = np.zeros_like(regions)
    seeds[2, 3] = True
    seeds[5, 0] = True
    seeds[4, 7] = True
    expected = np.zeros_like(regions)
    expected[1:3, 1:4] = True
    expected[4, 5:8] = True
    np.testing.assert_array_equal(regions_touching(regions, seeds), expected)
    assert not regions_touching(regions, np.zeros_like(regions)).any()
    assert not regions_touching(np.zeros_like(regions), seeds).any()


def test_fill_holes_fills_enclosed_background_only():
    mask = np.zeros((7, 9), dtype=bool)
    mask[1:6, 1:6] = True
    mask[2:4, 2:4] = False  # enclosed: a hole
    mask[3, 5] = False
    mask[3, 6:8] = True
    mask[5, 3] = False
    mask[6, 3] = False  # open to the bottom edge: not a hole
    mask[0:3, 7] = True
    mask[2, 8] = True
    mask[1, 8] = False  # on the edge: not a hole
    expected = mask.copy()
    expected[2:4, 2:4] = True
    expected[3, 5] = True
    np.testing.assert_array_equal(fill_holes(mask), expected)


def test_fill_holes_equals_scipy_on_random_masks():
    rng = np.random.default_rng(3)
    for shape in [(1,), (17,), (1, 1), (1, 12), (23, 31), (64, 48), (9, 11, 13)]:
        for density in (0.0, 0.3, 0.55, 0.8, 1.0):
            mask = rng.random(shape) < density
            np.testing.assert_array_equal(fill_holes(mask), ndimage.binary_fill_holes(mask))
        grown = ndimage.binary_dilation(rng.random(shape) < 0.04, iterations=2)
        np.testing.assert_array_equal(fill_holes(grown), ndimage.binary_fill_holes(grown))


def test_grown_box_is_the_box_plus_its_margin_clipped_to_the_frame():
    assert grown_box((slice(5, 9), slice(10, 20)), 3, (30, 40)) == (slice(2, 12), slice(7, 23))
    assert grown_box((slice(1, 9), slice(35, 39)), 4, (10, 40)) == (slice(0, 10), slice(31, 40))
    assert grown_box((slice(1, 9), slice(2, 3)), 0, (10, 40)) == (slice(1, 9), slice(2, 3))
