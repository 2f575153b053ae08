"""SER reader and writer: round trips with known pixel values over the SCIENCE.md §1 matrix.

Malformed files built from raw bytes are in ``test_ser_malformed.py``; the cross-check against
the independent ``serfilesreader`` package is in ``test_ser_crosscheck.py``.
"""

from __future__ import annotations

import os
import struct
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from astro_assets.io.ser import (
    DOTNET_TICKS_AT_UNIX_EPOCH,
    HEADER_SIZE,
    SerVideo,
    open_ser,
    ser_fingerprint,
    write_ser,
)


def smooth_frames(n: int, height: int, width: int, top: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients with a little seeded noise spanning [0, top], as uint16 (n, h, w).

    The corners reach exactly 0 and ``top`` in frame 0, so the value range is known.
    """
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0:height, 0:width]
    base = (rows / (height - 1) * 0.6 + columns / (width - 1) * 0.4) * top
    frames = np.empty((n, height, width), dtype=np.uint16)
    for index in range(n):
        noisy = base + rng.normal(0.0, top * 0.002, size=base.shape) + index
        frames[index] = np.clip(np.rint(noisy), 0, top).astype(np.uint16)
    frames[0, 0, 0] = 0
    frames[0, -1, -1] = top
    return frames


def memmap_base(array: np.ndarray) -> np.memmap | None:
    base = array
    while base is not None:
        if isinstance(base, np.memmap):
            return base
        base = base.base
    return None


def header_field(path, offset: int, fmt: str):
    with open(path, "rb") as handle:
        handle.seek(offset)
        return struct.unpack(fmt, handle.read(struct.calcsize(fmt)))[0]


# ---- byte order -------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", [0, 1])
@pytest.mark.parametrize("order", ["<", ">"])
def test_byte_order_is_detected_from_the_pixels_whatever_the_flag(tmp_path, flag, order):
    frames = smooth_frames(4, 24, 32, top=4095)
    path = write_ser(tmp_path / "v.ser", frames, byte_order=order, flag=flag, depth=12)
    assert header_field(path, 22, "<i") == flag
    with open_ser(path) as video:
        assert video.byte_order == order
        assert video.byte_order_source == "detected"
        assert video.byte_order_margin > 10
        assert video.frames.dtype == np.dtype(f"{order}u2")
        np.testing.assert_array_equal(video.frames, frames)
        flag_agrees_with_common_convention = (flag == 0) == (order == "<")
        flag_warnings = [w for w in video.warnings if "LittleEndian flag" in w]
        assert len(flag_warnings) == (0 if flag_agrees_with_common_convention else 1)


def test_file_bytes_follow_the_requested_byte_order(tmp_path):
    frames = np.array([[[0x0102, 0x0304]]], dtype=np.uint16)
    little = write_ser(tmp_path / "l.ser", frames, byte_order="little")
    big = write_ser(tmp_path / "b.ser", frames, byte_order="big")
    assert little.read_bytes()[HEADER_SIZE:] == b"\x02\x01\x04\x03"
    assert big.read_bytes()[HEADER_SIZE:] == b"\x01\x02\x03\x04"
    assert header_field(little, 22, "<i") == 0
    assert header_field(big, 22, "<i") == 1


@pytest.mark.parametrize("spelling, order", [("<", "<"), ("little", "<"), (">", ">"), ("big", ">")])
def test_byte_order_override_is_obeyed_and_recorded(tmp_path, spelling, order):
    frames = smooth_frames(3, 16, 20, top=4095)
    path = write_ser(tmp_path / "v.ser", frames, byte_order="<")
    with open_ser(path, byte_order=spelling) as video:
        assert video.byte_order == order
        assert video.byte_order_source == "override"
        if order == "<":
            np.testing.assert_array_equal(video.frames, frames)
            assert video.byte_order_margin > 10
            assert not any("forced" in w for w in video.warnings)
        else:
            np.testing.assert_array_equal(video.frames, frames.byteswap())
            assert video.byte_order_margin < 0.1
            assert any("forced" in w for w in video.warnings)


def test_flat_frames_fall_back_to_the_header_flag_with_a_warning(tmp_path):
    frames = np.full((2, 6, 8), 0x0102, dtype=np.uint16)
    for flag, order in ((0, "<"), (1, ">")):
        path = write_ser(tmp_path / f"f{flag}.ser", frames, byte_order=order, flag=flag)
        with open_ser(path) as video:
            assert video.byte_order == order
            assert video.byte_order_source == "header-flag"
            assert video.byte_order_margin == 1.0
            np.testing.assert_array_equal(video.frames, frames)
            assert any("do not reveal the byte order" in w for w in video.warnings)


def test_bayer_byte_order_detection_compares_same_colour_neighbours(tmp_path):
    smooth = smooth_frames(3, 24, 32, top=3000).astype(np.int64)
    mosaic = smooth.copy()
    mosaic[:, 0::2, 0::2] += 1000
    mosaic[:, 1::2, 1::2] //= 3
    frames = mosaic.astype(np.uint16)
    path = write_ser(tmp_path / "bayer.ser", frames, color="RGGB", byte_order=">", flag=0)
    with open_ser(path) as video:
        assert video.byte_order == ">"
        assert video.byte_order_source == "detected"
        np.testing.assert_array_equal(video.frames, frames)


def test_byte_order_override_on_8_bit_data_is_ignored_with_a_warning(tmp_path):
    frames = np.arange(2 * 4 * 5, dtype=np.uint8).reshape(2, 4, 5)
    path = write_ser(tmp_path / "v.ser", frames)
    with open_ser(path, byte_order=">") as video:
        assert video.byte_order == "|"
        assert video.byte_order_source == "single-byte"
        assert video.byte_order_margin is None
        np.testing.assert_array_equal(video.frames, frames)
        assert any("single bytes" in w for w in video.warnings)


def test_unknown_byte_order_spelling_is_refused(tmp_path):
    path = write_ser(tmp_path / "v.ser", smooth_frames(1, 4, 4, top=100))
    with pytest.raises(ValueError, match="byte_order='middle' is not understood"):
        open_ser(path, byte_order="middle")
    with pytest.raises(ValueError, match="byte_order='middle' is not understood"):
        write_ser(tmp_path / "w.ser", smooth_frames(1, 4, 4, top=100), byte_order="middle")


# ---- bit depth ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 10, 12, 14, 16])
def test_depths_round_trip_and_the_real_range_is_measured(tmp_path, bits):
    top = 2**bits - 1
    frames = smooth_frames(3, 12, 16, top=top)
    if bits == 8:
        frames = frames.astype(np.uint8)
    path = write_ser(tmp_path / "v.ser", frames, depth=bits)
    with open_ser(path) as video:
        assert video.header.pixel_depth == bits
        assert video.frames.dtype.itemsize == (1 if bits == 8 else 2)
        np.testing.assert_array_equal(video.frames, frames)
        assert video.significant_bits == bits
        assert video.bit_alignment == ("full" if bits in (8, 16) else "lsb")
        assert video.warnings == ()


@pytest.mark.parametrize("stored_depth", [12, 16])
def test_12_bit_data_shifted_up_is_recognised(tmp_path, stored_depth):
    twelve_bit = smooth_frames(3, 12, 16, top=4095)
    shifted = twelve_bit * np.uint16(16)
    path = write_ser(tmp_path / "v.ser", shifted, depth=stored_depth)
    with open_ser(path) as video:
        np.testing.assert_array_equal(video.frames, shifted)
        assert video.significant_bits == 12
        assert video.bit_alignment == "msb"
        assert any("shifted up by 4 bits" in w for w in video.warnings)


@pytest.mark.parametrize("stored_depth", [12, 16])
def test_12_bit_data_lsb_aligned_is_recognised(tmp_path, stored_depth):
    twelve_bit = smooth_frames(3, 12, 16, top=4095)
    path = write_ser(tmp_path / "v.ser", twelve_bit, depth=stored_depth)
    with open_ser(path) as video:
        np.testing.assert_array_equal(video.frames, twelve_bit)
        assert video.significant_bits == 12
        assert video.bit_alignment == "lsb"


def test_dim_12_bit_data_keep_the_header_depth(tmp_path):
    dim = smooth_frames(2, 12, 16, top=1500)
    path = write_ser(tmp_path / "v.ser", dim, depth=12)
    with open_ser(path) as video:
        assert video.significant_bits == 12
        assert video.bit_alignment == "lsb"


def test_values_beyond_the_header_depth_are_reported(tmp_path):
    frames = smooth_frames(2, 12, 16, top=16383)
    path = write_ser(tmp_path / "v.ser", frames, depth=12)
    with open_ser(path) as video:
        assert video.significant_bits == 14
        assert any("reach 14 bits" in w and "PixelDepthPerPlane is 12" in w for w in video.warnings)


def test_all_zero_frames_take_the_depth_from_the_header(tmp_path):
    path = write_ser(tmp_path / "v.ser", np.zeros((2, 4, 6), np.uint16), depth=12)
    with open_ser(path) as video:
        assert video.significant_bits == 12
        # Zeros fit every alignment: none is guessed.
        assert video.bit_alignment == "undetermined"
        # The first warning is the byte order's, which zeros cannot reveal either.
        assert video.warnings[1:] == (
            "the sampled frames are entirely zero; the bit alignment is undetermined and the "
            "significant bits are taken from the header depth (12).",
        )


# ---- colour layouts -----------------------------------------------------------------------------


@pytest.mark.parametrize("color, color_id", [("RGGB", 8), ("GRBG", 9), ("GBRG", 10), ("BGGR", 11)])
def test_bayer_files_stay_mosaics_and_report_their_pattern(tmp_path, color, color_id):
    frames = smooth_frames(2, 8, 10, top=4095)
    path = write_ser(tmp_path / "v.ser", frames, color=color)
    assert header_field(path, 18, "<i") == color_id
    with open_ser(path) as video:
        assert video.color == color
        assert video.bayer_pattern == color
        assert video.frames.shape == (2, 8, 10)
        np.testing.assert_array_equal(video.frames, frames)
        assert not any("mosaic" in w for w in video.warnings)


@pytest.mark.parametrize(
    "color, color_id", [("CYYM", 16), ("YCMY", 17), ("YMCY", 18), ("MYYC", 19)]
)
def test_cmy_mosaics_are_read_with_a_warning(tmp_path, color, color_id):
    frames = smooth_frames(2, 8, 10, top=200).astype(np.uint8)
    path = write_ser(tmp_path / "v.ser", frames, color=color)
    assert header_field(path, 18, "<i") == color_id
    with open_ser(path) as video:
        assert video.color == color
        assert video.bayer_pattern == color
        np.testing.assert_array_equal(video.frames, frames)
        assert any(color in w and "raw mosaic" in w for w in video.warnings)


def rgb_frames(n: int, height: int, width: int) -> np.ndarray:
    """Distinct per-channel levels plus a smooth ramp: R ~1000, G ~2000, B ~3000."""
    ramp = smooth_frames(n, height, width, top=300)
    levels = np.array([1000, 2000, 3000], dtype=np.uint16)
    return ramp[..., None] + levels


@pytest.mark.parametrize("color", ["RGB", "BGR"])
@pytest.mark.parametrize("order", ["<", ">"])
def test_three_plane_files_come_back_in_rgb_order(tmp_path, color, order):
    frames = rgb_frames(3, 6, 7)
    path = write_ser(tmp_path / "v.ser", frames, color=color, byte_order=order)
    stored = np.frombuffer(path.read_bytes()[HEADER_SIZE:], dtype=f"{order}u2")
    first_pixel = stored[:3].tolist()
    expected_first = frames[0, 0, 0].tolist()
    assert first_pixel == (expected_first if color == "RGB" else expected_first[::-1])
    with open_ser(path) as video:
        assert video.color == color
        assert video.bayer_pattern is None
        assert video.is_rgb
        assert video.byte_order == order
        assert video.frames.shape == (3, 6, 7, 3)
        np.testing.assert_array_equal(video.frames, frames)
        red, green, blue = (video.frames[..., channel].mean() for channel in range(3))
        assert 1000 < red < 1400 < green < 2400 < blue < 3400


def test_8_bit_bgr_constants_are_not_interleaved_wrongly(tmp_path):
    frames = np.zeros((2, 3, 5, 3), dtype=np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 11, 22, 33
    path = write_ser(tmp_path / "v.ser", frames, color="BGR")
    assert path.read_bytes()[HEADER_SIZE : HEADER_SIZE + 3] == bytes([33, 22, 11])
    with open_ser(path) as video:
        assert video.frames[..., 0].tolist() == frames[..., 0].tolist()
        assert np.unique(video.frames[..., 1]).tolist() == [22]
        assert np.unique(video.frames[..., 2]).tolist() == [33]


# ---- geometry, orientation, laziness ------------------------------------------------------------


def test_asymmetric_marker_keeps_its_orientation(tmp_path):
    frame = np.full((12, 9), 100, dtype=np.uint16)
    frame[0:6, 0] = 4000
    frame[5, 0:4] = 4000
    frames = np.stack([frame, frame])
    path = write_ser(tmp_path / "v.ser", frames)
    first_row_in_file = np.frombuffer(path.read_bytes()[HEADER_SIZE : HEADER_SIZE + 18], "<u2")
    assert first_row_in_file.tolist() == [4000] + [100] * 8
    with open_ser(path) as video:
        read = video.frames[1]
        assert read.shape == (12, 9)
        assert read[0:6, 0].tolist() == [4000] * 6
        assert read[5, 0:4].tolist() == [4000] * 4
        assert read[0, 1] == 100
        assert read[-1, -1] == 100
        np.testing.assert_array_equal(read, frame)


@pytest.mark.parametrize("height, width", [(5, 7), (6, 1), (1, 9), (3, 3)])
def test_odd_sizes_and_thin_frames(tmp_path, height, width):
    frames = (np.arange(2 * height * width, dtype=np.uint16).reshape(2, height, width) * 37) + 5
    path = write_ser(tmp_path / "v.ser", frames)
    with open_ser(path) as video:
        assert (video.header.width, video.header.height) == (width, height)
        np.testing.assert_array_equal(video.frames, frames)


def test_single_frame(tmp_path):
    frames = smooth_frames(1, 6, 8, top=4095)
    path = write_ser(tmp_path / "v.ser", frames)
    with open_ser(path) as video:
        assert len(video) == video.n_frames == video.header.frame_count == 1
        np.testing.assert_array_equal(video.frames, frames)


def test_frames_are_read_only_and_memory_mapped(tmp_path):
    frames = rgb_frames(2, 4, 5)
    path = write_ser(tmp_path / "v.ser", frames, color="BGR")
    video = open_ser(path)
    assert isinstance(memmap_base(video.frames), np.memmap)
    assert not video.frames.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        video.frames[0, 0, 0, 0] = 1
    band = video.frames[:, 1:3]
    assert isinstance(memmap_base(band), np.memmap)
    assert not band.flags.writeable
    video.close()
    with pytest.raises(ValueError, match="closed"):
        _ = video.frames
    np.testing.assert_array_equal(band, frames[:, 1:3])


def test_open_reads_only_the_header_and_a_few_frames(tmp_path, monkeypatch):
    frames = smooth_frames(40, 8, 10, top=4095)
    path = write_ser(tmp_path / "v.ser", frames)
    copied_frames: list[int] = []
    original = np.array

    def counting_array(obj, *args, **kwargs):
        if memmap_base(obj) is not None and getattr(obj, "ndim", 0) >= 2:
            copied_frames.append(obj.shape[0] if obj.ndim == 3 else 1)
        return original(obj, *args, **kwargs)

    monkeypatch.setattr(np, "array", counting_array)
    with open_ser(path) as video:
        assert video.n_frames == 40
    assert 0 < sum(copied_frames) <= 5


def test_context_manager_and_repr(tmp_path):
    path = write_ser(tmp_path / "v.ser", smooth_frames(2, 4, 4, top=4095))
    with open_ser(path) as video:
        assert isinstance(video, SerVideo)
        assert "2 x 4 x 4 MONO" in repr(video)
    with pytest.raises(ValueError, match="open the file again"):
        _ = video.frames


# ---- header text and dates ----------------------------------------------------------------------


def test_header_fields_round_trip(tmp_path):
    local = datetime(2024, 5, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    utc = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    path = write_ser(
        tmp_path / "v.ser",
        smooth_frames(2, 4, 6, top=4095),
        lu_id=7,
        observer="Søren",
        instrument="ASI174MM",
        telescope="C11 @ f/20",
        date_local=local,
        date_utc=utc.astimezone(timezone(timedelta(hours=-5))),
    )
    with open_ser(path) as video:
        header = video.header
        assert header.file_id == "LUCAM-RECORDER"
        assert header.lu_id == 7
        assert header.color_id == 0
        assert (header.width, header.height, header.pixel_depth) == (6, 4, 16)
        assert header.frame_count == 2
        assert (header.observer, header.instrument, header.telescope) == (
            "Søren",
            "ASI174MM",
            "C11 @ f/20",
        )
        assert header.date_local == datetime(2024, 5, 1, 14, 30, 15, 123456, tzinfo=UTC)
        assert header.date_utc == utc
        assert video.warnings == ()


def test_header_dates_are_stored_as_dotnet_ticks(tmp_path):
    path = write_ser(
        tmp_path / "v.ser",
        smooth_frames(1, 4, 4, top=100),
        date_utc=datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
    )
    assert header_field(path, 170, "<q") == DOTNET_TICKS_AT_UNIX_EPOCH + 10_000_000
    assert header_field(path, 162, "<q") == 0
    with open_ser(path) as video:
        assert video.header.date_local is None


def test_implausible_header_dates_become_none_with_a_warning(tmp_path):
    path = write_ser(
        tmp_path / "v.ser", smooth_frames(1, 4, 4, top=100), date_local=-5, date_utc=12345
    )
    with open_ser(path) as video:
        assert video.header.date_local is None
        assert video.header.date_utc is None
        assert sum("not a plausible date" in w for w in video.warnings) == 2


def test_strings_filling_the_whole_field_have_no_nul(tmp_path):
    observer = "O" * 39 + "x"
    instrument = "I" * 40
    path = write_ser(
        tmp_path / "v.ser",
        smooth_frames(1, 4, 4, top=100),
        observer=observer,
        instrument=instrument,
    )
    raw = path.read_bytes()
    assert raw[42:82] == observer.encode()
    assert raw[82:122] == instrument.encode()
    with open_ser(path) as video:
        assert video.header.observer == observer
        assert video.header.instrument == instrument
        assert video.header.telescope == ""


# ---- frame count and trailer --------------------------------------------------------------------


def frame_times(n: int) -> np.ndarray:
    start = np.datetime64("2024-06-01T10:00:00.000000000")
    return start + np.arange(n) * np.timedelta64(16_666_700, "ns")


def test_trailer_round_trips_to_100_ns(tmp_path):
    times = frame_times(5)
    path = write_ser(tmp_path / "v.ser", smooth_frames(5, 4, 6, top=4095), timestamps=times)
    size = path.stat().st_size
    assert size == HEADER_SIZE + 5 * 4 * 6 * 2 + 5 * 8
    ticks = np.frombuffer(path.read_bytes()[-40:], dtype="<i8")
    assert ticks[0] == (times[0].astype(np.int64) // 100) + DOTNET_TICKS_AT_UNIX_EPOCH
    with open_ser(path) as video:
        assert video.timestamps.dtype == np.dtype("datetime64[ns]")
        np.testing.assert_array_equal(video.timestamps, times)
        assert not video.timestamps.flags.writeable
        assert video.warnings == ()


def test_absent_trailer_gives_no_timestamps_and_no_warning(tmp_path):
    path = write_ser(tmp_path / "v.ser", smooth_frames(3, 4, 6, top=4095))
    with open_ser(path) as video:
        assert video.timestamps is None
        assert video.warnings == ()


def test_truncated_trailer_is_ignored_with_a_warning(tmp_path):
    ticks = (frame_times(4).astype(np.int64) // 100 + DOTNET_TICKS_AT_UNIX_EPOCH).astype("<i8")
    frames = smooth_frames(4, 4, 6, top=4095)
    path = write_ser(tmp_path / "v.ser", frames, trailer_bytes=ticks.tobytes()[:-5])
    with open_ser(path) as video:
        assert video.n_frames == 4
        assert video.timestamps is None
        assert any("truncated trailer" in w for w in video.warnings)
        np.testing.assert_array_equal(video.frames, frames)


def test_junk_after_the_trailer_is_ignored_with_a_warning(tmp_path):
    ticks = (frame_times(4).astype(np.int64) // 100 + DOTNET_TICKS_AT_UNIX_EPOCH).astype("<i8")
    frames = smooth_frames(4, 4, 6, top=4095)
    path = write_ser(tmp_path / "v.ser", frames, trailer_bytes=ticks.tobytes() + b"JUNK")
    with open_ser(path) as video:
        assert video.n_frames == 4
        assert video.timestamps is None
        assert any("not the 32 bytes of a time-stamp trailer" in w for w in video.warnings)
        np.testing.assert_array_equal(video.frames, frames)


def test_non_monotonic_trailer_is_kept_with_a_warning(tmp_path):
    times = frame_times(5)[[0, 1, 3, 2, 4]]
    path = write_ser(tmp_path / "v.ser", smooth_frames(5, 4, 6, top=4095), timestamps=times)
    with open_ser(path) as video:
        np.testing.assert_array_equal(video.timestamps, times)
        assert any("backwards 1 time(s), first between frames 2 and 3" in w for w in video.warnings)


@pytest.mark.parametrize(
    "ticks, reason",
    [
        ([0, 0, 0], "only zeros"),
        ([DOTNET_TICKS_AT_UNIX_EPOCH + 10**16, -1, 3], "2 of 3"),
        ([DOTNET_TICKS_AT_UNIX_EPOCH - 10**9] * 3, "3 of 3"),
    ],
)
def test_implausible_trailer_dates_are_ignored_with_a_warning(tmp_path, ticks, reason):
    raw = np.array(ticks, dtype="<i8").tobytes()
    path = write_ser(tmp_path / "v.ser", smooth_frames(3, 4, 6, top=4095), trailer_bytes=raw)
    with open_ser(path) as video:
        assert video.n_frames == 3
        assert video.timestamps is None
        assert any(reason in w for w in video.warnings)


def test_frame_count_zero_is_inferred_from_the_size(tmp_path):
    frames = smooth_frames(6, 4, 6, top=4095)
    path = write_ser(tmp_path / "v.ser", frames, frame_count=0)
    with open_ser(path) as video:
        assert video.header.frame_count == 0
        assert video.n_frames == 6
        np.testing.assert_array_equal(video.frames, frames)
        assert any("FrameCount is 0" in w and "6 frames inferred" in w for w in video.warnings)


def test_frame_count_zero_with_a_trailer_keeps_the_timestamps(tmp_path):
    times = frame_times(6)
    frames = smooth_frames(6, 4, 6, top=4095)
    path = write_ser(tmp_path / "v.ser", frames, frame_count=0, timestamps=times)
    with open_ser(path) as video:
        assert video.n_frames == 6
        np.testing.assert_array_equal(video.timestamps, times)


def test_frame_count_zero_with_a_trailer_longer_than_a_frame(tmp_path):
    times = frame_times(10)
    frames = (np.arange(10 * 2 * 2, dtype=np.uint8).reshape(10, 2, 2) * 3) + 1
    path = write_ser(tmp_path / "v.ser", frames, frame_count=0, timestamps=times)
    with open_ser(path) as video:
        assert video.n_frames == 10
        np.testing.assert_array_equal(video.frames, frames)
        np.testing.assert_array_equal(video.timestamps, times)


def test_frame_count_too_large_uses_the_whole_frames_present(tmp_path):
    frames = smooth_frames(5, 4, 6, top=4095)
    path = write_ser(tmp_path / "v.ser", frames, frame_count=9)
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - 10)
    with open_ser(path) as video:
        assert video.header.frame_count == 9
        assert video.n_frames == 4
        np.testing.assert_array_equal(video.frames, frames[:4])
        assert any("only 4 whole frames" in w and "38 bytes" in w for w in video.warnings)


def test_frame_count_too_small_gives_way_to_the_frames_the_size_holds(tmp_path):
    frames = smooth_frames(5, 4, 6, top=4095)
    path = write_ser(tmp_path / "v.ser", frames, frame_count=3)
    with open_ser(path) as video:
        assert video.header.frame_count == 3
        assert video.n_frames == 5
        np.testing.assert_array_equal(video.frames, frames)
        assert video.timestamps is None
        assert any(
            "FrameCount is 3" in w and "exactly 5 frames, without a time-stamp trailer" in w
            for w in video.warnings
        )


@pytest.mark.parametrize(("count", "declared"), [(31, 20), (40, 39)])
def test_frame_count_too_small_with_a_trailer_keeps_frames_and_timestamps(
    tmp_path, count, declared
):
    # A capture program that did not update the header's count: every frame and its time
    # stamp are there, and the trailer starts after the last frame, not the declared one.
    frames = smooth_frames(count, 4, 6, top=4095)
    times = frame_times(count)
    path = write_ser(tmp_path / "v.ser", frames, frame_count=declared, timestamps=times)
    with open_ser(path) as video:
        assert video.n_frames == count
        np.testing.assert_array_equal(video.frames, frames)
        np.testing.assert_array_equal(video.timestamps, times)
        assert video.warnings == (
            f"header FrameCount is {declared} but the {count * (48 + 8)} bytes after the "
            f"header hold exactly {count} frames and a trailer of {count} time stamps; using "
            f"{count} frames (the file size wins over the header's count, which the capture "
            "program did not update).",
        )


def test_frame_count_too_small_is_trusted_where_the_size_fits_two_counts(tmp_path):
    # 4 frames of 8 bytes and 4 time stamps are 64 bytes, as are 8 frames without them:
    # the size cannot tell, so the header's count is kept, with the warning it had.
    frames = (np.arange(4 * 2 * 4, dtype=np.uint8).reshape(4, 2, 4) * 7) + 3
    path = write_ser(tmp_path / "v.ser", frames, frame_count=2, timestamps=frame_times(4))
    with open_ser(path) as video:
        assert video.n_frames == 2
        np.testing.assert_array_equal(video.frames, frames[:2])
        assert video.timestamps is None
        assert any("room for 6 more whole frames" in w for w in video.warnings)


def test_16_bit_data_under_an_8_bit_header_is_named_in_a_warning(tmp_path):
    frames = smooth_frames(4, 6, 8, top=40000)
    path = write_ser(tmp_path / "v.ser", frames)
    with open(path, "r+b") as handle:
        handle.seek(34)
        handle.write(struct.pack("<i", 8))
    with open_ser(path) as video:
        assert video.n_frames == 4 and video.frames.dtype == np.uint8
        assert any(
            "PixelDepthPerPlane is 8" in w and "16-bit with a damaged header" in w
            for w in video.warnings
        )
    # An 8-bit video whose header declares fewer frames than it holds is not taken for one.
    eight_bit = write_ser(tmp_path / "w.ser", frames[:3].astype(np.uint8), frame_count=2)
    with open_ser(eight_bit) as video:
        assert not any("damaged header" in w for w in video.warnings)


def test_the_fingerfingerprintfollows_the_content_not_the_file(tmp_path):
    small = write_ser(tmp_path / "small.ser", smooth_frames(2, 4, 6, top=4095))
    large = write_ser(tmp_path / "large.ser", smooth_frames(40, 64, 80, top=4095))
    for path in (small, large):
        fingerprint = ser_fingerprint(path)
        assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0
        copy = tmp_path / f"copy_{path.name}"
        copy.write_bytes(path.read_bytes())
        os.utime(copy, ns=(1_000_000_000, 1_000_000_000))
        assert ser_fingerprint(copy) == fingerprint
        for offset in (0, path.stat().st_size // 2, path.stat().st_size - 1):
            changed = bytearray(path.read_bytes())
            changed[offset] ^= 0xFF
            copy.write_bytes(bytes(changed))
            assert ser_fingerprint(copy) != fingerprint
    assert ser_fingerprint(small) != ser_fingerprint(large)


def test_trailer_is_read_only_right_after_the_declared_frames(tmp_path):
    frames = smooth_frames(3, 4, 6, top=4095)
    times = frame_times(3)
    ticks = (times.astype(np.int64) // 100 + DOTNET_TICKS_AT_UNIX_EPOCH).astype("<i8")
    path = write_ser(
        tmp_path / "v.ser", frames[:2], frame_count=1, trailer_bytes=ticks[:1].tobytes()
    )
    with open_ser(path) as video:
        assert video.n_frames == 1
        assert video.timestamps is None
        assert len(video.warnings) == 1
        assert "room for 1 more whole frames" in video.warnings[0]
    path = write_ser(tmp_path / "w.ser", frames, frame_count=3, trailer_bytes=ticks.tobytes())
    with open_ser(path) as video:
        np.testing.assert_array_equal(video.timestamps, times)


# ---- file ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize("file_id", ["INDI-RECORDER", "JSOLEX-TRIMMED"])
def test_known_variant_file_ids_are_accepted_with_a_warning(tmp_path, file_id):
    frames = smooth_frames(2, 4, 6, top=4095)
    path = write_ser(tmp_path / "v.ser", frames, file_id=file_id)
    with open_ser(path) as video:
        assert video.header.file_id == file_id
        np.testing.assert_array_equal(video.frames, frames)
        assert video.warnings == (
            f"FileID is {file_id!r} instead of 'LUCAM-RECORDER' (written by a known program); "
            "read as a standard SER file.",
        )


def test_unrecognised_text_file_id_is_accepted_with_a_warning(tmp_path):
    path = write_ser(tmp_path / "v.ser", smooth_frames(1, 4, 4, top=100), file_id=b"LUCAM-REC   ")
    with open_ser(path) as video:
        assert video.header.file_id == "LUCAM-REC"
        assert any("unrecognised text 'LUCAM-REC'" in w for w in video.warnings)


# ---- streaming writer and validation ------------------------------------------------------------


def test_streaming_write_from_a_generator(tmp_path):
    frames = smooth_frames(7, 5, 9, top=4095)
    path = write_ser(tmp_path / "v.ser", (frame for frame in frames), byte_order=">")
    assert header_field(path, 38, "<i") == 7
    with open_ser(path) as video:
        np.testing.assert_array_equal(video.frames, frames)


def test_big_endian_input_arrays_are_written_by_value(tmp_path):
    frames = smooth_frames(2, 4, 5, top=4095)
    path = write_ser(tmp_path / "v.ser", frames.astype(">u2"), byte_order="<")
    with open_ser(path) as video:
        np.testing.assert_array_equal(video.frames, frames)


def test_failed_write_leaves_no_file(tmp_path):
    def frames():
        yield np.zeros((4, 4), np.uint16)
        raise RuntimeError("camera disconnected")

    with pytest.raises(RuntimeError, match="camera disconnected"):
        write_ser(tmp_path / "v.ser", frames())
    assert list(tmp_path.iterdir()) == []


def test_writer_does_not_change_its_input(tmp_path):
    frames = rgb_frames(2, 3, 4)
    before = frames.copy()
    write_ser(tmp_path / "v.ser", frames, color="BGR", byte_order=">")
    np.testing.assert_array_equal(frames, before)


@pytest.mark.parametrize(
    "frames, kwargs, message",
    [
        (np.zeros((2, 4, 4), np.float32), {}, "dtype float32; SER stores uint8 or uint16"),
        (np.zeros((2, 4, 4), np.int16), {}, "dtype int16"),
        (np.zeros((4, 4), np.uint16), {}, r"shape \(4, 4\); give \(n, height, width\)"),
        (np.zeros((0, 4, 4), np.uint16), {}, "holds no frame"),
        ([], {}, "yielded no frame"),
        (np.zeros((2, 4, 4), np.uint16), {"color": "RGB"}, r"needs \(height, width, 3\)"),
        (np.zeros((2, 4, 4, 3), np.uint16), {}, r"needs \(height, width\) frames"),
        (np.zeros((2, 0, 4), np.uint16), {}, "must not be empty"),
        (np.zeros((2, 4, 4), np.uint16), {"color": "XYZ"}, "color='XYZ' is not a SER colour"),
        (np.zeros((2, 4, 4), np.uint16), {"depth": 8}, "depth=8 does not fit uint16"),
        (np.zeros((2, 4, 4), np.uint8), {"depth": 12}, "depth=12 does not fit uint8"),
        (np.zeros((2, 4, 4), np.uint8), {"depth": 0}, "depth=0 does not fit uint8"),
        (np.zeros((2, 4, 4), np.uint8), {"file_id": "X" * 15}, "longer than the 14 bytes"),
        (np.zeros((2, 4, 4), np.uint8), {"observer": "x" * 41}, "observer is 41 bytes long"),
        (np.zeros((2, 4, 4), np.uint8), {"telescope": "Ω"}, "outside latin-1"),
        (np.zeros((2, 4, 4), np.uint8), {"frame_count": 2**31}, "frame_count=2147483648"),
        (np.zeros((2, 4, 4), np.uint8), {"flag": 1.5}, "flag=1.5"),
        (np.zeros((2, 4, 4), np.uint8), {"date_utc": "2024"}, "date_utc must be a datetime"),
        (
            np.zeros((2, 4, 4), np.uint8),
            {"timestamps": frame_times(3)},
            "3 timestamps were given for 2 frames",
        ),
        (
            np.zeros((2, 4, 4), np.uint8),
            {"timestamps": np.array([1, 2])},
            "timestamps must be a 1-D numpy datetime64",
        ),
        (
            np.zeros((2, 4, 4), np.uint8),
            {"timestamps": np.array(["2024-01-01", "NaT"], dtype="datetime64[ns]")},
            "contain NaT",
        ),
        (
            np.zeros((2, 4, 4), np.uint8),
            {"timestamps": frame_times(2), "trailer_bytes": b""},
            "not both",
        ),
    ],
)
def test_writer_rejects_bad_input(tmp_path, frames, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_ser(tmp_path / "v.ser", frames, **kwargs)
    assert not (tmp_path / "v.ser").exists()


def test_streamed_frames_must_match_the_first(tmp_path):
    mixed = [np.zeros((4, 4), np.uint16), np.zeros((4, 5), np.uint16)]
    with pytest.raises(ValueError, match=r"frame 1 has shape \(4, 5\).*first frame has \(4, 4\)"):
        write_ser(tmp_path / "v.ser", iter(mixed))
    widths = [np.zeros((4, 4), np.uint16), np.zeros((4, 4), np.uint8)]
    with pytest.raises(ValueError, match="frame 1 has shape"):
        write_ser(tmp_path / "v.ser", iter(widths))
    assert not (tmp_path / "v.ser").exists()
