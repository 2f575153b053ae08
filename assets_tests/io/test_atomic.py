import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from astro_assets.io.atomic import (
    STALE_PARTIAL_SECONDS,
    atomic_create_text,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    partial_files,
    remove_stale_partials,
)


def test_atomic_write_creates_parents_and_content(tmp_path: Path):
    target = tmp_path / "a" / "b" / "out.bin"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]


def test_failure_keeps_previous_file_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "product.tiff"
    target.write_bytes(b"previous complete product")
    with pytest.raises(RuntimeError, match="crash"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half written")
        raise RuntimeError("crash in the middle of a write")
    assert target.read_bytes() == b"previous complete product"
    assert [p.name for p in tmp_path.iterdir()] == ["product.tiff"]


def test_temporary_path_keeps_the_suffix_and_lives_beside_the_target(tmp_path: Path):
    target = tmp_path / "x.fits"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.suffix == ".fits"
        tmp.write_bytes(b"ok")
    assert target.read_bytes() == b"ok"


def test_files_get_ordinary_permissions_not_private_temporary_ones(tmp_path: Path):
    mask = os.umask(0o022)
    try:
        target = atomic_write_bytes(tmp_path / "shared.bin", b"x")
    finally:
        os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o644


_KILLED_WRITER = """
import os, signal, sys
from contextlib import ExitStack
from astro_assets.io.atomic import atomic_path

with ExitStack() as stack:
    for target in sys.argv[1:]:
        stack.enter_context(atomic_path(target)).write_bytes(b"half of the new produ")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_writer(*targets: Path) -> None:
    """Start writing every target in a process that is then killed by SIGKILL."""
    process = subprocess.run([sys.executable, "-c", _KILLED_WRITER, *map(str, targets)])
    assert process.returncode == -signal.SIGKILL


def _age(path: Path, seconds: float) -> None:
    modified = time.time() - seconds
    os.utime(path, (modified, modified))


def test_temporary_name_is_hidden_and_marked_partial(tmp_path: Path):
    target = tmp_path / "x.fits"
    with atomic_path(target) as tmp:
        assert re.fullmatch(r"\.x\.fits\.[0-9a-f]{16}\.partial\.fits", tmp.name)
        assert partial_files(target) == [tmp]
        tmp.write_bytes(b"ok")
    assert partial_files(target) == []


def test_a_killed_writer_leaves_the_previous_file_and_a_partial(tmp_path: Path):
    target = tmp_path / "product.tiff"
    target.write_bytes(b"previous complete product")
    _killed_writer(target)
    assert target.read_bytes() == b"previous complete product"
    (partial,) = partial_files(target)
    assert partial.read_bytes() == b"half of the new produ"


def test_next_write_removes_partials_of_killed_writers_after_the_grace_period(tmp_path: Path):
    target = tmp_path / "product.tiff"
    _killed_writer(target)
    (partial,) = partial_files(target)
    _age(partial, STALE_PARTIAL_SECONDS + 60)
    atomic_write_bytes(target, b"complete")
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["product.tiff"]


def test_recent_partial_may_be_a_concurrent_writer_and_is_kept(tmp_path: Path):
    target = tmp_path / "product.tiff"
    with atomic_path(target) as first:
        first.write_bytes(b"first writer")
        _age(first, STALE_PARTIAL_SECONDS - 60)
        atomic_write_bytes(target, b"second writer")
        assert first.read_bytes() == b"first writer"
    assert target.read_bytes() == b"first writer"
    assert partial_files(target) == []


def test_only_partials_of_the_written_target_are_removed(tmp_path: Path):
    target = tmp_path / "a.tiff"
    longer = tmp_path / "a.tiff.x.tiff"
    other = tmp_path / "b.tiff"
    _killed_writer(target, longer, other)
    for partial in tmp_path.iterdir():
        _age(partial, STALE_PARTIAL_SECONDS + 60)
    atomic_write_bytes(target, b"a")
    assert partial_files(target) == []
    assert len(partial_files(longer)) == 1
    assert len(partial_files(other)) == 1


def test_remove_stale_partials_uses_the_given_clock_and_grace_period(tmp_path: Path):
    target = tmp_path / "t.csv"
    _killed_writer(target)
    (partial,) = partial_files(target)
    modified = partial.stat().st_mtime
    assert remove_stale_partials(target, older_than_s=10, now=modified + 10) == []
    assert remove_stale_partials(target, older_than_s=10, now=modified + 11) == [partial]
    assert not partial.exists()
    assert not target.exists()


def test_partial_listing_of_a_missing_folder_is_empty(tmp_path: Path):
    assert partial_files(tmp_path / "missing" / "t.csv") == []
    assert remove_stale_partials(tmp_path / "missing" / "t.csv") == []


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_grace_period_must_be_a_non_negative_number(tmp_path: Path, bad: float):
    with pytest.raises(ValueError, match="older_than_s must be >= 0"):
        remove_stale_partials(tmp_path / "t.csv", older_than_s=bad)


def test_atomic_create_writes_a_new_file_and_never_replaces_one(tmp_path: Path):
    target = tmp_path / "home" / "dagster.yaml"
    assert atomic_create_text(target, "telemetry: off\n") is True
    assert target.read_text() == "telemetry: off\n"
    assert atomic_create_text(target, "other\n") is False
    assert target.read_text() == "telemetry: off\n"
    assert [p.name for p in target.parent.iterdir()] == ["dagster.yaml"]


def test_atomic_create_leaves_a_file_that_appears_meanwhile(tmp_path: Path, monkeypatch):
    target = tmp_path / "dagster.yaml"
    real_link = os.link

    def someone_else_first(src, dst):
        Path(dst).write_text("the user's\n")
        return real_link(src, dst)

    monkeypatch.setattr(os, "link", someone_else_first)
    assert atomic_create_text(target, "ours\n") is False
    assert target.read_text() == "the user's\n"
    assert [p.name for p in tmp_path.iterdir()] == ["dagster.yaml"]
