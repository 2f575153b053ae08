"""Benchmark: streamed exact temporal median of a >= 1 GB 16-bit SER video against `cat`.

Writes a synthetic 16-bit MONO SER video (streamed frame by frame, so writing uses little
memory), puts it in the page cache as a file read from disk (see :func:`cache_as_read`),
then in one run measures:

- the wall and CPU time (user + system) of ``cat FILE > /dev/null`` with the file in the
  page cache (three runs: the second and the best are reported);
- the wall and CPU time of ``temporal_median(open_ser(FILE).frames)`` in a fresh subprocess
  per repetition (best and median of the repetitions), the peak resident set of that
  subprocess (``ru_maxrss``, which counts file pages mapped into the process as well), and
  the 1-minute load average before each repetition. Each subprocess first makes one tiny
  call on the same file (the first row of two frames), timed apart, so that loading (or
  compiling) the counting kernels, the one that reads the file included, is not counted in
  the call on the video;
- the first call's time with an empty kernel cache (a fresh ``NUMBA_CACHE_DIR``: numba
  compiles) and with that cache filled (numba loads the compiled kernels);
- optionally (``--baseline``) the naive approach, all frames loaded then ``np.median``,
  when the machine has the memory for it.

It prints a markdown table row; ``--record`` also adds it to the "Temporal median" table in
``benchmarks/README.md``. The video is deleted at the end unless ``--keep``.

Usage::

    .venv/bin/python benchmarks/bench_median.py [--frames 440 --width 1280 --height 960
        --workdir benchmarks/_work --budget 256 --workers N --repeat 3 --baseline --record]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import psutil

REPOSITORY = Path(__file__).resolve().parent.parent
README = REPOSITORY / "benchmarks" / "README.md"
SECTION = "## Temporal median"
TABLE_HEADER = (
    "| date | machine | video | cat warm (s) | cat best (s) | cat CPU (s) | median best (s) "
    "| median of runs (s) | best / cat best | median CPU best (s) | median CPU of runs (s) "
    "| peak RSS (MiB) | budget (MiB) | threads | load before | first call: compile / cached (s) "
    "| naive (s) | naive peak RSS (MiB) |"
)


def synthetic_frames(frames: int, height: int, width: int, seed: int) -> Iterator[np.ndarray]:
    """A limb-darkened disc with dust shadows and 3 % multiplicative noise, 16-bit."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    radius = 0.45 * min(height, width)
    distance = np.hypot(rows - height / 2, cols - width / 2) / radius
    disc = np.where(distance < 1, 1 - 0.6 * (1 - np.sqrt(np.clip(1 - distance**2, 0, 1))), 0.05)
    for _ in range(20):
        y, x = rng.uniform(0, height), rng.uniform(0, width)
        size, depth = rng.uniform(4, 40), rng.uniform(0.05, 0.4)
        disc *= 1 - depth * np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / (2 * size**2))
    level = (40000 * disc).astype(np.float32)
    for _ in range(frames):
        noise = rng.standard_normal((height, width), dtype=np.float32)
        yield np.clip(level * (1 + 0.03 * noise), 0, 65535).astype(np.uint16)


def write_video(path: Path, frames: int, height: int, width: int, seed: int) -> None:
    from astro_assets.io.ser import write_ser

    write_ser(path, synthetic_frames(frames, height, width, seed), color="MONO", depth=16)


def cache_as_read(path: Path) -> None:
    """Put ``path`` in the page cache as a file read from disk is: written to disk, dropped
    from the cache, then read once.

    A file just written is cached in the pieces its writer wrote; read back from disk, it is
    cached in large folios (runs of pages the kernel manages as one). Copying it out of the
    cache then costs a third less: ``cat`` of the 1.08 GB video took 0.13 s in the first
    state and 0.08-0.09 s in the second on the same machine, and the median's reads gain
    about as much. Measuring both in the second state takes the faster ``cat`` as the
    reference.
    """
    with open(path, "rb") as file:
        os.fsync(file.fileno())
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    time_cat(path)


def cpu_seconds(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def time_cat(path: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``cat path > /dev/null``."""
    with open(os.devnull, "wb") as sink:
        before = cpu_seconds(resource.getrusage(resource.RUSAGE_CHILDREN))
        start = time.perf_counter()
        subprocess.run(["cat", str(path)], stdout=sink, check=True)
        seconds = time.perf_counter() - start
        return seconds, cpu_seconds(resource.getrusage(resource.RUSAGE_CHILDREN)) - before


def run_child(args: list[str], env: dict[str, str] | None = None) -> dict:
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
        env=env,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def child_first_call() -> None:
    """Time the first call in a fresh process: numba loads or compiles the kernels."""
    import_start = time.perf_counter()
    from astro_assets.science.flatfield.median import temporal_median

    imported = time.perf_counter()
    cpu_before = time.process_time()
    temporal_median(np.arange(16, dtype=np.uint16).reshape(4, 2, 2))
    called = time.perf_counter()
    print(
        json.dumps(
            {
                "import_seconds": imported - import_start,
                "seconds": called - imported,
                "cpu_seconds": time.process_time() - cpu_before,
            }
        )
    )


def child_median(path: Path, budget_mb: float, workers: int | None) -> None:
    from astro_assets.io.ser import open_ser
    from astro_assets.science.flatfield.median import temporal_median

    with open_ser(path) as video:
        frames = video.frames
        start = time.perf_counter()
        temporal_median(frames[:2, :1], workers=workers)
        first_call = time.perf_counter() - start
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        median = temporal_median(frames, memory_budget_mb=budget_mb, workers=workers)
        seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_seconds(after) - cpu_seconds(before),
                "first_call_seconds": first_call,
                "peak_rss_mib": after.ru_maxrss / 1024,
                "rss_before_mib": before.ru_maxrss / 1024,
                "checksum": float(np.sum(median, dtype=np.float64)),
            }
        )
    )


def time_first_calls() -> tuple[dict, dict]:
    """The first call with an empty kernel cache (numba compiles) and with it filled (numba
    loads the compiled kernels), each in a fresh process: wall and CPU seconds."""
    with tempfile.TemporaryDirectory(prefix="numba_cache_") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        compiled = run_child(["--child-first-call"], env)
        cached = run_child(["--child-first-call"], env)
    return compiled, cached


def child_naive(path: Path) -> None:
    from astro_assets.io.ser import open_ser

    with open_ser(path) as video:
        start = time.perf_counter()
        frames = np.array(video.frames)
        median = np.median(frames, axis=0).astype(np.float32)
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mib": peak,
                "checksum": float(np.sum(median, dtype=np.float64)),
            }
        )
    )


def machine() -> str:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gib = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} cores {model}, {memory_gib:.0f} GiB"


def record(row: str) -> None:
    text = README.read_text()
    lines = text.splitlines()
    if SECTION not in lines:
        raise SystemExit(f"{README} has no '{SECTION}' section to record into")
    start = lines.index(SECTION)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    table_rows = [i for i in range(start, end) if lines[i].startswith("|")]
    if not table_rows:
        raise SystemExit(f"the '{SECTION}' section of {README} has no results table")
    lines.insert(table_rows[-1] + 1, row)
    README.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=440)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=960)
    parser.add_argument("--workdir", type=Path, default=REPOSITORY / "benchmarks" / "_work")
    parser.add_argument("--budget", type=float, default=256.0, help="memory_budget_mb")
    parser.add_argument("--workers", type=int, default=None, help="threads (default: cores)")
    parser.add_argument("--repeat", type=int, default=3, help="median runs, in fresh processes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--baseline", action="store_true", help="also time the naive median")
    parser.add_argument("--record", action="store_true", help="add the row to the README")
    parser.add_argument("--keep", action="store_true", help="keep the video afterwards")
    parser.add_argument("--child-median", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-naive", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-first-call", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child_first_call:
        child_first_call()
        return
    if args.child_median:
        child_median(args.child_median, args.budget, args.workers)
        return
    if args.child_naive:
        child_naive(args.child_naive)
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / f"median_{args.frames}x{args.width}x{args.height}.ser"
    try:
        if not path.exists():
            print(f"writing {path} ...", file=sys.stderr)
            write_video(path, args.frames, args.height, args.width, args.seed)
        size_gb = path.stat().st_size / 1e9
        if size_gb < 1:
            print(f"note: the video is {size_gb:.2f} GB, below the 1 GB target", file=sys.stderr)

        cache_as_read(path)
        compiled, cached = time_first_calls()
        cat_runs = [time_cat(path) for _ in range(3)]
        cat_warm = cat_runs[1][0]
        cat_best = min(seconds for seconds, _ in cat_runs)
        cat_cpu = min(cpu for _, cpu in cat_runs)

        extra = ["--budget", str(args.budget)]
        if args.workers is not None:
            extra += ["--workers", str(args.workers)]
        runs, loads = [], []
        for _ in range(args.repeat):
            loads.append(os.getloadavg()[0])
            runs.append(run_child(["--child-median", str(path), *extra]))
        wall = [run["seconds"] for run in runs]
        cpu = [run["cpu_seconds"] for run in runs]
        peak = max(run["peak_rss_mib"] for run in runs)
        for run, load in zip(runs, loads, strict=True):
            print(
                f"run: wall {run['seconds']:.3f} s, CPU {run['cpu_seconds']:.3f} s, "
                f"first call {run['first_call_seconds']:.2f} s, peak RSS "
                f"{run['peak_rss_mib']:.0f} MiB (before the call {run['rss_before_mib']:.0f}), "
                f"load before {load:.1f}",
                file=sys.stderr,
            )
        print(
            f"first call: compile {compiled['seconds']:.2f} s (CPU {compiled['cpu_seconds']:.2f}"
            f" s), cached {cached['seconds']:.2f} s (CPU {cached['cpu_seconds']:.2f} s); "
            f"import {cached['import_seconds']:.2f} s",
            file=sys.stderr,
        )
        print(
            "cat runs: "
            + ", ".join(f"wall {wall_s:.3f} s CPU {cpu_s:.3f} s" for wall_s, cpu_s in cat_runs),
            file=sys.stderr,
        )

        naive_seconds = naive_peak = "-"
        if args.baseline:
            needed = 4 * path.stat().st_size
            if psutil.virtual_memory().available > needed:
                naive = run_child(["--child-naive", str(path)])
                if naive["checksum"] != runs[0]["checksum"]:
                    raise SystemExit("the naive median differs from temporal_median")
                naive_seconds = f"{naive['seconds']:.2f}"
                naive_peak = f"{naive['peak_rss_mib']:.0f}"
            else:
                print("skipping the naive baseline: not enough free memory", file=sys.stderr)

        threads = args.workers if args.workers is not None else os.cpu_count()
        row = (
            f"| {date.today().isoformat()} | {machine()} | {args.frames} x {args.width} x "
            f"{args.height} u16, {size_gb:.2f} GB | {cat_warm:.3f} | {cat_best:.3f} | "
            f"{cat_cpu:.3f} | {min(wall):.3f} | {statistics.median(wall):.3f} | "
            f"{min(wall) / cat_best:.1f}x | {min(cpu):.2f} | {statistics.median(cpu):.2f} | "
            f"{peak:.0f} | {args.budget:g} | {threads} | "
            f"{min(loads):.1f}-{max(loads):.1f} | {compiled['seconds']:.1f} "
            f"({compiled['cpu_seconds']:.1f} CPU) / {cached['seconds']:.2f} "
            f"({cached['cpu_seconds']:.2f} CPU) | "
            f"{naive_seconds} | {naive_peak} |"
        )
        print(TABLE_HEADER)
        print("|" + "---|" * TABLE_HEADER.count(" |"))
        print(row)
        if args.record:
            record(row)
    finally:
        if not args.keep and path.exists():
            path.unlink()


if __name__ == "__main__":
    main()
