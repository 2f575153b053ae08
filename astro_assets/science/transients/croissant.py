"""Croissant 1.1 metadata for the transient dataset, built and validated with mlcroissant.

The dataset folder::

    master_index.csv     one row per candidate (columns: candidates.MASTER_INDEX_COLUMNS)
    master_index.parquet the same rows, typed
    images/<jid>.npy     one (H, W, 4) float32 tensor per job (see tensors.py)
    croissant.json       this metadata

The JSON-LD is produced by mlcroissant's own serialization (``Metadata.to_json()``), with
``conformsTo`` set to Croissant 1.1 through the context of every node. It declares:

- a ``FileObject`` for ``master_index.csv`` and one for its Parquet twin, each with its SHA-256;
- a ``FileSet`` for ``images/*.npy`` whose description gives shape, channel order and
  normalization (mlcroissant has no reader for ``.npy``, so no RecordSet reads the tensors;
  the ``image_filename`` column points to them);
- a ``splits`` RecordSet of type ``cr:Split`` (train/validation/test) and a ``candidates``
  RecordSet with every index column typed, ``label`` as ``["sc:Integer", "cr:Label"]``, the ids
  ``id`` and ``match`` as ``sc:Integer``, ``jid`` as text, and ``split`` referencing
  ``splits/name``;
- responsible-AI (RAI) attributes, ``citeAs``, ``datePublished``, a semantic ``version`` and
  the license.

Versioning (:func:`semver_for`): a dataset's version is MAJOR.MINOR.PATCH; MAJOR changes when
an existing job changes split or disappears (results on the old splits are not comparable),
MINOR when jobs are only added, PATCH when the content changed otherwise.

The ``candidates`` records are read from the Parquet twin, not from the CSV: mlcroissant 1.1
reads a CSV with pandas' type inference before it casts a value to the declared type, so an
integer column with one empty cell (``match`` where a catalogue left it empty) comes as float64,
whose 53-bit mantissa rounds a 19-digit id to another one, and a numeric job id such as
``000678`` comes as the number 678; declaring the field ``sc:Text`` does not help, the value is
already a float. Parquet stores each column's type (int64 with nulls, text), so the records give
the exact ids and job ids, and an empty ``match`` as null. :func:`build_croissant` refuses a
twin that differs from the CSV, and :func:`validate_croissant` checks the SHA-256 of every file,
the CSV included, which no RecordSet reads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlcroissant as mlc
import numpy as np
import pandas as pd

from astro_assets.io.atomic import atomic_write_text
from astro_assets.science.transients.candidates import (
    ID_COLUMNS,
    MASTER_INDEX_COLUMNS,
    read_index_csv,
)
from astro_assets.science.transients.splits import SPLITS
from astro_assets.science.transients.tensors import CHANNELS

__all__ = [
    "CROISSANT_1_1",
    "DEFAULT_RAI",
    "CroissantError",
    "ValidationReport",
    "build_croissant",
    "read_candidates",
    "semver_for",
    "validate_croissant",
    "write_croissant",
]

CROISSANT_1_1 = "http://mlcommons.org/croissant/1.1"
_CR = "http://mlcommons.org/croissant/"
_LABEL = _CR + "Label"
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_SPLIT_URLS = {
    "train": "cr:TrainingSplit",
    "validation": "cr:ValidationSplit",
    "test": "cr:TestSplit",
}
_NPY_FORMAT = "https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html"

_FIELD_DESCRIPTIONS: Mapping[str, str] = {
    "id": "Candidate id within its job (from psfcat.csv), an integer (int64).",
    "jid": "Job id: the job folder name, as text (a numeric one such as 000678 keeps its "
    "zeros); all candidates of a job share its image tensor.",
    "x": "Candidate column position, 0-based pixels (pixel centres at integers).",
    "y": "Candidate row position, 0-based pixels (pixel centres at integers).",
    "sharpness": "DAOFIND sharpness of the detection on the difference image.",
    "roundness1": "DAOFIND symmetry-based roundness (SROUND).",
    "roundness2": "DAOFIND marginal-Gaussian roundness (GROUND).",
    "npix": "Number of pixels in the detection footprint.",
    "peak": "Peak pixel value of the detection on the difference image (image units).",
    "flux": "Candidate flux on the difference image (image units), from psfcat.csv.",
    "mag": "Instrumental magnitude -2.5 log10(flux); empty when flux <= 0.",
    "daofind_mag": "DAOFIND magnitude (peak relative to the detection threshold).",
    "flags": "Quality bit flags from psfcat.csv (producer-defined).",
    "match": "Id of the matched known transient, an integer (int64): -1 when there is none, "
    "null where the catalogue left it empty.",
    "label": "1 = real transient, 0 = bogus (artifact, subtraction residual or noise).",
    "image_filename": "Path of the job's (H, W, 4) tensor relative to the dataset folder.",
    "split": "The job's split (train, validation or test); all candidates of a job share it.",
    "in_image": "Whether (x, y) lies inside the image; false rows are kept for transparency.",
}

DEFAULT_RAI: Mapping[str, str | list[str]] = {
    "data_collection": (
        "Difference-imaging jobs, one folder per job with a science image, a resampled "
        "reference image, the difference image, its score (significance) image and the "
        "candidate catalog psfcat.csv detected on the difference image, as delivered by the "
        "imaging pipeline. No image was altered other than by the normalization described in "
        "the preprocessing protocol."
    ),
    "data_collection_type": ["Observational data (astronomical imaging pipeline products)"],
    "data_preprocessing_protocol": [
        "Each of the four images of a job is ZScale-normalized (IRAF algorithm via astropy "
        "ZScaleInterval on finite pixels, 1000 samples, contrast 0.25), clipped to [0, 1] and "
        "stored as float32; NaN and infinite pixels become 0.",
        "Catalog rows are validated (all columns numeric, positions finite, labels 0 or 1); "
        "candidates outside the image are kept with in_image = false.",
        "Jobs are assigned to train/validation/test by a seeded SHA-256 hash of the job id "
        "(of the group the job id names when the index was built with a split_group_pattern, "
        "so that repeated epochs of a field share a split), never by candidate, so candidates "
        "sharing images never cross splits.",
    ],
    "data_annotation_protocol": [
        "Labels are taken as given from the label column of each job's psfcat.csv (1 = real, "
        "0 = bogus); this pipeline checks only that each is 0 or 1 and adds no vetting of its "
        "own. Catalogues labelled by position matching set label 1 when the candidate was "
        "matched to a known transient (match >= 0) and 0 otherwise, as the pipeline's "
        "synthetic sample jobs are labelled; a label that disagrees with its match column "
        "(vetted by eye, say) is kept as given, and the master index's build reports how many "
        "do."
    ],
    "data_biases": [
        "The class ratio is the natural one of the catalogs (bogus outnumber real); rebalance "
        "in the loss or the sampler, not by editing the index.",
        "Where labels come from position matching, real transients missing from the list "
        "used for matching are labelled bogus; faint real transients below the detection "
        "threshold are absent.",
        "Splits are by job; observing conditions (seeing, depth, field density) are not "
        "stratified across splits.",
    ],
    "data_limitations": [
        "Tensors are full images: cutouts (e.g. 64 x 64 around x, y) are left to the user.",
        "ZScale normalization is per image and clips: absolute photometry cannot be recovered "
        "from the tensors; use the catalog columns for fluxes.",
        "Masked (NaN) pixels are indistinguishable from pixels at or below the lower ZScale "
        "limit in the tensors.",
    ],
    "data_use_cases": [
        "Training and evaluating real/bogus classifiers for difference-imaging candidates.",
        "Not validated for photometric or astrometric measurements.",
    ],
    "personal_sensitive_information": [
        "None: the data are images of the sky and detection catalogs; they contain no "
        "information about people."
    ],
    "data_release_maintenance_plan": (
        "Versions follow semantic versioning: the major version changes when an existing job "
        "changes split or is removed, the minor version when jobs are added, the patch version "
        "for any other content change."
    ),
}
"""Default responsible-AI attributes; override per dataset through ``build_croissant(rai=...)``."""

_RAI_ATTRIBUTES = frozenset(
    {
        "data_collection",
        "data_collection_type",
        "data_collection_missing_data",
        "data_collection_raw_data",
        "data_imputation_protocol",
        "data_preprocessing_protocol",
        "data_manipulation_protocol",
        "data_annotation_protocol",
        "data_annotation_platform",
        "data_annotation_analysis",
        "annotations_per_item",
        "annotator_demographics",
        "machine_annotation_tools",
        "data_biases",
        "data_use_cases",
        "data_limitations",
        "data_social_impact",
        "personal_sensitive_information",
        "data_release_maintenance_plan",
    }
)
_RAI_SINGLE = frozenset(
    {
        "data_collection",
        "data_collection_missing_data",
        "data_collection_raw_data",
        "data_imputation_protocol",
        "data_manipulation_protocol",
        "annotations_per_item",
        "data_social_impact",
        "data_release_maintenance_plan",
    }
)


class CroissantError(ValueError):
    """A dataset folder or argument from which no valid Croissant metadata can be built."""


@contextmanager
def _quiet_rdflib() -> Iterator[None]:
    """Silence rdflib's deprecation of ConjunctiveGraph, which mlcroissant 1.1.1 still uses."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="ConjunctiveGraph is deprecated", category=DeprecationWarning
        )
        yield


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _license_url(license: str) -> str:
    if license.startswith(("http://", "https://")):
        return license
    if not re.fullmatch(r"[A-Za-z0-9.+-]+", license):
        raise CroissantError(
            f"license {license!r} is neither a URL nor an SPDX identifier such as CC-BY-4.0"
        )
    return f"https://spdx.org/licenses/{license}.html"


def _as_date(value: dt.date | dt.datetime | str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    try:
        return dt.datetime.fromisoformat(str(value))
    except ValueError as err:
        raise CroissantError(f"date_published {value!r} is not an ISO date (YYYY-MM-DD)") from err


def _data_types(column: str) -> list[Any]:
    if column == "label":
        return [mlc.DataType.INTEGER, _LABEL]
    if column in ID_COLUMNS:
        # Integer, not Float: mlcroissant casts each value to the declared type, and float64
        # would round a 19-digit id (a ZTF candid) to another one.
        return [mlc.DataType.INTEGER]
    if column in ("jid", "image_filename", "split"):
        return [mlc.DataType.TEXT]
    if column == "in_image":
        return [mlc.DataType.BOOL]
    return [mlc.DataType.FLOAT]


def _tensor_shapes(dataset_dir: Path, filenames: Sequence[str]) -> list[tuple[int, ...]]:
    """Distinct shapes of the referenced tensors, read from the .npy headers only."""
    missing = [name for name in filenames if not (dataset_dir / name).is_file()]
    if missing:
        raise CroissantError(
            f"{len(missing)} image tensor(s) referenced by the index are missing from "
            f"{dataset_dir}, e.g. {missing[:3]}; write the job tensors first"
        )
    shapes = set()
    for name in filenames:
        array = np.load(dataset_dir / name, mmap_mode="r")
        if array.ndim != 3 or array.shape[2] != len(CHANNELS) or array.dtype != np.float32:
            raise CroissantError(
                f"{name} has shape {array.shape} and dtype {array.dtype}; expected "
                f"(H, W, {len(CHANNELS)}) float32"
            )
        shapes.add(tuple(int(n) for n in array.shape))
        del array
    return sorted(shapes)


def _check_twin(twin_path: Path, index_path: Path, index: pd.DataFrame) -> None:
    """Raise unless the Parquet twin holds exactly the rows and types of the CSV."""
    fix = "write both with write_master_index (materialize master_index)"
    if not twin_path.is_file():
        raise CroissantError(
            f"{twin_path} does not exist; the candidates records are read from the index's "
            f"Parquet twin: {fix}"
        )
    twin = pd.read_parquet(twin_path)
    try:
        # Text columns may come back as pandas' string dtype: the values are compared here,
        # and the ids' integer types, on which the records' exactness depends, below.
        pd.testing.assert_frame_equal(twin, index, check_dtype=False)
    except AssertionError as err:
        first = " ".join(str(err).split())
        raise CroissantError(f"{twin_path} differs from {index_path} ({first}); {fix}") from None
    for name in ID_COLUMNS:
        if not pd.api.types.is_integer_dtype(twin[name]):
            raise CroissantError(
                f"{twin_path}: column {name!r} is {twin[name].dtype}, not an integer type, so "
                f"its ids would be rounded; {fix}"
            )


def build_croissant(
    dataset_dir: str | os.PathLike[str],
    index_csv: str | os.PathLike[str],
    *,
    index_parquet: str | os.PathLike[str] | None = None,
    name: str,
    version: str,
    date_published: dt.date | dt.datetime | str,
    cite_as: str,
    license: str = "CC-BY-4.0",
    description: str | None = None,
    url: str | None = None,
    keywords: Sequence[str] = ("astronomy", "transients", "difference imaging", "real-bogus"),
    rai: Mapping[str, str | Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Build the Croissant 1.1 JSON-LD of a transient dataset folder.

    Parameters
    ----------
    dataset_dir : path-like
        The dataset folder (holds the index and ``images/``).
    index_csv : path-like
        The master index CSV, inside ``dataset_dir``, with exactly the columns
        ``MASTER_INDEX_COLUMNS``; its SHA-256 is recorded.
    index_parquet : path-like, optional
        Its Parquet twin (default: beside it, suffix ``.parquet``), inside ``dataset_dir``,
        holding the same table; the ``candidates`` records are read from it (see the module
        docstring), and its SHA-256 is recorded.
    name : str
        Dataset name.
    version : str
        Semantic version ``MAJOR.MINOR.PATCH`` (see :func:`semver_for`).
    date_published : date, datetime or ISO string
    cite_as : str
        Citation (BibTeX recommended).
    license : str
        SPDX identifier (turned into its spdx.org URL) or a license URL.
    description : str, optional
        Free text; dataset statistics (jobs, candidates, real fraction, per-split counts,
        tensor shapes) are appended.
    url : str, optional
        Landing page of the dataset.
    keywords : sequence of str
    rai : mapping, optional
        Responsible-AI attributes (names of ``mlcroissant.Metadata`` fields such as
        ``data_collection`` or ``data_biases``) replacing the entries of ``DEFAULT_RAI``.
        Describe how *this* data was collected (e.g. that it is synthetic).

    Returns
    -------
    dict
        The JSON-LD, as serialized by ``mlcroissant.Metadata.to_json()``.

    Raises
    ------
    CroissantError
        If the index or its twin is outside ``dataset_dir``, its columns differ from the
        contract, the twin is missing or differs from the CSV, a referenced tensor is missing
        or malformed, or an argument is invalid.
    """
    dataset_dir = Path(dataset_dir).resolve()
    index_path = Path(index_csv).resolve()
    twin_path = Path(index_parquet or index_path.with_suffix(".parquet")).resolve()
    for path in (index_path, twin_path):
        if dataset_dir not in path.parents:
            raise CroissantError(f"the index {path} must lie inside {dataset_dir}")
    if not _SEMVER.match(version):
        raise CroissantError(f"version {version!r} is not semantic (MAJOR.MINOR.PATCH)")
    unknown_rai = sorted(set(rai or {}) - _RAI_ATTRIBUTES)
    if unknown_rai:
        raise CroissantError(
            f"unknown RAI attribute(s) {unknown_rai}; use some of {sorted(_RAI_ATTRIBUTES)}"
        )
    columns = list(pd.read_csv(index_path, nrows=0).columns)
    if tuple(columns) != MASTER_INDEX_COLUMNS:
        raise CroissantError(
            f"{index_path} has columns {columns}; expected exactly "
            f"{list(MASTER_INDEX_COLUMNS)} (write it with write_master_index)"
        )
    index = read_index_csv(index_path)
    _check_twin(twin_path, index_path, index)
    renamed = index["image_filename"] != "images/" + index["jid"] + ".npy"
    if renamed.any():
        row = index[renamed].iloc[0]
        raise CroissantError(
            f"{index_path}: image_filename {row['image_filename']!r} of job {row['jid']!r} is "
            f"not images/{row['jid']}.npy, where the tensors are described to lie "
            "(write the index with write_master_index)"
        )
    unknown_splits = sorted(set(index["split"]) - set(SPLITS))
    if unknown_splits:
        raise CroissantError(f"{index_path} uses unknown split name(s) {unknown_splits}")
    filenames = sorted(set(index["image_filename"]))
    shapes = _tensor_shapes(dataset_dir, filenames)
    content_url = index_path.relative_to(dataset_dir).as_posix()
    twin_url = twin_path.relative_to(dataset_dir).as_posix()

    n_jobs = index["jid"].nunique()
    n_real = int(index["label"].sum())
    jobs_per_split = index.groupby("split")["jid"].nunique().to_dict()
    rows_per_split = index["split"].value_counts().to_dict()
    split_text = ", ".join(
        f"{split}: {jobs_per_split.get(split, 0)} jobs / {rows_per_split.get(split, 0)} candidates"
        for split in SPLITS
    )
    statistics = (
        f"{len(index)} candidates from {n_jobs} jobs; {n_real} real "
        f"({(n_real / len(index) if len(index) else 0.0):.1%}); {split_text}."
    )
    channel_text = ", ".join(f"{i}: {channel}" for i, channel in enumerate(CHANNELS))
    tensor_description = (
        f"One NumPy .npy file per job, images/<jid>.npy, shape (H, W, {len(CHANNELS)}), "
        f"float32, C order; last axis = channels ({channel_text}). Each channel is "
        "ZScale-normalized independently (astropy ZScaleInterval on finite pixels, "
        "1000 samples, contrast 0.25) to [0, 1]; NaN/inf pixels are 0. Row = y, column = x "
        "of the catalog. Shapes present: "
        + ", ".join(str(shape) for shape in shapes)
        + ". Load with numpy.load(path, mmap_mode='r') and cut around (y, x)."
    )

    ctx = mlc.Context(conforms_to=CROISSANT_1_1)
    index_file = mlc.FileObject(
        ctx=ctx,
        id=content_url,
        name=Path(content_url).name,
        description="Master index: one row per candidate, with label and split.",
        content_url=content_url,
        content_size=f"{index_path.stat().st_size} B",
        encoding_formats=[mlc.EncodingFormat.CSV],
        sha256=_sha256(index_path),
    )
    twin_file = mlc.FileObject(
        ctx=ctx,
        id=twin_url,
        name=Path(twin_url).name,
        description=f"The rows of {Path(content_url).name} with their column types (ids int64, "
        "jid text); the candidates records are read from it.",
        content_url=twin_url,
        content_size=f"{twin_path.stat().st_size} B",
        encoding_formats=[mlc.EncodingFormat.PARQUET],
        sha256=_sha256(twin_path),
    )
    tensors = mlc.FileSet(
        ctx=ctx,
        id="images",
        name="images",
        description=tensor_description,
        encoding_formats=[_NPY_FORMAT],
        includes=["images/*.npy"],
    )
    split_records = mlc.RecordSet(
        ctx=ctx,
        id="splits",
        name="splits",
        description="The dataset splits; jobs (not candidates) are split.",
        data_types=[mlc.DataType.SPLIT],
        key=["splits/name"],
        fields=[
            mlc.Field(ctx=ctx, id="splits/name", name="name", data_types=[mlc.DataType.TEXT]),
            mlc.Field(
                ctx=ctx,
                id="splits/url",
                name="url",
                data_types=[mlc.DataType.URL, mlc.DataType.SPLIT],
            ),
        ],
        data=[{"splits/name": s, "splits/url": _SPLIT_URLS[s]} for s in SPLITS],
    )
    candidate_fields = []
    for column in MASTER_INDEX_COLUMNS:
        references = {"references": mlc.Source(ctx=ctx, field="splits/name")}
        source = mlc.Source(
            ctx=ctx, file_object=twin_url, extract=mlc.Extract(ctx=ctx, column=column)
        )
        candidate_fields.append(
            mlc.Field(
                ctx=ctx,
                id=f"candidates/{column}",
                name=column,
                description=_FIELD_DESCRIPTIONS[column],
                data_types=_data_types(column),
                source=source,
                **(references if column == "split" else {}),
            )
        )
    candidates = mlc.RecordSet(
        ctx=ctx,
        id="candidates",
        name="candidates",
        description=(
            "Transient candidates, one record per row of the master index; the image data of "
            "a candidate is the tensor named by image_filename at (y, x)."
        ),
        key=["candidates/jid", "candidates/id"],
        fields=candidate_fields,
    )
    rai_values: dict[str, Any] = dict(DEFAULT_RAI)
    rai_values.update(rai or {})
    for key, value in rai_values.items():
        if key in _RAI_SINGLE:
            if not isinstance(value, str):
                raise CroissantError(f"RAI attribute {key} takes one text, got {value!r}")
        else:
            rai_values[key] = [value] if isinstance(value, str) else list(value)
    full_description = f"{description.strip()} {statistics}" if description else statistics
    with _quiet_rdflib():
        metadata = mlc.Metadata(
            ctx=ctx,
            name=name,
            description=full_description,
            url=url,
            license=[_license_url(license)],
            version=version,
            date_published=_as_date(date_published),
            cite_as=cite_as,
            keywords=list(keywords),
            distribution=[index_file, twin_file, tensors],
            record_sets=[split_records, candidates],
            **rai_values,
        )
        jsonld = metadata.to_json()
    return json.loads(json.dumps(jsonld))


def write_croissant(path: str | os.PathLike[str], jsonld: Mapping[str, Any]) -> Path:
    """Write the JSON-LD returned by :func:`build_croissant` to ``path``, atomically."""
    return atomic_write_text(path, json.dumps(jsonld, indent=2) + "\n")


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of :func:`validate_croissant`.

    Attributes
    ----------
    conforms_to : str or None
        The ``conformsTo`` of the document.
    static_errors, static_warnings : list of str
        Issues found by mlcroissant's static analysis.
    record_counts : dict
        RecordSet id -> number of records generated (dynamic validation).
    dynamic_errors : list of str
        Errors raised while generating records (e.g. a file whose SHA-256 differs).
    """

    conforms_to: str | None
    static_errors: list[str] = field(default_factory=list)
    static_warnings: list[str] = field(default_factory=list)
    record_counts: dict[str, int] = field(default_factory=dict)
    dynamic_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there is no static or dynamic error."""
        return not self.static_errors and not self.dynamic_errors

    def raise_for_errors(self) -> None:
        """Raise ``CroissantError`` listing every error, if there is any."""
        if not self.ok:
            raise CroissantError(
                "Croissant validation failed: "
                + "; ".join([*self.static_errors, *self.dynamic_errors])
            )


def _unread_file_errors(document: Mapping[str, Any], folder: Path | None) -> list[str]:
    """SHA-256 mismatches of the local FileObjects that no RecordSet reads.

    mlcroissant verifies a file's SHA-256 only when it reads the file to generate records; the
    CSV index, whose records come from its Parquet twin, would otherwise go unchecked.
    """
    if folder is None:
        return []
    read = {
        source["fileObject"]["@id"]
        for record_set in document.get("recordSet", [])
        for field_node in record_set.get("field", [])
        if isinstance(source := field_node.get("source"), Mapping) and "fileObject" in source
    }
    errors = []
    for node in document.get("distribution", []):
        content_url, expected = node.get("contentUrl"), node.get("sha256")
        if node.get("@type") != "cr:FileObject" or node.get("@id") in read or not expected:
            continue
        if not content_url or re.match(r"^[a-z][a-z0-9+.-]*://", content_url):
            continue
        path = folder / content_url
        if not path.is_file():
            errors.append(f"FileObject {node['@id']!r}: {path} does not exist")
        elif (actual := _sha256(path)) != expected:
            errors.append(
                f"FileObject {node['@id']!r}: {path} has SHA-256 {actual}, not the {expected} "
                "recorded: the file changed after the metadata was written; materialize "
                "croissant_metadata again"
            )
    return errors


_HASH_MISMATCH = "is not identical with the reference in the Croissant JSON-LD"
"""How mlcroissant says that a file read for records does not have its recorded hash."""


def validate_croissant(
    jsonld_or_path: Mapping[str, Any] | str | os.PathLike[str],
    *,
    base_dir: str | os.PathLike[str] | None = None,
    dynamic: bool = True,
) -> ValidationReport:
    """Validate Croissant metadata statically and, optionally, dynamically.

    Static validation loads the document with ``mlcroissant.Dataset``. Dynamic validation
    generates every record of every RecordSet (which reads the files and checks their
    SHA-256) and counts them, and checks the SHA-256 of the local files no RecordSet reads.
    Errors are collected into the report, not raised; call
    :meth:`ValidationReport.raise_for_errors` to fail on them.

    Parameters
    ----------
    jsonld_or_path : mapping or path-like
        The JSON-LD dict, or the path of ``croissant.json`` (relative file URLs resolve
        against its folder).
    base_dir : path-like, optional
        For a dict: the folder its relative file URLs resolve against (required for dynamic
        validation of a dict with local files).
    dynamic : bool
        Also generate the records.

    Returns
    -------
    ValidationReport
    """
    if isinstance(jsonld_or_path, Mapping):
        document = dict(jsonld_or_path)
        mapping = {}
        if base_dir is not None:
            for node in document.get("distribution", []):
                content_url = node.get("contentUrl")
                if node.get("@type") == "cr:FileObject" and content_url:
                    mapping[node["@id"]] = str(Path(base_dir) / content_url)
        source: Any = document
        folder = None if base_dir is None else Path(base_dir)
    else:
        path = Path(jsonld_or_path)
        document = json.loads(path.read_text(encoding="utf-8"))
        mapping = {}
        source = str(path)
        folder = path.parent
    conforms_to = document.get("conformsTo")
    with _quiet_rdflib():
        try:
            dataset = mlc.Dataset(jsonld=source, mapping=mapping or None)
        except mlc.ValidationError as err:
            return ValidationReport(conforms_to=conforms_to, static_errors=[str(err)])
        issues = dataset.metadata.ctx.issues
        report = ValidationReport(
            conforms_to=conforms_to,
            static_errors=sorted(issues.errors),
            static_warnings=sorted(issues.warnings),
        )
        if not dynamic or report.static_errors:
            return report
        report.dynamic_errors.extend(_unread_file_errors(document, folder))
        for record_set in dataset.metadata.record_sets:
            try:
                report.record_counts[record_set.uuid] = sum(
                    1 for _ in dataset.records(record_set=record_set.uuid)
                )
            except (mlc.GenerationError, AssertionError, ValueError, OSError) as err:
                cause = err.__cause__ or err.__context__
                message = f"RecordSet {record_set.uuid!r}: {err}" + (f" ({cause})" if cause else "")
                if _HASH_MISMATCH in message:
                    # mlcroissant says which file and both hashes, but not what to do.
                    message += (
                        "; the file changed after the metadata was written: materialize "
                        "master_index and croissant_metadata again"
                    )
                report.dynamic_errors.append(message)
    return report


def _parse_semver(version: str) -> tuple[int, int, int]:
    match = _SEMVER.match(version)
    if not match:
        raise ValueError(f"version {version!r} is not semantic (MAJOR.MINOR.PATCH)")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def semver_for(
    previous_version: str | None,
    previous_split_membership: Mapping[str, str],
    new_split_membership: Mapping[str, str],
    *,
    content_changed: bool = True,
) -> str:
    """The dataset version after a rebuild.

    Parameters
    ----------
    previous_version : str or None
        The last published version; None for a first release (returns ``"1.0.0"``).
    previous_split_membership, new_split_membership : mapping
        Job id -> split name before and after.
    content_changed : bool
        Whether anything else changed (index or tensor content). When False and the
        memberships are equal, the version is kept.

    Returns
    -------
    str
        MAJOR+1 if a previous job changed split or was removed; else MINOR+1 if jobs were
        added; else PATCH+1 (or unchanged when ``content_changed`` is False).
    """
    if previous_version is None:
        return "1.0.0"
    major, minor, patch = _parse_semver(previous_version)
    moved_or_removed = any(
        new_split_membership.get(jid) != split for jid, split in previous_split_membership.items()
    )
    if moved_or_removed:
        return f"{major + 1}.0.0"
    if set(new_split_membership) - set(previous_split_membership):
        return f"{major}.{minor + 1}.0"
    if content_changed:
        return f"{major}.{minor}.{patch + 1}"
    return previous_version


def read_candidates(croissant_path: str | os.PathLike[str]) -> pd.DataFrame:
    """The ``candidates`` RecordSet of a Croissant file as a DataFrame, read by mlcroissant.

    This is how a consumer reads the dataset: through its description, so the SHA-256 of the
    index's Parquet twin, which the records come from, is verified and the columns come typed
    as the metadata declares them. Text values, which mlcroissant yields as bytes, are decoded
    to ``str``.

    Parameters
    ----------
    croissant_path : path-like
        A ``croissant.json`` whose relative URLs resolve beside it.

    Returns
    -------
    pandas.DataFrame
        One row per candidate, columns named as in ``master_index.csv``, in file order;
        ``id`` int64 and ``match`` nullable Int64, both exact (a frame built from the records
        would hold an integer column with a null as float64, and round 19-digit ids).

    Raises
    ------
    CroissantError
        If the file is missing, statically invalid, or its records cannot be generated.
    """
    path = Path(croissant_path)
    if not path.is_file():
        raise CroissantError(
            f"{path} does not exist: materialize croissant_metadata (or pass the dataset folder "
            "that holds croissant.json)"
        )
    with _quiet_rdflib():
        try:
            dataset = mlc.Dataset(jsonld=str(path))
            records = list(dataset.records(record_set="candidates"))
        except (mlc.ValidationError, mlc.GenerationError, AssertionError, ValueError) as err:
            raise CroissantError(f"{path} cannot be read with mlcroissant: {err}") from err
    prefix = "candidates/"
    rows = [
        {
            key.removeprefix(prefix): value.decode("utf-8") if isinstance(value, bytes) else value
            for key, value in record.items()
        }
        for record in records
    ]
    table = pd.DataFrame(rows)
    for name in ID_COLUMNS:
        if name in table.columns:
            ids = pd.Series([row[name] for row in rows], dtype="Int64")
            table[name] = ids.astype(np.int64) if name == "id" and not ids.hasnans else ids
    return table
