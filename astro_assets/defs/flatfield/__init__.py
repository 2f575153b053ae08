"""Dust flat fields for solar and planetary video, one partition per SER file."""

import dagster as dg

from astro_assets.defs.flatfield.assets import (
    calibrated_video,
    dust_mask,
    final_flatfield,
    inpainted,
    matched_inpaint,
    ser_median,
)
from astro_assets.defs.flatfield.automation import flatfield_staleness_sensor
from astro_assets.defs.flatfield.checks import flatfield_checks
from astro_assets.defs.flatfield.jobs import flatfield_job
from astro_assets.defs.flatfield.sensors import paired_darks_sensor, ser_files_sensor

defs = dg.Definitions(
    assets=[ser_median, dust_mask, inpainted, matched_inpaint, final_flatfield, calibrated_video],
    asset_checks=flatfield_checks,
    jobs=[flatfield_job],
    sensors=[ser_files_sensor, paired_darks_sensor, flatfield_staleness_sensor],
)
