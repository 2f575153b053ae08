"""Candidate catalogs (``psfcat.csv``) and the dataset's master index.

``psfcat.csv`` holds one row per candidate detected on a job's difference image, with exactly
the columns ``PSFCAT_COLUMNS``. ``x`` and ``y`` are 0-based pixel coordinates (column, row;
pixel centres at integer values, the photutils convention). ``label`` is 1 for real, 0 for bogus.

The master index concatenates all jobs' candidates with the columns ``MASTER_INDEX_COLUMNS``:
the published schema (``id, jid, x, y, sharpness, roundness1, roundness2, npix, peak, flux, mag,
daofind_mag, flags, match, label, image_filename``, in that order), then ``split`` (the job's
train/validation/test split) and ``in_image``. Numeric columns are float64 except ``label``
(int64); ``in_image`` is bool. ``image_filename`` is the job tensor's path relative to the
dataset folder, ``images/<jid>.npy``.

Candidates whose position lies outside the image (``x`` not in [-0.5, W - 0.5) or ``y`` not in
[-0.5, H - 0.5)) are kept, with ``in_image`` False: dropping them would hide a catalog problem,
and cutout code pads at edges anyway. Filter on ``in_image`` where a centred cutout is required.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from astro_assets.io.atomic import atomic_path
from astro_assets.io.paths import check_key

if TYPE_CHECKING:
    # pandas takes 0.3 s to import and the code location imports this module for its
    # column names in every step process, so the functions import it where they use it.
    import pandas as pd

__all__ = [
    "MASTER_INDEX_COLUMNS",
    "PSFCAT_COLUMNS",
    "SEED_INDEX_COLUMNS",
    "PsfcatFormatError",
    "build_master_index",
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

_FLOAT_COLUMNS = tuple(name for name in PSFCAT_COLUMNS if name != "label")
_REQUIRED_FINITE = ("id", "x", "y")
_MISSING_TOKENS = frozenset({"", "nan"})


class PsfcatFormatError(ValueError):
    """A ``psfcat.csv`` that does not follow the contract."""


def _row_reference(index: int) -> str:
    return f"row {index} (file line {index + 2})"


def read_psfcat(
    path: str | os.PathLike[str], *, jid: str, image_shape: Sequence[int]
) -> pd.DataFrame:
    """Read and validate one job's ``psfcat.csv``.

    Parameters
    ----------
    path : path-like
        The CSV file (header line, then one line per candidate). Extra columns are ignored.
    jid : str
        Job id; a safe path component (letters, digits, ``.``, ``_``, ``-``).
    image_shape : (H, W)
        Shape of the job's images, to decide ``in_image``.

    Returns
    -------
    pandas.DataFrame
        Columns ``SEED_INDEX_COLUMNS`` then ``in_image``; one row per candidate in file order.
        Empty cells and ``nan`` are NaN (allowed except in ``id``, ``x``, ``y``, ``label``).

    Raises
    ------
    PsfcatFormatError
        Missing columns (all listed), a non-numeric value (column and row named), a missing or
        non-finite ``id``/``x``/``y``, a ``label`` other than 0 or 1, or repeated ids.
    FileNotFoundError
        If ``path`` does not exist.
    """
    import pandas as pd

    check_key(jid)
    if len(image_shape) != 2 or min(image_shape) < 1:
        raise ValueError(f"image_shape must be (H, W) with H, W >= 1, got {tuple(image_shape)}")
    height, width = (int(n) for n in image_shape)
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError as err:
        raise PsfcatFormatError(
            f"{path} is empty; it needs the header line {','.join(PSFCAT_COLUMNS)}"
        ) from err
    missing = [name for name in PSFCAT_COLUMNS if name not in raw.columns]
    if missing:
        raise PsfcatFormatError(
            f"{path} lacks column(s) {missing}; the header must contain {','.join(PSFCAT_COLUMNS)}"
        )
    frame = pd.DataFrame(index=pd.RangeIndex(len(raw)))
    for name in PSFCAT_COLUMNS:
        text = raw[name].str.strip()
        values = pd.to_numeric(text, errors="coerce").astype(np.float64)
        bad = values.isna() & ~text.str.lower().isin(_MISSING_TOKENS)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise PsfcatFormatError(
                f"{path}: column {name!r}, {_row_reference(row)}: {raw[name].iloc[row]!r} is "
                f"not a number ({int(bad.sum())} such value(s) in this column); fix the catalog"
            )
        frame[name] = values
    for name in _REQUIRED_FINITE:
        bad = ~np.isfinite(frame[name].to_numpy())
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise PsfcatFormatError(
                f"{path}: column {name!r}, {_row_reference(row)} is missing or not finite; "
                "every candidate needs an id and a position"
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
            **{name: frame[name] for name in _FLOAT_COLUMNS if name != "id"},
            "label": frame["label"].astype(np.int64),
            "image_filename": pd.Series([f"images/{jid}.npy"] * len(frame), dtype=object),
            "in_image": (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5),
        }
    )
    return result[[*SEED_INDEX_COLUMNS, "in_image"]]


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
        index = pd.DataFrame({name: pd.Series(dtype=np.float64) for name in SEED_INDEX_COLUMNS})
        index = index.astype({"jid": object, "image_filename": object, "label": np.int64})
        index["in_image"] = pd.Series(dtype=bool)
    index = index.sort_values("jid", kind="stable").reset_index(drop=True)
    index["split"] = pd.Series([splits[jid] for jid in index["jid"]], dtype=object)
    index = index.astype({"label": np.int64, "in_image": bool})
    return index[list(MASTER_INDEX_COLUMNS)]


def write_master_index(
    index: pd.DataFrame,
    csv_path: str | os.PathLike[str],
    parquet_path: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write the master index as CSV (and optionally Parquet), atomically.

    Floats are written with full precision; NaN is an empty CSV cell.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    missing = [name for name in MASTER_INDEX_COLUMNS if name not in index]
    if missing:
        raise ValueError(f"index lacks column(s) {missing}; build it with build_master_index")
    table = index[list(MASTER_INDEX_COLUMNS)]
    written = []
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    written.append(Path(csv_path))
    if parquet_path is not None:
        with atomic_path(parquet_path) as tmp:
            table.to_parquet(tmp, index=False)
        written.append(Path(parquet_path))
    return written
