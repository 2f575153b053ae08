"""Candidate catalogs (``psfcat.csv``) and the dataset's master index.

``psfcat.csv`` holds one row per candidate detected on a job's difference image, with exactly
the columns ``PSFCAT_COLUMNS``. ``x`` and ``y`` are 0-based pixel coordinates (column, row;
pixel centres at integer values, the photutils convention). ``label`` is 1 for real, 0 for bogus.

The master index concatenates all jobs' candidates with the columns ``MASTER_INDEX_COLUMNS``:
the published schema (``id, jid, x, y, sharpness, roundness1, roundness2, npix, peak, flux, mag,
daofind_mag, flags, match, label, image_filename``, in that order), then ``split`` (the job's
train/validation/test split) and ``in_image``. ``jid`` is text (a numeric job folder such as
``000678`` keeps its leading zeros). The id columns ``id`` (int64) and ``match`` (nullable
Int64, empty when missing) are integers parsed from their digits, never through float64, whose
53-bit mantissa would round 19-digit ids such as ZTF candids; an id beyond the int64 range is
refused. The other numeric columns are float64 except ``label`` (int64); ``in_image`` is bool.
``image_filename`` is the job tensor's path relative to the dataset folder, ``images/<jid>.npy``.
Read these tables back with :func:`read_index_csv`, which restores exactly these types (pandas'
own inference would turn ``000678`` into 678 and an empty table's columns into text).

Candidates whose position lies outside the image (``x`` not in [-0.5, W - 0.5) or ``y`` not in
[-0.5, H - 0.5)) are kept, with ``in_image`` False: dropping them would hide a catalog problem,
and cutout code pads at edges anyway. Filter on ``in_image`` where a centred cutout is required.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from astro_assets.io.atomic import atomic_path
from astro_assets.io.fits import INCOMPLETE_ADVICE, IncompleteFileError
from astro_assets.io.paths import check_key

if TYPE_CHECKING:
    # pandas takes 0.3 s to import and the code location imports this module for its
    # column names in every step process, so the functions import it where they use it.
    import pandas as pd

__all__ = [
    "MASTER_INDEX_COLUMNS",
    "PSFCAT_COLUMNS",
    "SEED_INDEX_COLUMNS",
    "IncompletePsfcatError",
    "PsfcatFormatError",
    "build_master_index",
    "label_match_disagreements",
    "read_index_csv",
    "read_psfcat",
    "write_master_index",
]

PSFCAT_COLUMNS: tuple[str, ...] = (
    "id",
    "x",
    "y",
    "sharpness",
    "roundness1",
    "roundness2",
    "npix",
    "peak",
    "flux",
    "mag",
    "daofind_mag",
    "flags",
    "match",
    "label",
)
"""The columns of a job's ``psfcat.csv`` (the data contract)."""

SEED_INDEX_COLUMNS: tuple[str, ...] = ("id", "jid", *PSFCAT_COLUMNS[1:], "image_filename")
"""The published ``master_index.csv`` schema, in order."""

MASTER_INDEX_COLUMNS: tuple[str, ...] = (*SEED_INDEX_COLUMNS, "split", "in_image")
"""Columns of the master index written by this package: the published ones, then ours."""

ID_COLUMNS: tuple[str, ...] = ("id", "match")
"""Integer id columns, kept exact: ``id`` (required, int64) and ``match`` (nullable Int64)."""

_FLOAT_COLUMNS = tuple(name for name in PSFCAT_COLUMNS if name not in ("label", *ID_COLUMNS))
_TEXT_COLUMNS = ("jid", "image_filename", "split")
_INDEX_DTYPES: Mapping[str, object] = {
    "id": np.int64,
    "match": "Int64",
    **dict.fromkeys(_FLOAT_COLUMNS, np.float64),
    "label": np.int64,
    **dict.fromkeys(_TEXT_COLUMNS, object),
    "in_image": bool,
}
"""The type of every column of the master index and of a job's candidates table."""
_REQUIRED_FINITE = ("x", "y")
_MISSING_TOKENS = frozenset({"", "nan"})
# Spellings of a missing value that other tools write; refused (the contract has one), but
# named as such in the error.
_OTHER_MISSING_SPELLINGS = frozenset({"na", "n/a", "null", "none", "-", "?"})
_DIGITS = re.compile(r"[+-]?[0-9]+")
_INT64_RANGE = (-(2**63), 2**63 - 1)
# Integral values written as floats ("12.0") are exact in float64 up to 2**53.
_EXACT_FLOAT_LIMIT = 2**53


# The end of the file read to tell whether its last line was cut: far more than a line.
_TAIL_BYTES = 64 * 1024
# The start of the file read to tell a UTF-16 or UTF-32 one: within the header line.
_ENCODING_SNIFF_BYTES = 64


class PsfcatFormatError(ValueError):
    """A ``psfcat.csv`` that does not follow the contract."""


class IncompletePsfcatError(IncompleteFileError, PsfcatFormatError):
    """A ``psfcat.csv`` that is empty or whose last line is cut, as while it is being copied."""


def _check_complete(path: Path) -> None:
    """Raise :class:`IncompletePsfcatError` for an empty file or one whose last line is cut.

    A line is taken as cut when the file does not end with a line break and its last line has
    fewer fields than the header or ends inside a UTF-8 character: a whole last line without a
    final line break is common and read. Fields are counted on the bytes, as the delimiter is
    ASCII and a cut may split a UTF-8 character; the catalogue's fields are numbers, never
    quoted text with commas.
    """
    size = path.stat().st_size
    if size == 0:
        raise IncompletePsfcatError(
            f"{path} is empty; {INCOMPLETE_ADVICE} (it needs the header line "
            f"{','.join(PSFCAT_COLUMNS)})"
        )
    with path.open("rb") as stream:
        start = stream.read(_ENCODING_SNIFF_BYTES)
        # UTF-16's line break is two bytes: its lines would look cut, as by a copy.
        _check_not_wide_encoding(path, start)
        stream.seek(0)
        header = stream.readline()
        if header.endswith(b"\n") and size > len(header):
            stream.seek(max(len(header), size - _TAIL_BYTES))
            tail = stream.read()
        else:
            # A header alone: a cut one lacks columns, which read_psfcat says.
            return
    if tail.endswith((b"\n", b"\r")):
        return
    last = tail.rsplit(b"\n", 1)[-1]
    if last.count(b",") < header.count(b","):
        raise IncompletePsfcatError(
            f"{path}: the last line ends without a line break after "
            f"{last.count(b',') + 1} of the header's {header.count(b',') + 1} fields; "
            f"{INCOMPLETE_ADVICE}"
        )
    try:
        last.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.end == len(last) and err.reason == "unexpected end of data":
            raise IncompletePsfcatError(
                f"{path}: the file ends inside a UTF-8 character, without a line break; "
                f"{INCOMPLETE_ADVICE}"
            ) from None


_WIDE_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32", "UTF-32"),
    (b"\xff\xfe", "UTF-16", "UTF-16"),
    (b"\xfe\xff", "UTF-16", "UTF-16"),
)
"""Byte-order marks of the wide encodings: (mark, encoding, name for iconv), UTF-32 first as
its little-endian mark begins with UTF-16's."""


def _wide_encoding(start: bytes) -> tuple[str, str] | None:
    """The wide encoding that the first bytes of a file are in, as (encoding, iconv name).

    A byte-order mark tells; without one, text of ASCII characters in UTF-16 has a NUL byte at
    every other position (odd ones for little-endian, even ones for big-endian), which UTF-8
    text never has. None when neither is seen.
    """
    for mark, encoding, iconv_name in _WIDE_BOMS:
        if start.startswith(mark):
            return encoding, iconv_name
    pairs = len(start) // 2
    if pairs < 2:
        return None
    even, odd = start[0 : 2 * pairs : 2], start[1 : 2 * pairs : 2]
    if odd.count(0) == pairs and even.count(0) == 0:
        return "UTF-16 little-endian without a byte-order mark", "UTF-16LE"
    if even.count(0) == pairs and odd.count(0) == 0:
        return "UTF-16 big-endian without a byte-order mark", "UTF-16BE"
    return None


def _check_not_wide_encoding(path: Path, start: bytes) -> None:
    """Raise :class:`PsfcatFormatError` for a catalogue saved as UTF-16 or UTF-32.

    Spreadsheets ("Unicode Text") and PowerShell write UTF-16 by default. Read as UTF-8, its
    two-byte line breaks would make the file look cut short, as while it is copied, and the
    job would keep its earlier products for ever; it is a format error instead, as a Latin-1
    catalogue's is.
    """
    found = _wide_encoding(start)
    if found is None:
        return
    encoding, iconv_name = found
    raise PsfcatFormatError(
        f"{path} is not UTF-8 (it is {encoding}); the catalog must be UTF-8 text (plain ASCII "
        f"is UTF-8): convert it, e.g. with `iconv -f {iconv_name} -t UTF-8 psfcat.csv > "
        "psfcat-utf8.csv`, then put the converted file in its place"
    )


def _row_reference(index: int) -> str:
    return f"row {index} (file line {index + 2})"


def _integer_ids(
    text: pd.Series,
    name: str,
    path: Path,
    error: type[ValueError] = ValueError,
    *,
    required: bool = False,
    remedy: str,
) -> pd.Series:
    """Parse one column of integer ids exactly into an int64 (or nullable Int64) series.

    Parameters
    ----------
    text : pandas.Series of str
        The cells, stripped; empty and ``nan`` (any case) are missing.
    name : str
        Column name, for messages.
    path : pathlib.Path
        The file, for messages.
    error : type
        The exception class raised.
    required : bool
        Whether every cell must hold an id (``id``, which identifies a candidate).
    remedy : str
        What to do about a missing id, which only the caller knows (fix the catalogue, or
        write the index again).

    Returns
    -------
    pandas.Series
        In the order of ``text``: dtype int64 if ``required``, else Int64 with <NA> where
        missing.

    Raises
    ------
    ValueError (``error``)
        For a cell that is not a number, not a whole number, or outside the int64 range, or
        that is missing where ``required``; the message names the column, the row and the
        value.
    """
    import pandas as pd

    values: list[int | None] = []
    for row, cell in enumerate(text.tolist()):
        if cell.lower() in _MISSING_TOKENS:
            if required:
                raise error(
                    f"{path}: column {name!r}, {_row_reference(row)} is missing; every "
                    f"candidate needs an id: {remedy}"
                )
            values.append(None)
            continue
        # Digits go through int(), never float64: a 19-digit ZTF candid has more significant
        # digits than float64's 15-16 and would be rounded to another id.
        if _DIGITS.fullmatch(cell):
            value = int(cell)
        else:
            try:
                number = float(cell)
            except ValueError:
                raise error(
                    f"{path}: column {name!r}, {_row_reference(row)}: {cell!r} is not a number; "
                    "fix the catalog"
                ) from None
            if not (number.is_integer() and abs(number) <= _EXACT_FLOAT_LIMIT):
                raise error(
                    f"{path}: column {name!r}, {_row_reference(row)}: {cell!r} is not a whole "
                    f"number; {name} holds integer ids (write them as digits, e.g. 1234567)"
                )
            value = int(number)
        if not _INT64_RANGE[0] <= value <= _INT64_RANGE[1]:
            raise error(
                f"{path}: column {name!r}, {_row_reference(row)}: {cell} is outside the 64-bit "
                f"integer range [{_INT64_RANGE[0]}, {_INT64_RANGE[1]}]; ids must fit in int64"
            )
        values.append(value)
    return pd.Series(values, dtype=np.int64 if required else "Int64")


def _named_columns(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The columns ``PSFCAT_COLUMNS`` of ``raw``, found whatever their case and surrounding
    spaces (``ID, X, Y`` as IRAF- and SExtractor-style exports write them), named as there.

    Raises
    ------
    PsfcatFormatError
        If a column is missing (all of them listed), or several header fields name the same
        column (``id`` and ``ID``, or ``x`` twice): which one holds it cannot be told.
    """
    found: dict[str, list[str]] = {}
    for column in raw.columns:
        found.setdefault(str(column).strip().lower(), []).append(column)
    missing = [name for name in PSFCAT_COLUMNS if name not in found]
    if missing:
        raise PsfcatFormatError(
            f"{path} lacks column(s) {missing}; the header must contain "
            f"{','.join(PSFCAT_COLUMNS)}{_hint_clause(_header_hint(path))}"
        )
    clashes = [found[name] for name in PSFCAT_COLUMNS if len(found[name]) > 1]
    if clashes:
        listing = "; ".join(" and ".join(repr(column) for column in clash) for clash in clashes)
        raise PsfcatFormatError(
            f"{path}: header fields that are equal or differ only by case or spaces name the "
            "same column "
            f"({listing}), so which one holds it cannot be told; rename or remove all but one"
        )
    return raw[[found[name][0] for name in PSFCAT_COLUMNS]].set_axis(list(PSFCAT_COLUMNS), axis=1)


def read_psfcat(
    path: str | os.PathLike[str], *, jid: str, image_shape: Sequence[int]
) -> pd.DataFrame:
    """Read and validate one job's ``psfcat.csv``.

    Parameters
    ----------
    path : path-like
        The CSV file, UTF-8 (header line, then one line per candidate; a delimiter at the end
        of every data line is tolerated). Column names are matched whatever their case and
        surrounding spaces (``ID``, `` X``), unless two of them name the same column. Extra
        columns are ignored.
    jid : str
        Job id; a safe path component (letters, digits, ``.``, ``_``, ``-``).
    image_shape : (H, W)
        Shape of the job's images, to decide ``in_image``.

    Returns
    -------
    pandas.DataFrame
        Columns ``SEED_INDEX_COLUMNS`` then ``in_image``; one row per candidate in file order.
        ``id`` is int64 and ``match`` nullable Int64, both exact (see the module docstring).
        Empty cells and ``nan`` are missing (allowed except in ``id``, ``x``, ``y``,
        ``label``).

    Raises
    ------
    PsfcatFormatError
        Missing columns (all listed), header fields naming the same column (``id`` and
        ``ID``), a non-numeric value (column and row named), an id that
        is not a whole number or lies outside the int64 range, a missing or non-finite
        ``id``/``x``/``y``, a ``label`` other than 0 or 1, repeated ids, or a file that is not
        UTF-8 (the first offending line named); :class:`IncompletePsfcatError` (a subclass)
        for an empty file or one whose last line is cut (no final line break and fewer fields
        than the header), as while it is still being copied.
    FileNotFoundError
        If ``path`` does not exist.
    """
    import pandas as pd

    check_key(jid)
    if len(image_shape) != 2 or min(image_shape) < 1:
        raise ValueError(f"image_shape must be (H, W) with H, W >= 1, got {tuple(image_shape)}")
    height, width = (int(n) for n in image_shape)
    path = Path(path)
    _check_complete(path)
    try:
        # index_col=False: with a delimiter at the end of each data line (one field more than
        # the header), pandas would otherwise move the first column, id, into the index. It
        # then drops the extra fields with a warning, checked here instead.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            raw = pd.read_csv(
                path, dtype=str, keep_default_na=False, skipinitialspace=True, index_col=False
            )
        extra_fields = False
        for record in caught:
            if issubclass(record.category, pd.errors.ParserWarning):
                extra_fields = True
            else:
                warnings.warn_explicit(
                    record.message, record.category, record.filename, record.lineno
                )
        if extra_fields:
            _check_extra_fields_are_empty(path)
    except pd.errors.EmptyDataError as err:
        raise PsfcatFormatError(
            f"{path} is empty; it needs the header line {','.join(PSFCAT_COLUMNS)}"
        ) from err
    except UnicodeDecodeError as err:
        raise PsfcatFormatError(_not_utf8_message(path)) from err
    # pandas renames a repeated header field (x, x -> x, x.1): the header as written tells.
    with open(path, newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), [])
    if len(header) == len(raw.columns):
        raw = raw.set_axis(header, axis=1)
    raw = _named_columns(raw, path)
    frame = pd.DataFrame(index=pd.RangeIndex(len(raw)))
    for name in PSFCAT_COLUMNS:
        text = raw[name].str.strip()
        if name in ID_COLUMNS:
            frame[name] = _integer_ids(
                text,
                name,
                path,
                PsfcatFormatError,
                required=name == "id",
                remedy="fix the catalog, then materialize job_tensors for this job again",
            )
            continue
        values = pd.to_numeric(text, errors="coerce").astype(np.float64)
        bad = values.isna() & ~text.str.lower().isin(_MISSING_TOKENS)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            cell = raw[name].iloc[row]
            missing_hint = (
                f"; a missing value is written as an empty cell or nan, not {cell.strip()!r}"
                if cell.strip().lower() in _OTHER_MISSING_SPELLINGS
                else ""
            )
            raise PsfcatFormatError(
                f"{path}: column {name!r}, {_row_reference(row)}: {cell!r} is not a number "
                f"({int(bad.sum())} such value(s) in this column){missing_hint}; fix the catalog"
            )
        frame[name] = values
    for name in _REQUIRED_FINITE:
        bad = ~np.isfinite(frame[name].to_numpy())
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise PsfcatFormatError(
                f"{path}: column {name!r}, {_row_reference(row)} is missing or not finite; "
                "every candidate needs a position"
            )
    labels = frame["label"].to_numpy()
    bad = ~np.isin(labels, (0.0, 1.0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise PsfcatFormatError(
            f"{path}: column 'label', {_row_reference(row)} is {raw['label'].iloc[row]!r}; "
            "labels must be 0 (bogus) or 1 (real)"
        )
    repeated = frame["id"][frame["id"].duplicated()].unique()
    if len(repeated):
        raise PsfcatFormatError(
            f"{path}: candidate id(s) {sorted(repeated.tolist())[:10]} occur more than once; "
            "ids must be unique within a job"
        )
    x = frame["x"].to_numpy()
    y = frame["y"].to_numpy()
    result = pd.DataFrame(
        {
            "id": frame["id"],
            "jid": pd.Series([jid] * len(frame), dtype=object),
            **{name: frame[name] for name in PSFCAT_COLUMNS[1:-1]},
            "label": frame["label"].astype(np.int64),
            "image_filename": pd.Series([f"images/{jid}.npy"] * len(frame), dtype=object),
            "in_image": (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5),
        }
    )
    return result[[*SEED_INDEX_COLUMNS, "in_image"]]


def _check_extra_fields_are_empty(path: Path) -> None:
    """Raise if a data line has more fields than the header and one of the extra ones is set.

    Empty extra fields are a delimiter at the end of the line, which some writers add; a value
    there means a field holds an unquoted comma, and every column after it would be shifted.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle)
        width = len(next(rows, []))
        for number, row in enumerate(rows, start=2):
            extra = [cell for cell in row[width:] if cell.strip()]
            if extra:
                hint = _header_hint(path)
                raise PsfcatFormatError(
                    f"{path}: file line {number} has {len(row)} fields but the header names "
                    f"{width} (extra: {extra[:3]}); " + (hint or "quote fields that contain commas")
                )


def _header_hint(path: Path) -> str:
    """The likely cause of a header that does not name the columns, or ``""``.

    A comment line above the header (``# psfcat from photutils``) makes the comment the
    header; a file separated by semicolons or tabs (a spreadsheet's export in some locales)
    makes each line one field.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            first = handle.readline().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    if first.startswith("#"):
        return (
            f"its first line, {first[:60]!r}, looks like a comment: the header must be the "
            "first line; remove the comment line(s) above it"
        )
    if "," not in first:
        for delimiter, name in ((";", "semicolons"), ("\t", "tabs")):
            if delimiter in first:
                return (
                    f"its header is separated by {name}, not commas: export the catalog with "
                    "commas as the delimiter"
                )
    return ""


def _hint_clause(hint: str) -> str:
    return f" ({hint})" if hint else ""


def _not_utf8_message(path: Path) -> str:
    """What is wrong with a catalog that is not UTF-8, naming the first offending line."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        return (
            f"{path}: byte 0x{data[err.start]:02x} on file line {line} is not UTF-8; the "
            "catalog must be UTF-8 text (plain ASCII is UTF-8): convert it, e.g. with "
            "`iconv -f latin1 -t utf-8`"
        )
    return f"{path} is not UTF-8 text; the catalog must be UTF-8 (plain ASCII is UTF-8)"


def read_index_csv(
    path: str | os.PathLike[str], *, usecols: Sequence[str] | None = None
) -> pd.DataFrame:
    """Read a table written by :func:`write_master_index` (or a job's candidates CSV) typed.

    pandas' own type inference would read a numeric ``jid`` such as ``000678`` as the
    integer 678 (and ``NA`` or ``null`` as missing), a 19-digit id as float64, and every
    column of a header-only table as text; here each column gets the type the module
    docstring documents.

    Parameters
    ----------
    path : path-like
        The CSV file, with the columns ``MASTER_INDEX_COLUMNS`` (or ``SEED_INDEX_COLUMNS``
        then ``in_image``, as ``job_tensors`` keeps each job's candidates).
    usecols : sequence of str, optional
        Read only these columns.

    Returns
    -------
    pandas.DataFrame
        ``jid``, ``image_filename``, ``split`` as text; ``id`` int64 and ``match`` Int64,
        both exact (ids written as integral floats, ``12.0``, by earlier versions are
        accepted); ``label`` int64; ``in_image`` bool; the other columns float64 (an empty
        cell is NaN).

    Raises
    ------
    ValueError
        If an id is not a whole number, lies outside the int64 range, or ``id`` is missing,
        or another value does not have its column's type.
    """
    import pandas as pd

    path = Path(path)
    # Text and ids are read as the text written, then typed below: see the docstring.
    as_text = (*_TEXT_COLUMNS, *ID_COLUMNS)
    dtypes = {name: str if name in as_text else kind for name, kind in _INDEX_DTYPES.items()}
    # No default NA tokens: a job called NA or null stays text; floats are empty when NaN.
    na_values = {name: [""] for name in _FLOAT_COLUMNS}
    try:
        frame = pd.read_csv(
            path,
            usecols=usecols,
            dtype=dtypes,
            keep_default_na=False,
            na_values=na_values,
        )
    except ValueError as error:
        raise ValueError(
            f"{path}: a value does not have its column's documented type ({error}); the file "
            "was edited or written by another program: materialize master_index again."
        ) from None
    for name in ID_COLUMNS:
        if name in frame.columns:
            frame[name] = _integer_ids(
                frame[name].str.strip(),
                name,
                path,
                required=name == "id",
                remedy="the file was edited or written by another program: materialize what "
                "wrote it again (master_index, or job_tensors for a candidates/<jid>.csv)",
            )
    for name in _TEXT_COLUMNS:
        if name in frame.columns:
            frame[name] = frame[name].astype(_INDEX_DTYPES[name])
    return frame


def missing_image_jobs(index: pd.DataFrame, dataset_dir: Path) -> dict[str, str]:
    """The jobs of ``index`` whose ``image_filename`` is not a file in ``dataset_dir``.

    Returns
    -------
    dict
        Job id -> its missing image file, in the index's order: a job whose files were found
        bad since the index was written (``job_tensors`` removed its tensor), or a deleted
        tensor.
    """
    pairs = index[["jid", "image_filename"]].drop_duplicates()
    return {
        jid: filename
        for jid, filename in zip(pairs["jid"], pairs["image_filename"], strict=True)
        if not (dataset_dir / filename).is_file()
    }


def missing_images_problem(absent: dict[str, str]) -> str:
    """What is wrong and what to do, for :func:`missing_image_jobs`' answer (20 jobs named)."""
    listing = ", ".join(f"{jid} ({filename})" for jid, filename in list(absent.items())[:20])
    more = f" and {len(absent) - 20} more" if len(absent) > 20 else ""
    return (
        f"image files missing for {len(absent)} job(s): {listing}{more}; materialize "
        "master_index again to leave them out, or fix the job"
    )


def label_match_disagreements(index: pd.DataFrame) -> dict[str, int]:
    """Per job, the candidates whose label disagrees with the position-matching rule.

    Catalogues labelled by matching candidates to known transients by position (as the sample
    generator does) set ``label`` to 1 when ``match >= 0`` and to 0 otherwise. Labels are the
    catalogue's own and are published as given; this says where they do not follow that rule
    (labels vetted by eye, or a column exported out of step).

    Parameters
    ----------
    index : pandas.DataFrame
        With the columns ``jid``, ``match`` (nullable integers) and ``label`` (0 or 1), as
        :func:`build_master_index` or :func:`read_psfcat` give.

    Returns
    -------
    dict
        Job id -> number of its candidates whose ``label`` is not ``int(match >= 0)``, for
        the jobs with at least one, in job order. A candidate without a ``match`` (empty) is
        not counted: the rule says nothing of it.
    """
    match = index["match"]
    known = match.notna().to_numpy()
    matched = (match.fillna(-1) >= 0).to_numpy(dtype=bool)
    disagree = known & (matched != (index["label"].to_numpy() == 1))
    counts = index.loc[disagree, "jid"].value_counts(sort=False)
    return {str(jid): int(counts[jid]) for jid in sorted(counts.index)}


def build_master_index(frames: Sequence[pd.DataFrame], splits: Mapping[str, str]) -> pd.DataFrame:
    """Concatenate the jobs' candidate tables into the master index.

    Parameters
    ----------
    frames : sequence of pandas.DataFrame
        Tables from :func:`read_psfcat`, one per job (empty tables are fine).
    splits : mapping
        Job id -> split name (e.g. from
        :func:`~astro_assets.science.transients.splits.split_table`); must cover every job.

    Returns
    -------
    pandas.DataFrame
        Columns ``MASTER_INDEX_COLUMNS``, sorted by ``jid`` then file order, with a fresh
        RangeIndex. Inputs are not modified.

    Raises
    ------
    ValueError
        If a job appears in two frames, a frame mixes jobs, or a job has no split.
    """
    import pandas as pd

    seen: dict[str, int] = {}
    parts = []
    for position, frame in enumerate(frames):
        missing = [name for name in (*SEED_INDEX_COLUMNS, "in_image") if name not in frame]
        if missing:
            raise ValueError(
                f"frame {position} lacks column(s) {missing}; build frames with read_psfcat"
            )
        jids = frame["jid"].unique().tolist()
        if len(jids) > 1:
            raise ValueError(f"frame {position} mixes jobs {jids}; pass one frame per job")
        for jid in jids:
            if jid in seen:
                raise ValueError(
                    f"job {jid!r} appears in frames {seen[jid]} and {position}; pass each job once"
                )
            seen[jid] = position
        parts.append(frame[[*SEED_INDEX_COLUMNS, "in_image"]])
    no_split = sorted(jid for jid in seen if jid not in splits)
    if no_split:
        raise ValueError(f"job(s) {no_split} have no split; assign every job a split first")
    if parts:
        index = pd.concat(parts, ignore_index=True)
    else:
        index = pd.DataFrame(
            {
                name: pd.Series(dtype=_INDEX_DTYPES[name])
                for name in (*SEED_INDEX_COLUMNS, "in_image")
            }
        )
    index = index.sort_values("jid", kind="stable").reset_index(drop=True)
    index["split"] = pd.Series([splits[jid] for jid in index["jid"]], dtype=object)
    index = index.astype({"label": np.int64, "in_image": bool})
    return index[list(MASTER_INDEX_COLUMNS)]


def write_master_index(
    index: pd.DataFrame,
    csv_path: str | os.PathLike[str],
    parquet_path: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write the master index as CSV and its Parquet twin, atomically.

    The twin is not optional: the Croissant ``candidates`` records are read from it (see
    :func:`~astro_assets.science.transients.croissant.build_croissant`), which keeps the
    types that a CSV loses. Floats are written with full precision; NaN is an empty CSV cell.

    Parameters
    ----------
    index : pandas.DataFrame
        From :func:`build_master_index`.
    csv_path : path-like
        The CSV file.
    parquet_path : path-like, optional
        The Parquet twin; by default ``csv_path`` with the suffix ``.parquet``.

    Returns
    -------
    list of pathlib.Path
        The files written: the CSV, then the Parquet twin.
    """
    missing = [name for name in MASTER_INDEX_COLUMNS if name not in index]
    if missing:
        raise ValueError(f"index lacks column(s) {missing}; build it with build_master_index")
    table = index[list(MASTER_INDEX_COLUMNS)]
    written = []
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    written.append(Path(csv_path))
    if parquet_path is None:
        parquet_path = Path(csv_path).with_suffix(".parquet")
    with atomic_path(parquet_path) as tmp:
        table.to_parquet(tmp, index=False)
    written.append(Path(parquet_path))
    return written
