"""Dust flat fields for solar and planetary video, one partition per SER file."""

import dagster as dg

from astro_assets.defs.flatfield.assets import ser_median
from astro_assets.defs.flatfield.jobs import flatfield_job
from astro_assets.defs.flatfield.sensors import ser_files_sensor

defs = dg.Definitions(
    assets=[ser_median],
    jobs=[flatfield_job],
    sensors=[ser_files_sensor],
)
