"""In-process materialization of an asset selection against an instance, partition by partition."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg

from astro_assets.definitions import defs as default_defs

if TYPE_CHECKING:
    # The type of a step's error in Dagster's events (dagster_shared comes with dagster).
    from dagster_shared.error import SerializableErrorInfo


@dataclass
class MaterializeOutcome:
    """One line per run: what it covered and whether it succeeded; under it, what
    :func:`run_failures` finds (failed steps, failed checks of severity ERROR) and the checks
    that warn (:func:`failed_checks`)."""

    runs: list[tuple[str, str, bool]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return all(ok for _, _, ok in self.runs)

    def lines(self) -> list[str]:
        out = []
        for run_id, scope, ok in self.runs:
            out.append(f"{'ok    ' if ok else 'FAILED'} {scope} (run {run_id})")
            out.extend(f"       {failure}" for failure in self.failures.get(run_id, []))
            out.extend(f"       {warning}" for warning in self.warnings.get(run_id, []))
        out.extend(f"skipped {reason}" for reason in self.skipped)
        if not out:
            out.append("nothing selected")
        return out


def _partition_groups(
    defs: dg.Definitions, keys: set[dg.AssetKey]
) -> tuple[dict[str, list[dg.AssetKey]], list[dg.AssetKey]]:
    """Split asset keys into dynamic-partitioned groups (by partitions name) and unpartitioned."""
    graph = defs.resolve_asset_graph()
    partitioned: dict[str, list[dg.AssetKey]] = defaultdict(list)
    unpartitioned: list[dg.AssetKey] = []
    for key in graph.toposorted_asset_keys:
        if key not in keys or not graph.get(key).is_materializable:
            continue
        partitions_def = graph.get(key).partitions_def
        if partitions_def is None:
            unpartitioned.append(key)
        elif isinstance(partitions_def, dg.DynamicPartitionsDefinition):
            partitioned[partitions_def.name].append(key)
        else:
            raise ValueError(f"asset {key.to_user_string()} has unsupported partitions")
    return dict(partitioned), unpartitioned


def _raised_error(error: SerializableErrorInfo) -> SerializableErrorInfo:
    """The error the step's code raised: the outermost one in the chain not Dagster's own.

    Dagster wraps what a step raises in its own error (and ``dg.Failure`` may re-raise
    another); below the step's error lie the library errors it was raised from (astropy's
    ``OSError``, pandas' ``EmptyDataError``), whose messages say less than the project's, which
    name the file and what to do. An error's message starts with its class's module path, so
    Dagster's own start with ``dagster.``.
    """
    while error.cause is not None and error.message.startswith("dagster."):
        error = error.cause
    return error


def _first_line(error: SerializableErrorInfo) -> str:
    """``ClassName: first line of the message``, without the class's module path."""
    lines = error.message.strip().splitlines()
    first = lines[0] if lines else error.cls_name
    qualified, separator, text = first.partition(": ")
    if qualified.rpartition(".")[2] == error.cls_name:
        return f"{error.cls_name}{separator}{text}"
    return first


# The error Dagster fails a step with when a blocking check of severity ERROR did not pass.
_BLOCKING_CHECK_ERROR = "DagsterAssetCheckFailedError"


def run_failures(result: dg.ExecuteInProcessResult) -> list[str]:
    """``step: ClassName: first line of its error`` for every failed step of a run (the error
    the step's code raised, not Dagster's wrapper around it nor the library error it was raised
    from), then every failed check of severity ERROR. A step that failed only because a
    blocking check failed is left out: the check's own line says which check and why."""
    checks = failed_checks(result, dg.AssetCheckSeverity.ERROR)
    failures = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        raised = _raised_error(error) if error is not None else None
        if raised is not None and raised.cls_name == _BLOCKING_CHECK_ERROR and checks:
            continue
        message = _first_line(raised) if raised is not None else "failed"
        failures.append(f"{event.step_key}: {message}")
    return failures + checks


def failed_checks(result: dg.ExecuteInProcessResult, severity: dg.AssetCheckSeverity) -> list[str]:
    """``check NAME [partition] failed: first line of its description`` (``warns`` for
    severity WARN) for every check of ``severity`` that did not pass. A check that is not
    blocking fails without failing the run, so these are listed under runs that succeeded
    too."""
    verb = "warns" if severity == dg.AssetCheckSeverity.WARN else "failed"
    lines = []
    for event in result.all_events:
        if event.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        evaluation = event.event_specific_data
        if evaluation.passed or evaluation.severity != severity:
            continue
        first_line = (evaluation.description or "").strip().splitlines()[:1]
        reason = f": {first_line[0]}" if first_line else ""
        partition = f" [{evaluation.partition}]" if evaluation.partition else ""
        lines.append(f"check {evaluation.check_name}{partition} {verb}{reason}")
    return lines


def _selected_keys(graph, selection: str | None) -> set[dg.AssetKey]:
    """The asset keys ``selection`` names; a selection that cannot be parsed or names nothing
    (a misspelled group) is a ``ValueError`` that lists the groups, so that a scheduled command
    with a typo fails instead of doing nothing."""
    if not selection:
        return set(dg.AssetSelection.all().resolve(graph))
    try:
        parsed = dg.AssetSelection.from_string(selection)
    except dg.DagsterError as error:
        raise ValueError(
            f"{error}. Join several assets with ' or ' (e.g. 'key:master_index or "
            "key:croissant_metadata'), or select a group with 'group:NAME'."
        ) from None
    keys = set(parsed.resolve(graph))
    if not keys:
        groups = sorted({graph.get(key).group_name for key in graph.materializable_asset_keys})
        raise ValueError(
            f"the selection {selection!r} names no asset; the groups are "
            f"{', '.join(groups)} (select one with 'group:NAME')."
        )
    return keys


def _still_published(held: list[dg.AssetKey], failed_partitions: list[str]) -> str:
    """What the skipped line adds about the held assets' last materialization: it was built
    before the failure, so it still lists the failed partitions."""
    if not failed_partitions:
        return ""
    names = list(dict.fromkeys(failed_partitions))
    listing = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return (
        f" (what {', '.join(k.to_user_string() for k in held)} last published still lists the "
        f"failed {listing}; materialize {held[0].to_user_string()} alone to leave out those "
        "whose products were removed)"
    )


def materialize_selection(
    instance: dg.DagsterInstance,
    *,
    selection: str | None = None,
    partition: str | None = None,
    defs: dg.Definitions | None = None,
    resources: dict[str, object] | None = None,
    log_level: str = "INFO",
) -> MaterializeOutcome:
    """Materialize ``selection`` (Dagster asset-selection syntax; default all).

    Partitioned assets run once per partition (``partition``, or every registered key of their
    dynamic partitions), or in one run over all keys when their backfill policy is single-run,
    before the unpartitioned assets, which depend on them. When a run of partitions fails, the
    unpartitioned assets downstream of those assets are not run (listed in
    ``MaterializeOutcome.skipped``), so that a failed partition never reaches them; that line
    names the failed partitions, which what those assets last published still lists.
    """
    defs = defs or default_defs
    graph = defs.resolve_asset_graph()
    keys = _selected_keys(graph, selection)
    partitioned, unpartitioned = _partition_groups(defs, keys)
    if partition is not None and not partitioned:
        # Running the selection anyway would do something else than asked, and exit 0.
        names = ", ".join(key.to_user_string() for key in unpartitioned)
        raise ValueError(
            f"--partition {partition!r} was given, but the selection {selection or '*'!r} holds "
            f"no partitioned asset ({names}); leave out --partition to run it, or select "
            "partitioned assets (ser_median and the flat-field chain: a video's key; "
            "job_tensors: a job's key)"
        )
    everything = [*defs.assets, *(defs.asset_checks or [])]
    run_resources = resources if resources is not None else dict(defs.resources or {})
    outcome = MaterializeOutcome()

    def run(
        selected: list[dg.AssetKey],
        partition_key: str | None,
        scope: str,
        tags: dict[str, str] | None = None,
    ) -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            everything,
            selection=selected,
            partition_key=partition_key,
            instance=instance,
            resources=run_resources,
            tags=tags,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            raise_on_error=False,
        )
        outcome.runs.append((result.run_id, scope, result.success))
        failures = run_failures(result)
        if failures:
            outcome.failures[result.run_id] = failures
        warned = failed_checks(result, dg.AssetCheckSeverity.WARN)
        if warned:
            outcome.warnings[result.run_id] = warned
        return result

    failed_upstream: list[dg.AssetKey] = []
    failed_partitions: list[str] = []
    for partitions_name, asset_keys in partitioned.items():
        registered = instance.get_dynamic_partitions(partitions_name)
        if partition is not None:
            if partition not in registered:
                raise ValueError(
                    f"partition {partition!r} is not registered in {partitions_name!r}: "
                    "run `astro-assets ingest` first"
                )
            partition_keys = [partition]
        else:
            partition_keys = list(registered)
        if not partition_keys:
            outcome.skipped.append(f"{partitions_name}: no partitions registered (run ingest)")
        names = ", ".join(k.to_user_string() for k in asset_keys)
        single_run = all(
            graph.get(k).backfill_policy == dg.BackfillPolicy.single_run() for k in asset_keys
        )
        if single_run and len(partition_keys) > 1:
            first, last = partition_keys[0], partition_keys[-1]
            result = run(
                asset_keys,
                None,
                f"{names} [{partitions_name}/{first}..{last}, {len(partition_keys)} partitions]",
                tags={
                    "dagster/asset_partition_range_start": first,
                    "dagster/asset_partition_range_end": last,
                },
            )
            if not result.success:
                failed_upstream.extend(asset_keys)
                # A failed range run still records its sound partitions one by one.
                recorded = {
                    event.partition
                    for event in result.get_asset_materialization_events()
                    if event.partition is not None
                }
                failed_partitions.extend(k for k in partition_keys if k not in recorded)
            continue
        for partition_key in partition_keys:
            scope = f"{names} [{partitions_name}/{partition_key}]"
            if not run(asset_keys, partition_key, scope).success:
                failed_upstream.extend(asset_keys)
                failed_partitions.append(partition_key)
    if failed_upstream:
        # A failed partition's data is missing or stale: an index or a model built now would
        # publish it as if it were sound. What does not depend on it still runs.
        blocked = set(dg.AssetSelection.assets(*failed_upstream).downstream().resolve(graph))
        held = [key for key in unpartitioned if key in blocked]
        unpartitioned = [key for key in unpartitioned if key not in blocked]
        if held:
            upstream = ", ".join(dict.fromkeys(k.to_user_string() for k in failed_upstream))
            outcome.skipped.append(
                f"{', '.join(k.to_user_string() for k in held)}: not run, because {upstream} "
                "failed above (they depend on it); fix what failed, then run again"
                + _still_published(held, failed_partitions)
            )
    if unpartitioned:
        run(unpartitioned, None, ", ".join(k.to_user_string() for k in unpartitioned))
    return outcome
