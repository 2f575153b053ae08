"""Discover new SER videos, register them as partitions and request their runs; run a video
again when another capture replaces it, and remove the partition of a video that was removed."""

import json

import dagster as dg

from astro_assets.defs.flatfield.assets import SOURCE_RECORD_FILE, kept_dark_videos
from astro_assets.defs.flatfield.jobs import flatfield_job
from astro_assets.defs.flatfield.partitions import ser_files_partitions
from astro_assets.io.discovery import (
    Candidate,
    Observation,
    ScanState,
    not_used_message,
    scan_changes,
    scan_paired_darks,
    scan_ser_files,
)
from astro_assets.io.paths import DataLayout
from astro_assets.io.ser import ser_fingerprint
from astro_assets.resources.storage import DataStore


def _observations(values: dict) -> dict[str, Observation]:
    return {name: Observation.from_json(value) for name, value in values.items()}


def _recorded_fingerprint(layout: DataLayout, key: str) -> str | None:
    """The fingerprint of the video ``ser_median`` last read for ``key`` (``source.json``), or
    None when it never ran or its record cannot be read (it then fails with what to do)."""
    try:
        record = json.loads(layout.flatfield_file(key, SOURCE_RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    fingerprint = record.get("fingerprint") if isinstance(record, dict) else None
    return fingerprint if isinstance(fingerprint, str) else None


def _replaced(layout: DataLayout, video: Candidate) -> str | None:
    """The video's new fingerprint when it is not the capture ``ser_median`` last read, else
    None: a touch or a copy of the same capture asks for no run."""
    recorded = _recorded_fingerprint(layout, video.key)
    if recorded is None:
        return None
    fingerprint = ser_fingerprint(video.path)
    return fingerprint if fingerprint != recorded else None


@dg.sensor(
    job=flatfield_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Registers each new, completely copied data/incoming/ser/*.ser as a ser_files partition "
        "and requests a flat-field run for it. A file still growing waits for the next tick. A "
        "video replaced by another capture under the same name (its content fingerprint no "
        "longer the one ser_median read) gets a new run; a video removed from the folder loses "
        "its partition (its products stay on disk)."
    ),
)
def ser_files_sensor(context: dg.SensorEvaluationContext, data_store: DataStore) -> dg.SensorResult:
    layout = data_store.layout
    known = context.instance.get_dynamic_partitions(ser_files_partitions.name)
    state = ScanState.from_json(context.cursor)
    discovery = scan_ser_files(layout.incoming_ser, known_keys=known, pending=state.pending)
    changes, _ = scan_changes(discovery.present, handled=state.handled, pending=state.pending)
    for message in discovery.rejected:
        context.log.warning(message)
    for message in discovery.skipped + changes.skipped:
        context.log.info(f"skipped {message}")
    gone = list(discovery.vanished)
    if gone:
        context.log.info(
            f"videos {', '.join(gone)} were removed from {layout.incoming_ser}: their "
            "partitions are removed (their products stay on disk)."
        )
    run_requests = [
        dg.RunRequest(partition_key=candidate.key, run_key=candidate.run_key)
        for candidate in discovery.ready
    ]
    handled = {key: obs for key, obs in state.handled.items() if key in discovery.present}
    handled.update({c.key: c.observation for c in discovery.ready})
    for video in changes.ready:
        try:
            fingerprint = _replaced(layout, video)
        except OSError as error:
            # Moved away while being read: the next tick sees it gone or back.
            context.log.info(f"skipped {video.path}: could not be read ({error})")
            continue
        handled[video.key] = video.observation
        if fingerprint is not None:
            context.log.info(
                f"{video.path.name} is another capture than the one ser_median read for "
                f"{video.key!r}: its flat-field run is requested again."
            )
            run_requests.append(
                dg.RunRequest(
                    partition_key=video.key, run_key=f"replaced:{video.key}:{fingerprint[:16]}"
                )
            )
    new_keys = [candidate.key for candidate in discovery.ready]
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=(
            ([ser_files_partitions.build_add_request(new_keys)] if new_keys else [])
            + ([ser_files_partitions.build_delete_request(gone)] if gone else [])
        ),
        cursor=ScanState(
            pending={**discovery.pending, **changes.pending}, handled=handled
        ).to_json(),
        skip_reason=(
            None
            if run_requests
            else not_used_message(discovery.rejected, discovery.skipped + changes.skipped)
        ),
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
    # Only registered partitions keep a state, so that the cursor does not grow with every
    # video ever removed.
    registered = set(keys)
    handled = {
        **{key: value for key, value in state["handled"].items() if key in registered},
        **{d.key: d.observation.to_json() for d in discovery.ready},
    }
    pending = {key: obs.to_json() for key, obs in sorted(discovery.pending.items())}
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps({"handled": dict(sorted(handled.items())), "pending": pending}),
    )
