"""Synthetic SER videos: determinism, the image model, the ground truth and the files."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from astro_assets.io.ser import open_ser
from astro_assets.samples import (
    SAMPLE_DARKS,
    DustSpec,
    SolarVideoParams,
    SolarVideoTruth,
    SyntheticSolarVideo,
    dark_signal,
    dust_transmission,
    frame_timestamps,
    generate_sample_darks,
    generate_samples,
    random_dust,
    sample_catalog,
    synthesize_dark_frames,
    synthesize_frames_array,
    synthesize_video,
    truth_path_for,
    vignetting_map,
    write_dark_video,
    write_sample_video,
)

TINY = {"width": 48, "height": 40, "n_frames": 4}


def test_same_seed_gives_same_frames_and_truth() -> None:
    params = SolarVideoParams(**TINY, seed=5)
    frames_a, truth_a = synthesize_frames_array(params)
    frames_b, truth_b = synthesize_frames_array(params)
    assert frames_a.tobytes() == frames_b.tobytes()
    for name in ("transmission", "vignetting", "shifts", "scene"):
        np.testing.assert_array_equal(getattr(truth_a, name), getattr(truth_b, name))
    assert truth_a.dust == truth_b.dust
    assert truth_a.sunspots == truth_b.sunspots


def test_different_seed_gives_different_video() -> None:
    frames_a, truth_a = synthesize_frames_array(SolarVideoParams(**TINY, seed=1))
    frames_b, truth_b = synthesize_frames_array(SolarVideoParams(**TINY, seed=2))
    assert not np.array_equal(frames_a, frames_b)
    assert not np.array_equal(truth_a.scene, truth_b.scene)
    assert truth_a.dust != truth_b.dust


def test_iterator_array_and_single_frames_agree() -> None:
    params = SolarVideoParams(**TINY, seed=3)
    frames_iter, truth = synthesize_video(params)
    frames = np.stack(list(frames_iter))
    array, _ = synthesize_frames_array(params)
    np.testing.assert_array_equal(frames, array)
    video = SyntheticSolarVideo(params)
    np.testing.assert_array_equal(video.frame(2), array[2])
    assert len(video) == params.n_frames
    assert truth.params == params


def test_removing_dust_keeps_the_scene_and_the_motion() -> None:
    with_dust = SyntheticSolarVideo(SolarVideoParams(**TINY, seed=9))
    without = SyntheticSolarVideo(SolarVideoParams(**TINY, seed=9, dust=()))
    np.testing.assert_array_equal(with_dust.truth.scene, without.truth.scene)
    np.testing.assert_array_equal(with_dust.truth.shifts, without.truth.shifts)
    assert np.all(without.truth.transmission == 1.0)
    assert without.truth.dust == ()


def test_truth_shapes_dtypes_and_read_only() -> None:
    params = SolarVideoParams(**TINY)
    _, truth = synthesize_video(params)
    for name in ("transmission", "vignetting", "scene"):
        array = getattr(truth, name)
        assert array.shape == (40, 48)
        assert array.dtype == np.float32
        assert not array.flags.writeable
    assert truth.shifts.shape == (4, 2)
    assert truth.shifts.dtype == np.float64
    assert truth.black_level_adu == params.black_level_adu
    assert len(truth.dust) == params.n_dust
    assert len(truth.sunspots) == params.n_sunspots
    with pytest.raises(ValueError, match="read-only"):
        truth.scene[0, 0] = 1.0
    frames, _ = synthesize_frames_array(params)
    assert frames.shape == (4, 40, 48)
    assert frames.dtype == np.uint16


def test_disc_transmission_depth_and_exact_one_away_from_dust() -> None:
    spec = DustSpec(x=30.3, y=25.6, diameter_px=18.0, depth=0.2, kind="disc")
    transmission = dust_transmission((spec,), (60, 70))
    assert transmission.dtype == np.float32
    assert transmission.min() == pytest.approx(0.8, abs=1e-4)
    yy, xx = np.mgrid[0:60, 0:70]
    far = np.hypot(yy - spec.y, xx - spec.x) > spec.outer_radius_px
    assert np.all(transmission[far] == 1.0)
    near_edge = np.hypot(yy - spec.y, xx - spec.x) < 0.5 * spec.diameter_px - 3 * spec.edge_sigma_px
    np.testing.assert_allclose(transmission[near_edge], 0.8, atol=1e-3)


def test_donut_has_a_brighter_centre_than_its_ring() -> None:
    spec = DustSpec(x=35.0, y=30.0, diameter_px=40.0, depth=0.1, kind="donut", obstruction=0.35)
    transmission = dust_transmission((spec,), (60, 70))
    assert transmission.min() == pytest.approx(0.9, abs=1e-4)
    ring = transmission[30, 35 + 13]
    centre = transmission[30, 35]
    assert ring == pytest.approx(0.9, abs=2e-3)
    assert centre > 0.99
    assert centre - ring > 0.09


def test_overlapping_shadows_multiply() -> None:
    a = DustSpec(x=20.0, y=20.0, diameter_px=16.0, depth=0.5, kind="disc")
    b = DustSpec(x=22.0, y=20.0, diameter_px=16.0, depth=0.4, kind="disc")
    both = dust_transmission((a, b), (40, 40))
    product = dust_transmission((a,), (40, 40)) * dust_transmission((b,), (40, 40))
    np.testing.assert_allclose(both, product, rtol=1e-6)
    assert both[20, 21] == pytest.approx(0.5 * 0.6, abs=1e-3)


def test_dust_support_thresholds_the_transmission() -> None:
    spec = DustSpec(x=20.0, y=15.0, diameter_px=12.0, depth=0.3, kind="disc")
    params = SolarVideoParams(**TINY, dust=(spec,))
    _, truth = synthesize_video(params)
    support = truth.dust_support()
    assert support.dtype == bool
    np.testing.assert_array_equal(support, truth.transmission < np.float32(0.995))
    assert support[15, 20]
    assert not support[0, 0]
    assert truth.dust_support(0.2).sum() < support.sum()
    with pytest.raises(ValueError, match="threshold"):
        truth.dust_support(1.5)


def test_vignetting_map_falls_off_to_the_corners() -> None:
    vignetting = vignetting_map((41, 61), 0.1)
    assert vignetting[20, 30] == pytest.approx(1.0)
    for corner in (vignetting[0, 0], vignetting[0, -1], vignetting[-1, 0], vignetting[-1, -1]):
        assert corner == pytest.approx(0.9, abs=1e-6)


def test_dust_is_fixed_on_the_sensor_in_every_frame() -> None:
    spec = DustSpec(x=24.0, y=20.0, diameter_px=14.0, depth=0.4, kind="disc")
    common = {**TINY, "n_frames": 5, "drift_px": 8.0, "jitter_px": 0.8, "seed": 4}
    dusty = SyntheticSolarVideo(SolarVideoParams(**common, dust=(spec,)))
    clean = SyntheticSolarVideo(SolarVideoParams(**common, dust=()))
    black = dusty.params.black_level_adu
    transmission = dusty.truth.transmission.astype(np.float64)
    for index in range(5):
        signal_dusty = dusty.expected_frame(index) - black
        signal_clean = clean.expected_frame(index) - black
        np.testing.assert_allclose(signal_dusty, transmission * signal_clean, rtol=1e-9, atol=1e-9)


def test_scene_moves_by_the_recorded_shifts() -> None:
    params = SolarVideoParams(
        **{**TINY, "n_frames": 5}, drift_px=10.0, jitter_px=0.7, dust=(), vignetting=0.0, seed=3
    )
    video = SyntheticSolarVideo(params)
    scene = video.truth.scene.astype(np.float64)
    interior = (slice(10, -10), slice(10, -10))
    peak = scene.max()
    for index, shift in enumerate(video.truth.shifts):
        signal = video.expected_frame(index) - params.black_level_adu
        moved = ndimage.shift(scene, shift, order=3)
        wrong_way = ndimage.shift(scene, -shift, order=3)
        assert np.abs(signal - moved)[interior].max() < 0.005 * peak
        if np.hypot(*shift) > 1.0:
            assert np.abs(signal - wrong_way)[interior].max() > 0.05 * peak


def test_drift_is_linear_over_the_video_and_jitter_has_its_rms() -> None:
    tracked_jitter = SyntheticSolarVideo(
        SolarVideoParams(**{**TINY, "n_frames": 400}, drift_px=0.0, jitter_px=1.0)
    )
    radial_rms = np.sqrt(np.mean(np.sum(tracked_jitter.truth.shifts**2, axis=1)))
    assert radial_rms == pytest.approx(1.0, rel=0.1)
    drifting = SyntheticSolarVideo(
        SolarVideoParams(**{**TINY, "n_frames": 7}, drift_px=12.0, jitter_px=0.0)
    ).truth.shifts
    assert np.hypot(*(drifting[-1] - drifting[0])) == pytest.approx(12.0)
    np.testing.assert_allclose(
        np.diff(drifting, axis=0), np.diff(drifting, axis=0)[:1].repeat(6, 0)
    )
    np.testing.assert_allclose(drifting.mean(axis=0), 0.0, atol=1e-12)


def test_seeing_bends_each_frame_by_its_own_smooth_field_of_the_given_rms() -> None:
    base = {"width": 160, "height": 128, "n_frames": 4, "dust": (), "vignetting": 0.0}
    still = SolarVideoParams(**base, drift_px=0.0, jitter_px=0.0, seed=4)
    bent = dataclasses.replace(still, seeing_warp_px=1.5, seeing_scale_px=12.0)
    plain = SyntheticSolarVideo(still)
    video = SyntheticSolarVideo(bent)
    np.testing.assert_array_equal(video.truth.transmission, plain.truth.transmission)
    np.testing.assert_array_equal(video.truth.shifts, plain.truth.shifts)
    scene = plain.expected_frame(0) - still.black_level_adu
    # Local shifts measured by correlating 24 px tiles of each bent frame with the scene.
    tile = 24
    frames_shifts = []
    for index in range(bent.n_frames):
        signal = video.expected_frame(index) - bent.black_level_adu
        tiles = []
        for top in range(20, 128 - 20 - tile + 1, tile):
            for left in range(20, 160 - 20 - tile + 1, tile):
                window = (slice(top, top + tile), slice(left, left + tile))
                tiles.append(_best_shift(scene, signal, window))
        frames_shifts.append(np.array(tiles))
    # Averaged over a tile twice its correlation length, the field's 1.5 px shrink; pooled
    # over the frames they stay of that order, where the frames without seeing show none.
    pooled = np.concatenate(frames_shifts)
    assert 0.4 < np.sqrt(np.mean(np.sum(pooled**2, axis=1))) <= 1.5
    for shifts in frames_shifts:
        # Smooth but not rigid: the tiles do not all move together.
        assert max(np.ptp(shifts[:, 0]), np.ptp(shifts[:, 1])) > 0.5
    assert not np.allclose(frames_shifts[0], frames_shifts[1], atol=0.2)
    np.testing.assert_array_equal(SyntheticSolarVideo(bent).frame(1), video.frame(1))


def _best_shift(scene: np.ndarray, signal: np.ndarray, window) -> np.ndarray:
    """(dy, dx) between ``scene`` and ``signal`` in ``window``, to a tenth of a pixel."""
    shift, _, _ = phase_cross_correlation(scene[window], signal[window], upsample_factor=10)
    return shift


def test_expected_frame_is_black_plus_vignetted_transmitted_scene_when_still() -> None:
    params = SolarVideoParams(**TINY, drift_px=0.0, jitter_px=0.0, vignetting=0.2)
    video = SyntheticSolarVideo(params)
    truth = video.truth
    model = truth.black_level_adu + truth.vignetting * truth.transmission * truth.scene
    np.testing.assert_allclose(video.expected_frame(0), model, rtol=1e-5)


def test_temporal_noise_is_poisson_plus_read_noise() -> None:
    params = SolarVideoParams(
        width=16,
        height=12,
        n_frames=300,
        disk_radius_frac=3.0,
        drift_px=0.0,
        jitter_px=0.0,
        full_well=2000.0,
        read_noise_adu=20.0,
        dust=(),
        n_sunspots=0,
        seed=8,
    )
    video = SyntheticSolarVideo(params)
    frames, _ = synthesize_frames_array(params)
    expected = video.expected_frame(0)
    electrons = video.expected_electrons(0)
    gain = params.gain_adu_per_electron
    predicted_variance = gain**2 * electrons + params.read_noise_adu**2 + 1.0 / 12.0
    measured_variance = frames.astype(np.float64).var(axis=0, ddof=1)
    assert np.mean(measured_variance / predicted_variance) == pytest.approx(1.0, abs=0.03)
    standard_error = np.sqrt(predicted_variance / params.n_frames)
    z = (frames.mean(axis=0) - expected) / standard_error
    assert abs(z.mean()) < 0.3
    assert z.std() == pytest.approx(1.0, abs=0.15)


def test_the_dark_signal_is_in_every_frame_and_alone_in_the_dark_video(tmp_path) -> None:
    params = SolarVideoParams(
        **TINY,
        hot_pixel_fraction=0.05,
        hot_pixel_adu=600.0,
        amp_glow_adu=300.0,
        drift_px=0.0,
        jitter_px=0.0,
        read_noise_adu=8.0,
        seed=5,
    )
    assert dark_signal(dataclasses.replace(params, hot_pixel_adu=0.0, amp_glow_adu=0.0)) is None
    dark = dark_signal(params)
    hot = dark > 300.0
    assert 0.02 < hot.mean() < 0.08
    assert dark[0, 0] >= 300.0 and dark[-1, -1] < 1.0
    lit = SyntheticSolarVideo(params)
    unlit = SyntheticSolarVideo(
        dataclasses.replace(params, hot_pixel_fraction=0.0, amp_glow_adu=0.0)
    )
    np.testing.assert_allclose(lit.expected_frame(0) - unlit.expected_frame(0), dark, atol=1e-9)
    frames = synthesize_dark_frames(params, 64)
    assert frames.shape == (64, params.height, params.width) and frames.dtype == np.uint16
    # The median of 64 frames of 8 ADU read noise has a standard error of about 1.25 ADU: it
    # is within 6 ADU of black + dark at every pixel, and the frames scatter by the read noise.
    np.testing.assert_allclose(np.median(frames, axis=0), params.black_level_adu + dark, atol=6)
    spread = (frames - np.median(frames, axis=0)).std()
    assert spread == pytest.approx(params.read_noise_adu, rel=0.1)
    np.testing.assert_array_equal(frames, synthesize_dark_frames(params, 64))
    written = write_dark_video(tmp_path / "dark.ser", params, 5)
    with open_ser(written) as video:
        np.testing.assert_array_equal(video.frames, frames[:5])
    with pytest.raises(ValueError, match="n_frames"):
        synthesize_dark_frames(params, 0)
    with pytest.raises(ValueError, match=r"\.ser suffix"):
        write_dark_video(tmp_path / "dark.avi", params, 5)


def test_planet_sky_sits_at_the_black_level() -> None:
    params = SolarVideoParams(
        target="planet", width=64, height=48, n_frames=6, black_level_adu=800.0, seed=2
    )
    frames, truth = synthesize_frames_array(params)
    corners = frames[:, :6, :6].astype(np.float64)
    assert np.median(corners) == pytest.approx(800.0, abs=2.0)
    assert abs(corners.mean() - 800.0) < 3.0 * params.read_noise_adu / math.sqrt(corners.size)
    assert corners.std() == pytest.approx(params.read_noise_adu, rel=0.15)
    assert np.all(truth.scene[:4, :4] < 1e-3 * truth.scene.max())
    assert np.median(frames) < 0.5 * frames.max()


@pytest.mark.parametrize("target", ["planet", "sun"])
def test_a_disk_in_phase_is_lit_on_the_day_side_of_its_terminator(target: str) -> None:
    base = {
        "target": target,
        "width": 96,
        "height": 96,
        "n_frames": 1,
        "disk_radius_frac": 0.35,
        "n_sunspots": 0,
        "dust": (),
        "blur_sigma_px": 0.0,
        "texture_contrast": 0.0,
        "seed": 4,
    }
    full = SyntheticSolarVideo(SolarVideoParams(**base)).truth.scene
    yy, xx = np.indices(full.shape)
    # The disk: radius 33.6 px about (47.5, 47.5); light from +x.
    on_disk = np.hypot(yy - 47.5, (xx - 47.5)) < 30.0
    half = SyntheticSolarVideo(SolarVideoParams(**base, phase_angle_deg=90.0)).truth.scene
    # At 90 degrees the terminator is the central meridian, a few pixels wide.
    day, night = on_disk & (xx > 52), on_disk & (xx < 43)
    np.testing.assert_allclose(half[day], full[day], rtol=1e-5)
    assert np.all(half[night] < 1e-3 * full[night])
    crescent = SyntheticSolarVideo(SolarVideoParams(**base, phase_angle_deg=140.0)).truth.scene
    lit = on_disk & (crescent > 0.5 * full)
    # cos(140 deg) mu + sin(140 deg) x > 0: lit only where x > 1.19 mu radii, a crescent on
    # the right whose inner edge (mu > 0.45 inside 30 px) is at least a third of a radius in.
    assert lit.any() and np.all(xx[lit] > 47.5 + 0.3 * 33.6)
    assert np.count_nonzero(lit) < 0.2 * np.count_nonzero(on_disk)


def test_sun_overfills_the_frame_with_the_limb_in_the_corners() -> None:
    _, truth = synthesize_video(SolarVideoParams(**TINY, disk_radius_frac=0.7, n_sunspots=0))
    centre = truth.scene[20, 24]
    assert truth.scene[0, 0] < 0.1 * centre
    assert truth.scene[20, 2] > 0.3 * centre


def test_sunspots_are_dark_features_of_the_scene() -> None:
    params = SolarVideoParams(n_sunspots=2, blur_sigma_px=0.0, seed=6)
    _, truth = synthesize_video(params)
    assert len(truth.sunspots) == 2
    for spot in truth.sunspots:
        inside = truth.scene[round(spot.y), round(spot.x)]
        ring = truth.scene[round(spot.y), round(spot.x + spot.penumbra_radius_px + 5)]
        assert inside < 0.6 * ring
        assert spot.umbra_radius_px < spot.penumbra_radius_px


def test_twelve_bit_shifted_values_are_multiples_of_sixteen() -> None:
    params = SolarVideoParams(**TINY, bit_depth=12, shift_12bit=True, peak_level_frac=1.0)
    frames, truth = synthesize_frames_array(params)
    assert np.all(frames % 16 == 0)
    assert frames.max() == 4095 * 16
    assert params.ser_depth == 16
    assert truth.black_level_adu == 1024.0


def test_twelve_bit_unshifted_values_stay_below_4096() -> None:
    params = SolarVideoParams(**TINY, bit_depth=12, shift_12bit=False, peak_level_frac=1.0)
    frames, _ = synthesize_frames_array(params)
    assert frames.max() == 4095
    assert len(np.unique(frames % 16)) > 1
    assert params.ser_depth == 12
    assert params.black_level_adu == 64.0


def test_random_dust_follows_the_focal_ratio() -> None:
    frame = {"width": 320, "height": 240, "n_sunspots": 0, "n_dust": 4}
    fast = random_dust(SolarVideoParams(**frame, focal_ratio=10.0, seed=1))
    medium = random_dust(SolarVideoParams(**frame, focal_ratio=30.0, seed=1))
    slow = random_dust(SolarVideoParams(**frame, focal_ratio=60.0, seed=1))
    assert all(d.kind == "donut" for d in fast)
    assert all(d.kind == "disc" for d in medium + slow)
    assert min(d.diameter_px for d in fast) > 30
    assert all(10 < d.diameter_px < 30 for d in medium)
    assert all(d.diameter_px < 15 for d in slow)
    assert max(d.depth for d in fast) < 0.1
    assert np.median([d.depth for d in slow]) > 0.5
    for spec in fast + medium + slow:
        reach = 0.5 * spec.diameter_px
        assert reach <= spec.x <= 319 - reach
        assert reach <= spec.y <= 239 - reach


def test_random_dust_is_what_the_video_renders() -> None:
    params = SolarVideoParams(**TINY, seed=21)
    _, truth = synthesize_video(params)
    assert truth.dust == random_dust(params)


def test_random_dust_sizes_are_capped_on_small_frames() -> None:
    dust = random_dust(SolarVideoParams(**TINY, focal_ratio=10.0, n_dust=1))
    assert dust[0].diameter_px == pytest.approx(0.25 * 40)


def test_saturation_clips_at_the_largest_stored_value() -> None:
    params = SolarVideoParams(**TINY, peak_level_frac=1.0, bit_depth=14, shift_12bit=True)
    frames, _ = synthesize_frames_array(params)
    assert frames.max() == params.max_stored_value == 16383 * 4


def test_params_json_round_trip() -> None:
    spec = DustSpec(x=3.0, y=4.0, diameter_px=5.0, depth=0.5, kind="donut", obstruction=0.3)
    params = SolarVideoParams(**TINY, dust=(spec,), target="planet", seed=7)
    assert SolarVideoParams.from_json(params.to_json()) == params
    random = SolarVideoParams(**TINY)
    assert SolarVideoParams.from_json(random.to_json()) == random
    with pytest.raises(ValueError, match="unknown SolarVideoParams fields"):
        SolarVideoParams.from_json('{"width": 10, "colour": 1}')


def test_numpy_scalars_are_stored_as_python_numbers() -> None:
    spec = DustSpec(
        x=np.float32(3.5), y=np.int64(4), diameter_px=np.float64(5), depth=0.5, kind="disc"
    )
    params = SolarVideoParams(
        width=np.int64(32), height=32, drift_px=np.float32(2.0), seed=np.uint8(3), dust=(spec,)
    )
    assert type(params.width) is int and type(params.seed) is int
    assert type(params.drift_px) is float and type(spec.x) is float and type(spec.y) is float
    assert SolarVideoParams.from_json(params.to_json()) == params
    assert hash(params) == hash(SolarVideoParams.from_json(params.to_json()))


def test_defaults_resolve_to_numbers() -> None:
    params = SolarVideoParams()
    assert params.disk_radius_frac == 0.75
    assert SolarVideoParams(target="planet").disk_radius_frac == 0.3
    assert params.black_level_adu == 1024.0
    assert params.read_noise_adu == pytest.approx(3.0 * params.gain_adu_per_electron)
    assert params.gain_adu_per_electron == pytest.approx((0.7 * 65535 - 1024) / 20000)


def test_truth_save_and_load_round_trip(tmp_path) -> None:
    _, truth = synthesize_video(SolarVideoParams(**TINY, n_sunspots=2, seed=12))
    path = truth.save(tmp_path / "video.truth.npz")
    assert path == tmp_path / "video.truth.npz"
    assert [p.name for p in tmp_path.iterdir()] == ["video.truth.npz"]
    loaded = SolarVideoTruth.load(path)
    for name in ("transmission", "vignetting", "shifts", "scene"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(truth, name))
        assert getattr(loaded, name).dtype == getattr(truth, name).dtype
    assert loaded.dust == truth.dust
    assert loaded.sunspots == truth.sunspots
    assert loaded.params == truth.params
    assert loaded.black_level_adu == truth.black_level_adu


def test_write_sample_video_round_trips_through_open_ser(tmp_path) -> None:
    params = SolarVideoParams(**TINY, bit_depth=12, seed=4)
    video_path, truth_path = write_sample_video(tmp_path / "clip.ser", params)
    assert video_path == tmp_path / "clip.ser"
    assert truth_path == tmp_path / "clip.truth.npz" == truth_path_for(video_path)
    frames, truth = synthesize_frames_array(params)
    with open_ser(video_path) as video:
        assert video.color == "MONO"
        assert video.n_frames == params.n_frames
        np.testing.assert_array_equal(np.asarray(video.frames), frames)
        assert video.timestamps is not None
        np.testing.assert_array_equal(video.timestamps, frame_timestamps(params))
        steps = np.diff(video.timestamps).astype(np.int64)
        np.testing.assert_allclose(steps, 1e9 / 30.0, atol=100)
        assert video.significant_bits == 12
        assert video.bit_alignment == "msb"
    np.testing.assert_array_equal(SolarVideoTruth.load(truth_path).scene, truth.scene)


def test_write_sample_video_requires_the_ser_suffix(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"\.ser suffix"):
        write_sample_video(tmp_path / "clip.avi", SolarVideoParams(**TINY))


def test_generate_small_samples_writes_every_variant(tmp_path) -> None:
    written = generate_samples(tmp_path / "ser", size="small")
    names = list(sample_catalog("small"))
    assert [p.name for p in written] == [f"{n}.ser" for n in names]
    expected_files = {f"{n}.ser" for n in names} | {f"{n}.truth.npz" for n in names}
    assert {p.name for p in (tmp_path / "ser").iterdir()} == expected_files
    for path in written:
        truth = SolarVideoTruth.load(truth_path_for(path))
        with open_ser(path) as video:
            assert video.frames.shape == (12, 72, 96)
            assert truth.params.n_frames == 12
            if truth.params.bit_depth == 16:
                assert video.warnings == ()
    dustfree = SolarVideoTruth.load(tmp_path / "ser" / "sun_dustfree.truth.npz")
    assert dustfree.dust == ()
    donuts = SolarVideoTruth.load(tmp_path / "ser" / "sun_f10_donuts_tracked.truth.npz")
    assert {d.kind for d in donuts.dust} == {"donut"}
    assert np.abs(donuts.shifts).max() < 1.0


def test_sample_darks_are_named_as_their_videos_and_hold_their_sensors_dark_signal(
    tmp_path,
) -> None:
    catalog = sample_catalog("small")
    written = generate_sample_darks(tmp_path / "darks", size="small")
    assert [p.name for p in written] == [f"{name}.ser" for name in SAMPLE_DARKS]
    assert {p.name for p in (tmp_path / "darks").iterdir()} == {p.name for p in written}
    for path in written:
        params = catalog[path.stem]
        signal = dark_signal(params)
        assert signal is not None
        assert np.mean(signal > 100.0) >= 0.5 * params.hot_pixel_fraction
        with open_ser(path) as dark:
            frames = np.asarray(dark.frames, dtype=np.float64)
            assert frames.shape == (SAMPLE_DARKS[path.stem], params.height, params.width)
        # The median of 32 frames lies within a few read noises of the sensor's dark level.
        residual = np.median(frames, axis=0) - (params.black_level_adu + signal)
        assert np.abs(residual).max() < 5.0 * params.read_noise_adu


def test_demo_catalogue_is_larger() -> None:
    demo = sample_catalog("demo")
    assert set(demo) == set(sample_catalog("small"))
    assert all(p.width == 640 and p.height == 480 and p.n_frames == 60 for p in demo.values())
    with pytest.raises(ValueError, match="size='huge' is unknown"):
        sample_catalog("huge")


def test_frame_index_out_of_range() -> None:
    video = SyntheticSolarVideo(SolarVideoParams(**TINY))
    with pytest.raises(IndexError, match="out of range"):
        video.frame(4)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"width": 7}, "too small"),
        ({"height": 4}, "too small"),
        ({"n_frames": 0}, "n_frames"),
        ({"target": "moon"}, "target='moon' is unknown"),
        ({"disk_radius_frac": 0.0}, "disk_radius_frac"),
        ({"disk_center_frac": (0.5,)}, "disk_center_frac"),
        ({"phase_angle_deg": 180.0}, "phase_angle_deg"),
        ({"phase_angle_deg": -1.0}, "phase_angle_deg"),
        ({"drift_px": -1.0}, "drift_px"),
        ({"jitter_px": float("nan")}, "jitter_px"),
        ({"seeing_warp_px": -0.5}, "seeing_warp_px"),
        ({"seeing_scale_px": 0.0}, "seeing_scale_px"),
        ({"drift_px": 10.0, "seeing_warp_px": 20.0}, "seeing_warp_px=20.0 and"),
        ({"drift_px": 200.0}, "reduce them or enlarge the frame"),
        ({"focal_ratio": 0.0}, "focal_ratio"),
        ({"vignetting": 1.0}, "vignetting"),
        ({"full_well": -5.0}, "full_well"),
        ({"read_noise_adu": -1.0}, "read_noise_adu"),
        ({"black_level_adu": 40000.0}, "black_level_adu"),
        ({"bit_depth": 8}, "bit_depth=8 is not supported"),
        ({"bit_depth": 17}, "bit_depth=17 is not supported"),
        ({"n_dust": -1}, "n_dust"),
        ({"seed": -3}, "seed"),
        ({"width": 9.5}, "width=9.5 must be an integer"),
        ({"granule_size_px": 0.0}, "granule_size_px"),
        ({"drift_px": "2"}, "drift_px='2' must be a number"),
        ({"shift_12bit": 1}, "shift_12bit=1 must be True or False"),
        ({"texture_contrast": 0.9}, "texture_contrast"),
        ({"frame_rate_hz": 0.0}, "frame_rate_hz"),
        ({"hot_pixel_fraction": 0.2}, "hot_pixel_fraction"),
        ({"hot_pixel_adu": -1.0}, "hot_pixel_adu"),
        ({"amp_glow_adu": float("inf")}, "amp_glow_adu"),
        ({"peak_level_frac": 0.01}, "no room above the black level"),
        (
            {"dust": (DustSpec(x=50.0, y=10.0, diameter_px=5.0, depth=0.2, kind="disc"),)},
            "outside the 48x40 frame",
        ),
        (
            {"dust": (DustSpec(x=5.0, y=-1.0, diameter_px=5.0, depth=0.2, kind="disc"),)},
            "outside the 48x40 frame",
        ),
        ({"dust": ("dust",)}, "dust entries must be DustSpec"),
        ({"n_dust": 60}, "cannot place 60 non-overlapping dust shadows"),
        ({"width": 8, "height": 8, "focal_ratio": 10.0}, "cannot place 3 non-overlapping"),
    ],
)
def test_bad_params_are_rejected(changes, message) -> None:
    with pytest.raises(ValueError, match=message):
        params = SolarVideoParams(**{**TINY, **changes})
        SyntheticSolarVideo(params)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"depth": 1.5}, "outside \\[0, 1\\]"),
        ({"depth": -0.1}, "outside \\[0, 1\\]"),
        ({"kind": "ring"}, "kind='ring' is unknown"),
        ({"diameter_px": 0.5}, "diameter_px"),
        ({"obstruction": 1.0}, "obstruction"),
        ({"x": float("inf")}, "finite"),
        ({"depth": None}, "depth=None must be a number"),
    ],
)
def test_bad_dust_specs_are_rejected(changes, message) -> None:
    good = {"x": 10.0, "y": 10.0, "diameter_px": 8.0, "depth": 0.2, "kind": "disc"}
    with pytest.raises(ValueError, match=message):
        DustSpec(**{**good, **changes})


def test_too_many_sunspots_are_rejected() -> None:
    with pytest.raises(ValueError, match="cannot place 40 sunspots"):
        SyntheticSolarVideo(SolarVideoParams(**TINY, n_sunspots=40))


def test_params_are_frozen() -> None:
    params = SolarVideoParams(**TINY)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.width = 10  # type: ignore[misc]


def test_transparency_scales_each_frames_light_but_not_the_pedestal() -> None:
    clear = SyntheticSolarVideo(
        SolarVideoParams(**TINY, hot_pixel_fraction=0.01, hot_pixel_adu=500)
    )
    cloudy = SyntheticSolarVideo(
        SolarVideoParams(
            **TINY, hot_pixel_fraction=0.01, hot_pixel_adu=500, transparency=(1, 0.25, 0.5, 0)
        )
    )
    floor = clear.expected_frame(0) - clear.params.gain_adu_per_electron * (
        clear.expected_electrons(0)
    )
    for index, share in enumerate((1.0, 0.25, 0.5, 0.0)):
        np.testing.assert_allclose(
            cloudy.expected_frame(index) - floor,
            share * (clear.expected_frame(index) - floor),
            rtol=1e-9,
            atol=1e-6,
        )
    params = cloudy.params
    assert params.transparency == (1.0, 0.25, 0.5, 0.0)
    assert SolarVideoParams.from_json(params.to_json()) == params


@pytest.mark.parametrize("transparency", [(1.0, 1.0), (1.0, 1.0, 1.0, 1.5), (1, 1, 1, math.nan)])
def test_transparency_needs_one_share_in_0_1_per_frame(transparency) -> None:
    with pytest.raises(ValueError, match="transparency must hold one number in"):
        SolarVideoParams(**TINY, transparency=transparency)
