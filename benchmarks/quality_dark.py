"""Quality: the flat and the calibrated video with each black-level mode, on a sensor with hot
pixels and an amplifier's glow.

For each case (a drifting Sun that fills the frame, a planet on a black sky; seeded synthetic
videos from ``astro_assets.samples.solar`` with hot pixels and an amplifier's glow in a
corner) the flat-field graph runs up to ``matched_inpaint``, then ``final_flatfield`` and
``calibrated_video`` run with each ``black_level_mode``: ``none``, ``value`` (the generator's
black level) and ``sky``; and the whole graph runs again with ``ser_median``'s ``dark_video``
(a dark video of 32 frames from the same sensor), ``black_level_mode`` none (the master dark's
pedestal). Reported against the generator's truth:

- flat rms and max error in dust, ``F / T - 1`` over the lit pixels (the scene above 5 % of
  its 99th percentile, as in ``quality_flatfield.py``) that the dust dims by more than 0.5 %,
  and the max error at the hot pixels among them;
- the same rms over the pixels among them where the flat is measured, and the number of those
  it forces to 1.0 (exactly 1.0 inside the mask: ``final_flatfield`` found the dust-free
  reference below ``dark_fraction`` of the bright level, 5 % by default, as the score's own
  threshold for lit pixels: at a limb's foot the two disagree on a few pixels, where the dust
  is left in the data);
- the calibrated video's residual: ``calibrated - p - V * S`` (the light alone, dust and
  dark removed; ``p`` the pedestal ``calibrated_video`` adds back, the flat's ``BLACKLVL``)
  averaged over the first 8 frames, its mean at the hot pixels and its rms elsewhere, in ADU.

Usage::

    .venv/bin/python benchmarks/quality_dark.py [--seeds 1 2] [--record]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from datetime import date
from pathlib import Path

import dagster as dg
import numpy as np
from quality_flatfield import README, replace_section

from astro_assets.defs.flatfield import defs as flatfield_defs
from astro_assets.io.images import read_fits_float32, read_tiff
from astro_assets.io.ser import open_ser
from astro_assets.resources.dust_eye import DustEye
from astro_assets.resources.gemini import GeminiImageModel
from astro_assets.resources.storage import DataStore
from astro_assets.samples import (
    SolarVideoParams,
    SyntheticSolarVideo,
    dark_signal,
    write_dark_video,
    write_sample_video,
)

SECTION = "## Black level from a dark video"
ASSETS = list(flatfield_defs.assets) + list(flatfield_defs.asset_checks)
UPSTREAM = ["ser_median", "dust_mask", "inpainted", "matched_inpaint"]
DOWNSTREAM = ["final_flatfield", "calibrated_video"]
SENSORS = {
    "2 % hot pixels of 1,500 ADU, 400 ADU glow": {
        "hot_pixel_fraction": 0.02,
        "hot_pixel_adu": 1500.0,
        "amp_glow_adu": 400.0,
    },
    "0.1 % hot pixels of 300 ADU, 50 ADU glow": {
        "hot_pixel_fraction": 0.001,
        "hot_pixel_adu": 300.0,
        "amp_glow_adu": 50.0,
    },
}
CASES = {
    "Sun f/30, drifting": {"target": "sun", "focal_ratio": 30.0, "drift_px": 40.0},
    "planet f/60, drifting": {"target": "planet", "focal_ratio": 60.0, "drift_px": 30.0},
}
MODES = ("none", "value", "sky")
DARK = "dark video"
DARK_FRAMES = 32
RESIDUAL_FRAMES = 8
HOT_ADU = 100.0
"""A pixel whose dark signal is above this counts as hot in the figures."""


def case_params(case: dict, sensor: dict, seed: int) -> SolarVideoParams:
    return SolarVideoParams(
        width=320, height=240, n_frames=40, n_sunspots=0, n_dust=4, seed=seed, **case, **sensor
    )


def run(instance, data_store, selection, run_config=None) -> None:
    result = dg.materialize(
        ASSETS,
        selection=selection,
        partition_key="video",
        instance=instance,
        resources={
            "data_store": data_store,
            "dust_eye": DustEye(backend="classical", gemini=GeminiImageModel()),
        },
        run_config=run_config,
        raise_on_error=False,
    )
    if not result.success:
        raise RuntimeError(f"the run of {selection} failed")


def mode_config(mode: str, params: SolarVideoParams) -> dict:
    config: dict[str, object] = {"black_level_mode": mode}
    if mode == "value":
        config["black_level"] = params.black_level_adu
    return {"ops": {"final_flatfield": {"config": config}}}


def light_alone(video: SyntheticSolarVideo, index: int) -> np.ndarray:
    """``V * S`` of frame ``index`` in ADU: the frame's light without dust, dark or noise."""
    truth = video.truth
    electrons = video.expected_electrons(index) / truth.transmission
    return video.params.gain_adu_per_electron * electrons


def measure(folder: Path, video_path: Path, video: SyntheticSolarVideo) -> dict[str, float]:
    truth = video.truth
    flat, header = read_fits_float32(folder / "final_flatfield.fits")
    pedestal = float(header["BLACKLVL"])
    forced = (read_tiff(folder / "dust_mask.tiff") > 0) & (flat == 1.0)
    lit = truth.scene > 0.05 * np.percentile(truth.scene, 99)
    dust = truth.dust_support() & lit
    hot = dark_signal(video.params) > HOT_ADU
    errors = flat[dust] / truth.transmission[dust] - 1.0
    hot_dust = dust & hot
    measured = ~forced[dust]
    with open_ser(folder / "calibrated.ser") as calibrated:
        residual = np.mean(
            [
                calibrated.frames[i].astype(np.float64) - pedestal - light_alone(video, i)
                for i in range(RESIDUAL_FRAMES)
            ],
            axis=0,
        )
    return {
        "flat_rms": float(np.sqrt(np.mean(errors**2))),
        "flat_max": float(np.abs(errors).max()),
        "flat_rms_measured": float(np.sqrt(np.mean(errors[measured] ** 2))),
        "forced_px": int(np.count_nonzero(~measured)),
        "flat_max_hot": float(
            np.abs(flat[hot_dust] / truth.transmission[hot_dust] - 1.0).max()
            if hot_dust.any()
            else 0.0
        ),
        "hot_residual": float(residual[hot].mean()),
        "cold_residual_rms": float(np.sqrt(np.mean(residual[~hot] ** 2))),
    }


def run_case(params: SolarVideoParams) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as work, dg.instance_for_test() as instance:
        data_store = DataStore(root=str(Path(work) / "data"))
        layout = data_store.layout
        layout.incoming_ser.mkdir(parents=True)
        layout.incoming_darks.mkdir(parents=True)
        video_path, _ = write_sample_video(layout.incoming_ser / "video.ser", params)
        write_dark_video(layout.incoming_darks / "dark.ser", params, DARK_FRAMES)
        instance.add_dynamic_partitions("ser_files", ["video"])
        run(instance, data_store, UPSTREAM)
        video = SyntheticSolarVideo(params)
        folder = layout.flatfield_dir("video")
        results = {}
        for mode in MODES:
            run(instance, data_store, DOWNSTREAM, mode_config(mode, params))
            results[mode] = measure(folder, video_path, video)
        dark = {"ops": {"ser_median": {"config": {"dark_video": "dark.ser"}}}}
        run(instance, data_store, UPSTREAM + DOWNSTREAM, dark)
        results[DARK] = measure(folder, video_path, video)
        return results


def table(results: dict[tuple[str, str], list[dict]], seeds: list[int]) -> str:
    lines = [
        f"Seeds {', '.join(map(str, seeds))}, 320 x 240, 40 frames, 4 shadows; the dark video "
        f"{DARK_FRAMES} frames; hot pixels: a dark signal above {HOT_ADU:.0f} ADU. Means over "
        "the seeds (the max columns: the largest).",
        "",
        "| case | sensor | black level | flat rms in dust | flat max in dust "
        "| flat max at hot pixels in dust | flat rms in dust, measured pixels "
        "| forced to 1.0 in dust (px) | calibrated at hot pixels (ADU) "
        "| calibrated rms elsewhere (ADU) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, sensor), runs in results.items():
        for mode in (*MODES, DARK):
            rows = [r[mode] for r in runs]
            lines.append(
                f"| {name} | {sensor} | {mode} | {np.mean([r['flat_rms'] for r in rows]):.2%} "
                f"| {max(r['flat_max'] for r in rows):.2%} "
                f"| {max(r['flat_max_hot'] for r in rows):.2%} "
                f"| {np.mean([r['flat_rms_measured'] for r in rows]):.2%} "
                f"| {np.mean([r['forced_px'] for r in rows]):.1f} "
                f"| {np.mean([r['hot_residual'] for r in rows]):+.1f} "
                f"| {np.mean([r['cold_residual_rms'] for r in rows]):.1f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--record", action="store_true", help="write the table to README.md")
    args = parser.parse_args()
    results = {
        (name, sensor_name): [run_case(case_params(case, sensor, seed)) for seed in args.seeds]
        for name, case in CASES.items()
        for sensor_name, sensor in SENSORS.items()
    }
    body = (
        f"`quality_dark.py`, {date.today().isoformat()}, {platform.machine()}.\n\n"
        f"{table(results, args.seeds)}"
    )
    print(body)
    if args.record:
        README.write_text(replace_section(README.read_text(), SECTION, body))


if __name__ == "__main__":
    main()
