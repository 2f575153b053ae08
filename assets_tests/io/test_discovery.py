import os
from pathlib import Path

import pytest

from astro_assets.io.discovery import (
    Observation,
    ScanState,
    check_new_key,
    find_ser_for_key,
    is_settled,
    list_ser_files,
    observe_file,
    scan_changes,
    scan_job_folders,
    scan_ser_files,
)
from astro_assets.io.fits import JOB_FILES
from astro_assets.io.paths import UnsafePathError


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
    assert set(first.pending) == {"fresh"}
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
    assert second.pending["growing"].size == 20


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


def test_a_file_no_key_can_be_derived_from_is_no_other_partitions(tmp_path: Path):
    # ingest refuses these names; the partitions already registered still find their videos.
    path = _write(tmp_path / "sun.ser", 5)
    _write(tmp_path / "\u6728\u661f.ser", 5)
    _write(tmp_path / "..ser", 5)
    assert find_ser_for_key(tmp_path, "sun") == path
    assert len(scan_ser_files(tmp_path, known_keys=["sun"], pending={}).rejected) == 2


def test_is_settled_by_age_or_by_repeat():
    obs = Observation(10, 1_000_000_000_000)
    assert is_settled(obs, obs, now_ns=obs.mtime_ns)
    assert not is_settled(obs, None, now_ns=obs.mtime_ns + 1, settle_seconds=30)
    assert is_settled(obs, None, now_ns=obs.mtime_ns + 31 * 10**9, settle_seconds=30)
    assert not is_settled(obs, Observation(9, obs.mtime_ns), now_ns=obs.mtime_ns)


def _job(root: Path, jid: str, *, missing: str | None = None, age_s: float | None = 3600) -> Path:
    folder = root / jid
    folder.mkdir(parents=True)
    for name in JOB_FILES.values():
        if name != missing:
            _write(folder / name, 16, age_s=age_s)
    return folder


def test_complete_job_folders_are_ready_incomplete_ones_are_not(tmp_path: Path):
    _job(tmp_path, "jid001")
    _job(tmp_path, "jid002", missing="psfcat.csv")
    (tmp_path / "stray.txt").write_text("not a folder")
    result = scan_job_folders(tmp_path, known_keys=[], pending={})
    assert [c.key for c in result.ready] == ["jid001"]
    assert result.ready[0].observation.size == 16 * 5
    assert result.pending == {}


def test_job_folder_still_being_written_waits(tmp_path: Path):
    folder = _job(tmp_path, "jid003", age_s=None)
    first = scan_job_folders(tmp_path, known_keys=[], pending={})
    assert first.ready == ()
    with (folder / "psfcat.csv").open("ab") as handle:
        handle.write(b"more rows")
    second = scan_job_folders(tmp_path, known_keys=[], pending=first.pending)
    assert second.ready == ()
    third = scan_job_folders(tmp_path, known_keys=[], pending=second.pending)
    assert [c.key for c in third.ready] == ["jid003"]


def test_unsafe_job_folder_names_are_rejected_not_rewritten(tmp_path: Path):
    _job(tmp_path, "job one")
    result = scan_job_folders(tmp_path, known_keys=[], pending={})
    assert result.ready == ()
    assert "job folder 'job one'" in result.rejected[0]
    assert "rename the folder" in result.rejected[0]


def test_work_per_scan_is_bounded_and_resumes(tmp_path: Path):
    for i in range(7):
        _job(tmp_path, f"jid{i:03d}")
    seen: list[str] = []
    known: list[str] = []
    for _ in range(3):
        result = scan_job_folders(tmp_path, known_keys=known, pending={}, limit=3)
        assert len(result.ready) <= 3
        seen.extend(c.key for c in result.ready)
        known.extend(c.key for c in result.ready)
    assert seen == [f"jid{i:03d}" for i in range(7)]


def test_registered_videos_present_and_vanished_follow_find_ser_for_key(tmp_path: Path):
    _write(tmp_path / "sun.ser", 5, age_s=100)
    _write(tmp_path / "Moon 2.SER", 5, age_s=100)
    result = scan_ser_files(tmp_path, known_keys=["sun", "Moon_2", "mars"], pending={})
    assert result.present == {"sun": tmp_path / "sun.ser", "Moon_2": tmp_path / "Moon 2.SER"}
    assert result.vanished == ("mars",)
    # A data disk not mounted shows no folder at all: the videos may come back.
    assert scan_ser_files(tmp_path / "missing", known_keys=["sun"], pending={}).vanished == ()


def test_registered_jobs_present_and_vanished_come_from_one_listing(tmp_path: Path, monkeypatch):
    _job(tmp_path, "jid001")
    _job(tmp_path, "jid002")
    listed: list[str] = []
    scandir = os.scandir

    def counting_scandir(path):
        listed.append(str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    result = scan_job_folders(tmp_path, known_keys=["jid001", "jid009"], pending={})
    assert listed == [str(tmp_path)]
    assert result.present == {"jid001": tmp_path / "jid001"}
    assert result.vanished == ("jid009",)
    assert [c.key for c in result.ready] == ["jid002"]
    assert scan_job_folders(tmp_path / "missing", known_keys=["jid001"], pending={}).vanished == ()


def test_entries_that_are_no_usable_input_are_skipped_with_the_reason(tmp_path: Path):
    ser = tmp_path / "ser"
    _write(ser / "sun.ser", 5, age_s=100)
    _write(ser / "sun.truth.npz", 5)
    _write(ser / ".DS_Store", 5)
    _write(ser / "notes.txt", 5)
    (ser / "night 2").mkdir()
    videos = scan_ser_files(ser, known_keys=[], pending={})
    assert [c.key for c in videos.ready] == ["sun"]
    assert len(videos.skipped) == 2
    assert "'night 2'" in videos.skipped[0] and "move them up" in videos.skipped[0]
    assert "'notes.txt'" in videos.skipped[1] and "not a file ending in .ser" in videos.skipped[1]

    jobs = tmp_path / "jobs"
    _job(jobs, "jid001")
    _write(jobs / "jid001.truth.json", 5)
    _job(jobs, "jid002", missing="psfcat.csv")
    (_job(jobs, "jid003") / JOB_FILES["score"]).write_bytes(b"")
    _write(jobs / "stray.txt", 5)
    found = scan_job_folders(jobs, known_keys=[], pending={})
    assert [c.key for c in found.ready] == ["jid001"]
    stray, missing, empty = found.skipped
    assert "'stray.txt'" in stray and "not a folder" in stray
    assert "jid002 is missing 1 file(s): psfcat.csv" in missing
    assert "jid003 has 1 empty file(s): scorrimage_masked.fits" in empty


def test_new_keys_a_command_line_or_dagster_would_misread_are_refused(tmp_path: Path):
    jobs = tmp_path / "jobs"
    for name in ["-rf", "a...b", ".hidden", "job one", "jid-01_a.b", "000678", "-old"]:
        _job(jobs, name)
    found = scan_job_folders(jobs, known_keys=["-old"], pending={})
    assert [c.key for c in found.ready] == ["000678", "jid-01_a.b"]
    # A key registered before the rule keeps its partition.
    assert list(found.present) == ["-old"]
    assert found.rejected == (
        "job folder '-rf': partition key '-rf' begins with '-', which a command line reads as "
        "an option; rename the folder, e.g. to 'rf'",
        "job folder '.hidden': partition key '.hidden' is not a safe path component: use only "
        "letters, digits, '.', '_' or '-', not starting with '.'; rename the folder, e.g. to "
        "'hidden'",
        "job folder 'a...b': partition key 'a...b' holds '...', which Dagster reads as a range "
        "of partitions; rename the folder, e.g. to 'a.b'",
        "job folder 'job one': partition key 'job one' is not a safe path component: use only "
        "letters, digits, '.', '_' or '-', not starting with '.'; rename the folder, e.g. to "
        "'job_one'",
    )
    ser = tmp_path / "ser"
    _write(ser / "sun...2.ser", 5, age_s=100)
    _write(ser / "-rf.ser", 5, age_s=100)
    videos = scan_ser_files(ser, known_keys=[], pending={})
    # A video's key is its sanitized name, whose leading dashes are dropped.
    assert [c.key for c in videos.ready] == ["rf"]
    assert videos.rejected == (
        "video 'sun...2.ser': partition key 'sun...2' holds '...', which Dagster reads as a "
        "range of partitions; rename the file, e.g. to 'sun.2.ser'",
    )
    with pytest.raises(UnsafePathError, match="begins with '-'"):
        check_new_key("-x")


def test_scan_changes_reports_settled_changes_in_turn(tmp_path: Path):
    paths = {key: _write(tmp_path / f"{key}.ser", 5, age_s=100) for key in ["a", "b", "c"]}
    handled = {key: observe_file(path) for key, path in paths.items()}
    unchanged, resume = scan_changes(paths, handled=handled, pending={})
    assert unchanged.ready == () and resume is None
    _write(paths["b"], 7, age_s=50)
    _write(paths["c"], 9)
    changed, _ = scan_changes(paths, handled=handled, pending={})
    assert [(c.key, c.observation.size) for c in changed.ready] == [("b", 7)]
    assert set(changed.pending) == {"c"}
    # Without a state, an input is reported: the caller decides what a first sight means.
    assert [c.key for c in scan_changes(paths, handled={}, pending={})[0].ready] == ["a", "b"]
    first, resume = scan_changes(paths, handled={}, pending={}, limit=2)
    assert [c.key for c in first.ready] == ["a", "b"] and resume == "b"
    second, resume = scan_changes(paths, handled={}, pending={}, limit=2, resume_after=resume)
    assert set(second.pending) == {"c"} and resume == "a"


def test_scan_state_reads_its_earlier_format_and_starts_afresh_from_garbage():
    old = ScanState.from_json('{"growing": [20, 1000]}')
    assert old == ScanState(pending={"growing": Observation(20, 1000)})
    state = ScanState(
        pending={"b": Observation(1, 2)}, handled={"a": Observation(3, 4)}, resume_after="a"
    )
    assert ScanState.from_json(state.to_json()) == state
    for garbage in ["[1, 2]", "{not json", '{"pending": {"x": 3}}', None, ""]:
        assert ScanState.from_json(garbage) == ScanState()
