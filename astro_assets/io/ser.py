"""SER video files (format v3): a tolerant, memory-mapped reader and a streaming writer.

A SER file is a 178-byte header followed by ``FrameCount`` frames stored top-down, row-major,
without padding, and optionally a trailer of one int64 time stamp per frame.

Header layout (all integers little-endian)::

    offset  size  field
         0    14  FileID               "LUCAM-RECORDER" (latin-1 text)
        14     4  LuID                 int32
        18     4  ColorID              int32 (0 MONO, 8-11 Bayer, 16-19 CMY, 100 RGB, 101 BGR)
        22     4  LittleEndian         int32 (byte order of 16-bit pixel data, see below)
        26     4  ImageWidth           int32
        30     4  ImageHeight          int32
        34     4  PixelDepthPerPlane   int32 (1-8: one byte per sample, 9-16: two bytes)
        38     4  FrameCount           int32
        42    40  Observer             latin-1, NUL-padded, may be unterminated
        82    40  Instrument           latin-1, NUL-padded, may be unterminated
       122    40  Telescope            latin-1, NUL-padded, may be unterminated
       162     8  DateTime             int64 .NET ticks, local time
       170     8  DateTime_UTC         int64 .NET ticks, UTC

Real files break the specification in known ways, and the reader tolerates each of them,
recording every tolerated quirk in :attr:`SerVideo.warnings`:

- The ``LittleEndian`` flag is inverted in practice: capture programs (FireCapture, SharpCap,
  Siril, PIPP) write 0 for little-endian pixel data and 1 for big-endian, the reverse of the
  specification's wording. The flag is therefore only a hint; the byte order of 16-bit data is
  detected from the pixels (the true order gives a far smoother image than the swapped one).
- ``FrameCount`` may be 0 (interrupted capture), larger than the data (truncated copy) or
  smaller (a header the capture program did not update); the file size decides how many whole
  frames are used, and where the time-stamp trailer begins.
- ``PixelDepthPerPlane`` does not say how the data use the container: 12-bit data are stored
  either LSB-aligned (values below 4096) or shifted up (multiples of 16). The real range is
  measured from every value of a few whole sampled frames; where those values cannot tell the
  two apart (all zero, or a few distinct values that are all multiples of a power of two, as
  in a dark or a dark sky), the alignment is reported as undetermined rather than guessed.
- The FileID may be ``INDI-RECORDER`` or ``JSOLEX-TRIMMED`` instead of ``LUCAM-RECORDER``.
- The time-stamp trailer may be absent, truncated, followed by junk, non-monotonic or hold
  implausible dates.

Every offset is computed with Python integers, so files larger than 4 GiB are read correctly.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from astro_assets.io.atomic import atomic_path

HEADER_SIZE = 178
"""Size of the SER header in bytes; frame data start at this offset."""

STANDARD_FILE_ID = "LUCAM-RECORDER"
"""The FileID the SER specification prescribes."""

VARIANT_FILE_IDS = frozenset({"INDI-RECORDER", "JSOLEX-TRIMMED"})
"""FileIDs written by known programs; accepted with a warning."""

DOTNET_TICKS_AT_UNIX_EPOCH = 621_355_968_000_000_000
""".NET ticks (100 ns since 0001-01-01) at 1970-01-01T00:00:00 UTC."""

COLOR_NAMES: dict[int, str] = {
    0: "MONO",
    8: "RGGB",
    9: "GRBG",
    10: "GBRG",
    11: "BGGR",
    16: "CYYM",
    17: "YCMY",
    18: "YMCY",
    19: "MYYC",
    100: "RGB",
    101: "BGR",
}
"""SER ColorID -> colour layout name."""

COLOR_IDS: dict[str, int] = {name: color_id for color_id, name in COLOR_NAMES.items()}
"""Colour layout name -> SER ColorID."""

BAYER_PATTERNS = frozenset({"RGGB", "GRBG", "GBRG", "BGGR"})
CMY_PATTERNS = frozenset({"CYYM", "YCMY", "YMCY", "MYYC"})
MOSAIC_PATTERNS = BAYER_PATTERNS | CMY_PATTERNS
THREE_PLANE_COLORS = frozenset({"RGB", "BGR"})

_HEADER = struct.Struct("<14s7i40s40s40sqq")
_FRAME_COUNT_OFFSET = 38
_STRING_FIELD_SIZE = 40
_DOTNET_ORIGIN = datetime(1, 1, 1, tzinfo=UTC)
_TICKS_PER_MICROSECOND = 10
_TRAILER_DTYPE = np.dtype("<i8")

# Dates outside this window are treated as a wrong clock or junk, not as real capture times.
_PLAUSIBLE_FIRST_DATE = datetime(1970, 1, 1, tzinfo=UTC)
_PLAUSIBLE_END_DATE = datetime(2200, 1, 1, tzinfo=UTC)
_PLAUSIBLE_FIRST_TICKS = (
    (_PLAUSIBLE_FIRST_DATE - _DOTNET_ORIGIN) // timedelta(microseconds=1) * _TICKS_PER_MICROSECOND
)
_PLAUSIBLE_END_TICKS = (
    (_PLAUSIBLE_END_DATE - _DOTNET_ORIGIN) // timedelta(microseconds=1) * _TICKS_PER_MICROSECOND
)

# Byte-order detection looks at a few frames only, and at a few bands of rows in each, so opening
# a multi-gigabyte video costs a few megabytes of reads for it.
_SAMPLED_FRAMES = 5
_SAMPLED_BANDS = 8
_BAND_ROWS = 32
_MAX_SAMPLED_COLUMNS = 2048
# The true byte order is typically tens of times smoother than the swapped one; below this
# ratio the pixels do not decide and the header flag is followed instead.
_DECISIVE_MARGIN = 2.0
# Values whose low bits are all zero count as shifted-up data only when there are enough
# distinct values for that not to happen by chance (a flat or nearly empty frame).
_MIN_DISTINCT_VALUES_FOR_SHIFT = 16
# The bit depth and alignment are measured on every value of the sampled frames, not on the
# bands: a small bright target between the bands (a planet on a dark sky) may hold the only
# values that reveal them. The frames are read this many values at a time, to bound memory.
_HISTOGRAM_CHUNK_VALUES = 1 << 20

UNDETERMINED_ALIGNMENT = "undetermined"
""":attr:`SerVideo.bit_alignment` when the sampled values cannot tell how the data sit in the
container."""

_ALIGNMENT_WORDS = {
    "lsb": "from the lowest bit",
    "full": "over the whole container",
}


class SerFormatError(ValueError):
    """A file that cannot be read as a SER video; the message names the file and what to do."""


@dataclass(frozen=True)
class SerHeader:
    """The 178-byte SER header, decoded.

    Attributes
    ----------
    file_id : str
        FileID decoded as latin-1, stripped of NULs and spaces.
    lu_id : int
        LuID (camera id; usually 0).
    color_id : int
        ColorID as stored.
    little_endian_flag : int
        The raw ``LittleEndian`` value; only a hint (see the module notes).
    width, height : int
        Frame size in pixels.
    pixel_depth : int
        ``PixelDepthPerPlane`` as stored.
    frame_count : int
        ``FrameCount`` as stored; may be wrong (see :attr:`SerVideo.n_frames`).
    observer, instrument, telescope : str
        Text fields decoded as latin-1 up to the first NUL, trailing spaces removed.
    date_local : datetime or None
        Local wall-clock capture start. The file carries no zone offset, so it is returned
        as a UTC-labelled aware datetime holding the local clock reading. None when 0 or
        outside 1970-2200.
    date_utc : datetime or None
        Capture start in UTC (aware). None when 0 or outside 1970-2200.
    """

    file_id: str
    lu_id: int
    color_id: int
    little_endian_flag: int
    width: int
    height: int
    pixel_depth: int
    frame_count: int
    observer: str
    instrument: str
    telescope: str
    date_local: datetime | None
    date_utc: datetime | None


class SerVideo:
    """An open SER video: header, a lazy read-only view of the frames, and what was measured.

    Obtain one with :func:`open_ser`; use it as a context manager or call :meth:`close`.

    Attributes
    ----------
    path : pathlib.Path
        The file.
    header : SerHeader
        The decoded header, as stored.
    frames : numpy.ndarray
        Read-only view backed by ``numpy.memmap``: shape (n_frames, height, width) for MONO and
        raw colour mosaics, (n_frames, height, width, 3) in R, G, B order for RGB and BGR files.
        Native dtype: ``uint8``, or ``uint16`` with the byte order in use (``'<u2'`` or
        ``'>u2'``). Indexing reads only the bytes touched, so bands of rows can be read from
        every frame without loading the video.
    n_frames : int
        Whole frames present in the file and used (may differ from ``header.frame_count``).
    timestamps : numpy.ndarray or None
        ``datetime64[ns]`` UTC capture time of each frame, shape (n_frames,), from the trailer;
        None when the file has no usable trailer.
    color : str
        ``"MONO"``, a mosaic pattern (``"RGGB"``, ``"GRBG"``, ``"GBRG"``, ``"BGGR"``,
        ``"CYYM"``, ``"YCMY"``, ``"YMCY"``, ``"MYYC"``), ``"RGB"`` or ``"BGR"``.
    bayer_pattern : str or None
        The colour-filter pattern of a raw mosaic file (top-left 2x2 cell), else None.
    byte_order : str
        ``"<"`` or ``">"`` for 16-bit data, ``"|"`` for 8-bit data.
    byte_order_source : str
        ``"single-byte"`` (8-bit data), ``"detected"`` (decided by the pixels),
        ``"header-flag"`` (pixels undecided, the header flag was followed under the common
        convention 0 = little-endian), ``"fallback"`` (pixels undecided, the caller's
        ``fallback_byte_order`` was followed) or ``"override"`` (given by the caller).
    byte_order_margin : float or None
        Mean absolute neighbour difference of the sampled pixels under the other byte order
        divided by that under the chosen one (above 1: the chosen order is smoother); None for
        8-bit data.
    significant_bits : int
        Bits the data really use, measured from every value of a few whole sampled frames
        (e.g. 12). When ``bit_alignment`` is ``"undetermined"``: the header's depth, or the
        bits the sampled values reach where they reach more.
    bit_alignment : str
        How the data sit in the container, only as far as the sampled values prove it:

        - ``"lsb"``: stored from the lowest bit, values below ``2**significant_bits``; some
          value is odd, so nothing is shifted.
        - ``"msb"``: shifted up, the low ``container - significant_bits`` bits of every value
          are zero, shown by many distinct values (at least 16) or by values beyond the
          header's depth that are multiples of the header's shift.
        - ``"full"``: the whole container, some value is odd and uses its top bit.
        - ``"undetermined"`` (:data:`UNDETERMINED_ALIGNMENT`): the values cannot tell. They are
          all zero, or few distinct values that are all multiples of a power of two (a dark, a
          dark sky), which fits both data stored from the lowest bit and data shifted up. A
          caller must not rely on either: e.g. keep the whole container's range, and do not
          take it as a difference from another video's alignment.
    warnings : tuple of str
        Every quirk of the file that was tolerated, in words.
    """

    def __init__(
        self,
        *,
        path: Path,
        header: SerHeader,
        frames: np.ndarray,
        n_frames: int,
        timestamps: np.ndarray | None,
        color: str,
        bayer_pattern: str | None,
        byte_order: str,
        byte_order_source: str,
        byte_order_margin: float | None,
        significant_bits: int,
        bit_alignment: str,
        warnings: tuple[str, ...],
    ) -> None:
        self.path = path
        self.header = header
        self._frames: np.ndarray | None = frames
        self.n_frames = n_frames
        self.timestamps = timestamps
        self.color = color
        self.bayer_pattern = bayer_pattern
        self.byte_order = byte_order
        self.byte_order_source = byte_order_source
        self.byte_order_margin = byte_order_margin
        self.significant_bits = significant_bits
        self.bit_alignment = bit_alignment
        self.warnings = warnings

    @property
    def frames(self) -> np.ndarray:
        """The frames (see the class attributes); unavailable after :meth:`close`."""
        if self._frames is None:
            raise ValueError(
                f"{self.path}: this SerVideo was closed; open the file again with open_ser()."
            )
        return self._frames

    @property
    def is_rgb(self) -> bool:
        """True for three-plane files (RGB or BGR), whose frames have a last axis of 3."""
        return self.color in THREE_PLANE_COLORS

    def __len__(self) -> int:
        return self.n_frames

    def close(self) -> None:
        """Release this object's reference to the memory map.

        Views taken from :attr:`frames` before closing stay valid (numpy keeps the map alive
        until the last view is gone).
        """
        self._frames = None

    def __enter__(self) -> SerVideo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"SerVideo({str(self.path)!r}, {self.n_frames} x {self.header.height} x "
            f"{self.header.width} {self.color}, {self.significant_bits}-bit "
            f"{self.bit_alignment}, byte order {self.byte_order!r} ({self.byte_order_source}), "
            f"{len(self.warnings)} warning(s))"
        )


# --------------------------------------------------------------------------------------------
# Reading


def open_ser(
    path: str | os.PathLike[str],
    *,
    byte_order: str | None = None,
    fallback_byte_order: str | None = None,
) -> SerVideo:
    """Open a SER video for lazy, read-only access.

    Reads the header, works out how many whole frames the file holds, maps the frames with
    ``numpy.memmap`` and samples a few frames to decide the byte order (from bands of rows) and
    the real bit depth and alignment (from every value of those frames). The pixel data are
    never read as a whole.

    Parameters
    ----------
    path : path-like
        The SER file.
    byte_order : {"<", ">", "little", "big"} or None
        Byte order of 16-bit pixel data. None (default) detects it from the pixels: the true
        order gives a far smoother image (mean absolute difference between neighbouring
        pixels, same-colour neighbours for mosaics) than the swapped one. When the pixels do
        not decide (flat or noise-only frames), the header flag is followed under the common
        convention (0 = little-endian). Ignored, with a warning, for 8-bit data.
    fallback_byte_order : {"<", ">", "little", "big"} or None
        Byte order to follow instead of the header flag when ``byte_order`` is None and the
        pixels do not decide: e.g. the byte order of the video a dark video belongs to, which
        is a better guess for near-constant frames than the unreliable flag. The pixels still
        win where they decide, since the byte order is how the file was written, not a
        property of the camera. Ignored for 8-bit data.

    Returns
    -------
    SerVideo

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    SerFormatError
        If the file is not a readable SER video: shorter than the header, a FileID that is not
        text, width or height not positive, an unknown ColorID, a depth outside 1-16, or not
        one whole frame of data.
    ValueError
        If ``byte_order`` or ``fallback_byte_order`` is not one of the accepted spellings.
    """
    path = Path(path)
    override = None if byte_order is None else _normalize_byte_order(byte_order)
    fallback = None if fallback_byte_order is None else _normalize_byte_order(fallback_byte_order)
    file_size = path.stat().st_size
    if file_size < HEADER_SIZE:
        raise SerFormatError(
            f"{path}: the file has {file_size} bytes, fewer than the {HEADER_SIZE}-byte SER "
            "header, so it is empty or not a SER video. Copy the capture again from its source."
        )
    with open(path, "rb") as handle:
        raw_header = handle.read(HEADER_SIZE)
    header, warnings = _parse_header(raw_header, path)
    color = _color_name(header, path)
    bytes_per_sample = _bytes_per_sample(header, path)
    planes = 3 if color in THREE_PLANE_COLORS else 1
    frame_bytes = header.width * header.height * planes * bytes_per_sample
    if color in CMY_PATTERNS:
        warnings.append(
            f"ColorID {header.color_id} is the {color} cyan/yellow/magenta colour-filter "
            "mosaic, which few programs handle; the frames are kept as the raw mosaic."
        )

    n_frames, trailer_offset, layout_warnings = _locate_frames(path, header, frame_bytes, file_size)
    warnings.extend(layout_warnings)

    shape: tuple[int, ...] = (n_frames, header.height, header.width)
    if planes == 3:
        shape = (*shape, 3)
    little_dtype = np.dtype(np.uint8) if bytes_per_sample == 1 else np.dtype("<u2")
    mapped = np.memmap(path, dtype=little_dtype, mode="r", offset=HEADER_SIZE, shape=shape)
    as_little = np.asarray(mapped)

    bands = _sample_bands(as_little)
    step = 2 if color in MOSAIC_PATTERNS else 1
    order, source, margin, order_warnings = _decide_byte_order(
        bands, bytes_per_sample, header.little_endian_flag, override, step, fallback
    )
    warnings.extend(order_warnings)
    frames = as_little if order != ">" else as_little.view(np.dtype(">u2"))
    if color == "BGR":
        frames = frames[..., ::-1]

    container_bits = 8 * bytes_per_sample
    significant_bits, alignment, bit_warnings = _measure_bits(
        _value_histogram(frames, container_bits), container_bits, header.pixel_depth
    )
    warnings.extend(bit_warnings)

    timestamps = None
    if trailer_offset is not None:
        ticks = np.fromfile(path, dtype=_TRAILER_DTYPE, count=n_frames, offset=trailer_offset)
        timestamps, trailer_warnings = _ticks_to_timestamps(ticks)
        warnings.extend(trailer_warnings)

    return SerVideo(
        path=path,
        header=header,
        frames=frames,
        n_frames=n_frames,
        timestamps=timestamps,
        color=color,
        bayer_pattern=color if color in MOSAIC_PATTERNS else None,
        byte_order=order,
        byte_order_source=source,
        byte_order_margin=margin,
        significant_bits=significant_bits,
        bit_alignment=alignment,
        warnings=tuple(warnings),
    )


FINGERPRINT_SAMPLE_BYTES = 64 * 1024
"""Bytes :func:`ser_fingerprint` reads at each of its three places in the file."""


def ser_fingerprint(path: str | os.PathLike[str]) -> str:
    """A cheap identity of a video file's content: the SHA-256 of its size and of
    ``FINGERPRINT_SAMPLE_BYTES`` at its start (the header), middle and end.

    It changes when another capture replaces the file under the same name, and not when the
    file is copied or touched; it reads at most three samples whatever the file's size.

    Parameters
    ----------
    path : path-like
        The file (any file; it is not parsed).

    Returns
    -------
    str
        64 hexadecimal digits.
    """
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        for offset in (0, size // 2, size - FINGERPRINT_SAMPLE_BYTES):
            handle.seek(max(0, offset))
            digest.update(handle.read(FINGERPRINT_SAMPLE_BYTES))
    return digest.hexdigest()


def _parse_header(raw: bytes, path: Path) -> tuple[SerHeader, list[str]]:
    """Decode the 178 header bytes; reject a FileID that is not text."""
    (
        raw_file_id,
        lu_id,
        color_id,
        flag,
        width,
        height,
        depth,
        frame_count,
        raw_observer,
        raw_instrument,
        raw_telescope,
        ticks_local,
        ticks_utc,
    ) = _HEADER.unpack(raw)
    warnings: list[str] = []
    file_id = _check_file_id(raw_file_id, path, warnings)
    date_local = _header_date(ticks_local, "DateTime (local)", warnings)
    date_utc = _header_date(ticks_utc, "DateTime_UTC", warnings)
    header = SerHeader(
        file_id=file_id,
        lu_id=lu_id,
        color_id=color_id,
        little_endian_flag=flag,
        width=width,
        height=height,
        pixel_depth=depth,
        frame_count=frame_count,
        observer=_decode_text(raw_observer),
        instrument=_decode_text(raw_instrument),
        telescope=_decode_text(raw_telescope),
        date_local=date_local,
        date_utc=date_utc,
    )
    if width <= 0 or height <= 0:
        raise SerFormatError(
            f"{path}: the header gives a frame size of {width} x {height} pixels; width and "
            "height must be positive. The header is damaged: re-export the video from the "
            "capture software (or PIPP/SER Player)."
        )
    return header, warnings


def _check_file_id(raw_file_id: bytes, path: Path, warnings: list[str]) -> str:
    text_bytes = raw_file_id.split(b"\0", 1)[0].strip(b" ")
    if not text_bytes or not all(0x20 <= byte < 0x7F for byte in text_bytes):
        raise SerFormatError(
            f"{path}: the first 14 bytes are {raw_file_id!r}, not a SER FileID such as "
            f"{STANDARD_FILE_ID!r}, so this is not a SER video. Check that the right file was "
            "given; if it is a SER capture, its header is damaged and the capture must be "
            "copied or exported again."
        )
    file_id = text_bytes.decode("ascii")
    if file_id in VARIANT_FILE_IDS:
        warnings.append(
            f"FileID is {file_id!r} instead of {STANDARD_FILE_ID!r} (written by a known "
            "program); read as a standard SER file."
        )
    elif file_id != STANDARD_FILE_ID:
        warnings.append(
            f"FileID is the unrecognised text {file_id!r} instead of {STANDARD_FILE_ID!r}; "
            "read as a standard SER file since the rest of the header is consistent."
        )
    return file_id


def _decode_text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1").rstrip(" ")


def _header_date(ticks: int, field: str, warnings: list[str]) -> datetime | None:
    if ticks == 0:
        return None
    date = _ticks_to_datetime(ticks)
    if date is None:
        warnings.append(
            f"header {field} holds {ticks}, not a plausible date (1970-2200) in .NET ticks; "
            "reported as None."
        )
    return date


def _ticks_to_datetime(ticks: int) -> datetime | None:
    if not _PLAUSIBLE_FIRST_TICKS <= ticks < _PLAUSIBLE_END_TICKS:
        return None
    return _DOTNET_ORIGIN + timedelta(microseconds=ticks // _TICKS_PER_MICROSECOND)


def _datetime_to_ticks(value: datetime) -> int:
    return (value - _DOTNET_ORIGIN) // timedelta(microseconds=1) * _TICKS_PER_MICROSECOND


def _color_name(header: SerHeader, path: Path) -> str:
    name = COLOR_NAMES.get(header.color_id)
    if name is None:
        known = ", ".join(f"{cid} {cname}" for cid, cname in COLOR_NAMES.items())
        raise SerFormatError(
            f"{path}: ColorID {header.color_id} is not a SER colour layout (known: {known}). "
            "The header is damaged or the file is not a SER video; re-export it from the "
            "capture software."
        )
    return name


def _bytes_per_sample(header: SerHeader, path: Path) -> int:
    depth = header.pixel_depth
    if 1 <= depth <= 8:
        return 1
    if 9 <= depth <= 16:
        return 2
    raise SerFormatError(
        f"{path}: PixelDepthPerPlane is {depth}; SER allows 1-8 (one byte per sample) or 9-16 "
        "(two bytes). The header is damaged; re-export the video from the capture software."
    )


def _locate_frames(
    path: Path, header: SerHeader, frame_bytes: int, file_size: int
) -> tuple[int, int | None, list[str]]:
    """Decide how many whole frames to use and where a time-stamp trailer starts, if any.

    The file size wins over ``FrameCount``: a header count of 0 (or negative) is replaced by
    the number of whole frames present; a count larger than the data is cut to the whole frames
    present; a count smaller than the data is replaced by the one count the data fit exactly,
    with or without a trailer (:func:`_count_from_size`), and trusted where they fit none or
    several. A trailer is read only when exactly ``8 * n_frames`` bytes follow the frames.
    """
    data_bytes = file_size - HEADER_SIZE
    whole_frames = data_bytes // frame_bytes
    if whole_frames == 0:
        raise SerFormatError(
            f"{path}: the file holds {data_bytes} bytes after the header, less than one whole "
            f"frame ({header.width} x {header.height}, {frame_bytes} bytes). The capture is "
            "empty or the copy is truncated; copy it again from its source."
        )
    declared = header.frame_count
    warnings: list[str] = []

    if declared <= 0:
        n_frames = whole_frames
        with_trailer = data_bytes // (frame_bytes + 8)
        if (
            data_bytes % (frame_bytes + 8) == 0
            and with_trailer != whole_frames
            and _is_clean_trailer(path, HEADER_SIZE + with_trailer * frame_bytes, with_trailer)
        ):
            n_frames = with_trailer
        warnings.append(
            f"header FrameCount is {declared} (the capture was probably interrupted); "
            f"{n_frames} frames inferred from the file size."
        )
    elif declared > whole_frames:
        n_frames = whole_frames
        partial = data_bytes - whole_frames * frame_bytes
        warnings.append(
            f"header FrameCount is {declared} but the file holds only {whole_frames} whole "
            f"frames (plus {partial} bytes of an incomplete one); the file is probably "
            f"truncated. Using the {whole_frames} whole frames."
        )
        return n_frames, None, warnings
    else:
        n_frames = declared
        extra = data_bytes - declared * frame_bytes
        if extra not in (0, 8 * declared):
            counted = _count_from_size(data_bytes, frame_bytes, declared, header.pixel_depth)
            if counted is not None:
                n_frames, with_trailer = counted
                held = (
                    f"{n_frames} frames and a trailer of {n_frames} time stamps"
                    if with_trailer
                    else f"{n_frames} frames, without a time-stamp trailer"
                )
                warnings.append(
                    f"header FrameCount is {declared} but the {data_bytes} bytes after the "
                    f"header hold exactly {held}; using {n_frames} frames (the file size wins "
                    "over the header's count, which the capture program did not update)."
                )

    trailer_offset = HEADER_SIZE + n_frames * frame_bytes
    extra = file_size - trailer_offset
    if extra == 0:
        return n_frames, None, warnings
    if extra == 8 * n_frames:
        return n_frames, trailer_offset, warnings
    if extra < 8 * n_frames:
        warnings.append(
            f"{extra} bytes follow the {n_frames} frames, fewer than the {8 * n_frames} of a "
            "time-stamp trailer (truncated trailer); time stamps ignored."
        )
    else:
        more_frames = extra // frame_bytes
        room = (
            f" (room for {more_frames} more whole frames than the header declares; they are "
            "ignored, the header count is trusted)"
            if more_frames
            else ""
        )
        warnings.append(
            f"{extra} bytes follow the {n_frames} frames, not the {8 * n_frames} bytes of a "
            f"time-stamp trailer{room}; the extra bytes are ignored and so are time stamps."
        )
        if header.pixel_depth <= 8 and extra - n_frames * frame_bytes in (0, 8 * n_frames):
            warnings.append(
                f"The file holds exactly the data of {n_frames} frames of two bytes per "
                f"sample, but PixelDepthPerPlane is {header.pixel_depth} (one byte): if the "
                "frames look garbled (every other column dark, doubled images), the video is "
                "16-bit with a damaged header; re-export it from the capture software or set "
                "PixelDepthPerPlane to 16."
            )
    return n_frames, None, warnings


def _count_from_size(
    data_bytes: int, frame_bytes: int, declared: int, pixel_depth: int
) -> tuple[int, bool] | None:
    """The number of frames the bytes after the header hold exactly, and whether a trailer of
    one time stamp per frame follows them; None when that number is not one and larger than
    ``declared``, the header's count, which the data do not fit.

    ``data_bytes`` is either ``n * frame_bytes`` (no trailer) or ``n * (frame_bytes + 8)`` (a
    trailer) for one ``n``: a capture program that did not update the header's count (30
    frames and 30 time stamps under a count of 20). Where both readings fit with different
    counts, or the only one that fits would drop frames the header declares, the header is
    trusted. So it is where an 8-bit header's frames of two bytes per sample would explain
    the size just as well (16-bit data under a damaged PixelDepthPerPlane: the count is then
    right and the depth wrong, which a warning names).
    """
    counts = {
        (data_bytes // size, size != frame_bytes)
        for size in (frame_bytes, frame_bytes + 8)
        if data_bytes % size == 0
    }
    if len(counts) != 1:
        return None
    ((count, with_trailer),) = counts
    if count <= declared:
        return None
    if pixel_depth <= 8 and data_bytes in (
        2 * declared * frame_bytes,
        2 * declared * frame_bytes + 8 * declared,
    ):
        return None
    return count, with_trailer


def _is_clean_trailer(path: Path, offset: int, count: int) -> bool:
    """True if ``count`` int64 at ``offset`` are plausible, non-decreasing .NET tick dates."""
    ticks = np.fromfile(path, dtype=_TRAILER_DTYPE, count=count, offset=offset)
    plausible = (ticks >= _PLAUSIBLE_FIRST_TICKS) & (ticks < _PLAUSIBLE_END_TICKS)
    return bool(plausible.all() and np.all(np.diff(ticks) >= 0))


def _ticks_to_timestamps(ticks: np.ndarray) -> tuple[np.ndarray | None, list[str]]:
    """Convert trailer ticks to read-only ``datetime64[ns]``; None (with a reason) if unusable."""
    if not ticks.any():
        return None, ["the time-stamp trailer holds only zeros; time stamps ignored."]
    plausible = (ticks >= _PLAUSIBLE_FIRST_TICKS) & (ticks < _PLAUSIBLE_END_TICKS)
    if not plausible.all():
        bad = int(np.count_nonzero(~plausible))
        first_bad = int(np.flatnonzero(~plausible)[0])
        return None, [
            f"{bad} of {ticks.size} time-stamp trailer values are not plausible dates "
            f"(1970-2200), the first at frame {first_bad}; time stamps ignored."
        ]
    nanoseconds = (ticks - DOTNET_TICKS_AT_UNIX_EPOCH) * 100
    timestamps = nanoseconds.astype("datetime64[ns]")
    timestamps.flags.writeable = False
    warnings: list[str] = []
    backwards = np.flatnonzero(np.diff(ticks) < 0)
    if backwards.size:
        warnings.append(
            f"time stamps go backwards {backwards.size} time(s), first between frames "
            f"{int(backwards[0])} and {int(backwards[0]) + 1}; kept as stored, but do not use "
            "them for timing."
        )
    return timestamps, warnings


def _sampled_frame_indices(n_frames: int) -> list[int]:
    """At most ``_SAMPLED_FRAMES`` evenly spaced frame indices, the first and last included."""
    spaced = np.linspace(0, n_frames - 1, min(n_frames, _SAMPLED_FRAMES)).round()
    return [int(index) for index in np.unique(spaced.astype(np.int64))]


def _sample_bands(frames: np.ndarray) -> list[np.ndarray]:
    """Copy a few bands of rows from a few evenly spaced frames (a few megabytes at most).

    Returns arrays of shape (rows, columns) or (rows, columns, 3) in the mapped dtype.
    """
    n_frames, height, width = frames.shape[:3]
    frame_indices = _sampled_frame_indices(n_frames)
    if height <= _SAMPLED_BANDS * _BAND_ROWS:
        row_starts, rows = [0], height
    else:
        starts = np.linspace(0, height - _BAND_ROWS, _SAMPLED_BANDS).astype(np.int64)
        row_starts, rows = [int(start - start % 2) for start in starts], _BAND_ROWS
    first_column = max(0, (width - _MAX_SAMPLED_COLUMNS) // 2)
    first_column -= first_column % 2
    last_column = min(width, first_column + _MAX_SAMPLED_COLUMNS)
    return [
        np.array(frames[index, start : start + rows, first_column:last_column])
        for index in frame_indices
        for start in row_starts
    ]


def _value_histogram(frames: np.ndarray, container_bits: int) -> np.ndarray:
    """How many times each value occurs in a few evenly spaced whole frames.

    ``frames`` is the view in the byte order decided, so the counts are of the true values. The
    frames are read ``_HISTOGRAM_CHUNK_VALUES`` values at a time, so memory stays bounded
    whatever the frame's size. Returns int64 counts of length ``2**container_bits``.
    """
    counts = np.zeros(1 << container_bits, dtype=np.int64)
    height = frames.shape[1]
    values_per_row = int(np.prod(frames.shape[2:]))
    rows = max(1, _HISTOGRAM_CHUNK_VALUES // values_per_row)
    for index in _sampled_frame_indices(frames.shape[0]):
        for start in range(0, height, rows):
            chunk = np.asarray(frames[index, start : start + rows]).ravel()
            counts += np.bincount(chunk.astype(np.intp), minlength=counts.size)
    return counts


def _roughness(bands: list[np.ndarray], step: int) -> float:
    """Mean absolute difference between pixels ``step`` apart along rows and columns."""
    total = 0.0
    count = 0
    for band in bands:
        values = band.astype(np.float64)
        if values.ndim == 3:
            values = np.moveaxis(values, -1, 0)
        down = values[..., step:, :] - values[..., :-step, :]
        across = values[..., :, step:] - values[..., :, :-step]
        total += float(np.abs(down).sum() + np.abs(across).sum())
        count += down.size + across.size
    return total / count if count else 0.0


def _decide_byte_order(
    bands: list[np.ndarray],
    bytes_per_sample: int,
    flag: int,
    override: str | None,
    step: int,
    fallback: str | None = None,
) -> tuple[str, str, float | None, list[str]]:
    """Pick the byte order of 16-bit data: override, else the pixels, else ``fallback``, else
    the header flag."""
    if bytes_per_sample == 1:
        warnings = []
        if override is not None:
            warnings.append(
                f"byte_order={override!r} was given but the pixels are single bytes; ignored."
            )
        return "|", "single-byte", None, warnings

    rough_little = _roughness(bands, step)
    rough_big = _roughness([band.byteswap() for band in bands], step)
    flag_order = "<" if flag == 0 else ">"

    if override is not None:
        chosen, other = (rough_little, rough_big) if override == "<" else (rough_big, rough_little)
        margin = _ratio(other, chosen)
        warnings = []
        if margin < 1.0 / _DECISIVE_MARGIN:
            warnings.append(
                f"byte order {override!r} was forced, but the pixels look {1.0 / margin:.3g} "
                "times smoother in the other byte order; check the override."
            )
        return override, "override", margin, warnings

    smoother = "<" if rough_little <= rough_big else ">"
    margin = _ratio(max(rough_little, rough_big), min(rough_little, rough_big))
    if margin >= _DECISIVE_MARGIN:
        warnings = []
        if smoother != flag_order:
            warnings.append(
                f"header LittleEndian flag is {flag}, which under the common convention "
                f"(0 = little-endian) means {_order_words(flag_order)} data, but the pixels are "
                f"{margin:.3g} times smoother as {_order_words(smoother)}; using "
                f"{_order_words(smoother)}."
            )
        if fallback is not None and smoother != fallback:
            warnings.append(
                f"the pixels are {margin:.3g} times smoother as {_order_words(smoother)} than "
                f"as the fallback byte order given ({_order_words(fallback)}); using "
                f"{_order_words(smoother)}."
            )
        return smoother, "detected", margin, warnings

    undecided = (
        f"the pixels do not reveal the byte order (smoothness ratio {margin:.3g}, below "
        f"{_DECISIVE_MARGIN:g}); "
    )
    if fallback is not None:
        chosen, source = fallback, "fallback"
        followed = (
            f"followed the fallback byte order given, {_order_words(fallback)}, rather than "
            f"the header flag {flag}."
        )
    else:
        chosen, source = flag_order, "header-flag"
        followed = (
            f"followed the header flag {flag} as {_order_words(flag_order)} (common "
            "convention: 0 = little-endian). If the images look like noise, open the file "
            "with byte_order='<' or '>'."
        )
    chosen_margin = _ratio(
        rough_big if chosen == "<" else rough_little,
        rough_little if chosen == "<" else rough_big,
    )
    return chosen, source, chosen_margin, [undecided + followed]


def _ratio(numerator: float, denominator: float) -> float:
    if denominator == 0.0:
        return 1.0 if numerator == 0.0 else float("inf")
    return numerator / denominator


def _order_words(order: str) -> str:
    return "little-endian" if order == "<" else "big-endian"


def _measure_bits(
    counts: np.ndarray, container_bits: int, depth: int
) -> tuple[int, str, list[str]]:
    """Measure the bits the sampled values really use and how they sit in the container.

    ``counts`` is :func:`_value_histogram`'s. Each alignment is reported only on evidence (see
    :attr:`SerVideo.bit_alignment`); values that fit both data stored from the lowest bit and
    data shifted up are ``"undetermined"``, never guessed.
    """
    values = np.flatnonzero(counts[1:]) + 1
    if values.size == 0:
        bits = min(depth, container_bits)
        return (
            bits,
            UNDETERMINED_ALIGNMENT,
            [
                f"the sampled frames are entirely zero; the bit alignment is undetermined and "
                f"the significant bits are taken from the header depth ({bits})."
            ],
        )
    # OR over the distinct values is OR over every value: its top bit is the range reached,
    # its lowest set bit how many low bits are zero in every value.
    combined = int(np.bitwise_or.reduce(values))
    top_bit = combined.bit_length()
    zero_low_bits = (combined & -combined).bit_length() - 1
    distinct_nonzero = int(values.size)
    beyond_header = (
        f"pixel values reach {top_bit} bits although the header PixelDepthPerPlane is {depth}."
    )

    if zero_low_bits == 0:
        # An odd value: nothing is shifted up, whatever the number of distinct values.
        if top_bit == container_bits:
            warnings = []
            if depth < container_bits:
                warnings.append(
                    f"pixel values use all {container_bits} bits although the header "
                    f"PixelDepthPerPlane is {depth}."
                )
            return container_bits, "full", warnings
        if top_bit <= depth < container_bits:
            return depth, "lsb", []
        return top_bit, "lsb", [beyond_header] if top_bit > depth else []

    if distinct_nonzero >= _MIN_DISTINCT_VALUES_FOR_SHIFT:
        bits = container_bits - zero_low_bits
        return (
            bits,
            "msb",
            [
                f"pixel values are {bits}-bit data stored shifted up by {zero_low_bits} bits "
                f"(multiples of {1 << zero_low_bits}); header PixelDepthPerPlane is {depth}."
            ],
        )
    header_shift = container_bits - depth
    if top_bit > depth and 0 < header_shift <= zero_low_bits:
        # Data stored from the lowest bit stay below 2**depth, so values beyond it that are
        # multiples of the header's shift are the header's depth shifted up, however few.
        return (
            depth,
            "msb",
            [
                f"pixel values reach {int(values[-1])}, beyond the {depth} bits of the header "
                f"PixelDepthPerPlane, and are all multiples of {1 << header_shift}: {depth}-bit "
                f"data stored shifted up by {header_shift} bits."
            ],
        )
    warnings = [
        f"the sampled values are all multiples of {1 << zero_low_bits} but take only "
        f"{distinct_nonzero} distinct nonzero values (fewer than "
        f"{_MIN_DISTINCT_VALUES_FOR_SHIFT}), which fits both data stored from the lowest bit "
        f"and data shifted up by {zero_low_bits} bits: the bit alignment is undetermined."
    ]
    if top_bit > depth:
        warnings.append(beyond_header)
    return min(container_bits, max(depth, top_bit)), UNDETERMINED_ALIGNMENT, warnings


def alignment_mismatch(first: SerVideo, second: SerVideo) -> str:
    """Why two videos' values provably sit differently in their containers, or ``""``.

    One stored shifted up (``"msb"``) and the other from the lowest bit or over the whole
    container (``"lsb"``, ``"full"``) hold values on different scales, e.g. a dark that cannot
    be subtracted from its video. An ``"undetermined"`` alignment is no evidence either way,
    so it never makes a mismatch: whether such values fit is left to checks on the values
    themselves.

    Parameters
    ----------
    first, second : SerVideo
        Videos of the same sample size (compare ``frames.dtype.itemsize`` first).

    Returns
    -------
    str
        ``"values stored <first's> against values stored <second's>"``, e.g. ``"values stored
        shifted up to the top bits (12-bit values times 16) against values stored from the
        lowest bit"``; ``""`` when nothing proves a difference.
    """
    if UNDETERMINED_ALIGNMENT in (first.bit_alignment, second.bit_alignment):
        return ""
    # Data shifted up of any depth reach the container's top, and "lsb" and "full" data both
    # start from its lowest bit: within each pair the values are on one scale.
    if (first.bit_alignment == "msb") == (second.bit_alignment == "msb"):
        return ""
    return (
        f"values stored {_alignment_words(first)} against values stored {_alignment_words(second)}"
    )


def _alignment_words(video: SerVideo) -> str:
    if video.bit_alignment != "msb":
        return _ALIGNMENT_WORDS[video.bit_alignment]
    shift = (8 if video.header.pixel_depth <= 8 else 16) - video.significant_bits
    return f"shifted up to the top bits ({video.significant_bits}-bit values times {1 << shift})"


def _normalize_byte_order(byte_order: str) -> str:
    spellings = {"<": "<", "little": "<", ">": ">", "big": ">"}
    if byte_order not in spellings:
        raise ValueError(
            f"byte_order={byte_order!r} is not understood; use '<' or 'little' for "
            "little-endian, '>' or 'big' for big-endian."
        )
    return spellings[byte_order]


# --------------------------------------------------------------------------------------------
# Writing


def write_ser(
    path: str | os.PathLike[str],
    frames: np.ndarray | Iterable[np.ndarray],
    *,
    color: str = "MONO",
    depth: int | None = None,
    byte_order: str = "<",
    flag: int | None = None,
    timestamps: np.ndarray | None = None,
    file_id: str | bytes = STANDARD_FILE_ID,
    lu_id: int = 0,
    observer: str = "",
    instrument: str = "",
    telescope: str = "",
    date_local: datetime | int | None = None,
    date_utc: datetime | int | None = None,
    frame_count: int | None = None,
    trailer_bytes: bytes | None = None,
) -> Path:
    """Write frames as a SER v3 video, atomically, streaming one frame at a time.

    Parameters
    ----------
    path : path-like
        Destination; written through a temporary sibling and renamed, so a failure leaves no
        partial file.
    frames : numpy.ndarray or iterable of numpy.ndarray
        ``uint8`` or ``uint16`` (any byte order) pixels. An array of shape (n, h, w) for MONO
        and mosaics or (n, h, w, 3) in R, G, B order for ``"RGB"`` and ``"BGR"``; or an
        iterable of (h, w) / (h, w, 3) frames, consumed one at a time so that files larger
        than memory can be written.
    color : str
        ``"MONO"``, a mosaic pattern (``"RGGB"``, ``"GRBG"``, ``"GBRG"``, ``"BGGR"``,
        ``"CYYM"``, ``"YCMY"``, ``"YMCY"``, ``"MYYC"``), ``"RGB"`` or ``"BGR"``. ``"BGR"``
        files store each pixel as B, G, R.
    depth : int or None
        ``PixelDepthPerPlane`` to store: 1-8 for ``uint8``, 9-16 for ``uint16``. Defaults to 8
        or 16. Values are written as given (shifted 12-bit data may be stored with depth 12).
    byte_order : {"<", ">", "little", "big"}
        Byte order of 16-bit pixel data in the file (no effect on 8-bit data).
    flag : int or None
        Raw ``LittleEndian`` header value. None writes the common convention that capture
        programs and Siril use: 0 for little-endian data (and for 8-bit data), 1 for
        big-endian. Any int32 may be given, e.g. to write the specification's inverted flag.
    timestamps : numpy.ndarray or None
        ``datetime64`` UTC capture time per frame, written as a trailer of int64 .NET ticks.
    file_id : str or bytes
        FileID, at most 14 bytes, NUL-padded.
    lu_id : int
        LuID.
    observer, instrument, telescope : str
        Latin-1 text of at most 40 bytes each (40 bytes are stored without a terminating NUL).
    date_local, date_utc : datetime or int or None
        Header dates. ``date_local`` stores the wall-clock reading of the datetime given;
        ``date_utc`` converts an aware datetime to UTC (a naive one is taken as UTC). An int is
        stored as raw .NET ticks; None stores 0.
    frame_count : int or None
        ``FrameCount`` to store; None stores the number of frames written.
    trailer_bytes : bytes or None
        Raw bytes appended after the frames instead of a time-stamp trailer.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        On an unsupported dtype, a shape that does not match ``color`` or the first frame, an
        unknown colour or byte order, a depth outside the dtype's range, text that does not fit
        its field, no frames, or time stamps that do not match the frames.
    """
    color_id = _validated_color(color)
    order = _normalize_byte_order(byte_order)
    fixed_fields = _encode_fixed_fields(
        file_id, lu_id, observer, instrument, telescope, date_local, date_utc
    )
    if timestamps is not None and trailer_bytes is not None:
        raise ValueError(
            "give either timestamps (written as a .NET-tick trailer) or trailer_bytes (raw "
            "bytes), not both."
        )
    trailer_ticks = None if timestamps is None else _timestamps_to_ticks(timestamps)
    if frame_count is not None:
        _check_int32("frame_count", frame_count)
    if flag is not None:
        _check_int32("flag", flag)

    first, remaining = _first_and_rest(frames)
    _check_frame(first, 0, color, None)
    frame_shape, frame_dtype = first.shape, np.dtype(first.dtype)
    height, width = frame_shape[:2]
    depth = _validated_depth(depth, frame_dtype)
    file_dtype = np.dtype(np.uint8) if frame_dtype.itemsize == 1 else np.dtype(f"{order}u2")
    stored_flag = (
        flag if flag is not None else (1 if order == ">" and file_dtype.itemsize == 2 else 0)
    )

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(bytes(HEADER_SIZE))
        written = 0
        for index, frame in enumerate(_chain(first, remaining)):
            frame = np.asarray(frame)
            if index:
                _check_frame(frame, index, color, (frame_shape, frame_dtype))
            if color == "BGR":
                frame = frame[..., ::-1]
            handle.write(np.ascontiguousarray(frame, dtype=file_dtype).data)
            written += 1
        if trailer_ticks is not None:
            if trailer_ticks.size != written:
                raise ValueError(
                    f"{trailer_ticks.size} timestamps were given for {written} frames; give "
                    "exactly one per frame."
                )
            handle.write(trailer_ticks.astype(_TRAILER_DTYPE).tobytes())
        elif trailer_bytes is not None:
            handle.write(bytes(trailer_bytes))
        handle.seek(0)
        handle.write(
            _HEADER.pack(
                fixed_fields["file_id"],
                lu_id,
                color_id,
                stored_flag,
                width,
                height,
                depth,
                written if frame_count is None else frame_count,
                fixed_fields["observer"],
                fixed_fields["instrument"],
                fixed_fields["telescope"],
                fixed_fields["date_local"],
                fixed_fields["date_utc"],
            )
        )
    return Path(path)


def _validated_color(color: str) -> int:
    if color not in COLOR_IDS:
        raise ValueError(
            f"color={color!r} is not a SER colour layout; use one of {', '.join(COLOR_IDS)}."
        )
    return COLOR_IDS[color]


def _validated_depth(depth: int | None, dtype: np.dtype) -> int:
    low, high = (1, 8) if dtype.itemsize == 1 else (9, 16)
    if depth is None:
        return high
    if not isinstance(depth, (int, np.integer)) or not low <= depth <= high:
        raise ValueError(
            f"depth={depth!r} does not fit {dtype.name} frames; use {low}-{high} (or None for "
            f"{high}), or convert the frames to the other integer width."
        )
    return int(depth)


def _check_int32(name: str, value: int) -> None:
    if not isinstance(value, (int, np.integer)) or not -(2**31) <= value < 2**31:
        raise ValueError(f"{name}={value!r} must be an integer that fits a signed 32-bit field.")


def _encode_fixed_fields(
    file_id: str | bytes,
    lu_id: int,
    observer: str,
    instrument: str,
    telescope: str,
    date_local: datetime | int | None,
    date_utc: datetime | int | None,
) -> dict[str, Any]:
    _check_int32("lu_id", lu_id)
    raw_id = file_id if isinstance(file_id, bytes) else _encode_latin1("file_id", file_id)
    if len(raw_id) > 14:
        raise ValueError(f"file_id={file_id!r} is longer than the 14 bytes of the SER FileID.")
    fields: dict[str, Any] = {"file_id": raw_id.ljust(14, b"\0")}
    for name, text in (
        ("observer", observer),
        ("instrument", instrument),
        ("telescope", telescope),
    ):
        raw = _encode_latin1(name, text)
        if len(raw) > _STRING_FIELD_SIZE:
            raise ValueError(
                f"{name} is {len(raw)} bytes long; the SER field holds {_STRING_FIELD_SIZE}. "
                "Shorten it."
            )
        fields[name] = raw
    fields["date_local"] = _encode_header_date("date_local", date_local, keep_wall_clock=True)
    fields["date_utc"] = _encode_header_date("date_utc", date_utc, keep_wall_clock=False)
    return fields


def _encode_latin1(name: str, text: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a str, got {type(text).__name__}.")
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"{name}={text!r} has characters outside latin-1, which SER text fields cannot "
            "hold; replace them."
        ) from error


def _encode_header_date(name: str, value: datetime | int | None, *, keep_wall_clock: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, datetime):
        if value.tzinfo is None or keep_wall_clock:
            value = value.replace(tzinfo=UTC)
        else:
            value = value.astimezone(UTC)
        return _datetime_to_ticks(value)
    if isinstance(value, (int, np.integer)) and -(2**63) <= value < 2**63:
        return int(value)
    raise ValueError(f"{name} must be a datetime, raw .NET ticks (int64) or None; got {value!r}.")


def _timestamps_to_ticks(timestamps: np.ndarray) -> np.ndarray:
    values = np.asarray(timestamps)
    if values.dtype.kind != "M" or values.ndim != 1:
        raise ValueError(
            "timestamps must be a 1-D numpy datetime64 array (UTC), one per frame; got "
            f"dtype {values.dtype} with shape {values.shape}."
        )
    if np.isnat(values).any():
        raise ValueError("timestamps contain NaT; give a valid UTC time for every frame.")
    nanoseconds = values.astype("datetime64[ns]").astype(np.int64)
    return nanoseconds // 100 + DOTNET_TICKS_AT_UNIX_EPOCH


def _first_and_rest(
    frames: np.ndarray | Iterable[np.ndarray],
) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    if isinstance(frames, np.ndarray):
        if frames.ndim not in (3, 4):
            raise ValueError(
                f"frames has shape {frames.shape}; give (n, height, width) or "
                "(n, height, width, 3), or an iterable of single frames."
            )
        if frames.shape[0] == 0:
            raise ValueError("frames holds no frame; a SER video needs at least one.")
        return frames[0], (frames[index] for index in range(1, frames.shape[0]))
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise ValueError("frames yielded no frame; a SER video needs at least one.")
    return np.asarray(first), iterator


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _check_frame(
    frame: np.ndarray,
    index: int,
    color: str,
    expected: tuple[tuple[int, ...], np.dtype] | None,
) -> None:
    if frame.dtype.kind != "u" or frame.dtype.itemsize not in (1, 2):
        raise ValueError(
            f"frame {index} has dtype {frame.dtype}; SER stores uint8 or uint16. Convert it "
            "(e.g. with np.clip then .astype(np.uint16)) before writing."
        )
    wants_planes = color in THREE_PLANE_COLORS
    if wants_planes and (frame.ndim != 3 or frame.shape[2] != 3):
        raise ValueError(
            f"frame {index} has shape {frame.shape}; color={color!r} needs (height, width, 3) "
            "frames in R, G, B order."
        )
    if not wants_planes and frame.ndim != 2:
        raise ValueError(
            f"frame {index} has shape {frame.shape}; color={color!r} needs (height, width) "
            "frames (use color='RGB' or 'BGR' for three planes)."
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame {index} has shape {frame.shape}; it must not be empty.")
    if expected is not None:
        shape, dtype = expected
        if frame.shape != shape or frame.dtype.itemsize != dtype.itemsize:
            raise ValueError(
                f"frame {index} has shape {frame.shape} and dtype {frame.dtype}, but the first "
                f"frame has {shape} and {dtype}; all frames of a SER video must match."
            )
