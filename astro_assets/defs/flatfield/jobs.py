"""Jobs of the flat-field graph."""

import dagster as dg

from astro_assets.defs.flatfield.partitions import ser_files_partitions

flatfield_job = dg.define_asset_job(
    name="flatfield_job",
    selection=dg.AssetSelection.groups("flatfield"),
    partitions_def=ser_files_partitions,
    description="Materializes the whole flat-field graph for one SER video.",
)
