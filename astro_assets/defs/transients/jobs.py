"""Jobs of the transient graph."""

import dagster as dg

job_tensors_job = dg.define_asset_job(
    name="job_tensors_job",
    selection=dg.AssetSelection.assets("job_tensors"),
    description="Normalizes new job folders into tensors (one run for many jobs).",
)

dataset_job = dg.define_asset_job(
    name="dataset_job",
    selection=dg.AssetSelection.assets("master_index", "croissant_metadata"),
    description="Rebuilds the master index and its Croissant description from all jobs.",
)
