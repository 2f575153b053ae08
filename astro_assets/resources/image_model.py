"""The dust "eye": an image model that locates dust shadows and infers the dust-free signal.

Two operations behind one seam, so that the classical detector (offline, default) and the Gemini
image model are interchangeable from the assets' point of view:

- ``locate_dust(median) -> DustMaskResult``: a binary core mask of dust shadows;
- ``inpaint(median, mask) -> InpaintResult``: the image with masked pixels replaced by an estimate
  of the dust-free signal.

The flat itself is always computed by deterministic math downstream (``science.flatfield``), so a
backend can only decide *where* the flat differs from 1.0 and what the reference signal is there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

import numpy as np


class DustBackend(StrEnum):
    """Which image model acts as the eye. ``auto`` means Gemini when a key is configured."""

    CLASSICAL = "classical"
    GEMINI = "gemini"
    AUTO = "auto"


@dataclass(frozen=True)
class DustMaskResult:
    """What a backend says about dust in a median image.

    Attributes
    ----------
    core : np.ndarray
        (H, W) bool, True on pixels shadowed by dust (before expansion and feathering).
    backend : str
        Name of the backend that produced it.
    details : dict
        JSON-serializable facts for asset metadata (regions, significance, parameters, warnings).
    """

    core: np.ndarray
    backend: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InpaintResult:
    """An inpainted image: (H, W) float32, equal to the median outside the mask."""

    image: np.ndarray
    backend: str
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ImageModel(Protocol):
    """The seam every dust backend implements."""

    @property
    def backend_name(self) -> str: ...

    def locate_dust(self, median: np.ndarray) -> DustMaskResult:
        """Return the binary dust core of a 2-D median image (float, any scale)."""
        ...

    def inpaint(self, median: np.ndarray, mask: np.ndarray) -> InpaintResult:
        """Replace pixels where ``mask > 0`` by an estimate of the dust-free signal."""
        ...
