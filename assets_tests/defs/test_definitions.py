"""The code location loads; its assets, partitions, checks, sensors and jobs are as documented."""

import dagster as dg

from astro_assets.definitions import defs


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_asset_keys_and_groups():
    graph = defs.resolve_asset_graph()
    groups = {
        key.to_user_string(): graph.get(key).group_name for key in graph.materializable_asset_keys
    }
    assert groups["ser_median"] == "flatfield"


def test_flatfield_assets_are_partitioned_per_ser_file():
    graph = defs.resolve_asset_graph()
    partitions = graph.get(dg.AssetKey("ser_median")).partitions_def
    assert isinstance(partitions, dg.DynamicPartitionsDefinition)
    assert partitions.name == "ser_files"


def test_sensors_and_jobs():
    assert defs.resolve_sensor_def("ser_files_sensor").job_name == "flatfield_job"
    assert defs.resolve_job_def("flatfield_job") is not None


def test_resources_are_bound():
    assert "data_store" in defs.resources
