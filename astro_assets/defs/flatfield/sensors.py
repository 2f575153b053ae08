"""Discover new SER videos, register them as partitions and request their runs; run a video
again when another capture replaces it, and remove the partition of a video that was removed."""

import json

import dagster as dg

from astro_assets.defs.flatfield.assets import SOURCE_RECORD_FILE, kept_dark_videos
from astro_assets.defs.flatfield.jobs import flatfield_job
from astro_assets.defs.flatfield.partitions import ser_files_partitions
from astro_assets.defs.scans import plan_tick, tick_result, unlisted_result
from astro_assets.io.discovery import (
    VANISH_GRACE_SECONDS,
    Candidate,
    Observation,
    ScanState,
    scan_changes,
    scan_paired_darks,
    scan_ser_files,
)
from astro_assets.io.paths import DataLayout
from astro_assets.io.ser import ser_fingerprint
from astro_assets.resources.storage import DataStore


def _recorded_fingerprint(layout: DataLayout, key: str) -> str | None:
    """The fingerprint of the video ``ser_median`` last read for ``key`` (``source.json``).

    None when it never ran or its record cannot be read (it then fails with what to do).
    """
    try:
        record = json.loads(layout.flatfield_file(key, SOURCE_RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    fingerprint = record.get("fingerprint") if isinstance(record, dict) else None
    return fingerprint if isinstance(fingerprint, str) else None


def _rerun_key(layout: DataLayout, video: Candidate, *, seen_before: bool) -> str | None:
    """The run key of a new run of a changed video, or None when it needs none.

    A video is run again when it is not the capture ``ser_median`` last read (a touch or a copy
    of the same capture asks for no run). When ``ser_median`` never succeeded on the key (the
    record is written only then: it may have failed on a copy that had stalled), a video seen
    before in another state is run again. The run key holds the video's size, modification
    time and change time: ``mv`` and ``cp -p`` keep the first two, so swapping back and forth
    between two captures would repeat them, and Dagster drops a run whose key it has seen; the
    change time is new at every swap, and the same for one state seen on several ticks.
    """
    recorded = _recorded_fingerprint(layout, video.key)
    if recorded is None and not seen_before:
        return None
    changed = f"{video.run_key}:{video.path.stat().st_ctime_ns}"
    if recorded is None:
        return f"changed:{changed}"
    fingerprint = ser_fingerprint(video.path)
    return f"replaced:{changed}:{fingerprint[:16]}" if fingerprint != recorded else None


@dg.sensor(
    job=flatfield_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Registers each new, completely copied data/incoming/ser/*.ser as a ser_files partition "
        "and requests a flat-field run for it. A file still growing waits for the next tick. A "
        "video replaced by another capture under the same name (its content fingerprint no "
        "longer the one ser_median read, or any change while ser_median never succeeded) gets a "
        "new run; a video missing from the folder for "
        f"{VANISH_GRACE_SECONDS:.0f} s loses its partition (its products stay on disk), unless "
        "the folder is missing, unreadable, lists no video at all or is on another device than "
        "before (a disk not mounted)."
    ),
)
def ser_files_sensor(context: dg.SensorEvaluationContext, data_store: DataStore) -> dg.SensorResult:
    layout = data_store.layout
    known = context.instance.get_dynamic_partitions(ser_files_partitions.name)
    state = ScanState.from_json(context.cursor)
    discovery = scan_ser_files(layout.incoming_ser, known_keys=known, pending=state.pending)
    if not discovery.listed:
        return unlisted_result(context, discovery)
    changes = scan_changes(discovery.present, handled=state.handled, pending=state.pending)
    removals = plan_tick(context, layout.incoming_ser, state, discovery, changes)
    if removals.gone:
        context.log.info(
            f"videos {', '.join(removals.gone)} were removed from {layout.incoming_ser}: their "
            "partitions are removed (their products stay on disk)."
        )
    run_requests = [
        dg.RunRequest(partition_key=candidate.key, run_key=candidate.run_key)
        for candidate in discovery.ready
    ]
    handled: dict[str, Observation] = {}
    for video in changes.ready:
        try:
            run_key = _rerun_key(layout, video, seen_before=video.key in state.handled)
        except OSError as error:
            # Moved away while being read: the next tick sees it gone or back.
            context.log.info(f"skipped {video.path}: could not be read ({error})")
            continue
        handled[video.key] = video.observation
        if run_key is not None:
            context.log.info(
                f"{video.path.name} changed and is not the capture ser_median read for "
                f"{video.key!r}: its flat-field run is requested again."
            )
            run_requests.append(dg.RunRequest(partition_key=video.key, run_key=run_key))
    return tick_result(
        ser_files_partitions,
        state,
        discovery,
        changes,
        removals,
        run_requests=run_requests,
        handled=handled,
    )


def _median_after(instance: dg.DagsterInstance, dark: Candidate) -> bool:
    """Whether ``ser_median`` of the dark's partition already subtracted the dark.

    It did when it was last materialized after the dark was last modified.
    """
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
    state = ScanState.from_json(context.cursor)
    keys = context.instance.get_dynamic_partitions(ser_files_partitions.name)
    discovery = scan_paired_darks(
        data_store.layout.incoming_darks,
        partition_keys=keys,
        handled=state.handled,
        pending=state.pending,
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
    handled = {key: obs for key, obs in state.handled.items() if key in registered}
    handled.update({dark.key: dark.observation for dark in discovery.ready})
    return dg.SensorResult(
        run_requests=requests,
        cursor=ScanState(pending=discovery.pending, handled=handled).to_json(),
    )
