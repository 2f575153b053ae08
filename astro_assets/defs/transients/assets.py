"""The AI-ready transient dataset: per-job tensors, the master index and its Croissant record."""

import datetime as dt
import errno
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import numpy as np
import pydantic

# Dagster's own names for the version tags of a materialization (no public alias in 1.13).
from dagster._core.definitions.data_version import (
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    compute_logical_data_version,
)

from astro_assets.defs.previews import path_value
from astro_assets.defs.transients.partitions import jids_partitions
from astro_assets.io.atomic import atomic_path, atomic_write_text
from astro_assets.io.discovery import SETTLE_SECONDS
from astro_assets.io.fits import (
    IMAGE_ROLES,
    AmbiguousJobFileError,
    FitsFormatError,
    IncompleteFileError,
    image_shape,
    job_file_paths,
)
from astro_assets.io.images import thumbnail_markdown
from astro_assets.io.paths import UnsafePathError, check_key_length
from astro_assets.resources.storage import DataStore
from astro_assets.science.transients.candidates import (
    PsfcatFormatError,
    build_master_index,
    label_match_disagreements,
    missing_image_jobs,
    missing_images_problem,
    read_index_csv,
    read_psfcat,
    write_master_index,
)
from astro_assets.science.transients.splits import split_counts, split_groups, split_table
from astro_assets.science.transients.tensors import (
    CHANNELS,
    ImageShapeMismatchError,
    TensorResult,
    tensor_problems,
    write_job_tensor,
)
from astro_assets.science.transients.zscale import NoFinitePixelsError

if TYPE_CHECKING:
    # pandas takes 0.3 s to import, and every step process loads the code location: the
    # steps that use it import it.
    import pandas as pd

INDEX_CSV = "master_index.csv"
INDEX_PARQUET = "master_index.parquet"
CROISSANT_FILE = "croissant.json"
PUBLISHED_SPLITS_FILE = "published_splits.json"


def candidates_file(data_store: DataStore, jid: str) -> Path:
    return data_store.layout.job_candidates_file(jid)


def _channel_strip(tensor: np.ndarray, max_side: int = 64) -> np.ndarray:
    """The four channels side by side, subsampled to at most ``max_side`` pixels high."""
    step = max(1, int(np.ceil(max(tensor.shape[:2]) / max_side)))
    small = np.asarray(tensor[::step, ::step, :], dtype=np.float32)
    return np.concatenate(
        [np.rint(np.clip(small[..., c], 0, 1) * 255).astype(np.uint8) for c in range(4)], axis=1
    )


class JobTensorError(Exception):
    """Jobs of a ``job_tensors`` run failed; the message names each job, then its error."""


class MalformedTensorError(ValueError):
    """A job's written tensor is not (H, W, 4) float32 in [0, 1]."""


BAD_INPUT_ERRORS: tuple[type[Exception], ...] = (
    PsfcatFormatError,
    FitsFormatError,
    AmbiguousJobFileError,
    ImageShapeMismatchError,
    NoFinitePixelsError,
    MalformedTensorError,
)
"""The errors that mean a job's files were read and found bad (or its tensor just written is
malformed): such a job's earlier tensor and candidates no longer describe its files and are
removed, unless its files are still being written (:func:`_still_written`). Any other error,
above all an ``OSError`` (a missing folder or file, which ``MissingJobFileError`` is, a
permission refused, a mount gone, a full disk), and an :class:`IncompleteFileError` (an empty
or cut FITS file or catalogue, as ``cp`` leaves while it copies), says nothing about the data:
the job fails, and its last good tensor and candidates are kept. See :func:`inputs_found_bad`."""


def inputs_found_bad(error: BaseException) -> bool:
    """Whether ``error`` means that a job's inputs were read and found bad.

    Parameters
    ----------
    error : BaseException
        What processing the job raised.

    Returns
    -------
    bool
        True for an instance of one of :data:`BAD_INPUT_ERRORS` that is no ``OSError``, no
        :class:`IncompleteFileError` (a file empty or cut short, most likely still being
        copied, is a format error too) and was not raised from an operating system error (an
        ``OSError`` with an errno: a FITS file that could not be read at all is wrapped as
        ``FitsFormatError`` too); False otherwise, so that an error of unknown kind keeps the
        job's earlier products.
    """
    if not isinstance(error, BAD_INPUT_ERRORS) or isinstance(error, (OSError, IncompleteFileError)):
        return False
    cause = error.__cause__
    while cause is not None:
        # astropy raises OSError without an errno for a file that is not FITS; the system
        # sets one when the file could not be read.
        if isinstance(cause, OSError) and cause.errno is not None:
            return False
        cause = cause.__cause__
    return True


MAX_LISTED_FAILURES = 10
"""Failed jobs named in the step's error; the others are counted (each is logged)."""

KEPT_NOTE = "its earlier tensor and candidates are kept"
"""Said of a failed job whose files could not be read, when it has earlier products."""

WRITING_NOTE = "materialize job_tensors for this job again once the copy has finished"
"""Said of a failed job whose files are still being written."""

FileStats = dict[str, tuple[int, int]]
"""A job folder's files: name -> (size in bytes, modification time in ns)."""


def _file_stats(job_dir: Path) -> FileStats:
    """The size and modification time of each file in ``job_dir``; empty if it is unreadable."""
    stats: FileStats = {}
    try:
        with os.scandir(job_dir) as entries:
            for entry in entries:
                try:
                    if entry.is_file():
                        info = entry.stat()
                        stats[entry.name] = (info.st_size, info.st_mtime_ns)
                except OSError:
                    # Removed since the listing: the comparison with the earlier look tells.
                    continue
    except OSError:
        return {}
    return stats


def _still_written(job_dir: Path, before: FileStats, now_ns: int | None = None) -> str | None:
    """Why a job's files look still being written, or None when they look settled.

    Parameters
    ----------
    job_dir : pathlib.Path
        The job folder.
    before : dict
        :func:`_file_stats` of the folder when the job's processing began.
    now_ns : int, optional
        The time to judge at, in ns since the epoch; now by default.

    Returns
    -------
    str or None
        A file added, removed, or whose size or modification time changed since ``before``,
        or a file modified less than :data:`SETTLE_SECONDS` ago: what was read may be a copy
        in progress, not the job's data, so the job's earlier products must stay.
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    after = _file_stats(job_dir)
    changed = sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )
    if changed:
        return f"{', '.join(changed)} changed while the job was processed"
    recent = {
        name: (now_ns - mtime_ns) / 1e9
        for name, (_, mtime_ns) in after.items()
        if now_ns - mtime_ns < SETTLE_SECONDS * 1e9
    }
    if recent:
        name = min(recent, key=recent.__getitem__)
        return (
            f"{name} was modified {max(recent[name], 0.0):.0f} s ago, less than the "
            f"{SETTLE_SECONDS:g} s after which a file is taken as complete"
        )
    return None


def _job_failures(
    failed: dict[str, Exception],
    total: int,
    kept: Mapping[str, str] | None = None,
    still_published: list[str] | None = None,
) -> str:
    """One line naming the first failed jobs with their errors (which name the file and what
    to do), then how many more failed.

    ``kept`` maps the failed jobs whose earlier tensor and candidates were kept (their files
    could not be read, looked incomplete or were still being written) to the note said of
    them; ``still_published`` lists the removed jobs that the published master index still
    lists.
    """
    kept = kept or {}
    written = total - len(failed)
    listing = "; ".join(
        f"job {jid}: {type(error).__name__}: {' '.join(str(error).splitlines())}"
        + (f" ({kept[jid]})" if jid in kept else "")
        for jid, error in list(failed.items())[:MAX_LISTED_FAILURES]
    )
    more = len(failed) - MAX_LISTED_FAILURES
    if more > 0:
        listing += f"; and {more} more (each logged as an error in the run)"
    if still_published:
        listing += (
            f"; the published master_index.csv still lists the removed job(s) "
            f"{', '.join(still_published[:MAX_LISTED_FAILURES])}"
            f"{', ...' if len(still_published) > MAX_LISTED_FAILURES else ''}: materialize "
            "master_index again to leave them out, or fix the job"
        )
    removed = (
        "a job whose files were found bad keeps neither tensor nor candidates, so master_index "
        "leaves it out; one whose files could not be read, look incomplete or are still being "
        "written keeps its earlier ones"
    )
    if written == 1:
        recorded = "the other 1 was written and is recorded as materialized"
    elif written:
        recorded = f"the other {written} were written and are recorded as materialized"
    else:
        recorded = "no job was written"
    return f"{len(failed)} of {total} job(s) failed ({removed}; {recorded}): {listing}"


def _write_job(data_store: DataStore, jid: str) -> tuple[TensorResult, "pd.DataFrame"]:
    """Write one job's tensor and keep its validated candidates as ``candidates/<jid>.csv``.

    The catalogue is read and checked against the images' shape, from their headers, before
    anything is written: a broken catalogue costs no tensor.

    Both files are written under temporary names and the candidates renamed in place only
    once the tensor is: a failure before leaves the earlier tensor and candidates as they were.
    Should the candidates' rename fail after the tensor's, neither is kept, as the new tensor
    would otherwise be paired with the earlier catalogue.
    """
    layout = data_store.layout
    # A key registered before keys were limited would fail at the first file named after it.
    try:
        check_key_length(jid)
    except UnsafePathError as error:
        raise UnsafePathError(
            f"{error}: rename the job folder (the partition of this name is removed once its "
            "folder is gone, and the new name is registered)"
        ) from None
    files = job_file_paths(layout.job_dir(jid))
    images = {role: files[role] for role in IMAGE_ROLES}
    # write_job_tensor refuses images whose shapes differ from the science image's.
    science_shape = image_shape(images["science"])
    candidates = read_psfcat(files["catalog"], jid=jid, image_shape=science_shape)
    tensor_replaced = False
    try:
        with atomic_path(candidates_file(data_store, jid)) as tmp:
            candidates.to_csv(tmp, index=False)
            result = write_job_tensor(
                layout.job_tensor_file(jid), images, known_shapes={"science": science_shape}
            )
            tensor_replaced = True
    except BaseException:
        if tensor_replaced:
            _remove_job_products(data_store, jid)
        raise
    return result, candidates


def _exists(path: Path) -> bool:
    """``path.exists()``, False for a name longer than the file system allows (no file can
    have it); other errors, such as a permission refused, are raised."""
    try:
        return path.exists()
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:
            return False
        raise


def _remove_job_products(data_store: DataStore, jid: str) -> None:
    """Remove a job's tensor and candidates, this run's or an earlier run's.

    Called for a job whose files were read and found bad (:func:`inputs_found_bad`): kept, an
    earlier tensor and catalogue would no longer be those of the job's files (an edited
    catalogue, a replaced image); one kept without the other would pair a catalogue with
    another image. Without either, master_index leaves the job out until it runs again.
    """
    data_store.layout.job_tensor_file(jid).unlink(missing_ok=True)
    candidates_file(data_store, jid).unlink(missing_ok=True)


def _published_jobs(data_store: DataStore, jids: list[str]) -> list[str]:
    """Those of ``jids`` that the published ``master_index.csv`` lists, in ``jids``' order."""
    index_csv = data_store.layout.dataset_dir / INDEX_CSV
    if not jids or not index_csv.exists():
        return []
    try:
        listed = set(read_index_csv(index_csv, usecols=["jid"])["jid"])
    except (OSError, ValueError):
        # The index is checked by master_index_schema; here it only adds a hint to an error.
        return []
    return [jid for jid in jids if jid in listed]


def _job_metadata(jid: str, result: TensorResult, candidates: "pd.DataFrame") -> dict:
    """The metadata recorded for one job's partition."""
    labels = candidates["label"].value_counts().to_dict()
    return {
        "shape": str(result.shape),
        "candidates": len(candidates),
        "real": int(labels.get(1, 0)),
        "bogus": int(labels.get(0, 0)),
        "outside_image": int((~candidates["in_image"]).sum()),
        "zscale_limits": dg.MetadataValue.json(
            {name: [z.vmin, z.vmax] for name, z in result.channels.items()}
        ),
        "nan_counts": dg.MetadataValue.json(
            {name: z.nan_count for name, z in result.channels.items()}
        ),
        "inf_counts": dg.MetadataValue.json(
            {name: z.inf_count for name, z in result.channels.items()}
        ),
        "flat_channels": dg.MetadataValue.json(result.flat_channels()),
        "path": path_value(result.path),
        "preview": dg.MetadataValue.md(
            thumbnail_markdown(
                _channel_strip(np.load(result.path, mmap_mode="r")),
                max_size=256,
                alt=f"{jid}: {', '.join(CHANNELS)}",
            )
        ),
    }


@dg.asset(
    partitions_def=jids_partitions,
    group_name="transients",
    code_version="1",
    kinds={"numpy", "fits"},
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def job_tensors(
    context: dg.AssetExecutionContext, data_store: DataStore
) -> Iterator[dg.AssetMaterialization | dg.MaterializeResult]:
    """Each job's four FITS images, ZScale-normalized into ``images/<jid>.npy``.

    The tensor is (H, W, 4) float32 in [0, 1], channels science, reference, difference, score,
    written channel by channel through a memory map. The job's ``psfcat.csv`` is validated
    first, against the images' shape from their headers, and kept as ``candidates/<jid>.csv``
    for ``master_index``. A channel that carries no information (its image constant or all
    zero, or its ZScale limits equal) is listed with the reason in the partition's
    ``flat_channels`` metadata and logged as a warning, and ``job_tensors_in_unit_range``
    warns about it; an image without a finite pixel fails its job.

    A backfill of many jobs runs as one run (single-run backfill policy), processing its jobs
    one after the other. A job that fails does not stop the others: every job is processed and
    each good one's tensor written (atomically, as always). What becomes of a failed job's
    tensor and candidates, from this run or an earlier one, depends on why it failed
    (:func:`inputs_found_bad`, :data:`BAD_INPUT_ERRORS`):

    - its files were read and found bad (a catalogue or FITS format error, images on different
      grids, an image without a finite pixel, a malformed tensor just written): they are
      removed, so that ``master_index`` leaves the job out rather than pair a catalogue with
      another image. Should the published ``master_index.csv`` still list the job, the error
      says so: materialize ``master_index`` again to leave it out, or fix the job;
    - its files could not be read (a folder or file missing, say while it is copied again, a
      permission refused, a mount gone, a full disk, or any error of another kind), or look
      incomplete (:class:`~astro_assets.io.fits.IncompleteFileError`: an empty or truncated
      FITS file, an empty ``psfcat.csv`` or one whose last line is cut, as ``cp`` leaves while
      it copies): they are kept as they were, the last good ones, and the error says so;
    - its files were found bad but are still being written: before removing anything, the
      job's files are looked at again, and when one was added, removed or changed in size or
      modification time since the job began, or was modified less than
      :data:`SETTLE_SECONDS` ago, what was read may be a copy in progress: the products are
      kept and the error says the files are still being written.

    When every job succeeds, the run records one materialization per job and the blocking
    check ``job_tensors_in_unit_range`` runs on them. When a job fails, the step fails and that
    check does not run; so the step inspects each written tensor itself, by the check's own
    rule, and a malformed one fails its job too. Then it records the sound jobs as
    materialized, each with its metadata (an ``AssetMaterialization`` per partition, which
    Dagster 1.13 counts for a partition-range run: the UI shows them materialized and the
    failed ones failed, and a backfill retries only the failed ones), and fails with one
    :class:`JobTensorError` naming the failed jobs with their errors (which name the file and
    what to do).
    """
    totals = {"candidates": 0, "real": 0, "bogus": 0}
    jids = context.partition_keys
    written: dict[str, dict] = {}
    failed: dict[str, Exception] = {}
    kept: dict[str, str] = {}
    removed: list[str] = []
    started: dict[str, FileStats] = {}

    def fail(jid: str, error: Exception) -> None:
        failed[jid] = error
        try:
            settle_failed_job(jid, error)
        except OSError as products_error:
            # Looking at or removing its products failed too (a mount gone, a name the file
            # system refuses): the job is failed all the same, and the other jobs go on.
            context.log.error(
                f"{jid}: {type(error).__name__}: {error} (its earlier tensor and candidates "
                f"could not be examined: {type(products_error).__name__}: {products_error})"
            )

    def settle_failed_job(jid: str, error: Exception) -> None:
        """Remove or keep a failed job's products by :func:`inputs_found_bad`, and log it."""
        has_products = _exists(data_store.layout.job_tensor_file(jid))
        writing = None
        if inputs_found_bad(error):
            # A malformed tensor is this run's own output, wrong whatever its inputs were.
            if not isinstance(error, MalformedTensorError):
                writing = _still_written(data_store.layout.job_dir(jid), started.get(jid, {}))
            if writing is None:
                _remove_job_products(data_store, jid)
                removed.append(jid)
                context.log.error(f"{jid}: {type(error).__name__}: {error}")
                return
        # Nothing was learnt about the job's data: its last good products stay published.
        if writing is not None:
            kept[jid] = f"its files are still being written: {writing}; " + (
                f"{KEPT_NOTE}; {WRITING_NOTE}" if has_products else WRITING_NOTE
            )
        elif has_products:
            kept[jid] = KEPT_NOTE
        note = f" ({kept[jid]})" if jid in kept else ""
        context.log.error(f"{jid}: {type(error).__name__}: {error}{note}")

    for jid in jids:
        started[jid] = _file_stats(data_store.layout.job_dir(jid))
        try:
            result, candidates = _write_job(data_store, jid)
        except Exception as error:
            # Carry on: one broken file must not cost the other jobs of the range their run.
            fail(jid, error)
            continue
        metadata = _job_metadata(jid, result, candidates)
        written[jid] = metadata
        flat = result.flat_channels()
        if flat:
            listing = "; ".join(f"{name}: {reason}" for name, reason in flat.items())
            context.log.warning(f"{jid}: channel(s) without information: {listing}")
        context.log.info(f"{jid}: {result.shape} tensor, {len(candidates)} candidates")
    if failed:
        # The blocking check will not run on this step's jobs: what it would refuse is refused
        # here, or a malformed tensor would be recorded as materialized and never checked.
        for jid in list(written):
            path = data_store.layout.job_tensor_file(jid)
            try:
                problems = tensor_problems(path)
            except OSError as error:
                # Unreadable now (a mount gone) says nothing of its content: kept, not recorded.
                del written[jid]
                fail(jid, error)
                continue
            except ValueError as error:
                problems = [f"not a readable .npy file ({error})"]
            if problems:
                del written[jid]
                fail(
                    jid,
                    MalformedTensorError(
                        f"{path}: {', '.join(problems)}; the tensor was removed: check the "
                        "job's images, then materialize job_tensors for this job again"
                    ),
                )
        failed = {jid: failed[jid] for jid in jids if jid in failed}
        still_published = _published_jobs(data_store, removed)
        # Without an output, nothing else records the jobs that were written. The version tags
        # are those Dagster gives an output's materialization (job_tensors has no inputs), so
        # that a later code version shows these partitions stale like the others; without a
        # code version, Dagster takes the run id for it.
        code_version = (
            context.assets_def.code_versions_by_key.get(context.asset_key) or context.run.run_id
        )
        tags = {
            CODE_VERSION_TAG: code_version,
            DATA_VERSION_TAG: compute_logical_data_version(code_version, {}).value,
        }
        for jid, metadata in written.items():
            yield dg.AssetMaterialization(
                asset_key=context.asset_key, partition=jid, metadata=metadata, tags=tags
            )
        errors = list(failed.values())
        # One error is chained as itself, so that its traceback shows in the UI; Dagster shows
        # a group by its message alone, but Python keeps each error's traceback in it.
        cause = errors[0] if len(errors) == 1 else ExceptionGroup("the jobs' errors", errors)
        raise JobTensorError(
            _job_failures(failed, len(jids), kept=kept, still_published=still_published)
        ) from cause
    for jid, metadata in written.items():
        # Metadata per partition: a run over N jobs records N small events, not N copies of
        # everything (the event log would grow as N squared).
        context.add_asset_metadata(metadata, partition_key=jid)
        for key in totals:
            totals[key] += metadata[key]
    yield dg.MaterializeResult(
        metadata={
            "jobs_in_run": len(jids),
            **{f"{k}_in_run": v for k, v in totals.items()},
        }
    )


def _product_names(folder: Path, suffix: str) -> list[str]:
    """The names of the files ending in ``suffix`` in ``folder``, sorted; hidden ones (the
    temporary files of writes at work) left out; none when the folder does not exist."""
    try:
        with os.scandir(folder) as entries:
            return sorted(
                entry.name
                for entry in entries
                if not entry.name.startswith(".")
                and entry.name.endswith(suffix)
                and entry.is_file()
            )
    except FileNotFoundError:
        return []


def _withdraw_removed_jobs(
    context: dg.AssetExecutionContext, data_store: DataStore
) -> tuple[list[str], list[str]]:
    """Move the tensors and candidates of jobs no longer registered out of the dataset folder.

    A job whose folder was removed loses its partition, but its ``images/<jid>.npy`` and
    ``candidates/<jid>.csv`` stayed in the published folder, where the Croissant FileSet
    ``images/*.npy`` matched the tensor and anyone shipping the folder shipped the removed
    job. They are moved, not deleted, to ``withdrawn/images/`` and ``withdrawn/candidates/``
    under the data root (a later withdrawal of the same job replaces them there). Only jobs
    that are no registered partition are moved: a registered job's products stay wherever
    the index stands, as ``job_tensors`` may be writing them while this runs.

    Returns
    -------
    (list of str, list of str)
        The jobs whose products were moved, and those whose products could not be moved (each
        logged with its error).
    """
    layout = data_store.layout
    found: dict[str, list[Path]] = {}
    for folder, suffix in (
        (layout.dataset_images_dir, ".npy"),
        (layout.dataset_dir / "candidates", ".csv"),
    ):
        for name in _product_names(folder, suffix):
            found.setdefault(name[: -len(suffix)], []).append(folder / name)
    # Read after the listing: a job registered, then written while this runs, is among them.
    registered = set(context.instance.get_dynamic_partitions(jids_partitions.name))
    moved: list[str] = []
    not_moved: list[str] = []
    for jid in sorted(found.keys() - registered):
        try:
            for path in found[jid]:
                target = layout.withdrawn_dir / path.parent.name / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
        except OSError as error:
            not_moved.append(jid)
            context.log.warning(
                f"{jid}: a removed job's product could not be moved out of the published "
                f"dataset folder ({type(error).__name__}: {error}); it is still in "
                f"{path.parent}: move it out by hand, or it ships with the folder"
            )
            continue
        moved.append(jid)
    if moved:
        context.log.info(
            f"{len(moved)} removed job(s) had products in the published dataset folder, moved "
            f"to {layout.withdrawn_dir} (nothing deleted): {', '.join(moved[:20])}"
            + (", ..." if len(moved) > 20 else "")
        )
    return moved, not_moved


class MasterIndexConfig(dg.Config):
    split_seed: int = pydantic.Field(
        default=0, description="Seed of the hash assigning jobs to splits."
    )
    train_fraction: float = 0.7
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    split_group_pattern: str | None = pydantic.Field(
        default=None,
        description="Regular expression on the job id whose first group taking part in the "
        "match (or the whole match) names a group of jobs kept in one split: repeated epochs "
        "or overlapping fields share stars and artefacts, which would leak from train into "
        "test. E.g. '^(.+)_e\\d+$' keeps '<field>_e1', '<field>_e2', ... together; a job it "
        "does not match is its own group. Unset or empty: job by job.",
    )


def _table_schema(index: "pd.DataFrame") -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in index.dtypes.items()]
    )


@dg.asset(
    group_name="transients",
    deps=[job_tensors],
    code_version="2",
    kinds={"pandas", "parquet"},
)
def master_index(
    context: dg.AssetExecutionContext, config: MasterIndexConfig, data_store: DataStore
) -> dg.MaterializeResult:
    """One row per candidate of every job: ``master_index.csv`` (+ ``.parquet``).

    The seed's columns, then ``split`` (train / validation / test, assigned per job by a seeded
    hash of the jid, never per candidate; with ``split_group_pattern``, per group of jobs, by
    the hash of the group's key) and ``in_image``.

    The tensors and candidates of jobs whose partition was removed (their folder deleted) are
    then moved out of the published dataset folder into ``withdrawn/`` under the data root
    (:func:`_withdraw_removed_jobs`), so that ``images/`` holds no removed job's tensor.
    """
    registered = context.instance.get_dynamic_partitions(jids_partitions.name)
    present = [jid for jid in registered if candidates_file(data_store, jid).exists()]
    missing = sorted(set(registered) - set(present))
    if not present:
        raise ValueError(
            "no job has been materialized yet: materialize job_tensors for at least one job"
        )
    if missing:
        context.log.warning(
            f"{len(missing)} registered job(s) have no tensors yet and are left out: "
            f"{', '.join(missing[:20])}"
        )
    groups = (
        None
        if not config.split_group_pattern
        else split_groups(present, config.split_group_pattern)
    )
    splits = split_table(
        present,
        seed=config.split_seed,
        fractions=(config.train_fraction, config.validation_fraction, config.test_fraction),
        groups=groups,
    )
    frames = [read_index_csv(candidates_file(data_store, jid)) for jid in present]
    index = build_master_index(frames, splits)
    if index.empty:
        # Every catalogue header-only is far likelier a broken export than a sky without a
        # single detection; an empty index would also replace the last good one and publish a
        # new Croissant version with no records. So the previous files stay.
        raise ValueError(
            f"no candidates in any job: the psfcat.csv of all {len(present)} job(s) "
            f"({', '.join(present[:5])}{', ...' if len(present) > 5 else ''}) has no data "
            "line; check the catalogue export, then materialize job_tensors for those jobs "
            "again (master_index.csv was left as it was)"
        )
    dataset = data_store.layout.dataset_dir
    write_master_index(index, dataset / INDEX_CSV, dataset / INDEX_PARQUET)
    withdrawn, not_withdrawn = _withdraw_removed_jobs(context, data_store)
    disagreements = label_match_disagreements(index)
    if disagreements:
        # Labels are the catalogues' own and published as given (vetted by eye, say); where
        # they do not follow the matching rule the Croissant text describes, the user is told.
        listing = ", ".join(f"{jid} ({n})" for jid, n in list(disagreements.items())[:20])
        more = f" and {len(disagreements) - 20} more" if len(disagreements) > 20 else ""
        context.log.warning(
            f"{sum(disagreements.values())} candidate(s) in {len(disagreements)} job(s) have a "
            f"label that disagrees with their match column (label 1 when match >= 0, else 0): "
            f"{listing}{more}; the labels are published as psfcat.csv gives them: check those "
            "catalogues if they were meant to be labelled by matching"
        )
    counts = (
        index.groupby(["split", "label"]).size().rename("rows").reset_index().to_dict("records")
    )
    return dg.MaterializeResult(
        metadata={
            "rows": len(index),
            "jobs": len(present),
            "jobs_left_out": dg.MetadataValue.json(missing),
            "removed_jobs_withdrawn": dg.MetadataValue.json(withdrawn),
            "removed_jobs_not_withdrawn": dg.MetadataValue.json(not_withdrawn),
            "jobs_per_split": dg.MetadataValue.json(split_counts(splits)),
            "split_group_pattern": config.split_group_pattern or "none (job by job)",
            "split_groups": len(set(groups.values())) if groups is not None else len(present),
            "rows_per_split_and_label": dg.MetadataValue.json(counts),
            "real_fraction": float(index["label"].mean()),
            "labels_disagreeing_with_match": sum(disagreements.values()),
            "jobs_with_labels_disagreeing_with_match": dg.MetadataValue.json(disagreements),
            "dagster/column_schema": _table_schema(index),
            "dagster/row_count": len(index),
            "path": path_value(dataset / INDEX_CSV),
        }
    )


class CroissantConfig(dg.Config):
    name: str = "astro-assets-transients"
    license: str = "CC-BY-4.0"
    cite_as: str = pydantic.Field(
        default="astro_assets transient real/bogus dataset",
        description="Citation text (citeAs) for users of the dataset.",
    )
    url: str | None = None
    data_collection: str | None = pydantic.Field(
        default=None,
        description="How this data was collected (RAI); unset keeps the pipeline's default text. "
        "Say so when the jobs are synthetic.",
    )


@dg.asset(
    group_name="transients",
    deps=[master_index],
    code_version="4",
    kinds={"json"},
)
def croissant_metadata(
    context: dg.AssetExecutionContext, config: CroissantConfig, data_store: DataStore
) -> dg.MaterializeResult:
    """``croissant.json``: the dataset described in MLCommons Croissant 1.1 by mlcroissant.

    The candidates records are read from ``master_index.parquet``, the CSV's typed twin, so
    that ids and job ids come back exact (see ``science.transients.croissant``).

    The version is semver: major when the split of an already published job changes, minor when
    jobs are added, patch otherwise.
    """
    # mlcroissant imports torch: loaded when this step runs, not with the code location.
    from astro_assets.science.transients import croissant

    dataset = data_store.layout.dataset_dir
    index = read_index_csv(dataset / INDEX_CSV, usecols=["jid", "split", "image_filename"])
    # A tensor removed after the index was written (its job's files were found bad) would be
    # published under a new version that names a missing file: refuse before writing anything.
    absent = missing_image_jobs(index, dataset)
    if absent:
        raise dg.Failure(
            description=f"{INDEX_CSV}: {missing_images_problem(absent)}; {CROISSANT_FILE} and "
            "the published version were left as they were",
            metadata={"jobs_without_image": list(absent)},
        )
    jobs = index[["jid", "split"]].drop_duplicates()
    membership = dict(zip(jobs["jid"], jobs["split"], strict=True))
    published = dataset / PUBLISHED_SPLITS_FILE
    previous = json.loads(published.read_text()) if published.exists() else {}
    index_sha256 = hashlib.sha256((dataset / INDEX_CSV).read_bytes()).hexdigest()
    version = croissant.semver_for(
        previous.get("version"),
        previous.get("splits", {}),
        membership,
        content_changed=index_sha256 != previous.get("index_sha256"),
    )
    rai = dict(croissant.DEFAULT_RAI)
    if config.data_collection:
        rai["data_collection"] = config.data_collection
    jsonld = croissant.build_croissant(
        dataset,
        dataset / INDEX_CSV,
        index_parquet=dataset / INDEX_PARQUET,
        name=config.name,
        version=version,
        date_published=dt.date.today(),
        cite_as=config.cite_as,
        license=config.license,
        url=config.url,
        rai=rai,
    )
    target = croissant.write_croissant(dataset / CROISSANT_FILE, jsonld)
    # The FileSet's images/*.npy matches every tensor there: say which ones no row lists (a
    # job whose catalogue has no candidate, or a removed job's tensor that could not be moved).
    listed = set(index["image_filename"])
    unlisted = [
        f"images/{name}"
        for name in _product_names(data_store.layout.dataset_images_dir, ".npy")
        if f"images/{name}" not in listed
    ]
    if unlisted:
        context.log.warning(
            f"{len(unlisted)} tensor(s) in {data_store.layout.dataset_images_dir} are matched by "
            f"the FileSet images/*.npy but listed by no row of {INDEX_CSV}: "
            f"{', '.join(unlisted[:20])}{', ...' if len(unlisted) > 20 else ''}; a job without "
            "candidates has no row; any other file there is not part of the dataset: move it out"
        )
    atomic_write_text(
        published,
        json.dumps(
            {"version": version, "index_sha256": index_sha256, "splits": membership}, indent=1
        ),
    )
    return dg.MaterializeResult(
        metadata={
            "version": version,
            "previous_version": previous.get("version") or "none",
            "conforms_to": jsonld.get("conformsTo", ""),
            "license": config.license,
            "record_sets": dg.MetadataValue.json([rs["@id"] for rs in jsonld.get("recordSet", [])]),
            "images_not_in_index": dg.MetadataValue.json(unlisted),
            "path": path_value(target),
        }
    )
