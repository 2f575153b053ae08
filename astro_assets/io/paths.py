"""The data-root layout: every path the product reads or writes is resolved here.

Partition keys become path components, so they are sanitized to ``[A-Za-z0-9._-]`` and every
resolved path is checked to stay inside the data root. A new key is at most
:data:`MAX_KEY_BYTES` long, so that every file named after it fits a file name.
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

NAME_MAX_BYTES = 255
"""The longest file or folder name, in bytes, that Linux (ext4, XFS, tmpfs, NFS) and macOS
accept."""

JOB_PRODUCT_SUFFIXES = (".npy", ".csv")
"""A job's products named after its key: ``images/<jid>.npy`` and ``candidates/<jid>.csv``."""

# Mirrors io.atomic: a product is written as ``.<name>.<16 hex digits>.partial<suffix>`` first
# (a test holds the two together).
_PARTIAL_TOKEN_HEX_DIGITS = 16


def _partial_name(name: str, token: str = "0" * _PARTIAL_TOKEN_HEX_DIGITS) -> str:
    """The name of the temporary file an atomic write of ``name`` goes through (its random
    token is ``token``)."""
    return f".{name}.{token}.partial{Path(name).suffix}"


def derived_names(key: str) -> tuple[str, ...]:
    """Every file or folder name the product derives from a partition key, longest last.

    A video's key names its flat-field folder ``flatfield/<key>/``, whose files all have fixed
    names. A job's key names its folder ``incoming/jobs/<jid>/``, its tensor
    ``images/<jid>.npy`` and candidates ``candidates/<jid>.csv``, and the temporary files these
    two are written through (``.<jid>.npy.<16 hex digits>.partial.npy``). A key does not say
    which kind it is, so both kinds' names are listed.
    """
    products = [f"{key}{suffix}" for suffix in JOB_PRODUCT_SUFFIXES]
    names = [key, *products, *(_partial_name(name) for name in products)]
    return tuple(sorted(names, key=lambda name: len(name.encode("utf-8"))))


# Measured on a one-byte key, as a name made of a suffix alone (".npy") has no suffix.
MAX_KEY_BYTES = NAME_MAX_BYTES - (len(derived_names("k")[-1].encode("utf-8")) - 1)
"""The longest new partition key, in bytes (221): the longest name derived from a key
(:func:`derived_names`) must fit in :data:`NAME_MAX_BYTES`."""


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
    as a range of partitions, and so is a key longer than :data:`MAX_KEY_BYTES`, as a file
    named after it would not fit (:func:`check_key_length`). Keys registered before these rules
    stay readable, so the paths of an existing partition are resolved without them.
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
    if new:
        check_key_length(key)
    return key


def check_key_length(key: str) -> str:
    """Return ``key`` unchanged if every name derived from it fits a file name, else raise.

    A key longer than :data:`MAX_KEY_BYTES` would make a file name (:func:`derived_names`)
    longer than the :data:`NAME_MAX_BYTES` a file system accepts, so that every run of its
    partition would fail. :func:`check_key` applies this to new keys; a key registered before
    the rule is refused by the assets that would write such a name, with the same message.

    Raises
    ------
    UnsafePathError
        If ``key`` is longer than :data:`MAX_KEY_BYTES`; the message gives the limit.
    """
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        longest = len(derived_names(key)[-1].encode("utf-8"))
        example = _partial_name("<key>.npy", "<16 hex digits>")
        raise UnsafePathError(
            f"partition key {key[:24]!r}... is {size} bytes long, more than the {MAX_KEY_BYTES} "
            f"a key may have: the files named after it, such as {example!r} ({longest} bytes "
            f"here), must fit the {NAME_MAX_BYTES}-byte limit on a file name, so it needs a name "
            f"of at most {MAX_KEY_BYTES} characters"
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

    def job_candidates_file(self, jid: str) -> Path:
        return self.resolve("dataset", "candidates") / f"{check_key(jid)}.csv"

    @property
    def withdrawn_dir(self) -> Path:
        """Where ``master_index`` moves the products of removed jobs: outside the published
        dataset folder, so that shipping that folder does not ship them."""
        return self.resolve("withdrawn")

    def job_dir(self, jid: str) -> Path:
        return self.incoming_jobs / check_key(jid)

    @property
    def models_dir(self) -> Path:
        return self.resolve("models")

    @property
    def cache_dir(self) -> Path:
        return self.resolve("cache")
