"""Which image model acts as the dust eye: classical, Gemini, or Gemini when a key is set."""

from dataclasses import dataclass

import dagster as dg

from astro_assets.resources.classical import ClassicalImageModel
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
    else classical); a run's config may override it per asset.
    """

    backend: str = DustBackend.AUTO.value

    def choose(self, requested: str | None, classical: ClassicalImageModel) -> BackendChoice:
        """The model for ``requested`` (or this resource's ``backend`` when None)."""
        name = (requested or self.backend).strip().lower()
        try:
            backend = DustBackend(name)
        except ValueError as error:
            raise ValueError(
                f"unknown dust backend {name!r}: use one of "
                f"{', '.join(b.value for b in DustBackend)} (config 'backend' or ${BACKEND_ENV})"
            ) from error
        if backend is DustBackend.GEMINI:
            raise NotImplementedError(
                "the gemini dust backend is not available in this build: use backend 'classical'"
            )
        reason = (
            "auto: no Gemini API key configured"
            if backend is DustBackend.AUTO
            else "requested explicitly"
        )
        return BackendChoice(model=classical, requested=backend.value, reason=reason)
