import json
import os
import shutil
from pathlib import Path

import dagster as dg

from assets_tests.defs.sensor_ticks import age, later
from astro_assets.defs.flatfield.assets import DARK_CHOICE_FILE, SOURCE_RECORD_FILE
from astro_assets.defs.flatfield.sensors import paired_darks_sensor, ser_files_sensor
from astro_assets.io.ser import ser_fingerprint


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
    assert json.loads(result.cursor)["pending"] == {}


def test_file_still_growing_is_not_picked_up_until_it_stops(instance, data_store, layout):
    path = _ser(layout.incoming_ser, "growing.ser", age_s=None)
    first = _tick(instance, data_store)
    assert first.run_requests == []
    assert "growing" in json.loads(first.cursor)["pending"]
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


def test_empty_or_missing_folder_is_quiet(instance, data_store, layout):
    missing = _tick(instance, data_store)
    assert missing.run_requests == [] and missing.skip_reason is None
    layout.incoming_ser.mkdir(parents=True)
    empty = _tick(instance, data_store)
    assert empty.run_requests == [] and empty.skip_reason is None
    assert json.loads(empty.cursor)["pending"] == {}


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


def test_a_removed_video_loses_its_partition_unless_the_whole_folder_is_gone(
    instance, data_store, layout
):
    # Moon is registered from "Moon 2.SER" (another case of the extension, a sanitized name);
    # a dark named as the removed video is no partition and does not keep it.
    _ser(layout.incoming_ser, "Moon 2.SER")
    _ser(layout.incoming_darks, "sun.ser")
    instance.add_dynamic_partitions("ser_files", ["sun", "Moon_2"])
    first = _tick(instance, data_store)
    assert first.dynamic_partitions_requests == []
    result = _tick(instance, data_store, cursor=later(first.cursor))
    (deleted,) = result.dynamic_partitions_requests
    assert isinstance(deleted, dg.DeleteDynamicPartitionsRequest)
    assert list(deleted.partition_keys) == ["sun"]
    assert "removed 1 partition(s) whose input is gone: sun" in result.skip_reason.skip_message
    # A data disk not mounted shows no folder at all: the videos may come back, and the
    # sensor's state is kept for them.
    shutil.rmtree(layout.incoming_ser)
    missing = _tick(instance, data_store, cursor=result.cursor)
    assert missing.dynamic_partitions_requests == [] and missing.cursor == result.cursor


def test_an_unmounted_folder_of_videos_keeps_every_partition(instance, data_store, layout):
    # A mount point whose disk is not mounted is an empty folder.
    _ser(layout.incoming_ser, "sun.ser")
    _ser(layout.incoming_ser, "moon.ser")
    instance.add_dynamic_partitions("ser_files", ["sun", "moon"])
    first = _tick(instance, data_store)
    shutil.rmtree(layout.incoming_ser)
    layout.incoming_ser.mkdir()
    for cursor in (first.cursor, later(first.cursor)):
        result = _tick(instance, data_store, cursor=cursor)
        assert result.dynamic_partitions_requests == []
        assert "holds no video although 2 are registered" in result.skip_reason.skip_message


def test_a_video_behind_a_broken_link_is_unavailable_not_removed(
    instance, data_store, layout, tmp_path
):
    other = _ser(tmp_path / "otherdisk", "moon.ser")
    _ser(layout.incoming_ser, "sun.ser")
    (layout.incoming_ser / "moon.ser").symlink_to(other)
    first = _tick(instance, data_store)
    assert sorted(r.partition_key for r in first.run_requests) == ["moon", "sun"]
    instance.add_dynamic_partitions("ser_files", ["moon", "sun"])
    other.parent.rename(tmp_path / "unmounted")
    result = _tick(instance, data_store, cursor=later(first.cursor))
    assert result.dynamic_partitions_requests == []
    message = result.skip_reason.skip_message
    assert f"link to {other} is broken (its disk not mounted?)" in message
    assert ".ser extension" not in message
    assert set(json.loads(result.cursor)["handled"]) == {"moon", "sun"}


def _record_median(layout, key: str, video: Path) -> None:
    record = layout.flatfield_file(key, SOURCE_RECORD_FILE)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"file": video.name, "fingerprint": ser_fingerprint(video)}))


def test_a_video_replaced_by_another_capture_is_run_again(instance, data_store, layout):
    video = _ser(layout.incoming_ser, "jupiter.ser")
    first = _tick(instance, data_store)
    instance.add_dynamic_partitions("ser_files", ["jupiter"])
    _record_median(layout, "jupiter", video)
    # Touched, or copied over by the same capture: the median is still the video's.
    os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns - 10**9))
    touched = _tick(instance, data_store, cursor=first.cursor)
    assert touched.run_requests == []
    # Another capture under the same name, still being copied, then settled.
    video.write_bytes(b"\1" * 80)
    copying = _tick(instance, data_store, cursor=touched.cursor)
    assert copying.run_requests == []
    assert "jupiter" in json.loads(copying.cursor)["pending"]
    replaced = _tick(instance, data_store, cursor=copying.cursor)
    (request,) = replaced.run_requests
    assert request.partition_key == "jupiter"
    stat = video.stat()
    assert request.run_key == (
        f"replaced:jupiter:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:"
        f"{ser_fingerprint(video)[:16]}"
    )
    assert _tick(instance, data_store, cursor=replaced.cursor).run_requests == []
    # A cursor of the earlier format (the pending map alone) is read, and the video checked.
    os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns - 3600 * 10**9))
    (again,) = _tick(instance, data_store, cursor="{}").run_requests
    assert again.run_key.startswith("replaced:jupiter:80:")


def test_swapping_back_and_forth_between_captures_runs_each_swap(instance, data_store, layout):
    # Dagster drops a request whose run key it has seen: A -> B -> A -> B must not repeat one.
    video = _ser(layout.incoming_ser, "jupiter.ser", age_s=5000)
    cursor = _tick(instance, data_store).cursor
    instance.add_dynamic_partitions("ser_files", ["jupiter"])
    _record_median(layout, "jupiter", video)
    run_keys = []
    for step, content in enumerate([b"\2" * 80, b"\1" * 80, b"\2" * 80]):
        video.write_bytes(content)
        age(video, 4000 - step * 100)
        result = _tick(instance, data_store, cursor=cursor)
        cursor = result.cursor
        run_keys.extend(r.run_key for r in result.run_requests)
        _record_median(layout, "jupiter", video)
    assert len(run_keys) == 3 and len(set(run_keys)) == 3


def test_a_video_whose_median_never_succeeded_is_run_again_when_it_changes(
    instance, data_store, layout
):
    # A copy stalled long enough to look settled is registered; ser_median fails on the
    # truncated file (writing no source.json); then the copy completes.
    video = _ser(layout.incoming_ser, "saturn.ser", size=1000, age_s=60)
    first = _tick(instance, data_store)
    (registered,) = first.run_requests
    instance.add_dynamic_partitions("ser_files", ["saturn"])
    with video.open("ab") as handle:
        handle.write(b"\0" * 100_000)
    age(video, 60)
    completed = _tick(instance, data_store, cursor=first.cursor)
    (request,) = completed.run_requests
    assert request.partition_key == "saturn" and request.run_key != registered.run_key
    assert _tick(instance, data_store, cursor=completed.cursor).run_requests == []
    # A video first seen registered (by ingest) with no median yet asks for no run here.
    assert _tick(instance, data_store).run_requests == []


def test_files_it_cannot_use_are_named_in_the_skip_reason(instance, data_store, layout):
    _ser(layout.incoming_ser, "sun.ser")
    _ser(layout.incoming_ser, "sun.truth.npz")
    _ser(layout.incoming_ser, "capture.avi")
    instance.add_dynamic_partitions("ser_files", ["sun"])
    result = _tick(instance, data_store)
    assert result.skip_reason.skip_message.startswith("1 input(s) not used: 'capture.avi' in ")


def test_an_unreadable_paired_darks_cursor_starts_afresh(instance, data_store, layout):
    instance.add_dynamic_partitions("ser_files", ["sun"])
    _ser(layout.incoming_darks, "sun.ser")
    for garbage in ["{not json", "[1, 2]", '{"handled": 3, "pending": {}}']:
        result = _dark_tick(instance, data_store, cursor=garbage)
        assert [r.partition_key for r in result.run_requests] == ["sun"]
        assert set(json.loads(result.cursor)["handled"]) == {"sun"}


def test_swapping_captures_that_keep_their_times_runs_each_swap(
    instance, data_store, layout, tmp_path
):
    # `mv` and `cp -p` keep a capture's size and time: A -> B -> A -> B repeat both.
    captures = [_ser(tmp_path, "a.ser", size=80, age_s=5000), _ser(tmp_path, "b.ser", size=80)]
    captures[0].write_bytes(b"\1" * 80)
    age(captures[0], 5000)
    video = layout.incoming_ser / "jupiter.ser"
    layout.incoming_ser.mkdir(parents=True, exist_ok=True)
    shutil.copy2(captures[0], video)
    cursor = _tick(instance, data_store).cursor
    instance.add_dynamic_partitions("ser_files", ["jupiter"])
    _record_median(layout, "jupiter", video)
    run_keys = []
    for capture in [captures[1], captures[0], captures[1], captures[0]]:
        shutil.copy2(capture, video)
        result = _tick(instance, data_store, cursor=cursor)
        cursor = result.cursor
        run_keys.extend(r.run_key for r in result.run_requests)
        _record_median(layout, "jupiter", video)
    assert len(run_keys) == 4 and len(set(run_keys)) == 4


def test_the_truth_of_a_removed_video_is_not_taken_for_a_stray_file(instance, data_store, layout):
    _ser(layout.incoming_ser, "sun.ser")
    _ser(layout.incoming_ser, "moon.ser")
    _ser(layout.incoming_ser, "sun.truth.npz")
    _ser(layout.incoming_ser, "mars 1.truth.npz")
    instance.add_dynamic_partitions("ser_files", ["sun", "moon"])
    (layout.incoming_ser / "sun.ser").unlink()
    result = _tick(instance, data_store)
    assert result.skip_reason is None or "not used" not in result.skip_reason.skip_message


def test_no_video_is_removed_while_its_folder_is_on_another_device(
    instance, data_store, layout, monkeypatch
):
    from astro_assets.io import discovery

    _ser(layout.incoming_ser, "sun.ser")
    _ser(layout.incoming_ser, "moon.ser")
    instance.add_dynamic_partitions("ser_files", ["sun", "moon"])
    first = _tick(instance, data_store)
    (layout.incoming_ser / "sun.ser").unlink()
    monkeypatch.setattr(discovery, "folder_device", lambda folder: 4242)
    for cursor in (first.cursor, later(first.cursor)):
        result = _tick(instance, data_store, cursor=cursor)
        assert result.dynamic_partitions_requests == []
        assert "on another device than before" in result.skip_reason.skip_message
