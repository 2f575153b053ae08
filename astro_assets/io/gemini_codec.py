"""Image exchange with an image model: encode a median for the request, decode the answer back.

The model receives a PNG and answers with an image of its own size and format. Three things are
easy to get wrong and are handled here:

- **Range.** The median is mapped to the PNG codes by a robust percentile stretch (0.1-99.9 % by
  default), never by the maximum: one hot pixel must not crush the range. The default PNG is
  16-bit grayscale, so quantization costs at most 1/65535 of the stretch; 8 bits is an option for
  payload size.
- **Geometry.** Answers come back at a fixed aspect ratio from a short list. The median is padded
  (by reflection, or by repeating the edge) to the supported ratio that needs the fewest extra
  pixels, exactly: the padded size is an integer multiple of the ratio. The answer is then mapped
  back to the median's pixel grid by undoing the padding and resampling in one step.
- **Alignment.** A generative model may move the picture. ``measure_alignment`` measures the
  subpixel shift of the answer against the median by phase correlation on clean areas and
  enforces a tolerance.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage
from skimage.registration import phase_cross_correlation

SUPPORTED_ASPECT_RATIOS: tuple[str, ...] = (
    "1:1",
    "2:3",
    "3:2",
    "3:4",
    "4:3",
    "4:5",
    "5:4",
    "9:16",
    "16:9",
    "21:9",
)

_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

# Rec. 601 luma weights, the ones Pillow uses for "RGB" -> "L"; applied in float to keep precision.
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


class CodecError(ValueError):
    """An image that cannot be encoded for the model, or a model answer that cannot be decoded."""


class AlignmentError(CodecError):
    """The model's answer is shifted against the median by more than the tolerance."""


@dataclass(frozen=True)
class EncodingParams:
    """How a median is turned into the request image.

    Attributes
    ----------
    bit_depth : int
        16 (grayscale PNG, least loss) or 8 (smaller payload).
    low_percentile, high_percentile : float
        Percentiles of the finite pixels mapped to code 0 and to the top code, in percent.
        Values outside are clipped. Robust against hot and dead pixels by construction.
    pad_mode : {"reflect", "edge"}
        How the padding to the aspect ratio is filled. Reflection continues the texture, so the
        model sees no artificial edge; "edge" repeats the border pixel.
    """

    bit_depth: int = 16
    low_percentile: float = 0.1
    high_percentile: float = 99.9
    pad_mode: Literal["reflect", "edge"] = "reflect"

    def __post_init__(self) -> None:
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth}")
        if not 0.0 <= self.low_percentile < self.high_percentile <= 100.0:
            raise ValueError(
                "percentiles must satisfy 0 <= low_percentile < high_percentile <= 100, got "
                f"{self.low_percentile} and {self.high_percentile}"
            )
        if self.pad_mode not in ("reflect", "edge"):
            raise ValueError(f"pad_mode must be 'reflect' or 'edge', got {self.pad_mode!r}")


@dataclass(frozen=True)
class EncodedImage:
    """A median encoded for the model, with everything needed to map the answer back.

    Attributes
    ----------
    png : bytes
        The request image (grayscale PNG).
    mime_type : str
        ``"image/png"``.
    bit_depth : int
        8 or 16.
    padding : tuple of int
        (top, bottom, left, right) pixels added around the median.
    aspect_ratio : str
        The supported ratio (width:height) the padded image has exactly, e.g. ``"4:3"``.
    stretch : tuple of float
        (lo, hi): median values mapped to code 0 and to the top code.
    source_shape : tuple of int
        (H, W) of the median.
    """

    png: bytes
    mime_type: str
    bit_depth: int
    padding: tuple[int, int, int, int]
    aspect_ratio: str
    stretch: tuple[float, float]
    source_shape: tuple[int, int]

    @property
    def padded_shape(self) -> tuple[int, int]:
        """(H, W) of the padded image that was sent."""
        top, bottom, left, right = self.padding
        return (self.source_shape[0] + top + bottom, self.source_shape[1] + left + right)

    @property
    def sha256(self) -> str:
        """Hex digest of the request image bytes (a cache key ingredient)."""
        return hashlib.sha256(self.png).hexdigest()

    def to_signal(self, stretched: np.ndarray) -> np.ndarray:
        """Map stretched values in [0, 1] back to the median's units (float32)."""
        lo, hi = self.stretch
        return (lo + np.asarray(stretched, dtype=np.float64) * (hi - lo)).astype(np.float32)

    def describe(self) -> dict[str, object]:
        """JSON-serializable summary for metadata (no image bytes)."""
        return {
            "mime_type": self.mime_type,
            "bit_depth": self.bit_depth,
            "padding_tblr": list(self.padding),
            "aspect_ratio": self.aspect_ratio,
            "stretch": [self.stretch[0], self.stretch[1]],
            "source_shape": list(self.source_shape),
            "padded_shape": list(self.padded_shape),
            "bytes": len(self.png),
        }


@dataclass(frozen=True)
class AlignmentParams:
    """Tolerance and method for ``measure_alignment``.

    Attributes
    ----------
    warn_px : float
        Shifts above this (Euclidean, pixels) are reported as a warning.
    fail_px : float
        Shifts above this raise ``AlignmentError``.
    upsample_factor : int
        Subpixel precision of the phase correlation is 1/upsample_factor pixel.
    highpass_sigma_px : float
        Gaussian scale removed before correlating, so vignetting and limb gradients do not
        dominate; features smaller than this drive the measurement.
    min_clean_fraction : float
        Below this fraction of clean pixels the shift is not measured (reported as such).
    """

    warn_px: float = 0.5
    fail_px: float = 1.0
    upsample_factor: int = 20
    highpass_sigma_px: float = 4.0
    min_clean_fraction: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 <= self.warn_px <= self.fail_px:
            raise ValueError(
                f"need 0 <= warn_px <= fail_px, got warn_px={self.warn_px}, fail_px={self.fail_px}"
            )
        if self.upsample_factor < 1:
            raise ValueError(f"upsample_factor must be >= 1, got {self.upsample_factor}")
        if self.highpass_sigma_px <= 0:
            raise ValueError(f"highpass_sigma_px must be > 0, got {self.highpass_sigma_px}")
        if not 0.0 < self.min_clean_fraction <= 1.0:
            raise ValueError(f"min_clean_fraction must be in (0, 1], got {self.min_clean_fraction}")


@dataclass(frozen=True)
class Alignment:
    """Measured displacement of a model answer relative to the median.

    Attributes
    ----------
    dy, dx : float
        Pixels the answer's content sits below / right of the median's (NaN if not measured).
    measured : bool
        False when there was too little clean area or structure to measure.
    warning : str or None
        Set when the shift is between ``warn_px`` and ``fail_px``, or when not measured.
    """

    dy: float
    dx: float
    measured: bool
    warning: str | None = None

    @property
    def shift_px(self) -> float:
        return float(math.hypot(self.dy, self.dx))

    def describe(self) -> dict[str, object]:
        return {
            "dy_px": None if not self.measured else round(self.dy, 3),
            "dx_px": None if not self.measured else round(self.dx, 3),
            "shift_px": None if not self.measured else round(self.shift_px, 3),
            "measured": self.measured,
            "warning": self.warning,
        }


def _ratio(name: str) -> tuple[int, int]:
    width, height = name.split(":")
    return int(width), int(height)


def choose_aspect_ratio(shape: tuple[int, int]) -> tuple[str, tuple[int, int]]:
    """The supported aspect ratio needing the least padding, and the padded (H, W).

    The padded size is exactly ``k * (ratio_w, ratio_h)`` for the smallest integer ``k`` that
    covers the image, so the sent image has the ratio exactly. Ties go to the earlier entry of
    ``SUPPORTED_ASPECT_RATIOS``.
    """
    height, width = shape
    best: tuple[int, str, tuple[int, int]] | None = None
    for name in SUPPORTED_ASPECT_RATIOS:
        ratio_w, ratio_h = _ratio(name)
        k = max(-(-width // ratio_w), -(-height // ratio_h))
        padded = (k * ratio_h, k * ratio_w)
        area = padded[0] * padded[1]
        if best is None or area < best[0]:
            best = (area, name, padded)
    assert best is not None
    return best[1], best[2]


def _validate_image(image: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 2:
        raise CodecError(
            f"{name} must be a 2-D (H, W) image, got shape {array.shape}; pass one channel"
        )
    if array.shape[0] < 2 or array.shape[1] < 2:
        raise CodecError(f"{name} must be at least 2x2 pixels, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise CodecError(f"{name} must be real-valued numbers, got dtype {array.dtype}")
    return array


def encode_for_model(median: np.ndarray, params: EncodingParams | None = None) -> EncodedImage:
    """Encode a median image as the request PNG for an image model.

    Parameters
    ----------
    median : np.ndarray
        (H, W) real image in any units; must be finite.
    params : EncodingParams, optional
        Bit depth, stretch percentiles and padding mode.

    Returns
    -------
    EncodedImage
        The PNG bytes and the geometry and stretch needed by ``decode_answer``.

    Raises
    ------
    CodecError
        If the image is not 2-D, contains NaN or infinity, or has no range inside the stretch
        percentiles (a constant image carries nothing for the model to look at).
    """
    params = params or EncodingParams()
    array = _validate_image(median, "median")
    values = array.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        raise CodecError(
            f"median has {int((~finite).sum())} non-finite pixels (NaN or inf); replace them "
            "(e.g. by the local median) before sending the image to the model"
        )
    lo, hi = (
        float(v) for v in np.percentile(values, [params.low_percentile, params.high_percentile])
    )
    if not hi > lo:
        lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        raise CodecError(
            f"median is constant ({lo!r}): there is no structure to send to the model; check "
            "that the video is not empty or saturated"
        )
    top_code = 65535 if params.bit_depth == 16 else 255
    stretched = np.clip((values - lo) / (hi - lo), 0.0, 1.0)
    codes = np.rint(stretched * top_code).astype(np.uint16 if params.bit_depth == 16 else np.uint8)

    aspect_ratio, (padded_h, padded_w) = choose_aspect_ratio(array.shape)
    height, width = array.shape
    top = (padded_h - height) // 2
    left = (padded_w - width) // 2
    padding = (top, padded_h - height - top, left, padded_w - width - left)
    padded = np.pad(
        codes, ((padding[0], padding[1]), (padding[2], padding[3])), mode=params.pad_mode
    )

    buffer = io.BytesIO()
    Image.fromarray(padded).save(buffer, format="PNG")
    return EncodedImage(
        png=buffer.getvalue(),
        mime_type="image/png",
        bit_depth=params.bit_depth,
        padding=padding,
        aspect_ratio=aspect_ratio,
        stretch=(lo, hi),
        source_shape=(height, width),
    )


def _luminance(image: Image.Image) -> np.ndarray:
    """Float64 luminance in [0, 1] of any Pillow image mode. Alpha is ignored."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        return np.clip(np.asarray(image, dtype=np.float64) / 65535.0, 0.0, 1.0)
    if mode == "F":
        return np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if mode in ("1", "L", "LA", "La"):
        return np.asarray(image.getchannel(0).convert("L"), dtype=np.float64) / 255.0
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    return rgb @ _LUMA_WEIGHTS


def decode_answer(
    data: bytes,
    encoded: EncodedImage,
    target_shape: tuple[int, int] | None = None,
    resample: Literal["nearest", "box", "bilinear", "bicubic", "lanczos"] = "bilinear",
) -> np.ndarray:
    """Decode a model's image answer onto the median's pixel grid.

    Any format Pillow reads (PNG, JPEG, WebP, ...) and any mode (L, LA, RGB, RGBA, P, I;16, ...)
    is accepted and converted to luminance in [0, 1]; 16-bit modes keep their precision, alpha is
    ignored, and for animated formats the first frame is used. The answer, whatever its size, is
    taken to cover the padded request image edge to edge (each axis scaled on its own); the part
    that corresponds to the unpadded median is cut out as a fractional box and resampled to
    ``target_shape`` in a single Pillow resampling step (convolution-based, so it is antialiased
    when shrinking). The default bilinear filter does not overshoot; "lanczos" keeps more detail
    but rings at sharp edges (the result is clipped to [0, 1]).

    Parameters
    ----------
    data : bytes
        The answer image file.
    encoded : EncodedImage
        The request this answers (its padding defines the geometry).
    target_shape : tuple of int, optional
        (H, W) of the result; defaults to ``encoded.source_shape``.
    resample : str
        Pillow resampling filter name.

    Returns
    -------
    np.ndarray
        (H, W) float32 in [0, 1], in the stretched units of the request (see
        ``EncodedImage.to_signal``).

    Raises
    ------
    CodecError
        If the bytes are not a readable image or the arguments are inconsistent.
    """
    if resample not in _RESAMPLING:
        raise CodecError(f"resample must be one of {sorted(_RESAMPLING)}, got {resample!r}")
    target_h, target_w = target_shape or encoded.source_shape
    if target_h < 1 or target_w < 1:
        raise CodecError(f"target_shape must be positive, got {(target_h, target_w)}")
    if not data:
        raise CodecError("the model's answer is empty (0 bytes); request it again")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.seek(0)
            image.load()
            luminance = _luminance(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CodecError(
            f"the model's answer ({len(data)} bytes) is not a readable image: {exc}; "
            "request it again"
        ) from None

    answer_h, answer_w = luminance.shape
    padded_h, padded_w = encoded.padded_shape
    top, _, left, _ = encoded.padding
    source_h, source_w = encoded.source_shape
    scale_y = answer_h / padded_h
    scale_x = answer_w / padded_w
    box = (
        left * scale_x,
        top * scale_y,
        (left + source_w) * scale_x,
        (top + source_h) * scale_y,
    )
    resized = Image.fromarray(luminance.astype(np.float32)).resize(
        (target_w, target_h), _RESAMPLING[resample], box=box
    )
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _prepare_for_correlation(image: np.ndarray, clean: np.ndarray, sigma: float) -> np.ndarray:
    values = np.asarray(image, dtype=np.float64)
    # Normalized convolution: the background is estimated from clean pixels only, so a dust
    # shadow present in one image and not in the other does not leak into the clean area.
    weight = ndimage.gaussian_filter(clean.astype(np.float64), sigma, mode="reflect")
    smooth = ndimage.gaussian_filter(np.where(clean, values, 0.0), sigma, mode="reflect")
    highpassed = values - smooth / np.maximum(weight, 1e-12)
    clean_values = highpassed[clean]
    centre = float(np.median(clean_values))
    spread = float(np.median(np.abs(clean_values - centre))) or float(np.std(clean_values))
    # Clipping at a few robust sigmas keeps a hot pixel from dominating the correlation.
    return np.where(clean, np.clip((highpassed - centre) / (spread or 1.0), -8.0, 8.0), 0.0)


def _refine_shift(
    reference: np.ndarray,
    moving: np.ndarray,
    clean: np.ndarray,
    shift: tuple[float, float],
    iterations: int = 5,
) -> tuple[float, float]:
    """Gauss-Newton (Lucas-Kanade) refinement of a translation, on clean pixels only.

    Zeroing the masked area leaves a window shared by both images, whose autocorrelation pulls
    the correlation peak toward zero shift; the least-squares fit on the clean interior has no
    such bias. ``shift`` is the displacement of ``moving`` relative to ``reference``.
    """
    dy, dx = shift
    margin = math.ceil(math.hypot(dy, dx)) + 3
    interior = ndimage.binary_erosion(clean, iterations=margin, border_value=0)
    if interior.sum() < 16:
        return dy, dx
    for _ in range(iterations):
        predicted = ndimage.shift(reference, (dy, dx), order=3, mode="nearest")
        grad_y, grad_x = np.gradient(predicted)
        design = np.stack([grad_y[interior], grad_x[interior]], axis=1)
        residual = moving[interior] - predicted[interior]
        step, *_ = np.linalg.lstsq(design, residual, rcond=None)
        # predicted(x) = reference(x - d), so d(predicted)/dd = -gradient(predicted).
        dy, dx = dy - float(step[0]), dx - float(step[1])
        if math.hypot(float(step[0]), float(step[1])) < 1e-3:
            break
    return dy, dx


def measure_alignment(
    answer: np.ndarray,
    median: np.ndarray,
    clean: np.ndarray,
    params: AlignmentParams | None = None,
) -> Alignment:
    """Measure how far the model's answer is shifted against the median, and enforce a limit.

    Both images are high-passed (a Gaussian background of ``highpass_sigma_px`` estimated from
    the clean pixels only is removed), robustly
    normalized, set to zero outside ``clean`` and apodized with a Hann window; the shift is the
    peak of their cross-correlation (``skimage.registration.phase_cross_correlation`` with
    ``normalization=None``: plain cross-correlation is more robust than phase normalization on
    smooth, low-contrast fields), found to 1/``upsample_factor`` pixel, then refined by a
    least-squares (Lucas-Kanade) fit on the clean interior, which removes the pull toward zero
    that the shared mask would otherwise exert.

    Parameters
    ----------
    answer : np.ndarray
        (H, W) decoded answer on the median's grid (any scale).
    median : np.ndarray
        (H, W) reference image of the same scene (any scale; invert it first when the answer
        shows dark features as bright, as a dust mask does).
    clean : np.ndarray
        (H, W) bool, True where answer and median should agree.
    params : AlignmentParams, optional

    Returns
    -------
    Alignment
        (dy, dx) of the answer relative to the median; a warning above ``warn_px``.

    Raises
    ------
    AlignmentError
        If the shift exceeds ``fail_px``.
    CodecError
        If the shapes disagree.
    """
    params = params or AlignmentParams()
    answer = _validate_image(answer, "answer")
    median = _validate_image(median, "median")
    clean = np.asarray(clean)
    if not (answer.shape == median.shape == clean.shape):
        raise CodecError(
            f"answer {answer.shape}, median {median.shape} and clean {clean.shape} must have "
            "the same shape; decode the answer with target_shape=median.shape"
        )
    if clean.dtype != bool:
        raise CodecError(f"clean must be a bool array, got dtype {clean.dtype}")
    usable = clean & np.isfinite(answer) & np.isfinite(median)
    if usable.mean() < params.min_clean_fraction:
        return Alignment(
            float("nan"),
            float("nan"),
            measured=False,
            warning=f"alignment not measured: only {usable.mean():.1%} of the pixels are clean",
        )
    reference = _prepare_for_correlation(median, usable, params.highpass_sigma_px)
    moving = _prepare_for_correlation(answer, usable, params.highpass_sigma_px)
    if not (np.any(reference) and np.any(moving)):
        return Alignment(
            float("nan"),
            float("nan"),
            measured=False,
            warning="alignment not measured: no structure in the clean area",
        )
    window = np.outer(np.hanning(median.shape[0]), np.hanning(median.shape[1]))
    shift, _, _ = phase_cross_correlation(
        reference * window,
        moving * window,
        upsample_factor=params.upsample_factor,
        normalization=None,
    )
    dy, dx = _refine_shift(reference, moving, usable, (-float(shift[0]), -float(shift[1])))
    dy, dx = round(dy, 4) + 0.0, round(dx, 4) + 0.0
    magnitude = math.hypot(dy, dx)
    if magnitude > params.fail_px:
        raise AlignmentError(
            f"the model's answer is shifted by (dy, dx) = ({dy:+.2f}, {dx:+.2f}) px against the "
            f"median, more than the {params.fail_px} px tolerance, so it cannot be used pixel for "
            "pixel; request a new attempt (re-roll) or use the classical backend"
        )
    warning = None
    if magnitude > params.warn_px:
        warning = (
            f"the model's answer is shifted by {magnitude:.2f} px (tolerance {params.fail_px} px, "
            f"warning above {params.warn_px} px)"
        )
    return Alignment(dy, dx, measured=True, warning=warning)
