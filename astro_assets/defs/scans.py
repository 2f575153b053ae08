"""The parts of a tick that the input sensors share: planning removals, logging what the scan
could not use, and assembling the ``SensorResult`` and its cursor."""

from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from astro_assets.io.discovery import (
    Changes,
    Discovery,
    Observation,
    Removals,
    ScanState,
    next_scan_state,
    not_used_message,
    plan_removals,
)


def unlisted_result(context: dg.SensorEvaluationContext, discovery: Discovery) -> dg.SensorResult:
    """The result of a tick whose incoming folder was not listed, its warnings logged: its
    cursor is kept unchanged, as what is on that disk is unknown until it is back."""
    for message in discovery.warnings:
        context.log.warning(message)
    return dg.SensorResult(
        cursor=context.cursor,
        skip_reason=discovery.error or not_used_message((), (), warnings=discovery.warnings),
    )


def plan_tick(
    context: dg.SensorEvaluationContext,
    folder: Path,
    state: ScanState,
    discovery: Discovery,
    changes: Changes,
) -> Removals:
    """Log what the scans could not use, and the registered inputs this tick removes."""
    removals = plan_removals(folder, discovery, state)
    if removals.held_back:
        context.log.warning(removals.held_back)
    for message in discovery.rejected:
        context.log.warning(message)
    for message in discovery.skipped + changes.skipped:
        context.log.info(f"skipped {message}")
    return removals


def tick_result(
    partitions: dg.DynamicPartitionsDefinition,
    state: ScanState,
    discovery: Discovery,
    changes: Changes,
    removals: Removals,
    *,
    run_requests: list[dg.RunRequest],
    handled: Mapping[str, Observation],
) -> dg.SensorResult:
    """A tick's result: its runs, the partitions added and removed and the next cursor
    (:func:`~astro_assets.io.discovery.next_scan_state`, with ``handled``), and, when it runs
    nothing, why."""
    new_keys = [candidate.key for candidate in discovery.ready]
    gone = list(removals.gone)
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=(
            ([partitions.build_add_request(new_keys)] if new_keys else [])
            + ([partitions.build_delete_request(gone)] if gone else [])
        ),
        cursor=next_scan_state(state, discovery, changes, removals, handled).to_json(),
        skip_reason=(
            None
            if run_requests
            else not_used_message(
                discovery.rejected,
                discovery.skipped + changes.skipped,
                removed=gone,
                warnings=discovery.warnings + ((removals.held_back,) if removals.held_back else ()),
            )
        ),
    )
