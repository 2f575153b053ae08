import json
import os
import shutil
from pathlib import Path

import dagster as dg

from assets_tests.defs.sensor_ticks import age, later
from astro_assets.defs.transients import sensors as transients_sensors
from astro_assets.defs.transients.sensors import jids_sensor
from astro_assets.ingest import register_new_inputs
from astro_assets.io import discovery
from astro_assets.io.fits import JOB_FILES


def _job(root: Path, jid: str, *, missing: str | None = None, age_s: float | None = 3600) -> Path:
    folder = root / jid
    folder.mkdir(parents=True)
    for name in JOB_FILES.values():
        if name == missing:
            continue
        path = folder / name
        path.write_bytes(b"x" * 32)
        if age_s is not None:
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - int(age_s * 1e9)))
    return folder


def _tick(instance, data_store, cursor=None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"data_store": data_store}
    )
    return jids_sensor(context)


def test_complete_folders_become_partitions_in_one_range_run(instance, data_store, layout):
    for jid in ["jid001", "jid002", "jid003"]:
        _job(layout.incoming_jobs, jid)
    (layout.incoming_jobs / "jid003.truth.json").write_text("{}")
    result = _tick(instance, data_store)
    (request,) = result.dynamic_partitions_requests
    assert list(request.partition_keys) == ["jid001", "jid002", "jid003"]
    (run,) = result.run_requests
    assert run.tags["dagster/asset_partition_range_start"] == "jid001"
    assert run.tags["dagster/asset_partition_range_end"] == "jid003"
    again = _tick(instance, data_store)
    assert again.run_requests[0].run_key == run.run_key


def test_incomplete_folder_is_not_added(instance, data_store, layout):
    _job(layout.incoming_jobs, "jid010", missing="psfcat.csv")
    result = _tick(instance, data_store)
    assert result.run_requests == []
    assert result.dynamic_partitions_requests == []


def test_growing_folder_waits_until_it_stops_changing(instance, data_store, layout):
    folder = _job(layout.incoming_jobs, "jid020", age_s=None)
    first = _tick(instance, data_store)
    assert first.run_requests == []
    assert "jid020" in json.loads(first.cursor)["pending"]
    with (folder / "psfcat.csv").open("ab") as handle:
        handle.write(b"more")
    second = _tick(instance, data_store, cursor=first.cursor)
    assert second.run_requests == []
    third = _tick(instance, data_store, cursor=second.cursor)
    assert list(third.dynamic_partitions_requests[0].partition_keys) == ["jid020"]


def test_known_folders_are_skipped(instance, data_store, layout):
    _job(layout.incoming_jobs, "jid030")
    instance.add_dynamic_partitions("jids", ["jid030"])
    result = _tick(instance, data_store)
    assert result.run_requests == []


def test_a_removed_folder_loses_its_partition_unless_the_whole_folder_is_gone(
    instance, data_store, layout
):
    # The jobs run in one range: a job whose folder was removed would fail every later run.
    for jid in ["jid040", "jid041"]:
        _job(layout.incoming_jobs, jid)
    instance.add_dynamic_partitions("jids", ["jid040", "jid041"])
    shutil.rmtree(layout.incoming_jobs / "jid041")
    _job(layout.incoming_jobs, "jid042")
    # Missing at one look is not yet gone (a folder moved out and back, a slow mount).
    first = _tick(instance, data_store)
    (added,) = first.dynamic_partitions_requests
    assert list(added.partition_keys) == ["jid042"]
    instance.add_dynamic_partitions("jids", ["jid042"])
    assert _tick(instance, data_store, cursor=first.cursor).dynamic_partitions_requests == []
    result = _tick(instance, data_store, cursor=later(first.cursor))
    (deleted,) = result.dynamic_partitions_requests
    assert isinstance(deleted, dg.DeleteDynamicPartitionsRequest)
    assert list(deleted.partition_keys) == ["jid041"]
    # A tick that only removes says so.
    assert result.skip_reason.skip_message == ("removed 1 partition(s) whose input is gone: jid041")
    # A data disk not mounted shows no folder at all: the jobs may come back, and the state
    # is kept for them.
    shutil.rmtree(layout.incoming_jobs)
    missing = _tick(instance, data_store, cursor=result.cursor)
    assert missing.dynamic_partitions_requests == [] and missing.cursor == result.cursor


def test_ingest_removes_the_partition_of_a_removed_job_folder(instance, layout):
    for jid in ["jid050", "jid051"]:
        _job(layout.incoming_jobs, jid)
    first = register_new_inputs(instance, layout, watch_seconds=0.0)
    assert first.added["jids"] == ["jid050", "jid051"]
    assert first.removed["jids"] == []
    shutil.rmtree(layout.incoming_jobs / "jid050")
    second = register_new_inputs(instance, layout, watch_seconds=0.0)
    assert second.removed["jids"] == ["jid050"]
    assert instance.get_dynamic_partitions("jids") == ["jid051"]
    assert "removed  jids/jid050 (its folder is gone; its products stay on disk)" in second.lines()


def test_a_registered_job_whose_files_change_is_run_again(instance, data_store, layout):
    folder = _job(layout.incoming_jobs, "jid060")
    first = _tick(instance, data_store)
    instance.add_dynamic_partitions("jids", ["jid060"])
    quiet = _tick(instance, data_store, cursor=first.cursor)
    assert quiet.run_requests == []
    # psfcat.csv edited: the job's partition runs again, once, with the new state in its key.
    with (folder / "psfcat.csv").open("ab") as handle:
        handle.write(b"\n1,2,3")
    age(folder / "psfcat.csv", 60)
    edited = _tick(instance, data_store, cursor=quiet.cursor)
    (request,) = edited.run_requests
    assert request.partition_key == "jid060"
    assert request.run_key.startswith("changed:jid060:166:")
    assert _tick(instance, data_store, cursor=edited.cursor).run_requests == []
    # An image replaced: while it is still being written, it waits for the next tick.
    (folder / JOB_FILES["science"]).write_bytes(b"y" * 40)
    writing = _tick(instance, data_store, cursor=edited.cursor)
    assert writing.run_requests == []
    assert "jid060" in json.loads(writing.cursor)["pending"]
    replaced = _tick(instance, data_store, cursor=writing.cursor)
    assert [r.run_key.split(":")[:3] for r in replaced.run_requests] == [
        ["changed", "jid060", "174"]
    ]


def test_a_job_first_seen_registered_runs_again_only_if_newer_than_its_tensor(
    instance, data_store, layout
):
    # Registered by `astro-assets ingest`, or by a sensor whose earlier cursor kept no states.
    _job(layout.incoming_jobs, "jid070")
    _job(layout.incoming_jobs, "jid071")
    _job(layout.incoming_jobs, "jid072")
    instance.add_dynamic_partitions("jids", ["jid070", "jid071", "jid072"])
    for jid in ["jid070", "jid071"]:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key="job_tensors", partition=jid)
        )
    # jid071's catalog was edited after its tensor was written; jid072 never ran.
    (layout.incoming_jobs / "jid071" / "psfcat.csv").write_bytes(b"z" * 40)
    old_cursor = json.dumps({"jid999": [160, 1]})
    settling = _tick(instance, data_store, cursor=old_cursor)
    assert settling.run_requests == []
    result = _tick(instance, data_store, cursor=settling.cursor)
    assert [r.partition_key for r in result.run_requests] == ["jid071"]
    assert set(json.loads(result.cursor)["handled"]) == {"jid070", "jid071", "jid072"}
    assert _tick(instance, data_store, cursor=result.cursor).run_requests == []


def test_a_cursor_of_the_earlier_format_is_read(instance, data_store, layout):
    folder = _job(layout.incoming_jobs, "jid080", age_s=None)
    observed = sum((folder / name).stat().st_size for name in JOB_FILES.values())
    mtime = max((folder / name).stat().st_mtime_ns for name in JOB_FILES.values())
    # The earlier cursor was the pending map alone: the folder seen unchanged is ready now.
    result = _tick(instance, data_store, cursor=json.dumps({"jid080": [observed, mtime]}))
    assert list(result.dynamic_partitions_requests[0].partition_keys) == ["jid080"]
    assert _tick(instance, data_store, cursor="{not json").run_requests == []


def test_folders_it_cannot_use_are_named_in_the_skip_reason(instance, data_store, layout):
    _job(layout.incoming_jobs, "jid090", missing="psfcat.csv")
    _job(layout.incoming_jobs, "-rf")
    result = _tick(instance, data_store)
    assert result.dynamic_partitions_requests == []
    assert result.skip_reason is not None
    message = result.skip_reason.skip_message
    assert message.startswith("2 input(s) not used: job folder '-rf'")
    assert "e.g. to 'rf'" in message
    assert "jid090 is missing 1 file(s): psfcat.csv" in message


def test_the_jobs_folder_is_listed_once_per_tick(instance, data_store, layout, monkeypatch):
    for jid in ["jid100", "jid101"]:
        _job(layout.incoming_jobs, jid)
    instance.add_dynamic_partitions("jids", ["jid100", "jid101", "jid102"])
    first = _tick(instance, data_store)
    listed: list[str] = []
    scandir = os.scandir

    def counting_scandir(path):
        listed.append(str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    result = _tick(instance, data_store, cursor=later(first.cursor))
    assert listed == [str(layout.incoming_jobs)]
    assert list(result.dynamic_partitions_requests[0].partition_keys) == ["jid102"]


def test_an_empty_jobs_folder_removes_nothing_and_warns(instance, data_store, layout):
    # A mount point whose disk is not mounted: an empty folder, or one with lost+found.
    for jid in ["jid110", "jid111"]:
        _job(layout.incoming_jobs, jid)
    instance.add_dynamic_partitions("jids", ["jid110", "jid111"])
    first = _tick(instance, data_store)
    shutil.rmtree(layout.incoming_jobs)
    (layout.incoming_jobs / "lost+found").mkdir(parents=True)
    for cursor in (first.cursor, later(first.cursor)):
        result = _tick(instance, data_store, cursor=cursor)
        assert result.dynamic_partitions_requests == []
        assert "not mounted" in result.skip_reason.skip_message
    assert set(json.loads(result.cursor)["handled"]) == {"jid110", "jid111"}


def test_a_broken_link_to_a_job_folder_keeps_its_partition(instance, data_store, layout, tmp_path):
    other = tmp_path / "otherdisk"
    _job(other, "jid120")
    _job(layout.incoming_jobs, "jid121")
    (layout.incoming_jobs / "jid120").symlink_to(other / "jid120")
    first = _tick(instance, data_store)
    instance.add_dynamic_partitions("jids", ["jid120", "jid121"])
    other.rename(tmp_path / "unmounted")
    for cursor in (first.cursor, later(first.cursor)):
        result = _tick(instance, data_store, cursor=cursor)
        assert result.dynamic_partitions_requests == []
        assert "is broken (its disk not mounted?)" in result.skip_reason.skip_message
    assert json.loads(result.cursor)["missing_since"] == {}


def test_an_image_replaced_by_one_of_the_same_size_and_an_older_time_is_a_change(
    instance, data_store, layout, tmp_path
):
    # FITS files are whole 2880-byte blocks: a replacement often has the same size, and
    # `mv` or `cp -p` keep its older modification time.
    folder = _job(layout.incoming_jobs, "jid130")
    first = _tick(instance, data_store)
    instance.add_dynamic_partitions("jids", ["jid130"])
    quiet = _tick(instance, data_store, cursor=first.cursor)
    assert quiet.run_requests == []
    replacement = tmp_path / "new.fits"
    replacement.write_bytes(b"y" * 32)
    age(replacement, 7200)
    os.replace(replacement, folder / JOB_FILES["science"])
    replaced = _tick(instance, data_store, cursor=quiet.cursor)
    (request,) = replaced.run_requests
    assert request.partition_key == "jid130" and request.run_key.startswith("changed:jid130:")
    assert _tick(instance, data_store, cursor=replaced.cursor).run_requests == []


def _tick_applying(instance, data_store, cursor=None) -> dg.SensorResult:
    """A tick whose partition requests are applied, as the daemon does."""
    result = _tick(instance, data_store, cursor)
    for request in result.dynamic_partitions_requests:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
    return result


def test_new_folders_that_stay_incomplete_hold_up_no_other_folder(
    instance, data_store, layout, monkeypatch
):
    monkeypatch.setattr(transients_sensors, "MAX_FOLDERS_PER_TICK", 3)
    monkeypatch.setattr(transients_sensors, "RESERVED_FOR_REGISTERED", 1)
    registered = _job(layout.incoming_jobs, "zz_registered")
    cursor = _tick_applying(instance, data_store).cursor
    # As many folders as a tick examines wait for their psfcat.csv; they sort first.
    waiting = [_job(layout.incoming_jobs, f"a_wait{i}", missing="psfcat.csv") for i in range(3)]
    for folder in waiting:
        age(folder)
    _job(layout.incoming_jobs, "b_complete")
    (registered / "psfcat.csv").write_bytes(b"y" * 40)
    age(registered / "psfcat.csv")
    runs: list[str] = []
    for _ in range(2):
        result = _tick_applying(instance, data_store, cursor)
        cursor = result.cursor
        runs.extend(r.run_key or "" for r in result.run_requests)
    assert sorted(instance.get_dynamic_partitions("jids")) == ["b_complete", "zz_registered"]
    assert [key.split(":")[0] for key in runs] == ["changed", "jids"]
    assert runs[0].startswith("changed:zz_registered:")
    # Unchanged since found lacking a file, they are passed over without being examined...
    assert sorted(json.loads(cursor)["incomplete"]) == ["a_wait0", "a_wait1", "a_wait2"]
    examined: list[str] = []
    real = transients_sensors.job_folder_state
    monkeypatch.setattr(
        discovery, "job_folder_state", lambda path: examined.append(path.name) or real(path)
    )
    quiet = _tick_applying(instance, data_store, cursor)
    assert not any(name.startswith("a_wait") for name in examined)
    assert "a_wait0" in quiet.skip_reason.skip_message
    # ...until a file is added to one: its folder's time changes.
    catalog = waiting[1] / "psfcat.csv"
    catalog.write_bytes(b"x" * 32)
    age(catalog)
    added = _tick_applying(instance, data_store, quiet.cursor)
    assert list(added.dynamic_partitions_requests[0].partition_keys) == ["a_wait1"]
    assert sorted(json.loads(added.cursor)["incomplete"]) == ["a_wait0", "a_wait2"]


def test_an_incomplete_folder_is_registered_though_its_own_time_never_changes(
    instance, data_store, layout, tmp_path
):
    # A catalogue linked into an archive that has no file yet, and a folder on a file system
    # that keeps no folder times (s3fs, SMB): neither folder's time changes when it completes.
    linked = _job(layout.incoming_jobs, "jid170", missing="psfcat.csv")
    (linked / "psfcat.csv").symlink_to(tmp_path / "archive" / "psfcat.csv")
    quiet = _job(layout.incoming_jobs, "jid171", missing="psfcat.csv")
    for folder in (linked, quiet):
        age(folder)
    first = _tick_applying(instance, data_store)
    assert first.dynamic_partitions_requests == []
    assert list(json.loads(first.cursor)["incomplete"]) == ["jid171"]
    (tmp_path / "archive").mkdir()
    for catalog in (tmp_path / "archive" / "psfcat.csv", quiet / "psfcat.csv"):
        catalog.write_bytes(b"x" * 32)
        age(catalog)
    remembered, _ = json.loads(first.cursor)["incomplete"]["jid171"]
    os.utime(quiet, ns=(remembered, remembered))
    second = _tick_applying(instance, data_store, first.cursor)
    assert list(second.dynamic_partitions_requests[0].partition_keys) == ["jid170"]
    # Passed over while remembered, the quiet one is examined again once that is old.
    state = json.loads(second.cursor)
    shift = int(discovery.INCOMPLETE_RECHECK_SECONDS * 1e9)
    state["incomplete"] = {k: [t, since - shift] for k, (t, since) in state["incomplete"].items()}
    third = _tick_applying(instance, data_store, json.dumps(state))
    assert list(third.dynamic_partitions_requests[0].partition_keys) == ["jid171"]
    assert json.loads(third.cursor)["incomplete"] == {}


def test_an_edit_between_the_samples_of_an_image_runs_the_job(instance, data_store, layout):
    folder = _job(layout.incoming_jobs, "jid180")
    difference = folder / JOB_FILES["difference"]
    difference.write_bytes(b"x" * (4 << 20))
    age(difference)
    cursor = _tick_applying(instance, data_store).cursor
    assert _tick_applying(instance, data_store, cursor).run_requests == []
    # A satellite trail masked in place: same size, bytes changed only between the samples.
    with difference.open("r+b") as handle:
        handle.seek(1 << 20)
        handle.write(b"\0" * 4096)
    age(difference, 60)
    runs = []
    for _ in range(2):
        result = _tick_applying(instance, data_store, cursor)
        cursor = result.cursor
        runs.extend(result.run_requests)
    assert [r.partition_key for r in runs] == ["jid180"]
    assert runs[0].run_key.startswith("changed:jid180:")


def test_metadata_changes_alone_run_no_job_but_new_content_does(
    instance, data_store, layout, tmp_path
):
    folders = [_job(layout.incoming_jobs, jid) for jid in ["jid140", "jid141"]]
    cursor = _tick_applying(instance, data_store).cursor
    # chmod -R, touch, and the files replaced by hard links to themselves (cp -al, a restore
    # giving new inodes): every digest changes, no content does.
    for folder in folders:
        for path in folder.iterdir():
            path.chmod(0o664)
    os.utime(folders[0] / "psfcat.csv")
    copy = tmp_path / "copy"
    shutil.copytree(folders[1], copy, copy_function=shutil.copy2)
    shutil.rmtree(folders[1])
    copy.rename(folders[1])
    for _ in range(2):
        result = _tick_applying(instance, data_store, cursor)
        assert result.run_requests == []
        cursor = result.cursor
    # Other content of the same size and time (an image moved in with `mv`) is a change.
    science = folders[0] / JOB_FILES["science"]
    stat = science.stat()
    replacement = tmp_path / "other.fits"
    replacement.write_bytes(b"z" * stat.st_size)
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(replacement, science)
    # The folder's newest time is the touch's, a moment ago: it settles on the second look.
    waiting = _tick_applying(instance, data_store, cursor)
    assert waiting.run_requests == []
    (request,) = _tick_applying(instance, data_store, waiting.cursor).run_requests
    assert request.partition_key == "jid140"


def test_a_job_handled_before_digests_were_kept_gets_one_without_a_run(
    instance, data_store, layout, tmp_path
):
    folder = _job(layout.incoming_jobs, "jid150")
    instance.add_dynamic_partitions("jids", ["jid150"])
    state = json.loads(_tick(instance, data_store).cursor)
    # The two earlier formats: size and time alone, and a digest without a content sample.
    for old in (
        {k: v[:2] for k, v in state["handled"].items()},
        {k: v[:3] for k, v in state["handled"].items()},
    ):
        upgraded = _tick(instance, data_store, json.dumps({**state, "handled": old}))
        assert upgraded.run_requests == []
        (observation,) = json.loads(upgraded.cursor)["handled"].values()
        assert len(observation) == 4
    # The image moved in keeps the folder's size and newest time: only the new state sees it.
    replacement = tmp_path / "new.fits"
    replacement.write_bytes(b"z" * 32)
    age(replacement, 7200)
    os.replace(replacement, folder / JOB_FILES["science"])
    (request,) = _tick(instance, data_store, upgraded.cursor).run_requests
    assert request.partition_key == "jid150"


def test_no_job_is_removed_while_the_jobs_folder_is_on_another_device(
    instance, data_store, layout, monkeypatch
):
    for jid in ["jid160", "jid161"]:
        _job(layout.incoming_jobs, jid)
    first = _tick_applying(instance, data_store)
    assert json.loads(first.cursor)["device"] == layout.incoming_jobs.stat().st_dev
    # The disk unmounted, and the mount point holds one folder of its own by the same name.
    shutil.rmtree(layout.incoming_jobs / "jid161")
    monkeypatch.setattr(discovery, "folder_device", lambda folder: 4242)
    for cursor in (first.cursor, later(first.cursor)):
        result = _tick(instance, data_store, cursor)
        assert result.dynamic_partitions_requests == []
        assert "on another device than before" in result.skip_reason.skip_message
        assert json.loads(result.cursor)["device"] == json.loads(first.cursor)["device"]
        assert set(json.loads(result.cursor)["handled"]) == {"jid160", "jid161"}
    # Back on its own disk, the missing folder is removed after its grace period.
    monkeypatch.undo()
    second = _tick(instance, data_store, result.cursor)
    (deleted,) = _tick(instance, data_store, later(second.cursor)).dynamic_partitions_requests
    assert list(deleted.partition_keys) == ["jid161"]


def test_a_folder_named_too_long_for_its_files_is_refused_with_the_limit(
    instance, data_store, layout
):
    long_jid = "n_" + "Y" * 250
    for jid in ["a_first", long_jid, "z_last"]:
        _job(layout.incoming_jobs, jid)
    result = _tick(instance, data_store)
    (request,) = result.dynamic_partitions_requests
    assert list(request.partition_keys) == ["a_first", "z_last"]
    registered = register_new_inputs(instance, data_store.layout, watch_seconds=0)
    assert long_jid not in instance.get_dynamic_partitions("jids")
    assert any(
        "more than the 221 a key may have" in message and "rename the folder" in message
        for message in registered.rejected
    ), registered
