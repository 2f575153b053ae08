"""The code location: one Definitions object merged from each domain under ``defs/``."""

import dagster as dg

from astro_assets.defs import flatfield, resources, transients
from astro_assets.defs.executor import executor_from_env

defs = dg.Definitions.merge(
    resources.defs,
    flatfield.defs,
    transients.defs,
    dg.Definitions(executor=executor_from_env()),
)
