"""Jobs of the flat-field graph."""

import dagster as dg

flatfield_job = dg.define_asset_job(
    name="flatfield_job",
    selection=dg.AssetSelection.groups("flatfield"),
    description="Materializes the whole flat-field graph for one SER video.",
)
