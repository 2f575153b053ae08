"""Seeded synthetic solar and planetary SER videos with their ground truth.

The generator follows the image model of a sensor under a drifting, seeing-blurred target::

    frame_i = quantize(black + D + gain * Poisson(full_well * V * T * S_i) + read_noise)

- ``S_i`` is the scene (limb-darkened disk with a granulation-like texture and sunspots, or a
  banded planet on a black sky), normalised so that the smooth disk centre is 1.0, blurred by the
  seeing and shifted by the frame's ``(dy, dx)``: drift linear in time plus random jitter. The
  sub-pixel shift and the blur are applied together in the Fourier domain on a padded canvas,
  so the scene moves exactly and without interpolation loss. Differential seeing, when asked
  for (``seeing_warp_px``), then bends each frame by a smooth random displacement field of its
  own, sampled by cubic interpolation.
- ``T`` is the transmission of the dust shadows. It is fixed on the sensor: it does not move with
  the scene. A shadow is the defocused image of the aperture: a filled disc (refractor) or an
  annulus (obstructed telescope) with softened edges.
- ``V`` is the vignetting, also fixed on the sensor.
- ``D`` is the sensor's own dark signal above the black level: hot pixels and amplifier glow
  in a corner (zero unless asked for). A video taken with the telescope capped
  (:func:`synthesize_dark_frames`) shows ``black + D`` and the read noise alone.

Units: every ADU value here (``black_level_adu``, ``read_noise_adu``, ``SolarVideoTruth.scene``)
is in *stored* units, the numbers found in the SER file. For 12-bit data stored shifted up, the
analogue-to-digital converter works in units of 16 stored ADU, so stored values are multiples of
16; the noiseless expectation of a pixel is ``black + V * T * scene`` (before quantization).

Randomness is drawn from independent, seeded streams (scene, dust, motion, and one noise stream
per frame), so the same seed gives the same bytes, a variant without dust keeps the same scene,
and any frame can be rendered on its own.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
from scipy import ndimage, special

from astro_assets.io.atomic import atomic_path
from astro_assets.io.ser import write_ser

TARGETS = ("sun", "planet")
DUST_KINDS = ("disc", "donut")
SAMPLE_SIZES = ("small", "demo")
TRUTH_SUFFIX = ".truth.npz"
TRUTH_FORMAT_VERSION = 1

MIN_FRAME_SIDE = 8
DEFAULT_DISK_RADIUS_FRAC = {"sun": 0.75, "planet": 0.3}
DEFAULT_READ_NOISE_ELECTRONS = 3.0
# The focal ratio below which random dust is drawn as donuts: obstructed telescopes (SCT,
# Newtonian, Maksutov) used at or near their native focal ratio. Longer focal ratios are typical
# of refractors with a Barlow or of long-focus solar telescopes, which give filled discs.
DONUT_FOCAL_RATIO_LIMIT = 20.0
CAPTURE_START_UTC = datetime(2024, 4, 8, 18, 0, 0, tzinfo=UTC)
SAMPLE_DARKS = {"sun_f30_hot_pixels": 32}
"""The sample variants captured with a dark video, and its frame count."""

_TAPER_PX = 16
_SCENE_STREAM, _DUST_STREAM, _MOTION_STREAM, _NOISE_STREAM = 0, 1, 2, 3
_DARK_STREAM, _DARK_NOISE_STREAM, _SEEING_STREAM = 4, 5, 6
_AMP_GLOW_SCALE = 0.25
"""e-folding distance of the amplifier glow from its corner, as a fraction of the shorter side."""
_PROFILE_CUTOFF = 1e-5
_MAX_DUST_FRACTION = 0.25
_SUN_LIMB_COEFFS = (0.6, 0.1)
_PLANET_LIMB_COEFFS = (0.5, 0.0)
PLANET_FLATTENING = 0.065
"""1 - polar / equatorial radius of the synthetic planet."""
_LIMB_EDGE_SIGMA_PX = 0.6
_SUN_AUREOLE_LEVEL = 0.01


_PARAM_INT_FIELDS = ("width", "height", "n_frames", "n_sunspots", "n_dust", "bit_depth", "seed")
_OPTIONAL_PARAM_FIELDS = frozenset({"disk_radius_frac", "read_noise_adu", "black_level_adu"})
_PARAM_FLOAT_FIELDS = (
    "disk_radius_frac",
    "phase_angle_deg",
    "drift_px",
    "jitter_px",
    "blur_sigma_px",
    "seeing_warp_px",
    "seeing_scale_px",
    "focal_ratio",
    "pixel_size_um",
    "vignetting",
    "texture_contrast",
    "granule_size_px",
    "full_well",
    "peak_level_frac",
    "read_noise_adu",
    "black_level_adu",
    "hot_pixel_fraction",
    "hot_pixel_adu",
    "amp_glow_adu",
    "frame_rate_hz",
)


def _coerce_numbers(
    instance: object, float_fields: tuple[str, ...], int_fields: tuple[str, ...]
) -> None:
    """Store numeric fields as plain Python floats and ints (numpy scalars included), so that
    the parameters compare, hash and serialise to JSON the same whatever the caller passed."""
    for name in int_fields:
        value = getattr(instance, name)
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise ValueError(f"{name}={value!r} must be an integer")
        object.__setattr__(instance, name, int(value))
    for name in float_fields:
        value = getattr(instance, name)
        if value is None and name in _OPTIONAL_PARAM_FIELDS:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"{name}={value!r} must be a number")
        object.__setattr__(instance, name, float(value))


@dataclass(frozen=True)
class DustSpec:
    """One dust shadow on the sensor.

    Attributes
    ----------
    x, y : float
        Centre in pixels (``x`` = column, ``y`` = row; pixel centres at integers).
    diameter_px : float
        Outer diameter of the shadow, about ``distance_from_sensor / focal_ratio / pixel_size``.
    depth : float
        Fractional light loss at the deepest point, in [0, 1].
    kind : str
        ``"disc"`` (refractor: filled shadow) or ``"donut"`` (obstructed telescope: annulus).
    obstruction : float
        Inner/outer diameter ratio of a donut, in (0, 1). Ignored for discs.
    """

    x: float
    y: float
    diameter_px: float
    depth: float
    kind: str
    obstruction: float = 0.35

    def __post_init__(self) -> None:
        _coerce_numbers(self, ("x", "y", "diameter_px", "depth", "obstruction"), ())
        if not (math.isfinite(self.x) and math.isfinite(self.y)):
            raise ValueError(f"dust centre ({self.x}, {self.y}) must be finite pixel coordinates")
        if not (math.isfinite(self.diameter_px) and self.diameter_px >= 1.0):
            raise ValueError(
                f"dust diameter_px={self.diameter_px} is invalid: give a shadow diameter of at "
                "least 1 pixel"
            )
        if not 0.0 <= self.depth <= 1.0:
            raise ValueError(
                f"dust depth={self.depth} is outside [0, 1]: give the fractional light loss at "
                "the deepest point (0.2 means 20 % darker)"
            )
        if self.kind not in DUST_KINDS:
            raise ValueError(f"dust kind={self.kind!r} is unknown: use one of {DUST_KINDS}")
        if not 0.0 < self.obstruction < 1.0:
            raise ValueError(
                f"dust obstruction={self.obstruction} is outside (0, 1): give the inner/outer "
                "diameter ratio of the donut (the telescope's central obstruction, e.g. 0.35)"
            )

    @property
    def edge_sigma_px(self) -> float:
        """Gaussian softening of the shadow edges (particle size and diffraction), pixels."""
        return max(0.5, 0.05 * self.diameter_px)

    @property
    def outer_radius_px(self) -> float:
        """Radius beyond which the shadow leaves no trace (transmission exactly 1)."""
        return 0.5 * self.diameter_px + 6.0 * self.edge_sigma_px


@dataclass(frozen=True)
class SunspotSpec:
    """A dark feature of the scene at zero shift: a sunspot, or a moon shadow on a planet.

    Attributes
    ----------
    x, y : float
        Centre in pixels at zero shift; it moves with the scene.
    umbra_radius_px, penumbra_radius_px : float
        Mean radii; sunspot outlines are irregular by up to about 25 %.
    """

    x: float
    y: float
    umbra_radius_px: float
    penumbra_radius_px: float


@dataclass(frozen=True)
class SolarVideoParams:
    """Everything that defines a synthetic video; the same parameters give the same bytes.

    Attributes
    ----------
    width, height, n_frames : int
        Frame size in pixels (each at least 8) and number of frames.
    target : str
        ``"sun"``: limb-darkened disk with granulation-like texture and sunspots, which may
        overfill the frame. ``"planet"``: banded, oblate disk on a black sky.
    disk_radius_frac : float or None
        Disk radius over ``min(width, height)``. None: 0.75 for the sun (the limb cuts the
        corners, as in close-ups), 0.3 for a planet.
    disk_center_frac : tuple of float
        Disk centre as fractions of ``(width - 1, height - 1)``; (0.5, 0.5) is the frame centre.
    phase_angle_deg : float
        Angle between the directions of the light and of the observer, degrees in [0, 180): 0
        lights the whole disk; the light comes from +x, so the terminator, half an ellipse
        across the disk, darkens its left part: 90 is half lit, more is a crescent (the Moon
        or a planet in phase).
    n_sunspots : int
        Sunspots (sun) or moon shadows (planet), drawn on the disk inside the frame.
    drift_px : float
        Total drift of the scene over the video, pixels, in a seeded random direction, centred on
        the middle of the video (0 = perfectly tracked).
    jitter_px : float
        Rms of the random 2-D per-frame displacement (seeing), pixels.
    blur_sigma_px : float
        Gaussian seeing blur, pixels.
    seeing_warp_px : float
        Rms of the 2-D displacement field by which differential seeing bends each frame,
        pixels, drawn anew for every frame: parts of the target further apart than
        ``seeing_scale_px`` move independently, which no registration of the whole frame
        follows (0 = none).
    seeing_scale_px : float
        Correlation length of that field: the standard deviation, in pixels, of the Gaussian
        that smooths white noise into it.
    dust : tuple of DustSpec or None
        The shadows; None draws ``n_dust`` of them from ``focal_ratio`` (see ``random_dust``).
    focal_ratio : float
        Sets sizes, depths and kind of random dust: f/10 large faint donuts, f/30 ~18 px ~20 %
        deep discs, f/60 near-opaque ~9 px spots (diameters capped at 0.25 of the frame).
    n_dust : int
        Number of random shadows when ``dust`` is None.
    pixel_size_um : float
        Pixel pitch used to turn dust distances into shadow diameters.
    vignetting : float
        Fractional fall-off at the frame corners, in [0, 1).
    texture_contrast : float
        Rms contrast of the surface texture (granulation, or turbulence in the planet's bands).
    granule_size_px : float
        Typical size of the texture cells, pixels.
    full_well : float
        Photo-electrons at the smooth disk centre (sets the Poisson noise).
    peak_level_frac : float
        Stored value of the noiseless disk centre (black included) over the largest stored value.
    read_noise_adu : float or None
        Gaussian read noise, stored ADU rms. None: 3 electrons.
    black_level_adu : float or None
        Offset added after the gain, stored ADU. None: 1/64 of the largest stored value.
    hot_pixel_fraction : float
        Share of the pixels, in [0, 0.1], with a dark signal of their own (hot pixels).
    hot_pixel_adu : float
        Mean dark signal of a hot pixel, stored ADU (exponentially distributed).
    amp_glow_adu : float
        Dark signal at the top-left corner from the amplifier's glow, stored ADU, falling off
        over a quarter of the shorter side.
    bit_depth : int
        Bits of the converter, 9 to 16; frames are always uint16.
    shift_12bit : bool
        Store data of fewer than 16 bits shifted up to the top of the 16-bit range (12-bit
        values multiplied by 16), as most capture programs do. False stores them LSB-aligned.
    frame_rate_hz : float
        Frame rate of the timestamps written into the SER trailer.
    transparency : tuple of float or None
        Share of the target's light that reaches the sensor in each frame (passing clouds,
        haze, an exposure changed during the capture), one value in [0, 1] per frame; the
        pedestal and the dark signal are not scaled. None: 1 for every frame.
    seed : int
        Seed of every random stream.
    """

    width: int = 96
    height: int = 72
    n_frames: int = 16
    target: str = "sun"
    disk_radius_frac: float | None = None
    disk_center_frac: tuple[float, float] = (0.5, 0.5)
    phase_angle_deg: float = 0.0
    n_sunspots: int = 1
    drift_px: float = 6.0
    jitter_px: float = 0.5
    blur_sigma_px: float = 1.0
    seeing_warp_px: float = 0.0
    seeing_scale_px: float = 32.0
    dust: tuple[DustSpec, ...] | None = None
    focal_ratio: float = 30.0
    n_dust: int = 3
    pixel_size_um: float = 3.75
    vignetting: float = 0.1
    texture_contrast: float = 0.05
    granule_size_px: float = 3.0
    full_well: float = 20000.0
    peak_level_frac: float = 0.7
    read_noise_adu: float | None = None
    black_level_adu: float | None = None
    hot_pixel_fraction: float = 0.0
    hot_pixel_adu: float = 0.0
    amp_glow_adu: float = 0.0
    bit_depth: int = 16
    shift_12bit: bool = True
    frame_rate_hz: float = 30.0
    transparency: tuple[float, ...] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _coerce_numbers(self, _PARAM_FLOAT_FIELDS, _PARAM_INT_FIELDS)
        self._check_geometry()
        self._check_motion()
        self._check_sensor()
        if self.disk_radius_frac is None:
            object.__setattr__(self, "disk_radius_frac", DEFAULT_DISK_RADIUS_FRAC[self.target])
        if self.black_level_adu is None:
            object.__setattr__(self, "black_level_adu", float(round(self.max_stored_value / 64)))
        if not 0.0 <= self.black_level_adu < 0.5 * self.max_stored_value:
            raise ValueError(
                f"black_level_adu={self.black_level_adu} must be in [0, "
                f"{0.5 * self.max_stored_value:g}) stored ADU for bit_depth={self.bit_depth}"
            )
        if self.gain_adu_per_electron <= 0.0:
            raise ValueError(
                "peak_level_frac leaves no room above the black level: raise peak_level_frac "
                "or lower black_level_adu"
            )
        if self.read_noise_adu is None:
            object.__setattr__(
                self,
                "read_noise_adu",
                DEFAULT_READ_NOISE_ELECTRONS * self.gain_adu_per_electron,
            )
        if not (math.isfinite(self.read_noise_adu) and self.read_noise_adu >= 0.0):
            raise ValueError(f"read_noise_adu={self.read_noise_adu} must be >= 0 stored ADU")
        self._check_dust()

    def _check_geometry(self) -> None:
        if self.width < MIN_FRAME_SIDE or self.height < MIN_FRAME_SIDE:
            raise ValueError(
                f"frame {self.width}x{self.height} is too small: width and height must be at "
                f"least {MIN_FRAME_SIDE} pixels"
            )
        if self.n_frames < 1:
            raise ValueError(f"n_frames={self.n_frames} must be at least 1")
        if not isinstance(self.shift_12bit, bool | np.bool_):
            raise ValueError(f"shift_12bit={self.shift_12bit!r} must be True or False")
        object.__setattr__(self, "shift_12bit", bool(self.shift_12bit))
        if self.target not in TARGETS:
            raise ValueError(f"target={self.target!r} is unknown: use one of {TARGETS}")
        if self.disk_radius_frac is not None and not 0.0 < self.disk_radius_frac <= 5.0:
            raise ValueError(
                f"disk_radius_frac={self.disk_radius_frac} must be in (0, 5]: the disk radius "
                "over min(width, height)"
            )
        if len(self.disk_center_frac) != 2 or not all(
            math.isfinite(v) for v in self.disk_center_frac
        ):
            raise ValueError(
                f"disk_center_frac={self.disk_center_frac!r} must be two finite fractions (x, y)"
            )
        object.__setattr__(self, "disk_center_frac", tuple(float(v) for v in self.disk_center_frac))
        if not 0.0 <= self.phase_angle_deg < 180.0:
            raise ValueError(
                f"phase_angle_deg={self.phase_angle_deg} must be in [0, 180): 0 is a fully lit "
                "disk, 90 half lit"
            )
        if self.n_sunspots < 0 or self.n_dust < 0:
            raise ValueError("n_sunspots and n_dust must be >= 0")
        if self.seed < 0:
            raise ValueError(f"seed={self.seed} must be a non-negative integer")
        if self.transparency is not None:
            values = tuple(self.transparency)
            if len(values) != self.n_frames or not all(
                isinstance(v, int | float | np.integer | np.floating)
                and not isinstance(v, bool)
                and 0.0 <= v <= 1.0
                for v in values
            ):
                raise ValueError(
                    f"transparency must hold one number in [0, 1] per frame ({self.n_frames}), "
                    f"got {self.transparency!r}"
                )
            object.__setattr__(self, "transparency", tuple(float(v) for v in values))

    def _check_motion(self) -> None:
        for name in ("drift_px", "jitter_px", "blur_sigma_px", "seeing_warp_px"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name}={value} must be a finite number >= 0 pixels")
        if not (math.isfinite(self.seeing_scale_px) and self.seeing_scale_px > 0.0):
            raise ValueError(
                f"seeing_scale_px={self.seeing_scale_px} must be a finite number > 0 pixels"
            )
        if not 0.0 < self.granule_size_px <= 0.5 * min(self.width, self.height):
            raise ValueError(
                f"granule_size_px={self.granule_size_px} must be in (0, half the frame side]"
            )
        if not 0.0 <= self.texture_contrast <= 0.5:
            raise ValueError(f"texture_contrast={self.texture_contrast} must be in [0, 0.5]")
        reach = (
            self.max_scene_excursion_px + self.max_seeing_warp_px + 4.0 * self.blur_sigma_px + 2.0
        )
        room = self.canvas_pad_px - _TAPER_PX
        if reach > room:
            raise ValueError(
                f"drift_px={self.drift_px}, jitter_px={self.jitter_px}, "
                f"seeing_warp_px={self.seeing_warp_px} and "
                f"blur_sigma_px={self.blur_sigma_px} move the scene up to {reach:.1f} px from "
                f"its rest position, but a {self.width}x{self.height} frame supports at most "
                f"{room} px: reduce them or enlarge the frame"
            )

    def _check_sensor(self) -> None:
        if not (math.isfinite(self.focal_ratio) and self.focal_ratio > 0.0):
            raise ValueError(f"focal_ratio={self.focal_ratio} must be > 0 (e.g. 30 for f/30)")
        if not (math.isfinite(self.pixel_size_um) and self.pixel_size_um > 0.0):
            raise ValueError(f"pixel_size_um={self.pixel_size_um} must be > 0")
        if not 0.0 <= self.vignetting < 1.0:
            raise ValueError(
                f"vignetting={self.vignetting} must be in [0, 1): the fractional fall-off at "
                "the corners"
            )
        if not (math.isfinite(self.full_well) and self.full_well > 0.0):
            raise ValueError(f"full_well={self.full_well} must be > 0 photo-electrons")
        if not 0.0 < self.peak_level_frac <= 1.0:
            raise ValueError(f"peak_level_frac={self.peak_level_frac} must be in (0, 1]")
        if not 9 <= self.bit_depth <= 16:
            raise ValueError(
                f"bit_depth={self.bit_depth} is not supported: use 9 to 16 bits (two bytes per "
                "pixel)"
            )
        if not (math.isfinite(self.frame_rate_hz) and self.frame_rate_hz > 0.0):
            raise ValueError(f"frame_rate_hz={self.frame_rate_hz} must be > 0")
        if not 0.0 <= self.hot_pixel_fraction <= 0.1:
            raise ValueError(f"hot_pixel_fraction={self.hot_pixel_fraction} must be in [0, 0.1]")
        for name in ("hot_pixel_adu", "amp_glow_adu"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name}={value} must be >= 0 stored ADU")

    def _check_dust(self) -> None:
        if self.dust is None:
            return
        dust = tuple(self.dust)
        for spec in dust:
            if not isinstance(spec, DustSpec):
                raise ValueError(f"dust entries must be DustSpec, got {type(spec).__name__}")
            if not (0.0 <= spec.x <= self.width - 1 and 0.0 <= spec.y <= self.height - 1):
                raise ValueError(
                    f"dust centre (x={spec.x}, y={spec.y}) lies outside the "
                    f"{self.width}x{self.height} frame: give x in [0, {self.width - 1}] and y in "
                    f"[0, {self.height - 1}]"
                )
        object.__setattr__(self, "dust", dust)

    @property
    def storage_factor(self) -> int:
        """Stored value of one converter unit: 16 for 12-bit data stored shifted, else 1."""
        return 2 ** (16 - self.bit_depth) if self.shift_12bit else 1

    @property
    def max_stored_value(self) -> int:
        """The largest value a frame can hold (saturation)."""
        return (2**self.bit_depth - 1) * self.storage_factor

    @property
    def ser_depth(self) -> int:
        """PixelDepthPerPlane to write: 16 for shifted data (it spans 16 bits), else bit_depth."""
        return 16 if self.shift_12bit else self.bit_depth

    @property
    def gain_adu_per_electron(self) -> float:
        """Stored ADU per photo-electron."""
        black = self.black_level_adu if self.black_level_adu is not None else 0.0
        return (self.peak_level_frac * self.max_stored_value - black) / self.full_well

    @property
    def canvas_pad_px(self) -> int:
        """Scene margin rendered around the frame; bounds how far the scene may move."""
        return max(32, math.ceil(0.25 * max(self.width, self.height))) + _TAPER_PX

    @property
    def jitter_axis_sigma_px(self) -> float:
        return self.jitter_px / math.sqrt(2.0)

    @property
    def max_scene_excursion_px(self) -> float:
        """Bound on |dy| and |dx|: half the drift plus jitter clipped at 3.5 sigma per axis."""
        return 0.5 * self.drift_px + 3.5 * self.jitter_axis_sigma_px

    @property
    def seeing_axis_sigma_px(self) -> float:
        """Rms of the seeing's displacement field along each axis, pixels."""
        return self.seeing_warp_px / math.sqrt(2.0)

    @property
    def max_seeing_warp_px(self) -> float:
        """Bound on each axis of the seeing's displacement field: it is clipped at 3.5 times
        its rms per axis."""
        return 3.5 * self.seeing_axis_sigma_px

    def to_json(self) -> str:
        """The parameters as a JSON object (dust as a list of objects, or null)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SolarVideoParams:
        """Rebuild parameters written by ``to_json``."""
        raw: dict[str, Any] = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(
                f"unknown SolarVideoParams fields {unknown}: written by a newer version?"
            )
        if raw.get("dust") is not None:
            raw["dust"] = tuple(DustSpec(**d) for d in raw["dust"])
        raw["disk_center_frac"] = tuple(raw["disk_center_frac"])
        if raw.get("transparency") is not None:
            raw["transparency"] = tuple(raw["transparency"])
        return cls(**raw)


@dataclass(frozen=True, eq=False)
class SolarVideoTruth:
    """Ground truth of a synthetic video. Arrays are read-only.

    Attributes
    ----------
    transmission : numpy.ndarray
        (h, w) float32 sensor transmission of the dust alone; exactly 1.0 away from dust.
    vignetting : numpy.ndarray
        (h, w) float32, 1.0 at the frame centre.
    shifts : numpy.ndarray
        (n, 2) float64 ``(dy, dx)`` of the scene in each frame, pixels: frame ``i`` shows
        ``scene(y - dy, x - dx)``.
    dust : tuple of DustSpec
        The shadows actually rendered.
    scene : numpy.ndarray
        (h, w) float32 noiseless, seeing-blurred scene at zero shift, stored ADU above the black
        level, before vignetting and dust. A pixel of frame ``i`` has the expectation
        ``black_level_adu + vignetting * transmission * scene`` shifted by ``shifts[i]``, plus
        the sensor's :func:`dark_signal` where the parameters give one.
    black_level_adu : float
        Offset in stored ADU.
    params : SolarVideoParams
        The (fully resolved) parameters.
    sunspots : tuple of SunspotSpec
        Dark scene features at zero shift (sunspots or moon shadows).
    """

    transmission: np.ndarray
    vignetting: np.ndarray
    shifts: np.ndarray
    dust: tuple[DustSpec, ...]
    scene: np.ndarray
    black_level_adu: float
    params: SolarVideoParams
    sunspots: tuple[SunspotSpec, ...] = ()

    def __post_init__(self) -> None:
        shape = (self.params.height, self.params.width)
        for name, dtype in (
            ("transmission", np.float32),
            ("vignetting", np.float32),
            ("scene", np.float32),
        ):
            array = np.array(getattr(self, name), dtype=dtype)
            if array.shape != shape:
                raise ValueError(f"truth {name} has shape {array.shape}, expected {shape}")
            array.flags.writeable = False
            object.__setattr__(self, name, array)
        shifts = np.array(self.shifts, dtype=np.float64)
        if shifts.shape != (self.params.n_frames, 2):
            raise ValueError(
                f"truth shifts has shape {shifts.shape}, expected ({self.params.n_frames}, 2)"
            )
        shifts.flags.writeable = False
        object.__setattr__(self, "shifts", shifts)
        object.__setattr__(self, "dust", tuple(self.dust))
        object.__setattr__(self, "sunspots", tuple(self.sunspots))

    def dust_support(self, threshold: float = 0.005) -> np.ndarray:
        """(h, w) bool: where the dust removes more than ``threshold`` of the light."""
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold={threshold} must be in [0, 1)")
        return self.transmission < np.float32(1.0 - threshold)

    def save(self, path: str | Path) -> Path:
        """Write every array and the parameters to ``path`` (an ``.npz``), atomically.

        ``truth_path_for(video)`` gives the conventional name ``<stem>.truth.npz``.
        """
        path = Path(path)
        dust_json = json.dumps([dataclasses.asdict(d) for d in self.dust])
        spots_json = json.dumps([dataclasses.asdict(s) for s in self.sunspots])
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(
                handle,
                transmission=self.transmission,
                vignetting=self.vignetting,
                shifts=self.shifts,
                scene=self.scene,
                black_level_adu=np.float64(self.black_level_adu),
                params_json=np.str_(self.params.to_json()),
                dust_json=np.str_(dust_json),
                sunspots_json=np.str_(spots_json),
                format_version=np.int64(TRUTH_FORMAT_VERSION),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> SolarVideoTruth:
        """Read a file written by ``save``."""
        with np.load(Path(path), allow_pickle=False) as data:
            version = int(data["format_version"])
            if version != TRUTH_FORMAT_VERSION:
                raise ValueError(
                    f"{path}: truth format version {version} is not supported (expected "
                    f"{TRUTH_FORMAT_VERSION}); regenerate the sample"
                )
            return cls(
                transmission=data["transmission"],
                vignetting=data["vignetting"],
                shifts=data["shifts"],
                dust=tuple(DustSpec(**d) for d in json.loads(str(data["dust_json"]))),
                scene=data["scene"],
                black_level_adu=float(data["black_level_adu"]),
                params=SolarVideoParams.from_json(str(data["params_json"])),
                sunspots=tuple(SunspotSpec(**s) for s in json.loads(str(data["sunspots_json"]))),
            )


def truth_path_for(video_path: str | Path) -> Path:
    """``<dir>/<stem>.truth.npz`` beside a video ``<dir>/<stem>.ser``."""
    video_path = Path(video_path)
    return video_path.with_name(video_path.stem + TRUTH_SUFFIX)


def random_dust(params: SolarVideoParams) -> tuple[DustSpec, ...]:
    """Draw ``params.n_dust`` shadows typical of ``params.focal_ratio`` (seeded).

    Physics: a particle at distance ``d`` above the sensor intercepts part of the converging
    beam, whose footprint there has diameter ``d / N``; the shadow has that diameter on the
    sensor and its depth is the blocked fraction of the beam, ``(p / (d / N))**2`` for a particle
    of diameter ``p`` (divided by ``1 - obstruction**2`` for an annular beam). Distances are drawn
    in 1.5-2.5 mm (a sensor window or filter), particle sizes log-uniformly in 22-40 um; depths
    are capped at 0.95. Diameters are capped at 0.25 of the shorter frame side so that small
    test frames stay meaningful. Shadows do not overlap each other nor the sunspots and lie
    fully inside the frame; they are centred on the disk at zero shift where it has room (so
    that they can be measured), else anywhere in the frame.

    Raises
    ------
    ValueError
        If the shadows cannot be placed (too many for the frame).
    """
    spots = _draw_sunspots(params, np.random.default_rng([params.seed, _SCENE_STREAM]))
    return _draw_dust(params, spots)


class SyntheticSolarVideo:
    """A synthetic video rendered lazily, one frame at a time, with its ground truth.

    Rendering a frame costs one inverse FFT of the padded canvas plus the noise, so memory stays
    bounded by a few frames whatever ``n_frames`` is, and frame ``i`` is the same whether or not
    the others were rendered.
    """

    def __init__(self, params: SolarVideoParams) -> None:
        self.params = params
        h, w = params.height, params.width
        pad = params.canvas_pad_px
        self._canvas_shape = (
            scipy.fft.next_fast_len(h + 2 * pad, real=True),
            scipy.fft.next_fast_len(w + 2 * pad, real=True),
        )
        self._crop = (slice(pad, pad + h), slice(pad, pad + w))
        scene_rng = np.random.default_rng([params.seed, _SCENE_STREAM])
        sunspots = _draw_sunspots(params, scene_rng)
        canvas = _render_scene_canvas(params, self._canvas_shape, pad, sunspots, scene_rng)
        ky = scipy.fft.fftfreq(self._canvas_shape[0])[:, None]
        kx = scipy.fft.rfftfreq(self._canvas_shape[1])[None, :]
        transfer = np.exp(-2.0 * np.pi**2 * params.blur_sigma_px**2 * (ky**2 + kx**2))
        self._scene_hat = scipy.fft.rfft2(canvas) * transfer
        self._ky = ky
        self._kx = kx

        dust = params.dust if params.dust is not None else _draw_dust(params, sunspots)
        transmission = dust_transmission(dust, (h, w))
        vignetting = vignetting_map((h, w), params.vignetting)
        self._electrons_per_unit = (
            params.full_well * vignetting.astype(np.float64) * transmission.astype(np.float64)
        )
        self._dark = dark_signal(params)
        shifts = _draw_shifts(params)
        adu_per_unit = params.gain_adu_per_electron * params.full_well
        scene = self._shifted_scene(0.0, 0.0) * adu_per_unit
        self.truth = SolarVideoTruth(
            transmission=transmission,
            vignetting=vignetting,
            shifts=shifts,
            dust=dust,
            scene=scene.astype(np.float32),
            black_level_adu=float(params.black_level_adu),
            params=params,
            sunspots=sunspots,
        )

    def __len__(self) -> int:
        return self.params.n_frames

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(self.params.n_frames):
            yield self.frame(index)

    def _shifted_canvas(self, dy: float, dx: float) -> np.ndarray:
        """The whole padded canvas, the scene shifted by ``(dy, dx)``."""
        phase = np.exp(-2j * np.pi * self._ky * dy) * np.exp(-2j * np.pi * self._kx * dx)
        return scipy.fft.irfft2(self._scene_hat * phase, s=self._canvas_shape)

    def _shifted_scene(self, dy: float, dx: float) -> np.ndarray:
        return np.clip(self._shifted_canvas(dy, dx)[self._crop], 0.0, None)

    def _warped_scene(self, index: int, dy: float, dx: float) -> np.ndarray:
        """The scene shifted by ``(dy, dx)`` and bent by frame ``index``'s seeing field."""
        p = self.params
        rng = np.random.default_rng([p.seed, _SEEING_STREAM, index])
        rows, cols = np.mgrid[self._crop].astype(np.float64)
        for coordinates in (rows, cols):
            field = ndimage.gaussian_filter(
                rng.standard_normal((p.height, p.width)), p.seeing_scale_px, mode="wrap"
            )
            field *= p.seeing_axis_sigma_px / max(float(field.std()), np.finfo(np.float64).tiny)
            coordinates += np.clip(field, -p.max_seeing_warp_px, p.max_seeing_warp_px)
        canvas = self._shifted_canvas(dy, dx)
        warped = ndimage.map_coordinates(canvas, [rows, cols], order=3, mode="nearest")
        return np.clip(warped, 0.0, None)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.params.n_frames:
            raise IndexError(f"frame {index} out of range: the video has {self.params.n_frames}")

    def expected_electrons(self, index: int) -> np.ndarray:
        """(h, w) float64 mean photo-electrons of frame ``index`` (the Poisson rate)."""
        self._check_index(index)
        dy, dx = self.truth.shifts[index]
        if self.params.seeing_warp_px > 0.0:
            scene = self._warped_scene(index, dy, dx)
        else:
            scene = self._shifted_scene(dy, dx)
        electrons = self._electrons_per_unit * scene
        if self.params.transparency is not None:
            electrons *= self.params.transparency[index]
        return electrons

    def expected_frame(self, index: int) -> np.ndarray:
        """(h, w) float64 noiseless frame ``index`` in stored ADU, before quantization."""
        p = self.params
        frame = p.black_level_adu + p.gain_adu_per_electron * self.expected_electrons(index)
        return frame if self._dark is None else frame + self._dark

    def frame(self, index: int) -> np.ndarray:
        """(h, w) uint16 frame ``index``: Poisson and read noise, quantized to the bit depth."""
        p = self.params
        rng = np.random.default_rng([p.seed, _NOISE_STREAM, index])
        electrons = rng.poisson(self.expected_electrons(index))
        adu = p.black_level_adu + p.gain_adu_per_electron * electrons
        if self._dark is not None:
            adu += self._dark
        adu += p.read_noise_adu * rng.standard_normal(adu.shape)
        return _quantize(adu, p)


def _quantize(adu: np.ndarray, params: SolarVideoParams) -> np.ndarray:
    """Stored uint16 values of ``adu``: rounded to the converter's units and clipped."""
    native = np.clip(np.rint(adu / params.storage_factor), 0, 2**params.bit_depth - 1)
    return (native * params.storage_factor).astype(np.uint16)


def dark_signal(params: SolarVideoParams) -> np.ndarray | None:
    """The sensor's dark signal ``D`` above the black level: hot pixels and amplifier glow.

    Parameters
    ----------
    params : SolarVideoParams
        ``hot_pixel_fraction``, ``hot_pixel_adu``, ``amp_glow_adu`` and ``seed``.

    Returns
    -------
    numpy.ndarray or None
        (h, w) float64 stored ADU, the same for every frame of the video and of its dark
        video; None when the parameters ask for none.
    """
    h, w = params.height, params.width
    if params.hot_pixel_fraction * params.hot_pixel_adu == 0.0 and params.amp_glow_adu == 0.0:
        return None
    rng = np.random.default_rng([params.seed, _DARK_STREAM])
    hot = rng.random((h, w)) < params.hot_pixel_fraction
    dark = np.zeros((h, w))
    dark[hot] = rng.exponential(params.hot_pixel_adu, int(np.count_nonzero(hot)))
    y, x = np.mgrid[0:h, 0:w]
    dark += params.amp_glow_adu * np.exp(-np.hypot(y, x) / (_AMP_GLOW_SCALE * min(h, w)))
    return dark


def synthesize_dark_frames(params: SolarVideoParams, n_frames: int) -> np.ndarray:
    """Frames taken with the same sensor settings and the telescope capped.

    ``frame_i = quantize(black + D + read_noise)``, with the dark signal ``D`` of
    :func:`dark_signal` (the one in every frame of the video of ``params``) and a noise stream
    of its own.

    Returns
    -------
    numpy.ndarray
        (n_frames, h, w) uint16 stored values.
    """
    if isinstance(n_frames, bool) or not isinstance(n_frames, int | np.integer) or n_frames < 1:
        raise ValueError(f"n_frames={n_frames!r} must be a positive integer")
    dark = dark_signal(params)
    frames = np.empty((int(n_frames), params.height, params.width), dtype=np.uint16)
    for index in range(int(n_frames)):
        rng = np.random.default_rng([params.seed, _DARK_NOISE_STREAM, index])
        adu = np.full((params.height, params.width), params.black_level_adu)
        if dark is not None:
            adu += dark
        adu += params.read_noise_adu * rng.standard_normal(adu.shape)
        frames[index] = _quantize(adu, params)
    return frames


def synthesize_video(params: SolarVideoParams) -> tuple[Iterator[np.ndarray], SolarVideoTruth]:
    """Render a synthetic video lazily.

    Parameters
    ----------
    params : SolarVideoParams

    Returns
    -------
    frames : iterator of numpy.ndarray
        ``params.n_frames`` uint16 (h, w) frames, rendered one at a time (bounded memory).
    truth : SolarVideoTruth
    """
    video = SyntheticSolarVideo(params)
    return iter(video), video.truth


def synthesize_frames_array(params: SolarVideoParams) -> tuple[np.ndarray, SolarVideoTruth]:
    """Like ``synthesize_video`` but return all frames as one (n, h, w) uint16 array."""
    video = SyntheticSolarVideo(params)
    frames = np.empty((params.n_frames, params.height, params.width), dtype=np.uint16)
    for index in range(params.n_frames):
        frames[index] = video.frame(index)
    return frames, video.truth


def frame_timestamps(params: SolarVideoParams) -> np.ndarray:
    """(n,) ``datetime64[ns]`` UTC capture times: a fixed start, then one frame every
    ``1 / frame_rate_hz`` seconds, rounded to the 100 ns ticks that SER trailers hold."""
    start = np.datetime64(CAPTURE_START_UTC.replace(tzinfo=None), "ns")
    ticks = np.rint(np.arange(params.n_frames) * (1e7 / params.frame_rate_hz)).astype(np.int64)
    return start + (ticks * 100).astype("timedelta64[ns]")


def write_sample_video(path: str | Path, params: SolarVideoParams) -> tuple[Path, Path]:
    """Write the video to ``path`` (SER, with a timestamp trailer) and its truth beside it.

    Returns
    -------
    (video_path, truth_path) : tuple of pathlib.Path
        ``truth_path`` is ``<stem>.truth.npz`` in the same folder.
    """
    path = Path(path)
    if path.suffix.lower() != ".ser":
        raise ValueError(f"{path}: a sample video must have the .ser suffix")
    frames, truth = synthesize_video(params)
    write_ser(
        path,
        frames,
        color="MONO",
        depth=params.ser_depth,
        timestamps=frame_timestamps(params),
        instrument="astro_assets synthetic",
        date_utc=CAPTURE_START_UTC,
    )
    truth_path = truth.save(truth_path_for(path))
    return path, truth_path


def write_dark_video(path: str | Path, params: SolarVideoParams, n_frames: int) -> Path:
    """Write the dark video of ``params`` (:func:`synthesize_dark_frames`) to ``path`` (SER)."""
    path = Path(path)
    if path.suffix.lower() != ".ser":
        raise ValueError(f"{path}: a dark video must have the .ser suffix")
    return write_ser(
        path,
        iter(synthesize_dark_frames(params, n_frames)),
        color="MONO",
        depth=params.ser_depth,
        instrument="astro_assets synthetic",
        date_utc=CAPTURE_START_UTC,
    )


def sample_catalog(size: str = "small") -> dict[str, SolarVideoParams]:
    """The named sample variants, by name, for ``size`` ``"small"`` (tests) or ``"demo"``.

    - ``sun_f30_drift``: f/30 discs, two sunspots, drift larger than the dust (the easy case).
    - ``sun_f10_donuts_tracked``: f/10 faint donuts, two sunspots, perfectly tracked (sunspots
      look like dust in the median), 12-bit data stored shifted.
    - ``planet_f60``: near-opaque f/60 spots on a drifting banded planet over a black sky.
    - ``sun_dustfree``: no dust, tracked, with sunspots: for false-positive measurements.
    - ``sun_f30_hot_pixels``: as ``sun_f30_drift`` without sunspots, on a sensor with hot pixels
      (0.5 % of them, 1,000 ADU on average) and an amplifier's glow (300 ADU in a corner);
      :func:`generate_sample_darks` writes its dark video (``SAMPLE_DARKS``).
    """
    if size not in SAMPLE_SIZES:
        raise ValueError(f"size={size!r} is unknown: use one of {SAMPLE_SIZES}")
    if size == "small":
        frame = {"width": 96, "height": 72, "n_frames": 12}
        sun_drift, planet_drift = 18.0, 10.0
    else:
        frame = {"width": 640, "height": 480, "n_frames": 60}
        sun_drift, planet_drift = 60.0, 40.0
    return {
        "sun_f30_drift": SolarVideoParams(
            **frame, target="sun", focal_ratio=30.0, n_sunspots=2, drift_px=sun_drift, seed=11
        ),
        "sun_f10_donuts_tracked": SolarVideoParams(
            **frame,
            target="sun",
            focal_ratio=10.0,
            n_sunspots=2,
            drift_px=0.0,
            jitter_px=0.3,
            bit_depth=12,
            shift_12bit=True,
            seed=12,
        ),
        "planet_f60": SolarVideoParams(
            **frame,
            target="planet",
            focal_ratio=60.0,
            n_sunspots=1,
            drift_px=planet_drift,
            jitter_px=0.8,
            blur_sigma_px=1.2,
            seed=13,
        ),
        "sun_dustfree": SolarVideoParams(
            **frame, target="sun", dust=(), n_sunspots=2, drift_px=0.0, jitter_px=0.3, seed=14
        ),
        "sun_f30_hot_pixels": SolarVideoParams(
            **frame,
            target="sun",
            focal_ratio=30.0,
            n_sunspots=0,
            drift_px=sun_drift,
            hot_pixel_fraction=0.005,
            hot_pixel_adu=1000.0,
            amp_glow_adu=300.0,
            seed=15,
        ),
    }


def generate_samples(dest_dir: str | Path, *, size: str = "small") -> list[Path]:
    """Write every variant of ``sample_catalog(size)`` into ``dest_dir``.

    Returns
    -------
    list of pathlib.Path
        The SER files written, ``<dest_dir>/<name>.ser``, in catalogue order; each has its truth
        beside it at ``truth_path_for(video)``.
    """
    catalog = sample_catalog(size)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    return [write_sample_video(dest_dir / f"{name}.ser", p)[0] for name, p in catalog.items()]


def generate_sample_darks(dest_dir: str | Path, *, size: str = "small") -> list[Path]:
    """Write the dark video of every variant of ``sample_catalog(size)`` named in
    ``SAMPLE_DARKS`` into ``dest_dir``, under the variant's own name, as ``ser_median`` pairs a
    dark with its video (``<dest_dir>/<name>.ser``, ``SAMPLE_DARKS[name]`` frames).

    Returns
    -------
    list of pathlib.Path
        The dark SER files written, in ``SAMPLE_DARKS`` order.
    """
    catalog = sample_catalog(size)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    return [
        write_dark_video(dest_dir / f"{name}.ser", catalog[name], n_frames)
        for name, n_frames in SAMPLE_DARKS.items()
    ]


def dust_transmission(dust: tuple[DustSpec, ...], shape: tuple[int, int]) -> np.ndarray:
    """(h, w) float32 transmission of the shadows; independent shadows multiply.

    Each shadow is ``1 - depth * profile`` where ``profile`` is a hard disc or annulus of
    ``diameter_px`` softened by a Gaussian of ``edge_sigma_px`` (in the radial direction),
    normalised to a peak of exactly 1 so that the deepest point loses ``depth``. Profile values
    below 1e-5 are set to zero, so the transmission is exactly 1.0 away from the dust.
    """
    h, w = shape
    transmission = np.ones(shape, dtype=np.float64)
    for spec in dust:
        reach = spec.outer_radius_px
        y0, y1 = max(0, math.floor(spec.y - reach)), min(h, math.ceil(spec.y + reach) + 1)
        x0, x1 = max(0, math.floor(spec.x - reach)), min(w, math.ceil(spec.x + reach) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        radius = np.hypot(yy - spec.y, xx - spec.x)
        profile = _shadow_profile(radius, spec) / _shadow_peak(spec)
        profile[profile < _PROFILE_CUTOFF] = 0.0
        transmission[y0:y1, x0:x1] *= 1.0 - spec.depth * np.clip(profile, 0.0, 1.0)
    return transmission.astype(np.float32)


def vignetting_map(shape: tuple[int, int], falloff: float) -> np.ndarray:
    """(h, w) float32 ``1 - falloff * (r / r_corner)**2``: 1 at the centre, ``1 - falloff`` at
    the corners."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2
    r2_corner = ((h - 1) / 2) ** 2 + ((w - 1) / 2) ** 2
    return (1.0 - falloff * r2 / r2_corner).astype(np.float32)


def _shadow_profile(radius: np.ndarray, spec: DustSpec) -> np.ndarray:
    scale = math.sqrt(2.0) * spec.edge_sigma_px
    outer_radius = 0.5 * spec.diameter_px
    profile = 0.5 * special.erfc((radius - outer_radius) / scale)
    if spec.kind == "donut":
        profile = profile - 0.5 * special.erfc((radius - spec.obstruction * outer_radius) / scale)
    return profile


def _shadow_peak(spec: DustSpec) -> float:
    radii = np.linspace(0.0, 0.5 * spec.diameter_px, 4001)
    return float(_shadow_profile(radii, spec).max())


def _disk_geometry(params: SolarVideoParams) -> tuple[float, float, float]:
    """Disk centre (x, y) in frame pixels and radius in pixels."""
    cx = params.disk_center_frac[0] * (params.width - 1)
    cy = params.disk_center_frac[1] * (params.height - 1)
    return cx, cy, params.disk_radius_frac * min(params.width, params.height)


def _on_disk(params: SolarVideoParams, x: float, y: float, margin: float) -> bool:
    cx, cy, radius = _disk_geometry(params)
    if params.target == "planet":
        dy = (y - cy) / (1.0 - PLANET_FLATTENING)
        return math.hypot(x - cx, dy) <= radius - margin
    return math.hypot(x - cx, y - cy) <= radius - margin


def _draw_sunspots(params: SolarVideoParams, rng: np.random.Generator) -> tuple[SunspotSpec, ...]:
    side = min(params.width, params.height)
    spots: list[SunspotSpec] = []
    for _ in range(params.n_sunspots):
        if params.target == "sun":
            penumbra = float(rng.uniform(0.04, 0.1) * side)
            umbra = float(penumbra * rng.uniform(0.35, 0.5))
        else:
            disk_radius = _disk_geometry(params)[2]
            umbra = float(max(1.5, 0.03 * disk_radius * rng.uniform(0.8, 1.2)))
            penumbra = umbra
        margin = penumbra + 2.0
        for _attempt in range(1000):
            x = float(rng.uniform(margin, params.width - 1 - margin))
            y = float(rng.uniform(margin, params.height - 1 - margin))
            clear = all(
                math.hypot(x - s.x, y - s.y) > penumbra + s.penumbra_radius_px + 2.0 for s in spots
            )
            if clear and _on_disk(params, x, y, margin=penumbra + 0.15 * _disk_geometry(params)[2]):
                spots.append(SunspotSpec(x, y, umbra, penumbra))
                break
        else:
            raise ValueError(
                f"cannot place {params.n_sunspots} sunspots on the disk inside a "
                f"{params.width}x{params.height} frame: lower n_sunspots or enlarge the disk"
            )
    return tuple(spots)


def _draw_dust(params: SolarVideoParams, sunspots: tuple[SunspotSpec, ...]) -> tuple[DustSpec, ...]:
    rng = np.random.default_rng([params.seed, _DUST_STREAM])
    kind = "donut" if params.focal_ratio < DONUT_FOCAL_RATIO_LIMIT else "disc"
    obstruction = 0.35
    max_diameter = max(3.0, _MAX_DUST_FRACTION * min(params.width, params.height))
    dust: list[DustSpec] = []
    for _ in range(params.n_dust):
        distance_um = rng.uniform(1500.0, 2500.0)
        particle_um = math.exp(rng.uniform(math.log(22.0), math.log(40.0)))
        beam_um = distance_um / params.focal_ratio
        blocked = (particle_um / beam_um) ** 2
        if kind == "donut":
            blocked /= 1.0 - obstruction**2
        depth = float(min(0.95, blocked))
        diameter = float(np.clip(beam_um / params.pixel_size_um, 3.0, max_diameter))
        probe = DustSpec(0.0, 0.0, diameter, depth, kind, obstruction)
        position = _place_shadow(params, rng, probe, dust, sunspots)
        if position is None:
            raise ValueError(
                f"cannot place {params.n_dust} non-overlapping dust shadows of ~{diameter:.0f} px "
                f"in a {params.width}x{params.height} frame: lower n_dust, or give the shadows "
                "explicitly with dust=(DustSpec(...), ...)"
            )
        dust.append(dataclasses.replace(probe, x=position[0], y=position[1]))
    return tuple(dust)


def _place_shadow(
    params: SolarVideoParams,
    rng: np.random.Generator,
    probe: DustSpec,
    dust: list[DustSpec],
    sunspots: tuple[SunspotSpec, ...],
) -> tuple[float, float] | None:
    """A centre fully inside the frame, clear of other shadows and sunspots: on the disk if
    there is room there, else anywhere; None if the frame has no room."""
    reach = 0.5 * probe.diameter_px + probe.edge_sigma_px
    if reach > 0.5 * (min(params.width, params.height) - 1):
        return None
    for require_disk in (True, False):
        for _attempt in range(500):
            x = float(rng.uniform(reach, params.width - 1 - reach))
            y = float(rng.uniform(reach, params.height - 1 - reach))
            clear = all(
                math.hypot(x - d.x, y - d.y) > reach + 0.5 * d.diameter_px + 1.0 for d in dust
            ) and all(
                math.hypot(x - s.x, y - s.y) > reach + s.penumbra_radius_px + 1.0 for s in sunspots
            )
            if clear and (not require_disk or _on_disk(params, x, y, margin=0.0)):
                return x, y
    return None


def _draw_shifts(params: SolarVideoParams) -> np.ndarray:
    rng = np.random.default_rng([params.seed, _MOTION_STREAM])
    n = params.n_frames
    angle = rng.uniform(0.0, 2.0 * math.pi)
    drift = params.drift_px * np.array([math.sin(angle), math.cos(angle)])
    times = np.linspace(-0.5, 0.5, n) if n > 1 else np.zeros(1)
    sigma = params.jitter_axis_sigma_px
    jitter = np.clip(rng.normal(0.0, 1.0, size=(n, 2)), -3.5, 3.5) * sigma
    return times[:, None] * drift[None, :] + jitter


def _gaussian_field(
    rng: np.random.Generator, shape: tuple[int, int], sigma: float | tuple[float, float]
) -> np.ndarray:
    """Zero-mean, unit-rms, periodic Gaussian random field smoothed on ``sigma`` pixels."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / field.std()


def _granulation(rng: np.random.Generator, shape: tuple[int, int], size: float) -> np.ndarray:
    """Unit-rms texture: band-passed cells of about ``size`` pixels plus weaker large-scale
    (mesogranular) variation."""
    noise = rng.standard_normal(shape)
    cells = ndimage.gaussian_filter(noise, 0.25 * size, mode="wrap") - ndimage.gaussian_filter(
        noise, 0.6 * size, mode="wrap"
    )
    cells = (cells - cells.mean()) / cells.std()
    return cells + 0.3 * _gaussian_field(rng, shape, 4.0 * size)


def _limb_darkening(mu: np.ndarray, coeffs: tuple[float, float]) -> np.ndarray:
    u1, u2 = coeffs
    return 1.0 - u1 * (1.0 - mu) - u2 * (1.0 - mu) ** 2


def _irregular_radius(
    rng: np.random.Generator, angle: np.ndarray, radius: float, irregular: bool
) -> np.ndarray:
    if not irregular:
        return np.full_like(angle, radius)
    modulation = np.ones_like(angle)
    for harmonic in (2, 3, 4):
        modulation += rng.uniform(0.0, 0.08) * np.cos(harmonic * angle + rng.uniform(0, 2 * np.pi))
    return radius * modulation


def _spot_multiplier(
    params: SolarVideoParams,
    spots: tuple[SunspotSpec, ...],
    yy: np.ndarray,
    xx: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Intensity multiplier of the dark features and their penumbra coverage (0..1)."""
    multiplier = np.ones(yy.shape)
    coverage = np.zeros(yy.shape)
    is_sun = params.target == "sun"
    umbra_level, penumbra_level = (0.25, 0.75) if is_sun else (0.05, 0.05)
    for spot in spots:
        dy, dx = yy - spot.y, xx - spot.x
        rho = np.hypot(dy, dx)
        angle = np.arctan2(dy, dx)
        r_pen = _irregular_radius(rng, angle, spot.penumbra_radius_px, is_sun)
        r_umb = _irregular_radius(rng, angle, spot.umbra_radius_px, is_sun)
        pen = 0.5 * special.erfc((rho - r_pen) / (math.sqrt(2.0) * 0.7))
        umb = 0.5 * special.erfc((rho - r_umb) / (math.sqrt(2.0) * 0.5))
        multiplier *= 1.0 - (1.0 - penumbra_level) * pen - (penumbra_level - umbra_level) * umb
        coverage = np.maximum(coverage, pen)
    return multiplier, coverage


def _render_scene_canvas(
    params: SolarVideoParams,
    canvas_shape: tuple[int, int],
    pad: int,
    spots: tuple[SunspotSpec, ...],
    rng: np.random.Generator,
) -> np.ndarray:
    """The unblurred, normalised scene on the padded canvas, tapered to periodic edges."""
    cx, cy, radius = _disk_geometry(params)
    yy, xx = np.mgrid[0 : canvas_shape[0], 0 : canvas_shape[1]].astype(np.float64)
    yy -= pad
    xx -= pad
    dx = xx - cx
    if params.target == "sun":
        dy = yy - cy
        coeffs = _SUN_LIMB_COEFFS
    else:
        dy = (yy - cy) / (1.0 - PLANET_FLATTENING)
        coeffs = _PLANET_LIMB_COEFFS
    rho = np.hypot(dx, dy)
    mu = np.sqrt(np.clip(1.0 - (rho / radius) ** 2, 0.0, 1.0))
    edge = 0.5 * special.erfc((rho - radius) / (math.sqrt(2.0) * _LIMB_EDGE_SIGMA_PX))
    disk = _limb_darkening(mu, coeffs) * edge * _daylight(dx / radius, mu, params.phase_angle_deg)
    spot_multiplier, spot_coverage = _spot_multiplier(params, spots, yy, xx, rng)
    if params.target == "sun":
        texture = _granulation(rng, canvas_shape, params.granule_size_px)
        aureole = _SUN_AUREOLE_LEVEL * np.exp(-np.clip(rho - radius, 0.0, None) / (0.1 * radius))
        scene = disk * (1.0 + params.texture_contrast * texture * (1.0 - spot_coverage))
        scene = scene * spot_multiplier + aureole * (1.0 - edge)
    else:
        latitude = dy / radius
        bands = np.ones_like(latitude)
        n_belts = int(rng.integers(3, 6))
        for centre, width, darkness in zip(
            rng.uniform(-0.8, 0.8, n_belts),
            rng.uniform(0.04, 0.12, n_belts),
            rng.uniform(0.1, 0.3, n_belts),
            strict=True,
        ):
            bands -= darkness * np.exp(-0.5 * ((latitude - centre) / width) ** 2)
        size = params.granule_size_px
        turbulence = _gaussian_field(rng, canvas_shape, (0.5 * size, 2.0 * size))
        scene = disk * bands * (1.0 + params.texture_contrast * 0.3 * turbulence)
        scene = scene * spot_multiplier
    scene = np.clip(scene, 0.0, None)
    return _taper_to_periodic(scene)


_TERMINATOR_WIDTH = 0.03
"""Width of the terminator's fall from day to night, in units of the cosine of the light's
incidence (about 3 % of the disk's radius across its middle)."""


def _daylight(x: np.ndarray, mu: np.ndarray, phase_angle_deg: float) -> np.ndarray:
    """Share of the light a point of the disk gets: 1 on the day side, 0 on the night side,
    across a soft terminator; ``x`` is the coordinate along the light over the radius and
    ``mu`` the cosine of the angle to the observer, so the cosine of the light's incidence
    is ``x sin(a) + mu cos(a)``."""
    if phase_angle_deg == 0.0:
        return np.ones_like(mu)
    angle = math.radians(phase_angle_deg)
    incidence = x * math.sin(angle) + mu * math.cos(angle)
    return 0.5 * special.erfc(-incidence / (math.sqrt(2.0) * _TERMINATOR_WIDTH))


def _taper_to_periodic(canvas: np.ndarray) -> np.ndarray:
    """Blend the outer ``_TAPER_PX`` band to the mean so that the canvas wraps smoothly."""
    windows = []
    for length in canvas.shape:
        window = np.ones(length)
        ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(_TAPER_PX) + 0.5) / _TAPER_PX)
        window[:_TAPER_PX] = ramp
        window[length - _TAPER_PX :] = ramp[::-1]
        windows.append(window)
    weight = windows[0][:, None] * windows[1][None, :]
    mean = canvas.mean()
    return mean + (canvas - mean) * weight
