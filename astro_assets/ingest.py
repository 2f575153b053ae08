"""Register new inputs as dynamic partitions, the way the sensors do, for headless use."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import dagster as dg

from astro_assets.io.discovery import (
    Discovery,
    scan_job_folders,
    scan_ser_files,
    vanished_job_keys,
)
from astro_assets.io.paths import DataLayout

SER_PARTITIONS = "ser_files"
JOB_PARTITIONS = "jids"


@dataclass
class IngestReport:
    """What one ingest pass registered, left pending, refused and removed."""

    added: dict[str, list[str]] = field(default_factory=dict)
    pending: dict[str, list[str]] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    removed: dict[str, list[str]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = []
        for name, keys in self.added.items():
            out.extend(f"added    {name}/{key}" for key in keys)
        for name, keys in self.removed.items():
            out.extend(
                f"removed  {name}/{key} (its folder is gone; its products stay on disk)"
                for key in keys
            )
        for name, items in self.pending.items():
            out.extend(
                f"pending  {name}/{item} (still changing; run ingest again)" for item in items
            )
        out.extend(f"rejected {message}" for message in self.rejected)
        if not out:
            out.append("nothing new")
        return out


def _scan_twice(scan, watch_seconds: float) -> Discovery:
    """Scan, wait ``watch_seconds`` if anything was recently modified, then scan again."""
    first = scan(pending={}, settle_seconds=watch_seconds)
    if not first.pending:
        return first
    time.sleep(watch_seconds)
    second = scan(pending=first.pending, settle_seconds=watch_seconds)
    return Discovery(first.ready + second.ready, second.pending, first.rejected)


def register_new_inputs(
    instance: dg.DagsterInstance, layout: DataLayout, *, watch_seconds: float = 1.0
) -> IngestReport:
    """Add a partition for every new, complete input under the data root.

    SER videos become ``ser_files`` partitions and job folders ``jids`` partitions, with the
    same rules as the sensors: an input still changing during ``watch_seconds`` is left pending.
    A ``jids`` partition whose folder was removed is removed too, as the sensor does: the
    dataset's jobs are run in one range, which a job without its folder would fail.
    """
    report = IngestReport()
    sources = {
        SER_PARTITIONS: (scan_ser_files, layout.incoming_ser),
        JOB_PARTITIONS: (scan_job_folders, layout.incoming_jobs),
    }
    for partitions_name, (scan_folder, folder) in sources.items():
        known = instance.get_dynamic_partitions(partitions_name)
        discovery = _scan_twice(
            lambda pending, settle_seconds, scan_folder=scan_folder, folder=folder, known=known: (
                scan_folder(
                    folder, known_keys=known, pending=pending, settle_seconds=settle_seconds
                )
            ),
            watch_seconds,
        )
        keys = [candidate.key for candidate in discovery.ready]
        if keys:
            instance.add_dynamic_partitions(partitions_name, keys)
        report.added[partitions_name] = keys
        report.pending[partitions_name] = sorted(discovery.pending)
        report.rejected.extend(discovery.rejected)
    gone = vanished_job_keys(layout.incoming_jobs, instance.get_dynamic_partitions(JOB_PARTITIONS))
    for key in gone:
        instance.delete_dynamic_partition(JOB_PARTITIONS, key)
    report.removed[JOB_PARTITIONS] = gone
    return report
