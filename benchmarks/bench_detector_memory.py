"""Benchmark: peak memory and time of the classical dust detector on large medians.

For each size (megapixels, frames of aspect 3:2), a seeded synthetic float32 median is built in
a child process and saved to a temporary .npy: a limb-darkened solar disc (radius 0.45 of the
shorter side, law ``1 - 0.6 (1 - mu) - 0.1 (1 - mu)**2``, 1.5 px of seeing blur) with a
granulation-like texture (2 % rms), vignetting (10 % at the corners) and 12 dust shadows drawn
by ``astro_assets.samples.solar.random_dust`` for an f/30 beam (discs 13-22 px across, 7-64 %
deep), under Gaussian noise of 0.3 % of the disc centre (the median of a few tens of frames).

``detect_dust`` then runs on it in a fresh child process, which first loads the median and
makes one call on a small median (so the compiled kernels are loaded, not counted). Reported:

- ``baseline``: the child's peak resident set (``ru_maxrss``) before the call: interpreter,
  numpy, scipy, numba and the median itself;
- ``peak``: ``ru_maxrss`` after the call; ``growth`` is peak minus baseline, also in float64
  frames (``8 * H * W`` bytes) for comparison across sizes;
- ``wall``: wall time of the call.

On Linux a child's ``ru_maxrss`` starts from its parent's high-water mark at ``exec``; this
script's parent never holds a frame, so its own (a few tens of MiB) stays below every
baseline.

``--module FILE`` runs ``detect_dust`` from a copy of ``dust.py`` (e.g. an earlier version,
saved with ``git show REV:astro_assets/science/flatfield/dust.py > /tmp/dust_old.py``) instead
of the package, to compare versions on the same medians.

Usage::

    .venv/bin/python benchmarks/bench_detector_memory.py [--sizes 2,8,20] [--seed 0]
        [--module FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parent.parent
ASPECT = 1.5
DISC_RADIUS_FRACTION = 0.45
PEDESTAL_ADU = 1000.0
PEAK_ADU = 40000.0
NOISE_FRACTION = 3e-3
TEXTURE_RMS = 0.02
N_DUST = 12
FOCAL_RATIO = 30.0


def frame_shape(megapixels: float) -> tuple[int, int]:
    width = round(math.sqrt(megapixels * 1e6 * ASPECT))
    return round(width / ASPECT), width


def synthetic_median(megapixels: float, seed: int) -> np.ndarray:
    """(H, W) float32 median of a dusty solar disc; built in float32, in place where possible."""
    from scipy import ndimage

    from astro_assets.samples.solar import (
        SolarVideoParams,
        dust_transmission,
        random_dust,
        vignetting_map,
    )

    height, width = frame_shape(megapixels)
    rng = np.random.default_rng(seed)
    radius = DISC_RADIUS_FRACTION * min(height, width)
    rows = (np.arange(height, dtype=np.float32) - 0.5 * (height - 1))[:, None]
    cols = (np.arange(width, dtype=np.float32) - 0.5 * (width - 1))[None, :]
    mu = np.hypot(rows, cols) / np.float32(radius)
    inside = mu < 1.0
    np.square(mu, out=mu)
    np.subtract(1.0, mu, out=mu)
    np.clip(mu, 0.0, 1.0, out=mu)
    np.sqrt(mu, out=mu)
    np.subtract(1.0, mu, out=mu)
    median = 1.0 - 0.6 * mu - 0.1 * mu * mu
    del mu
    median *= inside
    del inside
    median = ndimage.gaussian_filter(median, 1.5)
    texture = ndimage.gaussian_filter(rng.standard_normal((height, width), dtype=np.float32), 1.5)
    texture *= TEXTURE_RMS / texture.std()
    texture += 1.0
    median *= texture
    del texture
    params = SolarVideoParams(
        width=width,
        height=height,
        target="sun",
        disk_radius_frac=DISC_RADIUS_FRACTION,
        n_sunspots=0,
        n_dust=N_DUST,
        focal_ratio=FOCAL_RATIO,
        seed=seed,
    )
    median *= dust_transmission(random_dust(params), (height, width))
    median *= vignetting_map((height, width), params.vignetting)
    median *= PEAK_ADU
    noise = rng.standard_normal((height, width), dtype=np.float32)
    noise *= NOISE_FRACTION * PEAK_ADU
    median += noise
    median += PEDESTAL_ADU
    return median


def child_generate(megapixels: float, seed: int, path: Path) -> None:
    np.save(path, synthetic_median(megapixels, seed))


def child_detect(path: Path, module: str | None) -> None:
    if module is None:
        from astro_assets.science.flatfield.dust import detect_dust
    else:
        import importlib.util

        # Registered under the file's stem, the name numba's cache records for its kernels.
        spec = importlib.util.spec_from_file_location(Path(module).stem, module)
        dust = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = dust
        spec.loader.exec_module(dust)
        detect_dust = dust.detect_dust
    median = np.load(path)
    detect_dust(synthetic_median(0.05, 1))
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    detection = detect_dust(median)
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "shape": median.shape,
                "baseline_kb": baseline_kb,
                "peak_kb": peak_kb,
                "wall_s": wall,
                "regions": len(detection.regions),
            }
        )
    )


def run_child(args: list[str]) -> dict | None:
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        capture_output=True,
        text=True,
        cwd=REPOSITORY,
    )
    if completed.returncode != 0:
        sys.exit(f"child {args} failed:\n{completed.stderr}")
    lines = completed.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,8,20", help="megapixels, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--module", help="run detect_dust from this copy of dust.py")
    parser.add_argument("--generate", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--detect", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        child_generate(float(args.generate[0]), args.seed, Path(args.generate[1]))
        return
    if args.detect:
        child_detect(Path(args.detect), args.module)
        return
    module = ["--module", str(Path(args.module).resolve())] if args.module else []
    rows = [
        "| size (MP) | frame | baseline RSS (MiB) | peak RSS (MiB) | growth (MiB) "
        "| growth (float64 frames) | wall (s) | regions |",
        "|---|---|---|---|---|---|---|---|",
    ]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        for size in (float(text) for text in args.sizes.split(",")):
            path = Path(folder) / f"median_{size:g}mp.npy"
            run_child(["--seed", str(args.seed), "--generate", str(size), str(path)])
            result = run_child(["--detect", str(path), *module])
            path.unlink()
            height, width = result["shape"]
            growth_kb = result["peak_kb"] - result["baseline_kb"]
            frames = growth_kb * 1024 / (8 * height * width)
            rows.append(
                f"| {size:g} | {width} x {height} | {result['baseline_kb'] / 1024:.0f} "
                f"| {result['peak_kb'] / 1024:.0f} | {growth_kb / 1024:.0f} | {frames:.1f} "
                f"| {result['wall_s']:.1f} | {result['regions']} |"
            )
    source = args.module or "astro_assets.science.flatfield.dust"
    intro = (
        f"`bench_detector_memory.py`: `detect_dust` from {source} on seeded synthetic float32 "
        f"medians of a dusty solar disc (seed {args.seed}); load {load:.1f} before."
    )
    print("\n".join([intro, "", *rows]))


if __name__ == "__main__":
    main()
