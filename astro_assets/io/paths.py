"""The data-root layout: every path the product reads or writes is resolved here.

Partition keys become path components, so they are sanitized to ``[A-Za-z0-9._-]`` and every
resolved path is checked to stay inside the data root.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

DATA_ROOT_ENV = "ASTRO_ASSETS_DATA"
DEFAULT_DATA_ROOT = "data"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
PARTITION_RANGE_SEPARATOR = "..."
"""Dagster's UI selects a range of partitions as ``first...last``, so no new key may hold it."""


class UnsafePathError(ValueError):
    """A partition key or relative path that would escape the data root or is not portable."""


def sanitize_key(name: str) -> str:
    """Turn a file stem or folder name into a partition key made of ``[A-Za-z0-9._-]``.

    Runs of other characters become a single ``_``; leading dots and dashes are removed, so
    that a key is never a hidden file, a ``..`` component, or read as an option on a command
    line (``--partition -rf``).

    Raises
    ------
    UnsafePathError
        If nothing usable is left.
    """
    key = _UNSAFE.sub("_", name).lstrip(".-")
    if not key or key.strip("_") == "":
        raise UnsafePathError(
            f"cannot derive a partition key from {name!r}: rename it to use letters, digits, "
            "'.', '_' or '-'"
        )
    return key


def check_key(key: str, *, new: bool = False) -> str:
    """Return ``key`` unchanged if it is a safe partition key, else raise ``UnsafePathError``.

    With ``new``, for a key about to be registered, a leading ``-`` is refused too, as a command
    line reads it as an option (``--partition -rf``), and so is ``...``, which Dagster's UI reads
    as a range of partitions. Keys registered before these rules stay readable, so the paths of
    an existing partition are resolved without them.
    """
    if not _SAFE_KEY.match(key) or key in {".", ".."}:
        raise UnsafePathError(
            f"partition key {key!r} is not a safe path component: use only letters, digits, "
            "'.', '_' or '-', not starting with '.'"
        )
    if new and key.startswith("-"):
        raise UnsafePathError(
            f"partition key {key!r} begins with '-', which a command line reads as an option"
        )
    if new and PARTITION_RANGE_SEPARATOR in key:
        raise UnsafePathError(
            f"partition key {key!r} holds '...', which Dagster reads as a range of partitions"
        )
    return key


def default_data_root() -> Path:
    """The data root: ``$ASTRO_ASSETS_DATA`` or ``./data``, made absolute."""
    return Path(os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT).expanduser().resolve()


@dataclass(frozen=True)
class DataLayout:
    """Where inputs and products live under one data root (see the README's data layout)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).expanduser().resolve())

    def resolve(self, *parts: str) -> Path:
        """Join ``parts`` under the root, refusing any result outside it."""
        path = self.root.joinpath(*parts).resolve()
        if path != self.root and self.root not in path.parents:
            raise UnsafePathError(f"path {'/'.join(parts)!r} escapes the data root {self.root}")
        return path

    @property
    def incoming_ser(self) -> Path:
        return self.resolve("incoming", "ser")

    @property
    def incoming_jobs(self) -> Path:
        return self.resolve("incoming", "jobs")

    @property
    def incoming_darks(self) -> Path:
        return self.resolve("incoming", "darks")

    def flatfield_dir(self, key: str) -> Path:
        return self.resolve("flatfield", check_key(key))

    def flatfield_file(self, key: str, name: str) -> Path:
        return self.flatfield_dir(key) / name

    @property
    def dataset_dir(self) -> Path:
        return self.resolve("dataset")

    @property
    def dataset_images_dir(self) -> Path:
        return self.resolve("dataset", "images")

    def job_tensor_file(self, jid: str) -> Path:
        return self.dataset_images_dir / f"{check_key(jid)}.npy"

    def job_dir(self, jid: str) -> Path:
        return self.incoming_jobs / check_key(jid)

    @property
    def models_dir(self) -> Path:
        return self.resolve("models")

    @property
    def cache_dir(self) -> Path:
        return self.resolve("cache")
