"""A master dark and how it compares with the video it is meant to calibrate.

A dark video is taken with the telescope capped and the camera's settings of the light video
(gain, offset, exposure, temperature). Its temporal median, the master dark ``D``, is the
black level pixel by pixel: the offset, the hot pixels and the amplifier's glow. The flat then
applies to ``frame - D`` (``flatfield.synthesize_flat`` with ``black_level_mode="dark"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DarkSummary", "summarize_dark"]

_MAD_TO_SIGMA = 1.4826
"""Standard deviation of a normal distribution over its median absolute deviation."""
HOT_PIXEL_SIGMAS = 10.0
"""A pixel of the master dark this many frame noises above its pedestal counts as hot."""
BELOW_DARK_SIGMAS = 5.0
"""A pixel of the light's median this many dark-frame noises below the dark counts as below it:
no light can take a pixel below its dark, so many of them mean a dark of other settings."""


@dataclass(frozen=True)
class DarkSummary:
    """What a master dark holds, and whether the light video's median sits above it.

    Attributes
    ----------
    pedestal : float
        The master dark's median, ADU: the black level of the pixels without a dark signal.
    frame_noise : float
        Robust standard deviation of one dark frame about the master dark, ADU (the read
        noise, at least 1 ADU).
    hot_fraction : float
        Share of the pixels whose dark is more than ``HOT_PIXEL_SIGMAS`` frame noises above the
        pedestal: hot pixels and glow, which a single black level would leave in the data.
    below_dark_fraction : float
        Share of the median's pixels more than ``BELOW_DARK_SIGMAS`` frame noises below the
        dark. Light only adds to the dark, so above about 1 % the dark was taken with another
        offset, gain or exposure than the video.
    """

    pedestal: float
    frame_noise: float
    hot_fraction: float
    below_dark_fraction: float

    def as_dict(self) -> dict[str, float]:
        """The summary as a JSON-serializable mapping."""
        return {
            "pedestal": self.pedestal,
            "frame_noise": self.frame_noise,
            "hot_fraction": self.hot_fraction,
            "below_dark_fraction": self.below_dark_fraction,
        }


def summarize_dark(
    master_dark: np.ndarray, dark_frame: np.ndarray, median: np.ndarray
) -> DarkSummary:
    """Summarize a master dark against one of its frames and the light video's median.

    Parameters
    ----------
    master_dark : np.ndarray
        (H, W) or (H, W, 3) temporal median of the dark video, ADU.
    dark_frame : np.ndarray
        One frame of the dark video, of the same shape, ADU: its spread about the master dark
        is the read noise.
    median : np.ndarray
        The light video's temporal median, of the same shape, ADU.

    Returns
    -------
    DarkSummary

    Raises
    ------
    ValueError
        When the shapes differ or an input is not finite.
    """
    dark = _finite("master_dark", master_dark)
    frame = _finite("dark_frame", dark_frame)
    light = _finite("median", median)
    if frame.shape != dark.shape or light.shape != dark.shape:
        raise ValueError(
            f"master_dark {dark.shape}, dark_frame {frame.shape} and median {light.shape} "
            "must have the same shape."
        )
    pedestal = float(np.median(dark))
    residual = frame - dark
    spread = _MAD_TO_SIGMA * float(np.median(np.abs(residual - np.median(residual))))
    noise = max(spread, 1.0)
    return DarkSummary(
        pedestal=pedestal,
        frame_noise=noise,
        hot_fraction=float(np.mean(dark > pedestal + HOT_PIXEL_SIGMAS * noise)),
        below_dark_fraction=float(np.mean(light < dark - BELOW_DARK_SIGMAS * noise)),
    )


def _finite(name: str, value: np.ndarray) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf.")
    return array
