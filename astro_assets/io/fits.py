"""FITS images and RAPID-style job folders.

A job folder holds one difference-imaging job: four images of the same sky area on the same pixel
grid and the candidate catalog extracted from the difference image::

    <jid>/bkg_subbed_science_image.fits                 science
    <jid>/awaicgen_output_mosaic_image_resampled.fits   reference
    <jid>/diffimage_masked.fits                         difference
    <jid>/scorrimage_masked.fits                        score
    <jid>/psfcat.csv                                    catalog

Each image may also be gzip-compressed (``.fits.gz``) or tile-compressed by fpack
(``.fits.fz``, the image in a compressed extension), as survey archives serve them:
:data:`IMAGE_SUFFIXES`.
"""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    # astropy takes 0.2 s to import, and the code location imports this module in every
    # step process: the functions that use it import it.
    from astropy.io import fits

__all__ = [
    "DOWNLOAD_SUFFIXES",
    "IMAGE_ROLES",
    "IMAGE_SUFFIXES",
    "JOB_FILES",
    "PARTIAL_SUFFIXES",
    "AmbiguousJobFileError",
    "FitsFormatError",
    "IncompleteFileError",
    "IncompleteFitsError",
    "MissingJobFileError",
    "PartialJobFileError",
    "image_shape",
    "is_job_complete",
    "job_file_paths",
    "read_image",
]

JOB_FILES: Mapping[str, str] = MappingProxyType(
    {
        "science": "bkg_subbed_science_image.fits",
        "reference": "awaicgen_output_mosaic_image_resampled.fits",
        "difference": "diffimage_masked.fits",
        "score": "scorrimage_masked.fits",
        "catalog": "psfcat.csv",
    }
)
"""Role -> file name of the five files of a job folder (the data contract)."""

IMAGE_ROLES: tuple[str, ...] = ("science", "reference", "difference", "score")
"""The roles in ``JOB_FILES`` that are FITS images, in tensor channel order."""

IMAGE_SUFFIXES: tuple[str, ...] = ("", ".gz", ".fz")
"""What may follow an image's ``.fits`` name: nothing, gzip (``.fits.gz``) or fpack
(``.fits.fz``); a job holds one of these forms of each image."""

DOWNLOAD_SUFFIXES: tuple[str, ...] = (".part", ".partial", ".crdownload", ".download")
"""Endings (any case) of a download still in progress: browsers' and download tools' partial
files, renamed to the final name when complete."""

PARTIAL_SUFFIXES: tuple[str, ...] = (*DOWNLOAD_SUFFIXES, ".tmp", "~")
"""Endings (any case) of a file still being written under a temporary name: partial
downloads, editors' and copy tools' temporaries. Beside a job file only
:data:`DOWNLOAD_SUFFIXES` hold the job back: an editor leaves ``psfcat.csv~`` behind for good
after a hand edit."""

_SCALING_KEYWORDS = ("BSCALE", "BZERO", "BLANK")
_TRUNCATION_MESSAGE = "File may have been truncated"
_FITS_BLOCK = 2880
_FITS_START = b"SIMPLE  ="
_GZIP_MAGIC = b"\x1f\x8b"

INCOMPLETE_ADVICE = (
    "the file looks incomplete (still being copied?): wait until the copy has finished, or "
    "copy it again"
)
"""What an :class:`IncompleteFileError` says to do."""


class FitsFormatError(ValueError):
    """A file that is not a readable FITS file holding one 2-D image."""


class IncompleteFileError(ValueError):
    """A file that is empty or ends early, most likely while it is still being copied.

    ``cp`` empties its target, then fills it: for a while the file is empty, then cut short.
    Such a file says nothing about the data it will hold, unlike a file found bad; the
    subclasses are also the format error of their kind, so that handlers of that error catch
    them.
    """


class IncompleteFitsError(IncompleteFileError, FitsFormatError):
    """A FITS file that is empty or cut short (a truncated data unit or header, a gzip stream
    without its end)."""


class MissingJobFileError(FileNotFoundError):
    """A job folder that lacks one or more of the contract files."""


class PartialJobFileError(IncompleteFileError):
    """A job folder holding a job file still being written under a temporary name
    (``psfcat.csv.crdownload``, ``bkg_subbed_science_image.fits.part``), beside its final name
    or in its place: a download in progress, whose content says nothing of the job yet."""


class AmbiguousJobFileError(ValueError):
    """A job folder that holds two forms of the same image (``name.fits``, ``name.fits.gz``,
    ``name.fits.fz``)."""


def _extname(hdu: Any) -> str:
    return str(hdu.header.get("EXTNAME", "")).strip()


def _image_hdu_index(hdul: fits.HDUList, path: Path) -> int:
    """Index of the HDU holding the image; raise if there is none or it cannot be told.

    The one named ``SCI`` (the convention of multi-extension pipeline products, whose other
    extensions hold masks, variances or weights), else the primary HDU when it has data, else
    the only IMAGE extension. Several IMAGE extensions and none named ``SCI`` are refused:
    taking the first would silently turn a data-quality mask into a channel.
    """
    from astropy.io import fits

    images = [
        index
        for index, hdu in enumerate(hdul)
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) and hdu.shape
    ]
    if not images:
        raise FitsFormatError(
            f"{path}: no HDU holds an image (found {len(hdul)} HDU(s): "
            f"{', '.join(type(hdu).__name__ for hdu in hdul)}); write the image into the "
            "primary HDU or an IMAGE extension"
        )
    science = [index for index in images if _extname(hdul[index]).upper() == "SCI"]
    if len(science) == 1:
        return science[0]
    if not science and (images[0] == 0 or len(images) == 1):
        return images[0]
    listing = ", ".join(
        f"HDU {index} {_extname(hdul[index]) or '(no EXTNAME)'} {tuple(hdul[index].shape)}"
        for index in images
    )
    if science:
        which, advice = (
            f"{len(science)} are named SCI (one per detector chip)",
            "write the chip you want alone into its own file",
        )
    else:
        which, advice = (
            "none is named SCI",
            "name the image's extension SCI (EXTNAME) or write the image alone into its own file",
        )
    raise FitsFormatError(
        f"{path}: {len(images)} image extensions ({listing}) and {which}, so which one is the "
        f"image cannot be told; {advice}"
    )


def _plane_shape(shape: tuple[int, ...], path: Path, index: int) -> tuple[int, int]:
    """The 2-D shape of an image HDU, dropping length-1 axes; raise for cubes."""
    plane = tuple(n for n in shape if n != 1)
    if len(shape) < 2 or len(plane) > 2:
        raise FitsFormatError(
            f"{path}: HDU {index} holds a {len(shape)}-D array of shape {shape}, not a 2-D "
            "image; extract one plane into its own file"
        )
    if len(plane) < 2:
        raise FitsFormatError(
            f"{path}: HDU {index} has shape {shape}, which is not a 2-D image of at least "
            "2 x 2 pixels"
        )
    return plane[0], plane[1]


def _open(path: Path, *, memmap: bool) -> tuple[fits.HDUList, list[warnings.WarningMessage]]:
    """Open ``path`` with astropy, turning format problems into ``FitsFormatError``.

    Warnings raised while opening are returned instead of emitted, so that a truncation warning
    becomes an error here and the others can be re-emitted unchanged.
    """
    from astropy.io import fits

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such FITS file")
    if path.stat().st_size == 0:
        raise IncompleteFitsError(f"{path} is empty; {INCOMPLETE_ADVICE}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hdul = fits.open(path, memmap=memmap, lazy_load_hdus=False)
        except (OSError, ValueError, TypeError, EOFError, zlib.error) as err:
            if not (isinstance(err, OSError) and err.errno is not None) and _looks_cut(path):
                raise IncompleteFitsError(
                    f"{path}: not a readable FITS file ({err}); {INCOMPLETE_ADVICE}"
                ) from err
            raise FitsFormatError(
                f"{path}: not a readable FITS file ({err}); check that the file is complete "
                "(not still being copied) and really is FITS"
            ) from err
    truncated = [w for w in caught if _TRUNCATION_MESSAGE in str(w.message)]
    if truncated:
        hdul.close()
        raise IncompleteFitsError(f"{path}: {truncated[0].message}; {INCOMPLETE_ADVICE}")
    return hdul, caught


def _looks_cut(path: Path) -> bool:
    """Whether a FITS file that astropy could not open looks cut short rather than corrupt.

    A gzip stream that ends before its end marker, or an uncompressed file that starts as FITS
    but whose length is no whole number of 2880-byte blocks (the standard's unit, so a header
    cut while it is copied): both are what a copy in progress leaves. Read only after a
    failure, so the whole gzip stream is read at most once, and only for a broken file.
    """
    try:
        with path.open("rb") as stream:
            start = stream.read(len(_FITS_START))
        if start.startswith(_GZIP_MAGIC):
            with gzip.open(path, "rb") as stream:
                while stream.read(1 << 20):
                    pass
            return False
        return start == _FITS_START and path.stat().st_size % _FITS_BLOCK != 0
    except EOFError:
        return True
    except (OSError, ValueError, zlib.error):
        # Unreadable, or gzip data that is corrupt rather than cut: not evidence of a copy.
        return False


def _reemit(caught: list[warnings.WarningMessage]) -> None:
    for record in caught:
        warnings.warn_explicit(
            record.message, record.category, record.filename, record.lineno, source=record.source
        )


def image_shape(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Shape (rows, columns) of the image that :func:`read_image` would return, from headers only.

    Raises
    ------
    FitsFormatError
        As :func:`read_image`; :class:`IncompleteFitsError` for an empty or cut file.
    """
    path = Path(path)
    hdul, caught = _open(path, memmap=True)
    with hdul:
        index = _image_hdu_index(hdul, path)
        shape = _plane_shape(tuple(hdul[index].shape), path, index)
    _reemit(caught)
    return shape


def read_image(path: str | os.PathLike[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Read the 2-D image of a FITS file as float32.

    The image is the IMAGE extension named ``SCI`` if there is one, else the primary HDU if it
    has data, else the only IMAGE extension (a primary HDU without data, followed by an IMAGE
    extension, is common); several IMAGE extensions with none named ``SCI`` (a data-quality mask
    beside the image, say) are refused rather than guessed. ``BSCALE``/``BZERO``
    are applied (physical values). Length-1 axes are dropped (a ``(1, H, W)`` array is a 2-D
    image); a true cube is refused. Uncompressed files without scaling keywords are memory-mapped
    while converting, so a 4090 x 4090 image needs one float32 copy in memory.

    Parameters
    ----------
    path : path-like
        ``.fits`` file, gzip-compressed ``.fits.gz`` or fpack tile-compressed ``.fits.fz``
        (its compressed extension is read as an IMAGE extension).

    Returns
    -------
    image : numpy.ndarray
        Shape (H, W), float32, native byte order, FITS row 1 as row 0 (the astropy convention).
        NaN and inf pixels are returned as they are (counted in ``info``).
    info : dict
        ``hdu_index`` (int), ``hdu_name`` (str), ``shape`` ((H, W)), ``bunit`` (str or None),
        ``nan_count`` (int), ``inf_count`` (int).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    FitsFormatError
        If the file is not FITS, holds no image HDU or several that cannot be told apart, or its
        image is not 2-D; :class:`IncompleteFitsError` (a subclass) if it is empty or cut short,
        as while it is still being copied.
    """
    path = Path(path)
    hdul, caught = _open(path, memmap=True)
    with hdul:
        index = _image_hdu_index(hdul, path)
        header = hdul[index].header
        shape = _plane_shape(tuple(hdul[index].shape), path, index)
        scaled = any(key in header for key in _SCALING_KEYWORDS)
        if not scaled:
            image = np.asarray(hdul[index].data, dtype=np.float32).reshape(shape)
    if scaled:
        # astropy refuses to memory-map scaled integer data; read it into memory instead.
        hdul, caught_again = _open(path, memmap=False)
        caught += caught_again
        with hdul:
            image = np.asarray(hdul[index].data, dtype=np.float32).reshape(shape)
    _reemit(caught)
    image = np.ascontiguousarray(image)
    nan_count = int(np.count_nonzero(np.isnan(image)))
    inf_count = int(np.count_nonzero(np.isinf(image)))
    bunit = header.get("BUNIT")
    info = {
        "hdu_index": index,
        "hdu_name": str(header.get("EXTNAME", "PRIMARY" if index == 0 else "")),
        "shape": shape,
        "bunit": None if bunit is None else str(bunit),
        "nan_count": nan_count,
        "inf_count": inf_count,
    }
    return image, info


def accepted_names(name: str) -> tuple[str, ...]:
    """The file names a job file ``name`` may have: for a FITS image each of
    :data:`IMAGE_SUFFIXES` after it, else ``name`` alone."""
    if name.endswith(".fits"):
        return tuple(name + suffix for suffix in IMAGE_SUFFIXES)
    return (name,)


def describe_accepted(name: str) -> str:
    """``name`` with its other accepted forms, as a message names a missing file."""
    others = [form.removeprefix(name.removesuffix(".fits")) for form in accepted_names(name)[1:]]
    return name + (f" (or {' or '.join(others)})" if others else "")


def _find_one(job_dir: Path, name: str) -> Path | None:
    """The one accepted form of ``name`` inside ``job_dir`` (:func:`accepted_names`); None if
    there is none."""
    present = [job_dir / form for form in accepted_names(name) if (job_dir / form).is_file()]
    if len(present) > 1:
        listed = " and ".join([", ".join(path.name for path in present[:-1]), present[-1].name])
        raise AmbiguousJobFileError(
            f"{job_dir}: {'both' if len(present) == 2 else 'all of'} {listed} exist; keep "
            "only one of them so it is clear which image the job uses"
        )
    return present[0] if present else None


_ACCEPTED_NAMES = frozenset(form for name in JOB_FILES.values() for form in accepted_names(name))
"""Every name a job file may have."""


def _partial_job_files(job_dir: Path) -> list[str]:
    """The names in ``job_dir`` that are an accepted name of a job file followed by one of
    :data:`DOWNLOAD_SUFFIXES` (files or folders: Safari downloads into a ``.download`` folder)."""
    partial = []
    for entry in os.listdir(job_dir):
        lowered = entry.lower()
        for suffix in DOWNLOAD_SUFFIXES:
            if lowered.endswith(suffix) and entry[: -len(suffix)] in _ACCEPTED_NAMES:
                partial.append(entry)
                break
    return sorted(partial)


def job_file_paths(job_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Resolve the five contract files of a job folder.

    Parameters
    ----------
    job_dir : path-like
        The job folder (its name is the job id).

    Returns
    -------
    dict
        Role (the keys of ``JOB_FILES``) -> existing file path; images may end in ``.fits``,
        ``.fits.gz`` or ``.fits.fz``.

    Raises
    ------
    MissingJobFileError
        If the folder does not exist or lacks any file; the message names every missing file.
    PartialJobFileError
        If a job file is still being downloaded under a temporary name (its name followed by
        one of :data:`DOWNLOAD_SUFFIXES`), whether or not the final name exists too.
    AmbiguousJobFileError
        If an image exists in two forms (say plain and gzip-compressed).
    """
    job_dir = Path(job_dir)
    if not job_dir.is_dir():
        raise MissingJobFileError(
            f"job folder {job_dir} does not exist or is not a folder; it must hold "
            f"{', '.join(JOB_FILES.values())}"
        )
    partial = _partial_job_files(job_dir)
    if partial:
        raise PartialJobFileError(
            f"job folder {job_dir} holds {', '.join(partial)}: still being written? (a partial "
            "download of a job file); the job is used once the file has its "
            "final name: wait until the download has finished, or remove the partial file"
        )
    paths: dict[str, Path] = {}
    missing: list[str] = []
    for role, name in JOB_FILES.items():
        found = _find_one(job_dir, name)
        if found is None:
            missing.append(describe_accepted(name))
        else:
            paths[role] = found
    if missing:
        raise MissingJobFileError(
            f"job folder {job_dir} is missing {len(missing)} file(s): {', '.join(missing)}; "
            "add them (or wait until the copy has finished)"
        )
    return paths


def is_job_complete(job_dir: str | os.PathLike[str]) -> bool:
    """Whether ``job_dir`` holds all five contract files, none of them empty or ambiguous.

    The rule is :func:`astro_assets.io.discovery.job_folder_state`'s, which the sensors and
    ``ingest`` apply. Whether a file is still growing is for the caller to judge.
    """
    # Imported here: discovery builds on this module.
    from astro_assets.io.discovery import job_folder_state

    return not isinstance(job_folder_state(Path(job_dir)), str)
