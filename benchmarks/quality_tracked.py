"""Quality of the outline test on tracked videos: dust against sunspots when nothing drifts.

A tracked video's drift cannot tell a dust shadow from a sunspot; the seeing's shake can
(``MotionTestParams.outline_test``). Each synthetic Sun here (``astro_assets.samples.solar``)
is tracked (no drift) with three sunspots and dust of one focal ratio, shaken by ``jitter_px``
rms and bent by ``seeing_warp_px`` rms of differential seeing. The classical pipeline of
``quality_flatfield.py`` runs with and without the outline test; each candidate the motion test
judged is matched to the truth (dust when most of its pixels lie on the true dust support),
and the table gives the outline shares per kind, the verdicts, and the mask's scores.

    .venv/bin/python benchmarks/quality_tracked.py [--seeds 3] [--record]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from pathlib import Path

import numpy as np
from quality_flatfield import classical_flat, feature_support, replace_section
from scipy import ndimage

from astro_assets.samples.solar import SolarVideoParams, SyntheticSolarVideo
from astro_assets.science.flatfield import metrics
from astro_assets.science.flatfield.motion import MotionTestParams

README = Path(__file__).with_name("README.md")
HEADING = "## Tracked videos: the outline test"
SHAKES = ((0.3, 0.0), (1.0, 1.0), (2.5, 0.0))
"""(jitter_px, seeing_warp_px) of the videos."""
FOCAL_RATIOS = (10.0, 30.0, 60.0)
SHAPE = (288, 384)
N_FRAMES = 40


def run_video(jitter: float, warp: float, focal: float, seed: int, outline: bool) -> dict:
    params = SolarVideoParams(
        width=SHAPE[1],
        height=SHAPE[0],
        n_frames=N_FRAMES,
        drift_px=0.0,
        jitter_px=jitter,
        seeing_warp_px=warp,
        n_sunspots=3,
        focal_ratio=focal,
        seed=seed,
    )
    video = SyntheticSolarVideo(params)
    truth = video.truth
    frames = np.stack([video.frame(i) for i in range(N_FRAMES)])
    outcome = classical_flat(
        frames, truth.black_level_adu, motion=MotionTestParams(outline_test=outline)
    )
    lit = truth.scene > 0.05 * np.percentile(truth.scene, 99)
    support = truth.dust_support() & lit
    transmission = np.where(lit, truth.transmission, np.float32(1.0))
    core = outcome["core"]
    spots = feature_support(truth, support.shape)
    labels, _ = ndimage.label(outcome["candidates"])
    candidates = []
    for verdict in outcome["separated"].verdicts:
        region = labels == labels[verdict.inside_y, verdict.inside_x]
        candidates.append(
            {
                "dust": bool(support[region].mean() > 0.5),
                "sunspot": bool(spots[region].mean() > 0.5),
                "kept": verdict.kept,
                "undecided": verdict.undecided,
                "outline": verdict.outline_fixed,
                "outline_local": verdict.outline_fixed_local,
            }
        )
    scores = metrics.mask_scores(core, support)
    return {
        "candidates": candidates,
        "precision": scores["precision"],
        "dwr": metrics.deficit_weighted_recall(core, transmission),
        "flat_rms": metrics.flat_errors(outcome["flat"].flat, transmission, support)["rms"],
        "false_area": metrics.false_positive_area(core, support, spots)["fraction"],
        "masked": float(np.mean(outcome["mask"] > 0)),
    }


def _span(values: list[float]) -> str:
    finite = [v for v in values if np.isfinite(v)]
    unmeasured = len(values) - len(finite)
    text = f"{min(finite):.2f} to {max(finite):.2f}" if finite else "-"
    return text + (f" ({unmeasured} unmeasured)" if unmeasured else "")


def _counts(candidates: list[dict]) -> str:
    confirmed = sum(c["kept"] and not c["undecided"] for c in candidates)
    undecided = sum(c["undecided"] for c in candidates)
    return f"{confirmed} / {undecided} / {len(candidates) - confirmed - undecided}"


def _shares(candidates: list[dict]) -> str:
    return (
        f"{_span([c['outline'] for c in candidates])} "
        f"({_span([c['outline_local'] for c in candidates])})"
    )


def _mean(results: list[dict], key: str) -> float:
    values = [r[key] for r in results if np.isfinite(r[key])]
    return statistics.fmean(values) if values else float("nan")


def table(runs: dict[tuple, dict]) -> str:
    """One row per kind of video and outline setting, summed over seeds."""
    lines = [
        "| video | outline test | dust candidates: confirmed / undecided / dropped | "
        "sunspots: confirmed / undecided / dropped | dust outline_fixed (local) | "
        "sunspot outline_fixed (local) | precision | deficit-weighted recall | flat rms in dust "
        "| false-positive area | masked |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for (jitter, warp, focal, _seed, outline), result in runs.items():
        groups.setdefault((jitter, warp, focal, outline), []).append(result)
    for (jitter, warp, focal, outline), results in groups.items():
        every = [c for r in results for c in r["candidates"]]
        dust = [c for c in every if c["dust"]]
        spots = [c for c in every if c["sunspot"]]
        lines.append(
            f"| f/{focal:g}, shake {jitter:g} px, differential seeing {warp:g} px | "
            f"{'on' if outline else 'off'} | {_counts(dust)} | {_counts(spots)} | "
            f"{_shares(dust) if outline else '-'} | {_shares(spots) if outline else '-'} | "
            f"{_mean(results, 'precision'):.2f} | {_mean(results, 'dwr'):.2f} | "
            f"{100 * _mean(results, 'flat_rms'):.2f} % | "
            f"{100 * _mean(results, 'false_area'):.3f} % | {100 * _mean(results, 'masked'):.2f} % |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="update benchmarks/README.md")
    args = parser.parse_args()
    runs = {}
    for (jitter, warp), focal, seed, outline in itertools.product(
        SHAKES, FOCAL_RATIOS, range(11, 11 + args.seeds), (False, True)
    ):
        runs[(jitter, warp, focal, seed, outline)] = run_video(jitter, warp, focal, seed, outline)
        print(
            f"done: shake {jitter} warp {warp} f/{focal:g} seed {seed} outline {outline}",
            flush=True,
        )
    body = (
        f"`quality_tracked.py`: tracked synthetic Suns ({SHAPE[1]} x {SHAPE[0]} px, {N_FRAMES} "
        f"frames, no drift, 3 sunspots; seeds {list(range(11, 11 + args.seeds))}), the "
        "classical pipeline with the outline test off and on. A candidate is dust when most of "
        "its pixels lie on the true dust support, a sunspot when most lie within 1.2 penumbra "
        "radii of one. Outline shares: the range over the candidates of `outline_fixed` and, "
        "in brackets, `outline_fixed_local` (1: the outline stays on the sensor; confirmed at "
        ">= 2/3 in both, dropped at <= 1/3 in both). Scores are means over the seeds.\n\n"
        + table(runs)
        + "\n\n"
        + FINDINGS
    )
    print(body)
    if args.record:
        README.write_text(replace_section(README.read_text(), HEADING, body))


FINDINGS = """Findings (2026-11-25):

- Without the outline test every sunspot of a tracked video is kept undecided and corrected
  away like dust: 81 of 81 over the nine kinds of video, 3.6 % of the frame in false
  positives (precision 0.04-0.20 with dust). With it, no dust candidate is dropped (54 of 54
  confirmed; `outline_fixed` 0.68-1.51 in both estimates, the lowest a faint f/10 donut under
  differential seeing), and the sunspots of the videos without differential seeing are all
  dropped (54 of 54; shares at most -0.02 against the whole frame's shifts, 0.14 against
  their surroundings'): false-positive area 0.000-0.003 %, precision 0.99-1.00.
- Under 1 px rms of differential seeing (with 1 px of shake) the whole frame's shift no
  longer follows the scene at each sunspot, which raises its share to up to 0.45, while the
  shifts of its own surroundings keep it at most 0.06: 5 of 9 sunspots per kind of video are
  dropped, 4 stay undecided (false-positive area 3.6 -> 1.3 %). A decision needs both
  estimates on the same side, and a sunspot is dropped only when its fixed part is also at
  most a third of the edge of a shadow as deep as its deficit (which keeps dust on a texture
  dark under it); that costs the undecided sunspots, never dust.
- The deficit-weighted recall and the flat's rms in dust are those of the test off: the
  outline test only drops sunspots and confirms the dust the test off kept undecided. On
  these tracked f/10 videos the eye finds few of the faint donuts at all (recall 0.00-0.05),
  and the f/60 rows' flat error in dust (25 %) comes from a near-opaque shadow on the limb
  that neither setting corrects well; both are as before.
"""


if __name__ == "__main__":
    main()
