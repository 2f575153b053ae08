"""``materialize_selection``'s report: failed steps and checks, and checks that warn."""

import dagster as dg

from astro_assets.materialize import materialize_selection

partitions = dg.DynamicPartitionsDefinition(name="videos")


@dg.asset(partitions_def=partitions)
def measured() -> int:
    return 3


@dg.asset_check(asset=measured, partitions_def=partitions)
def measured_is_small(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    wide = context.partition_key == "wide"
    return dg.AssetCheckResult(
        passed=not wide,
        severity=dg.AssetCheckSeverity.WARN,
        description="30.0% of the frame is masked\nsecond line" if wide else "fine",
    )


@dg.asset_check(asset=measured, partitions_def=partitions)
def measured_is_positive(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    broken = context.partition_key == "broken"
    return dg.AssetCheckResult(passed=not broken, description="the flat is negative")


def test_failed_checks_are_listed_under_runs_that_succeeded():
    defs = dg.Definitions(assets=[measured], asset_checks=[measured_is_small, measured_is_positive])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("videos", ["calm", "wide", "broken"])
        outcome = materialize_selection(instance, defs=defs, resources={})
    lines = [line.strip() for line in outcome.lines()]
    assert [line.split(" (run")[0] for line in lines if "(run" in line] == [
        "ok     measured [videos/calm]",
        "ok     measured [videos/wide]",
        "ok     measured [videos/broken]",
    ]
    wide_run = lines.index(next(line for line in lines if "[videos/wide]" in line))
    assert (
        lines[wide_run + 1] == "check measured_is_small [wide] warns: 30.0% of the frame is masked"
    )
    # A check of severity ERROR that does not block fails without failing the run: listed too.
    assert lines[-1] == "check measured_is_positive [broken] failed: the flat is negative"
    assert outcome.succeeded
    assert sum("measured_is_" in line for line in lines) == 2


class CatalogError(ValueError):
    """Stands for the project's own errors, which name the file and what to do."""


@dg.asset(partitions_def=partitions)
def catalog(context: dg.AssetExecutionContext) -> int:
    try:
        raise OSError("No SIMPLE card found")
    except OSError as error:
        if context.partition_key == "refused":
            # What the flat-field steps do with bad input: fail without retries.
            refused = CatalogError("cat.csv: refused; fix it\nsecond line")
            raise dg.Failure(description=str(refused), allow_retries=False) from refused
        raise CatalogError(f"{context.partition_key}.fits is not FITS; copy it again") from error


def _materialize_videos(defs: dg.Definitions, keys: list[str]):
    """Materialize ``defs`` over the ``videos`` partitions ``keys``: the outcome and its lines,
    without their run ids."""
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("videos", keys)
        outcome = materialize_selection(instance, defs=defs, resources={})
    return outcome, [line.strip().split(" (run")[0] for line in outcome.lines()]


def test_a_failed_step_shows_the_error_its_code_raised_not_the_library_error_below_it():
    defs = dg.Definitions(assets=[catalog])
    outcome, lines = _materialize_videos(defs, ["broken", "refused"])
    assert lines == [
        "FAILED catalog [videos/broken]",
        "catalog: CatalogError: broken.fits is not FITS; copy it again",
        "FAILED catalog [videos/refused]",
        "catalog: CatalogError: cat.csv: refused; fix it",
    ]
    assert not outcome.succeeded


@dg.asset(partitions_def=partitions)
def flat() -> int:
    return 3


@dg.asset_check(asset=flat, partitions_def=partitions, blocking=True)
def flat_is_positive(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    broken = context.partition_key == "broken"
    return dg.AssetCheckResult(
        passed=not broken, description="the flat is negative; measure it again\nsecond line"
    )


@dg.asset(partitions_def=partitions, deps=[flat])
def calibrated() -> int:
    return 4


def test_a_failed_blocking_check_is_reported_once_by_its_own_line():
    defs = dg.Definitions(assets=[flat, calibrated], asset_checks=[flat_is_positive])
    outcome, lines = _materialize_videos(defs, ["calm", "broken"])
    # Not Dagster's "flat_flat_is_positive: DagsterAssetCheckFailedError: 1 blocking asset
    # check failed" beside it: the check's line already names the check and the reason.
    assert lines == [
        "ok     flat, calibrated [videos/calm]",
        "FAILED flat, calibrated [videos/broken]",
        "check flat_is_positive [broken] failed: the flat is negative; measure it again",
    ]
    assert not outcome.succeeded


@dg.asset(partitions_def=partitions)
def tensors(context: dg.AssetExecutionContext) -> int:
    if context.partition_key == "broken":
        raise CatalogError("broken.fits is not FITS; copy it again")
    return 1


@dg.asset(deps=[tensors])
def index() -> int:
    return 2


@dg.asset
def unrelated() -> int:
    return 3


def test_a_failed_partition_run_stops_the_unpartitioned_assets_downstream_of_it():
    defs = dg.Definitions(assets=[tensors, index, unrelated])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("videos", ["calm", "broken"])
        outcome = materialize_selection(instance, defs=defs, resources={})
        indexed = instance.get_latest_materialization_event(index.key)
        assert instance.get_latest_materialization_event(unrelated.key) is not None
    # The index would be built from a partition that failed: it is not run, and says why.
    assert indexed is None
    lines = [line.strip().split(" (run")[0] for line in outcome.lines()]
    assert lines == [
        "ok     tensors [videos/calm]",
        "FAILED tensors [videos/broken]",
        "tensors: CatalogError: broken.fits is not FITS; copy it again",
        "ok     unrelated",
        "skipped index: not run, because tensors failed above (they depend on it); fix what "
        "failed, then run again (what index last published still lists the failed broken; "
        "materialize index alone to leave out those whose products were removed)",
    ]
    assert not outcome.succeeded
