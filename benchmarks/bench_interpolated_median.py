"""Benchmark: the 8-bit median interpolated within its level, its cost and its accuracy.

Builds an in-memory 8-bit video of 880 frames of 960 x 1280 px (1.08 GB): a signal drawn
evenly from 20-200 ADU per pixel, plus Gaussian noise of 1.5 ADU per frame, rounded. Times
``temporal_median`` and ``interpolated_median`` on it (best of 3, after a warm-up call that
loads the compiled kernels) and measures the rms error of each against the signal.

Usage::

    .venv/bin/python benchmarks/bench_interpolated_median.py            # print the table
    .venv/bin/python benchmarks/bench_interpolated_median.py --record   # also update README.md
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from quality_flatfield import README, replace_section

from astro_assets.science.flatfield.median import temporal_median
from astro_assets.science.flatfield.quantized import interpolated_median

HEADING = "## 8-bit median interpolation"
SHAPE = (880, 960, 1280)
NOISE_ADU = 1.5
REPEATS = 3


def video(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    signal = rng.uniform(20.0, 200.0, SHAPE[1:])
    frames = np.empty(SHAPE, dtype=np.uint8)
    for index in range(SHAPE[0]):
        noise = rng.standard_normal(SHAPE[1:], dtype=np.float32)
        frames[index] = np.clip(np.rint(signal + NOISE_ADU * noise), 0, 255)
    return frames, signal


def best_time(call) -> tuple[float, float, object]:
    best_wall, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(REPEATS):
        wall, cpu = time.perf_counter(), time.process_time()
        result = call()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="update benchmarks/README.md")
    args = parser.parse_args()
    frames, signal = video()
    interpolated_median(frames[:2], temporal_median(frames[:2]))
    median_wall, median_cpu, exact = best_time(lambda: temporal_median(frames))
    interpolation_wall, interpolation_cpu, interpolated = best_time(
        lambda: interpolated_median(frames, exact)
    )
    load = os.getloadavg()[0]
    rows = [
        "| step | wall s | CPU s | rms error against the signal (ADU) |",
        "|---|---|---|---|",
        f"| exact median | {median_wall:.2f} | {median_cpu:.2f} | "
        f"{np.sqrt(np.mean((exact - signal) ** 2)):.3f} |",
        f"| interpolation within the level | {interpolation_wall:.2f} | {interpolation_cpu:.2f} "
        f"| {np.sqrt(np.mean((interpolated - signal) ** 2)):.3f} |",
    ]
    intro = (
        f"`bench_interpolated_median.py`: {SHAPE[0]} x {SHAPE[1]} x {SHAPE[2]} uint8 frames "
        f"({frames.nbytes / 1e9:.2f} GB) in memory, signal 20-200 ADU, noise {NOISE_ADU} ADU, "
        f"best of {REPEATS}; load {load:.1f}. The interpolation is one thread's pass over the "
        "frames counting, per pixel, the values under and at its median, in 8-bit lanes."
    )
    body = "\n".join([intro, "", *rows, ""])
    print(body)
    if args.record:
        README.write_text(replace_section(README.read_text(), HEADING, body))


if __name__ == "__main__":
    main()
