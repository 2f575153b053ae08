"""regions_touching: connected regions of a mask selected by seeds."""

import numpy as np

from astro_assets.science.flatfield.regions import regions_touching


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
