"""Finding new, changed and removed inputs under the data root: SER videos and job folders.

The sensors and ``astro-assets ingest`` share this code, so a file is registered the same way
whichever of them sees it first. A file that is still being copied is not picked up: it must
show the same size and modification time in two consecutive observations, or be older than a
settling time. Each scan lists its folder once and also says which registered inputs are still
there (``present``) and which are gone (``vanished``), and why each entry it cannot use was
skipped or refused.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from astro_assets.io.fits import AmbiguousJobFileError, MissingJobFileError, job_file_paths
from astro_assets.io.paths import UnsafePathError, check_key, sanitize_key

SER_SUFFIXES = frozenset({".ser"})
PARTITION_RANGE_SEPARATOR = "..."
"""Dagster's UI selects a range of partitions as ``first...last``, so no key may hold it."""


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
    """The outcome of one scan.

    Attributes
    ----------
    ready : tuple of Candidate
        Inputs to register (or, from :func:`scan_changes`, to run again): settled, one per key.
    pending : dict of partition key to Observation
        Inputs still changing, for the next scan.
    rejected : tuple of str
        Inputs whose name makes no usable partition key, each with the rename to do.
    skipped : tuple of str
        Entries that are no input (a stray file) or an input not usable yet (a job folder
        missing a file), each with why and what to do.
    present : dict of partition key to Path
        The registered keys whose input is on disk, with its path.
    vanished : tuple of str
        The registered keys whose input is gone, sorted; empty when the folder itself is
        missing (a data disk not mounted), as the inputs may come back.
    """

    ready: tuple[Candidate, ...]
    pending: dict[str, Observation]
    rejected: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    present: dict[str, Path] = field(default_factory=dict)
    vanished: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScanState:
    """What a sensor keeps between ticks in its cursor.

    Attributes
    ----------
    pending : dict of partition key to Observation
        Inputs seen still changing.
    handled : dict of partition key to Observation
        What was seen of each registered input when it was registered or last run; only
        registered inputs on disk are kept, so it holds one entry per partition at most.
    resume_after : str or None
        The registered key the last scan for changes stopped at, when it could not examine all.
    """

    pending: dict[str, Observation] = field(default_factory=dict)
    handled: dict[str, Observation] = field(default_factory=dict)
    resume_after: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "pending": {k: o.to_json() for k, o in sorted(self.pending.items())},
                "handled": {k: o.to_json() for k, o in sorted(self.handled.items())},
                "resume_after": self.resume_after,
            }
        )

    @classmethod
    def from_json(cls, cursor: str | None) -> ScanState:
        """Read a cursor, also the earlier format (a map of key to observation of the inputs
        still changing, the ``pending`` alone); one that cannot be read starts afresh, as
        the first tick does."""
        try:
            raw = json.loads(cursor) if cursor else {}
            if not isinstance(raw.get("pending"), dict):
                return cls(pending=_observations(raw))
            return cls(
                pending=_observations(raw["pending"]),
                handled=_observations(raw.get("handled") or {}),
                resume_after=resume if isinstance(resume := raw.get("resume_after"), str) else None,
            )
        except (ValueError, TypeError, AttributeError):
            return cls()


def _observations(values: Mapping[str, Iterable[int]]) -> dict[str, Observation]:
    return {str(key): Observation.from_json(value) for key, value in values.items()}


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


def check_new_key(key: str) -> str:
    """Return ``key`` if a new partition may take it, else raise ``UnsafePathError``.

    Beyond :func:`~astro_assets.io.paths.check_key` (letters, digits, ``.``, ``_``, ``-``, no
    leading dot: no whitespace, path separator or control character), a new key may not begin
    with ``-``, which a command line reads as an option (``--partition -rf``), nor hold ``...``,
    which Dagster's UI reads as a range of partitions. Keys registered before these rules stay
    valid: only new ones are refused.
    """
    check_key(key)
    if key.startswith("-"):
        raise UnsafePathError(
            f"partition key {key!r} begins with '-', which a command line reads as an option"
        )
    if PARTITION_RANGE_SEPARATOR in key:
        raise UnsafePathError(
            f"partition key {key!r} holds '...', which Dagster reads as a range of partitions"
        )
    return key


MAX_QUOTED_MESSAGES = 3
"""Messages :func:`not_used_message` quotes; a sensor's log has them all."""


def not_used_message(rejected: Iterable[str], skipped: Iterable[str]) -> str | None:
    """One line naming the inputs a scan could not use (a sensor tick's skip reason), or None
    when there are none."""
    messages = [*rejected, *skipped]
    if not messages:
        return None
    more = len(messages) - MAX_QUOTED_MESSAGES
    quoted = messages[:MAX_QUOTED_MESSAGES] + ([f"{more} more in the log"] if more > 0 else [])
    return f"{len(messages)} input(s) not used: " + " | ".join(quoted)


def _suggested_name(name: str, suffix: str = "") -> str:
    """``"; rename ..."`` advice naming a usable name for ``name``, if one can be derived."""
    try:
        key = re.sub(r"\.{2,}", ".", sanitize_key(name)).strip(".")
        check_new_key(key)
    except UnsafePathError:
        return ""
    return f", e.g. to {key + suffix!r}"


def _listing(folder: Path) -> list[os.DirEntry[str]] | None:
    """The entries of ``folder`` sorted by name, or None when it is not a folder."""
    if not folder.is_dir():
        return None
    with os.scandir(folder) as entries:
        return sorted(entries, key=lambda entry: entry.name)


def _is_beside(name: str, stems: set[str]) -> bool:
    """Whether ``name`` is a file kept beside an input (``<stem>.truth.npz``, a capture log):
    its name is one of ``stems`` followed by a dot and more."""
    return any(name[:i] in stems for i, char in enumerate(name) if char == "." and i > 0)


def _observe_or_problem(
    observe: Callable[[Path], Observation | str], path: Path
) -> Observation | str:
    try:
        return observe(path)
    except OSError as error:
        return f"{path} could not be read ({error.strerror or error}); it is tried again later"


def _scan(
    items: Iterable[tuple[str, Path]],
    *,
    known_keys: Iterable[str],
    pending: Mapping[str, Observation],
    settle_seconds: float,
    now_ns: int | None,
    observe: Callable[[Path], Observation | str],
    limit: int | None,
    handled: Mapping[str, Observation] | None = None,
) -> tuple[list[Candidate], dict[str, Observation], list[str]]:
    """Settled inputs among ``items`` (key, path) whose key is not known, at most ``limit``
    observed; with ``handled``, only those that look otherwise than there.

    ``observe`` returns an input's observation, or why it cannot be used yet; those reasons are
    returned third.
    """
    known = set(known_keys)
    handled = handled or {}
    ready: list[Candidate] = []
    next_pending: dict[str, Observation] = {}
    problems: list[str] = []
    observed = 0
    for key, path in items:
        if key in known:
            continue
        if limit is not None and observed >= limit:
            if key in pending:
                next_pending[key] = pending[key]
            continue
        observed += 1
        observation = _observe_or_problem(observe, path)
        if isinstance(observation, str):
            problems.append(observation)
            continue
        if handled.get(key) == observation:
            continue
        previous = pending.get(key)
        if is_settled(observation, previous, now_ns=now_ns, settle_seconds=settle_seconds):
            ready.append(Candidate(key, path, observation))
        else:
            next_pending[key] = observation
    return ready, next_pending, problems


def scan_ser_files(
    folder: Path,
    *,
    known_keys: Iterable[str],
    pending: Mapping[str, Observation],
    settle_seconds: float = 30.0,
    now_ns: int | None = None,
    limit: int | None = None,
) -> Discovery:
    """Find SER files in ``folder`` that are new and settled, and the registered ones gone.

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
        scan, ``rejected`` messages (unusable names, key collisions), ``skipped`` entries that
        are no video (a file that is not a SER file, a folder; files named after a video, such
        as ``<name>.truth.npz``, and hidden files are not reported), the registered keys whose
        video is ``present`` (with the same name-to-key rule as :func:`find_ser_for_key`, any
        case of ``.ser``) and those whose video has ``vanished``.
    """
    entries = _listing(folder)
    if entries is None:
        return Discovery((), {}, ())
    known = set(known_keys)
    rejected: list[str] = []
    skipped: list[str] = []
    by_key: dict[str, list[Path]] = {}
    videos = [e for e in entries if e.is_file() and Path(e.name).suffix.lower() in SER_SUFFIXES]
    stems = {Path(entry.name).stem for entry in videos}
    video_names = {entry.name for entry in videos}
    for entry in entries:
        if entry.name in video_names:
            path = Path(entry.path)
            try:
                by_key.setdefault(ser_key_for(path), []).append(path)
            except UnsafePathError as error:
                rejected.append(str(error))
        elif entry.name.startswith(".") or _is_beside(entry.name, stems):
            continue
        elif entry.is_dir():
            skipped.append(
                f"folder {entry.name!r} in {folder}: videos are read only directly in "
                f"{folder.name}/, not in folders inside it; move them up to register them"
            )
        else:
            skipped.append(
                f"{entry.name!r} in {folder}: not a file ending in .ser, so not a video to "
                "register; move it out of the folder (or, if it is a SER video, give it the "
                ".ser extension)"
            )
    items = []
    present: dict[str, Path] = {}
    for key, paths in sorted(by_key.items()):
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            rejected.append(f"files {names} all map to partition {key!r}: rename all but one")
        elif key in known:
            present[key] = paths[0]
        else:
            try:
                items.append((check_new_key(key), paths[0]))
            except UnsafePathError as error:
                rejected.append(
                    f"video {paths[0].name!r}: {error}; rename the file"
                    + _suggested_name(key, paths[0].suffix)
                )
    ready, next_pending, problems = _scan(
        items,
        known_keys=known,
        pending=pending,
        settle_seconds=settle_seconds,
        now_ns=now_ns,
        observe=observe_file,
        limit=limit,
    )
    return Discovery(
        tuple(ready),
        next_pending,
        tuple(rejected),
        skipped=tuple(skipped + problems),
        present=present,
        vanished=tuple(sorted(known - by_key.keys())),
    )


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


def job_folder_state(folder: Path) -> Observation | str:
    """Total size and newest modification time of a complete job folder, or why it is not one.

    Complete means all five contract files present, none ambiguous (``.fits`` beside
    ``.fits.gz``) and none empty (a file of zero bytes is still being created).
    """
    try:
        paths = job_file_paths(folder)
    except (MissingJobFileError, AmbiguousJobFileError) as error:
        return str(error)
    observations = {path.name: observe_file(path) for path in paths.values()}
    empty = [name for name, observation in observations.items() if observation.size == 0]
    if empty:
        return (
            f"job folder {folder} has {len(empty)} empty file(s): {', '.join(empty)}; wait "
            "until the copy has finished, or replace them"
        )
    return Observation(
        sum(o.size for o in observations.values()),
        max(o.mtime_ns for o in observations.values()),
    )


def observe_job_folder(folder: Path) -> Observation | None:
    """Total size and newest modification time of a complete job folder; None if incomplete."""
    state = job_folder_state(folder)
    return state if isinstance(state, Observation) else None


def scan_job_folders(
    folder: Path,
    *,
    known_keys: Iterable[str],
    pending: Mapping[str, Observation],
    settle_seconds: float = 30.0,
    now_ns: int | None = None,
    limit: int | None = None,
) -> Discovery:
    """Find job folders under ``folder`` that are new, complete and settled, and the registered
    ones gone.

    A folder counts only when all five contract files are present and non-empty and none of them
    changed since the previous scan (or for ``settle_seconds``); one that is not complete is
    reported in ``skipped`` with the files it lacks. Its name is its partition key and is never
    rewritten: a name that is not a safe key (:func:`check_new_key`) is reported in ``rejected``.
    A file directly in ``folder`` is reported in ``skipped``, unless it is named after a job
    folder (``<jid>.truth.json``) or hidden. ``limit`` bounds the new folders examined per scan
    (listing names is cheap; checking files is not), so a sensor stays inside its time budget
    with thousands of folders. ``folder`` is listed once; ``present`` and ``vanished`` say which
    registered jobs still have their folder.
    """
    entries = _listing(folder)
    if entries is None:
        return Discovery((), {}, ())
    known = set(known_keys)
    rejected: list[str] = []
    skipped: list[str] = []
    items = []
    present: dict[str, Path] = {}
    folders = {entry.name for entry in entries if entry.is_dir()}
    for entry in entries:
        if entry.name in folders:
            if entry.name in known:
                present[entry.name] = Path(entry.path)
                continue
            try:
                items.append((check_new_key(entry.name), Path(entry.path)))
            except UnsafePathError as error:
                rejected.append(
                    f"job folder {entry.name!r}: {error}; rename the folder"
                    + _suggested_name(entry.name)
                )
        elif not entry.name.startswith(".") and not _is_beside(entry.name, folders):
            skipped.append(
                f"{entry.name!r} in {folder}: not a folder, so not a job; a job is a folder "
                "holding the four FITS images and psfcat.csv: move the file out of the folder"
            )
    ready, next_pending, problems = _scan(
        items,
        known_keys=known,
        pending=pending,
        settle_seconds=settle_seconds,
        now_ns=now_ns,
        observe=job_folder_state,
        limit=limit,
    )
    return Discovery(
        tuple(ready),
        next_pending,
        tuple(rejected),
        skipped=tuple(skipped + problems),
        present=present,
        vanished=tuple(sorted(known - folders)),
    )


def scan_changes(
    inputs: Mapping[str, Path],
    *,
    handled: Mapping[str, Observation],
    pending: Mapping[str, Observation],
    observe: Callable[[Path], Observation | str] = observe_file,
    settle_seconds: float = 30.0,
    now_ns: int | None = None,
    limit: int | None = None,
    resume_after: str | None = None,
) -> tuple[Discovery, str | None]:
    """Find registered inputs whose files changed since they were last handled, once settled.

    Parameters
    ----------
    inputs : mapping of partition key to Path
        The registered inputs on disk (a scan's ``present``).
    handled : mapping of partition key to Observation
        What was seen of each input when it was last registered or run; an input without an
        entry is reported as well (the caller decides what a first sight means).
    pending : mapping of partition key to Observation
        What the previous scan saw of inputs still changing.
    observe : callable
        An input's observation, or why it cannot be used (``job_folder_state``).
    settle_seconds : float
        As for :func:`is_settled`.
    limit : int, optional
        At most this many inputs are examined, in key order from after ``resume_after`` and
        round again, so that every input is examined within a few scans.
    resume_after : str, optional
        The key the previous scan stopped at.

    Returns
    -------
    tuple of (Discovery, str or None)
        ``ready``: settled inputs that look otherwise than in ``handled``; ``pending`` for the
        next scan; ``skipped``: inputs that cannot be used now, with why. Then the key to
        resume after, or None when every input was examined.
    """
    keys = sorted(inputs)
    if resume_after is not None:
        keys = [k for k in keys if k > resume_after] + [k for k in keys if k <= resume_after]
    ready, next_pending, problems = _scan(
        [(key, inputs[key]) for key in keys],
        known_keys=(),
        pending=pending,
        settle_seconds=settle_seconds,
        now_ns=now_ns,
        observe=observe,
        limit=limit,
        handled=handled,
    )
    resume = keys[limit - 1] if limit is not None and len(keys) > limit else None
    return Discovery(tuple(ready), next_pending, (), skipped=tuple(problems)), resume
