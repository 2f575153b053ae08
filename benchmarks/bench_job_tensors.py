"""Benchmark: write_job_tensor on one full-size (4090 x 4090) job.

Measures, each in a fresh process so that its peak memory is its own:

- ``write_job_tensor``: read the four FITS images one by one, ZScale-normalize, write the
  (H, W, 4) float32 tensor channel by channel into a memory-mapped .npy, atomically;
- the I/O floor: read the same four FITS files with ``astropy.io.fits.getdata`` into float32
  and ``np.save`` the stacked tensor, then ``fsync`` it as the atomic writer does (no
  normalization, everything in memory at once).

Both run with the files in the page cache (one untimed warm-up read first). Peak RSS is the
high-water mark of the process (interpreter, numpy, astropy included), read as ``VmHWM`` from
``/proc/self/status`` (Linux; ``ru_maxrss`` would keep the parent's peak across fork/exec); the
increment is over the high-water mark right after the imports. The target is a peak of at most
1.3 x one output tensor (4090 * 4090 * 4 * 4 B = 268 MB, so 348 MB).

Usage::

    .venv/bin/python benchmarks/bench_job_tensors.py [--size 4090] [--repeat 3]
        [--workdir benchmarks/_work/job_tensors] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROLES = ("science", "reference", "difference", "score")

_CHILD = r"""
import json, os, sys, time
from pathlib import Path


def high_water_kb():
    # VmHWM belongs to this process image; ru_maxrss would include the parent's peak at fork.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


mode, job_dir, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
import numpy as np
from astropy.io import fits
from astro_assets.io.fits import job_file_paths
from astro_assets.science.transients.tensors import write_job_tensor
roles = ("science", "reference", "difference", "score")
paths = job_file_paths(job_dir)
baseline_kb = high_water_kb()
start = time.perf_counter()
if mode == "tensor":
    write_job_tensor(out, {r: paths[r] for r in roles})
else:
    stack = np.stack([fits.getdata(paths[r]).astype(np.float32) for r in roles], axis=-1)
    with open(out, "wb") as handle:
        np.save(handle, stack)
        handle.flush()
        os.fsync(handle.fileno())  # write_job_tensor fsyncs too, before its atomic rename
    del stack
elapsed = time.perf_counter() - start
peak_kb = high_water_kb()
print(json.dumps({"seconds": elapsed, "peak_kb": peak_kb, "baseline_kb": baseline_kb}))
"""


def _run(mode: str, job_dir: Path, out: Path) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, str(job_dir), str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    out.unlink(missing_ok=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4090)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/_work/job_tensors"))
    parser.add_argument("--keep", action="store_true", help="keep the generated job")
    args = parser.parse_args()

    from astro_assets.samples.jobs import JobParams, write_sample_job

    job_dir = args.workdir / f"bench{args.size}"
    if not (job_dir / "psfcat.csv").is_file():
        start = time.perf_counter()
        write_sample_job(args.workdir, job_dir.name, JobParams.scaled(args.size, seed=1))
        print(f"generated {job_dir} in {time.perf_counter() - start:.1f} s")
    out = args.workdir / "out.npy"
    tensor_mb = args.size * args.size * 4 * 4 / 1e6
    for path in job_dir.iterdir():
        path.read_bytes()  # warm the page cache

    results: dict[str, list[dict[str, float]]] = {"floor": [], "tensor": []}
    for _ in range(args.repeat):
        for mode in ("floor", "tensor"):
            results[mode].append(_run(mode, job_dir, out))

    def summary(mode: str) -> dict[str, float]:
        runs = results[mode]
        peak = max(r["peak_kb"] for r in runs) * 1024 / 1e6
        baseline = min(r["baseline_kb"] for r in runs) * 1024 / 1e6
        return {
            "median_s": statistics.median(r["seconds"] for r in runs),
            "best_s": min(r["seconds"] for r in runs),
            "peak_mb": peak,
            "increment_mb": peak - baseline,
            "baseline_mb": baseline,
        }

    floor, tensor = summary("floor"), summary("tensor")
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "size": args.size,
        "tensor_mb": tensor_mb,
        "floor": floor,
        "tensor": tensor,
    }
    (args.workdir / "result.json").write_text(json.dumps(record, indent=1))
    load = os.getloadavg()[0]
    print(
        "| date | image | tensor (MB) | I/O floor median / best (s) "
        "| write_job_tensor median / best (s) | ratio of medians | floor peak RSS (MB) "
        "| tensor peak RSS (MB) | tensor RSS over imports (MB) | peak / tensor | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {record['date']} | {args.size} x {args.size} | {tensor_mb:.0f} "
        f"| {floor['median_s']:.2f} / {floor['best_s']:.2f} "
        f"| {tensor['median_s']:.2f} / {tensor['best_s']:.2f} "
        f"| {tensor['median_s'] / floor['median_s']:.1f} | {floor['peak_mb']:.0f} "
        f"| {tensor['peak_mb']:.0f} | {tensor['increment_mb']:.0f} "
        f"| {tensor['peak_mb'] / tensor_mb:.2f} | {load:.1f} |"
    )
    if not args.keep:
        shutil.rmtree(job_dir)
        (args.workdir / f"{job_dir.name}.truth.json").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
