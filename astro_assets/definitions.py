"""The code location: one Definitions object merged from each domain under ``defs/``."""

import dagster as dg

from astro_assets.defs import flatfield, resources, transients

defs = dg.Definitions.merge(resources.defs, flatfield.defs, transients.defs)
