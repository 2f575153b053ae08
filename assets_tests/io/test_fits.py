"""FITS reading and job folder resolution."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from astropy.io import fits

from astro_assets.io.fits import (
    IMAGE_ROLES,
    JOB_FILES,
    AmbiguousJobFileError,
    FitsFormatError,
    IncompleteFileError,
    IncompleteFitsError,
    MissingJobFileError,
    PartialJobFileError,
    image_shape,
    is_job_complete,
    job_file_paths,
    read_image,
)


def _image(shape=(12, 9), seed=0):
    return np.random.default_rng(seed).normal(100.0, 5.0, shape).astype(np.float32)


def test_primary_hdu_round_trip_with_info(tmp_path):
    data = _image()
    data[1, 2] = np.nan
    data[3, 4] = np.inf
    data[5, 6] = -np.inf
    hdu = fits.PrimaryHDU(data)
    hdu.header["BUNIT"] = "DN"
    hdu.writeto(tmp_path / "a.fits")

    image, info = read_image(tmp_path / "a.fits")

    assert image.dtype == np.float32 and image.dtype.isnative
    np.testing.assert_array_equal(image, data)
    assert info == {
        "hdu_index": 0,
        "hdu_name": "PRIMARY",
        "shape": (12, 9),
        "bunit": "DN",
        "nan_count": 1,
        "inf_count": 2,
    }
    assert image_shape(tmp_path / "a.fits") == (12, 9)


def test_gzip_file_with_image_in_an_extension_after_a_table(tmp_path):
    data = _image((7, 11), seed=1)
    table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=np.ones(3))])
    hdul = fits.HDUList([fits.PrimaryHDU(), table, fits.ImageHDU(data, name="SCI")])
    hdul.writeto(tmp_path / "b.fits.gz")

    image, info = read_image(tmp_path / "b.fits.gz")

    np.testing.assert_array_equal(image, data)
    assert info["hdu_index"] == 2
    assert info["hdu_name"] == "SCI"
    assert info["bunit"] is None
    assert image_shape(tmp_path / "b.fits.gz") == (7, 11)


def _mask(shape):
    mask = np.zeros(shape, np.int16)
    mask[::3, ::2] = 4
    return mask


def test_the_extension_named_sci_is_read_not_a_mask_before_it(tmp_path):
    data = _image((6, 8), seed=2)
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(_mask(data.shape), name="DQ")]
    fits.HDUList([*hdus, fits.ImageHDU(data, name="SCI")]).writeto(tmp_path / "mef.fits")

    image, info = read_image(tmp_path / "mef.fits")

    np.testing.assert_array_equal(image, data)
    assert (info["hdu_index"], info["hdu_name"]) == (2, "SCI")
    assert image_shape(tmp_path / "mef.fits") == (6, 8)


def test_the_primary_image_is_read_before_unnamed_extensions(tmp_path):
    data = _image((6, 8), seed=3)
    fits.HDUList([fits.PrimaryHDU(data), fits.ImageHDU(_mask(data.shape), name="DQ")]).writeto(
        tmp_path / "primary.fits"
    )
    image, info = read_image(tmp_path / "primary.fits")
    np.testing.assert_array_equal(image, data)
    assert (info["hdu_index"], info["hdu_name"]) == (0, "PRIMARY")


def test_several_image_extensions_none_named_sci_are_refused(tmp_path):
    data = _image((6, 8), seed=4)
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(_mask(data.shape), name="DQ"), fits.ImageHDU(data)]
    path = tmp_path / "two.fits"
    fits.HDUList(hdus).writeto(path)
    message = (
        f"{path}: 2 image extensions (HDU 1 DQ (6, 8), HDU 2 (no EXTNAME) (6, 8)) and none is "
        "named SCI, so which one is the image cannot be told; name the image's extension SCI "
        "(EXTNAME) or write the image alone into its own file"
    )
    for read in (read_image, image_shape):
        with pytest.raises(FitsFormatError) as raised:
            read(path)
        assert str(raised.value) == message


def test_bscale_bzero_give_physical_values(tmp_path):
    physical = np.array([[0, 1, 2], [65535, 1000, 7]], dtype=np.float64) * 2.0 + 10.0
    hdu = fits.PrimaryHDU(physical.copy())  # scale() rewrites its data in place
    hdu.scale("int32", bscale=2.0, bzero=10.0)
    hdu.writeto(tmp_path / "scaled.fits")
    assert fits.getheader(tmp_path / "scaled.fits")["BSCALE"] == 2.0

    image, _ = read_image(tmp_path / "scaled.fits")

    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, physical.astype(np.float32))


def test_unsigned_16_bit_data_stored_with_bzero(tmp_path):
    raw = np.array([[0, 40000], [65535, 12]], dtype=np.uint16)
    fits.PrimaryHDU(raw).writeto(tmp_path / "u16.fits")
    assert fits.getheader(tmp_path / "u16.fits")["BZERO"] == 32768

    image, _ = read_image(tmp_path / "u16.fits")

    np.testing.assert_array_equal(image, raw.astype(np.float32))


def test_length_one_axes_are_dropped(tmp_path):
    data = _image((1, 5, 4))
    fits.PrimaryHDU(data).writeto(tmp_path / "plane.fits")
    image, info = read_image(tmp_path / "plane.fits")
    np.testing.assert_array_equal(image, data[0])
    assert info["shape"] == (5, 4)


def test_cube_is_refused(tmp_path):
    fits.PrimaryHDU(np.zeros((3, 5, 4), np.float32)).writeto(tmp_path / "cube.fits")
    with pytest.raises(FitsFormatError, match=r"cube\.fits.*3-D.*extract one plane"):
        read_image(tmp_path / "cube.fits")


def test_one_dimensional_data_is_refused(tmp_path):
    fits.PrimaryHDU(np.zeros(6, np.float32)).writeto(tmp_path / "line.fits")
    with pytest.raises(FitsFormatError, match="not a 2-D image"):
        read_image(tmp_path / "line.fits")


def test_no_image_hdu(tmp_path):
    table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=np.ones(3))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "table.fits")
    with pytest.raises(FitsFormatError, match=r"table\.fits: no HDU holds an image"):
        read_image(tmp_path / "table.fits")


def test_non_fits_file(tmp_path):
    (tmp_path / "junk.fits").write_bytes(b"this is not FITS" * 200)
    with pytest.raises(FitsFormatError, match=r"junk\.fits: not a readable FITS file") as raised:
        read_image(tmp_path / "junk.fits")
    # Not FITS at all is no copy in progress.
    assert not isinstance(raised.value, IncompleteFileError)


@pytest.mark.parametrize("name", ["empty.fits", "empty.fits.gz"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(IncompleteFitsError) as raised:
        image_shape(tmp_path / name)
    assert isinstance(raised.value, FitsFormatError)
    assert str(raised.value) == (
        f"{tmp_path / name} is empty; the file looks incomplete (still being copied?): wait "
        "until the copy has finished, or copy it again"
    )


def test_truncated_file(tmp_path):
    fits.PrimaryHDU(_image((100, 80))).writeto(tmp_path / "full.fits")
    content = (tmp_path / "full.fits").read_bytes()
    (tmp_path / "cut.fits").write_bytes(content[: len(content) - 5000])
    with pytest.raises(
        IncompleteFitsError,
        match=r"cut\.fits: File may have been truncated.*; the file looks incomplete \(still "
        r"being copied\?\)",
    ):
        read_image(tmp_path / "cut.fits")


@pytest.mark.parametrize("cut", [10, 1000, 2879])
def test_a_header_cut_short_is_incomplete(tmp_path, cut):
    fits.PrimaryHDU(_image((100, 80))).writeto(tmp_path / "full.fits")
    (tmp_path / "cut.fits").write_bytes((tmp_path / "full.fits").read_bytes()[:cut])
    with pytest.raises(IncompleteFitsError, match=r"cut\.fits: not a readable FITS file"):
        read_image(tmp_path / "cut.fits")


def test_a_gzip_stream_cut_short_is_incomplete_and_a_corrupt_one_is_not(tmp_path):
    fits.PrimaryHDU(_image((100, 80))).writeto(tmp_path / "full.fits")
    packed = gzip.compress((tmp_path / "full.fits").read_bytes())
    (tmp_path / "cut.fits.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(IncompleteFitsError, match=r"cut\.fits\.gz: not a readable FITS file"):
        read_image(tmp_path / "cut.fits.gz")
    (tmp_path / "junk.fits.gz").write_bytes(packed[:10] + b"\xff" * 2000)
    with pytest.raises(FitsFormatError) as raised:
        read_image(tmp_path / "junk.fits.gz")
    assert not isinstance(raised.value, IncompleteFileError)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such FITS file"):
        read_image(tmp_path / "absent.fits")


def _write_job(folder, gz=()):
    folder.mkdir(parents=True)
    for role in IMAGE_ROLES:
        name = JOB_FILES[role] + (".gz" if role in gz else "")
        fits.PrimaryHDU(_image((4, 4))).writeto(folder / name)
    (folder / JOB_FILES["catalog"]).write_text("id,x\n")


def test_job_file_paths_accepts_plain_and_gzip(tmp_path):
    _write_job(tmp_path / "jid1", gz=("reference",))
    paths = job_file_paths(tmp_path / "jid1")
    assert set(paths) == set(JOB_FILES)
    assert paths["reference"].name == "awaicgen_output_mosaic_image_resampled.fits.gz"
    assert paths["science"].name == "bkg_subbed_science_image.fits"
    assert paths["catalog"].name == "psfcat.csv"
    assert is_job_complete(tmp_path / "jid1")


def test_job_file_paths_names_every_missing_file(tmp_path):
    _write_job(tmp_path / "jid1")
    (tmp_path / "jid1" / JOB_FILES["difference"]).unlink()
    (tmp_path / "jid1" / JOB_FILES["catalog"]).unlink()
    with pytest.raises(MissingJobFileError) as raised:
        job_file_paths(tmp_path / "jid1")
    assert str(raised.value) == (
        f"job folder {tmp_path / 'jid1'} is missing 2 file(s): diffimage_masked.fits (or "
        ".fits.gz or .fits.fz), psfcat.csv; add them (or wait until the copy has finished)"
    )
    assert not is_job_complete(tmp_path / "jid1")


def _write_fpack(path, data):
    # GZIP_2 without quantization is lossless for float data, so the pixels can be compared.
    compressed = fits.CompImageHDU(data, compression_type="GZIP_2", quantize_level=0.0)
    fits.HDUList([fits.PrimaryHDU(), compressed]).writeto(path)


def test_job_file_paths_accepts_fpack_fits_fz_and_its_image_is_read(tmp_path):
    _write_job(tmp_path / "jid1")
    science = tmp_path / "jid1" / JOB_FILES["science"]
    science.unlink()
    data = np.random.default_rng(4).normal(100.0, 5.0, (12, 9)).astype(np.float32)
    _write_fpack(science.with_name(science.name + ".fz"), data)
    paths = job_file_paths(tmp_path / "jid1")
    assert paths["science"].name == "bkg_subbed_science_image.fits.fz"
    assert paths["reference"].name == "awaicgen_output_mosaic_image_resampled.fits"
    assert is_job_complete(tmp_path / "jid1")
    image, info = read_image(paths["science"])
    np.testing.assert_array_equal(image, data)
    assert info["hdu_index"] == 1 and info["shape"] == (12, 9)
    assert image_shape(paths["science"]) == (12, 9)


def test_two_forms_of_the_same_image_are_ambiguous_fits_fz_included(tmp_path):
    _write_job(tmp_path / "jid1")
    score = tmp_path / "jid1" / JOB_FILES["score"]
    _write_fpack(score.with_name(score.name + ".fz"), _image((4, 4)))
    with pytest.raises(AmbiguousJobFileError) as raised:
        job_file_paths(tmp_path / "jid1")
    assert str(raised.value) == (
        f"{tmp_path / 'jid1'}: both scorrimage_masked.fits and scorrimage_masked.fits.fz exist; "
        "keep only one of them so it is clear which image the job uses"
    )
    fits.PrimaryHDU(_image((4, 4))).writeto(score.with_name(score.name + ".gz"))
    with pytest.raises(AmbiguousJobFileError) as raised:
        job_file_paths(tmp_path / "jid1")
    assert str(raised.value) == (
        f"{tmp_path / 'jid1'}: all of scorrimage_masked.fits, scorrimage_masked.fits.gz and "
        "scorrimage_masked.fits.fz exist; keep only one of them so it is clear which image the "
        "job uses"
    )
    assert not is_job_complete(tmp_path / "jid1")


def test_missing_folder(tmp_path):
    with pytest.raises(MissingJobFileError, match="does not exist"):
        job_file_paths(tmp_path / "nope")
    assert not is_job_complete(tmp_path / "nope")


def test_plain_and_gzip_of_the_same_image_is_ambiguous(tmp_path):
    _write_job(tmp_path / "jid1")
    fits.PrimaryHDU(_image((4, 4))).writeto(tmp_path / "jid1" / (JOB_FILES["score"] + ".gz"))
    with pytest.raises(AmbiguousJobFileError, match="keep only one"):
        job_file_paths(tmp_path / "jid1")
    assert not is_job_complete(tmp_path / "jid1")


def test_zero_byte_file_is_not_complete(tmp_path):
    _write_job(tmp_path / "jid1")
    (tmp_path / "jid1" / JOB_FILES["catalog"]).write_bytes(b"")
    assert not is_job_complete(tmp_path / "jid1")


@pytest.mark.parametrize(
    "partial", ["psfcat.csv.crdownload", "scorrimage_masked.fits.gz.PART", "psfcat.csv.download"]
)
def test_a_job_file_under_a_partial_download_name_is_refused_as_still_being_written(
    tmp_path, partial
):
    _write_job(tmp_path / "jid1")
    (tmp_path / "jid1" / partial).write_bytes(b"x")
    with pytest.raises(PartialJobFileError) as raised:
        job_file_paths(tmp_path / "jid1")
    assert str(raised.value) == (
        f"job folder {tmp_path / 'jid1'} holds {partial}: still being written? (a partial "
        "download of a job file); the job is used once the file has its final name: wait "
        "until the download has finished, or remove the partial file"
    )
    assert isinstance(raised.value, IncompleteFileError)
    assert not is_job_complete(tmp_path / "jid1")
    (tmp_path / "jid1" / partial).unlink()
    (tmp_path / "jid1" / "psfcat.txt.part").write_bytes(b"x")
    assert set(job_file_paths(tmp_path / "jid1")) == set(JOB_FILES)


def test_an_editors_backup_beside_a_job_file_does_not_hold_the_job_back(tmp_path):
    # An editor leaves psfcat.csv~ behind for good after a hand edit of a label.
    _write_job(tmp_path / "jid1")
    for leftover in ("psfcat.csv~", "psfcat.csv.tmp"):
        (tmp_path / "jid1" / leftover).write_bytes(b"x")
    assert set(job_file_paths(tmp_path / "jid1")) == set(JOB_FILES)
    assert is_job_complete(tmp_path / "jid1")
