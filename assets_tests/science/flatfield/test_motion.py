"""The motion test keeps shadows fixed on the sensor and drops features that move with the scene."""

import dataclasses
import functools

import numpy as np
import pytest
from scipy import ndimage

from astro_assets.samples.solar import SolarVideoParams, synthesize_frames_array
from astro_assets.science import threads
from astro_assets.science.flatfield import motion
from astro_assets.science.flatfield.drift import estimate_drift
from astro_assets.science.flatfield.dust import DustDetectionParams, detect_dust
from astro_assets.science.flatfield.flatfield import sky_black_level
from astro_assets.science.flatfield.inpaint import InpaintParams, inpaint, inpaint_guided
from astro_assets.science.flatfield.levels import target_level
from astro_assets.science.flatfield.median import temporal_median
from astro_assets.science.flatfield.motion import (
    DROPPED_BY_HAND,
    DROPPED_UNDECIDED,
    DustFreePrediction,
    MotionResult,
    MotionTestParams,
    find_shadows_in_ratio,
    fixed_gain,
    inpainting_guide,
    plane_guide,
    predict_dust_free,
    sensor_fixed_test,
    separate_sensor_fixed,
)
from astro_assets.science.flatfield.planes import (
    LuminanceFrame,
    PlaneVideo,
    luminance_view,
    mask_to_cells,
    mask_to_full,
    plane_offsets,
    split_mask,
    split_planes,
    view_on_plane,
)
from astro_assets.science.flatfield.stacks import finite_median

HEIGHT, WIDTH = 96, 128
DUST = (40.0, 40.0, 5.0, 0.25)
"""Sensor-fixed shadow: centre row, centre column, radius (px), depth."""
SPOT = (56.0, 80.0, 5.0, 0.3)
"""Dark scene feature at its frame-0 position (row, column, half-height, depth): a lane 70 px
long along the drift, so that it stays in the median, as a filament along the drift would;
it moves with the scene."""


def _disc(shape, row, col, radius):
    yy, xx = np.indices(shape)
    return np.hypot(yy - row, xx - col) <= radius


def _scene(rng: np.random.Generator, shape, contrast: float) -> np.ndarray:
    """Smooth random texture (granulation-like, ``contrast`` rms) on a level of 1000 ADU."""
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    return 1000.0 * (1.0 + contrast * texture / texture.std())


def _video(
    drift_px: float,
    n_frames: int = 24,
    seed: int = 5,
    dust=DUST,
    texture=0.06,
    transmission=None,
    jitter_px=0.4,
):
    """Frames of a scene drifting along x by ``drift_px`` in total, seen through a sensor with
    one dust shadow ``dust`` (row, column, radius, depth), or the given ``transmission`` map;
    the scene holds one dark feature and a texture of ``texture`` rms, and jitters by
    ``jitter_px`` across the drift. Returns frames, shifts,
    median, and the core mask (the dust disc and the feature's position in the median)."""
    rng = np.random.default_rng(seed)
    margin = int(drift_px) + 8
    canvas = _scene(rng, (HEIGHT + 2 * margin, WIDTH + 2 * margin), texture)
    spot_row, spot_col, spot_radius, spot_depth = SPOT
    rows, cols = np.indices(canvas.shape)
    spot = (np.abs(rows - spot_row - margin) <= spot_radius) & (
        np.abs(cols - spot_col - margin) <= 35
    )
    canvas = np.where(spot, canvas * (1 - spot_depth), canvas)
    dust_row, dust_col, dust_radius, dust_depth = dust
    if transmission is None:
        transmission = np.where(
            _disc((HEIGHT, WIDTH), dust_row, dust_col, dust_radius), 1 - dust_depth, 1.0
        )
    frames, shifts, median = _drifting(
        canvas, margin, drift_px, n_frames, rng, transmission, jitter_px
    )
    middle = shifts[n_frames // 2]
    core = _disc((HEIGHT, WIDTH), dust_row, dust_col, dust_radius) | _disc(
        (HEIGHT, WIDTH), spot_row + middle[0], spot_col + middle[1], spot_radius
    )
    return frames, shifts, median, core


def _drifting(canvas, margin, drift_px, n_frames, rng, transmission=1.0, jitter_px=0.4):
    """Frames of ``canvas`` drifting along x by ``drift_px`` (with ``jitter_px`` of jitter
    along y), cropped by ``margin``, through ``transmission``, with noise of 5 ADU rms; returns
    frames, shifts and their median."""
    shifts = np.zeros((n_frames, 2))
    shifts[:, 1] = np.linspace(0.0, drift_px, n_frames)
    shifts[:, 0] = jitter_px * np.sin(np.arange(n_frames))
    frames = []
    for dy, dx in shifts:
        moved = ndimage.shift(canvas, (dy, dx), order=1)[margin:-margin, margin:-margin]
        noisy = moved * transmission + rng.normal(0.0, 5.0, moved.shape)
        frames.append(noisy.astype(np.float32))
    return frames, shifts, np.median(np.stack(frames), axis=0)


def _shaken(canvas, margin, transmission, shake_px, n_frames, rng):
    """Frames of a tracked ``canvas`` shaken by ``shake_px`` rms along both axes, cropped by
    ``margin``, through ``transmission``, with noise of 5 ADU rms; returns frames, shifts and
    their median."""
    shifts = rng.normal(0.0, shake_px, (n_frames, 2))
    frames = [
        (
            ndimage.shift(canvas, shift, order=1)[margin:-margin, margin:-margin] * transmission
            + rng.normal(0.0, 5.0, transmission.shape)
        ).astype(np.float32)
        for shift in shifts
    ]
    return frames, shifts, np.median(np.stack(frames), axis=0)


def _verdict_at(verdicts, row, col):
    return min(verdicts, key=lambda v: np.hypot(v.centroid_y - row, v.centroid_x - col))


def test_keeps_the_sensor_shadow_and_drops_the_scene_feature():
    frames, shifts, median, core = _video(drift_px=40.0)
    kept, verdicts = sensor_fixed_test(core, median, frames, shifts)
    dust = _disc(core.shape, *DUST[:3])
    assert len(verdicts) == 2
    dust_verdict = _verdict_at(verdicts, DUST[0], DUST[1])
    assert dust_verdict.verdict == "sensor"
    # The ratio to the dust-free prediction measures the shadow's true depth.
    assert dust_verdict.fixed_deficit == pytest.approx(DUST[3], abs=0.03)
    assert dust_verdict.median_deficit == pytest.approx(DUST[3], abs=0.03)
    scene_verdict = _verdict_at(verdicts, SPOT[0], SPOT[1] + shifts[len(shifts) // 2, 1])
    assert scene_verdict.verdict == "scene"
    assert abs(scene_verdict.fixed_deficit) < 0.5 * scene_verdict.median_deficit
    np.testing.assert_array_equal(kept, dust)


def test_dust_on_a_dark_scene_feature_shown_by_each_frame_is_left_undecided():
    # A 12 % shadow on the scene's dark lane, which stays in the median along the drift: the
    # median adds the lane's deficit to the shadow's, so the ratio shows less than half of
    # it, as it would show a feature's residue; each frame still shows the shadow whole.
    column = 80.0
    dust = (SPOT[0], column, 4.0, 0.12)
    frames, shifts, median, _ = _video(drift_px=30.0, dust=dust)
    shadow = _disc(median.shape, *dust[:3])
    kept, (verdict,) = sensor_fixed_test(shadow, median, frames, shifts, black_level=0.0)
    assert verdict.verdict == motion.UNDECIDED_DARK_SCENE
    assert verdict.fixed_deficit == pytest.approx(dust[3], abs=0.01)
    assert verdict.fixed_deficit < 0.5 * verdict.median_deficit
    np.testing.assert_array_equal(kept, shadow)
    # Dwarfed by the lane's own deficit, a shallower one is rejected with the feature: a 3 %
    # shadow shows 0.15-0.17 of the median's deficit in the ratio on seeds 0-7, well below
    # half of min_deficit_ratio (0.25), where a 5 % one stands at 0.23-0.26.
    faint = (SPOT[0], column, 4.0, 0.03)
    frames, shifts, median, _ = _video(drift_px=30.0, dust=faint)
    kept, (verdict,) = sensor_fixed_test(shadow, median, frames, shifts, black_level=0.0)
    assert verdict.verdict == "scene" and not kept.any()


@pytest.mark.parametrize("seed", [1, 2])
def test_residues_of_sunspots_under_differential_seeing_are_not_taken_for_dust(seed):
    # Seeing bends each frame differently, so the prediction misses the sunspots and the
    # granulation by a fraction of their contrast, and the ratio of medians keeps residues as
    # deep as dust that the frames, each against its own prediction, do not show.
    params = SolarVideoParams(
        width=384,
        height=288,
        n_frames=40,
        drift_px=60.0,
        jitter_px=0.8,
        n_sunspots=4,
        seeing_warp_px=1.5,
        dust=(),
        seed=seed,
    )
    frames, truth = synthesize_frames_array(params)
    median = temporal_median(frames)
    detection = detect_dust(median, DustDetectionParams())
    drift = estimate_drift(frames, exclude=detection.core)
    separated = separate_sensor_fixed(
        detection.core,
        median,
        [frames[i] for i in drift.frames_used],
        drift.shifts,
        black_level=truth.black_level_adu,
        registered=drift.registered,
    )
    assert separated.ratio_searched
    assert not separated.core.any(), [v for v in separated.verdicts if v.kept]


def test_a_deep_shadow_without_surroundings_must_show_its_depth_in_each_frame():
    # The prediction is known in one corner only (a limb crossed it midway), and a shadow 70 %
    # deep fills it: no ring to measure it against, in the ratio or frame by frame.
    size = 64
    model = np.full((size, size), np.nan)
    model[:20, :20] = 1000.0
    image = model * 0.3
    share = np.full((size, size), 0.5)
    unshown = np.ones((size, size))
    shown = np.where(np.isfinite(model), 0.3, 1.0)

    def found(lit_ratio):
        mask, _ = motion._deep_shadows(
            image,
            model,
            0.5,
            DustDetectionParams(),
            min_wide_depth=1.0,
            exclude=np.zeros((size, size), dtype=bool),
            lit=(lit_ratio, share),
            min_lit_fraction=0.5,
        )
        return int(np.count_nonzero(mask))

    assert found(unshown) == 0
    assert found(shown) == 400


def test_a_crescent_is_looked_up_at_its_own_pixel_nearest_its_centroid():
    # The centroid of a crescent lies outside it: records looked up by their centroid would
    # miss their own region (a reviewer's drop, the shadows new to the ratio).
    frames, shifts, median, _ = _video(drift_px=40.0)
    crescent = _disc(median.shape, DUST[0], DUST[1], 12.0) & ~_disc(
        median.shape, DUST[0], DUST[1] + 3.0, 9.0
    )
    _, (verdict,) = sensor_fixed_test(crescent, median, frames, shifts)
    assert not crescent[round(verdict.centroid_y), round(verdict.centroid_x)]
    assert crescent[verdict.inside_y, verdict.inside_x]
    rows, cols = np.nonzero(crescent)
    nearest = np.min(np.hypot(rows - verdict.centroid_y, cols - verdict.centroid_x))
    assert np.hypot(
        verdict.inside_y - verdict.centroid_y, verdict.inside_x - verdict.centroid_x
    ) == pytest.approx(nearest)
    shadow = motion.RatioShadow(
        verdict.centroid_y, verdict.centroid_x, verdict.inside_y, verdict.inside_x, 20.0, 0.2, 0.2
    )
    assert shadow.lies_in(crescent) and not shadow.lies_in(~crescent)


def test_a_shadow_larger_than_the_drift_allows_is_kept_undecided():
    frames, shifts, median, core = _video(drift_px=6.0)
    kept, verdicts = sensor_fixed_test(
        core, median, frames, shifts, MotionTestParams(outline_test=False)
    )
    np.testing.assert_array_equal(kept, core)
    assert {v.verdict for v in verdicts} == {
        "undecided: the target moved too little compared with this shadow's size"
    }
    assert all(v.overlap_fraction > 0.35 for v in verdicts)
    assert all(np.isnan(v.outline_fixed) for v in verdicts)


def test_the_seeing_shake_tells_dust_from_a_feature_the_drift_cannot():
    # The same video: 6 px of drift, 0.4 px of shake across it. The dust's outline stays on
    # the sensor, the feature's follows each frame.
    frames, shifts, median, core = _video(drift_px=6.0)
    kept, (dust, feature) = sensor_fixed_test(core, median, frames, shifts)
    assert dust.verdict == motion.SENSOR and feature.verdict == motion.SCENE
    assert dust.outline_fixed > 0.9 and dust.outline_fixed_local > 0.9
    assert abs(feature.outline_fixed) < 0.1 and abs(feature.outline_fixed_local) < 0.1
    np.testing.assert_array_equal(kept, _disc(median.shape, *DUST[:3]))


def test_a_shadow_merged_with_a_scene_feature_is_left_undecided_by_its_outline():
    # A tracked scene shaken by 0.6 px rms along both axes: a dark bar of the scene and a dust
    # disc touching its end make one candidate. Most of its outline moves, the disc's arc
    # does not: dropping the candidate would drop the dust with the bar.
    rng = np.random.default_rng(3)
    margin = 8
    canvas = _scene(rng, (HEIGHT + 2 * margin, WIDTH + 2 * margin), 0.06)
    rows, cols = np.indices(canvas.shape)
    bar = (np.abs(rows - 56 - margin) <= 5) & (np.abs(cols - 80 - margin) <= 30)
    canvas = np.where(bar, canvas * 0.7, canvas)
    dust = _disc((HEIGHT, WIDTH), 56.0, 44.0, 7.0)
    frames, shifts, median = _shaken(canvas, margin, np.where(dust, 0.75, 1.0), 0.6, 24, rng)
    rows, cols = np.indices((HEIGHT, WIDTH))
    core = dust | ((np.abs(rows - 56) <= 5) & (np.abs(cols - 80) <= 30))
    kept, (merged,) = sensor_fixed_test(core, median, frames, shifts)
    assert merged.verdict == motion.UNDECIDED_MIXED_OUTLINE
    assert merged.outline_fixed < 1 / 3 and merged.outline_fixed_local < 1 / 3
    np.testing.assert_array_equal(kept, core)
    # The bar alone moves with the scene on every side and is dropped.
    _, (alone,) = sensor_fixed_test(core & ~dust, median, frames, shifts)
    assert alone.verdict == motion.SCENE


def test_dust_on_a_texture_darker_under_it_is_not_dropped_by_its_outline():
    # 5 % deep dust on a 12 % rms texture that happens to be dark under it: the texture moves,
    # so it adds nothing to the outline's fixed part but much to the mean image's edge (share
    # about 0.2). Set against the edge of a shadow as deep as the candidate, the fixed part
    # is too large for a scene feature.
    rng = np.random.default_rng(7)
    margin = 8
    canvas = _scene(rng, (HEIGHT + 2 * margin, WIDTH + 2 * margin), 0.12)
    dust = _disc((HEIGHT, WIDTH), 48.0, 64.0, 6.0)
    frames, shifts, median = _shaken(canvas, margin, np.where(dust, 0.95, 1.0), 1.0, 40, rng)
    kept, (verdict,) = sensor_fixed_test(dust, median, frames, shifts)
    assert verdict.outline_fixed < 1 / 3 and verdict.outline_fixed_local < 1 / 3
    assert verdict.verdict == motion.UNDECIDED_SIZE
    np.testing.assert_array_equal(kept, dust)


def test_without_a_shake_the_outline_decides_nothing():
    # Shifts along one axis only say nothing of an outline's other half.
    frames, shifts, median, core = _video(drift_px=6.0, jitter_px=0.0)
    _, verdicts = sensor_fixed_test(core, median, frames, shifts)
    assert all(v.undecided and np.isnan(v.outline_fixed) for v in verdicts)
    assert all(v.undecided and v.kept for v in verdicts)


def test_without_keep_undecided_only_confirmed_shadows_stay():
    # Over a 6 px drift without a shake across it neither the shadow nor the scene's lane
    # can be told apart: both go.
    frames, shifts, median, core = _video(drift_px=6.0, jitter_px=0.0)
    strict = MotionTestParams(keep_undecided=False)
    kept, verdicts = sensor_fixed_test(core, median, frames, shifts, strict)
    assert not kept.any()
    assert {v.verdict for v in verdicts} == {
        DROPPED_UNDECIDED + "undecided: the target moved too little compared with this "
        "shadow's size"
    }
    assert not any(v.kept or v.undecided for v in verdicts)
    # Over 40 px the shadow is shown fixed on the sensor and stays, the lane goes as moving.
    frames, shifts, median, core = _video(drift_px=40.0)
    kept, verdicts = sensor_fixed_test(core, median, frames, shifts, strict)
    np.testing.assert_array_equal(kept, _disc(core.shape, *DUST[:3]))
    assert sorted(v.verdict for v in verdicts) == ["scene", "sensor"]


def test_a_verdict_dropped_by_hand_is_neither_kept_nor_undecided():
    sensor = motion.MotionVerdict(10.0, 20.0, 10, 20, 8.0, 8.0, 0.0, 0.2, 0.2, motion.SENSOR)
    undecided = dataclasses.replace(sensor, verdict=motion.UNDECIDED_SIZE)
    assert sensor.kept and undecided.kept and undecided.undecided
    for verdict in (sensor, undecided):
        dropped = dataclasses.replace(verdict, verdict=DROPPED_BY_HAND + verdict.verdict)
        assert dropped.dropped_by_hand
        assert not (dropped.kept or dropped.undecided or dropped.dropped_undecided)


def test_a_scene_feature_longer_than_the_drift_is_dropped_when_its_rim_shows_it_moved():
    # Over a 16 px drift, the lane is 55 px long in the median and the shadow 26 px across:
    # no frame sees most of their part of the scene through other pixels. Along its rim the
    # lane's deficit is gone from the ratio on every side (it moved); the shadow's is not,
    # and its outline stays on the sensor as the scene shakes.
    shadow_spec = (22.0, 24.0, 13.0, 0.2)
    drift = 16.0
    frames, shifts, median, _ = _video(drift_px=drift, seed=9, dust=shadow_spec)
    middle = shifts[len(shifts) // 2]
    rows, cols = np.indices(median.shape)
    lane = (np.abs(rows - SPOT[0] - middle[0]) <= SPOT[2]) & (
        np.abs(cols - SPOT[1] - middle[1]) <= 35 - drift / 2
    )
    shadow = _disc(median.shape, *shadow_spec[:3])
    kept, verdicts = sensor_fixed_test(shadow | lane, median, frames, shifts)
    feature = _verdict_at(verdicts, SPOT[0] + middle[0], SPOT[1] + middle[1])
    dust = _verdict_at(verdicts, *shadow_spec[:2])
    assert feature.extent_px > 3 * drift and feature.verdict == "scene"
    assert abs(feature.fixed_deficit) < 0.05 * feature.median_deficit
    assert dust.verdict == "sensor" and dust.outline_fixed > 0.9
    np.testing.assert_array_equal(kept, shadow)


def test_a_partly_known_candidate_moved_only_if_every_side_says_so():
    # A candidate 20 % deep in the median, known in the ratio along its rim only.
    shape = (60, 80)
    candidate = _disc(shape, 30, 40, 16)
    known = ~_disc(shape, 30, 40, 10)
    ring = _disc(shape, 30, 40, 26) & ~_disc(shape, 30, 40, 19)
    image = np.where(candidate, 800.0, 1000.0)
    params = MotionTestParams()
    rows, cols = np.indices(shape)

    def moved(ratio):
        return motion._moved_on_every_side(image, ratio, candidate, known, ring, params)

    assert moved(np.ones(shape))
    # A shadow whose outline missed part of its penumbra on one side keeps its deficit on
    # the others; still under half of min_deficit_ratio, a side says it moved.
    assert not moved(np.where(candidate & (cols > 40), 0.8, 1.0))
    assert not moved(np.where(candidate, 0.8, 1.0))
    # Moved below half of min_deficit_ratio times the 20 % deficit in the median.
    limit = 0.5 * params.min_deficit_ratio * 0.2
    assert moved(np.where(candidate, 1 - 0.8 * limit, 1.0))
    assert not moved(np.where(candidate, 1 - 1.2 * limit, 1.0))
    # Too few known pixels, or a single side known, decide nothing.
    assert not motion._moved_on_every_side(
        image, np.ones(shape), candidate, known & (cols < 30) & (rows < 30), ring, params
    )
    assert motion._moved_on_every_side(
        image, np.ones(shape), candidate, known & (cols < 30), ring, params
    )
    assert not motion._moved_on_every_side(
        image, np.ones(shape), candidate, _disc(shape, 30, 40, 3), ring, params
    )


def test_a_fragment_of_a_large_ring_is_kept():
    # A thin arc (a piece of a large donut's ring) has a small equivalent diameter, but the
    # rest of the ring, fixed on the sensor too, is not left out of the scene estimate.
    shape = (HEIGHT, WIDTH)
    ring = _disc(shape, 48, 60, 20) & ~_disc(shape, 48, 60, 13)
    frames, shifts, median, _ = _video(
        drift_px=40.0, seed=9, transmission=np.where(ring, 0.85, 1.0)
    )
    arc = ring & (np.indices(shape)[0] < 34)
    kept, verdicts = sensor_fixed_test(arc, median, frames, shifts)
    assert len(verdicts) == 1 and verdicts[0].diameter_px < 20
    assert verdicts[0].extent_px > 25 and verdicts[0].overlap_fraction > 0.35
    assert verdicts[0].kept
    np.testing.assert_array_equal(kept, arc)


def test_large_candidates_are_decided_with_their_pixels_left_out():
    # Over a 40 px drift most frames see the 28 px shadow's part of the scene through it, and
    # the scene feature stays in the median 40 px long: both overlap too much for a scene
    # estimate that keeps their pixels, so the test leaves them out of it.
    frames, shifts, median, _ = _video(drift_px=40.0, seed=9, dust=LARGE)
    shadow = _disc(median.shape, *LARGE[:3])
    remnant = np.zeros_like(shadow)
    remnant[int(SPOT[0]) - 4 : int(SPOT[0]) + 5, 80:115] = True
    kept, verdicts = sensor_fixed_test(shadow | remnant, median, frames, shifts)
    dust = _verdict_at(verdicts, *LARGE[:2])
    feature = _verdict_at(verdicts, SPOT[0], 97.0)
    assert dust.overlap_fraction > 0.35 and feature.overlap_fraction > 0.35
    assert dust.verdict == "sensor"
    assert dust.fixed_deficit == pytest.approx(LARGE[3], abs=0.02)
    assert feature.verdict == "scene" and feature.fixed_deficit < 0.1 * feature.median_deficit
    np.testing.assert_array_equal(kept, shadow)


def test_the_sky_beside_a_limb_is_no_reference():
    # A candidate on the rim of a drifting disc: with the sky in its surroundings, a plane
    # through them would lie below the candidate (no deficit, undecided). Measured against the
    # surroundings on the target, it has a deficit the ratio does not show: it moved.
    rng = np.random.default_rng(3)
    drift, n_frames = 40.0, 24
    margin = int(drift) + 8
    canvas = _scene(rng, (HEIGHT + 2 * margin, WIDTH + 2 * margin), 0.06)
    rows, cols = np.indices(canvas.shape)
    radius = np.hypot(rows - 48 - margin, cols - 10 - margin)
    disc = np.sqrt(np.clip(1 - (radius / 56) ** 2, 0, 1)) / (1 + np.exp((radius - 55) / 2))
    canvas = canvas * (0.01 + 0.99 * disc)
    frames, shifts, median = _drifting(canvas, margin, drift, n_frames, rng)
    rim = _disc(median.shape, 48, 80, 12)
    assert median[48, 94] < 0.05 * median[48, 70]
    _, verdicts = sensor_fixed_test(rim, median, frames, shifts)
    assert verdicts[0].median_deficit > 0
    assert verdicts[0].verdict == "scene"


def test_candidate_without_a_deficit_anywhere_is_dropped_as_too_shallow():
    frames, shifts, median, _ = _video(drift_px=30.0)
    bright = np.zeros(median.shape, dtype=bool)
    bright[10:16, 100:106] = True
    brightened = np.where(bright, median * 1.2, median)
    kept, verdicts = sensor_fixed_test(bright, brightened, frames, shifts)
    assert not kept.any()
    assert verdicts[0].median_deficit < 0 and abs(verdicts[0].fixed_deficit) < 0.005
    assert verdicts[0].verdict.startswith("too shallow")


def test_candidate_without_a_deficit_in_the_median_but_one_in_the_ratio_is_kept_undecided():
    # A shadow the scene hides in the median (here a median brightened over it by 5 % more
    # than its depth) still shows in the ratio of the frames to their dust-free prediction.
    frames, shifts, median, _ = _video(drift_px=30.0)
    shadow = _disc(median.shape, *DUST[:3])
    hidden = np.where(shadow, median * 1.05 / (1 - DUST[3]), median)
    kept, verdicts = sensor_fixed_test(shadow, hidden, frames, shifts)
    np.testing.assert_array_equal(kept, shadow)
    assert verdicts[0].median_deficit < 0
    assert verdicts[0].fixed_deficit == pytest.approx(DUST[3], abs=0.03)
    assert verdicts[0].verdict.startswith("undecided: no deficit")


@pytest.mark.parametrize(("depth", "kept_expected"), [(0.002, False), (0.015, True)])
def test_a_shadow_shallower_than_min_ratio_depth_is_dropped(depth, kept_expected):
    # Noise 5 ADU on 1000 over a 5 px disc of 24 frames: both depths are measured to 0.1 %.
    frames, shifts, _, _ = _video(drift_px=30.0, dust=(40.0, 40.0, 5.0, depth), texture=0.0)
    shadow = _disc((HEIGHT, WIDTH), 40.0, 40.0, 5.0)
    median = np.median(np.stack(frames), axis=0)
    kept, verdicts = sensor_fixed_test(shadow, median, frames, shifts)
    assert verdicts[0].fixed_deficit == pytest.approx(depth, abs=0.002)
    assert bool(kept.any()) is kept_expected
    assert verdicts[0].kept is kept_expected
    loose = MotionTestParams(min_ratio_depth=0.001)
    assert sensor_fixed_test(shadow, median, frames, shifts, loose)[0].any()


def test_nothing_to_test_and_disabled_test_return_the_core():
    frames, shifts, median, core = _video(drift_px=30.0, n_frames=6)
    empty = np.zeros_like(core)
    kept, verdicts = sensor_fixed_test(empty, median, frames, shifts)
    assert not kept.any() and verdicts == ()
    kept, verdicts = sensor_fixed_test(
        core, median, frames, shifts, MotionTestParams(motion_test=False)
    )
    np.testing.assert_array_equal(kept, core)
    assert verdicts == ()
    assert kept is not core


def test_inputs_are_not_modified():
    frames, shifts, median, core = _video(drift_px=30.0, n_frames=8)
    copies = ([f.copy() for f in frames], shifts.copy(), median.copy(), core.copy())
    sensor_fixed_test(core, median, frames, shifts)
    for frame, copy in zip(frames, copies[0], strict=True):
        np.testing.assert_array_equal(frame, copy)
    np.testing.assert_array_equal(shifts, copies[1])
    np.testing.assert_array_equal(median, copies[2])
    np.testing.assert_array_equal(core, copies[3])


def test_works_on_lazy_luminance_frames_of_a_mosaic():
    frames, shifts, median, core = _video(drift_px=30.0, n_frames=12)
    # A mosaic whose 2x2 cells all hold the mono value: its luminance view is the mono frame.
    mosaics = [np.repeat(np.repeat(f, 2, axis=0), 2, axis=1) for f in frames]
    views = [LuminanceFrame(m, "RGGB") for m in mosaics]
    expected = sensor_fixed_test(core, median, frames, shifts)
    got = sensor_fixed_test(core, median, views, shifts)
    np.testing.assert_array_equal(got[0], expected[0])
    assert [v.verdict for v in got[1]] == [v.verdict for v in expected[1]]


@pytest.mark.parametrize(
    ("color", "shape"),
    [("MONO", (10, 14)), ("RGB", (10, 14, 3)), ("GRBG", (10, 14)), ("BGGR", (11, 15))],
)
def test_luminance_frame_windows_equal_the_luminance_view(color, shape):
    frame = np.random.default_rng(2).integers(0, 4096, size=shape, dtype=np.uint16)
    view = LuminanceFrame(frame, color)
    full = luminance_view(frame, color)
    assert view.shape == full.shape
    np.testing.assert_array_equal(view[1:4, 2:6], full[1:4, 2:6])
    np.testing.assert_array_equal(view[:, :], full)
    with pytest.raises(ValueError, match="step 1"):
        view[::2, :]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"core": np.zeros((4, 4), bool)}, "core must be a bool mask"),
        ({"core": np.zeros((HEIGHT, WIDTH), np.uint8)}, "core must be a bool mask"),
        ({"median": np.zeros((HEIGHT, WIDTH, 3))}, "median must be a real"),
        ({"frames_count": 1}, "at least 2 registered frames"),
        ({"shifts": np.zeros((3, 2))}, "shifts must have shape"),
        ({"shifts_nan": True}, "NaN or inf"),
        ({"frame_shape": (4, 4)}, "every frame must have the median's shape"),
        ({"median_nan": True}, "median contains NaN or inf"),
    ],
)
def test_bad_inputs_raise_clear_errors(change, message):
    frames, shifts, median, core = _video(drift_px=30.0, n_frames=4)
    core = change.get("core", core)
    median = change.get("median", median)
    shifts = change.get("shifts", shifts)
    if change.get("shifts_nan"):
        shifts = shifts.copy()
        shifts[1, 0] = np.nan
    if "frames_count" in change:
        frames, shifts = frames[:1], shifts[:1]
    if "frame_shape" in change:
        frames = [frames[0], np.zeros(change["frame_shape"], np.float32), *frames[2:]]
    if change.get("median_nan"):
        median = median.copy()
        median[3, 4] = np.nan
    with pytest.raises(ValueError, match=message):
        sensor_fixed_test(core, median, frames, shifts)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_overlap_fraction", 0.0),
        ("max_overlap_fraction", 0.6),
        ("min_coverage_fraction", 0.0),
        ("min_coverage_fraction", 1.5),
        ("min_deficit_ratio", 0.0),
        ("min_deficit_ratio", 1.0),
        ("min_ratio_depth", -0.1),
        ("min_ratio_depth", 1.0),
        ("max_texture_left", 0.0),
        ("max_texture_left", 1.5),
        ("max_outline_growth", -0.1),
        ("max_outline_growth", 1.5),
        ("min_ratio_significance", -0.5),
        ("min_ratio_significance", float("nan")),
        ("min_deep_depth", 0.0),
        ("min_deep_depth", 1.5),
        ("min_limb_depth", 0.0),
        ("guide_holdout_px", -1),
        ("min_guide_advantage", 0.5),
        ("guide_filter_px", -1),
        ("guide_filter_px", 5),
        ("gain_iterations", -1),
        ("gain_iterations", 9),
    ],
)
def test_parameters_are_validated(field, value):
    with pytest.raises(ValueError, match=field):
        MotionTestParams(**{field: value})


FAINT = (44.0, 46.0, 12.0, 0.03)
"""A large faint shadow (3 % deep, 24 px across) under strong large-scale texture."""


def _faint_video(drift_px=60.0):
    return _video(drift_px=drift_px, n_frames=24, seed=9, dust=FAINT, texture=0.12)


def test_prediction_is_the_median_without_the_shadow():
    frames, shifts, median, _ = _video(drift_px=30.0)
    predicted = predict_dust_free(frames, shifts, median.shape).predicted
    assert predicted.dtype == np.float32 and predicted.shape == median.shape
    known = np.isfinite(predicted)
    # Unknown only where the scene left the frame for most of the video: near the edges.
    assert known[2:-2, 20:-20].all()
    ratio = median / predicted
    dust = _disc(median.shape, DUST[0], DUST[1], DUST[2] - 1)
    assert np.median(ratio[dust]) == pytest.approx(1 - DUST[3], abs=0.02)
    spot_path = np.zeros_like(dust)
    spot_path[int(SPOT[0]) - 8 : int(SPOT[0]) + 9, :] = True
    clean = known & ~ndimage.binary_dilation(dust, iterations=3) & ~spot_path
    assert np.median(np.abs(ratio[clean] - 1)) < 0.01
    # The scene texture left in the median (2.7 % rms here) mostly cancels in the ratio; what
    # remains is noise and the finest texture, smoothed by the bilinear shifts.
    assert np.std(ratio[clean]) < 0.4 * np.std(median[clean] / np.median(median[clean]))


def test_lit_ratio_is_the_transmission_and_lit_share_marks_where_the_target_left():
    frames, shifts, median, _ = _video(drift_px=30.0)
    # The scene's last 20 columns are sky (a limb along y): the frames that put it over a
    # pixel near the frame's right edge leave it dark there.
    sky_from = WIDTH - 20
    dark = [frame.copy() for frame in frames]
    for frame, (_, dx) in zip(dark, shifts, strict=True):
        frame[:, max(0, round(sky_from + dx)) :] = 0.0
    prediction = predict_dust_free(dark, shifts, median.shape, black_level=0.0)
    assert prediction.lit_ratio.dtype == prediction.lit_share.dtype == np.float32
    dust = _disc(median.shape, DUST[0], DUST[1], DUST[2] - 1)
    assert np.median(prediction.lit_ratio[dust]) == pytest.approx(1 - DUST[3], abs=0.01)
    clean = np.isfinite(prediction.lit_ratio) & ~ndimage.binary_dilation(dust, iterations=3)
    clean[int(SPOT[0]) - 8 : int(SPOT[0]) + 9, :] = False
    assert np.median(np.abs(prediction.lit_ratio[clean] - 1)) < 0.01
    # Every frame lights the columns the sky never reached; beyond, the share of the frames
    # lighting a column falls with the share that put the target there.
    share = np.nanmedian(prediction.lit_share[5:-5], axis=0)
    np.testing.assert_array_equal(share[:sky_from], 1.0)
    assert (share[sky_from:] < 1.0).all()
    assert share[-3:].mean() < share[sky_from : sky_from + 3].mean() - 0.1


def test_prediction_bands_do_not_change_the_result():
    frames, shifts, median, _ = _video(drift_px=30.0, n_frames=8)
    whole = predict_dust_free(frames, shifts, median.shape, band_rows=HEIGHT).predicted
    banded = predict_dust_free(frames, shifts, median.shape, band_rows=7).predicted
    np.testing.assert_array_equal(np.isnan(whole), np.isnan(banded))
    np.testing.assert_allclose(banded, whole, rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("workers", [1, 3])
def test_the_separation_does_not_depend_on_the_number_of_cores(monkeypatch, workers):
    frames, shifts, median, core = _faint_video()
    on_this_machine = separate_sensor_fixed(core, median, frames, shifts)
    monkeypatch.setattr(threads, "worker_count", lambda: workers)
    on_other = separate_sensor_fixed(core, median, frames, shifts)
    assert on_other.ratio_searched and on_other.transparency.pairs_used > 0
    np.testing.assert_array_equal(on_other.core, on_this_machine.core)
    np.testing.assert_array_equal(on_other.tested, on_this_machine.tested)
    np.testing.assert_array_equal(on_other.transparency.gains, on_this_machine.transparency.gains)
    for field in ("observed", "predicted", "lit_ratio", "lit_share"):
        np.testing.assert_array_equal(
            getattr(on_other.prediction, field), getattr(on_this_machine.prediction, field)
        )
    assert on_other.texture_left == on_this_machine.texture_left


def test_shifted_window_is_bilinear_interpolation():
    image = np.random.default_rng(3).random((20, 30)).astype(np.float32)
    got = motion._shifted_window(image, image.shape, 2.25, -1.5, (10, 12))
    rows, cols = np.meshgrid(np.arange(10) + 2.25, np.arange(12) - 1.5, indexing="ij")
    expected = ndimage.map_coordinates(image.astype(np.float64), [rows, cols], order=1)
    inside = cols >= 0
    np.testing.assert_allclose(got[inside], expected[inside], rtol=1e-5)
    assert np.isnan(got[~inside]).all()
    exact = motion._shifted_window(image, image.shape, 3.0, 4.0, (5, 6))
    np.testing.assert_array_equal(exact, image[3:8, 4:10])


def test_nanmedian_matches_numpy():
    rng = np.random.default_rng(4)
    stack = rng.random((9, 5, 7)).astype(np.float32)
    stack[rng.random(stack.shape) < 0.3] = np.nan
    stack[:, 0, 0] = np.nan
    got = finite_median(stack, minimum=0)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning, match="All-NaN"):
        expected = np.nanmedian(stack.astype(np.float64), axis=0)
    np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)
    counts = np.isfinite(stack).sum(axis=0)
    sparse = finite_median(stack, minimum=6)
    assert np.isnan(sparse[counts < 6]).all()
    np.testing.assert_array_equal(np.isfinite(sparse), counts >= 6)


LARGE = (48.0, 60.0, 14.0, 0.2)
"""A 20 % shadow 28 px across: over a 40 px drift most frames see its part of the scene
through it, so the first scene estimate keeps much of it."""


def test_excluding_a_shadow_from_the_scene_estimate_restores_its_depth():
    frames, shifts, median, _ = _video(drift_px=40.0, seed=9, dust=LARGE)
    inside = _disc(median.shape, LARGE[0], LARGE[1], LARGE[2] - 2)
    first = predict_dust_free(frames, shifts, median.shape)
    assert 1 - np.median(first.ratio[inside]) < 0.1
    excluded = _disc(median.shape, LARGE[0], LARGE[1], LARGE[2] + 3)
    again = predict_dust_free(frames, shifts, median.shape, excluded=excluded)
    assert np.isfinite(again.predicted[inside]).all()
    assert 1 - np.median(again.ratio[inside]) == pytest.approx(LARGE[3], abs=0.01)
    # The observed median is over the same frames wherever both predictions are known.
    both = np.isfinite(first.predicted) & np.isfinite(again.predicted)
    np.testing.assert_array_equal(again.observed[both], first.observed[both])
    np.testing.assert_array_equal(np.isfinite(again.predicted), np.isfinite(first.predicted))
    with pytest.raises(ValueError, match="excluded"):
        predict_dust_free(frames, shifts, median.shape, excluded=excluded[:-1])


def test_fixed_gain_is_the_ratio_of_light_where_darker_than_its_noise_and_one_elsewhere():
    black = 100.0
    rng = np.random.default_rng(3)
    light = 1000.0 * (1.0 + 0.01 * rng.standard_normal((40, 50)))
    predicted = np.full((40, 50), black + 1000.0, dtype=np.float32)
    observed = (black + light).astype(np.float32)
    observed[10:14, 10:14] = black + 0.8 * 1000.0
    observed[20, 20] = black + 1.3 * 1000.0
    observed[21, 21] = black
    observed[22, 22] = black + 0.99 * 1000.0
    predicted[0, 0] = np.nan
    predicted[30:, :] = black + 20.0
    prediction = DustFreePrediction(observed, predicted, black_level=black)
    gain = fixed_gain(prediction, dark_fraction=0.1)
    assert gain.dtype == np.float32
    lit = np.ones(gain.shape, dtype=bool)
    lit[30:, :] = False
    lit[0, 0] = False
    middle = np.median((observed[lit] - black) / 1000.0)
    np.testing.assert_allclose(gain[10:14, 10:14], 0.8 / middle, rtol=1e-5)
    # Brighter than predicted, or within the noise (1 %) of the median: no gain measured.
    assert gain[20, 20] == 1.0
    assert gain[22, 22] == 1.0
    assert gain[21, 21] == pytest.approx(0.02)
    assert gain[0, 0] == 1.0
    # The dark rows' light (20 ADU) is below a tenth of the bright level: not measured.
    np.testing.assert_array_equal(gain[30:], 1.0)
    # Of the noise alone, about 0.13 % lies 3 sigma below the median.
    noise_only = lit.copy()
    noise_only[10:14, 10:14] = False
    noise_only[20:23, 20:23] = False
    assert np.mean(gain[noise_only] < 1.0) < 0.01


def test_dividing_out_the_fixed_gain_restores_a_shadow_beside_the_frame_edge():
    # The scene drifts towards +x: the parts of it seen last at the right edge are seen by few
    # frames, through pixels beside the edge, so the first estimate holds part of the shadow.
    dust = (HEIGHT / 2, WIDTH - 9.0, 7.0, 0.2)
    frames, shifts, median, _ = _video(drift_px=30.0, seed=9, dust=dust)
    inside = _disc(median.shape, dust[0], dust[1], dust[2] - 1)
    first = predict_dust_free(frames, shifts, median.shape)
    assert 1 - np.median(first.ratio[inside]) < 0.16
    gain = fixed_gain(first, dark_fraction=0.4)
    again = predict_dust_free(frames, shifts, median.shape, gain=gain)
    assert 1 - np.median(again.ratio[inside]) == pytest.approx(dust[3], abs=0.02)
    np.testing.assert_array_equal(again.observed, first.observed)
    # Away from the shadow the scene estimate hardly changes.
    far = ~_disc(median.shape, dust[0], dust[1], 3 * dust[2])
    known = far & np.isfinite(first.ratio) & np.isfinite(again.ratio)
    assert np.abs(np.median(again.ratio[known]) - np.median(first.ratio[known])) < 2e-4
    # separate_sensor_fixed does the same before its search (once by default); its outlines
    # drawn again without the shadows' pixels would restore the depth on their own.
    empty = np.zeros(median.shape, dtype=bool)
    once = MotionTestParams(max_outline_growth=0.0)
    result = separate_sensor_fixed(empty, median, frames, shifts, params=once)
    without = separate_sensor_fixed(
        empty, median, frames, shifts, params=dataclasses.replace(once, gain_iterations=0)
    )
    assert 1 - np.median(result.prediction.ratio[inside]) > 0.18
    assert 1 - np.median(without.prediction.ratio[inside]) < 0.17
    for bad in (gain[:-1], np.where(inside, 0.0, gain), np.where(inside, np.nan, gain)):
        with pytest.raises(ValueError, match="gain must be"):
            predict_dust_free(frames, shifts, median.shape, gain=bad)


def test_a_shadow_nearly_as_large_as_the_drift_is_measured_once_the_gain_is_divided_out():
    # 28 px across over a 30 px drift: most frames see its part of the scene through it, so
    # the first scene estimate holds most of it and the first ratio shows too little.
    dust = (48.0, 60.0, 14.0, 0.06)
    frames, shifts, median, _ = _video(drift_px=30.0, seed=9, dust=dust)
    true = _disc(median.shape, *dust[:3])
    empty = np.zeros(median.shape, dtype=bool)
    without = separate_sensor_fixed(
        empty, median, frames, shifts, params=MotionTestParams(gain_iterations=0)
    )
    (first,) = without.ratio_shadows
    assert first.fixed_deficit < 0.5 * dust[3]
    result = separate_sensor_fixed(empty, median, frames, shifts)
    assert np.count_nonzero(result.core & true) > 0.95 * true.sum()
    assert np.count_nonzero(result.core & ~true) < 0.1 * true.sum()
    (shadow,) = result.ratio_shadows
    assert shadow in result.new_shadows
    assert np.hypot(shadow.centroid_y - dust[0], shadow.centroid_x - dust[1]) < 2.0
    assert [verdict.verdict for verdict in result.ratio_verdicts] == ["sensor"]
    inside = _disc(median.shape, dust[0], dust[1], dust[2] - 2)
    assert 1 - np.median(result.prediction.ratio[inside]) == pytest.approx(dust[3], abs=0.01)


@pytest.mark.parametrize("seed", range(4))
def test_corners_vignetted_below_the_target_level_are_no_shadows(seed):
    # A dust-free surface filling the frame, vignetted to 30 % at the corners: below the
    # detector's target level (0.4) in the corners, yet lit. A response measured only above
    # that level was held too bright there, and the ratio search found 283-506 px of
    # "shadow" in the corners along the drift on two of these seeds.
    params = SolarVideoParams(
        width=256,
        height=192,
        n_frames=24,
        jitter_px=0.8,
        seed=seed,
        focal_ratio=30.0,
        n_sunspots=0,
        drift_px=42.0,
        disk_radius_frac=5.0,
        vignetting=0.7,
        dust=(),
    )
    frames, _ = synthesize_frames_array(params)
    median = temporal_median(frames)
    detection = detect_dust(median)
    drift = estimate_drift(frames, exclude=detection.core)
    result = separate_sensor_fixed(
        detection.core,
        median,
        [frames[index] for index in drift.frames_used],
        drift.shifts,
        registered=drift.registered,
    )
    assert not result.core.any() and result.ratio_shadows == ()


def test_outlines_are_drawn_again_in_the_ratio_without_the_shadows():
    frames, shifts, median, _ = _video(drift_px=40.0, seed=9, dust=LARGE)
    true = _disc(median.shape, *LARGE[:3])
    empty = np.zeros(median.shape, dtype=bool)
    # Without the fixed gain divided out either, which also takes part of the shadow out of
    # the scene estimate.
    once = separate_sensor_fixed(
        empty,
        median,
        frames,
        shifts,
        params=MotionTestParams(max_outline_growth=0.0, gain_iterations=0),
    )
    redrawn = separate_sensor_fixed(empty, median, frames, shifts)
    assert len(once.ratio_shadows) == len(redrawn.ratio_shadows) == 1
    # Half-hidden in the first scene estimate, the shadow looks smaller than it is.
    assert np.count_nonzero(once.core & true) < 0.85 * true.sum()
    assert np.count_nonzero(redrawn.core & true) > 0.95 * true.sum()
    assert np.count_nonzero(redrawn.core & ~true) < 0.02 * true.sum()
    assert (redrawn.core >= once.core).all()


def test_a_scene_remnant_found_in_the_ratio_alone_is_dropped(monkeypatch):
    # Where the first scene estimate keeps a feature longer than the drift only in part, the
    # ratio can show a remnant of it; the motion test, with the remnant's own pixels left out
    # of the scene estimate, finds it moved with the scene. A shadow in the ratio is kept.
    frames, shifts, median, _ = _video(drift_px=40.0, seed=9, dust=LARGE)
    shadow = _disc(median.shape, *LARGE[:3])
    remnant = np.zeros_like(shadow)
    remnant[int(SPOT[0]) - 4 : int(SPOT[0]) + 5, 80:115] = True
    search = motion.find_shadows_in_ratio
    records = (
        motion.RatioShadow(
            *LARGE[:2], int(LARGE[0]), int(LARGE[1]), 2 * LARGE[2], LARGE[3], LARGE[3]
        ),
        motion.RatioShadow(SPOT[0], 97.0, int(SPOT[0]), 97, 20.0, 0.2, 0.01),
    )
    calls = []

    def first_finds_the_remnant(*args, **kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            return shadow | remnant, records
        return search(*args, **kwargs)

    monkeypatch.setattr(motion, "find_shadows_in_ratio", first_finds_the_remnant)
    empty = np.zeros(median.shape, dtype=bool)
    result = separate_sensor_fixed(empty, median, frames, shifts)
    assert result.ratio_searched and len(calls) == 2
    assert not (result.core & remnant).any()
    assert result.core[shadow].all()
    assert result.ratio_shadows == records[:1]
    verdicts = sorted(verdict.verdict for verdict in result.ratio_verdicts)
    assert verdicts == ["scene", "sensor"]
    # Without keep_undecided the eye's candidates must be shown fixed; the shadows of the
    # ratio have shown their deficit there, and only what moved is dropped of them.
    calls.clear()
    test = motion.sensor_fixed_test
    keeps = []

    def recording(*args, **kwargs):
        keeps.append(args[4].keep_undecided)
        return test(*args, **kwargs)

    monkeypatch.setattr(motion, "sensor_fixed_test", recording)
    strict = MotionTestParams(keep_undecided=False)
    result = separate_sensor_fixed(empty, median, frames, shifts, params=strict)
    assert keeps == [False, True]
    assert result.core[shadow].all() and not (result.core & remnant).any()


def test_ratio_search_finds_a_shadow_the_texture_hides():
    frames, shifts, median, _ = _faint_video()
    shadow = _disc(median.shape, *FAINT[:3])
    # In the median the texture outshines the 3 % shadow: the detector finds it not.
    assert not detect_dust(median).core[shadow].any()
    prediction = predict_dust_free(frames, shifts, median.shape)
    observed, predicted = prediction.observed, prediction.predicted
    # As separate_sensor_fixed searches: the dark bar's remnant at the frame's edge is a
    # fluctuation of the ratio (0.5 % deep at under 2 times the ratio's noise at its scale).
    search = functools.partial(
        find_shadows_in_ratio,
        observed,
        predicted,
        min_significance=MotionTestParams().min_ratio_significance,
    )
    found, shadows = search()
    assert len(shadows) == 1
    assert found[int(FAINT[0]), int(FAINT[1])]
    assert not (found & ~ndimage.binary_dilation(shadow, iterations=3)).any()
    assert shadows[0].fixed_deficit == pytest.approx(FAINT[3], abs=0.01)
    assert shadows[0].median_deficit > 0
    blocked, none = search(exclude=shadow)
    assert not blocked.any() and none == ()
    # Inside an excluded region (a feature that moved with the scene) a shadow is kept when the
    # ratio shows at least that fraction of its deficit in the median.
    inside, again = search(exclude=shadow, min_fixed_fraction=0.5)
    np.testing.assert_array_equal(inside, found)
    assert again[0].fixed_deficit >= 0.5 * again[0].median_deficit
    # A shadow shallower than min_depth would not be worth correcting: it is not added.
    shallow, none = search(min_depth=0.05)
    assert not shallow.any() and none == ()


def _planet(shape=(96, 128), radius=40.0):
    """A limb-darkened disc on a dark sky (100 ADU), centre at (48, 64)."""
    yy, xx = np.indices(shape)
    r = np.hypot(yy - 48.0, xx - 64.0) / radius
    mu = np.sqrt(np.clip(1.0 - r**2, 0.0, 1.0))
    return 100.0 + np.where(r < 1.0, 20000.0 * (0.2 + 0.8 * mu), 0.0)


def test_a_near_opaque_shadow_on_the_limb_is_found_in_the_ratio():
    predicted = _planet()
    # Centred 2 px inside the limb: a notch in the median, continuous with the sky.
    shadow = _disc(predicted.shape, 48.0, 26.0, 6.0)
    median = np.where(shadow, 100.0 + 0.05 * (predicted - 100.0), predicted)
    on_target = shadow & (predicted > 0.1 * predicted.max())
    plain, none = find_shadows_in_ratio(median, predicted)
    assert not plain[shadow].any() and none == ()
    found, shadows = find_shadows_in_ratio(median, predicted, min_deep_depth=0.5)
    assert len(shadows) == 1
    assert found[on_target].mean() > 0.9
    assert not (found & ~ndimage.binary_dilation(shadow, iterations=2)).any()
    assert shadows[0].fixed_deficit > 0.5
    # The prediction's residues at a limb (here 15 % along the whole limb band) are far
    # shallower than a near-opaque shadow: nothing is found.
    limb_band = (predicted > 100.0) & (predicted < 0.5 * predicted.max())
    residue = np.where(limb_band, 0.85 * predicted, predicted)
    clean, none = find_shadows_in_ratio(residue, predicted, min_deep_depth=0.5)
    assert not clean.any() and none == ()


def test_a_shallower_shadow_across_the_limb_is_found_when_it_is_wide():
    predicted = _planet()
    # 20 % deep, 16 px across, centred on the limb: its surroundings leave the target, and
    # it is far shallower than half the light.
    shadow = _disc(predicted.shape, 48.0, 24.0, 8.0)
    on_target = shadow & (predicted > 0.1 * predicted.max())
    # The ratio's own residue along the limb: as deep (25 %), but a thin arc 2 px across.
    radius = np.hypot(*(np.indices(predicted.shape) - np.array([48.0, 64.0])[:, None, None]))
    arc = (radius > 37.0) & (radius <= 39.0) & (np.indices(predicted.shape)[1] > 64)
    observed = predicted * np.where(shadow, 0.8, 1.0) * np.where(arc, 0.75, 1.0)
    assert not find_shadows_in_ratio(observed, predicted, min_deep_depth=0.5)[0][shadow].any()
    found, shadows = find_shadows_in_ratio(
        observed, predicted, min_deep_depth=0.5, min_limb_depth=0.1
    )
    assert len(shadows) == 1
    assert found[on_target].mean() > 0.9
    assert not (found & ~ndimage.binary_dilation(shadow, iterations=2)).any()
    assert shadows[0].fixed_deficit == pytest.approx(0.2, abs=0.03)
    # Reaching into a candidate that moved with the scene, it is left out.
    moved = _disc(predicted.shape, 48.0, 30.0, 3.0)
    blocked, none = find_shadows_in_ratio(
        observed, predicted, exclude=moved, min_deep_depth=0.5, min_limb_depth=0.1
    )
    assert not blocked.any() and none == ()


def test_a_prediction_offset_as_deep_as_its_surroundings_is_no_limb_shadow():
    # A response that misses a steeply vignetted corner leaves the ratio falling smoothly
    # there, to 20 % at the corner: as deep as a shadow on a limb, but no deeper than its
    # surroundings.
    predicted = np.full((HEIGHT, WIDTH), 1000.0)
    rows, cols = np.indices(predicted.shape)
    into_corner = np.clip(1.0 - np.hypot(rows, WIDTH - 1 - cols) / 40.0, 0.0, 1.0)
    observed = predicted * (1.0 - 0.2 * into_corner**2)
    found, shadows = find_shadows_in_ratio(
        observed, predicted, min_deep_depth=0.5, min_limb_depth=0.1
    )
    assert not found.any() and shadows == ()
    # A shadow 20 % deeper than its surroundings on that slope is found.
    shadow = _disc(predicted.shape, 20.0, WIDTH - 30.0, 8.0)
    found, shadows = find_shadows_in_ratio(
        observed * np.where(shadow, 0.8, 1.0), predicted, min_deep_depth=0.5, min_limb_depth=0.1
    )
    assert len(shadows) == 1 and found[20, WIDTH - 30]
    assert shadows[0].fixed_deficit > 0.15


def test_separate_sensor_fixed_searches_the_ratio_only_with_enough_motion():
    frames, shifts, median, _ = _faint_video()
    empty = np.zeros(median.shape, dtype=bool)
    result = separate_sensor_fixed(empty, median, frames, shifts)
    assert result.ratio_searched and len(result.ratio_shadows) == 1
    assert result.core[int(FAINT[0]), int(FAINT[1])]
    still = np.zeros_like(shifts)
    still[:, 0] = 0.3 * np.sin(np.arange(len(shifts)))
    quiet = separate_sensor_fixed(empty, median, frames, still)
    assert not quiet.ratio_searched and not quiet.core.any()
    off = separate_sensor_fixed(
        empty, median, frames, shifts, params=MotionTestParams(ratio_search=False)
    )
    assert not off.ratio_searched and not off.core.any()


def test_the_ratio_is_searched_while_most_frames_see_past_the_smallest_shadow():
    # A 10 px shadow 10 % deep that the scene's texture hides in the median, over a 20 px
    # drift: 41 % of the frames put a shadow of the smallest size the detector looks for on
    # the same scene point, so a median over the frames still sees past it.
    dust = (44.0, 46.0, 5.0, 0.10)
    frames, shifts, median, _ = _video(drift_px=20.0, seed=9, dust=dust, texture=0.12)
    smallest_radius = DustDetectionParams().min_radius_px
    assert 0.35 < motion._mean_overlap(shifts, smallest_radius) < 0.5
    assert detect_dust(median).regions == ()
    empty = np.zeros(median.shape, dtype=bool)
    result = separate_sensor_fixed(empty, median, frames, shifts)
    assert result.ratio_searched and not result.too_little_motion
    assert len(result.ratio_shadows) == 1 and result.core[44, 46]
    assert result.ratio_shadows[0].fixed_deficit == pytest.approx(0.10, abs=0.02)
    # Over 12 px, most frames put it on the same scene point: no median sees behind it.
    frames, shifts, median, _ = _video(drift_px=12.0, seed=9, dust=dust, texture=0.12)
    assert motion._mean_overlap(shifts, smallest_radius) > 0.5
    stalled = separate_sensor_fixed(empty, median, frames, shifts)
    assert stalled.too_little_motion and not stalled.ratio_searched


def test_ratio_search_rejects_bad_inputs():
    image = np.ones((16, 16))
    with pytest.raises(ValueError, match="one shape"):
        find_shadows_in_ratio(image, np.ones((8, 8)))
    with pytest.raises(ValueError, match="min_depth"):
        find_shadows_in_ratio(image, image, min_depth=1.0)
    with pytest.raises(ValueError, match="min_fixed_fraction"):
        find_shadows_in_ratio(image, image, min_fixed_fraction=1.0)
    with pytest.raises(ValueError, match="min_deep_depth"):
        find_shadows_in_ratio(image, image, min_deep_depth=0.0)
    with pytest.raises(ValueError, match="min_limb_depth"):
        find_shadows_in_ratio(image, image, min_limb_depth=1.5)
    with pytest.raises(ValueError, match="min_significance"):
        find_shadows_in_ratio(image, image, min_significance=-1.0)
    holed = image.copy()
    holed[2, 2] = np.nan
    with pytest.raises(ValueError, match="median contains NaN or inf where the prediction"):
        find_shadows_in_ratio(holed, image)
    with pytest.raises(ValueError, match="every frame must have the shape"):
        predict_dust_free([image, np.ones((8, 16))], np.zeros((2, 2)), image.shape)
    with pytest.raises(ValueError, match="exclude must be a bool mask"):
        find_shadows_in_ratio(image, image, exclude=np.zeros((16, 16), np.uint8))
    with pytest.raises(ValueError, match="band_rows"):
        predict_dust_free([image, image], np.zeros((2, 2)), image.shape, band_rows=0)
    with pytest.raises(ValueError, match="one \\(dy, dx\\) per frame"):
        predict_dust_free([image, image], np.zeros((3, 2)), image.shape)


def test_on_a_generated_video_the_ratio_measures_the_true_transmission():
    from astro_assets.samples import DustSpec, SolarVideoParams, synthesize_frames_array

    params = SolarVideoParams(
        width=192,
        height=144,
        n_frames=24,
        drift_px=60.0,
        n_sunspots=0,
        black_level_adu=0.0,
        dust=(
            DustSpec(x=60.0, y=50.0, diameter_px=14.0, depth=0.3, kind="disc"),
            DustSpec(x=120.0, y=90.0, diameter_px=12.0, depth=0.5, kind="disc"),
        ),
        seed=7,
    )
    frames, truth = synthesize_frames_array(params)
    median = np.median(frames.astype(np.float64), axis=0)
    core = truth.transmission < 0.9
    shifts = truth.shifts - truth.shifts[0]
    kept, verdicts = sensor_fixed_test(core, median, list(frames), shifts)
    assert [v.verdict for v in verdicts] == ["sensor", "sensor"]
    np.testing.assert_array_equal(kept, core)
    for verdict in verdicts:
        row, col = round(verdict.centroid_y), round(verdict.centroid_x)
        assert verdict.fixed_deficit == pytest.approx(1 - truth.transmission[row, col], abs=0.04)
    predicted = predict_dust_free(list(frames), shifts, median.shape).predicted
    ratio = median / predicted
    inside = core & np.isfinite(ratio)
    np.testing.assert_allclose(
        np.median(ratio[inside]), np.median(truth.transmission[inside]), atol=0.03
    )


def test_ratio_is_not_searched_when_the_prediction_does_not_explain_the_scene():
    frames, shifts, median, _ = _faint_video()
    empty = np.zeros(median.shape, dtype=bool)
    good = separate_sensor_fixed(empty, median, frames, shifts)
    assert good.texture_left < 0.3
    # Shifts of the wrong sign stand for a scene the frames do not predict (evolving
    # granulation, rotation): the ratio keeps the texture, so it is not searched.
    wrong = separate_sensor_fixed(empty, median, frames, -shifts)
    assert wrong.texture_left > MotionTestParams().max_texture_left
    assert not wrong.ratio_searched and not wrong.core.any()


def test_shifts_a_rounding_error_away_from_whole_pixels_are_whole():
    frames, shifts, median, _ = _video(drift_px=30.0, n_frames=6)
    whole = np.round(shifts)
    nudged = np.nextafter(whole, whole + 1)
    below = np.nextafter(whole, whole - 1)
    reference = predict_dust_free(frames, whole, median.shape).predicted
    for variant in (nudged, below):
        got = predict_dust_free(frames, variant, median.shape).predicted
        np.testing.assert_array_equal(np.isnan(got), np.isnan(reference))
        np.testing.assert_allclose(got, reference, rtol=1e-6, equal_nan=True)


def test_nanmedian_treats_infinities_as_unknown():
    stack = np.array([[-np.inf], [1.0], [2.0], [3.0], [np.inf]], dtype=np.float32)[:, :, None]
    np.testing.assert_array_equal(finite_median(stack, minimum=0), [[2.0]])


def test_two_frames_never_search_the_ratio():
    frames, shifts, median, _ = _faint_video()
    empty = np.zeros(median.shape, dtype=bool)
    pair = separate_sensor_fixed(empty, median, frames[:: len(frames) - 1], shifts[[0, -1]])
    assert not pair.ratio_searched and not pair.core.any()


def test_new_shadows_leave_out_those_the_candidates_covered():
    frames, shifts, median, _ = _faint_video()
    shadow = _disc(median.shape, *FAINT[:3])
    fresh = separate_sensor_fixed(np.zeros_like(shadow), median, frames, shifts)
    assert len(fresh.new_shadows) == len(fresh.ratio_shadows) == 1
    # The same shadow handed in as a candidate: found again in the ratio, but not new.
    known = separate_sensor_fixed(shadow, median, frames, shifts)
    assert known.tested[int(FAINT[0]), int(FAINT[1])]
    assert len(known.ratio_shadows) == 1 and known.new_shadows == ()


def _gradient_video(drift_px=40.0, n_frames=24, shadow=None):
    """Frames of a textured scene whose level falls by half across the canvas along the drift
    (as a limb-darkened disc does), with 0.5-1 % noise, optionally through one sensor-fixed
    shadow (row, column, radius, depth)."""
    rng = np.random.default_rng(3)
    margin = int(drift_px) + 8
    canvas = _scene(rng, (HEIGHT + 2 * margin, WIDTH + 2 * margin), 0.05)
    canvas *= np.linspace(1.0, 0.5, canvas.shape[1])[None, :]
    transmission = np.ones((HEIGHT, WIDTH))
    if shadow is not None:
        row, col, radius, depth = shadow
        transmission[_disc((HEIGHT, WIDTH), row, col, radius)] = 1 - depth
    return _drifting(canvas, margin, drift_px, n_frames, rng, transmission, jitter_px=0.0)


def test_observed_median_uses_the_same_frames_as_the_prediction():
    frames, shifts, median = _gradient_video()
    prediction = predict_dust_free(frames, shifts, median.shape)
    known = np.isfinite(prediction.predicted)
    np.testing.assert_array_equal(np.isfinite(prediction.observed), known)
    inner = np.zeros_like(known)
    inner[4:-4, 2:-2] = True
    edges = known & inner
    edges[:, 12:-12] = False
    # Near the edges only some frames see a part of the scene enough others saw: the full
    # median is over other frames than the prediction there, and the gradient biases it.
    full_bias = np.abs(median[edges] / prediction.predicted[edges] - 1)
    same_frames = np.abs(prediction.ratio[edges] - 1)
    assert np.median(full_bias) > 0.01
    assert np.median(same_frames) < 0.003
    assert np.median(np.abs(prediction.ratio[known & inner] - 1)) < 0.003


def test_ratio_search_finds_a_shadow_cut_by_the_frame_edge():
    # It reaches the bottom row: its surroundings are cut by the edge.
    shadow = (HEIGHT - 10.0, 60.0, 10.0, 0.05)
    frames, shifts, median = _gradient_video(drift_px=50.0, shadow=shadow)
    prediction = predict_dust_free(frames, shifts, median.shape)
    found, shadows = find_shadows_in_ratio(prediction.observed, prediction.predicted)
    assert len(shadows) == 1
    truth = _disc(median.shape, *shadow[:3])
    assert found[truth].mean() > 0.7
    assert not (found & ~ndimage.binary_dilation(truth, iterations=3)).any()
    assert shadows[0].fixed_deficit == pytest.approx(shadow[3], abs=0.01)


def _seen_and_faint_video(texture):
    """A 30 % shadow the median shows (radius 5 px at row 20, column 100) and the large faint
    one the texture hides (``FAINT``), on a scene of ``texture`` rms drifting 60 px; returns
    frames, shifts, median, the shown shadow's disc, and the median without any dust."""
    seen = _disc((HEIGHT, WIDTH), 20.0, 100.0, 5.0)
    faint = _disc((HEIGHT, WIDTH), *FAINT[:3])
    transmission = np.where(seen, 0.7, 1.0) * np.where(faint, 1 - FAINT[3], 1.0)
    frames, shifts, median, _ = _video(
        drift_px=60.0, seed=9, dust=FAINT, texture=texture, transmission=transmission
    )
    clean = _video(drift_px=60.0, seed=9, texture=texture, transmission=np.ones(seen.shape))[2]
    return frames, shifts, median, seen, clean


def test_inpainting_guide_follows_the_prediction_only_where_it_explains_the_surroundings():
    frames, shifts, median, seen, _ = _seen_and_faint_video(texture=0.02)
    result = separate_sensor_fixed(seen, median, frames, shifts)
    assert result.ratio_searched and result.prediction is not None
    assert result.tested[seen].all()
    mask = ndimage.binary_dilation(result.core, iterations=4).astype(np.float32)
    faint = _disc(median.shape, *FAINT[:3])
    around_seen = ndimage.binary_dilation(seen, iterations=6)
    labels = ndimage.label(mask > 0)[0]
    # A prediction with a 10 % pattern of its own around the shown shadow does not explain
    # the median there: the held-out ring shows it, and that region is continued.
    rows, cols = np.indices(median.shape)
    pattern = 1.0 + 0.1 * np.sin(rows / 1.5) * np.cos(cols / 1.5)
    wrong = DustFreePrediction(
        observed=result.prediction.observed,
        predicted=np.where(ndimage.binary_dilation(seen, iterations=20), pattern, 1.0).astype(
            np.float32
        )
        * result.prediction.predicted,
    )
    guide = inpainting_guide(dataclasses.replace(result, prediction=wrong), mask, median)
    assert guide.image.dtype == np.float32 and guide.image.shape == median.shape
    covered = np.isfinite(guide.image)
    assert covered[faint].all() and not covered[around_seen].any()
    # The prediction carried to the median's frames (predicted * median / observed), then
    # filtered to match the median away from the mask and the ring the choice is judged on.
    carried = wrong.predicted * median / wrong.observed
    defaults = MotionTestParams()
    ring_reach = defaults.guide_holdout_px + 1
    fitted_on = ~ndimage.binary_dilation(mask > 0, iterations=ring_reach)
    filtered = motion.filtered_to_match(carried, median, fitted_on, defaults.guide_filter_px)
    np.testing.assert_allclose(guide.image[covered], filtered[covered], rtol=1e-6)
    unfiltered = inpainting_guide(
        dataclasses.replace(result, prediction=wrong),
        mask,
        median,
        params=MotionTestParams(guide_filter_px=0),
    )
    np.testing.assert_allclose(unfiltered.image[covered], carried[covered], rtol=1e-6)
    by_column = {round(r.centroid_x): r for r in guide.regions}
    assert sorted(by_column) == [46, 100] and guide.guided_count == 1
    assert (by_column[46].guided, by_column[46].reason) == (True, "found in the ratio alone")
    assert (by_column[100].guided, by_column[100].reason) == (
        False,
        "continuation fits the ring as well",
    )
    assert by_column[100].continued_rms < by_column[100].guided_rms
    assert by_column[100].area_px == int((labels == labels[20, 100]).sum())
    # The true prediction explains the surroundings better than a continuation: followed,
    # unless the continuation is favoured by more than the margin it loses by.
    right = inpainting_guide(result, mask, median)
    region = {round(r.centroid_x): r for r in right.regions}[100]
    assert (region.guided, region.reason) == (True, "prediction fits the ring better")
    assert np.isfinite(right.image[seen]).all()
    margin = region.continued_rms / region.guided_rms
    favoured = MotionTestParams(min_guide_advantage=1.01 * margin)
    assert not {
        round(r.centroid_x): r
        for r in inpainting_guide(result, mask, median, params=favoured).regions
    }[100].guided
    still = separate_sensor_fixed(seen, median, frames, np.zeros_like(shifts))
    assert still.prediction is None
    nothing = inpainting_guide(still, mask, median)
    assert np.isnan(nothing.image).all()
    assert {r.reason for r in nothing.regions} == {"no prediction"}
    with pytest.raises(ValueError, match="mask shape"):
        inpainting_guide(result, mask[:-1], median)
    with pytest.raises(ValueError, match="median shape"):
        inpainting_guide(result, mask, median[:-1])


def test_a_shadow_in_strong_texture_is_filled_along_the_prediction():
    frames, shifts, median, seen, clean = _seen_and_faint_video(texture=0.12)
    result = separate_sensor_fixed(seen, median, frames, shifts)
    mask = ndimage.binary_dilation(result.core, iterations=4).astype(np.float32)
    guide = inpainting_guide(result, mask, median)
    (region,) = [r for r in guide.regions if round(r.centroid_x) == 100]
    assert (region.guided, region.reason) == (True, "prediction fits the ring better")
    assert guide.guided_count == 2
    around = (mask > 0) & ndimage.binary_dilation(seen, iterations=6)
    along = inpaint_guided(median, mask, guide.image)[around] / clean[around]
    continued = inpaint(median, mask)[around] / clean[around]
    assert np.sqrt(np.mean((along - 1) ** 2)) < 0.01
    assert np.sqrt(np.mean((continued - 1) ** 2)) > 3 * np.sqrt(np.mean((along - 1) ** 2))


def test_a_shown_shadow_the_scene_estimate_still_holds_is_continued():
    # A 36 px shadow over a 30 px drift: with its pixels left out, too few frames see the
    # middle of its part of the scene through other pixels, and the prediction there is the
    # first one, whose scene estimate holds much of the shadow. Followed, it would put the
    # shadow back into the flat's reference.
    spec = (26.0, 60.0, 18.0, 0.25)
    frames, shifts, median, _ = _video(drift_px=30.0, seed=9, dust=spec, texture=0.01)
    clean = _video(
        drift_px=30.0, seed=9, dust=spec, texture=0.01, transmission=np.ones(median.shape)
    )[2]
    shadow = _disc(median.shape, *spec[:3])
    result = separate_sensor_fixed(shadow, median, frames, shifts)
    assert result.ratio_searched and result.tested[shadow].all()
    holds = result.prediction.with_excluded
    assert (
        0.3 < holds[shadow].mean() < 1
        and not holds[~ndimage.binary_dilation(shadow, iterations=8)].any()
    )
    mask = ndimage.binary_dilation(result.core, iterations=4).astype(np.float32)
    guide = inpainting_guide(result, mask, median)
    (region,) = guide.regions
    assert (region.guided, region.reason) == (False, "prediction holds the shadow")
    assert region.continued_rms > region.guided_rms
    assert np.isnan(guide.image).all()
    continued = inpaint_guided(median, mask, guide.image)[shadow] / clean[shadow] - 1
    along = inpaint_guided(median, mask, result.prediction.carried_to(median))
    followed = along[shadow] / clean[shadow] - 1
    assert np.sqrt(np.mean(continued**2)) < 0.01
    assert np.mean(followed) < -0.05


def _limb_video(transmission):
    """A limb-darkened disc (radius 56 px) drifting 40 px along x over a dark sky, its limb
    crossing the frame at column 66 in the median, through ``transmission``; returns frames,
    shifts and median."""
    rng = np.random.default_rng(4)
    drift, n_frames = 40.0, 24
    margin = int(drift) + 8
    canvas = _scene(rng, (HEIGHT + 2 * margin, WIDTH + 2 * margin), 0.02)
    rows, cols = np.indices(canvas.shape)
    radius = np.hypot(rows - 48 - margin, cols + 10 - margin)
    disc = np.sqrt(np.clip(1 - (radius / 56) ** 2, 0, 1)) / (1 + np.exp((radius - 55) / 1.5))
    canvas = 20.0 * canvas * (0.005 + 0.995 * disc)
    return _drifting(canvas, margin, drift, n_frames, rng, transmission)


def test_a_shadow_on_a_limb_is_filled_along_the_prediction():
    # A continuation of the image from the disc's side cannot follow the limb's fall to the
    # sky; the prediction carries it, and so does the continuation of the image's ratio to
    # its radial profile.
    shadow = _disc((HEIGHT, WIDTH), 48.0, 62.0, 6.0)
    frames, shifts, median = _limb_video(np.where(shadow, 0.1, 1.0))
    _, _, clean = _limb_video(np.ones((HEIGHT, WIDTH)))
    assert median[48, 40] > 10 * median[48, 90]
    result = separate_sensor_fixed(shadow, median, frames, shifts)
    assert result.prediction is not None and result.core[48, 62]
    mask = ndimage.binary_dilation(result.core, iterations=4).astype(np.float32)
    guide = inpainting_guide(result, mask, median)
    (region,) = guide.regions
    assert region.guided and region.reason == "prediction fits the ring better"
    assert region.continued_rms > 2 * region.guided_rms
    lit = (mask > 0) & (clean > 0.2 * clean.max())
    along = inpaint_guided(median, mask, guide.image)
    continued = inpaint(median, mask, InpaintParams(limb="none"))
    along_profile = inpaint(median, mask)
    error_along = np.sqrt(np.mean((along[lit] / clean[lit] - 1) ** 2))
    error_continued = np.sqrt(np.mean((continued[lit] / clean[lit] - 1) ** 2))
    error_profile = np.sqrt(np.mean((along_profile[lit] / clean[lit] - 1) ** 2))
    assert error_along < 0.03
    assert error_continued > 3 * error_along
    assert error_profile < 0.03
    # The prediction, shifted twice by bilinear interpolation, is blurrier than the median on
    # the limb's steep fall; the filter fitted on the clean pixels sharpens it.
    unfiltered = inpainting_guide(result, mask, median, params=MotionTestParams(guide_filter_px=0))
    along_unfiltered = inpaint_guided(median, mask, unfiltered.image)
    error_unfiltered = np.sqrt(np.mean((along_unfiltered[lit] / clean[lit] - 1) ** 2))
    assert error_along < 0.7 * error_unfiltered
    off = inpainting_guide(result, mask, median, params=MotionTestParams(guide_holdout_px=0))
    assert np.isnan(off.image).all()
    assert [(r.guided, r.reason) for r in off.regions] == [(False, "not judged")]


MOSAIC_GAINS = {"R": 0.6, "G": 1.0, "B": 0.45}


def _mosaic_limb_video(transmission):
    """The disc of :func:`_limb_video` at twice the resolution (radius 112 px, a limb 2 px
    wide) drifting 80 px along x, captured as an RGGB mosaic (each colour its own gain of the
    light) through ``transmission``; returns frames, shifts (sensor px) and median."""
    rng = np.random.default_rng(4)
    drift, n_frames = 80.0, 24
    margin = int(drift) + 16
    shape = (2 * HEIGHT + 2 * margin, 2 * WIDTH + 2 * margin)
    canvas = _scene(rng, shape, 0.02)
    rows, cols = np.indices(shape)
    radius = np.hypot(rows - 96 - margin, cols + 20 - margin)
    disc = np.sqrt(np.clip(1 - (radius / 112) ** 2, 0, 1)) / (1 + np.exp((radius - 110) / 2.0))
    canvas = 20.0 * canvas * (0.005 + 0.995 * disc)
    gains = np.empty((2 * HEIGHT, 2 * WIDTH))
    for index, colour in enumerate("RGGB"):
        gains[index // 2 :: 2, index % 2 :: 2] = MOSAIC_GAINS[colour]
    return _drifting(canvas, margin, drift, n_frames, rng, gains * transmission)


def test_a_colour_plane_is_guided_by_its_own_prediction_across_a_limb():
    # A 90 % deep shadow on the limb of a disc captured as an RGGB mosaic. The luminance's
    # prediction, carried to a plane's samples, has the 2 x 2 cells' resolution on the limb's
    # fall; the plane's own frames, shifted by the same drift, predict the plane's own limb.
    # A shadow inside the disc follows the luminance's, whose noise is half a plane's.
    shape = (2 * HEIGHT, 2 * WIDTH)
    shadow = _disc(shape, 96.0, 124.0, 12.0)
    inside = _disc(shape, 96.0, 40.0, 10.0)
    frames, shifts, median = _mosaic_limb_video(np.where(shadow, 0.1, np.where(inside, 0.7, 1.0)))
    clean = _mosaic_limb_video(np.ones(shape))[2]
    view_median = luminance_view(median, "RGGB")
    views = [luminance_view(frame, "RGGB") for frame in frames]
    result = separate_sensor_fixed(
        mask_to_cells(shadow | inside, "RGGB"), view_median, views, shifts / 2
    )
    core = mask_to_full(result.core, shape, "RGGB")
    mask = ndimage.binary_dilation(core, iterations=8).astype(np.float32)
    guide = inpainting_guide(result, mask_to_cells(mask, "RGGB"), view_median)
    assert [r.guided for r in guide.regions] == [True, True]
    on_limb = ndimage.binary_dilation(shadow, iterations=10)
    planes = zip(
        split_planes(median, "RGGB"),
        split_planes(clean, "RGGB"),
        split_mask(mask, "RGGB"),
        plane_offsets("RGGB"),
        strict=True,
    )
    for index, (plane, clean_plane, plane_mask, offset) in enumerate(planes):
        own = plane_guide(
            result,
            guide,
            PlaneVideo(frames, range(len(frames)), "RGGB", index),
            shifts / 2,
            plane,
            plane_mask,
            offset,
        )
        assert np.isnan(own[~ndimage.binary_dilation(plane_mask > 0, iterations=3)]).all()
        luminance = view_on_plane(guide.prediction, plane.shape, offset)
        away = (plane_mask > 0) & ~split_planes(on_limb, "RGGB")[index].astype(bool)
        pedestal = result.prediction.black_level
        scale = (own[away] - pedestal) / (luminance[away] - pedestal)
        np.testing.assert_allclose(scale, np.median(scale), rtol=1e-5)
        lit = (plane_mask > 0) & (clean_plane > 0.2 * clean_plane.max())
        lit &= split_planes(on_limb, "RGGB")[index].astype(bool)
        fills = {
            "own": inpaint_guided(plane, plane_mask, own, black_level=0.0),
            "luminance": inpaint_guided(
                plane, plane_mask, view_on_plane(guide.image, plane.shape, offset), black_level=0.0
            ),
            "own, plain ratio": inpaint_guided(plane, plane_mask, own),
        }
        error = {
            name: np.sqrt(np.mean((fill[lit] / clean_plane[lit] - 1) ** 2))
            for name, fill in fills.items()
        }
        assert error["own"] < 0.005
        assert error["own"] < 0.5 * error["luminance"]
        # On the sky beside the limb a few ADU of the guide's error are tens of per cent of
        # the plain ratio, which the fill carries onto the disc.
        assert error["own, plain ratio"] > 2 * error["own"]
    with pytest.raises(ValueError, match="mask shape"):
        plane_guide(result, guide, frames, shifts / 2, plane, plane_mask[:-1], offset)


def test_a_limb_shadow_is_carried_to_all_frames_above_the_pedestal():
    # The prediction is taken over every third frame, whose median softens the limb's steep
    # fall, and carried to the median of all of them by the ratio of their light. Under a
    # 90 % deep shadow a pedestal of 5 % of the disc's light, scaled with it, pulls that ratio
    # towards 1.
    shadow = _disc((HEIGHT, WIDTH), 48.0, 62.0, 6.0)
    pedestal = np.float32(1000.0)
    frames, shifts, median = _limb_video(np.where(shadow, 0.1, 1.0))
    clean = _limb_video(np.ones((HEIGHT, WIDTH)))[2] + pedestal
    frames, median = [frame + pedestal for frame in frames], median + pedestal
    lit = shadow & (clean - pedestal > 0.1 * (clean.max() - pedestal))

    def carried_error(black_level):
        result = separate_sensor_fixed(
            shadow, median, frames[::3], shifts[::3], black_level=black_level
        )
        assert result.black_level == result.prediction.black_level
        carried = result.prediction.carried_to(median)
        return result, np.sqrt(
            np.mean(((carried[lit] - pedestal) / (clean[lit] - pedestal) - 1) ** 2)
        )

    result, error = carried_error(float(pedestal))
    assert result.black_level == 1000.0 and error < 0.03
    assert carried_error(0.0)[1] > 0.1
    # Unset, the pedestal is taken from the sky, which here holds 0.5 % of the disc's light.
    estimated, _ = carried_error(None)
    assert estimated.black_level == pytest.approx(sky_black_level(median))
    assert 1000.0 < estimated.black_level < 1000.0 + 0.01 * (clean.max() - pedestal)
    with pytest.raises(ValueError, match="black_level must be finite"):
        separate_sensor_fixed(shadow, median, frames, shifts, black_level=np.nan)
    bright = target_level(median)
    for outside in (-1.0, 1.01 * bright, 2 * bright):
        with pytest.raises(ValueError, match=r"lies outside \[0, .*the median's bright level"):
            separate_sensor_fixed(shadow, median, frames, shifts, black_level=outside)


def test_carried_to_scales_the_light_and_carries_the_difference_in_the_dark():
    black = 100.0
    observed = np.array([[100.0 + 0.1 * 1000.0, 100.0 + 2.0, np.nan, 100.0 + 500.0]])
    predicted = np.array([[100.0 + 1000.0, 100.0 + 3.0, 500.0, np.nan]], dtype=np.float32)
    median = np.array([[100.0 + 0.1 * 1500.0, 100.0 + 4.0, 300.0, 700.0]])
    prediction = DustFreePrediction(
        observed=observed.astype(np.float32), predicted=predicted, black_level=black
    )
    carried = prediction.carried_to(median)
    assert carried.dtype == np.float32
    # Lit: the dust-free light scaled by the change of the (equally shadowed) light; dark
    # (below 1 % of the observed light's bright level): the difference carried.
    np.testing.assert_allclose(carried[0, :2], [100.0 + 1500.0, 100.0 + 3.0 + 2.0], rtol=1e-6)
    assert np.isnan(carried[0, 2:]).all()
    without = DustFreePrediction(observed=observed.astype(np.float32), predicted=predicted)
    assert without.carried_to(median)[0, 0] == pytest.approx(1100.0 * 250.0 / 200.0, rel=1e-6)


def _textured(shape=(120, 160), seed=3):
    """Smooth random texture of 10 % rms on a level of 1000 ADU."""
    return _scene(np.random.default_rng(seed), shape, 0.1)


def test_filtered_to_match_undoes_a_blur_and_a_sub_pixel_shift():
    target = _textured()
    source = ndimage.shift(ndimage.gaussian_filter(target, 0.7), (0.3, -0.25), order=3)
    kept = source.copy()
    filtered = motion.filtered_to_match(source, target, np.ones(target.shape, bool), 2)
    np.testing.assert_array_equal(source, kept)
    assert filtered.dtype == np.float32 and filtered.shape == target.shape
    inside = (slice(4, -4), slice(4, -4))
    before = np.sqrt(np.mean((source[inside] / target[inside] - 1) ** 2))
    after = np.sqrt(np.mean((filtered[inside] / target[inside] - 1) ** 2))
    assert before > 0.01
    assert after < before / 10
    same = motion.filtered_to_match(target, target, np.ones(target.shape, bool), 1)
    np.testing.assert_allclose(same, target, rtol=1e-5)


def test_filtered_to_match_leaves_a_shadow_of_the_target_in_the_ratio():
    clean = _textured()
    shadow = _disc(clean.shape, 60.0, 80.0, 8.0)
    target = np.where(shadow, 0.8, 1.0) * clean
    source = ndimage.gaussian_filter(clean, 0.8)
    fitted_on = ~ndimage.binary_dilation(shadow, iterations=3)
    filtered = motion.filtered_to_match(source, target, fitted_on, 2)
    inner = _disc(clean.shape, 60.0, 80.0, 5.0)
    assert np.median(target[inner] / filtered[inner]) == pytest.approx(0.8, abs=0.005)


def test_filtered_to_match_keeps_the_source_where_its_footprint_is_unknown():
    target = _textured()
    # 5 % darker than the target: where the footprint is unknown the source is scaled by the
    # kernel's sum, so the level does not step there.
    source = ndimage.gaussian_filter(target, 0.7) / 1.05
    source[50:60, 70:90] = np.nan
    everywhere = np.ones(target.shape, bool)
    filtered = motion.filtered_to_match(source, target, everywhere, 2)
    near = ndimage.binary_dilation(np.isnan(source), iterations=2, structure=np.ones((3, 3)))
    edge = np.ones(target.shape, bool)
    edge[2:-2, 2:-2] = False
    assert np.isnan(filtered[50:60, 70:90]).all()
    reached = (near | edge) & np.isfinite(source)
    scale = filtered[reached] / source[reached]
    np.testing.assert_allclose(scale, scale[0], rtol=1e-5)
    assert scale[0] == pytest.approx(1.05, abs=0.005)
    assert not np.allclose(filtered[~near & ~edge], source[~near & ~edge], rtol=1e-3)
    # Too few pixels to fit 100 per weight: the source is returned as it is.
    few = np.zeros(target.shape, bool)
    few[:20, :20] = True
    np.testing.assert_array_equal(
        motion.filtered_to_match(source, target, few, 2), source.astype(np.float32)
    )


def test_filtered_to_match_rejects_bad_inputs():
    image = _textured()
    everywhere = np.ones(image.shape, bool)
    with pytest.raises(ValueError, match="one shape"):
        motion.filtered_to_match(image, image[:-1], everywhere, 1)
    with pytest.raises(ValueError, match="one shape"):
        motion.filtered_to_match(image, image, everywhere[:-1], 1)
    with pytest.raises(ValueError, match="radius must be >= 0"):
        motion.filtered_to_match(image, image, everywhere, -1)


@pytest.mark.parametrize(("amplitude", "period"), [(0.01, 30.0), (0.02, 50.0)])
def test_ratio_residues_as_deep_as_their_surroundings_are_not_shadows(amplitude, period):
    """The left half of the ratio holds an egg-crate residue (a prediction that misses a scene
    feature by part of its contrast): each of its dips is as deep as faint dust, but no deeper
    than the ratio's fluctuations around it. A 3 % disc in the quiet right half stands out."""
    shape = (160, 240)
    yy, xx = np.indices(shape)
    rng = np.random.default_rng(5)
    residue = amplitude * np.cos(2 * np.pi * xx / period) * np.cos(2 * np.pi * yy / period)
    ratio = 1.0 + rng.normal(0.0, 0.002, shape) + np.where(xx < 120, residue, 0.0)
    disc = np.hypot(yy - 80.0, xx - 185.0) <= 8.0
    predicted = np.full(shape, 20000.0)
    median = predicted * np.where(disc, 0.97 * ratio, ratio)

    everything, all_shadows = find_shadows_in_ratio(median, predicted, min_significance=0.0)
    found, shadows = find_shadows_in_ratio(median, predicted, min_significance=3.0)

    residue_dips = [s for s in all_shadows if s.centroid_x < 125]
    assert len(residue_dips) >= 3
    assert all(s.fixed_deficit > 0.005 and s.significance < 3.0 for s in residue_dips)
    assert len(shadows) == 1
    assert (shadows[0].centroid_y, shadows[0].centroid_x) == pytest.approx((80, 185), abs=1)
    assert shadows[0].significance > 30
    np.testing.assert_array_equal(found, everything & (xx >= 125))
    assert found[disc].mean() > 0.9


def test_ratio_significance_is_measured_against_the_rms_at_the_shadow_scale():
    """On white noise the fluctuation of a box average of side ``s`` is sigma / s."""
    shape = (200, 200)
    rng = np.random.default_rng(9)
    sigma = 0.004
    ratio = 1.0 + rng.normal(0.0, sigma, shape)
    labels = (np.hypot(*(np.indices(shape) - 100.0)) <= 12.0).astype(int)
    box = ndimage.find_objects(labels)[0]
    usable = np.ones(shape, dtype=bool)
    significance = motion._significance_at_scale(ratio, usable, labels, 1, box, 0.01, 12.0)
    assert significance == pytest.approx(0.01 / (sigma / 12.0), rel=0.25)
    assert np.isnan(
        motion._significance_at_scale(ratio, np.zeros(shape, bool), labels, 1, box, 0.01, 12.0)
    )


def test_texture_left_is_measured_on_a_target_thinner_than_its_coarse_scale() -> None:
    # A 20 px wide arc: the coarse scale's Gaussian (20 px) never has half its weight on it.
    rng = np.random.default_rng(0)
    rows, cols = np.indices((240, 240))
    radius = np.hypot(rows - 120.0, cols - 40.0)
    arc = (radius > 80.0) & (radius < 100.0)
    texture = ndimage.gaussian_filter(rng.standard_normal(arc.shape), 4.0)
    median = np.where(arc, 1000.0 * (1.0 + 0.1 * texture / texture.std()), 10.0)
    untextured = np.where(arc, 1000.0, 10.0)
    nothing = np.zeros(arc.shape, dtype=bool)
    detection = DustDetectionParams()
    assert motion._texture_left(median, median, nothing, detection) == 0.0
    assert motion._texture_left(median, untextured, nothing, detection) == pytest.approx(
        1.0, abs=0.05
    )


def test_sensor_line_gains_come_from_the_ratio_where_the_scene_cancels() -> None:
    # A banded, textured disc (seeing-blurred belts along the rows, as a planet's) whose
    # median holds a 4 % column and a 3 % row of the sensor across the drift; its prediction
    # holds the scene only. In the ratio the belts cancel and the two lines alone are found.
    rng = np.random.default_rng(21)
    height, width, pedestal = 240, 320, 100.0
    rows, columns = np.indices((height, width))
    disc = np.hypot(rows - 120, columns - 160) <= 110
    steps = 1.0 - 0.25 * ((rows // 12) % 3 == 0) - 0.1 * ((rows // 12) % 3 == 1)
    belts = ndimage.gaussian_filter1d(steps, 2.0, axis=0)
    scene = np.where(disc, 20000.0 * belts, 0.0) * (1 + 0.02 * rng.standard_normal(disc.shape))
    lines = np.ones((height, width))
    lines[:, 150] *= 0.96
    lines[77, :] *= 0.97
    predicted = (scene + pedestal).astype(np.float32)
    seeing = 1 + 0.005 * rng.standard_normal(disc.shape)
    observed = (scene * lines * seeing + pedestal).astype(np.float32)
    mask = np.zeros((height, width))
    mask[110:130, 140:170] = 1.0
    prediction = motion.DustFreePrediction(observed, predicted, black_level=pedestal)

    gains = motion.sensor_line_gains(prediction, mask)

    assert (gains.defective_columns, gains.defective_rows) == (1, 1)
    assert gains.columns[150] == pytest.approx(0.96, abs=0.003)
    assert gains.rows[77] == pytest.approx(0.97, abs=0.003)
    assert motion.sensor_line_gains(motion.DustFreePrediction(predicted, predicted), mask) is None


def test_inpainting_guide_completes_a_prediction_unknown_on_part_of_a_region():
    # As near the frame's edge, where too few frames see the scene: the prediction is unknown
    # above a row that cuts the shown shadow's region.
    frames, shifts, median, seen, _ = _seen_and_faint_video(texture=0.02)
    result = separate_sensor_fixed(seen, median, frames, shifts)
    mask = ndimage.binary_dilation(result.core, iterations=4).astype(np.float32)
    region = ndimage.label(mask > 0)[0] == ndimage.label(mask > 0)[0][20, 100]
    rows = np.nonzero(region.any(axis=1))[0]

    def cut_above(row: int) -> MotionResult:
        predicted = result.prediction.predicted.copy()
        predicted[:row] = np.nan
        cut = DustFreePrediction(observed=result.prediction.observed, predicted=predicted)
        return dataclasses.replace(result, prediction=cut)

    partly = cut_above(rows[0] + 3)
    assert not (np.isfinite(partly.prediction.predicted) | ~region).all()
    guide = inpainting_guide(partly, mask, median)
    shown = {round(r.centroid_x): r for r in guide.regions}[100]
    assert (shown.guided, shown.reason) == (True, "prediction fits the ring better")
    assert np.isfinite(guide.image[region]).all()
    # Unknown on most of the region: it is continued from its surroundings.
    mostly = inpainting_guide(cut_above(rows[-1] - 2), mask, median)
    shown = {round(r.centroid_x): r for r in mostly.regions}[100]
    assert (shown.guided, shown.reason) == (False, "prediction unknown around it")
    assert np.isnan(mostly.image[region]).all()


def test_inpainting_guide_judges_a_region_whose_ring_the_prediction_misses_in_part():
    # Known over the shown shadow's region and the pixels next to it, the prediction is unknown
    # on a few pixels of the ring held out around it (as where that ring reaches the frame's
    # edge or a planet's sky): completed there, it is still judged against a continuation.
    frames, shifts, median, seen, _ = _seen_and_faint_video(texture=0.02)
    result = separate_sensor_fixed(seen, median, frames, shifts)
    mask = ndimage.binary_dilation(result.core, iterations=4).astype(np.float32)
    labels = ndimage.label(mask > 0)[0]
    region = labels == labels[20, 100]
    holdout = MotionTestParams().guide_holdout_px
    ring = ndimage.binary_dilation(region, iterations=holdout) & ~ndimage.binary_dilation(
        region, iterations=2
    )
    predicted = result.prediction.predicted.copy()
    gaps = ring & (np.indices(ring.shape).sum(axis=0) % 11 == 0)
    predicted[gaps] = np.nan
    assert 0 < gaps.sum() < 0.2 * ring.sum()
    holed = DustFreePrediction(observed=result.prediction.observed, predicted=predicted)
    guide = inpainting_guide(dataclasses.replace(result, prediction=holed), mask, median)
    shown = {round(r.centroid_x): r for r in guide.regions}[100]
    assert (shown.guided, shown.reason) == (True, "prediction fits the ring better")
    assert shown.continued_rms > shown.guided_rms
    assert np.isfinite(guide.image[region]).all()


def test_a_limb_bent_by_seeing_is_no_shadow():
    # Differential seeing bends each frame's limb by 1.5 px rms, in patches of 16 px that no
    # registration of the whole frame follows. Where the limb's path crossed a corner midway
    # through the video, the median and its prediction each take a frame near the crossing,
    # whose limbs lie apart: their ratio falls by tens of percent along it. Each frame that
    # lights those pixels shows no deficit there.
    params = SolarVideoParams(
        width=256,
        height=192,
        n_frames=24,
        jitter_px=0.8,
        seed=4,
        focal_ratio=30.0,
        drift_px=42.0,
        n_sunspots=0,
        seeing_warp_px=1.5,
        seeing_scale_px=16.0,
    )
    frames, truth = synthesize_frames_array(params)
    median = temporal_median(frames)
    detection = detect_dust(median)
    drift = estimate_drift(frames, exclude=detection.core)
    support = truth.transmission < 0.995

    def separated(**changes):
        return separate_sensor_fixed(
            detection.core,
            median,
            [frames[index] for index in drift.frames_used],
            drift.shifts,
            registered=drift.registered,
            black_level=truth.black_level_adu,
            params=MotionTestParams(**changes),
        )

    checked, unchecked = separated(), separated(min_lit_fraction=0.0)
    assert np.count_nonzero(unchecked.core & ~support) > 100
    assert np.count_nonzero(checked.core & ~support) < 20
    # Every shadow is still found, as far as before (an outline moved by a pixel).
    found = np.count_nonzero(checked.core & support)
    assert found >= np.count_nonzero(unchecked.core & support) - 5
    assert found > 0.8 * support.sum()


def test_the_part_of_a_kept_candidate_the_ratio_shows_clean_is_cut():
    # A candidate grown from a shadow into a clean part of the scene passes the motion test on
    # the shadow's deficit; the ratio, made without the candidate, shows the rest clean where
    # it is known (not next to the shadow: the candidate is longer than the drift there).
    frames, shifts, median, _ = _video(drift_px=40.0, seed=9, dust=LARGE)
    shadow = _disc(median.shape, *LARGE[:3])
    rows, cols = np.indices(median.shape)
    grown = (np.abs(rows - LARGE[0]) <= 6) & (cols >= LARGE[1] - LARGE[2] - 16) & (cols < LARGE[1])
    clean = grown & ~shadow
    result = separate_sensor_fixed(shadow | grown, median, frames, shifts)
    assert [verdict.verdict for verdict in result.verdicts] == [motion.SENSOR]
    cut = (shadow | grown) & ~result.core
    assert not (cut & shadow).any()
    assert cut.sum() > 0.4 * clean.sum()
    np.testing.assert_array_equal(result.tested, (shadow | grown) & ~cut)
    # Only a prediction made without the candidate's pixels can show them clean.
    whole = separate_sensor_fixed(
        shadow | grown, median, frames, shifts, params=MotionTestParams(max_outline_growth=0.0)
    )
    assert (whole.core & grown).sum() == grown.sum()


def test_a_donut_keeps_its_hole_and_a_candidate_the_ratio_sees_no_shadow_in_stays_whole():
    rows, cols = np.indices((HEIGHT, WIDTH))
    distance = np.hypot(rows - DUST[0], cols - DUST[1])
    ring = (distance > 7.0) & (distance <= 11.0)
    transmission = np.where(ring, 0.75, 1.0)
    frames, shifts, median, _ = _video(drift_px=40.0, transmission=transmission)
    donut = distance <= 11.0
    result = separate_sensor_fixed(donut, median, frames, shifts)
    assert (result.core & donut).sum() == donut.sum()
    # No shadow under this candidate at all: it is the motion test's to judge, and it keeps
    # nothing it cannot see a deficit for.
    empty = _disc(median.shape, 70.0, 100.0, 8.0)
    result = separate_sensor_fixed(donut | empty, median, frames, shifts)
    assert (result.core & donut).sum() == donut.sum()
    assert (result.tested & empty).sum() in (0, empty.sum())
