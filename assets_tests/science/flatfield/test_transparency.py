"""Each frame's transparency is measured from the scene it shares with its neighbours, and
frames dimmed by clouds no longer show shadows that are not there."""

import numpy as np
import pytest
from scipy import ndimage

from astro_assets.samples import SolarVideoParams
from astro_assets.samples.solar import SyntheticSolarVideo
from astro_assets.science.flatfield.drift import estimate_drift
from astro_assets.science.flatfield.dust import detect_dust
from astro_assets.science.flatfield.median import temporal_median
from astro_assets.science.flatfield.motion import MotionTestParams, separate_sensor_fixed
from astro_assets.science.flatfield.response import ResponseCorrectedFrame
from astro_assets.science.flatfield.transparency import (
    GAIN_TOLERANCE,
    FrameTransparency,
    _block_sums,
    divided_by_transparency,
    frame_transparency,
    screen_frames,
)

N_FRAMES = 24
CLOUDY = np.ones(N_FRAMES)
CLOUDY[[3, 11, 17]] = 0.3
CLOUDY[[6, 7, 14, 20]] = 0.6
"""Three frames under a thick cloud, four under a thin one."""


def _video(transparency=None, **overrides):
    """A drifting Sun of ``N_FRAMES`` frames of 256 x 192 px under f/30 dust, with
    ``overrides`` of its ``SolarVideoParams``; its frames and truth."""
    params = SolarVideoParams(
        **{
            "width": 256,
            "height": 192,
            "n_frames": N_FRAMES,
            "drift_px": 60.0,
            "jitter_px": 0.8,
            "focal_ratio": 30.0,
            "n_sunspots": 0,
            "transparency": None if transparency is None else tuple(transparency),
            **overrides,
        }
    )
    video = SyntheticSolarVideo(params)
    return np.stack([video.frame(i) for i in range(N_FRAMES)]), video.truth


@pytest.mark.parametrize("drift_px", [60.0, 0.0])
def test_gains_are_each_frames_light_over_the_typical_frames(drift_px):
    frames, truth = _video(CLOUDY, drift_px=drift_px)
    before = frames.copy()
    measured = frame_transparency(frames, truth.shifts, black_level=truth.black_level_adu)
    np.testing.assert_array_equal(frames, before)
    assert measured.measured.all()
    # The typical frame is a clear one: the median of the gains is 1.
    np.testing.assert_allclose(measured.gains, CLOUDY, rtol=3e-3)
    np.testing.assert_array_equal(np.flatnonzero(measured.dimmer_than(0.5)), [3, 11, 17])


def test_a_clear_video_has_gains_of_one():
    frames, truth = _video()
    measured = frame_transparency(frames, truth.shifts, black_level=truth.black_level_adu)
    np.testing.assert_allclose(measured.gains, 1.0, atol=3e-3)
    assert not measured.dimmer_than(0.9).any()


def test_the_pedestal_is_not_scaled():
    # Taken as light, a pedestal of a fifth of the light pulls every ratio towards 1.
    frames, truth = _video(CLOUDY, black_level_adu=8000.0)
    right = frame_transparency(frames, truth.shifts, black_level=8000.0)
    wrong = frame_transparency(frames, truth.shifts, black_level=0.0)
    assert right.gains[3] == pytest.approx(0.3, rel=3e-3)
    assert wrong.gains[3] > 0.38


def test_frames_without_light_in_common_are_not_measured():
    frames, truth = _video()
    frames[5] = truth.black_level_adu
    measured = frame_transparency(frames, truth.shifts, black_level=truth.black_level_adu)
    assert not measured.measured[5] and measured.gains[5] == 1.0
    assert measured.measured.sum() == N_FRAMES - 1
    assert not measured.dimmer_than(0.5)[5]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"black_level": np.nan}, "black_level"),
        ({"bright_fraction": 1.0}, "bright_fraction"),
        ({"max_side_px": 8}, "max_side_px"),
        ({"min_samples": 0}, "min_samples"),
    ],
)
def test_bad_input_is_refused(kwargs, message):
    frames = np.ones((3, 16, 16))
    with pytest.raises(ValueError, match=message):
        frame_transparency(frames, np.zeros((3, 2)), **kwargs)


def test_shifts_and_frames_must_match():
    with pytest.raises(ValueError, match="shifts must have shape"):
        frame_transparency(np.ones((3, 16, 16)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="first frame's shape"):
        frame_transparency([np.ones((16, 16)), np.ones((16, 17))], np.zeros((2, 2)))


def test_a_frame_is_divided_by_its_transparency_above_the_pedestal():
    frame = np.array([[100.0, 400.0], [700.0, 1000.0]])
    corrected = ResponseCorrectedFrame(frame, 0.5, black_level=100.0)
    np.testing.assert_allclose(corrected[:, :], [[100.0, 700.0], [1300.0, 1900.0]])
    np.testing.assert_allclose(corrected[1:, :1], [[1300.0]])
    assert corrected.shape == (2, 2)
    for gain in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="finite and positive"):
            ResponseCorrectedFrame(frame, gain)


def test_gains_within_the_tolerance_of_one_divide_nothing():
    # The gains of a clear video scatter by a fraction of a percent about 1; dividing by
    # them would only perturb the frames.
    gains = np.array([1.0, 1.0 + GAIN_TOLERANCE / 2, 1.0 - 2 * GAIN_TOLERANCE, 0.5, 0.2])
    measured = np.array([True, True, True, True, False])
    transparency = FrameTransparency(gains=gains, measured=measured, pairs_used=4)
    divisors = transparency.divisors()
    np.testing.assert_array_equal(divisors, [1.0, 1.0, 1.0 - 2 * GAIN_TOLERANCE, 0.5, 1.0])
    frames = [np.full((2, 2), 300.0) for _ in gains]
    divided = divided_by_transparency(frames, divisors, black_level=100.0)
    assert divided[0] is frames[0] and divided[1] is frames[1]
    np.testing.assert_allclose(divided[3][:, :], 500.0)
    with pytest.raises(ValueError, match="one divisor per frame"):
        divided_by_transparency(frames, divisors[:2])


@pytest.mark.parametrize("seed", [0, 2])
def test_clouds_no_longer_show_shadows_that_are_not_there(seed):
    frames, truth = _video(CLOUDY, seed=seed)
    median = temporal_median(frames)
    candidates = detect_dust(median).core
    drift = estimate_drift(frames, exclude=candidates)
    registered = [frames[i] for i in drift.frames_used]
    dust = truth.transmission < 0.995
    # An outline a pixel or two wider than the support (1 - T > 0.005) is not a false shadow.
    apart_from_dust = ~ndimage.binary_dilation(dust, iterations=3)

    def separated(correction: bool):
        return separate_sensor_fixed(
            candidates,
            median,
            registered,
            drift.shifts,
            params=MotionTestParams(transparency_correction=correction),
            black_level=truth.black_level_adu,
        )

    corrected = separated(True)
    # Frames under the thick cloud are left out; the thin cloud's are divided by their gain.
    assert corrected.frames_left_out == (3, 11, 17)
    np.testing.assert_allclose(corrected.transparency.gains, CLOUDY, rtol=3e-3)
    assert np.count_nonzero(corrected.core & apart_from_dust) <= 0.01 * dust.sum()
    assert np.count_nonzero(corrected.core & dust) >= 0.5 * dust.sum()
    # Without the correction, the clouds leave residues in the ratio of the medians as deep as
    # dust on seed 0 (a fifth of the dust's area outside it); no frame, set against its own
    # prediction, shows them, as a cloud dims a shadow and its surroundings alike, so none
    # is kept.
    uncorrected = separated(False)
    assert np.count_nonzero(uncorrected.core & apart_from_dust) <= 0.01 * dust.sum()


def test_a_target_crossing_a_vignetted_field_is_not_taken_for_a_change_of_transparency():
    # A planet drifting 60 px across a field vignetted by 50 % at the corners dims by about
    # 2 % as it nears a corner; once the sensor's response is divided out, the gains are
    # measured again and that dimming is no longer in them.
    frames, truth = _video(target="planet", n_sunspots=1, focal_ratio=60.0, vignetting=0.5)
    black_level = truth.black_level_adu
    raw = frame_transparency(frames, truth.shifts, black_level=black_level)
    assert raw.gains.max() / raw.gains.min() > 1.015
    median = temporal_median(frames)
    result = separate_sensor_fixed(
        detect_dust(median).core, median, list(frames), truth.shifts, black_level=black_level
    )
    assert result.ratio_searched
    assert result.transparency.gains.max() / result.transparency.gains.min() < 1.005


BLANK_AND_CLOUDY = CLOUDY.copy()
BLANK_AND_CLOUDY[[0, 1, 9]] = 0.0
BLANK_AND_CLOUDY[12] = 0.1
"""Two blank frames first and one in the middle, one under a cloud that lets a tenth through,
and the thick (0.3) and thin (0.6) clouds of ``CLOUDY``."""


@pytest.mark.parametrize("drift_px", [60.0, 0.0])
def test_screening_leaves_out_blank_frames_and_those_under_thick_cloud(drift_px):
    frames, _ = _video(BLANK_AND_CLOUDY, drift_px=drift_px)
    before = frames.copy()
    screening = screen_frames(frames)
    np.testing.assert_array_equal(frames, before)
    np.testing.assert_array_equal(screening.frames, np.arange(N_FRAMES))
    np.testing.assert_array_equal(screening.left_out, [0, 1, 9, 12])
    np.testing.assert_array_equal(screening.kept, np.setdiff1d(np.arange(N_FRAMES), [0, 1, 9, 12]))
    # A frame dimmed alike everywhere has its spread scaled by its transparency.
    dimmed = BLANK_AND_CLOUDY > 0.2
    np.testing.assert_allclose(
        screening.relative_spreads[dimmed], BLANK_AND_CLOUDY[dimmed], rtol=0.05
    )
    assert (screening.relative_spreads[[0, 1, 9]] < 0.05).all()


def test_most_frames_blank_leaves_the_lit_ones():
    # A capture started long before the target was in the field: 14 blank frames of 24.
    shares = np.zeros(N_FRAMES)
    shares[14:] = 1.0
    frames, _ = _video(shares)
    np.testing.assert_array_equal(screen_frames(frames).kept, np.arange(14, N_FRAMES))


def test_threads_measure_every_frame_alike():
    # 48 frames: enough for three threads of 16.
    frames, _ = _video(BLANK_AND_CLOUDY)
    frames = np.concatenate([frames, frames])
    alone = screen_frames(frames, workers=1)
    for workers in (2, 3, None):
        together = screen_frames(frames, workers=workers)
        np.testing.assert_array_equal(together.relative_spreads, alone.relative_spreads)
        np.testing.assert_array_equal(together.with_signal, alone.with_signal)


@pytest.mark.parametrize("odd_one", [40, 41])
def test_a_frame_of_another_shape_fails_in_any_thread(odd_one):
    # Two threads take the even and the odd frames.
    frames = [np.zeros((8, 8))] * 42
    frames[odd_one] = np.zeros((8, 9))
    with pytest.raises(ValueError, match=f"frame {odd_one} has shape"):
        screen_frames(frames, workers=2)


def test_a_clear_video_keeps_every_frame():
    frames, _ = _video()
    screening = screen_frames(frames)
    assert screening.with_signal.all()
    np.testing.assert_allclose(screening.relative_spreads, 1.0, atol=0.05)


def test_screening_needs_no_black_level():
    low, _ = _video(BLANK_AND_CLOUDY)
    high, _ = _video(BLANK_AND_CLOUDY, black_level_adu=8000.0)
    screened_low, screened_high = screen_frames(low), screen_frames(high)
    np.testing.assert_array_equal(screened_high.left_out, screened_low.left_out)
    np.testing.assert_allclose(
        screened_high.relative_spreads, screened_low.relative_spreads, rtol=0.03, atol=0.01
    )


def test_listed_frames_alone_are_screened_and_numbered_as_in_the_video():
    frames, _ = _video(BLANK_AND_CLOUDY)
    listed = np.array([0, 2, 4, 5, 8, 9, 10, 12, 13, 15, 16, 18])
    screening = screen_frames(frames, frame_indices=listed)
    np.testing.assert_array_equal(screening.frames, listed)
    np.testing.assert_array_equal(screening.left_out, [0, 9, 12])


def test_colour_layouts_byte_orders_and_channel_order_screen_alike():
    frames, _ = _video(BLANK_AND_CLOUDY)
    mono = screen_frames(frames)
    rgb = np.stack([frames, frames // 2, frames // 3], axis=-1)
    rows, cols = np.indices(frames.shape[1:])
    weights = np.where((rows % 2 == 0) & (cols % 2 == 0), 1.0, 0.6)
    mosaic = (frames * weights).astype(np.uint16)
    variants = {
        "rgb": screen_frames(rgb, color="RGB"),
        "bgr view": screen_frames(rgb[..., ::-1], color="BGR"),
        "big-endian": screen_frames(frames.astype(">u2")),
        "mosaic": screen_frames(mosaic, color="RGGB"),
    }
    for name, screening in variants.items():
        np.testing.assert_array_equal(screening.left_out, mono.left_out, err_msg=name)
        np.testing.assert_allclose(
            screening.relative_spreads, mono.relative_spreads, rtol=0.1, atol=0.01, err_msg=name
        )


@pytest.mark.parametrize("shape", [(6, 8), (32, 32), (256, 192)])
def test_frames_of_noise_alone_are_all_kept(shape):
    # No scene: every frame's spread is its noise's, whether the frame is large or small.
    rng = np.random.default_rng(5)
    frames = np.rint(29.9 + 0.8 * rng.standard_normal((201, *shape))).astype(np.uint8)
    assert screen_frames(frames).with_signal.all()


def test_frames_too_small_to_tell_are_all_kept_and_say_so():
    frames = np.full((12, 31, 32), 1000, np.uint16)
    frames[5:] += np.random.default_rng(6).integers(0, 3000, (7, 31, 32), np.uint16)
    screening = screen_frames(frames)
    assert screening.applied is False
    assert screening.with_signal.all()
    assert (screening.relative_spreads[:5] == 0.0).all()
    assert screen_frames(np.concatenate([frames, frames], axis=1)).applied is True


def test_half_precision_frames_and_numpy_integers_are_taken():
    frames, _ = _video(BLANK_AND_CLOUDY)
    halves = (frames / 4).astype(np.float16)
    screening = screen_frames(halves, workers=np.int64(2))
    np.testing.assert_array_equal(screening.left_out, [0, 1, 9, 12])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("factor", [1, 2, 5])
def test_block_sums_add_every_channel_of_whole_blocks(channels, factor):
    frame = np.random.default_rng(factor).integers(0, 65535, (23, 17, channels), np.uint16)
    rows_out, cols_out = 23 // factor, 17 // factor
    out = np.empty((rows_out, cols_out))
    _block_sums(frame.reshape(23, -1), factor, channels, out)
    whole = frame[: rows_out * factor, : cols_out * factor].astype(np.float64)
    expected = whole.reshape(rows_out, factor, cols_out, factor, channels).sum(axis=(1, 3, 4))
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    ("frames", "kwargs", "message"),
    [
        ([np.zeros((8, 8)), np.zeros((8, 9))], {}, "frame 1 has shape"),
        (np.full((3, 8, 8), np.nan), {}, "NaN or inf"),
        (np.zeros((3, 8)), {}, r"\(H, W\) or \(H, W, 3\)"),
        (np.zeros((3, 8, 8)), {"max_side_px": 8}, "max_side_px"),
        (np.zeros((3, 8, 8)), {"despeckle_size_px": 0}, "despeckle_size_px"),
        (np.zeros((3, 8, 8)), {"workers": 0}, "workers"),
        (np.zeros((3, 8, 8)), {"min_signal_fraction": 5.0}, r"min_signal_fraction must lie"),
        (np.zeros((3, 8, 8, 4)), {}, r"\(H, W\) or \(H, W, 3\)"),
        (np.zeros((3, 8, 8), complex), {}, "integers or floats"),
        (np.zeros((0, 8, 8)), {}, "at least one frame"),
        (np.full((3, 8, 8), 1e300), {}, "beyond float32"),
        (np.zeros((3, 8, 8)), {"frame_indices": [3]}, r"in \[0, 3\)"),
    ],
)
def test_bad_screening_input_is_refused(frames, kwargs, message):
    with pytest.raises(ValueError, match=message):
        screen_frames(frames, **kwargs)
