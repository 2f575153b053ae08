"""Finding new inputs under the data root: SER videos and job folders.

The sensors and ``astro-assets ingest`` share this code, so a file is registered the same way
whichever of them sees it first. A file that is still being copied is not picked up: it must
show the same size and modification time in two consecutive observations, or be older than a
settling time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from astro_assets.io.paths import UnsafePathError, sanitize_key

SER_SUFFIXES = frozenset({".ser"})


@dataclass(frozen=True)
class Observation:
    """What was seen of one input: its size and modification time."""

    size: int
    mtime_ns: int

    def to_json(self) -> list[int]:
        return [self.size, self.mtime_ns]

    @classmethod
    def from_json(cls, value: Iterable[int]) -> Observation:
        size, mtime_ns = value
        return cls(int(size), int(mtime_ns))


@dataclass(frozen=True)
class Candidate:
    """An input found on disk, with the partition key it maps to."""

    key: str
    path: Path
    observation: Observation

    @property
    def run_key(self) -> str:
        """Deterministic: the same file content state always gives the same run key."""
        return f"{self.key}:{self.observation.size}:{self.observation.mtime_ns}"


@dataclass(frozen=True)
class Discovery:
    """The outcome of one scan."""

    ready: tuple[Candidate, ...]
    pending: dict[str, Observation]
    rejected: tuple[str, ...]


def observe_file(path: Path) -> Observation:
    stat = path.stat()
    return Observation(stat.st_size, stat.st_mtime_ns)


def list_ser_files(folder: Path) -> list[Path]:
    """``*.ser`` files (any case) directly inside ``folder``, sorted; empty if it is missing."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SER_SUFFIXES
    )


def ser_key_for(path: Path) -> str:
    """The partition key of a SER file: its sanitized stem."""
    return sanitize_key(path.stem)


def find_ser_for_key(folder: Path, key: str) -> Path:
    """The SER file under ``folder`` whose key is ``key``.

    Raises
    ------
    FileNotFoundError
        If no file, or more than one file, maps to ``key``.
    """
    matches = [p for p in list_ser_files(folder) if ser_key_for(p) == key]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise FileNotFoundError(
            f"no SER file for partition {key!r} in {folder}: the file was moved or renamed; "
            "put it back or delete the partition"
        )
    names = ", ".join(p.name for p in matches)
    raise FileNotFoundError(
        f"several SER files map to partition {key!r} in {folder} ({names}): rename all but one"
    )


def is_settled(
    observation: Observation,
    previous: Observation | None,
    *,
    now_ns: int | None = None,
    settle_seconds: float = 30.0,
) -> bool:
    """True when an input has stopped changing.

    Either it looks the same as in the previous observation, or it has not been modified for
    ``settle_seconds``.
    """
    if previous is not None and previous == observation:
        return True
    now_ns = time.time_ns() if now_ns is None else now_ns
    return (now_ns - observation.mtime_ns) >= settle_seconds * 1e9


def scan_ser_files(
    folder: Path,
    *,
    known_keys: Iterable[str],
    pending: Mapping[str, Observation],
    settle_seconds: float = 30.0,
    now_ns: int | None = None,
) -> Discovery:
    """Find SER files in ``folder`` that are new and settled.

    Parameters
    ----------
    folder : Path
        Directory holding ``*.ser`` inputs.
    known_keys : iterable of str
        Partition keys already registered; their files are not reported again.
    pending : mapping of file name to Observation
        What the previous scan saw of files not yet ready (the sensor cursor).
    settle_seconds : float
        Age after which an unchanged file counts as complete even without a previous observation.

    Returns
    -------
    Discovery
        ``ready`` candidates (new keys, settled, one per key), the ``pending`` map for the next
        scan, and ``rejected`` messages (unusable names, key collisions).
    """
    known = set(known_keys)
    ready: list[Candidate] = []
    next_pending: dict[str, Observation] = {}
    rejected: list[str] = []
    by_key: dict[str, list[Path]] = {}
    for path in list_ser_files(folder):
        try:
            by_key.setdefault(ser_key_for(path), []).append(path)
        except UnsafePathError as error:
            rejected.append(str(error))
    for key, paths in sorted(by_key.items()):
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            rejected.append(f"files {names} all map to partition {key!r}: rename all but one")
            continue
        if key in known:
            continue
        path = paths[0]
        observation = observe_file(path)
        if is_settled(
            observation,
            pending.get(path.name),
            now_ns=now_ns,
            settle_seconds=settle_seconds,
        ):
            ready.append(Candidate(key, path, observation))
        else:
            next_pending[path.name] = observation
    return Discovery(tuple(ready), next_pending, tuple(rejected))
