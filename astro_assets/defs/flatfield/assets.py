"""The flat-field asset graph, one partition per SER video."""

from typing import Literal

import dagster as dg
import numpy as np

from astro_assets.defs.flatfield.partitions import ser_files_partitions
from astro_assets.defs.previews import image_statistics, path_value, preview
from astro_assets.io.discovery import find_ser_for_key
from astro_assets.io.images import write_tiff_float32
from astro_assets.io.ser import SerVideo, open_ser
from astro_assets.resources.storage import DataStore
from astro_assets.science.flatfield.median import temporal_median

BYTE_ORDERS = {"auto": None, "little": "<", "big": ">"}


class SerMedianConfig(dg.Config):
    """How the temporal median is computed."""

    memory_budget_mb: float = 256.0
    frame_step: int = 1
    byte_order: Literal["auto", "little", "big"] = "auto"


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


@dg.asset(
    partitions_def=ser_files_partitions,
    group_name="flatfield",
    code_version="1",
    kinds={"numpy", "tiff"},
)
def ser_median(
    context: dg.AssetExecutionContext, config: SerMedianConfig, data_store: DataStore
) -> dg.MaterializeResult:
    """Exact per-pixel temporal median of the video: everything fixed on the sensor survives.

    Written as ``data/flatfield/<key>/ser_median.tiff`` (float32, (H, W) for mono and raw CFA
    mosaics, (H, W, 3) RGB for colour videos) in the video's ADU.
    """
    layout = data_store.layout
    key = context.partition_key
    source = find_ser_for_key(layout.incoming_ser, key)
    with open_ser(source, byte_order=BYTE_ORDERS[config.byte_order]) as video:
        frames_used = len(range(0, video.n_frames, config.frame_step))
        median = temporal_median(
            video.frames, memory_budget_mb=config.memory_budget_mb, frame_step=config.frame_step
        )
        metadata = header_metadata(video)
    for warning in metadata["warnings"].value:
        context.log.warning(f"{source.name}: {warning}")
    target = write_tiff_float32(layout.flatfield_file(key, "ser_median.tiff"), median)
    return dg.MaterializeResult(
        metadata={
            **metadata,
            "frames_used": frames_used,
            "frame_step": config.frame_step,
            **image_statistics(median),
            "path": path_value(target),
            "preview": preview(median, alt="temporal median"),
        }
    )
