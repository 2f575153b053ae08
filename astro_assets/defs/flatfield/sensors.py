"""Discover new SER videos, register them as partitions and request their runs."""

import json

import dagster as dg

from astro_assets.defs.flatfield.assets import kept_dark_videos
from astro_assets.defs.flatfield.jobs import flatfield_job
from astro_assets.defs.flatfield.partitions import ser_files_partitions
from astro_assets.io.discovery import Candidate, Observation, scan_paired_darks, scan_ser_files
from astro_assets.resources.storage import DataStore


def _observations(values: dict) -> dict[str, Observation]:
    return {name: Observation.from_json(value) for name, value in values.items()}


def _load_cursor(cursor: str | None) -> dict[str, Observation]:
    return _observations(json.loads(cursor)) if cursor else {}


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


def _median_after(instance: dg.DagsterInstance, dark: Candidate) -> bool:
    """Whether ``ser_median`` of the dark's partition was last materialized after the dark
    was last modified, and so already subtracted it."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("ser_median"), asset_partitions=[dark.key]),
        limit=1,
    ).records
    return bool(records) and records[0].timestamp * 1e9 > dark.observation.mtime_ns


@dg.sensor(
    job=flatfield_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Requests a flat-field run for a video when its dark video, completely copied, "
        "appears or changes after the video's median was taken: the dark an earlier run of "
        "ser_median was given (kept in the partition's dark_video.json), else a dark of the "
        "video's name in data/incoming/darks, which ser_median pairs with it."
    ),
)
def paired_darks_sensor(
    context: dg.SensorEvaluationContext, data_store: DataStore
) -> dg.SensorResult:
    state = json.loads(context.cursor) if context.cursor else {"handled": {}, "pending": {}}
    keys = context.instance.get_dynamic_partitions(ser_files_partitions.name)
    discovery = scan_paired_darks(
        data_store.layout.incoming_darks,
        partition_keys=keys,
        handled=_observations(state["handled"]),
        pending=_observations(state["pending"]),
        kept=kept_dark_videos(data_store.layout, keys),
    )
    for message in discovery.rejected:
        context.log.warning(message)
    requests = [
        dg.RunRequest(partition_key=dark.key, run_key=f"dark:{dark.run_key}")
        for dark in discovery.ready
        if not _median_after(context.instance, dark)
    ]
    handled = {**state["handled"], **{d.key: d.observation.to_json() for d in discovery.ready}}
    pending = {key: obs.to_json() for key, obs in sorted(discovery.pending.items())}
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps({"handled": dict(sorted(handled.items())), "pending": pending}),
    )
