"""Blocking checks that guard the dataset: unit-range tensors, a sound index, valid Croissant.

The tensor check also warns, without blocking, about the channels that ``job_tensors`` found to
carry no information.
"""

from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from astro_assets.defs.transients.assets import (
    CROISSANT_FILE,
    INDEX_CSV,
    croissant_metadata,
    job_tensors,
    master_index,
)
from astro_assets.defs.transients.partitions import jids_partitions
from astro_assets.resources.storage import DataStore
from astro_assets.science.transients.candidates import (
    MASTER_INDEX_COLUMNS,
    missing_image_jobs,
    missing_images_problem,
    read_index_csv,
)
from astro_assets.science.transients.splits import SPLITS
from astro_assets.science.transients.tensors import tensor_problems

if TYPE_CHECKING:
    # pandas takes 0.3 s to import, and every step process loads the code location: the
    # steps that use it import it.
    import pandas as pd


def _recorded_flat_channels(
    instance: dg.DagsterInstance, jids: list[str]
) -> dict[str, dict[str, str]]:
    """The ``flat_channels`` that ``job_tensors`` recorded for each job's latest materialization.

    The writer decides from the images (their range, ZScale's limits), which the tensor no
    longer shows: a two-valued image normalizes to the same 0 and 1 as a flat one. So the check
    reports what the writer found, by the one rule of ``TensorResult.flat_channels``.

    Returns
    -------
    dict
        Job id -> channel -> reason, in ``jids``' order, for the jobs with a flat channel.
    """
    # Two queries for the whole run, not one per job: a backfill checks thousands of jobs.
    latest = instance.event_log_storage.get_latest_storage_id_by_partition(
        job_tensors.key, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions=set(jids)
    )
    if not latest:
        return {}
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=job_tensors.key, storage_ids=list(latest.values())),
        limit=len(latest),
    ).records
    recorded = {}
    for record in records:
        value = record.asset_materialization.metadata.get("flat_channels")
        if value is not None and value.value:
            recorded[record.partition_key] = dict(value.value)
    return {jid: recorded[jid] for jid in jids if jid in recorded}


@dg.asset_check(
    asset=job_tensors,
    partitions_def=jids_partitions,
    blocking=True,
    description="Each tensor is (H, W, 4) float32 with every value finite and in [0, 1] (an "
    "error, which blocks); a channel that job_tensors found without information (its image "
    "constant or all zero, or ZScale's limits equal) is a warning, naming the job, the channel "
    "and why.",
)
def job_tensors_in_unit_range(
    context: dg.AssetCheckExecutionContext, data_store: DataStore
) -> dg.AssetCheckResult:
    # A malformed tensor is an error that blocks, a flat channel only a warning (Dagster blocks
    # on severity ERROR alone).
    problems = {}
    for jid in context.partition_keys:
        found = tensor_problems(data_store.layout.job_tensor_file(jid))
        if found:
            problems[jid] = found
    flat = _recorded_flat_channels(context.instance, context.partition_keys)
    checked = len(context.partition_keys)
    parts = []
    if problems:
        listing = "; ".join(f"{jid}: {', '.join(found)}" for jid, found in problems.items())
        parts.append(f"{len(problems)} of {checked} job tensor(s) are malformed: {listing}")
    if flat:
        listing = "; ".join(
            f"job {jid}: "
            + ", ".join(f"{channel} channel ({reason})" for channel, reason in reasons.items())
            for jid, reasons in flat.items()
        )
        parts.append(
            f"{len(flat)} of {checked} job tensor(s) have a channel that carries no "
            f"information: {listing}; check those images, or drop the job"
        )
    description = (
        "; ".join(parts)
        if parts
        else f"all {checked} job tensor(s) are (H, W, 4) float32 in [0, 1]"
    )
    return dg.AssetCheckResult(
        passed=not parts,
        severity=dg.AssetCheckSeverity.ERROR if problems else dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={"jobs_checked": checked, "problems": problems, "flat_channels": flat},
    )


def index_problems(index: "pd.DataFrame", dataset_dir: Path) -> list[str]:
    """Schema, label, file and split-leak problems of a master index."""

    problems = []
    missing = [c for c in MASTER_INDEX_COLUMNS if c not in index.columns]
    if missing:
        return [f"missing columns: {', '.join(missing)}"]
    if not set(index["label"].unique()) <= {0, 1}:
        problems.append(f"labels outside {{0, 1}}: {sorted(set(index['label'].unique()) - {0, 1})}")
    unknown_splits = set(index["split"].unique()) - set(SPLITS)
    if unknown_splits:
        problems.append(f"unknown splits: {sorted(unknown_splits)}")
    splits_per_job = index.groupby("jid")["split"].nunique()
    leaking = sorted(splits_per_job[splits_per_job > 1].index)
    if leaking:
        problems.append(f"jobs in more than one split: {', '.join(leaking[:20])}")
    absent = missing_image_jobs(index, dataset_dir)
    if absent:
        problems.append(missing_images_problem(absent))
    return problems


@dg.asset_check(
    asset=master_index,
    blocking=True,
    description="Columns and dtypes as documented, labels in {0, 1}, every image_filename "
    "exists, and no job is in two splits.",
)
def master_index_schema(data_store: DataStore) -> dg.AssetCheckResult:
    dataset = data_store.layout.dataset_dir
    # Read with the documented types, which the reader enforces: pandas' inference would make
    # a numeric jid an integer and every column of a header-only index text.
    try:
        index = read_index_csv(dataset / INDEX_CSV)
    except ValueError as error:
        return dg.AssetCheckResult(
            passed=False, description=str(error), metadata={"rows": 0, "problems": [str(error)]}
        )
    problems = index_problems(index, dataset)
    description = (
        f"{INDEX_CSV}: {'; '.join(problems)}"
        if problems
        else f"{INDEX_CSV}: {len(index)} row(s), columns and dtypes as documented"
    )
    return dg.AssetCheckResult(
        passed=not problems,
        description=description,
        metadata={"rows": len(index), "problems": problems},
    )


@dg.asset_check(
    asset=croissant_metadata,
    blocking=True,
    description="mlcroissant finds no static error, records of every RecordSet generate (which "
    "checks the SHA-256 of master_index.parquet, their source), the candidate records number "
    "exactly the index's rows, master_index.csv, which no RecordSet reads, has the SHA-256 "
    "recorded, and every job's image file exists.",
)
def croissant_valid(data_store: DataStore) -> dg.AssetCheckResult:
    # mlcroissant imports torch: loaded when the check runs, not with the code location.
    from astro_assets.science.transients.croissant import validate_croissant

    dataset = data_store.layout.dataset_dir
    report = validate_croissant(dataset / CROISSANT_FILE, base_dir=dataset)
    index = read_index_csv(dataset / INDEX_CSV, usecols=["jid", "image_filename"])
    rows = len(index)
    candidates = report.record_counts.get("candidates")
    # The records validate without the tensors, which they name: a job whose tensor was
    # removed after the index was published is found only here.
    absent = missing_image_jobs(index, dataset)
    wrong = [
        *(f"static error: {error}" for error in report.static_errors),
        *(f"dynamic error: {error}" for error in report.dynamic_errors),
        *([missing_images_problem(absent)] if absent else []),
    ]
    if report.ok and candidates != rows:
        wrong.append(f"{candidates} candidate record(s) for {rows} row(s) of {INDEX_CSV}")
    description = (
        f"{CROISSANT_FILE}: {'; '.join(wrong)}"
        if wrong
        else f"{CROISSANT_FILE}: valid, {candidates} candidate record(s) as in {INDEX_CSV}"
    )
    return dg.AssetCheckResult(
        passed=not wrong,
        description=description,
        metadata={
            "conforms_to": report.conforms_to or "missing",
            "static_errors": report.static_errors,
            "static_warnings": report.static_warnings,
            "dynamic_errors": report.dynamic_errors,
            "record_counts": report.record_counts,
            "index_rows": rows,
            "jobs_without_image": list(absent),
        },
    )


transients_checks = [job_tensors_in_unit_range, master_index_schema, croissant_valid]
