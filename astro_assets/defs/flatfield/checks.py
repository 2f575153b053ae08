"""Checks that guard the flat-field products; the blocking ones stop downstream assets."""

import dagster as dg
import numpy as np
import pydantic

from astro_assets.defs.flatfield.assets import (
    FLAT_FITS_FILE,
    FLAT_TIFF_FILE,
    INPAINTED_FILE,
    MASK_FILE,
    MATCHED_FILE,
    MEDIAN_FILE,
    dust_mask,
    final_flatfield,
    inpainted,
    matched_inpaint,
    read_mask_record,
)
from astro_assets.defs.flatfield.partitions import ser_files_partitions
from astro_assets.io.images import UNITY_UINT16, read_fits_float32, read_tiff
from astro_assets.resources.storage import DataStore
from astro_assets.science.flatfield.motion import is_undecided
from astro_assets.science.flatfield.planes import broadcast_mask

CLEAN_QUANTILES = (1, 5, 25, 50, 75, 95, 99)


def _load(data_store: DataStore, key: str, name: str) -> np.ndarray:
    return read_tiff(data_store.layout.flatfield_file(key, name))


def _read_flat_fits(data_store: DataStore, key: str) -> np.ndarray:
    flat, _ = read_fits_float32(data_store.layout.flatfield_file(key, FLAT_FITS_FILE))
    return flat


@dg.asset_check(
    asset=final_flatfield,
    partitions_def=ser_files_partitions,
    blocking=True,
    description="Every pixel with mask == 0 is exactly 1.0 in the float flat and exactly 65535 "
    "in the 16-bit TIFF: the flat never touches clean data.",
)
def final_flatfield_clean_area_is_unity(
    context: dg.AssetCheckExecutionContext, data_store: DataStore
) -> dg.AssetCheckResult:
    key = context.partition_key
    clean_2d = _load(data_store, key, MASK_FILE) == 0
    flat = _read_flat_fits(data_store, key)
    codes = _load(data_store, key, FLAT_TIFF_FILE)
    clean = broadcast_mask(clean_2d, flat.shape)
    float_off = int(np.count_nonzero(flat[clean] != 1.0))
    uint16_off = int(np.count_nonzero(codes[clean] != UNITY_UINT16))
    return dg.AssetCheckResult(
        passed=float_off == 0 and uint16_off == 0,
        metadata={
            "clean_pixels": int(clean.sum()),
            "float_pixels_not_unity": float_off,
            "uint16_pixels_not_65535": uint16_off,
        },
    )


@dg.asset_check(
    asset=final_flatfield,
    partitions_def=ser_files_partitions,
    blocking=True,
    description="The float flat is finite and strictly positive everywhere (it is a divisor).",
)
def final_flatfield_finite_positive(
    context: dg.AssetCheckExecutionContext, data_store: DataStore
) -> dg.AssetCheckResult:
    flat = _read_flat_fits(data_store, context.partition_key)
    non_finite = int(np.count_nonzero(~np.isfinite(flat)))
    non_positive = int(np.count_nonzero(flat <= 0))
    finite = flat[np.isfinite(flat)]
    return dg.AssetCheckResult(
        passed=non_finite == 0 and non_positive == 0,
        metadata={
            "non_finite_pixels": non_finite,
            "non_positive_pixels": non_positive,
            "min": float(finite.min()) if finite.size else float("nan"),
            "max": float(finite.max()) if finite.size else float("nan"),
        },
    )


class DustMaskCoverageConfig(dg.Config):
    max_fraction: float = pydantic.Field(
        default=0.2,
        description="Warn when more than this fraction of the frame is masked: dust rarely "
        "covers that much, while a mis-detected limb or scene feature does.",
    )


@dg.asset_check(
    asset=dust_mask,
    partitions_def=ser_files_partitions,
    description="The mask lies in [0, 1] and covers no more than max_fraction of the frame.",
)
def dust_mask_coverage(
    context: dg.AssetCheckExecutionContext, config: DustMaskCoverageConfig, data_store: DataStore
) -> dg.AssetCheckResult:
    mask = _load(data_store, context.partition_key, MASK_FILE)
    in_range = bool(np.all((mask >= 0) & (mask <= 1)))
    fraction = float(np.mean(mask > 0))
    regions = read_mask_record(data_store, context.partition_key)["regions"]
    core_fraction = sum(region["area_px"] for region in regions) / mask.size
    if not in_range:
        description = "the mask has values outside [0, 1]: materialize dust_mask again."
    elif fraction > config.max_fraction:
        description = (
            f"{fraction:.1%} of the frame is masked, more than max_fraction "
            f"({config.max_fraction:.1%}): review dust_mask_overlay.png before using the flat "
            "(few frames, a tracked target or a textured one can leave scene features in the "
            "mask); drop them with drop_regions_at."
        )
        if core_fraction < 0.5 * fraction:
            description += (
                f" The shadows found cover {core_fraction:.1%}; the mask's expansion around "
                f"them takes it to {fraction:.1%}: on a frame of {mask.shape[1]} x "
                f"{mask.shape[0]} px, a lower dust_mask dilation_px leaves more clean pixels "
                "around each shadow to infer the dust-free signal from."
            )
    else:
        description = f"{fraction:.1%} of the frame is masked."
    return dg.AssetCheckResult(
        passed=in_range and fraction <= config.max_fraction,
        severity=dg.AssetCheckSeverity.ERROR if not in_range else dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "masked_fraction": fraction,
            "core_fraction": core_fraction,
            "max_fraction": config.max_fraction,
            "values_in_unit_range": in_range,
        },
    )


@dg.asset_check(
    asset=dust_mask,
    partitions_def=ser_files_partitions,
    description="Every candidate in the mask was shown fixed on the sensor by the video. Warns "
    "when some are kept undecided (a tracked video, too few frames covering them, the motion "
    "test off): a sunspot that stays still looks exactly like dust, and the flat would correct "
    "it away.",
)
def dust_mask_candidates_confirmed(
    context: dg.AssetCheckExecutionContext, data_store: DataStore
) -> dg.AssetCheckResult:
    record = read_mask_record(data_store, context.partition_key)
    verdicts = record.get("motion_test", [])
    # Judged on the verdict's text alone: records written before a field was added to
    # MotionVerdict are still read.
    undecided = [v for v in verdicts if is_undecided(v["verdict"])]
    motion_tested = record.get("motion_tested", True)
    untested = not motion_tested and bool(record["regions"])
    if untested:
        advice = (
            "the motion test was off (dust_mask config motion_test: false), so no candidate "
            "was confirmed; review the overlay before using the flat."
        )
    elif undecided and not record.get("drift_registered", True):
        advice = (
            f"{len(undecided)} of {len(verdicts)} candidates are kept undecided: the frames "
            "could not be registered (dust_mask's drift_verdict says why: a target too faint "
            "or noisy, or a field that rotated), so none could be shown fixed on the sensor. "
            "Review them on dust_mask_overlay.png and do what drift_verdict says."
        )
    elif undecided:
        advice = (
            f"{len(undecided)} of {len(verdicts)} candidates are kept undecided; review them on "
            "dust_mask_overlay.png, capture with the mount drifting (at least twice the largest "
            "shadow's diameter), or materialize dust_mask with keep_undecided: false to keep "
            "only confirmed dust."
        )
    else:
        advice = "every candidate kept was shown fixed on the sensor."
    return dg.AssetCheckResult(
        passed=not undecided and not untested,
        severity=dg.AssetCheckSeverity.WARN,
        description=advice,
        metadata={
            "candidates": len(verdicts),
            "undecided_kept": len(undecided),
            "motion_tested": motion_tested,
            "drift_total_px": record.get("drift_total_px"),
            "drift_registered": record.get("drift_registered", True),
            "undecided": dg.MetadataValue.json(undecided),
        },
    )


class CleanAreaMatchConfig(dg.Config):
    tolerance: float = pydantic.Field(
        default=0.01,
        description="Largest allowed difference between clean-area quantiles of the matched "
        "inpaint and of the median, as a fraction of the median's 1-99 % clean range.",
    )


@dg.asset_check(
    asset=matched_inpaint,
    partitions_def=ser_files_partitions,
    blocking=True,
    description="On clean pixels the matched inpaint has the median's intensity distribution.",
)
def matched_inpaint_matches_clean_area(
    context: dg.AssetCheckExecutionContext, config: CleanAreaMatchConfig, data_store: DataStore
) -> dg.AssetCheckResult:
    key = context.partition_key
    median = _load(data_store, key, MEDIAN_FILE).astype(np.float64)
    matched = _load(data_store, key, MATCHED_FILE).astype(np.float64)
    clean = broadcast_mask(_load(data_store, key, MASK_FILE) == 0, median.shape)
    reference = np.percentile(median[clean], CLEAN_QUANTILES)
    candidate = np.percentile(matched[clean], CLEAN_QUANTILES)
    scale = max(reference[-1] - reference[0], np.finfo(np.float32).tiny)
    worst = float(np.max(np.abs(candidate - reference)) / scale)
    return dg.AssetCheckResult(
        passed=worst <= config.tolerance,
        metadata={
            "worst_quantile_difference": worst,
            "tolerance": config.tolerance,
            "quantiles": dg.MetadataValue.json(list(CLEAN_QUANTILES)),
            "median_quantiles": dg.MetadataValue.json(reference.tolist()),
            "matched_quantiles": dg.MetadataValue.json(candidate.tolist()),
        },
    )


@dg.asset_check(
    asset=inpainted,
    partitions_def=ser_files_partitions,
    blocking=True,
    description="Outside the mask the inpainted image equals the median bit for bit.",
)
def inpainted_unchanged_outside_mask(
    context: dg.AssetCheckExecutionContext, data_store: DataStore
) -> dg.AssetCheckResult:
    key = context.partition_key
    median = _load(data_store, key, MEDIAN_FILE)
    image = _load(data_store, key, INPAINTED_FILE)
    clean = broadcast_mask(_load(data_store, key, MASK_FILE) == 0, median.shape)
    changed = int(np.count_nonzero(image[clean] != median[clean]))
    return dg.AssetCheckResult(
        passed=changed == 0, metadata={"clean_pixels": int(clean.sum()), "changed_pixels": changed}
    )


flatfield_checks = [
    final_flatfield_clean_area_is_unity,
    final_flatfield_finite_positive,
    dust_mask_coverage,
    dust_mask_candidates_confirmed,
    matched_inpaint_matches_clean_area,
    inpainted_unchanged_outside_mask,
]
