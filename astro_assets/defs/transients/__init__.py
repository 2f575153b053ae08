"""The AI-ready transient dataset, one job_tensors partition per job folder."""

import dagster as dg

from astro_assets.defs.transients.assets import croissant_metadata, job_tensors, master_index
from astro_assets.defs.transients.checks import transients_checks
from astro_assets.defs.transients.jobs import dataset_job, job_tensors_job
from astro_assets.defs.transients.sensors import jids_sensor

defs = dg.Definitions(
    assets=[job_tensors, master_index, croissant_metadata],
    asset_checks=transients_checks,
    jobs=[job_tensors_job, dataset_job],
    sensors=[jids_sensor],
)
