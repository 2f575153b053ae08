"""Exact per-pixel temporal median of a video, streamed within a memory budget.

The median of a video keeps what is fixed on the sensor (dust shadows, vignetting, pixel
response) and averages away what moves. A video is often larger than memory, so the frames
are never loaded together: the image is cut into spans of pixels, every selected frame of
one span is held in memory at a time, their medians computed, then the next span read.
Threads run on separate cores: the numba kernels, numpy and the reads release the GIL.

Integers of at most 16 bits (every SER video) take a counting path, written as numba
kernels because numpy has no selection along the frame axis that is not dominated by
transposing (figures: AMD EPYC with AVX-512, 440 frames of 1280 x 960 uint16, nanoseconds
of one core per input value):

- A video stores each frame contiguous; selecting along the frame axis by partitioning or
  sorting wants each pixel's values contiguous, and transposing alone costs 0.4-3 ns per
  value in numpy. Counting needs no transpose: for a tile of several hundred neighbouring
  pixels held in the core's L2 cache, one pass over the frames counts, for every pixel at
  once, how many of its values lie below a threshold of its own. The loops compile to
  32-lane AVX-512 (16-lane AVX2) compares and adds: about 0.035 ns per value and pass.
- The k-th smallest value is the largest threshold with at most k values below it, so it is
  found bit by bit from the top, one pass per bit: the result is one of the values, exact
  for any data, ties and outliers included. A first pass finds each pixel's minimum and
  maximum; only the bits of (maximum - minimum) need passes, and low bits that are zero in
  every value of the tile (12- or 14-bit cameras writing 16-bit files) are skipped. The top
  8 of those bits are searched on byte keys, ``(value - minimum) >> shift``, at 64 lanes per
  compare (0.016 ns per value and pass, against 0.035 on the 16-bit keys).
- The low bits left after that first byte round are searched on byte keys too when there
  are at least three of them: the k-th value now lies in a window of at most 256 levels, so
  a second byte key per value, its offset from just below the window clamped to [0, 255],
  places it exactly (values below the window count as below every threshold, those above
  as above). Making these keys costs about four byte passes, so fewer low bits are left to
  16-bit passes. A noise spread of a few thousand ADU needs 8 + 5 byte passes.
- A wide spread is mostly noise far out in the tails: the median of several hundred noisy
  values lies close to their mean (within a few tens of ADU for 3 % noise on 440 frames),
  so when a tile's spread needs at least 10 bits, a sum over the frames gives each column
  its mean, and byte keys of a window of 255 levels centred there are searched directly,
  skipping the first byte round (its keys and the passes above 8 bits: the work of 5.6 of
  about 23 byte passes for 13 bits). The windows need no minimum or maximum, so while
  they place the medians the first pass only sums (and ors, for the zero low bits), and
  measures the extremes, which tell when the spread has narrowed, on one tile in 16: that
  pass costs 0.04 ns per value, against 0.07 for the extremes and the sums apart. A tile
  searched without its extremes takes 0 and 65535 as its columns' bounds, so every test
  of them errs on the safe side. The window keys are exact inside and saturated
  outside, so a column whose k-th value falls outside is recognised (its key is 0 or 255
  and values lie beyond) and searched alone, by bisection on a contiguous copy of its
  values (1.2 microseconds). Where more than 1/64 of a tile's columns miss, as where a
  drifting scene's texture or a limb passes over the pixels, the tile is searched from the
  top, and the windows pause for 4 tiles, doubling with each such tile in a row up to 64:
  on drifting videos they are then tried on about 2 % of the tiles.
- For an even count, one more pass finds the largest value below the upper middle one (or
  that it is repeated), on the byte keys when they are exact there: the window keys leave
  room on both sides of the window (when it is narrower than 256 levels), so the lower
  middle value is almost always inside; when it lies below the window (key 0), that
  column alone is scanned. The two are averaged in float64 exactly as ``np.median`` does,
  then cast to float32. Signed integers are counted as unsigned keys (``value ^ 0x8000``,
  which preserves order); big-endian data are byte-swapped in the first pass.
- Reading costs about two thirds as much as the kernels. Copying from the page cache takes
  0.10-0.11 CPU-seconds per GB when the file is cached as read from disk (in large folios),
  0.15-0.18 when it is cached as its writer wrote it; ``cat`` takes 0.085 and 0.13, reading
  128 KiB at a time into one small buffer. Each read costs about 1.4 microseconds besides
  its copy on these (virtual) machines, and a span takes one read per frame: the reads of
  a span are issued from compiled code, not from a Python loop (which cost about half a
  microsecond more per read), and when the memory budget allows, a span holds 32 KiB per
  frame, or 8 MiB of keys over all frames for videos of fewer than 256 frames: 14 MiB of
  keys for 440 frames, which mostly stay in the last-level cache until the first pass
  reads them back.
- Threads work in pairs that share one span: each reads half of its frames, then searches
  half of its columns. A span per thread kept both threads' keys (28 MiB for 440 frames)
  and the page-cache data streaming through together in the 32 MiB last-level cache, which
  they overflowed: two threads then spent a quarter more CPU time than one, on reading and
  on the kernels alike. Sharing, they spend what one thread does (0.28-0.29 against
  0.34-0.36 CPU-seconds on the benchmark video), for two waits per span.
- In all, on one core, for the 1 GB benchmark video cached as read: 0.11 CPU-seconds for
  reading and 0.145 for the kernels (0.26 ns per value: first pass 0.04, window keys 0.045,
  8 byte passes of 0.015, the even-count pass 0.02, the per-column steps between them). On
  the demo's 60-frame videos the kernels take 0.27-0.34 ns per value where the video is
  tracked, 0.46-0.76 where the scene drifts and the windows rarely place the medians.

Other dtypes (floating point, wider integers) take a sorting path: blocks are transposed in
two steps (32-byte blocks of neighbouring pixels first, then the small tile inside each
block, 0.5-0.7 ns per value) and every pixel's values are sorted with numpy's vectorised
sort, which also puts NaN last (so a NaN anywhere shows in the last value). Converting
integers or floats to float64 preserves order, so selecting in the native dtype and
converting afterwards is exact.

A memory-mapped input (such as a SER file opened lazily) is read from its file with
positioned reads into buffers the budget accounts for (at least 32 KiB per frame and read
on the counting path, 64 KiB on the sorting path). Reading through the map would leave every page
touched mapped into the process, so its resident set would grow with the video (recent
Linux kernels map whole page-cache folios of up to a few MiB per touch). The data stay in
the operating system's page cache and the file is never modified. The counting path calls
the C library's ``pread`` from compiled code (POSIX, 64-bit file offsets).

The counting kernels are compiled by numba on the first call in a process (about 8
CPU-seconds) and cached next to this module, or in numba's user-wide cache directory when
the package is read-only, so later processes load them (about 0.35 CPU-seconds). Without any
writable cache directory they are compiled in every process.
"""

from __future__ import annotations

import math
import mmap
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numba
import numpy as np

from astro_assets.science.compiled import compiled

__all__ = ["TemporalMedianParams", "selected_frames", "temporal_median"]

_Task = TypeVar("_Task")

_READ_TARGET_BYTES = 64 * 2**10
"""Bytes read per frame at a time by the sorting path when the budget allows: each
positioned read from Python has a fixed cost of a few microseconds, so much smaller reads
would dominate."""

_SPAN_READ_BYTES = 32 * 2**10
"""Fewest bytes read per frame at a time by the counting path when the budget allows. Its
reads are issued from compiled code, but each still costs about 1.4 microseconds besides
its copy (on these virtual machines): reading the 1 GB benchmark video 16 KiB at a time
cost 0.02 CPU-seconds more than 32 KiB at a time, and larger reads gained nothing there."""

_SPAN_KEY_BYTES = 8 * 2**20
"""Keys a span holds over all its frames when reads of :data:`_SPAN_READ_BYTES` would hold
fewer: a span's keys mostly stay in the last-level cache between the read and the first
pass over them, and each span costs a team two waits, so videos of few frames read more
of each frame at a time. Measured with pairs of threads on 2 cores (wall time of the
median): 60 frames of 3840 x 2160 took 0.166 s with 128 KiB per frame (7.5 MiB) against
0.199 s with 32 KiB and 0.185 s with 256 KiB; 100 frames of 1920 x 1080, 0.060 s with 64 or
128 KiB against 0.066 s with 32 KiB."""

_MIN_STAGES_PER_WORKER = 4
"""Work is cut small enough that every thread (or team of threads sharing a span) gets
several pieces, which keeps all cores busy until the end."""

_TEAM_SIZE = 2
"""Threads of the counting path that share one span: each reads every second frame of it,
both wait for the other, each searches half of its columns, and both wait again before the
next span is read. One span of 14 MiB of keys (440 frames) then stays in the 32 MiB
last-level cache that the page-cache data also stream through; a span per thread (28 MiB)
did not, and two threads spent 0.34-0.36 CPU-seconds on the 1 GB benchmark video against
0.28-0.29 for a pair sharing its spans, whose two waits per span cost less than the misses
saved.
Larger teams would wait on each other more often; more threads form more pairs."""

_TILE_BYTES = 768 * 2**10
"""Bytes of a counting tile's 16-bit keys (its pixels in every frame): with its byte keys,
about a core's L2 cache, where the tile stays during the passes over it."""

_TILE_MAX_VALUES = 1024
"""Widest counting tile: wider ones gain nothing once the loops run at full vector speed."""

_KEY_ROW_ALIGN_VALUES = 32

_COUNT_CHUNK_FRAMES = 65528
"""Frames counted in 16-bit lanes before the counts go to 64-bit totals: below 2**16, and a
multiple of the 8 frames compared per step."""

_COARSE_CHUNK_FRAMES = 248
"""Frames counted in 8-bit lanes before the counts go to 64-bit totals: below 2**8, and a
multiple of the 8 frames compared per step."""

_MIN_COARSE_BITS = 4
"""Fewest top bits worth searching on byte keys: making them costs about one 16-bit pass,
and a byte pass costs about half of one."""

_MIN_WINDOW_BITS = 3
"""Fewest low bits worth searching on byte keys of the window left by the first byte round:
making them costs about four byte passes, and a 16-bit pass costs two and a half."""

_COARSE_SCALES = np.array([2 ** (16 - max(top, 8)) for top in range(17)], dtype=np.uint16)
"""Per number of bits ``top`` of a tile's spread, the factor that moves an offset's top 8
bits into the high byte of 16 bits. A table, so that the compiler cannot turn the
multiplication back into a shift by a variable amount."""

_MIN_GUESS_BITS = 10
"""Fewest bits of a tile's spread for which mean-centred windows are tried: they replace the
first byte round (its keys and ``bits - 8`` passes) and the 16-bit passes below it with a
sum over the frames, and the window's keys and 8 byte passes. Measured on noisy and on
tracked 12-bit videos, 10 bits was the fewest where that paid (at 9 the 12-bit video's
kernels took 1.5 % longer)."""

_SPREAD_CHECK_TILES = 16
"""Tiles searched by mean-centred windows without measuring each column's minimum and
maximum, between two tiles where they are measured: the windows need only the sums, and
the extremes tell when the spread has become too narrow for the windows to pay (a pass
saved on 15 of 16 tiles)."""

_MAX_MISSES_FRACTION = 64
"""A tile whose mean-centred windows miss the k-th value of more than 1/64 of its columns is
searched again from the top: each miss costs a scalar search of its column (mostly the
gathering of its values), and 1/64 of the columns cost about as much as the passes the
windows saved."""

_GUESS_PAUSE_TILES = 4
"""Tiles searched from the top, without mean-centred windows, after a tile where those
windows missed too often; the pause doubles with every such tile in a row, up to
:data:`_GUESS_MAX_PAUSE_TILES`. A drifting video's pixels see the scene's texture, whose
distribution is far from symmetric around the median, and there each try costs about half
of a tile's passes."""

_GUESS_MAX_PAUSE_TILES = 64
"""Longest pause of the mean-centred windows: a try every 64 tiles costs under 1 % of the
passes where they never place the medians, and finds their use again within 64 tiles where
the scene changes (a drifting disc's limb left behind for the sky or a quiet area)."""

_SIGNED_KEY_FLIP = 0x8000
"""``value ^ 0x8000`` maps int16 (and int8 widened to int16) onto uint16 in the same order."""


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
        when the budget cannot hold one band per thread. Integers of at most 16 bits are
        computed by pairs of threads that share each span of pixels (and a thread alone
        for an odd number).
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
    frame_indices: Sequence[int] | np.ndarray | None = None,
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
    frame_indices : sequence of int, optional
        The frames to take, strictly increasing, in ``[0, n)`` (e.g. all but blank ones);
        ``None`` takes ``frames[::frame_step]``. Only with ``frame_step`` 1. See
        :func:`selected_frames`.

    Returns
    -------
    numpy.ndarray, float32, shape ``frames.shape[1:]``
        The median over the selected frames ``frames[selected]`` for every pixel (and
        channel); for an even number of frames, the mean of the two middle values. Equal to
        ``np.median(np.asarray(frames[selected], np.float64), axis=0).astype(np.float32)``.

    Raises
    ------
    ValueError
        If ``frames`` is not 3-D or 4-D with 3 channels, has no frames or no pixels, has a
        dtype other than integer or floating point, if a parameter or ``frame_indices`` is
        out of range, if the memory budget cannot hold even a few pixels of all selected
        frames, or if the file behind a memory-mapped input is shorter than the map.

    Notes
    -----
    NaN follows ``np.median``: a pixel with a NaN in any selected frame has a NaN median.
    Infinities take part in the ordering; the mean of ``-inf`` and ``inf`` is NaN.

    Integers of at most 16 bits are counted (see the module notes), other dtypes sorted;
    both are exact. The first call in a process may compile the counting kernels (a few
    seconds, once per installation when numba can write its cache).

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
    selected = selected_frames(video.shape[0], params.frame_step, frame_indices)
    video4 = video if video.ndim == 4 else video[..., np.newaxis]
    _, height, width, channels = video4.shape
    result = np.empty((height, width, channels), dtype=np.float32)
    budget_bytes = params.memory_budget_mb * 2**20 - result.nbytes
    workers = params.workers if params.workers is not None else (os.cpu_count() or 1)
    if _is_counted(video4.dtype):
        _median_by_counting(video4, selected, result, budget_bytes, workers)
    else:
        _median_by_sorting(video4, selected, result, budget_bytes, workers)
    return result if video.ndim == 4 else result[..., 0]


def selected_frames(
    frame_count: int,
    frame_step: int = 1,
    frame_indices: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """The frames a median is taken over: every ``frame_step``-th, or those listed.

    Parameters
    ----------
    frame_count : int
        Frames of the video, >= 1.
    frame_step : int
        Take ``range(0, frame_count, frame_step)``; >= 1, and 1 when ``frame_indices`` is given.
    frame_indices : sequence of int, optional
        Frame numbers, strictly increasing, each in ``[0, frame_count)``, at least one.

    Returns
    -------
    np.ndarray
        (k,) int64, strictly increasing.

    Raises
    ------
    ValueError
        For a step out of range, both a step and a list, or a list that is empty, not of
        integers, not strictly increasing or out of range.
    """
    TemporalMedianParams(frame_step=frame_step)
    if not (_is_integer(frame_count) and frame_count >= 1):
        raise ValueError(f"a video needs at least one frame, got frame_count={frame_count!r}.")
    if frame_indices is None:
        return np.arange(0, frame_count, frame_step, dtype=np.int64)
    if frame_step != 1:
        raise ValueError(
            f"pass either frame_step ({frame_step}) or frame_indices, not both; pick every "
            "frame_step-th frame into frame_indices instead."
        )
    listed = np.asarray(frame_indices)
    if (
        listed.ndim != 1
        or listed.size == 0
        or not (np.issubdtype(listed.dtype, np.integer) and listed.dtype != np.bool_)
    ):
        raise ValueError(
            "frame_indices must be a non-empty 1-D sequence of integer frame numbers, got "
            f"{listed.dtype} of shape {listed.shape}."
        )
    listed = listed.astype(np.int64)
    if (np.diff(listed) <= 0).any():
        raise ValueError("frame_indices must be strictly increasing (each frame once, in order).")
    if listed[0] < 0 or listed[-1] >= frame_count:
        raise ValueError(
            f"frame_indices must lie in [0, {frame_count}) for a video of {frame_count} "
            f"frames, got {listed[0]} .. {listed[-1]}."
        )
    return listed


def _as_index(frames: np.ndarray) -> slice | np.ndarray:
    """Increasing frame numbers as a slice where they are evenly spaced (numpy then takes a
    view instead of a copy), else as they are."""
    if frames.size <= 1:
        return slice(int(frames[0]), int(frames[0]) + 1) if frames.size else slice(0, 0)
    steps = np.diff(frames)
    if (steps == steps[0]).all():
        return slice(int(frames[0]), int(frames[-1]) + 1, int(steps[0]))
    return frames


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


def _is_counted(dtype: np.dtype) -> bool:
    """Whether the counting path takes this dtype: integers of at most 16 bits."""
    return dtype.kind in "iu" and dtype.itemsize <= 2


def _too_small(frame_count: int, height: int, width: int, channels: int, needed: float) -> str:
    return (
        f"memory_budget_mb is too small for {frame_count} frames of {height}x{width}"
        f"x{channels}: at least {needed / 2**20:.2f} MiB are needed; raise memory_budget_mb "
        "or take fewer frames (a larger frame_step, or fewer frame_indices)."
    )


def _run_all(tasks: Sequence[_Task], workers: int, process: Callable[[_Task], None]) -> None:
    """Run ``process`` on every task, on ``workers`` threads."""
    if workers == 1:
        for task in tasks:
            process(task)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        _wait_all([pool.submit(process, task) for task in tasks])


def _wait_all(futures: list[Future]) -> None:
    """Wait for every future; on the first error, cancel those not started and re-raise."""
    try:
        for future in futures:
            future.result()
    except BaseException:
        for future in futures:
            future.cancel()
        raise


def _file_behind(video4: np.ndarray) -> tuple[str, int] | None:
    """The file and byte position of ``video4[0, 0, 0, 0]`` when ``video4`` is a view of a
    shared file map with dense frames, else None.

    Dense frames (rows, pixels and channels packed in C order, channels possibly reversed)
    make any run of whole pixels a single byte range per frame. A copy-on-write map
    (``mode="c"``) may hold changes that are not in the file, so it is read through the map.
    """
    root = video4
    while isinstance(root, np.ndarray) and not isinstance(root.base, mmap.mmap):
        root = root.base
    if not isinstance(root, np.memmap) or root.filename is None or root.mode == "c":
        return None
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
        return None
    offset_in_map = video4.ctypes.data - root.ctypes.data
    return os.fspath(root.filename), root.offset + offset_in_map


def _check_read(path: str, got: int, expected: int, position: int) -> None:
    if got != expected:
        raise ValueError(
            f"{path} is shorter than its memory map (it ends before byte "
            f"{position + expected}); was it truncated or replaced? Open it again."
        )


# Counting path: integers of at most 16 bits.


@dataclass(frozen=True)
class _SpanPlan:
    """Spans of ``span_pixels`` consecutive pixels (raster order) of a ``pixels``-pixel
    image, each held by a team of threads in a key buffer of ``row_values`` values per
    frame; ``workers`` threads in all, in teams of :meth:`team_sizes`."""

    pixels: int
    span_pixels: int
    row_values: int
    tile_values: int
    workers: int

    def spans(self) -> list[tuple[int, int]]:
        return [
            (start, min(start + self.span_pixels, self.pixels))
            for start in range(0, self.pixels, self.span_pixels)
        ]

    def team_sizes(self) -> list[int]:
        """Threads of each team: pairs, and one alone for an odd number of threads."""
        return _team_sizes(self.workers)


def _team_sizes(workers: int) -> list[int]:
    full, rest = divmod(workers, _TEAM_SIZE)
    return [_TEAM_SIZE] * full + ([rest] if rest else [])


def _key_row_values(values: int) -> int:
    """Length of a key buffer row holding ``values`` values: whole 64-byte lines, an odd
    number of them, so that the rows of a tile (one per frame) fall into different cache
    sets instead of competing for the same few (as a power-of-two stride would)."""
    lines = -(-values // _KEY_ROW_ALIGN_VALUES)
    lines += 1 - lines % 2
    return lines * _KEY_ROW_ALIGN_VALUES


def _plan_spans(
    *,
    frame_count: int,
    height: int,
    width: int,
    channels: int,
    staging_itemsize: int,
    budget_bytes: float,
    workers: int,
) -> _SpanPlan:
    """Choose the span size, the tile width and the number of threads from the memory budget.

    Per team of threads (:data:`_TEAM_SIZE`), every value of a span costs one uint16 key
    per frame, plus a staging copy in the input dtype when the input has to be converted on
    the way in, and a key row is padded by up to two cache lines; per thread, the kernel
    needs a byte key per frame and a few per-column numbers for every column of its tile.
    Tiles are narrowed to 32 columns before threads are dropped to fit a small budget.
    """
    pixel_cost = frame_count * channels * (2 + staging_itemsize)
    row_padding = frame_count * 4 * _KEY_ROW_ALIGN_VALUES
    cache_tile = _TILE_BYTES // (2 * frame_count) // 32 * 32
    tile_values = min(_TILE_MAX_VALUES, max(32, cache_tile))

    def cost(threads: int, tile: int) -> float:
        """Bytes that ``threads`` threads need for spans of one pixel."""
        teams = len(_team_sizes(threads))
        return teams * (row_padding + pixel_cost) + threads * _tile_scratch_bytes(frame_count, tile)

    if budget_bytes < cost(workers, tile_values):
        tile_values = 32
    while workers > 1 and budget_bytes < cost(workers, tile_values):
        workers -= 1
    if budget_bytes < cost(1, tile_values):
        needed = cost(1, tile_values) + height * width * channels * 4
        raise ValueError(_too_small(frame_count, height, width, channels, needed))
    teams = len(_team_sizes(workers))
    scratch = workers * _tile_scratch_bytes(frame_count, tile_values)
    pixels = height * width
    span_pixels = min(
        int(((budget_bytes - scratch) / teams - row_padding) // pixel_cost),
        max(1, _span_read_bytes(frame_count) // (2 * channels)),
        math.ceil(pixels / (_MIN_STAGES_PER_WORKER * teams)),
    )
    span_pixels = max(1, span_pixels)
    return _SpanPlan(
        pixels=pixels,
        span_pixels=span_pixels,
        row_values=_key_row_values(span_pixels * channels),
        tile_values=tile_values,
        workers=workers,
    )


def _span_read_bytes(frame_count: int) -> int:
    """Bytes of each frame a span holds when the budget allows: :data:`_SPAN_KEY_BYTES` over
    all frames, in whole pages, and at least :data:`_SPAN_READ_BYTES`."""
    return max(_SPAN_READ_BYTES, _SPAN_KEY_BYTES // frame_count // 4096 * 4096)


def _tile_scratch_bytes(frame_count: int, tile_values: int) -> int:
    """Bytes :func:`_median_of_keys` allocates for a tile: a byte key per frame and column,
    and 34 bytes of per-column state (counts, bounds, thresholds), rounded up to 40."""
    return tile_values * (frame_count + 40)


def _median_by_counting(
    video4: np.ndarray, frames: np.ndarray, result: np.ndarray, budget_bytes: float, workers: int
) -> None:
    """Fill ``result`` (h, w, channels) with the medians over ``video4[frames]`` of integers
    of at most 16 bits."""
    _, height, width, channels = video4.shape
    frame_count = frames.size
    file = _file_behind(video4)
    reader = (
        _KeyArrayReader(video4, frames) if file is None else _KeyFileReader(video4, frames, *file)
    )
    plan = _plan_spans(
        frame_count=frame_count,
        height=height,
        width=width,
        channels=channels,
        staging_itemsize=reader.staging_itemsize,
        budget_bytes=budget_bytes,
        workers=workers,
    )
    flat_result = result.reshape(-1)
    queue = _SpanQueue(plan.spans())

    def search(keys: np.ndarray, span: tuple[int, int], first: int, stop: int, guessing):
        span_start, span_stop = span
        _median_of_keys(
            keys,
            first,
            stop,
            plan.tile_values,
            reader.swap,
            reader.flip,
            flat_result[span_start * channels : span_stop * channels],
            guessing,
        )

    with reader:
        teams = []
        for size in plan.team_sizes():
            keys = np.empty((frame_count, plan.row_values), np.uint16)
            staging_shape = (frame_count, plan.span_pixels * channels)
            staging = np.empty(staging_shape, video4.dtype) if reader.staging_itemsize else None
            teams.append(_SpanTeam(size, keys, staging, channels, queue))
        _run_teams(teams, reader.read, search)


class _SpanQueue:
    """Hands out spans, one at a time to whichever team asks, until none is left or a
    thread has failed."""

    def __init__(self, spans: Sequence[tuple[int, int]]) -> None:
        self._spans = iter(spans)
        self._lock = threading.Lock()
        self.failed = False

    def take(self) -> tuple[int, int] | None:
        with self._lock:
            return None if self.failed else next(self._spans, None)


class _SpanTeam:
    """Threads sharing one span's key buffer (see :data:`_TEAM_SIZE`).

    Member ``m`` of ``size`` reads frames ``m, m + size, ...`` of the span into the buffer,
    waits for the others, searches its share of the span's columns (a multiple of 32 values
    wide, so the kernels' rows stay aligned), and waits again, while member 0 takes the next
    span from the queue. Each member carries its own state of the mean-centred windows,
    since it searches the same part of every span.
    """

    def __init__(
        self,
        size: int,
        keys: np.ndarray,
        staging: np.ndarray | None,
        channels: int,
        queue: _SpanQueue,
    ) -> None:
        self.size = size
        self.keys = keys
        self.staging = staging
        self.channels = channels
        self.queue = queue
        self.barrier = threading.Barrier(size)
        self.span = queue.take()

    def columns(self, span: tuple[int, int], member: int) -> tuple[int, int]:
        """The values [first, stop) of ``span`` that ``member`` searches."""
        values = (span[1] - span[0]) * self.channels

        def bound(part: int) -> int:
            return min(values, round(values * part / self.size / 32) * 32)

        return bound(member), values if member == self.size - 1 else bound(member + 1)

    def work(self, member: int, read: Callable, search: Callable) -> None:
        """Run ``member``'s share of every span the team takes, until the queue is empty."""
        guessing = _new_guessing_state()
        try:
            while self.span is not None:
                span = self.span
                read(*span, self.keys, self.staging, member, self.size)
                self.barrier.wait()
                first, stop = self.columns(span, member)
                if first < stop:
                    search(self.keys, span, first, stop, guessing)
                if member == 0:
                    self.span = self.queue.take()
                self.barrier.wait()
        except BaseException:
            # The other members would wait for this one for ever, and other teams would
            # go on with spans whose results are lost.
            self.queue.failed = True
            self.barrier.abort()
            raise


def _run_teams(teams: list[_SpanTeam], read: Callable, search: Callable) -> None:
    """Run every member of every team on a thread of its own (a lone member in the calling
    thread); on failure, raise the error that stopped the failing member rather than the
    broken barrier it left the others."""
    members = [(team, member) for team in teams for member in range(team.size)]
    if len(members) == 1:
        team, member = members[0]
        team.work(member, read, search)
        return
    with ThreadPoolExecutor(max_workers=len(members)) as pool:
        futures = [pool.submit(team.work, member, read, search) for team, member in members]
        errors = [future.exception() for future in futures]
    causes = [error for error in errors if error is not None]
    if causes:
        raise next(
            (error for error in causes if not isinstance(error, threading.BrokenBarrierError)),
            causes[0],
        )


def _new_guessing_state() -> np.ndarray:
    """The state :func:`_median_of_keys` carries between calls, before the first: no pause,
    a first pause of :data:`_GUESS_PAUSE_TILES`, no tile placed by mean-centred windows, no
    column searched alone, the spread to be measured on the next tile, and the last
    spread taken as wide enough for the windows."""
    return np.array([0, _GUESS_PAUSE_TILES, 0, 0, 0, 1], np.int64)


def _key_view_dtype(dtype: np.dtype) -> np.dtype:
    """The native 16-bit dtype whose bits are the key (before the signed flip)."""
    return np.dtype(np.int16 if dtype.kind == "i" else np.uint16)


class _KeyArrayReader:
    """Copies spans of frames ``frames`` of any numpy array into key buffers (widening, byte
    order, strides)."""

    staging_itemsize = 0
    swap = False

    def __init__(self, video4: np.ndarray, frames: np.ndarray) -> None:
        self.video4 = video4
        self.frames = frames
        self.flip = _SIGNED_KEY_FLIP if video4.dtype.kind == "i" else 0
        self.key_dtype = _key_view_dtype(video4.dtype)

    def __enter__(self) -> _KeyArrayReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def read(
        self,
        start: int,
        stop: int,
        keys: np.ndarray,
        staging: np.ndarray | None,
        first_frame: int = 0,
        frame_step: int = 1,
    ) -> None:
        """Copy pixels [start, stop) of the selected frames ``first_frame::frame_step`` into
        the same rows of ``keys[:, :values]``."""
        _, _, width, channels = self.video4.shape
        rows_read = slice(first_frame, None, frame_step)
        target = keys.view(self.key_dtype)[rows_read]
        frames = _as_index(self.frames[rows_read])
        done = 0
        for row, col0, rows, cols in _row_pieces(start, stop, width):
            values = rows * cols * channels
            _copy_selected(
                target[:, done : done + values].reshape(-1, rows, cols, channels),
                self.video4,
                frames,
                (slice(row, row + rows), slice(col0, col0 + cols)),
            )
            done += values


def _copy_selected(
    target: np.ndarray,
    video4: np.ndarray,
    frames: slice | np.ndarray,
    window: tuple[slice, slice],
) -> None:
    """Copy ``video4[frames, rows, cols, :]`` into ``target`` (frames, rows, cols, channels),
    one frame at a time where ``frames`` is a list: indexed by a list, numpy would first gather
    the frames into a copy that the memory budget does not hold."""
    rows, cols = window
    if isinstance(frames, slice):
        np.copyto(target, video4[frames, rows, cols, :], casting="safe")
        return
    for position, frame in enumerate(frames):
        np.copyto(target[position], video4[frame, rows, cols, :], casting="safe")


def _row_pieces(start: int, stop: int, width: int) -> Iterator[tuple[int, int, int, int]]:
    """Pixels [start, stop) of a ``width``-wide image in raster order as rectangles
    (row, first column, rows, columns): at most a partial row, whole rows, a partial row."""
    position = start
    while position < stop:
        row, col = divmod(position, width)
        if col == 0 and stop - position >= width:
            rows = (stop - position) // width
            yield row, 0, rows, width
            position += rows * width
        else:
            cols = min(width - col, stop - position)
            yield row, col, 1, cols
            position += cols


class _KeyFileReader:
    """Reads spans of frames ``frames`` of a memory-mapped video from its file with
    positioned reads.

    Pixels [start, stop) of a frame are one byte range of the file, read straight into the
    key buffer for 16-bit data (the kernel swaps the bytes of big-endian data in place), or
    into a staging buffer that is then converted (8-bit data, reversed channels).
    """

    def __init__(
        self, video4: np.ndarray, frames: np.ndarray, path: str, first_position: int
    ) -> None:
        self.video4 = video4
        self.frame_offsets = frames * video4.strides[0]
        self.path = path
        self.first_position = first_position
        dtype = video4.dtype
        self.channels_reversed = video4.shape[3] > 1 and video4.strides[3] < 0
        self.direct = dtype.itemsize == 2 and not self.channels_reversed
        self.staging_itemsize = 0 if self.direct else dtype.itemsize
        self.swap = self.direct and not dtype.isnative
        self.flip = _SIGNED_KEY_FLIP if dtype.kind == "i" else 0
        self.key_dtype = _key_view_dtype(dtype)
        self.descriptor = -1

    def __enter__(self) -> _KeyFileReader:
        self.descriptor = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        return self

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.descriptor)

    def read(
        self,
        start: int,
        stop: int,
        keys: np.ndarray,
        staging: np.ndarray | None,
        first_frame: int = 0,
        frame_step: int = 1,
    ) -> None:
        """Read pixels [start, stop) of the selected frames ``first_frame::frame_step`` into
        the same rows of ``keys[:, :values]``."""
        _, _, _, channels = self.video4.shape
        n = self.frame_offsets.size
        _, _, pixel_stride, channel_stride = self.video4.strides
        values = (stop - start) * channels
        target = keys if staging is None else staging
        first = self.first_position + start * pixel_stride
        if self.channels_reversed:
            first += (channels - 1) * channel_stride
        expected = values * self.video4.dtype.itemsize
        rows = target.view(np.uint8)
        failed = _read_rows(
            self.descriptor, rows, expected, first, self.frame_offsets, first_frame, frame_step
        )
        # From the first read that failed or came short on, the reads are repeated here,
        # where they raise the operating system's error or say that the file ends too soon.
        for frame in range(failed, n, frame_step):
            position = first + int(self.frame_offsets[frame])
            got = os.preadv(self.descriptor, [target[frame, :values]], position)
            _check_read(self.path, got, expected, position)
        if staging is None:
            return
        frames = slice(first_frame, None, frame_step)
        source = staging[frames, :values].reshape(-1, stop - start, channels)
        if self.channels_reversed:
            source = source[..., ::-1]
        converted = keys.view(self.key_dtype)[frames, :values].reshape(-1, stop - start, channels)
        np.copyto(converted, source, casting="safe")


_pread = numba.types.ExternalFunction(
    "pread",
    numba.types.intp(numba.types.intc, numba.types.voidptr, numba.types.uintp, numba.types.int64),
)
"""POSIX ``pread(descriptor, buffer, count, offset)`` of the C library, called from compiled
code: the read loop of a span then runs without the interpreter (one call per frame)."""


@compiled
def _read_rows(
    descriptor, target, row_bytes, first, offsets, first_row, row_step
):  # pragma: no cover - compiled
    """Read ``row_bytes`` bytes at ``first + offsets[f]`` of the file into row ``f`` of
    ``target`` for rows ``f = first_row, first_row + row_step, ...``; return the number of
    rows of ``target``, or the first of those rows whose read failed or ended early (at
    the end of the file)."""
    for row in range(first_row, target.shape[0], row_step):
        address = target[row].ctypes.data
        position = first + offsets[row]
        done = 0
        while done < row_bytes:
            got = _pread(descriptor, address + done, row_bytes - done, position + done)
            if got <= 0:
                return row
            done += got
    return target.shape[0]


@compiled
def _median_of_keys(keys, first, values, tile, swap, flip, out, guessing):  # pragma: no cover
    """Medians over axis 0 of ``keys[:, first:values]`` (uint16 keys), written to
    ``out[first:values]`` as float32 values (``int16(key ^ flip)`` for signed data, else the
    key).

    The keys are first made native in place (``swap``: byte-swapped; ``flip``: xor-ed), then
    every tile of ``tile`` neighbouring columns from ``first`` on is searched by bisection,
    see the module notes.
    ``guessing`` (int64, 6 values, from :func:`_new_guessing_state`) carries from one call to
    the next whether mean-centred windows are worth trying: the tiles left to pause them,
    the next pause, the tiles placed by them, the columns they missed (each then searched
    alone), the tiles left before the spread is measured again, and whether the last
    spread measured was wide enough for them (1) or not (0).
    """
    frame_count = keys.shape[0]
    rank = frame_count // 2
    flip_key = np.uint16(flip)
    lowest = np.empty(tile, np.uint16)
    highest = np.empty(tile, np.uint16)
    seen = np.empty(tile, np.uint16)
    found = np.empty(tile, np.int64)
    threshold = np.empty(tile, np.uint16)
    lane_counts = np.empty(tile, np.uint16)
    counts = np.empty(tile, np.int64)
    below = np.empty(tile, np.uint16)
    window_low = np.empty(tile, np.uint16)
    coarse = np.empty((frame_count, tile), np.uint8)
    coarse_found = np.empty(tile, np.uint8)
    coarse_threshold = np.empty(tile, np.uint8)
    coarse_lanes = np.empty(tile, np.uint8)
    coarse_below = np.empty(tile, np.uint8)
    lane_sums = np.empty(tile, np.uint32)
    totals = np.empty(tile, np.int64)
    missed = np.empty(tile, np.bool_)
    column = np.empty(frame_count, np.uint16)
    for start in range(first, values, tile):
        stop = min(start + tile, values)
        width = stop - start
        if swap or flip_key:
            _make_native(keys, start, stop, swap, flip_key)
        # The first pass over the tile: its extremes (each column's minimum and maximum,
        # which give the spread), its sums (each column's mean, which centres the windows),
        # or both. A tile whose windows are tried without its extremes takes 0 and 65535 as
        # its columns' bounds: every test of them below then errs on the safe side.
        paused = guessing[0] > 0
        wide = guessing[5] == 1
        with_extremes = paused or not wide or guessing[4] == 0
        with_sums = not paused and wide
        if with_extremes:
            _tile_extremes(keys, start, stop, lowest, highest, seen)
        else:
            for p in range(width):
                lowest[p] = 0
                highest[p] = 65535
        if with_sums:
            _tile_sums(keys, start, stop, seen, lane_sums, totals)
        if paused:
            guessing[0] -= 1
        elif with_extremes:
            guessing[4] = _SPREAD_CHECK_TILES
        else:
            guessing[4] -= 1
        top, bottom = _spread_bits(lowest, highest, seen, width)
        if with_extremes:
            guessing[5] = 1 if top - bottom >= _MIN_GUESS_BITS else 0
        try_windows = not paused and top - bottom >= _MIN_GUESS_BITS
        # found = lowest + the bits of (k-th value - lowest) decided so far, from the top:
        # all of them at once by byte keys of a window around each column's mean when the
        # spread is wide and those windows have been placing the medians; otherwise the top
        # 8 bits on byte keys relative to each column's minimum when that saves passes, the
        # rest on byte keys of the window they leave, or on the 16-bit keys.
        # When the byte keys in ``coarse`` are exact: value = window_low + key << key_unit.
        exact_bytes = False
        key_unit = 0
        misses = 0
        guessed = False
        if try_windows:
            if not with_sums:
                _tile_sums(keys, start, stop, seen, lane_sums, totals)
            misses = _search_around_means(
                keys,
                start,
                stop,
                bottom,
                rank,
                lowest,
                highest,
                totals,
                window_low,
                coarse,
                coarse_found,
                coarse_threshold,
                coarse_lanes,
                counts,
                missed,
            )
            if misses <= width // _MAX_MISSES_FRACTION:
                guessed = True
                guessing[1] = _GUESS_PAUSE_TILES
                guessing[2] += 1
                guessing[3] += misses
                for p in range(width):
                    found[p] = np.int64(window_low[p]) + (np.int64(coarse_found[p]) << bottom)
                exact_bytes = True
                key_unit = bottom
            else:
                guessing[0] = guessing[1]
                guessing[1] = min(2 * guessing[1], _GUESS_MAX_PAUSE_TILES)
                # The bounds 0 and 65535 would also search exactly, but over all 16 bits:
                # the extremes cost one pass and save several.
                if not with_extremes:
                    _tile_extremes(keys, start, stop, lowest, highest, seen)
                    top, bottom = _spread_bits(lowest, highest, seen, width)
        fine_top = bottom if guessed else top
        shift = max(0, top - 8)
        coarse_bottom = max(shift, bottom)
        if not guessed:
            for p in range(width):
                found[p] = lowest[p]
        if not guessed and top - coarse_bottom >= _MIN_COARSE_BITS:
            _build_coarse_keys(keys, start, stop, lowest, top, coarse)
            for p in range(width):
                coarse_found[p] = 0
            _search_coarse(
                coarse,
                width,
                top - shift,
                coarse_bottom - shift,
                rank,
                coarse_found,
                coarse_threshold,
                coarse_lanes,
                counts,
            )
            for p in range(width):
                found[p] += np.int64(coarse_found[p]) << shift
                window_low[p] = lowest[p]
            fine_top = shift
            exact_bytes = shift <= bottom
            key_unit = shift
        if not guessed and fine_top - bottom >= _MIN_WINDOW_BITS:
            # The k-th value lies in [found, found + 2**fine_top): a byte key per value,
            # saturated at both ends, places it in that window with a margin on each side
            # (where the value below it usually lies too, for an even count).
            levels = 1 << (fine_top - bottom)
            margin = np.int64(max(0, (255 - levels) // 2)) << bottom
            for p in range(width):
                low = max(found[p] - margin, np.int64(lowest[p]))
                window_low[p] = low
                coarse_found[p] = (found[p] - low) >> bottom
            _build_window_keys(keys, start, stop, window_low, bottom, coarse)
            _search_coarse(
                coarse,
                width,
                fine_top - bottom,
                0,
                rank,
                coarse_found,
                coarse_threshold,
                coarse_lanes,
                counts,
            )
            for p in range(width):
                found[p] = np.int64(window_low[p]) + (np.int64(coarse_found[p]) << bottom)
            fine_top = bottom
            exact_bytes = True
            key_unit = bottom
        for bit in range(fine_top - 1, bottom - 1, -1):
            step = np.int64(1) << bit
            for p in range(width):
                threshold[p] = min(found[p] + step, 65535)
            _count_below(keys, start, stop, threshold, lane_counts, counts)
            for p in range(width):
                if counts[p] <= rank and found[p] + step <= 65535:
                    found[p] += step
        if frame_count % 2 == 0:
            if exact_bytes:
                for p in range(width):
                    coarse_threshold[p] = (found[p] - np.int64(window_low[p])) >> key_unit
                _count_coarse_and_max_below(
                    coarse, width, coarse_threshold, coarse_lanes, counts, coarse_below
                )
                for p in range(width):
                    largest = coarse_below[p]
                    if window_low[p] > lowest[p] and (coarse_threshold[p] == 0 or largest == 0):
                        # Key 0 also holds the values below the window: look them up.
                        counts[p], below[p] = _count_and_largest_below(
                            keys, start + p, np.uint16(found[p])
                        )
                    else:
                        below[p] = window_low[p] + (np.uint16(largest) << np.uint16(key_unit))
            else:
                for p in range(width):
                    threshold[p] = found[p]
                _count_and_max_below(keys, start, stop, threshold, lane_counts, counts, below)
        if guessed and misses > 0:
            for p in range(width):
                if missed[p]:
                    found[p], counts[p], below[p] = _column_order_statistics(
                        keys, start + p, rank, bottom, column
                    )
        for p in range(width):
            upper = np.uint16(found[p])
            lower = upper
            if frame_count % 2 == 0 and counts[p] >= rank:
                lower = below[p]
            if flip_key:
                low_value = np.float64(np.int16(lower ^ flip_key))
                high_value = np.float64(np.int16(upper ^ flip_key))
            else:
                low_value = np.float64(lower)
                high_value = np.float64(upper)
            out[start + p] = np.float32((low_value + high_value) / 2)


@compiled
def _search_around_means(
    keys,
    start,
    stop,
    unit,
    rank,
    lowest,
    highest,
    totals,
    window_low,
    coarse,
    coarse_found,
    threshold,
    lane_counts,
    counts,
    missed,
):  # pragma: no cover - compiled
    """Search the k-th value of every column of [start, stop) in a window of 255 levels of
    ``2**unit`` centred on the column's mean; return the number of columns whose k-th value
    the window does not place exactly, flagged in ``missed``.

    ``window_low``, ``coarse`` and ``coarse_found`` are left as after the byte round of
    :func:`_median_of_keys`: window keys of every value, and the k-th key of each column.
    """
    width = stop - start
    frame_count = keys.shape[0]
    half = np.int64(128) << unit
    for p in range(width):
        mean = (totals[p] // frame_count) >> unit << unit
        window_low[p] = max(mean - half, np.int64(lowest[p]))
        coarse_found[p] = 0
    _build_window_keys(keys, start, stop, window_low, unit, coarse)
    _search_coarse(coarse, width, 8, 0, rank, coarse_found, threshold, lane_counts, counts)
    misses = 0
    for p in range(width):
        key = coarse_found[p]
        top_key_value = np.int64(window_low[p]) + (np.int64(255) << unit)
        below_is_exact = key > 0 or window_low[p] == lowest[p]
        above_is_exact = key < 255 or np.int64(highest[p]) == top_key_value
        missed[p] = not (below_is_exact and above_is_exact)
        misses += 1 if missed[p] else 0
    return misses


@compiled
def _column_order_statistics(keys, column, rank, unit, buffer):  # pragma: no cover - compiled
    """For one column of ``keys``: its ``rank``-th smallest value (from 0), the number of
    values below it, and the largest of those (0 if none), found by bisection over a
    contiguous copy of the column in ``buffer``. The column's values are multiples of
    ``2**unit``."""
    frame_count = keys.shape[0]
    lowest = np.uint16(65535)
    highest = np.uint16(0)
    for frame in range(frame_count):
        value = keys[frame, column]
        buffer[frame] = value
        lowest = min(lowest, value)
        highest = max(highest, value)
    top = 0
    while (np.int64(highest) - np.int64(lowest)) >> top:
        top += 1
    found = np.int64(lowest)
    for bit in range(top - 1, unit - 1, -1):
        candidate = found + (np.int64(1) << bit)
        if candidate > 65535:
            continue
        limit = np.uint16(candidate)
        count = 0
        for frame in range(frame_count):
            count += 1 if buffer[frame] < limit else 0
        if count <= rank:
            found = candidate
    limit = np.uint16(found)
    count = 0
    largest = np.uint16(0)
    for frame in range(frame_count):
        value = buffer[frame]
        is_below = value < limit
        count += 1 if is_below else 0
        largest = max(largest, value if is_below else np.uint16(0))
    return found, count, largest


@compiled
def _search_coarse(
    coarse, width, bits, skipped, rank, coarse_found, threshold, lane_counts, counts
):  # pragma: no cover - compiled
    """Bisection on byte keys: for bit ``bits - 1`` down to ``skipped``, add the bit to
    ``coarse_found[p]`` when at most ``rank`` keys of column ``p`` lie below the result."""
    for bit in range(bits - 1, skipped - 1, -1):
        step = np.uint8(1 << bit)
        for p in range(width):
            threshold[p] = coarse_found[p] + step
        _count_coarse_below(coarse, width, threshold, lane_counts, counts)
        for p in range(width):
            if counts[p] <= rank:
                coarse_found[p] += step


@compiled
def _make_native(keys, start, stop, swap, flip_key):  # pragma: no cover - compiled
    """Make the keys of columns [start, stop) native in place: byte-swapped (``swap``) and
    xor-ed with ``flip_key``."""
    eight = np.uint16(8)
    for frame in range(keys.shape[0]):
        row = keys[frame, start:stop]
        if swap:
            for p in range(stop - start):
                value = row[p]
                row[p] = ((value >> eight) | (value << eight)) ^ flip_key
        else:
            for p in range(stop - start):
                row[p] = row[p] ^ flip_key


@compiled
def _tile_extremes(keys, start, stop, lowest, highest, seen):  # pragma: no cover - compiled
    """Per column of [start, stop): the minimum, maximum and bitwise or of its keys."""
    width = stop - start
    for p in range(width):
        lowest[p] = 65535
        highest[p] = 0
        seen[p] = 0
    frame_count = keys.shape[0]
    frame = 0
    while frame + 4 <= frame_count:
        r0 = keys[frame, start:stop]
        r1 = keys[frame + 1, start:stop]
        r2 = keys[frame + 2, start:stop]
        r3 = keys[frame + 3, start:stop]
        for p in range(width):
            a = r0[p]
            b = r1[p]
            c = r2[p]
            d = r3[p]
            lowest[p] = min(lowest[p], min(min(a, b), min(c, d)))
            highest[p] = max(highest[p], max(max(a, b), max(c, d)))
            seen[p] |= (a | b) | (c | d)
        frame += 4
    while frame < frame_count:
        row = keys[frame, start:stop]
        for p in range(width):
            value = row[p]
            lowest[p] = min(lowest[p], value)
            highest[p] = max(highest[p], value)
            seen[p] |= value
        frame += 1


@compiled
def _tile_sums(keys, start, stop, seen, lane_sums, totals):  # pragma: no cover - compiled
    """Per column of [start, stop): the sum of its keys (``totals``, summed in 32-bit
    lanes ``lane_sums`` over chunks of frames that cannot overflow them) and their bitwise
    or (``seen``)."""
    width = stop - start
    for p in range(width):
        totals[p] = 0
        seen[p] = 0
    frame_count = keys.shape[0]
    for chunk in range(0, frame_count, _COUNT_CHUNK_FRAMES):
        chunk_stop = min(chunk + _COUNT_CHUNK_FRAMES, frame_count)
        for p in range(width):
            lane_sums[p] = 0
        frame = chunk
        while frame + 4 <= chunk_stop:
            r0 = keys[frame, start:stop]
            r1 = keys[frame + 1, start:stop]
            r2 = keys[frame + 2, start:stop]
            r3 = keys[frame + 3, start:stop]
            for p in range(width):
                a = r0[p]
                b = r1[p]
                c = r2[p]
                d = r3[p]
                seen[p] |= (a | b) | (c | d)
                lane_sums[p] += (np.uint32(a) + np.uint32(b)) + (np.uint32(c) + np.uint32(d))
            frame += 4
        while frame < chunk_stop:
            row = keys[frame, start:stop]
            for p in range(width):
                seen[p] |= row[p]
                lane_sums[p] += np.uint32(row[p])
            frame += 1
        for p in range(width):
            totals[p] += lane_sums[p]


@compiled
def _spread_bits(lowest, highest, seen, width):  # pragma: no cover - compiled
    """(top, bottom) of a tile of ``width`` columns: every key minus its column's minimum
    fits in ``top`` bits, and its ``bottom`` lowest bits are zero in every key."""
    spread = 0
    bits_seen = 0
    for p in range(width):
        spread = max(spread, np.int64(highest[p]) - np.int64(lowest[p]))
        bits_seen |= np.int64(seen[p])
    top = 0
    while spread >> top:
        top += 1
    bottom = 0
    while bottom < top and ((bits_seen >> bottom) & 1) == 0:
        bottom += 1
    return top, bottom


@compiled
def _count_below(keys, start, stop, threshold, lane_counts, counts):  # pragma: no cover
    """``counts[p]`` = number of frames whose key in column ``start + p`` is below
    ``threshold[p]``. Counted in 16-bit lanes, eight frames per step (one vector compare
    and add per frame and 16 or 32 columns), in chunks that cannot overflow them."""
    width = stop - start
    one = np.uint16(1)
    zero = np.uint16(0)
    for p in range(width):
        counts[p] = 0
    frame_count = keys.shape[0]
    for chunk in range(0, frame_count, _COUNT_CHUNK_FRAMES):
        chunk_stop = min(chunk + _COUNT_CHUNK_FRAMES, frame_count)
        for p in range(width):
            lane_counts[p] = 0
        frame = chunk
        while frame + 8 <= chunk_stop:
            r0 = keys[frame, start:stop]
            r1 = keys[frame + 1, start:stop]
            r2 = keys[frame + 2, start:stop]
            r3 = keys[frame + 3, start:stop]
            r4 = keys[frame + 4, start:stop]
            r5 = keys[frame + 5, start:stop]
            r6 = keys[frame + 6, start:stop]
            r7 = keys[frame + 7, start:stop]
            for p in range(width):
                t = threshold[p]
                lane_counts[p] += (
                    (one if r0[p] < t else zero)
                    + (one if r1[p] < t else zero)
                    + (one if r2[p] < t else zero)
                    + (one if r3[p] < t else zero)
                    + (one if r4[p] < t else zero)
                    + (one if r5[p] < t else zero)
                    + (one if r6[p] < t else zero)
                    + (one if r7[p] < t else zero)
                )
            frame += 8
        while frame < chunk_stop:
            row = keys[frame, start:stop]
            for p in range(width):
                lane_counts[p] += one if row[p] < threshold[p] else zero
            frame += 1
        for p in range(width):
            counts[p] += lane_counts[p]


@compiled
def _build_coarse_keys(keys, start, stop, lowest, top, coarse):  # pragma: no cover
    """``coarse[f, p]`` = the top 8 of the ``top`` bits of ``keys[f, start + p] - lowest[p]``
    (all of them when ``top <= 8``).

    The offset is moved to the top of 16 bits by a multiplication and its high byte taken: a
    shift by a variable amount would be computed in 64-bit lanes.
    """
    width = stop - start
    scale = _COARSE_SCALES[top]
    for frame in range(keys.shape[0]):
        row = keys[frame, start:stop]
        target = coarse[frame, :width]
        for p in range(width):
            aligned = np.uint16(np.uint16(row[p] - lowest[p]) * scale)
            target[p] = np.uint8(aligned >> 8)


@compiled
def _build_window_keys(keys, start, stop, window_low, unit, coarse):  # pragma: no cover
    """``coarse[f, p]`` = ``(keys[f, start + p] - window_low[p]) >> unit``, clamped to
    [0, 255]: exact inside the window, 0 below it and 255 above, which keeps every count
    below a threshold of at most 255 exact. ``unit`` is at most 8.

    The clamped offset is moved to the top of 16 bits by a multiplication and its high byte
    taken, as in :func:`_build_coarse_keys`.
    """
    width = stop - start
    scale = _COARSE_SCALES[unit + 8]
    cap = np.uint16(255 << unit)
    for frame in range(keys.shape[0]):
        row = keys[frame, start:stop]
        target = coarse[frame, :width]
        for p in range(width):
            low = window_low[p]
            offset = min(np.uint16(max(row[p], low) - low), cap)
            target[p] = np.uint8(np.uint16(offset * scale) >> 8)


@compiled
def _count_coarse_and_max_below(
    coarse, width, threshold, lane_counts, counts, below
):  # pragma: no cover - compiled
    """Like :func:`_count_coarse_below`, and ``below[p]`` = the largest byte key below
    ``threshold[p]`` in column ``p`` (0 if none)."""
    one = np.uint8(1)
    zero = np.uint8(0)
    for p in range(width):
        counts[p] = 0
        below[p] = 0
    frame_count = coarse.shape[0]
    for chunk in range(0, frame_count, _COARSE_CHUNK_FRAMES):
        chunk_stop = min(chunk + _COARSE_CHUNK_FRAMES, frame_count)
        for p in range(width):
            lane_counts[p] = 0
        frame = chunk
        while frame + 4 <= chunk_stop:
            r0 = coarse[frame, :width]
            r1 = coarse[frame + 1, :width]
            r2 = coarse[frame + 2, :width]
            r3 = coarse[frame + 3, :width]
            for p in range(width):
                t = threshold[p]
                a = r0[p]
                b = r1[p]
                c = r2[p]
                d = r3[p]
                lane_counts[p] += (
                    (one if a < t else zero)
                    + (one if b < t else zero)
                    + (one if c < t else zero)
                    + (one if d < t else zero)
                )
                largest = max(
                    max(a if a < t else zero, b if b < t else zero),
                    max(c if c < t else zero, d if d < t else zero),
                )
                below[p] = max(below[p], largest)
            frame += 4
        while frame < chunk_stop:
            row = coarse[frame, :width]
            for p in range(width):
                value = row[p]
                is_below = value < threshold[p]
                lane_counts[p] += one if is_below else zero
                below[p] = max(below[p], value if is_below else zero)
            frame += 1
        for p in range(width):
            counts[p] += lane_counts[p]


@compiled
def _count_and_largest_below(keys, column, limit):  # pragma: no cover - compiled
    """The number of keys below ``limit`` in column ``column``, and the largest (0 if none)."""
    count = 0
    largest = np.uint16(0)
    for frame in range(keys.shape[0]):
        value = keys[frame, column]
        if value < limit:
            count += 1
            largest = max(largest, value)
    return count, largest


@compiled
def _count_coarse_below(coarse, width, threshold, lane_counts, counts):  # pragma: no cover
    """``counts[p]`` = number of frames whose byte key ``coarse[f, p]`` is below
    ``threshold[p]``: 64 columns per vector compare, counted in 8-bit lanes in chunks of
    248 frames, which cannot overflow them."""
    one = np.uint8(1)
    zero = np.uint8(0)
    for p in range(width):
        counts[p] = 0
    frame_count = coarse.shape[0]
    for chunk in range(0, frame_count, _COARSE_CHUNK_FRAMES):
        chunk_stop = min(chunk + _COARSE_CHUNK_FRAMES, frame_count)
        for p in range(width):
            lane_counts[p] = 0
        frame = chunk
        while frame + 8 <= chunk_stop:
            r0 = coarse[frame, :width]
            r1 = coarse[frame + 1, :width]
            r2 = coarse[frame + 2, :width]
            r3 = coarse[frame + 3, :width]
            r4 = coarse[frame + 4, :width]
            r5 = coarse[frame + 5, :width]
            r6 = coarse[frame + 6, :width]
            r7 = coarse[frame + 7, :width]
            for p in range(width):
                t = threshold[p]
                lane_counts[p] += (
                    (one if r0[p] < t else zero)
                    + (one if r1[p] < t else zero)
                    + (one if r2[p] < t else zero)
                    + (one if r3[p] < t else zero)
                    + (one if r4[p] < t else zero)
                    + (one if r5[p] < t else zero)
                    + (one if r6[p] < t else zero)
                    + (one if r7[p] < t else zero)
                )
            frame += 8
        while frame < chunk_stop:
            row = coarse[frame, :width]
            for p in range(width):
                lane_counts[p] += one if row[p] < threshold[p] else zero
            frame += 1
        for p in range(width):
            counts[p] += lane_counts[p]


@compiled
def _count_and_max_below(
    keys, start, stop, threshold, lane_counts, counts, below
):  # pragma: no cover - compiled
    """Like :func:`_count_below`, and ``below[p]`` = the largest key below ``threshold[p]``
    in column ``start + p`` (0 if none)."""
    width = stop - start
    one = np.uint16(1)
    zero = np.uint16(0)
    for p in range(width):
        counts[p] = 0
        below[p] = 0
    frame_count = keys.shape[0]
    for chunk in range(0, frame_count, _COUNT_CHUNK_FRAMES):
        chunk_stop = min(chunk + _COUNT_CHUNK_FRAMES, frame_count)
        for p in range(width):
            lane_counts[p] = 0
        frame = chunk
        while frame + 4 <= chunk_stop:
            r0 = keys[frame, start:stop]
            r1 = keys[frame + 1, start:stop]
            r2 = keys[frame + 2, start:stop]
            r3 = keys[frame + 3, start:stop]
            for p in range(width):
                t = threshold[p]
                a = r0[p]
                b = r1[p]
                c = r2[p]
                d = r3[p]
                lane_counts[p] += (
                    (one if a < t else zero)
                    + (one if b < t else zero)
                    + (one if c < t else zero)
                    + (one if d < t else zero)
                )
                largest = max(
                    max(a if a < t else zero, b if b < t else zero),
                    max(c if c < t else zero, d if d < t else zero),
                )
                below[p] = max(below[p], largest)
            frame += 4
        while frame < chunk_stop:
            row = keys[frame, start:stop]
            for p in range(width):
                value = row[p]
                is_below = value < threshold[p]
                lane_counts[p] += one if is_below else zero
                below[p] = max(below[p], value if is_below else zero)
            frame += 1
        for p in range(width):
            counts[p] += lane_counts[p]


# Sorting path: floating point and integers wider than 16 bits.

_BLOCK_BYTES = 32
"""Bytes of neighbouring pixels moved as one element in the first transposing step."""

_BAND_TARGET_BYTES = 4 * 2**20
"""Upper bound on each of a band's working buffers: a band this small stays in the caches
between the transposing copies and the sort."""


def _median_by_sorting(
    video4: np.ndarray, frames: np.ndarray, result: np.ndarray, budget_bytes: float, workers: int
) -> None:
    """Fill ``result`` (h, w, channels) with the medians over ``video4[frames]`` of any other
    numeric dtype."""
    _, height, width, channels = video4.shape
    frame_count = frames.size
    work_dtype = _work_dtype(video4.dtype)
    file = _file_behind(video4)
    source = (
        _ArraySource(video4, frames)
        if file is None
        else _FileSource(video4, frames, work_dtype, *file)
    )
    plan = _plan_bands(
        frame_count=frame_count,
        height=height,
        width=width,
        channels=channels,
        work_itemsize=work_dtype.itemsize,
        staging_itemsize=source.staging_itemsize,
        budget_bytes=budget_bytes,
        workers=workers,
    )
    workspace = threading.local()

    with source:

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

        _run_all(plan.stages(), plan.workers, process)


def _work_dtype(dtype: np.dtype) -> np.dtype:
    """Native-order dtype in which the values are sorted (order-preserving and exact)."""
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
        needed = minimum_per_worker + height * width * channels * 4
        raise ValueError(_too_small(frame_count, height, width, channels, needed))
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
    """Reads stages of frames ``frames`` from any numpy array by copying (converting to the
    working dtype)."""

    staging_itemsize = 0

    def __init__(self, video4: np.ndarray, frames: np.ndarray) -> None:
        self.video4 = video4
        self.frames = _as_index(frames)
        self.frame_count = frames.size

    def __enter__(self) -> _ArraySource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def read(self, bands: list[_Region], stage: np.ndarray) -> None:
        """Copy every band into ``stage[j, :, :values]`` (frame-major, working dtype)."""
        channels = self.video4.shape[3]
        for band, held in zip(bands, stage, strict=True):
            target = held[:, : band.values(channels)].reshape(
                self.frame_count, band.rows, band.col1 - band.col0, channels
            )
            window = (slice(band.row0, band.row1), slice(band.col0, band.col1))
            _copy_selected(target, self.video4, self.frames, window)


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
        self,
        video4: np.ndarray,
        frames: np.ndarray,
        work_dtype: np.dtype,
        path: str,
        first_position: int,
    ) -> None:
        self.video4 = video4
        self.frame_offsets = frames * video4.strides[0]
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
        channels = self.video4.shape[3]
        n = self.frame_offsets.size
        target = stage
        if self.staging_itemsize:
            target = getattr(self._staging, "buffer", None)
            if target is None or target.shape[0] < stage.shape[0]:
                target = np.empty(stage.shape, dtype=self.video4.dtype)
                self._staging.buffer = target
            target = target[: stage.shape[0]]
        _, row_stride, pixel_stride, channel_stride = self.video4.strides
        first = bands[0]
        start = self.first_position + first.row0 * row_stride + first.col0 * pixel_stride
        if self.channels_reversed:
            start += (channels - 1) * channel_stride
        sizes = tuple(band.values(channels) for band in bands)
        expected = sum(sizes) * self.video4.dtype.itemsize
        for frame, pieces in enumerate(self._pieces(target, sizes)):
            position = start + int(self.frame_offsets[frame])
            got = os.preadv(self.descriptor, pieces, position)
            _check_read(self.path, got, expected, position)
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
