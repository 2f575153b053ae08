"""GeminiImageModel against a loopback server that speaks Gemini's REST protocol.

The real google-genai client is used; only the server is fake. The synthetic median has known
dust (ground truth), so masks and inpainting are checked against it.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from assets_tests.resources import fake_gemini as fake_server
from assets_tests.resources.fake_gemini import (
    answer_blocked,
    answer_from_request,
    corrupt_image,
    delayed,
    encode_image,
    http_error,
    image_response,
    prompt_blocked,
    text_response,
)
from astro_assets.io.gemini_codec import encode_for_model
from astro_assets.resources.gemini import (
    GeminiBlockedError,
    GeminiError,
    GeminiImageModel,
)
from astro_assets.resources.image_model import ImageModel

fake_gemini = fake_server.fake_gemini

KEY = "AIzaFAKE-unit-test-key-7f3a9c1e5b"
SHAPE = (70, 96)  # pads to 72 x 96 (4:3), so padding is exercised end to end
DUST = ((20, 25, 6, 0.25), (48, 68, 5, 0.20))  # (y, x, radius px, depth)
HALLUCINATION = (45, 25, 5)


@dataclass(frozen=True)
class Scene:
    median: np.ndarray
    clean: np.ndarray
    dust: np.ndarray


def _disc(y: float, x: float, radius: float, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - y) ** 2 + (xx - x) ** 2 <= radius**2


def make_scene(seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    vignetting = 1.0 - 0.15 * ((yy - 35) ** 2 + (xx - 48) ** 2) / 60.0**2
    texture = ndimage.gaussian_filter(rng.normal(size=SHAPE), 2.0)
    clean = 3000.0 * vignetting * (1.0 + 0.01 * texture / texture.std())
    transmission = np.ones(SHAPE)
    dust = np.zeros(SHAPE, dtype=bool)
    for y, x, radius, depth in DUST:
        disc = _disc(y, x, radius)
        transmission[disc] -= depth
        dust |= disc
    return Scene((clean * transmission).astype(np.float32), clean, dust)


SCENE = make_scene()
PADDING = encode_for_model(SCENE.median).padding


def on_padded_grid(array: np.ndarray) -> np.ndarray:
    top, bottom, left, right = PADDING
    return np.pad(array.astype(np.float64), ((top, bottom), (left, right)), mode="edge")


def mask_answer(mask: np.ndarray, **encoding: object):
    return answer_from_request(lambda _request: on_padded_grid(mask), **encoding)


def make_model(base_url: str, **overrides: object) -> tuple[GeminiImageModel, list[float]]:
    settings: dict[str, object] = {
        "api_key": KEY,
        "base_url": base_url,
        "timeout_s": 10.0,
        "max_attempts": 3,
        "backoff_base_s": 0.5,
    }
    settings.update(overrides)
    model = GeminiImageModel(**settings)
    sleeps: list[float] = []
    model._sleep = sleeps.append
    model._jitter = lambda: 1.0
    return model, sleeps


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_implements_the_image_model_seam(fake_gemini):
    _, url = fake_gemini
    model, _ = make_model(url)
    assert isinstance(model, ImageModel)
    assert model.backend_name == "gemini"


@pytest.mark.parametrize(
    ("size", "fmt", "mode"),
    [
        ((96, 72), "PNG", "L"),
        ((400, 300), "PNG", "RGB"),
        ((203, 151), "JPEG", "RGB"),  # off-ratio answer, lossy format
        ((160, 120), "PNG", "RGBA"),
        ((128, 96), "PNG", "I;16"),
        ((144, 108), "PNG", "P"),
        ((192, 144), "WEBP", "LA"),
        ((120, 120), "PNG", "1"),  # a square answer to a 4:3 request
    ],
)
def test_locate_dust_decodes_answers_of_any_size_format_and_mode(fake_gemini, size, fmt, mode):
    server, url = fake_gemini
    server.enqueue(mask_answer(SCENE.dust, size=size, fmt=fmt, mode=mode))
    model, _ = make_model(url)
    result = model.locate_dust(SCENE.median)
    assert result.core.shape == SHAPE and result.core.dtype == bool
    assert iou(result.core, SCENE.dust) > 0.8
    assert len(result.details["regions_kept"]) == len(DUST)
    assert result.details["regions_rejected"] == []
    assert result.details["answer"]["width"] == size[0]
    assert result.details["requests"] == 1
    assert server.request_count == 1


def test_request_is_a_plain_image_request_without_tools(fake_gemini):
    server, url = fake_gemini
    server.enqueue(mask_answer(SCENE.dust))
    model, _ = make_model(url)
    result = model.locate_dust(SCENE.median)
    (request,) = server.requests
    assert request.path == "/v1beta/models/gemini-3-pro-image-preview:generateContent"
    assert "tools" not in request.body and "toolConfig" not in request.body
    assert b"googleSearch" not in request.raw and b"google_search" not in request.raw
    config = request.body["generationConfig"]
    assert config["responseModalities"] == ["IMAGE", "TEXT"]
    assert config["imageConfig"] == {"aspectRatio": "4:3", "imageSize": "2K"}
    assert request.prompt == model.mask_prompt
    with Image.open(io.BytesIO(request.image_bytes)) as sent:
        assert sent.mode == "I;16" and sent.size == (96, 72)
    assert result.details["encoding"]["padding_tblr"] == [1, 1, 0, 0]
    assert request.headers["x-goog-api-key"] == KEY
    assert KEY.encode() not in request.raw


def test_hallucinated_region_is_rejected_by_the_referee(fake_gemini):
    server, url = fake_gemini
    proposed = SCENE.dust | _disc(*HALLUCINATION)
    server.enqueue(mask_answer(proposed, size=(192, 144)))
    model, _ = make_model(url)
    result = model.locate_dust(SCENE.median)
    assert not (result.core & _disc(*HALLUCINATION)).any()
    assert iou(result.core, SCENE.dust) > 0.8
    (rejected,) = result.details["regions_rejected"]
    assert abs(rejected["centroid_yx"][0] - HALLUCINATION[0]) < 1
    assert abs(rejected["centroid_yx"][1] - HALLUCINATION[1]) < 1
    assert abs(rejected["deficit"]) < 0.05
    kept_deficits = sorted(region["deficit"] for region in result.details["regions_kept"])
    assert kept_deficits == pytest.approx(sorted(depth for *_, depth in DUST), abs=0.03)
    assert any("rejected" in warning for warning in result.details["warnings"])


def test_an_all_black_mask_means_no_dust(fake_gemini):
    server, url = fake_gemini
    server.enqueue(mask_answer(np.zeros(SHAPE, dtype=bool)))
    model, _ = make_model(url)
    result = model.locate_dust(SCENE.median)
    assert not result.core.any()
    assert result.details["regions_proposed"] == 0
    assert result.details["alignment"]["measured"] is False


def test_text_only_answer_is_retried_then_fails_clearly(fake_gemini):
    server, url = fake_gemini
    server.enqueue(*[text_response("I cannot see any dust.")] * 3)
    model, sleeps = make_model(url)
    with pytest.raises(GeminiError, match=r"without an image.*after 3 request|after 3 request"):
        model.locate_dust(SCENE.median)
    assert server.request_count == 3
    assert sleeps == [0.5, 1.0]


def test_text_only_answer_then_image_succeeds(fake_gemini):
    server, url = fake_gemini
    server.enqueue(text_response("Here is my analysis."), mask_answer(SCENE.dust))
    model, _ = make_model(url)
    result = model.locate_dust(SCENE.median)
    assert result.details["requests"] == 2
    assert "without an image" in result.details["retried_because"][0]


@pytest.mark.parametrize("blocked", [prompt_blocked("SAFETY"), answer_blocked("IMAGE_SAFETY")])
def test_safety_block_fails_at_once_without_retry(fake_gemini, blocked):
    server, url = fake_gemini
    server.enqueue(blocked)
    model, sleeps = make_model(url)
    with pytest.raises(GeminiBlockedError, match=r"SAFETY.*backend=classical"):
        model.locate_dust(SCENE.median)
    assert server.request_count == 1
    assert sleeps == []


def test_429_then_success_waits_as_the_server_asks(fake_gemini):
    server, url = fake_gemini
    server.enqueue(http_error(429, "Resource exhausted", retry_delay_s=7), mask_answer(SCENE.dust))
    model, sleeps = make_model(url)
    result = model.locate_dust(SCENE.median)
    assert server.request_count == 2
    assert sleeps == [7.0]
    assert result.details["requests"] == 2
    assert result.details["retried_because"][0].startswith("HTTP 429")


def test_500_every_time_fails_after_max_attempts_with_backoff(fake_gemini):
    server, url = fake_gemini
    server.default = http_error(500, "Internal error encountered.")
    model, sleeps = make_model(url, max_attempts=4, backoff_base_s=1.0, backoff_max_s=3.0)
    with pytest.raises(GeminiError, match=r"after 4 request.*HTTP 500.*try again later"):
        model.locate_dust(SCENE.median)
    assert server.request_count == 4
    assert sleeps == [1.0, 2.0, 3.0]


def test_backoff_jitter_stays_within_half_to_full_delay(fake_gemini):
    server, url = fake_gemini
    server.default = http_error(503)
    model, sleeps = make_model(url, max_attempts=3, backoff_base_s=2.0)
    model._jitter = lambda: 0.0
    with pytest.raises(GeminiError, match="after 3 request"):
        model.locate_dust(SCENE.median)
    assert sleeps == [1.0, 2.0]


@pytest.mark.parametrize(("status", "hint"), [(403, "API key was refused"), (404, "not found")])
def test_client_errors_are_not_retried(fake_gemini, status, hint):
    server, url = fake_gemini
    server.enqueue(http_error(status))
    model, sleeps = make_model(url)
    with pytest.raises(GeminiError, match=hint):
        model.locate_dust(SCENE.median)
    assert server.request_count == 1 and sleeps == []


def test_timeout_is_retried_then_fails_clearly(fake_gemini):
    server, url = fake_gemini
    server.enqueue(*[delayed(image_response(b"late"), 5.0)] * 2)
    model, _ = make_model(url, timeout_s=0.3, max_attempts=2)
    with pytest.raises(GeminiError, match=r"after 2 request.*timeout_s=0.3"):
        model.locate_dust(SCENE.median)
    assert server.request_count == 2


def test_corrupt_image_bytes_fail_clearly(fake_gemini):
    server, url = fake_gemini
    server.default = corrupt_image()
    model, _ = make_model(url, max_attempts=2)
    with pytest.raises(GeminiError, match=r"after 2 request.*cannot be decoded"):
        model.locate_dust(SCENE.median)
    assert server.request_count == 2


def test_inverted_mask_is_refused(fake_gemini):
    server, url = fake_gemini
    server.enqueue(mask_answer(~SCENE.dust))
    model, _ = make_model(url)
    with pytest.raises(GeminiError, match="inverted"):
        model.locate_dust(SCENE.median)


def test_mask_shifted_beyond_tolerance_fails(fake_gemini):
    server, url = fake_gemini
    shifted = np.roll(SCENE.dust, (0, 5), axis=(0, 1))
    server.enqueue(mask_answer(shifted))
    model, _ = make_model(url, mask_alignment_fail_px=3.0)
    with pytest.raises(GeminiError, match=r"shifted by \(dy, dx\) = \([+-]0\.\d+, \+[45]\.\d+\)"):
        model.locate_dust(SCENE.median)


def test_aligned_mask_reports_a_small_shift(fake_gemini):
    server, url = fake_gemini
    server.enqueue(mask_answer(SCENE.dust, size=(192, 144)))
    model, _ = make_model(url)
    alignment = model.locate_dust(SCENE.median).details["alignment"]
    assert alignment["measured"] and alignment["shift_px"] < 0.5


def _inpaint_answer(shift_px: tuple[float, float] = (0.0, 0.0), gain: float = 1.0):
    """The "model" returns the dust-free field, in the request's stretch, optionally shifted."""
    encoded = encode_for_model(SCENE.median)
    lo, hi = encoded.stretch

    def draw(_request: np.ndarray) -> np.ndarray:
        field = ndimage.shift(SCENE.clean * gain, shift_px, order=3, mode="nearest")
        return on_padded_grid((field - lo) / (hi - lo))

    return answer_from_request(draw, size=(192, 144), mode="I;16")


def test_inpaint_uses_the_answer_only_inside_the_mask(fake_gemini):
    server, url = fake_gemini
    server.enqueue(_inpaint_answer(gain=1.01))
    model, _ = make_model(url)
    support = ndimage.binary_dilation(SCENE.dust, iterations=2)
    median_before = SCENE.median.copy()
    result = model.inpaint(SCENE.median, support.astype(np.float32))
    np.testing.assert_array_equal(SCENE.median, median_before)
    assert result.image.dtype == np.float32 and result.image.shape == SHAPE
    np.testing.assert_array_equal(result.image[~support], SCENE.median[~support])
    inside = np.abs(result.image[SCENE.dust] / SCENE.clean[SCENE.dust] - 1.0)
    assert np.median(inside) < 0.02
    outside = result.details["outside_mask"]
    assert outside["median_abs_rel_diff"] == pytest.approx(0.01, abs=0.003)
    assert outside["max_abs_rel_diff"] < 0.05
    assert server.requests[0].prompt == model.inpaint_prompt


def test_inpaint_with_an_empty_mask_makes_no_request(fake_gemini):
    server, url = fake_gemini
    model, _ = make_model(url)
    result = model.inpaint(SCENE.median, np.zeros(SHAPE, dtype=bool))
    np.testing.assert_array_equal(result.image, SCENE.median)
    assert server.request_count == 0 and result.details["requests"] == 0


def test_inpaint_shift_between_warn_and_fail_is_a_warning(fake_gemini):
    server, url = fake_gemini
    server.enqueue(_inpaint_answer(shift_px=(0.0, 0.7)))
    model, _ = make_model(url)
    result = model.inpaint(SCENE.median, SCENE.dust)
    assert result.details["alignment"]["dx_px"] == pytest.approx(0.7, abs=0.15)
    assert any("shifted" in warning for warning in result.details["warnings"])


def test_inpaint_shift_beyond_tolerance_fails(fake_gemini):
    server, url = fake_gemini
    server.enqueue(_inpaint_answer(shift_px=(2.0, 0.0)))
    model, _ = make_model(url)
    with pytest.raises(GeminiError, match="tolerance"):
        model.inpaint(SCENE.median, SCENE.dust)


def test_cache_hit_makes_no_new_request(fake_gemini, tmp_path):
    server, url = fake_gemini
    server.enqueue(mask_answer(SCENE.dust))
    model, _ = make_model(url, cache_dir=str(tmp_path / "cache"))
    first = model.locate_dust(SCENE.median)
    second = model.locate_dust(SCENE.median)
    assert server.request_count == 1
    assert first.details["cache"] == "miss" and second.details["cache"] == "hit"
    assert second.details["requests"] == 0
    np.testing.assert_array_equal(first.core, second.core)
    assert Path(second.details["cache_path"]).is_file()


def test_reroll_makes_a_new_request_and_keeps_both_attempts(fake_gemini, tmp_path):
    server, url = fake_gemini
    server.enqueue(mask_answer(SCENE.dust), mask_answer(SCENE.dust | _disc(*HALLUCINATION)))
    cache = str(tmp_path / "cache")
    first, _ = make_model(url, cache_dir=cache)
    second, _ = make_model(url, cache_dir=cache, attempt=1)
    first.locate_dust(SCENE.median)
    result = second.locate_dust(SCENE.median)
    assert server.request_count == 2
    listed = result.details["attempts_on_disk"]
    assert [entry["attempt"] for entry in listed] == [0, 1]
    assert all(Path(entry["path"]).is_file() for entry in listed)
    assert result.details["attempt"] == 1 and result.details["cache"] == "miss"


def test_api_key_never_leaks(fake_gemini, tmp_path, caplog):
    server, url = fake_gemini
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "cache"
    server.enqueue(
        http_error(429, retry_delay_s=1),
        text_response("no"),
        mask_answer(SCENE.dust),
        http_error(403, "API key not valid. Please pass a valid API key."),
    )
    model, _ = make_model(url, cache_dir=str(cache))
    result = model.locate_dust(SCENE.median)
    rerolled, _ = make_model(url, cache_dir=str(cache), attempt=1)
    with pytest.raises(GeminiError) as failure:
        rerolled.locate_dust(SCENE.median)

    exposed = [
        repr(model),
        str(model),
        str(failure.value),
        repr(failure.value),
        str(failure.value.__cause__),
        json.dumps(result.details),
        caplog.text,
    ]
    assert all(KEY not in text for text in exposed)
    assert "api_key='***'" in repr(model)
    cached_files = [path for path in cache.rglob("*") if path.is_file()]
    assert cached_files
    for path in cached_files:
        assert KEY not in str(path)
        data = path.read_bytes()
        assert KEY.encode() not in data
        assert base64.b64encode(KEY.encode()) not in data


def test_api_key_is_read_from_dotenv_in_the_working_directory(fake_gemini, tmp_path, monkeypatch):
    server, url = fake_gemini
    dotenv_key = "AIzaFAKE-from-dotenv-0042"
    (tmp_path / ".env").write_text(f"GEMINI_API_KEY={dotenv_key}\n")
    monkeypatch.chdir(tmp_path)
    environment_before = dict(os.environ)
    server.enqueue(mask_answer(SCENE.dust))
    model, _ = make_model(url, api_key=None)
    model.locate_dust(SCENE.median)
    assert server.requests[0].headers["x-goog-api-key"] == dotenv_key
    assert dict(os.environ) == environment_before


def test_missing_key_fails_before_any_request(fake_gemini, tmp_path, monkeypatch):
    server, url = fake_gemini
    monkeypatch.chdir(tmp_path)
    model, _ = make_model(url, api_key=None)
    with pytest.raises(GeminiError, match=r"no Gemini API key.*GEMINI_API_KEY.*classical"):
        model.locate_dust(SCENE.median)
    assert server.request_count == 0


@pytest.mark.parametrize(
    ("median", "message"),
    [
        (np.ones((4, 5, 3)), "2-D"),
        (np.full(SHAPE, np.nan), "NaN"),
        (np.array([["a", "b"], ["c", "d"]]), "real numbers"),
    ],
)
def test_locate_dust_rejects_bad_medians(fake_gemini, median, message):
    server, url = fake_gemini
    model, _ = make_model(url)
    with pytest.raises(ValueError, match=message):
        model.locate_dust(median)
    assert server.request_count == 0


def test_inpaint_rejects_a_mask_of_another_shape(fake_gemini):
    _, url = fake_gemini
    model, _ = make_model(url)
    with pytest.raises(ValueError, match="same shape"):
        model.inpaint(SCENE.median, np.ones((5, 5), dtype=bool))


def test_constant_median_is_refused_before_any_request(fake_gemini):
    server, url = fake_gemini
    model, _ = make_model(url)
    with pytest.raises(ValueError, match="constant"):
        model.locate_dust(np.full(SHAPE, 7.0))
    assert server.request_count == 0


def test_answer_image_helper_round_trips(fake_gemini):
    data = encode_image(np.full((6, 8), 0.5), fmt="PNG", mode="L")
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (8, 6) and np.asarray(image)[0, 0] == 128


@pytest.mark.gemini
def test_one_real_request_to_gemini(tmp_path):
    key = os.environ.get("GEMINI_API_KEY")
    if not key:
        pytest.skip("GEMINI_API_KEY is not set: the real Gemini API is not called")
    model = GeminiImageModel(api_key=key, max_attempts=2, cache_dir=str(tmp_path / "cache"))
    result = model.locate_dust(SCENE.median)
    assert result.core.shape == SHAPE
    assert result.details["requests"] >= 1
    assert key not in json.dumps(result.details)
