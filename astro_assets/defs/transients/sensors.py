"""Discover complete job folders, register them as partitions and request one run for them."""

import hashlib
import json

import dagster as dg

from astro_assets.defs.transients.jobs import job_tensors_job
from astro_assets.defs.transients.partitions import jids_partitions
from astro_assets.io.discovery import Observation, scan_job_folders, vanished_job_keys
from astro_assets.resources.storage import DataStore

MAX_FOLDERS_PER_TICK = 500


@dg.sensor(
    job=job_tensors_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Registers each new, complete job folder under data/incoming/jobs (all five files "
        "present and no longer changing) as a jids partition, and requests one job_tensors run "
        f"for the folders found in a tick (at most {MAX_FOLDERS_PER_TICK} examined per tick); "
        "removes the partition of a job whose folder was removed."
    ),
)
def jids_sensor(context: dg.SensorEvaluationContext, data_store: DataStore) -> dg.SensorResult:
    known = context.instance.get_dynamic_partitions(jids_partitions.name)
    pending = {
        key: Observation.from_json(value)
        for key, value in json.loads(context.cursor or "{}").items()
    }
    discovery = scan_job_folders(
        data_store.layout.incoming_jobs,
        known_keys=known,
        pending=pending,
        limit=MAX_FOLDERS_PER_TICK,
    )
    for message in discovery.rejected:
        context.log.warning(message)
    # The jobs are run in one range, which a job without its folder would fail.
    gone = vanished_job_keys(data_store.layout.incoming_jobs, known)
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
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=(
            ([jids_partitions.build_add_request(new_keys)] if new_keys else [])
            + ([jids_partitions.build_delete_request(gone)] if gone else [])
        ),
        cursor=json.dumps({key: obs.to_json() for key, obs in sorted(discovery.pending.items())}),
    )
