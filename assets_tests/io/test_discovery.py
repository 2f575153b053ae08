import os
from pathlib import Path

import pytest

from astro_assets.io.discovery import (
    Observation,
    find_ser_for_key,
    is_settled,
    list_ser_files,
    scan_ser_files,
)


def _write(path: Path, size: int, age_s: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    if age_s is not None:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - int(age_s * 1e9)))
    return path


def test_lists_only_ser_files_of_any_case(tmp_path: Path):
    _write(tmp_path / "b.SER", 1)
    _write(tmp_path / "a.ser", 1)
    _write(tmp_path / "a.truth.npz", 1)
    (tmp_path / "dir.ser").mkdir()
    assert [p.name for p in list_ser_files(tmp_path)] == ["a.ser", "b.SER"]
    assert list_ser_files(tmp_path / "missing") == []


def test_old_file_is_ready_at_once_and_fresh_file_waits_for_a_second_look(tmp_path: Path):
    _write(tmp_path / "old video.ser", 10, age_s=3600)
    fresh = _write(tmp_path / "fresh.ser", 10)
    first = scan_ser_files(tmp_path, known_keys=[], pending={})
    assert [c.key for c in first.ready] == ["old_video"]
    assert set(first.pending) == {"fresh.ser"}
    second = scan_ser_files(tmp_path, known_keys=["old_video"], pending=first.pending)
    assert [c.key for c in second.ready] == ["fresh"]
    assert second.ready[0].path == fresh
    assert second.pending == {}


def test_growing_file_stays_pending(tmp_path: Path):
    growing = _write(tmp_path / "growing.ser", 10)
    first = scan_ser_files(tmp_path, known_keys=[], pending={})
    with growing.open("ab") as handle:
        handle.write(b"\0" * 10)
    second = scan_ser_files(tmp_path, known_keys=[], pending=first.pending)
    assert second.ready == ()
    assert second.pending["growing.ser"].size == 20


def test_known_keys_are_not_reported_again_and_run_keys_are_deterministic(tmp_path: Path):
    _write(tmp_path / "a.ser", 5, age_s=100)
    first = scan_ser_files(tmp_path, known_keys=[], pending={})
    again = scan_ser_files(tmp_path, known_keys=[], pending={})
    assert first.ready[0].run_key == again.ready[0].run_key
    assert scan_ser_files(tmp_path, known_keys=["a"], pending={}).ready == ()


def test_colliding_names_are_rejected_not_guessed(tmp_path: Path):
    _write(tmp_path / "sun 1.ser", 5, age_s=100)
    _write(tmp_path / "sun_1.ser", 5, age_s=100)
    result = scan_ser_files(tmp_path, known_keys=[], pending={})
    assert result.ready == ()
    assert "map to partition 'sun_1'" in result.rejected[0]
    with pytest.raises(FileNotFoundError, match="several SER files"):
        find_ser_for_key(tmp_path, "sun_1")


def test_find_ser_for_key(tmp_path: Path):
    path = _write(tmp_path / "Jupiter 2026.ser", 5)
    assert find_ser_for_key(tmp_path, "Jupiter_2026") == path
    with pytest.raises(FileNotFoundError, match="no SER file for partition 'mars'"):
        find_ser_for_key(tmp_path, "mars")


def test_is_settled_by_age_or_by_repeat():
    obs = Observation(10, 1_000_000_000_000)
    assert is_settled(obs, obs, now_ns=obs.mtime_ns)
    assert not is_settled(obs, None, now_ns=obs.mtime_ns + 1, settle_seconds=30)
    assert is_settled(obs, None, now_ns=obs.mtime_ns + 31 * 10**9, settle_seconds=30)
    assert not is_settled(obs, Observation(9, obs.mtime_ns), now_ns=obs.mtime_ns)
