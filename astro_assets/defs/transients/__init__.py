"""The AI-ready transient dataset, one job_tensors partition per job folder."""

import dagster as dg

from astro_assets.defs.transients.assets import croissant_metadata, job_tensors, master_index
from astro_assets.defs.transients.checks import transients_checks
from astro_assets.defs.transients.jobs import dataset_job, job_tensors_job
from astro_assets.defs.transients.model import (
    cnn_model,
    cnn_model_auc_above_threshold,
    cnn_model_beats_baseline,
    cnn_model_job,
    cnn_model_weekly,
)
from astro_assets.defs.transients.schedules import dataset_nightly
from astro_assets.defs.transients.sensors import jids_sensor

defs = dg.Definitions(
    assets=[job_tensors, master_index, croissant_metadata, cnn_model],
    asset_checks=[*transients_checks, cnn_model_beats_baseline, cnn_model_auc_above_threshold],
    jobs=[job_tensors_job, dataset_job, cnn_model_job],
    sensors=[jids_sensor],
    schedules=[dataset_nightly, cnn_model_weekly],
)
