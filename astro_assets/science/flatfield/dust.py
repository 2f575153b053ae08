"""Classical detection of dust shadows in the temporal median of a video.

Method (all thresholds are in units of noise measured on the image itself, all sizes relative to
the matched-filter bank, so nothing is tuned to a particular video):

1. **Usable pixels.** The on-target region is where the median is brighter than a fraction of its
   bright level; small dark holes inside it (opaque dust) are filled back, the sky and a thin
   band along the limb are left out, as are saturated pixels. When an ellipse (or circle) fits
   the target's edge, the limb is known geometrically: the limb-darkened rim is usable down to
   the limb level and dark notches well inside the fitted limb count as holes.
2. **Background.** A local regression (normalized convolution with a Gaussian window) over the
   usable pixels only, of a quadratic surface plus ``mu``, the limb-darkening coordinate of
   the fitted limb: it follows vignetting and limb darkening to the limb (also where the limb
   runs just outside the frame) and never mixes sky into the disc. It is re-estimated with the
   dark (and bright) outliers and the first-pass detections left out, so dust does not pull
   the background down.
3. **Relative deficit** ``D = 1 - M / B`` and its robust noise (MAD).
4. **Matched filters.** A bank of zero-mean disc and annulus filters (disc mean minus the mean of
   a surrounding ring; annulus mean minus the mean of hole and ring), radii about 5-75 px in
   steps of sqrt(2), computed by FFT on a pyramid (large radii on binned images). Each response
   is divided by its local noise: its robust spread in tiles many filter diameters wide, split
   into bands of distance to the limb (never below the spread over the whole image). The
   texture left in the median is far from uniform: where the target drifted across its own
   limb the median keeps the texture of a few frames only. A tile or band half covered by the
   responses of shadows (or other strong features) is not measured on its own.
5. **Hysteresis** on the maximum significance (seed ~5 sigma, grow ~2.5 sigma) gives candidates.
6. **Shape.** Each local maximum above the seed level (strongest first; two close shadows can
   share one grown region) is segmented on the pixel deficit, smoothed only as much as its
   signal-to-noise ratio needs, down to the larger of the grow level and a tenth of its
   plateau; donut holes are filled, and candidates with too little pixel-level evidence (hot
   or cold pixels) or that violate the shape priors (solidity, elongation) are dropped.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import scipy.fft
from scipy import ndimage
from skimage.measure import regionprops
from skimage.morphology import convex_hull_image

from astro_assets.science.compiled import compiled
from astro_assets.science.flatfield.levels import target_level
from astro_assets.science.flatfield.limb import fit_limb, limb_radius_px
from astro_assets.science.flatfield.regions import fill_holes, grown_box, regions_touching
from astro_assets.science.flatfield.stacks import finite_median
from astro_assets.science.threads import in_threads, worker_count

__all__ = [
    "DustDetection",
    "DustDetectionParams",
    "DustRegion",
    "LineGains",
    "MaskExpansionParams",
    "detect_dust",
    "expand_mask",
    "line_gains",
    "remove_line_defects",
    "robust_sigma",
]

_MAD_TO_SIGMA = 1.4826
_ROBUST_SAMPLE = 200_000
_MIN_COVERAGE = 0.5
"""A filter response is kept where at least this fraction of its disc and of its ring is usable."""
_NOISE_TILE_RADII = 8
"""Side of the tiles in which the local noise of a filter response is measured, in radii."""
_OUTLINE_FRACTION = 0.1
"""The outline of a shadow is where its deficit falls to this fraction of its plateau."""
_NOISE_BANDS = (1.0, 2.0, 4.0, 8.0)
"""Bands of distance to unusable pixels, in filter radii, in which noise is measured apart."""
_THIN_NOISE_BANDS = 2
"""The first bands of ``_NOISE_BANDS``, one filter radius wide: along a straight edge a tile
holds too few of their samples, and their noise falls back on the band's over the frame."""
_SMOOTHING_STEPS_PX = (0.0, 0.7, 1.4, 2.8, 5.6, 11.2)
"""Gaussian scales tried, smallest first, when segmenting a candidate on the pixel deficit."""
_SKIRT_RADII = 0.5
"""A wide candidate is left out of the next background fit with the dark pixels within this
fraction of the radius of its strongest wide filter (see ``_first_pass_regions``)."""
_WIDE_SEED_FRACTION = 0.8
"""A first-pass region whose filters as wide as the background reach this fraction of
``seed_sigma`` is left out of the next background fit (see ``_first_pass_regions``)."""
_WIDE_PEAK_FRACTION = 0.8
"""A first-pass region counts as wide when a filter as wide as the background reaches this
fraction of its peak significance (see ``_first_pass_regions``)."""

_LINE_NEIGHBOURS = 7
"""Width of the window of lines a row or column is compared with: the median of the three on
each side, from which a defect up to 3 px wide stands out."""
_LINE_SAMPLES = 512
"""At most this many pixels of a line (a regular subsample) measure its level."""
_MIN_LINE_SAMPLES = 32
"""A line with fewer usable pixels among those sampled is not judged."""
_MEDIAN_EFFICIENCY = 1.2533
"""Noise of the median of n Gaussian values over that of their mean (sqrt(pi / 2))."""


@dataclass(frozen=True)
class DustDetectionParams:
    """Parameters of :func:`detect_dust`.

    Attributes
    ----------
    background_sigma_px : float
        Gaussian scale of the local quadratic background fit, clipped to a sixth of the shorter
        frame side but kept at least 3/4 of the largest filter radius (detected dust is left out
        of the second fit, so the background is interpolated across it from its surroundings;
        of a shadow whose radius reaches this scale, so are the dark pixels of its rim).
    min_radius_px, max_radius_px : float
        Range of the matched-filter bank (shadow radii), in steps of sqrt(2). ``max_radius_px``
        is clipped to a sixth of the shorter frame side.
    annulus_hole_fraction : float
        Inner/outer radius of the annulus filters (telescope central obstruction, about 0.3-0.4).
    seed_sigma, grow_sigma : float
        Hysteresis thresholds on the matched-filter significance, in units of its robust noise.
    outlier_sigma : float
        Pixels whose deficit exceeds this many sigma (either sign) are left out of the
        background fit.
    dark_fraction : float
        Pixels darker than this fraction of the bright level (``levels.target_level``) are not used
        (sky, and the steep outer edge of the limb), unless they form a hole inside the target
        (or, with a fitted limb, a notch well inside it) no larger than the largest dust disc
        (an opaque shadow).
    limb_fraction : float
        The edge of the target (the limb) is where the median falls below this fraction of the
        bright level; the limb ellipse is fitted to that edge and the background model follows
        limb darkening with ``mu`` of the fitted limb.
    limb_margin_px : float
        Band along the edge of the target excluded from detection: limb darkening is steepest
        there and seeing blurs it.
    saturation_level : float or None
        Clip level of the data; pixels at or above it are unusable. None: the maximum of the
        median counts as a clip level when at least 0.1 % of the pixels share it.
    min_depth : float
        Smallest relative deficit of a shadow's plateau (the 90th percentile over its peak
        area) that is outlined. In a median of hundreds of frames the noise can be a few 1e-4,
        where the background model's own residues (limb darkening, vignetting it does not quite
        follow) stand out at the seed level; an inpainted flat is accurate to 1-3 % rms, so
        correcting a shallower shadow would add more error than it removes. In [0, 1).
    min_area_px : float
        Smallest shadow kept, counted in pixels whose own deficit exceeds the grow level (20 px:
        about 5 px across); smaller components cannot be told from clusters of cold pixels or
        noise.
    min_solidity : float
        Smallest area / convex-hull area (dust shadows are discs and donuts: about 1 once holes
        are filled), measured on the outline closed at a tenth of the region's radius, since
        a faint shadow's outline is ragged at the scale of the noise.
    max_elongation : float
        Largest major/minor axis ratio. A shadow is an image of the round aperture (ratio ~1;
        a shadow cut in half by the frame edge reaches ~1.9); limb arcs, filaments and noise
        fragments are elongated.
    n_iterations : int
        Background/detection passes (2: the second pass excludes what the first found).
    line_defect_sigma : float or None
        A row or column whose deficit departs from that of the lines beside it by more than
        this many times its own noise, along its whole length, is a sensor line defect (a
        column of lower gain, a hot or cold row; fixed on the sensor like dust, but no dust)
        and its departure is removed from the deficit before the search
        (:func:`remove_line_defects`). Otherwise the hysteresis runs along it and joins the
        shadows it crosses into one shape, which is then declined as not round. None keeps
        such lines. ``dust_mask`` measures the lines' gains at the same threshold on the ratio
        to the dust-free prediction (``motion.sensor_line_gains``), for ``inpainted``.
    """

    background_sigma_px: float = 48.0
    min_radius_px: float = 5.0
    max_radius_px: float = 75.0
    annulus_hole_fraction: float = 0.4
    seed_sigma: float = 5.0
    grow_sigma: float = 2.5
    outlier_sigma: float = 3.0
    dark_fraction: float = 0.4
    limb_fraction: float = 0.15
    limb_margin_px: float = 4.0
    saturation_level: float | None = None
    min_depth: float = 0.005
    min_area_px: float = 20.0
    min_solidity: float = 0.7
    max_elongation: float = 2.0
    n_iterations: int = 2
    line_defect_sigma: float | None = 5.0

    def __post_init__(self) -> None:
        positive = ("background_sigma_px", "min_radius_px", "max_radius_px", "seed_sigma")
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"DustDetectionParams.{name} must be > 0, got {value}.")
        if self.max_radius_px < self.min_radius_px:
            raise ValueError(
                f"max_radius_px ({self.max_radius_px}) must be >= min_radius_px "
                f"({self.min_radius_px})."
            )
        if not 0.0 < self.annulus_hole_fraction < 1.0:
            raise ValueError(
                f"annulus_hole_fraction must lie in (0, 1), got {self.annulus_hole_fraction}."
            )
        if not 0.0 < self.grow_sigma <= self.seed_sigma:
            raise ValueError(
                f"grow_sigma must lie in (0, seed_sigma={self.seed_sigma}], got {self.grow_sigma}."
            )
        if not self.outlier_sigma > 0:
            raise ValueError(f"outlier_sigma must be > 0, got {self.outlier_sigma}.")
        if not 0.0 <= self.dark_fraction < 1.0:
            raise ValueError(f"dark_fraction must lie in [0, 1), got {self.dark_fraction}.")
        if not 0.0 <= self.limb_fraction <= self.dark_fraction:
            raise ValueError(
                f"limb_fraction must lie in [0, dark_fraction={self.dark_fraction}], got "
                f"{self.limb_fraction}."
            )
        if not self.limb_margin_px >= 0:
            raise ValueError(f"limb_margin_px must be >= 0, got {self.limb_margin_px}.")
        if not 0.0 <= self.min_depth < 1.0:
            raise ValueError(f"min_depth must lie in [0, 1), got {self.min_depth}.")
        if self.min_area_px < 1:
            raise ValueError(f"min_area_px must be >= 1, got {self.min_area_px}.")
        if not 0.0 <= self.min_solidity <= 1.0:
            raise ValueError(f"min_solidity must lie in [0, 1], got {self.min_solidity}.")
        if not self.max_elongation >= 1.0:
            raise ValueError(f"max_elongation must be >= 1, got {self.max_elongation}.")
        if self.n_iterations < 1:
            raise ValueError(f"n_iterations must be >= 1, got {self.n_iterations}.")
        if self.line_defect_sigma is not None and not self.line_defect_sigma > 0:
            raise ValueError(
                f"line_defect_sigma must be > 0 or None, got {self.line_defect_sigma}."
            )


def params_on_view(params: DustDetectionParams, cell_px: int) -> DustDetectionParams:
    """``params`` for a view of the frames whose pixels are ``cell_px`` sensor pixels across.

    The sizes a user configures count sensor pixels, as dust's do on any camera; a colour
    mosaic is searched on its 2 x 2 cells, where the same shadow is half as wide.

    Parameters
    ----------
    params : DustDetectionParams
        Sizes in sensor pixels.
    cell_px : int
        Sensor pixels per view pixel along each axis (2 for a colour mosaic, else 1).

    Returns
    -------
    DustDetectionParams
        Lengths divided by ``cell_px`` and ``min_area_px`` by its square (at least 1); the
        other fields unchanged.
    """
    if cell_px == 1:
        return params
    return replace(
        params,
        background_sigma_px=params.background_sigma_px / cell_px,
        min_radius_px=params.min_radius_px / cell_px,
        max_radius_px=params.max_radius_px / cell_px,
        limb_margin_px=params.limb_margin_px / cell_px,
        min_area_px=max(1.0, params.min_area_px / cell_px**2),
    )


@dataclass(frozen=True)
class DustRegion:
    """One detected dust shadow.

    Attributes
    ----------
    label : int
        1-based label, in order of decreasing significance.
    centroid_y, centroid_x : float
        Centroid in pixels (row, column).
    area_px : int
        Pixels in the core mask (holes filled).
    equivalent_diameter_px : float
        Diameter of the disc with the same area.
    mean_deficit, peak_deficit : float
        Mean and 99th-percentile relative deficit ``1 - M / B`` over the region.
    significance : float
        Peak matched-filter significance (robust sigmas).
    solidity, elongation : float
        Area over convex-hull area (of the outline closed at a tenth of the radius); major over
        minor axis length.
    kind : str
        ``"donut"`` when the central part is clearly lighter than the ring, else ``"disc"``.
    best_radius_px : float
        Radius of the filter that responded most.
    """

    label: int
    centroid_y: float
    centroid_x: float
    area_px: int
    equivalent_diameter_px: float
    mean_deficit: float
    peak_deficit: float
    significance: float
    solidity: float
    elongation: float
    kind: str
    best_radius_px: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-serializable fields."""
        return asdict(self)


@dataclass(frozen=True)
class DustDetection:
    """Result of :func:`detect_dust`.

    Attributes
    ----------
    core : np.ndarray
        (H, W) bool, the binary dust core (holes filled), before expansion and feathering.
    deficit : np.ndarray
        (H, W) float32 relative deficit ``D = 1 - M / B``; 0 where not usable.
    background : np.ndarray
        (H, W) float32 background ``B`` in the median's units (the median where not usable).
    valid : np.ndarray
        (H, W) bool usable on-target pixels (not sky/off-disc, not the limb band, not saturated).
    significance : np.ndarray
        (H, W) float32 maximum matched-filter significance (robust sigmas).
    noise_sigma : float
        Robust (MAD) standard deviation of the deficit over usable pixels.
    regions : tuple of DustRegion
        The detected shadows, most significant first.
    params : DustDetectionParams
        The parameters used.
    radii_px : tuple of float
        The filter radii actually used (after clipping to the frame).
    """

    core: np.ndarray
    deficit: np.ndarray
    background: np.ndarray
    valid: np.ndarray
    significance: np.ndarray
    noise_sigma: float
    regions: tuple[DustRegion, ...]
    params: DustDetectionParams
    radii_px: tuple[float, ...]

    def summary(self) -> dict[str, Any]:
        """JSON-serializable facts for asset metadata."""
        return {
            "n_regions": len(self.regions),
            "core_fraction": float(np.mean(self.core)),
            "valid_fraction": float(np.mean(self.valid)),
            "noise_sigma": self.noise_sigma,
            "radii_px": [round(r, 2) for r in self.radii_px],
            "regions": [region.as_dict() for region in self.regions],
            "params": asdict(self.params),
        }


def robust_sigma(values: np.ndarray) -> float:
    """Standard deviation estimated from the median absolute deviation (1.4826 * MAD)."""
    data = np.asarray(values).ravel()
    if data.size == 0:
        return 0.0
    # A regular subsample of at most ~2e5 values estimates the spread to well under 1 %; only
    # the subsample is converted to float64.
    return _mad_sigma(data[:: max(1, data.size // _ROBUST_SAMPLE)])


def _mad_sigma(sample: np.ndarray) -> float:
    data = np.asarray(sample, dtype=np.float64)
    return float(_MAD_TO_SIGMA * np.median(np.abs(data - np.median(data))))


def _robust_sigma_where(values: np.ndarray, where: np.ndarray) -> float:
    """``robust_sigma(values[where])`` for (H, W) arrays, without the copy of ``values[where]``:
    the same regular subsample, gathered in one compiled pass."""
    count = int(np.count_nonzero(where))
    if count == 0:
        return 0.0
    step = max(1, count // _ROBUST_SAMPLE)
    sample = np.empty(-(-count // step), dtype=values.dtype)
    _gather_every(values, where, step, sample)
    return _mad_sigma(sample)


@compiled
def _gather_every(values, where, step, out):  # pragma: no cover - compiled
    """``out``: every ``step``-th value of ``values`` where ``where``, in row-major order,
    starting with the first."""
    height, width = values.shape
    seen = 0
    filled = 0
    for row in range(height):
        for col in range(width):
            if where[row, col]:
                if seen % step == 0:
                    out[filled] = values[row, col]
                    filled += 1
                seen += 1


_BAND_PIXELS = 1 << 16
"""Pixels per band of rows in which full-frame intermediates are computed."""


def _squared_distance_to_edge(usable: np.ndarray) -> np.ndarray:
    """(H, W) int32 squared distance from each pixel to the nearest unusable pixel or to the
    nearest pixel just outside the frame: the frame's border bounds the usable area as the
    sky and the limb band do."""
    return _squared_distance_to_false(np.pad(usable, 1))[1:-1, 1:-1]


def _band_rows(width: int, multiple: int = 1) -> int:
    """Rows of a band of about ``_BAND_PIXELS`` pixels, a multiple of ``multiple``."""
    return multiple * max(1, _BAND_PIXELS // max(1, width * multiple))


def _squared_distance_to_false(mask: np.ndarray) -> np.ndarray:
    """(H, W) int32 squared Euclidean distance from each pixel to the nearest False of ``mask``.

    The square of ``ndimage.distance_transform_edt(mask)``, exactly (its distances are the
    float64 square roots of these integers), in one int32 image: scipy's transform holds its
    int32 feature transform (two planes) and a float64 copy of it. Where ``mask`` has no
    False, the distance is measured, as scipy measures it, to the pixel just above the
    top-left corner.
    """
    squared = np.empty(mask.shape, dtype=np.int32)
    if mask.all():
        rows = np.arange(1, mask.shape[0] + 1, dtype=np.int32)[:, None]
        cols = np.arange(mask.shape[1], dtype=np.int32)[None, :]
        np.add(rows * rows, cols * cols, out=squared)
    else:
        _squared_distances(np.ascontiguousarray(mask), squared)
    return squared


@compiled
def _squared_distances(mask, out):  # pragma: no cover - compiled
    """Exact squared Euclidean distance transform (Meijster, Roerdink and Hesselink 2000):
    the distance to the nearest False along each column, then per row the lower envelope of
    the parabolas ``(x - u)**2 + g(u)**2``, in integers. ``mask`` must hold a False."""
    height, width = mask.shape
    far = height + width
    for row in range(height):
        for col in range(width):
            if not mask[row, col]:
                out[row, col] = 0
            elif row == 0:
                out[row, col] = far
            else:
                out[row, col] = min(out[row - 1, col] + 1, far)
    for row in range(height - 2, -1, -1):
        for col in range(width):
            below = out[row + 1, col] + 1
            if below < out[row, col]:
                out[row, col] = below
    g = np.empty(width, dtype=np.int64)
    starts = np.empty(width, dtype=np.int64)
    owners = np.empty(width, dtype=np.int64)
    for row in range(height):
        for col in range(width):
            g[col] = out[row, col]
        q = 0
        starts[0] = 0
        owners[0] = 0
        for u in range(1, width):
            while q >= 0:
                owner, start = owners[q], starts[q]
                if (start - owner) ** 2 + g[owner] ** 2 <= (start - u) ** 2 + g[u] ** 2:
                    break
                q -= 1
            if q < 0:
                q = 0
                owners[0] = u
            else:
                owner = owners[q]
                numerator = u * u - owner * owner + g[u] * g[u] - g[owner] * g[owner]
                start = 1 + numerator // (2 * (u - owner))
                if start < width:
                    q += 1
                    owners[q] = u
                    starts[q] = start
        for u in range(width - 1, -1, -1):
            owner = owners[q]
            out[row, u] = (u - owner) ** 2 + g[owner] ** 2
            if u == starts[q]:
                q -= 1


def _beyond(squared: np.ndarray, distance: float) -> np.ndarray:
    """``np.sqrt(squared) > distance`` (bool) for integer squared distances, without a float
    copy: the square root is monotonic, so it is the comparison with the largest integer whose
    float64 square root is at most ``distance``."""
    limit = math.floor(distance * distance) if distance > 0 else -1
    while math.sqrt(limit + 1) <= distance:
        limit += 1
    while limit >= 0 and math.sqrt(limit) > distance:
        limit -= 1
    return squared > limit


MIN_MEDIAN_PX = 8
"""The smallest side, px, of a median the detector searches."""


def _validate_median(median: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, Any]:
    data = np.asarray(median)
    if data.ndim != 2:
        raise ValueError(f"median must be a 2-D (H, W) image, got shape {data.shape}.")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise ValueError(f"median must be real-valued, got dtype {data.dtype}.")
    if min(data.shape) < MIN_MEDIAN_PX:
        raise ValueError(
            f"median {data.shape} is too small; dust detection needs >= "
            f"{MIN_MEDIAN_PX}x{MIN_MEDIAN_PX} px."
        )
    # Checked in the median's own dtype (no float64 copy) unless float64 cannot hold it.
    finite = data if np.can_cast(data.dtype, np.float64) else _as_float64(data)
    if not np.isfinite(finite).all():
        raise ValueError("median contains NaN or inf; replace them (or crop) before detection.")
    user_valid = None
    if valid is not None:
        user_valid = np.asarray(valid)
        if user_valid.shape != data.shape or user_valid.dtype != bool:
            raise ValueError(
                f"valid must be a bool mask of shape {data.shape}, got {user_valid.dtype} "
                f"{user_valid.shape}."
            )
    return data, user_valid


def _usable_pixels(
    median: np.ndarray, params: DustDetectionParams, max_radius: float, user_valid: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Usable pixels, the target's disc (for the limb fit) and the fitted limb, if any.

    Returns ``(usable, disc, normalized_radius)``; ``normalized_radius`` is the ``s`` of
    :func:`~astro_assets.science.flatfield.limb.fit_limb` (1 on the fitted limb) or None when
    no ellipse fits the target's edge.
    """
    data = _as_float64(median)
    level = target_level(data)
    if not level > 0:
        raise ValueError(
            "the median has no positive signal (its bright level is <= 0); nothing to detect dust "
            "on. Check that the video shows the target (not a dark or bias video) and that no "
            "black level or dark took all of its light."
        )
    on_target = data > params.dark_fraction * level
    # The limb itself is where the light falls to the sky, not the conservative usable
    # threshold: limb darkening already dims the edge to ~0.3-0.5.
    lit = data > params.limb_fraction * level
    saturation = params.saturation_level
    if saturation is None:
        peak = float(data.max())
        if np.count_nonzero(data == peak) >= max(2, 1e-3 * data.size):
            saturation = peak
    unsaturated = None if saturation is None else data < saturation
    # Only these masks are needed from the median: the limb fit below holds several float64
    # frames of its own.
    del data
    disc = fill_holes(lit) | on_target
    normalized_radius = None
    if disc.any() and not disc.all():
        # A target in phase has no notches inside its limb to fill: the dark part there is its
        # night side, which this detector's hole rule would take for opaque dust.
        normalized_radius = fit_limb(disc, in_phase=False)
    # Opaque dust is as dark as the sky, but it is a small hole inside the target, not the sky.
    dark_spots = fill_holes(on_target) & ~on_target
    if normalized_radius is not None:
        # With a fitted limb the whole disc is known: its limb-darkened rim is usable down to
        # the limb level, and a dark notch well inside the limb (opaque dust on the limb) is a
        # hole like any other.
        radius_px = limb_radius_px(normalized_radius)
        inside = normalized_radius < 1.0 - (params.limb_margin_px + 1.0) / radius_px
        on_target |= inside & lit
        dark_spots = (dark_spots | inside) & ~on_target
    if dark_spots.any():
        labels, n = ndimage.label(dark_spots)
        sizes = ndimage.sum_labels(dark_spots, labels, index=np.arange(1, n + 1))
        small = np.zeros(n + 1, dtype=bool)
        small[1:] = sizes <= math.pi * (2.0 * max_radius) ** 2
        on_target |= small[labels]
    usable = on_target
    if unsaturated is not None:
        usable = usable & unsaturated
    if params.limb_margin_px > 0 and not usable.all():
        usable = usable & _beyond(_squared_distance_to_false(usable), params.limb_margin_px)
    if user_valid is not None:
        usable = usable & user_valid
    return usable, disc, normalized_radius


_POLY_TERMS = ((0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2))
"""Exponents (of y, of x) of the local quadratic background model."""


def _limb_coordinate(
    on_target: np.ndarray, normalized_radius: np.ndarray | None, sigma: float
) -> np.ndarray | None:
    """Limb-darkening regressor: ``mu = cos(theta)`` on a fitted limb, else a distance proxy.

    Limb darkening is a smooth function of ``mu``, the cosine of the angle between the line of
    sight and the surface normal; for a spherical (or spheroidal) target seen from afar,
    ``mu = sqrt(1 - s**2)`` with ``s`` the normalized radius of the projected disc (an ellipse).
    Every common limb-darkening law is a low-order polynomial in ``mu`` and ``mu**2 = 1 - s**2``
    is a quadratic surface, so ``mu`` plus the quadratic terms of the background model follow
    limb darkening exactly. The limb ellipse (or circle) is fitted to the visible edge of the
    target, so the regressor stays right where the limb runs outside the frame (a close-up
    whose limb only cuts the corners): a distance to the visible sky would be wrong there.

    When no ellipse fits the edge (an irregular target: a terminator, a crescent, a ragged
    crop), ``sqrt(d / sigma)`` with ``d`` the distance to the sky (capped at 3 sigma) stands in:
    near the edge of a round target ``mu ~ sqrt(2 d / R)``. None when there is no sky.
    """
    if on_target.all() or not on_target.any():
        return None
    # Computed in place: one full-frame float64 array at a time.
    if normalized_radius is not None:
        mu = np.square(normalized_radius)
        np.subtract(1.0, mu, out=mu)
        np.clip(mu, 0.0, 1.0, out=mu)
    else:
        mu = np.sqrt(_squared_distance_to_false(on_target), dtype=np.float64)
        np.minimum(mu, 3.0 * sigma, out=mu)
        np.divide(mu, sigma, out=mu)
    return np.sqrt(mu, out=mu)


def _local_background(
    data: np.ndarray, fit_mask: np.ndarray, sigma: float, limb: np.ndarray | None
) -> np.ndarray:
    """Local regression in a Gaussian window over the ``fit_mask`` pixels (bool), evaluated at
    every pixel.

    The model is a quadratic surface (vignetting is one), plus, when the target has an edge in
    the frame, the limb-darkening regressor of ``_limb_coordinate``. This is normalized
    convolution of order 2: it reproduces the model exactly and ignores pixels out of the mask,
    so the sky never leaks into the disc and detected dust never pulls the background down.
    For speed the weighted moments (at exact pixel positions) are summed in blocks of about
    ``sigma / 6`` px, the Gaussian weight is taken per block, the normal equations are solved
    per block, and at each pixel the fits of the nearest blocks are blended bilinearly in
    proportion to the usable pixels each block holds. The moments and the blend are each one
    compiled pass over the image, instead of a product image and a binning per moment (about
    40 full-size numpy passes, 2.5 times the time).
    """
    height, width = data.shape
    factor = max(1, int(sigma / 6.0))
    powers = np.arange(1 + max(max(term) for term in _POLY_TERMS))
    y_powers = ((np.arange(height) - 0.5 * (height - 1)) / sigma)[:, None] ** powers
    x_powers = ((np.arange(width) - 0.5 * (width - 1)) / sigma)[:, None] ** powers
    has_limb = limb is not None
    limb_values = np.ascontiguousarray(limb, dtype=np.float64) if has_limb else np.zeros((1, 1))
    n_terms = len(_POLY_TERMS) + has_limb
    exponents = np.array(_POLY_TERMS, dtype=np.int64)
    # The model's terms and the block size, as both kernels take them.
    model = (y_powers, x_powers, exponents, limb_values, has_limb, factor)
    # The mask goes to the kernel as 0/1 bytes: its weights, without a float64 copy.
    weights = np.ascontiguousarray(fit_mask, dtype=bool).view(np.uint8)
    data = np.ascontiguousarray(data, dtype=np.float64)
    blocks = (-(-height // factor), -(-width // factor))
    n_planes = 1 + n_terms * (n_terms + 1) // 2 + n_terms
    moments = np.zeros((*blocks, n_planes))
    _in_row_bands(
        lambda start, stop: _block_moments(data, weights, *model, start, stop, moments),
        height,
        factor,
    )
    # Every plane smoothed over the blocks in one call: the same 1-D passes plane by plane.
    block_sigma = sigma / factor
    smoothed = ndimage.gaussian_filter(
        moments, (block_sigma, block_sigma, 0.0), mode="constant", truncate=3.5
    )
    moments = np.moveaxis(moments, -1, 0)
    smoothed = np.moveaxis(smoothed, -1, 0)
    total = smoothed[0]
    matrix = np.empty((*total.shape, n_terms, n_terms))
    rhs = np.empty((*total.shape, n_terms))
    plane = 1
    for i in range(n_terms):
        for j in range(i, n_terms):
            matrix[..., i, j] = matrix[..., j, i] = smoothed[plane]
            plane += 1
    for i in range(n_terms):
        rhs[..., i] = smoothed[plane]
        plane += 1
    coefficients = np.full((*total.shape, n_terms), np.nan)
    enough = total > 1e-6 * max(float(total.max()), 1e-300)
    coefficients[enough] = _solve_normal_equations(matrix[enough], rhs[enough])
    # Each pixel blends the fits of the nearest blocks in proportion to the usable pixels the
    # blocks hold: a block over the sky or a masked shadow has only an extrapolated fit.
    support = moments[0]
    filled = np.stack([_fill_nan_nearest(coefficients[..., k]) for k in range(n_terms)])
    result = np.empty((height, width))
    min_support = 1e-9 * max(float(support.max()), 1e-300)
    support = np.ascontiguousarray(support)
    _in_row_bands(
        lambda start, stop: _blend_block_fits(
            filled, support, min_support, *model, start, stop, result
        ),
        height,
        1,
    )
    return result


def _in_row_bands(run: Any, height: int, step: int) -> None:
    """``run(start, stop)`` over one band of rows per core (:func:`worker_count`), the bands
    together covering ``[0, height)``, each in a thread of its own, each band but the last a
    multiple of ``step`` rows. For compiled kernels that release the GIL and write disjoint
    rows (or blocks of ``step`` rows) of their output: the same result as one call over all
    rows."""
    band = step * max(1, -(-height // (step * worker_count())))
    bounds = [(start, min(start + band, height)) for start in range(0, height, band)]
    in_threads(lambda rows: run(*rows), bounds)


@compiled
def _block_moments(
    data, weights, y_powers, x_powers, exponents, limb, has_limb, factor, row_start, row_stop, out
):  # pragma: no cover - compiled
    """Into ``out`` (zeros), per block of ``factor`` x ``factor`` pixels of rows ``[row_start,
    row_stop)`` (``row_start`` a multiple of ``factor``): the sum of the weights, the weighted
    sums of every product of two model terms (upper triangle, row by row), then of every term
    times the data; ``out`` has shape (ceil(H / factor), ceil(W / factor), 1 + n(n+1)/2 + n).
    The polynomial terms are ``y_powers[row, a] * x_powers[col, b]`` for each row ``(a, b)``
    of ``exponents``, then ``limb`` when ``has_limb``."""
    width = data.shape[1]
    n_poly = exponents.shape[0]
    n_terms = n_poly + (1 if has_limb else 0)
    moments = out
    terms = np.empty(n_terms)
    for row in range(row_start, row_stop):
        block_y = row // factor
        for col in range(width):
            weight = weights[row, col]
            if weight == 0.0:
                continue
            sums = moments[block_y, col // factor]
            for k in range(n_poly):
                terms[k] = y_powers[row, exponents[k, 0]] * x_powers[col, exponents[k, 1]]
            if has_limb:
                terms[n_poly] = limb[row, col]
            sums[0] += weight
            plane = 1
            for i in range(n_terms):
                weighted = weight * terms[i]
                for j in range(i, n_terms):
                    sums[plane] += weighted * terms[j]
                    plane += 1
            value = weight * data[row, col]
            for i in range(n_terms):
                sums[plane] += value * terms[i]
                plane += 1


@compiled
def _blend_block_fits(
    coefficients,
    support,
    min_support,
    y_powers,
    x_powers,
    exponents,
    limb,
    has_limb,
    factor,
    row_start,
    row_stop,
    out,
):  # pragma: no cover - compiled
    """Into rows ``[row_start, row_stop)`` of ``out``: the model at every pixel, its
    coefficients blended bilinearly from the block centres (block ``i`` covers pixels ``[i *
    factor, (i + 1) * factor)``, its centre sits at ``(i + 0.5) * factor - 0.5``; edges held
    constant) in proportion to each block's ``support``; where the blended support is below
    ``min_support``, plain bilinear interpolation of the coefficients."""
    n_terms, blocks_y, blocks_x = coefficients.shape
    n_poly = exponents.shape[0]
    width = out.shape[1]
    blended = np.empty(n_terms)
    # Each column's blocks and weight, the same for every row.
    lefts = np.empty(width, dtype=np.int64)
    rights = np.empty(width, dtype=np.int64)
    fxs = np.empty(width)
    for col in range(width):
        position_x = min(max((col + 0.5) / factor - 0.5, 0.0), blocks_x - 1.0)
        lefts[col] = min(int(position_x), blocks_x - 1)
        rights[col] = min(lefts[col] + 1, blocks_x - 1)
        fxs[col] = position_x - lefts[col]
    for row in range(row_start, row_stop):
        position_y = min(max((row + 0.5) / factor - 0.5, 0.0), blocks_y - 1.0)
        top = min(int(position_y), blocks_y - 1)
        bottom = min(top + 1, blocks_y - 1)
        fy = position_y - top
        for col in range(width):
            left = lefts[col]
            right = rights[col]
            fx = fxs[col]
            w00 = (1.0 - fy) * (1.0 - fx)
            w01 = (1.0 - fy) * fx
            w10 = fy * (1.0 - fx)
            w11 = fy * fx
            s00 = w00 * support[top, left]
            s01 = w01 * support[top, right]
            s10 = w10 * support[bottom, left]
            s11 = w11 * support[bottom, right]
            norm = s00 + s01 + s10 + s11
            if norm > min_support:
                for k in range(n_terms):
                    blended[k] = (
                        s00 * coefficients[k, top, left]
                        + s01 * coefficients[k, top, right]
                        + s10 * coefficients[k, bottom, left]
                        + s11 * coefficients[k, bottom, right]
                    ) / norm
            else:
                for k in range(n_terms):
                    blended[k] = (
                        w00 * coefficients[k, top, left]
                        + w01 * coefficients[k, top, right]
                        + w10 * coefficients[k, bottom, left]
                        + w11 * coefficients[k, bottom, right]
                    )
            value = 0.0
            for k in range(n_poly):
                value += (
                    blended[k] * y_powers[row, exponents[k, 0]] * x_powers[col, exponents[k, 1]]
                )
            if has_limb:
                value += blended[n_poly] * limb[row, col]
            out[row, col] = value


def _solve_normal_equations(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Least-squares coefficients from stacked normal equations ``(n, k, k) @ x = (n, k)``.

    The model terms are nearly collinear in many windows (the limb term is smooth far from the
    limb; a one-sided window near the frame edge constrains curvature poorly). The matrices are
    Jacobi-scaled (unit diagonal) and given a ridge of 1e-9, which only damps the numerically
    undetermined directions; a ridge on the raw matrices, large enough to matter there, biases
    the well-determined fit itself by percents next to a limb.
    """
    scale = 1.0 / np.sqrt(np.maximum(np.einsum("nii->ni", matrix), 1e-300))
    scaled = matrix * scale[:, :, None] * scale[:, None, :]
    scaled += 1e-9 * np.eye(matrix.shape[-1])
    solution = np.linalg.solve(scaled, (rhs * scale)[..., None])[..., 0]
    return scale * solution


def _fill_nan_nearest(values: np.ndarray) -> np.ndarray:
    missing = np.isnan(values)
    if not missing.any():
        return values
    if missing.all():
        return np.zeros_like(values)
    _, (near_r, near_c) = ndimage.distance_transform_edt(missing, return_indices=True)
    return values[near_r, near_c]


def _filter_radii(params: DustDetectionParams, shape: tuple[int, int]) -> tuple[float, ...]:
    limit = min(params.max_radius_px, min(shape) / 6.0)
    limit = max(limit, min(params.min_radius_px, min(shape) / 6.0))
    radii = []
    radius = min(params.min_radius_px, limit)
    while radius <= limit * (1 + 1e-9):
        radii.append(radius)
        radius *= math.sqrt(2.0)
    return tuple(radii)


def _disc_kernel(radius: float) -> np.ndarray:
    half = math.ceil(radius + 1)
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    # Anti-aliased disc: pixel coverage approximated by the distance to the rim.
    return np.clip(radius + 0.5 - np.hypot(yy, xx), 0.0, 1.0)


class _Spectra:
    """FFTs of the weighted deficit and of the weights on one binned grid, reused per kernel.

    ``deficit`` must be 0 where not usable: it is then its own weighted deficit.
    """

    def __init__(
        self, deficit: np.ndarray, usable: np.ndarray, factor: int, max_kernel_half: int
    ) -> None:
        weighted = _bin(deficit, factor)
        self.factor = factor
        self.shape = weighted.shape
        self.pad = max_kernel_half
        self.fft_shape = tuple(
            scipy.fft.next_fast_len(n + 2 * max_kernel_half, real=True) for n in self.shape
        )
        # Single precision halves the FFT cost; significances need nowhere near 1e-7. Both
        # images are written into one zero-padded float32 buffer, the padding the FFT would
        # otherwise add to a float32 copy of each.
        padded = np.zeros(self.fft_shape, dtype=np.float32)
        inside = (slice(0, self.shape[0]), slice(0, self.shape[1]))
        padded[inside] = weighted
        del weighted
        self.f_data = scipy.fft.rfft2(padded, workers=-1)
        padded[inside] = _bin(usable, factor, np.float64)
        self.f_weight = scipy.fft.rfft2(padded, workers=-1)

    def correlate(self, kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correlations of the weighted deficit and of the weights with ``kernel``."""
        spectrum = self._kernel_spectrum(kernel)
        data = self._inverse(self.f_data * spectrum, kernel.shape[0] // 2)
        # The kernel's spectrum becomes the second product: one product buffer at a time.
        np.multiply(self.f_weight, spectrum, out=spectrum)
        return data, self._inverse(spectrum, kernel.shape[0] // 2)

    def correlate_one(self, kernel: np.ndarray, *, weights: bool) -> np.ndarray:
        """Correlation of the weights (or of the weighted deficit) alone with ``kernel``.

        The product is formed in the kernel's own spectrum, so while the inverse FFT runs no
        other spectrum is held than the two images'; the price is one more FFT of the kernel
        when both correlations are needed.
        """
        spectrum = self._kernel_spectrum(kernel)
        np.multiply(self.f_weight if weights else self.f_data, spectrum, out=spectrum)
        return self._inverse(spectrum, kernel.shape[0] // 2)

    def _kernel_spectrum(self, kernel: np.ndarray) -> np.ndarray:
        """``scipy.fft.rfft2(kernel, s=fft_shape)`` (float32) to the bit, in its two steps: the
        real transform of the kernel's own rows, then the complex one down the columns. rfft2
        transforms every row of the zero-padded kernel, nearly all of them zeros."""
        rows = scipy.fft.rfft(kernel.astype(np.float32), n=self.fft_shape[1], axis=1, workers=-1)
        spectrum = np.zeros((self.fft_shape[0], rows.shape[1]), dtype=np.complex64)
        spectrum[: rows.shape[0]] = rows
        return scipy.fft.fft(spectrum, axis=0, overwrite_x=True, workers=-1)

    def _inverse(self, product: np.ndarray, half: int) -> np.ndarray:
        """``scipy.fft.irfft2(product)`` on the padded grid (``product`` is overwritten),
        cropped to the binned grid, for a kernel of ``2 * half + 1`` pixels.

        The same arithmetic as irfft2 (pocketfft's: the unscaled complex transform over axis
        0, the real one over axis 1, then one scaling by ``1 / (N0 * N1)`` rounded from long
        double to float32), with the first step in place, where irfft2 allocates a work array
        of the product's size for it, and the second only on the rows kept.
        """
        height, width = self.fft_shape
        product = scipy.fft.ifft(product, axis=0, norm="forward", overwrite_x=True, workers=-1)
        # The kernel is symmetric, so convolution equals correlation; undo its offset.
        kept = product[half : half + self.shape[0]]
        image = scipy.fft.irfft(kept, n=width, axis=1, norm="forward", workers=-1)
        del product, kept
        image *= np.float32(np.longdouble(1) / np.longdouble(height * width))
        return image[:, half : half + self.shape[1]]


def _bin(image: np.ndarray, factor: int, dtype: Any = None) -> np.ndarray:
    """Sums over ``factor`` x ``factor`` blocks, the far edges padded with zeros.

    ``image`` itself for factor 1. Otherwise summed band of rows by band of rows, converted to
    ``dtype`` first when given: neither a padded nor a converted copy of the whole image is
    made, and each block's sum is the one over the whole padded image.
    """
    if factor == 1:
        return image
    width = image.shape[1]
    rows = _band_rows(width, factor)
    bands = []
    for start in range(0, image.shape[0], rows):
        band = image[start : start + rows]
        if dtype is not None:
            band = band.astype(dtype)
        padded = np.pad(band, ((0, (-band.shape[0]) % factor), (0, (-width) % factor)))
        shape = (padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
        bands.append(padded.reshape(shape).sum(axis=(1, 3)))
    return np.concatenate(bands)


def _matched_significance(
    deficit: np.ndarray,
    usable: np.ndarray,
    radii: tuple[float, ...],
    hole_fraction: float,
    *,
    local_noise: bool = True,
    clip_noise: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum significance over the disc and annulus filters, and the radius that gave it.

    Each response is divided by its noise: the larger of its robust spread over the whole
    image and, with ``local_noise``, its local spread (see ``_local_spread``; sigma-clipped
    with ``clip_noise``). ``deficit`` is 0 where not usable.

    Measuring the noise of a response takes about as long as computing it. One worker thread
    measures each response's noise and keeps its significance, in the order of the filters
    (the result is the same to the bit as one step after the other), while this thread
    computes the next responses: the FFTs, the compiled passes and the selections behind the
    noise all release the GIL.

    Memory: besides the results (float32, and a byte per pixel for the best filter until the
    end), the two spectra of the finest grid, at most six float32 images (or complex64
    half-spectra of their size) on the FFT's padded grid: four correlations and two responses,
    or four correlations, a kernel's spectrum and an inverse FFT's output, and at most two
    responses waiting for their noise; with ``local_noise`` also the int32 squared distance to
    unusable pixels and the frame's border.
    """
    shape = deficit.shape
    best = np.zeros(shape, dtype=np.float32)
    # The best filter as its 1-based index in ``radii``: a byte per pixel until the end.
    best_index = np.zeros(shape, dtype=np.uint8)
    squared_edge = _squared_distance_to_edge(usable) if local_noise else None
    spectra = None
    level = None
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=1) as keeper:
        for index, radius in enumerate(radii, start=1):
            factor = 2 ** max(0, math.floor(math.log2(radius / 4.0)))
            r = radius / factor
            if spectra is None or spectra.factor != factor:
                # Radii grow, so the finer grid's spectra are not needed again; dropped before
                # the coarser grid's are made.
                spectra = None
                spectra = _Spectra(deficit, usable, factor, math.ceil(2 * r + 2) + 1)
                if level is not None:
                    while pending:
                        pending.popleft().result()
                    level.merge_into(best, best_index)
                # The best significance and filter among the radii of one binning, on its
                # grid: brought to full resolution once per binning rather than once per filter.
                level = _BinnedBest(factor, spectra.shape, best, best_index)
            noise = _ResponseNoise(
                radius,
                max(16, math.ceil(_NOISE_TILE_RADII * r)),
                None if squared_edge is None else squared_edge[::factor, ::factor],
                clip_noise,
                grid_radius=r,
            )
            s_in, n_in = spectra.correlate(_disc_kernel(r))
            ring_s, ring_n = spectra.correlate(_disc_kernel(2.0 * r))
            disc_area = float(_disc_kernel(r).sum()) * factor**2
            ring_area = float(_disc_kernel(2.0 * r).sum()) * factor**2 - disc_area
            # The correlations are the largest intermediates, so the responses are formed in
            # place, with the float32 operations (in their order) of ``disc = s_in / n_in -
            # ring_s / ring_n`` (the ring's term 0 where it holds under half a usable pixel) and
            # ``annulus = (s_in - s_hole) / (n_in - n_hole) - (ring_s + s_hole) / (ring_n +
            # n_hole)``, every denominator kept at least 1e-12.
            covered = np.empty(s_in.shape, dtype=bool)
            response = np.empty(s_in.shape, dtype=np.float32)
            _disc_response(
                s_in,
                n_in,
                ring_s,
                ring_n,
                np.float32(_MIN_COVERAGE * disc_area),
                np.float32(_MIN_COVERAGE * ring_area),
                covered,
                response,
            )
            _queue_keep(keeper, pending, noise, response, covered, level, index)
            del response
            hole = _disc_kernel(hole_fraction * r)
            s_hole = spectra.correlate_one(hole, weights=False)
            _move_hole(s_hole, ring_s, s_in)
            del s_hole
            n_hole = spectra.correlate_one(hole, weights=True)
            _move_hole(n_hole, ring_n, n_in)
            del n_hole
            _annulus_response(s_in, n_in, ring_s, ring_n)
            del ring_s, ring_n, n_in
            _queue_keep(keeper, pending, noise, s_in, covered, level, index)
            del s_in
        while pending:
            pending.popleft().result()
    if level is not None:
        level.merge_into(best, best_index)
    radius_of = np.array((0.0, *radii), dtype=np.float32)
    return best, radius_of[best_index]


def _queue_keep(
    keeper: ThreadPoolExecutor,
    pending: deque[Future],
    noise: _ResponseNoise,
    response: np.ndarray,
    covered: np.ndarray,
    level: _BinnedBest,
    index: int,
) -> None:
    """Queue ``noise.keep_better(response, covered, level, index)`` on the ``keeper`` thread
    once at most one keep queued before is still ``pending``: at most two responses wait."""
    while len(pending) > 1:
        pending.popleft().result()
    pending.append(keeper.submit(noise.keep_better, response, covered, level, index))


_DENOMINATOR_FLOOR = np.float32(1e-12)


@compiled
def _at_least(value, floor):  # pragma: no cover - compiled
    """``np.maximum(value, floor)`` for scalars: NaN stays NaN."""
    return value if (value >= floor or value != value) else floor


@compiled
def _disc_response(
    s_in, n_in, ring_s, ring_n, disc_floor, ring_floor, covered, response
):  # pragma: no cover - compiled
    """The disc filter's response, in one pass and in float32: ``ring_s`` and ``ring_n`` lose
    the disc's sums (the ring alone remains); ``covered`` where the disc's and the ring's
    weights reach their floors; ``response = s_in / n_in - ring_s / ring_n``, the ring's term
    0 where its weight is at most 0.5."""
    height, width = s_in.shape
    for row in range(height):
        for col in range(width):
            inner_sum = s_in[row, col]
            inner_weight = n_in[row, col]
            outer_sum = ring_s[row, col] - inner_sum
            outer_weight = ring_n[row, col] - inner_weight
            ring_s[row, col] = outer_sum
            ring_n[row, col] = outer_weight
            covered[row, col] = inner_weight >= disc_floor and outer_weight >= ring_floor
            ring_mean = outer_sum / _at_least(outer_weight, _DENOMINATOR_FLOOR)
            if outer_weight <= np.float32(0.5):
                ring_mean = np.float32(0.0)
            response[row, col] = inner_sum / _at_least(inner_weight, _DENOMINATOR_FLOOR) - ring_mean


@compiled
def _move_hole(hole, ring, inner):  # pragma: no cover - compiled
    """The hole's correlation moves from the disc to the ring: ``ring += hole``, ``inner -=
    hole`` (float32)."""
    height, width = hole.shape
    for row in range(height):
        for col in range(width):
            ring[row, col] += hole[row, col]
            inner[row, col] -= hole[row, col]


@compiled
def _annulus_response(s_in, n_in, ring_s, ring_n):  # pragma: no cover - compiled
    """The annulus filter's response into ``s_in``, in float32: ``s_in / n_in - ring_s /
    ring_n``, each weight at least 1e-12."""
    height, width = s_in.shape
    for row in range(height):
        for col in range(width):
            ring_mean = ring_s[row, col] / _at_least(ring_n[row, col], _DENOMINATOR_FLOOR)
            s_in[row, col] = (
                s_in[row, col] / _at_least(n_in[row, col], _DENOMINATOR_FLOOR) - ring_mean
            )


class _BinnedBest:
    """The best significance (float32) and its filter's index (uint8, 0 for none) among the
    filters of one binning ``factor``, on that binning's grid of ``shape``.

    For factor 1 these are the full-resolution results themselves. A binned pixel's
    significance holds for each full-resolution pixel it covers, so taking the best on the
    binned grid and then at full resolution gives what taking each filter's best at full
    resolution gives; ties keep the earlier filter in both.
    """

    def __init__(
        self, factor: int, shape: tuple[int, ...], best: np.ndarray, best_index: np.ndarray
    ) -> None:
        self.factor = factor
        if factor == 1:
            self.best, self.index = best, best_index
        else:
            self.best = np.zeros(shape, dtype=np.float32)
            self.index = np.zeros(shape, dtype=np.uint8)

    def merge_into(self, best: np.ndarray, best_index: np.ndarray) -> None:
        """Where this binning's best beats ``best`` (full resolution), take it and its index."""
        if self.factor > 1:
            _merge_binned_best(self.best, self.index, self.factor, best, best_index)


@compiled
def _merge_binned_best(binned, binned_index, factor, best, best_index):  # pragma: no cover
    """``best`` and ``best_index`` take ``binned`` (and its index) of the block that covers
    each pixel where that is larger."""
    height, width = best.shape
    for row in range(height):
        block_row = row // factor
        for block_col in range(binned.shape[1]):
            value = binned[block_row, block_col]
            index = binned_index[block_row, block_col]
            for col in range(block_col * factor, min((block_col + 1) * factor, width)):
                if value > best[row, col]:
                    best[row, col] = value
                    best_index[row, col] = index


class _ResponseNoise:
    """Noise of the filter responses of one radius, and the best significance kept from them.

    Parameters
    ----------
    radius : float
        Filter radius in full-resolution pixels.
    tile : int
        Side of the local noise tiles, in pixels of the responses' grid.
    squared_edge : np.ndarray or None
        Squared distance to unusable pixels (full-resolution pixels squared) on the responses'
        grid; None: the spread over the whole image only.
    clip : bool
        Whether the local spreads are sigma-clipped (``_grouped_spread``) and the cells
        covered by sources' footprints left to their fallbacks (``_local_spread``).
    grid_radius : float, optional
        Filter radius in pixels of the responses' grid; ``radius`` when None.
    """

    def __init__(
        self,
        radius: float,
        tile: int,
        squared_edge: np.ndarray | None,
        clip: bool,
        grid_radius: float | None = None,
    ) -> None:
        self.tile = tile
        self.squared_edge = squared_edge
        self.clip = clip
        self.grid_radius = float(radius) if grid_radius is None else float(grid_radius)
        # The disc and the annulus share their cells.
        self.cells = (
            None if squared_edge is None else _noise_cells(squared_edge.shape, tile, float(radius))
        )

    def keep_better(
        self, response: np.ndarray, covered: np.ndarray, level: _BinnedBest, index: int
    ) -> None:
        """Where ``response`` over its noise (as float32) beats ``level.best``, on the same
        grid, take it and set ``level.index`` to ``index``. ``response`` is set to 0 where not
        ``covered``."""
        response[~covered] = 0.0
        spread = _robust_sigma_where(response, covered)
        if not spread > 0:
            return
        if self.cells is None:
            # The float32 division of ``response / spread`` with spread a Python float.
            _keep_better_global(response, np.float32(spread), level.best, level.index, index)
            return
        cell_spread = _local_spread(
            response,
            covered,
            self.squared_edge,
            self.tile,
            self.cells,
            clip=self.clip,
            floor=spread,
            grid_radius=self.grid_radius,
        )
        _keep_better_local(
            response,
            self.squared_edge,
            *self.cells,
            cell_spread,
            spread,
            level.best,
            level.index,
            index,
        )


class _NoiseCells(NamedTuple):
    """The noise cell of each pixel of a filter response's grid: square tiles
    numbered row by row, each split into bands of distance to the unusable pixels.

    ``row_offsets`` (H,) and ``col_offsets`` (W,) give each row's and column's part of the cell
    number, ``band_thresholds`` the least squared distance (int) of each band after the first.
    """

    row_offsets: np.ndarray
    col_offsets: np.ndarray
    band_thresholds: np.ndarray


def _noise_cells(shape: tuple[int, ...], tile: int, radius: float) -> _NoiseCells:
    """Cells of ``tile`` x ``tile`` pixels, each split at ``_NOISE_BANDS`` filter radii (of
    ``radius`` pixels) of distance to the unusable pixels and the frame's border: cell
    ``tile_index * n_bands + band``.

    A pixel at squared distance ``d2`` lies at or beyond a band's edge when ``sqrt(d2) /
    radius >= edge`` in float64. That test only grows with ``d2``, so each edge is the least
    integer ``d2`` passing it, found with that same arithmetic: one integer comparison a pixel
    decides it, with no square root.
    """
    height, width = shape
    n_bands = len(_NOISE_BANDS) + 1
    n_x = -(-width // tile)

    def passes(squared: int, edge: float) -> bool:
        return math.sqrt(float(squared)) / radius >= edge

    thresholds = []
    for edge in _NOISE_BANDS:
        squared = max(0, math.floor((edge * radius) ** 2) - 2)
        while squared > 0 and passes(squared - 1, edge):
            squared -= 1
        while not passes(squared, edge):
            squared += 1
        thresholds.append(squared)
    return _NoiseCells(
        (np.arange(height, dtype=np.int64) // tile) * (n_x * n_bands),
        (np.arange(width, dtype=np.int64) // tile) * n_bands,
        np.array(thresholds, dtype=np.int64),
    )


@compiled
def _row_noise_cells(
    squared_edge, row, row_offsets, col_offsets, band_thresholds, out
):  # pragma: no cover - compiled
    """``out``: the noise cell (``_NoiseCells``) of every pixel of row ``row``. The kernels
    that need cells take them a row at a time: a call per pixel costs more than the cell."""
    offset = row_offsets[row]
    for col in range(out.size):
        squared = squared_edge[row, col]
        band = 0
        for threshold in band_thresholds:
            if squared >= threshold:
                band += 1
        out[col] = offset + col_offsets[col] + band


@compiled
def _keep_better_global(response, spread, best, best_index, index):  # pragma: no cover
    """``best`` and ``best_index`` take ``response / spread`` (float32) and ``index`` where
    that is larger."""
    height, width = best.shape
    for row in range(height):
        for col in range(width):
            value = response[row, col] / spread
            if value > best[row, col]:
                best[row, col] = value
                best_index[row, col] = index


@compiled
def _keep_better_local(
    response,
    squared_edge,
    row_offsets,
    col_offsets,
    band_thresholds,
    cell_spread,
    spread,
    best,
    best_index,
    index,
):  # pragma: no cover - compiled
    """As ``_keep_better_global`` with the noise of each pixel the larger of its cell's
    spread and ``spread``, the division in float64 rounded to float32."""
    height, width = best.shape
    cells = np.empty(width, dtype=np.int64)
    for row in range(height):
        _row_noise_cells(squared_edge, row, row_offsets, col_offsets, band_thresholds, cells)
        for col in range(width):
            local = cell_spread[cells[col]]
            noise = local if (local > spread or local != local) else spread
            value = np.float32(np.float64(response[row, col]) / noise)
            if value > best[row, col]:
                best[row, col] = value
                best_index[row, col] = index


def _local_spread(
    response: np.ndarray,
    covered: np.ndarray,
    squared_edge: np.ndarray,
    tile: int,
    cells: _NoiseCells,
    *,
    clip: bool = True,
    floor: float = 0.0,
    grid_radius: float | None = None,
) -> np.ndarray:
    """Robust spread (1.4826 MAD, sigma-clipped with ``clip``: see ``_grouped_spread``) of a
    filter response in cells: the table of the cells.

    The texture left in a median is not uniform: where the target drifted across its own limb,
    the median keeps the texture of a few frames only, and the background fit is least sure
    next to the limb and the frame edges. The cells are square tiles many filter diameters
    wide, each split into bands of distance to the unusable pixels and the frame's border (1,
    2, 4, 8 filter radii), so a band along the limb or the frame's edge gets its own noise. A
    cell with too few samples takes the spread of its whole tile, a tile with too few that of
    the nearest tile with enough; 0 when no tile has enough (the caller then uses the spread
    over the whole image). A cell of the first two bands, one filter radius wide and so
    sampled on about 40 points along a straight edge of a tile, takes the larger of that and
    the band's spread over the whole frame: the tile's spread alone would judge a noisy band
    along the frame's edge against the quiet interior. The wider bands do not: over a small
    frame they hold little but the pixels around a large shadow, whose own response would
    then set their noise.

    Clipping takes a shadow's peak out of its cell, not its shoulders and negative ring, which
    stay within a few spreads of the noise; where the responses of shadows make up half of a
    cell or more (a band of distance a few filter radii wide, a tile cut by the frame's edge,
    two shadows in one tile) its median absolute deviation is theirs, and next to a cell that
    escaped them the significance steps across the shadow and peaks on the step, not at its
    centre (a 7 px shadow in the 2x2-cell view of a colour mosaic was outlined as a disc of
    the filter's size 4 px below it and dropped as scene). With ``clip``, the samples within
    ``_FOOTPRINT_RADII`` filter radii of one that stands ``_SOURCE_SIGMA`` above its noise
    (the larger of its cell's spread and ``floor``) are a source's footprint, and a cell, tile
    or band that they cover at least half of is measured as one with too few samples. A cell
    they cover less of keeps the spread of all its samples: the clipping copes with it, and
    the features of the scene beside a shadow still count as its noise.

    ``squared_edge`` is ``_squared_distance_to_edge`` in full-resolution pixels, on the
    response's grid; ``cells`` those of ``_noise_cells(response.shape, tile, radius)``;
    ``floor`` the spread of the response over the whole image and ``grid_radius`` the filter's
    radius on the response's grid (None: no footprints are looked for). Returns the spread of
    each cell.
    """
    height, width = response.shape
    n_y, n_x = -(-height // tile), -(-width // tile)
    n_bands = len(_NOISE_BANDS) + 1
    # A sparse grid of samples: the response is smooth on the scale of the filter (>= 4 px).
    count = int(np.count_nonzero(covered[::_NOISE_STRIDE, ::_NOISE_STRIDE]))
    values = np.empty(count, dtype=np.float64)
    sample_cells = np.empty(count, dtype=np.int64)
    _gather_noise_samples(
        response, covered, squared_edge, *cells, _NOISE_STRIDE, values, sample_cells
    )
    n_tiles = n_y * n_x
    tiles = sample_cells // n_bands
    tile_spread = _grouped_spread(values, tiles, n_tiles, clip=clip)
    band_spread = _grouped_spread(values, sample_cells % n_bands, n_bands, clip=clip)
    band_spread[_THIN_NOISE_BANDS:] = np.nan
    cell_spread = _grouped_spread(values, sample_cells, n_tiles * n_bands, clip=clip)
    if clip and grid_radius is not None and not np.isnan(tile_spread).all():
        # A cell (tile, band) half covered by the footprints of sources is measured as one
        # with too few samples: its median absolute deviation would be theirs.
        noise = np.fmax(_with_fallbacks(cell_spread, tile_spread, band_spread, n_y, n_x), floor)
        strong = np.abs(values) >= _SOURCE_SIGMA * noise[sample_cells]
        if strong.any():
            grid = covered[::_NOISE_STRIDE, ::_NOISE_STRIDE]
            flagged = np.zeros(grid.shape, dtype=bool)
            flagged[grid] = strong
            reach = _FOOTPRINT_RADII * grid_radius / _NOISE_STRIDE
            near = ~_beyond(_squared_distance_to_false(~flagged), reach)[grid]
            for spread, groups in (
                (cell_spread, sample_cells),
                (tile_spread, tiles),
                (band_spread, sample_cells % n_bands),
            ):
                size = spread.size
                covered_by = np.bincount(groups[near], minlength=size)
                spread[2 * covered_by >= np.bincount(groups, minlength=size)] = np.nan
    if np.isnan(tile_spread).all():
        return np.zeros(n_tiles * n_bands)
    return _with_fallbacks(cell_spread, tile_spread, band_spread, n_y, n_x)


def _with_fallbacks(
    cell_spread: np.ndarray, tile_spread: np.ndarray, band_spread: np.ndarray, n_y: int, n_x: int
) -> np.ndarray:
    """The spread of each noise cell (``_local_spread``): its own, else (NaN: too few
    samples) that of its tile or the nearest tile with enough, for the thin bands at least
    the band's over the frame (``band_spread``, NaN for the other bands)."""
    n_bands = len(_NOISE_BANDS) + 1
    tile_spread = _fill_nan_nearest(tile_spread.reshape(n_y, n_x)).ravel()
    fallback = np.fmax(np.repeat(tile_spread, n_bands), np.tile(band_spread, n_y * n_x))
    return np.where(np.isnan(cell_spread), fallback, cell_spread)


@compiled
def _gather_noise_samples(
    response,
    covered,
    squared_edge,
    row_offsets,
    col_offsets,
    band_thresholds,
    stride,
    values,
    sample_cells,
):  # pragma: no cover - compiled
    """The response and noise cell of every ``stride``-th covered pixel of every
    ``stride``-th row, row by row, into ``values`` and ``sample_cells``."""
    height, width = response.shape
    cells = np.empty(width, dtype=np.int64)
    filled = 0
    for row in range(0, height, stride):
        _row_noise_cells(squared_edge, row, row_offsets, col_offsets, band_thresholds, cells)
        for col in range(0, width, stride):
            if covered[row, col]:
                values[filled] = response[row, col]
                sample_cells[filled] = cells[col]
                filled += 1


_MIN_CELL_SAMPLES = 48
_NOISE_STRIDE = 2
_NOISE_CLIP_SIGMA = 3.0
"""Samples of a noise cell further than this many spreads from its median are left out and
its spread measured again, until none is (as photutils' ``Background2D`` clips its boxes). A
shadow's own response fills a large share of the cells around it: at the matched radius, its
peak and the negative ring around it cover a disc of about 2.5 filter radii, a third of a
tile. Unclipped, it raises its cells' spread and lowers its own significance (with 30 % of
a cell a shadow's response, the spread is 1.33 times the noise's unclipped, 1.13 clipped);
for Gaussian noise the clipping lowers the spread by 0.3-0.6 %."""
_NOISE_CLIP_ITERATIONS = 10
_SOURCE_SIGMA = 5.0
"""A response sample this many noise spreads from 0 belongs to a source (a shadow, or a
feature of the scene), not to the noise: Gaussian noise reaches it once in 1.7 million samples."""
_FOOTPRINT_RADII = 2.0
"""Reach of a source's response beyond the samples where it stands ``_SOURCE_SIGMA`` above
the noise, in filter radii: a response takes in the deficit up to the outer edge of the
filter's ring, two radii from its centre, so a shadow raises the responses (its shoulders,
and the negative ring) up to that far beyond itself."""


def _grouped_spread(
    values: np.ndarray, groups: np.ndarray, n_groups: int, *, clip: bool = True
) -> np.ndarray:
    """1.4826 MAD of ``values`` per group id in ``[0, n_groups)``; NaN for groups with fewer
    than ``_MIN_CELL_SAMPLES`` values.

    With ``clip``, each group is clipped at ``_NOISE_CLIP_SIGMA`` spreads from its median
    until no value is left out, at most ``_NOISE_CLIP_ITERATIONS`` times, and while at least
    ``_MIN_CELL_SAMPLES`` values remain.

    Compiled: the values are bucketed by group (a counting sort) and each group's median and
    median deviation are selected in place, about four times faster than one numpy sort of
    every value by (group, value), itself an order of magnitude faster than
    ``ndimage.median`` per label. The upper median is used (element ``n // 2`` of ``n``).
    """
    spread = np.full(n_groups, np.nan)
    _grouped_median_deviation(
        np.ascontiguousarray(values, dtype=np.float64),
        np.ascontiguousarray(groups, dtype=np.int64),
        _MIN_CELL_SAMPLES,
        _NOISE_CLIP_SIGMA * _MAD_TO_SIGMA if clip else 0.0,
        _NOISE_CLIP_ITERATIONS,
        spread,
    )
    return _MAD_TO_SIGMA * spread


@compiled
def _grouped_median_deviation(
    values, groups, min_count, clip, iterations, out
):  # pragma: no cover - compiled
    """``out[g]``: median absolute deviation from the median of the values of group ``g``
    (element ``n // 2`` of each sorted list of ``n``), for groups of at least ``min_count``,
    with the values further than ``clip`` deviations from the median left out, again and
    again (at most ``iterations`` times, and while ``min_count`` remain); ``clip`` 0: none."""
    n_groups = out.size
    counts = np.zeros(n_groups, dtype=np.int64)
    for group in groups:
        counts[group] += 1
    starts = np.zeros(n_groups + 1, dtype=np.int64)
    for group in range(n_groups):
        starts[group + 1] = starts[group] + counts[group]
    filled = starts[:-1].copy()
    bucketed = np.empty(values.size, dtype=np.float64)
    for index in range(values.size):
        group = groups[index]
        bucketed[filled[group]] = values[index]
        filled[group] += 1
    deviation = np.empty(values.size, dtype=np.float64)
    for group in range(n_groups):
        size = counts[group]
        if size < min_count or size == 0:
            continue
        members = bucketed[starts[group] : starts[group + 1]]
        deviations = deviation[starts[group] : starts[group + 1]]
        centre, mad = _median_and_deviation(members, deviations)
        for _ in range(iterations if clip > 0.0 else 0):
            limit = clip * mad
            kept = 0
            for index in range(size):
                if abs(members[index] - centre) <= limit:
                    members[kept] = members[index]
                    kept += 1
            if kept == size or kept < min_count:
                break
            size = kept
            centre, mad = _median_and_deviation(members[:size], deviations[:size])
        out[group] = mad


@compiled
def _median_and_deviation(members, deviations):  # pragma: no cover - compiled
    """The upper median of ``members`` (element ``n // 2`` sorted) and the upper median of
    their absolute deviations from it, written to ``deviations`` (same size) on the way."""
    middle = members.size // 2
    centre = np.partition(members, middle)[middle]
    for index in range(members.size):
        deviations[index] = abs(members[index] - centre)
    return centre, np.partition(deviations, middle)[middle]


def _segment_candidate(
    window_deficit: np.ndarray,
    window_usable: np.ndarray,
    window_significance: np.ndarray,
    seed: np.ndarray,
    smoothed_noise: dict[float, float],
    best_radius: float,
    params: DustDetectionParams,
) -> np.ndarray:
    """Shape of one candidate inside its window (bool, same shape as the window).

    The pixel deficit is smoothed only as much as needed for the candidate's peak area (where
    the matched-filter significance is at least half its maximum) to stand out at the seed level
    (smoothing widens the shape, so the least is best); the shape is the part above the grow
    level connected to the peak area. If no scale up to a third of
    the filter radius suffices (a faint, large shadow), the shape is the disc whose radius is
    where the azimuthal deficit profile around the matched-filter peak falls to half its maximum.
    The shape is empty when the plateau (or that profile's maximum) is shallower than
    ``params.min_depth``.
    """
    seed_significance = np.where(seed, window_significance, -np.inf)
    peak_area = seed & (seed_significance >= 0.5 * seed_significance.max())
    for scale in _SMOOTHING_STEPS_PX:
        if scale > best_radius / 3.0 and scale > 0:
            break
        noise = smoothed_noise.get(scale, 0.0)
        if not noise > 0:
            continue
        if scale == 0:
            smooth = window_deficit
        else:
            weights = ndimage.gaussian_filter(window_usable.astype(np.float64), scale)
            smooth = ndimage.gaussian_filter(window_deficit, scale) / np.maximum(weights, 1e-6)
        inside = smooth[peak_area & window_usable]
        if inside.size and np.median(inside) >= params.seed_sigma * noise:
            # A shadow is a plateau with a short edge: its outline is where the deficit falls
            # to a fraction of the plateau, or to the noise for a faint one. The noise level
            # alone would let a deep shadow reach out along the texture around it.
            plateau = float(np.percentile(inside, 90))
            if plateau < params.min_depth:
                return np.zeros(window_deficit.shape, dtype=bool)
            level = max(params.grow_sigma * noise, _OUTLINE_FRACTION * plateau)
            above = (smooth >= level) & window_usable
            return fill_holes(regions_touching(above, peak_area))
    return _radial_template(
        window_deficit, window_usable, window_significance, seed, best_radius, params.min_depth
    )


def _radial_template(
    window_deficit: np.ndarray,
    window_usable: np.ndarray,
    window_significance: np.ndarray,
    seed: np.ndarray,
    best_radius: float,
    min_depth: float,
) -> np.ndarray:
    seed_significance = np.where(seed, window_significance, 0.0)
    top = seed_significance >= 0.7 * seed_significance.max()
    rows, cols = np.nonzero(top)
    weights = seed_significance[rows, cols]
    centre_y = float(np.average(rows, weights=weights))
    centre_x = float(np.average(cols, weights=weights))
    yy, xx = np.indices(window_deficit.shape)
    rho = np.hypot(yy - centre_y, xx - centre_x)
    n_bins = math.ceil(2.5 * best_radius) + 1
    bins = np.floor(rho).astype(np.int64)
    use = window_usable & (bins < n_bins)
    sums = np.bincount(bins[use], weights=window_deficit[use], minlength=n_bins)
    counts = np.bincount(bins[use], minlength=n_bins).astype(np.float64)
    kernel = np.ones(3)
    profile = np.convolve(sums, kernel, "same") / np.maximum(np.convolve(counts, kernel, "same"), 1)
    search = min(n_bins, math.ceil(1.5 * best_radius) + 1)
    peak_bin = int(np.argmax(profile[:search]))
    peak = profile[peak_bin]
    if not (peak > 0 and peak >= min_depth):
        return np.zeros(window_deficit.shape, dtype=bool)
    below = np.nonzero(profile[peak_bin:] < 0.5 * peak)[0]
    outer = peak_bin + (int(below[0]) if below.size else n_bins - peak_bin)
    return rho <= outer


def _noise_by_scale(deficit: np.ndarray, usable: np.ndarray, radii: tuple[float, ...]) -> dict:
    """Robust noise of the deficit smoothed at each segmentation scale.

    Measured on at most the central 512 x 512 px of the usable region: a noise level needs
    far fewer pixels, and smoothing a multi-megapixel image at five scales is not free.
    """
    rows, cols = np.nonzero(usable.any(axis=1))[0], np.nonzero(usable.any(axis=0))[0]
    crop = []
    for index in (rows, cols):
        centre, half = (index[0] + index[-1]) // 2, min(256, (index[-1] - index[0]) // 2 + 1)
        crop.append(slice(max(centre - half, 0), centre + half + 1))
    deficit, usable = deficit[tuple(crop)], usable[tuple(crop)]
    weights = usable.astype(np.float64)
    weighted = deficit * weights
    largest = max(radii) / 3.0
    scales = list(
        itertools.takewhile(lambda scale: scale == 0 or scale <= largest, _SMOOTHING_STEPS_PX)
    )

    def noise_at(scale: float) -> float:
        if scale == 0:
            return robust_sigma(deficit[usable])
        norm = ndimage.gaussian_filter(weights, scale)
        smooth = ndimage.gaussian_filter(weighted, scale) / np.maximum(norm, 1e-6)
        return robust_sigma(smooth[usable])

    # The scales are independent, and scipy's filters and numpy's selection release the GIL.
    return dict(zip(scales, in_threads(noise_at, scales), strict=True))


def _hysteresis(
    significance: np.ndarray, usable: np.ndarray, params: DustDetectionParams, min_radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Connected regions above ``grow_sigma`` that contain a seed above ``seed_sigma``; seeds.

    Seeds must lie farther than the smallest filter radius from the frame border and from
    unusable pixels (sky, limb band): a shadow's matched-filter peak sits at its centre, and
    the one-sided background fit there is the least reliable.
    """
    grown = (significance >= params.grow_sigma) & usable
    inner = _beyond(_squared_distance_to_edge(usable), min_radius)
    seeds = grown & (significance >= params.seed_sigma) & inner
    if not seeds.any():
        return np.zeros(significance.shape, dtype=bool), seeds
    return regions_touching(grown, seeds), seeds


def _as_float64(median: np.ndarray) -> np.ndarray:
    """The (validated) median as float64; itself when it already is."""
    return np.asarray(median).astype(np.float64, copy=False)


def _background_and_deficit(
    data: np.ndarray,
    usable: np.ndarray,
    fit_mask: np.ndarray,
    limb: np.ndarray | None,
    sigma: float,
    line_defect_sigma: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The background fitted to the ``fit_mask`` pixels and the relative deficit ``1 - M / B``
    (0 where not usable or where ``B <= 0``), both (H, W) float64, without the sensor's line
    defects (:func:`remove_line_defects`) unless ``line_defect_sigma`` is None."""
    background = _local_background(data, fit_mask, sigma, limb)
    # In place: one full-frame temporary instead of three.
    with np.errstate(divide="ignore", invalid="ignore"):
        deficit = np.divide(data, background)
        np.subtract(1.0, deficit, out=deficit)
    measured = usable & (background > 0)
    deficit[~measured] = 0.0
    if line_defect_sigma is not None:
        remove_line_defects(deficit, measured, line_defect_sigma)
    return background, deficit


def remove_line_defects(
    deficit: np.ndarray,
    usable: np.ndarray,
    threshold_sigma: float,
    *,
    judged: np.ndarray | None = None,
    spread_of_lines: bool = False,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Remove the departures of defective columns, then rows, from a relative deficit, in place.

    Each usable pixel of a line (a regular subsample of at most ``_LINE_SAMPLES`` of them) is
    compared with the median of the ``_LINE_NEIGHBOURS - 1`` lines around it at the same
    position (lines already found defective left out), so that a defect up to 3 px wide
    stands out while the scene, the background model's residues and shadows, which the
    neighbours share, cancel. A line is defective when the median of its departures exceeds
    ``threshold_sigma`` times its own noise (the robust sigma of all departures over the
    square root of its pixel count) and the departure spans the line: the medians of the
    first, middle and last third of its usable pixels share its sign and are at least half
    its size. A shadow or a residue along the limb, where a short line ends, sits in one part
    of a line only. That median is subtracted from the line's usable pixels; every other line
    is left exactly as it is. Lines with fewer than ``_MIN_LINE_SAMPLES`` usable pixels among
    those sampled, or fewer than half the median count of those lines (a line that grazes a
    disc), are not judged.

    Parameters
    ----------
    deficit : np.ndarray
        (H, W) float64 relative deficit, modified in place.
    usable : np.ndarray
        (H, W) bool, the pixels where the deficit is measured.
    threshold_sigma : float
        Detection threshold, > 0.
    judged : np.ndarray, optional
        (H, W) bool within ``usable``: the only pixels whose departures judge their line (their
        neighbours' references still take every usable pixel). Default: all usable pixels.
    spread_of_lines : bool
        Hold each line's level also to the robust spread of the levels of all judged lines.
        A texture that the neighbours do not cancel (an image of a scene rather than a
        deficit) is correlated along a line over its features' size, so that a line's own
        noise, measured from its pixels as if they were independent, is too small.

    Returns
    -------
    columns, rows : np.ndarray or None
        (W,) and (H,) float64 departures removed from each column and row (0 for sound
        lines); None where no column (row) is defective.
    """
    removed = []
    for along in (0, 1):
        offsets = _line_departures(deficit, usable, along, threshold_sigma, judged, spread_of_lines)
        if offsets is not None:
            line_shape = (1, -1) if along == 0 else (-1, 1)
            np.subtract(deficit, offsets.reshape(line_shape), out=deficit, where=usable)
        removed.append(offsets)
    return removed[0], removed[1]


class LineGains(NamedTuple):
    """Gains of a sensor's defective columns and rows (:func:`line_gains`), 1.0 for the rest.

    Attributes
    ----------
    columns : np.ndarray
        (W,) float64 gain of each column.
    rows : np.ndarray
        (H,) float64 gain of each row.
    """

    columns: np.ndarray
    rows: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the image the gains belong to."""
        return self.rows.size, self.columns.size

    @property
    def defective_columns(self) -> int:
        return int(np.count_nonzero(self.columns != 1.0))

    @property
    def defective_rows(self) -> int:
        return int(np.count_nonzero(self.rows != 1.0))

    def image(self) -> np.ndarray:
        """(H, W) float64 gain of every pixel: its row's times its column's."""
        return self.rows[:, None] * self.columns[None, :]

    def as_record(self) -> dict[str, Any]:
        """JSON-ready: the image's shape and the gain of each defective line by its index."""

        def defective(gains: np.ndarray) -> dict[str, float]:
            return {str(int(i)): float(gains[i]) for i in np.nonzero(gains != 1.0)[0]}

        return {
            "shape": list(self.shape),
            "columns": defective(self.columns),
            "rows": defective(self.rows),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> LineGains:
        """The gains of :meth:`as_record`'s output."""
        height, width = record["shape"]
        columns, rows = np.ones(width), np.ones(height)
        for index, gain in record["columns"].items():
            columns[int(index)] = gain
        for index, gain in record["rows"].items():
            rows[int(index)] = gain
        return cls(columns, rows)


def line_gains(
    image: np.ndarray, usable: np.ndarray, threshold_sigma: float = 5.0
) -> LineGains | None:
    """The gains of the sensor's defective columns and rows in an image of a scene.

    The line test of :func:`remove_line_defects` on the logarithm of ``image``: a line of gain
    ``g`` departs from its neighbours by ``log(g)`` whatever the scene's brightness, and the
    neighbours cancel the scene itself. Its texture they do not cancel, and it is correlated
    along a line, so each line's level is also held to the spread of all lines' levels.
    Columns are judged first, rows on the image with the columns' gains divided out.

    Parameters
    ----------
    image : np.ndarray
        (H, W) linear image (ADU, black level removed or not: a pedestal only dilutes a gain).
    usable : np.ndarray
        (H, W) bool, the pixels to measure on (the target, without dust shadows); pixels <= 0
        are left out as well. Lines are judged on the pixels farther than
        ``_LINE_NEIGHBOURS`` px from any pixel left out and from the frame's edges.
    threshold_sigma : float
        As for :func:`remove_line_defects`.

    Returns
    -------
    LineGains or None
        None when no line is defective.
    """
    data = np.asarray(image, dtype=np.float64)
    measured = np.asarray(usable, dtype=bool)
    if measured.shape != data.shape or data.ndim != 2:
        raise ValueError(
            f"image and usable must be 2-D arrays of one shape, got {data.shape} and "
            f"{measured.shape}."
        )
    if not threshold_sigma > 0:
        raise ValueError(
            f"the line defects' threshold must be > 0 sigma, got {threshold_sigma}; the "
            "default is 5."
        )
    measured = measured & (data > 0)
    # A line is judged only where its neighbours on both sides are measured: with one side
    # only, a gradient of the scene sets it apart. The neighbours cancel the scene to its
    # curvature, which is steep along the target's seeing-blurred edge, so lines are judged
    # away from it, and from the frame's edges.
    inner = np.zeros((data.shape[0] + 2, data.shape[1] + 2), dtype=bool)
    inner[1:-1, 1:-1] = measured
    judged = _beyond(_squared_distance_to_false(inner), _LINE_NEIGHBOURS)[1:-1, 1:-1]
    logarithm = np.zeros(data.shape)
    np.log(data, out=logarithm, where=measured)
    columns, rows = remove_line_defects(
        logarithm, measured, threshold_sigma, judged=judged, spread_of_lines=True
    )
    if columns is None and rows is None:
        return None
    height, width = data.shape
    return LineGains(
        np.ones(width) if columns is None else np.exp(columns),
        np.ones(height) if rows is None else np.exp(rows),
    )


def _line_departures(
    deficit: np.ndarray,
    usable: np.ndarray,
    along: int,
    threshold_sigma: float,
    judged: np.ndarray | None = None,
    spread_of_lines: bool = False,
) -> np.ndarray | None:
    """Departure of each line (column for ``along`` 0, row for 1) found defective, 0 for the
    others; None when no line is. Lines are measured on the ``judged`` pixels (all ``usable``
    ones when None) against the ``usable`` pixels of their neighbours.

    The lines found at first are left out of their neighbours' references and all lines are
    judged again: a defect 2-3 px wide would otherwise lower its neighbours' reference, so that
    it looks shallower and the lines beside it look defective the other way.
    """
    step = -(-deficit.shape[along] // _LINE_SAMPLES)

    def sampled(image: np.ndarray) -> np.ndarray:
        return image[::step].T if along == 0 else image[:, ::step]

    values = sampled(deficit)
    references = np.where(sampled(usable), values, np.nan)
    samples = references if judged is None else np.where(sampled(judged), values, np.nan)
    found = _defective_lines(samples, references, threshold_sigma, spread_of_lines)
    if not found.any():
        return None
    references = references.copy()
    references[found != 0] = np.nan
    found = _defective_lines(samples, references, threshold_sigma, spread_of_lines)
    return found if found.any() else None


def _defective_lines(
    samples: np.ndarray,
    references: np.ndarray,
    threshold_sigma: float,
    spread_of_lines: bool = False,
) -> np.ndarray:
    """(lines,) departure of each defective line of ``samples`` ((lines, n), NaN where not
    usable) from its neighbours in ``references`` (the same, less the lines to ignore), 0 for
    the others. With ``spread_of_lines`` a line's noise is at least the robust spread of the
    levels of all judged lines."""
    departures = samples - _neighbour_median(references)
    measured = ~np.isnan(departures)
    counts = np.count_nonzero(measured, axis=1)
    offsets = np.zeros(samples.shape[0])
    judged = counts >= _MIN_LINE_SAMPLES
    if not judged.any():
        return offsets
    # A line that only grazes the target runs along its limb, whose model residue it would
    # take for a defect of its own.
    judged &= counts >= 0.5 * np.median(counts[judged])
    pixel_sigma = _mad_sigma(departures[measured])
    if not pixel_sigma > 0:
        return offsets
    lines = np.nonzero(judged)[0]
    levels = finite_median(departures[lines].T, 1).astype(np.float64)
    noise = _MEDIAN_EFFICIENCY * pixel_sigma / np.sqrt(counts[lines])
    if spread_of_lines:
        noise = np.maximum(noise, _mad_sigma(levels))
    suspect = np.abs(levels) > threshold_sigma * noise
    for line, level in zip(lines[suspect], levels[suspect], strict=True):
        if _spans_line(departures[line], level):
            offsets[line] = level
    return offsets


def _neighbour_median(samples: np.ndarray) -> np.ndarray:
    """(lines, n) float64: at each sample, the median of the ``_LINE_NEIGHBOURS - 1`` lines
    around its own (not itself) at the same position, ignoring NaN (NaN where all are NaN).

    Compiled: numpy's median over a short stacked axis sorts each window through Python-level
    overhead, about 0.7 s per call on a 1.2-megapixel deficit against a few milliseconds here.
    """
    data = np.ascontiguousarray(samples, dtype=np.float64)
    out = np.empty_like(data)
    _neighbour_median_kernel(data, _LINE_NEIGHBOURS // 2, out)
    return out


@compiled
def _neighbour_median_kernel(samples, half, out):  # pragma: no cover - compiled
    lines, count = samples.shape
    window = np.empty(2 * half, dtype=np.float64)
    for line in range(lines):
        for position in range(count):
            size = 0
            for other in range(max(line - half, 0), min(line + half + 1, lines)):
                value = samples[other, position]
                if other == line or np.isnan(value):
                    continue
                slot = size
                while slot > 0 and window[slot - 1] > value:
                    window[slot] = window[slot - 1]
                    slot -= 1
                window[slot] = value
                size += 1
            if size == 0:
                out[line, position] = np.nan
            else:
                out[line, position] = 0.5 * (window[(size - 1) // 2] + window[size // 2])


def _spans_line(departures: np.ndarray, level: float) -> bool:
    """Whether the first, middle and last third of a line's measured departures each have a
    median of the sign of ``level`` and at least half its size."""
    measured = departures[~np.isnan(departures)]
    return all(
        np.sign(part_level := float(np.median(part))) == np.sign(level)
        and abs(part_level) >= 0.5 * abs(level)
        for part in np.array_split(measured, 3)
    )


def _excluded_from_fit(
    median: np.ndarray,
    usable: np.ndarray,
    fit_mask: np.ndarray,
    limb: np.ndarray | None,
    params: DustDetectionParams,
    radii: tuple[float, ...],
    sigma: float,
) -> np.ndarray:
    """Pixels a pass finds the next background fit must leave out (bool): its regions, wide
    ones with their dark skirts (:func:`_first_pass_regions`), and the outliers of its deficit,
    dilated by half the smallest filter radius.

    Such a pass needs no local noise: it only decides what the background fit leaves out, and
    leaving out a little texture costs nothing.
    """
    data = _as_float64(median)
    # A line defect costs this pass nothing: at worst some of its pixels are left out of the
    # next fit.
    background, deficit = _background_and_deficit(data, usable, fit_mask, limb, sigma, None)
    # The filter bank holds the memory peak: the float64 images it does not use go first.
    del data, background
    noise = _robust_sigma_where(deficit, usable)
    significance, best_radius = _matched_significance(
        deficit, usable, radii, params.annulus_hole_fraction, local_noise=False
    )
    candidates = _first_pass_regions(
        significance, best_radius, deficit, usable, params, radii[0], sigma
    )
    del significance, best_radius
    threshold = params.outlier_sigma * noise
    outliers = (deficit > threshold) | (deficit < -threshold)
    return ndimage.binary_dilation(candidates | outliers, iterations=max(1, round(radii[0] / 2)))


def _first_pass_regions(
    significance: np.ndarray,
    best_radius: np.ndarray,
    deficit: np.ndarray,
    usable: np.ndarray,
    params: DustDetectionParams,
    min_radius: float,
    sigma: float,
) -> np.ndarray:
    """What a first pass found, for the next background fit to leave out (bool, (H, W)).

    The regions of :func:`_hysteresis` whose peak reaches ``seed_sigma``, and the wide ones: a
    region is wide when its strongest wide filter (radius at least ``sigma``, the background
    fit's Gaussian scale, px) reaches ``_WIDE_SEED_FRACTION`` of ``seed_sigma`` and
    ``_WIDE_PEAK_FRACTION`` of the region's peak. A wide region also takes in its dark skirt:
    the pixels of positive ``deficit`` within ``_SKIRT_RADII`` of that filter's radius.

    A shadow about as wide as the background's scale is measured shallow by a fit that has not
    yet left it out, since the fit follows part of its depth down: an 8 % deep, 120 px disc
    measures 1.4-3 % through a 48 px fit, so its significance in this pass stays below the seed
    level (4.98 and 4.88 against 5 on two videos of the large-shadow set), or its peak comes
    from a small filter on its texture. Only its middle then stands above the grow level, and
    one more pass that leaves out only that middle recovers little of the rest. Its strongest
    wide filter has about its radius, so the skirt reaches its shallow rim; only pixels below the
    background are taken, so that the fit keeps the surroundings a wide skirt would also cover
    (a limb, another shadow's neighbourhood). Such a pass only decides what the fit leaves out:
    a wide region of texture costs the fit some of its pixels, and the grid's dust-free videos
    still have no pixel in the core. The condition
    on the peak keeps the skirts off shadows that a much smaller filter describes better:
    judged from its wide filters alone, a region was wide on the quality grid's drifting f/10
    donuts (about half the background's scale), and their deficit-weighted recall fell from
    0.89 to 0.83.
    """
    low_seed = max(params.grow_sigma, _WIDE_SEED_FRACTION * params.seed_sigma)
    loose = replace(params, seed_sigma=low_seed)
    regions, _ = _hysteresis(significance, usable, loose, min_radius)
    labels, count = ndimage.label(regions)
    found = np.zeros(regions.shape, dtype=bool)
    if count == 0:
        return found
    # Each region's peaks from its own box: ``ndimage.maximum_position`` over the labelled
    # frame took 0.55 s at 2 MP for ten regions.
    for label, box in enumerate(ndimage.find_objects(labels), 1):
        member = labels[box] == label
        region_significance = np.where(member, significance[box], -np.inf)
        peak = float(region_significance.max())
        wide_significance = np.where(best_radius[box] >= sigma, region_significance, -np.inf)
        wide_peak = int(np.argmax(wide_significance))
        wide = bool(wide_significance.flat[wide_peak] >= max(low_seed, _WIDE_PEAK_FRACTION * peak))
        if not (wide or peak >= params.seed_sigma):
            continue
        found[box] |= member
        if not wide:
            continue
        distance = _SKIRT_RADII * float(best_radius[box].flat[wide_peak])
        window = grown_box(box, math.floor(distance), regions.shape)
        outside = labels[window] != label
        near = ~_beyond(_squared_distance_to_false(outside), distance)
        found[window] |= near & (deficit[window] > 0)
    return found


def detect_dust(
    median: np.ndarray,
    params: DustDetectionParams = DustDetectionParams(),
    *,
    valid: np.ndarray | None = None,
    whole_shapes: bool = True,
    split_neighbours: bool = True,
    clip_noise: bool = True,
) -> DustDetection:
    """Find dust shadows in the temporal median of a video.

    Parameters
    ----------
    median : np.ndarray
        (H, W) temporal median, any real dtype, in ADU (linear data; the black level need not be
        removed for detection).
    params : DustDetectionParams
        See the class; defaults suit 2-6 MP solar and planetary videos and small test frames
        alike (sizes are clipped to the frame).
    valid : np.ndarray, optional
        (H, W) bool, pixels the caller allows (e.g. to exclude a known feature); combined with
        the usable on-target pixels found here.
    whole_shapes : bool
        Let a candidate's segmentation window grow until its shape no longer reaches the
        window's border (up to the reach of the largest filter), so a shadow whose strongest
        response comes from a small filter is still outlined whole. False keeps the window
        the strongest filter sets: the motion test's ratio search draws its outlines again
        itself, by at most ``MotionTestParams.max_outline_growth``.
    split_neighbours : bool
        Outline a local maximum beside a shape already found on its own when its filter does
        not reach that shape and a trough separates them; False skips every maximum within two
        filter radii of a found shape as its side peak. The ratio search passes False: there
        the scene has cancelled, so no sunspot is dropped with a shadow beside it, and the
        maxima beside a found shape are mostly the dips of a residue the prediction left
        (a pattern of dips 3-4 times the ratio's fluctuations where it meets quiet ratio).
    clip_noise : bool
        Sigma-clip the local noise of the filter responses (``_NOISE_CLIP_SIGMA``), so that a
        large shadow's own response, a third of the cells around it at its filter's radius,
        does not set their noise. The ratio search passes False: there the scene has
        cancelled and a shadow's edges are most of what its cells hold; clipped, the small
        filters reach 100 sigma and more on the edge, and the outline is drawn from an edge
        crescent (a 28 px shadow in the first ratio outlined as 291 of its 613 px).

    Returns
    -------
    DustDetection

    Raises
    ------
    ValueError
        For a non-2-D, tiny, non-finite or signal-free median, or a bad ``valid`` mask.

    Notes
    -----
    Peak memory, besides the median itself, is about eight float64 copies of it (8 bytes per
    pixel each; about 1.2 GB at 20 MP), taken by the matched-filter bank and by the limb fit;
    see ``benchmarks/bench_detector_memory.py``.
    """
    # ``data`` is the median in its own dtype; each step converts it to float64 and drops the
    # copy before the next, so that no float64 copy is held through the filter bank, where the
    # memory peaks (nor ``limb``, in the final pass).
    data, user_valid = _validate_median(median, valid)
    radii = _filter_radii(params, data.shape)
    sigma = min(params.background_sigma_px, min(data.shape) / 6.0)
    sigma = max(sigma, 0.75 * radii[-1])
    usable, disc, normalized_radius = _usable_pixels(data, params, radii[-1], user_valid)
    limb = _limb_coordinate(disc, normalized_radius, sigma)
    del disc, normalized_radius
    if not usable.any():
        return DustDetection(
            core=np.zeros(data.shape, dtype=bool),
            deficit=np.zeros(data.shape, np.float32),
            background=_as_float64(data).astype(np.float32),
            valid=usable,
            significance=np.zeros(data.shape, np.float32),
            noise_sigma=0.0,
            regions=(),
            params=params,
            radii_px=radii,
        )
    fit_mask = usable
    for _ in range(params.n_iterations - 1):
        fit_mask = usable & ~_excluded_from_fit(data, usable, fit_mask, limb, params, radii, sigma)
    data64 = _as_float64(data)
    background, deficit = _background_and_deficit(
        data64, usable, fit_mask, limb, sigma, params.line_defect_sigma
    )
    np.copyto(background, data64, where=~usable)
    background = background.astype(np.float32)
    del data64, limb, fit_mask
    noise = _robust_sigma_where(deficit, usable)
    significance, best_radius = _matched_significance(
        deficit, usable, radii, params.annulus_hole_fraction, clip_noise=clip_noise
    )
    candidates, seeds = _hysteresis(significance, usable, params, radii[0])
    core, regions = _shape_regions(
        deficit,
        usable,
        significance,
        best_radius,
        candidates,
        seeds,
        radii,
        params,
        whole_shapes,
        split_neighbours,
    )
    return DustDetection(
        core=core,
        deficit=deficit.astype(np.float32),
        background=background,
        valid=usable,
        significance=significance,
        noise_sigma=float(noise),
        regions=regions,
        params=params,
        radii_px=radii,
    )


def _shape_regions(
    deficit: np.ndarray,
    usable: np.ndarray,
    significance: np.ndarray,
    best_radius: np.ndarray,
    candidates: np.ndarray,
    seeds: np.ndarray,
    radii: tuple[float, ...],
    params: DustDetectionParams,
    whole_shapes: bool,
    split_neighbours: bool,
) -> tuple[np.ndarray, tuple[DustRegion, ...]]:
    core = np.zeros(deficit.shape, dtype=bool)
    if not candidates.any():
        return core, ()
    smoothed_noise = _noise_by_scale(deficit, usable, radii)
    # One grown region may hold several shadows (two close spots joined by the skirts of the
    # larger filters): each local maximum above the seed level is segmented on its own,
    # strongest first, unless it is a side peak of a shape already found (within two filter
    # radii of it, and either within its own filter's radius of it or joined to it above half
    # its own peak: a donut's ring, the textured plateau of a large shadow, a wide filter's
    # response to a shadow's skirt) or it lies on the seed of one declined as too shallow. A
    # shadow beside a stronger one, beyond its filter's reach and with a trough between them,
    # is its own shape: a scene feature found first must not take its neighbour with it when
    # the motion test drops it.
    size = 2 * math.ceil(radii[0]) + 1
    declined = np.zeros(deficit.shape, dtype=bool)
    # No seed lies in the frame's border band (``_hysteresis``), and its pixels do not compete
    # for the maxima either: a shadow cut by the frame's edge has its strongest response on the
    # edge, and were that to suppress every seed beside it, the shadow would have no maximum.
    band = math.floor(radii[0])
    height, width = deficit.shape
    interior = (slice(band, height - band), slice(band, width - band))
    maxima = np.zeros(seeds.shape, dtype=bool)
    inner_significance = significance[interior]
    maxima[interior] = seeds[interior] & (
        inner_significance >= ndimage.maximum_filter(inner_significance, size=size)
    )
    maxima_labels, n_maxima = ndimage.label(maxima)
    if n_maxima == 0:
        return core, ()
    rows, cols = np.nonzero(maxima)
    _, first = np.unique(maxima_labels[rows, cols], return_index=True)
    positions = list(zip(rows[first].tolist(), cols[first].tolist(), strict=True))
    max_grow = math.ceil(3.0 * radii[-1]) + 2
    opening = max(1, round(radii[0] / 2))
    for peak_row, peak_col in sorted(positions, key=lambda rc: -significance[rc]):
        peak_value = float(significance[peak_row, peak_col])
        radius = float(best_radius[peak_row, peak_col])
        reach = math.ceil(2.0 * radius)
        near = (
            slice(max(peak_row - reach, 0), peak_row + reach + 1),
            slice(max(peak_col - reach, 0), peak_col + reach + 1),
        )
        if declined[peak_row, peak_col]:
            continue
        top = candidates & (significance >= max(params.seed_sigma, 0.5 * peak_value))
        found_near = core[near]
        if found_near.any():
            if not split_neighbours:
                continue
            found_rows, found_cols = np.nonzero(found_near)
            peak_in_near = (peak_row - near[0].start, peak_col - near[1].start)
            distance = np.hypot(found_rows - peak_in_near[0], found_cols - peak_in_near[1])
            joined, _ = ndimage.label(top[near])
            own = joined == joined[peak_in_near]
            if distance.min() <= radius or (own & found_near).any():
                continue
        box = _component_box(top, peak_row, peak_col, reach)
        # The strongest response inside a large shadow may come from a small filter (texture
        # on its plateau), so the window first sized from that filter can be smaller than the
        # shadow: it grows until the shape no longer reaches an inner border, up to the reach
        # of the largest filter, beyond which no shape is a single shadow.
        grow = math.ceil(3.0 * radius) + 2
        while True:
            window = grown_box(box, grow, (height, width))
            labels, _ = ndimage.label(top[window])
            seed = labels == labels[peak_row - window[0].start, peak_col - window[1].start]
            shape = _segment_candidate(
                deficit[window],
                usable[window],
                significance[window],
                seed,
                smoothed_noise,
                radius,
                params,
            )
            # Threads narrower than the smallest filter (noise, a residue of the background
            # fit, or in a ratio the edge of a scene feature's remnant, that the outline level
            # lets a shadow's shape run along) are no reason to grow the window, and they are
            # cut off: kept, they made a round shadow a shape the shape prior declines.
            body = ndimage.binary_opening(shape, iterations=opening)
            if (
                not whole_shapes
                or grow >= max_grow
                or not _reaches_inner_border(body, window, (height, width))
            ):
                break
            grow = min(2 * grow, max_grow)
        shape &= ndimage.binary_dilation(body, iterations=opening)
        if not shape.any():
            # Declined (shallower than ``params.min_depth``, or nowhere wider than a thread):
            # the other maxima of its seed component are the same plateau and would be
            # declined alike, each at the cost of a segmentation.
            declined[window] |= seed
        core[window] |= shape
    allowed = usable | fill_holes(usable)
    core = fill_holes(core) & allowed
    return _keep_dust_like(
        core, allowed, deficit, significance, best_radius, params, smoothed_noise[0.0]
    )


def _reaches_inner_border(
    shape: np.ndarray, window: tuple[slice, slice], frame_shape: tuple[int, int]
) -> bool:
    """Whether ``shape`` (bool, the window's shape) touches a side of ``window`` that is not
    the frame's edge."""
    (rows, cols), (height, width) = window, frame_shape
    return bool(
        (rows.start > 0 and shape[0].any())
        or (rows.stop < height and shape[-1].any())
        or (cols.start > 0 and shape[:, 0].any())
        or (cols.stop < width and shape[:, -1].any())
    )


def _component_box(mask: np.ndarray, row: int, col: int, start_half: int) -> tuple[slice, slice]:
    """Bounding box of the connected component of ``mask`` through ``(row, col)``.

    Searched in a window grown until the component no longer touches its border, so a small
    component costs a small window whatever the image size.
    """
    height, width = mask.shape
    half = max(start_half, 4)
    while True:
        window = (
            slice(max(row - half, 0), min(row + half + 1, height)),
            slice(max(col - half, 0), min(col + half + 1, width)),
        )
        labels, _ = ndimage.label(mask[window])
        component = labels == labels[row - window[0].start, col - window[1].start]
        if not _reaches_inner_border(component, window, mask.shape):
            rows, cols = np.nonzero(component)
            return (
                slice(window[0].start + rows.min(), window[0].start + rows.max() + 1),
                slice(window[1].start + cols.min(), window[1].start + cols.max() + 1),
            )
        half *= 2


def _keep_dust_like(
    core: np.ndarray,
    allowed: np.ndarray,
    deficit: np.ndarray,
    significance: np.ndarray,
    best_radius: np.ndarray,
    params: DustDetectionParams,
    pixel_noise: float,
) -> tuple[np.ndarray, tuple[DustRegion, ...]]:
    """Regions that look like dust shadows, and their descriptions.

    A region must hold ``min_area_px`` pixels whose own deficit exceeds the grow level (a
    cluster of cold pixels is found by the filters and widened by smoothing, but it stays
    smaller), and be round and compact enough (``min_solidity``, ``max_elongation``). A region
    cut by the frame's edge is judged by the better of its visible part and that part mirrored
    across the edge (a disc cut near its centre shows half of itself, twice as wide as tall),
    and a donut's hole that opens onto the edge is filled as an enclosed one is, where
    ``allowed`` (bool, H x W) lets it.
    """
    labels, _ = ndimage.label(core)
    kept = np.zeros(core.shape, dtype=bool)
    found = []
    for props in regionprops(labels):
        shapes = [props]
        mirrored = _mirrored_across_frame_edges(props, allowed)
        if mirrored is not None:
            props, whole = mirrored
            shapes = [props, whole]
        rows, cols = props.coords[:, 0], props.coords[:, 1]
        evidence = np.count_nonzero(deficit[rows, cols] > params.grow_sigma * pixel_noise)
        if evidence < params.min_area_px:
            continue
        judged = [
            (_outline_solidity(shape), shape.axis_major_length / max(shape.axis_minor_length, 1.0))
            for shape in shapes
        ]
        passing = [
            (solidity, elongation)
            for solidity, elongation in judged
            if solidity >= params.min_solidity and elongation <= params.max_elongation
        ]
        if not passing:
            continue
        solidity, elongation = max(passing)
        region_deficit = deficit[rows, cols]
        region_significance = significance[rows, cols]
        peak_at = int(np.argmax(region_significance))
        found.append(
            (
                float(region_significance[peak_at]),
                props,
                region_deficit,
                solidity,
                elongation,
                float(best_radius[rows[peak_at], cols[peak_at]]),
            )
        )
        kept[rows, cols] = True
    found.sort(key=lambda item: -item[0])
    regions = []
    for label, (peak_sig, props, region_deficit, solidity, elongation, radius) in enumerate(
        found, start=1
    ):
        regions.append(
            DustRegion(
                label=label,
                centroid_y=float(props.centroid[0]),
                centroid_x=float(props.centroid[1]),
                area_px=int(props.area),
                equivalent_diameter_px=float(props.equivalent_diameter_area),
                mean_deficit=float(region_deficit.mean()),
                peak_deficit=float(np.percentile(region_deficit, 99)),
                significance=peak_sig,
                solidity=solidity,
                elongation=float(elongation),
                kind=_kind_guess(props, deficit),
                best_radius_px=radius,
            )
        )
    return kept, tuple(regions)


def _mirrored_across_frame_edges(props: Any, allowed: np.ndarray) -> tuple[Any, Any] | None:
    """A region that touches the frame's edge, completed by its mirror image across it.

    Parameters
    ----------
    props : skimage.measure RegionProperties
        The region, in frame coordinates.
    allowed : np.ndarray
        (H, W) bool, the frame's pixels a filled pocket may take.

    Returns
    -------
    tuple or None
        None when the region touches no edge. Else the region with the pockets it encloses
        against the edge filled (frame coordinates), and the filled region joined to its
        mirror images across each edge it touches (its own coordinates), both as
        ``RegionProperties``.
    """
    min_row, min_col, max_row, max_col = props.bbox
    height, width = allowed.shape
    top, bottom, left, right = min_row == 0, max_row == height, min_col == 0, max_col == width
    if not (top or bottom or left or right):
        return None
    whole = props.image
    if top:
        whole = np.concatenate([whole[::-1], whole], axis=0)
    if bottom:
        whole = np.concatenate([whole, whole[::-1]], axis=0)
    if left:
        whole = np.concatenate([whole[:, ::-1], whole], axis=1)
    if right:
        whole = np.concatenate([whole, whole[:, ::-1]], axis=1)
    whole = fill_holes(whole)
    first_row = props.image.shape[0] if top else 0
    first_col = props.image.shape[1] if left else 0
    filled = whole[
        first_row : first_row + props.image.shape[0], first_col : first_col + props.image.shape[1]
    ]
    filled = filled & allowed[min_row:max_row, min_col:max_col]
    (visible,) = regionprops(filled.astype(np.uint8), offset=(min_row, min_col))
    (mirrored,) = regionprops(whole.astype(np.uint8))
    return visible, mirrored


def _outline_solidity(props: Any) -> float:
    """Solidity of a region once its outline is smoothed at a tenth of its radius.

    A faint shadow is outlined where its smoothed deficit crosses a level a few times the
    noise, so its outline is ragged at the scale of the noise; the shape prior is about the
    shadow's shape, not about that raggedness.
    """
    radius = 0.5 * props.equivalent_diameter_area
    closing = round(0.1 * radius)
    if closing < 1:
        return float(props.solidity)
    image = np.pad(props.image, closing)
    closed = ndimage.binary_closing(image, structure=_disc_kernel(closing) > 0)
    area = np.count_nonzero(closed)
    hull = np.count_nonzero(convex_hull_image(closed))
    return float(area / hull) if hull else 0.0


def _kind_guess(props: Any, deficit: np.ndarray) -> str:
    """``donut`` when the central third of the region is much lighter than the rest."""
    rows, cols = props.coords[:, 0], props.coords[:, 1]
    radius = 0.5 * props.equivalent_diameter_area
    distance = np.hypot(rows - props.centroid[0], cols - props.centroid[1])
    centre = distance <= radius / 3.0
    ring = (distance > radius / 2.0) & (distance <= 0.9 * radius)
    if centre.sum() < 3 or ring.sum() < 3:
        return "disc"
    centre_deficit = float(np.median(deficit[rows[centre], cols[centre]]))
    ring_deficit = float(np.median(deficit[rows[ring], cols[ring]]))
    return "donut" if ring_deficit > 0 and centre_deficit < 0.5 * ring_deficit else "disc"


@dataclass(frozen=True)
class MaskExpansionParams:
    """Parameters of :func:`expand_mask`.

    Attributes
    ----------
    dilation_px : float
        The core is grown by this distance; the grown support is exactly 1.0.
    feather_sigma_px : float
        Outside the support the mask falls off as ``exp(-t**2 / (2 sigma**2))`` with the
        distance ``t`` beyond the support (a half-Gaussian feather, 1.0 at the support edge).
    cutoff : float
        Feather values below this become exactly 0.0, so "clean" (mask == 0) is well defined.
    """

    dilation_px: float = 10.0
    feather_sigma_px: float = 3.0
    cutoff: float = 1e-3

    def __post_init__(self) -> None:
        if not (math.isfinite(self.dilation_px) and self.dilation_px >= 0):
            raise ValueError(f"dilation_px must be >= 0, got {self.dilation_px}.")
        if not (math.isfinite(self.feather_sigma_px) and self.feather_sigma_px >= 0):
            raise ValueError(f"feather_sigma_px must be >= 0, got {self.feather_sigma_px}.")
        if not 0.0 < self.cutoff < 1.0:
            raise ValueError(f"cutoff must lie in (0, 1), got {self.cutoff}.")


def expand_mask(
    core: np.ndarray, params: MaskExpansionParams = MaskExpansionParams()
) -> np.ndarray:
    """Grow a binary dust core into the support used by the flat, feathered outside only.

    Parameters
    ----------
    core : np.ndarray
        (H, W) bool dust core.
    params : MaskExpansionParams
        Dilation distance, feather width, cutoff.

    Returns
    -------
    np.ndarray
        (H, W) float32 in [0, 1]: exactly 1.0 on the core and on every pixel within
        ``dilation_px`` of it (Euclidean distance), a half-Gaussian feather beyond, exactly 0.0
        where the feather drops below ``cutoff``. An empty core gives all zeros.
    """
    mask = np.asarray(core)
    if mask.ndim != 2 or mask.dtype != bool:
        raise ValueError(
            f"core must be a 2-D bool mask, got {mask.dtype} with shape {mask.shape}; "
            "binarize it first (e.g. core > 0.5)."
        )
    expanded = np.zeros(mask.shape, dtype=np.float32)
    if not mask.any():
        return expanded
    squared = _squared_distance_to_false(~mask)
    # The feather drops below the cutoff beyond this distance: only nearer pixels are computed
    # (the same float64 arithmetic as over the whole frame; a pixel of margin for rounding).
    reach = params.dilation_px + params.feather_sigma_px * math.sqrt(-2.0 * math.log(params.cutoff))
    near = ~_beyond(squared, reach + 1.0)
    beyond = np.sqrt(squared[near]) - params.dilation_px
    if params.feather_sigma_px > 0:
        feather = np.exp(-0.5 * (np.clip(beyond, 0.0, None) / params.feather_sigma_px) ** 2)
    else:
        feather = (beyond <= 0).astype(np.float64)
    feather[beyond <= 0] = 1.0
    feather[feather < params.cutoff] = 0.0
    expanded[near] = feather
    return expanded
