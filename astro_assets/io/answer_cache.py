"""On-disk cache of image-model answers, so a re-run never pays for the same request twice.

An answer is identified by what determines it: the request image (its sha256), the prompt, the
model, the requested image size and the attempt number (a new attempt is a deliberate re-roll
and gets its own entry; earlier attempts stay on disk and can be listed). Credentials are never
part of a key, a file name or a file.

Layout under ``root``::

    <group>/attempt-<NNN>-<image_size>-<entry[:16]>.<ext>   # the answer image as received
    <group>/attempt-<NNN>-<image_size>-<entry[:16]>.json    # what produced it, and its sha256

``group`` hashes (input, prompt, model), so all attempts of one request sit in one folder. The
image is written first and the JSON record last, both atomically: an entry without its record
is incomplete and is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from astro_assets.io.atomic import atomic_write_bytes, atomic_write_text

_EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/bmp": "bmp",
    "image/tiff": "tiff",
}
_SAFE_LABEL = re.compile(r"^[A-Za-z0-9]{1,16}$")
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class CacheCorruptError(RuntimeError):
    """A cached answer does not match its recorded checksum."""


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _digest(*parts: str) -> str:
    return sha256_hex(json.dumps(parts, ensure_ascii=True).encode("utf-8"))


@dataclass(frozen=True)
class CachedAnswer:
    """One stored answer.

    Attributes
    ----------
    attempt : int
        Re-roll number the answer belongs to.
    image_size : str
        Requested size label, e.g. ``"2K"``.
    mime_type : str
        MIME type reported with the answer.
    path : pathlib.Path
        The answer image file.
    record_path : pathlib.Path
        The JSON record beside it.
    sha256 : str
        Hex digest of the answer bytes.
    created_utc : str
        ISO 8601 time the answer was stored.
    text : str or None
        Text the model sent along with the image.
    """

    attempt: int
    image_size: str
    mime_type: str
    path: Path
    record_path: Path
    sha256: str
    created_utc: str
    text: str | None

    def read(self) -> bytes:
        """The answer bytes, verified against the recorded checksum."""
        data = self.path.read_bytes()
        if sha256_hex(data) != self.sha256:
            raise CacheCorruptError(
                f"cached answer {self.path} does not match its recorded sha256; delete it and "
                f"{self.record_path.name} to request the answer again"
            )
        return data

    def describe(self) -> dict[str, Any]:
        """JSON-serializable summary for metadata."""
        return {
            "attempt": self.attempt,
            "image_size": self.image_size,
            "path": str(self.path),
            "sha256": self.sha256,
            "created_utc": self.created_utc,
        }


class AnswerCache:
    """Answers stored under ``root`` (created on first write)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"AnswerCache({str(self.root)!r})"

    @staticmethod
    def _check(input_hash: str, image_size: str | None, attempt: int | None) -> None:
        if not _HEX_DIGEST.match(input_hash):
            raise ValueError(
                f"input_hash must be a lowercase hex sha256 digest (64 characters), got "
                f"{input_hash[:80]!r}; pass sha256_hex(request_image_bytes)"
            )
        if image_size is not None and not _SAFE_LABEL.match(image_size):
            raise ValueError(
                f"image_size must be 1-16 letters or digits (e.g. '2K'), got {image_size!r}"
            )
        if attempt is not None and (isinstance(attempt, bool) or attempt < 0):
            raise ValueError(f"attempt must be a non-negative integer, got {attempt!r}")

    def _group_dir(self, input_hash: str, prompt: str, model: str) -> Path:
        return self.root / _digest("group", input_hash, prompt, model)[:32]

    def _stem(self, input_hash: str, prompt: str, model: str, image_size: str, attempt: int) -> str:
        entry = _digest("entry", input_hash, prompt, model, image_size, str(attempt))
        return f"attempt-{attempt:03d}-{image_size}-{entry[:16]}"

    def get(
        self, input_hash: str, prompt: str, model: str, image_size: str, attempt: int
    ) -> CachedAnswer | None:
        """The stored answer for exactly this request, or None."""
        self._check(input_hash, image_size, attempt)
        record = self._group_dir(input_hash, prompt, model) / (
            self._stem(input_hash, prompt, model, image_size, attempt) + ".json"
        )
        if not record.is_file():
            return None
        answer = self._load(record)
        return answer if answer.path.is_file() else None

    def put(
        self,
        input_hash: str,
        prompt: str,
        model: str,
        image_size: str,
        attempt: int,
        data: bytes,
        mime_type: str,
        text: str | None = None,
    ) -> CachedAnswer:
        """Store an answer atomically and return its entry (overwrites the same request)."""
        self._check(input_hash, image_size, attempt)
        if not data:
            raise ValueError("refusing to cache an empty answer")
        group = self._group_dir(input_hash, prompt, model)
        stem = self._stem(input_hash, prompt, model, image_size, attempt)
        extension = _EXTENSIONS.get(mime_type.lower(), "bin")
        path = atomic_write_bytes(group / f"{stem}.{extension}", data)
        record = {
            "attempt": attempt,
            "image_size": image_size,
            "model": model,
            "mime_type": mime_type,
            "input_sha256": input_hash,
            "prompt_sha256": sha256_hex(prompt.encode("utf-8")),
            "prompt": prompt,
            "file": path.name,
            "sha256": sha256_hex(data),
            "bytes": len(data),
            "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "text": text,
        }
        record_path = atomic_write_text(
            group / f"{stem}.json", json.dumps(record, indent=2, sort_keys=True)
        )
        return self._load(record_path)

    def list_attempts(self, input_hash: str, prompt: str, model: str) -> list[CachedAnswer]:
        """Every complete stored attempt of this request, ordered by attempt then image size."""
        self._check(input_hash, None, None)
        group = self._group_dir(input_hash, prompt, model)
        if not group.is_dir():
            return []
        answers = [self._load(record) for record in sorted(group.glob("attempt-*.json"))]
        answers = [answer for answer in answers if answer.path.is_file()]
        return sorted(answers, key=lambda answer: (answer.attempt, answer.image_size))

    @staticmethod
    def _load(record_path: Path) -> CachedAnswer:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        file_name = str(record["file"])
        if Path(file_name).name != file_name or file_name.startswith("."):
            raise CacheCorruptError(
                f"cache record {record_path} points outside its folder ({file_name!r}); delete it"
            )
        return CachedAnswer(
            attempt=int(record["attempt"]),
            image_size=str(record["image_size"]),
            mime_type=str(record["mime_type"]),
            path=record_path.parent / file_name,
            record_path=record_path,
            sha256=str(record["sha256"]),
            created_utc=str(record["created_utc"]),
            text=record.get("text"),
        )
