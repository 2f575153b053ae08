"""Four-channel job tensors: science, reference, difference and score, ZScale-normalized.

A job tensor is one ``.npy`` file of shape (H, W, 4), float32, values in [0, 1], channels in the
order of ``CHANNELS``, each channel normalized independently by
:func:`~astro_assets.science.transients.zscale.zscale_normalize` (non-finite pixels -> 0.0).

The tensor is written channel by channel into a memory-mapped ``.npy`` file: one input image is
read, normalized and written into its channel, then released before the next one is read. The
output is mapped a block of rows at a time, so neither the output nor more than one input image
is resident in memory at once: a 4090 x 4090 job (a 268 MB tensor) needs about one input image
(67 MB) plus ZScale's sample buffers. The file is written under a temporary name and renamed when
complete, so a failed job never leaves a partial tensor behind; its disk blocks are reserved
before it is mapped, so that a full disk is an ``OSError``, not a crash while writing.

A channel whose image is constant (all zero, say) or whose ZScale limits coincide is written as
the step rule of :mod:`~astro_assets.science.transients.zscale` makes it (0.5 everywhere, 0 where
NaN): it carries nothing to learn from, so :meth:`TensorResult.flat_channels` names it with the
reason, for the caller to warn about; that is the only rule for such a channel (the blocking
check reports what it recorded). An image without a finite pixel is refused outright.

:func:`tensor_problems` says what is wrong with a written tensor file (shape, dtype, values);
both the blocking check and ``job_tensors`` (before recording a job of a failed run) use it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astro_assets.io.atomic import atomic_path
from astro_assets.io.fits import image_shape, read_image
from astro_assets.science.transients.zscale import (
    NoFinitePixelsError,
    ZScaleResult,
    normalize_rows_into,
    zscale_limits,
)

__all__ = [
    "CHANNELS",
    "ImageShapeMismatchError",
    "TensorResult",
    "tensor_problems",
    "write_job_tensor",
]

CHANNELS: tuple[str, ...] = ("science", "reference", "difference", "score")
"""Channel order of a job tensor (last axis)."""

_ROWS_PER_WINDOW = 256
_ROWS_PER_CHECKED_BLOCK = 512

ImageSource = str | os.PathLike[str] | np.ndarray


class ImageShapeMismatchError(ValueError):
    """The four images of a job are not on the same pixel grid."""


@dataclass(frozen=True)
class TensorResult:
    """A written job tensor.

    Attributes
    ----------
    path : pathlib.Path
        The ``.npy`` file.
    shape : tuple of int
        (H, W, 4).
    channels : dict
        Channel name -> :class:`ZScaleResult` (limits, non-finite counts, degenerate flag).
    nbytes : int
        Size of the tensor data in bytes (without the ``.npy`` header).
    value_ranges : dict
        Channel name -> (min, max) of the image's finite pixels, in image units.
    """

    path: Path
    shape: tuple[int, int, int]
    channels: dict[str, ZScaleResult]
    nbytes: int
    value_ranges: dict[str, tuple[float, float]]

    def flat_channels(self) -> dict[str, str]:
        """The channels that carry no information, each with the reason.

        Returns
        -------
        dict
            Channel name -> reason, in ``CHANNELS`` order: the image is constant ("all zero",
            or "constant at <value>") over its finite pixels, or its ZScale limits coincide
            although the pixels vary (most of ZScale's sample shares one value). Either way the
            channel is 0.5 wherever the image is finite and 0 elsewhere, or a step between
            0 and 1. Empty when every channel varies.
        """
        flat = {}
        for name, zscale in self.channels.items():
            low, high = self.value_ranges[name]
            if low == high:
                flat[name] = "all zero" if low == 0 else f"constant at {low:.7g}"
            elif zscale.degenerate:
                flat[name] = (
                    f"ZScale limits coincide at {zscale.vmin:.7g} (most pixels of its sample "
                    f"share one value) although the pixels span [{low:.7g}, {high:.7g}]"
                )
        return flat


def _shape_of(source: ImageSource) -> tuple[int, ...]:
    if isinstance(source, np.ndarray):
        return tuple(source.shape)
    return image_shape(source)


def _load(source: ImageSource) -> np.ndarray:
    if isinstance(source, np.ndarray):
        return source
    image, _ = read_image(source)
    return image


def _reserve(path: Path, size: int) -> None:
    """Allocate the disk blocks of ``path``'s first ``size`` bytes before it is mapped.

    The memory-mapped file is sparse: on a full disk, writing through the map would kill the
    process (SIGBUS) instead of raising. Reserved first, a full disk is an ``OSError`` here,
    and the atomic writer removes the temporary file. Where the platform or the file system
    cannot reserve blocks (macOS, some network and FUSE file systems), the file stays sparse,
    as it would be without this step.
    """
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as error:
        if error.errno not in _CANNOT_RESERVE:
            raise
    finally:
        os.close(fd)


_CANNOT_RESERVE = {errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS}
"""``posix_fallocate`` errors that say the file system cannot reserve blocks, not that the disk
is full."""


def write_job_tensor(
    out_path: str | os.PathLike[str],
    images: Mapping[str, ImageSource],
    *,
    n_samples: int = 1000,
    contrast: float = 0.25,
    known_shapes: Mapping[str, tuple[int, int]] | None = None,
) -> TensorResult:
    """Write the (H, W, 4) float32 ZScale tensor of one job, atomically.

    Parameters
    ----------
    out_path : path-like
        Destination ``.npy`` file; parent folders are created; an existing file is replaced
        only once the new one is complete.
    images : mapping
        Exactly the keys of ``CHANNELS``; each value a FITS path (``.fits``, ``.fits.gz`` or
        ``.fits.fz``, read with :func:`astro_assets.io.fits.read_image`) or a 2-D array of any
        real dtype (not modified). All four must have the same shape (H, W).
    n_samples, contrast
        ZScale parameters, see :func:`~astro_assets.science.transients.zscale.zscale_limits`.
    known_shapes : mapping, optional
        Channel name -> shape the caller already read from that image's FITS header, which is
        then not read again (opening a ``.fits.gz`` decompresses the whole file).

    Returns
    -------
    TensorResult
        With the channels that carry no information in :meth:`TensorResult.flat_channels`.

    Raises
    ------
    ValueError
        If ``images`` lacks a channel or has an unknown one, or an array is not 2-D.
    ImageShapeMismatchError
        If the four images differ in shape (checked from FITS headers before anything is
        written); the message lists every shape.
    NoFinitePixelsError
        If a channel has no finite pixel (nothing is written); the message names the file (or
        the channel of an array).
    FitsFormatError
        If a FITS file cannot be read (nothing is written).
    OSError
        If the disk has no room for the tensor (checked before anything is normalized) or a
        file cannot be read; nothing is written and an existing file is left as it was.
    """
    missing = [name for name in CHANNELS if name not in images]
    unknown = sorted(set(images) - set(CHANNELS))
    if missing or unknown:
        raise ValueError(
            f"images must have exactly the channels {list(CHANNELS)}; missing {missing}, "
            f"unknown {unknown}"
        )
    known_shapes = known_shapes or {}
    shapes = {
        name: tuple(known_shapes[name]) if name in known_shapes else _shape_of(images[name])
        for name in CHANNELS
    }
    for name, shape in shapes.items():
        if len(shape) != 2:
            raise ValueError(f"channel {name!r} must be a 2-D image, got shape {shape}")
    if len(set(shapes.values())) != 1:
        listing = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ImageShapeMismatchError(
            f"the four images of a job must share one pixel grid, got {listing}; resample them "
            "onto the science image grid first"
        )
    height, width = shapes["science"]
    tensor_shape = (height, width, len(CHANNELS))
    channels: dict[str, ZScaleResult] = {}
    value_ranges: dict[str, tuple[float, float]] = {}
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        header = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=tensor_shape)
        data_offset = header.offset
        del header
        row_bytes = width * len(CHANNELS) * np.dtype(np.float32).itemsize
        _reserve(tmp, data_offset + height * row_bytes)
        for index, name in enumerate(CHANNELS):
            image = _load(images[name])
            try:
                vmin, vmax = zscale_limits(image, n_samples=n_samples, contrast=contrast)
            except NoFinitePixelsError as err:
                # ZScale sees only pixels: which of the four files it was is known here.
                source = images[name]
                where = "array" if isinstance(source, np.ndarray) else str(source)
                raise NoFinitePixelsError(f"{where} ({name} channel): {err}") from err
            nan_count = inf_count = 0
            low, high = np.inf, -np.inf
            for start in range(0, height, _ROWS_PER_WINDOW):
                rows = min(_ROWS_PER_WINDOW, height - start)
                # Mapping a window of rows at a time keeps the output's resident pages bounded;
                # a whole-tensor map would hold all 4 channels' pages while writing each one.
                window = np.memmap(
                    tmp,
                    dtype=np.float32,
                    mode="r+",
                    offset=data_offset + start * row_bytes,
                    shape=(rows, width, len(CHANNELS)),
                )
                rows_in = image[start : start + rows]
                nans, infs = normalize_rows_into(rows_in, window[:, :, index], vmin, vmax)
                # Per window: a copy of the whole image's finite pixels would double the memory
                # the module docstring promises.
                finite = rows_in[np.isfinite(rows_in)]
                if finite.size:
                    low = min(low, float(finite.min()))
                    high = max(high, float(finite.max()))
                # No msync per window: unmapping keeps the dirty pages in the page cache, and
                # the atomic writer fsyncs the whole file once before renaming it.
                del window
                nan_count += nans
                inf_count += infs
            channels[name] = ZScaleResult(
                vmin=vmin,
                vmax=vmax,
                nan_count=nan_count,
                inf_count=inf_count,
                degenerate=vmax == vmin,
            )
            value_ranges[name] = (low, high)
            del image
    return TensorResult(
        path=out_path,
        shape=tensor_shape,
        channels=channels,
        nbytes=height * row_bytes,
        value_ranges=value_ranges,
    )


def tensor_problems(path: str | os.PathLike[str]) -> list[str]:
    """What is wrong with a job tensor file, read in row blocks through a memory map.

    Parameters
    ----------
    path : path-like
        A ``.npy`` file written by :func:`write_job_tensor`.

    Returns
    -------
    list of str
        Why the file is malformed: its shape is not (H, W, 4), its dtype not float32, or some
        values are NaN or outside [0, 1] (counted); empty when it is sound.
    """
    tensor = np.load(path, mmap_mode="r")
    problems = []
    if tensor.ndim != 3 or tensor.shape[2] != len(CHANNELS):
        problems.append(f"shape {tensor.shape} is not (H, W, {len(CHANNELS)})")
    if tensor.dtype != np.float32:
        problems.append(f"dtype {tensor.dtype} is not float32")
    if problems:
        return problems
    bad = 0
    for start in range(0, tensor.shape[0], _ROWS_PER_CHECKED_BLOCK):
        block = np.asarray(tensor[start : start + _ROWS_PER_CHECKED_BLOCK])
        bad += int(np.count_nonzero(~((block >= 0) & (block <= 1))))
    if bad:
        problems.append(f"{bad} values are NaN or outside [0, 1]")
    return problems
