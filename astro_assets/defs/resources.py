"""The one place where environment variables and paths are bound to resources."""

from __future__ import annotations

import os

import dagster as dg

from astro_assets.io.paths import DATA_ROOT_ENV
from astro_assets.resources.dust_eye import BACKEND_ENV, DustEye
from astro_assets.resources.storage import DataStore


def data_store() -> DataStore:
    """The data root: ``$ASTRO_ASSETS_DATA`` when set, else ``./data``."""
    if os.environ.get(DATA_ROOT_ENV):
        return DataStore(root=dg.EnvVar(DATA_ROOT_ENV))
    return DataStore()


def dust_eye() -> DustEye:
    """The dust backend: ``$ASTRO_ASSETS_DUST_BACKEND`` when set, else ``auto``."""
    if os.environ.get(BACKEND_ENV):
        return DustEye(backend=dg.EnvVar(BACKEND_ENV))
    return DustEye()


def resources() -> dict[str, object]:
    """Every resource the code location binds, by key."""
    return {"data_store": data_store(), "dust_eye": dust_eye()}


defs = dg.Definitions(resources=resources())
