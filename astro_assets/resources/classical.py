"""The classical dust eye: matched-filter detection and harmonic inpainting, fully offline."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from astro_assets.resources.image_model import DustMaskResult, InpaintResult
from astro_assets.science.flatfield.dust import DustDetectionParams, detect_dust
from astro_assets.science.flatfield.inpaint import InpaintParams, inpaint


@dataclass(frozen=True)
class ClassicalImageModel:
    """Implements :class:`~astro_assets.resources.image_model.ImageModel` without a network.

    It cannot tell a sunspot that stayed still from dust: the drift estimate in ``dust_mask``
    reports when the video moved too little for the median to separate them.
    """

    detection: DustDetectionParams = field(default_factory=DustDetectionParams)
    inpainting: InpaintParams = field(default_factory=InpaintParams)

    @property
    def backend_name(self) -> str:
        return "classical"

    def locate_dust(self, median: np.ndarray) -> DustMaskResult:
        detection = detect_dust(median, self.detection)
        regions = [dataclasses.asdict(region) for region in detection.regions]
        return DustMaskResult(
            core=detection.core,
            backend=self.backend_name,
            details={
                "regions": regions,
                "noise_sigma": float(detection.noise_sigma),
                "usable_fraction": float(detection.valid.mean()),
                "filter_radii_px": [float(r) for r in detection.radii_px],
                "parameters": dataclasses.asdict(self.detection),
            },
        )

    def inpaint(self, median: np.ndarray, mask: np.ndarray) -> InpaintResult:
        return InpaintResult(
            image=inpaint(median, mask, self.inpainting),
            backend=self.backend_name,
            details={"method": self.inpainting.method},
        )
