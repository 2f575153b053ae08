"""The transient dataset graph materialized in a test instance, from generated job folders."""

import json
import logging
import os
import shutil
import time

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from astro_assets.cli import main
from astro_assets.defs.transients import assets as transient_assets
from astro_assets.defs.transients import defs as transients_defs
from astro_assets.defs.transients.partitions import jids_partitions
from astro_assets.io.fits import (
    IMAGE_ROLES,
    FitsFormatError,
    IncompleteFitsError,
    MissingJobFileError,
    job_file_paths,
)
from astro_assets.materialize import materialize_selection, run_failures
from astro_assets.samples import generate_jobs, read_truth
from astro_assets.science.transients import croissant as croissant_science
from astro_assets.science.transients.candidates import (
    IncompletePsfcatError,
    PsfcatFormatError,
    read_index_csv,
)
from astro_assets.science.transients.croissant import read_candidates, validate_croissant
from astro_assets.science.transients.tensors import write_job_tensor

ASSETS = list(transients_defs.assets) + list(transients_defs.asset_checks)
N_JOBS = 5


@pytest.fixture
def jobs(layout, instance) -> list[str]:
    folders = generate_jobs(layout.incoming_jobs, N_JOBS, size=128, seed=11)
    jids = [folder.name for folder in folders]
    instance.add_dynamic_partitions("jids", jids)
    return jids


def _settle(layout, *jids: str) -> None:
    """Date the jobs' files back past the settle time, as files copied a while ago."""
    past = time.time() - 2 * transient_assets.SETTLE_SECONDS
    for jid in jids:
        for path in (layout.incoming_jobs / jid).iterdir():
            os.utime(path, (past, past))


def _defs(data_store) -> dg.Definitions:
    return dg.Definitions(assets=ASSETS, resources={"data_store": data_store})


def _check_results(instance) -> dict[str, list[bool]]:
    results: dict[str, list[bool]] = {}
    for run in instance.get_runs():
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is not None and event.event_type_value == "ASSET_CHECK_EVALUATION":
                data = event.event_specific_data
                results.setdefault(data.check_name, []).append(data.passed)
    return results


def _selected(instance, data_store, selection):
    """``selection`` of every registered job as ``astro-assets materialize`` runs it."""
    return materialize_selection(
        instance,
        selection=selection,
        defs=_defs(data_store),
        resources={"data_store": data_store},
    )


def _materialize_all(instance, data_store):
    return _selected(instance, data_store, "*croissant_metadata")


def test_truth_round_trips_through_tensors_index_and_croissant(instance, data_store, layout, jobs):
    outcome = _materialize_all(instance, data_store)
    assert outcome.succeeded, outcome.lines()
    # job_tensors ran as ONE run over all jobs (single-run backfill), then the dataset assets.
    assert len(outcome.runs) == 2
    assert f"{N_JOBS} partitions" in outcome.runs[0][1]
    checks = _check_results(instance)
    assert checks == {
        "job_tensors_in_unit_range": [True],
        "master_index_schema": [True],
        "croissant_valid": [True],
    }
    dataset = layout.dataset_dir
    index = pd.read_csv(dataset / "master_index.csv")
    assert sorted(index["jid"].unique()) == jobs
    for jid in jobs:
        truth = read_truth(layout.incoming_jobs, jid)
        rows = index[index["jid"] == jid]
        radius = truth["params"]["match_radius_px"]
        for row in rows.itertuples():
            distances = [np.hypot(row.x - t["x"], row.y - t["y"]) for t in truth["transients"]]
            near = bool(distances) and min(distances) <= radius
            assert row.label == int(near), (jid, row.id)
        tensor = np.load(dataset / "images" / f"{jid}.npy", mmap_mode="r")
        assert tensor.shape == (128, 128, 4)
        assert tensor.dtype == np.float32
    assert (index.groupby("jid")["split"].nunique() == 1).all()
    parquet = pd.read_parquet(dataset / "master_index.parquet")
    pd.testing.assert_frame_equal(parquet.reset_index(drop=True), index, check_dtype=False)
    report = validate_croissant(dataset / "croissant.json", base_dir=dataset)
    assert report.ok
    assert report.conforms_to == "http://mlcommons.org/croissant/1.1"
    assert report.record_counts["candidates"] == len(index)
    assert json.loads((dataset / "croissant.json").read_text())["version"] == "1.0.0"


def test_rebuilding_without_changes_is_a_patch_and_adding_jobs_is_minor(
    instance, data_store, layout, jobs
):
    assert _materialize_all(instance, data_store).succeeded
    dataset = layout.dataset_dir
    select = "croissant_metadata"
    assert _selected(instance, data_store, select).succeeded
    assert json.loads((dataset / "croissant.json").read_text())["version"] == "1.0.0"
    more = generate_jobs(layout.incoming_jobs, N_JOBS + 3, size=128, seed=11)[N_JOBS:]
    instance.add_dynamic_partitions("jids", [folder.name for folder in more])
    assert _materialize_all(instance, data_store).succeeded
    version = json.loads((dataset / "croissant.json").read_text())["version"]
    assert version.split(".")[0] in {"1", "2"}
    assert version != "1.0.0"


def test_a_broken_tensor_fails_the_blocking_check(instance, data_store, layout, jobs, monkeypatch):
    real = transient_assets.write_job_tensor

    def broken(out_path, images, **kwargs):
        result = real(out_path, images, **kwargs)
        tensor = np.load(out_path, mmap_mode="r+")
        tensor[0, 0, 0] = 1.5
        tensor.flush()
        return result

    monkeypatch.setattr(transient_assets, "write_job_tensor", broken)
    result = dg.materialize(
        ASSETS,
        instance=instance,
        resources={"data_store": data_store},
        partition_key=jobs[0],
        selection=["job_tensors"],
        raise_on_error=False,
    )
    assert not result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed is False
    assert "outside [0, 1]" in json.dumps(evaluation.metadata["problems"].value)
    assert evaluation.description == (
        f"1 of 1 job tensor(s) are malformed: {jobs[0]}: 1 values are NaN or outside [0, 1]"
    )
    assert (
        f"check job_tensors_in_unit_range [{jobs[0]}] failed: {evaluation.description}"
        in run_failures(result)
    )


def test_a_broken_index_fails_its_check_and_blocks_croissant(
    instance, data_store, layout, jobs, monkeypatch
):
    outcome = _selected(instance, data_store, "job_tensors")
    assert outcome.succeeded
    real = transient_assets.build_master_index

    def leaking(frames, splits):
        index = real(frames, splits)
        first = index["jid"] == index["jid"].iloc[0]
        index.loc[first.idxmax(), "split"] = (
            "test" if splits[index["jid"].iloc[0]] != "test" else "train"
        )
        return index

    monkeypatch.setattr(transient_assets, "build_master_index", leaking)
    result = dg.materialize(
        ASSETS,
        instance=instance,
        resources={"data_store": data_store},
        selection=["master_index", "croissant_metadata"],
        raise_on_error=False,
    )
    assert not result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == "master_index_schema"
    assert evaluation.passed is False
    assert "jobs in more than one split" in json.dumps(evaluation.metadata["problems"].value)
    # The reason is in the description, which `astro-assets materialize` prints.
    leaking = sorted(jobs)[0]
    assert evaluation.description == f"master_index.csv: jobs in more than one split: {leaking}"
    assert (
        f"check master_index_schema failed: master_index.csv: jobs in more than one split: "
        f"{leaking}" in run_failures(result)
    )
    assert result.asset_materializations_for_node("croissant_metadata") == []
    assert not (layout.dataset_dir / "croissant.json").exists()


def test_numeric_job_ids_keep_their_leading_zeros_and_the_version_holds(
    instance, data_store, layout
):
    folders = generate_jobs(layout.incoming_jobs, 3, size=128, seed=11, prefix="")
    jids = [folder.name for folder in folders]
    assert jids == ["001", "002", "003"]
    instance.add_dynamic_partitions("jids", jids)
    outcome = _materialize_all(instance, data_store)
    assert outcome.succeeded, outcome.lines()
    dataset = layout.dataset_dir
    index = read_index_csv(dataset / "master_index.csv")
    assert sorted(index["jid"].unique()) == jids
    published = json.loads((dataset / "published_splits.json").read_text())
    assert sorted(published["splits"]) == jids
    # Read through Croissant with mlcroissant, as a consumer (and cnn_model) reads it.
    table = read_candidates(dataset / "croissant.json")
    assert table["jid"].tolist() == index["jid"].tolist()
    # Rebuilding identical data keeps the version (a "changed" split of 1 vs "001" bumped it).
    for _ in range(2):
        again = _selected(instance, data_store, "croissant_metadata")
        assert again.succeeded, again.lines()
        assert json.loads((dataset / "croissant.json").read_text())["version"] == "1.0.0"


def test_19_digit_candidate_ids_are_exact_in_the_index_and_in_croissant(
    instance, data_store, layout, jobs
):
    candids = []
    for number, jid in enumerate(jobs[:2]):
        catalog = layout.incoming_jobs / jid / "psfcat.csv"
        header, *rows = catalog.read_text().splitlines()
        # Consecutive ZTF-like candids: one float64 value for several of them.
        ids = [1234567890123456789 + 1000 * number + k for k in range(len(rows))]
        rows = [f"{candid},{row.split(',', 1)[1]}" for candid, row in zip(ids, rows, strict=True)]
        catalog.write_text("\n".join([header, *rows]) + "\n")
        candids.append(ids)
    instance.delete_dynamic_partition("jids", jobs[2])
    instance.delete_dynamic_partition("jids", jobs[3])
    instance.delete_dynamic_partition("jids", jobs[4])
    outcome = _materialize_all(instance, data_store)
    assert outcome.succeeded, outcome.lines()
    dataset = layout.dataset_dir
    stored = pd.read_csv(dataset / "candidates" / f"{jobs[0]}.csv", dtype=str)["id"].tolist()
    assert stored == [str(candid) for candid in candids[0]]
    index = read_index_csv(dataset / "master_index.csv")
    assert index["id"].tolist() == candids[0] + candids[1]
    assert pd.read_parquet(dataset / "master_index.parquet")["id"].tolist() == index["id"].tolist()
    fields = {
        field["name"]: field
        for record_set in json.loads((dataset / "croissant.json").read_text())["recordSet"]
        for field in record_set["field"]
        if record_set["@id"] == "candidates"
    }
    assert fields["id"]["dataType"] == "sc:Integer"
    assert read_candidates(dataset / "croissant.json")["id"].tolist() == index["id"].tolist()


def _partition_status(instance, jids) -> tuple[list[str], list[str]]:
    """The job_tensors partitions the instance shows materialized, and those it shows failed."""
    status = instance.get_status_by_partition(
        transient_assets.job_tensors.key, jids, jids_partitions
    )
    return (
        sorted(
            jid for jid, state in status.items() if state == dg.AssetPartitionStatus.MATERIALIZED
        ),
        sorted(jid for jid, state in status.items() if state == dg.AssetPartitionStatus.FAILED),
    )


def test_bad_jobs_in_a_range_fail_together_and_the_good_ones_are_written_and_recorded(
    instance, data_store, layout, jobs
):
    difference = layout.incoming_jobs / jobs[1] / "diffimage_masked.fits"
    with fits.open(difference) as hdul:
        shape = hdul[0].data.shape
    fits.writeto(difference, np.full(shape, np.nan, np.float32), overwrite=True)
    science = layout.incoming_jobs / jobs[3] / "bkg_subbed_science_image.fits"
    science.write_bytes(b"not a FITS file at all" * 200)
    _settle(layout, jobs[1], jobs[3])
    outcome = _selected(instance, data_store, "job_tensors")
    assert not outcome.succeeded
    # One line, the project's error, naming every bad job with its file and what to do.
    (failure,) = outcome.failures[outcome.runs[0][0]]
    prefix = (
        "job_tensors: JobTensorError: 2 of 5 job(s) failed (a job whose files were found bad "
        "keeps neither tensor nor candidates, so master_index leaves it out; one whose files "
        "could not be read, look incomplete or are still being written keeps its earlier "
        "ones; the other 3 were written and are "
        f"recorded as materialized): job {jobs[1]}: NoFinitePixelsError: {difference} "
        "(difference channel): all 16384 pixels of the (128, 128) image are NaN or infinite; "
        "there is nothing to normalize: check the input image or drop this job; "
        f"job {jobs[3]}: "
    )
    assert failure.startswith(prefix), failure
    assert str(science) in failure[len(prefix) :]
    good = [jobs[0], jobs[2], jobs[4]]
    for jid in jobs:
        assert layout.job_tensor_file(jid).exists() == (jid in good), jid
        assert (layout.dataset_dir / "candidates" / f"{jid}.csv").exists() == (jid in good)
    assert _partition_status(instance, jobs) == (good, [jobs[1], jobs[3]])
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=transient_assets.job_tensors.key), limit=10
    ).records
    assert sorted(r.partition_key for r in records) == good
    for record in records:
        metadata = record.asset_materialization.metadata
        truth = pd.read_csv(layout.incoming_jobs / record.partition_key / "psfcat.csv")
        assert metadata["candidates"].value == len(truth)
        assert metadata["real"].value == int(truth["label"].sum())

    # Fixing the jobs and running again covers them all; a written job's record carries the
    # version tags of a successful run's, so that staleness treats it alike.
    generate_jobs(layout.incoming_jobs, N_JOBS, size=128, seed=11)
    assert _selected(instance, data_store, "job_tensors").succeeded
    assert _partition_status(instance, jobs) == (jobs, [])
    latest = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=transient_assets.job_tensors.key, asset_partitions=[jobs[0]]
        ),
        limit=2,
    ).records
    assert [r.asset_materialization.tags for r in latest[1:]] == [
        latest[0].asset_materialization.tags
    ]


def test_a_job_with_one_failure_chains_its_error(instance, data_store, layout, jobs):
    (layout.incoming_jobs / jobs[4] / "psfcat.csv").write_text("id,x\n1,2\n")
    _settle(layout, jobs[4])
    result = _range_run(instance, data_store, jobs)
    assert not result.success
    (failure,) = run_failures(result)
    assert failure.startswith(
        "job_tensors: JobTensorError: 1 of 5 job(s) failed (a job whose files were found bad "
        "keeps neither tensor nor candidates, so master_index leaves it out; one whose files "
        "could not be read, look incomplete or are still being written keeps its earlier "
        "ones; the other 4 were written and are "
        f"recorded as materialized): job {jobs[4]}: PsfcatFormatError: "
    )
    assert "lacks column(s)" in failure
    (step_failure,) = result.get_step_failure_events()
    error = step_failure.step_failure_data.error
    while error.cls_name != "JobTensorError":
        error = error.cause
    assert error.cause.cls_name == "PsfcatFormatError"
    assert _partition_status(instance, jobs) == (jobs[:4], [jobs[4]])


def _range_run(instance, data_store, jids, assets=ASSETS):
    return dg.materialize(
        assets,
        instance=instance,
        resources={"data_store": data_store},
        selection=["job_tensors"],
        tags={
            "dagster/asset_partition_range_start": jids[0],
            "dagster/asset_partition_range_end": jids[-1],
        },
        raise_on_error=False,
    )


def test_a_malformed_tensor_in_a_failed_range_is_not_recorded_unchecked(
    instance, data_store, layout, jobs, monkeypatch
):
    # The step fails (jobs[2]'s catalogue), so the blocking check does not run: jobs[0]'s
    # tensor, out of [0, 1], must fail its job rather than be recorded as materialized.
    real = transient_assets.write_job_tensor

    def broken(out_path, images, **kwargs):
        result = real(out_path, images, **kwargs)
        if out_path.stem == jobs[0]:
            tensor = np.load(out_path, mmap_mode="r+")
            tensor[0, 0, 0] = 7.0
            tensor.flush()
        return result

    monkeypatch.setattr(transient_assets, "write_job_tensor", broken)
    (layout.incoming_jobs / jobs[2] / "psfcat.csv").write_text("id,x\n1,2\n")
    result = _range_run(instance, data_store, jobs)
    assert not result.success
    (failure,) = run_failures(result)
    assert "2 of 5 job(s) failed" in failure
    assert (
        f"job {jobs[0]}: MalformedTensorError: {layout.job_tensor_file(jobs[0])}: 1 values are "
        "NaN or outside [0, 1]; the tensor was removed" in failure
    )
    assert failure.index(f"job {jobs[0]}:") < failure.index(f"job {jobs[2]}:")
    assert _partition_status(instance, jobs) == (
        [jobs[1], jobs[3], jobs[4]],
        [jobs[0], jobs[2]],
    )
    for jid in (jobs[0], jobs[2]):
        assert not layout.job_tensor_file(jid).exists()
        assert not (layout.dataset_dir / "candidates" / f"{jid}.csv").exists()


def test_a_failed_job_keeps_neither_its_earlier_tensor_nor_its_earlier_candidates(
    instance, data_store, layout, jobs, tmp_path, monkeypatch
):
    assert _materialize_all(instance, data_store).succeeded
    # The job is exported again at another size, with a catalogue that is refused.
    folder = layout.incoming_jobs / jobs[0]
    (bigger,) = generate_jobs(tmp_path / "export", 1, size=160, seed=5)
    for source in bigger.iterdir():
        (folder / source.name).write_bytes(source.read_bytes())
    catalog = folder / "psfcat.csv"
    catalog.write_text("id,x\n1,2\n")
    _settle(layout, jobs[0])
    written = []
    real = transient_assets.write_job_tensor

    def recorded(out_path, images, **kwargs):
        written.append(out_path.stem)
        return real(out_path, images, **kwargs)

    monkeypatch.setattr(transient_assets, "write_job_tensor", recorded)
    outcome = _materialize_all(instance, data_store)
    assert not outcome.succeeded
    # The catalogue is refused before the tensor is written ...
    assert jobs[0] not in written
    (failure,) = outcome.failures[outcome.runs[0][0]]
    assert f"job {jobs[0]}: PsfcatFormatError: {catalog}" in failure
    # ... and the earlier tensor and candidates go with it: nothing pairs the old catalogue
    # with another image, and master_index, not run after the failure, would leave it out.
    assert not layout.job_tensor_file(jobs[0]).exists()
    assert not (layout.dataset_dir / "candidates" / f"{jobs[0]}.csv").exists()
    assert outcome.skipped == [
        "master_index, croissant_metadata: not run, because job_tensors failed above (they "
        "depend on it); fix what failed, then run again (what master_index, croissant_metadata "
        f"last published still lists the failed {jobs[0]}; materialize master_index alone to "
        "leave out those whose products were removed)"
    ]
    # The published index still lists the job: its error and both checks say so.
    assert (
        f"the published master_index.csv still lists the removed job(s) {jobs[0]}: materialize "
        "master_index again to leave them out, or fix the job" in failure
    )
    stale = dg.materialize(
        ASSETS,
        instance=instance,
        resources={"data_store": data_store},
        selection=dg.AssetSelection.checks_for_assets(
            transient_assets.master_index, transient_assets.croissant_metadata
        ),
        raise_on_error=False,
    )
    image = f"images/{jobs[0]}.npy"
    for evaluation in stale.get_asset_check_evaluations():
        assert evaluation.passed is False, evaluation.check_name
        assert (
            f"image files missing for 1 job(s): {jobs[0]} ({image}); materialize master_index "
            "again to leave them out, or fix the job" in evaluation.description
        ), evaluation.description
    assert len(stale.get_asset_check_evaluations()) == 2
    # Croissant is not published again over an index that names the removed tensor.
    published = {
        name: (layout.dataset_dir / name).read_bytes()
        for name in ("croissant.json", "published_splits.json")
    }
    refused = _selected(instance, data_store, "croissant_metadata")
    assert not refused.succeeded
    (refusal,) = refused.failures[refused.runs[0][0]]
    assert (
        f"master_index.csv: image files missing for 1 job(s): {jobs[0]} ({image}); materialize "
        "master_index again to leave them out, or fix the job; croissant.json and the published "
        "version were left as they were" in refusal
    ), refusal
    assert {name: (layout.dataset_dir / name).read_bytes() for name in published} == published
    result = dg.materialize(
        ASSETS,
        instance=instance,
        resources={"data_store": data_store},
        selection=["master_index"],
        raise_on_error=False,
    )
    assert result.success
    assert jobs[0] not in set(read_index_csv(layout.dataset_dir / "master_index.csv")["jid"])


def _products(layout, jids):
    return {
        jid: (
            layout.job_tensor_file(jid).read_bytes(),
            (layout.dataset_dir / "candidates" / f"{jid}.csv").read_bytes(),
        )
        for jid in jids
    }


def test_jobs_whose_files_cannot_be_read_fail_but_keep_their_earlier_products(
    instance, data_store, layout, jobs, monkeypatch
):
    assert _materialize_all(instance, data_store).succeeded
    before = _products(layout, jobs)
    published = read_index_csv(layout.dataset_dir / "master_index.csv")
    # One folder is being copied again (gone for now), one catalogue cannot be read, and the
    # disk is full when the last tensor is written: nothing is learnt about their data.
    (layout.incoming_jobs / jobs[1]).rename(layout.incoming_jobs / f"{jobs[1]}.copying")
    real_read, real_write = transient_assets.read_psfcat, transient_assets.write_job_tensor

    def unreadable(path, **kwargs):
        if path.parent.name == jobs[2]:
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path, **kwargs)

    def full(out_path, images, **kwargs):
        if out_path.stem == jobs[4]:
            raise OSError(28, "No space left on device", str(out_path))
        return real_write(out_path, images, **kwargs)

    monkeypatch.setattr(transient_assets, "read_psfcat", unreadable)
    monkeypatch.setattr(transient_assets, "write_job_tensor", full)
    outcome = _materialize_all(instance, data_store)
    assert not outcome.succeeded
    (failure,) = outcome.failures[outcome.runs[0][0]]
    assert "3 of 5 job(s) failed" in failure
    assert f"job {jobs[1]}: MissingJobFileError: " in failure
    for jid, error in ((jobs[1], "MissingJobFileError"), (jobs[2], "PermissionError")):
        start = failure.index(f"job {jid}: {error}")
        assert "(its earlier tensor and candidates are kept)" in failure[start:].split("; job")[0]
    assert "No space left on device" in failure
    assert "still lists the removed" not in failure
    assert _products(layout, jobs) == before
    assert list(layout.dataset_dir.glob("*/.*.partial*")) == []
    assert _partition_status(instance, jobs) == ([jobs[0], jobs[3]], [jobs[1], jobs[2], jobs[4]])
    # master_index was not run: the published index is the one of the last good products.
    pd.testing.assert_frame_equal(
        read_index_csv(layout.dataset_dir / "master_index.csv"), published
    )


def test_a_just_written_tensor_that_cannot_be_read_fails_its_job_and_the_others_are_recorded(
    instance, data_store, layout, jobs, monkeypatch
):
    (layout.incoming_jobs / jobs[3] / "psfcat.csv").write_text("id,x\n1,2\n")
    real = transient_assets.tensor_problems

    def unreadable(path):
        if path.stem == jobs[0]:
            raise OSError(5, "Input/output error", str(path))
        return real(path)

    monkeypatch.setattr(transient_assets, "tensor_problems", unreadable)
    result = _range_run(instance, data_store, jobs)
    assert not result.success
    (failure,) = run_failures(result)
    assert "2 of 5 job(s) failed" in failure
    assert f"job {jobs[0]}: OSError: [Errno 5] Input/output error" in failure
    assert _partition_status(instance, jobs) == (
        [jobs[1], jobs[2], jobs[4]],
        [jobs[0], jobs[3]],
    )
    # Unreadable says nothing of its content: this run's tensor and candidates stay.
    assert layout.job_tensor_file(jobs[0]).exists()
    assert (layout.dataset_dir / "candidates" / f"{jobs[0]}.csv").exists()


def test_only_data_errors_read_from_the_files_remove_a_jobs_products():
    def raised_from(error, cause):
        try:
            raise error from cause
        except type(error) as caught:
            return caught

    assert transient_assets.inputs_found_bad(PsfcatFormatError("bad header"))
    assert transient_assets.inputs_found_bad(
        raised_from(FitsFormatError("not FITS"), OSError("No SIMPLE card found"))
    )
    # An empty or cut file is what a copy in progress leaves: the earlier products stay.
    assert not transient_assets.inputs_found_bad(
        raised_from(IncompleteFitsError("empty"), OSError("Empty or corrupt FITS file"))
    )
    assert not transient_assets.inputs_found_bad(IncompleteFitsError("truncated"))
    assert not transient_assets.inputs_found_bad(IncompletePsfcatError("last line cut"))
    # A FITS file the system could not read is wrapped as a format error too.
    assert not transient_assets.inputs_found_bad(
        raised_from(FitsFormatError("not readable"), OSError(5, "Input/output error"))
    )
    assert not transient_assets.inputs_found_bad(MissingJobFileError("folder gone"))
    assert not transient_assets.inputs_found_bad(OSError(28, "No space left on device"))
    assert not transient_assets.inputs_found_bad(RuntimeError("unexpected"))


def test_files_being_copied_again_keep_a_jobs_earlier_products(instance, data_store, layout, jobs):
    assert _materialize_all(instance, data_store).succeeded
    products = _products(layout, jobs)
    # cp empties each target, then fills it: caught half-way, the files are empty or cut.
    science = layout.incoming_jobs / jobs[0] / "bkg_subbed_science_image.fits"
    science.write_bytes(science.read_bytes()[: science.stat().st_size // 2])
    (layout.incoming_jobs / jobs[1] / "psfcat.csv").write_bytes(b"")
    catalog = layout.incoming_jobs / jobs[2] / "psfcat.csv"
    text = catalog.read_text()
    catalog.write_text(text[: text.rindex(",")])
    (layout.incoming_jobs / jobs[3] / "scorrimage_masked.fits").write_bytes(b"")
    # Dated back: the files' contents alone tell that they are incomplete.
    _settle(layout, *jobs)
    outcome = _selected(instance, data_store, "job_tensors")
    assert not outcome.succeeded
    (failure,) = outcome.failures[outcome.runs[0][0]]
    assert "4 of 5 job(s) failed" in failure
    errors = ["IncompleteFitsError", "IncompletePsfcatError", "IncompletePsfcatError"]
    for jid, error in zip(jobs[:4], [*errors, "IncompleteFitsError"], strict=True):
        start = failure.index(f"job {jid}: {error}: ")
        message = failure[start:].split("; job ")[0]
        assert "the file looks incomplete (still being copied?)" in message, message
        assert message.endswith(f"({transient_assets.KEPT_NOTE})"), message
    assert "still lists the removed" not in failure
    assert _products(layout, jobs) == products


def test_a_bad_file_still_being_written_keeps_a_jobs_earlier_products(
    instance, data_store, layout, jobs
):
    assert _materialize_all(instance, data_store).succeeded
    catalog = layout.incoming_jobs / jobs[0] / "psfcat.csv"
    catalog.write_text("id,x\n1,2\n")
    outcome = _selected(instance, data_store, "job_tensors")
    assert not outcome.succeeded
    (failure,) = outcome.failures[outcome.runs[0][0]]
    assert (
        f"job {jobs[0]}: PsfcatFormatError: {catalog} lacks column(s)" in failure
        and "(its files are still being written: psfcat.csv was modified " in failure
        and f"{transient_assets.KEPT_NOTE}; {transient_assets.WRITING_NOTE})" in failure
    ), failure
    assert layout.job_tensor_file(jobs[0]).exists()
    assert (layout.dataset_dir / "candidates" / f"{jobs[0]}.csv").exists()
    # Once the file has settled, the same catalogue is found bad and the products go.
    _settle(layout, jobs[0])
    assert not _selected(instance, data_store, "job_tensors").succeeded
    assert not layout.job_tensor_file(jobs[0]).exists()
    assert not (layout.dataset_dir / "candidates" / f"{jobs[0]}.csv").exists()


def test_files_changed_or_modified_lately_are_still_being_written(tmp_path):
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "a.fits").write_bytes(b"x" * 10)
    (folder / "psfcat.csv").write_text("id\n")
    now = time.time_ns()
    past = time.time() - 2 * transient_assets.SETTLE_SECONDS
    for path in folder.iterdir():
        os.utime(path, (past, past))
    before = transient_assets._file_stats(folder)
    assert transient_assets._still_written(folder, before, now) is None
    (folder / "a.fits").write_bytes(b"x" * 20)
    os.utime(folder / "a.fits", (past, past))
    assert transient_assets._still_written(folder, before, now) == (
        "a.fits changed while the job was processed"
    )
    (folder / "b.fits").write_bytes(b"")
    before = transient_assets._file_stats(folder)
    assert transient_assets._still_written(folder, before, now).startswith(
        "b.fits was modified 0 s ago, less than the 30 s"
    )
    assert transient_assets.SETTLE_SECONDS == 30


def test_the_failure_message_names_ten_jobs_and_counts_the_rest():
    failed = {f"j{n:02d}": ValueError(f"bad {n}") for n in range(12)}
    message = transient_assets._job_failures(failed, 13)
    assert message.startswith(
        "12 of 13 job(s) failed (a job whose files were found bad keeps neither tensor nor "
        "candidates, so master_index leaves it out; one whose files could not be read, look "
        "incomplete or are still being written keeps its earlier ones; the other 1 was written "
        "and is recorded as materialized): "
        "job j00: ValueError: bad 0; "
    )
    assert "j09: ValueError: bad 9; and 2 more (each logged as an error in the run)" in message
    assert "j10" not in message
    assert "no job was written" in transient_assets._job_failures(failed, 12)


def test_recorded_jobs_of_a_failed_run_take_the_run_id_without_a_code_version(
    instance, data_store, layout, jobs
):
    # The same function as an asset without a code version.
    unversioned = dg.asset(
        name="job_tensors",
        partitions_def=jids_partitions,
        group_name="transients",
        backfill_policy=dg.BackfillPolicy.single_run(),
    )(transient_assets.job_tensors.op.compute_fn.decorated_fn)
    assert unversioned.code_versions_by_key[unversioned.key] is None
    assets = [unversioned if a is transient_assets.job_tensors else a for a in ASSETS]
    (layout.incoming_jobs / jobs[4] / "psfcat.csv").write_text("id,x\n1,2\n")
    result = _range_run(instance, data_store, jobs, assets)
    assert not result.success
    (failure,) = run_failures(result)
    assert f"job {jobs[4]}: PsfcatFormatError" in failure
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=transient_assets.job_tensors.key), limit=10
    ).records
    assert sorted(r.partition_key for r in records) == jobs[:4]
    for record in records:
        assert record.asset_materialization.tags["dagster/code_version"] == result.run_id


def test_a_two_valued_image_is_not_a_flat_channel(instance, data_store, layout, jobs):
    # A binary score map (0 and 100) normalizes to 0 and 1 alone, yet carries information:
    # the check warns only about what job_tensors found flat.
    score = layout.incoming_jobs / jobs[1] / "scorrimage_masked.fits"
    with fits.open(score) as hdul:
        shape = hdul[0].data.shape
    binary = np.zeros(shape, np.float32)
    binary[:, shape[1] // 2 :] = 100.0
    fits.writeto(score, binary, overwrite=True)
    outcome = _selected(instance, data_store, "job_tensors")
    assert outcome.succeeded, outcome.lines()
    assert set(np.unique(np.load(layout.job_tensor_file(jobs[1]))[..., 3])) == {0.0, 1.0}
    assert outcome.warnings == {}
    assert _check_results(instance) == {"job_tensors_in_unit_range": [True]}


def test_a_constant_or_all_zero_image_warns_naming_the_job_and_channel(
    instance, data_store, layout, jobs
):
    reference = layout.incoming_jobs / jobs[2] / "awaicgen_output_mosaic_image_resampled.fits"
    score = layout.incoming_jobs / jobs[4] / "scorrimage_masked.fits"
    with fits.open(reference) as hdul:
        shape = hdul[0].data.shape
    fits.writeto(reference, np.zeros(shape, np.float32), overwrite=True)
    constant = np.full(shape, 12.5, np.float32)
    constant[:4] = np.nan
    fits.writeto(score, constant, overwrite=True)
    outcome = _selected(instance, data_store, "job_tensors")
    # A warning, not an error: the run and the later assets go on.
    assert outcome.succeeded, outcome.lines()
    run_id = outcome.runs[0][0]
    (warning,) = outcome.warnings[run_id]
    assert warning == (
        "check job_tensors_in_unit_range warns: 2 of 5 job tensor(s) have a channel that "
        f"carries no information: job {jobs[2]}: reference channel (all zero); job {jobs[4]}: "
        "score channel (constant at 12.5); check those images, or drop the job"
    )
    flat = {}
    for record in instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=transient_assets.job_tensors.key), limit=10
    ).records:
        flat[record.partition_key] = record.asset_materialization.metadata["flat_channels"].value
    assert flat == {
        jobs[0]: {},
        jobs[1]: {},
        jobs[2]: {"reference": "all zero"},
        jobs[3]: {},
        jobs[4]: {"score": "constant at 12.5"},
    }
    tensor = np.load(layout.job_tensor_file(jobs[4]))
    assert set(np.unique(tensor[..., 3])) == {0.0, 0.5}


def test_catalogues_without_candidates_in_every_job_fail_master_index_clearly(
    instance, data_store, layout, jobs
):
    for jid in jobs:
        catalog = layout.incoming_jobs / jid / "psfcat.csv"
        catalog.write_text(catalog.read_text().splitlines()[0] + "\n")
    outcome = _materialize_all(instance, data_store)
    assert not outcome.succeeded
    tensors_run, dataset_run = (run_id for run_id, _, _ in outcome.runs)
    assert tensors_run not in outcome.failures
    assert outcome.failures[dataset_run] == [
        f"master_index: ValueError: no candidates in any job: the psfcat.csv of all 5 job(s) "
        f"({', '.join(jobs)}) has no data line; check the catalogue export, then materialize "
        "job_tensors for those jobs again (master_index.csv was left as it was)"
    ]
    assert not (layout.dataset_dir / "master_index.csv").exists()
    assert not (layout.dataset_dir / "croissant.json").exists()


def test_a_job_missing_a_file_fails_naming_it(instance, data_store, layout, jobs):
    (layout.incoming_jobs / jobs[1] / "diffimage_masked.fits").unlink()
    result = dg.materialize(
        ASSETS,
        instance=instance,
        resources={"data_store": data_store},
        partition_key=jobs[1],
        selection=["job_tensors"],
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "diffimage_masked.fits" in str(failure.step_failure_data.error)
    assert not layout.job_tensor_file(jobs[1]).exists()


TINY_TRAINING = {
    "epochs": 3,
    "batch_size": 32,
    "conv_channels": [4, 8],
    "feature_hidden": 8,
    "head_hidden": 8,
    "augment": False,
    "patience": 3,
}


def test_cnn_model_trains_from_croissant_and_the_score_command_covers_every_candidate(
    instance, data_store, layout, jobs, tmp_path
):
    assert _materialize_all(instance, data_store).succeeded
    result = dg.materialize(
        ASSETS,
        instance=instance,
        resources={"data_store": data_store},
        selection=["cnn_model"],
        run_config={"ops": {"cnn_model": {"config": TINY_TRAINING}}},
    )
    assert result.success
    model_dir = layout.models_dir / "cnn_model"
    for name in ["model.pt", "state_dict.pt", "config.json", "metrics.json", "roc.png"]:
        assert (model_dir / name).is_file(), name
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["cnn"]["split"] == "test"
    assert 0.0 <= metrics["cnn"]["roc_auc"] <= 1.0
    dataset_index = read_index_csv(layout.dataset_dir / "master_index.csv")
    outside = (~dataset_index["in_image"]).groupby(dataset_index["split"]).sum()
    assert metrics["n_outside_image"] == {
        split: int(outside.get(split, 0)) for split in ("train", "validation", "test")
    }
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {"cnn_model_beats_baseline", "cnn_model_auc_above_threshold"}
    auc, baseline = metrics["cnn"]["roc_auc"], metrics["tabular_baseline"]["roc_auc"]
    assert evaluations["cnn_model_beats_baseline"].description == (
        f"the CNN's test ROC-AUC {auc:.4f} is {'below' if auc < baseline else 'at least'} the "
        f"tabular baseline's {baseline:.4f} (a logistic regression on the catalogue features "
        "alone)"
    )
    assert evaluations["cnn_model_auc_above_threshold"].description == (
        f"the CNN's test ROC-AUC {auc:.4f} is {'below' if auc < 0.9 else 'at least'} "
        "min_roc_auc 0.9"
    )
    out = tmp_path / "scores.csv"
    assert (
        main(
            [
                "score",
                "--model",
                str(model_dir),
                "--dataset",
                str(layout.dataset_dir),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    scores = pd.read_csv(out, dtype={"jid": str})
    index = pd.read_csv(layout.dataset_dir / "master_index.csv", dtype={"jid": str})
    assert list(scores.columns) == ["jid", "id", "score"]
    assert scores["jid"].tolist() == index["jid"].tolist()
    assert scores["id"].tolist() == index["id"].tolist()
    inside = index["in_image"].astype(bool).to_numpy()
    assert scores["score"][inside].between(0, 1).all()


def test_an_invalid_croissant_fails_its_check_and_blocks_training(
    instance, data_store, layout, jobs, monkeypatch
):
    assert _materialize_all(instance, data_store).succeeded
    real = croissant_science.build_croissant

    def stale_hash(*args, **kwargs):
        jsonld = real(*args, **kwargs)
        for node in jsonld["distribution"]:
            if node.get("sha256"):
                node["sha256"] = "0" * 64
        return jsonld

    monkeypatch.setattr(croissant_science, "build_croissant", stale_hash)
    result = dg.materialize(
        ASSETS,
        instance=instance,
        resources={"data_store": data_store},
        selection=["croissant_metadata", "cnn_model"],
        run_config={"ops": {"cnn_model": {"config": TINY_TRAINING}}},
        raise_on_error=False,
    )
    assert not result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["croissant_valid"].passed is False
    # Both files' hashes are wrong: the CSV's, which no RecordSet reads, and the Parquet
    # twin's, which the candidates records come from.
    csv_error, records_error = evaluations["croissant_valid"].metadata["dynamic_errors"].value
    assert csv_error.startswith("FileObject 'master_index.csv': ")
    assert records_error.startswith("RecordSet 'candidates': ")
    assert evaluations["croissant_valid"].description == (
        f"croissant.json: dynamic error: {csv_error}; dynamic error: {records_error}"
    )
    assert result.asset_materializations_for_node("cnn_model") == []
    assert not (layout.models_dir / "cnn_model").exists()


def test_a_job_of_fpack_images_gives_the_tensor_of_its_plain_images(
    instance, data_store, layout, jobs, tmp_path
):
    folder = layout.incoming_jobs / jobs[0]
    plain = job_file_paths(folder)
    expected = tmp_path / "expected.npy"
    write_job_tensor(expected, {role: plain[role] for role in IMAGE_ROLES})
    for role in IMAGE_ROLES:
        with fits.open(plain[role]) as hdul:
            data, header = hdul[0].data, hdul[0].header
        # GZIP_2 without quantization is lossless, so the tensor must be the same to the bit.
        compressed = fits.CompImageHDU(
            data, header=header, compression_type="GZIP_2", quantize_level=0.0
        )
        fits.HDUList([fits.PrimaryHDU(), compressed]).writeto(f"{plain[role]}.fz")
        plain[role].unlink()
    _settle(layout, jobs[0])
    outcome = _selected(instance, data_store, "job_tensors")
    assert outcome.succeeded, outcome.lines()
    np.testing.assert_array_equal(np.load(layout.job_tensor_file(jobs[0])), np.load(expected))


def _epochs(layout, instance) -> list[str]:
    """Eight jobs named as two epochs of four fields: ``field<a-d>_e<1-2>``."""
    folders = generate_jobs(layout.incoming_jobs, 8, size=64, seed=23)
    jids = [f"field{field}_e{epoch}" for field in "abcd" for epoch in (1, 2)]
    for folder, jid in zip(folders, jids, strict=True):
        folder.rename(folder.with_name(jid))
    instance.add_dynamic_partitions("jids", jids)
    return jids


def _index_with_config(instance, data_store, config):
    return dg.materialize(
        ASSETS,
        instance=instance,
        resources={"data_store": data_store},
        selection=["master_index", "croissant_metadata"],
        run_config={"ops": {"master_index": {"config": config}}},
        raise_on_error=False,
    )


def test_split_group_pattern_keeps_the_epochs_of_a_field_in_one_split_and_bumps_major(
    instance, data_store, layout
):
    _epochs(layout, instance)
    assert _materialize_all(instance, data_store).succeeded
    dataset = layout.dataset_dir
    by_job = read_index_csv(dataset / "master_index.csv").groupby("jid")["split"].first()
    # Job by job, the two epochs of field b (and of c) land in different splits: a leak.
    assert by_job["fieldb_e1"] != by_job["fieldb_e2"]
    assert json.loads((dataset / "croissant.json").read_text())["version"] == "1.0.0"

    result = _index_with_config(instance, data_store, {"split_group_pattern": r"^(field\w)_e\d+$"})
    assert result.success
    index = read_index_csv(dataset / "master_index.csv")
    assert index.groupby("jid")["split"].first().to_dict() == {
        "fielda_e1": "train",
        "fielda_e2": "train",
        "fieldb_e1": "train",
        "fieldb_e2": "train",
        "fieldc_e1": "test",
        "fieldc_e2": "test",
        "fieldd_e1": "validation",
        "fieldd_e2": "validation",
    }
    metadata = result.asset_materializations_for_node("master_index")[0].metadata
    assert metadata["split_groups"].value == 4
    assert metadata["split_group_pattern"].value == r"^(field\w)_e\d+$"
    # A published job changed split: a major version.
    assert json.loads((dataset / "croissant.json").read_text())["version"] == "2.0.0"


def test_an_empty_split_group_pattern_splits_job_by_job(instance, data_store, layout):
    # An empty value (a template variable left unset) is no pattern at all.
    _epochs(layout, instance)
    assert _materialize_all(instance, data_store).succeeded
    before = (layout.dataset_dir / "master_index.csv").read_bytes()
    result = _index_with_config(instance, data_store, {"split_group_pattern": ""})
    assert result.success
    assert (layout.dataset_dir / "master_index.csv").read_bytes() == before


def test_a_split_group_pattern_that_groups_nothing_fails_and_keeps_the_index(
    instance, data_store, layout
):
    _epochs(layout, instance)
    assert _materialize_all(instance, data_store).succeeded
    before = (layout.dataset_dir / "master_index.csv").read_bytes()
    result = _index_with_config(instance, data_store, {"split_group_pattern": r"_epoch(\d+)"})
    assert not result.success
    assert run_failures(result) == [
        "master_index: ValueError: split_group_pattern '_epoch(\\d+)' matches none of the 8 "
        "job ids (e.g. 'fielda_e1', 'fielda_e2', 'fieldb_e1'), so it groups nothing; correct "
        "the pattern, or leave it unset to split job by job"
    ]
    assert (layout.dataset_dir / "master_index.csv").read_bytes() == before


def test_a_job_whose_catalogue_is_downloaded_again_keeps_its_products_and_says_so(
    instance, data_store, layout, jobs
):
    assert _selected(instance, data_store, "job_tensors").succeeded
    tensor = layout.job_tensor_file(jobs[0]).read_bytes()
    folder = layout.incoming_jobs / jobs[0]
    (folder / "psfcat.csv.crdownload").write_text("id,x")
    _settle(layout, jobs[0])
    outcome = _selected(instance, data_store, "job_tensors")
    assert not outcome.succeeded
    (failure,) = outcome.failures[outcome.runs[0][0]]
    assert failure.endswith(
        f"job {jobs[0]}: PartialJobFileError: job folder {folder} holds psfcat.csv.crdownload: "
        "still being written? (a partial download of a job file); the job is used once the file "
        "has its final name: wait until the download has finished, or "
        f"remove the partial file ({transient_assets.KEPT_NOTE})"
    ), failure
    assert layout.job_tensor_file(jobs[0]).read_bytes() == tensor
    assert (layout.dataset_dir / "candidates" / f"{jobs[0]}.csv").exists()


def test_jobs_named_too_long_for_their_files_fail_alone_and_the_others_are_recorded(
    instance, data_store, layout, jobs
):
    # Registered before keys were limited: 230 bytes fit the folder and the tensor's name but
    # not the temporary files; 252 bytes do not fit images/<jid>.npy either.
    long_jids = ["m_" + "X" * 228, "n_" + "Y" * 250]
    for jid in long_jids:
        shutil.copytree(layout.incoming_jobs / jobs[0], layout.incoming_jobs / jid)
    instance.add_dynamic_partitions("jids", long_jids)
    _settle(layout, *jobs, *long_jids)
    result = _range_run(instance, data_store, [*jobs, *long_jids])
    assert not result.success
    (failure,) = run_failures(result)
    assert "2 of 7 job(s) failed" in failure
    assert "the other 5 were written and are recorded as materialized" in failure
    for jid in long_jids:
        assert (
            f"job {jid}: UnsafePathError: partition key {jid[:24]!r}... is {len(jid)} bytes "
            "long, more than the 221 a key may have"
        ) in failure
    assert failure.count("so it needs a name of at most 221 characters: rename the job folder") == 2
    assert _partition_status(instance, [*jobs, *long_jids]) == (sorted(jobs), sorted(long_jids))
    for jid in jobs:
        assert layout.job_tensor_file(jid).is_file()


def test_a_job_whose_products_cannot_be_removed_fails_alone(
    instance, data_store, layout, jobs, monkeypatch
):
    (layout.incoming_jobs / jobs[1] / "psfcat.csv").write_text("id,x\n1,2\n")
    _settle(layout, *jobs)
    real = transient_assets._remove_job_products

    def refused(data_store, jid):
        if jid == jobs[1]:
            raise PermissionError(13, "Permission denied", str(layout.job_tensor_file(jid)))
        real(data_store, jid)

    monkeypatch.setattr(transient_assets, "_remove_job_products", refused)
    result = _range_run(instance, data_store, jobs)
    assert not result.success
    (failure,) = run_failures(result)
    assert "1 of 5 job(s) failed" in failure
    assert f"job {jobs[1]}: PsfcatFormatError: " in failure
    assert _partition_status(instance, jobs) == ([j for j in jobs if j != jobs[1]], [jobs[1]])


def test_labels_that_disagree_with_match_are_published_as_given_and_counted(
    instance, data_store, layout, jobs
):
    # Labels vetted by eye: every label of one job flipped, its match column unchanged.
    catalog = layout.incoming_jobs / jobs[2] / "psfcat.csv"
    table = pd.read_csv(catalog, dtype=str)
    table["label"] = (1 - table["label"].astype(int)).astype(str)
    table.to_csv(catalog, index=False)
    _settle(layout, jobs[2])
    assert _materialize_all(instance, data_store).succeeded
    index = read_index_csv(layout.dataset_dir / "master_index.csv")
    flipped = index[index["jid"] == jobs[2]]
    assert len(flipped) > 0
    assert flipped["label"].tolist() == table["label"].astype(int).tolist()
    metadata = instance.get_latest_materialization_event(
        transient_assets.master_index.key
    ).asset_materialization.metadata
    assert metadata["labels_disagreeing_with_match"].value == len(flipped)
    assert metadata["jobs_with_labels_disagreeing_with_match"].value == {jobs[2]: len(flipped)}
    warnings = [
        entry.user_message
        for run in instance.get_runs()
        for entry in instance.all_logs(run.run_id)
        if entry.level == logging.WARNING
    ]
    assert any(
        f"{len(flipped)} candidate(s) in 1 job(s) have a label that disagrees" in message
        and f"{jobs[2]} ({len(flipped)})" in message
        for message in warnings
    ), warnings
    jsonld = json.loads((layout.dataset_dir / "croissant.json").read_text())
    (protocol,) = [value for key, value in jsonld.items() if key.endswith("dataAnnotationProtocol")]
    assert "taken as given" in str(protocol)


def test_a_removed_jobs_products_leave_the_published_folder_for_withdrawn(
    instance, data_store, layout, jobs
):
    assert _materialize_all(instance, data_store).succeeded
    removed = jobs[2]
    tensor = layout.job_tensor_file(removed).read_bytes()
    candidates = (layout.dataset_dir / "candidates" / f"{removed}.csv").read_bytes()
    shutil.rmtree(layout.incoming_jobs / removed)
    instance.delete_dynamic_partition("jids", removed)
    assert _selected(instance, data_store, "key:master_index or key:croissant_metadata").succeeded
    kept = [jid for jid in jobs if jid != removed]
    index = read_index_csv(layout.dataset_dir / "master_index.csv")
    assert sorted(index["jid"].unique()) == kept
    # The FileSet images/*.npy matches exactly the tensors the index lists ...
    assert sorted(path.name for path in layout.dataset_images_dir.iterdir()) == [
        f"{jid}.npy" for jid in kept
    ]
    assert not (layout.dataset_dir / "candidates" / f"{removed}.csv").exists()
    # ... and nothing was lost.
    withdrawn = layout.root / "withdrawn"
    assert (withdrawn / "images" / f"{removed}.npy").read_bytes() == tensor
    assert (withdrawn / "candidates" / f"{removed}.csv").read_bytes() == candidates
    metadata = instance.get_latest_materialization_event(
        transient_assets.master_index.key
    ).asset_materialization.metadata
    assert metadata["removed_jobs_withdrawn"].value == [removed]
    assert metadata["removed_jobs_not_withdrawn"].value == []
    croissant_metadata = instance.get_latest_materialization_event(
        transient_assets.croissant_metadata.key
    ).asset_materialization.metadata
    assert croissant_metadata["images_not_in_index"].value == []
    assert validate_croissant(layout.dataset_dir / "croissant.json", base_dir=layout.dataset_dir).ok
