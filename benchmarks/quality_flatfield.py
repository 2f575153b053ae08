"""Quality and speed of the classical dust flat-field pipeline on synthetic videos with truth.

Pipeline per video: temporal median -> detect_dust -> drift -> separate_sensor_fixed (motion
test, ratio search) -> expand_mask -> inpaint_guided (harmonic; along the dust-free prediction
for the regions found only in the ratio, and for those whose surroundings it explains better) ->
match_histogram (clean pixels) -> synthesize_flat (black level known, as from a dark frame).

Scores (``astro_assets.science.flatfield.metrics``; the flat estimates the dust transmission T):
mask IoU / precision / recall of the binary core against the true dust support (1 - T > 0.005),
deficit-weighted recall sum(core * (1 - T)) / sum(1 - T), rms and max of F / T - 1 inside the
true support, the fraction of clean pixels (mask == 0) where F is exactly 1.0, false-positive
area, and the fraction of the frame in the binary core and in the expanded (feathered) mask.

Usage::

    .venv/bin/python benchmarks/quality_flatfield.py              # print the tables
    .venv/bin/python benchmarks/quality_flatfield.py --record     # also update benchmarks/README.md
    .venv/bin/python benchmarks/quality_flatfield.py --quick      # 1 seed, smaller frames
    .venv/bin/python benchmarks/quality_flatfield.py --speed      # only the speed section
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from astro_assets.samples.solar import SolarVideoParams, SyntheticSolarVideo
from astro_assets.science.flatfield import metrics
from astro_assets.science.flatfield.drift import drift_verdict, estimate_drift
from astro_assets.science.flatfield.dust import (
    DustDetectionParams,
    MaskExpansionParams,
    detect_dust,
    expand_mask,
)
from astro_assets.science.flatfield.flatfield import FlatParams, synthesize_flat
from astro_assets.science.flatfield.inpaint import (
    InpaintParams,
    fill_across_line_defects,
    inpaint,
    inpaint_guided,
    median_line_gains,
)
from astro_assets.science.flatfield.matching import match_histogram
from astro_assets.science.flatfield.median import temporal_median
from astro_assets.science.flatfield.motion import (
    MotionTestParams,
    inpainting_guide,
    sensor_line_gains,
    separate_sensor_fixed,
)
from astro_assets.science.flatfield.quantized import interpolated_median
from astro_assets.science.flatfield.transparency import screen_frames

README = Path(__file__).with_name("README.md")
QUALITY_HEADING = "## Flat-field quality"
SPEED_HEADING = "## Flat-field speed"

DRIFT_FRACTION = 0.16
"""Drift over a drifting video as a fraction of the frame width (82 px at 512 px)."""

# name: (overrides, drifting?) -- n_sunspots=0 unless the case is about sunspots, so that the
# dust scores are not mixed with the (separately reported) sunspot false positives.
CASES: dict[str, dict] = {
    "f30 discs, drifting": {"focal_ratio": 30.0, "n_sunspots": 0, "drift": True},
    "f30 discs, tracked": {"focal_ratio": 30.0, "n_sunspots": 0, "drift": False},
    "f10 donuts, drifting": {"focal_ratio": 10.0, "n_sunspots": 0, "drift": True},
    "f10 donuts, tracked": {"focal_ratio": 10.0, "n_sunspots": 0, "drift": False},
    "f60 spots, drifting": {"focal_ratio": 60.0, "n_sunspots": 0, "drift": True},
    "f60 spots, tracked": {"focal_ratio": 60.0, "n_sunspots": 0, "drift": False},
    "f30 discs + sunspots, drifting": {"focal_ratio": 30.0, "n_sunspots": 3, "drift": True},
    "f30 discs + sunspots, tracked": {"focal_ratio": 30.0, "n_sunspots": 3, "drift": False},
    "dust-free, drifting": {"dust": (), "n_sunspots": 0, "drift": True},
    "dust-free, tracked": {"dust": (), "n_sunspots": 0, "drift": False},
    "dust-free + sunspots, drifting": {"dust": (), "n_sunspots": 2, "drift": True},
    "dust-free + sunspots, tracked": {"dust": (), "n_sunspots": 2, "drift": False},
    "planet f60, drifting": {"target": "planet", "focal_ratio": 60.0, "drift": True},
    "small Sun f30, drifting": {
        "disk_radius_frac": 0.35,
        "focal_ratio": 30.0,
        "n_sunspots": 0,
        "drift": True,
    },
}


def video_params(case: dict, *, width: int, height: int, n_frames: int, seed: int):
    overrides = dict(case)
    drifting = overrides.pop("drift")
    return SolarVideoParams(
        width=width,
        height=height,
        n_frames=n_frames,
        drift_px=round(DRIFT_FRACTION * width) if drifting else 0.0,
        jitter_px=0.8 if drifting else 0.3,
        seed=seed,
        **overrides,
    )


def feature_support(truth, shape) -> np.ndarray:
    """Pixels within 1.2 penumbra radii of a sunspot, at the median position of the scene."""
    yy, xx = np.indices(shape)
    dy, dx = np.median(truth.shifts, axis=0)
    support = np.zeros(shape, dtype=bool)
    for spot in truth.sunspots:
        radius = 1.2 * spot.penumbra_radius_px
        support |= np.hypot(yy - (spot.y + dy), xx - (spot.x + dx)) <= radius
    return support


def classical_flat(
    frames: np.ndarray,
    black_level: float,
    *,
    interpolate_levels: bool = True,
    line_defects: str = "ratio",
    motion: MotionTestParams | None = None,
) -> dict:
    """The classical pipeline on (n, h, w) frames with a known black level: the eye's
    candidates, the core after the motion test, the expanded mask, the flat (``FlatResult``),
    the motion result, the drift and the timings of its steps. As ``ser_median`` and
    ``dust_mask`` do, the median leaves out frames without signal, the drift is sampled from the
    frames it kept, and the median of 8-bit frames is interpolated within its level, unless
    ``interpolate_levels`` is False; ``line_defects`` is the ``inpainted`` config's,
    ``motion`` the ``dust_mask`` config's motion test (its defaults when None)."""
    timings = {}
    start = time.perf_counter()
    kept = screen_frames(frames).kept
    median = temporal_median(frames, frame_indices=kept)
    if interpolate_levels and frames.dtype.itemsize == 1:
        median = interpolated_median(frames, median, frame_indices=kept)
    timings["median"] = time.perf_counter() - start

    start, start_cpu = time.perf_counter(), time.process_time()
    detection = detect_dust(median, DustDetectionParams())
    detect_s, detect_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    drift = estimate_drift(frames, exclude=detection.core, candidates=kept)
    start = time.perf_counter()
    separated = separate_sensor_fixed(
        detection.core,
        median,
        [frames[i] for i in drift.frames_used],
        drift.shifts,
        params=motion or MotionTestParams(),
        registered=drift.registered,
    )
    timings["motion"] = time.perf_counter() - start
    core = separated.core
    start, start_cpu = time.perf_counter(), time.process_time()
    mask = expand_mask(core, MaskExpansionParams())
    if mask.any():
        guide = inpainting_guide(separated, mask, median)
        gains = None
        if line_defects == "ratio" and separated.prediction is not None:
            gains = sensor_line_gains(separated.prediction, mask)
        elif line_defects == "median":
            gains = median_line_gains(median, mask)
        inpainted = fill_across_line_defects(
            median,
            mask,
            lambda source: inpaint_guided(
                source, mask, guide.image, InpaintParams(), black_level=separated.black_level
            ),
            gains,
        )
    else:
        inpainted = median.astype(np.float32)
    timings["detect_inpaint"] = detect_s + time.perf_counter() - start
    timings["detect_inpaint_cpu"] = detect_cpu + time.process_time() - start_cpu
    matched = match_histogram(inpainted, median, mask == 0)
    flat = synthesize_flat(
        median, matched, mask, FlatParams(black_level_mode="value", black_level=black_level)
    )
    return {
        "candidates": detection.core,
        "core": core,
        "mask": mask,
        "flat": flat,
        "separated": separated,
        "drift": drift,
        "timings": timings,
    }


def run_case(params: SolarVideoParams) -> dict:
    video = SyntheticSolarVideo(params)
    truth = video.truth
    frames = np.stack([video.frame(i) for i in range(params.n_frames)])
    outcome = classical_flat(frames, truth.black_level_adu)
    core, mask, flat = outcome["core"], outcome["mask"], outcome["flat"]
    separated, drift, timings = outcome["separated"], outcome["drift"], outcome["timings"]
    areas = np.bincount(ndimage.label(core)[0].ravel())[1:]
    diameters = [2.0 * np.sqrt(area / np.pi) for area in areas]
    ok, _ = drift_verdict(
        drift.total_px, diameters, registered=drift.registered, closure_px=drift.closure_px
    )

    # Dust over the sky or off the disc blocks no light: no flat can be measured there.
    lit = truth.scene > 0.05 * np.percentile(truth.scene, 99)
    support = truth.dust_support() & lit
    transmission = np.where(lit, truth.transmission, np.float32(1.0))
    scores = metrics.mask_scores(core, support)
    errors = metrics.flat_errors(flat.flat, transmission, support)
    found = metrics.flat_errors(flat.flat, transmission, support & core)
    false_pos = metrics.false_positive_area(core, support, feature_support(truth, support.shape))
    return {
        "has_dust": bool(support.any()),
        "iou": scores["iou"],
        "precision": scores["precision"],
        "recall": scores["recall"],
        "dwr": metrics.deficit_weighted_recall(core, transmission),
        "flat_rms": errors["rms"],
        "flat_max": errors["max_abs"],
        "found_rms": found["rms"],
        "unity": metrics.unity_outside(flat.flat, mask),
        "fp_fraction": false_pos["fraction"],
        "fp_on_features": false_pos["on_features_px"] / max(false_pos["px"], 1.0),
        "core": float(np.mean(core)),
        "dropped": sum(not verdict.kept for verdict in separated.verdicts),
        "added": len(separated.new_shadows),
        "motion_seconds": timings["motion"],
        "masked": float(np.mean(mask > 0)),
        "drift_px": drift.total_px,
        "drift_ok": ok,
        "seconds": timings["detect_inpaint"],
        "cpu_seconds": timings["detect_inpaint_cpu"],
    }


def summarize(rows: list[dict]) -> dict:
    keys = rows[0].keys()
    out = {}
    for key in keys:
        values = [row[key] for row in rows]
        if isinstance(values[0], bool):
            out[key] = sum(values) / len(values)
        else:
            out[key] = statistics.fmean(values)
    return out


def quality_table(results: dict[str, dict], seeds: list[int], shape) -> str:
    header = (
        "| case | IoU | precision | recall | deficit-weighted recall | flat rms in dust | "
        "flat max in dust | flat rms in detected dust | F == 1 outside mask | "
        "false-positive area | core | dropped as moving | new from ratio | masked (expanded) | "
        "drift px | "
        "drift verdict ok | "
        "detect + inpaint s (CPU s) | motion test s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for name, s in results.items():
        dust_cols = (
            f"{s['iou']:.2f} | {s['precision']:.2f} | {s['recall']:.2f} | {s['dwr']:.2f} | "
            f"{100 * s['flat_rms']:.2f} % | {100 * s['flat_max']:.1f} % | "
            f"{100 * s['found_rms']:.2f} %"
            if s["has_dust"]
            else "- | - | - | - | - | - | -"
        )
        lines.append(
            f"| {name} | {dust_cols} | {s['unity']:.4f} | {100 * s['fp_fraction']:.3f} % | "
            f"{100 * s['core']:.3f} % | {s['dropped']:.1f} | {s['added']:.1f} | "
            f"{100 * s['masked']:.2f} % | "
            f"{s['drift_px']:.0f} | "
            f"{s['drift_ok']:.0%} | {s['seconds']:.2f} ({s['cpu_seconds']:.2f}) | "
            f"{s['motion_seconds']:.3f} |"
        )
    intro = (
        f"Synthetic videos ({shape[1]}x{shape[0]} px, {shape[2]} frames, seeds {seeds}; "
        "`astro_assets.samples.solar`), classical pipeline with default parameters, mean over "
        "seeds. Scores are against the true dust support (1 - T > 0.005, on pixels that receive "
        "light: dust over the sky hides nothing; donut holes are not in the support, so a filled "
        "donut costs some precision) and the true transmission T. Core: the binary detection "
        "after the motion test and the ratio search (`science.flatfield.motion`: candidates "
        "whose deficit is not "
        "found again in the ratio of the median to its dust-free prediction from 32 registered "
        "frames moved with the scene and are dropped; mean count per video in 'dropped as "
        "moving'); shadows too faint for the median are searched in that ratio and added "
        "('new from ratio': mean count per video of those the median's candidates did not "
        "already cover); "
        "masked (expanded): pixels with mask > 0 after the 10 px dilation and the feather, the "
        "support the flat is computed on (one small false detection alone covers about 0.7 % of "
        "this frame). Drifting "
        f"videos drift by {DRIFT_FRACTION:.0%} of the frame width with 0.8 px jitter; tracked "
        "ones have 0.3 px jitter only. Timings: wall clock and CPU seconds of detection, mask "
        "expansion and inpainting (without the drift measurement), and wall clock of the "
        "motion test with the ratio search, on a machine shared with other work.\n\n"
    )
    return intro + header + "\n".join(lines) + "\n\n" + target_check(results)


def target_check(results: dict[str, dict]) -> str:
    """Targets of the classical detector, each marked met or missed from this run."""
    checks = []
    for name, s in results.items():
        if "drifting" in name and s["has_dust"]:
            checks.append((f"{name}: deficit-weighted recall >= 0.85", s["dwr"] >= 0.85))
            checks.append((f"{name}: precision >= 0.8", s["precision"] >= 0.8))
            checks.append((f"{name}: flat rms in dust <= 2 %", s["flat_rms"] <= 0.02))
        if name.startswith("dust-free") and "sunspots" not in name:
            checks.append(
                (
                    f"{name}: masked (expanded mask) <= 0.1 % of the frame "
                    f"(core {100 * s['core']:.3f} %, expanded {100 * s['masked']:.2f} %)",
                    s["masked"] <= 0.001,
                )
            )
    rows = "\n".join(f"- {'met' if ok else 'MISSED'}: {text}" for text, ok in checks)
    return "Targets (computed from the table above):\n\n" + rows + "\n\n" + LIMITS


LIMITS = """What limits the classical detector on these videos:

- Threads narrower than the smallest filter are cut off every outline (before, only outlines
  whose window had grown). On the small Sun (seed 2) a 42 % deep shadow's outline ran into a
  4-7 % residue of the background fit below it and was declined; the ratio search then found
  the shadow alone. Cut of its thin threads, the shape passes with a tail of 211 px off the
  dust: precision 1.00 -> 0.92, false-positive area 0.001 -> 0.044 %, IoU 0.84 -> 0.78, flat
  rms in dust unchanged (0.68 %). The same cut finds a 10 % deep shadow on an 8-bit Bayer
  video that its threads hid (README, the classical eye). The other 41 videos' detections
  differ by at most 6 px, all off the dust.
- Candidates confirmed frame by frame (2026-11-25, `motion._judge`): on this grid only the
  small Sun moved. The 211 px tail above is no longer kept: precision 0.92 -> 1.00,
  false-positive area 0.045 -> 0.001 %, IoU 0.79 -> 0.84; the flat rms in dust is unchanged
  (0.67 %). Every other row is the same to the digit as the code before; the rows of the f/10
  donuts drifting (false-positive area 0.575 -> 0.590 %) and of the tracked Sun with sunspots
  (2.645 -> 3.083 %) had been recorded before an earlier change and are updated here.
- Sunspots, and with drift their smeared remnants, stay in the median and look like dust. The
  motion test judges each candidate in a prediction whose scene estimate leaves the
  candidate's own pixels out, so a shadow fixed on the sensor cannot darken it while a scene
  feature is still seen through other pixels by the frames that put it elsewhere. The
  remnants of the sunspots here (47-93 px long against 83 px of drift) are dropped as moving,
  and so are the remnants the ratio search finds (the first scene estimate keeps a sunspot
  longer than the drift in part; one such remnant was 11 % deep in the median and 0.9 % in
  the ratio). A shadow inside a dropped remnant is added back from the ratio when the ratio
  shows at least half its deficit in the median. False-positive area on the drifting videos
  with sunspots: 0.004 % with dust, 0.024 % dust-free (2.28 % and 1.94 % when such
  candidates were kept as undecided; 0.19 % dust-free, 1.52 % of the frame masked, before
  the ratio search's significance test). That test drops two residues of the prediction
  next to the sunspots' trails, 0.5-0.6 % deep in the ratio but only 1.8-2.3 times the
  ratio's fluctuations at their scale around them (`min_ratio_significance`: 3; every true
  shadow the ratio search finds on this grid stands at 4.8 or more, the faintest a 1.3 %
  deep f/10 donut). A candidate at the frame's edge with no deficit against its
  surroundings was then left on the dust-free ones, kept as undecided (0.26 % of the frame
  masked): a candidate shallower than `min_ratio_depth` (0.5 %) both in the median and in
  the ratio is now dropped as too shallow to correct (its deficits: -0.3 % and 0.2 %), and
  nothing is masked. On tracked videos nothing moved: every sunspot stays.
- Vignetting: frames are compared at different sensor pixels, so without the sensor's smooth
  response the prediction carries the vignetting of the pixels it was taken from, and along
  the frame's edges, where only the frames displaced one way see a part of the scene, the
  ratio keeps a deficit. Each frame is divided by the response measured from the frames
  (`MotionTestParams.response_degree`, `science.flatfield.response`) before they are
  compared: the flat rms in dust goes from 0.55 to 0.46 % (f/30), 0.75 to 0.60 % (f/10),
  0.69 to 0.63 % (f/60) and 0.69 to 0.53 % (with sunspots) at this grid's 10 % vignetting;
  outside the grid, on f/30 discs vignetted by 40 % at the corners, a shadow 8 px from the
  frame's bottom edge had merged with the edge's 4-8 % deficit in the ratio (precision 0.84,
  flat rms 1.79 %; 1.00 and 0.47 % with the response). On the planet it goes from 1.96 to
  2.03 %, and as much with the true vignetting divided out (2.02 %): the response is right
  there, and the uncorrected vignetting had offset part of the prediction's error at the
  limb (next item).
- Flat error from the curvature of the field: a harmonic membrane is the mean of its
  boundary, so it sags under the limb-darkened disc (whose intensity falls faster and faster
  toward the limb) by about |laplacian| R^2 / 4, and at the frame's edge it can only assume a
  zero slope. Inpainting solves for the departure from a quadratic fitted to the known pixels
  around each region (`InpaintParams.trend`). With the plain membrane the flat rms in dust was
  1.25 % (f/30), 1.63 % (f/10), 1.11 % (f/60) and 2.36 % (f/30 with sunspots, where one shadow
  3 px from the frame's edge had 6.8 % rms; 1.5 % now). Tried before it: the second normal
  derivative set to zero at the frame's edge (that shadow 2.5 %, but f/30 1.55 % through a
  shadow whose edge profile curves), a flux measured along the edge (6.6 %: the membrane
  still sags), biharmonic inpainting of the regions at the edge (3.2 %, f/30 1.83 %).
- On the planet (one video in three), two large candidates on the limb, 40-46 px across, had
  no deficit against surroundings that crossed the limb and were kept as undecided (precision
  0.65). Measured against their surroundings on the target only, they are dropped as moving
  (precision 0.95).
- Faint, large f/10 donuts (1-3 % deep, 40-70 px) sit at the level of the texture left in the
  median (matched-filter significance 5-10 sigma, that of the strongest texture blobs). In the
  ratio of the median to its dust-free prediction the texture cancels, and the ratio search
  finds most of them. A donut as large as most of the drift is partly in the first scene
  estimate, so it looks shallower and smaller in the ratio (1.1-1.3 % instead of 2.4 % deep
  for a 70 px donut); the outlines are therefore drawn again in a ratio whose scene estimate
  leaves the shadows' pixels out (`max_outline_growth`): deficit-weighted recall 0.81 -> 0.88
  (flat rms in dust 1.79 -> 1.63 % with the plain membrane). That second scene estimate is
  also made from the frames divided by the sensor's gain the first ratio measures
  (`gain_iterations`), and shadows its ratio shows apart from those found are added: on one
  seed a 61 px donut 1.1 % deep, which the first ratio showed at 0.5 %, is found (0.82 of
  it in the core, flat rms on it 0.95 -> 0.53 %); over the three seeds recall 0.84 -> 0.92,
  deficit-weighted recall 0.89 -> 0.93, flat rms in dust 0.57 -> 0.51 %, precision
  0.89 -> 0.88 and false-positive area 0.39 -> 0.47 % (the donuts' holes and rims); no
  other row's quality moved by more than 0.01. Still missed: the faint outer rims. Both
  medians of the ratio are taken over the same
  frames at every pixel; with the full median over the prediction the ratio was biased by up
  to 13 % near the edges (where only some frames see a part of the scene others saw too). The
  solidity prior is taken on the outline closed at a tenth of the radius: a faint donut's
  outline is ragged at the noise level. On tracked videos nothing moved and most are missed.
- Flat error inside faint donuts: a continuation from the surroundings leaves the texture
  hidden under the shadow in the flat, as deep as the shadow. The regions holding only
  shadows found in the ratio are inpainted along the dust-free prediction
  (`science.flatfield.inpaint.inpaint_guided`), carried from the 32 frames it was taken over
  to all the median's frames (`predicted * median / observed`: the dust cancels, and near the
  frame's edges, where only some frames see a part of the scene, the prediction then
  describes the median it guides). Every other region is inpainted along it too unless a
  continuation from the surroundings misses a held-out ring of 5 clean pixels around it by
  less (`science.flatfield.motion.inpainting_guide`). Against continuing those regions
  along the plain prediction, the flat rms in dust goes from 0.87 to 0.55 % (f/30), 1.13 to
  0.75 % (f/10), 0.91 to 0.69 % (f/60), 1.08 to 0.69 % (with sunspots) and 9.77 to 1.96 %
  (planet); the two held-out fills add 0.1-0.2 s to detection and inpainting on these
  0.2 MP frames. With the prediction not
  carried to the median's frames, guiding every region was worse than continuing on the Sun
  (1.29, 1.48, 1.37 and 1.98 %): near the edges the prediction was biased against the median
  by up to 13 %, and a limb there lay elsewhere in it.
- A texture blob of the quiet disc that reached the seed level in the median (the dust-free
  drifting row, one video in three) is dropped by the motion test: its deficit is not in the
  ratio.
- Dust on a planet's limb: a near-opaque shadow on the limb is, in the median, a dark notch
  continuous with the sky, and neither the detector nor the ratio search (whose surroundings
  must stay on the target) finds it. Shadows at least `min_deep_depth` (half the light) deep
  in the ratio are therefore also searched wherever the prediction is above a tenth of its
  99th percentile, across the limb and over candidates dropped as moving; the prediction's
  own residues at a limb reach 19-26 %. On the planet, deficit-weighted recall 0.73 -> 0.98
  and flat rms over all its dust 305 % -> 9.8 % (the two missed limb shadows had F = 1 where
  T = 0.05); the other cases are unchanged. A continuation across the limb from the target's
  side cannot follow the limb's fall to the sky (the held-out ring around a limb shadow is
  missed by 100-350 times more than along the prediction), so these regions are inpainted
  along the prediction: 9.77 -> 1.96 % (2.03 % with the response above, 1.46 % with the
  guide's filter, next item). What is left is mostly pixels on the faint edge of the limb:
  where a near-opaque shadow leaves too little light to measure, the flat is forced to 1.0
  there, against T = 0.05. A ratio above 1.5 (dust only blocks light) is forced to 1.0 and
  counted, so a limb never gives a wild flat.
- The guide's sharpness: the prediction is the scene shifted twice by bilinear interpolation
  (into the scene's coordinates and back), so it is blurred more than the median, and
  sub-pixel errors of the measured drift displace it. Under a shadow 84 % deep across the
  planet's limb it fell short of the scene by up to 11 % on the limb's steepest pixels
  (3.6 % rms over that shadow, the largest share of the case's error). The guide is now
  filtered by the 5x5 kernel that maps it best onto the median over the clean pixels, fitted
  by least squares away from the mask and the held-out rings (`guide_filter_px`,
  `science.flatfield.motion.filtered_to_match`): flat rms in dust 2.03 -> 1.46 % (planet),
  1.01 -> 0.68 % (small Sun), 0.46 -> 0.42 % (f/30), 0.60 -> 0.57 % (f/10), 0.63 -> 0.58 %
  (f/60), 0.53 -> 0.49 % (with sunspots); a 3x3 kernel gave 1.56 and 0.79 % on the first two,
  and its weights show what it corrects: it sharpens on the planet (centre 0.94, edge
  neighbours about 0.2, corners about -0.18, with the asymmetry of a sub-pixel shift) and
  smooths slightly on the Sun's granulation, where the prediction's noise dominates. Tried
  first: Keys cubic interpolation in both shifts (with bilinear where a cubic tap is
  unknown): planet 2.15 %, and the sharper but noisier prediction cost the ratio
  search the faint f/10 donuts (deficit-weighted recall 0.89 -> 0.75). The same filter
  applied to the prediction the ratio is searched in changed no score but the planet's
  precision (0.99 -> 0.96), and is not used.
- Dust on the limb of a small solar disc (the small Sun case: a radius of 134 px, 0.35 of the
  frame's height, instead of 288 px): shadows 20-27 % deep that sit across the limb fall between
  the detector's search of the ratio, which keeps only shadows whose surroundings lie on the
  target, and the search for shadows at least half the light deep. The ratio has residues of its
  own along a limb: within 8 px of it, away from the dust, the deficit's 99.9th percentile is
  11-12 % on the small Sun and 17-22 % on the planet (maxima 12-16 % and 19-26 %), with 0.8 or 2
  px of jitter, against 1.5-2.5 % inside the disc. Those residues are thin arcs (no disc of 2 px
  radius fits in them at 8-20 % depth), and dust is round, so shadows at least `min_limb_depth`
  (10 %) deep are also searched across the limb where a disc of half the detector's smallest
  radius (2.5 px) fits inside the part at that depth: deficit-weighted recall 0.73 -> 0.98, flat
  rms in dust 6.85 -> 1.03 % (one video in three had missed two such shadows: recall 0.21, flat
  rms 19 %). No other case changed; on dust-free drifting videos of a planet (radius 0.2 and 0.3
  of the frame's height) and of the small Sun, with 2 px of jitter, nothing was added at depths
  of 8, 10, 12 or 20 % and discs of 2-3 px radius. Guiding the inpainting by the prediction had
  already taken this case's flat rms from 2.9-21.7 % to 0.6-19.0 %.
- The detector outlines each candidate in a window around its strongest filter response; the
  window now grows until the shape no longer reaches its border (threads of noise narrower than
  the smallest filter cut off once it grew), for shadows larger than that filter's reach (see
  `quality_flatfield_beyond.py`). Here the planet's recall went 0.81 -> 0.79 (a thread along
  a grown outline is cut), its flat rms in dust 1.46 -> 1.45 % and maximum 7.7 -> 7.5 %; in
  the other cases no score moved by more than 0.005 % of the frame in false-positive area or
  0.1 % in a maximum, and 0.4 more candidates per video were dropped as moving with sunspots.
- Inpainting now fills a region within its own diameter of the fitted limb in the median's
  ratio to the target's radial profile (see `quality_flatfield_beyond.py`: a shadow across the
  limb in a corner of the frame). Here only the tracked videos moved, by at most 0.03 % in flat
  rms in dust (f/30 with sunspots 2.49 -> 2.52 %, its maximum 12.7 -> 12.6 %; f/30 2.27 ->
  2.28 %; f/60 2.09 -> 2.10 %); inpainting a 2 MP median takes 0.1 s longer (the limb fit and
  the profile).
- The sensor's response (vignetting) is now held within the range it takes over the pixels it
  was measured on: over the sky around a planet in phase its polynomial extrapolated to 0.15
  in a frame's corner and made the sky look lit to the ratio search (see
  `quality_flatfield_beyond.py`). Here only the planet's maximum flat error in dust moved,
  7.5 -> 7.6 %.
- The dust-free prediction now scales only the frames' light above the pedestal (the sensor's
  response and the carry from the 32 frames it is taken over to all of them; see
  `quality_flatfield_beyond.py`: a near-opaque shadow on a planet's limb). Here the planet's
  flat rms in dust went 1.45 -> 1.48 % (in the detected dust 1.58 -> 1.61 %) and its maximum
  7.6 -> 7.8 %, f/60's maximum 2.1 -> 2.3 %, f/30 with sunspots 0.49 -> 0.50 % in the detected
  dust; f/30's recall 0.89 -> 0.90 and the small Sun's IoU 0.84 -> 0.85; no other score moved
  beyond rounding.
- With `keep_undecided: false` (`MotionTestParams`) only the candidates the video shows fixed
  on the sensor stay. Over this grid with it (same seeds), every drifting row is the same as
  above to the last digit. On the tracked rows nothing is masked: the dust-free video with
  sunspots goes from 1.81 % of the frame in false positives (6.39 % masked) to none, and the
  tracked videos with dust lose all of it (recall 0). By default undecided candidates stay,
  and the check `dust_mask_candidates_confirmed` warns about them.
- A deep or wide shadow of the ratio must now lie at least half its depth below the plane
  through its surroundings, and the sensor's response is held within the range it takes up to
  a sampling step from the pixels it was measured on (see `quality_flatfield_beyond.py`: strong
  vignetting). No score of this grid moved.
- The detector's first pass now also leaves out of the second background fit the regions
  whose filters as wide as the background reach 4 sigma and 0.8 of the region's peak, with
  their dark rim (see `quality_flatfield_beyond.py`: large shallow shadows below the seed
  level). Here the small Sun's recall went 0.85 -> 0.84 (on one video, after the motion test
  and the ratio search, one shadow's outline holds 37 px fewer, while the detector's own core
  differs by 1 px: deficit-weighted recall 0.993 -> 0.990, flat rms in dust 0.53 % both),
  f/30's maximum flat error in dust 1.8 -> 1.7 %, and on one f/10 video one
  more candidate is dropped as moving; no other score moved. The speed section was recorded
  under load: with the old and new code alternated on the same 2 MP median (three calls
  each, twice), the detector took 3.83-5.06 s against 4.39-6.27 s for the code before.
- A local maximum of the detector's response within two filter radii of a shape already found
  was skipped as that shape's side peak; it is now outlined on its own when its filter does not
  reach the shape and a trough separates them (`science.flatfield.dust`). On the grid's 42
  videos the detector's core changed on one (f/10 donuts drifting, seed 2: 1,052 px more, all
  but 28 within 2 px of the true dust, most of them a donut's hole, which the score's support
  leaves out). That row, re-run alone: IoU 0.82 -> 0.83, recall 0.92 -> 0.93,
  deficit-weighted recall 0.93 -> 0.95, precision 0.88 both, false-positive area 0.468 ->
  0.469 %, flat rms in dust 0.51 % both. Its timing columns are from that run; the other rows
  are those of the run before. Without the condition on the filter's reach, a 40 px filter's
  answer to the frame's edge below a shadow of a tracked f/30 video became a 1,654 px
  candidate (precision 1.00 -> 0.80). The search in the ratio keeps skipping such maxima: with
  the rule there too, an egg-crate residue in the ratio (`test_motion`) gave 4 dips of 3.1-4.4
  times the ratio's fluctuations where it meets quiet ratio, which the significance test keeps.
- The noise of each filter response is measured in cells: tiles split into bands of distance
  to the unusable pixels and, now, to the frame's border. Before, the distance ran to the
  unusable pixels only; on a frame the target fills that is the distance to the pixel above
  the top-left corner, so the bands were arcs around that corner, and the band along the
  frame's edge was judged against the noise of the tile's interior (a false region 14 x 11 px
  on the right edge of a dust-free Sun with sensor defects, `## Flat-field quality beyond the
  grid`). A cell of the two bands one radius wide with too few samples takes the larger of
  its tile's spread and its band's spread over the frame. The outlines the ratio search
  draws are cut of their threads too: with quieter interior cells a 28 px shadow's outline
  ran along the 1-2 px edge of a scene bar's remnant in the ratio to the remnant and was
  declined as not round (`test_motion`). On a surface filling a 96 x 128 frame whose outer
  14 px carry 10 times the texture of the rest, false regions over 8 seeds 52 -> 5. On this
  grid, before -> after: f10 donuts drifting precision 0.88 -> 0.87, recall 0.93 -> 0.97,
  deficit-weighted recall 0.95 -> 0.97, flat rms in dust 0.51 -> 0.50 %, false-positive
  area 0.469 -> 0.561 % (the donuts' rims and holes); f60 spots drifting precision 0.95 ->
  1.00, recall 0.85 -> 0.81 (deficit-weighted 0.99 both; flat rms in dust 0.58 % both),
  false-positive area 0.007 -> 0.000 %, tracked precision 0.96 -> 1.00, recall 0.83 ->
  0.79; planet recall 0.79 -> 0.81 (flat rms in dust 1.48 % both); f30 discs with sunspots,
  tracked, recall 0.79 -> 0.78; candidates dropped as moving per video moved by up to 0.6.
  The other rows' quality columns are unchanged.
- The sensor's response is sampled wherever a pair of frames is lit (its own dark fraction,
  0.05 of the bright level, leaves out the sky and umbrae), no longer only above the
  detector's target level (0.4). A corner vignetted below that level in one frame of a pair
  was left unmeasured and the response held at its value at the samples' edge; the ratio
  search, which looks wherever the prediction reaches the target level, took the too bright
  prediction there for a shadow (strong vignetting, `## Flat-field quality beyond the grid`).
  On this grid, whose vignetting is 10 %, before -> after: planet IoU 0.81 -> 0.79,
  precision 0.99 -> 0.98, false-positive area 0.001 -> 0.004 %, flat rms in dust 1.48 ->
  1.47 %; small Sun IoU 0.78 -> 0.79, recall 0.84 -> 0.85, false-positive area 0.044 ->
  0.045 %; f10 donuts drifting IoU 0.85 -> 0.84, false-positive area 0.561 -> 0.565 %. The
  other rows' quality columns are unchanged.
- The eye's local noise of each filter response is sigma-clipped at 3 (the ratio search
  keeps it unclipped): at the matched radius a shadow's own response covers about a third of
  the cells around it and raised their spread. Before -> after on this grid: planet IoU 0.79
  -> 0.76, precision 0.98 -> 0.97, recall 0.81 -> 0.78 (flat rms in dust 1.47 % both); f10
  donuts drifting precision 0.87 -> 0.86, false-positive area 0.565 -> 0.575 %; candidates
  dropped as moving per video up by 0.4-1.0 in four rows. The other rows' quality columns
  are unchanged. The timing columns of this record ran beside the beyond-grid run (load
  3-4) and are not comparable with the earlier ones; the speed table below is the earlier
  one. Measured alone with the clipping in both passes, detect_dust took 2.28 s best on the
  2 MP median (2.36 s before). Clipping in the ratio search as well (with its outline
  windows let grow) was tried and not kept: f10 donuts drifting recall 0.97 -> 0.87,
  deficit-weighted recall 0.97 -> 0.91.
- Each frame's transparency is measured and divided out before frames are compared
  (`science.flatfield.transparency`; clouds, `## Flat-field quality beyond the grid`). On
  these clear videos the gains measured lie within 0.1-0.2 % of 1 and are taken as 1
  (`GAIN_TOLERANCE`, 0.3 %): every quality column of the grid is as before. Divided out,
  those gains had moved the f10 donuts' precision 0.86 -> 0.87 and recall 0.97 -> 0.96 and
  the planet's recall 0.78 -> 0.77.
- Guided regions are filled in the ratio above the pedestal where the prediction is lit, on
  a monochrome median as on a colour plane (`inpaint.inpaint_guided`'s `black_level`, the
  recorded `prediction_black_level`): on the sky beside a limb a few ADU of the prediction's
  error are tens of per cent of the plain ratio. Planet flat rms in dust 1.47 -> 1.43 %
  (in the detected dust 1.61 -> 1.57 %, maximum 7.8 -> 7.4 %), small Sun 0.68 -> 0.67 %
  (maximum 3.9 -> 3.7 %); the Sun's rows, whose pedestal is 0, are unchanged to the digit.
  Those two rows' timing columns are from that run.
- Candidates the drift cannot decide are judged by their outlines as the seeing shakes the
  scene (`outline_test`, `## Tracked videos: the outline test`). On the tracked rows, before
  -> after: f30 discs with sunspots precision 0.12 -> 0.73, false-positive area 3.083 ->
  0.576 %, core 3.51 -> 1.00 %, masked 13.86 -> 5.49 % (recall 0.78, deficit-weighted recall
  0.96 both; flat rms in dust 2.51 -> 2.53 %); what is left is one video's shadow merged with
  a sunspot into one candidate, kept undecided whole. Dust-free with sunspots: false-positive
  area 1.806 % -> 0, masked 6.39 % -> 0. The tracked rows without sunspots and every
  drifting row are the same to the digit. The bullet on `keep_undecided: false` above was
  measured before this: with it now the tracked videos keep the dust the outlines confirm.
- Outside the mask the flat is exactly 1.0 in every case.
"""


SPEED_REPEATS = 3

SPEED_FINDINGS = """\
Findings (2026-11-23). The target of at most 5 s for detection and inpainting on a 2 MP median
was missed that morning by the code before this change: best 5.99 s, median 6.02 s in the
table above (detection 5.12 s); the biharmonic row, whose code did not change, read 0.92 s
then against 1.11 s in this table, so the machine was then faster than now. Three changes,
each giving the same mask, significance and regions to the bit (checked on four medians:
this one, a planet, f/10 donuts and a 96 x 72 frame; and the expanded mask on 40 random
cores of every parameter kind):

- `detect_dust`'s filter bank measures each response's noise (a robust spread over the image
  and one per cell, then the division) on a worker thread, in the order of the filters, while
  the main thread computes the next responses: about half of each filter's time was the
  noise, and the FFTs, the compiled passes and numpy's selection all release the GIL. The bank
  alone, measured in turns with the code before on this median (4 runs each): 1.38-1.66 s ->
  1.06-1.20 s with local noise, 0.85-1.23 s -> 0.74-1.21 s without.
- The background's block moments and its blend of the block fits run in two bands of rows,
  one per core (compiled passes that write disjoint rows); the noise of the deficit at each
  smoothing scale on two threads.
- `expand_mask` computes the feather only within its reach of the core (the dilation plus the
  distance at which the feather falls below its cutoff, 19 px by default), from the exact
  integer distance transform `detect_dust` already uses: 0.22 -> 0.035 s.

Measured in turns with the code before (a copy of its `dust.py`), on the same median, 7 runs
each of detection then expansion and inpainting: 5.83-8.92 s (median 6.55 s) -> 4.31-10.30 s
(median 5.48 s), the expansion and inpainting 1.04 -> 0.80 s in the median; in a quieter
moment, detection alone (5-6 runs each): median 4.93 -> 4.03 s and 5.35 -> 4.28 s. The table
taken just after had the whole step at 4.80 s best and 4.96 s in the median: the
target holds again, with little margin on this shared machine, whose speed varied by about
a third over the morning. Run again 50 minutes later at the end of the quality grid (the
biharmonic row 0.76 s): detection 3.70 s, the whole step 4.31 s best and 4.47 s in the
median. That grid, run with this code, is identical to `## Flat-field quality` in every
quality column of its 14 rows.

The worker thread holds at most two responses that wait for their noise: the detector's peak
grows from 7.7 to 8.3-8.6 float64 frames (`## Dust detector memory`), under the budget of 10
that `test_detect_dust_peak_memory_is_a_few_float64_frames` holds it to. Filtering two radii
at once on two threads saved as much time but held 11.7-13.4 frames, and was not kept.

Recorded again on 2026-11-23 with the frame-border noise bands and the response sampled
wherever the frames are lit (`## Flat-field quality`), at the end of the quality grid: 2.36 s
best for `detect_dust`, 2.77 s for the step. Recorded again that evening at the end of the
grid run for the frames' transparency (which neither the detector nor the inpainting runs):
the table above, 1.94 and 2.22 s, on a quieter machine.
"""


def _timed(step) -> tuple[float, float]:
    """Wall and CPU seconds of one call of ``step``."""
    start, start_cpu = time.perf_counter(), time.process_time()
    step()
    return time.perf_counter() - start, time.process_time() - start_cpu


def speed_section(width: int, height: int) -> str:
    """Each step ``SPEED_REPEATS`` times on the same median, in turns: the best run (what the
    code costs when the shared machine lets it run) and the median run."""
    params = SolarVideoParams(
        width=width, height=height, n_frames=1, focal_ratio=30.0, n_dust=6, drift_px=0.0, seed=3
    )
    median = SyntheticSolarVideo(params).frame(0).astype(np.float32)
    detect_dust(median[:256, :256])
    detection = detect_dust(median)
    mask = expand_mask(detection.core)
    steps = {
        "detect_dust": lambda: detect_dust(median),
        "expand_mask + harmonic inpaint": lambda: inpaint(median, expand_mask(detection.core)),
        "biharmonic inpaint (option)": lambda: inpaint(
            median, mask, InpaintParams(method="biharmonic")
        ),
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in steps}
    for _ in range(SPEED_REPEATS):
        for name, step in steps.items():
            runs[name].append(_timed(step))
    runs["detection + harmonic inpaint (target <= 5 s)"] = [
        (a[0] + b[0], a[1] + b[1])
        for a, b in zip(runs["detect_dust"], runs["expand_mask + harmonic inpaint"], strict=True)
    ]
    order = [
        "detect_dust",
        "expand_mask + harmonic inpaint",
        "detection + harmonic inpaint (target <= 5 s)",
        "biharmonic inpaint (option)",
    ]
    rows = []
    for name in order:
        best = min(runs[name])
        middle = sorted(runs[name])[len(runs[name]) // 2]
        rows.append(f"| {name} | {best[0]:.2f} | {middle[0]:.2f} | {best[1]:.2f} |")
    megapixels = width * height / 1e6
    load = os.getloadavg()[0]
    return (
        f"One {width}x{height} ({megapixels:.1f} MP) median, {len(detection.regions)} "
        f"shadows, {100 * np.mean(mask > 0):.1f} % of the frame masked; "
        f"{platform.machine()}, {os.cpu_count()} cores shared with other work (load average "
        f"{load:.1f} at the end), numpy {np.__version__}. Each step ran {SPEED_REPEATS} times in "
        "turns: the best and the median wall clock, and the CPU seconds of the best run, which "
        "add up the time of every core (the FFTs use all of them), so on an idle machine the "
        "wall clock is at most the CPU time.\n\n"
        "| step | best wall seconds | median wall seconds | CPU seconds (best run) |\n"
        "|---|---|---|---|\n" + "\n".join(rows) + "\n\n" + SPEED_FINDINGS
    )


def replace_section(text: str, heading: str, body: str) -> str:
    """``text`` with the section under ``heading`` (a line of its own) replaced by ``body``,
    or with the section added at the end; a mention of the heading inside a line is text."""
    block = f"{heading}\n\n{body}"
    found = re.search(f"^{re.escape(heading)}$", text, flags=re.MULTILINE)
    if found is None:
        return text.rstrip("\n") + "\n\n" + block
    start = found.start()
    next_heading = text.find("\n## ", start + len(heading))
    end = len(text) if next_heading < 0 else next_heading + 1
    return text[:start] + block + ("\n" if next_heading >= 0 else "") + text[end:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="update benchmarks/README.md")
    parser.add_argument("--quick", action="store_true", help="1 seed, 256x192 px, 24 frames")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--case", action="append", help="run only these cases (by name)")
    parser.add_argument("--speed", action="store_true", help="only the speed section")
    args = parser.parse_args()
    if args.speed:
        speed = speed_section(1920, 1080)
        print(speed)
        if args.record:
            README.write_text(replace_section(README.read_text(), SPEED_HEADING, speed))
        return
    width, height, n_frames = (256, 192, 24) if args.quick else (512, 384, 40)
    seeds = list(range(1, 2 if args.quick else args.seeds + 1))
    results = {}
    for name, case in CASES.items():
        if args.case and name not in args.case:
            continue
        rows = []
        for seed in seeds:
            params = video_params(case, width=width, height=height, n_frames=n_frames, seed=seed)
            rows.append(run_case(params))
        results[name] = summarize(rows)
        s = results[name]
        print(
            f"{name:34s} iou={s['iou']:.2f} prec={s['precision']:.2f} rec={s['recall']:.2f} "
            f"dwr={s['dwr']:.2f} rms={100 * s['flat_rms']:.2f}% max={100 * s['flat_max']:.1f}% "
            f"unity={s['unity']:.4f} fp={100 * s['fp_fraction']:.3f}% "
            f"core={100 * s['core']:.3f}% masked={100 * s['masked']:.2f}% "
            f"drift={s['drift_px']:.0f} t={s['seconds']:.2f}s cpu={s['cpu_seconds']:.2f}s",
            flush=True,
        )
    quality = quality_table(results, seeds, (height, width, n_frames))
    speed = speed_section(1920, 1080) if not args.case else ""
    print(quality)
    print(speed)
    if args.record:
        text = README.read_text() if README.exists() else "# Benchmarks\n"
        text = replace_section(text, QUALITY_HEADING, quality)
        if speed:
            text = replace_section(text, SPEED_HEADING, speed)
        README.write_text(text)


if __name__ == "__main__":
    main()
