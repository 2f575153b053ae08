"""Declarative automation refreshes exactly the stale flat-field partitions."""

import datetime

import dagster as dg

from astro_assets.defs.flatfield import defs as flatfield_defs
from astro_assets.defs.resources import resources

ORDER = [
    "ser_median",
    "dust_mask",
    "inpainted",
    "matched_inpaint",
    "final_flatfield",
    "calibrated_video",
]


def _assets(code_versions: dict[str, str] | None = None) -> dg.Definitions:
    assets = list(flatfield_defs.assets)
    if code_versions:
        assets = [
            a.map_asset_specs(
                lambda spec: spec.replace_attributes(
                    code_version=code_versions.get(spec.key.to_user_string(), spec.code_version)
                )
            )
            for a in assets
        ]
    return dg.Definitions(assets=assets, resources=resources())


def _report(instance, asset: str, partition: str) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=asset, partition=partition)
    )


def _requested(result, instance) -> dict[str, set[str]]:
    now = datetime.datetime.now(datetime.UTC)
    with dg.partition_loading_context(effective_dt=now, dynamic_partitions_store=instance):
        requested = {
            name: set(result.get_requested_partitions(dg.AssetKey(name))) for name in ORDER
        }
    return {name: keys for name, keys in requested.items() if keys}


def test_only_stale_partitions_are_requested(instance):
    instance.add_dynamic_partitions("ser_files", ["a", "b"])
    for partition in ["a", "b"]:
        for asset in ORDER:
            _report(instance, asset, partition)
    first = dg.evaluate_automation_conditions(defs=_assets(), instance=instance)
    assert _requested(first, instance) == {}

    _report(instance, "inpainted", "a")
    second = dg.evaluate_automation_conditions(
        defs=_assets(), instance=instance, cursor=first.cursor
    )
    # The stale partition's whole downstream chain is requested together (one run), and
    # nothing of partition b.
    assert _requested(second, instance) == {
        "matched_inpaint": {"a"},
        "final_flatfield": {"a"},
        "calibrated_video": {"a"},
    }

    third = dg.evaluate_automation_conditions(
        defs=_assets(), instance=instance, cursor=second.cursor
    )
    assert _requested(third, instance) == {}, "a request is made once, not on every tick"


def test_a_new_code_version_refreshes_materialized_partitions_only(instance):
    instance.add_dynamic_partitions("ser_files", ["a", "b", "never_run"])
    for partition in ["a", "b"]:
        for asset in ORDER:
            _report(instance, asset, partition)
    first = dg.evaluate_automation_conditions(defs=_assets(), instance=instance)
    bumped = _assets({"final_flatfield": "99"})
    second = dg.evaluate_automation_conditions(defs=bumped, instance=instance, cursor=first.cursor)
    assert _requested(second, instance) == {
        "final_flatfield": {"a", "b"},
        "calibrated_video": {"a", "b"},
    }


def test_new_videos_are_left_to_the_sensor(instance):
    instance.add_dynamic_partitions("ser_files", ["fresh"])
    result = dg.evaluate_automation_conditions(defs=_assets(), instance=instance)
    assert _requested(result, instance) == {}
