"""The flat-field asset graph, one partition per SER video."""

import contextlib
import dataclasses
import json
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import dagster as dg
import numpy as np
from scipy import ndimage

from astro_assets.defs.flatfield.automation import root_when_stale, when_stale
from astro_assets.defs.flatfield.partitions import ser_files_partitions
from astro_assets.defs.params import config_class, params_from_config
from astro_assets.defs.previews import image_statistics, luminance, path_value, preview
from astro_assets.io.atomic import atomic_write_text
from astro_assets.io.discovery import find_ser_for_key
from astro_assets.io.images import (
    overlay_mask,
    read_fits_float32,
    read_tiff,
    thumbnail_markdown,
    to_display_uint8,
    write_fits_float32,
    write_png,
    write_tiff_float32,
    write_tiff_uint16_unity,
)
from astro_assets.io.paths import DataLayout
from astro_assets.io.ser import (
    SerVideo,
    alignment_mismatch,
    open_ser,
    ser_fingerprint,
    write_ser,
)
from astro_assets.resources.classical import ClassicalImageModel
from astro_assets.resources.dust_eye import BackendChoice, DustEye
from astro_assets.resources.gemini import GeminiBlockedError, GeminiError
from astro_assets.resources.image_model import ImageModel
from astro_assets.resources.storage import DataStore
from astro_assets.science.flatfield.darks import (
    BELOW_DARK_SIGMAS,
    DarkSubtractedFrames,
    DarkSummary,
    summarize_dark,
)
from astro_assets.science.flatfield.drift import (
    DriftEstimate,
    DriftParams,
    drift_verdict,
    estimate_drift,
)
from astro_assets.science.flatfield.dust import (
    MIN_MEDIAN_PX,
    DustDetectionParams,
    LineGains,
    MaskExpansionParams,
    expand_mask,
    params_on_view,
)
from astro_assets.science.flatfield.edits import edit_core
from astro_assets.science.flatfield.flatfield import (
    FlatParams,
    IntegerCalibrator,
    saturated_fraction,
    signal_level,
    sky_black_level,
    synthesize_plane_flats,
)
from astro_assets.science.flatfield.inpaint import (
    InpaintParams,
    fill_across_line_defects,
    guided_regions,
    inpaint_guided,
    median_line_gains,
)
from astro_assets.science.flatfield.levels import (
    LIT_DARK_FRACTION,
    MIN_SIGNAL_FRACTION,
    coverage_verdict,
    dark_threshold,
    lit_fraction,
    unsearched_fraction,
)
from astro_assets.science.flatfield.matching import match_histogram
from astro_assets.science.flatfield.median import (
    TemporalMedianParams,
    selected_frames,
    temporal_median,
)
from astro_assets.science.flatfield.motion import (
    DROPPED_BY_HAND,
    SCENE,
    SHALLOW,
    InpaintingGuide,
    MotionResult,
    MotionTestParams,
    MotionVerdict,
    inpainting_guide,
    label_candidates,
    plane_guide,
    sensor_line_gains,
    separate_sensor_fixed,
)
from astro_assets.science.flatfield.planes import (
    LuminanceVideo,
    PlaneVideo,
    broadcast_mask,
    luminance_view,
    mask_to_cells,
    mask_to_full,
    merge_planes,
    plane_names,
    plane_offsets,
    split_mask,
    split_planes,
)
from astro_assets.science.flatfield.quantized import interpolated_median
from astro_assets.science.flatfield.transparency import FrameScreening, screen_frames
from astro_assets.science.threads import computed_ahead

EIGHT_BIT_WARNING = (
    "8-bit capture: if the camera applied a gamma curve the data are not linear and the "
    "multiplicative flat model (frame = flat x signal + black) does not hold; capture linear "
    "raw data (10-16 bit) for calibration"
)
COVERAGE_SAMPLE_FRAMES = 8
"""Frames, spread over the video, whose lit share of the frame the median's is compared with."""
BYTE_ORDERS = {"auto": None, "little": "<", "big": ">"}
MEDIAN_FILE = "ser_median.tiff"
DROPPED_OVERLAY_COLOR = (0, 140, 255)
"""Colour of the candidates dropped by the motion test in ``dust_mask_overlay.png``."""
UNDECIDED_OVERLAY_COLOR = (255, 230, 0)
UNSEARCHED_WARN_FRACTION = 0.1
"""Share of the lit target below the detector's ``dark_fraction`` above which ``dust_mask``
warns that dust there is not searched."""
"""Colour of the candidates kept without the video showing them fixed on the sensor."""
SOURCE_RECORD_FILE = "source.json"
MASK_FILE = "dust_mask.tiff"
MASK_RECORD_FILE = "dust_mask.json"
EDITS_FILE = "dust_mask_edits.json"
"""The reviewer's edits of one partition's mask, kept for later runs of ``dust_mask``."""
GUIDE_FILE = "inpaint_guide.tiff"
INPAINTED_FILE = "inpainted.tiff"
MATCHED_FILE = "matched_inpaint.tiff"
FLAT_TIFF_FILE = "final_flatfield.tiff"
FLAT_FITS_FILE = "final_flatfield.fits"
CALIBRATED_FILE = "calibrated.ser"
DARK_FILE = "master_dark.fits"
FEW_VIDEO_FRAMES = 8
"""Below this many frames in the median, ``ser_median`` warns: the median keeps each frame's
texture, and few candidates can be shown fixed on the sensor, since the motion test needs
fewer than about a third of the frames to put a shadow on the same part of the scene. On
drifting synthetic Suns of 512 x 384 px, 3 and 5 frames left 2.0 and 2.1 % of a dust-free
frame in the mask's core as undecided candidates, 8 and 16 frames none (``benchmarks/README.md``,
``## Flat-field quality beyond the grid``)."""
FEW_DARK_FRAMES = 16
"""Below this many dark frames the master dark's read noise is a visible part of every
calibrated frame's (about 1.25 / sqrt(n) of one frame's)."""
BELOW_DARK_LIMIT = 0.01
"""Share of the median below its dark (``DarkSummary.below_dark_fraction``) from which the dark
is refused as taken with other settings than the video."""
DARK_CHOICE_FILE = "dark_video.json"
SAVED_DARK = f"dark_video given to an earlier run (kept in {DARK_CHOICE_FILE})"
"""``ser_median``'s ``dark_pairing`` when it subtracts the dark video an earlier run was
given."""
DARK_VIDEO_HELP = (
    "a dark video (the telescope capped, the video's gain, offset, exposure and temperature): "
    "a path relative to <data root>/incoming/darks, or absolute; its temporal median is "
    "written as master_dark.fits, its structure above its pedestal (hot pixels, glow) is "
    "subtracted from every frame before the graph looks at them, and its pedestal is the "
    f"black level. Kept in the partition's {DARK_CHOICE_FILE} for later runs without it (runs "
    "of sensors and automation too); an empty string forgets it"
)


SerMedianConfig = config_class(
    TemporalMedianParams,
    name="SerMedianConfig",
    doc="How the video is read and its temporal median computed.",
    extra={
        "dark_video": (str | None, None, DARK_VIDEO_HELP),
        "paired_dark": (
            bool,
            True,
            "without dark_video, use <data root>/incoming/darks/<the video's file name> as the "
            "dark video where that file exists (so that runs started by sensors and "
            "automation find it too)",
        ),
        "byte_order": (
            Literal["auto", "little", "big"],
            "auto",
            "auto detects the byte order from the pixels (the header flag is unreliable)",
        ),
        "interpolate_levels": (
            bool,
            True,
            "8-bit videos: interpolate the median within its level (the median of grouped "
            "data); the exact median of 8-bit values misses the signal by up to half a level "
            "(0.29 rms) however many frames there are, which is several percent behind a "
            "near-opaque shadow",
        ),
        "min_signal_fraction": (
            float,
            MIN_SIGNAL_FRACTION,
            "frames whose spread of values (binned, despeckled) is below this fraction of the "
            "typical frame's show too little of the scene (blank frames, thick cloud) and are "
            "left out of the median, where each would pull every pixel towards its darker "
            "values; 0 keeps every frame",
        ),
    },
)


def header_metadata(video: SerVideo) -> dict[str, object]:
    """Every SER header field, the decoded facts about the data, and what was tolerated."""
    header = video.header
    metadata: dict[str, object] = {
        "ser_file": str(video.path),
        "file_id": header.file_id,
        "color": video.color,
        "bayer_pattern": video.bayer_pattern or "none",
        "width": header.width,
        "height": header.height,
        "pixel_depth": header.pixel_depth,
        "significant_bits": video.significant_bits,
        "bit_alignment": video.bit_alignment,
        "header_frame_count": header.frame_count,
        "frames_present": video.n_frames,
        "little_endian_flag": header.little_endian_flag,
        "byte_order": {"<": "little", ">": "big", "|": "single byte"}[video.byte_order],
        "byte_order_source": video.byte_order_source,
        "observer": header.observer,
        "instrument": header.instrument,
        "telescope": header.telescope,
        "date_local": header.date_local.isoformat() if header.date_local else "none",
        "date_utc": header.date_utc.isoformat() if header.date_utc else "none",
        "warnings": dg.MetadataValue.json(list(video.warnings)),
    }
    if video.byte_order_margin is not None:
        metadata["byte_order_margin"] = float(video.byte_order_margin)
    if video.timestamps is not None and len(video.timestamps):
        first, last = video.timestamps[0], video.timestamps[-1]
        metadata["time_first_utc"] = str(first)
        metadata["time_last_utc"] = str(last)
        metadata["time_span_s"] = float((last - first) / np.timedelta64(1, "s"))
    return metadata


def _frames_without_signal(screening: FrameScreening | None) -> dict[str, object]:
    """The frames left out of the median for want of signal, and each screened frame's
    spread relative to the typical frame's (the lowest few), for the record and metadata;
    ``screened`` is False where no frame could be left out (none screened, or frames too small
    to tell)."""
    if screening is None:
        return {"screened": False, "frames": [], "relative_spreads": {}}
    order = np.argsort(screening.relative_spreads, kind="stable")[:_LOWEST_SPREADS_LISTED]
    return {
        "screened": screening.applied,
        "frames": [int(frame) for frame in screening.left_out],
        "relative_spreads": {
            str(int(screening.frames[i])): round(float(screening.relative_spreads[i]), 4)
            for i in sorted(order)
        },
    }


_LOWEST_SPREADS_LISTED = 20
"""Screened frames whose relative spread the record lists (the lowest, by frame number): a
video has thousands of frames, and those near or below the threshold are the ones worth
reading."""


def frame_ranges(frames: Sequence[int], shown: int = 12) -> str:
    """Increasing frame numbers as runs, ``0-299, 310, 400-402``, at most ``shown`` runs and
    how many frames the rest hold: a blank lead-in of thousands of frames stays one run."""
    runs: list[list[int]] = []
    for frame in frames:
        if runs and frame == runs[-1][1] + 1:
            runs[-1][1] = frame
        else:
            runs.append([frame, frame])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs[:shown])
    if len(runs) <= shown:
        return text
    rest = sum(b - a + 1 for a, b in runs[shown:])
    return f"{text} and {rest} more frame{'s' if rest > 1 else ''}"


def _frames_without_signal_metadata(record: dict) -> dict[str, object]:
    """``source.json``'s ``frames_without_signal`` for the asset's metadata: the frames as
    runs (:func:`frame_ranges`) and counted, so that a long blank stretch stays short."""
    frames = record["frames"]
    return {**record, "count": len(frames), "frames": frame_ranges(frames)}


def _lit_fractions(video: SerVideo, median: np.ndarray, used: np.ndarray) -> tuple[float, float]:
    """``lit_fraction`` of the median's luminance, and the median of that of
    ``COVERAGE_SAMPLE_FRAMES`` frames spread over those the median was taken over (``used``).
    The median is measured against the frames' median threshold (its own where the frames
    have no contrast): a median the target left for most of the video holds the sky alone."""
    picks = np.unique(np.linspace(0, len(used) - 1, min(COVERAGE_SAMPLE_FRAMES, len(used))).round())
    frames_lit, thresholds = [], []
    for i in picks:
        frame = np.ravel(luminance_view(video.frames[used[int(i)]], video.color))
        threshold = dark_threshold(frame, LIT_DARK_FRACTION)
        if threshold is None:
            frames_lit.append(0.0)
        else:
            frames_lit.append(lit_fraction(frame, threshold=threshold))
            thresholds.append(threshold)
    median_view = luminance_view(median, video.color)
    frames_threshold = float(np.median(thresholds)) if thresholds else None
    return (
        lit_fraction(median_view, threshold=frames_threshold),
        float(np.median(frames_lit)),
    )


@dg.asset(
    partitions_def=ser_files_partitions,
    group_name="flatfield",
    code_version="1",
    kinds={"numpy", "tiff"},
    automation_condition=root_when_stale,
)
def ser_median(
    context: dg.AssetExecutionContext, config: SerMedianConfig, data_store: DataStore
) -> dg.MaterializeResult:
    """Per-pixel temporal median of the video: everything fixed on the sensor survives.

    Taken over the frames that show the scene: frames whose binned spread of values is under
    ``min_signal_fraction`` of the typical frame's (blank frames, thick cloud) are left out
    (``science.flatfield.transparency.screen_frames``) and named in the metadata. Exact,
    except that for an 8-bit video (with ``interpolate_levels``, the default) it is
    interpolated within the median's level (``science.flatfield.quantized``). Written as
    ``data/flatfield/<key>/ser_median.tiff`` (float32, (H, W) for mono and raw CFA mosaics,
    (H, W, 3) RGB for colour videos) in the video's ADU, less the structure of the master
    dark of ``dark_video`` above its pedestal where one is given (:func:`_dark_structure`; the
    master dark is written beside it as ``master_dark.fits``, and the downstream assets read
    the frames less that structure too).
    """
    layout = data_store.layout
    key = context.partition_key
    source = find_ser_for_key(layout.incoming_ser, key)
    dark_video, dark_pairing = _chosen_dark_video(config, layout, key, source)
    # Resolved before the median is taken: a missing dark fails at once.
    dark_path = (
        None
        if dark_video is None
        else _dark_video_path(data_store, dark_video, saved=dark_pairing == SAVED_DARK)
    )
    if not 0.0 <= config.min_signal_fraction <= 1.0:
        raise ValueError(
            f"min_signal_fraction must lie in [0, 1], got {config.min_signal_fraction}; the "
            f"default {MIN_SIGNAL_FRACTION} leaves out blank frames, 0 keeps every frame."
        )
    fingerprint = ser_fingerprint(source)
    with open_ser(source, byte_order=BYTE_ORDERS[config.byte_order]) as video:
        stepped = selected_frames(video.n_frames, config.frame_step)
        screening = (
            screen_frames(
                video.frames,
                color=video.color,
                frame_indices=stepped,
                min_signal_fraction=config.min_signal_fraction,
                workers=config.workers,
            )
            if config.min_signal_fraction > 0
            else None
        )
        used = stepped if screening is None else screening.kept
        frames_used = used.size
        median = temporal_median(
            video.frames,
            memory_budget_mb=config.memory_budget_mb,
            workers=config.workers,
            frame_indices=used,
        )
        eight_bit = video.header.pixel_depth <= 8
        interpolated = config.interpolate_levels and eight_bit
        if interpolated:
            median = interpolated_median(video.frames, median, frame_indices=used)
        dark = (
            None
            if dark_path is None
            else _master_dark(
                video,
                dark_path,
                median,
                params_from_config(config, TemporalMedianParams),
            )
        )
        metadata = header_metadata(video)
        record = {
            "source": source.name,
            "fingerprint": fingerprint,
            "byte_order": video.byte_order,
            "color": video.color,
            "pixel_depth": video.header.pixel_depth,
            "dark": None if dark is None else _dark_record(dark, video.color),
            "frames_without_signal": _frames_without_signal(screening),
        }
        median_lit, frames_lit = _lit_fractions(video, median, used)
        coverage_ok, coverage_message = coverage_verdict(median_lit, frames_lit)
        added = [] if coverage_ok else [coverage_message]
        left_out = record["frames_without_signal"]["frames"]
        if left_out:
            added.append(
                f"{len(left_out)} of {stepped.size} frames show too little of the scene (blank "
                f"frames or thick cloud; frames {frame_ranges(left_out)}) and were left out of "
                "the median; set min_signal_fraction to 0 to keep them."
                + (
                    " More than half of the frames were left out: if most of them do show the "
                    "target, a tenth or more of much wider spread (a camera's glitch) set the "
                    "typical frame."
                    if 2 * len(left_out) > stepped.size
                    else ""
                )
            )
        if frames_used < FEW_VIDEO_FRAMES:
            added.append(
                f"the median is taken over {frames_used} frame{'s' * (frames_used != 1)}: it "
                "keeps much of each frame's texture and noise, and the dust eye's candidates "
                "can seldom be shown fixed on the sensor, so texture may be kept as dust "
                "(review dust_mask's undecided candidates). Capture "
                f"{FEW_VIDEO_FRAMES} or more frames, better a few dozen, while the target drifts"
                + (", or lower frame_step." if config.frame_step > 1 else ".")
            )
        if eight_bit:
            added.append(EIGHT_BIT_WARNING)
        if dark is not None:
            added.extend(dark.warnings)
            median = median - _dark_structure(dark.image, record["dark"]["pedestals"], video.color)
        if added:
            metadata["warnings"] = dg.MetadataValue.json([*metadata["warnings"].value, *added])
    for warning in metadata["warnings"].value:
        context.log.warning(f"{source.name}: {warning}")
    choice_path = layout.flatfield_file(key, DARK_CHOICE_FILE)
    if config.dark_video:
        atomic_write_text(choice_path, json.dumps({"dark_video": config.dark_video}, indent=2))
    elif config.dark_video == "":
        choice_path.unlink(missing_ok=True)
    if dark is not None:
        write_fits_float32(
            layout.flatfield_file(key, DARK_FILE),
            dark.image,
            {"DARKFILE": dark.source.name, "DARKNFR": dark.frames, "PARTKEY": key},
        )
    target = write_tiff_float32(layout.flatfield_file(key, MEDIAN_FILE), median)
    atomic_write_text(layout.flatfield_file(key, SOURCE_RECORD_FILE), json.dumps(record, indent=2))
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "dark_video": "none" if dark is None else str(dark.source),
            "dark_pairing": dark_pairing,
            "dark": _json(record["dark"]),
            "frames_used": frames_used,
            "frame_step": config.frame_step,
            "frames_without_signal": _json(
                _frames_without_signal_metadata(record["frames_without_signal"])
            ),
            "median_estimator": "interpolated within 8-bit levels" if interpolated else "exact",
            "lit_fraction_median": median_lit,
            "lit_fraction_frames": frames_lit,
            "coverage_ok": coverage_ok,
            **image_statistics(median),
            "path": path_value(target),
            "preview": preview(median, alt="temporal median"),
        }
    )


DustMaskConfig = config_class(
    DustDetectionParams,
    MotionTestParams,
    MaskExpansionParams,
    name="DustMaskConfig",
    doc=(
        "Dust detection (classical backend), the test that drops candidates moving with the "
        "scene, mask expansion, and the backend choice."
    ),
    extra={
        "backend": (
            str | None,
            None,
            "classical, gemini or auto; unset uses the dust_eye resource "
            "($ASTRO_ASSETS_DUST_BACKEND, default auto)",
        ),
        "drift_max_frames": (int, DriftParams().max_frames, "frames sampled to measure drift"),
        "drift_max_closure_px": (
            float,
            DriftParams().max_closure_px,
            "the frames count as registered when registrations of a few pairs of them against "
            "each other agree with those against the first frame within this many px of the "
            "registration's grid (drift_closure_px / drift_registration_px in the metadata); "
            "differential seeing of 2.5 px rms put them up to 7 px apart on synthetic Suns, "
            "noise 8-50 px on a 128 x 96 px frame",
        ),
        "black_level": (
            float | None,
            None,
            "the frames' pedestal in ADU, which is not light: the dust-free prediction scales "
            "only the light above it; unset estimates it from the median's sky (0 where the "
            "target fills the frame, or where ser_median subtracted a dark)",
        ),
        "attempt": (
            int | None,
            None,
            "Gemini re-roll: a new number asks for a new answer (earlier ones stay cached); "
            "unset uses the resource's",
        ),
        "drop_regions_at": (
            list[list[float]] | None,
            None,
            "positions [x, y] (px of the raw frames, 0-based, x to the right and y down from the "
            "top-left pixel) of regions to drop from the mask, read off dust_mask_overlay.png or "
            "the 'regions' metadata: each drops the whole region nearest it, which must lie "
            "within dilation_px + 3 feather_sigma_px of it (where the overlay shows the mask). "
            f"Saved in the partition's {EDITS_FILE} for later runs; unset uses the saved ones, "
            "[] clears them",
        ),
        "add_dust_discs": (
            list[list[float]] | None,
            None,
            "discs [x, y, radius] (px, as drop_regions_at) added to the dust core after the "
            "drops, for a shadow the eye missed; expanded like the rest. Saved as "
            "drop_regions_at is",
        ),
    },
)
InpaintedConfig = config_class(
    InpaintParams,
    name="InpaintedConfig",
    doc="How the dust-free signal is inferred under the mask.",
    extra={
        "backend": (str | None, None, "as for dust_mask; unset uses the dust_eye resource"),
        "attempt": (int | None, None, "Gemini re-roll number, as for dust_mask"),
        "line_defects": (
            Literal["ratio", "median", "off"],
            "ratio",
            "how the gains of the sensor's defective columns and rows are kept in what is "
            "filled, so that the flat corrects the dust and not the line: 'ratio' takes those "
            "dust_mask measured on the ratio of the median to its dust-free prediction "
            "(drifting monochrome or three-plane videos), 'median' measures them on each plane "
            "of the median (any video, but a band of the scene along the rows, a planet's "
            "belts, looks the same), 'off' keeps none",
        ),
        "line_defect_sigma": (
            float,
            DustDetectionParams().line_defect_sigma,
            "for line_defects 'median': how far (in robust sigma) a line's level must stand "
            "from its neighbours' to be taken as defective; 'ratio' uses the gains dust_mask "
            "measured with its own line_defect_sigma",
        ),
        "follow_motion": (
            bool,
            True,
            "fill the regions dust_mask chose for it (on a drifting video: shadows found only "
            "in the ratio, and those whose held-out surroundings the prediction fits better) "
            "along the dust-free prediction, keeping the scene's texture and a limb's fall "
            "under them",
        ),
    },
)
FinalFlatfieldConfig = config_class(
    FlatParams, name="FinalFlatfieldConfig", doc="How the flat is synthesized."
)


def _source_record(data_store: DataStore, key: str) -> dict:
    """What ``ser_median`` recorded about the video: file name, byte order used, colour."""
    path = data_store.layout.flatfield_file(key, SOURCE_RECORD_FILE)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: materialize ser_median for partition {key!r} first"
        )
    return json.loads(path.read_text())


def _source_video(data_store: DataStore, key: str) -> Path:
    return find_ser_for_key(data_store.layout.incoming_ser, key)


def _open_source(data_store: DataStore, key: str, source: dict) -> SerVideo:
    """The partition's video, read with the byte order ``ser_median`` used (``source``, its
    :func:`_source_record`).

    Raises
    ------
    ValueError
        When the file is no longer the one ``ser_median`` read (its fingerprint): another
        capture saved under the same name would otherwise be calibrated with this one's flat.
    """
    path = _source_video(data_store, key)
    recorded = source.get("fingerprint")
    if recorded is not None and ser_fingerprint(path) != recorded:
        raise ValueError(
            f"{path.name} changed after ser_median was materialized for {key!r} (another "
            "capture under the same name, or the file was edited): materialize ser_median "
            "again, then the assets downstream of it. To keep both captures, give the new one "
            "its own name."
        )
    byte_order = source["byte_order"]
    return open_ser(path, byte_order=None if byte_order == "|" else byte_order)


def _video_color(data_store: DataStore, key: str) -> str:
    return _source_record(data_store, key)["color"]


@dataclasses.dataclass(frozen=True)
class MasterDark:
    """The temporal median of a dark video, checked against the partition's video.

    Attributes
    ----------
    source : Path
        The dark video.
    frames : int
        Frames the median was taken over.
    image : np.ndarray
        float32 of the median's shape, ADU.
    summary : DarkSummary
        Its pedestal, noise and hot pixels, and the median's pixels below it.
    warnings : list of str
        What the product's user should know about it.
    """

    source: Path
    frames: int
    image: np.ndarray
    summary: DarkSummary
    warnings: list[str]


def _chosen_dark_video(config, layout, key: str, source: Path) -> tuple[str | None, str]:
    """The dark video ``ser_median`` subtracts for the video ``source`` of partition ``key``,
    and how it was chosen: ``config.dark_video``, else the one an earlier run was given (kept
    in ``DARK_CHOICE_FILE``; an empty ``dark_video`` forgets it), else a file of the video's
    name in the darks folder (with ``config.paired_dark``), else none."""
    if config.dark_video:
        return config.dark_video, "dark_video"
    if config.dark_video is None:
        saved = _saved_dark_video(layout.flatfield_file(key, DARK_CHOICE_FILE))
        if saved is not None:
            return saved, SAVED_DARK
    paired = layout.incoming_darks / source.name
    if config.paired_dark and paired.is_file():
        return str(paired), "same file name in incoming/darks"
    return None, "none"


def _saved_dark_video(path: Path) -> str | None:
    """The ``dark_video`` kept in ``path`` (``DARK_CHOICE_FILE``) by an earlier run, or None
    without that file."""
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        saved = None
    if not (
        isinstance(saved, dict) and isinstance(saved.get("dark_video"), str) and saved["dark_video"]
    ):
        raise ValueError(
            f"{path} must be a JSON object whose dark_video is the dark video's path, as an "
            "earlier run wrote it. Fix it, delete it, or give dark_video in the run config "
            "(an empty string forgets it)."
        )
    return saved["dark_video"]


def kept_dark_videos(layout: DataLayout, keys: Iterable[str]) -> dict[str, Path]:
    """The dark video kept for each of the partitions ``keys`` that has one (``DARK_CHOICE_FILE``,
    written by ``ser_median`` when it was given ``dark_video``), as a path; unreadable records
    are left out (``ser_median`` fails on them with what to do)."""
    kept = {}
    for key in keys:
        try:
            dark_video = _saved_dark_video(layout.flatfield_file(key, DARK_CHOICE_FILE))
        except ValueError:
            continue
        if dark_video is not None:
            kept[key] = _dark_video_location(layout, dark_video)
    return kept


def _dark_video_location(layout: DataLayout, dark_video: str) -> Path:
    """``dark_video`` as a path: absolute as given, else under ``<data root>/incoming/darks``."""
    given = Path(dark_video).expanduser()
    return given if given.is_absolute() else layout.incoming_darks / given


def _dark_video_path(data_store: DataStore, dark_video: str, *, saved: bool = False) -> Path:
    """``dark_video`` as the path of an existing file (:func:`_dark_video_location`); ``saved``
    when it was read from ``DARK_CHOICE_FILE``, for the message."""
    folder = data_store.layout.incoming_darks
    path = _dark_video_location(data_store.layout, dark_video)
    if not path.is_file():
        present = sorted(p.name for p in folder.glob("*.ser")) if folder.is_dir() else []
        kept = (
            f" It was given to an earlier run and kept in {DARK_CHOICE_FILE}: give dark_video "
            "'' to forget it."
            if saved
            else ""
        )
        raise FileNotFoundError(
            f"dark_video {dark_video!r}: {path} is not a file. Put the dark video in {folder} "
            f"(there: {present or 'nothing'}) or give an absolute path.{kept}"
        )
    return path


def _master_dark(
    video: SerVideo,
    path: Path,
    median: np.ndarray,
    params: TemporalMedianParams,
) -> MasterDark:
    """The master dark of the dark video at ``path`` for ``video``, whose temporal median is
    ``median``, taken within ``params``' memory budget and threads (over every frame).

    The dark is read in the byte order its pixels show, as a video is (the byte order is how
    the file was written, not a capture setting), else in the video's, and refused unless its
    frames have the video's shape, container and bit alignment, and the median lies above it.
    """
    byte_order = None if video.byte_order == "|" else video.byte_order
    with open_ser(path, fallback_byte_order=byte_order) as dark:
        problem = _dark_mismatch(video, dark)
        if problem:
            raise ValueError(
                f"dark_video {path.name} does not match {video.path.name}: {problem}. Take "
                "the dark with the same camera, region of interest, binning and capture "
                "settings."
            )
        image = temporal_median(
            dark.frames, memory_budget_mb=params.memory_budget_mb, workers=params.workers
        )
        summary = summarize_dark(image, dark.frames[0], median)
        frames = dark.n_frames
    if summary.below_dark_fraction > BELOW_DARK_LIMIT:
        raise ValueError(
            f"{summary.below_dark_fraction:.1%} of the median of {video.path.name} lies more than "
            f"{summary.frame_noise * BELOW_DARK_SIGMAS:.3g} ADU below the master dark of "
            f"{path.name}, and light only adds to the dark: the dark was taken with another "
            "offset, gain or exposure. Take a dark with the video's settings, or leave "
            "dark_video unset and give final_flatfield black_level_mode sky or value."
        )
    warnings = []
    if frames < FEW_DARK_FRAMES:
        warnings.append(
            f"the dark video has {frames} frames: its read noise, about "
            f"{1.25 / np.sqrt(frames):.0%} of one frame's, is subtracted from every frame; "
            f"take {FEW_DARK_FRAMES} or more."
        )
    return MasterDark(path, frames, image, summary, warnings)


def _dark_mismatch(video: SerVideo, dark: SerVideo) -> str:
    """Why ``dark``'s values cannot be subtracted from ``video``'s, or an empty string."""
    if dark.frames.shape[1:] != video.frames.shape[1:]:
        return f"frames of {dark.frames.shape[1:]} against {video.frames.shape[1:]}"
    if dark.frames.dtype.itemsize != video.frames.dtype.itemsize:
        return (
            f"{8 * dark.frames.dtype.itemsize}-bit values against "
            f"{8 * video.frames.dtype.itemsize}-bit"
        )
    return alignment_mismatch(dark, video)


def _read(data_store: DataStore, key: str, name: str) -> np.ndarray:
    path = data_store.layout.flatfield_file(key, name)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: materialize the upstream asset for partition {key!r} first"
        )
    return read_tiff(path)


def read_mask_record(data_store: DataStore, key: str) -> dict:
    """What ``dust_mask`` recorded beside the mask: backend, regions, drift."""
    path = data_store.layout.flatfield_file(key, MASK_RECORD_FILE)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: materialize dust_mask for partition {key!r} first"
        )
    return json.loads(path.read_text())


def _choose(
    dust_eye: DustEye, config, data_store: DataStore, classical: ClassicalImageModel
) -> BackendChoice:
    """The eye for this run: ``config.backend`` (or the resource's), with the run's re-roll."""
    return dust_eye.choose(
        config.backend,
        classical,
        cache_dir=data_store.layout.cache_dir / "gemini",
        attempt=config.attempt,
    )


@contextlib.contextmanager
def _fails_at_once_on_bad_input() -> Iterator[None]:
    """Let the step's retry policy retry only what may pass on another attempt.

    The policy is there for transient image-model API failures. Bad inputs and configuration
    (``ValueError``, which includes ``SerFormatError``), missing input files and safety blocks
    fail the same way on every attempt, so retrying them would only repeat (and for Gemini,
    bill) the same work.
    """
    try:
        yield
    except GeminiBlockedError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None
    except GeminiError:
        raise
    except (ValueError, FileNotFoundError) as error:
        raise dg.Failure(description=str(error), allow_retries=False) from error


EYE_RETRY_POLICY = dg.RetryPolicy(
    max_retries=1, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def core_regions(core: np.ndarray) -> list[dict[str, float]]:
    """Connected regions of a binary dust core, whichever backend found them (8-connected)."""
    labels, count = ndimage.label(core, structure=np.ones((3, 3), bool))
    if count == 0:
        return []
    index = np.arange(1, count + 1)
    areas = ndimage.sum_labels(core, labels, index)
    centroids = ndimage.center_of_mass(core, labels, index)
    return [
        {
            "centroid_y": round(float(cy), 2),
            "centroid_x": round(float(cx), 2),
            "area_px": int(area),
            "equivalent_diameter_px": round(float(np.sqrt(4.0 * area / np.pi)), 2),
        }
        for (cy, cx), area in zip(centroids, areas, strict=True)
    ]


def _in_sensor_pixels(details: dict, configured: DustDetectionParams, cell: int) -> dict:
    """The eye's details without its regions, with the classical eye's parameters as
    ``configured`` and its filter radii in sensor pixels: on a mosaic it searched the 2 x 2
    cells, with its sizes converted to them (``dust.params_on_view``)."""
    shown = {k: v for k, v in details.items() if k != "regions"}
    if cell > 1 and "parameters" in shown:
        shown["parameters"] = dataclasses.asdict(configured)
        shown["filter_radii_px"] = [cell * radius for radius in shown["filter_radii_px"]]
    return shown


def _json(value) -> dg.MetadataValue:
    return dg.MetadataValue.json(value)


def _raw_pixels(record: dict, cell: int) -> dict:
    """A verdict or shadow measured on the luminance view, in raw pixels (a mosaic's 2x2 cell
    ``(r, c)`` covers raw pixels ``2r .. 2r + 1``, centred on ``2r + 0.5``; a pixel inside the
    region maps to the cell's first), with NaN and infinite floats replaced by None (JSON has
    no NaN)."""
    converted = {}
    for name, value in record.items():
        if isinstance(value, float) and not np.isfinite(value):
            value = None
        elif name in ("centroid_y", "centroid_x") and cell > 1:
            value = cell * value + (cell - 1) / 2
        elif name in ("inside_y", "inside_x", "diameter_px", "extent_px"):
            value = cell * value
        elif name == "area_px":
            value = cell * cell * value
        converted[name] = value
    return converted


@dg.asset(
    partitions_def=ser_files_partitions,
    group_name="flatfield",
    automation_condition=when_stale,
    deps=[ser_median],
    code_version="4",
    kinds={"numpy", "tiff"},
    pool="gemini",
    retry_policy=EYE_RETRY_POLICY,
)
def dust_mask(
    context: dg.AssetExecutionContext,
    config: DustMaskConfig,
    data_store: DataStore,
    dust_eye: DustEye,
) -> dg.MaterializeResult:
    """Where dust shadows are: a support mask in [0, 1], 1.0 on the dust and its margin.

    The eye (classical or Gemini) gives a binary core of candidates. Candidates that moved with
    the scene (texture, faculae, small sunspots on a drifting target) are dropped by comparing
    the median with its dust-free prediction from the registered frames
    (``science.flatfield.motion``); with the classical eye, faint shadows are also searched in
    the ratio of the median to that prediction, where the texture has cancelled. The core is
    dilated by ``dilation_px`` and feathered outside the dilated support only, so every
    shadowed pixel is fully corrected. A reviewer's corrections (``drop_regions_at``,
    ``add_dust_discs``) are applied to the core before the expansion and kept in
    ``dust_mask_edits.json`` for later runs. Written as ``dust_mask.tiff`` (float32, (H, W),
    the pixel grid of the raw frames).
    """
    with _fails_at_once_on_bad_input():
        key = context.partition_key
        median = _read(data_store, key, MEDIAN_FILE)
        hand_edits = _hand_edits(config, data_store.layout.flatfield_file(key, EDITS_FILE))
        source = _source_record(data_store, key)
        dark = _source_dark_structure(data_store, key, source)
        black_level = config.black_level
        if dark is not None and black_level is None:
            black_level = float(np.mean(dark[1]["pedestals"]))
        with _open_source(data_store, key, source) as video:
            if video.n_frames < 2:
                raise ValueError(
                    f"{key}: the video has {video.n_frames} frame. Dust is told from the scene "
                    "by what stays fixed on the sensor while the target moves, which takes "
                    "several frames; capture a video (hundreds of frames) with the target "
                    "drifting across the sensor."
                )
            if median.shape != video.frames.shape[1:]:
                raise ValueError(
                    f"{key}: ser_median.tiff has shape {median.shape} but the video's frames "
                    f"now have shape {video.frames.shape[1:]}: the file changed after ser_median "
                    "was materialized. Materialize ser_median again, then the assets downstream "
                    "of it."
                )
            color = video.color
            view = luminance_view(median, color)
            cell = median.shape[0] // view.shape[0]
            if min(view.shape) < MIN_MEDIAN_PX:
                raise ValueError(
                    f"{key}: the frames are {median.shape[1]} x {median.shape[0]} px"
                    + (f", searched for dust on their {cell} x {cell} px colour cells" * (cell > 1))
                    + f"; dust detection needs at least {MIN_MEDIAN_PX * cell} x "
                    f"{MIN_MEDIAN_PX * cell} px. Capture a larger region of interest."
                )
            configured_detection = params_from_config(config, DustDetectionParams)
            classical = ClassicalImageModel(detection=params_on_view(configured_detection, cell))
            choice = _choose(dust_eye, config, data_store, classical)
            located = choice.model.locate_dust(view)
            # Drift is measured on the luminance views: a colour mosaic's fixed pattern would pull
            # the correlation towards zero shift.
            frames = video.frames if dark is None else DarkSubtractedFrames(video.frames, dark[0])
            luminance_frames = LuminanceVideo(frames, color)
            drift = estimate_drift(
                luminance_frames,
                exclude=located.core,
                max_frames=config.drift_max_frames,
                params=DriftParams(max_closure_px=config.drift_max_closure_px),
                candidates=_frames_with_signal(source, video.n_frames),
            )
            registered = [luminance_frames.window_view(int(i)) for i in drift.frames_used]
            motion_params = params_from_config(config, MotionTestParams)
            if choice.model.backend_name != classical.backend_name:
                # The ratio search is the classical detector's; another eye's answer is only tested.
                motion_params = dataclasses.replace(motion_params, ratio_search=False)
            separated = separate_sensor_fixed(
                located.core,
                view,
                registered,
                drift.shifts,
                params=motion_params,
                detection=classical.detection,
                black_level=black_level,
                registered=drift.registered,
            )
        expansion = params_from_config(config, MaskExpansionParams)
        try:
            edits = edit_core(
                mask_to_full(separated.core, median.shape[:2], color),
                hand_edits["drop_regions_at"],
                hand_edits["add_dust_discs"],
                reach_px=expansion.dilation_px + 3.0 * expansion.feather_sigma_px,
            )
        except ValueError as error:
            if EDITS_FILE not in (hand_edits["source"] or ""):
                raise
            raise ValueError(
                f"{error} These edits were saved in {EDITS_FILE} of this partition by an "
                "earlier run or by hand: fix or delete that file, or give new ones in the run "
                "config (they replace it)."
            ) from None
        core = edits.core
        edited_by_hand = {
            "source": hand_edits["source"],
            "dropped": list(edits.dropped),
            "added": list(edits.added),
        }
        if edits.dropped or edits.added:
            context.log.info(
                f"Edited by hand: {len(edits.dropped)} drop positions took out "
                f"{int(edits.dropped_regions.sum())} core pixels; {len(edits.added)} discs added "
                f"{sum(disc['added_px'] for disc in edits.added)}."
            )
        drift_total_px = cell * float(drift.total_px)
        transparency = _transparency_record(separated, drift)
        dimmed = []
        if transparency["frames_without_signal"]:
            dimmed.append(
                f"frames {transparency['frames_without_signal']} show too little of the target "
                "to register"
            )
        if transparency["frames_left_out"]:
            dimmed.append(
                f"frames {transparency['frames_left_out']} received less than "
                f"{motion_params.min_frame_transparency:g} of the typical frame's light"
            )
        if dimmed:
            context.log.warning(
                f"Of the frames sampled to tell dust from the scene, {' and '.join(dimmed)} "
                "(clouds, a blank frame, an exposure changed during the capture): they were "
                "left out of the comparisons. The median leaves out only frames without "
                "signal (ser_median's min_signal_fraction) and keeps dimmed ones; where many "
                "frames are dimmed, cut them from the video before the run."
            )
        # Numbered as the motion test numbers its verdicts, when it gave one per candidate.
        candidate_labels, candidate_count = label_candidates(located.core)
        labelled = candidate_count == len(separated.verdicts)
        verdicts = separated.verdicts
        if labelled:
            verdicts = _with_hand_drops(
                verdicts, candidate_labels, edits.dropped_regions, median.shape[:2], color
            )
        motion = [_raw_pixels(dataclasses.asdict(v), cell) for v in verdicts]
        rejected = sum(verdict.verdict == SCENE for verdict in verdicts)
        too_shallow = sum(verdict.verdict == SHALLOW for verdict in verdicts)
        undecided = sum(verdict.undecided for verdict in verdicts)
        unconfirmed_dropped = sum(verdict.dropped_undecided for verdict in verdicts)
        if rejected or too_shallow or unconfirmed_dropped:
            context.log.info(
                f"Of {len(verdicts)} candidates, {rejected + too_shallow + unconfirmed_dropped} "
                f"were dropped: {rejected} moved with the scene, {too_shallow} were too shallow "
                f"to correct and {unconfirmed_dropped} could not be shown fixed on the sensor "
                "with keep_undecided off."
            )
        if undecided:
            context.log.warning(
                f"{undecided} of {len(verdicts)} candidates are kept although the "
                "video cannot show them fixed on the sensor (verdicts in motion_test): review "
                "them on the overlay, or set keep_undecided: false to keep only confirmed dust."
            )
        # The shadows found in the ratio that the reviewer dropped are marked as such, like the
        # eye's candidates in ``motion_test``.
        ratio_motion = [_raw_pixels(dataclasses.asdict(v), cell) for v in separated.ratio_verdicts]
        for verdict in ratio_motion:
            if _lies_in(verdict, edits.dropped_regions):
                verdict["verdict"] = DROPPED_BY_HAND + verdict["verdict"]
        ratio_rejected = sum(verdict["verdict"] == SCENE for verdict in ratio_motion)
        new_shadows = set(separated.new_shadows)
        from_ratio = []
        for shadow in separated.ratio_shadows:
            entry = _raw_pixels(dataclasses.asdict(shadow), cell)
            entry["new"] = shadow in new_shadows
            entry["dropped_by_hand"] = _lies_in(entry, edits.dropped_regions)
            from_ratio.append(entry)
        found_in_ratio_kept = sum(e["new"] and not e["dropped_by_hand"] for e in from_ratio)
        mask = expand_mask(core, expansion)
        regions = core_regions(core)
        diameters = [r["equivalent_diameter_px"] for r in regions]
        closure_px = cell * drift.closure_px
        registration_px = cell * drift.binning
        drift_ok, drift_message = drift_verdict(
            drift_total_px,
            diameters,
            registered=drift.registered,
            closure_px=closure_px,
            registration_px=registration_px,
            field_rotated=drift.field_rotated,
            rotation_deg=drift.rotation_deg,
            rotation_px=cell * drift.rotation_px,
        )
        rotation_deg = _finite_or_none(drift.rotation_deg)
        rotation_px = _finite_or_none(cell * drift.rotation_px)
        recorded_closure_px = _finite_or_none(closure_px)
        by_outline = sum(np.isfinite(verdict.outline_fixed) for verdict in verdicts)
        if not drift_ok and by_outline and not (undecided or unconfirmed_dropped):
            context.log.info(
                f"{drift_message} Here the motion test decided every candidate, those too "
                "large for the drift by their outlines as the seeing shook the scene "
                "(outline_fixed in motion_test)."
            )
        elif not drift_ok:
            context.log.warning(drift_message)
        search_skipped = separated.too_little_motion
        cut_as_clean_px = separated.cut_as_clean * cell * cell
        if search_skipped and drift_ok:
            context.log.warning(
                f"Too few frames see behind a shadow (the target moved {drift_total_px:.1f} px "
                f"over {len(drift.frames_used)} registered frames) to search the ratio of the "
                "median to its dust-free prediction: shadows the median alone does not show "
                "(faint ones, those on the target's edge or on a planet's bands) are not "
                "looked for. Review the overlay, or capture more frames with the mount "
                "drifting by a few times the diameter of the largest shadow."
            )
        unsearched = unsearched_fraction(view, classical.detection.dark_fraction)
        if unsearched > UNSEARCHED_WARN_FRACTION and choice.model.backend_name == (
            classical.backend_name
        ):
            context.log.warning(
                f"{unsearched:.0%} of the lit target lies below dark_fraction "
                f"({classical.detection.dark_fraction:g}) of its bright level, where the "
                "classical eye does not look for dust (a terminator, maria, a planet's limb "
                "darkening, a deeply vignetted corner): dust there is neither found nor "
                "corrected. Lower dark_fraction in the dust_mask config to search there."
            )
        cell_mask = mask_to_cells(mask, color)
        guide = inpainting_guide(
            separated, cell_mask, view, params=motion_params, detection=classical.detection
        )
        guide_choice = [_raw_pixels(dataclasses.asdict(r), cell) for r in guide.regions]
        # Measured on the luminance view: a mosaic's cells mix lines of different colours,
        # whose gains the planes cannot be given back.
        sensor_lines = None
        line_sigma = classical.detection.line_defect_sigma
        lines_measured = separated.prediction is not None and cell == 1 and line_sigma is not None
        if lines_measured:
            sensor_lines = sensor_line_gains(
                separated.prediction, cell_mask, threshold_sigma=line_sigma
            )
        layout = data_store.layout
        if config.drop_regions_at is not None or config.add_dust_discs is not None:
            saved = {name: hand_edits[name] for name in _EDIT_FIELDS}
            atomic_write_text(layout.flatfield_file(key, EDITS_FILE), json.dumps(saved, indent=2))
        write_tiff_float32(
            layout.flatfield_file(key, GUIDE_FILE),
            _guide_on_planes(
                separated, guide, frames, drift, median, mask, color, motion_params, classical
            ),
        )
        target = write_tiff_float32(layout.flatfield_file(key, MASK_FILE), mask)
        atomic_write_text(
            layout.flatfield_file(key, MASK_RECORD_FILE),
            json.dumps(
                {
                    "backend": choice.model.backend_name,
                    "requested": choice.requested,
                    "reason": choice.reason,
                    "regions": regions,
                    "drift_total_px": drift_total_px,
                    "drift_registered": drift.registered,
                    "drift_closure_px": recorded_closure_px,
                    "drift_registration_px": registration_px,
                    "drift_highpass_sigma_px": registration_px * drift.highpass_sigma_px,
                    "drift_static_pattern_removed": drift.static_pattern_removed,
                    "drift_exclusion_dropped": drift.exclusion_dropped,
                    "drift_smoothed_for_seeing": drift.smoothed_for_seeing,
                    "drift_rotation_deg": rotation_deg,
                    "drift_rotation_px": rotation_px,
                    "frame_transparency": transparency,
                    "prediction_black_level": separated.black_level,
                    "motion_tested": motion_params.motion_test,
                    "motion_test": motion,
                    "found_in_ratio": from_ratio,
                    "cut_as_clean_px": cut_as_clean_px,
                    "ratio_motion_test": ratio_motion,
                    "inpainting_guide": guide_choice,
                    "line_gains": None if sensor_lines is None else sensor_lines.as_record(),
                    "edited_by_hand": edited_by_hand,
                },
                indent=2,
            ),
        )
        overlay = overlay_mask(to_display_uint8(luminance(median)), mask)
        # Candidates dropped as moving with the scene or by hand, and the parts of kept ones
        # the ratio shows clean, in blue, so that a reviewer sees them too.
        dropped = mask_to_full(located.core & ~separated.tested, median.shape[:2], color)
        dropped |= edits.dropped_regions
        overlay = overlay_mask(overlay, dropped, color=DROPPED_OVERLAY_COLOR)
        # Candidates kept undecided, in yellow: on a tracked video a still sunspot is one.
        if candidate_count and labelled:
            unconfirmed = np.array([False, *(verdict.undecided for verdict in verdicts)])
            undecided_core = mask_to_full(unconfirmed[candidate_labels], median.shape[:2], color)
            overlay = overlay_mask(overlay, undecided_core, color=UNDECIDED_OVERLAY_COLOR)
        quicklook = write_png(layout.flatfield_file(key, "dust_mask_overlay.png"), overlay)
        return dg.MaterializeResult(
            metadata={
                "backend": choice.model.backend_name,
                "backend_requested": choice.requested,
                "backend_reason": choice.reason,
                "region_count": len(regions),
                "core_fraction": float(core.mean()),
                "masked_fraction": float((mask > 0).mean()),
                "regions": _json(regions),
                "drift_total_px": drift_total_px,
                "drift_registered": drift.registered,
                "drift_closure_px": recorded_closure_px,
                "drift_registration_px": registration_px,
                "drift_ok": drift_ok,
                "drift_verdict": drift_message,
                "drift_static_pattern_removed": drift.static_pattern_removed,
                "drift_exclusion_dropped": drift.exclusion_dropped,
                "drift_smoothed_for_seeing": drift.smoothed_for_seeing,
                "drift_rotation_deg": rotation_deg,
                "drift_rotation_px": rotation_px,
                "frame_transparency": _json(transparency),
                "line_defects_found": dg.MetadataValue.json(
                    {
                        "measured": lines_measured,
                        "columns": 0 if sensor_lines is None else sensor_lines.defective_columns,
                        "rows": 0 if sensor_lines is None else sensor_lines.defective_rows,
                    }
                ),
                "moved_with_scene_count": rejected,
                "too_shallow_count": too_shallow,
                "undecided_kept_count": undecided,
                "undecided_dropped_count": unconfirmed_dropped,
                "motion_test": _json(motion),
                "ratio_searched": separated.ratio_searched,
                "ratio_search_skipped_for_motion": search_skipped,
                "unsearched_target_fraction": unsearched,
                "prediction_black_level": separated.black_level,
                "dark_subtracted": dark is not None,
                "ratio_texture_left": _finite_or_none(separated.texture_left),
                "found_in_ratio_count": found_in_ratio_kept,
                "cut_as_clean_px": cut_as_clean_px,
                "found_in_ratio": _json(from_ratio),
                "ratio_moved_with_scene_count": ratio_rejected,
                "ratio_motion_test": _json(ratio_motion),
                "guided_region_count": guide.guided_count,
                "inpainting_guide": _json(guide_choice),
                "model_details": _json(
                    _in_sensor_pixels(located.details, configured_detection, cell)
                ),
                "edited_by_hand": _json(edited_by_hand),
                "expansion": _json(dataclasses.asdict(expansion)),
                "path": path_value(target),
                "overlay_png": path_value(quicklook),
                "preview": dg.MetadataValue.md(
                    thumbnail_markdown(overlay, alt="dust mask over the median")
                ),
            }
        )


_EDIT_FIELDS = ("drop_regions_at", "add_dust_discs")


def _finite_or_none(value: float) -> float | None:
    """``value`` as a float for the metadata, None where it was not measured (NaN)."""
    return float(value) if np.isfinite(value) else None


def _transparency_record(separated: MotionResult, drift: DriftEstimate) -> dict:
    """The frames' transparency as measured for the motion test, by video frame index."""
    measured = separated.transparency
    record: dict = {
        "measured": measured is not None,
        "frames_without_signal": [int(i) for i in drift.frames_without_signal],
        "frames_left_out": [int(drift.frames_used[i]) for i in separated.frames_left_out],
    }
    if measured is not None and measured.measured.any():
        gains = measured.gains[measured.measured]
        record["min_gain"] = float(gains.min())
        record["max_gain"] = float(gains.max())
        record["gains"] = {
            int(index): round(float(gain), 4)
            for index, gain, known in zip(
                drift.frames_used, measured.gains, measured.measured, strict=True
            )
            if known
        }
    return record


def _with_hand_drops(
    verdicts: tuple[MotionVerdict, ...],
    candidate_labels: np.ndarray,
    dropped_regions: np.ndarray,
    shape: tuple[int, int],
    color: str,
) -> tuple[MotionVerdict, ...]:
    """``verdicts``, one per label of ``candidate_labels`` (the eye's candidates numbered by
    ``label_candidates``, on the luminance view's grid), those whose candidate touches a region
    the reviewer dropped (on the raw frames' grid) prefixed with ``DROPPED_BY_HAND``: the check
    and the counts then leave them out of what is kept."""
    if not dropped_regions.any():
        return verdicts
    full = mask_to_full(candidate_labels, shape, color)
    touched = set(np.unique(full[dropped_regions]).tolist())
    return tuple(
        dataclasses.replace(verdict, verdict=DROPPED_BY_HAND + verdict.verdict)
        if label in touched
        else verdict
        for label, verdict in enumerate(verdicts, 1)
    )


def _lies_in(record: dict, region: np.ndarray) -> bool:
    """Whether ``record`` (a verdict or shadow in raw pixels, :func:`_raw_pixels`) lies in
    ``region`` (bool, raw grid) at its pixel nearest its centroid."""
    return bool(region[record["inside_y"], record["inside_x"]])


def _frames_with_signal(source: dict, n_frames: int) -> np.ndarray | None:
    """The frames of the video that ``ser_median`` did not leave out for want of signal
    (``source``, its ``source.json``), or None for all: the drift is measured on a sample of them,
    none spent on a blank frame. Frames between those ``frame_step`` took were not screened and
    stay candidates; the drift measurement screens its samples again."""
    screening = source.get("frames_without_signal") or {}
    left_out = screening.get("frames") or []
    if not left_out:
        return None
    return np.setdiff1d(np.arange(n_frames), left_out)


def _source_dark_structure(
    data_store: DataStore, key: str, source: dict
) -> tuple[np.ndarray, dict] | None:
    """The structure of the master dark ``ser_median`` subtracted from partition ``key``'s
    frames (:func:`_dark_structure`) and what ``source`` (its ``source.json``) records of that
    dark, or None.

    Raises
    ------
    ValueError
        When ``master_dark.fits`` is not the one recorded in ``source.json`` (its checksum).
    """
    recorded = source.get("dark")
    if recorded is None:
        return None
    path = data_store.layout.flatfield_file(key, DARK_FILE)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: materialize ser_median for {key!r} again.")
    dark, _ = read_fits_float32(path)
    if _checksum(dark) != recorded["checksum"]:
        raise ValueError(
            f"{path} is not the master dark ser_median subtracted: materialize ser_median for "
            f"{key!r} again, then the assets downstream of it."
        )
    return _dark_structure(dark, recorded["pedestals"], source["color"]), recorded


def _dark_record(dark: MasterDark, color: str) -> dict[str, object]:
    """What ``source.json`` keeps of the master dark whose structure ``ser_median``
    subtracted: its file, checksum and the pedestal of each colour plane (its median)."""
    return {
        "file": dark.source.name,
        "path": str(dark.source),
        "frames": dark.frames,
        "checksum": _checksum(dark.image),
        "pedestals": [float(np.median(plane)) for plane in split_planes(dark.image, color)],
        **dark.summary.as_dict(),
    }


def _dark_structure(dark: np.ndarray, pedestals: list[float], color: str) -> np.ndarray:
    """The master dark less the pedestal of each colour plane: hot pixels and glow, what a
    single black level leaves in the data. ``ser_median`` and ``dust_mask`` subtract it, so
    the frames keep a uniform pedestal per plane, which the flat's black level removes."""
    return dark - _plane_levels(pedestals, dark.shape, color)


def _plane_levels(levels: list[float], shape: tuple[int, ...], color: str) -> np.ndarray:
    """A float32 image of ``shape`` holding each colour plane's level on its own pixels."""
    planes = split_planes(np.zeros(shape, np.float32), color)
    filled = [np.full(p.shape, level) for p, level in zip(planes, levels, strict=True)]
    return merge_planes(filled, shape, color)


def _hand_edits(config: dg.Config, saved_path: Path) -> dict:
    """The mask edits to apply: each of ``_EDIT_FIELDS`` from the run config where it is set,
    else from ``saved_path`` (a JSON object of those lists, written by an earlier run or by
    hand), else none; ``source`` says where they came from (None when there are none)."""
    saved: dict = {}
    if saved_path.exists():
        try:
            saved = json.loads(saved_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(
                f"{saved_path} is not valid JSON ({error}). Fix it, delete it, or give "
                "drop_regions_at and add_dust_discs in the run config (they replace it)."
            ) from None
        valid = isinstance(saved, dict) and all(
            isinstance(saved.get(name, []), list)
            and all(isinstance(entry, list) for entry in saved.get(name, []))
            for name in _EDIT_FIELDS
        )
        if not valid:
            raise ValueError(
                f"{saved_path} must be a JSON object whose keys drop_regions_at and "
                "add_dust_discs hold lists of [x, y] and [x, y, radius] lists. Fix it, delete "
                "it, or give both in the run config (they replace it)."
            )
    edits: dict = {"source": None}
    sources = set()
    for name in _EDIT_FIELDS:
        given = getattr(config, name)
        edits[name] = saved.get(name, []) if given is None else given
        if edits[name]:
            sources.add("run config" if given is not None else saved_path.name)
    if sources:
        edits["source"] = " and ".join(sorted(sources))
    return edits


def _guide_on_planes(
    separated: MotionResult,
    guide: InpaintingGuide,
    frames,
    drift: DriftEstimate,
    median: np.ndarray,
    mask: np.ndarray,
    color: str,
    params: MotionTestParams,
    classical: ClassicalImageModel,
) -> np.ndarray:
    """The inpainting guide on the median's pixel grid: the luminance's for mono, each colour
    plane's own prediction over the regions the luminance's guides (``motion.plane_guide``)."""
    if color == "MONO":
        return guide.image
    planes = [
        plane_guide(
            separated,
            guide,
            PlaneVideo(frames, drift.frames_used, color, index),
            drift.shifts,
            plane,
            plane_mask,
            offset,
            params=params,
            detection=classical.detection,
        )
        for index, (plane, plane_mask, offset) in enumerate(
            zip(
                split_planes(median, color),
                split_mask(mask, color),
                plane_offsets(color),
                strict=True,
            )
        )
    ]
    return merge_planes(planes, median.shape, color)


def _plane_filler(
    model: ImageModel,
    rest: np.ndarray,
    guided: np.ndarray,
    guide: np.ndarray | None,
    inpainting: InpaintParams,
    results: list,
    black_level: float | None,
) -> Callable[[np.ndarray], np.ndarray]:
    """How one colour plane is filled: the model fills ``rest``, the plane's dust-free
    prediction ``guide`` the ``guided`` regions (``inpaint_guided``'s ``black_level``); each
    model result is appended to ``results``."""

    def fill(source: np.ndarray) -> np.ndarray:
        result = model.inpaint(source, rest)
        results.append(result)
        if not guided.any():
            return result.image
        image = result.image.copy()
        image[guided] = inpaint_guided(source, guided, guide, inpainting, black_level=black_level)[
            guided
        ]
        return image

    return fill


@dg.asset(
    partitions_def=ser_files_partitions,
    group_name="flatfield",
    automation_condition=when_stale,
    deps=[ser_median, dust_mask],
    code_version="3",
    kinds={"numpy", "tiff"},
    pool="gemini",
    retry_policy=EYE_RETRY_POLICY,
)
def inpainted(
    context: dg.AssetExecutionContext,
    config: InpaintedConfig,
    data_store: DataStore,
    dust_eye: DustEye,
) -> dg.MaterializeResult:
    """The median with every masked pixel replaced by an estimate of the dust-free signal.

    Each colour plane is inpainted on its own; outside the mask the median is kept bit for bit.
    The gains of the sensor's defective columns and rows (``line_defects``) are divided out
    of what is filled and multiplied back (``fill_across_line_defects``), so that the flat
    corrects the dust alone.
    Written as ``inpainted.tiff`` (float32, the median's shape).
    """
    with _fails_at_once_on_bad_input():
        key = context.partition_key
        median = _read(data_store, key, MEDIAN_FILE)
        mask = _read(data_store, key, MASK_FILE)
        color = _video_color(data_store, key)
        inpainting = params_from_config(config, InpaintParams)
        classical = ClassicalImageModel(inpainting=inpainting)
        choice = _choose(dust_eye, config, data_store, classical)
        guide_path = data_store.layout.flatfield_file(key, GUIDE_FILE)
        guide = (
            _read(data_store, key, GUIDE_FILE)
            if config.follow_motion and guide_path.exists()
            else None
        )
        median_planes = split_planes(median, color)
        if guide is not None and guide.shape != median.shape:
            raise ValueError(
                f"{key}: {GUIDE_FILE} has shape {guide.shape} but the median {median.shape}: "
                "it was written by an earlier version of dust_mask. Materialize dust_mask "
                "again, then inpainted."
            )
        guide_planes = (
            split_planes(guide, color) if guide is not None else [None] * len(median_planes)
        )
        mask_record = (
            read_mask_record(data_store, key)
            if config.line_defects == "ratio" or guide is not None
            else {}
        )
        recorded_gains = mask_record.get("line_gains")
        measured_gains = None
        if config.line_defects == "ratio" and recorded_gains is not None:
            measured_gains = LineGains.from_record(recorded_gains)
        # The guide is followed above the pedestal where it is lit: a few ADU of its error on
        # the sky beside a limb are tens of per cent of the plain ratio there, which the fill
        # would carry onto the target; and a colour plane's guide (the luminance's scaled to
        # it) is a fixed multiple of the plane only above the pedestal.
        guide_black_level = (
            float(mask_record.get("prediction_black_level") or 0.0) if guide is not None else None
        )
        planes, results, guided_pixels = [], [], 0
        defective_columns = defective_rows = 0
        for plane, plane_mask, own_guide in zip(
            median_planes, split_mask(mask, color), guide_planes, strict=True
        ):
            guided = (
                guided_regions(plane_mask, own_guide)
                if own_guide is not None
                else np.zeros(plane.shape, dtype=bool)
            )
            rest = np.where(guided, 0, plane_mask)
            if config.line_defects == "median":
                gains = median_line_gains(
                    plane,
                    plane_mask,
                    threshold_sigma=config.line_defect_sigma,
                    dark_fraction=inpainting.dark_fraction,
                )
            else:
                gains = measured_gains
                if gains is not None and gains.shape != plane.shape:
                    raise ValueError(
                        f"{key}: dust_mask.json holds line gains measured on a "
                        f"{gains.shape[0]} x {gains.shape[1]} image, but the median's planes "
                        f"are {plane.shape[0]} x {plane.shape[1]}: ser_median changed after "
                        "dust_mask ran. Materialize dust_mask again, then inpainted."
                    )
            image = fill_across_line_defects(
                plane,
                plane_mask,
                _plane_filler(
                    choice.model, rest, guided, own_guide, inpainting, results, guide_black_level
                ),
                gains,
            )
            guided_pixels += int(guided.sum())
            if gains is not None:
                defective_columns += gains.defective_columns
                defective_rows += gains.defective_rows
            planes.append(image)
        image = merge_planes(planes, median.shape, color)
        masked = broadcast_mask(mask > 0, median.shape)
        change = np.abs(image[masked] / np.where(median[masked] != 0, median[masked], 1) - 1)
        target = write_tiff_float32(data_store.layout.flatfield_file(key, INPAINTED_FILE), image)
        return dg.MaterializeResult(
            metadata={
                "backend": choice.model.backend_name,
                "backend_reason": choice.reason,
                "model_details": _json(results[0].details),
                "masked_pixels": int(masked.sum()),
                "guided_pixels": guided_pixels,
                "line_defects": config.line_defects,
                "line_defects_divided_out": dg.MetadataValue.json(
                    {"columns": defective_columns, "rows": defective_rows}
                ),
                "median_relative_change_in_mask": float(np.median(change)) if change.size else 0.0,
                "max_relative_change_in_mask": float(change.max()) if change.size else 0.0,
                **image_statistics(image),
                "path": path_value(target),
                "preview": preview(image, alt="inpainted median"),
            }
        )


@dg.asset(
    partitions_def=ser_files_partitions,
    group_name="flatfield",
    automation_condition=when_stale,
    deps=[ser_median, dust_mask, inpainted],
    code_version="1",
    kinds={"numpy", "tiff"},
)
def matched_inpaint(
    context: dg.AssetExecutionContext, data_store: DataStore
) -> dg.MaterializeResult:
    """The inpainted image mapped onto the median's intensity distribution on clean pixels.

    A float quantile mapping built only from pixels where the mask is 0, per colour plane,
    removes any global luminance shift of the inference before the flat is formed.
    """
    key = context.partition_key
    median = _read(data_store, key, MEDIAN_FILE)
    mask = _read(data_store, key, MASK_FILE)
    image = _read(data_store, key, INPAINTED_FILE)
    color = _video_color(data_store, key)
    planes = [
        match_histogram(source, reference, plane_mask == 0)
        for source, reference, plane_mask in zip(
            split_planes(image, color),
            split_planes(median, color),
            split_mask(mask, color),
            strict=True,
        )
    ]
    matched = merge_planes(planes, median.shape, color)
    target = write_tiff_float32(data_store.layout.flatfield_file(key, MATCHED_FILE), matched)
    clean = broadcast_mask(mask == 0, median.shape)
    quantiles = [1, 50, 99]
    return dg.MaterializeResult(
        metadata={
            "clean_quantiles_median": _json(np.percentile(median[clean], quantiles).tolist()),
            "clean_quantiles_matched": _json(np.percentile(matched[clean], quantiles).tolist()),
            **image_statistics(matched),
            "path": path_value(target),
            "preview": preview(matched, alt="matched inpaint"),
        }
    )


def _fits_header(
    key: str,
    source: str,
    backend: str,
    black_levels: list[float],
    params: FlatParams,
    dark: dict | None,
) -> dict:
    """The flat's FITS header: its source, the master dark whose structure ``ser_median``
    subtracted (as recorded in ``source.json``, with its pedestal per colour plane,
    ``DARKP1`` ...), the black level per colour plane (``BLACKP1`` ..., ``BLACKLVL`` their
    mean), what the flat applies to (``FLATDOM``) and its parameters."""
    levels = "BLACKLVL" if len(set(black_levels)) == 1 else "BLACKPn"
    header: dict[str, object] = {
        "SRCFILE": source,
        "PARTKEY": key,
        "BACKEND": backend,
        "CODEVER": final_flatfield_code_version(),
        "BLACKLVL": float(np.mean(black_levels)),
        "FLATDOM": f"frame - {levels}",
        "UNITY": "1.0 outside the dust mask",
    }
    for index, level in enumerate(black_levels, start=1):
        header[f"BLACKP{index}"] = float(level)
    if dark is not None:
        header["DARKFILE"] = dark["file"]
        header["DARKNFR"] = dark["frames"]
        header["DARKCRC"] = dark["checksum"]
        for index, level in enumerate(dark["pedestals"], start=1):
            header[f"DARKP{index}"] = float(level)
        header["FLATDOM"] = (
            f"frame - {DARK_FILE}"
            if black_levels == dark["pedestals"]
            else f"frame - {DARK_FILE} + DARKPn - {levels}"
        )
    for name, value in dataclasses.asdict(params).items():
        header[f"FF_{name.upper()}"] = "none" if value is None else value
    return header


def _calibration_levels(
    data_store: DataStore, key: str, header, shape: tuple[int, ...], source: dict
) -> tuple[float | np.ndarray, float | np.ndarray]:
    """``(subtracted, pedestal)`` for ``calibrated_video`` with the flat's FITS ``header`` and
    the video's ``source.json`` (``source``).

    The pedestal is the black level of each colour plane (``BLACKPn``, or ``BLACKLVL`` alone),
    laid out as the frame. What is subtracted before the division is that pedestal, plus the
    master dark's structure above its own pedestals where ``ser_median`` subtracted it
    (``DARKFILE``)."""
    levels = _numbered_keys(header, "BLACKP") or [float(header["BLACKLVL"])]
    black: float | np.ndarray = (
        levels[0] if len(set(levels)) == 1 else _plane_levels(levels, shape, source["color"])
    )
    if "DARKFILE" not in header:
        return black, black
    dark = _source_dark_structure(data_store, key, source)
    if dark is None or dark[0].shape != shape or header.get("DARKCRC") != dark[1]["checksum"]:
        raise ValueError(
            f"the flat of {key} applies after the master dark of {header['DARKFILE']}, which "
            "ser_median no longer subtracts: materialize final_flatfield again."
        )
    return dark[0] + black, black


def _numbered_keys(header, prefix: str) -> list[float]:
    """The values of ``prefix1``, ``prefix2``, ... in a FITS ``header``, up to the first
    missing one."""
    values = []
    while f"{prefix}{len(values) + 1}" in header:
        values.append(float(header[f"{prefix}{len(values) + 1}"]))
    return values


def _checksum(image: np.ndarray) -> int:
    """CRC-32 of ``image``'s float32 values, which binds a flat to its master dark."""
    return zlib.crc32(np.ascontiguousarray(image, dtype=np.float32).tobytes())


SATURATED_WARNING = 0.01
"""``final_flatfield`` warns when more than this share of the target is saturated."""
PEDESTAL_SHARE_WARNING = 0.1
"""``final_flatfield`` warns when the sky's level, left in the flat's ratio, is above this share
of the target's level: the flat then corrects less than 90 % of each shadow's depth."""


def _uncorrected_pedestal_share(median: np.ndarray, params: FlatParams) -> float | None:
    """The sky's level over the target's bright level in the median (H, W), where the flat
    keeps the pedestal in its ratio (``black_level_mode`` none) and the frame has sky to
    measure it on; else None. The flat's ratio ``M / I = (F S + B) / (S + B)`` then shows only
    ``S / (S + B)`` of the shadow's depth, ``1 -`` this share at the target's bright level."""
    if params.black_level_mode != "none":
        return None
    sky = sky_black_level(median, params)
    level = signal_level(median)
    if sky is None or not level > 0:
        return None
    return float(min(max(sky / level, 0.0), 1.0))


def final_flatfield_code_version() -> str:
    """Version of the flat products, recorded in their FITS header (``CODEVER``)."""
    return "3"


@dg.asset(
    partitions_def=ser_files_partitions,
    group_name="flatfield",
    automation_condition=when_stale,
    deps=[ser_median, dust_mask, matched_inpaint],
    code_version=final_flatfield_code_version(),
    kinds={"numpy", "tiff", "fits"},
)
def final_flatfield(
    context: dg.AssetExecutionContext, config: FinalFlatfieldConfig, data_store: DataStore
) -> dg.MaterializeResult:
    """The flat: ``(1 - mask) * 1.0 + mask * ((median - b) / (matched_inpaint - b))``.

    Exactly 1.0 outside the mask, and where the median is too dark to measure or near
    saturation. Written twice: ``final_flatfield.fits`` (float32, unclipped, header records the
    source, backend, parameters, black level and code version) and ``final_flatfield.tiff``
    (uint16, 65535 == 1.0, values above 1.0 clipped) for PixInsight.
    """
    key = context.partition_key
    layout = data_store.layout
    median = _read(data_store, key, MEDIAN_FILE)
    mask = _read(data_store, key, MASK_FILE)
    matched = _read(data_store, key, MATCHED_FILE)
    record = _source_record(data_store, key)
    color = record["color"]
    params = params_from_config(config, FlatParams)
    dark = record.get("dark")
    median_planes = split_planes(median, color)
    plane_params = [params] * len(median_planes)
    black_from_dark = dark is not None and params.black_level_mode == "none"
    if black_from_dark:
        # The frames keep the master dark's pedestal, measured: it is the black level.
        plane_params = [
            dataclasses.replace(params, black_level_mode="value", black_level=pedestal)
            for pedestal in dark["pedestals"]
        ]
    results = synthesize_plane_flats(
        median_planes, split_planes(matched, color), split_mask(mask, color), plane_params
    )
    dark_planes = [
        name
        for name, result in zip(plane_names(color), results, strict=True)
        if result.stats["without_light"]
    ]
    if dark_planes:
        context.log.warning(
            f"colour plane{'s' * (len(dark_planes) > 1)} {', '.join(dark_planes)} of {key} "
            f"hold{'s' * (len(dark_planes) == 1)} less than {params.dark_fraction:.0%} of the "
            "brightest plane's light (a filter passing one colour, such as H-alpha or Ca-K on "
            "a colour camera): their flat is 1.0, as there is no light to measure one with."
        )
    flat = merge_planes([r.flat for r in results], median.shape, color)
    # A plane without light is a near-constant floor, whose top reads as a saturation plateau.
    saturated = max(
        (
            saturated_fraction(plane, params)
            for plane, result in zip(median_planes, results, strict=True)
            if not result.stats["without_light"]
        ),
        default=0.0,
    )
    if saturated > SATURATED_WARNING:
        context.log.warning(
            f"{saturated:.0%} of the target is at its saturation level in the median: the flat "
            "is 1.0 there and the shadows on it are not corrected (nor can any eye see them). "
            "Capture with less exposure or gain."
        )
    median_luminance = luminance(median)
    shares = [
        _uncorrected_pedestal_share(plane, plane_params[0])
        for plane, result in zip(median_planes, results, strict=True)
        if not result.stats["without_light"]
    ]
    pedestal_share = max((share for share in shares if share is not None), default=None)
    if pedestal_share is not None and pedestal_share > PEDESTAL_SHARE_WARNING:
        context.log.warning(
            f"The sky's level is {pedestal_share:.0%} of the target's: with black_level_mode "
            f"none the flat corrects only about {1 - pedestal_share:.0%} of each shadow's depth "
            "(the pedestal is not dimmed by dust). Give ser_median a dark_video, or set "
            "black_level_mode: sky, or value with the level of a dark frame, and subtract "
            "what FLATDOM (in the FITS header) names before dividing; calibrated_video does."
        )
    backend_name = read_mask_record(data_store, key)["backend"]
    black_levels = [float(r.black_level) for r in results]
    fits_path = write_fits_float32(
        layout.flatfield_file(key, FLAT_FITS_FILE),
        flat,
        _fits_header(key, record["source"], backend_name, black_levels, params, dark),
    )
    tiff_path, clipped = write_tiff_uint16_unity(layout.flatfield_file(key, FLAT_TIFF_FILE), flat)
    corrected = median / flat
    before_after = np.concatenate(
        [to_display_uint8(median_luminance), to_display_uint8(luminance(corrected))], axis=1
    )
    quicklook = write_png(layout.flatfield_file(key, "before_after.png"), before_after)
    masked = broadcast_mask(mask > 0, flat.shape)
    inside = flat[masked]
    return dg.MaterializeResult(
        metadata={
            "backend": backend_name,
            "black_level": float(np.mean(black_levels)),
            "black_levels_per_plane": _json(black_levels),
            "dark_subtracted": "none" if dark is None else dark["file"],
            "black_level_source": (
                "the master dark's pedestal" if black_from_dark else params.black_level_mode
            ),
            "uncorrected_pedestal_share": pedestal_share,
            "planes_without_light": _json(dark_planes),
            "saturated_target_fraction": saturated,
            "clipped_fraction_uint16": float(clipped),
            "masked_fraction": float(masked.mean()),
            "forced_unity_pixels": int(sum(int(r.forced_unity.sum()) for r in results)),
            "flat_min_in_mask": float(inside.min()) if inside.size else 1.0,
            "flat_max_in_mask": float(inside.max()) if inside.size else 1.0,
            "flat_mean_in_mask": float(inside.mean()) if inside.size else 1.0,
            "fraction_above_one_in_mask": float((inside > 1).mean()) if inside.size else 0.0,
            "parameters": _json(dataclasses.asdict(params)),
            "plane_stats": _json([r.stats for r in results]),
            "fits": path_value(fits_path),
            "tiff": path_value(tiff_path),
            "before_after_png": path_value(quicklook),
            "preview": dg.MetadataValue.md(
                thumbnail_markdown(before_after, max_size=512, alt="median before / after the flat")
            ),
        }
    )


def _calibrated_depth(video: SerVideo) -> int:
    """Bits of the calibrated video's values: the range its values are clipped to and the
    ``PixelDepthPerPlane`` written.

    Data stored shifted up (``msb``: 12-bit values times 16, as most capture programs write
    them) or filling its container span the whole container, whatever the header's depth says,
    and divided by a flat they are no longer multiples of the shift: all the container's bits.
    So do data whose alignment the sampled values cannot tell (``undetermined``): the
    container's range clips nothing, whichever they are. Data stored from the lowest bit keep
    the header's depth, or the bits they were measured to use where the header claims fewer.
    """
    container = 8 * video.frames.dtype.itemsize
    if video.bit_alignment != "lsb":
        return container
    return min(container, max(video.header.pixel_depth, video.significant_bits))


CALIBRATED_CLIPPED_WARNING = 0.01
"""``calibrated_video``'s check warns when more than this share of the values the flat corrects
were clipped to the output's range."""

CALIBRATED_WITHIN_RANGE = "calibrated_video_within_range"


@dg.asset(
    partitions_def=ser_files_partitions,
    group_name="flatfield",
    automation_condition=when_stale,
    deps=[final_flatfield],
    code_version="4",
    kinds={"ser"},
    check_specs=[
        dg.AssetCheckSpec(
            CALIBRATED_WITHIN_RANGE,
            asset="calibrated_video",
            description="At most 1 % of the values the flat corrects (where it is not 1.0) "
            "were clipped to the range of the output's integers. More means the flat divided "
            "bright data by too little: frames near saturation, or a flat too low (a mask over "
            "a scene feature, a black level above the signal).",
        )
    ],
)
def calibrated_video(
    context: dg.AssetExecutionContext, data_store: DataStore
) -> dg.MaterializeResult:
    """Every raw frame divided by the flat, in the input's format: ``calibrated.ser``.

    ``calibrated = (frame - b) / flat + p`` with the black level ``b`` recorded in the flat's
    FITS header (and the master dark's structure, where one was subtracted) and the pedestal
    ``p`` the black level itself: the flat divides the light alone, the sky keeps its raw
    level instead of being clipped around 0, and a pixel outside the dust is the raw one (less
    the dark's structure). Rounded to the input's integer type and clipped to its range (the
    clipped count is reported), which for data stored shifted up is the container's
    (:func:`_calibrated_depth`). Streamed frame by frame, so memory stays bounded whatever the
    video's length.
    """
    key = context.partition_key
    layout = data_store.layout
    flat, header = read_fits_float32(layout.flatfield_file(key, FLAT_FITS_FILE))
    header_flat_domain = header.get("FLATDOM", "frame - BLACKLVL")
    source = _source_record(data_store, key)
    black_level, pedestal = _calibration_levels(data_store, key, header, flat.shape, source)
    with _open_source(data_store, key, source) as video:
        dtype = video.frames.dtype
        depth = _calibrated_depth(video)
        max_value = (1 << depth) - 1
        calibrate = IntegerCalibrator(flat, black_level, dtype, max_value, pedestal)
        header = video.header
        target = write_ser(
            layout.flatfield_file(key, CALIBRATED_FILE),
            computed_ahead(calibrate, video.frames),
            color=video.color,
            depth=depth,
            byte_order="<",
            timestamps=video.timestamps,
            file_id="LUCAM-RECORDER",
            observer=header.observer,
            instrument=header.instrument,
            telescope=header.telescope,
            date_local=header.date_local,
            date_utc=header.date_utc,
        )
        n_frames = video.n_frames
    corrected_values = n_frames * int(np.count_nonzero(flat != 1.0))
    clipped_share = calibrate.clipped_pixels / max(corrected_values, 1)
    within_range = clipped_share <= CALIBRATED_CLIPPED_WARNING
    description = (
        f"{calibrate.clipped_pixels} values were clipped to 0 or {max_value}, "
        f"{clipped_share:.2%} of the {corrected_values} the flat corrects."
    )
    if not within_range:
        description += (
            " Those values of calibrated.ser are not calibrated. Look at final_flatfield's "
            "flat_min_in_mask and saturated_target_fraction: frames near saturation, a mask "
            "over a bright scene feature (drop it with drop_regions_at), or a black level "
            "above the sky's."
        )
    return dg.MaterializeResult(
        metadata={
            "frames": n_frames,
            "black_level_removed": str(header_flat_domain).removeprefix("frame - "),
            "black_level_removed_median": float(np.median(black_level)),
            "pedestal_added_median": float(np.median(pedestal)),
            "clipped_pixels": calibrate.clipped_pixels,
            "clipped_share_of_corrected": clipped_share,
            "path": path_value(target),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=CALIBRATED_WITHIN_RANGE,
                passed=within_range,
                severity=dg.AssetCheckSeverity.WARN,
                description=description,
                metadata={
                    "clipped_values": calibrate.clipped_pixels,
                    "corrected_values": corrected_values,
                    "clipped_share": clipped_share,
                    "max_share": CALIBRATED_CLIPPED_WARNING,
                },
            )
        ],
    )
