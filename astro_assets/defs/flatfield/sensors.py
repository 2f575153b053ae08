"""Discover new SER videos, register them as partitions and request their runs."""

import json

import dagster as dg

from astro_assets.defs.flatfield.jobs import flatfield_job
from astro_assets.defs.flatfield.partitions import ser_files_partitions
from astro_assets.io.discovery import Observation, scan_ser_files
from astro_assets.resources.storage import DataStore


def _load_cursor(cursor: str | None) -> dict[str, Observation]:
    if not cursor:
        return {}
    return {name: Observation.from_json(value) for name, value in json.loads(cursor).items()}


@dg.sensor(
    job=flatfield_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Registers each new, completely copied data/incoming/ser/*.ser as a ser_files partition "
        "and requests a flat-field run for it. A file still growing waits for the next tick."
    ),
)
def ser_files_sensor(context: dg.SensorEvaluationContext, data_store: DataStore) -> dg.SensorResult:
    known = context.instance.get_dynamic_partitions(ser_files_partitions.name)
    discovery = scan_ser_files(
        data_store.layout.incoming_ser, known_keys=known, pending=_load_cursor(context.cursor)
    )
    for message in discovery.rejected:
        context.log.warning(message)
    new_keys = [candidate.key for candidate in discovery.ready]
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(partition_key=candidate.key, run_key=candidate.run_key)
            for candidate in discovery.ready
        ],
        dynamic_partitions_requests=(
            [ser_files_partitions.build_add_request(new_keys)] if new_keys else []
        ),
        cursor=json.dumps({key: obs.to_json() for key, obs in sorted(discovery.pending.items())}),
    )
