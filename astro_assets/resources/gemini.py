"""Gemini as the dust "eye": locate dust shadows and infer the dust-free signal.

The model only proposes; deterministic code decides what is used:

- ``locate_dust`` sends the median (16-bit PNG, robust stretch, padded to a supported aspect
  ratio), decodes the black/white mask the model draws, thresholds it at 0.5, and hands every
  region to the referee (``science.flatfield.referee``): only regions the median shows as
  measurably darker than their surroundings are returned; the rest are reported as rejected.
- ``inpaint`` asks for the dust-free image and uses it only inside the mask; outside the mask the
  result is the median itself, bit for bit, and the model's deviations there are measured and
  reported.

Reliability. Requests that fail with HTTP 408/429/5xx, time out or cannot connect are retried
with exponential backoff and jitter (honouring the server's ``retryDelay`` hint for 429), up to
``max_attempts`` requests in all. Answers without a usable image (text only, an unreadable
image) are retried the same way, since a fresh sample usually carries the image. Safety blocks
are not retried: the same input is blocked again. Other 4xx errors (bad key, unknown model,
invalid request) are not retried either. Every failure ends in ``GeminiError`` with the status,
the number of requests made and what to do next.

Secrets. The API key is taken from the ``api_key`` field (bound to ``GEMINI_API_KEY`` by the
definitions) or from a ``.env`` file in the working directory. It is sent only in the request
header, and never appears in the resource's repr, in errors, in metadata, in logs or in the cache
(whose keys hash the input, prompt, model, size and attempt, never credentials).

No web search or any other tool is ever attached to the request.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import numpy as np
from dotenv import dotenv_values
from PIL import Image, UnidentifiedImageError
from pydantic import Field, PrivateAttr
from scipy import ndimage

from astro_assets.io.answer_cache import AnswerCache, CachedAnswer
from astro_assets.io.gemini_codec import (
    Alignment,
    AlignmentError,
    AlignmentParams,
    CodecError,
    EncodedImage,
    EncodingParams,
    decode_answer,
    encode_for_model,
    measure_alignment,
)
from astro_assets.resources.image_model import DustMaskResult, InpaintResult
from astro_assets.science.flatfield.referee import RefereeParams, referee_mask

if TYPE_CHECKING:
    from google.genai import errors as genai_errors
    from google.genai import types

BACKEND_NAME = "gemini"
API_KEY_NAME = "GEMINI_API_KEY"

DEFAULT_MASK_PROMPT = (
    "This is a flat-field image from an astronomical camera: the temporal median of a video. "
    "Dust on the sensor or on the optics near it casts shadows: dark rings (donuts) or dark "
    "spots of different sizes, some faint. Produce a black-and-white mask of these dust "
    "shadows: pure white (255) on every pixel covered by a dust shadow, pure black (0) "
    "everywhere else. Mark each whole shadow, including the faint outer part of a donut. Do not "
    "mark the target's own features, the limb, vignetting or noise. Keep exactly the same "
    "framing, size and orientation as the input image; output only the mask image."
)

DEFAULT_INPAINT_PROMPT = (
    "This is a flat-field image from an astronomical camera: the temporal median of a video. "
    "Remove the dust shadows (dark rings/donuts and dark spots cast by dust on the sensor) and "
    "fill each one with the underlying signal that would be there without the dust, continuing "
    "the surrounding brightness, gradients and texture. Do not change anything else: keep every "
    "other pixel, the framing, size, orientation, brightness and contrast exactly as in the "
    "input image. Output only the corrected image."
)

RETRYABLE_HTTP_STATUS = frozenset({408, 429, 500, 502, 503, 504})
BLOCKING_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "IMAGE_SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)
# Inline request data is limited to 20 MB after base64 (4/3 growth), prompt included.
MAX_REQUEST_IMAGE_BYTES = 14_000_000
_MASK_INVERTED_FRACTION = 0.5
# google-genai sends with httpx or its fork httpx2, whichever is installed.
_HTTP_MODULES = [
    importlib.import_module(name) for name in ("httpx", "httpx2") if importlib.util.find_spec(name)
]
_TIMEOUT_ERRORS: tuple[type[Exception], ...] = tuple(m.TimeoutException for m in _HTTP_MODULES)
_TRANSPORT_ERRORS: tuple[type[Exception], ...] = tuple(m.TransportError for m in _HTTP_MODULES)
_RETRY_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


class GeminiError(RuntimeError):
    """The Gemini backend could not produce a usable answer. The message says what to do."""


class GeminiBlockedError(GeminiError):
    """The request or the answer was blocked by the service's safety filters."""


class _UnusableAnswer(Exception):
    """A well-formed HTTP answer without a usable image (retried)."""


@dataclass
class _Answer:
    data: bytes
    mime_type: str
    text: str | None
    cache: str
    requests: int
    request_seconds: list[float]
    retried_because: list[str]
    cached: CachedAnswer | None = None
    attempts_on_disk: list[dict[str, Any]] = field(default_factory=list)


def _status_hint(code: int) -> str:
    if code == 429:
        return (
            "the request quota is exhausted: check the key's rate limits and billing in Google "
            "AI Studio, wait and run again, or use backend=classical"
        )
    if code in (401, 403):
        return (
            f"the API key was refused: check {API_KEY_NAME} (a valid key with access to this "
            "model), or use backend=classical"
        )
    if code == 404:
        return "the model was not found: check the model name, or use backend=classical"
    if code >= 500 or code == 408:
        return (
            "the service is unavailable or overloaded: try again later, raise max_attempts, or "
            "use backend=classical"
        )
    return "the request was rejected: check the model name and image_size, or use backend=classical"


def _retry_delay_hint(exc: genai_errors.APIError) -> float | None:
    """The server's RetryInfo delay in seconds, if the error carries one."""
    details = exc.details if isinstance(exc.details, dict) else {}
    error = details.get("error", details)
    for item in error.get("details", []) if isinstance(error, dict) else []:
        if isinstance(item, dict) and isinstance(item.get("retryDelay"), str):
            match = _RETRY_DELAY.match(item["retryDelay"])
            if match:
                return float(match.group(1))
    return None


def _check_image(data: bytes) -> tuple[int, int, str]:
    """(width, height, mode) of a readable image; raises _UnusableAnswer otherwise."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.width, image.height, image.mode
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise _UnusableAnswer(
            f"the answer image ({len(data)} bytes) cannot be decoded ({type(exc).__name__})"
        ) from None


class GeminiImageModel(dg.ConfigurableResource):
    """Dust location and inpainting by a Gemini image model, checked by deterministic code.

    Implements the ``ImageModel`` seam (``astro_assets.resources.image_model``).
    """

    api_key: str | None = Field(
        default=None,
        description=f"Gemini API key; when unset, {API_KEY_NAME} is read from ./.env.",
    )
    model: str = Field(default="gemini-3-pro-image-preview", description="Image model name.")
    image_size: str = Field(default="2K", description="Answer size: 1K, 2K or 4K.")
    base_url: str | None = Field(
        default=None, description="Service URL; unset means Google's public endpoint."
    )
    timeout_s: float = Field(default=120.0, gt=0, description="Per-request timeout, seconds.")
    max_attempts: int = Field(default=4, ge=1, description="Most HTTP requests per answer.")
    backoff_base_s: float = Field(
        default=2.0, ge=0, description="First retry delay, seconds; doubles on each retry."
    )
    backoff_max_s: float = Field(default=60.0, ge=0, description="Longest retry delay, seconds.")
    mask_prompt: str = Field(default=DEFAULT_MASK_PROMPT, description="Prompt for the dust mask.")
    inpaint_prompt: str = Field(
        default=DEFAULT_INPAINT_PROMPT, description="Prompt for the dust-free image."
    )
    cache_dir: str | None = Field(
        default=None, description="Folder where answers are cached; unset disables the cache."
    )
    attempt: int = Field(
        default=0,
        ge=0,
        description="Re-roll number: a new value requests a new answer; old ones are kept.",
    )
    referee_significance: float = Field(
        default=3.0, gt=0, description="Sigma a proposed dust region must reach to be kept."
    )
    mask_threshold: float = Field(
        default=0.5, gt=0, lt=1, description="Mask luminance at and above which a pixel is dust."
    )
    bit_depth: int = Field(default=16, description="Request PNG bit depth: 16 or 8.")
    alignment_warn_px: float = Field(
        default=0.5, ge=0, description="Answer shift (px) above which a warning is recorded."
    )
    alignment_fail_px: float = Field(
        default=1.0, ge=0, description="Inpainting answers shifted more than this (px) fail."
    )
    mask_alignment_fail_px: float = Field(
        default=3.0,
        ge=0,
        description=(
            "Mask answers shifted more than this (px) fail; masks are expanded and feathered "
            "downstream, so they tolerate more than pixel values do."
        ),
    )

    _sleep: Callable[[float], None] = PrivateAttr(default=time.sleep)
    _jitter: Callable[[], float] = PrivateAttr(default=random.random)

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, ("***" if name == "api_key" and value else value)

    @property
    def backend_name(self) -> str:
        return BACKEND_NAME

    # ----------------------------------------------------------------------------- the seam

    def locate_dust(self, median: np.ndarray) -> DustMaskResult:
        """Ask the model for a dust mask of ``median`` and keep the regions the data confirm.

        Parameters
        ----------
        median : np.ndarray
            (H, W) temporal median, finite, linear units.

        Returns
        -------
        DustMaskResult
            ``core``: (H, W) bool, the confirmed regions only; ``details``: request facts
            (model, attempt, requests, cache, timing, encoding, alignment) and every region's
            verdict with its measured deficit.

        Raises
        ------
        GeminiError
            If no usable answer could be obtained (the message says why and what to do).
        ValueError
            If ``median`` is not a finite 2-D image.
        """
        median = self._validate_median(median)
        started = time.perf_counter()
        encoded = self._encode(median)
        encode_seconds = time.perf_counter() - started

        answer = self._answer(encoded, self.mask_prompt)
        started = time.perf_counter()
        soft = self._decode(answer, encoded, median.shape, resample="bilinear")
        decode_seconds = time.perf_counter() - started

        proposed = soft >= self.mask_threshold
        warnings: list[str] = []
        proposed_fraction = float(proposed.mean())
        if proposed_fraction > _MASK_INVERTED_FRACTION:
            raise GeminiError(
                f"the model's mask marks {proposed_fraction:.0%} of the frame as dust, which "
                "means it is inverted or not a mask; request a new attempt (re-roll) or use "
                "backend=classical"
            )

        started = time.perf_counter()
        verdict = referee_mask(
            median, proposed, RefereeParams(significance=self.referee_significance)
        )
        referee_seconds = time.perf_counter() - started

        alignment = self._mask_alignment(
            soft,
            median,
            proposed,
            f"the referee confirmed {verdict.n_kept} of {len(verdict.regions)} regions",
        )
        if alignment.warning:
            warnings.append(alignment.warning)
        rejected = [r.describe() for r in verdict.regions if not r.kept]
        if rejected:
            warnings.append(
                f"{len(rejected)} of {len(verdict.regions)} regions proposed by the model are "
                "not darker than their surroundings and were rejected"
            )

        details = self._request_details(answer, encoded)
        details.update(
            {
                "operation": "locate_dust",
                "mask_threshold": self.mask_threshold,
                "proposed_fraction": proposed_fraction,
                "core_fraction": float(verdict.kept.mean()),
                "regions_proposed": len(verdict.regions),
                "regions_kept": [r.describe() for r in verdict.regions if r.kept],
                "regions_rejected": rejected,
                "referee": {"significance": self.referee_significance},
                "alignment": alignment.describe(),
                "timing_s": {
                    "encode": round(encode_seconds, 4),
                    "requests": [round(s, 3) for s in answer.request_seconds],
                    "decode": round(decode_seconds, 4),
                    "referee": round(referee_seconds, 4),
                },
                "warnings": warnings,
            }
        )
        return DustMaskResult(core=verdict.kept, backend=BACKEND_NAME, details=details)

    def inpaint(self, median: np.ndarray, mask: np.ndarray) -> InpaintResult:
        """Ask the model for the dust-free image and use it only where ``mask > 0``.

        Parameters
        ----------
        median : np.ndarray
            (H, W) temporal median, finite, linear units.
        mask : np.ndarray
            (H, W) support: pixels with ``mask > 0`` are replaced.

        Returns
        -------
        InpaintResult
            ``image``: (H, W) float32, equal to ``median.astype(float32)`` outside the mask
            exactly; inside, the model's answer mapped back to the median's units. ``details``
            reports the request and the model's deviation from the median outside the mask.

        Raises
        ------
        GeminiError
            If no usable answer could be obtained, or the answer is shifted by more than
            ``alignment_fail_px``.
        ValueError
            If the inputs are not finite 2-D arrays of the same shape.
        """
        median = self._validate_median(median)
        support = self._validate_mask(mask, median.shape)
        result = median.astype(np.float32)
        if not support.any():
            return InpaintResult(
                image=result,
                backend=BACKEND_NAME,
                details={
                    "operation": "inpaint",
                    "backend": BACKEND_NAME,
                    "model": self.model,
                    "attempt": self.attempt,
                    "requests": 0,
                    "skipped": "empty mask: nothing to inpaint, no request made",
                },
            )

        started = time.perf_counter()
        encoded = self._encode(median)
        encode_seconds = time.perf_counter() - started
        answer = self._answer(encoded, self.inpaint_prompt)
        started = time.perf_counter()
        stretched = self._decode(answer, encoded, median.shape, resample="bicubic")
        signal = encoded.to_signal(stretched)
        decode_seconds = time.perf_counter() - started

        clean = ndimage.distance_transform_edt(~support) > 3.0
        try:
            alignment = measure_alignment(
                signal,
                median,
                clean,
                AlignmentParams(warn_px=self.alignment_warn_px, fail_px=self.alignment_fail_px),
            )
        except AlignmentError as exc:
            raise GeminiError(str(exc)) from None

        result[support] = signal[support]
        details = self._request_details(answer, encoded)
        details.update(
            {
                "operation": "inpaint",
                "mask_fraction": float(support.mean()),
                "alignment": alignment.describe(),
                "outside_mask": _outside_mask_difference(signal, median, clean, encoded),
                "timing_s": {
                    "encode": round(encode_seconds, 4),
                    "requests": [round(s, 3) for s in answer.request_seconds],
                    "decode": round(decode_seconds, 4),
                },
                "warnings": [alignment.warning] if alignment.warning else [],
            }
        )
        return InpaintResult(image=result, backend=BACKEND_NAME, details=details)

    # ------------------------------------------------------------------------- internals

    @staticmethod
    def _validate_median(median: np.ndarray) -> np.ndarray:
        array = np.asarray(median)
        if array.ndim != 2 or min(array.shape) < 2:
            raise ValueError(
                f"median must be a 2-D (H, W) image of at least 2x2 pixels, got shape "
                f"{array.shape}; pass a single channel"
            )
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise ValueError(f"median must hold real numbers, got dtype {array.dtype}")
        if not np.isfinite(array).all():
            raise ValueError(
                "median contains NaN or infinite pixels; replace them before calling the model"
            )
        return array

    @staticmethod
    def _validate_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        array = np.asarray(mask)
        if array.shape != shape:
            raise ValueError(f"mask {array.shape} and median {shape} must have the same shape")
        if array.dtype != bool and not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"mask must be bool or numeric, got dtype {array.dtype}")
        if array.dtype != bool and not np.isfinite(array).all():
            raise ValueError("mask contains NaN or infinite values; pass a finite mask")
        return array > 0

    def has_api_key(self) -> bool:
        """Whether a key is configured (field or ./.env), without revealing it."""
        try:
            self._resolve_api_key()
        except GeminiError:
            return False
        return True

    def _resolve_api_key(self) -> str:
        if self.api_key and self.api_key.strip():
            return self.api_key.strip()
        env_file = Path.cwd() / ".env"
        if env_file.is_file():
            value = dotenv_values(env_file).get(API_KEY_NAME)
            if value and value.strip():
                return value.strip()
        raise GeminiError(
            f"no Gemini API key: set {API_KEY_NAME} in the environment or in a .env file in "
            "the working directory, or use backend=classical"
        )

    def _redact(self, text: str, key: str) -> str:
        return text.replace(key, "[redacted]") if key else text

    def _encode(self, median: np.ndarray) -> EncodedImage:
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {self.bit_depth}; set 16 or 8")
        try:
            encoded = encode_for_model(median, EncodingParams(bit_depth=self.bit_depth))
            if len(encoded.png) > MAX_REQUEST_IMAGE_BYTES and self.bit_depth == 16:
                encoded = encode_for_model(median, EncodingParams(bit_depth=8))
        except CodecError as exc:
            raise ValueError(str(exc)) from None
        if len(encoded.png) > MAX_REQUEST_IMAGE_BYTES:
            raise GeminiError(
                f"the request image is {len(encoded.png) / 1e6:.1f} MB, over the "
                f"{MAX_REQUEST_IMAGE_BYTES / 1e6:.0f} MB inline limit even at 8 bits; bin the "
                "median 2x2 before sending it, or use backend=classical"
            )
        return encoded

    def _decode(
        self, answer: _Answer, encoded: EncodedImage, shape: tuple[int, ...], resample: Any
    ) -> np.ndarray:
        try:
            return decode_answer(answer.data, encoded, (shape[0], shape[1]), resample=resample)
        except CodecError as exc:
            kept_at = str(answer.cached.path) if answer.cached else "nowhere (cache disabled)"
            raise GeminiError(f"{exc}; the answer is kept at {kept_at}") from None

    def _mask_alignment(
        self, soft: np.ndarray, median: np.ndarray, proposed: np.ndarray, confirmed: str
    ) -> Alignment:
        """Shift of the mask against the shadows it marks.

        The mask is correlated with the inverted median, where dust shadows are bright as in the
        mask. Regions drawn on flat areas add no correlation peak, so real dust dominates.
        """
        if not proposed.any():
            return Alignment(float("nan"), float("nan"), measured=False, warning=None)
        try:
            return measure_alignment(
                soft,
                -median.astype(np.float64),
                np.ones(median.shape, dtype=bool),
                AlignmentParams(
                    warn_px=min(self.alignment_warn_px, self.mask_alignment_fail_px),
                    fail_px=self.mask_alignment_fail_px,
                ),
            )
        except AlignmentError as exc:
            raise GeminiError(f"{exc} ({confirmed})") from None

    def _request_details(self, answer: _Answer, encoded: EncodedImage) -> dict[str, Any]:
        width, height, mode = _check_image(answer.data)
        return {
            "backend": BACKEND_NAME,
            "model": self.model,
            "image_size": self.image_size,
            "attempt": self.attempt,
            "requests": answer.requests,
            "retried_because": answer.retried_because,
            "cache": answer.cache,
            "cache_path": str(answer.cached.path) if answer.cached else None,
            "attempts_on_disk": answer.attempts_on_disk,
            "encoding": encoded.describe(),
            "encoding_note": (
                None
                if encoded.bit_depth == self.bit_depth
                else f"sent as {encoded.bit_depth}-bit: the {self.bit_depth}-bit PNG was over the "
                f"{MAX_REQUEST_IMAGE_BYTES / 1e6:.0f} MB inline request limit"
            ),
            "answer": {
                "mime_type": answer.mime_type,
                "width": width,
                "height": height,
                "mode": mode,
                "bytes": len(answer.data),
                "text": answer.text,
            },
        }

    def _answer(self, encoded: EncodedImage, prompt: str) -> _Answer:
        """The model's image answer to (encoded, prompt): from the cache or by requesting it."""
        cache = AnswerCache(self.cache_dir) if self.cache_dir else None
        input_hash = encoded.sha256
        if cache is not None:
            cached = cache.get(input_hash, prompt, self.model, self.image_size, self.attempt)
            if cached is not None:
                return _Answer(
                    data=cached.read(),
                    mime_type=cached.mime_type,
                    text=cached.text,
                    cache="hit",
                    requests=0,
                    request_seconds=[],
                    retried_because=[],
                    cached=cached,
                    attempts_on_disk=[
                        a.describe() for a in cache.list_attempts(input_hash, prompt, self.model)
                    ],
                )
        answer = self._request_with_retries(encoded, prompt)
        if cache is not None:
            answer.cached = cache.put(
                input_hash,
                prompt,
                self.model,
                self.image_size,
                self.attempt,
                answer.data,
                answer.mime_type,
                answer.text,
            )
            answer.cache = "miss"
            answer.attempts_on_disk = [
                a.describe() for a in cache.list_attempts(input_hash, prompt, self.model)
            ]
        return answer

    def _backoff_seconds(self, retry_index: int, server_hint: float | None) -> float:
        exponential = min(self.backoff_max_s, self.backoff_base_s * 2.0**retry_index)
        delay = exponential * (0.5 + 0.5 * self._jitter())
        if server_hint is not None:
            delay = max(delay, min(server_hint, self.backoff_max_s))
        return delay

    def _request_with_retries(self, encoded: EncodedImage, prompt: str) -> _Answer:
        # Imported here: google-genai takes a third of a second to import, which every step
        # process of every run would pay, most of them never calling the API.
        from google import genai
        from google.genai import errors as genai_errors
        from google.genai import types

        key = self._resolve_api_key()
        http_options = types.HttpOptions(
            base_url=self.base_url,
            api_version="v1beta",
            timeout=max(1, math.ceil(self.timeout_s * 1000.0)),
        )
        config = types.GenerateContentConfig(
            response_modalities=["IMAGE", "TEXT"],
            image_config=types.ImageConfig(
                image_size=self.image_size, aspect_ratio=encoded.aspect_ratio
            ),
        )
        contents: list[Any] = [
            prompt,
            types.Part.from_bytes(data=encoded.png, mime_type=encoded.mime_type),
        ]
        failures: list[str] = []
        seconds: list[float] = []
        server_hint: float | None = None
        generic_step = (
            "re-roll (attempt+1), raise max_attempts or timeout_s, or use backend=classical"
        )
        next_step = generic_step
        with genai.Client(api_key=key, vertexai=False, http_options=http_options) as client:
            for request_index in range(self.max_attempts):
                if request_index > 0:
                    self._sleep(self._backoff_seconds(request_index - 1, server_hint))
                server_hint = None
                started = time.perf_counter()
                try:
                    response = client.models.generate_content(
                        model=self.model, contents=contents, config=config
                    )
                    data, mime_type, text = self._extract_image(response, key)
                except genai_errors.APIError as exc:
                    seconds.append(time.perf_counter() - started)
                    code = int(exc.code) if exc.code else 0
                    summary = self._redact(
                        f"HTTP {code} {exc.status or ''}: {str(exc.message or '')[:300]}", key
                    )
                    if code not in RETRYABLE_HTTP_STATUS:
                        raise GeminiError(
                            f"Gemini request failed ({summary}); {_status_hint(code)}"
                        ) from None
                    server_hint = _retry_delay_hint(exc)
                    failures.append(summary)
                    next_step = _status_hint(code)
                    continue
                except _TIMEOUT_ERRORS:
                    seconds.append(time.perf_counter() - started)
                    failures.append(f"no answer within timeout_s={self.timeout_s:g} s")
                    next_step = generic_step
                    continue
                except _TRANSPORT_ERRORS as exc:
                    seconds.append(time.perf_counter() - started)
                    failures.append(
                        self._redact(f"connection failed ({type(exc).__name__}: {exc})", key)
                    )
                    next_step = generic_step
                    continue
                except (genai_errors.UnknownApiResponseError, _UnusableAnswer) as exc:
                    seconds.append(time.perf_counter() - started)
                    failures.append(self._redact(str(exc)[:300], key))
                    next_step = generic_step
                    continue
                seconds.append(time.perf_counter() - started)
                return _Answer(
                    data=data,
                    mime_type=mime_type,
                    text=text,
                    cache="disabled",
                    requests=request_index + 1,
                    request_seconds=seconds,
                    retried_because=failures,
                )
        raise GeminiError(
            f"Gemini gave no usable answer after {self.max_attempts} request(s) to model "
            f"{self.model!r}; last failure: {failures[-1]}; {next_step}"
        )

    def _extract_image(
        self, response: types.GenerateContentResponse, key: str
    ) -> tuple[bytes, str, str | None]:
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason is not None:
            raise GeminiBlockedError(
                f"Gemini blocked the request ({_enum_name(feedback.block_reason)}): the image was "
                "refused by the safety filters and will be refused again; use backend=classical"
            )
        if not response.candidates:
            raise _UnusableAnswer("the answer has no candidates")
        candidate = response.candidates[0]
        finish = _enum_name(candidate.finish_reason)
        if finish in BLOCKING_FINISH_REASONS:
            raise GeminiBlockedError(
                f"Gemini blocked the answer (finish_reason={finish}): it will be blocked again; "
                "use backend=classical"
            )
        parts = candidate.content.parts if candidate.content and candidate.content.parts else []
        texts = [part.text for part in parts if part.text and not part.thought]
        text = self._redact(" ".join(texts), key)[:2000] if texts else None
        images = [
            part.inline_data
            for part in parts
            if part.inline_data is not None
            and part.inline_data.data
            and not part.thought
            and (part.inline_data.mime_type or "").startswith("image/")
        ]
        if not images:
            raise _UnusableAnswer(
                f"the model answered without an image (finish_reason={finish}"
                + (f", text: {text[:200]!r})" if text else ")")
            )
        image = images[-1]
        _check_image(image.data)
        return bytes(image.data), str(image.mime_type), text


def _enum_name(value: Any) -> str:
    if value is None:
        return "UNSPECIFIED"
    return str(getattr(value, "value", value))


def _outside_mask_difference(
    signal: np.ndarray, median: np.ndarray, clean: np.ndarray, encoded: EncodedImage
) -> dict[str, Any]:
    """How much the model changed the image where it was asked to change nothing.

    Measured on clean pixels whose median lies inside the stretch and above 5 % of it (darker
    pixels carry too little signal for a relative difference), relative to the median value.
    """
    lo, hi = encoded.stretch
    values = median.astype(np.float64)
    measurable = clean & (values >= lo + 0.05 * (hi - lo)) & (values <= hi) & (values > 0)
    if not measurable.any():
        return {"pixels": 0, "median_abs_rel_diff": None, "max_abs_rel_diff": None}
    relative = np.abs(signal[measurable] - values[measurable]) / values[measurable]
    return {
        "pixels": int(measurable.sum()),
        "median_abs_rel_diff": float(np.median(relative)),
        "max_abs_rel_diff": float(relative.max()),
        "note": "the result uses the median itself outside the mask; these are the model's "
        "deviations there, a measure of how faithful its answer is",
    }
