"""When flat-field partitions are re-materialized without anyone asking: only when stale.

New videos are handled by ``ser_files_sensor``. Declarative automation re-runs a partition of an
asset only when its code version changed or one of its upstream partitions was updated since
it was last handled, so a new release or a re-rolled mask refreshes exactly the affected
partitions, never all of them.
"""

import dagster as dg

_GUARDS = (
    ~dg.AutomationCondition.missing()
    & ~dg.AutomationCondition.in_progress()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
)

root_when_stale = (
    dg.AutomationCondition.code_version_changed().since_last_handled() & _GUARDS
).with_label("code version changed")

when_stale = (
    (
        dg.AutomationCondition.code_version_changed() | dg.AutomationCondition.any_deps_updated()
    ).since_last_handled()
    & _GUARDS
).with_label("code version changed or upstream updated")

flatfield_staleness_sensor = dg.AutomationConditionSensorDefinition(
    name="flatfield_staleness_sensor",
    target=dg.AssetSelection.groups("flatfield"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Re-materializes flat-field partitions whose code version changed or whose "
    "upstream was updated (for instance after a re-rolled mask), and nothing else.",
)
