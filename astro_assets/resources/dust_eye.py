"""Which image model acts as the dust eye: classical, Gemini, or Gemini when a key is set."""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from pydantic import Field

from astro_assets.resources.classical import ClassicalImageModel
from astro_assets.resources.gemini import GeminiImageModel
from astro_assets.resources.image_model import DustBackend, ImageModel

BACKEND_ENV = "ASTRO_ASSETS_DUST_BACKEND"


@dataclass(frozen=True)
class BackendChoice:
    """The model to use and why, recorded in asset metadata."""

    model: ImageModel
    requested: str
    reason: str


class DustEye(dg.ConfigurableResource):
    """Chooses the image model for ``dust_mask`` and ``inpainted``.

    ``backend`` is ``classical``, ``gemini`` or ``auto`` (Gemini when an API key is configured,
    else classical); a run's config may override it per asset. Choosing ``gemini`` explicitly
    never falls back: a failing API fails the step.
    """

    backend: str = Field(
        default=DustBackend.AUTO.value,
        description=f"classical, gemini or auto (${BACKEND_ENV}; default auto)",
    )
    gemini: GeminiImageModel

    def choose(
        self,
        requested: str | None,
        classical: ClassicalImageModel,
        *,
        cache_dir: Path,
        attempt: int | None = None,
    ) -> BackendChoice:
        """The model for ``requested`` (or this resource's ``backend`` when None).

        Parameters
        ----------
        requested : str or None
            A run's override of ``backend``.
        classical : ClassicalImageModel
            The offline model with the run's parameters.
        cache_dir : Path
            Where Gemini answers are cached (under the data root).
        attempt : int, optional
            Gemini re-roll number; None keeps the resource's.
        """
        name = (requested or self.backend).strip().lower()
        try:
            backend = DustBackend(name)
        except ValueError:
            raise ValueError(
                f"unknown dust backend {name!r}: use one of "
                f"{', '.join(b.value for b in DustBackend)} (config 'backend' or ${BACKEND_ENV})"
            ) from None
        has_key = self.gemini.has_api_key()
        if backend is DustBackend.CLASSICAL or (backend is DustBackend.AUTO and not has_key):
            reason = (
                "requested explicitly"
                if backend is DustBackend.CLASSICAL
                else "auto: no Gemini API key configured"
            )
            return BackendChoice(model=classical, requested=backend.value, reason=reason)
        if not has_key:
            raise ValueError(
                "backend 'gemini' was requested but no API key is configured: set GEMINI_API_KEY "
                "(environment or ./.env), or choose backend 'classical'"
            )
        update: dict[str, object] = {"cache_dir": str(cache_dir)}
        if attempt is not None:
            update["attempt"] = attempt
        reason = "requested explicitly" if backend is DustBackend.GEMINI else "auto: API key found"
        return BackendChoice(
            model=self.gemini.model_copy(update=update), requested=backend.value, reason=reason
        )
