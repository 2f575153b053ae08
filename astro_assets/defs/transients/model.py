"""The real/bogus CNN: trained on the dataset as its Croissant description presents it."""

import json
from typing import TYPE_CHECKING

import dagster as dg
import pydantic

from astro_assets.defs.params import config_class, params_from_config
from astro_assets.defs.previews import path_value
from astro_assets.defs.transients.assets import CROISSANT_FILE, croissant_metadata
from astro_assets.io.images import thumbnail_markdown
from astro_assets.resources.storage import DataStore
from astro_assets.science.transients.training_params import TrainConfig

if TYPE_CHECKING:
    # pandas takes 0.3 s to import, and every step process loads the code location: the
    # steps that use it import it.
    import pandas as pd

MODEL_DIR = "cnn_model"
METRICS_FILE = "metrics.json"

CnnModelConfig = config_class(
    TrainConfig, name="CnnModelConfig", doc="Training of the real/bogus CNN."
)


def _png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    from io import BytesIO

    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(BytesIO(png)).convert("RGB"))
    return dg.MetadataValue.md(thumbnail_markdown(image, max_size=360, alt=alt))


def load_training_table(croissant_path) -> "pd.DataFrame":
    """The candidates as the Croissant file describes them, typed for training."""
    from astro_assets.science.transients.croissant import read_candidates

    table = read_candidates(croissant_path)
    table["label"] = table["label"].astype(int)
    if table["in_image"].dtype != bool:
        table["in_image"] = table["in_image"].astype(str).str.lower().isin({"true", "1"})
    return table


@dg.asset(
    group_name="transients",
    deps=[croissant_metadata],
    code_version="1",
    kinds={"pytorch"},
)
def cnn_model(
    context: dg.AssetExecutionContext, config: CnnModelConfig, data_store: DataStore
) -> dg.MaterializeResult:
    """A two-branch CNN (64x64 cutouts + tabular features) scoring candidates real or bogus.

    The table is read through ``croissant.json`` with mlcroissant; cutouts come from the
    memory-mapped tensors. Evaluated on the test split (jobs never seen in training) against a
    logistic baseline on the same features. ``data/models/cnn_model/`` holds ``model.pt``
    (TorchScript, feature scaling included), ``state_dict.pt``, ``config.json``,
    ``metrics.json`` and the plots; it is replaced as a whole only when everything is written.
    """
    # torch (and mlcroissant, which imports it) load here, not with the code location: every
    # step process imports the code location, and most steps never train.
    from astro_assets.science.transients.cnn import export_model, train_model
    from astro_assets.science.transients.evaluation import evaluate_model

    dataset = data_store.layout.dataset_dir
    table = load_training_table(dataset / CROISSANT_FILE)
    train_config = params_from_config(config, TrainConfig)
    result = train_model(table, dataset, train_config)
    report = evaluate_model(result.model, result.scaler, table, dataset, history=result.history)
    evaluated = report.to_dict()
    # One count per split: the report has the split it evaluated, training the others.
    outside = {**result.n_outside_image, **evaluated.pop("n_outside_image")}
    metrics = {
        **evaluated,
        "n_outside_image": outside,
        "best_epoch": result.best_epoch,
        "best_validation_auc": result.best_val_auc,
        "stopped": result.stopped_reason,
        "device": result.device,
        "loader_workers": result.num_workers,
        "train_samples_per_second": result.samples_per_second,
        "n_train": result.n_train,
        "n_validation": result.n_validation,
    }
    extra = {METRICS_FILE: json.dumps(metrics, indent=2, default=float).encode("utf-8")}
    extra.update({f"{name}.png": png for name, png in report.plots.items()})
    target = export_model(result, data_store.layout.models_dir / MODEL_DIR, extra_files=extra)
    cnn, baseline = report.cnn, report.baseline
    context.log.info(
        f"test ROC-AUC {cnn.roc_auc:.3f} (baseline {baseline.roc_auc:.3f}) on {cnn.n} candidates"
    )
    return dg.MaterializeResult(
        metadata={
            "test_roc_auc": cnn.roc_auc,
            "test_roc_auc_standard_error": cnn.roc_auc_standard_error,
            "test_pr_auc": cnn.pr_auc,
            "test_accuracy": cnn.accuracy,
            "test_fpr_at_0.5": cnn.fpr,
            "test_fnr_at_0.5": cnn.fnr,
            "test_fnr_at_1pct_fpr": cnn.fnr_at_target_fpr,
            "test_ece": cnn.ece,
            "test_candidates": cnn.n,
            "test_real": cnn.n_real,
            "baseline_roc_auc": baseline.roc_auc,
            "baseline_pr_auc": baseline.pr_auc,
            "baseline_accuracy": baseline.accuracy,
            "best_epoch": result.best_epoch,
            "stopped": result.stopped_reason,
            "device": result.device,
            "train_samples_per_second": result.samples_per_second,
            "metrics": dg.MetadataValue.json(json.loads(extra[METRICS_FILE])),
            "path": path_value(target),
            **{
                f"plot_{name}": _png_markdown(png, alt=name.replace("_", " "))
                for name, png in report.plots.items()
            },
        }
    )


def _metrics(data_store: DataStore) -> dict:
    path = data_store.layout.models_dir / MODEL_DIR / METRICS_FILE
    return json.loads(path.read_text())


@dg.asset_check(
    asset=cnn_model,
    description="On the test split the CNN's ROC-AUC is at least the tabular baseline's.",
)
def cnn_model_beats_baseline(data_store: DataStore) -> dg.AssetCheckResult:
    metrics = _metrics(data_store)
    cnn, baseline = metrics["cnn"]["roc_auc"], metrics["tabular_baseline"]["roc_auc"]
    comparison = "below" if cnn < baseline else "at least"
    return dg.AssetCheckResult(
        passed=cnn >= baseline,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"the CNN's test ROC-AUC {cnn:.4f} is {comparison} the tabular "
        f"baseline's {baseline:.4f} (a logistic regression on the catalogue features alone)",
        metadata={"cnn_roc_auc": cnn, "baseline_roc_auc": baseline},
    )


class AucThresholdConfig(dg.Config):
    min_roc_auc: float = pydantic.Field(
        default=0.9, description="Warn when the CNN's test ROC-AUC is below this."
    )


@dg.asset_check(
    asset=cnn_model,
    description="The CNN's test ROC-AUC reaches min_roc_auc (a warning, not a gate).",
)
def cnn_model_auc_above_threshold(
    config: AucThresholdConfig, data_store: DataStore
) -> dg.AssetCheckResult:
    auc = _metrics(data_store)["cnn"]["roc_auc"]
    comparison = "below" if auc < config.min_roc_auc else "at least"
    return dg.AssetCheckResult(
        passed=auc >= config.min_roc_auc,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"the CNN's test ROC-AUC {auc:.4f} is {comparison} min_roc_auc "
        f"{config.min_roc_auc:g}",
        metadata={"cnn_roc_auc": auc, "min_roc_auc": config.min_roc_auc},
    )


cnn_model_job = dg.define_asset_job(
    name="cnn_model_job",
    selection=dg.AssetSelection.assets("cnn_model"),
    description="Retrains and evaluates the real/bogus CNN on the current dataset.",
)

cnn_model_weekly = dg.ScheduleDefinition(
    name="cnn_model_weekly",
    job=cnn_model_job,
    cron_schedule="0 3 * * 0",
    # Explicit: without it the daemon's local time applies, which moves with its host.
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Retrains the model every Sunday at 03:00 UTC (not on every new job).",
)
