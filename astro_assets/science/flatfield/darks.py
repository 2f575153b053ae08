"""A master dark and how it compares with the video it is meant to calibrate.

A dark video is taken with the telescope capped and the camera's settings of the light video
(gain, offset, exposure, temperature). Its temporal median, the master dark ``D``, is the
black level pixel by pixel: the offset, the hot pixels and the amplifier's glow. Its structure
above its pedestal (hot pixels, glow) is subtracted from every frame before anything else
looks at them (:class:`DarkSubtractedFrames`; the temporal median commutes with it), so that
hot pixels, which stay on the sensor, never reach the dust detector, the frames' registration
or the dust-free prediction. The frames keep a uniform pedestal, a measured black level, so
that they stay positive where there is no light.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

__all__ = ["DarkSubtractedFrames", "DarkSummary", "summarize_dark"]

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
        return dataclasses.asdict(self)


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


class DarkSubtractedFrames:
    """The frames of a video less a dark, each computed when asked for.

    Parameters
    ----------
    frames : sequence of np.ndarray
        (n, H, W) or (n, H, W, 3) raw frames (for example the lazy ``SerVideo.frames``).
    dark : np.ndarray
        What to subtract, of one frame's shape, ADU: a master dark, or its structure above its
        pedestal.

    Notes
    -----
    ``frames[i]`` is a :class:`DarkSubtractedFrame`, which reads only the window it is sliced
    with; ``np.asarray(frames[i])`` is the whole float32 frame less the dark.
    """

    def __init__(self, frames, dark: np.ndarray) -> None:
        self._frames = frames
        self._dark = np.asarray(dark, dtype=np.float32)
        if tuple(frames.shape[1:]) != self._dark.shape:
            raise ValueError(
                f"the dark has shape {self._dark.shape}, the frames {tuple(frames.shape[1:])}."
            )
        self.shape = tuple(frames.shape)

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> DarkSubtractedFrame:
        return DarkSubtractedFrame(self._frames[index], self._dark)


class DarkSubtractedFrame:
    """One raw frame less a dark, computed for the window it is sliced with."""

    def __init__(self, frame: np.ndarray, dark: np.ndarray) -> None:
        self._frame = frame
        self._dark = dark
        self.shape = dark.shape
        self.ndim = dark.ndim
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, window) -> np.ndarray:
        return np.asarray(self._frame[window], dtype=np.float32) - self._dark[window]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[(slice(None),) * self.ndim]
        return whole if dtype is None else whole.astype(dtype)
