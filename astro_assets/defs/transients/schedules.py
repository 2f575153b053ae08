"""Scheduled reprocessing of the dataset."""

import dagster as dg

from astro_assets.defs.transients.jobs import dataset_job

dataset_nightly = dg.ScheduleDefinition(
    name="dataset_nightly",
    job=dataset_job,
    cron_schedule="0 2 * * *",
    # Explicit: without it the daemon's local time applies, which moves with its host.
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Rebuilds master_index and croissant.json from all jobs every night at 02:00 UTC.",
)
