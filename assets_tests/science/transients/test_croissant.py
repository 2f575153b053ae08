"""Croissant 1.1 metadata: built with mlcroissant, validated statically and dynamically."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from astro_assets.io.fits import IMAGE_ROLES, job_file_paths
from astro_assets.samples.jobs import generate_jobs
from astro_assets.science.transients.candidates import (
    MASTER_INDEX_COLUMNS,
    build_master_index,
    read_psfcat,
    write_master_index,
)
from astro_assets.science.transients.croissant import (
    CROISSANT_1_1,
    CroissantError,
    build_croissant,
    semver_for,
    validate_croissant,
    write_croissant,
)
from astro_assets.science.transients.splits import split_table
from astro_assets.science.transients.tensors import write_job_tensor

BUILD_ARGS = {
    "name": "transients-demo",
    "version": "1.2.3",
    "date_published": "2025-06-01",
    "cite_as": "@misc{demo, title={Synthetic transients}}",
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("croissant")
    dataset_dir = root / "dataset"
    frames = []
    jobs = generate_jobs(root / "jobs", 4, size=64, seed=11)
    for job in jobs:
        paths = job_file_paths(job)
        result = write_job_tensor(
            dataset_dir / "images" / f"{job.name}.npy", {r: paths[r] for r in IMAGE_ROLES}
        )
        frames.append(read_psfcat(paths["catalog"], jid=job.name, image_shape=result.shape[:2]))
    index = build_master_index(frames, split_table([job.name for job in jobs]))
    write_master_index(
        index, dataset_dir / "master_index.csv", dataset_dir / "master_index.parquet"
    )
    jsonld = build_croissant(
        dataset_dir,
        dataset_dir / "master_index.csv",
        rai={"data_collection": "Synthetic jobs from astro_assets.samples.jobs."},
        **BUILD_ARGS,
    )
    write_croissant(dataset_dir / "croissant.json", jsonld)
    return dataset_dir, index, jsonld


def _fields(jsonld):
    record_set = next(rs for rs in jsonld["recordSet"] if rs["@id"] == "candidates")
    return {field["name"]: field for field in record_set["field"]}


def test_static_and_dynamic_validation_pass(dataset):
    dataset_dir, index, _ = dataset
    report = validate_croissant(dataset_dir / "croissant.json")
    assert report.ok, report
    assert report.conforms_to == CROISSANT_1_1
    assert report.record_counts == {"splits": 3, "candidates": len(index)}
    report.raise_for_errors()


def test_dict_validation_with_base_dir(dataset):
    dataset_dir, index, jsonld = dataset
    report = validate_croissant(jsonld, base_dir=dataset_dir)
    assert report.ok and report.record_counts["candidates"] == len(index)


@pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")
def test_records_come_back_equal_to_the_index(dataset):
    import mlcroissant as mlc

    dataset_dir, _, _ = dataset
    csv = pd.read_csv(dataset_dir / "master_index.csv")
    records = list(
        mlc.Dataset(jsonld=str(dataset_dir / "croissant.json")).records(record_set="candidates")
    )
    assert len(records) == len(csv)
    assert [r["candidates/label"] for r in records] == csv["label"].tolist()
    assert [r["candidates/jid"] for r in records] == [j.encode() for j in csv["jid"]]
    assert [r["candidates/split"] for r in records] == [s.encode() for s in csv["split"]]
    np.testing.assert_array_equal([r["candidates/x"] for r in records], csv["x"])
    assert [r["candidates/in_image"] for r in records] == csv["in_image"].tolist()


def test_document_structure(dataset):
    dataset_dir, index, jsonld = dataset
    assert jsonld["conformsTo"] == CROISSANT_1_1
    assert jsonld["version"] == "1.2.3"
    assert jsonld["datePublished"] == "2025-06-01"
    assert jsonld["citeAs"] == BUILD_ARGS["cite_as"]
    assert jsonld["license"] == "https://spdx.org/licenses/CC-BY-4.0.html"
    assert jsonld["rai:dataCollection"] == "Synthetic jobs from astro_assets.samples.jobs."
    for key in ("rai:dataBiases", "rai:dataLimitations", "rai:personalSensitiveInformation"):
        assert jsonld[key]
    assert f"{len(index)} candidates from 4 jobs" in jsonld["description"]

    index_file, twin, tensors = jsonld["distribution"]
    for node, name in [(index_file, "master_index.csv"), (twin, "master_index.parquet")]:
        digest = hashlib.sha256((dataset_dir / name).read_bytes()).hexdigest()
        assert node["@type"] == "cr:FileObject" and node["sha256"] == digest
        assert node["contentUrl"] == name
    assert tensors["@type"] == "cr:FileSet" and tensors["includes"] == "images/*.npy"
    assert "(H, W, 4)" in tensors["description"]
    assert "0: science, 1: reference, 2: difference, 3: score" in tensors["description"]
    assert "(64, 64, 4)" in tensors["description"]

    fields = _fields(jsonld)
    assert list(fields) == list(MASTER_INDEX_COLUMNS)
    assert all(field.get("dataType") for field in fields.values())
    assert fields["label"]["dataType"] == ["sc:Integer", "cr:Label"]
    assert fields["flux"]["dataType"] == "sc:Float"
    assert fields["in_image"]["dataType"] == "sc:Boolean"
    assert fields["split"]["references"] == {"field": {"@id": "splits/name"}}
    # Records come from the typed Parquet twin (see the module docstring).
    for name, field in fields.items():
        assert field["source"] == {
            "fileObject": {"@id": "master_index.parquet"},
            "extract": {"column": name},
        }
    # Ids are integers: declared Float, mlcroissant would round a 19-digit one.
    assert fields["id"]["dataType"] == "sc:Integer"
    assert fields["match"]["dataType"] == "sc:Integer"
    assert fields["jid"]["dataType"] == "sc:Text"

    splits = next(rs for rs in jsonld["recordSet"] if rs["@id"] == "splits")
    assert splits["dataType"] == "cr:Split"
    assert [row["splits/name"] for row in splits["data"]] == ["train", "validation", "test"]


def _published_records(folder, frames, splits) -> list[dict]:
    """The ``candidates`` records that mlcroissant reads from ``frames`` published in ``folder``."""
    import mlcroissant as mlc

    index = build_master_index(frames, splits)
    write_master_index(index, folder / "master_index.csv", folder / "master_index.parquet")
    write_croissant(
        folder / "croissant.json",
        build_croissant(folder, folder / "master_index.csv", **BUILD_ARGS),
    )
    return list(mlc.Dataset(jsonld=str(folder / "croissant.json")).records(record_set="candidates"))


@pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")
def test_numeric_job_ids_and_19_digit_ids_come_back_exact_through_mlcroissant(tmp_path):
    header = "id,x,y,sharpness,roundness1,roundness2,npix,peak,flux,mag,daofind_mag,flags"
    candids = [1234567890123456790, 1234567890123456791]
    (tmp_path / "images").mkdir()
    frames = []
    for jid, candid in zip(["000678", "12345"], candids, strict=True):
        (tmp_path / f"{jid}.csv").write_text(
            f"{header},match,label\n{candid},3.0,4.0,0.5,0,0,9,10,20,-3.2,-1,0,{candid + 7},1\n"
        )
        frames.append(read_psfcat(tmp_path / f"{jid}.csv", jid=jid, image_shape=(8, 8)))
        np.save(tmp_path / "images" / f"{jid}.npy", np.zeros((8, 8, 4), np.float32))
    records = _published_records(tmp_path, frames, {"000678": "train", "12345": "test"})
    assert [r["candidates/jid"] for r in records] == [b"000678", b"12345"]
    assert [r["candidates/id"] for r in records] == candids
    assert [r["candidates/match"] for r in records] == [candid + 7 for candid in candids]


def test_an_image_filename_that_does_not_hold_the_job_id_is_refused(dataset, tmp_path):
    _, index, _ = dataset
    moved = index.copy()
    moved.loc[0, "image_filename"] = "images/elsewhere.npy"
    write_master_index(moved, tmp_path / "master_index.csv", tmp_path / "master_index.parquet")
    jid = moved.loc[0, "jid"]
    with pytest.raises(CroissantError, match=rf"'images/elsewhere.npy' of job '{jid}' is not"):
        build_croissant(tmp_path, tmp_path / "master_index.csv", **BUILD_ARGS)


@pytest.mark.parametrize("changed", ["master_index.csv", "master_index.parquet"])
def test_a_changed_index_fails_dynamic_validation(dataset, tmp_path, changed):
    # The CSV is read by no RecordSet (the records come from its twin): its hash is checked
    # all the same.
    dataset_dir, _, jsonld = dataset
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ["master_index.csv", "master_index.parquet"]:
        (copy / name).write_bytes((dataset_dir / name).read_bytes())
    (copy / changed).write_bytes((copy / changed).read_bytes() + b"\n")
    write_croissant(copy / "croissant.json", jsonld)
    report = validate_croissant(copy / "croissant.json")
    assert not report.ok
    (error,) = report.dynamic_errors
    assert changed in error
    remedy = "materialize master_index and croissant_metadata again"
    assert (remedy in error) == changed.endswith("parquet"), error
    _, index, _ = dataset
    assert report.record_counts.get("candidates") == (
        None if changed.endswith("parquet") else len(index)
    )
    with pytest.raises(CroissantError, match="Croissant validation failed"):
        report.raise_for_errors()
    dict_report = validate_croissant(jsonld, base_dir=copy)
    assert len(dict_report.dynamic_errors) == 1 and changed in dict_report.dynamic_errors[0]


def test_a_twin_that_is_missing_or_differs_from_the_csv_is_refused(dataset, tmp_path):
    _, index, _ = dataset
    (tmp_path / "images").mkdir()
    for jid in index["jid"].unique():
        np.save(tmp_path / "images" / f"{jid}.npy", np.zeros((8, 8, 4), np.float32))
    write_master_index(index, tmp_path / "master_index.csv")
    (tmp_path / "master_index.parquet").unlink()
    with pytest.raises(CroissantError, match=r"master_index.parquet does not exist"):
        build_croissant(tmp_path, tmp_path / "master_index.csv", **BUILD_ARGS)
    changed = index.copy()
    changed.loc[1, "flux"] += 1.0
    changed.to_parquet(tmp_path / "master_index.parquet", index=False)
    with pytest.raises(CroissantError, match=r"master_index.parquet differs from .*flux"):
        build_croissant(tmp_path, tmp_path / "master_index.csv", **BUILD_ARGS)
    index.astype({"match": "float64"}).to_parquet(tmp_path / "master_index.parquet", index=False)
    with pytest.raises(CroissantError, match=r"column 'match' is float64, not an integer"):
        build_croissant(tmp_path, tmp_path / "master_index.csv", **BUILD_ARGS)


@pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")
def test_a_19_digit_match_beside_an_empty_one_comes_back_exact_through_mlcroissant(tmp_path):
    from astro_assets.science.transients.croissant import read_candidates

    header = "id,x,y,sharpness,roundness1,roundness2,npix,peak,flux,mag,daofind_mag,flags"
    ids = [1234567890123456789, 1234567890123456790, 1234567890123456791]
    # One float64 value stands for all of these: 1234567890123456768.
    matches = [1234567890123456796, None, 1234567890123456797]
    lines = [
        f"{candid},3.0,4.0,0.5,0,0,9,10,20,-3.2,-1,0,{'' if m is None else m},{int(m is not None)}"
        for candid, m in zip(ids, matches, strict=True)
    ]
    (tmp_path / "psfcat.csv").write_text("\n".join([f"{header},match,label", *lines]) + "\n")
    frame = read_psfcat(tmp_path / "psfcat.csv", jid="000678", image_shape=(8, 8))
    (tmp_path / "images").mkdir()
    np.save(tmp_path / "images" / "000678.npy", np.zeros((8, 8, 4), np.float32))
    records = _published_records(tmp_path, [frame], {"000678": "train"})
    assert [r["candidates/match"] for r in records] == matches
    assert [r["candidates/id"] for r in records] == ids
    table = read_candidates(tmp_path / "croissant.json")
    assert str(table["match"].dtype) == "Int64" and table["id"].dtype == np.int64
    assert table["match"].isna().tolist() == [False, True, False]
    assert table["match"].dropna().tolist() == [matches[0], matches[2]]
    assert table["id"].tolist() == ids
    assert validate_croissant(tmp_path / "croissant.json").ok


def test_static_error_is_reported(tmp_path):
    document = {"@context": {}, "@type": "sc:Dataset", "name": "x"}
    (tmp_path / "bad.json").write_text(json.dumps(document))
    report = validate_croissant(tmp_path / "bad.json")
    assert not report.ok and report.static_errors


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": "1.0"}, "not semantic"),
        ({"date_published": "yesterday"}, "not an ISO date"),
        ({"license": "my license"}, "neither a URL nor an SPDX"),
        ({"rai": {"data_mood": "x"}}, "unknown RAI attribute"),
        ({"rai": {"data_collection": ["a", "b"]}}, "takes one text"),
    ],
)
def test_bad_arguments(dataset, change, message):
    dataset_dir, _, _ = dataset
    with pytest.raises(CroissantError, match=message):
        build_croissant(dataset_dir, dataset_dir / "master_index.csv", **{**BUILD_ARGS, **change})


def test_missing_tensor_and_wrong_columns(dataset, tmp_path):
    _, index, _ = dataset
    write_master_index(index, tmp_path / "master_index.csv", tmp_path / "master_index.parquet")
    with pytest.raises(CroissantError, match=r"image tensor\(s\) referenced by the index"):
        build_croissant(tmp_path, tmp_path / "master_index.csv", **BUILD_ARGS)
    index.drop(columns=["in_image"]).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(CroissantError, match="expected exactly"):
        build_croissant(tmp_path, tmp_path / "short.csv", **BUILD_ARGS)
    with pytest.raises(CroissantError, match="must lie inside"):
        build_croissant(tmp_path / "sub", tmp_path / "short.csv", **BUILD_ARGS)


@pytest.mark.parametrize(
    ("previous", "old", "new", "expected"),
    [
        (None, {}, {"a": "train"}, "1.0.0"),
        ("1.2.3", {"a": "train"}, {"a": "train"}, "1.2.4"),
        ("1.2.3", {"a": "train"}, {"a": "train", "b": "test"}, "1.3.0"),
        ("1.2.3", {"a": "train", "b": "test"}, {"a": "test", "b": "test"}, "2.0.0"),
        ("1.2.3", {"a": "train", "b": "test"}, {"a": "train"}, "2.0.0"),
        ("1.2.3", {"a": "train"}, {"a": "test", "c": "train"}, "2.0.0"),
    ],
)
def test_semver_for(previous, old, new, expected):
    assert semver_for(previous, old, new) == expected


def test_semver_unchanged_content_keeps_the_version():
    assert semver_for("3.1.4", {"a": "train"}, {"a": "train"}, content_changed=False) == "3.1.4"
    with pytest.raises(ValueError, match="not semantic"):
        semver_for("v1", {}, {})


def test_read_candidates_returns_the_index_through_mlcroissant(dataset):
    from astro_assets.science.transients.croissant import read_candidates

    dataset_dir, index, _ = dataset
    table = read_candidates(dataset_dir / "croissant.json")
    assert len(table) == len(index)
    assert list(table["jid"]) == list(index["jid"].astype(str))
    np.testing.assert_allclose(table["x"].to_numpy(float), index["x"].to_numpy(float))
    assert list(table["label"].astype(int)) == list(index["label"])


def test_read_candidates_refuses_a_missing_file(tmp_path):
    from astro_assets.science.transients.croissant import CroissantError, read_candidates

    with pytest.raises(CroissantError, match="materialize croissant_metadata"):
        read_candidates(tmp_path / "croissant.json")


def _readme_python_block(containing: str) -> str:
    """The README's ```python block that holds ``containing``."""
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    matching = [block for block in blocks if containing in block]
    assert len(matching) == 1, f"expected one README python block with {containing!r}"
    return matching[0]


@pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning")
def test_readme_pytorch_snippet_runs_on_an_index_with_a_candidate_outside_its_image(
    tmp_path, monkeypatch
):
    dataset_dir = tmp_path / "data" / "dataset"
    jobs = generate_jobs(tmp_path / "jobs", 2, size=64, seed=5)
    frames = []
    for job in jobs:
        paths = job_file_paths(job)
        if job == jobs[0]:
            header, first, *rest = paths["catalog"].read_text().splitlines()
            cells = first.split(",")
            cells[header.split(",").index("x")] = "84.0"  # 20 px right of the 64 px wide image
            paths["catalog"].write_text("\n".join([header, ",".join(cells), *rest]) + "\n")
        result = write_job_tensor(
            dataset_dir / "images" / f"{job.name}.npy", {r: paths[r] for r in IMAGE_ROLES}
        )
        frames.append(read_psfcat(paths["catalog"], jid=job.name, image_shape=result.shape[:2]))
    index = build_master_index(frames, {job.name: "train" for job in jobs})
    assert index["in_image"].tolist().count(False) == 1
    write_master_index(
        index, dataset_dir / "master_index.csv", dataset_dir / "master_index.parquet"
    )
    write_croissant(
        dataset_dir / "croissant.json",
        build_croissant(dataset_dir, dataset_dir / "master_index.csv", **BUILD_ARGS),
    )
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(_readme_python_block("CutoutDataset("), namespace)
    inside = int(index["in_image"].sum())
    assert len(namespace["train"]) == inside
    assert tuple(namespace["cutouts"].shape) == (min(64, inside), 5, 64, 64)
    assert namespace["labels"].tolist() == index.loc[index["in_image"], "label"].tolist()[:64]
