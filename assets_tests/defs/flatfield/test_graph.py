"""The whole flat-field graph materialized per partition in a test instance."""

import dataclasses
import json
import logging
import os
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from astropy.io import fits
from PIL import Image
from scipy import ndimage

from astro_assets.defs.flatfield import assets as flatfield_assets
from astro_assets.defs.flatfield import defs as flatfield_defs
from astro_assets.io.images import read_fits_float32, read_tiff, write_tiff_float32
from astro_assets.io.ser import open_ser, write_ser
from astro_assets.materialize import run_failures
from astro_assets.resources.dust_eye import DustEye
from astro_assets.resources.gemini import GeminiImageModel
from astro_assets.resources.image_model import DustMaskResult
from astro_assets.samples import (
    DustSpec,
    SolarVideoParams,
    SolarVideoTruth,
    dark_signal,
    write_dark_video,
    write_sample_video,
)
from astro_assets.samples.solar import synthesize_frames_array
from astro_assets.science.flatfield.inpaint import guided_regions, inpaint_guided

ASSETS = list(flatfield_defs.assets) + list(flatfield_defs.asset_checks)
DUSTY_DILATION_PX = 10
"""``dust_mask``'s default ``dilation_px``: the mask is exactly 1.0 this far around the core."""

DUSTY = SolarVideoParams(
    width=224,
    height=168,
    n_frames=12,
    drift_px=16.0,
    n_sunspots=0,
    dust=(
        DustSpec(x=70.0, y=60.0, diameter_px=14.0, depth=0.3, kind="disc"),
        DustSpec(x=150.0, y=100.0, diameter_px=18.0, depth=0.2, kind="donut"),
    ),
    seed=4,
)


def _materialize(instance, data_store, key, selection=None, run_config=None):
    if key not in instance.get_dynamic_partitions("ser_files"):
        instance.add_dynamic_partitions("ser_files", [key])
    return dg.materialize(
        ASSETS,
        selection=selection,
        partition_key=key,
        instance=instance,
        resources={
            "data_store": data_store,
            "dust_eye": DustEye(backend="classical", gemini=GeminiImageModel()),
        },
        run_config=run_config,
        raise_on_error=False,
    )


@pytest.fixture
def dusty_video(layout) -> tuple[Path, SolarVideoTruth]:
    layout.incoming_ser.mkdir(parents=True)
    video, truth_path = write_sample_video(layout.incoming_ser / "dusty.ser", DUSTY)
    return video, SolarVideoTruth.load(truth_path)


def _check_results(result) -> dict[str, bool]:
    return {
        e.check_name: e.passed
        for e in (
            event.event_specific_data
            for event in result.all_events
            if event.event_type_value == "ASSET_CHECK_EVALUATION"
        )
    }


def test_whole_graph_produces_a_flat_that_corrects_the_dust(
    instance, data_store, layout, dusty_video
):
    _, truth = dusty_video
    result = _materialize(instance, data_store, "dusty")
    assert result.success
    checks = _check_results(result)
    confirmed = checks.pop("dust_mask_candidates_confirmed")
    assert checks == dict.fromkeys(checks, True)
    folder = layout.flatfield_dir("dusty")
    for name in [
        "ser_median.tiff",
        "dust_mask.tiff",
        "inpainted.tiff",
        "matched_inpaint.tiff",
        "final_flatfield.tiff",
        "final_flatfield.fits",
        "calibrated.ser",
        "dust_mask_overlay.png",
        "before_after.png",
    ]:
        assert (folder / name).is_file(), name
    mask = read_tiff(folder / "dust_mask.tiff")
    with fits.open(folder / "final_flatfield.fits") as hdul:
        flat = hdul[0].data
        header = hdul[0].header
    assert header["SRCFILE"] == "dusty.ser"
    assert header["BACKEND"] == "classical"
    # Physical identity: inside the shadows the flat estimates the sensor transmission T
    # (vignetting is smooth and cancels in median / inpaint). Inpainting under textured solar
    # data has a floor of about 2-3 % rms (SCIENCE.md section 2); a 12-frame median keeps more
    # texture than a real video, so this wiring test allows 5 % and asks that at least 75 % of
    # the shadow's rms deficit is removed. benchmarks/quality_flatfield.py measures the figures.
    for spec in DUSTY.dust:
        assert mask[int(spec.y), int(spec.x)] == 1.0
    # The 16 px drift is about one shadow diameter, at the limit of what the motion test can
    # tell: both shadows are recorded, and neither is taken for a scene feature.
    record = json.loads((folder / "dust_mask.json").read_text())
    verdicts = {round(v["centroid_x"] / 10): v["verdict"] for v in record["motion_test"]}
    for spec in DUSTY.dust:
        assert verdicts[round(spec.x / 10)] == "sensor" or verdicts[round(spec.x / 10)].startswith(
            "undecided: the target moved too little"
        )
    assert confirmed == all(verdict == "sensor" for verdict in verdicts.values())
    dust = truth.dust_support()
    errors = flat[dust] / truth.transmission[dust] - 1.0
    assert np.sqrt(np.mean(errors**2)) < 0.05
    uncorrected = truth.transmission[dust] - 1.0
    assert np.sqrt(np.mean(errors**2)) < 0.25 * np.sqrt(np.mean(uncorrected**2))
    assert np.all(flat[mask == 0] == 1.0)
    codes = read_tiff(folder / "final_flatfield.tiff")
    assert codes.dtype == np.uint16
    assert np.all(codes[mask == 0] == 65535)


def test_a_column_of_lower_gain_across_a_shadow_stays_out_of_the_flat(instance, data_store, layout):
    # A 4 % column crosses the first shadow. The flat is 1.0 on the column outside the mask,
    # so under the mask it must not correct the column either: a calibrated frame would show
    # the column interrupted where the dust was. The scene drifts 48 px across the column, so
    # the ratio of the median to its dust-free prediction shows it.
    frames, truth = synthesize_frames_array(dataclasses.replace(DUSTY, drift_px=48.0, n_frames=16))
    column = 70
    frames = frames.astype(np.float64)
    frames[:, :, column] = (frames[:, :, column] - truth.black_level_adu) * 0.96 + (
        truth.black_level_adu
    )
    layout.incoming_ser.mkdir(parents=True)
    write_ser(layout.incoming_ser / "column.ser", np.rint(frames).astype(np.uint16), depth=16)
    selection = ["ser_median", "dust_mask", "inpainted", "matched_inpaint", "final_flatfield"]
    result = _materialize(instance, data_store, "column", selection=selection)
    assert result.success
    found = result.asset_materializations_for_node("dust_mask")[0].metadata
    assert found["line_defects_found"].value == {"measured": True, "columns": 1, "rows": 0}
    folder = layout.flatfield_dir("column")
    record = json.loads((folder / "dust_mask.json").read_text())
    assert list(record["line_gains"]["columns"]) == [str(column)]
    assert record["line_gains"]["columns"][str(column)] == pytest.approx(0.96, abs=0.01)
    metadata = result.asset_materializations_for_node("inpainted")[0].metadata
    assert metadata["line_defects_divided_out"].value == {"columns": 1, "rows": 0}
    mask = read_tiff(folder / "dust_mask.tiff")
    inside = np.all(mask[:, [column - 2, column, column + 2]] >= 1.0, axis=1)
    assert inside.sum() >= 10

    def column_error() -> float:
        flat, _ = read_fits_float32(folder / "final_flatfield.fits")
        error = flat[inside] / truth.transmission[inside]
        return float(
            np.mean(error[:, column] / (0.5 * (error[:, column - 2] + error[:, column + 2])))
        )

    assert column_error() == pytest.approx(1.0, abs=0.01)
    # A 4 % column over a few hundred pixels stands out by far more than 5 sigma and by far
    # less than 1,000: the configured threshold decides whether 'median' divides it out.
    for settings, expected in (
        ({"line_defects": "off"}, 0.96),
        ({"line_defects": "median"}, 1.0),
        ({"line_defects": "median", "line_defect_sigma": 1000.0}, 0.96),
    ):
        run_config = {"ops": {"inpainted": {"config": settings}}}
        again = _materialize(
            instance, data_store, "column", selection=selection[2:], run_config=run_config
        )
        assert again.success
        assert column_error() == pytest.approx(expected, abs=0.01), settings
        divided_out = again.asset_materializations_for_node("inpainted")[0].metadata[
            "line_defects_divided_out"
        ]
        assert divided_out.value == {"columns": int(expected == 1.0), "rows": 0}, settings
    bad = {"ops": {"inpainted": {"config": {"line_defects": "rows"}}}}
    with pytest.raises(dg.DagsterInvalidConfigError, match="line_defects"):
        _materialize(instance, data_store, "column", selection=["inpainted"], run_config=bad)
    zero = {"ops": {"inpainted": {"config": {"line_defects": "median", "line_defect_sigma": 0.0}}}}
    failed = _materialize(instance, data_store, "column", selection=["inpainted"], run_config=zero)
    assert not failed.success
    assert "threshold must be > 0" in _failure_message(failed, "inpainted")
    # Gains recorded for another image than the median's planes are refused, not dropped.
    record_path = folder / "dust_mask.json"
    record["line_gains"]["shape"] = [frames.shape[1] + 2, frames.shape[2]]
    record_path.write_text(json.dumps(record))
    failed = _materialize(instance, data_store, "column", selection=["inpainted"])
    assert not failed.success
    assert "Materialize dust_mask again" in _failure_message(failed, "inpainted")


def test_regions_dropped_and_discs_added_by_hand_reach_the_flat(
    instance, data_store, layout, dusty_video
):
    _, truth = dusty_video
    assert _materialize(instance, data_store, "dusty").success
    disc, donut = DUSTY.dust
    # Beside the disc's shadow, on the margin the overlay shows around it; a clean spot of the
    # Sun's disc gets a shadow the eye could not have seen.
    drop = [disc.x + disc.diameter_px / 2 + 4, disc.y]
    added = [110.0, 40.0, 5.0]
    assert truth.transmission[30:51, 100:121].min() == 1.0
    edits = {"drop_regions_at": [drop], "add_dust_discs": [added]}
    selection = ["dust_mask", "inpainted", "matched_inpaint", "final_flatfield"]
    result = _materialize(
        instance,
        data_store,
        "dusty",
        selection=selection,
        run_config={"ops": {"dust_mask": {"config": edits}}},
    )
    assert result.success
    folder = layout.flatfield_dir("dusty")
    mask = read_tiff(folder / "dust_mask.tiff")
    flat, _ = read_fits_float32(folder / "final_flatfield.fits")
    rows, cols = np.indices(mask.shape)
    on_disc = np.hypot(cols - disc.x, rows - disc.y) <= disc.diameter_px / 2
    on_donut = np.hypot(cols - donut.x, rows - donut.y) <= donut.diameter_px / 2
    on_added = np.hypot(cols - added[0], rows - added[1]) < added[2] + DUSTY_DILATION_PX - 1
    assert np.all(mask[on_disc] == 0.0) and np.all(flat[on_disc] == 1.0)
    assert np.all(mask[on_donut] == 1.0)
    assert np.all(mask[on_added] == 1.0)
    record = json.loads((folder / "dust_mask.json").read_text())["edited_by_hand"]
    (dropped,) = record["dropped"]
    assert dropped["region_x"] == pytest.approx(disc.x, abs=1.5)
    assert dropped["region_y"] == pytest.approx(disc.y, abs=1.5)
    assert record["added"] == [
        {
            "x": 110.0,
            "y": 40.0,
            "radius_px": 5.0,
            "added_px": int(np.sum(np.hypot(cols - 110.0, rows - 40.0) <= 5.0)),
        }
    ]
    assert record["source"] == "run config"
    metadata = result.asset_materializations_for_node("dust_mask")[0].metadata
    assert metadata["edited_by_hand"].value == record
    assert metadata["region_count"].value == 2
    overlay = np.asarray(Image.open(folder / "dust_mask_overlay.png"))
    blue, red = overlay[int(disc.y), int(disc.x), 2], overlay[int(disc.y), int(disc.x), 0]
    assert blue > red

    # The edits are kept for later runs (a reprocessing after an upstream update keeps them);
    # empty lists clear them.
    saved = folder / "dust_mask_edits.json"
    assert json.loads(saved.read_text()) == edits
    assert _materialize(instance, data_store, "dusty", selection=["dust_mask"]).success
    np.testing.assert_array_equal(read_tiff(folder / "dust_mask.tiff"), mask)
    again = json.loads((folder / "dust_mask.json").read_text())["edited_by_hand"]
    assert again == {**record, "source": "dust_mask_edits.json"}
    cleared = {"drop_regions_at": [], "add_dust_discs": []}
    run_config = {"ops": {"dust_mask": {"config": cleared}}}
    assert _materialize(instance, data_store, "dusty", ["dust_mask"], run_config).success
    unedited = read_tiff(folder / "dust_mask.tiff")
    assert np.all(unedited[on_disc] == 1.0) and not np.any(unedited[30:51, 100:121])
    assert json.loads(saved.read_text()) == cleared
    assert json.loads((folder / "dust_mask.json").read_text())["edited_by_hand"] == {
        "source": None,
        "dropped": [],
        "added": [],
    }

    nowhere = {"ops": {"dust_mask": {"config": {"drop_regions_at": [[20.0, 140.0]]}}}}
    failed = _materialize(instance, data_store, "dusty", ["dust_mask"], nowhere)
    assert _retries(failed) == []
    message = _failure_message(failed, "dust_mask")
    assert "no region of the dust core lies within 19 px of (20, 140)" in message
    assert json.loads(saved.read_text()) == cleared
    saved.write_text('{"drop_regions_at": [[70, 60]')
    failed = _materialize(instance, data_store, "dusty", selection=["dust_mask"])
    assert "dust_mask_edits.json is not valid JSON" in _failure_message(failed, "dust_mask")
    saved.write_text('{"drop_regions_at": [70, 60]}')
    failed = _materialize(instance, data_store, "dusty", selection=["dust_mask"])
    assert "hold lists of [x, y]" in _failure_message(failed, "dust_mask")
    saved.write_text('{"drop_regions_at": [[20, 140]]}')
    failed = _materialize(instance, data_store, "dusty", selection=["dust_mask"])
    message = _failure_message(failed, "dust_mask")
    assert "no region of the dust core lies within 19 px of (20, 140)" in message
    assert "saved in dust_mask_edits.json" in message


def _failure_message(result, step_key: str) -> str:
    """The message of the run's one step failure, which must be ``step_key``'s, with those of
    the errors that caused it (the user's error under Dagster's)."""
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failure.step_key == step_key
    error = failure.event_specific_data.error
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    return "\n".join(messages)


def _check_evaluation(result, name: str):
    (evaluation,) = (
        event.event_specific_data
        for event in result.all_events
        if event.event_type_value == "ASSET_CHECK_EVALUATION"
        and event.event_specific_data.check_name == name
    )
    return evaluation


def test_a_shadow_found_in_the_ratio_and_dropped_by_hand_is_recorded_as_dropped(
    instance, data_store, layout, monkeypatch
):
    # The eye reports the disc alone; with 30 px of drift the ratio to the dust-free
    # prediction shows the donut, which a reviewer then drops.
    disc, donut = DUSTY.dust
    layout.incoming_ser.mkdir(parents=True)
    write_sample_video(layout.incoming_ser / "ratio.ser", dataclasses.replace(DUSTY, drift_px=30.0))
    rows, cols = np.indices((DUSTY.height, DUSTY.width))
    near_disc = np.hypot(cols - disc.x, rows - disc.y) <= disc.diameter_px

    def locate_disc(self, median):
        return DustMaskResult(
            core=near_disc & (median < 0.9 * np.median(median)), backend="classical"
        )

    monkeypatch.setattr(flatfield_assets.ClassicalImageModel, "locate_dust", locate_disc)
    selection = ["ser_median", "dust_mask"]
    assert _materialize(instance, data_store, "ratio", selection=selection).success

    def found_in_ratio():
        record = json.loads(layout.flatfield_file("ratio", "dust_mask.json").read_text())
        (entry,) = [e for e in record["found_in_ratio"] if e["new"]]
        assert entry["centroid_x"] == pytest.approx(donut.x, abs=2.0)
        assert entry["centroid_y"] == pytest.approx(donut.y, abs=2.0)
        return (
            entry,
            record["ratio_motion_test"],
            read_tiff(layout.flatfield_file("ratio", "dust_mask.tiff")),
        )

    entry, (verdict,), mask = found_in_ratio()
    assert entry["dropped_by_hand"] is False and verdict["verdict"] == "sensor"
    assert mask[int(donut.y), int(donut.x)] == 1.0

    by_hand = {"ops": {"dust_mask": {"config": {"drop_regions_at": [[donut.x, donut.y]]}}}}
    result = _materialize(instance, data_store, "ratio", ["dust_mask"], by_hand)
    assert result.success
    entry, (verdict,), mask = found_in_ratio()
    assert entry["dropped_by_hand"] is True
    assert verdict["verdict"] == "dropped by hand: sensor"
    assert mask[int(donut.y), int(donut.x)] == 0.0 and mask[int(disc.y), int(disc.x)] == 1.0
    metadata = result.asset_materializations_for_node("dust_mask")[0].metadata
    assert metadata["found_in_ratio_count"].value == 0
    assert metadata["ratio_search_skipped_for_motion"].value is False
    assert metadata["ratio_moved_with_scene_count"].value == 0
    # A limb-darkened Sun: only its outermost ring lies below 0.4 of the bright level.
    assert 0.0 < metadata["unsearched_target_fraction"].value < 0.1


def test_blank_and_cloudy_frames_are_left_out_and_dimmed_ones_divided_by_their_gain(
    instance, data_store, layout
):
    # Two blank frames at the start of the capture, two under a thick cloud, two under a thin
    # one; the dust is found as in the clear video, and nothing else.
    transparency = np.ones(24)
    transparency[[0, 1]] = 0.0
    transparency[[9, 15]] = 0.3
    transparency[[5, 12]] = 0.6
    params = dataclasses.replace(
        DUSTY, n_frames=24, drift_px=30.0, transparency=tuple(transparency)
    )
    layout.incoming_ser.mkdir(parents=True)
    _, truth_path = write_sample_video(layout.incoming_ser / "cloudy.ser", params)
    truth = SolarVideoTruth.load(truth_path)
    result = _materialize(instance, data_store, "cloudy", selection=["ser_median", "dust_mask"])
    assert result.success
    record = json.loads(layout.flatfield_file("cloudy", "dust_mask.json").read_text())
    median_metadata = result.asset_materializations_for_node("ser_median")[0].metadata
    assert median_metadata["frames_without_signal"].value["frames"] == "0-1"
    measured = record["frame_transparency"]
    assert measured["measured"] is True
    # The median left the blank frames out, and the drift drew its samples from the others.
    assert measured["frames_without_signal"] == []
    assert measured["frames_left_out"] == [9, 15]
    assert measured["gains"]["5"] == pytest.approx(0.6, rel=0.01)
    assert measured["gains"]["12"] == pytest.approx(0.6, rel=0.01)
    assert "0" not in measured["gains"]
    metadata = result.asset_materializations_for_node("dust_mask")[0].metadata
    assert metadata["frame_transparency"].value == measured
    mask = read_tiff(layout.flatfield_file("cloudy", "dust_mask.tiff"))
    assert (mask[truth.dust_support()] == 1.0).all()
    # Two regions, one on each shadow: no shadow that is not there.
    centroids = sorted((r["centroid_x"], r["centroid_y"]) for r in record["regions"])
    expected = sorted((spec.x, spec.y) for spec in DUSTY.dust)
    np.testing.assert_allclose(centroids, expected, atol=1.5)
    logged = [
        event.message
        for event in instance.all_logs(result.run_id)
        if "left out of the comparisons" in (event.message or "")
    ]
    assert logged and "[9, 15]" in logged[0]


def test_the_median_leaves_out_blank_frames_and_keeps_clouded_ones(instance, data_store, layout):
    # Three blank frames of 16 (two first, one in the middle) and one under a thick cloud:
    # the median is that of the other frames, exactly, and the record names the three.
    transparency = np.ones(16)
    transparency[[0, 1, 7]] = 0.0
    transparency[11] = 0.3
    params = dataclasses.replace(DUSTY, n_frames=16, transparency=tuple(transparency))
    layout.incoming_ser.mkdir(parents=True)
    path, _ = write_sample_video(layout.incoming_ser / "blank.ser", params)
    result = _materialize(instance, data_store, "blank", selection=["ser_median"])
    assert result.success
    kept = np.setdiff1d(np.arange(16), [0, 1, 7])
    with open_ser(path) as video:
        expected = np.median(np.asarray(video.frames[kept], np.float64), axis=0)
        everything = np.median(np.asarray(video.frames, np.float64), axis=0)
    median = read_tiff(layout.flatfield_file("blank", flatfield_assets.MEDIAN_FILE))
    np.testing.assert_array_equal(median, expected.astype(np.float32))
    assert (everything < expected).mean() > 0.5
    record = json.loads(
        layout.flatfield_file("blank", flatfield_assets.SOURCE_RECORD_FILE).read_text()
    )
    left_out = record["frames_without_signal"]
    assert left_out["screened"] is True
    assert left_out["frames"] == [0, 1, 7]
    assert left_out["relative_spreads"]["11"] == pytest.approx(0.3, rel=0.05)
    assert all(left_out["relative_spreads"][str(frame)] < 0.05 for frame in (0, 1, 7))
    metadata = result.asset_materializations_for_node("ser_median")[0].metadata
    assert metadata["frames_used"].value == 13
    assert metadata["frames_without_signal"].value == {**left_out, "count": 3, "frames": "0-1, 7"}
    assert any(
        "3 of 16 frames show too little of the scene" in warning and "frames 0-1, 7)" in warning
        for warning in metadata["warnings"].value
    )
    every_frame = {"ops": {"ser_median": {"config": {"min_signal_fraction": 0.0}}}}
    result = _materialize(instance, data_store, "blank", ["ser_median"], every_frame)
    assert result.success
    median = read_tiff(layout.flatfield_file("blank", flatfield_assets.MEDIAN_FILE))
    np.testing.assert_array_equal(median, everything.astype(np.float32))
    metadata = result.asset_materializations_for_node("ser_median")[0].metadata
    assert metadata["frames_used"].value == 16
    assert metadata["frames_without_signal"].value == {
        "screened": False,
        "frames": "",
        "count": 0,
        "relative_spreads": {},
    }
    # Every second frame: of 0, 2, ..., 14 only frame 0 is blank, named in the video's numbering.
    stepped = {"ops": {"ser_median": {"config": {"frame_step": 2}}}}
    result = _materialize(instance, data_store, "blank", ["ser_median"], stepped)
    assert result.success
    with open_ser(path) as video:
        expected = np.median(np.asarray(video.frames[2:16:2], np.float64), axis=0)
    median = read_tiff(layout.flatfield_file("blank", flatfield_assets.MEDIAN_FILE))
    np.testing.assert_array_equal(median, expected.astype(np.float32))
    metadata = result.asset_materializations_for_node("ser_median")[0].metadata
    assert metadata["frames_used"].value == 7
    assert metadata["frames_without_signal"].value["frames"] == "0"
    assert any("1 of 8 frames" in warning for warning in metadata["warnings"].value)
    out_of_range = {"ops": {"ser_median": {"config": {"min_signal_fraction": 1.5}}}}
    result = _materialize(instance, data_store, "blank", ["ser_median"], out_of_range)
    assert not result.success
    assert any("min_signal_fraction must lie in [0, 1]" in f for f in run_failures(result))


def test_a_median_of_mostly_blank_frames_says_which_frame_set_the_typical_one(
    instance, data_store, layout
):
    transparency = np.zeros(16)
    transparency[10:] = 1.0
    params = dataclasses.replace(DUSTY, n_frames=16, transparency=tuple(transparency))
    layout.incoming_ser.mkdir(parents=True)
    path, _ = write_sample_video(layout.incoming_ser / "late.ser", params)
    result = _materialize(instance, data_store, "late", selection=["ser_median"])
    assert result.success
    with open_ser(path) as video:
        expected = np.median(np.asarray(video.frames[10:], np.float64), axis=0)
    median = read_tiff(layout.flatfield_file("late", flatfield_assets.MEDIAN_FILE))
    np.testing.assert_array_equal(median, expected.astype(np.float32))
    warnings = result.asset_materializations_for_node("ser_median")[0].metadata["warnings"]
    assert any(
        "10 of 16 frames" in warning and "More than half of the frames were left out" in warning
        for warning in warnings.value
    )


def test_a_high_pedestal_left_in_the_flat_is_reported(instance, data_store, layout):
    # A pedestal of 20,000 ADU under a disc that peaks at 0.7 of 65,535: the sky holds 44 %
    # of the target's level, which a flat without a black level leaves in its ratio.
    pedestal = dataclasses.replace(DUSTY, black_level_adu=20000.0)
    layout.incoming_ser.mkdir(parents=True)
    write_sample_video(layout.incoming_ser / "pedestal.ser", pedestal)
    selection = ["ser_median", "dust_mask", "inpainted", "matched_inpaint", "final_flatfield"]
    result = _materialize(instance, data_store, "pedestal", selection=selection)
    assert result.success
    metadata = result.asset_materializations_for_node("final_flatfield")[0].metadata
    peak = pedestal.peak_level_frac * pedestal.max_stored_value
    share = metadata["uncorrected_pedestal_share"].value
    assert share == pytest.approx(pedestal.black_level_adu / peak, abs=0.03)
    assert metadata["saturated_target_fraction"].value == 0.0
    warnings = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.step_key == "final_flatfield" and entry.level == logging.WARNING
    ]
    assert any("black_level_mode: sky" in message for message in warnings)
    sky = {"ops": {"final_flatfield": {"config": {"black_level_mode": "sky"}}}}
    result = _materialize(instance, data_store, "pedestal", ["final_flatfield"], sky)
    assert result.success
    metadata = result.asset_materializations_for_node("final_flatfield")[0].metadata
    assert metadata["uncorrected_pedestal_share"].value is None
    assert metadata["black_level"].value == pytest.approx(20000, rel=0.01)


def test_a_turning_field_is_recorded_and_its_candidates_are_left_undecided(
    instance, data_store, layout
):
    # An alt-az mount turning the field 4 degrees over the video: registered by shifts alone,
    # the scene's far parts lie pixels off, and their residues would pass for dust.
    from assets_tests.science.flatfield.test_drift import _turning_video

    frames, _, _ = _turning_video(4.0, 0.0)
    layout.incoming_ser.mkdir(parents=True)
    write_ser(layout.incoming_ser / "turning.ser", frames, depth=16)
    result = _materialize(instance, data_store, "turning", selection=["ser_median", "dust_mask"])
    assert result.success
    metadata = result.asset_materializations_for_node("dust_mask")[0].metadata
    assert metadata["drift_registered"].value is False
    assert metadata["drift_rotation_deg"].value == pytest.approx(4.0, rel=0.1)
    assert "the field rotated by" in metadata["drift_verdict"].value
    record = json.loads(layout.flatfield_file("turning", "dust_mask.json").read_text())
    assert record["drift_rotation_px"] == pytest.approx(metadata["drift_rotation_px"].value)
    assert all(v["verdict"].startswith("undecided") for v in record["motion_test"])
    evaluation = _check_evaluation(result, "dust_mask_candidates_confirmed")
    assert evaluation.passed is False and "rotated" in evaluation.description


def test_a_tracked_video_shaken_by_the_seeing_confirms_its_dust_by_the_outlines(
    instance, data_store, layout
):
    # 0.3 px of shake: each shadow's outline stays on the sensor while the scene's move.
    tracked = dataclasses.replace(DUSTY, drift_px=0.0, jitter_px=0.3)
    layout.incoming_ser.mkdir(parents=True)
    write_sample_video(layout.incoming_ser / "tracked.ser", tracked)
    result = _materialize(instance, data_store, "tracked", selection=["ser_median", "dust_mask"])
    assert result.success
    assert _check_evaluation(result, "dust_mask_candidates_confirmed").passed is True
    mask = read_tiff(layout.flatfield_file("tracked", "dust_mask.tiff"))
    assert all(mask[int(spec.y), int(spec.x)] == 1.0 for spec in DUSTY.dust)
    record = json.loads(layout.flatfield_file("tracked", "dust_mask.json").read_text())
    at_dust = [
        v
        for v in record["motion_test"]
        if any(
            abs(v["centroid_x"] - spec.x) < 3 and abs(v["centroid_y"] - spec.y) < 3
            for spec in DUSTY.dust
        )
    ]
    assert len(at_dust) == len(DUSTY.dust)
    assert all(v["verdict"] == "sensor" and v["outline_fixed_local"] > 0.9 for v in at_dust)
    # The drift alone could not tell, which is said, but not as a warning.
    logged = [entry for entry in instance.all_logs(result.run_id) if entry.step_key == "dust_mask"]
    drift_notes = [entry for entry in logged if "moved only" in entry.user_message]
    assert drift_notes and all(entry.level == logging.INFO for entry in drift_notes)


def test_a_tracked_video_warns_that_its_dust_is_unconfirmed_and_can_keep_only_confirmed(
    instance, data_store, layout
):
    # The target stays put, not even shaken by the seeing: each shadow could be a sunspot,
    # which a flat would correct away.
    tracked = dataclasses.replace(DUSTY, drift_px=0.0, jitter_px=0.0)
    layout.incoming_ser.mkdir(parents=True)
    write_sample_video(layout.incoming_ser / "tracked.ser", tracked)
    selection = ["ser_median", "dust_mask"]
    result = _materialize(instance, data_store, "tracked", selection=selection)
    assert result.success
    evaluation = _check_evaluation(result, "dust_mask_candidates_confirmed")
    assert evaluation.passed is False
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    metadata = result.asset_materializations_for_node("dust_mask")[0].metadata
    assert metadata["ratio_search_skipped_for_motion"].value is True
    kept = metadata["undecided_kept_count"].value
    assert kept == evaluation.metadata["undecided_kept"].value == metadata["region_count"].value
    assert kept >= len(DUSTY.dust)
    mask = read_tiff(layout.flatfield_file("tracked", "dust_mask.tiff"))
    assert all(mask[int(spec.y), int(spec.x)] == 1.0 for spec in DUSTY.dust)
    # The quick-look shows them in yellow over the mask's orange; dropped, they turn blue.
    overlay = layout.flatfield_file("tracked", "dust_mask_overlay.png")
    centres = [(int(spec.y), int(spec.x)) for spec in DUSTY.dust]
    rgb = np.asarray(Image.open(overlay)).astype(int)
    assert all(rgb[c][1] > rgb[c][2] + 100 and rgb[c][0] > rgb[c][2] + 100 for c in centres)

    strict = {"ops": {"dust_mask": {"config": {"keep_undecided": False}}}}
    result = _materialize(instance, data_store, "tracked", ["dust_mask"], strict)
    assert result.success
    assert _check_evaluation(result, "dust_mask_candidates_confirmed").passed is True
    metadata = result.asset_materializations_for_node("dust_mask")[0].metadata
    assert metadata["undecided_dropped_count"].value == kept
    assert metadata["undecided_kept_count"].value == 0
    assert not read_tiff(layout.flatfield_file("tracked", "dust_mask.tiff")).any()
    rgb = np.asarray(Image.open(overlay)).astype(int)
    assert all(rgb[c][2] > rgb[c][0] + 40 for c in centres)
    record = json.loads(layout.flatfield_file("tracked", "dust_mask.json").read_text())
    assert all(
        v["verdict"].startswith("dropped, keep_undecided is off") for v in record["motion_test"]
    )

    # A reviewer who drops the first shadow by hand keeps the second undecided: the check
    # still warns, about that one only.
    first, second = DUSTY.dust
    by_hand = {"ops": {"dust_mask": {"config": {"drop_regions_at": [[first.x, first.y]]}}}}
    result = _materialize(instance, data_store, "tracked", ["dust_mask"], by_hand)
    assert result.success
    evaluation = _check_evaluation(result, "dust_mask_candidates_confirmed")
    undecided = evaluation.metadata["undecided"].value
    assert evaluation.passed is False and len(undecided) == kept - 1
    assert all(abs(v["centroid_x"] - first.x) > first.diameter_px for v in undecided)
    metadata = result.asset_materializations_for_node("dust_mask")[0].metadata
    assert metadata["undecided_kept_count"].value == kept - 1
    record = json.loads(layout.flatfield_file("tracked", "dust_mask.json").read_text())
    by_reviewer = [v for v in record["motion_test"] if v["verdict"].startswith("dropped by hand")]
    assert len(by_reviewer) == 1
    assert by_reviewer[0]["verdict"].startswith("dropped by hand: undecided")
    assert by_reviewer[0]["centroid_x"] == pytest.approx(first.x, abs=2.0)
    mask = read_tiff(layout.flatfield_file("tracked", "dust_mask.tiff"))
    assert mask[int(first.y), int(first.x)] == 0.0 and mask[int(second.y), int(second.x)] == 1.0


def test_a_mask_the_expansion_spreads_over_a_small_frame_tells_how_to_keep_it_smaller(
    instance, data_store, layout
):
    """On 64 x 48 px, the default 10 px dilation around two shadows of 6-7 px masks most of
    the frame: the coverage check says that the expansion, not the shadows, covers it."""
    small = SolarVideoParams(
        width=64,
        height=48,
        n_frames=16,
        drift_px=10.0,
        n_sunspots=0,
        dust=(
            DustSpec(x=22.4, y=19.2, diameter_px=6.0, depth=0.3, kind="disc"),
            DustSpec(x=41.6, y=28.8, diameter_px=7.2, depth=0.2, kind="donut"),
        ),
    )
    layout.incoming_ser.mkdir(parents=True)
    write_sample_video(layout.incoming_ser / "small.ser", small)
    result = _materialize(instance, data_store, "small", selection=["ser_median", "dust_mask"])
    assert result.success
    evaluation = _check_evaluation(result, "dust_mask_coverage")
    masked = evaluation.metadata["masked_fraction"].value
    core = evaluation.metadata["core_fraction"].value
    assert evaluation.passed is False and masked > 0.5 and 0 < core < 0.5 * masked
    record = json.loads(layout.flatfield_file("small", "dust_mask.json").read_text())
    assert core == sum(region["area_px"] for region in record["regions"]) / (64 * 48)
    assert "on a frame of 64 x 48 px, a lower dust_mask dilation_px" in evaluation.description


MOSAIC_GAINS = {"R": 0.6, "G": 1.0, "B": 0.45}
"""Colour gains of the mosaic videos: a yellow Sun through a white-light filter."""


def _write_mosaic_video(layout, key: str, params: SolarVideoParams, pattern: str):
    """Write ``params``' video as a 16-bit ``pattern`` mosaic, each colour cell the light
    above the black level times its colour's gain; return the video's truth."""
    frames, truth = synthesize_frames_array(params)
    gains = np.empty(frames.shape[1:])
    for index, colour in enumerate(pattern):
        gains[index // 2 :: 2, index % 2 :: 2] = MOSAIC_GAINS[colour]
    black = truth.black_level_adu
    video = np.rint((frames - black) * gains + black).astype(np.uint16)
    layout.incoming_ser.mkdir(parents=True)
    write_ser(layout.incoming_ser / f"{key}.ser", video, color=pattern, depth=16)
    return truth


def test_a_small_shadow_on_a_colour_mosaic_is_found_and_corrected(instance, data_store, layout):
    """A 14 px, 30 % deep disc on a 160 x 120 GBRG video: the eye searches the 2 x 2-cell view,
    where the disc is 7 cells across and its responses once filled the cell its noise was
    measured on; outlined 4 cells off, it was dropped as scene and the flat stayed 1.0 on it."""
    disc = DustSpec(x=56.0, y=48.0, diameter_px=14.4, depth=0.3, kind="disc")
    params = SolarVideoParams(
        width=160,
        height=120,
        n_frames=16,
        n_sunspots=0,
        drift_px=20.0,
        dust=(disc, DustSpec(x=104.0, y=72.0, diameter_px=18.0, depth=0.2, kind="donut")),
        seed=3,
    )
    truth = _write_mosaic_video(layout, "mosaic", params, "GBRG")
    result = _materialize(instance, data_store, "mosaic")
    assert result.success, run_failures(result)
    flat, _ = read_fits_float32(layout.flatfield_dir("mosaic") / "final_flatfield.fits")
    support = truth.dust_support()
    errors = flat[support] / truth.transmission[support] - 1.0
    assert np.sqrt(np.mean(errors**2)) < 0.05
    centre = round(disc.y), round(disc.x)
    assert flat[centre] == pytest.approx(truth.transmission[centre], abs=0.03)
    # A guide on the luminance's cells, as dust_mask wrote before each plane had its own, is
    # refused rather than split into planes it does not describe.
    guide_path = layout.flatfield_file("mosaic", "inpaint_guide.tiff")
    guide = read_tiff(guide_path)
    assert guide.shape == flat.shape
    write_tiff_float32(guide_path, guide[::2, ::2])
    failed = _materialize(instance, data_store, "mosaic", selection=["inpainted"])
    assert not failed.success
    message = _failure_message(failed, "inpainted")
    assert "inpaint_guide.tiff has shape (60, 80)" in message
    assert "Materialize dust_mask again" in message


SPOTTED_PLANET = SolarVideoParams(
    width=256,
    height=192,
    n_frames=24,
    target="planet",
    drift_px=40.0,
    dust=(
        DustSpec(x=74.0, y=95.0, diameter_px=8.0, depth=0.95, kind="disc"),
        DustSpec(x=140.0, y=100.0, diameter_px=8.0, depth=0.9, kind="disc"),
    ),
    seed=2,
)
"""A drifting planet with two 8 px, 90-95 % deep spots, one of them 4 px inside the limb."""


def test_near_opaque_spots_on_a_planet_on_a_colour_mosaic_are_found_and_corrected(
    instance, data_store, layout
):
    """Two 8 px, 90-95 % deep spots on a drifting planet captured as an RGGB mosaic, one of
    them 4 px inside the limb. The eye searches the 2 x 2 cells with its sizes in sensor pixels
    (in cells, its smallest filter was 10 px in radius and missed both: the flat was 1.0 where
    T = 0.05); and on the limb each colour plane follows its own prediction, with its own limb
    (the luminance's, interpolated to the plane's samples, left the flat 3.8 % rms off in
    dust here, 2.6 % now; at the cells' centres in the plain ratio, 116 % on the limb's
    spot)."""
    truth = _write_mosaic_video(layout, "planet", SPOTTED_PLANET, "RGGB")
    selection = ["ser_median", "dust_mask", "inpainted", "matched_inpaint", "final_flatfield"]
    known_black = {"black_level_mode": "value", "black_level": truth.black_level_adu}
    run_config = {"ops": {"final_flatfield": {"config": known_black}}}
    result = _materialize(instance, data_store, "planet", selection, run_config)
    assert result.success, run_failures(result)
    details = result.asset_materializations_for_node("dust_mask")[0].metadata["model_details"]
    assert details.value["parameters"]["min_radius_px"] == 5.0
    assert details.value["filter_radii_px"][0] == pytest.approx(5.0)
    flat, _ = read_fits_float32(layout.flatfield_dir("planet") / "final_flatfield.fits")
    mask = read_tiff(layout.flatfield_file("planet", "dust_mask.tiff"))
    lit = truth.scene > 0.05 * np.percentile(truth.scene, 99)
    support = truth.dust_support() & lit
    assert support.sum() > 150
    assert np.all(mask[support] == 1.0)
    errors = flat[support] / truth.transmission[support] - 1.0
    assert np.sqrt(np.mean(errors**2)) < 0.03
    guide = read_tiff(layout.flatfield_file("planet", "inpaint_guide.tiff"))
    assert guide.shape == flat.shape
    assert np.isfinite(guide[support]).all()


def test_a_monochrome_fill_follows_its_guide_above_the_pedestal_where_lit(
    instance, data_store, layout
):
    """On a drifting planet with a pedestal, the guided regions of a monochrome median are
    filled in the ratio above the pedestal where the guide is lit, as a colour plane's are:
    the plain ratio runs from 1 on the sky to the target's level over the limb, and a few ADU
    of the guide's error on the sky are tens of per cent of it there."""
    frames, truth = synthesize_frames_array(SPOTTED_PLANET)
    layout.incoming_ser.mkdir(parents=True)
    write_ser(layout.incoming_ser / "planet.ser", frames.astype(np.uint16), depth=16)
    run_config = {"ops": {"inpainted": {"config": {"line_defects": "off"}}}}
    selection = ["ser_median", "dust_mask", "inpainted"]
    result = _materialize(instance, data_store, "planet", selection, run_config)
    assert result.success, run_failures(result)
    folder = layout.flatfield_dir("planet")
    median = read_tiff(folder / "ser_median.tiff")
    mask = read_tiff(folder / "dust_mask.tiff")
    guide = read_tiff(folder / "inpaint_guide.tiff")
    pedestal = (
        result.asset_materializations_for_node("dust_mask")[0]
        .metadata["prediction_black_level"]
        .value
    )
    assert pedestal == pytest.approx(truth.black_level_adu, abs=2.0)
    guided = guided_regions(mask, guide)
    assert guided.sum() > 100
    filled = read_tiff(folder / "inpainted.tiff")
    above = inpaint_guided(median, guided, guide, black_level=pedestal)
    plain = inpaint_guided(median, guided, guide)
    np.testing.assert_array_equal(filled[guided], above[guided])
    assert np.abs(plain[guided] - above[guided]).max() > 1.0


def test_a_featureless_field_is_not_registered_and_its_dust_is_kept_undecided(
    instance, data_store, layout
):
    # An evenly lit field (a cloud, a diffuser) through two shadows: once the shadows are
    # left out, the frames hold nothing but noise to register, so no drift can be measured
    # and the shadows cannot be shown fixed on the sensor.
    rng = np.random.default_rng(11)
    rows, cols = np.indices((DUSTY.height, DUSTY.width))
    transmission = np.ones((DUSTY.height, DUSTY.width))
    for spec in DUSTY.dust:
        transmission[np.hypot(cols - spec.x, rows - spec.y) <= spec.diameter_px / 2] = 0.7
    light = 1024.0 + 20_000.0 * transmission
    frames = rng.poisson(light, (12, *light.shape)).astype(np.uint16)
    layout.incoming_ser.mkdir(parents=True)
    write_ser(layout.incoming_ser / "field.ser", frames)
    result = _materialize(instance, data_store, "field", selection=["ser_median", "dust_mask"])
    assert result.success
    metadata = result.asset_materializations_for_node("dust_mask")[0].metadata
    assert metadata["drift_registered"].value is False
    assert metadata["drift_registration_px"].value == 1
    assert metadata["drift_closure_px"].value > 2.0
    assert metadata["drift_ok"].value is False
    assert "could not be registered" in metadata["drift_verdict"].value
    assert metadata["ratio_searched"].value is False
    assert metadata["ratio_search_skipped_for_motion"].value is False
    record = json.loads(layout.flatfield_file("field", "dust_mask.json").read_text())
    assert record["drift_registered"] is False
    verdicts = record["motion_test"]
    assert len(verdicts) == len(DUSTY.dust)
    assert {v["verdict"] for v in verdicts} == {
        "undecided: the frames could not be registered, so how the target moved is unknown"
    }
    assert all(v["overlap_fraction"] is None for v in verdicts)
    mask = read_tiff(layout.flatfield_file("field", "dust_mask.tiff"))
    assert all(mask[int(spec.y), int(spec.x)] == 1.0 for spec in DUSTY.dust)
    evaluation = _check_evaluation(result, "dust_mask_candidates_confirmed")
    assert evaluation.passed is False
    assert "could not be registered" in evaluation.description
    assert evaluation.metadata["drift_registered"].value is False
    # The limit is the user's: allowed to disagree by more than noise does, the registrations
    # count (this field's "drift" is then noise, which is why the limit is low).
    closure = metadata["drift_closure_px"].value
    on_grid = closure / metadata["drift_registration_px"].value
    run_config = {"ops": {"dust_mask": {"config": {"drift_max_closure_px": on_grid + 1.0}}}}
    result = _materialize(
        instance, data_store, "field", selection=["dust_mask"], run_config=run_config
    )
    assert result.success
    metadata = result.asset_materializations_for_node("dust_mask")[0].metadata
    assert metadata["drift_registered"].value is True
    assert metadata["drift_closure_px"].value == closure


def _assert_calibrated_by_the_flat_alone(
    result,
    video_path: Path,
    folder: Path,
    black: np.ndarray | None = None,
    pedestal: np.ndarray | None = None,
) -> int:
    """Every frame of ``calibrated.ser`` less the pedestal, times the flat, is the raw frame
    less the black level (``BLACKLVL`` unless ``black`` and ``pedestal`` are given), within
    rounding, where not clipped to the range of the values; outside the mask it is the raw
    frame less ``black - pedestal``. Returns the depth of the calibrated file."""
    flat, header = read_fits_float32(folder / "final_flatfield.fits")
    flat = flat.astype(np.float64)
    if black is None:
        black = float(header["BLACKLVL"])
    if pedestal is None:
        pedestal = float(header["BLACKLVL"])
    clean = read_tiff(folder / "dust_mask.tiff") == 0
    if flat.ndim == 3:
        clean = np.broadcast_to(clean[..., None], flat.shape)
    clipped = 0
    with open_ser(video_path) as original, open_ser(folder / "calibrated.ser") as calibrated:
        assert calibrated.n_frames == original.n_frames
        assert calibrated.color == original.color
        np.testing.assert_array_equal(calibrated.timestamps, original.timestamps)
        depth = calibrated.header.pixel_depth
        limit = 2**depth - 1
        for raw, cal in zip(original.frames, calibrated.frames, strict=True):
            expected = raw.astype(np.float64) - black
            ideal = np.rint(expected / flat + pedestal)
            unclipped = (ideal >= 0) & (ideal <= limit)
            clipped += int(np.count_nonzero(~unclipped))
            assert np.all(cal[ideal > limit] == limit)
            # Rounding to integers: (calibrated - p) * flat == frame - b within half a code
            # times the flat.
            np.testing.assert_allclose(
                ((cal - pedestal) * flat)[unclipped],
                expected[unclipped],
                atol=0.5 * flat.max() + 1e-6,
            )
            kept = clean & unclipped
            np.testing.assert_array_equal(cal[kept], ideal[kept])
    reported = result.asset_materializations_for_node("calibrated_video")[0].metadata
    assert reported["clipped_pixels"].value == clipped
    return depth


def test_calibrated_video_changes_frames_by_the_flat_alone(
    instance, data_store, layout, dusty_video
):
    video_path, _ = dusty_video
    result = _materialize(instance, data_store, "dusty")
    assert result.success
    depth = _assert_calibrated_by_the_flat_alone(result, video_path, layout.flatfield_dir("dusty"))
    assert depth == 16


def test_calibrated_video_warns_when_the_flat_pushes_values_out_of_range(
    instance, data_store, layout, dusty_video
):
    result = _materialize(instance, data_store, "dusty")
    assert _check_results(result)["calibrated_video_within_range"] is True
    folder = layout.flatfield_dir("dusty")
    masked = read_tiff(folder / "dust_mask.tiff") > 0
    # A flat of 0.2 in the dust multiplies the disc's 70 % of full scale by 5.
    with fits.open(folder / "final_flatfield.fits") as hdul:
        too_low = np.where(masked, np.float32(0.2), hdul[0].data)
        fits.PrimaryHDU(too_low, hdul[0].header).writeto(
            folder / "final_flatfield.fits", overwrite=True
        )
    rerun = _materialize(instance, data_store, "dusty", selection=["calibrated_video"])
    assert rerun.success
    (evaluation,) = [
        event.event_specific_data
        for event in rerun.all_events
        if event.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert evaluation.check_name == "calibrated_video_within_range"
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    clipped = evaluation.metadata["clipped_values"].value
    corrected = evaluation.metadata["corrected_values"].value
    assert corrected == DUSTY.n_frames * int(np.count_nonzero(too_low != 1.0))
    assert clipped > 0.01 * corrected
    assert "not calibrated" in evaluation.description
    reported = rerun.asset_materializations_for_node("calibrated_video")[0].metadata
    assert reported["clipped_pixels"].value == clipped


def test_calibrated_video_of_shifted_12_bit_data_keeps_its_whole_range(
    instance, data_store, layout
):
    # 12-bit values stored times 16 under a header depth of 12, as capture programs write
    # them: the frames reach 16 bits, and so does their calibrated copy.
    frames, _ = synthesize_frames_array(dataclasses.replace(DUSTY, bit_depth=12, shift_12bit=True))
    assert frames.max() > 4095 and not np.any(frames % 16)
    layout.incoming_ser.mkdir(parents=True)
    video_path = write_ser(layout.incoming_ser / "shifted.ser", frames, depth=12)
    result = _materialize(instance, data_store, "shifted")
    assert result.success
    folder = layout.flatfield_dir("shifted")
    assert _assert_calibrated_by_the_flat_alone(result, video_path, folder) == 16
    reported = result.asset_materializations_for_node("calibrated_video")[0].metadata
    assert reported["clipped_pixels"].value < 1e-4 * frames.size


@pytest.mark.parametrize("color", ["RGB", "BGR"])
def test_whole_graph_calibrates_a_three_plane_video(instance, data_store, layout, color):
    # The dusty sample seen in three planes of unequal gain, stored in either channel order.
    frames, truth = synthesize_frames_array(DUSTY)
    gains = np.array([1.0, 0.7, 0.4])
    video = np.rint(frames[..., None] * gains).astype(np.uint16)
    layout.incoming_ser.mkdir(parents=True)
    write_ser(layout.incoming_ser / "planes.ser", video, color=color, depth=16)
    result = _materialize(instance, data_store, "planes")
    assert result.success
    assert _check_results(result) == dict.fromkeys(_check_results(result), True)
    folder = layout.flatfield_dir("planes")
    flat, header = read_fits_float32(folder / "final_flatfield.fits")
    black = float(header["BLACKLVL"])
    assert flat.shape == video.shape[1:]
    assert (header["NAXIS1"], header["NAXIS2"], header["NAXIS3"]) == (DUSTY.width, DUSTY.height, 3)
    assert read_tiff(folder / "final_flatfield.tiff").shape == video.shape[1:]
    dust = truth.transmission < 0.9
    for plane in range(3):
        assert np.all(flat[..., plane][dust] < 0.95)
    with open_ser(folder / "calibrated.ser") as calibrated:
        assert calibrated.color == color
        assert calibrated.frames.shape == video.shape
        for raw, cal in zip(video, calibrated.frames, strict=True):
            expected = raw - black
            ideal = np.rint(expected / flat + black)
            kept = (ideal >= 0) & (ideal <= 65535)
            # Rounding to integers: (calibrated - b) * flat == frame - b within half a code
            # times the flat.
            np.testing.assert_allclose(
                ((cal - black) * flat)[kept], expected[kept], atol=0.5 * flat.max() + 1e-6
            )


def test_a_three_plane_video_is_calibrated_with_the_sky_level_of_each_plane(
    instance, data_store, layout
):
    # Three planes of unequal gain have skies of unequal level: each plane's is subtracted.
    frames, _ = synthesize_frames_array(dataclasses.replace(DUSTY, target="planet"))
    gains = np.array([1.0, 0.7, 0.4])
    video = np.rint(frames[..., None] * gains).astype(np.uint16)
    layout.incoming_ser.mkdir(parents=True)
    write_ser(layout.incoming_ser / "skies.ser", video, color="RGB", depth=16)
    sky = {"ops": {"final_flatfield": {"config": {"black_level_mode": "sky"}}}}
    result = _materialize(instance, data_store, "skies", run_config=sky)
    assert result.success
    folder = layout.flatfield_dir("skies")
    _, header = read_fits_float32(folder / "final_flatfield.fits")
    levels = np.array([header[f"BLACKP{plane}"] for plane in (1, 2, 3)])
    np.testing.assert_allclose(levels, DUSTY.black_level_adu * gains, rtol=0.02)
    assert header["FLATDOM"] == "frame - BLACKPn"
    assert header["BLACKLVL"] == pytest.approx(levels.mean())
    black = np.broadcast_to(levels, video.shape[1:])
    assert (
        _assert_calibrated_by_the_flat_alone(
            result, layout.incoming_ser / "skies.ser", folder, black, black
        )
        == 16
    )


@pytest.mark.parametrize("mode", ["none", "value", "sky"])
def test_an_h_alpha_video_of_a_colour_camera_gets_a_flat_of_one_where_no_light_falls(
    instance, data_store, layout, dusty_video, mode
):
    """An H-alpha filter lights R alone: G keeps 2 % of the light, B one level above the
    pedestal on the brighter half of the disc, whose top then reads as a plateau."""
    video_path, truth = dusty_video
    with open_ser(video_path) as source:
        light = source.frames[:].astype(np.float64) - truth.black_level_adu
    planes = [truth.black_level_adu + gain * light for gain in (1.0, 0.02, 0.00003)]
    video = np.rint(np.stack(planes, axis=-1)).astype(np.uint16)
    write_ser(layout.incoming_ser / "halpha.ser", video, color="RGB", depth=16)
    config = {"black_level_mode": mode}
    if mode == "value":
        config["black_level"] = truth.black_level_adu
    result = _materialize(
        instance, data_store, "halpha", run_config={"ops": {"final_flatfield": {"config": config}}}
    )
    assert result.success, run_failures(result)
    metadata = result.asset_materializations_for_node("final_flatfield")[0].metadata
    assert metadata["planes_without_light"].value == ["G", "B"]
    warnings = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.step_key == "final_flatfield" and entry.level == logging.WARNING
    ]
    expected = "colour planes G, B of halpha hold less than 5% of the brightest plane's light"
    assert any(expected in message for message in warnings)
    # The dark planes' near-constant floor is no saturation plateau.
    assert not any("saturation level" in message for message in warnings)
    flat, _ = read_fits_float32(layout.flatfield_dir("halpha") / "final_flatfield.fits")
    assert np.all(flat[..., 1:] == 1.0)
    dust = truth.dust_support()
    errors = flat[..., 0][dust] / truth.transmission[dust] - 1.0
    assert np.sqrt(np.mean(errors**2)) < 0.05


HOT = dataclasses.replace(DUSTY, hot_pixel_fraction=0.02, hot_pixel_adu=1500.0, amp_glow_adu=400.0)
"""The dusty sample from a sensor with hot pixels and an amplifier's glow."""


@pytest.fixture
def hot_video(layout) -> tuple[Path, SolarVideoTruth]:
    layout.incoming_ser.mkdir(parents=True)
    layout.incoming_darks.mkdir(parents=True)
    video, truth_path = write_sample_video(layout.incoming_ser / "hot.ser", HOT)
    write_dark_video(layout.incoming_darks / "hot_dark.ser", HOT, 24)
    return video, SolarVideoTruth.load(truth_path)


def test_a_video_and_a_dark_named_in_unicode_give_a_flat_whose_header_escapes_the_names(
    instance, data_store, layout
):
    """FITS headers hold printable ASCII only; 'Hα' is how H-alpha captures are often named."""
    small = dataclasses.replace(HOT, width=96, height=72, dust=None, n_dust=1)
    layout.incoming_ser.mkdir(parents=True)
    layout.incoming_darks.mkdir(parents=True)
    write_sample_video(layout.incoming_ser / "Sonne (Hα).ser", small)
    write_dark_video(layout.incoming_darks / "Dunkel Hα.ser", small, 8)
    result = _materialize(
        instance,
        data_store,
        "Sonne_H_",
        selection=["ser_median", "dust_mask", "inpainted", "matched_inpaint", "final_flatfield"],
        run_config=_dark_config("Dunkel Hα.ser"),
    )
    assert result.success, run_failures(result)
    folder = layout.flatfield_dir("Sonne_H_")
    _, header = read_fits_float32(folder / "final_flatfield.fits")
    assert header["SRCFILE"] == "Sonne (H\\u03b1).ser"
    assert header["DARKFILE"] == "Dunkel H\\u03b1.ser"
    _, dark_header = read_fits_float32(folder / "master_dark.fits")
    assert dark_header["DARKFILE"] == "Dunkel H\\u03b1.ser"
    source = json.loads((folder / "source.json").read_text(encoding="utf-8"))
    assert source["source"] == "Sonne (Hα).ser"
    assert source["dark"]["file"] == "Dunkel Hα.ser"


DOWNSTREAM_OF_MATCHED = ["final_flatfield", "calibrated_video"]


def _dark_config(dark_video: str) -> dict:
    """Run config giving ``dark_video`` to ``ser_median``."""
    return {"ops": {"ser_median": {"config": {"dark_video": dark_video}}}}


def test_a_dark_video_is_subtracted_from_every_frame_and_the_flat_applies_after_it(
    instance, data_store, layout, hot_video
):
    video_path, truth = hot_video
    result = _materialize(instance, data_store, "hot", run_config=_dark_config("hot_dark.ser"))
    assert result.success
    folder = layout.flatfield_dir("hot")
    dark, dark_header = read_fits_float32(folder / "master_dark.fits")
    expected_dark = HOT.black_level_adu + dark_signal(HOT)
    # A median of 24 frames has a standard error of 1.25 read noises / sqrt(24).
    standard_error = 1.25 * HOT.read_noise_adu / np.sqrt(24)
    assert np.abs(dark - expected_dark).mean() < standard_error
    assert np.abs(dark - expected_dark).max() < 6 * standard_error
    assert dark_header["DARKNFR"] == 24
    # The frames keep the dark's pedestal and lose its structure: hot pixels and glow.
    pedestal = float(np.median(dark))
    with open_ser(video_path) as video:
        raw_median = np.median(video.frames, axis=0)
    np.testing.assert_allclose(
        read_tiff(folder / "ser_median.tiff"), raw_median - (dark - pedestal), atol=1e-3
    )
    median_metadata = result.asset_materializations_for_node("ser_median")[0].metadata
    assert median_metadata["dark"].value["frames"] == 24
    assert median_metadata["dark"].value["pedestals"] == [pedestal]
    assert median_metadata["dark"].value["below_dark_fraction"] == 0.0
    assert median_metadata["dark"].value["hot_fraction"] > 0.01
    mask_metadata = result.asset_materializations_for_node("dust_mask")[0].metadata
    assert mask_metadata["dark_subtracted"].value is True
    assert mask_metadata["prediction_black_level"].value == pedestal
    flat, header = read_fits_float32(folder / "final_flatfield.fits")
    assert header["DARKFILE"] == "hot_dark.ser"
    assert header["FLATDOM"] == "frame - master_dark.fits"
    assert header["BLACKLVL"] == header["DARKP1"] == pedestal
    flat_metadata = result.asset_materializations_for_node("final_flatfield")[0].metadata
    assert flat_metadata["black_level_source"].value == "the master dark's pedestal"
    mask = read_tiff(folder / "dust_mask.tiff")
    assert np.all(flat[mask == 0] == 1.0)
    dust = truth.dust_support()
    errors = flat[dust] / truth.transmission[dust] - 1.0
    assert np.sqrt(np.mean(errors**2)) < 0.05
    assert _assert_calibrated_by_the_flat_alone(result, video_path, folder, dark) == 16
    calibrated = result.asset_materializations_for_node("calibrated_video")[0].metadata
    assert calibrated["black_level_removed"].value == "master_dark.fits"
    # The pedestal is added back: the sky, the dark alone plus noise, is not clipped at 0.
    assert calibrated["pedestal_added_median"].value == pedestal
    assert calibrated["clipped_pixels"].value == 0
    # Another black level over the dark's structure: the flat applies after both.
    above = {
        "ops": {
            "final_flatfield": {
                "config": {"black_level_mode": "value", "black_level": pedestal + 10.0}
            }
        }
    }
    result = _materialize(instance, data_store, "hot", DOWNSTREAM_OF_MATCHED, above)
    assert result.success
    _, header = read_fits_float32(folder / "final_flatfield.fits")
    assert header["FLATDOM"] == "frame - master_dark.fits + DARKPn - BLACKLVL"
    assert _assert_calibrated_by_the_flat_alone(result, video_path, folder, dark + 10.0) == 16
    # A later run without dark_video, as a sensor's or automation's, subtracts the same dark.
    assert json.loads((folder / "dark_video.json").read_text()) == {"dark_video": "hot_dark.ser"}
    result = _materialize(instance, data_store, "hot", selection=["ser_median"])
    assert result.success
    metadata = result.asset_materializations_for_node("ser_median")[0].metadata
    assert metadata["dark_pairing"].value == flatfield_assets.SAVED_DARK
    assert metadata["dark"].value["file"] == "hot_dark.ser"
    # The video's median again with the dark forgotten: the flat no longer applies after it.
    forget = _dark_config("")
    assert _materialize(instance, data_store, "hot", ["ser_median"], forget).success
    assert not (folder / "dark_video.json").exists()
    result = _materialize(instance, data_store, "hot", ["ser_median"])
    assert result.asset_materializations_for_node("ser_median")[0].metadata["dark"].value is None
    result = _materialize(instance, data_store, "hot", selection=["calibrated_video"])
    assert "no longer subtracts" in _failure_message(result, "calibrated_video")


def test_a_kept_dark_that_is_gone_or_unreadable_fails_the_median_with_what_to_do(
    instance, data_store, layout, hot_video
):
    folder = layout.flatfield_dir("hot")
    moved = layout.incoming_darks / "moved.ser"
    moved.write_bytes((layout.incoming_darks / "hot_dark.ser").read_bytes())
    assert _materialize(
        instance, data_store, "hot", ["ser_median"], _dark_config("moved.ser")
    ).success
    moved.unlink()
    result = _materialize(instance, data_store, "hot", ["ser_median"])
    message = _failure_message(result, "ser_median")
    assert "moved.ser" in message and "kept in dark_video.json" in message
    (folder / "dark_video.json").write_text("{not json")
    result = _materialize(instance, data_store, "hot", ["ser_median"])
    assert "dark_video.json must be a JSON object" in _failure_message(result, "ser_median")
    (folder / "dark_video.json").write_text('{"dark_video": ""}')
    result = _materialize(instance, data_store, "hot", ["ser_median"])
    assert "dark_video.json must be a JSON object" in _failure_message(result, "ser_median")
    # Forgetting it needs no readable record; a dark given in the run config replaces it.
    assert _materialize(instance, data_store, "hot", ["ser_median"], _dark_config("")).success
    assert not (folder / "dark_video.json").exists()
    (folder / "dark_video.json").write_text("{not json")
    result = _materialize(instance, data_store, "hot", ["ser_median"], _dark_config("hot_dark.ser"))
    assert result.success
    assert json.loads((folder / "dark_video.json").read_text()) == {"dark_video": "hot_dark.ser"}


def test_hot_pixels_under_the_dust_stay_out_of_a_flat_made_after_the_dark(
    instance, data_store, layout, hot_video
):
    video_path, truth = hot_video
    (layout.incoming_ser / "hot_level.ser").write_bytes(video_path.read_bytes())
    level = {
        "ops": {
            "final_flatfield": {
                "config": {"black_level_mode": "value", "black_level": HOT.black_level_adu}
            }
        }
    }
    assert _materialize(instance, data_store, "hot_level", run_config=level).success
    assert _materialize(
        instance, data_store, "hot", run_config=_dark_config("hot_dark.ser")
    ).success
    hot = truth.dust_support() & (dark_signal(HOT) > 300.0)
    assert np.count_nonzero(hot) >= 3
    errors = {}
    for key in ("hot_level", "hot"):
        flat, _ = read_fits_float32(layout.flatfield_dir(key) / "final_flatfield.fits")
        errors[key] = np.abs(flat[hot] / truth.transmission[hot] - 1.0)
    assert np.median(errors["hot"]) < 0.5 * np.median(errors["hot_level"])


def test_a_dark_that_does_not_fit_the_video_fails_the_median_with_what_to_do(
    instance, data_store, layout, hot_video
):
    darks = layout.incoming_darks
    write_dark_video(darks / "small.ser", dataclasses.replace(HOT, width=96, height=72, dust=()), 4)
    write_dark_video(darks / "offset.ser", dataclasses.replace(HOT, black_level_adu=2024.0), 8)
    write_ser(darks / "eight_bit.ser", np.zeros((3, HOT.height, HOT.width), np.uint8), depth=8)
    cases = {
        "small.ser": "frames of (72, 96) against (168, 224)",
        "offset.ser": "below the master dark of offset.ser",
        "eight_bit.ser": "8-bit values against 16-bit",
        "missing.ser": "hot_dark.ser",
    }
    for dark_video, expected in cases.items():
        result = _materialize(instance, data_store, "hot", ["ser_median"], _dark_config(dark_video))
        assert not result.success
        assert expected in _failure_message(result, "ser_median"), dark_video
    assert not (layout.flatfield_dir("hot") / "ser_median.tiff").exists()
    assert not (layout.flatfield_dir("hot") / "dark_video.json").exists()


def test_a_dark_of_the_video_s_name_is_used_without_configuration(
    instance, data_store, layout, hot_video
):
    # Runs started by a sensor or by automation have no run config: the dark pairs by name.
    (layout.incoming_darks / "hot.ser").write_bytes(
        (layout.incoming_darks / "hot_dark.ser").read_bytes()
    )
    result = _materialize(instance, data_store, "hot", ["ser_median"])
    assert result.success
    metadata = result.asset_materializations_for_node("ser_median")[0].metadata
    assert metadata["dark_pairing"].value == "same file name in incoming/darks"
    assert metadata["dark"].value["file"] == "hot.ser"
    assert (layout.flatfield_dir("hot") / "master_dark.fits").is_file()
    unpaired = {"ops": {"ser_median": {"config": {"paired_dark": False}}}}
    result = _materialize(instance, data_store, "hot", ["ser_median"], unpaired)
    metadata = result.asset_materializations_for_node("ser_median")[0].metadata
    assert metadata["dark_pairing"].value == "none"
    assert metadata["dark"].value is None


def test_a_few_frames_of_dark_are_used_with_a_warning(instance, data_store, layout, hot_video):
    write_dark_video(layout.incoming_darks / "short.ser", HOT, 4)
    result = _materialize(instance, data_store, "hot", ["ser_median"], _dark_config("short.ser"))
    assert result.success
    warnings = result.asset_materializations_for_node("ser_median")[0].metadata["warnings"].value
    assert any("the dark video has 4 frames" in warning for warning in warnings)


def test_a_single_frame_video_fails_dust_mask_with_what_to_do(instance, data_store, layout):
    frames, _ = synthesize_frames_array(DUSTY)
    layout.incoming_ser.mkdir(parents=True)
    write_ser(layout.incoming_ser / "still.ser", frames[:1], color="MONO", depth=16)
    result = _materialize(instance, data_store, "still")
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["dust_mask"]
    message = failures[0].event_specific_data.error.message
    assert "has 1 frame" in message and "capture a video" in message
    assert read_tiff(layout.flatfield_dir("still") / "ser_median.tiff").shape == frames.shape[1:]
    assert not (layout.flatfield_dir("still") / "dust_mask.tiff").exists()


@pytest.mark.parametrize(
    ("color", "shape", "expected"),
    [
        ("MONO", (6, 12), "the frames are 12 x 6 px; dust detection needs at least 8 x 8 px"),
        (
            "RGGB",
            (12, 14),
            "the frames are 14 x 12 px, searched for dust on their 2 x 2 px colour cells; dust "
            "detection needs at least 16 x 16 px",
        ),
    ],
)
def test_frames_too_small_to_search_fail_dust_mask_in_the_user_s_pixels(
    instance, data_store, layout, color, shape, expected
):
    frames = np.random.default_rng(0).integers(1000, 2000, size=(6, *shape), dtype=np.uint16)
    layout.incoming_ser.mkdir(parents=True)
    write_ser(layout.incoming_ser / "small.ser", frames, color=color, depth=16)
    result = _materialize(instance, data_store, "small", ["ser_median", "dust_mask"])
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["dust_mask"]
    message = failures[0].event_specific_data.error.message
    assert expected in message and "Capture a larger region of interest" in message


def test_a_video_without_light_fails_dust_mask_with_what_to_check(instance, data_store, layout):
    layout.incoming_ser.mkdir(parents=True)
    write_ser(layout.incoming_ser / "dark.ser", np.zeros((6, 48, 64), np.uint16), depth=16)
    result = _materialize(instance, data_store, "dark", ["ser_median", "dust_mask"])
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failures] == ["dust_mask"]
    message = failures[0].event_specific_data.error.message
    assert "no positive signal" in message and "not a dark or bias video" in message


def _retries(result) -> list[str]:
    return [e.step_key for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]


def test_a_video_replaced_after_its_median_fails_dust_mask_at_once(instance, data_store, layout):
    frames, _ = synthesize_frames_array(DUSTY)
    layout.incoming_ser.mkdir(parents=True)
    video = layout.incoming_ser / "replaced.ser"
    write_ser(video, frames, color="MONO", depth=16)
    assert _materialize(instance, data_store, "replaced", selection=["ser_median"]).success
    # Touched or copied again, it is the same capture: its median still holds.
    os.utime(video, ns=(1_000_000_000, 1_000_000_000))
    assert _materialize(instance, data_store, "replaced", selection=["dust_mask"]).success

    # Another capture under the same name, of another shape or of the same one.
    for replacement in (frames[:, :100, :120], frames[::-1]):
        write_ser(video, replacement, color="MONO", depth=16)
        result = _materialize(instance, data_store, "replaced", selection=["dust_mask"])
        assert not result.success
        assert _retries(result) == []
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        message = failures[0].event_specific_data.error.message
        assert "replaced.ser changed after ser_median was materialized" in message
        assert "materialize ser_median again" in message
    # A source.json written before fingerprints were recorded: the shape still tells.
    record_path = layout.flatfield_file("replaced", flatfield_assets.SOURCE_RECORD_FILE)
    record = json.loads(record_path.read_text())
    del record["fingerprint"]
    record_path.write_text(json.dumps(record))
    write_ser(video, frames[:, :100, :120], color="MONO", depth=16)
    result = _materialize(instance, data_store, "replaced", selection=["dust_mask"])
    assert not result.success
    message = next(f for f in run_failures(result) if f.startswith("dust_mask"))
    assert f"shape {frames.shape[1:]}" in message and "(100, 120)" in message


def test_bad_configuration_of_dust_mask_and_inpainted_is_not_retried(
    instance, data_store, layout, dusty_video
):
    assert _materialize(instance, data_store, "dusty", selection=["ser_median"]).success
    bad_mask = {"ops": {"dust_mask": {"config": {"min_deficit_ratio": 1.5}}}}
    result = _materialize(instance, data_store, "dusty", ["dust_mask"], bad_mask)
    assert not result.success
    assert _retries(result) == []
    assert _materialize(instance, data_store, "dusty", selection=["dust_mask"]).success
    bad_inpainting = {"ops": {"inpainted": {"config": {"trend_reach_px": 0.5}}}}
    result = _materialize(instance, data_store, "dusty", ["inpainted"], bad_inpainting)
    assert not result.success
    assert _retries(result) == []


def test_rematerializing_inpainted_updates_downstream_deterministically(
    instance, data_store, layout, dusty_video
):
    assert _materialize(instance, data_store, "dusty").success
    folder = layout.flatfield_dir("dusty")
    first = (folder / "final_flatfield.fits").read_bytes()
    first_cal = (folder / "calibrated.ser").read_bytes()
    downstream = dg.AssetSelection.assets("inpainted").downstream()
    again = _materialize(instance, data_store, "dusty", selection=downstream)
    assert again.success
    materialized = {
        e.event_specific_data.materialization.asset_key.to_user_string()
        for e in again.get_asset_materialization_events()
    }
    assert materialized == {"inpainted", "matched_inpaint", "final_flatfield", "calibrated_video"}
    assert (folder / "final_flatfield.fits").read_bytes() == first
    assert (folder / "calibrated.ser").read_bytes() == first_cal


def test_broken_flat_fails_the_blocking_check_and_stops_calibration(
    instance, data_store, layout, dusty_video, monkeypatch
):
    real = flatfield_assets.synthesize_plane_flats

    def broken(*args, **kwargs):
        first, *others = real(*args, **kwargs)
        flat = first.flat.copy()
        flat[0, 0] = 0.9  # a clean corner pixel no longer 1.0
        return [dataclasses.replace(first, flat=flat), *others]

    monkeypatch.setattr(flatfield_assets, "synthesize_plane_flats", broken)
    result = _materialize(instance, data_store, "dusty")
    checks = _check_results(result)
    assert checks["final_flatfield_clean_area_is_unity"] is False
    # What `astro-assets materialize` prints under the failed run.
    failures = run_failures(result)
    assert any(
        f.startswith("check final_flatfield_clean_area_is_unity [dusty] failed") for f in failures
    )
    materialized = {
        e.event_specific_data.materialization.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
    }
    assert "final_flatfield" in materialized
    assert "calibrated_video" not in materialized
    assert not (layout.flatfield_dir("dusty") / "calibrated.ser").exists()


def _textured_scene(rng, shape, grain_px, level, contrast):
    """A smooth random texture of ``contrast`` rms around ``level`` ADU, grains ``grain_px``."""
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), grain_px)
    return level * (1.0 + contrast * texture / texture.std())


def test_dust_mask_drops_a_candidate_that_moves_with_the_scene(
    instance, data_store, layout, monkeypatch
):
    # A scene drifting 40 px along x, with one dark scene feature (a small sunspot) and one
    # dust shadow fixed on the sensor; the eye reports both as candidates.
    rng = np.random.default_rng(8)
    height, width, frames_count, drift = 96, 128, 24, 40.0
    margin = 48
    canvas = _textured_scene(rng, (height + 2 * margin, width + 2 * margin), 2.0, 2000.0, 0.06)
    yy, xx = np.indices(canvas.shape)
    canvas[np.hypot(yy - margin - 60, xx - margin - 30) <= 5] *= 0.7
    sensor_y, sensor_x = np.indices((height, width))
    dust = np.hypot(sensor_y - 30, sensor_x - 90) <= 5
    frames = []
    shifts = np.linspace(0.0, drift, frames_count)
    for dx in shifts:
        moved = ndimage.shift(canvas, (0.0, dx), order=1)[margin:-margin, margin:-margin]
        frames.append(np.rint(np.where(dust, 0.75, 1.0) * moved + rng.normal(0, 5, moved.shape)))
    layout.incoming_ser.mkdir(parents=True)
    write_ser(layout.incoming_ser / "moving.ser", np.stack(frames).astype(np.uint16), depth=16)
    spot_in_median = np.hypot(sensor_y - 60, sensor_x - 30 - drift / 2) <= 5

    def locate_both(self, median):
        return DustMaskResult(core=dust | spot_in_median, backend=self.backend_name)

    monkeypatch.setattr(flatfield_assets.ClassicalImageModel, "locate_dust", locate_both)
    result = _materialize(instance, data_store, "moving", selection=["ser_median", "dust_mask"])
    assert result.success
    folder = layout.flatfield_dir("moving")
    mask = read_tiff(folder / "dust_mask.tiff")
    assert np.all(mask[dust] == 1.0)
    assert not np.any(mask[spot_in_median])
    record = json.loads((folder / "dust_mask.json").read_text())
    assert sorted(v["verdict"] for v in record["motion_test"]) == ["scene", "sensor"]
    assert len(record["regions"]) == 1
    metadata = result.asset_materializations_for_node("dust_mask")[0].metadata
    assert metadata["moved_with_scene_count"].value == 1
    assert metadata["too_shallow_count"].value == 0
    # The quick-look shows the dropped candidate in blue, the kept dust in the mask's orange.
    overlay = np.asarray(Image.open(folder / "dust_mask_overlay.png"))
    spot_rgb = overlay[spot_in_median].mean(axis=0)
    dust_rgb = overlay[dust].mean(axis=0)
    assert spot_rgb[2] > spot_rgb[0] + 40
    assert dust_rgb[0] > dust_rgb[2] + 40


def test_dust_mask_on_a_drifting_bayer_video_reports_raw_pixels(instance, data_store, layout):
    # A textured scene drifting 96 raw px along x, seen through an RGGB mosaic with unequal
    # colour gains and one dust shadow 24 raw px across at raw (70, 150).
    rng = np.random.default_rng(12)
    height, width, frames_count, drift = 144, 224, 24, 96.0
    margin = 112
    canvas = _textured_scene(rng, (height + 2 * margin, width + 2 * margin), 4.0, 3000.0, 0.05)
    gains = np.tile(np.array([[1.0, 0.6], [0.6, 0.3]]), (height // 2, width // 2))
    sensor_y, sensor_x = np.indices((height, width))
    dust = np.hypot(sensor_y - 70, sensor_x - 150) <= 12
    frames = []
    for dx in np.linspace(0.0, drift, frames_count):
        moved = ndimage.shift(canvas, (0.0, dx), order=1)[margin:-margin, margin:-margin]
        signal = gains * np.where(dust, 0.7, 1.0) * moved
        frames.append(np.rint(signal + rng.normal(0, 4, signal.shape)))
    layout.incoming_ser.mkdir(parents=True)
    write_ser(
        layout.incoming_ser / "bayer.ser",
        np.stack(frames).astype(np.uint16),
        color="RGGB",
        depth=16,
    )
    result = _materialize(instance, data_store, "bayer", selection=["ser_median", "dust_mask"])
    assert result.success
    folder = layout.flatfield_dir("bayer")
    mask = read_tiff(folder / "dust_mask.tiff")
    assert mask.shape == (height, width)
    assert np.all(mask[dust] == 1.0)
    record = json.loads((folder / "dust_mask.json").read_text())
    assert record["drift_total_px"] == pytest.approx(drift, abs=1.0)
    # The dust was left out of the registration: nothing held it at zero shift.
    assert record["drift_static_pattern_removed"] is False
    assert record["drift_exclusion_dropped"] is False
    verdict = min(
        record["motion_test"], key=lambda v: np.hypot(v["centroid_y"] - 70, v["centroid_x"] - 150)
    )
    assert verdict["verdict"] == "sensor"
    assert verdict["centroid_y"] == pytest.approx(70, abs=1.5)
    assert verdict["centroid_x"] == pytest.approx(150, abs=1.5)
    assert verdict["diameter_px"] == pytest.approx(24, abs=4)
    assert verdict["fixed_deficit"] == pytest.approx(0.3, abs=0.05)


def test_inpainted_follows_the_prediction_under_a_shadow_found_only_in_the_ratio(
    instance, data_store, layout
):
    # A 3 % shadow 24 px across under a texture of 12 % rms, on a scene drifting 60 px: the
    # texture hides it in the median, the ratio to the dust-free prediction shows it.
    rng = np.random.default_rng(9)
    height, width, frames_count, drift = 96, 128, 24, 60.0
    margin = 68
    canvas = _textured_scene(rng, (height + 2 * margin, width + 2 * margin), 2.0, 2000.0, 0.12)
    sensor_y, sensor_x = np.indices((height, width))
    shadow = np.hypot(sensor_y - 44, sensor_x - 46) <= 12
    frames = []
    for dx in np.linspace(0.0, drift, frames_count):
        moved = ndimage.shift(canvas, (0.0, dx), order=1)[margin:-margin, margin:-margin]
        frames.append(np.rint(np.where(shadow, 0.97, 1.0) * moved + rng.normal(0, 8, moved.shape)))
    layout.incoming_ser.mkdir(parents=True)
    write_ser(layout.incoming_ser / "faint.ser", np.stack(frames).astype(np.uint16), depth=16)
    selection = ["ser_median", "dust_mask", "inpainted"]
    result = _materialize(instance, data_store, "faint", selection=selection)
    assert result.success
    folder = layout.flatfield_dir("faint")
    guide = read_tiff(folder / "inpaint_guide.tiff")
    assert np.isfinite(guide[shadow]).all()
    assert (
        result.asset_materializations_for_node("dust_mask")[0].metadata["guided_region_count"].value
        == 1
    )
    # Found in the ratio alone, the shadow went through the motion test too, and stayed.
    record = json.loads((folder / "dust_mask.json").read_text())
    assert len(record["ratio_motion_test"]) == 1
    assert record["ratio_motion_test"][0]["verdict"] != "scene"
    assert record["ratio_motion_test"][0]["centroid_x"] == pytest.approx(46, abs=2)
    (choice,) = record["inpainting_guide"]
    assert (choice["guided"], choice["reason"]) == (True, "found in the ratio alone")
    assert choice["area_px"] == int((read_tiff(folder / "dust_mask.tiff") > 0).sum())
    median = read_tiff(folder / "ser_median.tiff")
    mask = read_tiff(folder / "dust_mask.tiff") > 0
    guided = read_tiff(folder / "inpainted.tiff")
    pixels = result.asset_materializations_for_node("inpainted")[0].metadata["guided_pixels"]
    assert pixels.value == int(mask.sum())
    # The flat median / inpainted measures the shadow's 3 % with the texture cancelled; the
    # harmonic fill leaves the texture in it.
    inner = np.hypot(sensor_y - 44, sensor_x - 46) <= 9
    assert np.median(median[inner] / guided[inner]) == pytest.approx(0.97, abs=0.01)
    assert np.std(median[inner] / guided[inner]) < 0.02
    plain_config = {"ops": {"inpainted": {"config": {"follow_motion": False}}}}
    plain = _materialize(instance, data_store, "faint", ["inpainted"], run_config=plain_config)
    assert plain.success
    harmonic = read_tiff(folder / "inpainted.tiff")
    assert (
        plain.asset_materializations_for_node("inpainted")[0].metadata["guided_pixels"].value == 0
    )
    assert np.std(median[inner] / harmonic[inner]) > 2 * np.std(median[inner] / guided[inner])
