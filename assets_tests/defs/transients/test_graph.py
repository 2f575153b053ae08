"""The transient dataset graph materialized in a test instance, from generated job folders."""

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from astro_assets.cli import main
from astro_assets.defs.transients import assets as transient_assets
from astro_assets.defs.transients import defs as transients_defs
from astro_assets.materialize import materialize_selection, run_failures
from astro_assets.samples import generate_jobs, read_truth
from astro_assets.science.transients import croissant as croissant_science
from astro_assets.science.transients.candidates import read_index_csv
from astro_assets.science.transients.croissant import read_candidates, validate_croissant

ASSETS = list(transients_defs.assets) + list(transients_defs.asset_checks)
N_JOBS = 5


@pytest.fixture
def jobs(layout, instance) -> list[str]:
    folders = generate_jobs(layout.incoming_jobs, N_JOBS, size=128, seed=11)
    jids = [folder.name for folder in folders]
    instance.add_dynamic_partitions("jids", jids)
    return jids


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


def _materialize_all(instance, data_store):
    return materialize_selection(
        instance,
        selection="*croissant_metadata",
        defs=_defs(data_store),
        resources={"data_store": data_store},
    )


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
    assert materialize_selection(
        instance, selection=select, defs=_defs(data_store), resources={"data_store": data_store}
    ).succeeded
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
    outcome = materialize_selection(
        instance,
        selection="job_tensors",
        defs=_defs(data_store),
        resources={"data_store": data_store},
    )
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
        again = materialize_selection(
            instance,
            selection="croissant_metadata",
            defs=_defs(data_store),
            resources={"data_store": data_store},
        )
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


def test_a_job_whose_image_is_all_nan_fails_naming_the_job_and_the_file(
    instance, data_store, layout, jobs
):
    difference = layout.incoming_jobs / jobs[1] / "diffimage_masked.fits"
    with fits.open(difference) as hdul:
        shape = hdul[0].data.shape
    fits.writeto(difference, np.full(shape, np.nan, np.float32), overwrite=True)
    outcome = materialize_selection(
        instance,
        selection="job_tensors",
        defs=_defs(data_store),
        resources={"data_store": data_store},
    )
    assert not outcome.succeeded
    (failure,) = outcome.failures[outcome.runs[0][0]]
    assert failure == (
        f"job_tensors: JobTensorError: job {jobs[1]} (job_tensors stopped here: the 3 job(s) "
        f"after it in this run were not processed): NoFinitePixelsError: {difference} "
        "(difference channel): all 16384 pixels of the (128, 128) image are NaN or infinite; "
        "there is nothing to normalize: check the input image or drop this job"
    )


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
    (dynamic_error,) = evaluations["croissant_valid"].metadata["dynamic_errors"].value
    assert evaluations["croissant_valid"].description == (
        f"croissant.json: records cannot be generated: {dynamic_error}"
    )
    assert result.asset_materializations_for_node("cnn_model") == []
    assert not (layout.models_dir / "cnn_model").exists()
