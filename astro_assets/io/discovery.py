"""Finding new, changed and removed inputs under the data root: SER videos and job folders.

The sensors and ``astro-assets ingest`` share this code, so a file is registered the same way
whichever of them sees it first. A file that is still being copied is not picked up: it must
show the same size and modification time in two consecutive observations, or be older than a
settling time. Each scan lists its folder once and also says which registered inputs are still
there (``present``), which cannot be reached now (``unavailable``: a link to a disk not
mounted) and which are gone (``vanished``), and why each entry it cannot use was skipped or
refused. A registered input is removed only once it has been missing on two looks some time
apart (:func:`confirm_vanished`), and never from a folder that cannot be listed or that lists
no input at all (an unmounted mount point is an empty folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from astro_assets.io.fits import (
    PARTIAL_SUFFIXES,
    AmbiguousJobFileError,
    MissingJobFileError,
    PartialJobFileError,
    job_file_paths,
)
from astro_assets.io.paths import UnsafePathError, check_key, sanitize_key

SER_SUFFIXES = frozenset({".ser"})
IGNORED_NAMES = frozenset({"lost+found"})
"""System folders an incoming folder may hold (a file system's root); never inputs."""
SETTLE_SECONDS = 30.0
"""An input unchanged between two looks, or not modified for this long, is taken as complete
(a copy in progress keeps changing its size or modification time)."""
VANISH_GRACE_SECONDS = 60.0
"""How long a registered input must stay missing before a sensor removes its partition."""
TRUTH_SUFFIXES = (".truth.npz", ".truth.json")
"""Name endings of the ground truth the sample writers put beside an input; never inputs."""
SAMPLE_BYTES = 64 * 1024
"""Bytes :func:`content_sample` reads at each of its three places in a large file."""
WHOLE_SAMPLE_BYTES = 256 * 1024
"""Files up to this size are sampled whole; ``psfcat.csv`` is always read whole."""
MAX_REMEMBERED_INCOMPLETE = 5000
"""Incomplete job folders a cursor remembers; more are examined again, in turn."""
INCOMPLETE_RECHECK_SECONDS = 600.0
"""How long an incomplete job folder is passed over at most, even if its own time is unchanged.

Some file systems (s3fs and other FUSE mounts, SMB) do not update a folder's modification time
when a file is added, so the time alone could pass a folder over forever.
"""


@dataclass(frozen=True)
class Observation:
    """What was seen of one input: its size, modification time and, for a job folder, digests.

    ``digest`` covers every file's name, size, times and inode: cheap to take, it changes with
    any change, also of metadata alone (``chmod``, ``touch``, a copy). ``sample`` covers every
    file's name, size and content, sampled for a large image, whose modification time it also
    holds (:func:`job_folder_sample`): it is read only when the digest changed, to tell a new
    content from new metadata. A single file has neither (``""``).
    """

    size: int
    mtime_ns: int
    digest: str = ""
    sample: str = ""

    def to_json(self) -> list[int | str]:
        extra = [self.digest, self.sample] if self.sample else [self.digest] if self.digest else []
        return [self.size, self.mtime_ns, *extra]

    @classmethod
    def from_json(cls, value: Iterable[int | str]) -> Observation:
        size, mtime_ns, *extra = value
        if len(extra) > 2:
            raise ValueError(f"not an observation: {value!r}")
        digest, sample = [str(item) for item in extra] + [""] * (2 - len(extra))
        return cls(int(size), int(mtime_ns), digest, sample)

    def same_as(self, earlier: Observation | None) -> bool:
        """Whether this looks as ``earlier`` did by size, time and digest (not ``sample``).

        An earlier one without a digest (a cursor written before digests were kept) is compared
        by size and modification time.
        """
        if earlier is None:
            return False
        if not earlier.digest:
            return (earlier.size, earlier.mtime_ns) == (self.size, self.mtime_ns)
        return (earlier.size, earlier.mtime_ns, earlier.digest) == (
            self.size,
            self.mtime_ns,
            self.digest,
        )


@dataclass(frozen=True)
class Candidate:
    """An input found on disk, with the partition key it maps to."""

    key: str
    path: Path
    observation: Observation

    @property
    def run_key(self) -> str:
        """Deterministic: the same file content state always gives the same run key."""
        digest = f":{self.observation.digest[:16]}" if self.observation.digest else ""
        return f"{self.key}:{self.observation.size}:{self.observation.mtime_ns}{digest}"


@dataclass(frozen=True)
class Discovery:
    """The outcome of one scan of an incoming folder.

    Attributes
    ----------
    ready : tuple of Candidate
        New inputs to register: settled, one per key.
    pending : dict of partition key to Observation
        Inputs still changing, for the next scan.
    rejected : tuple of str
        Inputs whose name makes no usable partition key, each with the rename to do.
    skipped : tuple of str
        Entries that are no input (a stray file) or an input not usable yet (a job folder
        missing a file, a partial download, a link to a disk not mounted), each with why and
        what to do.
    present : dict of partition key to Path
        The registered keys whose input is on disk, with its path.
    vanished : tuple of str
        The registered keys whose input is gone, sorted; empty when the folder could not be
        listed or lists no input at all (an unmounted mount point), as the inputs may come back.
    unavailable : tuple of str
        The keys of inputs listed but not reachable now (a broken link), sorted: neither
        present nor vanished.
    listed : bool
        False when the folder is missing, could not be read or lists no input while some are
        registered (an unmounted mount point): the scan then says nothing about the inputs,
        and a sensor keeps its state unchanged.
    warnings : tuple of str
        Problems with the folder as a whole (it lists no input while some are registered).
    error : str or None
        Why the folder could not be read, when it exists but cannot be listed.
    examined : int
        The new inputs whose files were examined (against a scan's ``limit``).
    resume_after : str or None
        The new input to resume after, or None when every new input was examined.
    incomplete : dict of partition key to (int, int)
        The new job folders found lacking a file (or holding one twice), each with the folder's
        own modification time and when it was found so (ns since the epoch): passed over until
        that time changes (a file added or removed), ``INCOMPLETE_RECHECK_SECONDS`` at most.
    """

    ready: tuple[Candidate, ...]
    pending: dict[str, Observation]
    rejected: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    present: dict[str, Path] = field(default_factory=dict)
    vanished: tuple[str, ...] = ()
    unavailable: tuple[str, ...] = ()
    listed: bool = True
    warnings: tuple[str, ...] = ()
    error: str | None = None
    examined: int = 0
    resume_after: str | None = None
    incomplete: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Changes:
    """The outcome of :func:`scan_changes`: registered inputs whose files changed.

    Attributes
    ----------
    ready : tuple of Candidate
        Settled inputs that look otherwise than when they were last handled.
    pending : dict of partition key to Observation
        Inputs still changing, for the next scan.
    skipped : tuple of str
        Inputs that cannot be used now, with why.
    resume_after : str or None
        The key to resume after, or None when every input was examined.
    refreshed : dict of partition key to Observation
        Inputs whose metadata changed but whose content did not (``chmod``, ``touch``, an
        identical copy), or whose state lacked a content sample: their new state, to keep
        without a run.
    """

    ready: tuple[Candidate, ...]
    pending: dict[str, Observation]
    skipped: tuple[str, ...] = ()
    resume_after: str | None = None
    refreshed: dict[str, Observation] = field(default_factory=dict)


@dataclass(frozen=True)
class ScanState:
    """What a sensor keeps between ticks in its cursor.

    Attributes
    ----------
    pending : dict of partition key to Observation
        Inputs seen still changing.
    handled : dict of partition key to Observation
        What was seen of each registered input when it was registered or last run; only
        registered inputs are kept, so it holds one entry per partition at most.
    resume_after : str or None
        The registered key the last scan for changes stopped at, when it could not examine all.
    missing_since : dict of partition key to int
        When each registered input found missing was first found so (ns since the epoch).
    new_after : str or None
        The new input the last scan for new inputs stopped at, when it could not examine all.
    incomplete : dict of partition key to (int, int)
        New job folders found incomplete, with the folder's modification time then and when
        they were found so.
    device : int or None
        The device number (``st_dev``) of the incoming folder when last listed.
    """

    pending: dict[str, Observation] = field(default_factory=dict)
    handled: dict[str, Observation] = field(default_factory=dict)
    resume_after: str | None = None
    missing_since: dict[str, int] = field(default_factory=dict)
    new_after: str | None = None
    incomplete: dict[str, tuple[int, int]] = field(default_factory=dict)
    device: int | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "pending": {k: o.to_json() for k, o in sorted(self.pending.items())},
                "handled": {k: o.to_json() for k, o in sorted(self.handled.items())},
                "resume_after": self.resume_after,
                "missing_since": dict(sorted(self.missing_since.items())),
                "new_after": self.new_after,
                "incomplete": dict(sorted(self.incomplete.items())),
                "device": self.device,
            }
        )

    @classmethod
    def from_json(cls, cursor: str | None) -> ScanState:
        """Read a cursor, also the earlier format; one that cannot be read starts afresh.

        The earlier format is a map of key to observation of the inputs still changing (the
        ``pending`` alone). A cursor that cannot be read starts afresh, as the first tick does.
        """
        try:
            raw = json.loads(cursor) if cursor else {}
            if not isinstance(raw.get("pending"), dict):
                return cls(pending=_observations(raw))
            return cls(
                pending=_observations(raw["pending"]),
                handled=_observations(raw.get("handled") or {}),
                resume_after=resume if isinstance(resume := raw.get("resume_after"), str) else None,
                missing_since=_times(raw.get("missing_since")),
                new_after=new if isinstance(new := raw.get("new_after"), str) else None,
                incomplete=_incomplete(raw.get("incomplete")),
                device=device if isinstance(device := raw.get("device"), int) else None,
            )
        except (ValueError, TypeError, AttributeError):
            return cls()


def _observations(values: Mapping[str, Iterable[int | str]]) -> dict[str, Observation]:
    return {str(key): Observation.from_json(value) for key, value in values.items()}


def _times(values: Mapping[str, int] | None) -> dict[str, int]:
    return {str(key): int(value) for key, value in (values or {}).items()}


def _incomplete(values: Mapping[str, int | Sequence[int]] | None) -> dict[str, tuple[int, int]]:
    """Remembered incomplete folders; one of an earlier cursor (its time alone) is examined."""
    remembered: dict[str, tuple[int, int]] = {}
    for key, value in (values or {}).items():
        if isinstance(value, int):
            remembered[str(key)] = (value, 0)
        else:
            mtime_ns, since_ns = value
            remembered[str(key)] = (int(mtime_ns), int(since_ns))
    return remembered


def observe_file(path: Path) -> Observation:
    stat = path.stat()
    return Observation(stat.st_size, stat.st_mtime_ns)


def is_ignored_name(name: str) -> bool:
    """Whether an entry of an incoming folder is passed over silently.

    Hidden entries (``.snapshot``, ``.Trash-1000``, a macOS ``._`` file, a copy tool's hidden
    temporary) and ``lost+found`` are.
    """
    return name.startswith(".") or name in IGNORED_NAMES


def is_partial_name(name: str) -> bool:
    """Whether a file's name says it is still being written (``Mars.ser.part``)."""
    return name.lower().endswith(PARTIAL_SUFFIXES)


def is_video_name(name: str) -> bool:
    """Whether a file of this name is a video to register: ``*.ser`` (any case), not hidden."""
    return not is_ignored_name(name) and Path(name).suffix.lower() in SER_SUFFIXES


def list_ser_files(folder: Path) -> list[Path]:
    """The videos (:func:`is_video_name`) directly inside ``folder``, sorted; empty if none."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if is_video_name(p.name) and p.is_file())


def ser_key_for(path: Path) -> str:
    """The partition key of a SER file: its sanitized stem."""
    return sanitize_key(path.stem)


def _key_or_none(path: Path) -> str | None:
    """:func:`ser_key_for`, or None for a name no key can be derived from.

    Such a file is refused where it is registered (``ingest``, the sensor) and is no other
    partition's.
    """
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
    settle_seconds: float = SETTLE_SECONDS,
) -> bool:
    """True when an input has stopped changing.

    Either it looks the same as in the previous observation, or it has not been modified for
    ``settle_seconds``.
    """
    if observation.same_as(previous):
        return True
    now_ns = time.time_ns() if now_ns is None else now_ns
    return (now_ns - observation.mtime_ns) >= settle_seconds * 1e9


def confirm_vanished(
    vanished: Iterable[str],
    missing_since: Mapping[str, int],
    *,
    now_ns: int | None = None,
    grace_seconds: float = VANISH_GRACE_SECONDS,
) -> tuple[tuple[str, ...], dict[str, int]]:
    """The vanished keys to remove now, and when each one still kept was first found missing.

    A key is removed once it has been missing on two consecutive looks ``grace_seconds`` apart
    or more, so that a file moved out and back (or a folder briefly unreachable) keeps its
    partition; a key found again is forgotten.
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    remove: list[str] = []
    still_missing: dict[str, int] = {}
    for key in sorted(vanished):
        first = missing_since.get(key)
        if first is not None and now_ns - first >= grace_seconds * 1e9:
            remove.append(key)
        else:
            still_missing[key] = now_ns if first is None else first
    return tuple(remove), still_missing


def folder_device(folder: Path) -> int | None:
    """The number of the device holding ``folder`` (``st_dev``), or None if it cannot be read."""
    try:
        return folder.stat().st_dev
    except OSError:
        return None


def guard_removals(
    folder: Path, vanished: Sequence[str], recorded: int | None
) -> tuple[int | None, str | None]:
    """The device to record for ``folder``, and why no input may be removed now, if so.

    A folder on another device than when last listed (a mount point whose disk is unmounted,
    now holding a file or two of its own; another disk mounted there) says nothing about the
    inputs of the earlier one: while any registered input is missing, none is removed and the
    earlier device is kept. Once none is missing (the inputs were moved to the new disk), the
    new device is recorded.
    """
    device = folder_device(folder)
    if device is None or recorded is None or device == recorded:
        return (recorded if device is None else device), None
    if not vanished:
        return device, None
    return recorded, (
        f"{folder} is on another device than before ({device}, was {recorded}: its disk not "
        f"mounted, or another one?): the {len(vanished)} partition(s) whose input is missing "
        "are kept (delete them in the UI if their inputs were removed on purpose)"
    )


@dataclass(frozen=True)
class Removals:
    """What a sensor's tick does about the registered inputs its scan found missing.

    Attributes
    ----------
    gone : tuple of str
        The keys whose partitions are removed now, sorted.
    missing_since : dict of partition key to int
        The missing keys kept for now, with when each was first found missing.
    device : int or None
        The device number to record for the incoming folder.
    held_back : str or None
        Why no input is removed now (the folder is on another device than before), if so.
    """

    gone: tuple[str, ...]
    missing_since: dict[str, int]
    device: int | None
    held_back: str | None


def plan_removals(folder: Path, discovery: Discovery, state: ScanState) -> Removals:
    """The registered inputs a sensor removes this tick (:func:`guard_removals`,
    :func:`confirm_vanished`)."""
    device, held_back = guard_removals(folder, discovery.vanished, state.device)
    gone, missing_since = confirm_vanished(
        () if held_back else discovery.vanished, state.missing_since
    )
    return Removals(gone, missing_since, device, held_back)


def next_scan_state(
    state: ScanState,
    discovery: Discovery,
    changes: Changes,
    removals: Removals,
    handled: Mapping[str, Observation],
) -> ScanState:
    """The cursor a sensor's tick leaves for the next one.

    ``handled`` holds the states of the changed inputs the tick handled (ran, or found needing
    no run); those of the new inputs registered and of the inputs only ``refreshed`` are added.
    Only the registered inputs still on disk, unreachable or missing but kept keep a state, so
    that the cursor does not grow with every input ever removed.
    """
    kept = {*discovery.present, *discovery.unavailable, *removals.missing_since}
    if removals.held_back:
        kept.update(discovery.vanished)
    return ScanState(
        pending={**discovery.pending, **changes.pending},
        handled={
            **{key: obs for key, obs in state.handled.items() if key in kept},
            **changes.refreshed,
            **{c.key: c.observation for c in discovery.ready},
            **handled,
        },
        resume_after=changes.resume_after,
        missing_since=removals.missing_since,
        new_after=discovery.resume_after,
        incomplete=discovery.incomplete,
        device=removals.device,
    )


MAX_QUOTED_MESSAGES = 3
"""Messages :func:`not_used_message` quotes; a sensor's log has them all."""


def not_used_message(
    rejected: Iterable[str],
    skipped: Iterable[str],
    *,
    removed: Sequence[str] = (),
    warnings: Iterable[str] = (),
) -> str | None:
    """One line for a sensor tick's skip reason, or None when there is nothing to say.

    It gives the folder's warnings, the partitions removed and the inputs a scan could not use.
    """
    parts = list(warnings)
    if removed:
        parts.append(
            f"removed {len(removed)} partition(s) whose input is gone: {', '.join(removed)}"
        )
    messages = [*rejected, *skipped]
    if messages:
        more = len(messages) - MAX_QUOTED_MESSAGES
        quoted = messages[:MAX_QUOTED_MESSAGES] + ([f"{more} more in the log"] if more > 0 else [])
        parts.append(f"{len(messages)} input(s) not used: " + " | ".join(quoted))
    return "; ".join(parts) or None


def _suggested_name(name: str, suffix: str = "", *, taken: Iterable[str] = ()) -> str:
    """Rename advice, ``", e.g. to '<name>'"``, naming a usable name for ``name``.

    It is ``""`` when none can be derived or the one derived is taken (a key in ``taken``).
    """
    try:
        key = re.sub(r"\.{2,}", ".", sanitize_key(name)).strip(".")
        check_key(key, new=True)
    except UnsafePathError:
        return ""
    if key in set(taken):
        return ""
    return f", e.g. to {key + suffix!r}"


@dataclass(frozen=True)
class _Entry:
    """One entry of an incoming folder.

    ``kind`` is ``file``, ``dir``, ``other``, ``broken`` (a link whose target cannot be
    reached; ``detail`` names the target) or ``unreadable`` (``detail`` says why).
    """

    name: str
    path: Path
    kind: str
    detail: str = ""

    @property
    def unreachable(self) -> bool:
        return self.kind in {"broken", "unreadable"}

    def problem(self, folder: Path) -> str:
        """Why this unreachable entry is not used now."""
        if self.kind == "broken":
            return (
                f"{self.name!r} in {folder}: link to {self.detail} is broken (its disk not "
                "mounted?); it is used again once the link works"
            )
        return f"{self.name!r} in {folder} could not be read ({self.detail}); tried again later"


def _entry(entry: os.DirEntry[str]) -> _Entry:
    path = Path(entry.path)
    try:
        if entry.is_symlink() and not os.path.exists(entry.path):
            return _Entry(entry.name, path, "broken", os.readlink(entry.path))
        kind = "dir" if entry.is_dir() else "file" if entry.is_file() else "other"
    except OSError as error:
        return _Entry(entry.name, path, "unreadable", error.strerror or str(error))
    return _Entry(entry.name, path, kind)


def _listing(folder: Path) -> list[_Entry] | str | None:
    """The entries of ``folder`` sorted by name, less the ignored ones (:func:`is_ignored_name`).

    None when it is missing, or why it could not be listed.
    """
    try:
        if not folder.is_dir():
            return None
        with os.scandir(folder) as entries:
            raw = sorted(entries, key=lambda entry: entry.name)
    except OSError as error:
        return (
            f"{folder} could not be listed ({error.strerror or error}): check its permissions, "
            "or whether its disk is mounted"
        )
    return [_entry(entry) for entry in raw if not is_ignored_name(entry.name)]


def _not_listed(folder: Path, listing: str | None, known: set[str]) -> Discovery:
    """The scan of a folder that could not be listed: nothing found, nothing vanished."""
    warnings = ()
    if listing is None and known:
        warnings = (
            f"{folder} is missing (its disk not mounted?): the {len(known)} registered "
            "partition(s) of its inputs are kept",
        )
    return Discovery((), {}, (), listed=False, warnings=warnings, error=listing)


def _nothing_listed(folder: Path, what: str, known: set[str]) -> Discovery:
    """The scan of a folder that lists no input while some are registered: nothing vanished."""
    warning = (
        f"{folder} holds no {what} although {len(known)} are registered: it may be a mount "
        "point whose disk is not mounted, so no partition is removed (delete them in the UI "
        "if their inputs were removed on purpose)"
    )
    return Discovery((), {}, (), listed=False, warnings=(warning,))


def _is_beside(name: str, stems: set[str]) -> bool:
    """Whether ``name`` is a file kept beside an input (``<stem>.truth.npz``, a capture log).

    Its name is then one of ``stems`` followed by a dot and more, or it is ground truth
    (``TRUTH_SUFFIXES``) of any input.
    """
    return name.endswith(TRUTH_SUFFIXES) or any(
        name[:i] in stems for i, char in enumerate(name) if char == "." and i > 0
    )


def _not_input(entry: _Entry, folder: Path, reason: str) -> str:
    """Why an entry that is no input is skipped: unreachable, still being written, or
    ``reason`` (what it is instead and what to do)."""
    if entry.unreachable:
        return entry.problem(folder)
    if is_partial_name(entry.name):
        return (
            f"{entry.name!r} in {folder}: still being written? (a partial download or temporary "
            "file); it is used once renamed to its final name"
        )
    return f"{entry.name!r} in {folder}: {reason}"


def _observe_or_problem(
    observe: Callable[[Path], Observation | str], path: Path
) -> Observation | str:
    try:
        return observe(path)
    except OSError as error:
        return f"{path} could not be read ({error.strerror or error}); it is tried again later"


def _sample_or_problem(sample: Callable[[Path], str], path: Path) -> tuple[str, str | None]:
    """``sample(path)`` and None, or ``""`` and why it could not be taken."""
    try:
        return sample(path), None
    except (OSError, AmbiguousJobFileError, PartialJobFileError) as error:
        # A file removed, or one added beside it, between its stat and its read.
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        return "", f"{path} could not be read ({reason}); it is tried again later"


def _in_turn(keys: Sequence[str], resume_after: str | None) -> list[str]:
    """``keys`` (sorted) from after ``resume_after``, then round again."""
    if resume_after is None:
        return list(keys)
    return [k for k in keys if k > resume_after] + [k for k in keys if k <= resume_after]


def _next_turn(keys: Sequence[str], limit: int | None, resume_after: str | None) -> str | None:
    """Where a scan of ``keys`` in turn (:func:`_in_turn`) with ``limit`` resumes next time."""
    if limit is None or len(keys) <= limit:
        return None
    return keys[limit - 1] if limit > 0 else resume_after


@dataclass
class _Scanned:
    """What :func:`_scan` found: ready, pending, problems, refreshed states and the count."""

    ready: list[Candidate] = field(default_factory=list)
    pending: dict[str, Observation] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    refreshed: dict[str, Observation] = field(default_factory=dict)
    examined: int = 0


def _scan(
    items: Iterable[tuple[str, Path]],
    *,
    pending: Mapping[str, Observation],
    settle_seconds: float,
    now_ns: int | None,
    observe: Callable[[Path], Observation | str],
    limit: int | None,
    handled: Mapping[str, Observation] | None = None,
    sample: Callable[[Path], str] | None = None,
) -> _Scanned:
    """Settled inputs among ``items`` (key, path), at most ``limit`` observed.

    With ``handled``, only those that look otherwise than there are returned. ``observe``
    returns an input's observation, or why it cannot be used yet. With ``sample``, an input
    whose observation changed has its content sampled too: one whose sample is the one in
    ``handled`` (only its metadata changed), or whose state there has no sample yet but looks
    the same, is ``refreshed``, not returned.
    """
    handled = handled or {}
    out = _Scanned()
    for key, path in items:
        if limit is not None and out.examined >= limit:
            if key in pending:
                out.pending[key] = pending[key]
            continue
        out.examined += 1
        observation = _observe_or_problem(observe, path)
        if isinstance(observation, str):
            out.problems.append(observation)
            continue
        earlier = handled.get(key)
        same = observation.same_as(earlier)
        if same and (sample is None or earlier.sample):
            continue
        if sample is not None:
            content, problem = _sample_or_problem(sample, path)
            if problem is not None:
                out.problems.append(problem)
                continue
            observation = replace(observation, sample=content)
            if same or (earlier is not None and earlier.sample == content):
                out.refreshed[key] = observation
                continue
        previous = pending.get(key)
        if is_settled(observation, previous, now_ns=now_ns, settle_seconds=settle_seconds):
            out.ready.append(Candidate(key, path, observation))
        else:
            out.pending[key] = observation
    return out


def scan_ser_files(
    folder: Path,
    *,
    known_keys: Iterable[str],
    pending: Mapping[str, Observation],
    settle_seconds: float = SETTLE_SECONDS,
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
        are no video (a file that is not a SER file, a folder, a partial download; files named
        after a video present or registered, such as ``<name>.truth.npz``, any ground truth,
        hidden files and ``lost+found`` are not reported) or a video behind a broken link
        (``unavailable``), the registered keys whose video is ``present`` (with the same rule as
        :func:`find_ser_for_key`) and those whose video has ``vanished``.
    """
    known = set(known_keys)
    entries = _listing(folder)
    if not isinstance(entries, list):
        return _not_listed(folder, entries, known)
    rejected: list[str] = []
    skipped: list[str] = []
    by_key: dict[str, list[Path]] = {}
    unavailable: set[str] = set()
    videos = [entry for entry in entries if is_video_name(entry.name)]
    beside = {Path(entry.name).stem for entry in videos} | known
    for entry in entries:
        is_video = is_video_name(entry.name)
        if is_video and entry.unreachable:
            if (key := _key_or_none(entry.path)) is not None:
                unavailable.add(key)
            skipped.append(entry.problem(folder))
        elif is_video and entry.kind == "file":
            try:
                by_key.setdefault(ser_key_for(entry.path), []).append(entry.path)
            except UnsafePathError as error:
                rejected.append(str(error))
        elif _is_beside(entry.name, beside):
            continue
        elif entry.kind == "dir":
            skipped.append(
                f"folder {entry.name!r} in {folder}: videos are read only directly in "
                f"{folder.name}/, not in folders inside it; move them up to register them"
            )
        else:
            skipped.append(
                _not_input(
                    entry,
                    folder,
                    "not a file ending in .ser, so not a video to register; move it out of the "
                    "folder (or, if it is a SER video, give it the .ser extension)",
                )
            )
    taken = known | by_key.keys() | unavailable
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
                items.append((check_key(key, new=True), paths[0]))
            except UnsafePathError as error:
                rejected.append(
                    f"video {paths[0].name!r}: {error}; rename the file"
                    + _suggested_name(key, paths[0].suffix, taken=taken)
                )
    scanned = _scan(
        items,
        pending=pending,
        settle_seconds=settle_seconds,
        now_ns=now_ns,
        observe=observe_file,
        limit=limit,
    )
    if not videos and known:
        return _nothing_listed(folder, "video", known)
    return Discovery(
        tuple(scanned.ready),
        scanned.pending,
        tuple(rejected),
        skipped=tuple(skipped + scanned.problems),
        present=present,
        vanished=tuple(sorted(known - by_key.keys() - unavailable)),
        unavailable=tuple(sorted(unavailable & known)),
        examined=scanned.examined,
    )


def scan_paired_darks(
    folder: Path,
    *,
    partition_keys: Iterable[str],
    handled: Mapping[str, Observation],
    pending: Mapping[str, Observation],
    kept: Mapping[str, Path] | None = None,
    settle_seconds: float = SETTLE_SECONDS,
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


class IncompleteFolder(str):
    """Why a job folder is not complete: a file missing, or one present twice.

    Only adding or removing a file mends it, and on a local file system either changes the
    folder's own modification time, so the folder need not be examined again soon unless that
    changes; a link's target appearing elsewhere changes no time of the folder.
    """


def job_folder_state(folder: Path) -> Observation | str:
    """What is seen of a complete job folder, or why it is not one.

    Complete means all five contract files present, none ambiguous (``.fits`` beside
    ``.fits.gz`` or ``.fits.fz``: an :class:`IncompleteFolder` reason, as is a missing file) and
    none empty (a file of zero bytes is still being created). The observation holds the total
    size, the newest modification time (for settling) and a digest of every file's name, size,
    modification and change times and inode, so that any change is seen, also one of metadata
    alone: whether the content changed is for :func:`job_folder_sample` to tell.
    """
    try:
        paths = job_file_paths(folder)
    except (MissingJobFileError, AmbiguousJobFileError, PartialJobFileError) as error:
        return IncompleteFolder(error)
    stats = {path.name: path.stat() for path in paths.values()}
    empty = [name for name, stat in stats.items() if stat.st_size == 0]
    if empty:
        return (
            f"job folder {folder} has {len(empty)} empty file(s): {', '.join(empty)}; wait "
            "until the copy has finished, or replace them"
        )
    # 64 bits tell states of one folder apart and keep a cursor of thousands of jobs small.
    digest = hashlib.blake2b(digest_size=8)
    for name, stat in sorted(stats.items()):
        digest.update(
            f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\0{stat.st_ino}\n".encode()
        )
    return Observation(
        sum(stat.st_size for stat in stats.values()),
        max(stat.st_mtime_ns for stat in stats.values()),
        digest.hexdigest(),
    )


def content_sample(path: Path, *, whole: bool = False) -> str:
    """A cheap identity of a file's content: its size and its bytes, or samples of them.

    A file of up to ``WHOLE_SAMPLE_BYTES`` is read whole, as is any file with ``whole``; a
    larger one at its start, middle and end, ``SAMPLE_BYTES`` at each, as
    :func:`~astro_assets.io.ser.ser_fingerprint` reads a video. It changes when other content
    replaces the file (an image of another size or other sampled bytes, a catalogue edited)
    and not when the file is touched, its mode or owner changed or it is copied; an edit of a
    large file between the samples is not seen.
    """
    digest = hashlib.blake2b(digest_size=8)
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        digest.update(f"{size}\0".encode())
        if whole or size <= WHOLE_SAMPLE_BYTES:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
        else:
            for offset in (0, (size - SAMPLE_BYTES) // 2, size - SAMPLE_BYTES):
                handle.seek(offset)
                digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def job_folder_sample(folder: Path) -> str:
    """A digest of every job file's name and content: what tells new content from new metadata.

    ``psfcat.csv`` is read whole (it is small, and a label flipped anywhere in it matters). An
    image is sampled (:func:`content_sample`), which misses an edit between the samples (a
    region masked in place), so its modification time is part of the digest too: only a change
    that keeps every image's size and modification time (``chmod``, ``mv``, ``cp -p``, a
    restore) is told apart by the content, and a ``touch`` or plain copy of an image counts as
    a change, costing a run at worst rather than leaving a stale tensor.

    Raises
    ------
    OSError
        If a file is missing (``MissingJobFileError``) or cannot be read.
    AmbiguousJobFileError
        If a file is present twice.
    """
    digest = hashlib.blake2b(digest_size=8)
    for role, path in sorted(job_file_paths(folder).items(), key=lambda item: item[1].name):
        if role == "catalog":
            identity = content_sample(path, whole=True)
        else:
            # Taken before the read: a write in between shows as a changed time next scan.
            identity = f"{path.stat().st_mtime_ns}\0{content_sample(path)}"
        digest.update(f"{path.name}\0{identity}\n".encode())
    return digest.hexdigest()


def _remembered_incomplete(
    items: Sequence[tuple[str, Path]], incomplete: Mapping[str, tuple[int, int]], now_ns: int
) -> tuple[list[tuple[str, Path]], dict[str, tuple[int, int]], list[str]]:
    """The ``items`` to examine, and those passed over: incomplete, and unchanged since.

    A folder is passed over while its modification time is the one remembered and it was found
    incomplete less than ``INCOMPLETE_RECHECK_SECONDS`` ago. The folders passed over are
    returned with what is remembered of them and a message each.
    """
    todo: list[tuple[str, Path]] = []
    kept: dict[str, tuple[int, int]] = {}
    messages: list[str] = []
    for key, path in items:
        if key in incomplete:
            remembered_ns, since_ns = incomplete[key]
            try:
                mtime_ns = path.stat().st_mtime_ns
            except OSError:
                mtime_ns = None
            # A clock set back makes the age negative: examined again, not passed over for long.
            if mtime_ns == remembered_ns and 0 <= now_ns - since_ns < (
                INCOMPLETE_RECHECK_SECONDS * 1e9
            ):
                kept[key] = incomplete[key]
                messages.append(
                    f"job folder {path} is still incomplete (no file added or removed since it "
                    "was found lacking one); it is examined again once one is, or within "
                    f"{INCOMPLETE_RECHECK_SECONDS / 60:.0f} minutes"
                )
                continue
        todo.append((key, path))
    return todo, kept, messages


def _holds_link(folder: Path) -> bool:
    """Whether ``folder`` is a link or holds one, or cannot be listed to tell.

    A link's target may appear later, on another disk, changing no time of the folder.
    """
    try:
        if folder.is_symlink():
            return True
        with os.scandir(folder) as entries:
            return any(entry.is_symlink() for entry in entries)
    except OSError:
        return True


def scan_job_folders(
    folder: Path,
    *,
    known_keys: Iterable[str],
    pending: Mapping[str, Observation],
    settle_seconds: float = SETTLE_SECONDS,
    now_ns: int | None = None,
    limit: int | None = None,
    resume_after: str | None = None,
    incomplete: Mapping[str, tuple[int, int]] | None = None,
) -> Discovery:
    """Find new, complete and settled job folders under ``folder``, and registered ones gone.

    A folder counts only when all five contract files are present and non-empty and none of them
    changed since the previous scan (or for ``settle_seconds``); one that is not complete is
    reported in ``skipped`` with the files it lacks. Its name is its partition key and is never
    rewritten: a name that is not a safe new key (:func:`~astro_assets.io.paths.check_key`) is
    reported in ``rejected``. A file directly in ``folder`` is reported in ``skipped``, unless it
    is named after a job folder, present or registered (``<jid>.truth.json``); hidden entries and
    ``lost+found`` are passed over, and a link to a folder that cannot be reached is
    ``unavailable``. ``folder`` is listed once; ``present`` and ``vanished`` say which
    registered jobs still have their folder.

    ``limit`` bounds the new folders examined per scan (listing names is cheap; checking files
    is not), so a sensor stays inside its time budget with thousands of folders: those in
    ``pending`` are examined first, then the others in name order from after ``resume_after``
    and round again (the scan's ``resume_after`` says where to go on). A folder in
    ``incomplete`` (key to the folder's own modification time and when it was found
    incomplete, the scan's ``incomplete`` of an earlier scan) is passed over, uncounted, while
    that time is unchanged, for ``INCOMPLETE_RECHECK_SECONDS`` at most (a file system may not
    update a folder's time). A folder is remembered so once it lacks a file (or holds one
    twice), was not modified for ``settle_seconds`` (a coarse clock may not show a file added
    just after it was looked at) and holds no link (whose target may appear without the
    folder changing), ``MAX_REMEMBERED_INCOMPLETE`` at most.
    """
    known = set(known_keys)
    now_ns = time.time_ns() if now_ns is None else now_ns
    entries = _listing(folder)
    if not isinstance(entries, list):
        return _not_listed(folder, entries, known)
    rejected: list[str] = []
    skipped: list[str] = []
    by_key: dict[str, Path] = {}
    present: dict[str, Path] = {}
    folders = {entry.name for entry in entries if entry.kind == "dir"}
    unreachable = {entry.name for entry in entries if entry.unreachable}
    taken = known | folders | unreachable
    beside = folders | known
    for entry in entries:
        if entry.kind == "dir":
            if entry.name in known:
                present[entry.name] = entry.path
                continue
            try:
                by_key[check_key(entry.name, new=True)] = entry.path
            except UnsafePathError as error:
                rejected.append(
                    f"job folder {entry.name!r}: {error}; rename the folder"
                    + _suggested_name(entry.name, taken=taken)
                )
        elif not _is_beside(entry.name, beside):
            skipped.append(
                _not_input(
                    entry,
                    folder,
                    "not a folder, so not a job; a job is a folder holding the four FITS "
                    "images and psfcat.csv: move the file out of the folder",
                )
            )
    # A folder seen changing gets its second look first: that look registers it.
    again = [key for key in sorted(by_key) if key in pending]
    in_turn = _in_turn(sorted(by_key.keys() - pending.keys()), resume_after)
    items, next_incomplete, passed_over = _remembered_incomplete(
        [(key, by_key[key]) for key in again + in_turn], incomplete or {}, now_ns
    )
    turn = [key for key, _ in items if key not in pending]
    turn_limit = None if limit is None else max(0, limit - (len(items) - len(turn)))

    def observe(path: Path) -> Observation | str:
        # The folder's time is taken first, so that a file added while it is examined shows.
        folder_mtime_ns = path.stat().st_mtime_ns
        state = job_folder_state(path)
        if (
            isinstance(state, IncompleteFolder)
            and now_ns - folder_mtime_ns >= settle_seconds * 1e9
            and len(next_incomplete) < MAX_REMEMBERED_INCOMPLETE
            and not _holds_link(path)
        ):
            next_incomplete[path.name] = (folder_mtime_ns, now_ns)
        return state

    scanned = _scan(
        items,
        pending=pending,
        settle_seconds=settle_seconds,
        now_ns=now_ns,
        observe=observe,
        limit=limit,
        sample=job_folder_sample,
    )
    if not folders and not unreachable and known:
        return _nothing_listed(folder, "job folder", known)
    return Discovery(
        tuple(scanned.ready),
        scanned.pending,
        tuple(rejected),
        skipped=tuple(skipped + passed_over + scanned.problems),
        present=present,
        vanished=tuple(sorted(known - folders - unreachable)),
        unavailable=tuple(sorted(unreachable & known)),
        examined=scanned.examined,
        resume_after=_next_turn(turn, turn_limit, resume_after),
        incomplete=next_incomplete,
    )


def scan_changes(
    inputs: Mapping[str, Path],
    *,
    handled: Mapping[str, Observation],
    pending: Mapping[str, Observation],
    observe: Callable[[Path], Observation | str] = observe_file,
    sample: Callable[[Path], str] | None = None,
    settle_seconds: float = SETTLE_SECONDS,
    now_ns: int | None = None,
    limit: int | None = None,
    resume_after: str | None = None,
) -> Changes:
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
    sample : callable, optional
        An input's content sample (``job_folder_sample``), taken only when its observation
        changed: an input whose sample is still the one in ``handled`` is ``refreshed``, not
        reported, as is one looking the same whose state in ``handled`` has no sample yet.
    settle_seconds : float
        As for :func:`is_settled`.
    limit : int, optional
        At most this many inputs are examined, in key order from after ``resume_after`` and
        round again, so that every input is examined within a few scans.
    resume_after : str, optional
        The key the previous scan stopped at.

    Returns
    -------
    Changes
        The settled inputs that look otherwise than in ``handled``, ``pending`` for the next
        scan, the inputs that cannot be used now, the key to resume after and the states to
        keep without a run.
    """
    keys = _in_turn(sorted(inputs), resume_after)
    scanned = _scan(
        [(key, inputs[key]) for key in keys],
        pending=pending,
        settle_seconds=settle_seconds,
        now_ns=now_ns,
        observe=observe,
        limit=limit,
        handled=handled,
        sample=sample,
    )
    return Changes(
        tuple(scanned.ready),
        scanned.pending,
        tuple(scanned.problems),
        _next_turn(keys, limit, resume_after),
        scanned.refreshed,
    )
