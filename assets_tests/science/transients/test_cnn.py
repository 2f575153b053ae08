import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from astro_assets.science.transients import cnn
from astro_assets.science.transients.cnn import (
    IncompatibleModelError,
    RealBogusNet,
    TrainConfig,
    export_model,
    load_model,
    train_model,
)
from astro_assets.science.transients.evaluation import (
    SplitError,
    predict_probabilities,
    roc_auc,
)
from astro_assets.science.transients.features import FEATURE_COLUMNS, FeatureScaler

PSF_SIGMA = 1.5
AMPLITUDE = 0.4
NOISE = 0.02

# Tiny network and cutouts: a few seconds on a CPU for the whole file.
TINY = TrainConfig(
    epochs=8,
    batch_size=16,
    learning_rate=3e-3,
    cutout_size=16,
    conv_channels=(4, 8),
    feature_hidden=8,
    head_hidden=16,
    dropout=0.0,
    patience=8,
    device="cpu",
)


def make_synthetic_dataset(
    root: Path,
    *,
    n_jobs: int = 12,
    per_job: int = 10,
    shape: tuple[int, int] = (36, 40),
    real_fraction: float = 0.4,
    seed: int = 0,
) -> tuple[pd.DataFrame, Path]:
    """Job tensors and a master index with ground truth, separable by the images only.

    Real candidates are Gaussian PSFs (sigma 1.5 px, peak 0.4) added to the science and
    difference channels at sub-pixel positions; bogus candidates are single-pixel spikes of the
    same peak in the difference channel (cosmic-ray-like). Background 0.3 with Gaussian noise
    0.02. The catalogue features are pure noise, unrelated to the label. The last four jobs are
    validation (2) and test (2).
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    height, width = shape
    rows_grid, columns_grid = np.mgrid[0:height, 0:width]
    splits = ["train"] * (n_jobs - 4) + ["validation"] * 2 + ["test"] * 2
    rows = []
    for job in range(n_jobs):
        jid = f"jid{job:03d}"
        tensor = 0.3 + NOISE * rng.standard_normal((height, width, 4))
        labels = np.zeros(per_job, dtype=int)
        labels[: max(1, round(real_fraction * per_job))] = 1
        rng.shuffle(labels)
        for number, label in enumerate(labels):
            x = rng.uniform(-0.4, width - 0.6)
            y = rng.uniform(-0.4, height - 0.6)
            if label:
                psf = AMPLITUDE * np.exp(
                    -((columns_grid - x) ** 2 + (rows_grid - y) ** 2) / (2 * PSF_SIGMA**2)
                )
                tensor[..., 0] += psf
                tensor[..., 2] += psf
            else:
                tensor[int(np.floor(y + 0.5)), int(np.floor(x + 0.5)), 2] += AMPLITUDE
            rows.append(
                {"id": float(number), "jid": jid, "x": x, "y": y}
                | dict(zip(FEATURE_COLUMNS, rng.standard_normal(len(FEATURE_COLUMNS)), strict=True))
                | {
                    "match": float(label),
                    "label": int(label),
                    "image_filename": f"images/{jid}.npy",
                    "split": splits[job],
                }
            )
        np.save(root / "images" / f"{jid}.npy", np.clip(tensor, 0, 1).astype(np.float32))
    return pd.DataFrame(rows), root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="module")
def trained(dataset):
    index, root = dataset
    return train_model(index, root, TINY)


def test_network_output_shape():
    net = RealBogusNet(in_channels=5, n_features=9, conv_channels=(4, 8))
    assert net(torch.zeros(3, 5, 16, 16), torch.zeros(3, 9)).shape == (3, 1)


def test_training_separates_real_from_bogus_on_unseen_jobs(dataset, trained):
    index, root = dataset
    test = index[index["split"] == "test"]
    scores = predict_probabilities(trained.model, test, root)
    # The generator is separable by construction: within the central 3 x 3 pixels of the
    # difference channel a real PSF carries ~6.8x the flux of a bogus spike of equal peak
    # (2.7 vs 0.4), against a noise of 0.06 on that sum, so a single linear filter reaches
    # AUC 1. 0.9 leaves room for a tiny network trained for 8 epochs on 80 candidates, and
    # is far above the 0.5 of chance (the features carry no label information).
    assert roc_auc(test["label"].to_numpy(), scores) >= 0.9
    assert trained.best_epoch >= 1
    assert trained.device == "cpu"
    assert trained.samples_per_second > 0
    assert [row["epoch"] for row in trained.history] == list(range(1, len(trained.history) + 1))
    assert trained.n_train == 80
    assert trained.n_validation == 20


def test_training_is_deterministic_for_a_seed(dataset, trained):
    index, root = dataset
    again = train_model(index, root, TINY)
    for name, value in trained.model.state_dict().items():
        torch.testing.assert_close(value, again.model.state_dict()[name], rtol=0, atol=0)
    assert [h["val_loss"] for h in again.history] == [h["val_loss"] for h in trained.history]
    other_seed = train_model(index, root, TrainConfig(**TINY.to_dict() | {"seed": 1, "epochs": 1}))
    first = next(iter(trained.model.state_dict().values()))
    assert not torch.equal(first, next(iter(other_seed.model.state_dict().values())))


def test_training_restores_global_torch_state(dataset):
    index, root = dataset
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    train_model(index, root, TrainConfig(**TINY.to_dict() | {"epochs": 1}))
    torch.testing.assert_close(torch.rand(3), expected)
    assert torch.are_deterministic_algorithms_enabled() == deterministic_before


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
def test_auto_device_trains_on_cuda_and_exports_a_cpu_model(dataset, tmp_path):
    index, root = dataset
    torch.manual_seed(123)
    expected = torch.rand(3, device="cuda")
    torch.manual_seed(123)
    on_gpu = train_model(index, root, TrainConfig(**TINY.to_dict() | {"device": "auto"}))
    torch.testing.assert_close(torch.rand(3, device="cuda"), expected)
    assert on_gpu.device.startswith("cuda")
    assert {parameter.device.type for parameter in on_gpu.model.parameters()} == {"cpu"}
    test = index[index["split"] == "test"]
    eager = predict_probabilities(on_gpu.model, test, root)
    assert roc_auc(test["label"].to_numpy(), eager) >= 0.9
    scripted = load_model(export_model(on_gpu, tmp_path / "cnn_model"))
    np.testing.assert_allclose(
        predict_probabilities(scripted.model, test, root), eager, rtol=0, atol=1e-6
    )


@needs_cuda
def test_float32_training_on_cuda_is_deterministic_for_a_seed(dataset):
    index, root = dataset
    config = TrainConfig(**TINY.to_dict() | {"device": "cuda", "mixed_precision": False})
    first, again = train_model(index, root, config), train_model(index, root, config)
    for name, value in first.model.state_dict().items():
        torch.testing.assert_close(value, again.model.state_dict()[name], rtol=0, atol=0)
    assert not torch.backends.cudnn.deterministic


def test_scaler_is_fitted_on_train_only_and_test_jobs_are_never_read(tmp_path):
    index, root = make_synthetic_dataset(tmp_path, n_jobs=8, per_job=6)
    config = TrainConfig(**TINY.to_dict() | {"epochs": 1})
    baseline = train_model(index, root, config)
    assert baseline.scaler == FeatureScaler.fit(index[index["split"] == "train"])
    changed = index.copy()
    held_out = changed["split"] != "train"
    changed.loc[held_out, list(FEATURE_COLUMNS)] *= 1000.0
    for jid in changed.loc[changed["split"] == "test", "jid"].unique():
        os.remove(root / "images" / f"{jid}.npy")
    result = train_model(changed, root, config)
    assert result.scaler == baseline.scaler


def test_candidates_outside_their_image_are_left_out_and_counted(dataset):
    index, root = dataset
    shifted = index.copy()
    train_rows = shifted.index[shifted["split"] == "train"][:3]
    shifted.loc[train_rows, "x"] = -0.51  # pixel column -1
    shifted.loc[shifted.index[shifted["split"] == "validation"][0], "y"] = 35.5  # row 36 of 36
    result = train_model(shifted, root, TrainConfig(**TINY.to_dict() | {"epochs": 1}))
    assert result.n_outside_image == {"train": 3, "validation": 1}
    assert result.n_train == 77
    assert result.n_validation == 19


@pytest.mark.parametrize(
    ("label", "message"),
    [
        (0, "The 'test' split has no real (label 1) candidates (20 candidates in all)"),
        (1, "The 'test' split has no bogus (label 0) candidates (20 candidates in all)"),
    ],
)
def test_a_test_split_that_cannot_be_evaluated_is_refused_before_training(
    dataset, monkeypatch, label, message
):
    index, root = dataset
    one_class = index.copy()
    one_class.loc[one_class["split"] == "test", "label"] = label

    def no_training(*args, **kwargs):
        raise AssertionError("the model was built although the test split cannot be evaluated")

    monkeypatch.setattr(cnn, "build_model", no_training)
    with pytest.raises(SplitError, match=re.escape(message)):
        train_model(one_class, root, TINY)


def test_the_test_split_is_judged_by_its_candidates_inside_their_images(dataset):
    index, root = dataset
    real_outside = index.copy()
    test_real = (real_outside["split"] == "test") & (real_outside["label"] == 1)
    real_outside["in_image"] = ~test_real
    # The 8 real test candidates are flagged outside their images (``in_image``), so the test
    # split holds 12 bogus candidates the model could be judged on; training reads the flag,
    # not the test tensors.
    message = "The 'test' split has no real (label 1) candidates (12 candidates in all)"
    with pytest.raises(SplitError, match=re.escape(message)):
        train_model(real_outside, root, TrainConfig(**TINY.to_dict() | {"epochs": 1}))


def test_missing_features_can_be_refused(dataset):
    index, root = dataset
    with_nan = index.copy()
    with_nan.loc[0, "mag"] = np.nan
    with pytest.raises(ValueError, match="mag: 1"):
        train_model(with_nan, root, TrainConfig(**TINY.to_dict() | {"nan_policy": "error"}))
    result = train_model(with_nan, root, TrainConfig(**TINY.to_dict() | {"epochs": 1}))
    assert result.scaler.imputed_at_fit["mag"] == 1


def test_training_does_not_modify_the_index(dataset):
    index, root = dataset
    original = index.copy()
    train_model(index, root, TrainConfig(**TINY.to_dict() | {"epochs": 1}))
    pd.testing.assert_frame_equal(index, original)


def test_time_limit_stops_after_one_batch(dataset):
    index, root = dataset
    result = train_model(index, root, TrainConfig(**TINY.to_dict() | {"time_limit_s": 1e-9}))
    assert result.stopped_reason == "time_limit"
    assert len(result.history) == 1


def test_diverging_training_is_stopped_with_advice(dataset):
    index, root = dataset
    with pytest.raises(FloatingPointError, match="non-finite in epoch 1; lower learning_rate"):
        train_model(index, root, TrainConfig(**TINY.to_dict() | {"learning_rate": 1e20}))


def test_loader_workers_do_not_change_the_model(dataset):
    index, root = dataset
    config = TrainConfig(**TINY.to_dict() | {"epochs": 2})
    in_process = train_model(index, root, config)
    with_workers = train_model(index, root, TrainConfig(**config.to_dict() | {"num_workers": 2}))
    assert (in_process.num_workers, with_workers.num_workers) == (0, 2)
    for name, value in in_process.model.state_dict().items():
        torch.testing.assert_close(value, with_workers.model.state_dict()[name], rtol=0, atol=0)
    assert [h["train_loss"] for h in in_process.history] == [
        h["train_loss"] for h in with_workers.history
    ]


def test_default_loader_workers_are_none_on_the_cpu_and_some_on_cuda():
    config = TrainConfig()
    assert config.num_workers is None
    assert cnn.loader_workers(config, torch.device("cpu")) == 0
    assert 1 <= cnn.loader_workers(config, torch.device("cuda")) <= 8
    assert cnn.loader_workers(TrainConfig(num_workers=3), torch.device("cuda")) == 3


def test_split_problems_are_reported(dataset):
    index, root = dataset
    leaking = index.copy()
    leaking.loc[leaking.index[0], "split"] = "test"
    with pytest.raises(SplitError, match="more than one split"):
        train_model(leaking, root, TINY)
    no_real_validation = index.copy()
    no_real_validation.loc[no_real_validation["split"] == "validation", "label"] = 0
    with pytest.raises(SplitError, match=r"'validation' split has no real \(label 1\)"):
        train_model(no_real_validation, root, TINY)
    with pytest.raises(SplitError, match="'validation' split has no candidates"):
        train_model(index[index["split"] != "validation"], root, TINY)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"device": "tpu"}, "device"),
        ({"num_workers": -1}, "num_workers"),
        ({"cutout_size": 4, "conv_channels": (4, 8, 16)}, "too small"),
        ({"conv_channels": ()}, "conv_channels"),
        ({"nan_policy": "drop"}, "nan_policy"),
        ({"time_limit_s": 0}, "time_limit_s"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_config_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**changes)


def test_config_round_trips_through_a_dict():
    assert TrainConfig.from_dict(json.loads(json.dumps(TINY.to_dict()))) == TINY


def test_torchscript_export_gives_the_eager_scores(dataset, trained, tmp_path):
    index, root = dataset
    out = export_model(trained, tmp_path / "cnn_model", {"metrics.json": b"{}"})
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "metrics.json",
        "model.pt",
        "state_dict.pt",
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["format_version"] == cnn.MODEL_FORMAT_VERSION
    assert config["architecture"]["cutout_size"] == 16
    assert config["architecture"]["in_channels"] == 5
    assert config["train_config"]["conv_channels"] == [4, 8]
    assert config["feature_scaler"] == trained.scaler.to_dict()
    eager = predict_probabilities(trained.model, index, root)
    scripted = load_model(out)
    assert isinstance(scripted.model, torch.jit.ScriptModule)
    np.testing.assert_allclose(
        predict_probabilities(scripted.model, index, root), eager, rtol=0, atol=1e-6
    )
    rebuilt = load_model(out, eager=True)
    np.testing.assert_allclose(
        predict_probabilities(rebuilt.model, index, root), eager, rtol=0, atol=1e-6
    )
    assert scripted.scaler == trained.scaler


def test_exported_model_validates_its_inputs(trained, tmp_path):
    model = load_model(export_model(trained, tmp_path / "m")).model
    # Missing features are imputed (the default policy), with their indicators set.
    assert torch.isfinite(model(torch.zeros(1, 5, 16, 16), torch.full((1, 9), float("nan")))).all()
    with pytest.raises(Exception, match="16 x 16 pixels"):
        model(torch.zeros(1, 5, 32, 32), torch.zeros(1, 9))
    with pytest.raises(Exception, match=r"shape \(N, 5, S, S\)"):
        model(torch.zeros(1, 4, 16, 16), torch.zeros(1, 9))
    with pytest.raises(Exception, match="same number of rows"):
        model(torch.zeros(2, 5, 16, 16), torch.zeros(1, 9))


def test_failed_export_leaves_the_previous_model(trained, tmp_path, monkeypatch):
    out = export_model(trained, tmp_path / "cnn_model")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cnn.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        export_model(trained, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn_model"]
    monkeypatch.undo()
    export_model(trained, out, {"metrics.json": b"{}"})
    assert (out / "metrics.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn_model"]


def test_export_rejects_bad_extra_files(trained, tmp_path):
    for name in ("../escape.json", "model.pt", ""):
        with pytest.raises(ValueError, match="plain file name"):
            export_model(trained, tmp_path / "m", {name: b""})
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        export_model(trained, tmp_path / "file")


def test_load_refuses_incompatible_or_damaged_models(trained, tmp_path):
    out = export_model(trained, tmp_path / "cnn_model")
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())

    config_path.write_text(json.dumps(config | {"format_version": 99}))
    with pytest.raises(IncompatibleModelError, match=r"format version 99.*reads version 1"):
        load_model(out)
    config_path.write_text(json.dumps(config | {"format": "something.else"}))
    with pytest.raises(IncompatibleModelError, match="was not written by"):
        load_model(out)
    config_path.write_text("{not json")
    with pytest.raises(IncompatibleModelError, match="not valid JSON"):
        load_model(out)
    config_path.write_text(json.dumps(config))
    with (out / "model.pt").open("ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(IncompatibleModelError, match="checksum"):
        load_model(out)
    with pytest.raises(FileNotFoundError, match=r"No config\.json"):
        load_model(tmp_path / "nowhere")
