"""Harmonic and biharmonic inpainting: exactness on smooth fields, untouched known pixels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from astro_assets.samples.solar import DustSpec, SolarVideoParams, SyntheticSolarVideo
from astro_assets.science.flatfield.dust import expand_mask
from astro_assets.science.flatfield.inpaint import (
    InpaintParams,
    fill_across_line_defects,
    guided_regions,
    inpaint,
    inpaint_guided,
    median_line_gains,
)


def ramp(shape=(48, 64)) -> np.ndarray:
    yy, xx = np.indices(shape)
    return (1000.0 + 3.5 * yy - 2.25 * xx).astype(np.float64)


def holes(shape=(48, 64)) -> np.ndarray:
    yy, xx = np.indices(shape)
    mask = np.hypot(yy - 15, xx - 20) <= 7
    mask |= (np.abs(yy - 32) <= 3) & (np.abs(xx - 45) <= 9)
    return mask


def test_harmonic_is_exact_on_a_linear_ramp() -> None:
    image, mask = ramp(), holes()
    out = inpaint(image, mask)
    assert out.dtype == np.float32
    # A linear field has zero discrete Laplacian, so it is the exact solution; the only error
    # left is the float32 rounding of the output.
    np.testing.assert_allclose(out, image.astype(np.float32), rtol=2e-6)


def test_output_equals_input_exactly_outside_the_mask() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(500.0, 30.0, size=(40, 50)).astype(np.float32)
    mask = holes((40, 50))
    for method in ("harmonic", "biharmonic"):
        out = inpaint(image, mask, InpaintParams(method=method))
        np.testing.assert_array_equal(out[~mask], image[~mask])


def test_float_mask_marks_every_positive_pixel_unknown() -> None:
    image = ramp()
    soft = holes().astype(np.float32) * 0.3
    image_with_garbage = image.copy()
    image_with_garbage[soft > 0] = np.nan
    out = inpaint(image_with_garbage, soft)
    np.testing.assert_allclose(out, image.astype(np.float32), rtol=2e-6)


def test_the_plain_membrane_obeys_the_maximum_principle_at_the_frame_edge() -> None:
    rng = np.random.default_rng(2)
    image = rng.uniform(10.0, 20.0, size=(30, 30))
    mask = np.zeros(image.shape, dtype=bool)
    mask[:8, :8] = True
    out = inpaint(image, mask, InpaintParams(trend="none"))
    boundary = image[:9, :9][~mask[:9, :9]]
    assert out[mask].min() >= boundary.min() - 1e-4
    assert out[mask].max() <= boundary.max() + 1e-4


def dome(shape=(48, 64)) -> np.ndarray:
    """A concave quadratic field, as a limb-darkened disc is near its limb (laplacian < 0)."""
    yy, xx = np.indices(shape)
    return (
        30000.0
        + 40.0 * yy
        - 25.0 * xx
        - 4.0 * (yy - 20.0) ** 2
        - 6.0 * (xx - 30.0) ** 2
        + (1.5 * yy * xx)
    )


def test_harmonic_with_the_quadratic_trend_is_exact_on_a_curved_field() -> None:
    image, mask = dome(), holes()
    out = inpaint(image, mask)
    np.testing.assert_allclose(out, image.astype(np.float32), rtol=2e-6)
    # The plain membrane is the mean of its boundary: it sags under the dome by about
    # |laplacian| R^2 / 4 = 20 * 49 / 4 ADU at the centre of the 7 px disc.
    sag = image - inpaint(image, mask, InpaintParams(trend="none"))
    assert sag[15, 20] > 150.0


def test_a_region_at_the_frame_edge_keeps_the_field_slope_and_curvature() -> None:
    image = dome()
    yy, xx = np.indices(image.shape)
    mask = np.hypot(yy - 24, xx - 2) <= 9
    out = inpaint(image, mask)
    np.testing.assert_allclose(out, image.astype(np.float32), rtol=2e-6)
    # Without a trend the frame edge has zero flux: the slope of the field across it is lost.
    plain = inpaint(image, mask, InpaintParams(trend="none"))
    assert np.abs(plain[mask] / image[mask] - 1).max() > 0.01


def test_the_trend_fixes_the_fill_near_the_synthetic_suns_limb() -> None:
    params = SolarVideoParams(
        width=256, height=192, n_frames=2, texture_contrast=0.0, n_sunspots=0, dust=(), seed=0
    )
    scene = SyntheticSolarVideo(params).truth.scene.astype(np.float64)
    yy, xx = np.indices(scene.shape)
    for row, col in ((95.5, 20.0), (95.5, 10.0)):
        mask = np.hypot(yy - row, xx - col) <= 16
        error = np.abs(inpaint(scene, mask, InpaintParams(limb="none"))[mask] / scene[mask] - 1)
        plain = inpaint(scene, mask, InpaintParams(trend="none", limb="none"))
        plain_error = np.abs(plain[mask] / scene[mask] - 1)
        assert error.max() < 0.005
        assert plain_error.max() > 4 * error.max()


def smooth_sun(texture_contrast: float = 0.0, **geometry) -> np.ndarray:
    """The noiseless synthetic Sun, by default of 256 x 192 px: a limb-darkened disc of 144 px
    radius centred in the frame, whose limb crosses the four corners; ``geometry`` overrides
    the frame size and the disc's radius."""
    frame = {"width": 256, "height": 192, **geometry}
    params = SolarVideoParams(
        n_frames=2, texture_contrast=texture_contrast, n_sunspots=0, dust=(), seed=0, **frame
    )
    return SyntheticSolarVideo(params).truth.scene.astype(np.float64)


def relative_rms(filled: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    """Rms of ``filled / truth - 1`` over ``where``."""
    return float(np.sqrt(np.mean((filled[where] / truth[where] - 1) ** 2)))


@pytest.mark.parametrize("method", ["harmonic", "biharmonic"])
def test_a_region_over_the_limb_in_a_corner_follows_the_limb(method: str) -> None:
    # The region covers the whole limb in the corner: its known surroundings are the disc's
    # inner side and the sky, and only the profile, measured along the rest of the limb,
    # knows how steeply the light falls there.
    scene = smooth_sun()
    yy, xx = np.indices(scene.shape)
    mask = np.hypot(yy - 12, xx - 12) <= 30
    lit = mask & (scene > 0.2 * np.percentile(scene, 99))
    assert lit.any() and (mask & (scene < 0.01 * scene.max())).any()
    along = inpaint(scene, mask, InpaintParams(method=method))
    continued = inpaint(scene, mask, InpaintParams(method=method, limb="none"))
    assert relative_rms(along, scene, lit) < 0.01
    assert np.abs(along[lit] / scene[lit] - 1).max() < 0.05
    assert relative_rms(continued, scene, lit) > 0.1
    np.testing.assert_array_equal(along[~mask], scene[~mask].astype(np.float32))


def test_a_region_over_the_limb_of_a_half_lit_target_follows_its_lit_part() -> None:
    # A half Moon or planet at quadrature: the terminator is half of the lit edge, and half
    # of every ring below the limb is dark.
    scene = smooth_sun(width=192, height=192, disk_radius_frac=0.4)
    yy, xx = np.indices(scene.shape)
    image = np.where(xx < 96, scene.min(), scene)
    mask = np.hypot(yy - 96, xx - 172) <= 12
    lit = mask & (image > 0.2 * np.percentile(image, 99))
    along = inpaint(image, mask)
    continued = inpaint(image, mask, InpaintParams(limb="none"))
    assert relative_rms(along, image, lit) < 0.02
    assert relative_rms(continued, image, lit) > 0.08


def test_only_regions_within_their_diameter_of_the_limb_follow_the_profile() -> None:
    scene = smooth_sun(texture_contrast=0.03)
    yy, xx = np.indices(scene.shape)
    centre = np.hypot(yy - 96, xx - 128) <= 20
    edge = np.hypot(yy - 20, xx - 30) <= 25
    both = inpaint(scene, centre | edge)
    np.testing.assert_array_equal(
        both[centre], inpaint(scene, centre | edge, InpaintParams(limb="none"))[centre]
    )
    lit = edge & (scene > 0.2 * np.percentile(scene, 99))
    assert relative_rms(both, scene, lit) < 0.02


def test_no_profile_without_a_round_limb() -> None:
    image = ramp((64, 80))
    image[:, :20] = 0.0
    mask = np.zeros(image.shape, dtype=bool)
    mask[20:40, 10:40] = True
    np.testing.assert_array_equal(
        inpaint(image, mask), inpaint(image, mask, InpaintParams(limb="none"))
    )


def test_few_known_pixels_fit_a_plane_instead() -> None:
    image = ramp((6, 7))
    mask = np.zeros(image.shape, dtype=bool)
    mask[:5, 1:6] = True
    # 17 known pixels: too few for six coefficients (30), enough for a plane (15), which
    # carries the ramp's slope across the frame's edge.
    out = inpaint(image, mask)
    np.testing.assert_allclose(out, image.astype(np.float32), rtol=2e-6)
    plain = inpaint(image, mask, InpaintParams(trend="none"))
    assert np.abs(plain[mask] - image[mask]).max() > 1.0


def test_a_hot_pixel_beside_the_region_does_not_drag_the_trend() -> None:
    image, mask = dome(), holes()
    hot = image.copy()
    hot[15, 10] *= 10.0
    out = inpaint(hot, mask)
    disc = np.hypot(*np.indices(mask.shape) - np.array([15, 20])[:, None, None]) <= 7
    np.testing.assert_allclose(out[disc], image[disc], rtol=2e-3)


def test_biharmonic_option_is_close_on_a_ramp() -> None:
    image, mask = ramp(), holes()
    out = inpaint(image, mask, InpaintParams(method="biharmonic"))
    # The biharmonic equation also has linear fields as solutions; scikit-image solves it
    # with a least-squares stencil, exact to its solver precision.
    np.testing.assert_allclose(out, image.astype(np.float32), rtol=1e-5)


def limb_scene(shape=(48, 64)) -> tuple[np.ndarray, np.ndarray]:
    """A bright ramp (the target) on the left, dark sky on the right, and a mask across it."""
    yy, xx = np.indices(shape)
    image = np.where(xx < 40, 1000.0 + 4.0 * yy - 3.0 * xx, 10.0)
    mask = np.hypot(yy - 24, xx - 38) <= 6
    return image, mask


@pytest.mark.parametrize("method", ["harmonic", "biharmonic"])
def test_a_mask_across_the_limb_is_continued_from_the_target_only(method: str) -> None:
    image, mask = limb_scene()
    out = inpaint(image, mask, InpaintParams(method=method))
    on_target = mask & (np.indices(image.shape)[1] < 40)
    # The continuation of the target side alone: the sky does not pull the reference down.
    # (The harmonic membrane has zero flux toward the sky, so it bends slightly off the ramp.)
    np.testing.assert_allclose(out[on_target], image[on_target], rtol=0.02)
    mixed = inpaint(image, mask, InpaintParams(method=method, dark_fraction=0.0))
    assert np.min(mixed[on_target] / image[on_target]) < 0.9


def test_a_mask_surrounded_by_sky_uses_the_sky() -> None:
    image = np.full((30, 30), 10.0)
    image[:, :3] = 1000.0
    mask = np.zeros(image.shape, dtype=bool)
    mask[10:15, 12:18] = True
    out = inpaint(image, mask)
    np.testing.assert_allclose(out[mask], 10.0)


def test_empty_mask_returns_a_copy() -> None:
    image = ramp()
    out = inpaint(image, np.zeros(image.shape, dtype=bool))
    np.testing.assert_array_equal(out, image.astype(np.float32))


def test_inpaint_does_not_change_its_input() -> None:
    image, mask = ramp(), holes()
    image[mask] = -1.0
    before_image, before_mask = image.copy(), mask.copy()
    inpaint(image, mask)
    inpaint(image, mask, InpaintParams(method="biharmonic"))
    np.testing.assert_array_equal(image, before_image)
    np.testing.assert_array_equal(mask, before_mask)


def test_inpaint_rejects_bad_input() -> None:
    image, mask = ramp(), holes()
    with pytest.raises(ValueError, match="covers the whole image"):
        inpaint(image, np.ones(image.shape, dtype=bool))
    with pytest.raises(ValueError, match="shape"):
        inpaint(image, mask[:-1])
    with pytest.raises(ValueError, match="2-D"):
        inpaint(image[None], mask[None])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        inpaint(image, mask.astype(np.float32) * 2.0)
    bad = image.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN/inf outside the mask"):
        inpaint(bad, mask)
    with pytest.raises(ValueError, match="method"):
        InpaintParams(method="telea")
    with pytest.raises(ValueError, match="dark_fraction"):
        InpaintParams(dark_fraction=1.0)
    with pytest.raises(ValueError, match="trend must be"):
        InpaintParams(trend="cubic")
    for reach in (0.5, float("nan")):
        with pytest.raises(ValueError, match="trend_reach_px"):
            InpaintParams(trend_reach_px=reach)
    with pytest.raises(ValueError, match="limb must be"):
        InpaintParams(limb="model")
    for fraction in (0.0, 1.0):
        with pytest.raises(ValueError, match="limb_fraction"):
            InpaintParams(limb_fraction=fraction)


def textured(shape=(48, 64), seed=2) -> np.ndarray:
    """A ramp with granulation-like texture of 5 % rms: what a harmonic fill cannot continue."""
    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    return ramp(shape) * (1.0 + 0.05 * texture / texture.std())


def test_guided_inpainting_keeps_the_texture_the_guide_shares() -> None:
    scene, mask = textured(), holes()
    shadowed = np.where(mask, 0.97 * scene, scene)
    # The guide has the scene's texture at another scale (a prediction in other units) and
    # a smooth factor the inpainting must continue from the surroundings.
    xx = np.indices(scene.shape)[1]
    guide = scene * 0.5 * (1.0 + 0.001 * xx)
    out = inpaint_guided(shadowed, mask, guide)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[~mask], shadowed[~mask].astype(np.float32))
    np.testing.assert_allclose(out[mask], scene[mask], rtol=2e-4)
    plain = inpaint(shadowed, mask)
    assert np.abs(plain[mask] / scene[mask] - 1).max() > 0.03


def test_a_guide_in_other_units_known_only_around_the_regions_fills_alike_at_any_scale() -> None:
    # The guide exists only on the regions and a 2 px ring (as ``inpainting_guide`` writes it)
    # and is in other units than the image: the luminance guiding a colour plane of 0.4 times
    # its level. Where there is no guide, the ratio is not measured, so the trend of the
    # ratio is fitted to the ring alone.
    scene, mask = textured(), holes()
    shadowed = np.where(mask, 0.97 * scene, scene)
    near = ndimage.binary_dilation(mask, iterations=2)
    luminance = np.where(near, scene / 0.4, np.nan)
    out = inpaint_guided(shadowed, mask, luminance)
    np.testing.assert_allclose(out[mask], scene[mask], rtol=2e-3)
    np.testing.assert_allclose(inpaint_guided(shadowed, mask, 3.0 * luminance), out, rtol=1e-5)


def test_a_colour_plane_follows_the_luminance_across_a_limb_above_their_pedestal() -> None:
    # A disc's limb crosses the region: sky at the pedestal on the left, the disc on the right.
    # A red plane holds 0.6 of the luminance's light above the same pedestal, so their plain
    # ratio runs from 1 on the sky to 0.6 / (1 + pedestal / signal) on the disc, and a fill of
    # it colours the plane towards the luminance; above the pedestal it is 0.6 everywhere lit.
    pedestal, signal = 1024.0, 30000.0
    rows, cols = np.indices((48, 64))
    disc = signal / (1.0 + np.exp(-(cols - 28.0) / 1.5)) * (1.0 + 0.05 * np.sin(rows / 3.0))
    luminance, red = pedestal + disc, pedestal + 0.6 * disc
    mask = np.hypot(rows - 24.0, cols - 30.0) <= 8
    shadowed = np.where(mask, pedestal + 0.3 * (red - pedestal), red)
    near = ndimage.binary_dilation(mask, iterations=2)
    guide = np.where(near, luminance, np.nan)
    lit = mask & (disc > 0.05 * signal)
    out = inpaint_guided(shadowed, mask, guide, black_level=pedestal)
    np.testing.assert_array_equal(out[~mask], shadowed[~mask].astype(np.float32))
    np.testing.assert_allclose(out[lit], red[lit], rtol=2e-3)
    np.testing.assert_allclose(out[mask & ~lit], red[mask & ~lit], atol=0.03 * signal)
    plain = inpaint_guided(shadowed, mask, guide)
    assert np.abs(plain[lit] / red[lit] - 1).max() > 0.1
    with pytest.raises(ValueError, match="black_level must be finite"):
        inpaint_guided(shadowed, mask, guide, black_level=float("nan"))


def test_regions_without_a_guide_on_them_and_around_them_are_inpainted_as_usual() -> None:
    scene, mask = textured(), holes()
    guide = scene.copy()
    # The disc's left neighbour has no guide: the disc is left to the harmonic fill.
    guide[15, 12] = np.nan
    guided = guided_regions(mask, guide)
    disc = np.hypot(*np.indices(mask.shape) - np.array([15, 20])[:, None, None]) <= 7
    np.testing.assert_array_equal(guided, mask & ~disc)
    out = inpaint_guided(scene, mask, guide)
    np.testing.assert_allclose(out[disc], inpaint(scene, mask)[disc], rtol=1e-6)
    np.testing.assert_allclose(out[mask & ~disc], scene[mask & ~disc], rtol=2e-4)
    nothing = inpaint_guided(scene, mask, np.full(scene.shape, np.nan))
    np.testing.assert_array_equal(nothing, inpaint(scene, mask))
    with pytest.raises(ValueError, match="guide shape"):
        inpaint_guided(scene, mask, guide[:-1])
    before = scene.copy(), guide.copy()
    inpaint_guided(scene, mask, guide)
    np.testing.assert_array_equal(scene, before[0])
    np.testing.assert_array_equal(guide, before[1])


def _sun_with_line_defects(defects: bool):
    """A textured Sun (black level removed) under one 30 px shadow, with a 4 % column and a
    3 % row of lower gain crossing it when ``defects``; the transmission and the mask."""
    dust = (DustSpec(x=200.0, y=150.0, diameter_px=30.0, depth=0.3, kind="disc"),)
    params = SolarVideoParams(
        width=400, height=300, n_frames=1, drift_px=0.0, dust=dust, n_sunspots=0, seed=1
    )
    video = SyntheticSolarVideo(params)
    median = video.frame(0).astype(np.float64) - video.truth.black_level_adu
    if defects:
        median[:, 205] *= 0.96
        median[148, :] *= 0.97
    rows, columns = np.indices(median.shape)
    mask = expand_mask(np.hypot(rows - 150, columns - 200) <= 17)
    return median, video.truth.transmission, mask


def test_line_gains_are_divided_out_of_the_fill_and_multiplied_back() -> None:
    median, transmission, mask = _sun_with_line_defects(defects=True)
    original = median.copy()

    def fill(image):
        return inpaint(image, mask)

    gains = median_line_gains(median, mask)
    filled = fill_across_line_defects(median, mask, fill, gains)

    np.testing.assert_array_equal(median, original)
    assert (gains.defective_columns, gains.defective_rows) == (1, 1)
    assert gains.columns[205] == pytest.approx(0.96, abs=0.005)
    assert gains.rows[148] == pytest.approx(0.97, abs=0.005)
    np.testing.assert_array_equal(filled[mask == 0], median[mask == 0])
    # Under the mask the flat holds the dust alone: the column is in the fill as in the median.
    # The fill's own error under the texture is smooth across columns, so the column's error
    # is read against that of the columns two away on either side.
    inside = np.all(mask[:, [203, 205, 207]] >= 1.0, axis=1)

    def column_error(fill_image):
        error = (median / fill_image)[inside] / transmission[inside]
        return np.mean(error[:, 205] / (0.5 * (error[:, 203] + error[:, 207])))

    assert column_error(filled) == pytest.approx(1.0, abs=0.003)
    assert column_error(fill(median)) == pytest.approx(0.96, abs=0.005)


def test_without_line_defects_the_fill_is_the_plain_one() -> None:
    median, _, mask = _sun_with_line_defects(defects=False)

    def fill(image):
        return inpaint(image, mask)

    assert median_line_gains(median, mask) is None
    np.testing.assert_array_equal(fill_across_line_defects(median, mask, fill, None), fill(median))
    defective, _, _ = _sun_with_line_defects(defects=True)
    gains = median_line_gains(defective, mask)
    with pytest.raises(ValueError, match="do not fit"):
        fill_across_line_defects(median[:, :-1], mask[:, :-1], fill, gains)
