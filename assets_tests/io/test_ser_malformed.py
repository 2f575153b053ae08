"""SER files built byte by byte, independently of the writer: malformed and unusual headers."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from astro_assets.io.ser import SerFormatError, open_ser

HEADER = struct.Struct("<14s7i40s40s40sqq")


def raw_header(
    *,
    file_id: bytes = b"LUCAM-RECORDER",
    lu_id: int = 0,
    color_id: int = 0,
    flag: int = 0,
    width: int = 5,
    height: int = 3,
    depth: int = 8,
    frame_count: int = 2,
    observer: bytes = b"",
    instrument: bytes = b"",
    telescope: bytes = b"",
    date_local: int = 0,
    date_utc: int = 0,
) -> bytes:
    """A 178-byte SER header packed field by field (struct pads short strings with NULs)."""
    return HEADER.pack(
        file_id,
        lu_id,
        color_id,
        flag,
        width,
        height,
        depth,
        frame_count,
        observer,
        instrument,
        telescope,
        date_local,
        date_utc,
    )


def ramp_bytes(n_values: int) -> bytes:
    return (np.arange(n_values) % 251).astype(np.uint8).tobytes()


def write_raw(tmp_path, content: bytes):
    path = tmp_path / "raw.ser"
    path.write_bytes(content)
    return path


def test_header_size_is_178():
    assert HEADER.size == 178


def test_hand_built_file_reads_back_exactly(tmp_path):
    path = write_raw(tmp_path, raw_header() + ramp_bytes(30))
    with open_ser(path) as video:
        assert video.frames.shape == (2, 3, 5)
        assert video.frames.ravel().tolist() == list(range(30))
        assert video.warnings == ()


def test_strings_are_latin1_up_to_the_first_nul_even_without_terminator(tmp_path):
    header = raw_header(
        observer=b"A" * 40,
        instrument=b"Cam\xe9ra\0garbage after NUL",
        telescope=b"Scope   ",
    )
    path = write_raw(tmp_path, header + ramp_bytes(30))
    with open_ser(path) as video:
        assert video.header.observer == "A" * 40
        assert video.header.instrument == "Caméra"
        assert video.header.telescope == "Scope"


@pytest.mark.parametrize("size", [0, 1, 100, 177])
def test_file_shorter_than_the_header_is_refused(tmp_path, size):
    path = write_raw(tmp_path, raw_header()[:size])
    with pytest.raises(SerFormatError, match=rf"raw\.ser: the file has {size} bytes, fewer than"):
        open_ser(path)


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        open_ser(tmp_path / "absent.ser")


@pytest.mark.parametrize("width, height", [(0, 3), (5, 0), (0, 0), (-5, 3), (5, -1)])
def test_non_positive_frame_size_is_refused(tmp_path, width, height):
    path = write_raw(tmp_path, raw_header(width=width, height=height) + ramp_bytes(30))
    with pytest.raises(SerFormatError, match=f"frame size of {width} x {height} pixels"):
        open_ser(path)


@pytest.mark.parametrize("color_id", [1, 7, 12, 20, 99, 102, -1])
def test_unknown_color_id_is_refused(tmp_path, color_id):
    path = write_raw(tmp_path, raw_header(color_id=color_id) + ramp_bytes(30))
    with pytest.raises(SerFormatError, match=f"ColorID {color_id} is not a SER colour layout"):
        open_ser(path)


@pytest.mark.parametrize("depth", [0, 17, 32, -8])
def test_depth_outside_1_to_16_is_refused(tmp_path, depth):
    path = write_raw(tmp_path, raw_header(depth=depth) + ramp_bytes(60))
    with pytest.raises(SerFormatError, match=f"PixelDepthPerPlane is {depth}; SER allows 1-8"):
        open_ser(path)


@pytest.mark.parametrize("depth, itemsize", [(1, 1), (6, 1), (8, 1), (9, 2), (11, 2), (16, 2)])
def test_depth_decides_the_sample_width(tmp_path, depth, itemsize):
    path = write_raw(tmp_path, raw_header(depth=depth, frame_count=1) + ramp_bytes(15 * itemsize))
    with open_ser(path) as video:
        assert video.frames.dtype.itemsize == itemsize
        assert video.frames.shape == (1, 3, 5)


@pytest.mark.parametrize("data_bytes", [0, 1, 14, 29])
def test_no_whole_frame_is_refused(tmp_path, data_bytes):
    path = write_raw(tmp_path, raw_header(depth=16) + ramp_bytes(data_bytes))
    with pytest.raises(SerFormatError, match=f"holds {data_bytes} bytes after the header, less"):
        open_ser(path)


@pytest.mark.parametrize(
    "file_id",
    [
        bytes(np.random.default_rng(3).integers(128, 256, 14, dtype=np.uint8)),
        b"\x89PNG\r\n\x1a\n\0\0\0\rIH",
        b"\0" * 14,
        b" " * 14,
        b"LUCAM\x01RECORDER",
    ],
)
def test_file_id_that_is_not_text_is_refused(tmp_path, file_id):
    path = write_raw(tmp_path, raw_header(file_id=file_id) + ramp_bytes(30))
    with pytest.raises(SerFormatError, match="not a SER FileID such as 'LUCAM-RECORDER'"):
        open_ser(path)


@pytest.mark.parametrize(
    "file_id, text", [(b"INDI-RECORDER", "INDI-RECORDER"), (b"JSOLEX-TRIMMED", "JSOLEX-TRIMMED")]
)
def test_variant_file_ids_from_raw_bytes(tmp_path, file_id, text):
    path = write_raw(tmp_path, raw_header(file_id=file_id) + ramp_bytes(30))
    with open_ser(path) as video:
        assert video.header.file_id == text
        assert len(video.warnings) == 1
        assert text in video.warnings[0]


def test_bytes_after_the_file_id_terminator_are_ignored(tmp_path):
    path = write_raw(tmp_path, raw_header(file_id=b"LUCAM-REC\0\xff\xfe\x01\x02") + ramp_bytes(30))
    with open_ser(path) as video:
        assert video.header.file_id == "LUCAM-REC"


def test_negative_frame_count_is_inferred_from_the_size(tmp_path):
    path = write_raw(tmp_path, raw_header(frame_count=-3) + ramp_bytes(45))
    with open_ser(path) as video:
        assert video.n_frames == 3
        assert any("FrameCount is -3" in w for w in video.warnings)


def test_a_trailer_with_frame_count_zero_is_not_mistaken_for_frames(tmp_path):
    frames = ramp_bytes(2 * 15)
    ticks = np.array([638_500_000_000_000_000, 638_500_000_010_000_000], dtype="<i8")
    path = write_raw(tmp_path, raw_header(frame_count=0) + frames + ticks.tobytes())
    with open_ser(path) as video:
        assert video.n_frames == 2
        assert video.timestamps is not None
        assert video.timestamps[1] - video.timestamps[0] == np.timedelta64(1, "s")


def test_a_junk_tail_with_frame_count_zero_is_ignored(tmp_path):
    path = write_raw(tmp_path, raw_header(frame_count=0) + ramp_bytes(2 * 15) + b"\xff" * 16)
    with open_ser(path) as video:
        assert video.n_frames == 3
        assert video.timestamps is None
        assert video.frames[:2].ravel().tolist() == list(range(30))


def test_inverted_flag_values_other_than_0_and_1_are_only_a_hint(tmp_path):
    values = (np.arange(15, dtype=np.uint16) * 200 + 300).astype(">u2")
    path = write_raw(tmp_path, raw_header(depth=12, frame_count=1, flag=77) + values.tobytes())
    with open_ser(path) as video:
        assert video.header.little_endian_flag == 77
        assert video.byte_order == ">"
        assert video.frames.ravel().tolist() == values.tolist()
