"""The one place where environment variables and paths are bound to resources.

A variable that is not set leaves its field at the default, so a fresh clone runs offline with
``./data`` and the classical dust backend.
"""

import os

import dagster as dg

from astro_assets.io.paths import DATA_ROOT_ENV
from astro_assets.resources.dust_eye import BACKEND_ENV, DustEye
from astro_assets.resources.gemini import GeminiImageModel
from astro_assets.resources.storage import DataStore

GEMINI_KEY_ENV = "GEMINI_API_KEY"
GEMINI_URL_ENV = "GEMINI_BASE_URL"


def _env_bound(field: str, variable: str) -> dict[str, dg.EnvVar]:
    """``{field: EnvVar(variable)}`` when the variable is set, else ``{}``."""
    return {field: dg.EnvVar(variable)} if os.environ.get(variable) else {}


def data_store() -> DataStore:
    """The data root: ``$ASTRO_ASSETS_DATA``, else ``./data``."""
    return DataStore(**_env_bound("root", DATA_ROOT_ENV))


def gemini() -> GeminiImageModel:
    """Gemini: key from ``$GEMINI_API_KEY`` (or ./.env), URL from ``$GEMINI_BASE_URL``."""
    return GeminiImageModel(
        **_env_bound("api_key", GEMINI_KEY_ENV), **_env_bound("base_url", GEMINI_URL_ENV)
    )


def dust_eye() -> DustEye:
    """The dust backend: ``$ASTRO_ASSETS_DUST_BACKEND``, else ``auto``."""
    return DustEye(gemini=gemini(), **_env_bound("backend", BACKEND_ENV))


def resources() -> dict[str, object]:
    """Every resource the code location binds, by key."""
    return {"data_store": data_store(), "dust_eye": dust_eye()}


defs = dg.Definitions(resources=resources())
