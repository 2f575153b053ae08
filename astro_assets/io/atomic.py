"""Atomic file output: write to a temporary sibling, then rename over the target.

A crashed or killed run therefore never leaves a half-written product behind: readers see
either the previous complete file or the new complete file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_DEFAULT_FILE_MODE = 0o666


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


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    The temporary file lives in the same directory (same file system), so the final
    ``os.replace`` is atomic. On any exception the temporary file is removed and ``target``
    is left untouched. Parent directories are created. The file gets the permissions of a
    normally created file (0666 minus the umask), not the private mode of a temporary file.

    Parameters
    ----------
    target : path-like
        The final location of the file.

    Yields
    ------
    pathlib.Path
        Where the caller writes the complete content. The suffix of ``target`` is kept so that
        libraries choosing a format by extension behave the same.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".partial{target.suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _DEFAULT_FILE_MODE & ~_current_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the target path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``target`` atomically and return the target path."""
    return atomic_write_bytes(target, text.encode("utf-8"))
