import shutil

import numpy as np
import pandas as pd
import pytest

from assets_tests.science.transients.test_cnn import TINY, make_synthetic_dataset
from astro_assets.samples.jobs import generate_jobs
from astro_assets.science.transients.candidates import (
    build_master_index,
    read_psfcat,
    write_master_index,
)
from astro_assets.science.transients.cnn import TrainConfig, export_model, train_model
from astro_assets.science.transients.evaluation import evaluate_model, predict_probabilities
from astro_assets.science.transients.scoring import score_candidates, write_scores
from astro_assets.science.transients.splits import split_table
from astro_assets.science.transients.tensors import write_job_tensor


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    index, root = make_synthetic_dataset(tmp_path_factory.mktemp("dataset"), n_jobs=8, per_job=5)
    index.to_csv(root / "master_index.csv", index=False)
    result = train_model(index, root, TrainConfig(**TINY.to_dict() | {"epochs": 2}))
    model_dir = export_model(result, tmp_path_factory.mktemp("models") / "cnn_model")
    return index, root, result, model_dir


def test_scores_every_candidate_of_the_dataset(exported):
    index, root, result, model_dir = exported
    scores = score_candidates(model_dir, root, device="cpu")
    assert list(scores.columns) == ["jid", "id", "score"]
    assert len(scores) == len(index)
    assert scores["jid"].tolist() == index["jid"].tolist()
    assert scores["id"].tolist() == index["id"].tolist()
    assert scores["score"].between(0.0, 1.0).all()
    np.testing.assert_allclose(
        scores["score"], predict_probabilities(result.model, index, root), rtol=0, atol=1e-6
    )


def test_scores_unlabelled_candidates_of_unseen_jobs(exported, tmp_path):
    *_, model_dir = exported
    new_index, new_root = make_synthetic_dataset(tmp_path, n_jobs=4, per_job=3, seed=9)
    new_index["jid"] = "new-" + new_index["jid"]
    new_index["image_filename"] = new_index["image_filename"].str.replace("jid", "new-jid")
    for path in (new_root / "images").iterdir():
        path.rename(path.with_name("new-" + path.name))
    unlabelled = new_index.drop(columns=["label", "match", "split"])
    original = unlabelled.copy()
    scores = score_candidates(model_dir, new_root, unlabelled, device="cpu")
    pd.testing.assert_frame_equal(unlabelled, original)
    assert len(scores) == 12
    assert scores["jid"].str.startswith("new-").all()
    assert np.isfinite(scores["score"]).all()


def test_candidates_outside_their_image_get_nan(exported):
    index, root, _, model_dir = exported
    shifted = index.copy()
    shifted.loc[2, "x"] = 40.5  # column 41 of a 40-pixel-wide image
    scores = score_candidates(model_dir, root, shifted, device="cpu")
    assert len(scores) == len(index)
    assert np.isnan(scores.loc[2, "score"])
    assert np.isfinite(scores["score"].drop(index=2)).all()


def test_the_score_command_counts_the_candidates_left_without_a_score(exported, tmp_path, capsys):
    from astro_assets.cli import main

    index, root, _, model_dir = exported
    dataset = tmp_path / "dataset"
    shutil.copytree(root / "images", dataset / "images")
    shifted = index.copy()
    shifted.loc[[2, 5], "x"] = 40.5  # column 41 of a 40-pixel-wide image
    shifted.to_csv(dataset / "master_index.csv", index=False)
    out = tmp_path / "scores.csv"
    argv = ["score", "--model", str(model_dir), "--dataset", str(dataset), "--out", str(out)]
    assert main([*argv, "--device", "cpu"]) == 0
    assert capsys.readouterr().out == (
        f"scored {len(index) - 2} of {len(index)} candidates -> {out}; 2 lie outside their "
        "image and have an empty score (in_image False)\n"
    )
    assert pd.read_csv(out)["score"].isna().tolist() == [k in (2, 5) for k in range(len(index))]
    index.to_csv(dataset / "master_index.csv", index=False)
    assert main([*argv, "--device", "cpu"]) == 0
    assert capsys.readouterr().out == f"scored {len(index)} candidates -> {out}\n"


def test_write_scores_round_trip_and_validation(exported, tmp_path):
    _, root, _, model_dir = exported
    scores = score_candidates(model_dir, root, device="cpu")
    out = write_scores(scores, tmp_path / "out" / "scores.csv")
    back = pd.read_csv(out, dtype={"jid": str})
    assert back["jid"].tolist() == scores["jid"].tolist()
    np.testing.assert_allclose(back["score"], scores["score"], rtol=1e-8)
    before = out.read_bytes()
    with pytest.raises(ValueError, match=r"columns \['jid', 'id', 'score'\]"):
        write_scores(scores.rename(columns={"score": "p"}), out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["scores.csv"]


def test_scoring_errors_are_clear(exported, tmp_path):
    index, root, _, model_dir = exported
    with pytest.raises(FileNotFoundError, match=r"No config\.json"):
        score_candidates(tmp_path / "missing", root)
    with pytest.raises(FileNotFoundError, match=r"master_index\.csv"):
        score_candidates(model_dir, tmp_path)
    with pytest.raises(ValueError, match="'id' column"):
        score_candidates(model_dir, root, index.drop(columns=["id"]), device="cpu")


def test_end_to_end_on_simulated_jobs(tmp_path):
    """Simulated RAPID-style jobs -> tensors -> master index -> train -> export -> score."""
    folders = generate_jobs(tmp_path / "jobs", 10, size=128, seed=0)
    dataset_dir = tmp_path / "dataset"
    frames = []
    for folder in folders:
        written = write_job_tensor(
            dataset_dir / "images" / f"{folder.name}.npy",
            {
                "science": folder / "bkg_subbed_science_image.fits",
                "reference": folder / "awaicgen_output_mosaic_image_resampled.fits",
                "difference": folder / "diffimage_masked.fits",
                "score": folder / "scorrimage_masked.fits",
            },
        )
        frames.append(
            read_psfcat(folder / "psfcat.csv", jid=folder.name, image_shape=written.shape[:2])
        )
    index = build_master_index(frames, split_table([f.name for f in folders], seed=0))
    write_master_index(index, dataset_dir / "master_index.csv")

    config = TrainConfig(**TINY.to_dict() | {"epochs": 2, "cutout_size": 32})
    result = train_model(index, dataset_dir, config)
    report = evaluate_model(result.model, result.scaler, index, dataset_dir)
    assert 0.0 <= report.cnn.roc_auc <= 1.0
    model_dir = export_model(result, tmp_path / "models" / "cnn_model")
    scores = score_candidates(model_dir, dataset_dir, device="cpu")
    assert len(scores) == len(index)
    assert scores["jid"].tolist() == index["jid"].tolist()
    assert scores["id"].tolist() == index["id"].tolist()
    assert scores.loc[index["in_image"].to_numpy(), "score"].between(0.0, 1.0).all()
    assert scores.loc[~index["in_image"].to_numpy(), "score"].isna().all()
