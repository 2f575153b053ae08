"""Metadata helpers shared by the asset definitions: statistics and image previews for the UI."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np

from astro_assets.io.images import thumbnail_markdown, to_display_uint8


def image_statistics(image: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Robust summary statistics of the finite values of ``image``."""
    data = np.asarray(image, dtype=np.float64)
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return {f"{prefix}finite_fraction": 0.0}
    p01, p50, p99 = np.percentile(finite, [1, 50, 99])
    return {
        f"{prefix}min": float(finite.min()),
        f"{prefix}max": float(finite.max()),
        f"{prefix}mean": float(finite.mean()),
        f"{prefix}median": float(p50),
        f"{prefix}p01": float(p01),
        f"{prefix}p99": float(p99),
        f"{prefix}finite_fraction": float(finite.size / data.size),
    }


def luminance(image: np.ndarray) -> np.ndarray:
    """(H, W) view of an (H, W) or (H, W, C) image for previews: the channel mean."""
    data = np.asarray(image)
    return data.mean(axis=-1) if data.ndim == 3 else data


def preview(image: np.ndarray, *, alt: str, max_size: int = 256) -> dg.MetadataValue:
    """A small inline PNG (robust stretch) for the asset page."""
    return dg.MetadataValue.md(
        thumbnail_markdown(to_display_uint8(luminance(image)), max_size=max_size, alt=alt)
    )


def path_value(path: Path) -> dg.MetadataValue:
    return dg.MetadataValue.path(str(path))
