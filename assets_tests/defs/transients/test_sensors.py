import json
import os
from pathlib import Path

import dagster as dg

from astro_assets.defs.transients.sensors import jids_sensor
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
