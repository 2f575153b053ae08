"""The sensor's smooth response is measured from the frames of a drifting scene."""

import numpy as np
import pytest
from scipy import ndimage

from astro_assets.science.flatfield.motion import (
    MotionTestParams,
    predict_dust_free,
    separate_sensor_fixed,
)
from astro_assets.science.flatfield.planes import LuminanceFrame
from astro_assets.science.flatfield.response import (
    ResponseCorrectedFrame,
    estimate_sensor_response,
)

HEIGHT, WIDTH = 96, 128


def _vignetting(falloff: float, centre=(47.5, 63.5)) -> np.ndarray:
    """``1 - falloff * (r / r_corner)**2`` about ``centre``."""
    rows, cols = np.indices((HEIGHT, WIDTH))
    r2 = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2
    return 1.0 - falloff * r2 / (47.5**2 + 63.5**2)


def _frames(response, shifts, *, texture=0.06, seed=3, transparency=None, dust=None):
    """Frames of a textured scene (level 1000 ADU) displaced by ``shifts``, times
    ``response`` (and ``dust``), each scaled by ``transparency``, with 3 ADU of noise."""
    rng = np.random.default_rng(seed)
    margin = int(np.abs(shifts).max()) + 4
    canvas = ndimage.gaussian_filter(
        rng.standard_normal((HEIGHT + 2 * margin, WIDTH + 2 * margin)), 2.0
    )
    canvas = 1000.0 * (1.0 + texture * canvas / canvas.std())
    scale = np.ones(len(shifts)) if transparency is None else transparency
    frames = []
    for (dy, dx), factor in zip(shifts, scale, strict=True):
        moved = ndimage.shift(canvas, (dy, dx), order=1)[margin:-margin, margin:-margin]
        signal = factor * moved * response * (1.0 if dust is None else dust)
        frames.append((signal + rng.normal(0.0, 3.0, signal.shape)).astype(np.float32))
    return frames


def _circling(n_frames=24, radius=(12.0, 16.0)):
    """Displacements around an ellipse: every direction is sampled, so every term of the
    response but a plane is told (a straight drift tells only its part along the drift)."""
    angle = np.linspace(0.0, 2.0 * np.pi, n_frames, endpoint=False)
    return np.column_stack([radius[0] * np.sin(angle), radius[1] * np.cos(angle)])


def _without_plane(log_map: np.ndarray) -> np.ndarray:
    """``log_map`` minus its least-squares plane: what no comparison of frames can tell."""
    rows, cols = np.indices(log_map.shape)
    design = np.column_stack([np.ones(log_map.size), rows.ravel(), cols.ravel()])
    coefficients, *_ = np.linalg.lstsq(design, log_map.ravel(), rcond=None)
    return log_map - (design @ coefficients).reshape(log_map.shape)


def test_vignetting_is_recovered_from_a_drifting_scene():
    truth = _vignetting(0.25, centre=(40.0, 70.0))
    shifts = _circling()
    frames = _frames(truth, shifts)
    before = [frame.copy() for frame in frames]
    response = estimate_sensor_response(frames, shifts)
    assert response.dtype == np.float32 and response.shape == (HEIGHT, WIDTH)
    error = _without_plane(np.log(response)) - _without_plane(np.log(truth))
    # 25 % at the corners (up to 31 % at the farthest one, off centre), recovered to 0.3 %.
    assert np.abs(error).max() < 0.003
    for frame, copy in zip(frames, before, strict=True):
        np.testing.assert_array_equal(frame, copy)


def test_the_response_is_not_extrapolated_over_unlit_pixels():
    # The left third of the sensor sees only sky: the polynomial, measured on the rest, is
    # held within the range it takes there instead of following its extrapolation (which,
    # around a planet, fell to 0.15 in a frame's corner and made the sky look lit).
    truth = _vignetting(0.25, centre=(40.0, 70.0))
    shifts = _circling()
    frames = [frame.copy() for frame in _frames(truth, shifts)]
    for frame in frames:
        frame[:, :43] = 2.0
    response = estimate_sensor_response(frames, shifts)
    lit = np.log(response[:, 60:])
    unlit = np.log(response[:, :40])
    assert unlit.min() >= lit.min() - 1e-6
    assert unlit.max() <= lit.max() + 1e-6
    # Where it was measured it still follows the vignetting.
    error = _without_plane(np.log(response[:, 60:])) - _without_plane(np.log(truth[:, 60:]))
    assert np.abs(error).max() < 0.01


def test_a_steep_corner_between_the_samples_and_the_edge_is_not_held_back():
    # Sampled every third pixel, the outermost samples lie a pixel inside the frame's edge,
    # where a 50 % fall-off at the corners drops by 2 % more; the range the polynomial is
    # held within reaches the corners (held at the samples' range, they were 1.5 % off).
    truth = _vignetting(0.5)
    shifts = _circling()
    response = estimate_sensor_response(
        _frames(truth, shifts), shifts, degree=8, max_samples=20_000
    )
    error = _without_plane(np.log(response)) - _without_plane(np.log(truth))
    assert np.abs(error).max() < 0.005


def test_changes_of_transparency_and_a_dust_shadow_do_not_bias_it():
    truth = _vignetting(0.3)
    shifts = _circling()
    rows, cols = np.indices((HEIGHT, WIDTH))
    dust = np.where(np.hypot(rows - 30, cols - 40) <= 6, 0.7, 1.0)
    transparency = 1.0 + 0.1 * np.sin(np.arange(len(shifts)))
    frames = _frames(truth, shifts, transparency=transparency, dust=dust)
    response = estimate_sensor_response(frames, shifts)
    error = _without_plane(np.log(response)) - _without_plane(np.log(truth))
    assert np.abs(error).max() < 0.006


def test_no_response_without_vignetting_or_motion():
    shifts = _circling()
    flat = estimate_sensor_response(_frames(np.ones((HEIGHT, WIDTH)), shifts), shifts)
    assert np.abs(flat - 1).max() < 0.003
    still = np.zeros((8, 2))
    frames = _frames(_vignetting(0.4), still)
    np.testing.assert_array_equal(estimate_sensor_response(frames, still), 1.0)
    np.testing.assert_array_equal(estimate_sensor_response(frames, shifts[:8], degree=1), 1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shifts": np.zeros((3, 2))}, "one \\(dy, dx\\) per frame"),
        ({"shifts": np.full((4, 2), np.nan)}, "NaN or inf"),
        ({"degree": -1}, "degree must be >= 0"),
        ({"dark_fraction": 1.0}, "dark_fraction must be in"),
    ],
)
def test_bad_input_is_refused(kwargs, message):
    frames = [np.ones((8, 8), np.float32)] * 4
    arguments = {"frames": frames, "shifts": np.zeros((4, 2)), **kwargs}
    with pytest.raises(ValueError, match=message):
        estimate_sensor_response(**arguments)


def test_frames_of_different_shapes_are_refused():
    frames = [np.ones((8, 8)), np.ones((8, 9))]
    with pytest.raises(ValueError, match="first frame's shape"):
        estimate_sensor_response(frames, np.zeros((2, 2)))


def test_a_pedestal_is_not_taken_for_light():
    # A pedestal as bright as the scene's light: left in, it halves the vignetting measured.
    truth = _vignetting(0.25, centre=(40.0, 70.0))
    shifts = _circling()
    pedestal = 1000.0
    frames = [frame + np.float32(pedestal) for frame in _frames(truth, shifts)]
    expected = _without_plane(np.log(truth))
    measured = estimate_sensor_response(frames, shifts, black_level=pedestal)
    assert np.abs(_without_plane(np.log(measured)) - expected).max() < 0.004
    ignored = estimate_sensor_response(frames, shifts)
    ignored_error = np.abs(_without_plane(np.log(ignored)) - expected).max()
    assert ignored_error > 0.3 * np.abs(expected).max()
    with pytest.raises(ValueError, match="black_level must be finite"):
        estimate_sensor_response(frames, shifts, black_level=np.nan)


def test_corrected_frame_divides_only_the_light_above_the_pedestal():
    frame = np.arange(12, dtype=np.uint16).reshape(3, 4) + 100
    kept = frame.copy()
    response = np.full((3, 4), 2.0, dtype=np.float32)
    corrected = ResponseCorrectedFrame(frame, response, black_level=100.0)
    np.testing.assert_array_equal(corrected[1:3, 0:2], 100.0 + (frame[1:3, 0:2] - 100.0) / 2.0)
    np.testing.assert_array_equal(frame, kept)
    floats = frame.astype(np.float32)
    ResponseCorrectedFrame(floats, response, black_level=100.0)[:, :]
    np.testing.assert_array_equal(floats, kept)
    with pytest.raises(ValueError, match="black_level must be finite"):
        ResponseCorrectedFrame(frame, response, black_level=np.inf)


def test_corrected_frame_divides_each_window_by_the_response():
    frame = np.arange(12, dtype=np.uint16).reshape(3, 4)
    response = np.full((3, 4), 2.0, dtype=np.float32)
    corrected = ResponseCorrectedFrame(frame, response)
    assert corrected.shape == (3, 4)
    np.testing.assert_array_equal(corrected[1:3, 0:2], frame[1:3, 0:2] / 2.0)
    with pytest.raises(ValueError, match="differs from the response"):
        ResponseCorrectedFrame(frame, np.ones((3, 3)))


def test_the_ratio_near_the_frame_edges_is_flat_once_the_response_is_divided_out():
    # Along a drift of a third of the frame, the edge columns are predicted from frames
    # displaced one way only: with 40 % vignetting the ratio of the median to the prediction
    # there departs from 1 by several percent, as deep as faint dust.
    truth = _vignetting(0.4)
    shifts = np.column_stack([0.4 * np.sin(np.arange(24)), np.linspace(-20.0, 20.0, 24)])
    frames = _frames(truth, shifts, texture=0.03)
    median = np.median(np.stack(frames), axis=0)
    raw = predict_dust_free(frames, shifts, median.shape).ratio
    response = estimate_sensor_response(frames, shifts)
    corrected = [ResponseCorrectedFrame(frame, response) for frame in frames]
    flat = predict_dust_free(corrected, shifts, median.shape).ratio
    edges = np.zeros(median.shape, dtype=bool)
    edges[:, :12] = edges[:, -12:] = True
    edges &= np.isfinite(raw) & np.isfinite(flat)
    assert np.percentile(np.abs(raw[edges] - 1), 90) > 0.02
    assert np.percentile(np.abs(flat[edges] - 1), 90) < 0.006
    empty = np.zeros(median.shape, dtype=bool)
    found = separate_sensor_fixed(empty, median, frames, shifts)
    assert found.ratio_searched and not found.core.any()
    unaware = separate_sensor_fixed(
        empty, median, frames, shifts, params=MotionTestParams(response_degree=0)
    )
    assert np.nanpercentile(np.abs(unaware.prediction.ratio[edges] - 1), 90) > 0.02


def test_frames_read_by_windows_give_the_same_response():
    truth = _vignetting(0.3)
    shifts = _circling()
    frames = _frames(truth, shifts)
    views = [
        LuminanceFrame(np.repeat(frame[..., np.newaxis], 3, axis=2), "RGB") for frame in frames
    ]
    np.testing.assert_allclose(
        estimate_sensor_response(views, shifts),
        estimate_sensor_response(frames, shifts),
        rtol=1e-6,
    )
