"""Quality: the drift registration on small frames, against the generator's true shifts.

For each size (Suns and planets from ``astro_assets.samples.solar``; mono frames, and mono
frames read as an RGGB mosaic, whose 2 x 2 cells are the registration's grid), seeded
videos of 30 frames drift 20 % of the width, under one f/30 shadow. The classical eye's core
on the median is the exclusion, as in ``dust_mask``. Reported per size: the videos whose
every registered frame lies within 2 px of the registration's grid of the truth ("right"),
those registered with a frame farther off ("wrong": the closure passed, the drift is not the
scene's), and those not registered; the high-pass scale used (``DriftEstimate``) and the
median error over the frames, raw px (the median over the videos).

Usage::

    .venv/bin/python benchmarks/quality_drift_small.py [--seeds 8] [--record]
"""

from __future__ import annotations

import argparse
import platform
from datetime import date

import numpy as np
from quality_flatfield import README, replace_section

from astro_assets.resources.classical import ClassicalImageModel
from astro_assets.samples import SolarVideoParams
from astro_assets.samples.solar import synthesize_frames_array
from astro_assets.science.flatfield.drift import estimate_drift
from astro_assets.science.flatfield.planes import LuminanceVideo, luminance_view

HEADING = "## Drift registration on small frames"

SIZES = (
    (64, 48, "MONO", "sun"),
    (80, 60, "MONO", "sun"),
    (96, 72, "MONO", "sun"),
    (128, 96, "MONO", "sun"),
    (160, 120, "MONO", "sun"),
    (128, 96, "RGGB", "sun"),
    (160, 120, "RGGB", "sun"),
    (192, 144, "RGGB", "sun"),
    (224, 168, "RGGB", "sun"),
    (96, 72, "MONO", "planet"),
    (160, 120, "MONO", "planet"),
    (192, 144, "RGGB", "planet"),
)


def run_size(width: int, height: int, color: str, target: str, seeds: int) -> dict:
    """Counts of right, wrong and unregistered videos over ``seeds`` seeds, the high-pass scale
    (registration grid px) and the median of the per-video median errors (raw px)."""
    right = wrong = unregistered = 0
    errors, scales = [], set()
    for seed in range(seeds):
        params = SolarVideoParams(
            width=width,
            height=height,
            n_frames=30,
            drift_px=0.2 * width,
            n_dust=1,
            target=target,
            seed=seed,
        )
        frames, truth = synthesize_frames_array(params)
        median = np.median(frames, axis=0).astype(np.float32)
        core = ClassicalImageModel().locate_dust(luminance_view(median, color)).core
        video = LuminanceVideo(frames, color)
        cell = video.cell_px
        estimate = estimate_drift(video, exclude=core)
        used = estimate.frames_used
        expected = truth.shifts[used] - truth.shifts[used[0]]
        error = np.hypot(*(cell * estimate.shifts - expected).T)
        scales.add(estimate.highpass_sigma_px)
        errors.append(float(np.median(error)))
        if not estimate.registered:
            unregistered += 1
        elif error.max() < 2 * cell:
            right += 1
        else:
            wrong += 1
    return {
        "cell": cell,
        "right": right,
        "wrong": wrong,
        "unregistered": unregistered,
        "highpass": sorted(scales),
        "median_error": float(np.median(errors)),
    }


def table(results: dict[tuple, dict], seeds: int) -> str:
    lines = [
        "Videos of 30 frames drifting 20 % of the width under one f/30 shadow, registered by "
        "`estimate_drift` with the classical eye's core as the exclusion. Right: every frame "
        "within 2 px of the registration's grid of the true shift. Wrong: registered (the "
        "closure passed) with a frame farther off. A mosaic is registered on its 2 x 2 cells; "
        "on grids under 128 px the high-pass scale is 1/16 of the short side.",
        "",
        f"Measured {date.today().isoformat()} on {platform.machine()}, {seeds} seeds per size "
        "(`benchmarks/quality_drift_small.py`).",
        "",
        "| frame | read as | target | grid | high-pass, grid px | right | wrong | not registered "
        "| median error, raw px |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (width, height, color, target), row in results.items():
        cell = row["cell"]
        scales = ", ".join(f"{scale:g}" for scale in row["highpass"])
        lines.append(
            f"| {width} x {height} | {color} | {target} | {width // cell} x {height // cell} "
            f"| {scales} | {row['right']} | {row['wrong']} | {row['unregistered']} "
            f"| {row['median_error']:.2f} |"
        )
    total = {key: sum(row[key] for row in results.values()) for key in ("right", "wrong")}
    unregistered = sum(row["unregistered"] for row in results.values())
    lines += [
        "",
        f"In all: {total['right']} right, {total['wrong']} wrong, {unregistered} not registered "
        f"of {seeds * len(results)}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--record", action="store_true", help="update benchmarks/README.md")
    args = parser.parse_args()
    results = {}
    for size in SIZES:
        results[size] = run_size(*size, seeds=args.seeds)
        print(size, results[size], flush=True)
    body = table(results, args.seeds)
    print(body)
    if args.record:
        README.write_text(replace_section(README.read_text(), HEADING, body))


if __name__ == "__main__":
    main()
