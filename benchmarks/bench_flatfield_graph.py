"""Benchmark: the whole flat-field graph on a >= 1 GB 16-bit SER video against `cat`.

Writes a synthetic solar video (``astro_assets.samples.solar``: drifting limb-darkened disc
with granulation, dust shadows, noise; default 440 frames of 1280 x 960, 1.08 GB), measures
``cat FILE > /dev/null`` with the file in the page cache, then materializes every flat-field
asset for it (``ser_median`` -> ... -> ``final_flatfield`` -> ``calibrated_video``, checks
included) in one in-process run against a temporary instance, and reports each step's time
from the run's events, the run's wall time and the ratio to ``cat``. The classical backend is
used. ``calibrated_video`` writes a second 1 GB file, so its time includes that write.

With ``--cold`` the page cache is dropped (as root: ``/proc/sys/vm/drop_caches``) before ``cat``
and again before the run, so both read the video from the disk, as a capture just copied
from another machine, or too large for the page cache, is read.

Usage::

    .venv/bin/python benchmarks/bench_flatfield_graph.py [--frames 440 --width 1280
        --height 960 --workdir benchmarks/_work --record --keep --cold]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import time
from datetime import date
from pathlib import Path

import dagster as dg

from astro_assets.defs.flatfield import defs as flatfield_defs
from astro_assets.resources.dust_eye import DustEye
from astro_assets.resources.gemini import GeminiImageModel
from astro_assets.resources.storage import DataStore
from astro_assets.samples import SolarVideoParams, write_sample_video

REPOSITORY = Path(__file__).resolve().parent.parent
README = REPOSITORY / "benchmarks" / "README.md"
SECTION = "## Flat-field graph on a 1 GB video"
INTRO = (
    "`bench_flatfield_graph.py`: every flat-field asset and check for one video, in one "
    "in-process run (classical backend), against `cat` of the video from the page cache (from "
    "the disk in the rows marked cold cache)."
)


def time_cat(path: Path) -> float:
    with open(os.devnull, "wb") as sink:
        started = time.perf_counter()
        subprocess.run(["cat", str(path)], stdout=sink, check=True)
        return time.perf_counter() - started


def drop_page_cache() -> None:
    """Write dirty pages and drop the clean ones, so the next read comes from the disk."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError as error:
        raise SystemExit(
            f"--cold drops the page cache, which needs root on Linux ({error}); run without it."
        ) from None


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Wall seconds of each step, from its STEP_START and STEP_SUCCESS log entries."""
    starts: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value == "STEP_SUCCESS":
            seconds[event.step_key] = entry.timestamp - starts[event.step_key]
    return seconds


def record(header: str, row: str) -> None:
    """Add ``row`` under the last row of the section's table (the section and table are
    created at the end of the README when missing); the findings below stay below."""
    lines = README.read_text().rstrip("\n").splitlines()
    if SECTION not in lines:
        lines += ["", SECTION, "", INTRO, "", header, "|" + "---|" * (header.count("|") - 1)]
    start = lines.index(SECTION)
    table = next(i for i in range(start, len(lines)) if lines[i].startswith("|"))
    end = table
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines.insert(end, row)
    README.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=440)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=960)
    parser.add_argument("--workdir", type=Path, default=REPOSITORY / "benchmarks" / "_work")
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--cold", action="store_true", help="read the video from the disk")
    args = parser.parse_args()

    work = args.workdir / "flatfield_graph"
    shutil.rmtree(work, ignore_errors=True)
    incoming = work / "data" / "incoming" / "ser"
    incoming.mkdir(parents=True)
    params = SolarVideoParams(
        width=args.width, height=args.height, n_frames=args.frames, drift_px=60.0, seed=3
    )
    started = time.perf_counter()
    video, _ = write_sample_video(incoming / "bench.ser", params)
    size_gb = video.stat().st_size / 1e9
    print(f"video {size_gb:.2f} GB written in {time.perf_counter() - started:.0f} s")
    if args.cold:
        drop_page_cache()
        cat = time_cat(video)
        drop_page_cache()
    else:
        cat = min(time_cat(video) for _ in range(3))
    load = os.getloadavg()[0]

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("ser_files", ["bench"])
        started = time.perf_counter()
        result = dg.materialize(
            [*flatfield_defs.assets, *flatfield_defs.asset_checks],
            partition_key="bench",
            instance=instance,
            resources={
                "data_store": DataStore(root=str(work / "data")),
                "dust_eye": DustEye(backend="classical", gemini=GeminiImageModel()),
            },
        )
        wall = time.perf_counter() - started
        steps = step_seconds(instance, result.run_id)
    assets = [a.key.to_user_string() for a in flatfield_defs.assets]
    asset_seconds = {name: steps[name] for name in assets}
    checks = sum(v for k, v in steps.items() if k not in asset_seconds)
    header = (
        "| date | machine | video | load | cat (s) | "
        + " | ".join(f"{name} (s)" for name in assets)
        + " | checks (s) | run wall (s) | run / cat | assets without calibrated_video / cat |"
    )
    without_calibration = sum(asset_seconds.values()) - asset_seconds["calibrated_video"]
    row = (
        f"| {date.today()} | {os.cpu_count()} cores {platform.machine()} | "
        f"{args.frames} x {args.width} x {args.height} u16, "
        f"{video.stat().st_size / 1e9:.2f} GB{', cold cache' if args.cold else ''} | "
        f"{load:.1f} | {cat:.2f} | "
        + " | ".join(f"{asset_seconds[name]:.2f}" for name in assets)
        + f" | {checks:.2f} | {wall:.2f} | {wall / cat:.1f}x | {without_calibration / cat:.1f}x |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    print(row)
    if args.record:
        record(header, row)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
