"""Real/bogus CNN: cutout + tabular-feature network, training, TorchScript export and loading.

The network sees a (C + 1)-channel cutout (science, reference, difference, score, validity) and
the scaled catalogue features, and outputs one logit. :class:`ScoredModel` embeds the feature
scaling fitted on the training split, so the exported TorchScript file is self-contained: it
takes cutouts and RAW features and returns probabilities.

Training: AdamW on a class-weighted ``BCEWithLogitsLoss`` (``pos_weight = n_bogus / n_real`` of
the training split: the index keeps the natural class ratio, the loss rebalances it), early
stopping on validation ROC-AUC (an epoch is better when its AUC exceeds the best by more than
the AUC's Hanley-McNeil standard error, or is within that error with a lower validation loss;
the best epoch's weights are kept), an optional wall-clock limit,
and flips/90-degree rotations as augmentation. With class weighting the probabilities are those of
a balanced problem: 0.5 is the equal-error-cost threshold, and on the natural class ratio they
over-state the real fraction; the calibration metrics of :mod:`.evaluation` show by how much.

Devices: ``"auto"`` picks CUDA when available (with bfloat16 autocast and DataLoader workers),
CPU otherwise. A run is deterministic for a seed on a given device and software (seeded RNGs,
deterministic CPU algorithms and cuDNN convolutions, augmentation drawn per (seed, epoch,
sample), so the worker count does not change it); the global torch RNG and algorithm settings
are restored afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from astro_assets.science.transients.cutouts import CutoutDataset, drop_outside_image
from astro_assets.science.transients.evaluation import (
    auc_standard_error,
    require_both_classes,
    roc_auc,
    split_rows,
    validate_splits,
)
from astro_assets.science.transients.features import (
    FEATURE_COLUMNS,
    FeatureScaler,
    FeatureScaling,
    FeatureScalingConfig,
)
from astro_assets.science.transients.training_params import DEVICES, TrainConfig

MODEL_FORMAT = "astro_assets.real_bogus_cnn"
MODEL_FORMAT_VERSION = 1
MODEL_FILE = "model.pt"
STATE_DICT_FILE = "state_dict.pt"
CONFIG_FILE = "config.json"


class IncompatibleModelError(ValueError):
    """Raised when a model directory was written in another format or format version."""


class RealBogusNet(nn.Module):
    """Convolutional trunk on the cutout + MLP on the scaled features -> one logit per candidate.

    Input: cutouts (N, in_channels, S, S) float32, scaled features (N, n_features) float32.
    Output: logits (N, 1).
    """

    def __init__(
        self,
        in_channels: int = 5,
        n_features: int = len(FEATURE_COLUMNS),
        conv_channels: tuple[int, ...] = (16, 32, 64),
        feature_hidden: int = 32,
        head_hidden: int = 64,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.architecture = {
            "in_channels": int(in_channels),
            "n_features": int(n_features),
            "conv_channels": [int(c) for c in conv_channels],
            "feature_hidden": int(feature_hidden),
            "head_hidden": int(head_hidden),
            "dropout": float(dropout),
        }
        stages: list[nn.Module] = []
        previous = in_channels
        for width in conv_channels:
            stages += [
                nn.Conv2d(previous, width, kernel_size=3, padding=1),
                # Group norm behaves the same for any batch size (a last batch of one included).
                nn.GroupNorm(math.gcd(width, 8), width),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            previous = width
        # A 4 x 4 grid keeps where structure sits relative to the centred candidate.
        stages += [nn.AdaptiveAvgPool2d(4), nn.Flatten()]
        self.trunk = nn.Sequential(*stages)
        self.features = nn.Sequential(
            nn.Linear(n_features, feature_hidden),
            nn.ReLU(),
            nn.Linear(feature_hidden, feature_hidden),
            nn.ReLU(),
        )
        self.head = nn.Sequential(
            nn.Linear(previous * 16 + feature_hidden, head_hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(head_hidden, 1),
        )

    def forward(self, cutouts: torch.Tensor, scaled_features: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([self.trunk(cutouts), self.features(scaled_features)], dim=1)
        return self.head(joint)


class ScoredModel(nn.Module):
    """The deployable model: raw features are scaled inside, the output is a probability.

    ``forward(cutouts (N, C, S, S) float32, raw_features (N, F)) -> probabilities (N,)`` in
    [0, 1]; ``logits`` gives the pre-sigmoid values. TorchScript-compatible.
    """

    def __init__(self, net: RealBogusNet, scaling: FeatureScaling, cutout_size: int) -> None:
        super().__init__()
        self.net = net
        self.scaling = scaling
        self.cutout_size = int(cutout_size)
        self.in_channels = int(net.architecture["in_channels"])

    @torch.jit.export
    def logits(self, cutouts: torch.Tensor, raw_features: torch.Tensor) -> torch.Tensor:
        if cutouts.dim() != 4 or cutouts.size(1) != self.in_channels:
            raise ValueError(
                "cutouts must have shape (N, "
                + str(self.in_channels)
                + ", S, S), got "
                + str(cutouts.shape)
            )
        if cutouts.size(2) != self.cutout_size or cutouts.size(3) != self.cutout_size:
            raise ValueError(
                "cutouts must be "
                + str(self.cutout_size)
                + " x "
                + str(self.cutout_size)
                + " pixels, got "
                + str(cutouts.shape)
            )
        if raw_features.size(0) != cutouts.size(0):
            raise ValueError("cutouts and raw_features must have the same number of rows")
        scaled = self.scaling(raw_features).to(cutouts.dtype)
        return self.net(cutouts, scaled).squeeze(1)

    def forward(self, cutouts: torch.Tensor, raw_features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(cutouts, raw_features))


def build_model(config: TrainConfig, scaler: FeatureScaler, in_channels: int = 5) -> ScoredModel:
    """Build an untrained :class:`ScoredModel` with the architecture in ``config``."""
    net = RealBogusNet(
        in_channels=in_channels,
        n_features=scaler.n_outputs,
        conv_channels=config.conv_channels,
        feature_hidden=config.feature_hidden,
        head_hidden=config.head_hidden,
        dropout=config.dropout,
    )
    return ScoredModel(net, scaler.as_module(), config.cutout_size)


@dataclasses.dataclass
class TrainResult:
    """Outcome of :func:`train_model`.

    Attributes
    ----------
    model : ScoredModel
        Weights of the best validation epoch, on the CPU, in eval mode.
    scaler : FeatureScaler
        Fitted on the training split.
    history : tuple of dict
        Per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val_auc``, ``seconds``.
    best_epoch : int
    best_val_auc : float
    device : str
        Device the model was trained on.
    num_workers : int
        DataLoader worker processes used.
    samples_per_second : float
        Training throughput (forward + backward, data loading included; validation excluded).
    stopped_reason : str
        ``"epochs"``, ``"early_stopping"`` or ``"time_limit"``.
    config : TrainConfig
    n_train, n_validation : int
        Candidates used (inside their image).
    n_outside_image : dict of str to int
        Candidates of each split left out because their pixel lies outside the image.
    """

    model: ScoredModel
    scaler: FeatureScaler
    history: tuple[dict[str, float], ...]
    best_epoch: int
    best_val_auc: float
    device: str
    num_workers: int
    samples_per_second: float
    stopped_reason: str
    config: TrainConfig
    n_train: int
    n_validation: int
    n_outside_image: Mapping[str, int]


def resolve_device(name: str) -> torch.device:
    """Map ``"auto"``/``"cpu"``/``"cuda"`` to a torch device; ``"cuda"`` must be available."""
    if name not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {name!r}.")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but no CUDA device is available; use 'auto'.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def loader_workers(config: TrainConfig, device: torch.device) -> int:
    """DataLoader worker processes for ``config`` on ``device`` (see ``TrainConfig``)."""
    if config.num_workers is not None:
        return config.num_workers
    if device.type != "cuda":
        return 0
    # The cores this process may run on where the platform says (Linux), else all of them.
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    return min(8, max(1, cores - 1))


@contextlib.contextmanager
def _reproducible(device: torch.device, seed: int) -> Iterator[None]:
    """Seed torch and choose deterministic algorithms; restore the global state afterwards.

    On the CPU, ``torch.use_deterministic_algorithms``. On CUDA it would also demand a cuBLAS
    workspace setting that must be in the environment before CUDA starts, so only cuDNN is made
    deterministic there: without it, float32 convolution gradients differ between runs. Since
    ``torch.manual_seed`` also seeds every CUDA device, the training device's generator is
    forked too: the caller's random stream on that device is left as it was.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    previous_cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    cuda_devices = []
    if device.type == "cuda":
        cuda_devices = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        else:
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous_cudnn


def _validation_logits(
    model: ScoredModel, loader: DataLoader, device: torch.device, autocast: bool
) -> torch.Tensor:
    model.eval()
    outputs = []
    with torch.inference_mode():
        for cutouts, features, _ in loader:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                logits = model.logits(cutouts.to(device), features.to(device))
            outputs.append(logits.float().cpu())
    return torch.cat(outputs)


def _require_evaluable_test_split(index_df: pd.DataFrame) -> None:
    """Refuse, before any training, a test split that evaluation could not score.

    Evaluation needs real and bogus candidates inside their images; the test split's images are
    not read here (training never touches them), so ``in_image`` of the index tells which
    candidates evaluation will keep, where the index has it.
    """
    test = split_rows(index_df, "test")
    if "in_image" in test.columns:
        test = test[test["in_image"].astype(bool).to_numpy()]
    require_both_classes(test["label"].to_numpy(), "test")


def train_model(
    index_df: pd.DataFrame,
    dataset_dir: str | os.PathLike[str],
    config: TrainConfig | None = None,
) -> TrainResult:
    """Train the real/bogus CNN on the ``train`` split, early-stopping on ``validation``.

    Parameters
    ----------
    index_df : pandas.DataFrame
        The master index (``split`` and ``label`` columns required); not modified. The
        ``test`` split is not trained on and its images are not read, but it must hold real
        and bogus candidates (inside their images, by ``in_image`` where the index has it),
        so that a model that could not be evaluated is not trained first. Candidates whose
        pixel lies outside their image are left out and counted
        (``TrainResult.n_outside_image``).
    dataset_dir : path-like
        Directory holding the job tensors referenced by ``image_filename``.
    config : TrainConfig, optional

    Returns
    -------
    TrainResult

    Raises
    ------
    SplitError
        If jobs leak across splits, or a split (train, validation or test) lacks real or bogus
        candidates.
    MissingFeatureError
        If features are NaN/inf under ``nan_policy="error"``.
    FloatingPointError
        If the loss becomes non-finite (lower ``learning_rate``).
    """
    config = config or TrainConfig()
    validate_splits(index_df)
    train, train_outside = drop_outside_image(split_rows(index_df, "train"), dataset_dir)
    validation, validation_outside = drop_outside_image(
        split_rows(index_df, "validation"), dataset_dir
    )
    train_labels = require_both_classes(train["label"].to_numpy(), "train")
    val_labels = require_both_classes(validation["label"].to_numpy(), "validation")
    _require_evaluable_test_split(index_df)
    scaler = FeatureScaler.fit(
        train, FeatureScalingConfig(clip=config.feature_clip, nan_policy=config.nan_policy)
    )
    scaler.transform(validation)
    device = resolve_device(config.device)
    autocast = device.type == "cuda" and config.mixed_precision
    workers = loader_workers(config, device)

    train_set = CutoutDataset(
        train,
        dataset_dir,
        cutout_size=config.cutout_size,
        augment=config.augment,
        seed=config.seed,
    )
    val_set = CutoutDataset(validation, dataset_dir, cutout_size=config.cutout_size)
    in_channels = int(train_set[0][0].shape[0])
    n_real = int(train_labels.sum())
    val_real = int(val_labels.sum())
    pos_weight = (len(train_labels) - n_real) / n_real if config.balance_classes else 1.0

    with _reproducible(device, config.seed):
        model = build_model(config, scaler, in_channels).to(device)
        loader_options = {
            "batch_size": config.batch_size,
            "num_workers": workers,
            "pin_memory": device.type == "cuda",
        }
        train_loader = DataLoader(
            train_set,
            shuffle=True,
            generator=torch.Generator().manual_seed(config.seed),
            **loader_options,
        )
        val_loader = DataLoader(val_set, shuffle=False, **loader_options)
        loss_fn = nn.BCEWithLogitsLoss(
            pos_weight=torch.tensor(pos_weight, dtype=torch.float32, device=device)
        )
        val_targets = torch.from_numpy(val_labels.astype(np.float32))
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )

        history: list[dict[str, float]] = []
        best_state = copy.deepcopy(model.state_dict())
        best_auc, best_loss, best_epoch, epochs_since_best = -math.inf, math.inf, 0, 0
        stopped_reason = "epochs"
        started = time.perf_counter()
        train_seconds, samples_seen = 0.0, 0
        for epoch in range(1, config.epochs + 1):
            epoch_started = time.perf_counter()
            train_set.set_epoch(epoch)
            model.train()
            loss_sum, epoch_samples, out_of_time = 0.0, 0, False
            for cutouts, features, labels in train_loader:
                cutouts = cutouts.to(device, non_blocking=True)
                features = features.to(device, non_blocking=True)
                labels = labels.to(device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    logits = model.logits(cutouts, features)
                loss = loss_fn(logits.float(), labels)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"Training loss became non-finite in epoch {epoch}; lower "
                        f"learning_rate (now {config.learning_rate}) or check the inputs."
                    )
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.detach()) * len(labels)
                epoch_samples += len(labels)
                if (
                    config.time_limit_s is not None
                    and time.perf_counter() - started > config.time_limit_s
                ):
                    out_of_time = True
                    break
            train_seconds += time.perf_counter() - epoch_started
            samples_seen += epoch_samples

            val_logits = _validation_logits(model, val_loader, device, autocast)
            val_loss = float(loss_fn(val_logits.to(device), val_targets.to(device)))
            val_auc = roc_auc(val_labels, val_logits.numpy(), "validation")
            history.append(
                {
                    "epoch": epoch,
                    "train_loss": loss_sum / max(epoch_samples, 1),
                    "val_loss": val_loss,
                    "val_auc": val_auc,
                    "seconds": time.perf_counter() - epoch_started,
                }
            )
            # AUC differences within the estimate's standard error are noise on a small
            # validation split (and AUC saturates on easy ones): there the lower loss wins.
            tolerance = (
                auc_standard_error(best_auc, val_real, len(val_labels) - val_real)
                if math.isfinite(best_auc)
                else 0.0
            )
            if val_auc > best_auc + tolerance or (
                val_auc >= best_auc - tolerance and val_loss < best_loss
            ):
                best_auc, best_loss, best_epoch, epochs_since_best = val_auc, val_loss, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                epochs_since_best += 1
            if out_of_time:
                stopped_reason = "time_limit"
                break
            if epochs_since_best >= config.patience:
                stopped_reason = "early_stopping"
                break

    model.load_state_dict(best_state)
    model = model.to("cpu").eval()
    return TrainResult(
        model=model,
        scaler=scaler,
        history=tuple(history),
        best_epoch=best_epoch,
        best_val_auc=float(best_auc),
        device=str(device),
        num_workers=workers,
        samples_per_second=samples_seen / train_seconds if train_seconds > 0 else 0.0,
        stopped_reason=stopped_reason,
        config=config,
        n_train=len(train),
        n_validation=len(validation),
        n_outside_image={"train": train_outside, "validation": validation_outside},
    )


@contextlib.contextmanager
def _torchscript_api() -> Iterator[None]:
    """Silence only the deprecation notice of ``torch.jit.script``/``load``.

    TorchScript is the contract format of ``model.pt`` (self-contained, loadable from Python
    and C++ without this package); recent torch releases mark its Python entry points deprecated
    while keeping them working on the Python versions this project supports.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning
        )
        yield


def script_model(model: nn.Module) -> torch.jit.ScriptModule:
    """Compile ``model`` (e.g. a :class:`ScoredModel`) to TorchScript."""
    with _torchscript_api():
        return torch.jit.script(model)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def model_config(result: TrainResult) -> dict[str, Any]:
    """The ``config.json`` content for ``result`` (without file checksums)."""
    return {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "architecture": dict(result.model.net.architecture)
        | {"cutout_size": result.model.cutout_size},
        "feature_columns": list(result.scaler.columns),
        "feature_scaler": result.scaler.to_dict(),
        "train_config": result.config.to_dict(),
        "training": {
            "best_epoch": result.best_epoch,
            "best_val_auc": result.best_val_auc,
            "device": result.device,
            "samples_per_second": result.samples_per_second,
            "stopped_reason": result.stopped_reason,
            "n_train": result.n_train,
            "n_validation": result.n_validation,
            "n_outside_image": dict(result.n_outside_image),
            "history": list(result.history),
        },
        "torch_version": torch.__version__,
        "input": {
            "cutouts": "float32 (N, C+1, S, S): job tensor channels then validity (1 inside "
            "the image, 0 padding), candidate pixel floor(x+0.5), floor(y+0.5) at [S//2, S//2]",
            "raw_features": "float32 (N, F) in the order of feature_columns, unscaled",
            "output": "probability of being real, (N,)",
        },
    }


def export_model(
    result: TrainResult,
    out_dir: str | os.PathLike[str],
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write ``model.pt`` (TorchScript), ``state_dict.pt`` and ``config.json`` to ``out_dir``.

    Everything is written to a staging directory beside ``out_dir`` and swapped in by two
    renames, so an export that fails leaves the previous model untouched; only a crash between
    the two renames (microseconds) can leave ``out_dir`` missing, with the previous model kept
    in a hidden ``.<name>.previous-*`` sibling.

    Parameters
    ----------
    result : TrainResult
    out_dir : path-like
        The model directory (e.g. ``data/models/cnn_model``); replaced as a whole.
    extra_files : mapping of str to bytes, optional
        More files (e.g. ``metrics.json``, plots) to publish in the same swap; plain names only.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    extra_files = dict(extra_files or {})
    reserved = {MODEL_FILE, STATE_DICT_FILE, CONFIG_FILE}
    for name in extra_files:
        if Path(name).name != name or name in {"", ".", ".."} or name in reserved:
            raise ValueError(
                f"Extra file name {name!r} must be a plain file name other than {sorted(reserved)}."
            )
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} exists and is not a directory; choose another model path.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    try:
        model = copy.deepcopy(result.model).to("cpu").eval()
        script_model(model).save(str(staging / MODEL_FILE))
        torch.save(model.state_dict(), staging / STATE_DICT_FILE)
        for name, data in extra_files.items():
            (staging / name).write_bytes(data)
        config = model_config(result)
        config["sha256"] = {
            name: _sha256(staging / name)
            for name in (MODEL_FILE, STATE_DICT_FILE, *sorted(extra_files))
        }
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
        for path in staging.iterdir():
            _fsync(path)
        _swap_directory(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _swap_directory(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target``, replacing an existing ``target`` directory."""
    if not target.exists():
        os.rename(staging, target)
        return
    previous = target.parent / f".{target.name}.previous-{uuid.uuid4().hex}"
    os.rename(target, previous)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(previous, target)
        raise
    shutil.rmtree(previous)


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model read by :func:`load_model`.

    Attributes
    ----------
    model : torch.nn.Module
        TorchScript module (or eager :class:`ScoredModel` with ``eager=True``):
        (cutouts, raw_features) -> probabilities, on the CPU, in eval mode.
    config : dict
        The parsed ``config.json``.
    scaler : FeatureScaler
    """

    model: torch.nn.Module
    config: Mapping[str, Any]
    scaler: FeatureScaler

    @property
    def cutout_size(self) -> int:
        return int(self.config["architecture"]["cutout_size"])


def load_model(model_dir: str | os.PathLike[str], *, eager: bool = False) -> LoadedModel:
    """Read a model directory written by :func:`export_model`.

    Parameters
    ----------
    model_dir : path-like
    eager : bool
        Rebuild an eager :class:`ScoredModel` from ``state_dict.pt`` (for fine-tuning) instead
        of loading the TorchScript file.

    Raises
    ------
    FileNotFoundError
        If the directory or one of its files is missing.
    IncompatibleModelError
        If ``config.json`` names another format or format version, or a checksum differs.
    """
    model_dir = Path(model_dir)
    config_path = model_dir / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(
            f"No {CONFIG_FILE} in {model_dir}; point to a directory written by export_model "
            "(e.g. data/models/cnn_model)."
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise IncompatibleModelError(f"{config_path} is not valid JSON: {error}") from error
    if not isinstance(config, dict) or config.get("format") != MODEL_FORMAT:
        raise IncompatibleModelError(
            f"{config_path} does not describe a {MODEL_FORMAT!r} model; it was not written by "
            "astro_assets' export_model."
        )
    if config.get("format_version") != MODEL_FORMAT_VERSION:
        raise IncompatibleModelError(
            f"Model in {model_dir} has format version {config.get('format_version')!r}; this "
            f"version of astro_assets reads version {MODEL_FORMAT_VERSION}. Retrain and export "
            "the model with this version (materialize cnn_model)."
        )
    if list(config.get("feature_columns", [])) != list(FEATURE_COLUMNS):
        raise IncompatibleModelError(
            f"Model in {model_dir} uses features {config.get('feature_columns')}, expected "
            f"{list(FEATURE_COLUMNS)}; retrain it with this version of astro_assets."
        )
    scaler = FeatureScaler.from_dict(config["feature_scaler"])
    file_name = STATE_DICT_FILE if eager else MODEL_FILE
    path = model_dir / file_name
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; re-export the model.")
    expected = config.get("sha256", {}).get(file_name)
    if expected != _sha256(path):
        raise IncompatibleModelError(
            f"{path} does not match the checksum recorded in {CONFIG_FILE}; the model directory "
            "was modified or is incomplete. Re-export the model."
        )
    if eager:
        train_config = TrainConfig.from_dict(config["train_config"])
        model = build_model(train_config, scaler, int(config["architecture"]["in_channels"]))
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        with _torchscript_api():
            model = torch.jit.load(str(path), map_location="cpu")
    model.eval()
    return LoadedModel(model=model, config=config, scaler=scaler)
