"""temporal_median: exact equality with np.median, streaming, inputs of every layout.

Integers of at most 16 bits take the counting path (numba kernels), other dtypes the
sorting path; both are checked against np.median on the same cases.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest

from astro_assets.science.flatfield import median as median_module
from astro_assets.science.flatfield.median import TemporalMedianParams, temporal_median

TINY_BUDGET_MB = 0.02
"""Small enough that the 8x6 to 37x23 frames below are cut into many spans (or bands)."""


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
@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", ">u2", "int16", ">i2", "float32"])
@pytest.mark.parametrize("shape", [(23, 37), (6, 8, 3)], ids=["mono", "rgb"])
def test_equals_np_median_with_many_spans_and_threads(frame_count, dtype, shape):
    frames = random_video((frame_count, *shape), dtype, seed=frame_count)
    got = temporal_median(frames, memory_budget_mb=TINY_BUDGET_MB, workers=3)
    assert_exact(got, frames)


@pytest.mark.parametrize("dtype", ["uint32", "int32", "int64", "uint64", "float16", "<f8", ">f4"])
def test_equals_np_median_for_wide_and_narrow_dtypes(dtype):
    frames = random_video((6, 9, 11), dtype)
    assert_exact(temporal_median(frames, memory_budget_mb=TINY_BUDGET_MB, workers=2), frames)


@pytest.mark.parametrize("frame_count", [1, 2, 3, 4, 9, 16, 31, 64])
def test_counting_and_sorting_paths_agree(frame_count):
    # The same values as uint16 (counted) and as float32 and int32 (sorted).
    frames = random_video((frame_count, 11, 13), "uint16", seed=20 + frame_count)
    counted = temporal_median(frames, memory_budget_mb=TINY_BUDGET_MB, workers=2)
    for wider in ("float32", "int32"):
        sorted_ = temporal_median(frames.astype(wider), memory_budget_mb=TINY_BUDGET_MB)
        np.testing.assert_array_equal(counted, sorted_)
    assert_exact(counted, frames)


def test_int64_beyond_float64_precision_rounds_like_np_median():
    base = np.int64(2**62 + 1)
    frames = (base + np.arange(5 * 4 * 4, dtype=np.int64).reshape(5, 4, 4) * 3).astype(np.int64)
    assert_exact(temporal_median(frames, memory_budget_mb=TINY_BUDGET_MB), frames)


@pytest.mark.parametrize("frame_step", [2, 3, 7])
@pytest.mark.parametrize("frame_count", [9, 12])
@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_frame_step_selects_every_kth_frame(frame_step, frame_count, dtype):
    frames = random_video((frame_count, 13, 17), dtype, seed=frame_step)
    got = temporal_median(frames, frame_step=frame_step, memory_budget_mb=TINY_BUDGET_MB)
    assert_exact(got, frames, frame_step)


LISTED_FRAMES = {
    "irregular": [0, 1, 4, 5, 6, 10],
    "evenly spaced": [2, 5, 8, 11],
    "one frame": [7],
    "all but the first": list(range(1, 12)),
}


@pytest.mark.parametrize("listed", LISTED_FRAMES.values(), ids=LISTED_FRAMES.keys())
@pytest.mark.parametrize("dtype", ["uint8", ">u2", "int16", "float32"])
@pytest.mark.parametrize("shape", [(13, 17), (5, 7, 3)], ids=["mono", "rgb"])
def test_frame_indices_select_the_listed_frames(listed, dtype, shape):
    frames = random_video((12, *shape), dtype, seed=len(listed))
    got = temporal_median(frames, frame_indices=listed, memory_budget_mb=TINY_BUDGET_MB, workers=3)
    assert_exact(got, frames[listed])


@pytest.mark.parametrize("listed", LISTED_FRAMES.values(), ids=LISTED_FRAMES.keys())
@pytest.mark.parametrize("dtype", ["<u2", ">u2", "u1", "<f4"])
def test_frame_indices_of_a_memmap_are_read_from_its_file(tmp_path, listed, dtype):
    frames = random_video((12, 11, 13), dtype, seed=20)
    mapped = write_memmap(tmp_path / "video.bin", frames, 178, dtype)
    got = temporal_median(mapped, frame_indices=listed, memory_budget_mb=TINY_BUDGET_MB, workers=2)
    assert_exact(got, frames[listed])


LISTED_BUDGET_MB = 8.0


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_listed_frames_of_an_array_stay_within_the_memory_budget(dtype):
    import tracemalloc

    frames = random_video((200, 150, 400), dtype, seed=22)
    listed = np.delete(np.arange(200), [3, 50, 51, 120])
    # Loading the compiled kernels allocates too: done before memory is traced.
    temporal_median(frames[:3, :2], frame_indices=[0, 2])
    tracemalloc.start()
    try:
        got = temporal_median(frames, frame_indices=listed, memory_budget_mb=LISTED_BUDGET_MB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= LISTED_BUDGET_MB * 2**20
    assert_exact(got, frames[listed])


def test_two_listed_frames_of_a_reversed_rgb_memmap(tmp_path):
    frames = random_video((6, 9, 11, 3), "<u2", seed=23)
    mapped = write_memmap(tmp_path / "video.bin", frames, 31, "<u2")
    got = temporal_median(
        mapped[..., ::-1], frame_indices=[1, 4], memory_budget_mb=TINY_BUDGET_MB, workers=3
    )
    assert_exact(got, frames[[1, 4]][..., ::-1])


def test_left_out_frames_do_not_move_the_median():
    # Three blank frames of ten pull every pixel's median of the rest towards its darker
    # values; listed without them, the median is that of the lit frames alone.
    lit = random_video((7, 9, 10), "uint16", seed=21) // 2 + 1000
    frames = np.concatenate([np.zeros((3, 9, 10), np.uint16), lit])
    assert (temporal_median(frames) < reference(lit)).any()
    assert_exact(temporal_median(frames, frame_indices=range(3, 10)), lit)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frame_indices": []}, "non-empty 1-D"),
        ({"frame_indices": [[1, 2]]}, "non-empty 1-D"),
        ({"frame_indices": [0.0, 1.0]}, "integer frame numbers"),
        ({"frame_indices": [True, False]}, "integer frame numbers"),
        ({"frame_indices": [3, 1]}, "strictly increasing"),
        ({"frame_indices": [1, 1, 2]}, "strictly increasing"),
        ({"frame_indices": [-1, 2]}, r"in \[0, 6\)"),
        ({"frame_indices": [2, 6]}, r"in \[0, 6\)"),
        ({"frame_indices": [1, 2], "frame_step": 2}, "not both"),
    ],
)
def test_bad_frame_indices_are_refused(kwargs, message):
    frames = random_video((6, 4, 5), "uint16")
    with pytest.raises(ValueError, match=message):
        temporal_median(frames, **kwargs)


@pytest.mark.parametrize("frame_count", [5, 6])
@pytest.mark.parametrize(
    ("dtype", "low", "high"),
    [("uint16", 0, 65535), ("int16", -32768, 32767), ("uint8", 0, 255), ("int8", -128, 127)],
)
def test_extreme_values_of_the_dtype(frame_count, dtype, low, high):
    # Medians at the ends of the range, and the widest spread a pixel can have.
    frames = np.full((frame_count, 4, 5), low, dtype=dtype)
    frames[:, 0] = high
    frames[: frame_count // 2 + 1, 1] = high
    frames[:2, 2] = high
    frames[:, 3, :2] = [low + 1, high - 1]
    frames[-1, 3, 2:] = high
    got = temporal_median(frames, memory_budget_mb=TINY_BUDGET_MB)
    assert_exact(got, frames)
    assert got[0, 0] == high and got[3, 3] == low


@pytest.mark.parametrize("frame_count", [7, 8])
def test_ties_and_few_distinct_values(frame_count):
    rng = np.random.default_rng(30)
    frames = rng.choice(np.array([3, 1000, 1001, 65534], np.uint16), size=(frame_count, 9, 10))
    assert_exact(temporal_median(frames, memory_budget_mb=TINY_BUDGET_MB, workers=2), frames)
    constant = np.full((frame_count, 3, 4), 4242, np.uint16)
    assert_exact(temporal_median(constant), constant)


@pytest.mark.parametrize("frame_count", [9, 10])
def test_left_aligned_12_bit_data_and_constant_low_bits(frame_count):
    # 12-bit samples stored in the top bits (low 4 bits zero), then the same with the low
    # bits all set: only the first lets the counting skip bits.
    rng = np.random.default_rng(31)
    twelve_bit = rng.integers(0, 4096, size=(frame_count, 15, 21)).astype(np.uint16) << 4
    assert_exact(temporal_median(twelve_bit, workers=2), twelve_bit)
    low_bits_set = twelve_bit | np.uint16(0xF)
    assert_exact(temporal_median(low_bits_set, workers=2), low_bits_set)


@pytest.mark.parametrize("frame_count", [24, 25])
@pytest.mark.parametrize("spread_bits", [1, 3, 5, 9, 12, 16])
@pytest.mark.parametrize("zero_low_bits", [0, 3, 6])
def test_every_split_between_byte_and_16_bit_searches(frame_count, spread_bits, zero_low_bits):
    # The top bits of each tile's spread are searched on byte keys when there are at least
    # four of them, the rest on 16-bit keys; low bits zero in every value are skipped.
    rng = np.random.default_rng(36)
    bits = max(spread_bits - zero_low_bits, 0)
    offsets = rng.integers(0, 2**bits, size=(frame_count, 7, 70), dtype=np.int64)
    level = (rng.integers(0, 2**16 - 2**spread_bits + 1, size=(7, 70)) >> zero_low_bits) << (
        zero_low_bits
    )
    frames = (level + (offsets << zero_low_bits)).astype(np.uint16)
    assert_exact(temporal_median(frames, workers=2), frames)
    assert_exact(temporal_median(frames.astype(np.int16), workers=1), frames.astype(np.int16))


def median_of_keys(data: np.ndarray, tile: int) -> np.ndarray:
    """Run the counting kernel on uint16 ``data`` (frames, values) with tiles of ``tile``."""
    frame_count, values = data.shape
    keys = np.zeros((frame_count, median_module._key_row_values(values)), np.uint16)
    keys[:, :values] = data
    out = np.full(values, np.nan, np.float32)
    median_module._median_of_keys(
        keys, 0, values, tile, False, 0, out, median_module._new_guessing_state()
    )
    return out


def window_columns(frame_count: int, spread: int, rng: np.random.Generator) -> np.ndarray:
    """Columns whose median falls at every position of the window the first byte round
    leaves: many levels, a shared spread, so the lower middle value also falls below the
    window and at its edges."""
    columns = 96
    offsets = rng.integers(0, spread + 1, size=(frame_count, columns), dtype=np.int64)
    offsets[:, 0] = 0
    offsets[:, 1] = spread
    offsets[: frame_count // 2, 2] = 0
    offsets[frame_count // 2 :, 2] = spread
    # Middle values wide apart: a low half near 0 and a high half at every offset.
    offsets[:, 3:] = np.where(np.arange(frame_count)[:, None] < frame_count // 2, 0, offsets[:, 3:])
    level = rng.integers(0, 65536 - spread, size=columns, dtype=np.int64)
    return (level + offsets).astype(np.uint16)


@pytest.mark.parametrize("frame_count", [2, 3, 16, 17, 250, 251])
@pytest.mark.parametrize("spread", [1, 7, 255, 256, 2047, 4097, 40000, 65535])
def test_window_search_on_byte_keys_places_the_median_anywhere(frame_count, spread):
    # The low bits are searched on byte keys of the window left by the top bits, saturated
    # below and above it; for an even count the value below the upper middle is read from
    # the same keys, or looked up when it lies below the window.
    rng = np.random.default_rng(spread + frame_count)
    data = window_columns(frame_count, spread, rng)
    np.testing.assert_array_equal(median_of_keys(data, 32), reference(data))
    noisy = rng.integers(0, spread + 1, size=data.shape).astype(np.uint16) + data // 2
    np.testing.assert_array_equal(median_of_keys(noisy, 64), reference(noisy))


@pytest.mark.parametrize("frame_count", [6, 7, 40, 41])
@pytest.mark.parametrize("zero_low_bits", [0, 2, 4])
def test_window_search_with_outliers_at_both_ends_and_ties(frame_count, zero_low_bits):
    # Outliers at 0 and 65535 make the spread 16 bits, so the window is 256 levels wide
    # with no margin; ties and 12-bit left-aligned data on top.
    rng = np.random.default_rng(40 + frame_count + zero_low_bits)
    level = rng.integers(1000, 60000, size=64)
    data = (level + rng.normal(0, 300, size=(frame_count, 64))).astype(np.int64)
    data = np.clip(data, 0, 65535) >> zero_low_bits << zero_low_bits
    data[0, ::3] = 0
    data[-1, 1::3] = 65535 >> zero_low_bits << zero_low_bits
    data[:, 5] = data[0, 6]
    data[: frame_count // 2, 7] = 0
    data = data.astype(np.uint16)
    np.testing.assert_array_equal(median_of_keys(data, 32), reference(data))
    assert_exact(
        temporal_median(data.reshape(frame_count, 8, 8), workers=2), data.reshape(-1, 8, 8)
    )


def test_window_keys_are_clamped_offsets():
    rng = np.random.default_rng(41)
    keys = rng.integers(0, 65536, size=(9, 40), dtype=np.uint16)
    window_low = rng.integers(0, 65536, size=40).astype(np.uint16)
    for unit in (0, 1, 5, 8):
        coarse = np.full((9, 40), 7, np.uint8)
        median_module._build_window_keys(keys, 0, 40, window_low, unit, coarse)
        offsets = (keys.astype(np.int64) - window_low.astype(np.int64)) >> unit
        np.testing.assert_array_equal(coarse, np.clip(offsets, 0, 255))


@pytest.mark.parametrize("frame_count", [3, 247, 248, 249, 600])
def test_byte_count_and_largest_below_match_numpy(frame_count):
    # Counted in 8-bit lanes in chunks of 248 frames, which must not overflow.
    rng = np.random.default_rng(frame_count)
    coarse = rng.integers(0, 256, size=(frame_count, 50), dtype=np.uint8)
    coarse[:, 0] = 0
    threshold = rng.integers(0, 256, size=50).astype(np.uint8)
    threshold[1] = 255
    counts = np.empty(50, np.int64)
    below = np.empty(50, np.uint8)
    lanes = np.empty(50, np.uint8)
    median_module._count_coarse_and_max_below(coarse, 50, threshold, lanes, counts, below)
    is_below = coarse < threshold
    np.testing.assert_array_equal(counts, is_below.sum(axis=0))
    np.testing.assert_array_equal(below, np.where(is_below, coarse, 0).max(axis=0))


@pytest.mark.parametrize("frame_count", [41, 42])
def test_narrow_noise_around_levels_that_vary_across_the_image(frame_count):
    # Like a real video: smooth levels over the image, a little noise over time, so that
    # tiles hold pixels with very different levels and spreads.
    rng = np.random.default_rng(32)
    level = np.linspace(100, 60000, 29 * 31).reshape(29, 31)
    noise = rng.normal(0, 1, size=(frame_count, 29, 31)) * (5 + 0.02 * level)
    frames = np.clip(level + noise, 0, 65535).astype(np.uint16)
    assert_exact(temporal_median(frames, workers=2), frames)


@pytest.mark.parametrize("frame_count", [99, 100])
@pytest.mark.parametrize("values", [1, 31, 32, 100])
def test_kernel_with_several_tiles_and_a_partial_one(frame_count, values):
    rng = np.random.default_rng(33)
    data = rng.integers(0, 2**16, size=(frame_count, values), dtype=np.uint16)
    keys = np.zeros((frame_count, median_module._key_row_values(values)), np.uint16)
    keys[:, :values] = data
    out = np.full(values, np.nan, np.float32)
    median_module._median_of_keys(
        keys, 0, values, 32, False, 0, out, median_module._new_guessing_state()
    )
    np.testing.assert_array_equal(out, reference(data))


def test_kernel_swaps_bytes_and_flips_signed_keys():
    rng = np.random.default_rng(34)
    data = rng.integers(-(2**15), 2**15, size=(12, 40), dtype=np.int16)
    keys = np.zeros((12, median_module._key_row_values(40)), np.uint16)
    keys[:, :40] = data.astype(">i2").view(np.uint16)
    out = np.empty(40, np.float32)
    median_module._median_of_keys(
        keys, 0, 40, 32, True, 0x8000, out, median_module._new_guessing_state()
    )
    np.testing.assert_array_equal(out, reference(data))


def run_kernel(data: np.ndarray, tile: int, guessing: np.ndarray) -> np.ndarray:
    """Run the counting kernel on uint16 ``data`` (frames, values) with a given state of
    its mean-centred windows (updated in place)."""
    frame_count, values = data.shape
    keys = np.zeros((frame_count, median_module._key_row_values(values)), np.uint16)
    keys[:, :values] = data
    out = np.full(values, np.nan, np.float32)
    median_module._median_of_keys(keys, 0, values, tile, False, 0, out, guessing)
    return out


def test_kernel_searches_and_touches_only_the_columns_from_first_on():
    # A thread of a pair searches its share of a span's columns in the shared buffer: the
    # other thread's keys must not be swapped or written, nor its results.
    rng = np.random.default_rng(35)
    data = rng.integers(-(2**15), 2**15, size=(11, 100), dtype=np.int16)
    keys = np.zeros((11, median_module._key_row_values(100)), np.uint16)
    keys[:, :100] = data.astype(">i2").view(np.uint16)
    before = keys.copy()
    out = np.full(100, np.nan, np.float32)
    median_module._median_of_keys(
        keys, 64, 100, 32, True, 0x8000, out, median_module._new_guessing_state()
    )
    assert np.isnan(out[:64]).all()
    np.testing.assert_array_equal(out[64:], reference(data)[64:])
    np.testing.assert_array_equal(keys[:, :64], before[:, :64])


def noisy_columns(frame_count: int, columns: int, sigma: float, seed: int) -> np.ndarray:
    """Gaussian noise of ``sigma`` around a level of its own per column: a spread of about
    6 sigma, mostly in the tails, with the median within a few hundredths of sigma of the
    mean for a few hundred frames."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(5 * sigma, 65535 - 5 * sigma, size=columns)
    return np.rint(level + rng.normal(0.0, sigma, size=(frame_count, columns)))


def far_from_the_mean(frame_count: int, level: float, separation: float, seed: int) -> np.ndarray:
    """A column whose median lies far from its mean: 60 % of its values in a second mode
    ``separation`` above the first (each mode 1/15 of that wide)."""
    rng = np.random.default_rng(seed)
    values = level + rng.normal(0.0, separation / 15, size=frame_count)
    values[: frame_count * 3 // 5] += separation
    return np.rint(rng.permutation(values))


@pytest.mark.parametrize("frame_count", [200, 201])
@pytest.mark.parametrize("zero_low_bits", [0, 4])
def test_mean_centred_windows_place_medians_and_columns_that_miss_are_searched_alone(
    frame_count, zero_low_bits
):
    columns = 1024
    level = 2**zero_low_bits
    # 12 bits of levels: a spread of about 2,200 levels.
    data = noisy_columns(frame_count, columns, sigma=400.0 * level, seed=7)
    far = [3, 100, 511, 700, 1000]
    for number, column in enumerate(far):
        data[:, column] = far_from_the_mean(frame_count, 20000.0, 1000.0 * level, seed=number)
    # The lower middle of an even count 300 levels below the upper middle, which is the
    # mean: below the window of 128 levels on each side.
    middle = 30000
    split = np.full(frame_count, float(middle))
    below, above = (frame_count - 1) // 2, frame_count // 2
    split[:below] = middle - 1000 * level
    split[below] = middle - 300 * level
    split[frame_count - above + 1 :] = middle + 1000 * level
    split[-1] += 300 * level + 1000 * level * (below - above + 1)
    assert split.mean() == middle
    data[:, 20] = split
    # Medians at the lowest value, 100 levels below the mean (the window starts there),
    # and at 0 (a window that would start below 0).
    lowest = data[:, 21].min()
    data[:, 21] = np.where(np.arange(frame_count) % 2 == 0, lowest, lowest + 200 * level)
    data[:, 22] = np.where(np.arange(frame_count) % 3 == 0, 300.0 * level, 0.0)
    # A median at the top key of its window, which is the column's highest value: the
    # window starts 128 levels below the mean and holds 255 levels, so 60 % of the values
    # at ``d`` levels above the rest put the median there when d - floor(0.6 d) = 127.
    high = frame_count * 3 // 5
    d = next(d for d in range(200, 400) if d - (d * high) // frame_count == 127)
    data[:, 23] = np.where(np.arange(frame_count) < high, 25000.0 + d * level, 25000.0)
    # The medians of these lie outside their windows: the far columns, and for an odd
    # count the split one, whose median is its value 300 levels below the mean.
    alone = len(far) + frame_count % 2
    data = (np.clip(data, 0, 65535).astype(np.int64) >> zero_low_bits << zero_low_bits).astype(
        np.uint16
    )
    guessing = median_module._new_guessing_state()

    np.testing.assert_array_equal(run_kernel(data, columns, guessing), reference(data))
    tiles_placed, columns_alone = guessing[2], guessing[3]
    assert tiles_placed == 1
    assert columns_alone == alone


@pytest.mark.parametrize("frame_count", [60, 61])
def test_tiles_with_many_misses_are_searched_from_the_top_and_windows_pause(frame_count):
    columns = 256
    data = np.stack(
        [far_from_the_mean(frame_count, 20000.0 + 10 * c, 3000.0, seed=c) for c in range(columns)],
        axis=1,
    ).astype(np.uint16)
    data[0, 0] = 65535
    guessing = median_module._new_guessing_state()

    np.testing.assert_array_equal(run_kernel(data, 64, guessing), reference(data))
    # Tile 1 missed: 4 tiles of pause, of which tiles 2-4 are 3; the next pause is 8.
    assert guessing[:4].tolist() == [1, 8, 0, 0]
    np.testing.assert_array_equal(run_kernel(data, 64, guessing), reference(data))
    # Tile 1 of this call ends the pause, tile 2 misses: 8 tiles, 2 of them done.
    assert guessing[:4].tolist() == [6, 16, 0, 0]
    guessing[:2] = [0, 64]
    run_kernel(data, 64, guessing)
    assert guessing[1] == median_module._GUESS_MAX_PAUSE_TILES
    assert guessing[0] == median_module._GUESS_MAX_PAUSE_TILES - 3


def test_a_placed_tile_resets_the_pause():
    noisy = noisy_columns(301, 128, sigma=500.0, seed=9).astype(np.uint16)
    guessing = np.array([0, 32, 0, 0, 0, 1], np.int64)

    np.testing.assert_array_equal(run_kernel(noisy, 64, guessing), reference(noisy))
    assert guessing[:4].tolist() == [0, median_module._GUESS_PAUSE_TILES, 2, 0]


def guessing_state(*, paused: int = 0, measure_in: int = 0, wide: bool = True) -> np.ndarray:
    """A state of the mean-centred windows: ``paused`` tiles of pause left, the spread to be
    measured again in ``measure_in`` tiles, the last one measured ``wide`` or not."""
    state = median_module._new_guessing_state()
    state[0], state[4], state[5] = paused, measure_in, int(wide)
    return state


@pytest.mark.parametrize("frame_count", [120, 121])
@pytest.mark.parametrize("zero_low_bits", [0, 4])
def test_windows_place_tiles_between_measurements_of_the_spread(frame_count, zero_low_bits):
    # Tiles between two measurements of the spread are searched with their sums alone (no
    # minimum or maximum): medians at the lowest and highest values, and columns whose
    # medians lie far from their means, must still come out exact.
    columns, tile = 256, 64
    level = 2**zero_low_bits
    data = noisy_columns(frame_count, columns, sigma=300.0 * level, seed=11)
    data[:, 70] = far_from_the_mean(frame_count, 30000.0, 1000.0 * level, seed=1)
    data[:, 140] = np.where(np.arange(frame_count) % 2 == 0, 0.0, 200.0 * level)
    data[:, 141] = np.where(np.arange(frame_count) % 2 == 0, 65535.0, 65535.0 - 200.0 * level)
    data = (np.clip(data, 0, 65535).astype(np.int64) >> zero_low_bits << zero_low_bits).astype(
        np.uint16
    )
    guessing = guessing_state(measure_in=median_module._SPREAD_CHECK_TILES)

    np.testing.assert_array_equal(run_kernel(data, tile, guessing), reference(data))
    tiles_placed, columns_alone, measure_in = guessing[2], guessing[3], guessing[4]
    assert tiles_placed == columns // tile
    assert columns_alone >= 1
    assert measure_in == median_module._SPREAD_CHECK_TILES - columns // tile


@pytest.mark.parametrize("measure_in", [0, 5])
@pytest.mark.parametrize("wide", [True, False])
def test_tiles_whose_windows_miss_are_searched_from_the_top_in_every_state(measure_in, wide):
    # Windows tried with or without the extremes, after a narrow or a wide spread: where
    # they miss, the tile is searched from the top with its true extremes.
    frame_count, columns = 61, 128
    data = np.stack(
        [far_from_the_mean(frame_count, 20000.0 + 10 * c, 3000.0, seed=c) for c in range(columns)],
        axis=1,
    ).astype(np.uint16)
    guessing = guessing_state(measure_in=measure_in, wide=wide)

    np.testing.assert_array_equal(run_kernel(data, columns, guessing), reference(data))
    assert guessing[2] == 0
    assert guessing[0] == median_module._GUESS_PAUSE_TILES


def test_a_narrow_spread_measured_turns_the_windows_off_until_a_wide_one():
    # Every _SPREAD_CHECK_TILES tiles the extremes are measured: a narrow spread (here 6
    # bits) stops the windows, which the next wide tile, measured at once, takes up again.
    tile = 32
    wide = noisy_columns(101, tile, sigma=500.0, seed=12)
    narrow = 30000 + np.random.default_rng(13).integers(-30, 31, size=(101, tile))
    data = np.concatenate([wide, narrow, narrow, wide], axis=1).astype(np.uint16)
    guessing = guessing_state(measure_in=1)

    np.testing.assert_array_equal(run_kernel(data, tile, guessing), reference(data))
    # Tile 1: windows without extremes; tile 2: measured narrow, off; tile 3: measured
    # narrow again; tile 4: measured wide, placed by the windows.
    assert guessing[2] == 2
    assert guessing[5] == 1
    assert guessing[4] == median_module._SPREAD_CHECK_TILES


@pytest.mark.parametrize("dtype", [">u2", "<i2", ">i2"])
def test_mean_centred_windows_at_both_ends_of_the_range(dtype):
    # Saturated and black pixels: clipped noise whose windows would reach beyond 0 and
    # 65535 (or the int16 limits), through the whole function with its byte swaps and flips.
    rng = np.random.default_rng(8)
    frame_count = 150
    low = rng.normal(0, 1500, size=(frame_count, 16, 16))
    high = rng.normal(65535, 1500, size=(frame_count, 16, 16))
    data = np.clip(np.concatenate([low, high], axis=1), 0, 65535).astype(np.uint16)
    frames = (data.astype(np.int32) - 32768).astype(dtype) if "i" in dtype else data.astype(dtype)

    assert_exact(temporal_median(frames, workers=2), frames)


def test_more_frames_than_16_bit_counters_hold():
    # 65539 frames: the counts overflow 16-bit lanes unless they are flushed in chunks.
    frame_count = 65539
    rng = np.random.default_rng(35)
    frames = rng.integers(0, 2**16, size=(frame_count, 1, 3), dtype=np.uint16)
    frames[:, 0, 1] = np.arange(frame_count) % 7
    frames[:, 0, 2] = 60000
    frames[: frame_count // 2 + 1, 0, 2] = 10
    assert_exact(temporal_median(frames, workers=1), frames)


def test_cfa_mosaic_keeps_each_raw_pixel_separate():
    # A Bayer-like mosaic: each raw pixel has its own level, which the median must keep.
    pattern = np.array([[1000, 2000], [3000, 4000]], dtype=np.uint16)
    mosaic = np.tile(pattern, (5, 7))
    noise = random_video((9, 10, 14), "uint8", seed=4).astype(np.uint16)
    frames = mosaic + noise
    got = temporal_median(frames, memory_budget_mb=TINY_BUDGET_MB, workers=2)
    assert_exact(got, frames)
    assert got.shape == (10, 14)


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_rgb_channels_stay_in_place_and_reversed_views_work(dtype):
    frames = np.zeros((5, 4, 6, 3), dtype=dtype)
    frames[..., 0], frames[..., 1], frames[..., 2] = 100, 200, 300
    frames += random_video((5, 4, 6, 3), "uint8", seed=5).astype(dtype) % 50
    reversed_view = frames[..., ::-1]
    got = temporal_median(reversed_view, memory_budget_mb=TINY_BUDGET_MB, workers=2)
    assert_exact(got, reversed_view)
    assert np.all(got[..., 0] >= 300)
    assert np.all(got[..., 2] < 300)


def test_spans_that_do_not_follow_rows():
    plan = median_module._plan_spans(
        frame_count=8,
        height=29,
        width=31,
        channels=1,
        staging_itemsize=0,
        budget_bytes=6_000,
        workers=2,
    )
    spans = plan.spans()
    assert len(spans) > 4
    assert plan.span_pixels % 31 != 0
    assert spans[0][0] == 0 and spans[-1][1] == 29 * 31
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    frames = random_video((8, 29, 31), "uint16", seed=6)
    budget_mb = (6_000 + frames[0].size * 4) / 2**20
    assert_exact(temporal_median(frames, memory_budget_mb=budget_mb, workers=2), frames)
    cropped = frames[:, 3:25, 2:29]
    assert_exact(temporal_median(cropped, memory_budget_mb=budget_mb, workers=2), cropped)


def test_row_pieces_cover_a_span_in_raster_order():
    width = 10
    for start, stop in [(0, 10), (0, 35), (3, 7), (7, 33), (10, 40), (13, 14)]:
        covered = []
        for row, col0, rows, cols in median_module._row_pieces(start, stop, width):
            assert rows == 1 or (col0 == 0 and cols == width)
            for r in range(row, row + rows):
                covered.extend(r * width + c for c in range(col0, col0 + cols))
        assert covered == list(range(start, stop))


def test_key_rows_are_padded_to_an_odd_number_of_cache_lines():
    for values in (1, 32, 33, 64, 32768, 100_000):
        row = median_module._key_row_values(values)
        assert row >= values
        assert row % 32 == 0 and (row // 32) % 2 == 1


def test_band_height_that_does_not_divide_the_image():
    frames = random_video((8, 29, 31), "float32", seed=6)
    plan = median_module._plan_bands(
        frame_count=8,
        height=29,
        width=31,
        channels=1,
        work_itemsize=4,
        staging_itemsize=0,
        budget_bytes=24_000,
        workers=2,
    )
    bands = [band for stage in plan.stages() for band in stage]
    rows = {band.rows for band in bands}
    assert len(bands) > 2
    assert 29 % max(rows) != 0
    budget_mb = (24_000 + frames[0].size * 4) / 2**20
    assert_exact(temporal_median(frames, memory_budget_mb=budget_mb, workers=2), frames)


def test_a_budget_below_one_row_splits_rows_into_pieces():
    frames = random_video((40, 5, 64), "float32", seed=7)
    plan = median_module._plan_bands(
        frame_count=40,
        height=5,
        width=64,
        channels=1,
        work_itemsize=4,
        staging_itemsize=0,
        budget_bytes=32_000,
        workers=1,
    )
    assert all(
        band.rows == 1 and band.col1 - band.col0 < 64 for stage in plan.stages() for band in stage
    )
    budget_mb = (32_000 + frames[0].size * 4) / 2**20
    assert_exact(temporal_median(frames, memory_budget_mb=budget_mb, workers=1), frames)


def test_a_budget_below_one_row_gives_spans_of_a_few_pixels():
    frames = random_video((40, 5, 64), "uint16", seed=7)
    plan = median_module._plan_spans(
        frame_count=40,
        height=5,
        width=64,
        channels=1,
        staging_itemsize=0,
        budget_bytes=8_000,
        workers=1,
    )
    assert plan.span_pixels < 64
    budget_mb = (8_000 + frames[0].size * 4) / 2**20
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


@pytest.mark.parametrize("dtype", ["<u2", ">u2", "<i2", ">i2", "u1", "i1", "<f4", ">f8"])
@pytest.mark.parametrize("frame_step", [1, 2])
def test_read_only_memmap_is_read_from_its_file(tmp_path, dtype, frame_step):
    frames = random_video((9, 11, 13), dtype, seed=10)
    mapped = write_memmap(tmp_path / "video.bin", frames, 178, dtype)
    assert not mapped.flags.writeable
    behind = median_module._file_behind(mapped[::frame_step, ..., np.newaxis])
    assert behind == (str(tmp_path / "video.bin"), 178)
    got = temporal_median(mapped, frame_step=frame_step, memory_budget_mb=TINY_BUDGET_MB, workers=2)
    assert_exact(got, frames, frame_step)
    np.testing.assert_array_equal(mapped, frames)


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


def test_truncated_file_behind_a_map_raises_on_the_counting_path(tmp_path):
    frames = random_video((5, 6, 7), "<u2", seed=13)
    path = tmp_path / "video.bin"
    mapped = write_memmap(path, frames, 16, "<u2")
    reader = median_module._KeyFileReader(mapped[..., np.newaxis], np.arange(5), str(path), 16)
    with path.open("r+b") as stream:
        stream.truncate(16 + frames[0].nbytes)
    keys = np.empty((5, median_module._key_row_values(42)), np.uint16)
    with reader, pytest.raises(ValueError, match="shorter than its memory map"):
        reader.read(0, 42, keys, None)


@pytest.fixture
def rows_file(tmp_path):
    """A file of 1,024 known bytes, open for reading: its descriptor and its bytes."""
    path = tmp_path / "rows.bin"
    path.write_bytes(bytes(range(256)) * 4)
    descriptor = os.open(path, os.O_RDONLY)
    yield descriptor, np.frombuffer(path.read_bytes(), np.uint8)
    os.close(descriptor)


def test_compiled_reads_fill_rows_and_report_where_the_file_ends(rows_file):
    descriptor, expected = rows_file
    target = np.zeros((5, 24), np.uint8)
    offsets = 200 * np.arange(5)
    assert median_module._read_rows(descriptor, target[:4], 24, 10, offsets, 0, 1) == 4
    for row in range(4):
        np.testing.assert_array_equal(target[row], expected[10 + 200 * row :][:24])
    # Row 4 would start at byte 810 + 200 = 1010: only 14 bytes are left there.
    assert median_module._read_rows(descriptor, target, 24, 210, offsets, 0, 1) == 4


def test_compiled_reads_follow_each_rows_own_offset(rows_file):
    descriptor, expected = rows_file
    target = np.zeros((3, 24), np.uint8)
    offsets = np.array([0, 600, 200])
    assert median_module._read_rows(descriptor, target, 24, 10, offsets, 0, 1) == 3
    for row, offset in enumerate(offsets):
        np.testing.assert_array_equal(target[row], expected[10 + offset :][:24])


def test_compiled_reads_fill_every_other_row_for_one_thread_of_a_pair(rows_file):
    descriptor, expected = rows_file
    target = np.zeros((5, 24), np.uint8)
    assert median_module._read_rows(descriptor, target, 24, 10, 200 * np.arange(5), 1, 2) == 5
    for row in (1, 3):
        np.testing.assert_array_equal(target[row], expected[10 + 200 * row :][:24])
    assert not target[[0, 2, 4]].any()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("workers", [2, 3, 4])
def test_a_read_failing_in_one_thread_of_a_pair_raises_its_error(tmp_path, workers):
    # The last frame, read by the second thread of the first pair, ends early: that
    # thread's error is raised, and neither its partner nor another team waits for ever.
    frames = random_video((6, 40, 50), "<u2", seed=14)
    path = tmp_path / "video.bin"
    mapped = write_memmap(path, frames, 16, "<u2")
    with path.open("r+b") as stream:
        stream.truncate(16 + 5 * frames[0].nbytes + 100)
    with pytest.raises(ValueError, match="shorter than its memory map"):
        temporal_median(mapped, workers=workers)


def test_truncated_file_behind_a_map_raises_on_the_sorting_path(tmp_path):
    frames = random_video((5, 6, 7), "<f4", seed=13)
    path = tmp_path / "video.bin"
    mapped = write_memmap(path, frames, 16, "<f4")
    detached = median_module._FileSource(
        mapped[..., np.newaxis], np.arange(5), np.dtype("<f4"), str(path), 16
    )
    with path.open("r+b") as stream:
        stream.truncate(16 + frames[0].nbytes)
    plan = median_module._plan_bands(
        frame_count=5,
        height=6,
        width=7,
        channels=1,
        work_itemsize=4,
        staging_itemsize=0,
        budget_bytes=1e6,
        workers=1,
    )
    stage = np.empty((plan.bands_per_stage, 5, plan.band_values), np.float32)
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


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_budget_too_small_for_the_frames_says_how_much_is_needed(dtype):
    frames = np.zeros((200, 4, 5), dtype)
    with pytest.raises(ValueError, match=r"too small for 200 frames of 4x5x1: at least .* MiB"):
        temporal_median(frames, memory_budget_mb=0.001)


def test_budget_for_one_thread_only_uses_one_thread():
    sorting = median_module._plan_bands(
        frame_count=100,
        height=10,
        width=10,
        channels=1,
        work_itemsize=4,
        staging_itemsize=0,
        budget_bytes=8 * 100 * 16 * 1.5,
        workers=8,
    )
    counting = median_module._plan_spans(
        frame_count=100,
        height=10,
        width=10,
        channels=1,
        staging_itemsize=0,
        budget_bytes=100 * (2 + 128) * 1.5,
        workers=8,
    )
    assert sorting.workers == 1
    assert counting.workers == 1


def test_threads_work_in_pairs_that_share_a_span_buffer():
    assert median_module._team_sizes(1) == [1]
    assert median_module._team_sizes(2) == [2]
    assert median_module._team_sizes(5) == [2, 2, 1]
    # One key buffer for two threads: 100 frames cost 12,800 bytes of row padding and 200 per
    # pixel of span, each thread 4,480 of tile scratch; two buffers would not fit.
    plan = median_module._plan_spans(
        frame_count=100,
        height=100,
        width=100,
        channels=1,
        staging_itemsize=0,
        budget_bytes=30_000,
        workers=3,
    )
    assert plan.workers == 2
    assert plan.team_sizes() == [2]
    assert plan.span_pixels == (30_000 - 2 * 4_480 - 12_800) // 200


def test_a_thread_of_a_pair_searches_its_share_of_the_columns():
    queue = median_module._SpanQueue([(0, 10), (10, 700)])
    pair = median_module._SpanTeam(2, np.empty((3, 2112), np.uint16), None, 3, queue)
    assert pair.span == (0, 10)
    assert queue.take() == (10, 700)
    assert queue.take() is None
    # 30 values: the first 32-aligned bound is 0, so the second thread takes all of them.
    assert [pair.columns((0, 10), member) for member in (0, 1)] == [(0, 0), (0, 30)]
    assert [pair.columns((10, 700), member) for member in (0, 1)] == [(0, 1024), (1024, 2070)]
    alone = median_module._SpanTeam(1, np.empty((3, 2112), np.uint16), None, 3, queue)
    assert alone.span is None
    assert alone.columns((10, 700), 0) == (0, 2070)


def test_spans_of_few_frames_read_more_of_each_frame():
    assert median_module._span_read_bytes(440) == 32 * 2**10
    assert median_module._span_read_bytes(256) == 32 * 2**10
    assert median_module._span_read_bytes(60) == 136 * 2**10
    plan = median_module._plan_spans(
        frame_count=60,
        height=2160,
        width=3840,
        channels=1,
        staging_itemsize=0,
        budget_bytes=256 * 2**20,
        workers=2,
    )
    assert plan.span_pixels == 136 * 2**10 // 2


def test_params_defaults():
    params = TemporalMedianParams()
    assert (params.memory_budget_mb, params.frame_step, params.workers) == (256.0, 1, None)


def test_tiny_budget_used_above_gives_several_spans_and_threads():
    counting = median_module._plan_spans(
        frame_count=10,
        height=23,
        width=37,
        channels=1,
        staging_itemsize=0,
        budget_bytes=TINY_BUDGET_MB * 2**20 - 23 * 37 * 4,
        workers=3,
    )
    assert counting.workers == 3
    assert len(counting.spans()) >= 2 * counting.workers
    sorting = median_module._plan_bands(
        frame_count=10,
        height=23,
        width=37,
        channels=1,
        work_itemsize=4,
        staging_itemsize=0,
        budget_bytes=TINY_BUDGET_MB * 2**20 - 23 * 37 * 4,
        workers=3,
    )
    assert sorting.workers == 3
    assert len(sorting.stages()) >= 2 * sorting.workers
