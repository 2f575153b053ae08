"""Encoding medians for an image model and mapping its answers back onto the median's grid."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from astro_assets.io.gemini_codec import (
    SUPPORTED_ASPECT_RATIOS,
    AlignmentError,
    AlignmentParams,
    CodecError,
    EncodedImage,
    EncodingParams,
    choose_aspect_ratio,
    decode_answer,
    encode_for_model,
    measure_alignment,
)


def smooth_field(shape: tuple[int, int], seed: int = 0, sigma: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return (2000.0 + 300.0 * texture / texture.std()).astype(np.float32)


def sent_image(encoded: EncodedImage) -> np.ndarray:
    """The request image as float in [0, 1] on the padded grid."""
    with Image.open(io.BytesIO(encoded.png)) as image:
        top = 65535.0 if image.mode.startswith("I") else 255.0
        return np.asarray(image, dtype=np.float64) / top


def as_answer(padded01: np.ndarray, size: tuple[int, int], fmt: str = "PNG", mode: str = "L"):
    """Render the padded image as a model would answer it: resized to ``size`` (W, H)."""
    image = Image.fromarray(padded01.astype(np.float32)).resize(size, Image.Resampling.BICUBIC)
    values = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if mode == "I;16":
        out = Image.fromarray(np.rint(values * 65535).astype(np.uint16))
    else:
        out = Image.fromarray(np.rint(values * 255).astype(np.uint8)).convert(mode)
    buffer = io.BytesIO()
    out.save(buffer, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buffer.getvalue()


def test_16_bit_round_trip_keeps_values_to_one_code_of_the_stretch():
    median = smooth_field((48, 64))
    encoded = encode_for_model(median)
    assert encoded.bit_depth == 16 and encoded.mime_type == "image/png"
    with Image.open(io.BytesIO(encoded.png)) as image:
        assert image.mode == "I;16" and image.format == "PNG"
    lo, hi = encoded.stretch
    decoded = encoded.to_signal(decode_answer(encoded.png, encoded))
    error = np.abs(decoded.astype(np.float64) - np.clip(median, lo, hi))
    assert error.max() <= 0.5 * (hi - lo) / 65535 + 1e-6 * hi


def test_8_bit_option_keeps_values_to_one_code_of_255():
    median = smooth_field((48, 64))
    encoded = encode_for_model(median, EncodingParams(bit_depth=8))
    with Image.open(io.BytesIO(encoded.png)) as image:
        assert image.mode == "L"
    lo, hi = encoded.stretch
    decoded = encoded.to_signal(decode_answer(encoded.png, encoded))
    error = np.abs(decoded.astype(np.float64) - np.clip(median, lo, hi))
    assert error.max() <= 0.5 * (hi - lo) / 255 + 1e-6 * hi
    assert error.max() > 0.5 * (hi - lo) / 65535


def test_stretch_uses_percentiles_not_the_maximum():
    median = smooth_field((60, 80))
    lo_clean, hi_clean = np.percentile(median, [0.1, 99.9])
    hot = median.copy()
    hot[10, 10] = 1e6
    hot[20, 30] = 0.0
    encoded = encode_for_model(hot)
    lo, hi = encoded.stretch
    assert hi < 1.2 * hi_clean and lo > 0.8 * lo_clean
    stretched = sent_image(encoded)
    assert np.percentile(stretched, 99) - np.percentile(stretched, 1) > 0.6
    assert stretched[10, 10] == 1.0 and stretched[20, 30] == 0.0


@pytest.mark.parametrize("name", SUPPORTED_ASPECT_RATIOS)
def test_every_aspect_ratio_is_reached_exactly_and_undone_exactly(name):
    ratio_w, ratio_h = (int(v) for v in name.split(":"))
    shape = (9 * ratio_h - 1, 9 * ratio_w - 2)  # odd sizes just under the ratio
    chosen, padded = choose_aspect_ratio(shape)
    assert chosen == name
    assert padded[0] * ratio_w == padded[1] * ratio_h
    median = smooth_field(shape, sigma=1.0)
    encoded = encode_for_model(median)
    top, bottom, left, right = encoded.padding
    assert encoded.padded_shape == padded
    assert abs(top - bottom) <= 1 and abs(left - right) <= 1
    assert min(encoded.padding) >= 0
    sent = sent_image(encoded)
    assert sent.shape == padded
    expected = np.rint(
        np.clip((median.astype(np.float64) - encoded.stretch[0]) / np.ptp(encoded.stretch), 0, 1)
        * 65535
    )
    np.testing.assert_array_equal(
        sent[top : top + shape[0], left : left + shape[1]] * 65535, expected
    )
    decoded = decode_answer(encoded.png, encoded)
    np.testing.assert_allclose(decoded * 65535, expected, atol=1e-2)


@pytest.mark.parametrize("shape", [(7, 9), (37, 53), (41, 100), (99, 13), (3, 200), (61, 61)])
def test_odd_shapes_choose_the_least_padding(shape):
    _, padded = choose_aspect_ratio(shape)
    assert padded[0] >= shape[0] and padded[1] >= shape[1]
    for name in SUPPORTED_ASPECT_RATIOS:
        ratio_w, ratio_h = (int(v) for v in name.split(":"))
        k = max(-(-shape[1] // ratio_w), -(-shape[0] // ratio_h))
        assert padded[0] * padded[1] <= k * ratio_h * k * ratio_w


@pytest.mark.parametrize("pad_mode", ["reflect", "edge"])
def test_padding_modes_fill_as_documented(pad_mode):
    median = smooth_field((30, 50), sigma=1.0)
    encoded = encode_for_model(median, EncodingParams(pad_mode=pad_mode))
    top, bottom, left, right = encoded.padding
    assert top + bottom > 0 or left + right > 0
    sent = sent_image(encoded)
    inner = sent[top : top + 30, left : left + 50]
    if pad_mode == "edge":
        np.testing.assert_array_equal(sent[0, left : left + 50], inner[0])
    else:
        assert top >= 1
        np.testing.assert_array_equal(sent[top - 1, left : left + 50], inner[1])


@pytest.mark.parametrize(
    ("scale", "fmt", "mode", "tolerance"),
    [
        ((3.0, 3.0), "PNG", "I;16", 0.004),
        ((2.0, 2.0), "PNG", "L", 0.01),
        ((2.5, 2.52), "PNG", "RGB", 0.01),  # slightly off the requested ratio
        ((1.5, 1.5), "PNG", "RGBA", 0.01),
        ((2.0, 2.0), "PNG", "LA", 0.01),
        ((2.0, 2.0), "PNG", "P", 0.01),
        ((2.0, 2.0), "JPEG", "RGB", 0.03),
        ((2.0, 2.0), "WEBP", "RGB", 0.01),
        ((0.75, 0.75), "PNG", "L", 0.02),  # an answer smaller than the request
    ],
)
def test_answers_of_any_size_format_and_mode_map_back_onto_the_median(scale, fmt, mode, tolerance):
    median = smooth_field((37, 53), sigma=4.0)
    encoded = encode_for_model(median)
    padded_h, padded_w = encoded.padded_shape
    size = (round(padded_w * scale[0]), round(padded_h * scale[1]))
    answer = as_answer(sent_image(encoded), size, fmt, mode)
    decoded = decode_answer(answer, encoded, median.shape)
    assert decoded.shape == median.shape and decoded.dtype == np.float32
    assert decoded.min() >= 0.0 and decoded.max() <= 1.0
    truth = sent_image(encoded)[
        encoded.padding[0] : encoded.padding[0] + 37, encoded.padding[2] : encoded.padding[2] + 53
    ]
    interior = (slice(2, -2), slice(2, -2))
    assert np.abs(decoded - truth)[interior].max() < 5 * tolerance
    assert np.median(np.abs(decoded - truth)) < tolerance


def test_a_marker_lands_on_the_same_pixel_after_padding_and_rescaling():
    median = np.full((37, 53), 100.0)
    median[5:8, 40:44] = 1000.0  # asymmetric marker near a corner
    median[30, 3] = 500.0
    encoded = encode_for_model(median, EncodingParams(low_percentile=0, high_percentile=100))
    padded_h, padded_w = encoded.padded_shape
    answer = as_answer(sent_image(encoded), (padded_w * 4, padded_h * 4), "PNG", "I;16")
    decoded = decode_answer(answer, encoded, median.shape, resample="box")
    truth_centroid = ndimage.center_of_mass(median > 900)
    decoded_centroid = ndimage.center_of_mass(np.where(decoded > 0.5, decoded, 0.0))
    np.testing.assert_allclose(decoded_centroid, truth_centroid, atol=0.05)


def test_decode_to_another_target_shape():
    median = smooth_field((40, 60), sigma=5.0)
    encoded = encode_for_model(median)
    decoded = decode_answer(encoded.png, encoded, (20, 30))
    assert decoded.shape == (20, 30)
    coarse = median.reshape(20, 2, 30, 2).mean(axis=(1, 3))
    lo, hi = encoded.stretch
    np.testing.assert_allclose(encoded.to_signal(decoded), coarse, atol=0.02 * (hi - lo))


def test_encoding_does_not_change_its_input():
    median = smooth_field((20, 30))
    before = median.copy()
    encode_for_model(median)
    np.testing.assert_array_equal(median, before)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not a readable image"),
        (b"hello, I cannot draw that", "not a readable image"),
    ],
)
def test_unreadable_answers_raise(data, message):
    encoded = encode_for_model(smooth_field((12, 16)))
    with pytest.raises(CodecError, match=message):
        decode_answer(data, encoded)


def test_decode_rejects_bad_arguments():
    encoded = encode_for_model(smooth_field((12, 16)))
    with pytest.raises(CodecError, match="resample must be one of"):
        decode_answer(encoded.png, encoded, resample="magic")
    with pytest.raises(CodecError, match="target_shape must be positive"):
        decode_answer(encoded.png, encoded, (0, 5))


@pytest.mark.parametrize(
    ("median", "message"),
    [
        (np.ones((4, 5, 3)), "2-D"),
        (np.ones((1, 5)), "at least 2x2"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]), "non-finite"),
        (np.full((6, 8), 3.0), "constant"),
        (np.array([["a", "b"], ["c", "d"]]), "real-valued"),
    ],
)
def test_encode_rejects_bad_medians(median, message):
    with pytest.raises(CodecError, match=message):
        encode_for_model(median)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bit_depth": 12}, "bit_depth must be 8 or 16"),
        ({"low_percentile": 50, "high_percentile": 40}, "percentiles"),
        ({"pad_mode": "wrap"}, "pad_mode"),
    ],
)
def test_encoding_params_validate(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EncodingParams(**kwargs)


def test_describe_is_plain_data():
    encoded = encode_for_model(smooth_field((30, 50)))
    described = encoded.describe()
    assert described["aspect_ratio"] == encoded.aspect_ratio
    assert described["padded_shape"] == list(encoded.padded_shape)
    assert len(encoded.sha256) == 64


@pytest.mark.parametrize("shift", [(0.0, 0.0), (0.3, -0.2), (-0.45, 0.1)])
def test_alignment_measures_subpixel_shifts(shift):
    reference = smooth_field((72, 96), sigma=2.0).astype(np.float64)
    moved = ndimage.shift(reference, shift, order=3, mode="nearest")
    result = measure_alignment(moved, reference, np.ones(reference.shape, dtype=bool))
    assert result.measured and result.warning is None
    np.testing.assert_allclose((result.dy, result.dx), shift, atol=0.03)


def test_alignment_ignores_what_differs_inside_the_mask():
    reference = smooth_field((72, 96), sigma=2.0).astype(np.float64)
    dusty = reference.copy()
    yy, xx = np.mgrid[:72, :96]
    dust = (yy - 30) ** 2 + (xx - 40) ** 2 <= 64
    dusty[dust] *= 0.7
    moved = ndimage.shift(reference, (0.0, 0.6), order=3, mode="nearest")
    clean = ndimage.distance_transform_edt(~dust) > 3
    result = measure_alignment(moved, dusty, clean)
    assert result.dx == pytest.approx(0.6, abs=0.03)
    assert result.warning is not None and "0.60 px" in result.warning


def test_alignment_beyond_the_limit_fails_with_a_clear_message():
    reference = smooth_field((72, 96), sigma=2.0).astype(np.float64)
    moved = ndimage.shift(reference, (2.0, 1.0), order=3, mode="nearest")
    with pytest.raises(AlignmentError, match=r"shifted by \(dy, dx\) = \(\+2\.0\d, \+1\.0\d\)"):
        measure_alignment(moved, reference, np.ones(reference.shape, dtype=bool))
    relaxed = measure_alignment(
        moved,
        reference,
        np.ones(reference.shape, dtype=bool),
        AlignmentParams(warn_px=2.5, fail_px=3.0),
    )
    assert relaxed.warning is None and relaxed.shift_px == pytest.approx(5**0.5, abs=0.05)


def test_alignment_not_measured_without_clean_area():
    reference = smooth_field((40, 40)).astype(np.float64)
    clean = np.zeros(reference.shape, dtype=bool)
    clean[:2, :2] = True
    result = measure_alignment(reference, reference, clean)
    assert not result.measured and "not measured" in result.warning
    assert result.describe()["dy_px"] is None


def test_alignment_rejects_bad_inputs():
    reference = smooth_field((20, 20)).astype(np.float64)
    with pytest.raises(CodecError, match="same shape"):
        measure_alignment(reference[:10], reference, np.ones((20, 20), dtype=bool))
    with pytest.raises(CodecError, match="bool"):
        measure_alignment(reference, reference, np.ones((20, 20)))
    with pytest.raises(ValueError, match="warn_px <= fail_px"):
        AlignmentParams(warn_px=2.0, fail_px=1.0)
