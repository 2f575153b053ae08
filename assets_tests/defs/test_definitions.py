"""The code location loads; its assets, partitions, checks, sensors and jobs are as documented."""

import dagster as dg

from astro_assets.definitions import defs

FLATFIELD = [
    "ser_median",
    "dust_mask",
    "inpainted",
    "matched_inpaint",
    "final_flatfield",
    "calibrated_video",
]
TRANSIENTS = ["job_tensors", "master_index", "croissant_metadata", "cnn_model"]


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_asset_keys_groups_and_partitions():
    graph = defs.resolve_asset_graph()
    nodes = {key.to_user_string(): graph.get(key) for key in graph.materializable_asset_keys}
    assert sorted(nodes) == sorted(FLATFIELD + TRANSIENTS)
    for name in FLATFIELD:
        assert nodes[name].group_name == "flatfield"
        assert nodes[name].partitions_def.name == "ser_files"
    for name in TRANSIENTS:
        assert nodes[name].group_name == "transients"
    assert nodes["job_tensors"].partitions_def.name == "jids"
    assert nodes["job_tensors"].backfill_policy == dg.BackfillPolicy.single_run()
    for name in ["master_index", "croissant_metadata", "cnn_model"]:
        assert nodes[name].partitions_def is None


def test_lineage_edges():
    graph = defs.resolve_asset_graph()

    def parents(name):
        return sorted(k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys)

    assert parents("dust_mask") == ["ser_median"]
    assert parents("inpainted") == ["dust_mask", "ser_median"]
    assert parents("matched_inpaint") == ["dust_mask", "inpainted", "ser_median"]
    assert parents("final_flatfield") == ["dust_mask", "matched_inpaint", "ser_median"]
    assert parents("calibrated_video") == ["final_flatfield"]
    assert parents("master_index") == ["job_tensors"]
    assert parents("croissant_metadata") == ["master_index"]
    assert parents("cnn_model") == ["croissant_metadata"]


def test_checks_and_which_block():
    graph = defs.resolve_asset_graph()
    checks = {key.name: key.asset_key.to_user_string() for key in graph.asset_check_keys}
    assert checks == {
        "final_flatfield_clean_area_is_unity": "final_flatfield",
        "final_flatfield_finite_positive": "final_flatfield",
        "dust_mask_coverage": "dust_mask",
        "dust_mask_candidates_confirmed": "dust_mask",
        "matched_inpaint_matches_clean_area": "matched_inpaint",
        "inpainted_unchanged_outside_mask": "inpainted",
        "calibrated_video_within_range": "calibrated_video",
        "job_tensors_in_unit_range": "job_tensors",
        "master_index_schema": "master_index",
        "croissant_valid": "croissant_metadata",
        "cnn_model_beats_baseline": "cnn_model",
        "cnn_model_auc_above_threshold": "cnn_model",
    }
    blocking = {
        spec.name
        for checks_def in defs.asset_checks
        for spec in checks_def.check_specs
        if spec.blocking
    }
    assert blocking == {
        "final_flatfield_clean_area_is_unity",
        "final_flatfield_finite_positive",
        "matched_inpaint_matches_clean_area",
        "inpainted_unchanged_outside_mask",
        "job_tensors_in_unit_range",
        "master_index_schema",
        "croissant_valid",
    }


def test_sensors_schedules_and_jobs():
    assert defs.resolve_sensor_def("ser_files_sensor").job_name == "flatfield_job"
    assert defs.resolve_sensor_def("jids_sensor").job_name == "job_tensors_job"
    assert {s.name for s in defs.sensors} == {
        "ser_files_sensor",
        "paired_darks_sensor",
        "jids_sensor",
        "flatfield_staleness_sensor",
    }
    assert defs.resolve_sensor_def("paired_darks_sensor").job_name == "flatfield_job"
    assert {s.name for s in defs.schedules} == {"dataset_nightly", "cnn_model_weekly"}
    for name in ["flatfield_job", "job_tensors_job", "dataset_job", "cnn_model_job"]:
        assert defs.resolve_job_def(name) is not None


def test_schedules_run_at_their_times_in_utc_whatever_the_hosts_time_zone():
    schedules = {s.name: s for s in defs.schedules}
    assert {name: (s.cron_schedule, s.execution_timezone) for name, s in schedules.items()} == {
        "dataset_nightly": ("0 2 * * *", "UTC"),
        "cnn_model_weekly": ("0 3 * * 0", "UTC"),
    }


def test_resources_are_bound():
    assert set(defs.resources) == {"data_store", "dust_eye"}


def test_gemini_calls_share_one_pool():
    graph = defs.resolve_asset_graph()
    pools = {
        key.to_user_string(): graph.get(key).pools
        for key in graph.materializable_asset_keys
        if graph.get(key).pools
    }
    assert pools == {"dust_mask": {"gemini"}, "inpainted": {"gemini"}}


def test_loading_the_code_location_does_not_import_torch():
    """Every step process imports the code location; torch loads only in the steps that train."""
    import subprocess
    import sys

    code = (
        "import sys, astro_assets.definitions\n"
        "print(sorted(m for m in ('torch', 'mlcroissant') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
