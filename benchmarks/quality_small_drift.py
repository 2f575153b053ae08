"""Quality: the classical flat on videos whose target drifts only a few shadow diameters.

The ratio of the median to its dust-free prediction is what finds the shadows the median hides
(a planet's bands, faint dust); the prediction is a median over the registered frames, which
sees past a shadow only while most frames saw its part of the scene through other pixels.
This script runs ``quality_flatfield.classical_flat`` on 320 x 240 px videos of 30 frames from
``astro_assets.samples.solar`` (the quality grid's planet, f/30 Sun with and without sunspots,
and the dust-free Sun with sunspots) drifting 14, 18 and 24 px with 0.8 px of jitter. "On one
scene point" is the share of the frames that put a shadow of the smallest size the detector
looks for (10 px) on the same part of the scene (from the true shifts, averaged over the frames
and the seeds). Scores as in ``quality_flatfield.py``; "flat rms in dust" is over the true
support on the lit target (5 % of its bright level), "on the bright target" over the part of it
above 20 %: on a planet's limb a shadow can leave the median below the level under which the
flat is 1.0 by design, where 1 / T - 1 reaches 1,000 % or more on a few pixels.

Usage::

    .venv/bin/python benchmarks/quality_small_drift.py [--seeds 3] [--record]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
from datetime import date

import numpy as np
from quality_flatfield import CASES, README, classical_flat, replace_section, video_params

from astro_assets.samples.solar import SyntheticSolarVideo
from astro_assets.science.flatfield import metrics
from astro_assets.science.flatfield.dust import DustDetectionParams
from astro_assets.science.flatfield.motion import _mean_overlap

HEADING = "## Flat-field quality on small drifts"
WIDTH, HEIGHT, FRAMES = 320, 240, 30
DRIFTS_PX = (14.0, 18.0, 24.0)
SMALLEST_RADIUS_PX = DustDetectionParams().min_radius_px
FINDINGS = """\
Findings. The search runs while fewer than half the frames put the smallest shadow on one scene
point (`motion._SEARCH_MAX_OVERLAP`); the motion test's `max_overlap_fraction` (0.35) gated it
as well before. With that gate (run at a1a3499 on the same videos) none of the 12 videos at
18 px was searched and 9 of 12 at 24 px. The planet's shadows that its bands hide then stayed
uncorrected: deficit-weighted recall 0.52 and flat rms on the bright target 407 % (645 % on the
worst seed) at 18 px, 0.86 and 216 % at 24 px, against 0.97 and 1.43 % (2.35 %), 0.97 and
1.28 % (1.61 %) now. The Sun with sunspots at 18 px: flat rms 1.52 -> 1.40 %, precision
1.00 -> 0.95. The f/30 Sun at 18 px: precision 1.00 -> 0.93 (pixels beside found shadows),
flat rms 4.64 -> 4.61 %; its worst seed (11 %) misses a 20 px shadow on the limb at the frame's
left edge at every drift here, searched or not (found at the grid's 16 %-of-width drift). No
dust-free video has a masked pixel, searched or not. At 14 px (55 %) nothing is searched, as
before. The quality grid (drifts of 82 px, or tracked) and the beyond-grid videos (drifts of
26 px or more, under 35 %; a video of two frames has 50 % and is not searched) are searched as
before; the large-shadow set, run again, gave the recorded table to the last digit.
Run again after the inpainting guide completes the prediction around a held-out ring it
misses in part (`motion._judge_on_ring`), this table is identical to the last digit.
With a monochrome median's guided regions filled in the ratio above the pedestal where lit
(2026-11-24), only the planet's rows at 18 and 24 px moved: flat rms in dust 66.23 -> 66.22 %,
on the bright target 1.43 % (worst seed 2.35 -> 2.41 %) and 1.28 -> 1.29 % (1.61 -> 1.64 %).
"""
CASE_NAMES = (
    "planet f60, drifting",
    "f30 discs, drifting",
    "f30 discs + sunspots, drifting",
    "dust-free + sunspots, drifting",
)


def score(name: str, drift_px: float, seed: int) -> dict:
    """Scores of the classical flat on one seeded video of ``name`` drifting ``drift_px``."""
    params = dataclasses.replace(
        video_params(CASES[name], width=WIDTH, height=HEIGHT, n_frames=FRAMES, seed=seed),
        drift_px=drift_px,
    )
    video = SyntheticSolarVideo(params)
    truth = video.truth
    frames = np.stack([video.frame(index) for index in range(FRAMES)])
    outcome = classical_flat(frames, truth.black_level_adu)
    bright_level = np.percentile(truth.scene, 99)
    lit = truth.scene > 0.05 * bright_level
    support = truth.dust_support() & lit
    transmission = np.where(lit, truth.transmission, np.float32(1.0))
    core, flat = outcome["core"], outcome["flat"].flat
    scores = metrics.mask_scores(core, support)
    bright = support & (truth.scene > 0.2 * bright_level)
    return {
        "overlap": _mean_overlap(truth.shifts, SMALLEST_RADIUS_PX),
        "searched": outcome["separated"].ratio_searched,
        "has_dust": bool(support.any()),
        "precision": scores["precision"],
        "dwr": metrics.deficit_weighted_recall(core, transmission),
        "flat_rms": metrics.flat_errors(flat, transmission, support)["rms"],
        "bright_rms": metrics.flat_errors(flat, transmission, bright)["rms"],
        "masked": float(np.mean(outcome["mask"] > 0)),
    }


def table(rows: dict[tuple[str, float], list[dict]], seeds: int) -> str:
    lines = [
        f"`quality_small_drift.py`: the classical pipeline with default parameters on {WIDTH} x "
        f"{HEIGHT} px videos of {FRAMES} frames drifting a few shadow diameters (see the "
        f"script's docstring), seeds 0-{seeds - 1}; means over the seeds, the worst seed's "
        "flat rms in brackets.",
        "",
        f"Measured {date.today().isoformat()} on {platform.machine()}.",
        "",
        "| case | drift (px) | on one scene point | ratio searched | precision "
        "| deficit-weighted recall | flat rms in dust | on the bright target | masked |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, drift), scores in rows.items():
        searched = sum(row["searched"] for row in scores)
        overlap = statistics.fmean(row["overlap"] for row in scores)
        masked = statistics.fmean(row["masked"] for row in scores)
        if scores[0]["has_dust"]:
            mean = {
                key: statistics.fmean(row[key] for row in scores)
                for key in ("precision", "dwr", "flat_rms", "bright_rms")
            }
            worst = {key: max(row[key] for row in scores) for key in ("flat_rms", "bright_rms")}
            quality = (
                f"{mean['precision']:.2f} | {mean['dwr']:.2f} "
                f"| {100 * mean['flat_rms']:.2f} % ({100 * worst['flat_rms']:.2f} %) "
                f"| {100 * mean['bright_rms']:.2f} % ({100 * worst['bright_rms']:.2f} %)"
            )
        else:
            quality = "- | - | - | -"
        lines.append(
            f"| {name} | {drift:g} | {100 * overlap:.0f} % | {searched} / {len(scores)} "
            f"| {quality} "
            f"| {100 * masked:.2f} % |"
        )
    return "\n".join([*lines, "", FINDINGS])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="update benchmarks/README.md")
    args = parser.parse_args()
    rows = {}
    for name in CASE_NAMES:
        for drift in DRIFTS_PX:
            rows[name, drift] = [score(name, drift, seed) for seed in range(args.seeds)]
            print(name, drift, rows[name, drift], flush=True)
    body = table(rows, args.seeds)
    print(body)
    if args.record:
        README.write_text(replace_section(README.read_text(), HEADING, body))


if __name__ == "__main__":
    main()
