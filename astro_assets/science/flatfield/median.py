"""Exact per-pixel temporal median of a video, streamed in bands within a memory budget.

The median of a video keeps what is fixed on the sensor (dust shadows, vignetting, pixel
response) and averages away what moves. A video is often larger than memory, so the frames
are never loaded together: the image plane is cut into bands of rows (or, when one row of
all frames is too large for the budget, into pieces of a row), and a band holds every
selected frame for its pixels only. Consecutive bands form a stage; each thread reads a
whole stage, then computes its bands while they are still in the caches, so one thread
reads while another computes. numpy releases the GIL in the reads, copies and sorts that
make up the work, so the threads run on separate cores.

Why the work is done this way (AMD EPYC with AVX-512, 440 frames of 1280 x 960 uint16;
nanoseconds of one core per input value):

- Selection along the frame axis needs each pixel's values contiguous, while a video stores
  each frame contiguous. ``np.partition(..., axis=0)`` on the frame-major block costs
  6-15 ns/value and a plain transposing copy 2.4-3.2 ns/value. Transposing in two steps is
  far cheaper: first as 32-byte blocks of neighbouring pixels (16 uint16 values move as one
  element: 0.15-0.4 ns/value), then each block's small (frames x 16) tile (0.3 ns/value).
- numpy sorts 16-bit and 32-bit integers with vectorised (AVX-512/AVX2) kernels: a full sort
  of each pixel's 440 uint16 values costs 0.5 ns/value, as fast as ``np.partition`` with one
  kth and many times faster than ``np.partition`` with the two kths an even count needs
  (multi-kth partition falls back to scalar introselect, 8-12 ns/value). A full sort also
  puts NaN last, which makes NaN detection free. Sorting float64 instead of the native
  integers would cost 7-10 ns/value, and uint8 sorts slowly (24 ns/value), so data of at
  most 16 bits is sorted as 16-bit integers and only the selected values are converted.
- Exactness: converting integers or float32 to float64 preserves order (it is monotone), so
  the order statistics of the native values, converted afterwards, equal those of the
  float64 values. The two middle values are averaged in float64 exactly as ``np.median``
  does, then cast to float32.
- A memory-mapped input (such as a SER file opened lazily) is read from its file with
  positioned reads into buffers the budget accounts for. Reading through the map is a
  little cheaper (0.10 instead of 0.18 ns/value) but leaves every page touched mapped into
  the process, so its resident set would grow with the video (recent Linux kernels map
  whole page-cache folios of up to a few MiB per touch, far beyond the rows asked for).
  The data stay in the operating system's page cache and the file is never modified.

In all, about 1.0-1.1 CPU-seconds per GB of uint16 video (read 0.18, transposes 0.4-0.5,
sort 0.28, the rest bookkeeping), several times what ``cat`` needs to read the same file
from the page cache (about 0.1 s per GB): the transposes and the sort alone, spread over two
cores, take longer than twice the ``cat`` time. Going further needs compiled code that
fuses the read, an in-register transpose and a vectorised selection per cache-sized tile
(e.g. a small numba or C++ kernel using Highway's ``VQSelect`` or x86-simd-sort), not more
numpy.
"""

from __future__ import annotations

import math
import mmap
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = ["TemporalMedianParams", "temporal_median"]

_BLOCK_BYTES = 32
"""Bytes of neighbouring pixels moved as one element in the first transposing step."""

_BAND_TARGET_BYTES = 4 * 2**20
"""Upper bound on each of a band's working buffers: a band this small stays in the caches
between the transposing copies and the sort."""

_READ_TARGET_BYTES = 64 * 2**10
"""Bytes read per frame at a time (a stage) when the budget allows: each read has a fixed
cost of a few microseconds, so much smaller reads would dominate."""

_MIN_STAGES_PER_WORKER = 4
"""Stages are made small enough that every thread gets several, which keeps all cores busy
until the end."""


def _is_integer(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


@dataclass(frozen=True)
class TemporalMedianParams:
    """Parameters of :func:`temporal_median`.

    Attributes
    ----------
    memory_budget_mb : float
        Upper bound, in MiB (2**20 bytes), on the extra memory used while computing:
        working buffers of all threads, the pages of the input mapped at a time, and the
        float32 result. Must be > 0.
    frame_step : int
        Use every ``frame_step``-th frame (``frames[::frame_step]``). Must be >= 1.
    workers : int or None
        Number of threads; ``None`` means ``os.cpu_count()``. Must be >= 1. Fewer are used
        when the budget cannot hold one band per thread.
    """

    memory_budget_mb: float = 256.0
    frame_step: int = 1
    workers: int | None = None

    def __post_init__(self) -> None:
        budget = self.memory_budget_mb
        if isinstance(budget, bool) or not isinstance(budget, int | float | np.number):
            raise ValueError(
                f"memory_budget_mb must be a number of MiB, got {budget!r}; pass e.g. 256."
            )
        if not math.isfinite(budget) or budget <= 0:
            raise ValueError(
                f"memory_budget_mb must be a finite number > 0, got {budget!r}; pass e.g. 256."
            )
        if not _is_integer(self.frame_step) or self.frame_step < 1:
            raise ValueError(
                f"frame_step must be an integer >= 1, got {self.frame_step!r}; "
                "use 1 to take every frame."
            )
        if self.workers is not None and (not _is_integer(self.workers) or self.workers < 1):
            raise ValueError(
                f"workers must be an integer >= 1 or None, got {self.workers!r}; "
                "use None to take every core."
            )


_DEFAULTS = TemporalMedianParams()


def temporal_median(
    frames,
    *,
    memory_budget_mb: float = _DEFAULTS.memory_budget_mb,
    frame_step: int = _DEFAULTS.frame_step,
    workers: int | None = _DEFAULTS.workers,
) -> np.ndarray:
    """Exact per-pixel median over the frames of a video, streamed within a memory budget.

    Parameters
    ----------
    frames : array_like, shape (n, h, w) or (n, h, w, 3)
        The video: ``n`` frames of ``h`` rows and ``w`` columns, mono or a raw CFA mosaic
        (median per raw pixel, so the mosaic stays a mosaic) or RGB (median per channel).
        Any integer or floating dtype, any byte order and any strides, e.g. a read-only
        ``np.memmap`` view of big-endian data or a channel-reversed view ``[..., ::-1]``.
        Values are in the units of the data (ADU). Never modified.
    memory_budget_mb, frame_step, workers
        See :class:`TemporalMedianParams`.

    Returns
    -------
    numpy.ndarray, float32, shape ``frames.shape[1:]``
        The median over ``frames[::frame_step]`` for every pixel (and channel); for an even
        number of frames, the mean of the two middle values. Equal to
        ``np.median(np.asarray(frames[::frame_step], np.float64), axis=0).astype(np.float32)``.

    Raises
    ------
    ValueError
        If ``frames`` is not 3-D or 4-D with 3 channels, has no frames or no pixels, has a
        dtype other than integer or floating point, if a parameter is out of range, if the
        memory budget cannot hold even a few pixels of all selected frames, or if the file
        behind a memory-mapped input is shorter than the map.

    Notes
    -----
    NaN follows ``np.median``: a pixel with a NaN in any selected frame has a NaN median.
    Infinities take part in the ordering; the mean of ``-inf`` and ``inf`` is NaN.

    A numpy array (including ``np.memmap``) is read in place; any other array-like is
    converted with ``np.asarray`` first, outside the budget. A view of a ``np.memmap`` that
    is not copy-on-write is read from the file named by the map with positioned reads
    instead of through the map, so the file must not be replaced while this runs.
    """
    params = TemporalMedianParams(
        memory_budget_mb=memory_budget_mb, frame_step=frame_step, workers=workers
    )
    video = frames if isinstance(frames, np.ndarray) else np.asarray(frames)
    _check_video(video)
    selected = video[:: params.frame_step]
    video4 = selected if selected.ndim == 4 else selected[..., np.newaxis]
    frame_count, height, width, channels = video4.shape
    work_dtype = _work_dtype(selected.dtype)
    result = np.empty((height, width, channels), dtype=np.float32)

    with _open_source(video4, work_dtype) as source:
        plan = _plan_bands(
            frame_count=frame_count,
            height=height,
            width=width,
            channels=channels,
            work_itemsize=work_dtype.itemsize,
            staging_itemsize=source.staging_itemsize,
            budget_bytes=params.memory_budget_mb * 2**20 - result.nbytes,
            workers=params.workers if params.workers is not None else (os.cpu_count() or 1),
        )
        workspace = threading.local()

        def process(bands: list[_Region]) -> None:
            buffers = getattr(workspace, "buffers", None)
            if buffers is None:
                buffers = _Workspace(frame_count, plan, work_dtype)
                workspace.buffers = buffers
            stage = buffers.stage[: len(bands)]
            source.read(bands, stage)
            for band, held in zip(bands, stage, strict=True):
                medians = buffers.median(held[:, : band.values(channels)])
                result[band.row0 : band.row1, band.col0 : band.col1, :] = medians.reshape(
                    band.rows, band.col1 - band.col0, channels
                )

        stages = plan.stages()
        if plan.workers == 1:
            for bands in stages:
                process(bands)
        else:
            with ThreadPoolExecutor(max_workers=plan.workers) as pool:
                _wait_all([pool.submit(process, bands) for bands in stages])
    return result if video.ndim == 4 else result[..., 0]


def _wait_all(futures: list[Future]) -> None:
    """Wait for every future; on the first error, cancel those not started and re-raise."""
    try:
        for future in futures:
            future.result()
    except BaseException:
        for future in futures:
            future.cancel()
        raise


def _check_video(video: np.ndarray) -> None:
    if video.ndim not in (3, 4) or (video.ndim == 4 and video.shape[3] != 3):
        raise ValueError(
            f"frames must have shape (n, h, w) or (n, h, w, 3), got {video.shape}; "
            "stack the frames along the first axis (channels last for RGB)."
        )
    if video.shape[0] == 0:
        raise ValueError("frames holds no frame (n == 0); pass at least one frame.")
    if video.shape[1] == 0 or video.shape[2] == 0:
        raise ValueError(
            f"frames have no pixels (shape {video.shape}); each frame needs h >= 1 and w >= 1."
        )
    if not (np.issubdtype(video.dtype, np.integer) or np.issubdtype(video.dtype, np.floating)):
        raise ValueError(
            f"frames must hold integer or floating-point values, got dtype {video.dtype}; "
            "convert the video to a numeric dtype first."
        )


def _work_dtype(dtype: np.dtype) -> np.dtype:
    """Native-order dtype in which the values are sorted (order-preserving and exact)."""
    if dtype.itemsize == 1:
        return np.dtype(np.uint16 if dtype.kind == "u" else np.int16)
    if dtype.kind == "f" and dtype.itemsize == 2:
        return np.dtype(np.float32)
    return dtype.newbyteorder("=")


@dataclass(frozen=True)
class _Region:
    """Rows [row0, row1) and columns [col0, col1) of the image."""

    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def rows(self) -> int:
        return self.row1 - self.row0

    def values(self, channels: int) -> int:
        return self.rows * (self.col1 - self.col0) * channels


@dataclass(frozen=True)
class _BandPlan:
    """How the image is cut: bands of at most ``band_values`` values (whole rows, or pieces
    of one row when a row is too long), grouped in raster order into stages of at most
    ``bands_per_stage`` bands. A thread reads a whole stage at once, then computes its bands.
    """

    height: int
    width: int
    channels: int
    band_values: int
    bands_per_stage: int
    workers: int

    def stages(self) -> list[list[_Region]]:
        bands = list(self._bands())
        step = self.bands_per_stage
        return [bands[start : start + step] for start in range(0, len(bands), step)]

    def _bands(self) -> Iterator[_Region]:
        row_values = self.width * self.channels
        if self.band_values >= row_values:
            rows = self.band_values // row_values
            for row0 in range(0, self.height, rows):
                yield _Region(row0, min(row0 + rows, self.height), 0, self.width)
            return
        cols = self.band_values // self.channels
        for row0 in range(self.height):
            for col0 in range(0, self.width, cols):
                yield _Region(row0, row0 + 1, col0, min(col0 + cols, self.width))


def _plan_bands(
    *,
    frame_count: int,
    height: int,
    width: int,
    channels: int,
    work_itemsize: int,
    staging_itemsize: int,
    budget_bytes: float,
    workers: int,
) -> _BandPlan:
    """Choose band and stage sizes, and the number of threads, from the memory budget.

    Per thread, every value of a band costs three working-dtype copies per frame (padded
    frame-major copy, blocked transpose, pixel-major copy that is sorted) and every value of
    a stage one working-dtype copy per frame, plus a staging copy in the input dtype when
    the input has to be converted on the way in.
    """
    block = _BLOCK_BYTES // work_itemsize
    band_cost = 3 * frame_count * work_itemsize
    stage_cost = frame_count * (work_itemsize + staging_itemsize)
    minimum_per_worker = block * (band_cost + stage_cost)
    affordable = int(budget_bytes // minimum_per_worker)
    if affordable < 1:
        needed_mib = (minimum_per_worker + height * width * channels * 4) / 2**20
        raise ValueError(
            f"memory_budget_mb is too small for {frame_count} frames of {height}x{width}"
            f"x{channels}: at least {needed_mib:.2f} MiB are needed; raise memory_budget_mb "
            "or use a larger frame_step."
        )
    workers = min(workers, affordable)
    per_worker = budget_bytes / workers
    total_values = height * width * channels
    band_values = min(
        _BAND_TARGET_BYTES // (frame_count * work_itemsize),
        int(per_worker // (band_cost + stage_cost)),
        math.ceil(total_values / (_MIN_STAGES_PER_WORKER * workers)),
    )
    # Whole blocks only, so that padding a band to whole blocks never exceeds the budget.
    band_values = max(block, band_values // block * block)
    if band_values >= width * channels:
        real_band_values = band_values // (width * channels) * width * channels
    else:
        real_band_values = band_values // channels * channels
    band_count = math.ceil(total_values / real_band_values)
    bands_per_stage = min(
        int((per_worker - band_values * band_cost) // (band_values * stage_cost)),
        math.ceil(_READ_TARGET_BYTES / (real_band_values * work_itemsize)),
        math.ceil(band_count / (_MIN_STAGES_PER_WORKER * workers)),
    )
    return _BandPlan(
        height=height,
        width=width,
        channels=channels,
        band_values=band_values,
        bands_per_stage=max(1, bands_per_stage),
        workers=workers,
    )


class _Workspace:
    """Buffers of one thread, reused for every stage it processes."""

    def __init__(self, frame_count: int, plan: _BandPlan, work_dtype: np.dtype) -> None:
        self.frame_count = frame_count
        self.dtype = work_dtype
        self.block = _BLOCK_BYTES // work_dtype.itemsize
        self.band_values = plan.band_values
        self.stage = np.empty((plan.bands_per_stage, frame_count, plan.band_values), work_dtype)
        self.frame_major: np.ndarray | None = None
        self.blocked = np.empty((plan.band_values // self.block, frame_count), f"V{_BLOCK_BYTES}")
        self.pixel_major = np.empty((plan.band_values, frame_count), dtype=work_dtype)

    def median(self, block: np.ndarray) -> np.ndarray:
        """Float32 median over axis 0 of ``block`` (frames, values), flat over values."""
        n, values = block.shape
        padded = -(-values // self.block) * self.block
        groups = padded // self.block
        if padded != values:
            # The blocked view needs whole blocks: copy into a padded frame-major buffer.
            if self.frame_major is None:
                self.frame_major = np.empty((n, self.band_values), dtype=self.dtype)
            frame_major = self.frame_major[:, :padded]
            frame_major[:, :values] = block
            block = frame_major
        # Transpose in two steps: blocks of neighbouring values as single wide elements,
        # then the small (frames x block) tile inside every block.
        blocked = self.blocked[:groups]
        np.copyto(blocked, block.view(f"V{_BLOCK_BYTES}").T)
        pixel_major = self.pixel_major[:padded]
        np.copyto(
            pixel_major.reshape(groups, self.block, n),
            blocked.view(self.dtype).reshape(groups, n, self.block).transpose(0, 2, 1),
        )
        pixel_major.sort(axis=1)
        ordered = pixel_major[:values]
        if n % 2:
            # Through float64, as np.median does: int64 straight to float32 can round
            # differently from int64 to float64 to float32.
            medians = ordered[:, n // 2].astype(np.float64).astype(np.float32)
        else:
            lower = ordered[:, n // 2 - 1].astype(np.float64)
            upper = ordered[:, n // 2].astype(np.float64)
            medians = ((lower + upper) / 2).astype(np.float32)
        if self.dtype.kind == "f":
            # A full sort puts NaN last: a NaN anywhere shows in the last column.
            medians[np.isnan(ordered[:, -1])] = np.nan
        return medians


class _ArraySource:
    """Reads stages from any numpy array by copying (converting to the working dtype)."""

    staging_itemsize = 0

    def __init__(self, video4: np.ndarray) -> None:
        self.video4 = video4

    def __enter__(self) -> _ArraySource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def read(self, bands: list[_Region], stage: np.ndarray) -> None:
        """Copy every band into ``stage[j, :, :values]`` (frame-major, working dtype)."""
        n, _, _, channels = self.video4.shape
        for band, held in zip(bands, stage, strict=True):
            target = held[:, : band.values(channels)].reshape(
                n, band.rows, band.col1 - band.col0, channels
            )
            source = self.video4[:, band.row0 : band.row1, band.col0 : band.col1, :]
            np.copyto(target, source, casting="safe")


class _FileSource:
    """Reads stages of a memory-mapped video from its file with positioned reads.

    Reading through the map would leave the pages touched mapped into the process (recent
    Linux kernels map whole page-cache folios of up to a few MiB per touch, far beyond the
    rows asked for), so the resident set would grow with the video whatever the band size.
    ``os.preadv`` copies exactly the bytes of a stage into buffers the budget accounts for:
    the bands of a stage follow each other in the file, so one call per frame scatters a
    frame's part of the stage into the bands.
    """

    def __init__(
        self, video4: np.ndarray, work_dtype: np.dtype, path: str, first_position: int
    ) -> None:
        self.video4 = video4
        self.path = path
        self.first_position = first_position
        self.channels_reversed = video4.shape[3] > 1 and video4.strides[3] < 0
        direct = video4.dtype == work_dtype and not self.channels_reversed
        self.staging_itemsize = 0 if direct else video4.dtype.itemsize
        self.descriptor = -1
        self._staging = threading.local()

    def __enter__(self) -> _FileSource:
        self.descriptor = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        return self

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.descriptor)

    def read(self, bands: list[_Region], stage: np.ndarray) -> None:
        """Read every band into ``stage[j, :, :values]`` (frame-major, working dtype)."""
        n, _, _, channels = self.video4.shape
        target = stage
        if self.staging_itemsize:
            target = getattr(self._staging, "buffer", None)
            if target is None or target.shape[0] < stage.shape[0]:
                target = np.empty(stage.shape, dtype=self.video4.dtype)
                self._staging.buffer = target
            target = target[: stage.shape[0]]
        frame_stride, row_stride, pixel_stride, channel_stride = self.video4.strides
        first = bands[0]
        start = self.first_position + first.row0 * row_stride + first.col0 * pixel_stride
        if self.channels_reversed:
            start += (channels - 1) * channel_stride
        sizes = tuple(band.values(channels) for band in bands)
        expected = sum(sizes) * self.video4.dtype.itemsize
        for frame, pieces in enumerate(self._pieces(target, sizes)):
            position = start + frame * frame_stride
            if os.preadv(self.descriptor, pieces, position) != expected:
                raise ValueError(
                    f"{self.path} is shorter than its memory map (it ends before byte "
                    f"{position + expected}); was it truncated or replaced? Open it again."
                )
        if target is stage:
            return
        for band, held, staged in zip(bands, stage, target, strict=False):
            shape = (n, band.rows, band.col1 - band.col0, channels)
            values = band.values(channels)
            source = staged[:, :values].reshape(shape)
            if self.channels_reversed:
                source = source[..., ::-1]
            np.copyto(held[:, :values].reshape(shape), source, casting="safe")

    def _pieces(self, target: np.ndarray, sizes: tuple[int, ...]) -> list[list[np.ndarray]]:
        """Per frame, the band buffers one read fills; built once per thread and stage shape."""
        cache = getattr(self._staging, "pieces", None)
        if cache is None:
            cache = self._staging.pieces = {}
        key = (target.ctypes.data, sizes)
        if key not in cache:
            cache[key] = [
                [held[frame, :size] for held, size in zip(target, sizes, strict=False)]
                for frame in range(target.shape[1])
            ]
        return cache[key]


def _open_source(video4: np.ndarray, work_dtype: np.dtype) -> _ArraySource | _FileSource:
    """A file source when ``video4`` is a view of a shared file map with dense frames.

    Dense frames (rows, pixels and channels packed in C order, channels possibly reversed)
    make every stage a single byte range per frame. A copy-on-write map (``mode="c"``) may
    hold changes that are not in the file, so it is read through the map.
    """
    root = video4
    while isinstance(root, np.ndarray) and not isinstance(root.base, mmap.mmap):
        root = root.base
    if not isinstance(root, np.memmap) or root.filename is None or root.mode == "c":
        return _ArraySource(video4)
    _, _, width, channels = video4.shape
    itemsize = video4.dtype.itemsize
    frame_stride, row_stride, pixel_stride, channel_stride = video4.strides
    dense_frames = (
        row_stride == width * channels * itemsize
        and pixel_stride == channels * itemsize
        and (channels == 1 or abs(channel_stride) == itemsize)
        and frame_stride > 0
    )
    if not dense_frames:
        return _ArraySource(video4)
    offset_in_map = video4.ctypes.data - root.ctypes.data
    return _FileSource(video4, work_dtype, os.fspath(root.filename), root.offset + offset_in_map)
