import base64
import codecs
import io
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from astro_assets.io.images import (
    overlay_mask,
    read_tiff,
    thumbnail_markdown,
    to_display_uint8,
    write_fits_float32,
    write_png,
    write_tiff_float32,
    write_tiff_uint16_unity,
)


def test_float32_tiff_round_trip_is_exact(tmp_path: Path):
    image = np.random.default_rng(0).normal(1000, 50, (7, 9)).astype(np.float32)
    back = read_tiff(write_tiff_float32(tmp_path / "m.tiff", image))
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, image)


def test_unity_uint16_maps_one_to_65535_and_reports_clipping(tmp_path: Path):
    flat = np.array([[1.0, 0.5, 1.2, 0.0]], dtype=np.float32)
    path, clipped = write_tiff_uint16_unity(tmp_path / "f.tiff", flat)
    codes = read_tiff(path)
    assert codes.dtype == np.uint16
    assert codes.tolist() == [[65535, 32768, 65535, 0]]
    assert clipped == pytest.approx(0.25)


def test_fits_keeps_orientation_values_and_long_keys(tmp_path: Path):
    image = np.zeros((4, 6), np.float32)
    image[0, 0] = 2.5
    path = write_fits_float32(
        tmp_path / "f.fits", image, {"BACKEND": "classical", "DUSTAREA_FRACTION": 0.1}
    )
    with fits.open(path) as hdul:
        np.testing.assert_array_equal(hdul[0].data, image)
        assert hdul[0].header["BACKEND"] == "classical"
        assert hdul[0].header["DUSTAREA_FRACTION"] == pytest.approx(0.1)


def test_display_stretch_ignores_a_single_hot_pixel():
    image = np.tile(np.linspace(100.0, 200.0, 100), (100, 1))
    image[5, 5] = 1e9
    display = to_display_uint8(image)
    # With a max normalisation the whole ramp would collapse to 0; the percentile stretch keeps it.
    assert display[50, 10] < display[50, 50] < display[50, 90]
    assert display[5, 5] == 255


def test_display_stretch_of_constant_and_nan_images():
    assert np.all(to_display_uint8(np.full((3, 3), 7.0)) == 128)
    assert np.all(to_display_uint8(np.full((3, 3), np.nan)) == 0)


def test_thumbnail_is_a_bounded_inline_png():
    markdown = thumbnail_markdown(np.zeros((600, 300), np.uint8), max_size=100, alt="x")
    assert markdown.startswith("![x](data:image/png;base64,")
    png = base64.b64decode(markdown.split(",", 1)[1].rstrip(")"))
    assert Image.open(io.BytesIO(png)).size == (50, 100)


def test_png_and_overlay(tmp_path: Path):
    grey = np.full((4, 4), 100, np.uint8)
    mask = np.zeros((4, 4))
    mask[1, 1] = 1.0
    rgb = overlay_mask(grey, mask, color=(255, 0, 0), alpha=1.0)
    assert rgb.shape == (4, 4, 3)
    assert rgb[1, 1].tolist() == [255, 0, 0]
    assert rgb[0, 0].tolist() == [100, 100, 100]
    path = write_png(tmp_path / "q.png", rgb)
    assert np.array_equal(np.asarray(Image.open(path)), rgb)


def test_fits_reader_returns_what_the_writer_wrote(tmp_path: Path):
    from astro_assets.io.images import read_fits_float32

    image = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    path = write_fits_float32(tmp_path / "f.fits", image, {"BLACKLVL": 12.5})
    data, header = read_fits_float32(path)
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, image)
    assert header["BLACKLVL"] == 12.5


def test_fits_of_a_three_plane_image_holds_three_planes_and_reads_back(tmp_path: Path):
    from astro_assets.io.images import read_fits_float32

    image = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    path = write_fits_float32(tmp_path / "rgb.fits", image)
    with fits.open(path) as hdul:
        header = hdul[0].header
        # Width, height and three colour planes, R first: how Siril and PixInsight store colour.
        assert (header["NAXIS1"], header["NAXIS2"], header["NAXIS3"]) == (4, 2, 3)
        np.testing.assert_array_equal(hdul[0].data[0], image[..., 0])
        np.testing.assert_array_equal(hdul[0].data[2], image[..., 2])
    data, _ = read_fits_float32(path)
    np.testing.assert_array_equal(data, image)
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, 3\)"):
        write_fits_float32(tmp_path / "bad.fits", np.zeros((2, 4, 2)))


def test_fits_text_values_are_escaped_to_printable_ascii_and_decode_back(tmp_path: Path):
    names = {"SRCFILE": "Sonne (Hα).ser", "TABBED": "a\tb", "WINPATH": "C:\\d\\x.ser"}
    path = write_fits_float32(tmp_path / "named.fits", np.ones((2, 3)), {**names, "PLAIN": "sky"})
    from astro_assets.io.images import read_fits_float32

    _, header = read_fits_float32(path)
    assert header["SRCFILE"] == "Sonne (H\\u03b1).ser"
    assert header["TABBED"] == "a\\tb"
    assert header["PLAIN"] == "sky"
    for key, name in names.items():
        assert header[key].isascii() and header[key].isprintable()
        assert codecs.decode(header[key], "unicode_escape") == name
