"""edit_core: a reviewer's drops and added discs on a dust core."""

import numpy as np
import pytest

from astro_assets.science.flatfield.edits import edit_core


def _core() -> np.ndarray:
    """Three regions in a 40 x 60 frame: a 5 x 5 square, an L of 8-connected pixels joined
    only diagonally, and a single pixel."""
    core = np.zeros((40, 60), dtype=bool)
    core[5:10, 5:10] = True
    core[20, 30] = core[21, 31] = core[22, 31] = core[22, 32] = True
    core[35, 55] = True
    return core


def test_a_position_on_a_region_drops_the_whole_region_and_nothing_else():
    core = _core()
    before = core.copy()
    edited = edit_core(core, drop_at=[[7.0, 6.0]])
    expected = before.copy()
    expected[5:10, 5:10] = False
    np.testing.assert_array_equal(edited.core, expected)
    np.testing.assert_array_equal(edited.dropped_regions, before & ~expected)
    np.testing.assert_array_equal(core, before)
    (record,) = edited.dropped
    assert record == {
        "x": 7.0,
        "y": 6.0,
        "distance_px": 0.0,
        "region_x": 7.0,
        "region_y": 7.0,
        "region_area_px": 25,
    }


def test_a_diagonally_joined_region_is_dropped_whole_from_a_position_beside_it():
    edited = edit_core(_core(), drop_at=[[34.0, 22.0]], reach_px=2.5)
    assert not edited.core[20:23, 30:33].any()
    assert edited.core[5:10, 5:10].all() and edited.core[35, 55]
    assert edited.dropped[0]["distance_px"] == pytest.approx(2.0)
    assert edited.dropped[0]["region_area_px"] == 4


def test_the_nearest_region_is_dropped_and_two_positions_may_name_one_region():
    core = np.zeros((20, 40), dtype=bool)
    core[10, 10] = True
    core[10, 16] = True
    edited = edit_core(core, drop_at=[[12.0, 10.0], [11.0, 10.0]], reach_px=3.0)
    assert not edited.core[10, 10] and edited.core[10, 16]
    assert [record["region_x"] for record in edited.dropped] == [10.0, 10.0]


def test_a_position_beyond_the_reach_fails_naming_the_nearest_region():
    with pytest.raises(ValueError, match=r"within 3 px of \(20, 8\)") as error:
        edit_core(_core(), drop_at=[[20.0, 8.0]], reach_px=3.0)
    assert "nearest region is centred at (7, 7)" in str(error.value)
    with pytest.raises(ValueError, match="the core is empty"):
        edit_core(np.zeros((10, 10), dtype=bool), drop_at=[[5.0, 5.0]], reach_px=3.0)


@pytest.mark.parametrize(
    ("drop_at", "add_discs", "message"),
    [
        ([[60.0, 5.0]], [], "outside the 60 x 40 frame"),
        ([[5.0, -1.0]], [], "outside the 60 x 40 frame"),
        ([[5.0]], [], r"2 finite numbers, \[x, y\]"),
        ([[5.0, float("nan")]], [], "2 finite numbers"),
        ([["five", 5.0]], [], "2 finite numbers"),
        ([5.0], [], "2 finite numbers"),
        ([], [[5.0, 5.0]], r"3 finite numbers, \[x, y, radius\]"),
        ([], [[5.0, 5.0, 0.0]], "radius > 0"),
        ([], [[5.0, 45.0, 3.0]], "outside the 60 x 40 frame"),
    ],
)
def test_malformed_or_outside_entries_fail_saying_what_is_expected(drop_at, add_discs, message):
    with pytest.raises(ValueError, match=message):
        edit_core(_core(), drop_at=drop_at, add_discs=add_discs, reach_px=3.0)


def test_a_disc_is_added_after_the_drops_so_a_region_can_be_drawn_again():
    core = _core()
    edited = edit_core(core, drop_at=[[7.0, 7.0]], add_discs=[[7.0, 7.0, 1.0], [55.0, 35.0, 0.5]])
    expected = _core()
    expected[5:10, 5:10] = False
    expected[7, 6:9] = expected[6:9, 7] = True
    np.testing.assert_array_equal(edited.core, expected)
    assert [disc["added_px"] for disc in edited.added] == [5, 0]
    assert edited.added[0] == {"x": 7.0, "y": 7.0, "radius_px": 1.0, "added_px": 5}


def test_no_edits_give_an_equal_copy():
    core = _core()
    edited = edit_core(core)
    np.testing.assert_array_equal(edited.core, core)
    assert edited.core is not core
    assert not edited.dropped_regions.any()
    assert edited.dropped == () and edited.added == ()
