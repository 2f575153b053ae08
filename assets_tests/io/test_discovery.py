import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from astro_assets.io.discovery import (
    INCOMPLETE_RECHECK_SECONDS,
    WHOLE_SAMPLE_BYTES,
    Observation,
    ScanState,
    confirm_vanished,
    content_sample,
    find_ser_for_key,
    is_settled,
    job_folder_sample,
    job_folder_state,
    list_ser_files,
    observe_file,
    scan_changes,
    scan_job_folders,
    scan_ser_files,
)
from astro_assets.io.fits import JOB_FILES
from astro_assets.io.paths import UnsafePathError, check_key


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
    _write(tmp_path / "sun 2.ser", 5)
    _write(tmp_path / "sun_2.ser", 5)
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
    for name in ["-rf", "a...b", "job one", "jid-01_a.b", "000678", "-old"]:
        _job(jobs, name)
    found = scan_job_folders(jobs, known_keys=["-old"], pending={})
    assert [c.key for c in found.ready] == ["000678", "jid-01_a.b"]
    # A key registered before the rule keeps its partition.
    assert list(found.present) == ["-old"]
    assert found.rejected == (
        "job folder '-rf': partition key '-rf' begins with '-', which a command line reads as "
        "an option; rename the folder, e.g. to 'rf'",
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
        check_key("-x", new=True)


def test_scan_changes_reports_settled_changes_in_turn(tmp_path: Path):
    paths = {key: _write(tmp_path / f"{key}.ser", 5, age_s=100) for key in ["a", "b", "c"]}
    handled = {key: observe_file(path) for key, path in paths.items()}
    unchanged = scan_changes(paths, handled=handled, pending={})
    assert unchanged.ready == () and unchanged.resume_after is None
    _write(paths["b"], 7, age_s=50)
    _write(paths["c"], 9)
    changed = scan_changes(paths, handled=handled, pending={})
    assert [(c.key, c.observation.size) for c in changed.ready] == [("b", 7)]
    assert set(changed.pending) == {"c"}
    # Without a state, an input is reported: the caller decides what a first sight means.
    assert [c.key for c in scan_changes(paths, handled={}, pending={}).ready] == ["a", "b"]
    first = scan_changes(paths, handled={}, pending={}, limit=2)
    assert [c.key for c in first.ready] == ["a", "b"] and first.resume_after == "b"
    second = scan_changes(paths, handled={}, pending={}, limit=2, resume_after="b")
    assert set(second.pending) == {"c"} and second.resume_after == "a"
    # With no budget left, nothing is examined and the turn stays where it was.
    none = scan_changes(paths, handled={}, pending={"c": handled["c"]}, limit=0, resume_after="a")
    assert none.ready == () and none.pending == {"c": handled["c"]} and none.resume_after == "a"


def test_scan_state_reads_its_earlier_format_and_starts_afresh_from_garbage():
    old = ScanState.from_json('{"growing": [20, 1000]}')
    assert old == ScanState(pending={"growing": Observation(20, 1000)})
    state = ScanState(
        pending={"b": Observation(1, 2)},
        handled={"a": Observation(3, 4, "f00d")},
        resume_after="a",
        missing_since={"c": 5},
        new_after="d",
        incomplete={"e": (6, 8)},
        device=7,
    )
    assert ScanState.from_json(state.to_json()) == state
    # A folder remembered by its time alone is examined again on the next scan.
    earlier = ScanState.from_json('{"pending": {}, "incomplete": {"e": 6}}')
    assert earlier == ScanState(incomplete={"e": (6, 0)})
    for garbage in ["[1, 2]", "{not json", '{"pending": {"x": 3}}', None, ""]:
        assert ScanState.from_json(garbage) == ScanState()


def test_hidden_and_system_entries_are_passed_over_silently(tmp_path: Path):
    ser = tmp_path / "ser"
    sun = _write(ser / "Sun.ser", 5, age_s=100)
    _write(ser / "._Sun.ser", 4096, age_s=100)  # macOS AppleDouble
    _write(ser / ".Jup.ser", 5, age_s=100)
    (ser / "lost+found").mkdir()
    videos = scan_ser_files(ser, known_keys=[], pending={})
    assert [c.key for c in videos.ready] == ["Sun"]
    assert (videos.rejected, videos.skipped) == ((), ())
    assert list_ser_files(ser) == [sun]
    assert find_ser_for_key(ser, "Sun") == sun
    with pytest.raises(FileNotFoundError, match="no SER file"):
        find_ser_for_key(ser, "Jup")

    jobs = tmp_path / "jobs"
    _job(jobs, "jid001")
    for name in ["lost+found", ".snapshot", ".Trash-1000"]:
        (jobs / name).mkdir()
    found = scan_job_folders(jobs, known_keys=[], pending={})
    assert [c.key for c in found.ready] == ["jid001"]
    assert (found.rejected, found.skipped) == ((), ())


def test_a_partial_download_is_told_to_wait_and_no_rename_suggests_a_taken_name(tmp_path: Path):
    ser = tmp_path / "ser"
    _write(ser / "Mars.ser.part", 5)
    _write(ser / "notes.txt~", 5)
    videos = scan_ser_files(ser, known_keys=[], pending={})
    assert len(videos.skipped) == 2
    assert all("still being written?" in message for message in videos.skipped)
    assert not any(".ser extension" in message for message in videos.skipped)

    jobs = tmp_path / "jobs"
    _job(jobs, "-rf")
    _job(jobs, "rf")
    found = scan_job_folders(jobs, known_keys=[], pending={})
    (rejected,) = found.rejected
    assert rejected.endswith("rename the folder")


def test_a_broken_link_is_unavailable_not_vanished(tmp_path: Path):
    other = tmp_path / "otherdisk"
    ser = tmp_path / "ser"
    ser.mkdir()
    (ser / "moon.ser").symlink_to(other / "moon.ser")
    _write(ser / "sun.ser", 5, age_s=100)
    videos = scan_ser_files(ser, known_keys=["moon", "sun"], pending={})
    assert videos.vanished == () and videos.unavailable == ("moon",)
    (message,) = videos.skipped
    assert f"link to {other / 'moon.ser'} is broken (its disk not mounted?)" in message

    jobs = tmp_path / "jobs"
    _job(jobs, "jid001")
    (jobs / "jid002").symlink_to(other / "jid002")
    found = scan_job_folders(jobs, known_keys=["jid001", "jid002"], pending={})
    assert found.vanished == () and found.unavailable == ("jid002",)
    assert "is broken" in found.skipped[0] and "not a folder" not in found.skipped[0]


def test_an_empty_folder_removes_nothing_and_says_why(tmp_path: Path):
    # An unmounted mount point is an empty folder (or holds lost+found).
    (tmp_path / "ser" / "lost+found").mkdir(parents=True)
    (tmp_path / "jobs").mkdir()
    videos = scan_ser_files(tmp_path / "ser", known_keys=["sun"], pending={})
    found = scan_job_folders(tmp_path / "jobs", known_keys=["jid001"], pending={})
    for result in (videos, found):
        assert not result.listed and result.vanished == () and result.error is None
        (warning,) = result.warnings
        assert "not mounted" in warning and "no partition is removed" in warning
    missing = scan_job_folders(tmp_path / "nope", known_keys=["jid001"], pending={})
    assert not missing.listed and missing.vanished == () and missing.error is None


def test_a_folder_that_cannot_be_listed_is_an_error_not_an_exception(tmp_path: Path, monkeypatch):
    (tmp_path / "jobs").mkdir()

    def refused(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "scandir", refused)
    result = scan_job_folders(tmp_path / "jobs", known_keys=["jid001"], pending={})
    assert not result.listed and result.vanished == ()
    assert "could not be listed (Permission denied)" in result.error


def test_a_key_is_removed_after_two_looks_apart():
    second = 10**9
    removed, missing = confirm_vanished(["a", "b"], {"b": 0}, now_ns=10 * second, grace_seconds=60)
    assert removed == () and missing == {"a": 10 * second, "b": 0}
    removed, missing = confirm_vanished(["b"], missing, now_ns=61 * second, grace_seconds=60)
    # "a" came back: forgotten; "b" missing on two looks 61 s apart: removed.
    assert removed == ("b",) and missing == {}


def test_a_job_file_replaced_by_one_of_the_same_size_and_older_time_is_a_change(tmp_path: Path):
    folder = _job(tmp_path, "jid001")
    before = job_folder_state(folder)
    science = folder / JOB_FILES["science"]
    replacement = _write(tmp_path / "new.fits", 16, age_s=7200)
    os.replace(replacement, science)
    after = job_folder_state(folder)
    assert (after.size, after.digest != before.digest) == (before.size, True)
    assert after.mtime_ns == before.mtime_ns  # what the size and newest time alone missed
    changes = scan_changes(
        {"jid001": folder}, handled={"jid001": before}, pending={}, observe=job_folder_state
    )
    assert [c.key for c in changes.ready] == ["jid001"]
    # A cursor written before digests were kept compares size and time alone: no change.
    legacy = Observation(after.size, after.mtime_ns)
    unchanged = scan_changes(
        {"jid001": folder}, handled={"jid001": legacy}, pending={}, observe=job_folder_state
    )
    assert unchanged.ready == ()


def test_new_folders_are_examined_in_turn_and_unchanged_incomplete_ones_passed_over(
    tmp_path: Path,
):
    for jid in ["a", "b", "c", "d"]:
        _job(tmp_path, jid, missing="psfcat.csv" if jid in {"a", "b"} else None)
    aged = os.stat(tmp_path / "a").st_mtime_ns - 3600 * 10**9
    for jid in ["a", "b"]:
        os.utime(tmp_path / jid, ns=(aged, aged))
    now = time.time_ns()
    first = scan_job_folders(tmp_path, known_keys=[], pending={}, limit=2, now_ns=now)
    assert (first.ready, first.resume_after) == ((), "b")
    assert first.incomplete == {"a": (aged, now), "b": (aged, now)}
    second = scan_job_folders(
        tmp_path, known_keys=[], pending={}, limit=2, incomplete=first.incomplete, now_ns=now
    )
    assert [c.key for c in second.ready] == ["c", "d"] and second.examined == 2
    assert second.incomplete == first.incomplete
    assert second.ready[0].observation.sample == job_folder_sample(tmp_path / "c")
    _write(tmp_path / "a" / "psfcat.csv", 16, age_s=3600)
    third = scan_job_folders(
        tmp_path, known_keys=["c", "d"], pending={}, incomplete=second.incomplete, now_ns=now
    )
    assert [c.key for c in third.ready] == ["a"] and third.incomplete == {"b": (aged, now)}


def test_an_incomplete_folder_is_examined_again_in_time_and_one_holding_a_link_always(
    tmp_path: Path,
):
    jobs = tmp_path / "jobs"
    # A file system that keeps no folder time (s3fs, SMB): the file added changes none.
    quiet = _job(jobs, "quiet", missing="psfcat.csv")
    # A catalogue that is a link into an archive whose file is not there yet.
    linked = _job(jobs, "linked", missing="psfcat.csv")
    (linked / "psfcat.csv").symlink_to(tmp_path / "archive" / "psfcat.csv")
    aged = os.stat(quiet).st_mtime_ns - 3600 * 10**9
    for folder in (quiet, linked):
        os.utime(folder, ns=(aged, aged))
    now = time.time_ns()
    first = scan_job_folders(jobs, known_keys=[], pending={}, now_ns=now)
    assert first.ready == () and first.incomplete == {"quiet": (aged, now)}
    _write(quiet / "psfcat.csv", 16, age_s=3600)
    _write(tmp_path / "archive" / "psfcat.csv", 16, age_s=3600)
    os.utime(quiet, ns=(aged, aged))
    soon = now + int(INCOMPLETE_RECHECK_SECONDS * 1e9) // 2
    second = scan_job_folders(
        jobs, known_keys=[], pending={}, incomplete=first.incomplete, now_ns=soon
    )
    assert [c.key for c in second.ready] == ["linked"]
    assert second.incomplete == first.incomplete
    later = now + int(INCOMPLETE_RECHECK_SECONDS * 1e9)
    third = scan_job_folders(
        jobs, known_keys=["linked"], pending={}, incomplete=second.incomplete, now_ns=later
    )
    assert [c.key for c in third.ready] == ["quiet"] and third.incomplete == {}


def _edit_in_place(path: Path, offset: int, data: bytes) -> None:
    """Overwrite bytes of ``path`` and give it its time back, as a careful tool may."""
    stat = path.stat()
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _changes(folder: Path, handled: dict[str, Observation]):
    return scan_changes(
        {folder.name: folder},
        handled=handled,
        pending={},
        observe=job_folder_state,
        sample=job_folder_sample,
    )


def test_a_content_sample_tells_new_content_from_new_metadata(tmp_path: Path):
    folder = _job(tmp_path, "jid001")
    handled = {"jid001": replace(job_folder_state(folder), sample=job_folder_sample(folder))}
    science = folder / JOB_FILES["science"]
    science.chmod(0o600)
    catalog = folder / JOB_FILES["catalog"]
    catalog.chmod(0o600)
    os.utime(catalog, ns=(catalog.stat().st_atime_ns, catalog.stat().st_mtime_ns - 10**9))
    touched = _changes(folder, handled)
    assert touched.ready == () and set(touched.refreshed) == {"jid001"}
    assert touched.refreshed["jid001"].sample == handled["jid001"].sample
    # An image's time changed: its content may have too, between the samples.
    os.utime(science, ns=(science.stat().st_atime_ns, science.stat().st_mtime_ns - 10**9))
    assert [c.key for c in _changes(folder, touched.refreshed).ready] == ["jid001"]
    _write(science, 2 * WHOLE_SAMPLE_BYTES)
    before = content_sample(science)
    with science.open("r+b") as handle:
        handle.seek(WHOLE_SAMPLE_BYTES)  # the middle sample
        handle.write(b"\1")
    assert content_sample(science) != before
    assert Observation.from_json(handled["jid001"].to_json()) == handled["jid001"]


def test_an_edit_between_the_samples_of_a_large_file_is_a_change(tmp_path: Path):
    folder = _job(tmp_path, "jid001")
    difference = folder / JOB_FILES["difference"]
    catalog = folder / JOB_FILES["catalog"]
    _write(difference, 4 * WHOLE_SAMPLE_BYTES, age_s=3600)
    _write(catalog, 2 * WHOLE_SAMPLE_BYTES, age_s=3600)
    handled = {"jid001": replace(job_folder_state(folder), sample=job_folder_sample(folder))}
    # A region masked in place, away from the samples: the image's time tells (set back, for
    # the edit to count as settled).
    before = difference.stat()
    _edit_in_place(difference, WHOLE_SAMPLE_BYTES, b"\1" * 1024)
    os.utime(difference, ns=(before.st_atime_ns, before.st_mtime_ns - 10**9))
    masked = _changes(folder, handled)
    assert [c.key for c in masked.ready] == ["jid001"] and masked.refreshed == {}
    handled = {"jid001": masked.ready[0].observation}
    # A label flipped in a large catalogue whose time was kept: it is read whole.
    _edit_in_place(catalog, WHOLE_SAMPLE_BYTES, b"\1")
    flipped = _changes(folder, handled)
    assert [c.key for c in flipped.ready] == ["jid001"] and flipped.refreshed == {}


def _partial_message(folder: Path, name: str) -> str:
    return (
        f"job folder {folder} holds {name}: still being written? (a partial download of a job "
        "file); the job is used once the file has its final name: wait until the download has "
        "finished, or remove the partial file"
    )


def test_a_job_file_still_downloading_holds_its_folder_back_as_a_partial_download(
    tmp_path: Path,
):
    # A science image whose download has not finished: not "missing", still being written.
    downloading = _job(tmp_path, "jid001", missing=JOB_FILES["science"])
    _write(downloading / f"{JOB_FILES['science']}.part", 16, age_s=3600)
    # A complete job with a new download of its catalogue in progress beside it.
    renewing = _job(tmp_path, "jid002")
    _write(renewing / f"{JOB_FILES['catalog']}.crdownload", 4, age_s=3600)
    # Partial files of something else do not hold a job back.
    other = _job(tmp_path, "jid003")
    _write(other / "notes.txt.part", 4, age_s=3600)
    result = scan_job_folders(tmp_path, known_keys=[], pending={})
    assert [c.key for c in result.ready] == ["jid003"]
    assert result.skipped == (
        _partial_message(downloading, "bkg_subbed_science_image.fits.part"),
        _partial_message(renewing, "psfcat.csv.crdownload"),
    )
    # A registered job whose catalogue is downloaded again is not run until it is renamed.
    handled = {"jid002": Observation(0, 0)}
    changes = scan_changes(
        {"jid002": renewing}, handled=handled, pending={}, observe=job_folder_state
    )
    assert changes.ready == ()
    assert changes.skipped == (_partial_message(renewing, "psfcat.csv.crdownload"),)
