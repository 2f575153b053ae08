"""SER bit alignment measured on evidence, and the byte order a caller falls back on.

The bit depth and alignment are measured on every value of the sampled frames, and reported as
undetermined where those values fit both data stored from the lowest bit and data shifted up;
:func:`alignment_mismatch` refuses only on evidence. ``fallback_byte_order`` replaces the header
flag where the pixels do not decide the byte order, and only there.
"""

from __future__ import annotations

import numpy as np
import pytest

from astro_assets.io import ser
from astro_assets.io.ser import (
    UNDETERMINED_ALIGNMENT,
    alignment_mismatch,
    open_ser,
    write_ser,
)

HEIGHT, WIDTH = 480, 640
# open_ser measures the byte order on 8 bands of 32 rows starting at rows 0, 64, ..., 448 of a
# 480-row frame: a disc of radius 12 centred on row 240 (rows 228-252) lies between the bands at
# rows 192-223 and 256-287, so only whole frames show it.
CENTRE_ROW, CENTRE_COLUMN, RADIUS = 240, 320, 12


def planet_on_dark_sky(n_frames: int = 3, seed: int = 0) -> np.ndarray:
    """12-bit values (uint16, not shifted): a sky of 5 distinct values and a bright disc.

    The disc falls from 2927 at its centre to about 1727 at its edge, so it holds many distinct
    values; the sky alone holds 5 (8-12), fewer than the 16 that prove a shift.
    """
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:HEIGHT, 0:WIDTH]
    radius = np.hypot(rows - CENTRE_ROW, columns - CENTRE_COLUMN)
    disc = np.rint(2927 - 100 * radius)
    sky = rng.integers(8, 13, size=(n_frames, HEIGHT, WIDTH))
    return np.where(radius <= RADIUS, disc, sky).astype(np.uint16)


def test_the_disc_lies_between_the_bands_the_byte_order_is_measured_on():
    # Guards the premise of the tests below: the bands alone would show the sky only.
    frames = planet_on_dark_sky(1) * np.uint16(16)
    bands = ser._sample_bands(frames)
    assert max(int(band.max()) for band in bands) == 12 * 16
    assert int(frames.max()) == 2927 * 16


@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_shifted_data_whose_bright_values_lie_between_the_bands_are_msb(tmp_path, byte_order):
    shifted = planet_on_dark_sky() * np.uint16(16)
    path = write_ser(tmp_path / "planet.ser", shifted, depth=12, byte_order=byte_order)
    with open_ser(path) as video:
        assert video.byte_order == byte_order
        np.testing.assert_array_equal(video.frames, shifted)
        assert video.significant_bits == 12
        assert video.bit_alignment == "msb"
        assert video.warnings == (
            "pixel values are 12-bit data stored shifted up by 4 bits (multiples of 16); header "
            "PixelDepthPerPlane is 12.",
        )


def test_lsb_data_whose_bright_values_lie_between_the_bands_keep_their_range(tmp_path):
    twelve_bit = planet_on_dark_sky()
    twelve_bit[:, CENTRE_ROW, CENTRE_COLUMN] = 4095
    path = write_ser(tmp_path / "planet.ser", twelve_bit, depth=12)
    with open_ser(path) as video:
        assert video.significant_bits == 12
        assert video.bit_alignment == "lsb"
        assert video.warnings == ()


def test_the_frames_are_measured_a_few_rows_at_a_time_to_the_same_result(tmp_path, monkeypatch):
    # Three rows per read: the disc is split over several reads, the last rows read last.
    monkeypatch.setattr(ser, "_HISTOGRAM_CHUNK_VALUES", 3 * WIDTH)
    shifted = planet_on_dark_sky() * np.uint16(16)
    shifted[:, -1, -1] = 4095 * 16
    path = write_ser(tmp_path / "planet.ser", shifted, depth=12)
    counts = ser._value_histogram(open_ser(path).frames, 16)
    sampled = shifted[[0, 1, 2]].ravel()
    np.testing.assert_array_equal(counts, np.bincount(sampled, minlength=1 << 16))
    with open_ser(path) as video:
        assert (video.significant_bits, video.bit_alignment) == (12, "msb")


def few_values(low: int, high: int, bright: int) -> np.ndarray:
    """Frames of ``low`` and ``high`` at random (a noisy sky, which decides the byte order) and
    one pixel of ``bright``: three distinct values."""
    rng = np.random.default_rng(5)
    frames = np.where(rng.random((2, 8, 10)) < 0.5, low, high).astype(np.uint16)
    frames[:, 4, 5] = bright
    return frames


def test_values_beyond_the_header_depth_prove_a_shift_however_few(tmp_path):
    # Three distinct values: too few to prove a shift by themselves, but 46832 > 4095 cannot be
    # 12-bit data stored from the lowest bit, and they are all multiples of 16.
    frames = few_values(16 * 16, 17 * 16, 2927 * 16)
    path = write_ser(tmp_path / "v.ser", frames, depth=12)
    with open_ser(path) as video:
        assert video.significant_bits == 12
        assert video.bit_alignment == "msb"
        assert video.warnings == (
            "pixel values reach 46832, beyond the 12 bits of the header PixelDepthPerPlane, and "
            "are all multiples of 16: 12-bit data stored shifted up by 4 bits.",
        )


def test_values_beyond_the_header_depth_but_not_multiples_of_its_shift_are_undetermined(
    tmp_path,
):
    frames = few_values(40, 44, 8196)
    path = write_ser(tmp_path / "v.ser", frames, depth=12)
    with open_ser(path) as video:
        assert video.significant_bits == 14
        assert video.bit_alignment == UNDETERMINED_ALIGNMENT == "undetermined"
        assert video.warnings == (
            "the sampled values are all multiples of 4 but take only 3 distinct nonzero values "
            "(fewer than 16), which fits both data stored from the lowest bit and data shifted "
            "up by 2 bits: the bit alignment is undetermined.",
            "pixel values reach 14 bits although the header PixelDepthPerPlane is 12.",
        )


def dark_of_a_shifted_12_bit_camera(n_frames: int = 8) -> np.ndarray:
    """A dark with low read noise: 12-bit values 100-104 times 16, 5 distinct values."""
    rng = np.random.default_rng(7)
    return (rng.integers(100, 105, size=(n_frames, 24, 32)) * 16).astype(np.uint16)


@pytest.mark.parametrize("depth, bits", [(16, 16), (12, 12)])
def test_few_distinct_multiples_of_a_shift_are_undetermined_not_lsb(tmp_path, depth, bits):
    dark = dark_of_a_shifted_12_bit_camera()
    path = write_ser(tmp_path / "dark.ser", dark, depth=depth)
    with open_ser(path) as video:
        np.testing.assert_array_equal(video.frames, dark)
        assert video.significant_bits == bits
        assert video.bit_alignment == "undetermined"
        assert video.warnings == (
            "the sampled values are all multiples of 16 but take only 5 distinct nonzero values "
            "(fewer than 16), which fits both data stored from the lowest bit and data shifted "
            "up by 4 bits: the bit alignment is undetermined.",
        )


def test_few_distinct_values_with_an_odd_one_are_lsb(tmp_path):
    # An odd value proves that nothing is shifted, however few the values.
    frames = np.full((2, 6, 8), 160, dtype=np.uint16)
    frames[:, 3, 3] = 161
    path = write_ser(tmp_path / "v.ser", frames, depth=12)
    with open_ser(path) as video:
        assert (video.significant_bits, video.bit_alignment, video.warnings) == (12, "lsb", ())


# ---- alignment_mismatch -------------------------------------------------------------------------


@pytest.fixture
def videos(tmp_path):
    """One open video of each alignment, 16-bit, by name."""
    twelve_bit = np.random.default_rng(1).integers(0, 4096, size=(3, 24, 32)).astype(np.uint16)
    full = twelve_bit * np.uint16(16)
    full[:, 0, 0] = 65535
    paths = {
        "msb": write_ser(tmp_path / "msb.ser", twelve_bit * np.uint16(16), depth=12),
        "msb14": write_ser(tmp_path / "msb14.ser", twelve_bit * np.uint16(4), depth=14),
        "lsb": write_ser(tmp_path / "lsb.ser", twelve_bit, depth=12),
        "full": write_ser(tmp_path / "full.ser", full),
        "undetermined": write_ser(tmp_path / "dark.ser", dark_of_a_shifted_12_bit_camera()),
    }
    opened = {name: open_ser(path) for name, path in paths.items()}
    assert {name: video.bit_alignment for name, video in opened.items()} == {
        "msb": "msb",
        "msb14": "msb",
        "lsb": "lsb",
        "full": "full",
        "undetermined": "undetermined",
    }
    return opened


def test_a_shifted_video_and_one_stored_from_the_lowest_bit_mismatch_in_words(videos):
    assert alignment_mismatch(videos["lsb"], videos["msb"]) == (
        "values stored from the lowest bit against values stored shifted up to the top bits "
        "(12-bit values times 16)"
    )
    assert alignment_mismatch(videos["msb14"], videos["full"]) == (
        "values stored shifted up to the top bits (14-bit values times 4) against values "
        "stored over the whole container"
    )


@pytest.mark.parametrize(
    "first, second",
    [
        ("undetermined", "msb"),
        ("msb", "undetermined"),
        ("undetermined", "lsb"),
        ("undetermined", "full"),
        ("msb", "msb14"),
        ("lsb", "full"),
        ("msb", "msb"),
    ],
)
def test_no_mismatch_without_evidence_or_between_alike_scales(videos, first, second):
    assert alignment_mismatch(videos[first], videos[second]) == ""


# ---- fallback byte order ------------------------------------------------------------------------


def noisy_dark(seed: int = 2) -> np.ndarray:
    """A dark with read noise and a few hot pixels: its pixels decide the byte order."""
    rng = np.random.default_rng(seed)
    frames = rng.normal(2000.0, 20.0, size=(4, 24, 32))
    frames[:, 5, 7] += 3000.0
    return np.rint(frames).astype(np.uint16)


def test_pixels_that_decide_win_over_the_fallback_byte_order(tmp_path):
    dark = noisy_dark()
    path = write_ser(tmp_path / "dark.ser", dark, byte_order=">", flag=1)
    with open_ser(path, fallback_byte_order="<") as video:
        assert video.byte_order == ">"
        assert video.byte_order_source == "detected"
        np.testing.assert_array_equal(video.frames, dark)
        [warning] = video.warnings
        assert warning.startswith("the pixels are ")
        assert warning.endswith(
            " times smoother as big-endian than as the fallback byte order given "
            "(little-endian); using big-endian."
        )


def test_a_fallback_that_the_pixels_confirm_adds_no_warning(tmp_path):
    dark = noisy_dark()
    path = write_ser(tmp_path / "dark.ser", dark)
    with open_ser(path, fallback_byte_order="little") as video:
        assert (video.byte_order, video.byte_order_source, video.warnings) == ("<", "detected", ())


@pytest.mark.parametrize("flag, fallback", [(1, "<"), (0, ">")])
def test_undecided_pixels_follow_the_fallback_byte_order_not_the_flag(tmp_path, flag, fallback):
    # Constant frames are as smooth in either byte order; the odd value keeps the bit alignment
    # out of the warnings.
    frames = np.full((2, 6, 8), 0x0103, dtype=np.uint16)
    path = write_ser(tmp_path / "flat.ser", frames, byte_order=fallback, flag=flag)
    with open_ser(path, fallback_byte_order=fallback) as video:
        assert video.byte_order == fallback
        assert video.byte_order_source == "fallback"
        assert video.byte_order_margin == 1.0
        np.testing.assert_array_equal(video.frames, frames)
        words = "little-endian" if fallback == "<" else "big-endian"
        assert video.warnings == (
            "the pixels do not reveal the byte order (smoothness ratio 1, below 2); followed "
            f"the fallback byte order given, {words}, rather than the header flag {flag}.",
        )


def test_an_override_wins_over_the_fallback_byte_order(tmp_path):
    frames = np.full((2, 6, 8), 0x0102, dtype=np.uint16)
    path = write_ser(tmp_path / "flat.ser", frames)
    with open_ser(path, byte_order="<", fallback_byte_order=">") as video:
        assert (video.byte_order, video.byte_order_source) == ("<", "override")


def test_the_fallback_byte_order_is_ignored_for_8_bit_data(tmp_path):
    frames = np.arange(2 * 4 * 5, dtype=np.uint8).reshape(2, 4, 5)
    path = write_ser(tmp_path / "v.ser", frames)
    with open_ser(path, fallback_byte_order=">") as video:
        assert (video.byte_order, video.byte_order_source, video.warnings) == (
            "|",
            "single-byte",
            (),
        )


def test_an_unknown_fallback_byte_order_spelling_is_refused(tmp_path):
    path = write_ser(tmp_path / "v.ser", noisy_dark())
    with pytest.raises(ValueError, match="byte_order='middle' is not understood"):
        open_ser(path, fallback_byte_order="middle")
