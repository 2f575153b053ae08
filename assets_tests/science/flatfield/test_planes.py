import numpy as np
import pytest

from astro_assets.science.flatfield.planes import (
    LuminanceVideo,
    luminance_view,
    mask_to_cells,
    mask_to_full,
    merge_planes,
    plane_offsets,
    split_mask,
    split_planes,
    view_on_plane,
)


@pytest.mark.parametrize(
    ("shape", "color", "n_planes"),
    [((6, 8), "MONO", 1), ((6, 8, 3), "RGB", 3), ((6, 8), "RGGB", 4), ((7, 9), "GBRG", 4)],
)
def test_split_then_merge_is_the_identity(shape, color, n_planes):
    image = np.random.default_rng(1).uniform(0, 1000, shape).astype(np.float32)
    planes = split_planes(image, color)
    assert len(planes) == n_planes
    np.testing.assert_array_equal(merge_planes(planes, shape, color), image)


def test_mosaic_planes_are_the_sub_lattices():
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    planes = split_planes(image, "RGGB")
    assert planes[0].tolist() == [[0, 2], [8, 10]]
    assert planes[3].tolist() == [[5, 7], [13, 15]]


def test_mosaic_luminance_removes_the_cfa_checkerboard():
    cell = np.array([[100.0, 50.0], [50.0, 20.0]])
    mosaic = np.tile(cell, (4, 5))
    view = luminance_view(mosaic, "RGGB")
    assert view.shape == (4, 5)
    np.testing.assert_allclose(view, 55.0)


def test_rgb_luminance_is_the_channel_mean():
    image = np.stack([np.full((3, 3), v) for v in (10.0, 20.0, 60.0)], axis=-1)
    np.testing.assert_allclose(luminance_view(image, "RGB"), 30.0)


def test_mask_from_cells_covers_each_2x2_pixel_block_including_odd_edges():
    cells = np.zeros((3, 4), bool)
    cells[1, 2] = True
    cells[2, 3] = True
    full = mask_to_full(cells, (7, 9), "BGGR")
    assert full.shape == (7, 9)
    assert full[2:4, 4:6].all()
    assert full[4:7, 6:9].all()
    assert full.sum() == 4 + 9


def test_split_mask_matches_planes():
    mask = np.zeros((4, 4))
    mask[1, 1] = 1.0
    planes = split_mask(mask, "RGGB")
    assert [p.sum() for p in planes] == [0, 0, 0, 1]
    assert len(split_mask(mask, "RGB")) == 3


@pytest.mark.parametrize(
    ("shape", "color", "message"),
    [
        ((4, 4), "RGB", r"must have shape \(H, W, 3\)"),
        ((4, 4, 3), "MONO", r"must have shape \(H, W\)"),
        ((2, 2), "RGGB", "at least 4x4"),
        ((4, 4), "XYZ", "unknown colour layout"),
    ],
)
def test_bad_layouts_are_refused(shape, color, message):
    with pytest.raises(ValueError, match=message):
        split_planes(np.zeros(shape), color)


def test_inputs_are_not_changed():
    image = np.random.default_rng(2).uniform(size=(6, 6)).astype(np.float32)
    before = image.copy()
    luminance_view(image, "MONO")[0, 0] = -1
    split_planes(image, "MONO")[0][0, 0] = -1
    np.testing.assert_array_equal(image, before)


def test_broadcast_mask_covers_every_channel():
    from astro_assets.science.flatfield.planes import broadcast_mask

    mask = np.array([[True, False], [False, True]])
    assert broadcast_mask(mask, (2, 2)).tolist() == mask.tolist()
    rgb = broadcast_mask(mask, (2, 2, 3))
    assert rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == [True] * 3
    assert rgb[0, 1].tolist() == [False] * 3


@pytest.mark.parametrize(
    ("shape", "color", "cell"),
    [((3, 10, 14), "MONO", 1), ((3, 10, 14, 3), "RGB", 1), ((3, 11, 15), "GBRG", 2)],
)
def test_luminance_video_gives_each_frames_luminance_view(shape, color, cell):
    frames = np.random.default_rng(5).integers(0, 4096, size=shape, dtype=np.uint16)
    video = LuminanceVideo(frames, color)
    assert len(video) == 3 and video.cell_px == cell
    for index in range(3):
        np.testing.assert_array_equal(video[index], luminance_view(frames[index], color))
        window = video.window_view(index)[1:3, 2:5]
        np.testing.assert_allclose(window, luminance_view(frames[index], color)[1:3, 2:5])
    with pytest.raises(ValueError, match="no frame"):
        LuminanceVideo(frames[:0], color)


@pytest.mark.parametrize("shape", [(6, 8), (7, 9)])
def test_mask_to_cells_marks_a_cell_where_any_of_its_pixels_is_masked(shape):
    cells = np.zeros((shape[0] // 2, shape[1] // 2), dtype=np.float32)
    cells[1, 2] = 0.5
    full = mask_to_full(cells, shape, "RGGB")
    np.testing.assert_array_equal(mask_to_cells(full, "RGGB"), cells)
    single = np.zeros(shape, dtype=np.float32)
    single[3, 4] = 0.25
    back = mask_to_cells(single, "BGGR")
    assert back[1, 2] == 0.25 and np.count_nonzero(back) == 1
    np.testing.assert_array_equal(mask_to_cells(single, "MONO"), single)
    with pytest.raises(ValueError, match="mask must be"):
        mask_to_cells(np.zeros((2, 4, 4)), "RGB")


@pytest.mark.parametrize("color", ["RGGB", "GBRG"])
def test_the_luminance_moved_by_a_planes_offset_lies_on_its_samples(color):
    # On a linear ramp, interpolation is exact: the 2x2 cell means moved by each plane's offset
    # give that plane's samples.
    rows, cols = np.indices((16, 20))
    ramp = 3.0 * rows + 7.0 * cols + 100.0
    view = luminance_view(ramp, color).astype(np.float64)
    for plane, offset in zip(split_planes(ramp, color), plane_offsets(color), strict=True):
        moved = view_on_plane(view, plane.shape, offset)
        np.testing.assert_allclose(moved[1:-1, 1:-1], plane[1:-1, 1:-1], rtol=1e-6)
    assert plane_offsets(color) == [(-0.25, -0.25), (-0.25, 0.25), (0.25, -0.25), (0.25, 0.25)]


def test_mono_and_rgb_planes_lie_on_the_luminance_pixels():
    assert plane_offsets("MONO") == [(0.0, 0.0)]
    assert plane_offsets("RGB") == plane_offsets("BGR") == [(0.0, 0.0)] * 3
