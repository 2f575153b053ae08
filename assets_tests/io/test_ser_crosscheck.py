"""Cross-check against the independent reader ``serfilesreader`` (dev dependency).

Its conventions, found while writing these tests, and accounted for below:

- It imports OpenCV at module level but uses it only to save PNGs; where OpenCV is not
  installed an empty stand-in module is provided for the import.
- It ignores the LittleEndian flag and reads 16-bit samples in the machine's byte order
  (little-endian here), so on big-endian files it returns the byte-swapped values.
- It decodes header strings as UTF-8 and strips spaces only, so NUL padding stays in them.
- It reads ``width * height`` samples per frame whatever the ColorID, so RGB/BGR frames are
  not comparable; it trusts FrameCount (a count of 0 gives an empty video).
- It returns trailer time stamps as raw unsigned .NET ticks.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import pytest

from astro_assets.io.ser import DOTNET_TICKS_AT_UNIX_EPOCH, open_ser, write_ser


@pytest.fixture
def serfilesreader(monkeypatch):
    if importlib.util.find_spec("cv2") is None:
        monkeypatch.setitem(sys.modules, "cv2", types.ModuleType("cv2"))
    monkeypatch.delitem(sys.modules, "serfilesreader", raising=False)
    return pytest.importorskip("serfilesreader")


def smooth(n: int, height: int, width: int, top: int) -> np.ndarray:
    rows, columns = np.mgrid[0:height, 0:width]
    base = rows * (top * 0.5 / height) + columns * (top * 0.4 / width)
    rng = np.random.default_rng(11)
    frames = base + rng.integers(0, top // 20 + 1, size=(n, height, width))
    return np.clip(frames, 0, top).astype(np.uint16)


def their_frames(module, path) -> tuple[dict, np.ndarray]:
    reader = module.Serfile(str(path))
    frames = np.stack([reader.readFrameAtPos(index) for index in range(reader.getLength())])
    return reader.getHeader(), frames


@pytest.mark.parametrize(
    "dtype, depth, color",
    [
        (np.uint8, 8, "MONO"),
        (np.uint16, 16, "MONO"),
        (np.uint16, 12, "MONO"),
        (np.uint16, 10, "RGGB"),
        (np.uint8, 8, "GBRG"),
    ],
)
def test_pixels_and_header_agree_on_little_endian_files(
    tmp_path, serfilesreader, dtype, depth, color
):
    top = 2**depth - 1
    frames = smooth(4, 9, 13, top).astype(dtype)
    path = write_ser(
        tmp_path / "v.ser",
        frames,
        color=color,
        depth=depth,
        observer="Jane Doe",
        telescope="Newton 200/1000",
    )
    header, theirs = their_frames(serfilesreader, path)
    with open_ser(path) as video:
        np.testing.assert_array_equal(theirs, video.frames)
        assert theirs.dtype.itemsize == video.frames.dtype.itemsize
        assert int(header["ImageWidth"]) == video.header.width
        assert int(header["ImageHeight"]) == video.header.height
        assert int(header["FrameCount"]) == video.n_frames
        assert int(header["ColorID"]) == video.header.color_id
        assert int(header["PixelDepthPerPlane"]) == video.header.pixel_depth
        assert int(header["LittleEndian"]) == video.header.little_endian_flag
        assert header["FileID"] == video.header.file_id
        assert header["Observer"].rstrip("\0") == video.header.observer
        assert header["Telescope"].rstrip("\0") == video.header.telescope


def test_big_endian_files_differ_only_by_its_ignored_byte_order(tmp_path, serfilesreader):
    frames = smooth(3, 8, 11, 4095)
    path = write_ser(tmp_path / "v.ser", frames, byte_order=">", depth=12)
    _, theirs = their_frames(serfilesreader, path)
    with open_ser(path) as video:
        assert video.byte_order == ">"
        np.testing.assert_array_equal(video.frames, frames)
        np.testing.assert_array_equal(theirs, frames.byteswap())


def test_trailer_ticks_agree(tmp_path, serfilesreader):
    times = np.datetime64("2023-08-20T21:05:00.123456700") + np.arange(5) * np.timedelta64(
        33_333_300, "ns"
    )
    path = write_ser(tmp_path / "v.ser", smooth(5, 6, 7, 4095), timestamps=times)
    reader = serfilesreader.Serfile(str(path))
    their_ticks = [int(reader.dateFrameAtPos(index)) for index in range(5)]
    with open_ser(path) as video:
        our_ticks = (video.timestamps.astype(np.int64) // 100 + DOTNET_TICKS_AT_UNIX_EPOCH).tolist()
    assert their_ticks == our_ticks
