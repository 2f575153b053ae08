import json
import os
import shutil
from pathlib import Path

import dagster as dg

from astro_assets.defs.transients.sensors import jids_sensor
from astro_assets.ingest import register_new_inputs
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
    assert "jid020" in json.loads(first.cursor)
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
    result = _tick(instance, data_store)
    added, deleted = result.dynamic_partitions_requests
    assert list(added.partition_keys) == ["jid042"]
    assert isinstance(deleted, dg.DeleteDynamicPartitionsRequest)
    assert list(deleted.partition_keys) == ["jid041"]
    # A data disk not mounted shows no folder at all: the jobs may come back.
    shutil.rmtree(layout.incoming_jobs)
    assert _tick(instance, data_store).dynamic_partitions_requests == []


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
