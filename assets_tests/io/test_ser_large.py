"""A sparse SER file larger than 4 GiB: 64-bit offsets, and opening without reading it all."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from astro_assets.io.ser import HEADER_SIZE, open_ser

FOUR_GIB = 4 * 2**30


def known_frame(height: int, width: int, seed: int) -> np.ndarray:
    rows, columns = np.mgrid[0:height, 0:width]
    frame = 1000 + 20 * rows + 7 * columns + seed
    frame[0:5, 0] = 3500
    frame[4, 0:3] = 3500
    return frame.astype(np.uint16)


def test_frames_beyond_4_gib_are_read_at_the_right_offset(tmp_path):
    height, width = 48, 64
    frame_bytes = height * width * 2
    n_frames = (FOUR_GIB + 3 * frame_bytes) // frame_bytes + 2
    beyond = n_frames - 3
    assert HEADER_SIZE + beyond * frame_bytes > FOUR_GIB
    header = struct.pack(
        "<14s7i40s40s40sqq", b"LUCAM-RECORDER", 0, 0, 0, width, height, 16, n_frames,
        b"", b"", b"", 0, 0,
    )  # fmt: skip
    path = tmp_path / "huge.ser"
    with open(path, "wb") as handle:
        handle.write(header)
        handle.truncate(HEADER_SIZE + n_frames * frame_bytes)
        for index, seed in ((beyond, 1), (n_frames - 1, 2)):
            handle.seek(HEADER_SIZE + index * frame_bytes)
            handle.write(known_frame(height, width, seed).astype("<u2").tobytes())
    try:
        allocated = os.stat(path).st_blocks * 512
        if allocated > 64 * 2**20:
            pytest.skip("this file system does not create sparse files")
        with open_ser(path) as video:
            assert video.n_frames == n_frames
            assert video.warnings == ()
            assert video.byte_order == "<"
            assert video.byte_order_source == "detected"
            np.testing.assert_array_equal(video.frames[beyond], known_frame(height, width, 1))
            np.testing.assert_array_equal(video.frames[-1], known_frame(height, width, 2))
            assert video.frames[beyond, 0:5, 0].tolist() == [3500] * 5
            assert not video.frames[beyond - 1].any()
            assert video.frames[0].sum() == 0
    finally:
        path.unlink()
