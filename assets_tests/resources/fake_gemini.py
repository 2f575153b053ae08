"""A loopback HTTP server that speaks Gemini's ``generateContent`` REST protocol.

The real ``google-genai`` client is pointed at it with ``HttpOptions(base_url=...)``. Responses are
scripted in a queue (``server.enqueue(...)``); when the queue is empty the server answers
``server.default`` (an HTTP 500 unless a test sets something else), so an unexpected request
fails loudly. Every request is recorded (path, headers, parsed JSON body) for assertions.

Protocol, as the client speaks it: ``POST /{version}/models/{model}:generateContent`` with JSON
``{"contents": [{"role": "user", "parts": [{"text": ...}, {"inlineData": {"mime_type": ...,
"data": <base64url>}}]}], "generationConfig": {...}}`` and the key in the ``x-goog-api-key``
header. Answers: ``{"candidates": [{"content": {"role": "model", "parts": [{"text": ...},
{"inlineData": {"mimeType": ..., "data": <base64>}}]}, "finishReason": "STOP"}],
"promptFeedback": {...}}``; errors: ``{"error": {"code", "message", "status", "details"}}``.

Use the ``fake_gemini`` fixture, which yields ``(server, base_url)``; import it into a test module
with ``from assets_tests.resources.fake_gemini import fake_gemini``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import re
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
from PIL import Image

_PATH = re.compile(r"^/(v1beta|v1|v1alpha)/models/([^/:]+):generateContent$")
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: dict[str, Any] | None

    @property
    def model(self) -> str | None:
        match = _PATH.match(self.path)
        return match.group(2) if match else None

    @property
    def parts(self) -> list[dict[str, Any]]:
        if not self.body:
            return []
        return [part for content in self.body.get("contents", []) for part in content["parts"]]

    @property
    def prompt(self) -> str:
        return " ".join(part["text"] for part in self.parts if "text" in part)

    @property
    def image_bytes(self) -> bytes:
        for part in self.parts:
            inline = part.get("inlineData") or part.get("inline_data")
            if inline:
                return _b64decode(inline["data"])
        raise AssertionError("the request carries no inline image")

    def image_array(self) -> np.ndarray:
        """The request image as float64 in [0, 1] (16-bit and 8-bit grayscale understood)."""
        with Image.open(io.BytesIO(self.image_bytes)) as image:
            array = np.asarray(image, dtype=np.float64)
            top = 65535.0 if image.mode.startswith("I") else 255.0
        return array / top


@dataclass(frozen=True)
class ScriptedResponse:
    """What the server sends back for one request."""

    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    delay_s: float = 0.0


Responder = Callable[[RecordedRequest], ScriptedResponse]
Script = ScriptedResponse | Responder


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded)
    except binascii.Error:
        return base64.b64decode(padded)


def _json(status: int, payload: dict[str, Any]) -> ScriptedResponse:
    return ScriptedResponse(status=status, body=json.dumps(payload).encode("utf-8"))


def encode_image(
    array: np.ndarray,
    fmt: str = "PNG",
    mode: str = "L",
    size: tuple[int, int] | None = None,
) -> bytes:
    """Encode a float image in [0, 1] as ``fmt`` in Pillow ``mode``, resized to ``size`` (W, H).

    Modes: "I;16" (16-bit gray), "L", "LA", "RGB", "RGBA", "P" (palette), "1".
    """
    values = np.clip(np.asarray(array, dtype=np.float32), 0.0, 1.0)
    image = Image.fromarray(values)
    if size is not None and size != image.size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    values = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    if mode == "I;16":
        out = Image.fromarray(np.rint(values * 65535).astype(np.uint16))
    else:
        out = Image.fromarray(np.rint(values * 255).astype(np.uint8)).convert(mode)
    buffer = io.BytesIO()
    options: dict[str, Any] = {"quality": 95} if fmt == "JPEG" else {}
    if fmt == "WEBP":
        options = {"lossless": True}
    out.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def image_response(
    data: bytes,
    mime_type: str = "image/png",
    text: str | None = None,
    finish_reason: str = "STOP",
) -> ScriptedResponse:
    """A successful answer carrying one image (and optionally text before it)."""
    parts: list[dict[str, Any]] = []
    if text is not None:
        parts.append({"text": text})
    parts.append(
        {"inlineData": {"mimeType": mime_type, "data": base64.b64encode(data).decode("ascii")}}
    )
    return _json(
        200,
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": parts},
                    "finishReason": finish_reason,
                    "index": 0,
                }
            ],
            "usageMetadata": {"promptTokenCount": 1, "totalTokenCount": 2},
        },
    )


def text_response(text: str, finish_reason: str = "STOP") -> ScriptedResponse:
    """An answer with text only, no image."""
    return _json(
        200,
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": text}]},
                    "finishReason": finish_reason,
                    "index": 0,
                }
            ]
        },
    )


def prompt_blocked(reason: str = "SAFETY") -> ScriptedResponse:
    """The request itself blocked: no candidates, ``promptFeedback.blockReason``."""
    return _json(200, {"promptFeedback": {"blockReason": reason}})


def answer_blocked(finish_reason: str = "IMAGE_SAFETY") -> ScriptedResponse:
    """A candidate stopped by a safety filter, without content."""
    return _json(200, {"candidates": [{"finishReason": finish_reason, "index": 0}]})


def corrupt_image(mime_type: str = "image/png") -> ScriptedResponse:
    """An answer whose image bytes are not a decodable image."""
    return image_response(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 16, mime_type=mime_type)


def http_error(
    status: int, message: str | None = None, retry_delay_s: float | None = None
) -> ScriptedResponse:
    """An HTTP error in Google's JSON error format (with RetryInfo when ``retry_delay_s``)."""
    details = []
    if retry_delay_s is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_delay_s}s"}
        )
    return _json(
        status,
        {
            "error": {
                "code": status,
                "message": message or f"fake error {status}",
                "status": _STATUS_NAMES.get(status, "UNKNOWN"),
                "details": details,
            }
        },
    )


def delayed(response: ScriptedResponse, seconds: float) -> ScriptedResponse:
    """``response`` sent only after ``seconds`` (longer than the client timeout to time out)."""
    return dataclasses.replace(response, delay_s=seconds)


def answer_from_request(
    draw: Callable[[np.ndarray], np.ndarray],
    size: tuple[int, int] | None = None,
    fmt: str = "PNG",
    mode: str = "L",
    text: str | None = None,
) -> Responder:
    """An answer computed from the request image.

    ``draw`` receives the request image as float in [0, 1] on the padded grid the client sent
    and returns the answer on that grid (float in [0, 1]); it is then resized to ``size`` (W, H)
    and encoded as ``fmt``/``mode``, the way a model answers at its own resolution.
    """
    mime_types = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}

    def respond(request: RecordedRequest) -> ScriptedResponse:
        answer = draw(request.image_array())
        return image_response(encode_image(answer, fmt, mode, size), mime_types[fmt], text)

    return respond


class FakeGeminiServer:
    """Threaded loopback server on 127.0.0.1 with a queue of scripted responses."""

    def __init__(self) -> None:
        self._queue: deque[Script] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.requests: list[RecordedRequest] = []
        self.handler_errors: list[str] = []
        self.default: Script = http_error(500, "fake server: no scripted response left")
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes; without this, Nagle's algorithm
                # and delayed ACKs add ~40 ms to every answer.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = None
                request = RecordedRequest(
                    method="POST",
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    raw=raw,
                    body=body,
                )
                response = server._next(request)
                if response.delay_s and server._stop.wait(response.delay_s):
                    return
                self._send(response)

            def do_GET(self) -> None:
                self._send(http_error(404, f"no such endpoint {self.path}"))

            def _send(self, response: ScriptedResponse) -> None:
                try:
                    self.send_response(response.status)
                    self.send_header("Content-Type", response.content_type)
                    self.send_header("Content-Length", str(len(response.body)))
                    self.end_headers()
                    self.wfile.write(response.body)
                except (BrokenPipeError, ConnectionResetError):
                    server.handler_errors.append("client went away before the answer")

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                server.handler_errors.append(f"handler error for {client_address}")

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def enqueue(self, *responses: Script) -> None:
        """Append responses (or responders computing one from the request) to the queue."""
        with self._lock:
            self._queue.extend(responses)

    def _next(self, request: RecordedRequest) -> ScriptedResponse:
        with self._lock:
            self.requests.append(request)
            script = self._queue.popleft() if self._queue else self.default
        if not _PATH.match(request.path):
            return http_error(404, f"unknown path {request.path}")
        return script(request) if callable(script) else script

    def close(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def fake_gemini() -> Iterator[tuple[FakeGeminiServer, str]]:
    """A running fake Gemini server and its base URL; closed after the test."""
    server = FakeGeminiServer()
    try:
        yield server, server.base_url
    finally:
        server.close()
