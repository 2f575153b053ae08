import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from astro_assets.science.transients import cutouts
from astro_assets.science.transients.cutouts import (
    CutoutDataset,
    candidate_pixel,
    dihedral_transform,
    extract_cutout,
)
from astro_assets.science.transients.features import FEATURE_COLUMNS

HEIGHT, WIDTH = 50, 70


def marker_tensor(row: int, column: int, channels: int = 4) -> np.ndarray:
    tensor = np.zeros((HEIGHT, WIDTH, channels), dtype=np.float32)
    tensor[row, column, 2] = 1.0
    return tensor


@pytest.mark.parametrize(
    ("coordinate", "pixel"),
    [
        (0.0, 0),
        (0.49, 0),
        (0.5, 1),
        (1.5, 2),
        (2.5, 3),
        (-0.5, 0),
        (-0.49, 0),
        (-0.51, -1),
        (3.999, 4),
        (7.0, 7),
    ],
)
def test_candidate_pixel_is_floor_of_x_plus_half(coordinate, pixel):
    assert candidate_pixel(coordinate) == pixel


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_candidate_pixel_rejects_non_finite(bad):
    with pytest.raises(ValueError, match="finite"):
        candidate_pixel(bad)


@pytest.mark.parametrize("size", [64, 65, 16])
@pytest.mark.parametrize(
    ("x", "y"),
    [
        (35.0, 20.0),  # integer
        (35.5, 20.5),  # half-integer: pixel boundary, goes to the upper pixel
        (34.5, 19.5),
        (-0.4, -0.5),  # negative, still inside the first pixel
        (0.0, 0.0),  # corner
        (WIDTH - 0.51, HEIGHT - 0.51),  # last pixel
        (WIDTH - 1.0, 3.2),  # right edge
        (2.7, HEIGHT - 1.3),  # bottom-left
    ],
)
def test_marker_at_candidate_lands_at_cutout_centre(x, y, size):
    column, row = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
    cutout = extract_cutout(marker_tensor(row, column), x, y, size=size)
    assert cutout.shape == (size, size, 5)
    assert cutout.dtype == np.float32
    assert cutout[size // 2, size // 2, 2] == 1.0
    assert cutout[..., 2].sum() == 1.0
    assert cutout[size // 2, size // 2, 4] == 1.0


def test_x_is_column_and_y_is_row():
    tensor = marker_tensor(row=45, column=5)
    assert extract_cutout(tensor, x=5, y=45)[32, 32, 2] == 1.0
    assert extract_cutout(tensor, x=45, y=5)[..., 2].sum() == 0.0


def test_interior_cutout_equals_the_image_window():
    rng = np.random.default_rng(1)
    tensor = rng.random((HEIGHT, WIDTH, 4), dtype=np.float32)
    cutout = extract_cutout(tensor, 35.2, 24.7, size=16)
    np.testing.assert_array_equal(cutout[..., :4], tensor[25 - 8 : 25 + 8, 35 - 8 : 35 + 8])
    assert (cutout[..., 4] == 1.0).all()


@pytest.mark.parametrize(
    ("row", "column", "valid_rows", "valid_columns"),
    [
        (0, 0, slice(32, 64), slice(32, 64)),
        (HEIGHT - 1, WIDTH - 1, slice(0, 33), slice(0, 33)),
        (0, WIDTH - 1, slice(32, 64), slice(0, 33)),
    ],
)
def test_edge_padding_keeps_candidate_centred(row, column, valid_rows, valid_columns):
    tensor = np.full((HEIGHT, WIDTH, 4), 0.7, dtype=np.float32)
    cutout = extract_cutout(tensor, column, row, size=64, pad_value=0.0)
    expected_valid = np.zeros((64, 64), dtype=np.float32)
    expected_valid[valid_rows, valid_columns] = 1.0
    np.testing.assert_array_equal(cutout[..., 4], expected_valid)
    np.testing.assert_array_equal(cutout[..., :4][expected_valid == 1], np.float32(0.7))
    np.testing.assert_array_equal(cutout[..., :4][expected_valid == 0], 0.0)


def test_padding_is_symmetric_about_the_candidate():
    # A window of 64 spans [c - 32, c + 31]; on a 9 x 9 image centred on its middle pixel the
    # valid block sits at the same offset from the centre on every side.
    tensor = np.ones((9, 9, 4), dtype=np.float32)
    cutout = extract_cutout(tensor, 4, 4, size=65)
    valid = cutout[..., 4]
    assert valid.sum() == 81
    np.testing.assert_array_equal(valid, valid[::-1, ::-1])
    assert valid[32 - 4 : 32 + 5, 32 - 4 : 32 + 5].all()


def test_custom_pad_value_fills_data_channels_only():
    tensor = np.ones((8, 6, 4), dtype=np.float32)
    cutout = extract_cutout(tensor, 0, 0, size=16, pad_value=-1.0)
    assert cutout[..., 4].sum() == 48
    np.testing.assert_array_equal(cutout[..., :4][cutout[..., 4] == 0], -1.0)


def test_memmap_input_and_no_mutation(tmp_path):
    rng = np.random.default_rng(2)
    tensor = rng.random((HEIGHT, WIDTH, 4), dtype=np.float32)
    np.save(tmp_path / "t.npy", tensor)
    mapped = np.load(tmp_path / "t.npy", mmap_mode="r")
    original = tensor.copy()
    tensor.setflags(write=False)
    np.testing.assert_array_equal(
        extract_cutout(mapped, 3.3, 47.9), extract_cutout(tensor, 3.3, 47.9)
    )
    np.testing.assert_array_equal(tensor, original)


@pytest.mark.parametrize(
    ("tensor", "x", "y", "size", "match"),
    [
        (np.zeros((8, 6, 4)), -0.51, 2, 64, "outside"),
        (np.zeros((8, 6, 4)), 2, 7.5, 64, "outside"),
        (np.zeros((8, 6, 4)), np.nan, 2, 64, "finite"),
        (np.zeros((8, 6)), 2, 2, 64, r"\(H, W, C\)"),
        (np.zeros((0, 6, 4)), 2, 2, 64, "empty"),
        (np.zeros((8, 6, 4)), 2, 2, 0, "positive integer"),
        (np.zeros((8, 6, 4)), 2, 2, 6.0, "positive integer"),
        (np.zeros((8, 6, 4)), 2, 2, True, "positive integer"),
    ],
)
def test_extract_cutout_rejects_bad_input(tensor, x, y, size, match):
    with pytest.raises(ValueError, match=match):
        extract_cutout(tensor, x, y, size=size)


@pytest.mark.parametrize("rotations", range(4))
@pytest.mark.parametrize("flip", [False, True])
def test_dihedral_transform_fixes_the_centre_of_odd_cutouts(rotations, flip):
    cutout = np.zeros((65, 65, 5), dtype=np.float32)
    cutout[32, 32, 2] = 1.0
    cutout[0, 5, 0] = 1.0
    out = dihedral_transform(cutout, rotations, flip)
    assert out[32, 32, 2] == 1.0
    assert out[..., 0].sum() == 1.0


def write_jobs(tmp_path, n_jobs=2, per_job=5, shape=(40, 30)):
    rng = np.random.default_rng(3)
    (tmp_path / "images").mkdir()
    rows = []
    for job in range(n_jobs):
        jid = f"job{job}"
        tensor = rng.random((*shape, 4), dtype=np.float32)
        for k in range(per_job):
            x, y = rng.uniform(-0.4, shape[1] - 0.6), rng.uniform(-0.4, shape[0] - 0.6)
            tensor[int(np.floor(y + 0.5)), int(np.floor(x + 0.5)), 2] = 5.0 + k
            rows.append(
                {
                    "id": k,
                    "jid": jid,
                    "x": x,
                    "y": y,
                    "label": k % 2,
                    "image_filename": f"images/{jid}.npy",
                    "split": "train",
                }
                | {name: float(rng.normal()) for name in FEATURE_COLUMNS}
            )
        np.save(tmp_path / "images" / f"{jid}.npy", tensor)
    return pd.DataFrame(rows)


def test_dataset_items(tmp_path):
    index = write_jobs(tmp_path)
    dataset = CutoutDataset(index, tmp_path, cutout_size=16)
    assert len(dataset) == 10
    for position in range(len(dataset)):
        cutout, features, label = dataset[position]
        assert cutout.shape == (5, 16, 16)
        assert cutout.dtype == torch.float32
        assert cutout[2, 8, 8] == 5.0 + position % 5
        np.testing.assert_array_equal(
            features.numpy(), index.loc[position, list(FEATURE_COLUMNS)].to_numpy(np.float32)
        )
        assert label.item() == (position % 5) % 2


def test_dataset_opens_each_tensor_once_as_a_memory_map(tmp_path, monkeypatch):
    index = write_jobs(tmp_path)
    calls = []
    real_load = np.load

    def recording_load(path, *args, **kwargs):
        calls.append((str(path), kwargs.get("mmap_mode")))
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(cutouts.np, "load", recording_load)
    dataset = CutoutDataset(index, tmp_path, cutout_size=16)
    for _ in range(3):
        for position in range(len(dataset)):
            dataset[position]
    assert sorted(calls) == sorted(
        (str((tmp_path / f"images/job{j}.npy").resolve()), "r") for j in range(2)
    )
    assert all(isinstance(t, np.memmap) for t in dataset._tensors.values())


def test_dataset_cache_is_bounded_and_not_pickled(tmp_path):
    index = write_jobs(tmp_path, n_jobs=3)
    dataset = CutoutDataset(index, tmp_path, cutout_size=16, max_open_tensors=1)
    for position in range(len(dataset)):
        dataset[position]
    assert len(dataset._tensors) == 1
    clone = pickle.loads(pickle.dumps(dataset))
    assert len(clone._tensors) == 0
    torch.testing.assert_close(clone[4][0], dataset[4][0])


def test_dataset_without_labels_gives_nan(tmp_path):
    index = write_jobs(tmp_path).drop(columns=["label"])
    assert torch.isnan(CutoutDataset(index, tmp_path, cutout_size=16)[0][2])


def test_augmentation_is_seeded_and_keeps_candidate_centred(tmp_path):
    index = write_jobs(tmp_path)
    first = CutoutDataset(index, tmp_path, cutout_size=16, augment=True, seed=7)
    second = CutoutDataset(index, tmp_path, cutout_size=16, augment=True, seed=7)
    plain = CutoutDataset(index, tmp_path, cutout_size=16)
    seen = set()
    for epoch in range(4):
        first.set_epoch(epoch)
        second.set_epoch(epoch)
        for position in range(len(first)):
            augmented = first[position][0]
            torch.testing.assert_close(augmented, second[position][0], rtol=0, atol=0)
            assert augmented[2, 8, 8] == 5.0 + position % 5
            reference = plain[position][0]
            torch.testing.assert_close(
                augmented[2, 6:11, 6:11].sum(), reference[2, 6:11, 6:11].sum()
            )
            seen.add(augmented[:, 6:11, 6:11].numpy().tobytes())
    assert len(seen) > 10


def test_dataset_input_is_not_modified(tmp_path):
    index = write_jobs(tmp_path)
    original = index.copy()
    CutoutDataset(index, tmp_path, cutout_size=16)[0]
    pd.testing.assert_frame_equal(index, original)


def test_dataset_rejects_paths_outside_the_dataset(tmp_path):
    index = write_jobs(tmp_path)
    index.loc[0, "image_filename"] = "../elsewhere.npy"
    with pytest.raises(ValueError, match="outside the dataset directory"):
        CutoutDataset(index, tmp_path)


def test_dataset_reports_missing_columns_files_and_bad_values(tmp_path):
    index = write_jobs(tmp_path)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['x'\]"):
        CutoutDataset(index.drop(columns=["x"]), tmp_path)
    with pytest.raises(ValueError, match="lacks feature column"):
        CutoutDataset(index.drop(columns=["flux"]), tmp_path)
    bad_xy = index.copy()
    bad_xy.loc[3, "y"] = np.nan
    with pytest.raises(ValueError, match="non-finite x/y"):
        CutoutDataset(bad_xy, tmp_path)
    (tmp_path / "images" / "job1.npy").unlink()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CutoutDataset(index, tmp_path)[9]
    np.save(tmp_path / "images" / "job1.npy", np.full((40, 30, 4), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN/inf"):
        CutoutDataset(index, tmp_path)[9]
    with pytest.raises(ValueError, match="max_open_tensors"):
        CutoutDataset(index, tmp_path, max_open_tensors=0)


def test_in_image_and_drop_outside_image(tmp_path):
    index = write_jobs(tmp_path)  # 40 rows x 30 columns
    index.loc[0, "x"] = -0.51  # column -1
    index.loc[1, "x"] = 29.49  # column 29: inside
    index.loc[6, "y"] = 39.5  # row 40
    original = index.copy()
    inside = CutoutDataset(index, tmp_path).in_image()
    assert inside.tolist() == [i not in (0, 6) for i in range(10)]
    kept, n_dropped = cutouts.drop_outside_image(index, tmp_path)
    assert n_dropped == 2
    assert kept.index.tolist() == [1, 2, 3, 4, 5, 7, 8, 9]
    pd.testing.assert_frame_equal(index, original)


def test_an_item_outside_its_image_says_to_filter_on_in_image(tmp_path):
    index = write_jobs(tmp_path)  # 40 rows x 30 columns
    index.loc[2, "x"] = 50.0
    # Built from a part of the index (a split), item 1 is the index's row 2.
    dataset = CutoutDataset(index.iloc[1:], tmp_path, cutout_size=16)
    expected = (
        f"Item 1 of the dataset (row 2 of its index, job 'job0', x=50.0, "
        f"y={index.loc[2, 'y']}) lies outside its 30 x 40 image, so it has no cutout; build the "
        'dataset from the candidates inside their image: index[index["in_image"]] (or '
        "drop_outside_image(index, dataset_dir))."
    )
    with pytest.raises(ValueError) as raised:
        dataset[1]
    assert str(raised.value) == expected
    assert dataset[0][0].shape == (5, 16, 16)
