"""temporal_median: exact equality with np.median, streaming, inputs of every layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from astro_assets.science.flatfield import median as median_module
from astro_assets.science.flatfield.median import TemporalMedianParams, temporal_median

TINY_BUDGET_MB = 0.02
"""Small enough that the 8x6 to 37x23 frames below are cut into many bands and stages."""


def reference(frames: np.ndarray, frame_step: int = 1) -> np.ndarray:
    return np.median(np.asarray(frames[::frame_step], np.float64), axis=0).astype(np.float32)


def random_video(shape: tuple[int, ...], dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        values = rng.normal(1000.0, 300.0, size=shape)
    else:
        info = np.iinfo(dtype)
        return rng.integers(
            info.min, info.max, size=shape, dtype=dtype.newbyteorder("="), endpoint=True
        ).astype(dtype)
    return values.astype(dtype)


def assert_exact(got: np.ndarray, frames: np.ndarray, frame_step: int = 1) -> None:
    expected = reference(frames, frame_step)
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("frame_count", [1, 2, 7, 10])
@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", ">u2", "int16", "float32"])
@pytest.mark.parametrize("shape", [(23, 37), (6, 8, 3)], ids=["mono", "rgb"])
def test_equals_np_median_with_many_bands_and_threads(frame_count, dtype, shape):
    frames = random_video((frame_count, *shape), dtype, seed=frame_count)
    got = temporal_median(frames, memory_budget_mb=TINY_BUDGET_MB, workers=3)
    assert_exact(got, frames)


@pytest.mark.parametrize("dtype", ["uint32", "int32", "int64", "uint64", "float16", "<f8", ">f4"])
def test_equals_np_median_for_wide_and_narrow_dtypes(dtype):
    frames = random_video((6, 9, 11), dtype)
    assert_exact(temporal_median(frames, memory_budget_mb=TINY_BUDGET_MB, workers=2), frames)


def test_int64_beyond_float64_precision_rounds_like_np_median():
    base = np.int64(2**62 + 1)
    frames = (base + np.arange(5 * 4 * 4, dtype=np.int64).reshape(5, 4, 4) * 3).astype(np.int64)
    assert_exact(temporal_median(frames, memory_budget_mb=TINY_BUDGET_MB), frames)


@pytest.mark.parametrize("frame_step", [2, 3, 7])
@pytest.mark.parametrize("frame_count", [9, 12])
def test_frame_step_selects_every_kth_frame(frame_step, frame_count):
    frames = random_video((frame_count, 13, 17), "uint16", seed=frame_step)
    got = temporal_median(frames, frame_step=frame_step, memory_budget_mb=TINY_BUDGET_MB)
    assert_exact(got, frames, frame_step)


def test_cfa_mosaic_keeps_each_raw_pixel_separate():
    # A Bayer-like mosaic: each raw pixel has its own level, which the median must keep.
    pattern = np.array([[1000, 2000], [3000, 4000]], dtype=np.uint16)
    mosaic = np.tile(pattern, (5, 7))
    noise = random_video((9, 10, 14), "uint8", seed=4).astype(np.uint16)
    frames = mosaic + noise
    got = temporal_median(frames, memory_budget_mb=TINY_BUDGET_MB, workers=2)
    assert_exact(got, frames)
    assert got.shape == (10, 14)


def test_rgb_channels_stay_in_place_and_reversed_views_work():
    frames = np.zeros((5, 4, 6, 3), dtype=np.uint16)
    frames[..., 0], frames[..., 1], frames[..., 2] = 100, 200, 300
    frames += random_video((5, 4, 6, 3), "uint8", seed=5).astype(np.uint16) % 50
    reversed_view = frames[..., ::-1]
    got = temporal_median(reversed_view, memory_budget_mb=TINY_BUDGET_MB, workers=2)
    assert_exact(got, reversed_view)
    assert np.all(got[..., 0] >= 300)
    assert np.all(got[..., 2] < 300)


def test_band_height_that_does_not_divide_the_image():
    frames = random_video((8, 29, 31), "uint16", seed=6)
    plan = median_module._plan_bands(
        frame_count=8,
        height=29,
        width=31,
        channels=1,
        work_itemsize=2,
        staging_itemsize=0,
        budget_bytes=12_000,
        workers=2,
    )
    bands = [band for stage in plan.stages() for band in stage]
    rows = {band.rows for band in bands}
    assert len(bands) > 2
    assert 29 % max(rows) != 0
    budget_mb = (12_000 + frames[0].size * 4) / 2**20
    assert_exact(temporal_median(frames, memory_budget_mb=budget_mb, workers=2), frames)


def test_a_budget_below_one_row_splits_rows_into_pieces():
    frames = random_video((40, 5, 64), "uint16", seed=7)
    plan = median_module._plan_bands(
        frame_count=40,
        height=5,
        width=64,
        channels=1,
        work_itemsize=2,
        staging_itemsize=0,
        budget_bytes=16_000,
        workers=1,
    )
    assert all(
        band.rows == 1 and band.col1 - band.col0 < 64 for stage in plan.stages() for band in stage
    )
    budget_mb = (16_000 + frames[0].size * 4) / 2**20
    assert_exact(temporal_median(frames, memory_budget_mb=budget_mb, workers=1), frames)


def test_nan_follows_np_median_and_infinities_take_part():
    frames = random_video((6, 5, 4), "float32", seed=8)
    frames[2, 1, 1] = np.nan
    frames[:, 2, 2] = [-np.inf, np.inf, 1, 2, np.inf, -np.inf]
    frames[:3, 3, 3] = np.inf
    got = temporal_median(frames, memory_budget_mb=TINY_BUDGET_MB, workers=2)
    assert np.isnan(got[1, 1])
    assert_exact(got, frames)


def test_does_not_change_its_input():
    frames = random_video((7, 12, 10, 3), ">u2", seed=9)
    before = frames.copy()
    temporal_median(frames, memory_budget_mb=TINY_BUDGET_MB, workers=2)
    np.testing.assert_array_equal(frames, before)
    assert frames.dtype == np.dtype(">u2")


def test_accepts_nested_lists():
    frames = [[[1, 5], [3, 2]], [[2, 4], [9, 9]], [[7, 1], [1, 0]]]
    np.testing.assert_array_equal(
        temporal_median(frames), np.array([[2, 4], [3, 2]], dtype=np.float32)
    )


def write_memmap(path: Path, frames: np.ndarray, header_bytes: int, dtype: str) -> np.memmap:
    with path.open("wb") as stream:
        stream.write(b"H" * header_bytes)
        stream.write(frames.astype(dtype).tobytes())
    return np.memmap(path, dtype=dtype, mode="r", offset=header_bytes, shape=frames.shape)


@pytest.mark.parametrize("dtype", ["<u2", ">u2", "u1", "<f4"])
@pytest.mark.parametrize("frame_step", [1, 2])
def test_read_only_memmap_is_read_from_its_file(tmp_path, dtype, frame_step):
    frames = random_video((9, 11, 13), dtype, seed=10)
    mapped = write_memmap(tmp_path / "video.bin", frames, 178, dtype)
    assert not mapped.flags.writeable
    source = median_module._open_source(mapped[::frame_step, ..., np.newaxis], np.dtype(dtype))
    assert isinstance(source, median_module._FileSource)
    got = temporal_median(mapped, frame_step=frame_step, memory_budget_mb=TINY_BUDGET_MB, workers=2)
    assert_exact(got, frames, frame_step)


def test_views_of_a_memmap_like_a_ser_reader_makes(tmp_path):
    # A little-endian map viewed as big-endian RGB, channels reversed (BGR file), cropped.
    frames = random_video((6, 7, 9, 3), ">u2", seed=11)
    raw = frames.view("<u2")
    mapped = write_memmap(tmp_path / "video.bin", raw, 178, "<u2")
    view = np.asarray(mapped).view(">u2")[..., ::-1]
    got = temporal_median(view, memory_budget_mb=TINY_BUDGET_MB, workers=2)
    assert_exact(got, view)
    cropped = view[:, 1:5, 2:8]
    got = temporal_median(cropped, memory_budget_mb=TINY_BUDGET_MB, workers=2)
    assert_exact(got, cropped)


def test_copy_on_write_memmap_is_read_through_the_map(tmp_path):
    frames = random_video((5, 6, 7), "<u2", seed=12)
    path = tmp_path / "video.bin"
    write_memmap(path, frames, 16, "<u2")
    private = np.memmap(path, dtype="<u2", mode="c", offset=16, shape=frames.shape)
    private[0] = 65535
    private[1] = 65535
    private[2] = 65535
    assert_exact(temporal_median(private, memory_budget_mb=TINY_BUDGET_MB), np.asarray(private))


def test_truncated_file_behind_a_map_raises(tmp_path):
    frames = random_video((5, 6, 7), "<u2", seed=13)
    path = tmp_path / "video.bin"
    mapped = write_memmap(path, frames, 16, "<u2")
    detached = median_module._FileSource(mapped[..., np.newaxis], np.dtype("<u2"), str(path), 16)
    with path.open("r+b") as stream:
        stream.truncate(16 + frames[0].nbytes)
    plan = median_module._plan_bands(
        frame_count=5,
        height=6,
        width=7,
        channels=1,
        work_itemsize=2,
        staging_itemsize=0,
        budget_bytes=1e6,
        workers=1,
    )
    stage = np.empty((plan.bands_per_stage, 5, plan.band_values), np.uint16)
    with detached, pytest.raises(ValueError, match="shorter than its memory map"):
        detached.read(plan.stages()[0], stage)


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        (np.zeros((4, 5), np.uint16), r"shape \(n, h, w\) or \(n, h, w, 3\)"),
        (np.zeros((4, 5, 6, 2), np.uint16), r"shape \(n, h, w\) or \(n, h, w, 3\)"),
        (np.zeros((2, 3, 4, 3, 1), np.uint16), r"shape \(n, h, w\) or \(n, h, w, 3\)"),
        (np.zeros((0, 5, 6), np.uint16), "no frame"),
        (np.zeros((3, 0, 6), np.uint16), "no pixels"),
        (np.zeros((3, 5, 0, 3), np.uint16), "no pixels"),
        (np.zeros((3, 5, 6), bool), "integer or floating-point"),
        (np.zeros((3, 5, 6), np.complex64), "integer or floating-point"),
        (np.full((3, 2, 2), "a"), "integer or floating-point"),
    ],
)
def test_bad_frames_raise(frames, match):
    with pytest.raises(ValueError, match=match):
        temporal_median(frames)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"frame_step": 0}, "frame_step must be an integer >= 1"),
        ({"frame_step": 1.5}, "frame_step must be an integer >= 1"),
        ({"frame_step": True}, "frame_step must be an integer >= 1"),
        ({"memory_budget_mb": 0}, "finite number > 0"),
        ({"memory_budget_mb": -3.0}, "finite number > 0"),
        ({"memory_budget_mb": float("nan")}, "finite number > 0"),
        ({"memory_budget_mb": "256"}, "number of MiB"),
        ({"workers": 0}, "workers must be an integer >= 1 or None"),
        ({"workers": 2.0}, "workers must be an integer >= 1 or None"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        temporal_median(np.zeros((3, 4, 5), np.uint16), **kwargs)


def test_budget_too_small_for_the_frames_says_how_much_is_needed():
    frames = np.zeros((200, 4, 5), np.uint16)
    with pytest.raises(ValueError, match=r"too small for 200 frames of 4x5x1: at least .* MiB"):
        temporal_median(frames, memory_budget_mb=0.001)


def test_budget_for_one_thread_only_uses_one_thread():
    plan = median_module._plan_bands(
        frame_count=100,
        height=10,
        width=10,
        channels=1,
        work_itemsize=2,
        staging_itemsize=0,
        budget_bytes=16 * 100 * 8 * 1.5,
        workers=8,
    )
    assert plan.workers == 1


def test_params_defaults():
    params = TemporalMedianParams()
    assert (params.memory_budget_mb, params.frame_step, params.workers) == (256.0, 1, None)


def test_tiny_budget_used_above_gives_several_stages_and_threads():
    plan = median_module._plan_bands(
        frame_count=10,
        height=23,
        width=37,
        channels=1,
        work_itemsize=2,
        staging_itemsize=0,
        budget_bytes=TINY_BUDGET_MB * 2**20 - 23 * 37 * 4,
        workers=3,
    )
    assert plan.workers == 3
    assert len(plan.stages()) >= 2 * plan.workers
