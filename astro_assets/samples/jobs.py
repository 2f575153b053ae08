"""Seeded synthetic RAPID-style difference-imaging jobs, with ground truth.

A job folder holds exactly the five contract files (see :mod:`astro_assets.io.fits`); the truth
is written beside the folder as ``<jid>.truth.json``, so the folder looks like real input.

What is simulated (units: ADU, gain ``gain`` e-/ADU; pixel coordinates 0-based, pixel centres at
integer values, x = column, y = row):

- **Science** (``bkg_subbed_science_image.fits``): a star field (Moffat PSF, ``psf_fwhm_px``,
  ``moffat_beta``; fluxes from a power law ``N(>F) ~ F**-star_flux_slope``), a sky of
  ``sky`` ADU with a gentle gradient, Gaussian-approximated Poisson + read noise
  (variance ``(sky + signal) / gain + read_noise**2``), saturation at ``saturation`` ADU, then
  the sky model subtracted. Real transients are PSF-shaped point sources added here only.
  Detector artifacts are added here only: cosmic rays (sharp 1-8 px tracks), hot pixels, one
  bad column segment and an amplifier-glow strip along one edge.
- **Reference** (``awaicgen_output_mosaic_image_resampled.fits``): the same stars, a coadd of
  ``reference_depth`` exposures (noise lower by ``sqrt(reference_depth)``), a Gaussian PSF
  ``reference_fwhm_ratio`` times the science FWHM, and a slight misregistration (a global shift
  plus per-star astrometric jitter), background-subtracted.
- **Difference** (``diffimage_masked.fits``): science minus the reference convolved with the
  Gaussian kernel that would match Gaussian PSFs. The science PSF is a Moffat, so bright stars
  leave ring residuals, and the misregistration leaves dipoles. Saturated science pixels are
  masked (NaN).
- **Score** (``scorrimage_masked.fits``): the difference filtered with the science PSF (matched
  filter, Gaussian of the same FWHM), divided by its robust noise: a significance map.
- **Catalog** (``psfcat.csv``): ``photutils`` ``DAOStarFinder`` on the difference image
  (threshold ``detect_nsigma`` times its robust noise, no sharpness/roundness cuts, so artifacts
  stay in the catalog; peaks closer than one FWHM are merged), plus PSF-fit photometry at each
  detected position.

``psfcat.csv`` columns: ``id,x,y,sharpness,roundness1,roundness2,npix,peak,flux,mag,daofind_mag,
flags,match,label``. ``sharpness``/``roundness1``/``roundness2``/``npix``/``peak``/``daofind_mag``
come from DAOStarFinder; ``flux`` is the least-squares flux of the science PSF at the detected
position on the difference image (ADU); ``mag = -2.5 log10(flux)`` (instrumental; NaN when
``flux <= 0``); ``match`` is the id of the injected transient within ``match_radius_px`` (each
transient matched to at most its nearest detection), else -1; ``label`` is 1 when matched, else
0. ``flags`` is a bit field, see ``PSFCAT_FLAG_BITS``.

Bogus detections arise from bright-star residuals and dipoles, cosmic rays, hot pixels, the bad
column, the edge strip and noise; real ones are PSF-shaped, positive, without counterpart in the
reference (except the ``hosted_fraction`` of transients placed on top of a star).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from photutils.detection import DAOStarFinder
from scipy import ndimage
from skimage.draw import line_aa

from astro_assets.io.atomic import atomic_write_text
from astro_assets.io.images import write_fits_float32
from astro_assets.io.paths import check_key
from astro_assets.science.transients.candidates import PSFCAT_COLUMNS

__all__ = [
    "PSFCAT_COLUMNS",
    "PSFCAT_FLAG_BITS",
    "JobParams",
    "generate_jobs",
    "read_truth",
    "write_sample_job",
]


PSFCAT_FLAG_BITS: Mapping[str, int] = MappingProxyType(
    {
        "near_edge": 1,  # centroid closer than 2 FWHM to the image border
        "saturated": 2,  # a saturated science pixel within 1.5 FWHM
        "masked": 4,  # a masked (NaN) difference pixel within 1.5 FWHM
        "nonpositive_flux": 8,  # PSF-fit flux <= 0, so mag is NaN
    }
)
"""Bits of the ``flags`` column of generated ``psfcat.csv`` files."""

_REFERENCE_AREA = 256 * 256
_GAUSSIAN_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True)
class JobParams:
    """Parameters of one synthetic job. Counts are per image; see :meth:`scaled`.

    Attributes
    ----------
    size : int
        Image side in pixels (images are ``size x size``); 16 to 8192.
    n_stars, n_transients, n_cosmic_rays, n_hot_pixels : int
        Numbers of objects of each kind.
    psf_fwhm_px : float
        Science PSF FWHM (pixels).
    moffat_beta : float
        Science Moffat PSF exponent (> 1).
    reference_fwhm_ratio : float
        Reference (Gaussian) PSF FWHM / science FWHM; < 1 (the reference is convolved to match).
    sky : float
        Science sky level (ADU) before background subtraction.
    read_noise : float
        Read noise (ADU rms) per exposure.
    gain : float
        e-/ADU.
    saturation : float
        Science saturation level (ADU, sky included).
    reference_depth : int
        Exposures co-added in the reference.
    star_flux_min, star_flux_max : float
        Star flux range (ADU).
    star_flux_slope : float
        Power-law slope of cumulative star counts ``N(>F) ~ F**-slope``.
    transient_snr_min, transient_snr_max : float
        Range of the transients' signal-to-noise (log-uniform), defined for a Gaussian
        matched filter on the sky-limited difference image.
    hosted_fraction : float
        Fraction of transients placed within 1 FWHM of a star.
    psf_matching_error : float
        Maximum relative FWHM error of the PSF matching (drawn uniformly in +/- this).
    registration_error_px : float
        Global reference misregistration (pixels), in a random direction.
    astrometric_jitter_px : float
        Per-star rms position error of the reference (pixels).
    detect_nsigma : float
        DAOStarFinder threshold in units of the difference image's robust noise. DAOFIND
        compares it with the fitted peak amplitude, so the completeness limit lies near a
        PSF-photometry SNR of 15-25 (depending on the FWHM), not at ``detect_nsigma``.
    match_radius_px : float
        Maximum detection-truth distance for a match (pixels).
    seed : int
        Seed of everything random in the job.
    """

    size: int = 256
    n_stars: int = 150
    n_transients: int = 10
    n_cosmic_rays: int = 8
    n_hot_pixels: int = 6
    psf_fwhm_px: float = 3.5
    moffat_beta: float = 3.0
    reference_fwhm_ratio: float = 0.8
    sky: float = 1000.0
    read_noise: float = 6.0
    gain: float = 1.0
    saturation: float = 60000.0
    reference_depth: int = 9
    star_flux_min: float = 1.0e3
    star_flux_max: float = 5.0e6
    star_flux_slope: float = 1.0
    transient_snr_min: float = 5.0
    transient_snr_max: float = 150.0
    hosted_fraction: float = 0.25
    psf_matching_error: float = 0.04
    registration_error_px: float = 0.1
    astrometric_jitter_px: float = 0.03
    detect_nsigma: float = 5.0
    match_radius_px: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "size must be in 16..8192": 16 <= self.size <= 8192,
            "counts must be >= 0": min(
                self.n_stars, self.n_transients, self.n_cosmic_rays, self.n_hot_pixels
            )
            >= 0,
            "psf_fwhm_px must be in 1.5..20": 1.5 <= self.psf_fwhm_px <= 20,
            "moffat_beta must be > 1": self.moffat_beta > 1,
            "reference_fwhm_ratio must be in (0, 1)": 0 < self.reference_fwhm_ratio < 1,
            "sky, gain and saturation must be > 0": min(self.sky, self.gain, self.saturation) > 0,
            "read_noise must be >= 0": self.read_noise >= 0,
            "reference_depth must be >= 1": self.reference_depth >= 1,
            "star fluxes must satisfy 0 < min < max": 0 < self.star_flux_min < self.star_flux_max,
            "transient SNRs must satisfy 0 < min <= max": 0
            < self.transient_snr_min
            <= self.transient_snr_max,
            "hosted_fraction must be in [0, 1]": 0 <= self.hosted_fraction <= 1,
            "psf_matching_error must be in [0, 0.5)": 0 <= self.psf_matching_error < 0.5,
            "detect_nsigma and match_radius_px must be > 0": min(
                self.detect_nsigma, self.match_radius_px
            )
            > 0,
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid JobParams: {'; '.join(failed)}")

    @classmethod
    def scaled(cls, size: int, **overrides: Any) -> JobParams:
        """Parameters for a ``size x size`` job with object counts scaled by area.

        The defaults describe a 256 x 256 job; a 4090 x 4090 job gets 255 times as many stars,
        transients, cosmic rays and hot pixels, so object densities stay the same.
        """
        defaults = cls()
        factor = size * size / _REFERENCE_AREA
        counts = {
            name: max(1, round(getattr(defaults, name) * factor))
            for name in ("n_stars", "n_transients", "n_cosmic_rays", "n_hot_pixels")
        }
        counts.update(overrides)
        return replace(defaults, size=size, **counts)


def _moffat_alpha(fwhm: float, beta: float) -> float:
    return fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def _moffat(dx: np.ndarray, dy: np.ndarray, fwhm: float, beta: float) -> np.ndarray:
    """Unit-flux circular Moffat profile sampled at pixel centres."""
    alpha = _moffat_alpha(fwhm, beta)
    return (beta - 1.0) / (math.pi * alpha**2) * (1.0 + (dx**2 + dy**2) / alpha**2) ** -beta


def _gaussian(dx: np.ndarray, dy: np.ndarray, fwhm: float) -> np.ndarray:
    """Unit-flux circular Gaussian profile sampled at pixel centres."""
    sigma = fwhm / _GAUSSIAN_FWHM_PER_SIGMA
    return np.exp(-(dx**2 + dy**2) / (2.0 * sigma**2)) / (2.0 * math.pi * sigma**2)


def _render(image: np.ndarray, xs, ys, fluxes, profile, half: int) -> None:
    """Add point sources (unit-flux ``profile(dx, dy)`` times flux) into ``image`` in place."""
    height, width = image.shape
    for x, y, flux in zip(xs, ys, fluxes, strict=True):
        x0, x1 = max(0, round(x) - half), min(width, round(x) + half + 1)
        y0, y1 = max(0, round(y) - half), min(height, round(y) + half + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        gy, gx = np.mgrid[y0:y1, x0:x1]
        image[y0:y1, x0:x1] += (flux * profile(gx - x, gy - y)).astype(np.float32)


def _robust_sigma(image: np.ndarray, max_samples: int = 200_000) -> float:
    """1.4826 x median absolute deviation of the finite pixels (strided sample)."""
    flat = image.ravel()
    sample = flat[:: max(1, flat.size // max_samples)]
    sample = sample[np.isfinite(sample)].astype(np.float64)
    median = np.median(sample)
    return float(1.4826 * np.median(np.abs(sample - median)))


def _simulate(params: JobParams) -> dict[str, Any]:
    """Draw all objects and build the four images (float32) plus truth; see module docstring."""
    rng = np.random.default_rng(params.seed)
    size = params.size
    fwhm = params.psf_fwhm_px
    ref_fwhm = fwhm * params.reference_fwhm_ratio
    half = math.ceil(6.0 * fwhm)
    sky_sigma = math.sqrt(params.sky / params.gain + params.read_noise**2)

    def science_psf(dx, dy):
        return _moffat(dx, dy, fwhm, params.moffat_beta)

    def reference_psf(dx, dy):
        return _gaussian(dx, dy, ref_fwhm)

    # Stars: cumulative counts N(>F) ~ F**-slope between the flux limits.
    u = rng.random(params.n_stars)
    lo, hi = params.star_flux_min, params.star_flux_max
    slope = params.star_flux_slope
    star_flux = (lo**-slope - u * (lo**-slope - hi**-slope)) ** (-1.0 / slope)
    star_x = rng.uniform(-0.5, size - 0.5, params.n_stars)
    star_y = rng.uniform(-0.5, size - 0.5, params.n_stars)

    # Transients: flux from the target PSF-photometry SNR on the sky-limited difference
    # (noise of science plus matched reference), some placed on top of stars.
    n_tr = params.n_transients
    snr = np.exp(
        rng.uniform(math.log(params.transient_snr_min), math.log(params.transient_snr_max), n_tr)
    )
    diff_sigma = sky_sigma * math.sqrt(1.0 + 1.0 / params.reference_depth)
    psf_sum_sq = 1.0 / (4.0 * math.pi * (fwhm / _GAUSSIAN_FWHM_PER_SIGMA) ** 2)
    tr_flux = snr * diff_sigma / math.sqrt(psf_sum_sq)
    tr_x = rng.uniform(2.0, size - 3.0, n_tr)
    tr_y = rng.uniform(2.0, size - 3.0, n_tr)
    hosted = rng.random(n_tr) < params.hosted_fraction
    if params.n_stars:
        hosts = rng.integers(0, params.n_stars, n_tr)
        offset_r = rng.uniform(0.0, fwhm, n_tr)
        offset_t = rng.uniform(0.0, 2.0 * math.pi, n_tr)
        host_x = np.clip(star_x[hosts] + offset_r * np.cos(offset_t), 0.0, size - 1.0)
        host_y = np.clip(star_y[hosts] + offset_r * np.sin(offset_t), 0.0, size - 1.0)
        tr_x = np.where(hosted, host_x, tr_x)
        tr_y = np.where(hosted, host_y, tr_y)
    else:
        hosted[:] = False

    # Science: sky + stars + transients, noise, saturation, sky subtracted.
    yy = np.arange(size, dtype=np.float32)[:, None] / size
    xx = np.arange(size, dtype=np.float32)[None, :] / size
    gradient = rng.uniform(-0.02, 0.02, 2)
    sky_model = np.float32(params.sky) * (1.0 + gradient[0] * xx + gradient[1] * yy)
    signal = np.zeros((size, size), dtype=np.float32)
    _render(signal, star_x, star_y, star_flux, science_psf, half)
    _render(signal, tr_x, tr_y, tr_flux, science_psf, half)
    raw = signal + sky_model
    variance = raw / np.float32(params.gain) + np.float32(params.read_noise**2)
    raw += np.sqrt(variance) * rng.standard_normal((size, size), dtype=np.float32)
    del variance

    # Artifacts in the science exposure only.
    cr_records = []
    for index in range(params.n_cosmic_rays):
        length = int(rng.integers(0, 8))
        angle = rng.uniform(0.0, math.pi)
        x0, y0 = rng.uniform(0, size - 1, 2)
        x1 = float(np.clip(x0 + length * math.cos(angle), 0, size - 1))
        y1 = float(np.clip(y0 + length * math.sin(angle), 0, size - 1))
        amplitude = float(sky_sigma * rng.uniform(8.0, 150.0))
        rows, cols, weight = line_aa(round(y0), round(x0), round(y1), round(x1))
        raw[rows, cols] += np.float32(amplitude) * weight.astype(np.float32)
        cr_records.append(
            {"id": index + 1, "x0": x0, "y0": y0, "x1": x1, "y1": y1, "amplitude": amplitude}
        )
    hot_x = rng.integers(0, size, params.n_hot_pixels)
    hot_y = rng.integers(0, size, params.n_hot_pixels)
    hot_amplitude = sky_sigma * rng.uniform(6.0, 60.0, params.n_hot_pixels)
    raw[hot_y, hot_x] += hot_amplitude.astype(np.float32)
    column = int(rng.integers(size // 8, size - size // 8))
    col_start = int(rng.integers(0, size // 2))
    col_stop = int(rng.integers(col_start + size // 8, size + 1))
    col_level = float(sky_sigma * rng.uniform(3.0, 8.0))
    raw[col_start:col_stop, column] += np.float32(col_level)
    edge_width = max(3, size // 64)
    edge_level = float(sky_sigma * rng.uniform(2.0, 6.0))
    glow = np.float32(edge_level) * np.exp(-np.arange(edge_width, dtype=np.float32) / 2.0)
    edge_side = str(rng.choice(["left", "right", "top", "bottom"]))
    if edge_side == "left":
        raw[:, :edge_width] += glow[None, :]
    elif edge_side == "right":
        raw[:, size - edge_width :] += glow[None, ::-1]
    elif edge_side == "top":
        raw[:edge_width, :] += glow[:, None]
    else:
        raw[size - edge_width :, :] += glow[::-1, None]

    saturated = raw >= params.saturation
    np.minimum(raw, np.float32(params.saturation), out=raw)
    science = raw - sky_model
    del raw, sky_model

    # Reference: same stars, deeper, Gaussian PSF, slightly misregistered.
    shift_angle = rng.uniform(0.0, 2.0 * math.pi)
    shift = params.registration_error_px * np.array([math.cos(shift_angle), math.sin(shift_angle)])
    ref_x = star_x + shift[0] + rng.normal(0.0, params.astrometric_jitter_px, params.n_stars)
    ref_y = star_y + shift[1] + rng.normal(0.0, params.astrometric_jitter_px, params.n_stars)
    reference = np.zeros((size, size), dtype=np.float32)
    _render(reference, ref_x, ref_y, star_flux, reference_psf, half)
    ref_sigma = np.sqrt(
        (
            (reference + np.float32(params.sky)) / np.float32(params.gain)
            + np.float32(params.read_noise**2)
        )
        / np.float32(params.reference_depth)
    )
    reference_noise = ref_sigma * rng.standard_normal((size, size), dtype=np.float32)
    del ref_sigma
    reference += reference_noise

    # Difference: science minus the PSF-matched reference. Matching convolves the reference
    # with a kernel; it reproduces the science PSF only up to a small FWHM error, so bright
    # stars leave core/ring residuals, and the misregistration leaves dipoles. The matched
    # reference noise is the reference noise through the (Gaussian) matching kernel.
    matching_error = rng.uniform(-params.psf_matching_error, params.psf_matching_error)
    matched_fwhm = fwhm * (1.0 + matching_error)

    def matched_psf(dx, dy):
        return _moffat(dx, dy, matched_fwhm, params.moffat_beta)

    kernel_sigma = math.sqrt(fwhm**2 - ref_fwhm**2) / _GAUSSIAN_FWHM_PER_SIGMA
    difference = science - ndimage.gaussian_filter(reference_noise, kernel_sigma, mode="nearest")
    del reference_noise
    matched_stars = np.zeros((size, size), dtype=np.float32)
    _render(matched_stars, ref_x, ref_y, star_flux, matched_psf, half)
    difference -= matched_stars
    del matched_stars
    difference[saturated] = np.nan

    # Score: matched filter with the science PSF (Gaussian approximation) over robust noise.
    filled = np.where(saturated, np.float32(0.0), difference)
    filtered = ndimage.gaussian_filter(filled, fwhm / _GAUSSIAN_FWHM_PER_SIGMA, mode="nearest")
    del filled
    score = filtered / np.float32(_robust_sigma(filtered))
    del filtered
    score[saturated] = np.nan

    truth = {
        "stars": [
            {"x": float(x), "y": float(y), "flux": float(f)}
            for x, y, f in zip(star_x, star_y, star_flux, strict=True)
        ],
        "transients": [
            {
                "id": index + 1,
                "x": float(tr_x[index]),
                "y": float(tr_y[index]),
                "flux": float(tr_flux[index]),
                "snr": float(snr[index]),
                "hosted": bool(hosted[index]),
            }
            for index in range(n_tr)
        ],
        "cosmic_rays": cr_records,
        "hot_pixels": [
            {"x": int(x), "y": int(y), "amplitude": float(a)}
            for x, y, a in zip(hot_x, hot_y, hot_amplitude, strict=True)
        ],
        "bad_column": {"x": column, "y_start": col_start, "y_stop": col_stop, "level": col_level},
        "edge_glow": {"side": edge_side, "width": edge_width, "level": edge_level},
        "registration_shift_px": [float(shift[0]), float(shift[1])],
        "psf_matching_error": float(matching_error),
        "n_saturated_pixels": int(np.count_nonzero(saturated)),
    }
    return {
        "science": science,
        "reference": reference,
        "difference": difference,
        "score": score,
        "saturated": saturated,
        "science_psf": science_psf,
        "truth": truth,
    }


def _psf_fit_flux(difference: np.ndarray, x: float, y: float, psf, half: int) -> float:
    """Least-squares flux of the unit-flux ``psf`` centred at (x, y), ignoring NaN pixels."""
    height, width = difference.shape
    x0, x1 = max(0, round(x) - half), min(width, round(x) + half + 1)
    y0, y1 = max(0, round(y) - half), min(height, round(y) + half + 1)
    gy, gx = np.mgrid[y0:y1, x0:x1]
    model = psf(gx - x, gy - y)
    data = difference[y0:y1, x0:x1].astype(np.float64)
    good = np.isfinite(data)
    denominator = float(np.sum(model[good] ** 2))
    return float(np.sum(model[good] * data[good]) / denominator) if denominator > 0 else math.nan


def _detect(sim: Mapping[str, Any], params: JobParams) -> list[dict[str, Any]]:
    """Candidate rows of ``psfcat.csv``: DAOStarFinder, PSF photometry, flags, truth matching."""
    difference = sim["difference"]
    masked = ~np.isfinite(difference)
    fwhm = params.psf_fwhm_px
    sigma = _robust_sigma(difference)
    finder = DAOStarFinder(
        threshold=params.detect_nsigma * sigma,
        fwhm=fwhm,
        sharpness_range=None,
        roundness_range=None,
        min_separation=fwhm,
    )
    table = finder(np.where(masked, np.float32(0.0), difference), mask=masked)
    if table is None:
        return []
    size = params.size
    radius = 1.5 * fwhm
    edge_margin = 2.0 * fwhm
    photometry_half = math.ceil(1.5 * fwhm)
    truth = sim["truth"]["transients"]
    truth_xy = np.array([[t["x"], t["y"]] for t in truth]).reshape(-1, 2)
    det_xy = np.column_stack([np.asarray(table["x_centroid"]), np.asarray(table["y_centroid"])])

    # One-to-one matching: each transient goes to its nearest detection within the radius.
    match = np.full(len(det_xy), -1, dtype=np.int64)
    if len(truth_xy) and len(det_xy):
        distance = np.hypot(
            det_xy[:, None, 0] - truth_xy[None, :, 0], det_xy[:, None, 1] - truth_xy[None, :, 1]
        )
        for t_index in np.argsort(distance.min(axis=0)):
            d_index = int(np.argmin(distance[:, t_index]))
            if distance[d_index, t_index] <= params.match_radius_px and match[d_index] < 0:
                match[d_index] = truth[t_index]["id"]

    rows = []
    for index, row in enumerate(table):
        x, y = float(det_xy[index, 0]), float(det_xy[index, 1])
        flux = _psf_fit_flux(difference, x, y, sim["science_psf"], photometry_half)
        x0, x1 = max(0, math.floor(x - radius)), min(size, math.ceil(x + radius) + 1)
        y0, y1 = max(0, math.floor(y - radius)), min(size, math.ceil(y + radius) + 1)
        gy, gx = np.mgrid[y0:y1, x0:x1]
        near = (gx - x) ** 2 + (gy - y) ** 2 <= radius**2
        flags = 0
        if min(x, y, size - 1 - x, size - 1 - y) < edge_margin:
            flags |= PSFCAT_FLAG_BITS["near_edge"]
        if np.any(sim["saturated"][y0:y1, x0:x1][near]):
            flags |= PSFCAT_FLAG_BITS["saturated"]
        if np.any(masked[y0:y1, x0:x1][near]):
            flags |= PSFCAT_FLAG_BITS["masked"]
        if not flux > 0:
            flags |= PSFCAT_FLAG_BITS["nonpositive_flux"]
        rows.append(
            {
                "id": int(row["id"]),
                "x": x,
                "y": y,
                "sharpness": float(row["sharpness"]),
                "roundness1": float(row["roundness1"]),
                "roundness2": float(row["roundness2"]),
                "npix": int(row["n_pixels"]),
                "peak": float(row["peak"]),
                "flux": flux,
                "mag": -2.5 * math.log10(flux) if flux > 0 else math.nan,
                "daofind_mag": float(row["daofind_mag"]),
                "flags": flags,
                "match": int(match[index]),
                "label": int(match[index] >= 0),
            }
        )
    return rows


def _psfcat_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PSFCAT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                key: (repr(value) if isinstance(value, float) else value)
                for key, value in row.items()
            }
        )
    return buffer.getvalue()


def write_sample_job(dest_dir: str | os.PathLike[str], jid: str, params: JobParams) -> Path:
    """Write one synthetic job folder ``dest_dir/jid`` and its truth ``dest_dir/jid.truth.json``.

    Every file is written atomically; ``psfcat.csv`` is written after the four images, so a
    folder watcher never sees a catalog without its images.

    Parameters
    ----------
    dest_dir : path-like
        Folder that receives the job folder (e.g. ``data/incoming/jobs``); created if needed.
    jid : str
        Job id, used as the folder name: letters, digits, ``.``, ``_``, ``-``.
    params : JobParams

    Returns
    -------
    pathlib.Path
        The job folder.
    """
    check_key(jid)
    dest_dir = Path(dest_dir)
    job_dir = dest_dir / jid
    sim = _simulate(params)
    header = {
        "BUNIT": "ADU",
        "GAIN": params.gain,
        "SATURATE": params.saturation,
        "SEEING": params.psf_fwhm_px,
        "SIMULATE": True,
        "SIMSEED": params.seed,
        "JID": jid,
    }
    write_fits_float32(job_dir / "bkg_subbed_science_image.fits", sim["science"], header)
    write_fits_float32(
        job_dir / "awaicgen_output_mosaic_image_resampled.fits",
        sim["reference"],
        {**header, "SEEING": params.psf_fwhm_px * params.reference_fwhm_ratio},
    )
    write_fits_float32(job_dir / "diffimage_masked.fits", sim["difference"], header)
    write_fits_float32(job_dir / "scorrimage_masked.fits", sim["score"], header)
    rows = _detect(sim, params)
    atomic_write_text(job_dir / "psfcat.csv", _psfcat_text(rows))
    truth = {
        "jid": jid,
        "params": asdict(params),
        "coordinates": "0-based pixel coordinates, pixel centres at integers, x=column, y=row",
        "n_candidates": len(rows),
        "n_real_candidates": sum(row["label"] for row in rows),
        **sim["truth"],
    }
    atomic_write_text(dest_dir / f"{jid}.truth.json", json.dumps(truth, indent=1))
    return job_dir


def read_truth(dest_dir: str | os.PathLike[str], jid: str) -> dict[str, Any]:
    """The truth written beside job ``jid`` by :func:`write_sample_job`."""
    return json.loads((Path(dest_dir) / f"{jid}.truth.json").read_text(encoding="utf-8"))


def generate_jobs(
    dest_root: str | os.PathLike[str],
    n_jobs: int,
    *,
    size: int = 256,
    seed: int = 0,
    prefix: str = "jid",
) -> list[Path]:
    """Write ``n_jobs`` synthetic jobs ``<prefix>001``, ``<prefix>002``, ... under ``dest_root``.

    Observing conditions vary from job to job (seeing 2.5-4.5 px, sky 500-2000 ADU); object
    counts scale with the image area (:meth:`JobParams.scaled`). Job ``i`` depends only on
    ``seed`` and ``i``: generating more jobs with the same seed reproduces the first ones.
    A 4090 x 4090 job takes about 15-20 s and 1.2 GB of memory (a few float32 images plus the
    source finder's work arrays); 256 x 256 jobs take about 0.1 s.

    Parameters
    ----------
    dest_root : path-like
        Folder receiving the job folders and their ``.truth.json`` files.
    n_jobs : int
        Number of jobs (>= 1).
    size : int
        Image side in pixels (256 for tests and demos, 4090 for full-size realism).
    seed : int
        Master seed.
    prefix : str
        Job id prefix.

    Returns
    -------
    list of pathlib.Path
        The job folders, in order.
    """
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1, got {n_jobs}")
    width = max(3, len(str(n_jobs)))
    folders = []
    for index in range(n_jobs):
        state = np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(2)
        rng = np.random.default_rng(state)
        params = JobParams.scaled(
            size,
            seed=int(state[0]),
            psf_fwhm_px=float(rng.uniform(2.5, 4.5)),
            sky=float(rng.uniform(500.0, 2000.0)),
        )
        folders.append(write_sample_job(dest_root, f"{prefix}{index + 1:0{width}d}", params))
    return folders
