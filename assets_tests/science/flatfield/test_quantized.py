from __future__ import annotations

import numpy as np
import pytest

from astro_assets.science.flatfield.median import temporal_median
from astro_assets.science.flatfield.quantized import interpolated_median


def rounded_video(n_frames: int, noise: float, seed: int = 0):
    """(n, 48, 64) uint8 frames rounding a signal spread evenly over [100, 101) ADU plus
    Gaussian noise, and that signal (the median of each pixel's noisy values before rounding)."""
    rng = np.random.default_rng(seed)
    signal = rng.uniform(100.0, 101.0, (48, 64))
    noisy = signal + noise * rng.standard_normal((n_frames, *signal.shape))
    return np.rint(noisy).astype(np.uint8), signal


@pytest.mark.parametrize("noise", [0.6, 1.0, 1.5])
def test_the_interpolated_median_recovers_the_signal_between_levels(noise) -> None:
    frames, signal = rounded_video(400, noise)
    exact = temporal_median(frames)
    interpolated = interpolated_median(frames, exact)
    exact_error = np.sqrt(np.mean((exact - signal) ** 2))
    interpolated_error = np.sqrt(np.mean((interpolated - signal) ** 2))
    # Quantization leaves the exact median about 1 / sqrt(12) = 0.29 level rms off.
    assert exact_error > 0.25
    assert interpolated_error < 0.1
    assert np.all(np.abs(interpolated - exact) <= 0.5)


def single_pixel(values, dtype=np.uint8) -> np.ndarray:
    return np.asarray(values, dtype=dtype).reshape(-1, 1, 1)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([3, 4, 4, 4, 5], 4.0),  # 3.5 + (2.5 - 1) / 3
        ([4, 4, 4, 4, 5], 3.5 + 2.5 / 4),
        ([4, 4, 4, 5, 5, 5], 4.5),  # the middle values differ: the exact median
        ([4, 4, 5, 5, 5, 5], 4.75),  # 4.5 + (3 - 2) / 4
        ([2, 2, 6, 6], 4.0),  # no frame holds the median
        ([30, 200, 30], 30.25),  # 29.5 + 1.5 / 2
    ],
)
def test_each_pixel_is_the_median_of_grouped_data(values, expected) -> None:
    frames = single_pixel(values)
    got = interpolated_median(frames, temporal_median(frames))
    assert got.dtype == np.float32
    assert got[0, 0] == pytest.approx(expected, abs=1e-6)


def test_every_pixel_of_a_long_video_matches_the_formula() -> None:
    # More frames than one pass of 8-bit counters and more pixels than one tile of them.
    rng = np.random.default_rng(2)
    frames = rng.binomial(6, 0.5, size=(300, 100, 90)).astype(np.uint8)
    exact = np.median(frames, axis=0)
    below = np.sum(frames < exact, axis=0)
    at = np.sum(frames == exact, axis=0)
    expected = np.where(at > 0, exact - 0.5 + (150.0 - below) / np.maximum(at, 1), exact)
    got = interpolated_median(frames, exact.astype(np.float32))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_levels_of_a_coarser_step() -> None:
    frames = single_pixel([16, 32, 32, 32], np.uint16)
    # 32 - 8 + 16 * (2 - 1) / 3
    got = interpolated_median(frames, temporal_median(frames), step=16.0)
    assert got[0, 0] == pytest.approx(24.0 + 16.0 / 3.0, abs=1e-5)


def test_rgb_big_endian_and_frame_step() -> None:
    frames, _ = rounded_video(40, 1.0)
    rgb = np.stack([frames, frames, frames[::-1]], axis=-1).astype(">u2")
    median = temporal_median(rgb, frame_step=3)
    got = interpolated_median(rgb, median, frame_step=3)
    native = np.stack([frames, frames, frames[::-1]], axis=-1)[::3]
    expected = np.stack(
        [interpolated_median(native[..., channel], median[..., channel]) for channel in range(3)],
        axis=-1,
    )
    np.testing.assert_array_equal(got, expected)
    assert got.shape == (48, 64, 3)


@pytest.mark.parametrize("dtype", ["u1", ">u2"])
@pytest.mark.parametrize("channels", [1, 3])
def test_listed_frames_count_as_those_frames_alone(dtype, channels) -> None:
    frames, _ = rounded_video(30, 1.0)
    frames = frames if channels == 1 else np.stack([frames] * 3, axis=-1)
    frames = frames.astype(dtype)
    listed = [0, 2, 3, 7, 8, 9, 15, 20, 21, 29]
    median = temporal_median(frames, frame_indices=listed)
    got = interpolated_median(frames, median, frame_indices=listed)
    expected = interpolated_median(np.ascontiguousarray(frames[listed]), median)
    np.testing.assert_array_equal(got, expected)


def test_inputs_are_never_modified() -> None:
    frames, _ = rounded_video(9, 1.0)
    median = temporal_median(frames)
    before = frames.copy(), median.copy()
    interpolated_median(frames, median)
    np.testing.assert_array_equal(frames, before[0])
    np.testing.assert_array_equal(median, before[1])


@pytest.mark.parametrize(
    ("frames", "median", "kwargs", "message"),
    [
        (np.zeros((3, 4, 5)), np.zeros((4, 5)), {}, "integer"),
        (np.zeros((3, 4, 5), np.uint8), np.zeros((5, 4)), {}, "shape"),
        (np.zeros((3, 4, 5), np.uint8), np.full((4, 5), np.nan), {}, "NaN"),
        (np.zeros((3, 4, 5), np.uint8), np.zeros((4, 5)), {"step": 0.0}, "step"),
        (np.zeros((3, 4, 5), np.uint8), np.zeros((4, 5)), {"frame_step": 0}, "frame_step"),
        (np.zeros((3, 4, 5), np.uint8), np.zeros((4, 5)), {"frame_indices": [2, 1]}, "increasing"),
    ],
)
def test_bad_input_is_refused(frames, median, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        interpolated_median(frames, median, **kwargs)
