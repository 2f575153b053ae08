"""Discover complete job folders, register them as partitions and request one run for them;
run a registered job again when its files change, and remove the partition of a job whose
folder was removed."""

import hashlib

import dagster as dg

from astro_assets.defs.transients.jobs import job_tensors_job
from astro_assets.defs.transients.partitions import jids_partitions
from astro_assets.io.discovery import (
    Candidate,
    ScanState,
    job_folder_state,
    not_used_message,
    scan_changes,
    scan_job_folders,
)
from astro_assets.resources.storage import DataStore

MAX_FOLDERS_PER_TICK = 500
"""New folders examined per tick, and as many registered ones checked for changes."""


def _modified_after_last_run(instance: dg.DagsterInstance, job: Candidate) -> bool:
    """Whether ``job_tensors`` of the job's partition was materialized before its files were
    last modified (False when it never was: registering it asked for its first run)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("job_tensors"), asset_partitions=[job.key]),
        limit=1,
    ).records
    return bool(records) and records[0].timestamp * 1e9 < job.observation.mtime_ns


@dg.sensor(
    job=job_tensors_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Registers each new, complete job folder under data/incoming/jobs (all five files "
        "present and no longer changing) as a jids partition, and requests one job_tensors run "
        f"for the folders found in a tick (at most {MAX_FOLDERS_PER_TICK} examined per tick); "
        "requests a job_tensors run of a registered job whose files changed (psfcat.csv "
        f"edited, an image replaced; {MAX_FOLDERS_PER_TICK} registered jobs checked per tick, "
        "in turn); removes the partition of a job whose folder was removed."
    ),
)
def jids_sensor(context: dg.SensorEvaluationContext, data_store: DataStore) -> dg.SensorResult:
    known = context.instance.get_dynamic_partitions(jids_partitions.name)
    state = ScanState.from_json(context.cursor)
    discovery = scan_job_folders(
        data_store.layout.incoming_jobs,
        known_keys=known,
        pending=state.pending,
        limit=MAX_FOLDERS_PER_TICK,
    )
    changes, resume_after = scan_changes(
        discovery.present,
        handled=state.handled,
        pending=state.pending,
        observe=job_folder_state,
        limit=MAX_FOLDERS_PER_TICK,
        resume_after=state.resume_after,
    )
    for message in discovery.rejected:
        context.log.warning(message)
    for message in discovery.skipped + changes.skipped:
        context.log.info(f"skipped {message}")
    # The jobs are run in one range, which a job without its folder would fail.
    gone = list(discovery.vanished)
    if gone:
        context.log.info(
            f"job folders {', '.join(gone)} were removed: their partitions are removed "
            "(their products stay on disk)."
        )
    new_keys = [candidate.key for candidate in discovery.ready]
    run_requests = []
    if new_keys:
        run_requests.append(
            dg.RunRequest(
                run_key="jids:"
                + hashlib.sha256(
                    ",".join(c.run_key for c in discovery.ready).encode("utf-8")
                ).hexdigest(),
                tags={
                    "dagster/asset_partition_range_start": new_keys[0],
                    "dagster/asset_partition_range_end": new_keys[-1],
                },
            )
        )
    # A job first seen here (registered by `astro-assets ingest`, or by a sensor whose cursor
    # kept no states) is run again only if its files are newer than its tensor.
    changed = [
        job
        for job in changes.ready
        if job.key in state.handled or _modified_after_last_run(context.instance, job)
    ]
    for job in changed:
        context.log.info(f"job folder {job.key} changed: its job_tensors run is requested again.")
        run_requests.append(dg.RunRequest(partition_key=job.key, run_key=f"changed:{job.run_key}"))
    handled = {key: obs for key, obs in state.handled.items() if key in discovery.present}
    handled.update({c.key: c.observation for c in discovery.ready + changes.ready})
    cursor = ScanState(
        pending={**discovery.pending, **changes.pending},
        handled=handled,
        resume_after=resume_after,
    )
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=(
            ([jids_partitions.build_add_request(new_keys)] if new_keys else [])
            + ([jids_partitions.build_delete_request(gone)] if gone else [])
        ),
        cursor=cursor.to_json(),
        skip_reason=(
            None
            if run_requests
            else not_used_message(discovery.rejected, discovery.skipped + changes.skipped)
        ),
    )
