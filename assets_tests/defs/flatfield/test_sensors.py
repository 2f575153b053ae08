import json
import os
from pathlib import Path

import dagster as dg

from astro_assets.defs.flatfield.assets import DARK_CHOICE_FILE
from astro_assets.defs.flatfield.sensors import paired_darks_sensor, ser_files_sensor


def _ser(folder: Path, name: str, size: int = 64, age_s: float | None = 3600) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"\0" * size)
    if age_s is not None:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - int(age_s * 1e9)))
    return path


def _tick(instance, data_store, cursor=None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"data_store": data_store}
    )
    return ser_files_sensor(context)


def test_new_file_adds_a_partition_and_requests_its_run(instance, data_store, layout):
    _ser(layout.incoming_ser, "sun 01.ser")
    result = _tick(instance, data_store)
    assert [r.partition_key for r in result.run_requests] == ["sun_01"]
    assert result.run_requests[0].run_key.startswith("sun_01:64:")
    (request,) = result.dynamic_partitions_requests
    assert request.partitions_def_name == "ser_files"
    assert list(request.partition_keys) == ["sun_01"]
    assert json.loads(result.cursor) == {}


def test_file_still_growing_is_not_picked_up_until_it_stops(instance, data_store, layout):
    path = _ser(layout.incoming_ser, "growing.ser", age_s=None)
    first = _tick(instance, data_store)
    assert first.run_requests == []
    assert "growing" in json.loads(first.cursor)
    with path.open("ab") as handle:
        handle.write(b"\0" * 32)
    second = _tick(instance, data_store, cursor=first.cursor)
    assert second.run_requests == []
    third = _tick(instance, data_store, cursor=second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["growing"]


def test_already_known_file_is_not_requested_again(instance, data_store, layout):
    _ser(layout.incoming_ser, "known.ser")
    instance.add_dynamic_partitions("ser_files", ["known"])
    result = _tick(instance, data_store)
    assert result.run_requests == []
    assert result.dynamic_partitions_requests == []


def test_empty_or_missing_folder_is_quiet(instance, data_store):
    result = _tick(instance, data_store)
    assert result.run_requests == []
    assert json.loads(result.cursor) == {}


def _dark_tick(instance, data_store, cursor=None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"data_store": data_store}
    )
    return paired_darks_sensor(context)


def test_a_dark_named_as_a_video_requests_its_run_once_settled(instance, data_store, layout):
    instance.add_dynamic_partitions("ser_files", ["sun"])
    _ser(layout.incoming_darks, "other.ser")
    path = _ser(layout.incoming_darks, "sun.ser", age_s=None)
    first = _dark_tick(instance, data_store)
    assert first.run_requests == []
    assert set(json.loads(first.cursor)["pending"]) == {"sun"}
    second = _dark_tick(instance, data_store, cursor=first.cursor)
    assert [r.partition_key for r in second.run_requests] == ["sun"]
    assert second.run_requests[0].run_key.startswith("dark:sun:64:")
    assert set(json.loads(second.cursor)["handled"]) == {"sun"}
    assert _dark_tick(instance, data_store, cursor=second.cursor).run_requests == []
    # A new dark under the same name asks for the partition's run again.
    path.write_bytes(b"\0" * 96)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - int(3600 * 1e9)))
    again = _dark_tick(instance, data_store, cursor=second.cursor)
    assert [r.run_key.split(":")[2] for r in again.run_requests] == ["96"]


def test_a_dark_older_than_its_video_s_median_asks_for_no_run(instance, data_store, layout):
    instance.add_dynamic_partitions("ser_files", ["moon"])
    _ser(layout.incoming_darks, "moon.ser")
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="ser_median", partition="moon")
    )
    result = _dark_tick(instance, data_store)
    assert result.run_requests == []
    assert set(json.loads(result.cursor)["handled"]) == {"moon"}


def _keep_dark(layout, key: str, dark_video: str) -> None:
    record = layout.flatfield_file(key, DARK_CHOICE_FILE)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"dark_video": dark_video}))


def test_the_dark_kept_for_a_video_is_watched_wherever_it_lies(
    instance, data_store, layout, tmp_path
):
    instance.add_dynamic_partitions("ser_files", ["sun", "moon"])
    # The kept dark replaces the one of the video's name, as in ser_median.
    _ser(layout.incoming_darks, "sun.ser", size=64)
    elsewhere = _ser(tmp_path / "capped", "night 2.ser", size=72)
    _keep_dark(layout, "sun", str(elsewhere))
    _ser(layout.incoming_darks, "moon_dark.ser", size=80)
    _keep_dark(layout, "moon", "moon_dark.ser")
    first = _dark_tick(instance, data_store)
    assert sorted(r.run_key.split(":")[1:3] for r in first.run_requests) == [
        ["moon", "80"],
        ["sun", "72"],
    ]
    # A new file in place of the kept dark asks for the video's run again.
    elsewhere.write_bytes(b"\0" * 96)
    stat = elsewhere.stat()
    os.utime(elsewhere, ns=(stat.st_atime_ns, stat.st_mtime_ns - int(3600 * 1e9)))
    again = _dark_tick(instance, data_store, cursor=first.cursor)
    assert [r.run_key.split(":")[1:3] for r in again.run_requests] == [["sun", "96"]]
    # A kept dark that is gone, or a record that cannot be read, asks for nothing.
    elsewhere.unlink()
    layout.flatfield_file("moon", DARK_CHOICE_FILE).write_text("{not json")
    assert _dark_tick(instance, data_store, cursor=again.cursor).run_requests == []
