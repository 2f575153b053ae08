import os
import shutil
from pathlib import Path

from astro_assets.ingest import register_new_inputs
from astro_assets.io.fits import JOB_FILES


def _file(path: Path, size: int = 32, age_s: float | None = 3600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    if age_s is not None:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - int(age_s * 1e9)))
    return path


def _job(root: Path, jid: str, *, missing: str | None = None) -> None:
    for name in JOB_FILES.values():
        if name != missing:
            _file(root / jid / name)


def test_a_removed_video_loses_its_partition_unless_the_whole_folder_is_gone(instance, layout):
    _file(layout.incoming_ser / "sun.ser")
    _file(layout.incoming_ser / "Moon 2.SER")
    first = register_new_inputs(instance, layout, watch_seconds=0.0)
    assert first.added["ser_files"] == ["Moon_2", "sun"]
    (layout.incoming_ser / "sun.ser").unlink()
    _file(layout.incoming_darks / "sun.ser")
    second = register_new_inputs(instance, layout, watch_seconds=0.0)
    assert second.removed["ser_files"] == ["sun"]
    assert "removed  ser_files/sun (its video is gone; its products stay on disk)" in (
        second.lines()
    )
    assert instance.get_dynamic_partitions("ser_files") == ["Moon_2"]
    shutil.rmtree(layout.incoming_ser)
    assert register_new_inputs(instance, layout, watch_seconds=0.0).removed["ser_files"] == []
    assert instance.get_dynamic_partitions("ser_files") == ["Moon_2"]


def test_what_cannot_be_used_is_reported_with_what_to_do_and_the_rest_registered(instance, layout):
    _file(layout.incoming_ser / "sun.ser")
    _file(layout.incoming_ser / "sun.truth.npz")
    _file(layout.incoming_ser / "notes.txt")
    _file(layout.incoming_ser / "sun...2.ser")
    _job(layout.incoming_jobs, "jid001")
    _job(layout.incoming_jobs, "jid-01_a.b")
    _job(layout.incoming_jobs, "000678")
    _job(layout.incoming_jobs, "jid002", missing="psfcat.csv")
    _job(layout.incoming_jobs, "-rf")
    report = register_new_inputs(instance, layout, watch_seconds=0.0)
    assert report.added == {"ser_files": ["sun"], "jids": ["000678", "jid-01_a.b", "jid001"]}
    lines = report.lines()
    rejected = [line for line in lines if line.startswith("rejected ")]
    skipped = [line for line in lines if line.startswith("skipped  ")]
    assert len(rejected) == 2 and len(skipped) == 2
    assert "'sun...2.ser'" in rejected[0] and "rename the file, e.g. to 'sun.2.ser'" in rejected[0]
    assert "job folder '-rf'" in rejected[1] and "rename the folder, e.g. to 'rf'" in rejected[1]
    assert "'notes.txt'" in skipped[0] and "move it out of the folder" in skipped[0]
    assert "jid002 is missing 1 file(s): psfcat.csv; add them" in skipped[1]


def test_a_job_of_fpack_images_is_registered_and_two_forms_of_one_image_are_skipped(
    instance, layout
):
    for name in JOB_FILES.values():
        _file(layout.incoming_jobs / "fz" / (name + ".fz" if name.endswith(".fits") else name))
    _job(layout.incoming_jobs, "twice")
    _file(layout.incoming_jobs / "twice" / "diffimage_masked.fits.fz")
    report = register_new_inputs(instance, layout, watch_seconds=0.0)
    assert report.added["jids"] == ["fz"]
    assert report.skipped == [
        f"{layout.incoming_jobs / 'twice'}: both diffimage_masked.fits and "
        "diffimage_masked.fits.fz exist; keep only one of them so it is clear which image the "
        "job uses"
    ]


def test_an_input_ready_at_the_first_look_is_added_once(instance, layout):
    _file(layout.incoming_ser / "old.ser")
    _file(layout.incoming_ser / "fresh.ser", age_s=None)
    report = register_new_inputs(instance, layout, watch_seconds=0.2)
    assert sorted(report.added["ser_files"]) == ["fresh", "old"]


def _during_the_watch(monkeypatch, action) -> None:
    """Run ``action`` in place of ingest's wait between its two looks."""
    monkeypatch.setattr("astro_assets.ingest.time.sleep", lambda seconds: action())


def test_an_input_gone_before_the_second_look_is_reported_once(instance, layout, monkeypatch):
    old = _file(layout.incoming_ser / "old.ser")
    _file(layout.incoming_ser / "fresh.ser", age_s=None)
    _during_the_watch(monkeypatch, old.unlink)
    report = register_new_inputs(instance, layout, watch_seconds=0.2)
    assert report.added["ser_files"] == ["fresh"]
    assert report.removed["ser_files"] == []
    (skipped,) = report.skipped
    assert "'old.ser'" in skipped and "removed while being watched" in skipped
    assert instance.get_dynamic_partitions("ser_files") == ["fresh"]


def test_a_partition_is_removed_only_when_both_looks_miss_its_input(instance, layout, monkeypatch):
    sun = _file(layout.incoming_ser / "sun.ser")
    _file(layout.incoming_ser / "moon.ser")
    register_new_inputs(instance, layout, watch_seconds=0.0)
    away = sun.rename(layout.root / "sun.ser")
    _during_the_watch(monkeypatch, lambda: away.rename(sun))  # moved out and back
    assert register_new_inputs(instance, layout, watch_seconds=0.2).removed["ser_files"] == []
    assert instance.get_dynamic_partitions("ser_files") == ["moon", "sun"]


def test_an_empty_incoming_folder_removes_nothing_and_warns(instance, layout):
    # A mount point whose disk is not mounted is an empty folder.
    _file(layout.incoming_ser / "sun.ser")
    _job(layout.incoming_jobs, "jid001")
    register_new_inputs(instance, layout, watch_seconds=0.0)
    shutil.rmtree(layout.incoming_ser)
    shutil.rmtree(layout.incoming_jobs)
    layout.incoming_ser.mkdir()
    (layout.incoming_jobs / "lost+found").mkdir(parents=True)
    report = register_new_inputs(instance, layout, watch_seconds=0.0)
    assert report.removed == {"ser_files": [], "jids": []}
    warnings = [line for line in report.lines() if line.startswith("warning  ")]
    assert len(warnings) == 2 and all("no partition is removed" in w for w in warnings)
    assert instance.get_dynamic_partitions("ser_files") == ["sun"]
    assert instance.get_dynamic_partitions("jids") == ["jid001"]


def test_an_unreadable_incoming_folder_is_an_error_and_the_other_is_still_scanned(
    instance, layout, monkeypatch
):
    _file(layout.incoming_ser / "sun.ser")
    _job(layout.incoming_jobs, "jid001")
    scandir = os.scandir

    def refusing_jobs(path):
        if Path(path) == layout.incoming_jobs:
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing_jobs)
    report = register_new_inputs(instance, layout, watch_seconds=0.0)
    assert report.added == {"ser_files": ["sun"], "jids": []}
    (error,) = report.errors
    assert f"{layout.incoming_jobs} could not be listed (Permission denied)" in error
    assert report.lines()[0] == f"error    {error}"
