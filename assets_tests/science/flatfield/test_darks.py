"""The master dark's summary against the generator's dark signal."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from astro_assets.samples import (
    SolarVideoParams,
    dark_signal,
    synthesize_dark_frames,
    synthesize_frames_array,
)
from astro_assets.science.flatfield.darks import (
    HOT_PIXEL_SIGMAS,
    DarkSubtractedFrames,
    summarize_dark,
)
from astro_assets.science.flatfield.planes import LuminanceVideo, luminance_view

PARAMS = SolarVideoParams(
    width=64,
    height=48,
    n_frames=9,
    target="planet",
    hot_pixel_fraction=0.03,
    hot_pixel_adu=500.0,
    read_noise_adu=6.0,
    seed=7,
)


def _medians(params: SolarVideoParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    darks = synthesize_dark_frames(params, 32)
    frames, _ = synthesize_frames_array(params)
    return np.median(darks, axis=0), darks[0], np.median(frames, axis=0)


def test_a_matching_dark_gives_the_pedestal_noise_and_hot_pixels() -> None:
    master, frame, median = _medians(PARAMS)
    original = master.copy()
    summary = summarize_dark(master, frame, median)
    np.testing.assert_array_equal(master, original)
    assert summary.pedestal == pytest.approx(PARAMS.black_level_adu, abs=1.0)
    # One frame about a 32-frame median: the read noise times sqrt(1 + pi / (2 * 32)).
    assert summary.frame_noise == pytest.approx(6.0 * np.sqrt(1 + np.pi / 64), rel=0.1)
    truly_hot = dark_signal(PARAMS) > HOT_PIXEL_SIGMAS * summary.frame_noise
    assert summary.hot_fraction == pytest.approx(truly_hot.mean(), abs=0.005)
    assert summary.below_dark_fraction == 0.0
    assert set(summary.as_dict()) == {
        "pedestal",
        "frame_noise",
        "hot_fraction",
        "below_dark_fraction",
    }


def test_a_dark_of_a_higher_offset_puts_the_sky_below_it() -> None:
    master, frame, _ = _medians(dataclasses.replace(PARAMS, black_level_adu=1224.0))
    _, _, median = _medians(PARAMS)
    summary = summarize_dark(master, frame, median)
    # The planet's sky, most of the frame, lies 200 ADU (about 30 noises) below this dark.
    assert summary.below_dark_fraction > 0.5


def test_summarize_dark_refuses_shapes_that_differ_and_non_finite_values() -> None:
    master, frame, median = _medians(PARAMS)
    with pytest.raises(ValueError, match="same shape"):
        summarize_dark(master, frame[1:], median)
    with pytest.raises(ValueError, match="NaN"):
        summarize_dark(np.where(master > 2000, np.nan, master), frame, median)


@pytest.mark.parametrize("color", ["MONO", "RGGB", "RGB"])
def test_dark_subtracted_frames_read_only_their_windows_and_keep_the_frames(color) -> None:
    rng = np.random.default_rng(8)
    shape = (5, 12, 16, 3) if color == "RGB" else (5, 12, 16)
    frames = rng.integers(100, 4000, shape, dtype=np.uint16)
    original = frames.copy()
    dark = rng.uniform(90.0, 300.0, shape[1:]).astype(np.float32)
    subtracted = DarkSubtractedFrames(frames, dark)
    assert len(subtracted) == 5 and subtracted.shape == shape
    whole = np.asarray(subtracted[3])
    assert whole.dtype == np.float32
    np.testing.assert_array_equal(whole, frames[3].astype(np.float32) - dark)
    np.testing.assert_array_equal(subtracted[3][2:7, 4:9], whole[2:7, 4:9])
    video = LuminanceVideo(subtracted, color)
    np.testing.assert_array_equal(video[3], luminance_view(whole, color))
    np.testing.assert_allclose(video.window_view(3)[1:4, 2:6], video[3][1:4, 2:6], rtol=1e-6)
    np.testing.assert_array_equal(frames, original)
    with pytest.raises(ValueError, match="the dark has shape"):
        DarkSubtractedFrames(frames, dark[1:])
