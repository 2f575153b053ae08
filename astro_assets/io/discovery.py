"""Finding new inputs under the data root: SER videos and job folders.

The sensors and ``astro-assets ingest`` share this code, so a file is registered the same way
whichever of them sees it first. A file that is still being copied is not picked up: it must
show the same size and modification time in two consecutive observations, or be older than a
settling time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from astro_assets.io.fits import is_job_complete, job_file_paths
from astro_assets.io.paths import UnsafePathError, check_key, sanitize_key

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
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SER_SUFFIXES)


def ser_key_for(path: Path) -> str:
    """The partition key of a SER file: its sanitized stem."""
    return sanitize_key(path.stem)


def _key_or_none(path: Path) -> str | None:
    """:func:`ser_key_for`, or None for a name no key can be derived from: such a file is
    refused where it is registered (``ingest``, the sensor) and is no other partition's."""
    try:
        return ser_key_for(path)
    except UnsafePathError:
        return None


def find_ser_for_key(folder: Path, key: str) -> Path:
    """The SER file under ``folder`` whose key is ``key``.

    Raises
    ------
    FileNotFoundError
        If no file, or more than one file, maps to ``key``.
    """
    matches = [p for p in list_ser_files(folder) if _key_or_none(p) == key]
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


def _scan(
    items: Iterable[tuple[str, Path]],
    *,
    known_keys: Iterable[str],
    pending: Mapping[str, Observation],
    settle_seconds: float,
    now_ns: int | None,
    observe: Callable[[Path], Observation | None],
    limit: int | None,
) -> tuple[list[Candidate], dict[str, Observation]]:
    """Settled, complete, unknown inputs among ``items`` (key, path), at most ``limit`` observed."""
    known = set(known_keys)
    ready: list[Candidate] = []
    next_pending: dict[str, Observation] = {}
    observed = 0
    for key, path in items:
        if key in known:
            continue
        if limit is not None and observed >= limit:
            if key in pending:
                next_pending[key] = pending[key]
            continue
        observed += 1
        observation = observe(path)
        if observation is None:
            continue
        previous = pending.get(key)
        if is_settled(observation, previous, now_ns=now_ns, settle_seconds=settle_seconds):
            ready.append(Candidate(key, path, observation))
        else:
            next_pending[key] = observation
    return ready, next_pending


def scan_ser_files(
    folder: Path,
    *,
    known_keys: Iterable[str],
    pending: Mapping[str, Observation],
    settle_seconds: float = 30.0,
    now_ns: int | None = None,
    limit: int | None = None,
) -> Discovery:
    """Find SER files in ``folder`` that are new and settled.

    Parameters
    ----------
    folder : Path
        Directory holding ``*.ser`` inputs.
    known_keys : iterable of str
        Partition keys already registered; their files are not reported again.
    pending : mapping of partition key to Observation
        What the previous scan saw of inputs not yet ready (the sensor cursor).
    settle_seconds : float
        Age after which an unchanged file counts as complete even without a previous observation.
    limit : int, optional
        At most this many new files are examined per scan; the rest wait for the next one.

    Returns
    -------
    Discovery
        ``ready`` candidates (new keys, settled, one per key), the ``pending`` map for the next
        scan, and ``rejected`` messages (unusable names, key collisions).
    """
    rejected: list[str] = []
    by_key: dict[str, list[Path]] = {}
    for path in list_ser_files(folder):
        try:
            by_key.setdefault(ser_key_for(path), []).append(path)
        except UnsafePathError as error:
            rejected.append(str(error))
    items = []
    for key, paths in sorted(by_key.items()):
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            rejected.append(f"files {names} all map to partition {key!r}: rename all but one")
        else:
            items.append((key, paths[0]))
    ready, next_pending = _scan(
        items,
        known_keys=known_keys,
        pending=pending,
        settle_seconds=settle_seconds,
        now_ns=now_ns,
        observe=observe_file,
        limit=limit,
    )
    return Discovery(tuple(ready), next_pending, tuple(rejected))


def scan_paired_darks(
    folder: Path,
    *,
    partition_keys: Iterable[str],
    handled: Mapping[str, Observation],
    pending: Mapping[str, Observation],
    kept: Mapping[str, Path] | None = None,
    settle_seconds: float = 30.0,
    now_ns: int | None = None,
) -> Discovery:
    """Find the dark videos of the videos' partitions that are new or changed.

    A partition's dark is ``kept[key]`` where given (the dark an earlier run of ``ser_median``
    was given, wherever it lies), else the dark in ``folder`` whose name makes the partition's
    key: the one ``ser_median`` subtracts when no dark is configured.

    Parameters
    ----------
    folder : Path
        Directory holding the dark videos, ``*.ser``.
    partition_keys : iterable of str
        Keys of the videos' partitions; a dark in ``folder`` pairs with the one of its own key.
    handled : mapping of partition key to Observation
        What was last seen of each dark whose run was requested (or that needed none).
    pending : mapping of partition key to Observation
        What the previous scan saw of darks still changing.
    kept : mapping of partition key to Path, optional
        The darks kept for some partitions; a missing file is not reported (``ser_median``
        fails on it with what to do).
    settle_seconds : float
        As for :func:`is_settled`.

    Returns
    -------
    Discovery
        ``ready``: settled darks of a known partition that differ from ``handled``;
        ``pending`` for the next scan; ``rejected``: names in ``folder`` that make no
        partition key.
    """
    keys = set(partition_keys)
    darks: dict[str, Path] = {}
    rejected: list[str] = []
    for path in list_ser_files(folder):
        try:
            key = ser_key_for(path)
        except UnsafePathError as error:
            rejected.append(str(error))
            continue
        if key in keys:
            darks[key] = path
    darks.update({key: path for key, path in (kept or {}).items() if key in keys})
    ready: list[Candidate] = []
    next_pending: dict[str, Observation] = {}
    for key, path in sorted(darks.items()):
        if not path.is_file():
            continue
        observation = observe_file(path)
        if handled.get(key) == observation:
            continue
        if is_settled(observation, pending.get(key), now_ns=now_ns, settle_seconds=settle_seconds):
            ready.append(Candidate(key, path, observation))
        else:
            next_pending[key] = observation
    return Discovery(tuple(ready), next_pending, tuple(rejected))


def observe_job_folder(folder: Path) -> Observation | None:
    """Total size and newest modification time of a complete job folder; None if incomplete."""
    if not is_job_complete(folder):
        return None
    observations = [observe_file(path) for path in job_file_paths(folder).values()]
    return Observation(sum(o.size for o in observations), max(o.mtime_ns for o in observations))


def vanished_job_keys(folder: Path, known_keys: Iterable[str]) -> list[str]:
    """The registered job keys whose folder is no longer under ``folder``, sorted.

    A job's folder name is its key. When ``folder`` itself is missing (a data disk not
    mounted) nothing counts as vanished: the jobs may come back.
    """
    if not folder.is_dir():
        return []
    return sorted(key for key in set(known_keys) if not (folder / key).is_dir())


def scan_job_folders(
    folder: Path,
    *,
    known_keys: Iterable[str],
    pending: Mapping[str, Observation],
    settle_seconds: float = 30.0,
    now_ns: int | None = None,
    limit: int | None = None,
) -> Discovery:
    """Find job folders under ``folder`` that are new, complete and settled.

    A folder counts only when all five contract files are present and non-empty and none of them
    changed since the previous scan (or for ``settle_seconds``). Its name is its partition key and
    is never rewritten: a name that is not a safe key is reported in ``rejected``. ``limit``
    bounds the folders examined per scan (listing names is cheap; checking files is not), so a
    sensor stays inside its time budget with thousands of folders.
    """
    if not folder.is_dir():
        return Discovery((), {}, ())
    rejected: list[str] = []
    items = []
    known = set(known_keys)
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.is_dir() or entry.name in known:
            continue
        try:
            items.append((check_key(entry.name), Path(entry.path)))
        except UnsafePathError as error:
            rejected.append(f"job folder {entry.name!r}: {error}; rename the folder")
    ready, next_pending = _scan(
        items,
        known_keys=known,
        pending=pending,
        settle_seconds=settle_seconds,
        now_ns=now_ns,
        observe=observe_job_folder,
        limit=limit,
    )
    return Discovery(tuple(ready), next_pending, tuple(rejected))
