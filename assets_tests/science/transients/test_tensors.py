"""Job tensors: exact channels, layout, atomicity and shape checks."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from astropy.io import fits

from astro_assets.io.fits import read_image
from astro_assets.science.transients.tensors import (
    CHANNELS,
    ImageShapeMismatchError,
    write_job_tensor,
)
from astro_assets.science.transients.zscale import NoFinitePixelsError, zscale_normalize


def _images(shape, seed=0):
    rng = np.random.default_rng(seed)
    images = {}
    for offset, name in enumerate(CHANNELS):
        image = rng.normal(10.0 * offset, 1.0 + offset, shape).astype(np.float32)
        image[offset, offset] = np.nan
        images[name] = image
    return images


def _write_fits(folder, images, gz=False):
    paths = {}
    for name, image in images.items():
        path = folder / f"{name}.fits{'.gz' if gz else ''}"
        fits.PrimaryHDU(image).writeto(path)
        paths[name] = path
    return paths


def test_channels_equal_zscale_of_the_fits_files(tmp_path):
    # 300 rows: more than one row window of the writer.
    paths = _write_fits(tmp_path, _images((300, 24)), gz=True)
    out = tmp_path / "dataset" / "images" / "jid001.npy"

    result = write_job_tensor(out, paths)

    tensor = np.load(out)
    assert tensor.shape == (300, 24, 4) and tensor.dtype == np.float32
    assert result.shape == (300, 24, 4) and result.path == out
    assert result.nbytes == tensor.nbytes
    for index, name in enumerate(CHANNELS):
        expected, zscale = zscale_normalize(read_image(paths[name])[0])
        np.testing.assert_array_equal(tensor[:, :, index], expected)
        assert result.channels[name] == zscale
        assert zscale.nan_count == 1
    assert tensor.min() >= 0.0 and tensor.max() <= 1.0


def test_arrays_are_accepted_and_not_modified(tmp_path):
    images = _images((20, 31), seed=1)
    before = {name: image.copy() for name, image in images.items()}
    write_job_tensor(tmp_path / "t.npy", images)
    tensor = np.load(tmp_path / "t.npy", mmap_mode="r")
    for index, name in enumerate(CHANNELS):
        np.testing.assert_array_equal(tensor[:, :, index], zscale_normalize(images[name])[0])
        np.testing.assert_array_equal(images[name], before[name])


def test_mismatched_shapes_name_every_shape_and_write_nothing(tmp_path):
    images = _images((20, 30))
    images["reference"] = np.zeros((20, 31), np.float32)
    paths = _write_fits(tmp_path, images)
    out = tmp_path / "out" / "t.npy"
    with pytest.raises(ImageShapeMismatchError, match=r"science \(20, 30\), reference \(20, 31\)"):
        write_job_tensor(out, paths)
    assert not out.exists()


def test_missing_or_unknown_channel(tmp_path):
    images = _images((8, 8))
    del images["score"]
    images["weight"] = np.zeros((8, 8))
    with pytest.raises(ValueError, match=r"missing \['score'\], unknown \['weight'\]"):
        write_job_tensor(tmp_path / "t.npy", images)


def test_array_must_be_2d(tmp_path):
    images = _images((8, 8))
    images["difference"] = np.zeros((8, 8, 2))
    with pytest.raises(ValueError, match="'difference' must be a 2-D image"):
        write_job_tensor(tmp_path / "t.npy", images)


def test_failure_midway_leaves_no_partial_file_and_keeps_the_old_one(tmp_path):
    out = tmp_path / "t.npy"
    np.save(out, np.ones((2, 2, 4), np.float32))
    images = _images((16, 16))
    images["score"] = np.full((16, 16), np.nan, np.float32)  # fails on the last channel
    with pytest.raises(NoFinitePixelsError):
        write_job_tensor(out, images)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.npy"]
    np.testing.assert_array_equal(np.load(out), np.ones((2, 2, 4), np.float32))


def test_a_full_disk_is_an_os_error_before_anything_is_mapped_and_keeps_the_old_file(
    tmp_path, monkeypatch
):
    out = tmp_path / "t.npy"
    np.save(out, np.ones((2, 2, 4), np.float32))
    reserved = []

    def full(fd, offset, size):
        reserved.append(size)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    with pytest.raises(OSError, match="No space left"):
        write_job_tensor(out, _images((16, 16)))
    # The whole tensor is reserved, header included, and the temporary file goes.
    assert reserved and reserved[0] >= 16 * 16 * 4 * 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.npy"]
    np.testing.assert_array_equal(np.load(out), np.ones((2, 2, 4), np.float32))


def test_a_file_system_that_cannot_reserve_blocks_still_gets_the_tensor(tmp_path, monkeypatch):
    def unsupported(fd, offset, size):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported, raising=False)
    out = tmp_path / "t.npy"
    write_job_tensor(out, _images((16, 16)))
    assert np.load(out).shape == (16, 16, 4)


def test_an_all_nan_image_is_named_by_its_file_and_channel(tmp_path):
    images = _images((16, 16))
    images["difference"] = np.full((16, 16), np.nan, np.float32)
    paths = _write_fits(tmp_path, images)
    with pytest.raises(NoFinitePixelsError) as raised:
        write_job_tensor(tmp_path / "t.npy", paths)
    assert str(raised.value) == (
        f"{paths['difference']} (difference channel): all 256 pixels of the (16, 16) image are "
        "NaN or infinite; there is nothing to normalize: check the input image or drop this job"
    )
    arrays = _images((16, 16))
    arrays["score"] = np.full((16, 16), np.inf, np.float32)
    with pytest.raises(NoFinitePixelsError, match=r"^array \(score channel\): all 256 pixels"):
        write_job_tensor(tmp_path / "t.npy", arrays)


def test_flat_channels_are_named_with_their_reason_and_the_value_ranges_are_exact(tmp_path):
    # 300 rows: the finite range is gathered over more than one row window.
    images = _images((300, 24))
    images["reference"] = np.zeros((300, 24), np.float32)
    constant = np.full((300, 24), -3.25, np.float64)
    constant[5:9] = np.nan
    constant[299, 0] = np.inf
    images["difference"] = constant
    # One hot pixel in a blank image: ZScale's sample sees only zeros, so its limits coincide.
    spike = np.zeros((300, 24), np.float32)
    spike[290, 20] = 7.0
    images["score"] = spike
    result = write_job_tensor(tmp_path / "t.npy", images)
    assert result.flat_channels() == {
        "reference": "all zero",
        "difference": "constant at -3.25",
        "score": "ZScale limits coincide at 0 (most pixels of its sample share one value) "
        "although the pixels span [0, 7]",
    }
    science = images["science"]
    finite = science[np.isfinite(science)]
    assert result.value_ranges["science"] == (float(finite.min()), float(finite.max()))
    assert result.value_ranges["difference"] == (-3.25, -3.25)
    tensor = np.load(result.path)
    assert set(np.unique(tensor[..., 2])) == {0.0, 0.5}
    assert np.unique(tensor[..., 1]).tolist() == [0.5]


def test_varying_channels_are_not_flat(tmp_path):
    assert write_job_tensor(tmp_path / "t.npy", _images((40, 30))).flat_channels() == {}
