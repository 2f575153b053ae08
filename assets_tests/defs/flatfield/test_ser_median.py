from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from astro_assets.defs.flatfield.assets import frame_ranges, ser_median
from astro_assets.io.images import read_tiff
from astro_assets.io.ser import ser_fingerprint, write_ser


def _video(folder: Path, name: str, frames: np.ndarray, **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_ser(folder / name, frames, **kwargs)


def _materialize(instance, data_store, key, run_config=None) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("ser_files", [key])
    return dg.materialize(
        [ser_median],
        partition_key=key,
        instance=instance,
        resources={"data_store": data_store},
        run_config=run_config,
        raise_on_error=False,
    )


def test_ser_median_writes_the_exact_median_with_header_metadata(instance, data_store, layout):
    rng = np.random.default_rng(3)
    # A smooth scene, so that the byte order can be told from the pixels, plus noise per frame.
    yy, xx = np.mgrid[0:12, 0:16]
    scene = 1000 + 150 * yy + 90 * xx
    frames = (scene + rng.integers(0, 8, size=(6, 12, 16))).astype(np.uint16) * 16
    frames[:, 0, :4] = 60000  # an asymmetric marker that must keep its orientation
    timestamps = np.datetime64("2026-05-01T12:00:00", "ns") + np.arange(6) * np.timedelta64(
        40, "ms"
    )
    _video(layout.incoming_ser, "Sun 01.ser", frames, byte_order=">", timestamps=timestamps)
    result = _materialize(instance, data_store, "Sun_01")
    assert result.success
    median = read_tiff(layout.flatfield_file("Sun_01", "ser_median.tiff"))
    assert median.dtype == np.float32
    np.testing.assert_array_equal(median, np.median(frames, axis=0).astype(np.float32))
    assert median[0, :4].tolist() == [60000.0] * 4
    metadata = result.asset_materializations_for_node("ser_median")[0].metadata
    assert metadata["frames_used"].value == 6
    assert metadata["byte_order"].value == "big"
    assert metadata["byte_order_source"].value == "detected"
    assert metadata["time_span_s"].value == pytest.approx(0.2)
    assert metadata["width"].value == 16
    assert metadata["preview"].value.startswith("![temporal median](data:image/png;base64,")


def test_ser_median_of_an_rgb_video_is_per_channel(instance, data_store, layout):
    frames = np.zeros((3, 4, 5, 3), np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 10, 20, 30
    frames[1, ..., 2] = 200
    _video(layout.incoming_ser, "rgb.ser", frames, color="BGR")
    config = {"ops": {"ser_median": {"config": {"interpolate_levels": False}}}}
    result = _materialize(instance, data_store, "rgb", run_config=config)
    assert result.success
    median = read_tiff(layout.flatfield_file("rgb", "ser_median.tiff"))
    assert median.shape == (4, 5, 3)
    assert median[0, 0].tolist() == [10.0, 20.0, 30.0]
    metadata = result.asset_materializations_for_node("ser_median")[0].metadata
    assert metadata["median_estimator"].value == "exact"


def test_an_8_bit_median_is_interpolated_within_its_level(instance, data_store, layout):
    # Values 29, 30 and 31 around a signal of 29.9: the exact median is 30 on every pixel.
    rng = np.random.default_rng(5)
    frames = np.rint(29.9 + 0.8 * rng.standard_normal((201, 6, 8))).astype(np.uint8)
    _video(layout.incoming_ser, "eight bit.ser", frames)
    result = _materialize(instance, data_store, "eight_bit")
    assert result.success
    median = read_tiff(layout.flatfield_file("eight_bit", "ser_median.tiff"))
    exact = np.median(frames, axis=0)
    below = np.sum(frames < exact, axis=0)
    at = np.sum(frames == exact, axis=0)
    np.testing.assert_allclose(median, exact - 0.5 + (100.5 - below) / at, rtol=1e-6)
    assert abs(float(median.mean()) - 29.9) < 0.05 < abs(float(exact.mean()) - 29.9)
    metadata = result.asset_materializations_for_node("ser_median")[0].metadata
    assert metadata["median_estimator"].value == "interpolated within 8-bit levels"


def test_frame_step_and_byte_order_override_come_from_run_config(instance, data_store, layout):
    frames = np.arange(5 * 4 * 6, dtype=np.uint16).reshape(5, 4, 6) * 100
    _video(layout.incoming_ser, "v.ser", frames)
    config = {"ops": {"ser_median": {"config": {"frame_step": 2, "byte_order": "little"}}}}
    result = _materialize(instance, data_store, "v", run_config=config)
    assert result.success
    median = read_tiff(layout.flatfield_file("v", "ser_median.tiff"))
    np.testing.assert_array_equal(median, np.median(frames[::2], axis=0))
    metadata = result.asset_materializations_for_node("ser_median")[0].metadata
    assert metadata["frames_used"].value == 3
    assert metadata["byte_order_source"].value == "override"


def test_missing_video_fails_with_a_clear_message(instance, data_store):
    result = _materialize(instance, data_store, "gone")
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "no SER file for partition 'gone'" in failure.step_failure_data.error.cause.message


def test_malformed_video_fails_and_writes_nothing(instance, data_store, layout):
    layout.incoming_ser.mkdir(parents=True)
    (layout.incoming_ser / "junk.ser").write_bytes(b"\x01\x02" * 200)
    result = _materialize(instance, data_store, "junk")
    assert not result.success
    assert not layout.flatfield_file("junk", "ser_median.tiff").exists()


def test_the_byte_order_used_is_recorded_for_downstream_assets(instance, data_store, layout):
    import json

    frames = np.arange(3 * 4 * 6, dtype=np.uint16).reshape(3, 4, 6) * 50
    _video(layout.incoming_ser, "w.ser", frames)
    config = {"ops": {"ser_median": {"config": {"byte_order": "big"}}}}
    assert _materialize(instance, data_store, "w", run_config=config).success
    record = json.loads(layout.flatfield_file("w", "source.json").read_text())
    screening = record.pop("frames_without_signal")
    assert record.pop("fingerprint") == ser_fingerprint(layout.incoming_ser / "w.ser")
    assert record == {
        "source": "w.ser",
        "byte_order": ">",
        "color": "MONO",
        "pixel_depth": 16,
        "dark": None,
    }
    # 4 x 6 pixels are too few to tell a blank frame from a lit one: none is left out.
    assert screening["screened"] is False
    assert screening["frames"] == []
    assert sorted(screening["relative_spreads"]) == ["0", "1", "2"]


def test_an_8_bit_video_carries_the_gamma_warning(instance, data_store, layout):
    frames = np.full((3, 4, 5), 100, np.uint8)
    _video(layout.incoming_ser, "eight.ser", frames)
    result = _materialize(instance, data_store, "eight")
    assert result.success
    warnings = result.asset_materializations_for_node("ser_median")[0].metadata["warnings"].value
    assert any(w.startswith("8-bit capture") for w in warnings)


def test_a_median_of_few_frames_carries_a_warning(instance, data_store, layout):
    _video(layout.incoming_ser, "short.ser", np.full((7, 4, 5), 1000, np.uint16))
    _video(layout.incoming_ser, "enough.ser", np.full((8, 4, 5), 1000, np.uint16))
    short = _materialize(instance, data_store, "short")
    warnings = short.asset_materializations_for_node("ser_median")[0].metadata["warnings"].value
    assert any("the median is taken over 7 frames" in w for w in warnings)
    enough = _materialize(instance, data_store, "enough")
    warnings = enough.asset_materializations_for_node("ser_median")[0].metadata["warnings"].value
    assert not any("the median is taken over" in w for w in warnings)
    stepped = _materialize(
        instance, data_store, "enough", {"ops": {"ser_median": {"config": {"frame_step": 2}}}}
    )
    warnings = stepped.asset_materializations_for_node("ser_median")[0].metadata["warnings"].value
    assert any("over 4 frames" in w and "lower frame_step" in w for w in warnings)


def _bar_video(drift_px: int) -> np.ndarray:
    """21 frames of a 4 px wide bright bar (a thin crescent, seen edge on) on a dark sky,
    moving across its width by ``drift_px`` in all."""
    frames = np.full((21, 32, 48), 100, np.uint16)
    for index, column in enumerate(np.linspace(10, 10 + drift_px, 21).round().astype(int)):
        frames[index, :, column : column + 4] = 5000
    return frames


def test_a_target_that_moved_across_its_width_is_flagged(instance, data_store, layout):
    _video(layout.incoming_ser, "crescent.ser", _bar_video(drift_px=20))
    _video(layout.incoming_ser, "steady.ser", _bar_video(drift_px=2))
    moved = _materialize(instance, data_store, "crescent")
    metadata = moved.asset_materializations_for_node("ser_median")[0].metadata
    assert metadata["lit_fraction_frames"].value == pytest.approx(4 / 48)
    assert metadata["lit_fraction_median"].value == 0.0
    assert metadata["coverage_ok"].value is False
    assert any("moved across much of its own width" in w for w in metadata["warnings"].value)
    steady = _materialize(instance, data_store, "steady")
    metadata = steady.asset_materializations_for_node("ser_median")[0].metadata
    assert metadata["lit_fraction_median"].value == pytest.approx(4 / 48)
    assert metadata["coverage_ok"].value is True
    assert not any("moved across" in w for w in metadata["warnings"].value)


def test_a_median_of_sky_alone_is_flagged_whatever_the_sky_holds(instance, data_store, layout):
    # The bar crosses 20 px on a sky with noise and a gradient (vignetting, a moonlit sky):
    # against its own range the median's sky would count as lit; against the frames' it does
    # not.
    rng = np.random.default_rng(5)
    sky = np.linspace(100.0, 200.0, 48) + 8.0 * rng.standard_normal((21, 32, 48))
    frames = np.where(_bar_video(drift_px=20) > 100, 5000.0, sky).round().astype(np.uint16)
    _video(layout.incoming_ser, "planet.ser", frames)
    result = _materialize(instance, data_store, "planet")
    metadata = result.asset_materializations_for_node("ser_median")[0].metadata
    assert metadata["lit_fraction_frames"].value == pytest.approx(4 / 48)
    assert metadata["lit_fraction_median"].value == 0.0
    assert metadata["coverage_ok"].value is False


def test_frames_left_out_are_listed_as_runs():
    assert frame_ranges([]) == ""
    assert frame_ranges([7]) == "7"
    assert frame_ranges([0, 1, 2, 7, 9, 10]) == "0-2, 7, 9-10"
    # A blank lead-in of thousands of frames stays one run; runs beyond those shown are counted.
    assert frame_ranges([*range(5000), 5002]) == "0-4999, 5002"
    assert frame_ranges([0, 2, 4, 6, 7, 8], shown=2) == "0, 2 and 4 more frames"
    assert frame_ranges([0, 2, 4], shown=2) == "0, 2 and 1 more frame"
