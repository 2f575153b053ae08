"""Flat synthesis and application against the noiseless model of the synthetic videos."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from scipy import ndimage

from astro_assets.samples.solar import DustSpec, SolarVideoParams, synthesize_frames_array
from astro_assets.science.flatfield.dust import expand_mask
from astro_assets.science.flatfield.flatfield import (
    FlatParams,
    IntegerCalibrator,
    apply_flat,
    estimate_black_level,
    saturated_fraction,
    sky_black_level,
    synthesize_flat,
    synthesize_plane_flats,
)
from astro_assets.science.flatfield.levels import target_level

DUST = (
    DustSpec(x=30.0, y=25.0, diameter_px=14.0, depth=0.25, kind="disc"),
    DustSpec(x=66.0, y=44.0, diameter_px=18.0, depth=0.3, kind="donut"),
)


@cache
def sun():
    return synthesize_frames_array(SolarVideoParams(n_frames=5, n_sunspots=0, dust=DUST, seed=2))


@cache
def planet():
    return synthesize_frames_array(
        SolarVideoParams(n_frames=9, target="planet", n_sunspots=0, dust=(), seed=4)
    )


def noiseless(truth):
    """Median and perfect inpainting of the model ``b + V * T * S`` (scene at zero shift)."""
    clean = truth.vignetting.astype(np.float64) * truth.scene
    median = truth.black_level_adu + clean * truth.transmission
    reference = truth.black_level_adu + clean
    return median, reference


def test_flat_equals_transmission_in_dust_and_exactly_one_outside() -> None:
    _, truth = sun()
    median, reference = noiseless(truth)
    mask = expand_mask(truth.dust_support())
    params = FlatParams(black_level_mode="value", black_level=truth.black_level_adu)
    result = synthesize_flat(median, reference, mask, params)
    assert result.flat.dtype == np.float32
    assert np.all(result.flat[mask == 0] == 1.0)
    inside = truth.dust_support()
    # With an exact reference and the true black level, F = T up to float32 rounding.
    np.testing.assert_allclose(result.flat[inside], truth.transmission[inside], rtol=1e-5)
    assert result.black_level == truth.black_level_adu
    assert result.stats["masked_px"] == int(np.count_nonzero(mask))


def test_ignoring_the_black_level_underestimates_the_depth_by_s_over_s_plus_b() -> None:
    _, truth = sun()
    median, reference = noiseless(truth)
    mask = expand_mask(truth.dust_support())
    flat = synthesize_flat(median, reference, mask, FlatParams()).flat
    inside = truth.dust_support()
    b = truth.black_level_adu
    signal = reference[inside] - b
    expected_depth = (1.0 - truth.transmission[inside]) * signal / (signal + b)
    np.testing.assert_allclose(1.0 - flat[inside], expected_depth, rtol=1e-4, atol=1e-6)


def test_values_above_one_are_kept() -> None:
    _, truth = sun()
    median, reference = noiseless(truth)
    mask = expand_mask(truth.dust_support())
    bright = median * 1.0
    bright[mask == 1.0] *= 1.2
    flat = synthesize_flat(bright, reference, mask).flat
    assert flat.max() > 1.1


def test_black_level_from_the_sky_of_a_planet() -> None:
    frames, truth = planet()
    median = np.median(frames, axis=0)
    estimate = estimate_black_level(median)
    # Sky pixels hold the pedestal plus read noise; their median is the pedestal within the
    # quantization step (1 ADU at 16 bit) plus a fraction of the read noise.
    assert abs(estimate - truth.black_level_adu) < 1.0 + truth.params.read_noise_adu
    result = synthesize_flat(
        median, median, np.zeros(median.shape), FlatParams(black_level_mode="sky")
    )
    assert result.black_level == estimate


def test_a_planet_under_one_percent_of_the_frame_keeps_the_sky_dark() -> None:
    frames, truth = synthesize_frames_array(
        SolarVideoParams(
            width=256,
            height=192,
            n_frames=5,
            target="planet",
            disk_radius_frac=0.05,
            n_sunspots=0,
            dust=(),
            seed=4,
        )
    )
    median = np.median(frames, axis=0)
    assert 0.001 < np.mean(truth.scene > 0.05 * truth.scene.max()) < 0.01
    # Beyond the disc's reach over the frames' jitter.
    sky = ~ndimage.binary_dilation(truth.scene > 0.01 * truth.scene.max(), iterations=5)
    estimate = estimate_black_level(median)
    assert abs(estimate - truth.black_level_adu) < 1.0 + truth.params.read_noise_adu
    # Another noise draw of the sky: the ratio there is noise over noise, never a flat.
    reference = np.median(frames[::-1][:3], axis=0)
    params = FlatParams(black_level_mode="value", black_level=truth.black_level_adu)
    result = synthesize_flat(median, reference, np.ones(median.shape), params)
    assert result.stats["signal_level"] > 0.5 * (median.max() - truth.black_level_adu)
    assert np.all(result.flat[sky] == 1.0) and np.all(result.forced_unity[sky])


def test_sky_estimate_fails_when_the_target_fills_the_frame() -> None:
    _, truth = sun()
    median, _ = noiseless(truth)
    filled = median[20:50, 20:70]
    with pytest.raises(ValueError, match="fills the frame"):
        estimate_black_level(filled)


def test_deep_shadows_on_a_disc_that_fills_the_frame_are_not_its_sky() -> None:
    _, truth = sun()
    median, _ = noiseless(truth)
    filled = median[20:50, 20:70]
    yy, xx = np.indices(filled.shape)
    # Two near-opaque spots inside the disc, 4 % of the frame: the darkest pixels, but enclosed
    # by the target, while the sky runs out of the frame.
    spots = ((yy - 10) ** 2 + (xx - 14) ** 2 <= 9) | ((yy - 20) ** 2 + (xx - 36) ** 2 <= 9)
    shadowed = np.where(spots, 0.3 * filled, filled)
    assert np.mean(spots) > 0.03
    assert sky_black_level(shadowed) is None
    with pytest.raises(ValueError, match="reaching the frame's edge"):
        estimate_black_level(shadowed)
    # Beside a sky that runs out of the frame, the sky is still measured (a guard for the
    # edge rule: a spot this small could not move the estimate either way).
    frames, planet_truth = planet()
    with_sky = np.median(frames, axis=0)
    level = target_level(with_sky)
    on_disc = np.argwhere(with_sky > 0.8 * level)
    row, col = on_disc[len(on_disc) // 2]
    spot = (np.indices(with_sky.shape) - np.array([row, col])[:, None, None]) ** 2
    shadowed_planet = np.where(spot.sum(axis=0) <= 9, 0.05 * with_sky, with_sky)
    estimate = estimate_black_level(shadowed_planet)
    assert abs(estimate - planet_truth.black_level_adu) < 1.0 + planet_truth.params.read_noise_adu


def test_off_target_saturated_and_opaque_pixels_are_forced_to_one() -> None:
    frames, truth = planet()
    median = np.median(frames, axis=0).astype(np.float64)
    reference = median.copy()
    mask = np.ones(median.shape, dtype=np.float32)
    yy, xx = np.indices(median.shape)
    on_disk = median > 0.5 * np.percentile(median, 99)
    opaque = on_disk & (yy % 7 == 0) & (xx % 5 == 0)
    median[opaque] = truth.black_level_adu
    peak = np.unravel_index(np.argmax(np.where(on_disk & ~opaque, median, 0)), median.shape)
    result = synthesize_flat(
        median,
        reference,
        mask,
        FlatParams(
            black_level_mode="value",
            black_level=truth.black_level_adu,
            saturation_level=float(median[peak]),
        ),
    )
    sky = reference - truth.black_level_adu <= 0.05 * (
        np.percentile(median, 99) - truth.black_level_adu
    )
    assert np.all(result.flat[sky] == 1.0) and np.all(result.forced_unity[sky])
    assert np.all(result.flat[opaque] == 1.0)
    assert result.forced_unity[peak]
    assert result.stats["forced_opaque_px"] == int(np.count_nonzero(opaque))


def test_implausibly_bright_ratios_are_forced_to_one_and_counted() -> None:
    _, truth = sun()
    median, reference = noiseless(truth)
    support = truth.dust_support()
    mask = expand_mask(support)
    # A reference far too dark under part of the mask (as when it mixes in the sky): dust
    # only blocks light, so a ratio of 2 cannot be a flat.
    wrong = support & (np.indices(median.shape)[1] < 30)
    reference = reference.copy()
    reference[wrong] = truth.black_level_adu + 0.5 * (median[wrong] - truth.black_level_adu)
    params = FlatParams(black_level_mode="value", black_level=truth.black_level_adu)
    result = synthesize_flat(median, reference, mask, params)
    assert np.all(result.flat[wrong] == 1.0) and np.all(result.forced_unity[wrong])
    assert result.stats["forced_implausible_px"] == int(np.count_nonzero(wrong))
    fine = support & ~wrong
    np.testing.assert_allclose(result.flat[fine], truth.transmission[fine], rtol=1e-4)


def test_clipped_plateau_is_treated_as_saturation() -> None:
    median = np.full((20, 20), 1000.0)
    median[5:15, 5:15] = 4095.0
    result = synthesize_flat(median, median, np.ones(median.shape))
    assert result.stats["saturation_level"] == 4095.0
    assert np.all(result.forced_unity[5:15, 5:15])


def test_a_uniform_median_is_not_taken_for_a_clipped_plateau() -> None:
    # Every pixel at one value shows no clip level: a frame of constant 128 is not saturated.
    median = np.full((20, 20), 128.0)
    assert saturated_fraction(median) == 0.0
    assert synthesize_flat(median, median, np.ones(median.shape)).stats["saturation_level"] is None
    assert saturated_fraction(median, FlatParams(saturation_level=128.0)) == 1.0


def test_saturated_fraction_is_the_share_of_the_target_on_the_plateau() -> None:
    median, _ = noiseless(sun()[1])
    assert saturated_fraction(median) == 0.0
    # Clipped at the level of its brightest 30 %: a plateau over those pixels, and the pixels
    # within saturation_fraction (98 %) of it count too.
    on_target = median > 0.05 * np.percentile(median, 99)
    clip = np.percentile(median[on_target], 70)
    share = saturated_fraction(np.minimum(median, clip))
    near = float(np.mean(median[on_target] >= 0.98 * clip))
    assert near > 0.30
    assert share == pytest.approx(near, abs=0.01)
    assert saturated_fraction(np.minimum(median, clip), FlatParams(saturation_level=1e9)) == 0.0


def test_apply_flat_inverts_the_flat() -> None:
    _, truth = sun()
    median, reference = noiseless(truth)
    mask = expand_mask(truth.dust_support())
    b = truth.black_level_adu
    flat = synthesize_flat(
        median, reference, mask, FlatParams(black_level_mode="value", black_level=b)
    ).flat
    frames, _ = sun()
    frame = frames[0]
    calibrated = apply_flat(frame, flat, b)
    assert calibrated.dtype == np.float32
    original = frame.astype(np.float64) - b
    # calibrated * flat == frame - b: exact where the flat is 1.0, to float32 rounding elsewhere.
    np.testing.assert_array_equal(calibrated[flat == 1.0], original[flat == 1.0])
    np.testing.assert_allclose(calibrated * flat, original, rtol=1e-6, atol=1e-3)


def rounded_reference(frame, flat, black_level, max_value, dtype, pedestal=0.0):
    """What the integer calibration must return: the float32 calibration rounded and clipped."""
    calibrated = np.rint(apply_flat(frame, flat, black_level, pedestal))
    clipped = int(np.count_nonzero((calibrated < 0) | (calibrated > max_value)))
    return np.clip(calibrated, 0, max_value).astype(dtype), clipped


def test_integer_calibration_rounds_and_clips_the_float_calibration_exactly() -> None:
    _, truth = sun()
    median, reference = noiseless(truth)
    b = truth.black_level_adu
    params = FlatParams(black_level_mode="value", black_level=b)
    flat = synthesize_flat(median, reference, expand_mask(truth.dust_support()), params).flat
    assert np.any(flat < 1.0)
    rng = np.random.default_rng(3)
    # The whole 16-bit range: values below the black level clip to 0, values that the flat
    # raises above 65535 clip to 65535.
    frames = rng.integers(0, 65536, (3, *flat.shape), dtype=np.uint16)
    frames[0, flat < 1.0] = 65535
    frames[1] = np.uint16(b) + 5
    calibrate = IntegerCalibrator(flat, b, np.uint16, 65535)
    expected_clipped = 0
    for frame in frames:
        original = frame.copy()
        expected, clipped = rounded_reference(frame, flat, b, 65535, np.uint16)
        got = calibrate(frame)
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(frame, original)
        expected_clipped += clipped
    assert expected_clipped > 0
    assert calibrate.clipped_pixels == expected_clipped


def test_integer_calibration_of_rgb_12_bit_and_big_endian_frames() -> None:
    rng = np.random.default_rng(4)
    flat = rng.uniform(0.5, 1.3, (6, 7, 3)).astype(np.float32)
    frame = rng.integers(0, 4096, (6, 7, 3), dtype=np.uint16)
    calibrate = IntegerCalibrator(flat, 12.5, np.uint16, 4095)
    expected, clipped = rounded_reference(frame, flat, 12.5, 4095, np.uint16)
    np.testing.assert_array_equal(calibrate(frame), expected)
    # The same values stored big-endian, and seen through a channel-reversed view.
    np.testing.assert_array_equal(calibrate(frame.astype(">u2")), expected)
    reversed_view = frame[..., ::-1].copy()[..., ::-1]
    np.testing.assert_array_equal(calibrate(reversed_view), expected)
    assert calibrate.clipped_pixels == 3 * clipped
    # A black level of half a code puts every value of a unit flat on a half: rounded to even.
    halves = IntegerCalibrator(np.ones((2, 3), np.float32), 0.5, np.uint16, 4095)
    np.testing.assert_array_equal(
        halves(np.array([[1, 2, 3], [4, 5, 6]], np.uint16)), [[0, 2, 2], [4, 4, 6]]
    )
    eight_bit = IntegerCalibrator(flat[..., 0], 0.0, np.uint8, 255)
    small = rng.integers(0, 256, (6, 7), dtype=np.uint8)
    expected, _ = rounded_reference(small, flat[..., 0], 0.0, 255, np.uint8)
    np.testing.assert_array_equal(eight_bit(small), expected)


def test_integer_calibration_rejects_bad_input() -> None:
    flat = np.ones((4, 5), np.float32)
    with pytest.raises(ValueError, match="flat must be > 0"):
        IntegerCalibrator(np.zeros((4, 5)), 0.0, np.uint16, 65535)
    with pytest.raises(ValueError, match="NaN"):
        IntegerCalibrator(np.full((4, 5), np.nan), 0.0, np.uint16, 65535)
    with pytest.raises(ValueError, match="black_level must be finite"):
        IntegerCalibrator(flat, np.inf, np.uint16, 65535)
    with pytest.raises(ValueError, match="integer type"):
        IntegerCalibrator(flat, 0.0, np.float32, 1)
    with pytest.raises(ValueError, match="max_value"):
        IntegerCalibrator(flat, 0.0, np.uint8, 4095)
    calibrate = IntegerCalibrator(flat, 0.0, np.uint16, 65535)
    with pytest.raises(ValueError, match="differs from the flat"):
        calibrate(np.ones((5, 4), np.uint16))
    with pytest.raises(ValueError, match="raw integers"):
        calibrate(np.ones((4, 5), np.float32))


def test_apply_flat_takes_rgb_frames_plane_by_plane() -> None:
    rng = np.random.default_rng(5)
    flat = rng.uniform(0.5, 1.0, (4, 5, 3)).astype(np.float32)
    frame = rng.integers(100, 1000, (4, 5, 3), dtype=np.uint16)
    calibrated = apply_flat(frame, flat, 10.0)
    for plane in range(3):
        np.testing.assert_array_equal(
            calibrated[..., plane], apply_flat(frame[..., plane], flat[..., plane], 10.0)
        )
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, 3\)"):
        apply_flat(frame[..., :2], flat[..., :2], 0.0)


def test_functions_do_not_change_their_inputs() -> None:
    _, truth = sun()
    median, reference = noiseless(truth)
    mask = expand_mask(truth.dust_support())
    copies = median.copy(), reference.copy(), mask.copy()
    result = synthesize_flat(median, reference, mask)
    apply_flat(median, result.flat, 0.0)
    estimate_black_level(median)
    for original, copy in zip((median, reference, mask), copies, strict=True):
        np.testing.assert_array_equal(original, copy)


def test_synthesize_flat_rejects_bad_input() -> None:
    _, truth = sun()
    median, reference = noiseless(truth)
    mask = expand_mask(truth.dust_support())
    with pytest.raises(ValueError, match="no usable signal"):
        synthesize_flat(
            median, reference, mask, FlatParams(black_level_mode="value", black_level=1e9)
        )
    with pytest.raises(ValueError, match="NaN"):
        bad = median.copy()
        bad[0, 0] = np.nan
        synthesize_flat(bad, reference, mask)
    with pytest.raises(ValueError, match="same shape"):
        synthesize_flat(median, reference[:-1], mask)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        synthesize_flat(median, reference, mask * 2.0)
    with pytest.raises(ValueError, match="needs a finite black_level"):
        FlatParams(black_level_mode="value")
    with pytest.raises(ValueError, match="black_level must be at least 0 ADU, got -5000"):
        FlatParams(black_level_mode="value", black_level=-5000.0)
    with pytest.raises(ValueError, match="black_level_mode"):
        FlatParams(black_level_mode="bias")
    with pytest.raises(ValueError, match="max_flat"):
        FlatParams(max_flat=1.0)
    with pytest.raises(ValueError, match="flat must be > 0"):
        apply_flat(median, np.zeros(median.shape), 0.0)
    with pytest.raises(ValueError, match="shape"):
        apply_flat(median, np.ones((3, 3)), 0.0)


def test_calibration_with_a_master_dark_subtracts_it_pixel_by_pixel() -> None:
    rng = np.random.default_rng(6)
    flat = rng.uniform(0.6, 1.2, (6, 7)).astype(np.float32)
    dark = rng.uniform(90.0, 400.0, (6, 7))
    frame = rng.integers(0, 4096, (6, 7), dtype=np.uint16)
    calibrated = apply_flat(frame, flat, dark)
    np.testing.assert_allclose(calibrated * flat, frame - dark, rtol=1e-6, atol=1e-3)
    calibrate = IntegerCalibrator(flat, dark, np.uint16, 4095)
    expected, clipped = rounded_reference(frame, flat, dark, 4095, np.uint16)
    np.testing.assert_array_equal(calibrate(frame), expected)
    assert clipped > 0 and calibrate.clipped_pixels == clipped
    with pytest.raises(ValueError, match="one level or an array"):
        apply_flat(frame, flat, dark[:, :3])
    with pytest.raises(ValueError, match="one level or an array"):
        IntegerCalibrator(flat, dark.T, np.uint16, 4095)
    with pytest.raises(ValueError, match="black_level must be finite"):
        IntegerCalibrator(flat, np.where(dark > 300, np.inf, dark), np.uint16, 4095)


def test_calibration_adds_the_pedestal_back_so_the_sky_keeps_its_noise() -> None:
    rng = np.random.default_rng(7)
    flat = np.ones((6, 7), np.float32)
    flat[2:4, 3:5] = 0.5
    dark = rng.uniform(90.0, 400.0, (6, 7))
    pedestal = 100.0
    # The sky: the dark plus read noise, half of it below the dark; light under the dust.
    frame = np.rint(dark + rng.normal(0.0, 5.0, dark.shape)).astype(np.uint16)
    frame[2:4, 3:5] += 200
    calibrated = apply_flat(frame, flat, dark, pedestal)
    np.testing.assert_allclose((calibrated - pedestal) * flat, frame - dark, rtol=1e-6, atol=1e-3)
    clean = flat == 1.0
    np.testing.assert_array_equal(
        calibrated[clean], (frame - dark + pedestal).astype(np.float32)[clean]
    )
    calibrate = IntegerCalibrator(flat, dark, np.uint16, 4095, pedestal)
    expected, clipped = rounded_reference(frame, flat, dark, 4095, np.uint16, pedestal)
    np.testing.assert_array_equal(calibrate(frame), expected)
    assert clipped == calibrate.clipped_pixels == 0
    without_pedestal = IntegerCalibrator(flat, dark, np.uint16, 4095)
    without_pedestal(frame)
    assert without_pedestal.clipped_pixels == np.count_nonzero(frame < dark - 0.5)
    assert without_pedestal.clipped_pixels > 0
    with pytest.raises(ValueError, match="pedestal has shape"):
        apply_flat(frame, flat, dark, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="pedestal must be finite"):
        IntegerCalibrator(flat, dark, np.uint16, 4095, np.nan)


def _one_colour_planes(gains: tuple[float, ...], read_noise: float = 0.0):
    """Noiseless medians and references of an RGB video whose planes hold ``gains`` of the
    sun's light above a shared pedestal (an H-alpha filter: R alone), and its mask."""
    _, truth = sun()
    median, reference = noiseless(truth)
    black = truth.black_level_adu
    rng = np.random.default_rng(7)
    medians = [black + gain * (median - black) for gain in gains]
    medians = [plane + rng.normal(0.0, read_noise, plane.shape) for plane in medians]
    references = [black + gain * (reference - black) for gain in gains]
    return truth, medians, references, expand_mask(truth.dust_support())


@pytest.mark.parametrize("mode", ["none", "value", "sky"])
@pytest.mark.parametrize("read_noise", [0.0, 8.0])
def test_a_plane_a_filter_leaves_without_light_gets_a_flat_of_one(mode, read_noise) -> None:
    truth, medians, references, mask = _one_colour_planes((1.0, 0.02, 0.0), read_noise)
    black = truth.black_level_adu
    params = FlatParams(black_level_mode=mode, black_level=black if mode == "value" else None)
    results = synthesize_plane_flats(medians, references, [mask] * 3, [params] * 3)
    assert [r.stats["without_light"] for r in results] == [False, True, True]
    assert all(r.stats["black_level_mode"] == mode for r in results)
    for dark in results[1:]:
        assert np.all(dark.flat == 1.0) and dark.flat.dtype == np.float32
        assert np.array_equal(dark.forced_unity, mask > 0)
        assert dark.stats["forced_dark_px"] == int(np.count_nonzero(mask))
    inside = truth.dust_support()
    lit = inside & (truth.scene > 0.2 * truth.scene.max())
    errors = results[0].flat[lit] / truth.transmission[lit] - 1.0
    # The true pedestal gives the transmission; the sky's scattered light and the pedestal
    # kept in the ratio (none) under-correct by their share of the light.
    assert np.sqrt(np.mean(errors**2)) < {"value": 0.001, "sky": 0.005, "none": 0.01}[mode]
    if mode == "sky":
        # Each plane's median over the same sky pixels: the pedestal plus its share of the
        # light scattered there.
        sky_light = results[0].black_level - black
        expected = [black + gain * sky_light for gain in (1.0, 0.02, 0.0)]
        assert [r.black_level for r in results] == pytest.approx(expected, abs=2.0)
    # Alone, the plane at its pedestal is refused (value), or its sky is not found (sky).
    if read_noise == 0.0 and mode != "none":
        with pytest.raises(ValueError):
            synthesize_flat(medians[2], references[2], mask, params)


def test_planes_that_all_hold_light_get_each_its_own_flat() -> None:
    truth, medians, references, mask = _one_colour_planes((1.0, 0.6, 0.3))
    for params in (
        FlatParams(),
        FlatParams(black_level_mode="value", black_level=truth.black_level_adu),
    ):
        results = synthesize_plane_flats(medians, references, [mask] * 3, [params] * 3)
        for result, median, reference in zip(results, medians, references, strict=True):
            alone = synthesize_flat(median, reference, mask, params)
            assert np.array_equal(result.flat, alone.flat)
            assert result.stats == {**alone.stats, "without_light": False}
    # With the sky: each plane's pedestal on the sky of their sum, that of mono alone.
    sky = FlatParams(black_level_mode="sky")
    mono = synthesize_plane_flats(medians[:1], references[:1], [mask], [sky])[0]
    assert np.array_equal(mono.flat, synthesize_flat(medians[0], references[0], mask, sky).flat)
    assert mono.black_level == estimate_black_level(medians[0], sky)
    results = synthesize_plane_flats(medians, references, [mask] * 3, [sky] * 3)
    sky_light = mono.black_level - truth.black_level_adu
    assert [r.black_level for r in results] == pytest.approx(
        [truth.black_level_adu + gain * sky_light for gain in (1.0, 0.6, 0.3)]
    )
