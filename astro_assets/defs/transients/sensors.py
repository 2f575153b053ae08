"""Discover complete job folders, register them as partitions and request one run for them;
run a registered job again when its files change, and remove the partition of a job whose
folder was removed."""

import hashlib

import dagster as dg

from astro_assets.defs.scans import plan_tick, tick_result, unlisted_result
from astro_assets.defs.transients.jobs import job_tensors_job
from astro_assets.defs.transients.partitions import jids_partitions
from astro_assets.io.discovery import (
    INCOMPLETE_RECHECK_SECONDS,
    VANISH_GRACE_SECONDS,
    Candidate,
    ScanState,
    job_folder_sample,
    job_folder_state,
    scan_changes,
    scan_job_folders,
)
from astro_assets.resources.storage import DataStore

MAX_FOLDERS_PER_TICK = 500
"""Job folders whose files a tick examines, in all: new folders first, then registered ones."""
RESERVED_FOR_REGISTERED = 100
"""Of ``MAX_FOLDERS_PER_TICK``, the folders kept for registered jobs when there are so many:
new folders that stay incomplete must not keep a job's edits from being seen."""


def _modified_after_last_run(instance: dg.DagsterInstance, job: Candidate) -> bool:
    """Whether the job's files were modified after ``job_tensors`` of its partition last ran.

    False when it never ran: registering it asked for its first run.
    """
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
        "for the folders found in a tick; requests a job_tensors run of a registered job whose "
        "files changed (psfcat.csv edited, an image replaced or modified; not a chmod, an "
        "identical copy keeping the images' times or a touch of psfcat.csv alone); at most "
        f"{MAX_FOLDERS_PER_TICK} folders examined per tick, new ones first in turn and at least "
        f"{RESERVED_FOR_REGISTERED} registered ones in turn; an incomplete folder is examined "
        "again once a file is added to or removed from it, or after "
        f"{INCOMPLETE_RECHECK_SECONDS / 60:.0f} minutes. "
        f"Removes the partition of a job whose folder was missing for "
        f"{VANISH_GRACE_SECONDS:.0f} s, unless data/incoming/jobs is missing, unreadable, "
        "lists no job at all or is on another device than before (a disk not mounted)."
    ),
)
def jids_sensor(context: dg.SensorEvaluationContext, data_store: DataStore) -> dg.SensorResult:
    """Register new jobs, run changed ones again and remove the partitions of removed ones.

    A change of a file's name, size, modification or change time or inode
    (:func:`~astro_assets.io.discovery.job_folder_state`) has the files' content read
    (:func:`~astro_assets.io.discovery.job_folder_sample`: ``psfcat.csv`` whole, the images
    sampled, with their modification times); the job runs again only when that differs from
    what was kept, so ``chmod -R``, ``mv`` or ``cp -p`` of the same files runs nothing, while a
    ``touch`` or plain copy of an image runs the job (an edit between an image's samples would
    otherwise go unseen).
    """
    folder = data_store.layout.incoming_jobs
    known = context.instance.get_dynamic_partitions(jids_partitions.name)
    state = ScanState.from_json(context.cursor)
    discovery = scan_job_folders(
        folder,
        known_keys=known,
        pending=state.pending,
        limit=MAX_FOLDERS_PER_TICK - min(RESERVED_FOR_REGISTERED, len(known)),
        resume_after=state.new_after,
        incomplete=state.incomplete,
    )
    if not discovery.listed:
        return unlisted_result(context, discovery)
    changes = scan_changes(
        discovery.present,
        handled=state.handled,
        pending=state.pending,
        observe=job_folder_state,
        sample=job_folder_sample,
        limit=MAX_FOLDERS_PER_TICK - discovery.examined,
        resume_after=state.resume_after,
    )
    removals = plan_tick(context, folder, state, discovery, changes)
    # The jobs are run in one range, which a job without its folder would fail.
    if removals.gone:
        context.log.info(
            f"job folders {', '.join(removals.gone)} were removed: their partitions are removed "
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
    return tick_result(
        jids_partitions,
        state,
        discovery,
        changes,
        removals,
        run_requests=run_requests,
        handled={job.key: job.observation for job in changes.ready},
    )
