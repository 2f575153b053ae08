"""Atomic file output: write to a temporary sibling, then rename over the target.

A crashed or killed run therefore never leaves a half-written product behind: readers see
either the previous complete file or the new complete file. What a killed writer does leave is
its temporary sibling ``.<name>.<token>.partial<suffix>``; the next successful write of the
same target removes such leftovers once they are older than a grace period
(:data:`STALE_PARTIAL_SECONDS`), so a writer still at work on the same target is never disturbed.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

_DEFAULT_FILE_MODE = 0o666
_TOKEN_BYTES = 8

STALE_PARTIAL_SECONDS = 3600.0
"""Age (seconds since its last modification) after which a temporary sibling is garbage.

A live writer keeps modifying its temporary file; an hour without a change means the process
that created it is gone (killed, or its machine lost).
"""


def _current_umask() -> int:
    """The process umask.

    Reading it requires setting it, which is not thread-safe, so it is read from /proc where
    available and only otherwise by the set-and-restore call.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _partial_name_pattern(target: Path) -> re.Pattern[str]:
    token = rf"[0-9a-f]{{{2 * _TOKEN_BYTES}}}"
    return re.compile(
        rf"\.{re.escape(target.name)}\.{token}\.partial{re.escape(target.suffix)}", re.ASCII
    )


def _create_partial(target: Path) -> Path:
    """Create an empty, private temporary sibling of ``target`` with a name no one else holds."""
    while True:
        candidate = target.with_name(
            f".{target.name}.{secrets.token_hex(_TOKEN_BYTES)}.partial{target.suffix}"
        )
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        os.close(fd)
        return candidate


def partial_files(target: str | os.PathLike[str]) -> list[Path]:
    """Temporary siblings of ``target`` that exist now (written by :func:`atomic_path`), sorted.

    Costs one listing of the target's directory.
    """
    target = Path(target)
    pattern = _partial_name_pattern(target)
    prefix = f".{target.name}."
    try:
        entries = list(os.scandir(target.parent))
    except FileNotFoundError:
        return []
    return sorted(
        Path(entry.path)
        for entry in entries
        if entry.name.startswith(prefix) and pattern.fullmatch(entry.name)
    )


def remove_stale_partials(
    target: str | os.PathLike[str],
    *,
    older_than_s: float = STALE_PARTIAL_SECONDS,
    now: float | None = None,
) -> list[Path]:
    """Delete the temporary siblings of ``target`` not modified for ``older_than_s`` seconds.

    Parameters
    ----------
    target : path-like
        The final file whose leftovers are removed; it is never touched itself.
    older_than_s : float
        Grace period in seconds (>= 0): younger temporary files may belong to a writer still
        at work and are kept.
    now : float, optional
        The current time (seconds since the epoch, as ``time.time()``); for reproducible use.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    if not older_than_s >= 0:
        raise ValueError(
            f"older_than_s must be >= 0 seconds, got {older_than_s}: pass the grace period "
            "after which a temporary file counts as abandoned"
        )
    now = time.time() if now is None else now
    removed = []
    for partial in partial_files(target):
        try:
            modified = partial.stat().st_mtime
        except FileNotFoundError:
            continue  # its writer renamed or removed it meanwhile
        if now - modified > older_than_s:
            partial.unlink(missing_ok=True)
            removed.append(partial)
    return removed


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    The temporary file lives in the same directory (same file system), so the final
    ``os.replace`` is atomic. On any exception the temporary file is removed and ``target``
    is left untouched. Parent directories are created. The file gets the permissions of a
    normally created file (0666 minus the umask), not the private mode of a temporary file.
    After the rename, temporary siblings of ``target`` left by killed writers and older than
    :data:`STALE_PARTIAL_SECONDS` are removed (one listing of the directory).

    Parameters
    ----------
    target : path-like
        The final location of the file.

    Yields
    ------
    pathlib.Path
        Where the caller writes the complete content: ``.<name>.<token>.partial<suffix>`` in
        the target's directory. The suffix of ``target`` is kept so that libraries choosing a
        format by extension behave the same.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_partial(target)
    try:
        yield tmp
        _seal(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    remove_stale_partials(target)


def _seal(tmp: Path) -> None:
    """Flush a finished temporary file to the disk and give it a new file's permissions, so
    that the name it is moved to never shows a partial file or a private mode."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.chmod(tmp, _DEFAULT_FILE_MODE & ~_current_umask())


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the target path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``target`` atomically and return the target path."""
    return atomic_write_bytes(target, text.encode("utf-8"))


def atomic_create_text(target: str | os.PathLike[str], text: str) -> bool:
    """Write UTF-8 ``text`` to ``target`` atomically unless ``target`` exists; never replace it.

    The content is written to a temporary sibling and hard-linked to ``target``, which fails
    when a file appeared there meanwhile, so a file someone else wrote is never overwritten and
    no reader sees a half-written one. On a file system without hard links (FAT, some network
    shares) the sibling is renamed into place after a last look for ``target``.

    Returns
    -------
    bool
        True when ``target`` was written, False when it already existed (left as it was).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return False
    tmp = _create_partial(target)
    try:
        tmp.write_bytes(text.encode("utf-8"))
        _seal(tmp)
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        except OSError:
            if target.exists():
                return False
            os.replace(tmp, target)
        return True
    finally:
        tmp.unlink(missing_ok=True)
