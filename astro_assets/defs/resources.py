"""The one place where environment variables and paths are bound to resources."""

from __future__ import annotations

import os

import dagster as dg

from astro_assets.io.paths import DATA_ROOT_ENV
from astro_assets.resources.storage import DataStore


def data_store() -> DataStore:
    """The data root: ``$ASTRO_ASSETS_DATA`` when set, else ``./data``."""
    if os.environ.get(DATA_ROOT_ENV):
        return DataStore(root=dg.EnvVar(DATA_ROOT_ENV))
    return DataStore()


def resources() -> dict[str, object]:
    """Every resource the code location binds, by key."""
    return {"data_store": data_store()}


defs = dg.Definitions(resources=resources())
