"""Register new inputs as dynamic partitions, the way the sensors do, for headless use."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import dagster as dg

from astro_assets.io.discovery import Discovery, Observation, scan_job_folders, scan_ser_files
from astro_assets.io.paths import DataLayout

SER_PARTITIONS = "ser_files"
JOB_PARTITIONS = "jids"
GONE = {SER_PARTITIONS: "its video is gone", JOB_PARTITIONS: "its folder is gone"}
"""How the input of a removed partition of each set went away, for the report."""


@dataclass
class IngestReport:
    """What one ingest pass registered, left pending, refused, skipped and removed.

    ``errors`` names the incoming folders that could not be read (the command then exits
    non-zero); ``warnings`` the folders that list no input while some are registered.
    """

    added: dict[str, list[str]] = field(default_factory=dict)
    pending: dict[str, list[str]] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    removed: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def lines(self, *, errors: bool = True) -> list[str]:
        """The report, one line per item; without the errors when ``errors`` is False (the
        command prints them on standard error instead)."""
        out = [f"error    {message}" for message in self.errors] if errors else []
        out.extend(f"warning  {message}" for message in self.warnings)
        for name, keys in self.added.items():
            out.extend(f"added    {name}/{key}" for key in keys)
        for name, keys in self.removed.items():
            out.extend(
                f"removed  {name}/{key} ({GONE.get(name, 'its input is gone')}; its products "
                "stay on disk)"
                for key in keys
            )
        for name, items in self.pending.items():
            out.extend(
                f"pending  {name}/{item} (still changing; run ingest again)" for item in items
            )
        out.extend(f"rejected {message}" for message in self.rejected)
        out.extend(f"skipped  {message}" for message in self.skipped)
        if not out and not self.errors:
            out.append("nothing new")
        return out


def _scan_folder(
    scan_folder: Callable[..., Discovery],
    folder: Path,
    known: Iterable[str],
    *,
    pending: dict[str, Observation],
    settle_seconds: float,
    also_known: Iterable[str],
) -> Discovery:
    return scan_folder(
        folder,
        known_keys=[*known, *also_known],
        pending=pending,
        settle_seconds=settle_seconds,
    )


def _scan_twice(scan: Callable[..., Discovery], watch_seconds: float) -> Discovery:
    """Scan, wait ``watch_seconds`` if anything is changing or missing, then scan again.

    ``scan(pending, settle_seconds, also_known)`` scans with ``also_known`` counted as
    registered, so that what the first scan found ready is not found again. A registered input
    is reported vanished only when both looks miss it, and one found ready at the first look
    but gone at the second is neither added nor removed: it is reported as skipped.
    """
    first = scan(pending={}, settle_seconds=watch_seconds, also_known=())
    if not first.listed or not (first.pending or first.vanished):
        return first
    time.sleep(watch_seconds)
    second = scan(
        pending=first.pending,
        settle_seconds=watch_seconds,
        also_known=[candidate.key for candidate in first.ready],
    )
    if not second.listed:
        return second
    gone_again = [c for c in first.ready if c.key in second.vanished]
    # The second look is the newer one: what it rejects, skips or misses is what is there now.
    return replace(
        second,
        ready=tuple(c for c in first.ready if c not in gone_again) + second.ready,
        skipped=second.skipped
        + tuple(
            f"{c.path.name!r} in {c.path.parent} was removed while being watched: not registered"
            for c in gone_again
        ),
        vanished=tuple(key for key in second.vanished if key in first.vanished),
    )


def register_new_inputs(
    instance: dg.DagsterInstance, layout: DataLayout, *, watch_seconds: float = 1.0
) -> IngestReport:
    """Add a partition for every new, complete input, and remove those whose input is gone.

    SER videos become ``ser_files`` partitions and job folders ``jids`` partitions, with the
    same rules as the sensors: an input still changing during ``watch_seconds`` is left pending;
    a name that makes no safe key is rejected and an entry that is no input (or an incomplete
    job folder) is skipped, each reported with what to do, without stopping the others. A
    partition whose video or job folder is missing at two looks ``watch_seconds`` apart is
    removed too, as the sensors do (the dataset's jobs are run in one range, which a job
    without its folder would fail; a video's assets cannot run without it); its products stay
    on disk. Nothing is removed from an incoming folder that is missing, cannot be read or lists
    no input at all (a data disk not mounted); one that cannot be read is named in ``errors``.
    """
    report = IngestReport()
    sources = {
        SER_PARTITIONS: (scan_ser_files, layout.incoming_ser),
        JOB_PARTITIONS: (scan_job_folders, layout.incoming_jobs),
    }
    for partitions_name, (scan_folder, folder) in sources.items():
        known = instance.get_dynamic_partitions(partitions_name)
        scan = functools.partial(_scan_folder, scan_folder, folder, known)
        discovery = _scan_twice(scan, watch_seconds)
        keys = [candidate.key for candidate in discovery.ready]
        if keys:
            instance.add_dynamic_partitions(partitions_name, keys)
        for key in discovery.vanished:
            instance.delete_dynamic_partition(partitions_name, key)
        report.added[partitions_name] = keys
        report.removed[partitions_name] = list(discovery.vanished)
        report.pending[partitions_name] = sorted(discovery.pending)
        report.rejected.extend(discovery.rejected)
        report.skipped.extend(discovery.skipped)
        report.warnings.extend(discovery.warnings)
        if discovery.error:
            report.errors.append(discovery.error)
    return report
