"""Tell sensor-fixed shadows from scene features by how the scene moved during the video.

A dust shadow is fixed on the sensor; granulation, faculae or a sunspot's smeared remnant move
with the target. Where the target drifted, the video itself predicts what the median would be
without anything fixed on the sensor (the idea behind flat fields from displaced images, Kuhn,
Lin & Loranz 1991, PASP 103, 1097):

1. the scene is estimated in its own coordinates as the median, over the registered frames, of
   each frame shifted back by its measured displacement; a shadow fixed on the sensor lands on a
   different part of the scene in every frame and drops out of that median;
2. the scene is shifted forward again by every frame's displacement and the median taken over
   frames: the prediction of the temporal median for a dust-free sensor;
3. the ratio of the median of the same frames to that prediction keeps what is fixed on the
   sensor (dust, and vignetting at scales far above the drift) and cancels what moved with
   the scene. Both medians are taken, at every pixel, over the frames whose part of the scene
   is known: near the frame's edges a median over some of the frames differs from one over
   all of them wherever the scene has a gradient along the drift.

A candidate whose deficit in the median is not found again in the ratio moved with the scene and
is rejected (:func:`sensor_fixed_test`). Each candidate is judged in a prediction whose scene
estimate leaves the candidate's own pixels out: a shadow fixed on the sensor then cannot darken
it, however large, while a scene feature is still seen, through other pixels, by the frames
that put it elsewhere on the sensor. A candidate whose part of the scene too few frames see
through other pixels (one almost as long as the drift) is known only along its rim: it is
rejected when the rim shows on every side that it moved, else judged by its outline, as are
candidates where too few frames cover the scene: however little the target drifted, the seeing
shakes the scene by fractions of a pixel to pixels from frame to frame. A shadow's outline
stays where it is on the sensor while the scene's edges follow each frame's shift, so each
pixel's response to the shift (:func:`_outline_fixed_shares`) tells how much of the
candidate's outline is fixed on the sensor. What the outline does not decide is left undecided
and kept. The test reads small windows around the candidates only.

In the ratio the texture of the scene has cancelled, so shadows too faint to stand out of the
texture left in the median stand out of the ratio's noise: :func:`find_shadows_in_ratio`
searches it with the classical detector (:func:`predict_dust_free` computes the whole
prediction band by band, in bounded memory). A shadow as large as a good part of the drift is
partly in that first scene estimate, so :func:`separate_sensor_fixed` estimates the scene again
without the pixels of the shadows found and draws their outlines again in the cleaner ratio.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from skimage.measure import regionprops

from astro_assets.science.flatfield.drift import checked_offsets
from astro_assets.science.flatfield.dust import (
    DustDetectionParams,
    LineGains,
    detect_dust,
    line_gains,
    robust_sigma,
)
from astro_assets.science.flatfield.flatfield import sky_black_level
from astro_assets.science.flatfield.inpaint import (
    InpaintParams,
    guided_regions,
    inpaint,
    inpaint_guided,
    usable_guide,
)
from astro_assets.science.flatfield.levels import target_level
from astro_assets.science.flatfield.planes import view_on_plane
from astro_assets.science.flatfield.regions import fill_holes, grown_box, regions_touching
from astro_assets.science.flatfield.response import (
    ResponseCorrectedFrame,
    estimate_sensor_response,
)
from astro_assets.science.flatfield.stacks import finite_median
from astro_assets.science.flatfield.transparency import (
    FrameTransparency,
    divided_by_transparency,
    frame_transparency,
)
from astro_assets.science.threads import in_threads

__all__ = [
    "DROPPED_BY_HAND",
    "DROPPED_UNDECIDED",
    "SCENE",
    "SENSOR",
    "SHALLOW",
    "DustFreePrediction",
    "GuideRegion",
    "InpaintingGuide",
    "MotionResult",
    "MotionTestParams",
    "MotionVerdict",
    "RatioShadow",
    "find_shadows_in_ratio",
    "inpainting_guide",
    "is_undecided",
    "label_candidates",
    "plane_guide",
    "predict_dust_free",
    "sensor_fixed_test",
    "sensor_line_gains",
    "separate_sensor_fixed",
]

SENSOR = "sensor"
SCENE = "scene"
UNDECIDED = "undecided"
UNDECIDED_SIZE = f"{UNDECIDED}: the target moved too little compared with this shadow's size"
UNDECIDED_COVERAGE = f"{UNDECIDED}: too few frames cover this part of the scene"
UNDECIDED_SIGNAL = f"{UNDECIDED}: no deficit against its surroundings in the median"
UNDECIDED_UNREGISTERED = (
    f"{UNDECIDED}: the frames could not be registered, so how the target moved is unknown"
)
UNDECIDED_DARK_SCENE = (
    f"{UNDECIDED}: each frame shows its deficit in the ratio, but the ratio shows less than "
    "min_deficit_ratio of its deficit in the median (dust on a dark part of the scene, or "
    "the residue of a scene feature)"
)
UNDECIDED_MIXED_OUTLINE = (
    f"{UNDECIDED}: most of its outline moved with the scene, but a part of it stayed on the "
    "sensor (a shadow merged with a scene feature)"
)
SHALLOW = "too shallow: its deficit is below min_ratio_depth in the median and in the ratio"
DROPPED_UNDECIDED = "dropped, keep_undecided is off: "
DROPPED_BY_HAND = "dropped by hand: "
_DEFAULT_DETECTION = DustDetectionParams()
_SEARCH_MAX_OVERLAP = 0.5
"""The ratio is searched while fewer than this share of the frames put the smallest shadow the
detector looks for on the same scene point (averaged over the frames): the prediction is a
median over the frames, which sees past a shadow as long as most frames saw its part of the
scene through other pixels. The shadows found there go through the motion test, which decides
on ``max_overlap_fraction``. On synthetic 320 x 240 planets drifting 18 px (45 % of the frames
on one scene point), a gate at that fraction skips the search and leaves the shadows that the
planet's bands hide uncorrected (flat error on the bright target 407 % rms); searched, 1.4 %
(``benchmarks/quality_small_drift.py``)."""
_DEEP_SEARCH_FLOOR = 0.1
"""Fraction of the prediction's 99th percentile above which deep shadows are searched in the
ratio: on the limb band of a planet the ratio's noise is still a fraction of a percent there,
while below it the sky's black level and noise make the ratio meaningless."""
_DEEP_MIN_CONTRAST = 0.5
"""A deep shadow must lie at least this fraction of its depth in the ratio below the plane
through its surroundings there, as a candidate of the eye must show at least
``min_deficit_ratio`` of its deficit in the ratio."""
_DEEP_OUTLINE_LEVEL = 0.25
"""A deep shadow's outline is drawn where the ratio is below 1 minus this fraction of the
shadow's median depth (its penumbra, out to a quarter of the depth); a kept candidate is cut
(:func:`_clean_in_ratio`) where the ratio is above 1 minus this fraction of its depth."""


@dataclass(frozen=True)
class MotionTestParams:
    """Parameters of :func:`sensor_fixed_test`.

    Attributes
    ----------
    motion_test : bool
        Whether to run the test at all (False keeps every candidate).
    max_overlap_fraction : float
        Above this share of the frames putting a shadow on the same scene point (the scene
        moved by less than its radius between them), the target moved too little for that
        shadow to drop out of a scene estimate that keeps its pixels: a candidate left
        undecided is reported as too large for the drift above it, as short of coverage
        below. (The ratio search needs only fewer than half the frames on the smallest
        shadow's scene point, ``_SEARCH_MAX_OVERLAP``.) In (0, 0.5].
    min_coverage_fraction : float
        Scene pixels seen by fewer than this fraction of the registered frames are unknown; a
        candidate needs most of its pixels and of its surroundings known. A candidate's own
        pixels are left out of the scene estimate it is judged in, so each part of the scene
        must also be seen through other pixels by at least ``max(3, 0.1 * frames)`` frames:
        a shadow almost as long as the drift stays undecided, unless its known rim shows on
        every side that it moved (:func:`_moved_on_every_side`). In (0, 1].
    min_deficit_ratio : float
        A candidate is confirmed as sensor-fixed when its deficit against the scene prediction
        is at least this fraction of its deficit in the median (and each frame shows it,
        ``min_lit_fraction``); below, it moved with the scene and is rejected, unless each
        frame shows at least ``min_lit_fraction`` of its deficit in the ratio, the ratio at
        least half this fraction of the median's deficit and at least ``min_ratio_depth``,
        and the target moved enough for its size (``max_overlap_fraction``): then the
        scene's own deficit there (dust on a planet's belt smeared along the drift) or a
        feature's residue could explain it, and it is left undecided
        (``UNDECIDED_DARK_SCENE``). Below half, a residue of the scene's deficit that every
        frame shares (the prediction slightly blurred at a deep sunspot) is as likely. In
        (0, 1).
    ratio_search : bool
        Also look for shadows in the ratio of the median to its dust-free prediction
        (:func:`find_shadows_in_ratio`), where the scene's texture no longer hides faint ones.
    min_ratio_depth : float
        Shallowest shadow kept, as the fraction of light it blocks: the ratio search adds no
        shadow shallower in the ratio, and the motion test drops a candidate shallower both in
        the median and in the ratio (verdict ``"too shallow: ..."``). The ratio's noise can be
        far below a percent on long videos, but an inpainted flat is accurate to 1-3 % rms,
        so correcting a shallower shadow would add more error than it removes. In [0, 1).
    max_texture_left : float
        The ratio is searched only when the prediction explains the scene: the spread of the
        ratio at the scales of the shadows must be at most this fraction of that of the
        median. Where the scene changed during the video (evolving granulation, seeing
        distortions, field rotation) the shifted frames do not predict it, and the ratio keeps
        texture the detector could take for dust. In (0, 1].
    keep_undecided : bool
        Whether the eye's candidates the test cannot decide (the target moved too little for
        their size, as in a tracked video; too few frames cover them; no deficit against
        their surroundings) stay in the mask. True corrects every candidate: on a tracked
        video of a spotted Sun the sunspots are then corrected away like dust. False keeps
        only what the video shows to be fixed on the sensor (the others get the verdict
        ``DROPPED_UNDECIDED`` followed by the undecided one), and on a tracked video the dust
        goes with the sunspots. Shadows found in the ratio have shown their deficit there and
        stay.
    max_outline_growth : float
        After the ratio search, the scene is estimated again without the sensor pixels of the
        shadows found (each grown by this fraction of its equivalent diameter, at least
        3 px), and each shadow's outline is drawn again in the cleaner ratio, at most that far
        out. A shadow as large as a good part of the drift is in the first scene estimate too,
        which makes it look shallower and smaller in the ratio than it is. 0 turns the
        refinement off. In [0, 1].
    min_ratio_significance : float
        A shadow the ratio search adds must be at least this many times deeper than the
        ratio's own fluctuations at the shadow's scale around it: the rms, about a plane, of
        the ratio smoothed over a box of the shadow's radius, over a ring from half a radius
        to 2.5 radii beyond its outline (other shadows left out). Where the scene holds a
        strong feature (a sunspot's trail) the prediction misses it by a fraction of its
        contrast, and the ratio keeps residues of either sign as deep as faint dust; dust
        stands out of the ratio's fluctuations around it, which such a residue does not.
        0 turns the test off. At least 0.
    min_deep_depth : float
        Shadows at least this deep in the ratio are also searched where the detector cannot
        look: on a limb, where a near-opaque shadow fixed on the sensor is, in the median, a
        dark notch continuous with the sky, and its surroundings leave the target. There the
        ratio is taken wherever the prediction is above ``_DEEP_SEARCH_FLOOR`` of its bright
        level (``levels.target_level``); the prediction's own residues at a limb stay
        shallower (up to 19-26 %). 1 turns this search off. In (0, 1].
    min_limb_depth : float
        Shallower shadows are searched there too when they are at least this deep and wide
        enough to hold a disc of half the detector's smallest radius
        (``DustDetectionParams.min_radius_px``) at that depth. The ratio's own residues along a
        limb are as deep (up to a quarter of the light on a synthetic planet) but thin arcs in
        which no disc of 2 px radius fits at 8-20 % depth; dust 20-27 % deep across the limb of
        a small synthetic disc is found. Shadows reaching into candidates found to move with the
        scene are left out. 1 turns this search off. In (0, 1].
    min_lit_fraction : float
        A shadow the ratio search adds must also show at least this fraction of its deficit in
        the ratio seen frame by frame: the median, over the frames whose prediction lights the
        pixel (at least half as much as the brightest of them), of each frame's light over its
        prediction's (:attr:`DustFreePrediction.lit_ratio`). Dust dims every frame that
        lights it by the same factor. Where a pixel is lit in about half of the frames (the
        line a limb crossed mid-video, in the frame's corners) the median of the frames and
        that of the prediction each take a frame near the crossing, and seeing that bends
        each frame's limb by a pixel or two moves that line in the one but not in the other:
        their ratio falls by 20-60 % along it, a deep shadow to the searches above, while
        each frame's ratio there stays near 1 (on synthetic drifting Suns with 2.1 px rms of
        differential seeing, 0.42 and 0.43 % of the frame taken for dust on two seeds of three
        before this test, 0.15 and 0.03 % after). Where
        too few frames light a shadow's surroundings to tell, it is kept. The motion test
        asks the same of every candidate it confirms, wherever it lies: where seeing bends
        the frames or the texture evolves, the prediction misses sunspots and granulation by
        a fraction of their contrast, and the ratio of the medians keeps residues as deep as
        dust that no frame, set against its own prediction, shows. 0 turns the test off. In
        [0, 1).
    guide_holdout_px : int
        Width, in pixels, of the ring of clean pixels around each region of the mask that
        :func:`inpainting_guide` holds out to judge whether the region is filled better along
        the dust-free prediction or from its surroundings (regions found in the ratio alone are
        always filled along it). 0 turns the judgement off: regions the median shows are then
        continued from their surroundings.
    response_degree : int
        Before the frames are compared, each is divided by the sensor's smooth response
        (vignetting, illumination gradients), a polynomial of this degree measured from the
        frames themselves (:func:`.response.estimate_sensor_response`) once they are known
        to predict the scene (the ratio is searched). Otherwise a pixel
        near a vignetted corner is predicted from frames that saw its part of the scene nearer
        the centre, and near the frame's edges, where only the frames displaced one way see a
        part of the scene, the ratio keeps a deficit as deep as faint dust. Below 2 turns it
        off. In [0, 8].
    min_guide_advantage : float
        A region the median shows is filled along the prediction when the continuation from
        the surroundings misses the held-out ring by more than this factor times the fill
        along the prediction (rms). 1 takes whichever misses less; larger values favour the
        continuation. At least 1.
    guide_filter_px : int
        Radius, in pixels, of the square linear filter fitted to map the prediction onto the
        median over the clean pixels before it guides the inpainting
        (:func:`filtered_to_match`). The prediction is the scene shifted twice by bilinear
        interpolation, so it is blurred more than the median, and sub-pixel errors of the
        measured drift displace it; on a limb both leave errors as deep as the dust. 0 turns
        the filter off. In [0, 4].
    gain_iterations : int
        After the ratio search the scene is estimated again (with the pixels of the shadows
        found left out, see ``max_outline_growth``) from the frames divided by the sensor's
        gain measured in the ratio where it is darker than its noise (:func:`fixed_gain`),
        this many times, and shadows that ratio shows apart from those found are added. Near
        the frame's edges a part of the scene is seen by few frames, through nearly the same
        sensor pixels, and a shadow nearly as large as the drift is seen through by most
        frames: the first scene estimate holds part of such a shadow, which then looks
        shallower in the ratio (a 20 % shadow at 15 % beside the edge the scene drifts away
        from) or not at all. Each iteration past the first costs one more prediction from the
        registered frames. 0 turns the gain off (the outlines are still drawn again). In
        [0, 8].
    transparency_correction : bool
        Before the frames are compared, each is divided by its transparency relative to the
        video's typical frame (:func:`.transparency.frame_transparency`), measured again once
        the sensor's response is divided out (a target crossing a vignetted field dims as it
        nears a corner, which the first measurement takes for transparency): passing clouds,
        haze or an exposure changed during the capture dim every pixel of a frame alike, and a
        prediction from frames of unequal light shows shadows that are not there. Gains
        within ``transparency.GAIN_TOLERANCE`` (0.3 %) of 1 are left as 1.
    min_frame_transparency : float
        Frames measured with less than this fraction of the typical frame's light (a thick
        cloud, a blank frame) are left out of the comparisons: their noise, divided by the
        gain, grows as their light falls, and a cloud that covers a frame only in part leaves
        no single gain right. At least 2 frames are kept. 0 keeps every frame. In [0, 1).
    outline_test : bool
        Judge a candidate the target moved too little for (a tracked video), or whose part of
        the scene too few frames cover, by its outline: as the seeing shakes the scene from
        frame to frame, the outline of a shadow stays on the sensor while a scene feature's
        follows each frame's shift (:func:`_outline_fixed_shares`). It is confirmed when at
        least two thirds of its outline stayed, against the shifts of the whole frame and
        against those of its own surroundings alike, and rejected when at most a third did
        against both, unless a part of its outline stayed at least half (a shadow merged with
        a sunspot); otherwise it stays undecided. False leaves all of them undecided.
    """

    motion_test: bool = True
    max_overlap_fraction: float = 0.35
    min_coverage_fraction: float = 0.5
    min_deficit_ratio: float = 0.5
    ratio_search: bool = True
    min_ratio_depth: float = 0.005
    max_texture_left: float = 0.5
    keep_undecided: bool = True
    max_outline_growth: float = 0.15
    min_ratio_significance: float = 3.0
    min_deep_depth: float = 0.5
    min_limb_depth: float = 0.1
    min_lit_fraction: float = 0.5
    guide_holdout_px: int = 5
    response_degree: int = 4
    min_guide_advantage: float = 1.0
    guide_filter_px: int = 2
    gain_iterations: int = 1
    transparency_correction: bool = True
    min_frame_transparency: float = 0.5
    outline_test: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.max_overlap_fraction <= 0.5:
            raise ValueError(
                f"max_overlap_fraction must be in (0, 0.5], got {self.max_overlap_fraction}."
            )
        if not 0.0 < self.min_coverage_fraction <= 1.0:
            raise ValueError(
                f"min_coverage_fraction must be in (0, 1], got {self.min_coverage_fraction}."
            )
        if not 0.0 < self.min_deficit_ratio < 1.0:
            raise ValueError(f"min_deficit_ratio must be in (0, 1), got {self.min_deficit_ratio}.")
        if not 0.0 <= self.min_ratio_depth < 1.0:
            raise ValueError(f"min_ratio_depth must be in [0, 1), got {self.min_ratio_depth}.")
        if not 0.0 < self.max_texture_left <= 1.0:
            raise ValueError(f"max_texture_left must be in (0, 1], got {self.max_texture_left}.")
        if not 0.0 <= self.max_outline_growth <= 1.0:
            raise ValueError(
                f"max_outline_growth must be in [0, 1], got {self.max_outline_growth}."
            )
        if not self.min_ratio_significance >= 0.0:
            raise ValueError(
                f"min_ratio_significance must be at least 0, got {self.min_ratio_significance}."
            )
        if not 0.0 < self.min_deep_depth <= 1.0:
            raise ValueError(f"min_deep_depth must be in (0, 1], got {self.min_deep_depth}.")
        if not 0.0 < self.min_limb_depth <= 1.0:
            raise ValueError(f"min_limb_depth must be in (0, 1], got {self.min_limb_depth}.")
        if not 0.0 <= self.min_lit_fraction < 1.0:
            raise ValueError(f"min_lit_fraction must be in [0, 1), got {self.min_lit_fraction}.")
        if self.guide_holdout_px < 0:
            raise ValueError(f"guide_holdout_px must be >= 0, got {self.guide_holdout_px}.")
        if not 0 <= self.response_degree <= 8:
            raise ValueError(f"response_degree must be in [0, 8], got {self.response_degree}.")
        if not self.min_guide_advantage >= 1.0:
            raise ValueError(
                f"min_guide_advantage must be at least 1, got {self.min_guide_advantage}."
            )
        if not 0 <= self.guide_filter_px <= 4:
            raise ValueError(f"guide_filter_px must be in [0, 4], got {self.guide_filter_px}.")
        if not 0 <= self.gain_iterations <= 8:
            raise ValueError(f"gain_iterations must be in [0, 8], got {self.gain_iterations}.")
        if not 0.0 <= self.min_frame_transparency < 1.0:
            raise ValueError(
                f"min_frame_transparency must be in [0, 1), got {self.min_frame_transparency}."
            )


@dataclass(frozen=True)
class MotionVerdict:
    """What the test decided for one connected candidate of the core mask.

    Attributes
    ----------
    centroid_y, centroid_x : float
        Centroid of the candidate, pixels.
    inside_y, inside_x : int
        The candidate's pixel nearest its centroid: where to look it up in a mask, since the
        centroid of a crescent or an arc lies outside it.
    diameter_px : float
        Equivalent diameter (of a disc of the same area), pixels.
    extent_px : float
        Longest extent (maximum Feret diameter), pixels; the size the overlap is judged on.
    overlap_fraction : float
        Share of the frames that put the candidate on the same part of the scene, averaged
        over the frames (pairs of frames that moved by less than half of its size,
        counting only frames that see that part of the scene), for a shadow of ``extent_px``;
        NaN when the frames could not be registered.
    median_deficit : float
        ``1 - median(candidate / plane)`` in the temporal median, ``plane`` fitted to the
        surroundings (NaN when not measured).
    fixed_deficit : float
        The same in the ratio of the median to the dust-free prediction (NaN when not
        measured); where ``median_deficit`` could not be measured, in the ratio seen frame by
        frame (:attr:`DustFreePrediction.lit_ratio`).
    verdict : str
        ``"sensor"`` (kept), ``"scene"`` (rejected), ``"too shallow: ..."`` (rejected: too
        shallow to correct), ``"undecided: ..."`` (kept) with the reason, or
        ``DROPPED_UNDECIDED + "undecided: ..."`` (rejected: ``keep_undecided`` is off), or
        ``DROPPED_BY_HAND`` followed by any of those (rejected by a reviewer, see
        ``science.flatfield.edits``).
    outline_fixed, outline_fixed_local : float
        Share of the candidate's outline that stayed on the sensor while the seeing shook the
        scene, against the shifts of the whole frame and against those of the candidate's
        surroundings (:func:`_outline_fixed_shares`): about 1 for dust, about 0 for a scene
        feature. NaN where not measured: the outline is read only for a candidate the target
        moved too little for, or whose scene too few frames cover.
    """

    centroid_y: float
    centroid_x: float
    inside_y: int
    inside_x: int
    diameter_px: float
    extent_px: float
    overlap_fraction: float
    median_deficit: float
    fixed_deficit: float
    verdict: str
    outline_fixed: float = math.nan
    outline_fixed_local: float = math.nan

    @property
    def kept(self) -> bool:
        return (
            self.verdict not in (SCENE, SHALLOW)
            and not self.dropped_undecided
            and not self.dropped_by_hand
        )

    @property
    def dropped_by_hand(self) -> bool:
        """Dropped by a reviewer, whatever the test said."""
        return self.verdict.startswith(DROPPED_BY_HAND)

    @property
    def dropped_undecided(self) -> bool:
        """Undecided and dropped, ``keep_undecided`` being off."""
        return self.verdict.startswith(DROPPED_UNDECIDED)

    @property
    def undecided(self) -> bool:
        """Kept without the video showing it fixed on the sensor."""
        return is_undecided(self.verdict)


def is_undecided(verdict: str) -> bool:
    """Whether a verdict's text (``MotionVerdict.verdict``) keeps its candidate without the
    video showing it fixed on the sensor."""
    return verdict.startswith(UNDECIDED)


def label_candidates(core: np.ndarray) -> tuple[np.ndarray, int]:
    """The connected (8-neighbour) candidates of the bool mask ``core``, numbered as
    :func:`sensor_fixed_test` numbers them: its verdicts are in label order."""
    return ndimage.label(core, structure=np.ones((3, 3), dtype=bool))


def sensor_fixed_test(
    core: np.ndarray,
    median: np.ndarray,
    frames: Sequence[np.ndarray],
    shifts: np.ndarray,
    params: MotionTestParams = MotionTestParams(),
    *,
    detection: DustDetectionParams = _DEFAULT_DETECTION,
    registered: bool = True,
    black_level: float | None = None,
) -> tuple[np.ndarray, tuple[MotionVerdict, ...]]:
    """Drop candidates of ``core`` that moved with the scene.

    Parameters
    ----------
    core : np.ndarray
        (H, W) bool, candidate dust shadows (connected components are tested one by one).
    median : np.ndarray
        (H, W) temporal median of the video, linear data in ADU.
    frames : sequence of np.ndarray
        Registered frames, each (H, W) on the pixel grid of ``median`` (for example every
        few-th frame of the video); only windows around the candidates are read.
    shifts : np.ndarray
        (len(frames), 2) float, displacement (dy, dx) in pixels of the scene in each frame:
        a scene feature at (y, x) in the scene's coordinates is at (y + dy, x + dx) in that
        frame (``DriftEstimate.shifts``, scaled to this pixel grid).
    params : MotionTestParams
    detection : DustDetectionParams
        ``dark_fraction`` of the median's bright level (``levels.target_level``) delimits the
        target: a candidate's
        surroundings off the target (the sky beside a limb) are no reference for its deficit.
    registered : bool
        False when the frames could not be registered (``DriftEstimate.registered``): every
        candidate with a deficit is then undecided (``UNDECIDED_UNREGISTERED``), since
        ``shifts`` say nothing of how the scene moved.
    black_level : float, optional
        The frames' pedestal, ADU. Given, a candidate whose surroundings in the median lie
        off the target (the sky beside the line a limb crossed mid-video), where no deficit
        can be measured in the median, is judged on the frames that light it
        (:attr:`DustFreePrediction.lit_ratio`): kept when their light shows at least
        ``params.min_ratio_depth`` of deficit, dropped as moving with the scene when it
        does not. None leaves such candidates undecided.

    Returns
    -------
    kept : np.ndarray
        (H, W) bool, ``core`` without the candidates found to move with the scene.
    verdicts : tuple of MotionVerdict
        One per connected candidate, in label order.

    Raises
    ------
    ValueError
        For masks or images of the wrong shape or dtype, a median with NaN or inf, fewer than
        two frames, shifts that do not match the frames, or non-finite shifts.
    """
    mask, image, offsets = _validate(core, median, frames, shifts)
    if not params.motion_test or not mask.any():
        return mask.copy(), ()
    labels, count = label_candidates(mask)
    boxes = ndimage.find_objects(labels)
    verdicts = []
    rejected = np.zeros(count + 1, dtype=bool)
    on_target = detection.dark_fraction * target_level(image)
    for label, box in enumerate(boxes, start=1):
        verdict = _judge(
            labels, label, box, image, frames, offsets, params, on_target, registered, black_level
        )
        if verdict.undecided and not params.keep_undecided:
            verdict = replace(verdict, verdict=DROPPED_UNDECIDED + verdict.verdict)
        verdicts.append(verdict)
        rejected[label] = not verdict.kept
    return mask & ~rejected[labels], tuple(verdicts)


@dataclass(frozen=True)
class MotionResult:
    """Outcome of :func:`separate_sensor_fixed`.

    Attributes
    ----------
    core : np.ndarray
        (H, W) bool, the shadows fixed on the sensor: candidates not found to move with the
        scene, plus the shadows found in the ratio, their outlines drawn again when
        ``max_outline_growth`` is above 0.
    tested : np.ndarray
        (H, W) bool, the candidates not found to move with the scene, less the parts of them
        the ratio shows clean (``core`` before the shadows found in the ratio were added).
    verdicts : tuple of MotionVerdict
        One per candidate of the input core.
    ratio_shadows : tuple of RatioShadow
        Shadows found in the ratio of the median to its dust-free prediction and added to the
        core (some may overlap kept candidates: :attr:`new_shadows` are the others).
    ratio_searched : bool
        Whether the ratio was searched (the search needs ``params.ratio_search``, registered
        frames, enough motion for a median over the frames to see past the smallest shadow the
        detector looks for, and a prediction that explains the scene).
    texture_left : float
        Spread of the ratio over that of the median at the scales of the shadows (NaN when no
        prediction was made): how much of the scene's texture the prediction left.
    prediction : DustFreePrediction or None
        The prediction the outlines were last drawn in (made again without the shadows'
        pixels when ``max_outline_growth`` is above 0, from the frames divided by the
        sensor's gain when ``gain_iterations`` is); None when the ratio was not searched.
    ratio_verdicts : tuple of MotionVerdict
        The motion test's verdicts on the shadows found in the ratio alone (touching no kept
        candidate); those judged to move with the scene are not in ``core`` or
        ``ratio_shadows``.
    black_level : float
        The frames' pedestal the frames were compared with, ADU.
    too_little_motion : bool
        The search was asked for (``params.motion_test`` and ``params.ratio_search``) but not
        run: half the frames or more put the smallest shadow the detector looks for on the
        same part of the scene, so no median over them sees behind it.
    transparency : FrameTransparency or None
        Each given frame's transparency, measured when ``params.transparency_correction`` is
        set and the frames were registered; None otherwise.
    frames_left_out : tuple of int
        Positions, in the frames given, of those left out of the comparisons as dimmer than
        ``params.min_frame_transparency``.
    cut_as_clean : int
        Pixels of the kept candidates cut from them because the ratio, made again without
        them, shows them clean (see :func:`separate_sensor_fixed`).
    """

    core: np.ndarray
    tested: np.ndarray
    verdicts: tuple[MotionVerdict, ...]
    ratio_shadows: tuple[RatioShadow, ...]
    ratio_searched: bool
    texture_left: float = math.nan
    prediction: DustFreePrediction | None = None
    ratio_verdicts: tuple[MotionVerdict, ...] = ()
    black_level: float = 0.0
    too_little_motion: bool = False
    transparency: FrameTransparency | None = None
    frames_left_out: tuple[int, ...] = ()
    cut_as_clean: int = 0

    @property
    def new_shadows(self) -> tuple[RatioShadow, ...]:
        """The shadows found in the ratio that no kept candidate already covered."""
        return tuple(shadow for shadow in self.ratio_shadows if not shadow.lies_in(self.tested))


def separate_sensor_fixed(
    core: np.ndarray,
    median: np.ndarray,
    frames: Sequence[np.ndarray],
    shifts: np.ndarray,
    *,
    params: MotionTestParams = MotionTestParams(),
    detection: DustDetectionParams = _DEFAULT_DETECTION,
    black_level: float | None = None,
    registered: bool = True,
) -> MotionResult:
    """Keep the candidates fixed on the sensor and add the faint shadows the scene hid.

    With ``params.transparency_correction`` each registered frame is first divided by its
    transparency (:func:`.transparency.frame_transparency`), and frames dimmer than
    ``params.min_frame_transparency`` are left out. Runs :func:`sensor_fixed_test` on ``core``;
    then, when ``params.ratio_search`` is set and fewer than half the frames put the smallest
    shadow the detector looks for (``2 * detection.min_radius_px`` across) on the same scene
    point (``_SEARCH_MAX_OVERLAP``), searches the ratio of :func:`predict_dust_free` with
    :func:`find_shadows_in_ratio`, never where a candidate was found to move with the scene,
    provided the prediction explains the scene (at most ``params.max_texture_left`` of the
    median's texture is left in the ratio).
    Once a prediction over a third of the rows shows that the frames predict the scene, each
    frame is divided by the sensor's smooth response (``params.response_degree``) before the
    frames are compared, for the motion test and the search alike. Shadows found in the ratio
    alone go through :func:`sensor_fixed_test` as well, which drops
    remnants of scene features the first scene estimate kept in part.
    With ``params.max_outline_growth`` above 0 the scene is then estimated again without the
    pixels of the shadows kept and found, and from the frames divided by the sensor's gain
    the first ratio measures (:func:`fixed_gain`, ``params.gain_iterations`` times); each
    shadow's outline is drawn again in that ratio, at most that fraction of its diameter
    farther out, and the shadows it shows apart from them are added once the motion test
    confirms them. The kept candidates are then cut to that ratio: the parts of a candidate
    whose own shadow shows in it that it shows clean, where it is known, are dropped
    (:func:`_clean_in_ratio`), and the prediction is made again without the rest.

    Parameters
    ----------
    core, median, frames, shifts
        As for :func:`sensor_fixed_test`.
    params : MotionTestParams
    detection : DustDetectionParams
        Detector parameters for the ratio search; ``dark_fraction`` also delimits the target
        for :func:`sensor_fixed_test`.
    black_level : float, optional
        The frames' pedestal, ADU, which neither the sensor's response nor dust scales. None
        estimates it from the median's sky
        (:func:`~astro_assets.science.flatfield.flatfield.sky_black_level`), and takes 0 where
        the target fills the frame.
    registered : bool
        As for :func:`sensor_fixed_test`; when False the ratio is not searched either.

    Returns
    -------
    MotionResult

    Raises
    ------
    ValueError
        As :func:`sensor_fixed_test`, and for a ``black_level`` that is not finite or lies
        outside [0, the median's bright level).
    """
    _, image, offsets = _validate(core, median, frames, shifts)
    if black_level is None:
        black_level = sky_black_level(image)
        black_level = 0.0 if black_level is None else black_level
    elif not np.isfinite(black_level):
        raise ValueError(f"black_level must be finite or None, got {black_level}.")
    elif not 0 <= black_level < target_level(image):
        raise ValueError(
            f"black_level {black_level:g} ADU lies outside [0, {target_level(image):g}), the "
            "median's bright level: it is the pedestal the camera adds to every pixel, below "
            "the target's light. Give the level of a dark frame, or leave it unset to estimate "
            "it from the sky."
        )
    black_level = float(black_level)
    transparency = None
    left_out: tuple[int, ...] = ()
    if params.motion_test and params.transparency_correction and registered:
        transparency = frame_transparency(frames, offsets, black_level=black_level)
        dim = transparency.dimmer_than(params.min_frame_transparency)
        if np.count_nonzero(~dim) < 2:
            dim = np.zeros_like(dim)
        left_out = tuple(int(i) for i in np.flatnonzero(dim))
        lit_frames = [frame for frame, kept_frame in zip(frames, ~dim, strict=True) if kept_frame]
        frames = divided_by_transparency(lit_frames, transparency.divisors()[~dim], black_level)
        offsets = offsets[~dim]
        shifts = offsets
    smallest = 2.0 * detection.min_radius_px
    moved = _mean_overlap(offsets, smallest / 2) < _SEARCH_MAX_OVERLAP

    def without_search(texture_left: float = math.nan) -> MotionResult:
        kept, verdicts = sensor_fixed_test(
            core,
            median,
            frames,
            shifts,
            params,
            detection=detection,
            registered=registered,
            black_level=black_level,
        )
        return MotionResult(
            core=kept,
            tested=kept,
            verdicts=verdicts,
            ratio_shadows=(),
            ratio_searched=False,
            texture_left=texture_left,
            black_level=black_level,
            too_little_motion=params.motion_test
            and params.ratio_search
            and registered
            and not moved,
            transparency=transparency,
            frames_left_out=left_out,
        )

    if not (params.motion_test and params.ratio_search and moved and registered):
        return without_search()
    if params.response_degree >= 2:
        # Measured only once the frames are known to predict the scene: fitted to frames that
        # do not (a scene that changed, a failed registration), a polynomial would take up
        # part of what they miss. A third of the rows tells.
        sampled = _prediction_in_bands(frames, offsets, image.shape, params, every=3)
        if _texture_left(sampled.observed, sampled.predicted, core, detection) <= (
            params.max_texture_left
        ):
            # Sampled wherever the frames are lit (its own dark fraction leaves out the sky
            # and umbrae), not only above the detector's target level: sampled so, a corner
            # vignetted below that level would hold the response at its value at the samples'
            # edge, and the ratio search, which looks wherever the prediction reaches the
            # target level, would take that corner's too bright prediction for a shadow.
            response = estimate_sensor_response(
                frames, offsets, degree=params.response_degree, black_level=black_level
            )
            if transparency is None:
                frames = [ResponseCorrectedFrame(f, response, black_level) for f in frames]
            else:
                # Measured again on the frames divided by the response: a target crossing a
                # vignetted field dims as it nears a corner, which the first measurement took
                # for transparency and the response now divides out as well.
                frames, transparency = _transparency_without_response(
                    lit_frames, offsets, response, black_level, transparency, ~dim
                )
    prediction = predict_dust_free(frames, offsets, image.shape, params, black_level=black_level)
    texture_left = _texture_left(prediction.observed, prediction.predicted, core, detection)
    if not texture_left <= params.max_texture_left:
        return without_search(texture_left)
    kept, verdicts = sensor_fixed_test(
        core, median, frames, shifts, params, detection=detection, black_level=black_level
    )
    moving = np.asarray(core) & ~kept

    def search(in_prediction: DustFreePrediction) -> tuple[np.ndarray, tuple[RatioShadow, ...]]:
        return find_shadows_in_ratio(
            in_prediction.observed,
            in_prediction.predicted,
            exclude=moving,
            detection=detection,
            min_depth=params.min_ratio_depth,
            min_fixed_fraction=params.min_deficit_ratio,
            min_deep_depth=params.min_deep_depth,
            min_limb_depth=params.min_limb_depth,
            min_significance=params.min_ratio_significance,
            lit_ratio=in_prediction.lit_ratio,
            lit_share=in_prediction.lit_share,
            min_lit_fraction=params.min_lit_fraction,
        )

    def fixed_on_sensor(
        found: np.ndarray, shadows: tuple[RatioShadow, ...], known: np.ndarray
    ) -> tuple[np.ndarray, tuple[RatioShadow, ...], tuple[MotionVerdict, ...]]:
        # A shadow of the ratio alone may be the remnant of a scene feature (a sunspot longer
        # than the drift) that the scene estimate kept only in part: the motion test, which
        # leaves the shadow's own pixels out of the scene estimate, tells.
        with_known = regions_touching(found, known)
        alone = found & ~with_known
        if not alone.any():
            return found, shadows, ()
        # Their deficit in the ratio already shows them fixed on the sensor: undecided here
        # means only that the test lacks the frames to show they moved.
        confirmed, alone_verdicts = sensor_fixed_test(
            alone,
            image,
            frames,
            offsets,
            replace(params, keep_undecided=True),
            detection=detection,
            black_level=black_level,
        )
        found = with_known | confirmed
        shadows = _shadows_in(shadows, found)
        return found, shadows, alone_verdicts

    found, shadows = search(prediction)
    found, shadows, ratio_verdicts = fixed_on_sensor(found, shadows, kept)
    cut_as_clean = 0
    fixed = kept | found
    redraw = params.max_outline_growth > 0 and fixed.any()
    if redraw or params.gain_iterations > 0:
        reach = (
            _outline_reach(fixed, params.max_outline_growth)
            if redraw
            else np.zeros(fixed.shape, dtype=bool)
        )
        first = prediction
        prediction = _again_without_shadows(
            first, frames, offsets, reach, params, detection.dark_fraction
        )
        again, again_shadows = search(prediction)
        if redraw:
            fixed = fixed | (regions_touching(again, fixed) & reach)
        # Shadows the first scene estimate held too much of to show (beside the frame's
        # edges, or nearly as large as the drift) stand out once the gain is divided out.
        more = again & ~regions_touching(again, fixed)
        if more.any():
            more, more_shadows, more_verdicts = fixed_on_sensor(
                more, _shadows_in(again_shadows, more), fixed
            )
            fixed = fixed | more
            shadows = shadows + more_shadows
            ratio_verdicts = ratio_verdicts + more_verdicts
            if params.max_outline_growth > 0 and more.any():
                # Their outlines too are drawn again without their pixels.
                more_reach = _outline_reach(more, params.max_outline_growth)
                prediction = _again_without_shadows(
                    first, frames, offsets, reach | more_reach, params, detection.dark_fraction
                )
                redrawn, _ = search(prediction)
                fixed = fixed | (regions_touching(redrawn, more) & more_reach)
        clean = _clean_in_ratio(kept, prediction, detection.min_radius_px) if redraw else None
        if clean is not None and clean.any():
            cut_as_clean = int(np.count_nonzero(clean))
            kept = kept & ~clean
            fixed = fixed & ~clean
            # Left out of the scene estimate, the pieces cut made the prediction unknown where
            # most frames saw their part of the scene through them (near the frame's edges).
            prediction = _again_without_shadows(
                first,
                frames,
                offsets,
                _outline_reach(fixed, params.max_outline_growth),
                params,
                detection.dark_fraction,
            )
    return MotionResult(
        core=fixed,
        tested=kept,
        verdicts=verdicts,
        ratio_shadows=shadows,
        ratio_searched=True,
        texture_left=texture_left,
        prediction=prediction,
        ratio_verdicts=ratio_verdicts,
        black_level=black_level,
        transparency=transparency,
        frames_left_out=left_out,
        cut_as_clean=cut_as_clean,
    )


def _transparency_without_response(
    frames: Sequence[np.ndarray],
    offsets: np.ndarray,
    response: np.ndarray,
    black_level: float,
    first: FrameTransparency,
    measured_again: np.ndarray,
) -> tuple[list, FrameTransparency]:
    """``frames`` divided by the sensor's ``response`` and by their transparency measured on
    them so; and the transparency of every frame ``first`` measured, those at
    ``measured_again`` (the positions of ``frames`` among them) replaced by the new values."""
    corrected = [ResponseCorrectedFrame(frame, response, black_level) for frame in frames]
    again = frame_transparency(corrected, offsets, black_level=black_level)
    gains = first.gains.copy()
    measured = first.measured.copy()
    gains[measured_again] = again.gains
    measured[measured_again] = again.measured
    divided = divided_by_transparency(corrected, again.divisors(), black_level)
    return divided, FrameTransparency(gains=gains, measured=measured, pairs_used=again.pairs_used)


def _outline_reach(shadows: np.ndarray, growth: float) -> np.ndarray:
    """Each connected shadow of ``shadows`` grown by ``growth`` times its equivalent diameter
    (at least 3 px): where its outline may lie once drawn again."""
    labels, _ = ndimage.label(shadows)
    reach = np.zeros(shadows.shape, dtype=bool)
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        shadow = labels[box] == label
        steps = max(3, round(growth * 2.0 * math.sqrt(np.count_nonzero(shadow) / math.pi)))
        window = grown_box(box, steps, shadows.shape)
        inside = labels[window] == label
        reach[window] |= ndimage.binary_dilation(inside, iterations=steps)
    return reach


_CUT_SMOOTHING_PX = 1.0
"""Gaussian sigma, px, of the ratio :func:`_clean_in_ratio` compares with a shadow's depth:
the smallest scale at which a shadow's outline is a line and not single noisy pixels."""
_CUT_NOISE_SIGMA = 3.0
"""A candidate is cut only where the level of its outline in the ratio lies this many times
the ratio's noise around it above 0: below that, noise alone draws the outline."""
_CUT_RING_PX = (2, 8)
"""The ring around a candidate in which the ratio's noise is measured: from this many px to
this many px beyond its edge."""


def _clean_in_ratio(
    candidates: np.ndarray, prediction: DustFreePrediction, min_radius_px: float
) -> np.ndarray:
    """The parts of the kept candidates that the ratio of a prediction made without them
    shows clean: where it is known, its deficit is below ``_DEEP_OUTLINE_LEVEL`` of the
    candidate's depth there, and the clean pixels hold a disc of ``min_radius_px`` (a piece as
    large as the smallest shadow the detector looks for).

    A candidate of the eye grown from a shadow into a dim part of the median beside it (a
    limb, a frame edge darkened by vignetting) passes the motion test on its shadow's deficit
    and would otherwise be inpainted whole, pulling the flat down over the part that holds no
    dust (on a synthetic drifting Sun, cutting took the flat's rms error inside the dust from
    1.6 to 0.53 % and its false core from 245 to 83 px). Only a
    candidate whose own shadow shows in the ratio is cut: one the ratio sees no shadow in is
    left whole to the motion test's verdict. Unknown pixels (the centre of a shadow larger than
    the drift, seen by every frame through itself) and thin rims of its penumbra are kept, and
    so are holes the shadow encloses (a donut's centre).

    Parameters
    ----------
    candidates : np.ndarray
        (H, W) bool, the candidates kept.
    prediction : DustFreePrediction
        Made with the candidates' pixels left out of the scene estimate: pixels where it had
        to keep them (``with_excluded``) count as unknown.
    min_radius_px : float
        Radius of the smallest piece cut, px.

    Returns
    -------
    np.ndarray
        (H, W) bool, the pixels to cut; a subset of ``candidates``.
    """
    ratio = prediction.ratio
    known = np.isfinite(ratio)
    if prediction.with_excluded is not None:
        known &= ~prediction.with_excluded
    cut = np.zeros(candidates.shape, dtype=bool)
    if not (candidates & known).any():
        return cut
    radius = max(1, math.ceil(min_radius_px))
    offsets = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disc = np.hypot(offsets[0], offsets[1]) <= min_radius_px
    labels, _ = ndimage.label(candidates)
    margin = _CUT_RING_PX[1] + 3 * math.ceil(_CUT_SMOOTHING_PX)
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        window = grown_box(box, margin, candidates.shape)
        inside = labels[window] == label
        seen = known[window]
        if np.count_nonzero(inside & seen) < np.count_nonzero(disc):
            continue
        weight = ndimage.gaussian_filter(seen.astype(np.float64), _CUT_SMOOTHING_PX)
        summed = ndimage.gaussian_filter(np.where(seen, ratio[window], 0.0), _CUT_SMOOTHING_PX)
        deficit = 1.0 - summed / np.maximum(weight, 1e-12)
        near, far = (ndimage.binary_dilation(inside, iterations=n) for n in _CUT_RING_PX)
        ring = far & ~near & seen & ~candidates[window]
        if np.count_nonzero(ring) < np.count_nonzero(disc):
            continue
        noise = robust_sigma(deficit[ring])
        depth = float(np.percentile(deficit[inside & seen], 90))
        level = _DEEP_OUTLINE_LEVEL * depth
        if not level > _CUT_NOISE_SIGMA * noise:
            continue
        clean = inside & seen & (deficit < level)
        bulk = ndimage.binary_opening(clean, structure=disc)
        if not bulk.any():
            continue
        shadow = inside & ~clean
        stays = fill_holes(regions_touching(inside & ~bulk, shadow))
        cut[window] |= inside & ~stays
    return cut


def _again_without_shadows(
    first: DustFreePrediction,
    frames: Sequence[np.ndarray],
    offsets: np.ndarray,
    pixels: np.ndarray,
    params: MotionTestParams,
    dark_fraction: float,
) -> DustFreePrediction:
    """The prediction made again with ``pixels`` left out of the scene estimate and the frames
    divided by the gain measured in ``first`` (:func:`fixed_gain`, ``params.gain_iterations``
    times); ``first`` where the scene is then unknown (parts of the scene seen through those
    pixels by most of the frames), marked in ``with_excluded``."""

    def predicted_with(gain: np.ndarray | None) -> DustFreePrediction:
        return predict_dust_free(
            frames,
            offsets,
            pixels.shape,
            params,
            excluded=pixels,
            gain=gain,
            black_level=first.black_level,
        )

    again = predicted_with(None) if params.gain_iterations == 0 else first
    for _ in range(params.gain_iterations):
        again = predicted_with(fixed_gain(again, dark_fraction))
    unknown = ~np.isfinite(again.predicted)
    lit_ratio = lit_share = None
    if first.lit_ratio is not None and again.lit_ratio is not None:
        lit_ratio = np.where(unknown, first.lit_ratio, again.lit_ratio)
        lit_share = np.where(unknown, first.lit_share, again.lit_share)
    return DustFreePrediction(
        observed=np.where(unknown, first.observed, again.observed),
        predicted=np.where(unknown, first.predicted, again.predicted),
        with_excluded=unknown & np.isfinite(first.predicted),
        black_level=first.black_level,
        lit_ratio=lit_ratio,
        lit_share=lit_share,
    )


def _shadows_in(shadows: tuple[RatioShadow, ...], region: np.ndarray) -> tuple[RatioShadow, ...]:
    """The shadows that lie in ``region`` ((H, W) bool)."""
    return tuple(shadow for shadow in shadows if shadow.lies_in(region))


def _centroid_and_inside(
    rows: np.ndarray, cols: np.ndarray, origin: tuple[int, int]
) -> tuple[float, float, int, int]:
    """The centroid (y, x) of a region (its pixels' ``rows`` and ``cols`` in a window whose
    corner lies at ``origin`` of the image) and its pixel nearest that centroid (y, x), in the
    image's pixels."""
    row, col = float(rows.mean()), float(cols.mean())
    nearest = int(np.argmin((rows - row) ** 2 + (cols - col) ** 2))
    return (
        row + origin[0],
        col + origin[1],
        int(rows[nearest]) + origin[0],
        int(cols[nearest]) + origin[1],
    )


def _light_on_target(
    prediction: DustFreePrediction, dark_fraction: float, leave_out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The observed and predicted light above the pedestal ((H, W) float64 each), and where
    both are known and the prediction is above ``dark_fraction`` of its bright level
    (``levels.target_level``) outside ``leave_out``; None when no level can be measured."""
    observed = prediction.observed.astype(np.float64) - prediction.black_level
    predicted = prediction.predicted.astype(np.float64) - prediction.black_level
    known = np.isfinite(observed) & np.isfinite(predicted)
    if leave_out is not None:
        known &= ~leave_out
    if not known.any():
        return None
    level = target_level(predicted[known])
    if not level > 0:
        return None
    return observed, predicted, known & (predicted > dark_fraction * level)


_MIN_GAIN = 0.02
"""Lowest gain :func:`fixed_gain` gives: a near-opaque shadow's light is mostly noise, which a
smaller gain would raise to the level of the scene's."""
_GAIN_NOISE_SIGMA = 3.0
"""A pixel's gain is measured only where its ratio lies this many times the ratio's noise below
the ratio's median: a threshold at the noise (no data tunes it), so that the noise of the
pixels without dust (0.13 % of them below it for Gaussian noise) leaves the scene estimate
unbiased."""


def fixed_gain(prediction: DustFreePrediction, dark_fraction: float) -> np.ndarray:
    """The shadows' gain on the sensor the prediction measures: the ratio of the observed light
    to the predicted light, over its median, where it is darker than the ratio's noise allows;
    1 elsewhere.

    Near the frame's edges some parts of the scene are seen by few frames, all through nearly
    the same sensor pixels, so a shadow there darkens the scene estimate and the prediction
    holds it in part. Dividing the frames by this gain before the scene is estimated again
    (:func:`predict_dust_free`'s ``gain``) takes the shadow out of the estimate, as the
    iterative self-calibration of shifted solar images does (Kuhn, Lin & Loranz 1991); in the
    rest of the frame each part of the scene is seen through many pixels, so the estimate
    changes little there. The gain is at most 1: where the prediction holds a shadow seen
    through other pixels the ratio is above 1, and dividing by that would darken the scene
    estimate near every shadow. Below the noise threshold it is 1, because a gain clipped at
    1 from noisy ratios would be biased low everywhere.

    Parameters
    ----------
    prediction : DustFreePrediction
    dark_fraction : float
        The gain is measured where the predicted light is above this fraction of its bright
        level (``levels.target_level``).

    Returns
    -------
    np.ndarray
        (H, W) float32 gain in [``_MIN_GAIN``, 1].
    """
    gain = np.ones(prediction.observed.shape, dtype=np.float32)
    light = _light_on_target(prediction, dark_fraction)
    if light is None or not light[2].any():
        return gain
    observed, predicted, usable = light
    ratio = observed[usable] / predicted[usable]
    middle = float(np.median(ratio))
    if not middle > 0:
        return gain
    noise = 1.4826 * float(np.median(np.abs(ratio - middle)))
    dark = ratio < middle - _GAIN_NOISE_SIGMA * noise
    measured = gain[usable]
    measured[dark] = np.clip(ratio[dark] / middle, _MIN_GAIN, 1.0)
    gain[usable] = measured
    return gain


@dataclass(frozen=True)
class GuideRegion:
    """How :func:`inpainting_guide` has one connected region of the mask filled.

    Attributes
    ----------
    centroid_y, centroid_x : float
        Centroid of the region, pixels.
    area_px : int
        Pixels of the region (``mask > 0``).
    guided : bool
        Whether the region is filled along the dust-free prediction.
    reason : str
        ``"found in the ratio alone"``; ``"prediction fits the ring better"`` or
        ``"continuation fits the ring as well"`` (judged on the held-out ring of clean pixels,
        see ``MotionTestParams.guide_holdout_px``); ``"prediction holds the shadow"`` (it fits
        the ring better, but where too few frames saw the shadow's part of the scene through
        other pixels it still holds the shadow, deeper there than the continuation's miss of
        the ring; see ``DustFreePrediction.with_excluded``);
        ``"not judged"`` (the judgement is off, or no lit clean pixel lies in the ring);
        ``"prediction unknown around it"`` (the prediction is unknown on a pixel of the region
        or next to it, so it is continued); or ``"no prediction"`` (the ratio was not
        searched).
    continued_rms, guided_rms : float
        Rms miss, in the median's units, of the held-out ring's lit pixels by the continuation
        from the surroundings and by the fill along the prediction; NaN where not judged. Where
        regions lie closer than twice the ring's width they are judged together.
    """

    centroid_y: float
    centroid_x: float
    area_px: int
    guided: bool
    reason: str
    continued_rms: float = math.nan
    guided_rms: float = math.nan


@dataclass(frozen=True)
class InpaintingGuide:
    """Outcome of :func:`inpainting_guide`.

    Attributes
    ----------
    image : np.ndarray
        (H, W) float32: the dust-free prediction of the median, carried and filtered as
        :func:`inpainting_guide` describes, over the guided regions and the 2 px around them,
        NaN elsewhere.
    regions : tuple of GuideRegion
        One per connected region of the mask, in label order (rows first).
    prediction : np.ndarray or None
        (H, W) float32, the carried and filtered prediction wherever it is known (NaN
        elsewhere), of which ``image`` keeps the guided regions; None without a prediction.
    """

    image: np.ndarray
    regions: tuple[GuideRegion, ...]
    prediction: np.ndarray | None = None

    @property
    def guided_count(self) -> int:
        """Regions filled along the prediction."""
        return sum(region.guided for region in self.regions)


def inpainting_guide(
    result: MotionResult,
    mask: np.ndarray,
    median: np.ndarray,
    *,
    params: MotionTestParams = MotionTestParams(),
    detection: DustDetectionParams = _DEFAULT_DETECTION,
) -> InpaintingGuide:
    """The guide :func:`~astro_assets.science.flatfield.inpaint.inpaint_guided` follows: the
    dust-free prediction, over the regions of the mask it fills better than the surroundings.

    The prediction is carried from the frames it was taken over to all the median's frames
    (``predicted * median / observed``, in which the dust cancels), so that near the frame's
    edges it describes the median it guides, and then filtered to match the median
    (:func:`filtered_to_match`, ``params.guide_filter_px``; fitted away from the mask and the
    held-out rings), which takes up the blur of its two interpolations and sub-pixel errors of
    the drift.

    Regions that hold only shadows found in the ratio are always guided: those shadows were
    hidden in the median by the scene's texture, so a continuation from the surroundings would
    leave that texture, as deep as the shadow, in the flat, while the prediction carries the
    texture without the shadow.

    A region the median shows is judged on its surroundings: a ring of
    ``params.guide_holdout_px`` clean pixels around it is held out and filled both ways (the
    harmonic continuation with a quadratic trend, and along the prediction), and the region is
    guided when the continuation misses the ring's lit pixels by more than
    ``params.min_guide_advantage`` times the fill along the prediction. Across a limb, which a
    continuation from the target's side cannot follow to the sky, and through a planet's bands,
    the continuation misses by 3-340 times more; on the Sun's granulation the prediction still
    carries the texture a continuation smooths over. Where the prediction is poor (too few
    frames saw that part of the scene, or it changed) the ring shows it and the region is
    continued.

    Parameters
    ----------
    result : MotionResult
        Of :func:`separate_sensor_fixed`.
    mask : np.ndarray
        (H, W) expanded mask (``mask > 0`` is replaced by the inpainting), on the pixel grid
        of ``result.core``.
    median : np.ndarray
        (H, W) real image the mask was found in (the temporal median, or its luminance view),
        in ADU.
    params : MotionTestParams
        ``guide_holdout_px``, ``min_guide_advantage`` and ``guide_filter_px``.
    detection : DustDetectionParams
        ``dark_fraction`` delimits the lit pixels of the ring.

    Returns
    -------
    InpaintingGuide
        The guide (NaN everywhere when the ratio was not searched) and how each region is
        filled.

    Raises
    ------
    ValueError
        For a mask or median of another shape than ``result.core``.
    """
    support = np.asarray(mask) > 0
    image = np.asarray(median, dtype=np.float64)
    for name, array in (("mask", support), ("median", image)):
        if array.shape != result.core.shape:
            raise ValueError(
                f"{name} shape {array.shape} differs from the motion result's {result.core.shape}."
            )
    labels, count = ndimage.label(support)
    guide = np.full(support.shape, np.nan, dtype=np.float32)
    if result.prediction is None:
        return InpaintingGuide(guide, _guide_regions(labels, count, {}, "no prediction"))
    predicted = result.prediction.carried_to(image)
    if params.guide_filter_px > 0:
        # The ring the choice is judged on stays out of the fit, so that it judges the filter.
        fitted_on = ~ndimage.binary_dilation(support, iterations=params.guide_holdout_px + 1)
        predicted = filtered_to_match(predicted, image, fitted_on, params.guide_filter_px)
    from_ratio = regions_touching(support, result.core & ~result.tested) & ~regions_touching(
        support, result.tested
    )
    judged = {
        int(i): _Choice(True, "found in the ratio alone") for i in np.unique(labels[from_ratio])
    }
    unfollowable = support & ~guided_regions(support, predicted)
    if unfollowable.any():
        predicted = _completed_near(predicted, unfollowable, labels, params.guide_holdout_px)
        unfollowable = support & ~guided_regions(support, predicted)
    judged.update(
        {
            int(i): _Choice(False, "prediction unknown around it")
            for i in np.unique(labels[unfollowable])
        }
    )
    shown = support & ~from_ratio & ~unfollowable
    if params.guide_holdout_px > 0 and shown.any():
        judged.update(
            _judge_on_ring(
                image,
                support,
                shown,
                labels,
                predicted,
                result.prediction.with_excluded,
                params,
                detection,
            )
        )
    chosen = np.isin(labels, [label_id for label_id, r in judged.items() if r.guided])
    if chosen.any():
        near = ndimage.binary_dilation(chosen, iterations=2)
        guide[near] = predicted[near]
    return InpaintingGuide(
        guide,
        _guide_regions(labels, count, judged, "not judged"),
        predicted.astype(np.float32),
    )


def plane_guide(
    result: MotionResult,
    guide: InpaintingGuide,
    frames: Sequence[np.ndarray],
    shifts: np.ndarray,
    median: np.ndarray,
    mask: np.ndarray,
    offset: tuple[float, float],
    *,
    params: MotionTestParams = MotionTestParams(),
    detection: DustDetectionParams = _DEFAULT_DETECTION,
) -> np.ndarray:
    """The guide of one colour plane over the regions :func:`inpainting_guide` chose on the
    luminance view: beside a limb, predicted from that plane of the registered frames;
    elsewhere the luminance's prediction, scaled to the plane.

    A colour camera's dust is searched, and its guide judged, on the luminance view (a
    mosaic's 2 x 2 cells, an RGB frame's channel mean). Interpolated to a mosaic plane's
    samples the luminance's prediction keeps the cells' resolution, and across a planet's limb
    the fill along it left the flat 4.2 % rms off under f/60 spots (1.5 % on the same scene in
    mono). The plane's own frames, shifted by the same drift (a plane's pixels are the view's
    cells), predict the plane with its own limb and colour. The prediction is made as the
    luminance's last one: without the frames left out as too dim, divided by their
    transparency, with the shadows found left out of the scene estimate and the sensor's gain
    measured ``params.gain_iterations`` times; then carried to the plane's median and filtered
    to match it (:meth:`DustFreePrediction.carried_to`, :func:`filtered_to_match`). The
    sensor's smooth response, measured on the view, is not divided out: it changes little
    across a region, and the fill along the guide continues its ratio to the plane from the
    region's surroundings.

    A plane's prediction is made from a quarter of a mosaic's samples, and away from a limb,
    on faint texture, its noise costs more than its resolution gains (on f/10 donuts 1 % deep
    on a granulated Sun, 0.93 % rms against 0.69 % along the luminance's; judged on the
    held-out ring instead, 0.81 %). So only regions within ``params.guide_holdout_px`` of
    the sky or a night side (the luminance's prediction at or below ``dark_fraction`` of its
    bright level) follow the plane's own prediction; the others, and pixels where the
    plane's is unknown, follow the luminance's, scaled to the plane above the pedestal. A
    plane on the view's own pixels (``offset`` (0, 0): an RGB frame's channels) gains no
    resolution and follows the luminance's everywhere. The plane's prediction is made only
    when a region lies beside a limb (on a 1280 x 960 RGGB planet of 100 frames whose
    shadows do, ``dust_mask`` took 8.1-10.2 s against 5.6-6.6 s with the luminance's
    prediction alone); it is made over the whole plane, whose bright level its steps
    measure.

    Parameters
    ----------
    result : MotionResult
        Of :func:`separate_sensor_fixed` on the luminance view, with a prediction.
    guide : InpaintingGuide
        Of :func:`inpainting_guide` for ``result``.
    frames : sequence of np.ndarray
        This plane of each frame given to :func:`separate_sensor_fixed`, in its order
        (:class:`.planes.PlaneVideo`), each of ``median``'s shape.
    shifts : np.ndarray
        (len(frames), 2) the displacements given to :func:`separate_sensor_fixed`, view pixels.
    median : np.ndarray
        (H, W) this plane of the temporal median, in ADU.
    mask : np.ndarray
        (H, W) this plane of the expanded mask.
    offset : tuple of float
        Where the plane samples the scene relative to the view's pixels
        (:func:`.planes.plane_offsets`).
    params : MotionTestParams
        As given to :func:`separate_sensor_fixed`.
    detection : DustDetectionParams
        ``dark_fraction``, as given to :func:`separate_sensor_fixed`.

    Returns
    -------
    np.ndarray
        (H, W) float32 in the plane's units, NaN outside the guided regions (as carried to the
        plane).

    Raises
    ------
    ValueError
        For shifts that do not match the frames, and for a mask of another shape than
        ``median``.
    """
    plane = np.asarray(median, dtype=np.float32)
    if np.shape(mask) != plane.shape:
        raise ValueError(f"mask shape {np.shape(mask)} differs from the plane's {plane.shape}.")
    out = np.full(plane.shape, np.nan, dtype=np.float32)
    followed = np.isfinite(view_on_plane(guide.image, plane.shape, offset))
    if result.prediction is None or not followed.any():
        return out
    black_level = result.prediction.black_level
    luminance = _above_pedestal_as(
        view_on_plane(guide.prediction, plane.shape, offset), plane, black_level
    )
    support = np.asarray(mask) > 0
    # On the view's own pixels (an RGB frame's channels) a plane gains no resolution.
    limb = (
        _beside_a_limb(support, luminance, params, detection.dark_fraction) & followed
        if any(offset)
        else np.zeros(plane.shape, dtype=bool)
    )
    out[followed] = luminance[followed]
    if not limb.any():
        return out
    offsets = checked_offsets(frames, shifts)
    kept = np.ones(len(frames), dtype=bool)
    kept[list(result.frames_left_out)] = False
    used = [frame for frame, keep in zip(frames, kept, strict=True) if keep]
    if result.transparency is not None:
        used = divided_by_transparency(used, result.transparency.divisors()[kept], black_level)
    offsets = offsets[kept]
    prediction = predict_dust_free(used, offsets, plane.shape, params, black_level=black_level)
    redraw = params.max_outline_growth > 0 and result.core.any()
    if redraw or params.gain_iterations > 0:
        excluded = np.zeros(plane.shape, dtype=bool)
        if redraw:
            on_view = _outline_reach(result.core, params.max_outline_growth)
            excluded[: on_view.shape[0], : on_view.shape[1]] = on_view
        prediction = _again_without_shadows(
            prediction, used, offsets, excluded, params, detection.dark_fraction
        )
    predicted = prediction.carried_to(plane)
    if params.guide_filter_px > 0:
        fitted_on = ~ndimage.binary_dilation(support, iterations=params.guide_holdout_px + 1)
        predicted = filtered_to_match(predicted, plane, fitted_on, params.guide_filter_px)
    own = limb & np.isfinite(predicted)
    out[own] = predicted[own]
    return out


def _above_pedestal_as(guide: np.ndarray, reference: np.ndarray, black_level: float) -> np.ndarray:
    """``guide`` scaled above ``black_level`` by the median ratio of ``reference`` to it where
    both are above it (unchanged where there are no such pixels)."""
    above, reference_above = guide - black_level, reference - black_level
    with np.errstate(invalid="ignore"):
        both = np.isfinite(above) & np.isfinite(reference_above) & (above > 0)
        both &= reference_above > 0
    if not both.any():
        return guide
    scale = float(np.median(reference_above[both] / above[both]))
    return (black_level + above * scale).astype(np.float32)


def _beside_a_limb(
    support: np.ndarray, prediction: np.ndarray, params: MotionTestParams, fraction: float
) -> np.ndarray:
    """The regions of ``support`` grown by ``params.guide_holdout_px`` (at least 1 px) that hold
    a known pixel of ``prediction`` at or below ``fraction`` of its bright level: the sky or
    the night side beside a limb. Bool (H, W), the grown regions' pixels."""
    grown = ndimage.binary_dilation(support, iterations=max(1, params.guide_holdout_px))
    groups, count = ndimage.label(grown)
    if count == 0:
        return grown
    dark = np.isfinite(prediction) & ~_lit_by_prediction(prediction, fraction)
    ids = np.arange(1, count + 1)
    with_dark = ndimage.maximum(dark.astype(np.uint8), groups, ids) > 0
    return np.isin(groups, ids[with_dark])


_MIN_KNOWN_PREDICTION = 0.5
"""Share of a region's pixels and of those next to it on which the dust-free prediction must
be known for :func:`_completed_near` to complete it there."""


def _completed_near(
    predicted: np.ndarray, regions: np.ndarray, labels: np.ndarray, holdout_px: int
) -> np.ndarray:
    """``predicted`` (a copy) with its unknown pixels filled by a harmonic continuation of its
    known ones, around each region of ``regions`` where it is known on at least
    ``_MIN_KNOWN_PREDICTION`` of the region and of the ring next to it.

    Near the frame's edges some parts of the scene are seen by too few frames, and the
    prediction is unknown on part of a region there. Completed, it carries the scene's texture
    where it is known and is smooth where it is not, so that a region near the edge can still
    be judged, and filled, along it rather than continued whole from its surroundings (on a
    640 x 480 drifting Sun under a 60 px drift, a shadow 120 px from the frame's edge: 1.29 %
    rms flat error continued, 0.49 % along the completed prediction).
    """
    completed = np.array(predicted, dtype=np.float64)
    known = usable_guide(completed)
    boxes = ndimage.find_objects(labels)
    for label_id in np.unique(labels[regions]):
        box = boxes[label_id - 1]
        size = max(box[0].stop - box[0].start, box[1].stop - box[1].start)
        window = grown_box(box, max(size, 2 * holdout_px + 4), labels.shape)
        inside = labels[window] == label_id
        around = ndimage.binary_dilation(inside, iterations=holdout_px + 2) & ~inside
        known_here = known[window]
        if (
            known_here[inside].mean() < _MIN_KNOWN_PREDICTION
            or known_here[around].mean() < _MIN_KNOWN_PREDICTION
        ):
            continue
        crop = np.where(known_here, completed[window], 0.0)
        try:
            filled = inpaint(crop, ~known_here, InpaintParams(limb="none"))
        except ValueError:
            continue
        completed[window] = np.where(known_here, completed[window], filled)
        known[window] = True
    return completed.astype(predicted.dtype, copy=False)


def filtered_to_match(
    source: np.ndarray,
    target: np.ndarray,
    fitted_on: np.ndarray,
    radius: int,
    *,
    max_samples: int = 200_000,
) -> np.ndarray:
    """``source`` correlated with the square kernel that maps it best onto ``target``.

    The kernel's ``(2 * radius + 1) ** 2`` weights are fitted by linear least squares: the
    filtered source is the best linear prediction of the target from the source's pixels
    around each one. It takes up any blur, sharpening or sub-pixel displacement that is the
    same over the image, and where the source is noisier than the target it smooths; what a
    kernel of that size cannot describe (a shadow in the target alone) stays in the ratio.

    Parameters
    ----------
    source : np.ndarray
        (H, W) real image, NaN where unknown.
    target : np.ndarray
        (H, W) real image in the units of ``source``, NaN where unknown.
    fitted_on : np.ndarray
        (H, W) bool, the pixels whose target values the kernel is fitted to (those whose
        kernel footprint reaches an unknown source pixel or the image's edge are left out).
    radius : int
        Half the kernel's side, in pixels; 0 fits a single scale factor.
    max_samples : int
        At most this many pixels, evenly spaced in raster order, enter the fit.

    Returns
    -------
    np.ndarray
        (H, W) float32: the filtered source where its whole footprint is known, elsewhere
        the source times the sum of the weights (too few pixels to fit 100 per weight leave
        the source as it is).

    Raises
    ------
    ValueError
        For images or a mask of different shapes, a negative radius or ``max_samples < 1``.
    """
    image = np.asarray(source, dtype=np.float64)
    wanted = np.asarray(target, dtype=np.float64)
    chosen = np.asarray(fitted_on, dtype=bool)
    if wanted.shape != image.shape or chosen.shape != image.shape or image.ndim != 2:
        raise ValueError(
            f"source {image.shape}, target {wanted.shape} and fitted_on {chosen.shape} must be "
            "2-D images of one shape."
        )
    if radius < 0 or max_samples < 1:
        raise ValueError(
            f"radius must be >= 0 and max_samples >= 1, got {radius} and {max_samples}."
        )
    side = 2 * radius + 1
    known = np.isfinite(image)
    footprint_known = ndimage.minimum_filter(
        known.astype(np.uint8), size=side, mode="constant", cval=0
    ).astype(bool)
    samples = np.flatnonzero(footprint_known & chosen & np.isfinite(wanted))
    if samples.size < 100 * side * side:
        return image.astype(np.float32)
    samples = samples[:: math.ceil(samples.size / max_samples)]
    width = image.shape[1]
    taps = np.array(
        [dy * width + dx for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    )
    design = image.ravel()[samples[:, None] + taps[None, :]]
    weights, *_ = np.linalg.lstsq(design, wanted.ravel()[samples], rcond=None)
    filtered = ndimage.correlate(
        np.where(known, image, 0.0), weights.reshape(side, side), mode="constant"
    )
    # Scaled by the kernel's response to a flat field, so that the level does not step where
    # the footprint leaves the known pixels.
    return np.where(footprint_known, filtered, weights.sum() * image).astype(np.float32)


class _Choice(NamedTuple):
    """How :func:`inpainting_guide` fills one region: a :class:`GuideRegion` without its
    place and size."""

    guided: bool
    reason: str
    continued_rms: float = math.nan
    guided_rms: float = math.nan


def _judge_on_ring(
    median: np.ndarray,
    support: np.ndarray,
    shown: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    holds_shadows: np.ndarray | None,
    params: MotionTestParams,
    detection: DustDetectionParams,
) -> dict[int, _Choice]:
    """Whether each region of ``shown`` is filled better along ``predicted`` than from its
    surroundings, judged on a ring of clean pixels held out around it (keyed by label).

    Where ``predicted`` still holds the shadows (``holds_shadows``, None for nowhere: their
    part of the scene too few frames saw through other pixels), a fill along it errs there by
    up to the shadow's depth, which the ring cannot show; the region is then continued when
    that depth (measured against the continuation) is above the continuation's rms miss of
    the ring relative to the ring's level. A faint shadow the texture hides is still
    followed.
    """
    held_out = ndimage.binary_dilation(support, iterations=params.guide_holdout_px)
    if held_out.all():
        return {}
    groups, group_count = ndimage.label(held_out)
    # A fill along the prediction needs it on the whole held-out group; a few unknown pixels
    # where the group reaches the frame's edge or the sky would otherwise leave both fills the
    # same continuation, and the region continued on a tie.
    unfollowable = held_out & ~guided_regions(held_out, predicted)
    if unfollowable.any():
        predicted = _completed_near(predicted, unfollowable, groups, params.guide_holdout_px)
        unfollowable = held_out & ~guided_regions(held_out, predicted)
    ring = held_out & ~support & np.isfinite(median)
    ring &= _lit_by_prediction(predicted, detection.dark_fraction)
    continued = inpaint(median, held_out, InpaintParams())
    along = inpaint_guided(median, held_out, predicted, InpaintParams())
    group_ids = np.arange(1, group_count + 1)
    in_ring = ring.astype(np.float64)
    ring_px = ndimage.sum_labels(in_ring, groups, group_ids)
    continued_sq = ndimage.sum_labels(in_ring * (continued - median) ** 2, groups, group_ids)
    guided_sq = ndimage.sum_labels(in_ring * (along - median) ** 2, groups, group_ids)
    shown_labels = np.unique(labels[shown])
    held_labels = set() if holds_shadows is None else set(np.unique(labels[holds_shadows]))
    # A region lies within one group of the held-out mask, so its largest group label is it.
    region_groups = ndimage.maximum(groups, labels, shown_labels).astype(int) - 1
    verdicts: dict[int, _Choice] = {}
    unjudged = set(np.unique(groups[unfollowable]))
    for label_id, group in zip(shown_labels, region_groups, strict=True):
        if ring_px[group] == 0:
            continue
        if group + 1 in unjudged:
            verdicts[int(label_id)] = _Choice(False, "prediction unknown around its ring")
            continue
        continued_rms = float(np.sqrt(continued_sq[group] / ring_px[group]))
        guided_rms = float(np.sqrt(guided_sq[group] / ring_px[group]))
        guided = continued_rms > params.min_guide_advantage * guided_rms
        reason = (
            "prediction fits the ring better" if guided else "continuation fits the ring as well"
        )
        if (
            guided
            and label_id in held_labels
            and _holds_a_deeper_shadow(
                median,
                continued,
                labels,
                label_id,
                groups == group + 1,
                ring,
                holds_shadows,
                continued_rms,
            )
        ):
            guided, reason = False, "prediction holds the shadow"
        verdicts[int(label_id)] = _Choice(guided, reason, continued_rms, guided_rms)
    return verdicts


def _holds_a_deeper_shadow(
    median: np.ndarray,
    continued: np.ndarray,
    labels: np.ndarray,
    label_id: int,
    group: np.ndarray,
    ring: np.ndarray,
    holds_shadows: np.ndarray,
    continued_rms: float,
) -> bool:
    """Whether, where the prediction still holds the shadows inside region ``label_id``, the
    median lies further below the continuation than the continuation misses the region's
    ring (both relative to the ring's median level)."""
    held = (labels == label_id) & holds_shadows & (continued > 0)
    if not held.any():
        return False
    level = float(np.median(median[ring & group]))
    depth = 1.0 - float(np.median(median[held] / continued[held]))
    return level > 0 and depth > continued_rms / level


def _guide_regions(
    labels: np.ndarray, count: int, judged: dict[int, _Choice], default: str
) -> tuple[GuideRegion, ...]:
    """One record per region of ``labels``: its choice in ``judged`` (not guided, for
    ``default``, where absent), with its centroid and area."""
    if count == 0:
        return ()
    ids = np.arange(1, count + 1)
    areas = ndimage.sum_labels(np.ones(labels.shape), labels, ids)
    centroids = ndimage.center_of_mass(np.ones(labels.shape), labels, ids)
    return tuple(
        GuideRegion(float(row), float(col), int(area), *judged.get(int(i), _Choice(False, default)))
        for i, area, (row, col) in zip(ids, areas, centroids, strict=True)
    )


def _lit_by_prediction(predicted: np.ndarray, fraction: float) -> np.ndarray:
    """Where the prediction is known and above ``fraction`` of its bright level (with
    ``DustDetectionParams.dark_fraction``: on the target, as the detector delimits it in a
    median)."""
    known = usable_guide(predicted)
    if not known.any():
        return known
    level = target_level(predicted[known])
    return known & (predicted > fraction * level)


def _texture_left(
    median: np.ndarray, predicted: np.ndarray, core: np.ndarray, detection: DustDetectionParams
) -> float:
    """Spread of ``median / predicted`` over that of ``median`` at the scales of the shadows
    the detector looks for (a band-pass between half and four times the smallest radius, so
    that pixel noise, the same in both, does not dominate), on the target away from the
    candidates. Both scales are means over the target's pixels alone (normalized convolution),
    so a target thinner than the coarse scale (a crescent 20 px wide) is measured too: a tenth
    of the coarse Gaussian's weight is still about 250 pixels of it."""
    target = _lit_by_prediction(predicted, detection.dark_fraction) & np.isfinite(median)
    target &= ~ndimage.binary_dilation(np.asarray(core), iterations=3)
    if target.sum() < 100:
        return math.nan
    ratio = np.where(target, median / np.where(target, predicted, 1.0), 0.0)
    fine, coarse = 0.5 * detection.min_radius_px, 4.0 * detection.min_radius_px
    images = (target.astype(np.float64), ratio, np.where(target, median, 0.0))
    blurred = in_threads(
        lambda job: ndimage.gaussian_filter(*job),
        [(image, sigma) for image in images for sigma in (fine, coarse)],
    )
    fine_weight, coarse_weight = blurred[:2]
    spreads = []
    for fine_blur, coarse_blur in (blurred[2:4], blurred[4:6]):
        smoothed = fine_blur / np.maximum(fine_weight, 1e-12)
        local = coarse_blur / np.maximum(coarse_weight, 1e-12)
        inside = target & (fine_weight > 0.9) & (coarse_weight > 0.1)
        if not inside.any():
            return math.nan
        spreads.append(robust_sigma(smoothed[inside] / local[inside] - 1.0))
    if not spreads[1] > 0:
        return math.nan
    return spreads[0] / spreads[1]


def _validate(
    core: np.ndarray, median: np.ndarray, frames: Sequence[np.ndarray], shifts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mask = np.asarray(core)
    image = np.asarray(median)
    if image.ndim != 2 or not np.issubdtype(image.dtype, np.number):
        raise ValueError(f"median must be a real (H, W) image, got {image.dtype} {image.shape}.")
    if not np.isfinite(image).all():
        raise ValueError("median contains NaN or inf; replace them (or crop) before the test.")
    if mask.shape != image.shape or mask.dtype != bool:
        raise ValueError(
            f"core must be a bool mask of the median's shape {image.shape}, got "
            f"{mask.dtype} {mask.shape}."
        )
    offsets = checked_offsets(frames, shifts)
    for index, frame in enumerate(frames):
        if np.shape(frame) != image.shape:
            raise ValueError(
                f"frame {index} has shape {np.shape(frame)}; every frame must have the "
                f"median's shape {image.shape}."
            )
    return mask, image.astype(np.float64), offsets


def _overlap_fraction(
    offsets: np.ndarray, centre: tuple[float, float], radius: float, shape: tuple[int, int]
) -> float:
    """Share of the frames that put a shadow of ``radius`` at ``centre`` (sensor pixels) on
    the same part of the scene, averaged over the scene points the prediction there uses.

    The prediction at ``centre`` for frame ``k`` reads the scene at ``centre - d_k``, which
    the frames ``j`` that see it (``centre - d_k + d_j`` inside the frame) estimate; the shadow
    lies on it in those with ``|d_j - d_k| < radius``. Near the frame's edges fewer frames
    see a scene point, over a shorter stretch of the drift, so the share grows there.
    """
    position = np.asarray(centre, dtype=np.float64)
    limits = np.asarray(shape, dtype=np.float64) - 1
    shares = []
    for shift in offsets:
        seen_at = position - shift + offsets
        seen = np.all((seen_at >= 0) & (seen_at <= limits), axis=1)
        distances = np.hypot(*(offsets[seen] - shift).T)
        shares.append(float(np.mean(distances < radius)))
    return float(np.mean(shares))


def _mean_overlap(offsets: np.ndarray, radius: float) -> float:
    """Share of the frames (itself included) within ``radius`` of a frame's scene position,
    averaged over the frames: :func:`_overlap_fraction` away from the frame's edges."""
    distances = np.hypot(
        *(offsets[:, np.newaxis, :] - offsets[np.newaxis, :, :]).transpose(2, 0, 1)
    )
    return float(np.mean(distances < radius))


def _judge(
    labels: np.ndarray,
    label: int,
    box: tuple[slice, slice],
    image: np.ndarray,
    frames: Sequence[np.ndarray],
    offsets: np.ndarray,
    params: MotionTestParams,
    on_target: float,
    registered: bool,
    black_level: float | None = None,
) -> MotionVerdict:
    height, width = image.shape
    rows, cols = np.nonzero(labels[box] == label)
    area = rows.size
    diameter = 2.0 * math.sqrt(area / math.pi)
    centroid_y, centroid_x, inside_y, inside_x = _centroid_and_inside(
        rows, cols, (box[0].start, box[1].start)
    )
    # The longest extent, not the equivalent diameter: a candidate may be a fragment (an arc)
    # of a larger shadow, and the shadow's whole size decides whether it stays in the scene.
    extent = max(
        diameter, float(regionprops((labels[box] == label).astype(np.uint8))[0].feret_diameter_max)
    )
    overlap = (
        _overlap_fraction(offsets, (centroid_y, centroid_x), extent / 2, (height, width))
        if registered
        else math.nan
    )

    def verdict(
        text: str,
        median_deficit: float = math.nan,
        fixed: float = math.nan,
        outline: tuple[float, float] = (math.nan, math.nan),
    ):
        return MotionVerdict(
            centroid_y=centroid_y,
            centroid_x=centroid_x,
            inside_y=inside_y,
            inside_x=inside_x,
            diameter_px=diameter,
            extent_px=extent,
            overlap_fraction=overlap,
            median_deficit=median_deficit,
            fixed_deficit=fixed,
            verdict=text,
            outline_fixed=outline[0],
            outline_fixed_local=outline[1],
        )

    ring_px = max(3, math.ceil(diameter / 2))
    gap_px = 2
    reach = ring_px + gap_px + 1
    window = grown_box(box, reach, (height, width))
    candidate = labels[window] == label
    near = ndimage.binary_dilation(candidate, iterations=gap_px)
    around = ndimage.binary_dilation(candidate, iterations=gap_px + ring_px) & ~near
    local = image[window]
    # The sky beside a limb is no reference for a shadow on the target.
    ring = around & (labels[window] == 0) & (local > on_target)
    median_deficit = _deficit(local, candidate, ring)
    if not registered:
        if math.isnan(median_deficit):
            return verdict(UNDECIDED_SIGNAL, median_deficit)
        return verdict(UNDECIDED_UNREGISTERED, median_deficit)
    if math.isnan(median_deficit) and black_level is None:
        return verdict(UNDECIDED_SIGNAL, median_deficit)
    # The candidate's own pixels are left out of the scene estimate: a shadow fixed on the
    # sensor then cannot darken the prediction, while a scene feature is still seen, through
    # other pixels, by the frames that put it elsewhere on the sensor.
    blocked = np.zeros((height, width), dtype=bool)
    blocked[window] = near
    windowed = _predicted_median(
        frames, offsets, window, (height, width), params, blocked, black_level=black_level
    )
    observed, predicted = windowed.observed, windowed.predicted
    lit_deficit = (
        math.nan
        if windowed.lit_ratio is None
        else _deficit_where_known(windowed.lit_ratio, candidate, around & (labels[window] == 0))
    )

    def in_each_frame(fixed: float = math.nan) -> MotionVerdict:
        # No deficit to compare with in the median (its surroundings lie off the target, or
        # the eye's candidate is no darker than them there): each frame that lights the
        # candidate still shows whether the sensor dims it.
        if math.isnan(lit_deficit):
            return verdict(UNDECIDED_SIGNAL, median_deficit, fixed)
        if lit_deficit >= params.min_ratio_depth:
            return verdict(SENSOR, median_deficit, lit_deficit)
        return verdict(SCENE, median_deficit, lit_deficit)

    if math.isnan(median_deficit):
        return in_each_frame()
    ratio = DustFreePrediction(observed=observed, predicted=predicted).ratio
    known = np.isfinite(ratio)
    if known[candidate].mean() < 0.5 or known[ring].mean() < 0.5:
        if not median_deficit > 0:
            return in_each_frame()
        if known[ring].mean() >= 0.5 and _moved_on_every_side(
            local, ratio, candidate, known, ring & known, params
        ):
            return verdict(SCENE, median_deficit, _deficit(ratio, candidate & known, ring & known))
        too_large = overlap > params.max_overlap_fraction
        undecided = UNDECIDED_SIZE if too_large else UNDECIDED_COVERAGE
        if not params.outline_test:
            return verdict(undecided, median_deficit)
        free = labels[window] == 0
        # A dark candidate lies below the target's level itself; the sky does, beside it.
        off_target = (local <= on_target) & free
        outline = _outline_fixed_shares(
            frames,
            offsets,
            window,
            candidate,
            ring,
            ~ndimage.binary_dilation(off_target, iterations=_OUTLINE_WIDTH_PX),
            free,
            0.0 if black_level is None else black_level,
            median_deficit,
        )
        shares = (outline.whole, outline.whole_local)
        if all(share >= _OUTLINE_SENSOR_SHARE for share in shares):
            if median_deficit < params.min_ratio_depth:
                return verdict(SHALLOW, median_deficit, outline=shares)
            return verdict(SENSOR, median_deficit, outline=shares)
        moved = (*shares, outline.of_shadow, outline.of_shadow_local)
        if all(share <= _OUTLINE_SCENE_SHARE for share in moved):
            # Either estimate showing a part that stayed keeps it: dropping it drops the dust.
            if max(outline.most, outline.most_local) >= _OUTLINE_MIXED_SHARE:
                return verdict(UNDECIDED_MIXED_OUTLINE, median_deficit, outline=shares)
            return verdict(SCENE, median_deficit, outline=shares)
        return verdict(undecided, median_deficit, outline=shares)
    fixed = _deficit(ratio, candidate & known, ring & known)
    # Correcting a shadow shallower than the flat's own accuracy adds more error than it
    # removes; a donut filled to its hole can look shallow in the median, hence both.
    deepest = median_deficit if math.isnan(fixed) else max(median_deficit, fixed)
    if deepest < params.min_ratio_depth:
        return verdict(SHALLOW, median_deficit, fixed)
    if not median_deficit > 0:
        return in_each_frame(fixed)
    # Dust dims each frame that lights it as much as it dims the median. A scene feature
    # that the prediction misses by a fraction of its contrast (seeing, evolving texture)
    # leaves a residue in the ratio of medians that each frame, set against its own
    # prediction, does not show.
    in_each = not _not_in_each_frame(lit_deficit, fixed, params.min_lit_fraction)
    if fixed >= params.min_deficit_ratio * median_deficit:
        return verdict(SENSOR if in_each else SCENE, median_deficit, fixed)
    # Shallower in the ratio than in the median, as a feature's residue is, but shown by
    # each frame, as dust on a dark part of the scene is (a planet's belt smeared by the
    # drift): the test cannot tell which. Only where the target moved enough for the
    # candidate's size: otherwise most frames predict its pixels from frames that put the
    # same part of the scene there, and neither deficit is measured apart from it.
    if (
        in_each
        and overlap <= params.max_overlap_fraction
        and not math.isnan(lit_deficit)
        and fixed >= params.min_ratio_depth
        and fixed >= _CONFLICT_FRACTION * params.min_deficit_ratio * median_deficit
    ):
        return verdict(UNDECIDED_DARK_SCENE, median_deficit, fixed)
    return verdict(SCENE, median_deficit, fixed)


_CONFLICT_FRACTION = 0.5
"""A candidate shown by each frame but shallower in the ratio than ``min_deficit_ratio`` of
its deficit in the median is left undecided down to this fraction of that share; below, the
scene's own deficit dwarfs it (a deep feature's residue) and it is rejected."""


_MIN_SIDE_PX = 20
"""Known pixels a side of a partly known candidate needs for its deficits to be measured."""


_OUTLINE_SENSOR_SHARE = 2.0 / 3.0
"""A candidate at least this share of whose outline stayed on the sensor is dust."""
_OUTLINE_SCENE_SHARE = 1.0 / 3.0
"""A candidate at most this share of whose outline stayed on the sensor moved with the scene."""
_OUTLINE_WIDTH_PX = 3
"""The outline is read this far inside and outside the candidate's edge, pixels; the target's
own edge (a limb) is kept this far away."""
_OUTLINE_SMOOTHING_PX = 1.5
"""Sigma of the Gaussian that softens the candidate's mask into the template of its edge."""
_OUTLINE_MAX_SHIFT_PX = 3.0
"""Only frames within this distance of the median shift are read: the response of a pixel to
the shift is linear over a fraction of an edge's width, and the seeing's shake is what is
measured, not a drift."""
_OUTLINE_MIN_FRAMES = 8
"""Fewest frames the outline is read from."""
_OUTLINE_MIN_SHAKE_PX = 0.1
"""Least rms of the shifts along their narrower axis for the outline to be read: below, the
registration's own error (hundredths of a pixel) is a good part of the shake."""
_OUTLINE_MIN_PX = 16
"""Fewest pixels of outline, and of surroundings, a measurement needs."""
_OUTLINE_MIXED_SHARE = 0.5
"""A candidate whose outline moved as a whole but one part of which stayed on the sensor by at
least this share is left undecided: a shadow merged with a sunspot may fill only part of a
part of the outline."""
_OUTLINE_PARTS_ACROSS = 3
"""The outline's parts are squares of the candidate's equivalent diameter over this, whose
shares are also measured: a candidate that merges a shadow with a scene feature shows a fixed
part on a moving outline."""
_OUTLINE_PART_WIDTHS = 3
"""...and at least this many outline widths across (``_OUTLINE_WIDTH_PX``)."""
_OUTLINE_MIN_RELIABILITY = 0.75
"""Least share of the variance of the surroundings' shifts that is not their measurement
noise: noisy shifts flatten each pixel's response to them, which makes a scene feature look
fixed."""


class OutlineShares(NamedTuple):
    """What :func:`_outline_fixed_shares` measured; NaN where not measured."""

    whole: float = math.nan
    whole_local: float = math.nan
    most: float = math.nan
    most_local: float = math.nan
    of_shadow: float = math.nan
    of_shadow_local: float = math.nan


def _outline_fixed_shares(
    frames: Sequence[np.ndarray],
    offsets: np.ndarray,
    window: tuple[slice, slice],
    candidate: np.ndarray,
    ring: np.ndarray,
    on_target: np.ndarray,
    free: np.ndarray,
    black_level: float,
    deficit: float,
) -> OutlineShares:
    """Share of a candidate's outline that stays on the sensor while the scene shakes.

    Let ``L_k = log(frame_k - black_level)`` in the window and ``c_k`` each frame's shift
    about the mean. For small shifts a scene that moves by ``c_k`` changes each pixel by
    ``-c_k . grad S``, while what is fixed on the sensor does not change, so the slope ``b``
    of each pixel's ``L_k`` regressed on ``c_k`` is ``-grad S`` and ``b + grad mean(L)`` is
    the gradient of the fixed part alone. Projected on the template of the candidate's edge
    (its mask softened by a Gaussian), that fixed part's contrast over the mean image's is
    the share returned: 1 when the whole edge is fixed (dust), 0 when it moved (a sunspot).
    The projection is taken over the band of ``_OUTLINE_WIDTH_PX`` on either side of the
    candidate's edge, on the target.

    The shifts are taken twice: those of the whole frame (``offsets``), and those of the
    candidate's surroundings, measured from ``ring`` by linearized (Lucas-Kanade)
    registration, which follow the local bending of differential seeing that the whole
    frame's shift misses. A shift that does not follow the scene at the candidate, or is
    measured with noise, flattens the slopes and raises the share of a scene feature, never
    that of dust, so a decision needs both shares on the same side.

    Texture across the edge moves, so it adds nothing to the fixed part, but the mean image's
    edge holds it: dust on a texture darker under it than around it reads a share below 1
    (5 % deep dust on a 12 % rms texture read 0.2 on one seed). So the fixed part is also
    set against the edge of a shadow as deep as the candidate's deficit in the median,
    ``log(1 - deficit * template)``, which texture does not touch.

    Parameters
    ----------
    frames : sequence of np.ndarray
        (H, W) frames on the sensor's grid, as for :func:`sensor_fixed_test`.
    offsets : np.ndarray
        (len(frames), 2) float64, each frame's shift (dy, dx) of the scene, pixels.
    window : tuple of slice
        The candidate's window in the frames.
    candidate, ring : np.ndarray
        (h, w) bool in the window: the candidate, and its surroundings on the target.
    on_target : np.ndarray
        (h, w) bool in the window: pixels far enough from the target's edge to read the
        outline on.
    free : np.ndarray
        (h, w) bool in the window: pixels of no candidate.
    black_level : float
        The frames' pedestal, ADU.
    deficit : float
        The candidate's deficit in the median, in (0, 1).

    Returns
    -------
    OutlineShares
        The share over the whole outline and the largest over its parts (squares of a third
        of the candidate's equivalent diameter, at least ``_OUTLINE_PART_WIDTHS`` outline
        widths; only the parts holding at least half their even share of the edge's
        contrast), and the fixed part over the edge of a shadow of ``deficit``, each
        against the whole frame's shifts and against the surroundings'; NaN where not
        measurable: fewer than ``_OUTLINE_MIN_FRAMES`` frames within
        ``_OUTLINE_MAX_SHIFT_PX`` of the median shift, shifts of less than
        ``_OUTLINE_MIN_SHAKE_PX`` rms along an axis, too few lit pixels of outline or of
        surroundings, a mean image that shows no deficit along the outline, or (for the
        surroundings') shifts of the surroundings less than ``_OUTLINE_MIN_RELIABILITY``
        signal.
    """
    unmeasured = OutlineShares()
    centre = np.median(offsets, axis=0)
    near = np.flatnonzero(np.hypot(*(offsets - centre).T) <= _OUTLINE_MAX_SHIFT_PX)
    if near.size < _OUTLINE_MIN_FRAMES:
        return unmeasured
    shifts = offsets[near] - offsets[near].mean(axis=0)
    if not _shaken(shifts):
        return unmeasured
    light = np.stack([np.asarray(frames[i][window], dtype=np.float32) for i in near])
    light -= np.float32(black_level)
    always_lit = np.all(light > 0, axis=0)
    # A gradient reads each pixel's neighbours: all of them must be lit in every frame.
    lit = ndimage.binary_erosion(always_lit, structure=np.ones((3, 3), dtype=bool))
    band = ndimage.binary_dilation(candidate, iterations=_OUTLINE_WIDTH_PX) & ~(
        ndimage.binary_erosion(candidate, iterations=_OUTLINE_WIDTH_PX)
    )
    outline = band & (free | candidate) & on_target & lit
    surroundings = ring & lit
    if min(np.count_nonzero(outline), np.count_nonzero(surroundings)) < _OUTLINE_MIN_PX:
        return unmeasured
    logs = np.log(np.where(always_lit, light, np.float32(1.0)), out=light)
    # Each frame's own transparency and exposure scale it as a whole.
    logs -= np.median(logs[:, surroundings], axis=1)[:, np.newaxis, np.newaxis]
    mean = logs.mean(axis=0)
    residuals = np.subtract(logs, mean, out=logs)
    gradient = np.stack(np.gradient(mean))
    soft = ndimage.gaussian_filter(candidate.astype(np.float32), _OUTLINE_SMOOTHING_PX)
    template = np.stack(np.gradient(soft))
    shadow = float(
        np.sum(np.stack(np.gradient(np.log1p(-deficit * soft)))[:, outline] * template[:, outline])
    )
    seen_at = np.sum(gradient[:, outline] * template[:, outline], axis=0)
    seen = float(seen_at.sum())
    # The template rises into the candidate; the light of a dark candidate falls into it.
    if not seen < 0:
        return unmeasured
    on_outline = residuals[:, outline]
    rows, cols = np.nonzero(outline)
    side = max(
        _OUTLINE_PART_WIDTHS * _OUTLINE_WIDTH_PX,
        round(2.0 * math.sqrt(np.count_nonzero(candidate) / math.pi) / _OUTLINE_PARTS_ACROSS),
    )
    _, part = np.unique((rows // side) * outline.shape[1] + cols // side, return_inverse=True)
    seen_in = np.bincount(part, weights=seen_at)
    # A part holding little of the edge's contrast says little: its share is noise.
    weighed = seen_in <= seen / (2 * seen_in.size)

    def fixed_shares(frame_shifts: np.ndarray | None) -> tuple[float, float, float]:
        if frame_shifts is None:
            return math.nan, math.nan, math.nan
        centred = frame_shifts - frame_shifts.mean(axis=0)
        slopes = np.linalg.solve(centred.T @ centred, centred.T @ on_outline)
        fixed_at = np.sum((slopes + gradient[:, outline]) * template[:, outline], axis=0)
        fixed_in = np.bincount(part, weights=fixed_at, minlength=seen_in.size)
        fixed = float(fixed_at.sum())
        return (
            fixed / seen,
            float(np.max(fixed_in[weighed] / seen_in[weighed])),
            fixed / shadow if shadow < 0 else math.nan,
        )

    whole, most, of_shadow = fixed_shares(shifts)
    whole_local, most_local, of_shadow_local = fixed_shares(
        _shifts_of(residuals[:, surroundings], gradient[:, surroundings])
    )
    return OutlineShares(whole, whole_local, most, most_local, of_shadow, of_shadow_local)


def _shaken(shifts: np.ndarray) -> bool:
    """Whether (n, 2) centred shifts spread by at least ``_OUTLINE_MIN_SHAKE_PX`` rms along
    every direction."""
    return bool(np.linalg.eigvalsh(shifts.T @ shifts / len(shifts))[0] >= _OUTLINE_MIN_SHAKE_PX**2)


def _shifts_of(residuals: np.ndarray, gradient: np.ndarray) -> np.ndarray | None:
    """Each frame's shift of a patch of the scene, by linearized (Lucas-Kanade) registration.

    Parameters
    ----------
    residuals : np.ndarray
        (n_frames, n_px) each frame's log light minus the mean over frames.
    gradient : np.ndarray
        (2, n_px) the gradient (d/dy, d/dx) of that mean.

    Returns
    -------
    np.ndarray or None
        (n_frames, 2) shifts (dy, dx), pixels; None when the patch's texture does not fix
        them: a singular system, shifts that do not spread by ``_OUTLINE_MIN_SHAKE_PX``, or
        shifts whose measurement noise is more than ``1 - _OUTLINE_MIN_RELIABILITY`` of
        their variance.
    """
    normal = gradient @ gradient.T
    if not np.linalg.det(normal) > 1e-12 * np.trace(normal) ** 2:
        return None
    shifts = -np.linalg.solve(normal, gradient @ residuals.T).T
    centred = shifts - shifts.mean(axis=0)
    if not _shaken(centred):
        return None
    left = residuals + shifts @ gradient
    noise = np.linalg.inv(normal) * float(np.mean(left**2))
    spread = centred.T @ centred / len(centred)
    if np.trace(noise) > (1.0 - _OUTLINE_MIN_RELIABILITY) * np.trace(spread):
        return None
    return shifts


def _moved_on_every_side(
    image: np.ndarray,
    ratio: np.ndarray,
    candidate: np.ndarray,
    known: np.ndarray,
    ring: np.ndarray,
    params: MotionTestParams,
) -> bool:
    """Whether the known part of a candidate shows, on every side, that it moved with the scene.

    A candidate almost as long as the drift is known in the prediction only along its rim:
    the rest of its part of the scene no frame sees through other pixels. There a scene
    feature (a crater, a filament or a large sunspot smeared along the drift) has its deficit
    in the median and none in the ratio. A shadow fixed on the sensor keeps its deficit in the
    ratio, except where its outline missed part of its penumbra, which then darkens its own
    scene estimate on that side. So the known part is split into the quadrants around the
    candidate's centroid; each with at least ``_MIN_SIDE_PX`` pixels and a deficit in the
    median of at least ``params.min_ratio_depth`` (measured on the same pixels, both against
    the plane through ``ring``) is a side. The candidate moved when there are at least two
    sides and on every one the deficit in the ratio is below half of
    ``params.min_deficit_ratio`` times that in the median.

    Parameters
    ----------
    image, ratio : np.ndarray
        (h, w) median and ratio of the median to its dust-free prediction over the window.
    candidate, known : np.ndarray
        (h, w) bool, the candidate's pixels and the pixels where the ratio is known.
    ring : np.ndarray
        (h, w) bool, the candidate's surroundings where the ratio is known.
    params : MotionTestParams
    """
    all_rows, all_cols = np.nonzero(candidate)
    centre_y, centre_x = all_rows.mean(), all_cols.mean()
    rows, cols = np.nonzero(candidate & known)
    if rows.size < 2 * _MIN_SIDE_PX:
        return False
    quadrant = (rows >= centre_y).astype(int) * 2 + (cols >= centre_x)
    sides = 0
    for index in range(4):
        on_side = quadrant == index
        if np.count_nonzero(on_side) < _MIN_SIDE_PX:
            continue
        side = np.zeros_like(candidate)
        side[rows[on_side], cols[on_side]] = True
        in_median = _deficit(image, side, ring)
        if not in_median >= params.min_ratio_depth:
            continue
        in_ratio = _deficit(ratio, side, ring)
        if not in_ratio < 0.5 * params.min_deficit_ratio * in_median:
            return False
        sides += 1
    return sides >= 2


def _deficit(values: np.ndarray, inside: np.ndarray, ring: np.ndarray) -> float:
    """``1 - median(values / plane)`` over ``inside``, with ``plane`` the least-squares plane
    through the ``ring`` values; NaN when the ring cannot carry a plane or it is not positive.

    A plane rather than the ring's median: near the limb, limb darkening and vignetting tilt
    the surroundings by as much as a faint shadow is deep.
    """
    ring_rows, ring_cols = np.nonzero(ring)
    if not inside.any() or ring_rows.size < 3:
        return math.nan
    design = np.column_stack([np.ones(ring_rows.size), ring_rows, ring_cols])
    coefficients, _, rank, _ = np.linalg.lstsq(design, values[ring], rcond=None)
    if rank < 3:
        return math.nan
    rows, cols = np.nonzero(inside)
    plane = coefficients[0] + coefficients[1] * rows + coefficients[2] * cols
    if not np.all(plane > 0):
        return math.nan
    return 1.0 - float(np.median(values[inside] / plane))


@dataclass(frozen=True)
class RatioShadow:
    """A shadow found in the ratio of the median to its dust-free prediction.

    Attributes
    ----------
    centroid_y, centroid_x : float
        Centroid, pixels.
    inside_y, inside_x : int
        The shadow's pixel nearest its centroid: where to look it up in a mask, since the
        centroid of a crescent lies outside it.
    diameter_px : float
        Equivalent diameter, pixels.
    median_deficit, fixed_deficit : float
        ``1 - median(shadow / plane)`` in the median of the frames used (the ``observed``
        median of :func:`predict_dust_free`) and in the ratio, ``plane`` fitted to the
        surroundings.
    significance : float
        ``fixed_deficit`` over the ratio's fluctuations at the shadow's scale around it
        (``MotionTestParams.min_ratio_significance``); NaN where not measured (too few lit
        pixels around it, or a shadow of the deep search).
    lit_deficit : float
        ``1 - median(shadow / plane)`` in the ratio seen frame by frame
        (:attr:`DustFreePrediction.lit_ratio`, ``MotionTestParams.min_lit_fraction``); NaN
        where not measured (where every frame of the medians lights the shadow, the ratio
        needs no such check).
    """

    centroid_y: float
    centroid_x: float
    inside_y: int
    inside_x: int
    diameter_px: float
    median_deficit: float
    fixed_deficit: float
    significance: float = math.nan
    lit_deficit: float = math.nan

    def lies_in(self, region: np.ndarray) -> bool:
        """Whether the shadow lies in ``region`` ((H, W) bool) at its pixel nearest its
        centroid."""
        return bool(region[self.inside_y, self.inside_x])


def find_shadows_in_ratio(
    median: np.ndarray,
    predicted: np.ndarray,
    *,
    exclude: np.ndarray | None = None,
    detection: DustDetectionParams = _DEFAULT_DETECTION,
    min_depth: float = MotionTestParams().min_ratio_depth,
    min_fixed_fraction: float | None = None,
    min_deep_depth: float = 1.0,
    min_limb_depth: float = 1.0,
    min_significance: float = 0.0,
    lit_ratio: np.ndarray | None = None,
    lit_share: np.ndarray | None = None,
    min_lit_fraction: float = 0.0,
) -> tuple[np.ndarray, tuple[RatioShadow, ...]]:
    """Find dust shadows in ``median / predicted``, where the scene's texture has cancelled.

    The ratio keeps what is fixed on the sensor, so shadows too faint to stand out of the
    texture left in the median (large, 1-3 % deep out-of-focus donuts) stand out of the
    noise of the ratio. :func:`~astro_assets.science.flatfield.dust.detect_dust` runs on the
    ratio where the prediction is known and on the target, each shape in the window its
    strongest filter sets (``whole_shapes=False``: :func:`separate_sensor_fixed` draws these
    outlines again without the shadows, within ``max_outline_growth``). A shadow found there is
    kept when
    its surroundings inside the frame (half a diameter and 3 px around it) lie where the
    prediction is known and on the target, and when it is at least ``min_depth`` deep in the
    ratio against a plane fitted to those surroundings.

    Parameters
    ----------
    median : np.ndarray
        (H, W) median of the frames, linear data in ADU: the ``observed`` median of
        :func:`predict_dust_free`, over the same frames as the prediction at every pixel (NaN
        allowed where the prediction is unknown).
    predicted : np.ndarray
        (H, W) ``predicted`` median of :func:`predict_dust_free` (NaN where unknown).
    exclude : np.ndarray, optional
        (H, W) bool, pixels where no shadow may be added (for example candidates found to move
        with the scene), unless ``min_fixed_fraction`` is given.
    detection : DustDetectionParams
        Parameters of the detector; ``dark_fraction`` of the prediction's bright level
        (``levels.target_level``) delimits the target.
    min_depth : float
        Shadows whose deficit in the ratio is below this are not kept
        (``MotionTestParams.min_ratio_depth``).
    min_fixed_fraction : float, optional
        A shadow reaching into ``exclude`` is kept when its deficit in the ratio is at least
        this fraction of its deficit in the median, as the motion test keeps a candidate
        (``MotionTestParams.min_deficit_ratio``): a dust shadow on a scene feature's remnant
        shows in both, the remnant's own edges only in the median. None keeps none.
    min_deep_depth : float
        Shadows at least this deep in the ratio are also kept where the detector cannot look
        (``MotionTestParams.min_deep_depth``): wherever the prediction is above
        ``_DEEP_SEARCH_FLOOR`` of its bright level, across a limb and over ``exclude``
        (no scene feature leaves half of its contrast in the ratio). 1 turns this off.
    min_limb_depth : float
        Shadows at least this deep that hold a disc of half ``detection.min_radius_px`` at
        that depth are kept there too, outside ``exclude`` (``MotionTestParams.min_limb_depth``).
        1 turns this off.
    min_significance : float
        Shadows of the detector are kept only when their deficit in the ratio is at least this
        many times the ratio's fluctuations at their scale around them
        (``MotionTestParams.min_ratio_significance``); where too few lit pixels surround a
        shadow to tell, it is kept. 0 keeps every one.
    lit_ratio, lit_share : np.ndarray, optional
        (H, W) :attr:`DustFreePrediction.lit_ratio` and :attr:`DustFreePrediction.lit_share`
        of the prediction (NaN where unknown).
    min_lit_fraction : float
        With ``lit_ratio`` and ``lit_share``, a shadow (of the detector or of the deep
        searches) over which the medians mix frames off the target (``lit_share`` below
        ``_MIXED_SHARE`` on half of its pixels) is kept only when its deficit in
        ``lit_ratio`` is at least this fraction of its deficit in the ratio
        (``MotionTestParams.min_lit_fraction``); where ``lit_ratio`` is unknown over too
        much of the shadow or its surroundings to tell, it is kept. Elsewhere the ratio
        holds, while ``lit_ratio`` keeps, in each frame, the part of a shadow larger than the
        drift that the scene estimate holds. 0 keeps every one.

    Returns
    -------
    found : np.ndarray
        (H, W) bool, the shadows kept.
    shadows : tuple of RatioShadow
        One per shadow kept.

    Raises
    ------
    ValueError
        For images of different shapes, a median with NaN or inf where the prediction is
        known, a bad ``exclude`` mask or ``min_depth`` outside [0, 1).
    """
    image = np.asarray(median, dtype=np.float64)
    model = np.asarray(predicted, dtype=np.float64)
    if image.ndim != 2 or model.shape != image.shape:
        raise ValueError(
            f"median and predicted must be (H, W) images of one shape, got {image.shape} and "
            f"{model.shape}."
        )
    if not np.isfinite(image[np.isfinite(model)]).all():
        raise ValueError(
            "median contains NaN or inf where the prediction is known; replace them (or crop) "
            "before the search."
        )
    if not 0.0 <= min_depth < 1.0:
        raise ValueError(f"min_depth must be in [0, 1), got {min_depth}.")
    if min_fixed_fraction is not None and not 0.0 < min_fixed_fraction < 1.0:
        raise ValueError(f"min_fixed_fraction must be in (0, 1), got {min_fixed_fraction}.")
    if not 0.0 < min_deep_depth <= 1.0:
        raise ValueError(f"min_deep_depth must be in (0, 1], got {min_deep_depth}.")
    if not 0.0 < min_limb_depth <= 1.0:
        raise ValueError(f"min_limb_depth must be in (0, 1], got {min_limb_depth}.")
    if not min_significance >= 0.0:
        raise ValueError(f"min_significance must be at least 0, got {min_significance}.")
    if not 0.0 <= min_lit_fraction < 1.0:
        raise ValueError(f"min_lit_fraction must be in [0, 1), got {min_lit_fraction}.")
    per_frame = None
    if lit_ratio is not None and lit_share is not None:
        per_frame = (np.asarray(lit_ratio, np.float64), np.asarray(lit_share, np.float64))
        if any(values.shape != image.shape for values in per_frame):
            raise ValueError(
                f"lit_ratio and lit_share must be (H, W) images of shape {image.shape}, got "
                f"{per_frame[0].shape} and {per_frame[1].shape}."
            )
    blocked = np.zeros(image.shape, dtype=bool) if exclude is None else np.asarray(exclude)
    if blocked.shape != image.shape or blocked.dtype != bool:
        raise ValueError(
            f"exclude must be a bool mask of shape {image.shape}, got {blocked.dtype} "
            f"{blocked.shape}."
        )
    empty = np.zeros(image.shape, dtype=bool)
    reliable = _lit_by_prediction(model, detection.dark_fraction) & np.isfinite(image)
    if reliable.sum() < 0.01 * reliable.size or min(image.shape) < 8:
        return empty, ()
    deep, deep_shadows = _deep_shadows(
        image,
        model,
        min_deep_depth,
        detection,
        min_wide_depth=min_limb_depth,
        exclude=blocked,
        lit=per_frame,
        min_lit_fraction=min_lit_fraction,
    )
    ratio = np.where(reliable, image / np.where(reliable, model, 1.0), 0.0)
    image = np.where(reliable, image, 0.0)
    found = detect_dust(
        ratio,
        detection,
        valid=reliable,
        whole_shapes=False,
        split_neighbours=False,
        clip_noise=False,
    ).core
    labels, count = ndimage.label(found, structure=np.ones((3, 3), dtype=bool))
    # A neighbouring shadow is no fluctuation of the prediction.
    quiet = reliable & ~ndimage.binary_dilation(found, iterations=_SIGNIFICANCE_GAP_PX)
    kept = np.zeros(count + 1, dtype=bool)
    shadows = []
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        area = int(np.count_nonzero(labels[box] == label))
        diameter = 2.0 * math.sqrt(area / math.pi)
        reach = math.ceil(diameter / 2) + 3
        window = grown_box(box, reach, image.shape)
        candidate = labels[window] == label
        surroundings = ndimage.binary_dilation(candidate, iterations=reach)
        if not reliable[window][surroundings].all():
            continue
        in_excluded = bool(blocked[window][candidate].any())
        if in_excluded and min_fixed_fraction is None:
            continue
        ring = surroundings & ~ndimage.binary_dilation(candidate, iterations=2)
        fixed_deficit = _deficit(ratio[window], candidate, ring)
        if not fixed_deficit >= min_depth:
            continue
        median_deficit = _deficit(image[window], candidate, ring)
        if in_excluded and not fixed_deficit >= min_fixed_fraction * median_deficit:
            continue
        significance = _significance_at_scale(
            ratio, quiet, labels, label, box, fixed_deficit, diameter / 2
        )
        if significance < min_significance:
            continue
        lit_deficit = _lit_deficit(per_frame, window, candidate, ring)
        if _not_in_each_frame(lit_deficit, fixed_deficit, min_lit_fraction):
            continue
        rows, cols = np.nonzero(candidate)
        kept[label] = True
        shadows.append(
            RatioShadow(
                *_centroid_and_inside(rows, cols, (window[0].start, window[1].start)),
                diameter_px=diameter,
                median_deficit=median_deficit,
                fixed_deficit=fixed_deficit,
                significance=significance,
                lit_deficit=lit_deficit,
            )
        )
    found = kept[labels]
    new_deep = deep & ~regions_touching(deep, found)
    for shadow in deep_shadows:
        if shadow.lies_in(new_deep):
            shadows.append(shadow)
    return found | new_deep, tuple(shadows)


_MIN_LIT_KNOWN = 0.5
"""Share of a shadow's pixels, and of its surroundings', where the ratio seen frame by frame
must be known for its deficit there to be measured."""


def _not_in_each_frame(lit_deficit: float, fixed_deficit: float, min_fraction: float) -> bool:
    """Whether a shadow's deficit seen frame by frame is known and below ``min_fraction`` of
    its deficit in the ratio (never with ``min_fraction`` 0)."""
    return min_fraction > 0.0 and lit_deficit < min_fraction * fixed_deficit


_MIXED_SHARE = 0.9
"""Below this share of the frames lighting a pixel, its medians mix frames on the target and
off it, and a shadow there is checked in the ratio seen frame by frame."""


def _lit_deficit(
    lit: tuple[np.ndarray, np.ndarray] | None,
    window: tuple[slice, slice],
    shadow: np.ndarray,
    ring: np.ndarray,
) -> float:
    """The deficit of ``shadow`` against ``ring`` (both bool over ``window``) in the ratio
    seen frame by frame, ``lit`` holding it and the share of the frames lighting each pixel
    (``DustFreePrediction.lit_ratio`` and ``lit_share``); against 1 where the ring cannot
    be measured. NaN when ``lit`` is None, when the share is at least ``_MIXED_SHARE`` over
    half of the shadow, or when the ratio is known over less than ``_MIN_LIT_KNOWN`` of it."""
    if lit is None:
        return math.nan
    ratio, share = lit
    if not np.nanmedian(share[window][shadow]) < _MIXED_SHARE:
        return math.nan
    deficit = _deficit_where_known(ratio[window], shadow, ring)
    if not math.isnan(deficit):
        return deficit
    # No surroundings to fit a plane to (a corner the limb crossed): a dust-free frame's light
    # is its prediction's, so the ratio stands at 1 beside a shadow.
    values = ratio[window][shadow]
    known = np.isfinite(values)
    if known.mean() < _MIN_LIT_KNOWN:
        return math.nan
    return 1.0 - float(np.median(values[known]))


def _deficit_where_known(values: np.ndarray, shadow: np.ndarray, ring: np.ndarray) -> float:
    """:func:`_deficit` over the pixels where ``values`` is finite; NaN where it is finite
    over less than ``_MIN_LIT_KNOWN`` of ``shadow`` or of ``ring``."""
    if not (shadow.any() and ring.any()):
        return math.nan
    known = np.isfinite(values)
    if known[shadow].mean() < _MIN_LIT_KNOWN or known[ring].mean() < _MIN_LIT_KNOWN:
        return math.nan
    return _deficit(values, shadow & known, ring & known)


_SIGNIFICANCE_GAP_PX = 3
"""Pixels within this distance of any shadow of the ratio are left out of the fluctuations a
shadow is judged against."""

_MIN_SIGNIFICANCE_RING_PX = 24
"""Fewest lit pixels around a shadow to measure the ratio's fluctuations on."""


def _significance_at_scale(
    ratio: np.ndarray,
    usable: np.ndarray,
    labels: np.ndarray,
    label: int,
    box: tuple[slice, slice],
    depth: float,
    radius: float,
) -> float:
    """``depth`` over the rms of the ratio's fluctuations at the scale ``radius`` around the
    shadow ``labels == label`` (bounding ``box``): the ratio averaged over a box of the
    radius on ``usable`` pixels, about the least-squares plane through it, on the ring from
    ``radius / 2`` to ``2.5 * radius`` beyond the outline (2 px more on both sides). A plain
    rms, not a robust one: a residue covering part of the ring is what it must weigh. NaN
    when the ring holds too few usable pixels, inf when the ring is flat."""
    size = max(3, round(radius))
    inner = 0.5 * radius + 2.0
    outer = 2.5 * radius + 2.0
    margin = math.ceil(outer) + size
    window = grown_box(box, margin, ratio.shape)
    shadow = labels[window] == label
    valid = usable[window] & ~shadow
    weight = ndimage.uniform_filter(valid.astype(np.float64), size, mode="constant")
    total = ndimage.uniform_filter(np.where(valid, ratio[window], 0.0), size, mode="constant")
    distance = ndimage.distance_transform_edt(~shadow)
    ring = valid & (weight >= 0.5) & (distance > inner) & (distance <= outer)
    rows, cols = np.nonzero(ring)
    if rows.size < _MIN_SIGNIFICANCE_RING_PX:
        return math.nan
    smoothed = total[ring] / weight[ring]
    design = np.column_stack([np.ones(rows.size), rows, cols])
    coefficients, *_ = np.linalg.lstsq(design, smoothed, rcond=None)
    spread = float(np.sqrt(np.mean((smoothed - design @ coefficients) ** 2)))
    if not spread > 0:
        return math.inf
    return depth / spread


def _deep_shadows(
    image: np.ndarray,
    model: np.ndarray,
    min_depth: float,
    detection: DustDetectionParams,
    *,
    min_wide_depth: float,
    exclude: np.ndarray,
    lit: tuple[np.ndarray, np.ndarray] | None = None,
    min_lit_fraction: float = 0.0,
) -> tuple[np.ndarray, list[RatioShadow]]:
    """Shadows in ``image / model`` wherever the prediction is above ``_DEEP_SEARCH_FLOOR`` of
    its bright level: at least ``min_depth`` deep, or at least ``min_wide_depth`` deep over
    a part that holds a disc of half ``detection.min_radius_px`` and touches no ``exclude``
    pixel. Each is drawn out to ``_DEEP_OUTLINE_LEVEL`` of its depth and at most its radius
    beyond that part; their deficits are measured against the surroundings in that band (the
    target's side of a limb); a shadow that lies less than ``_DEEP_MIN_CONTRAST`` of its depth
    below the plane through its surroundings is left out, as is one whose deficit in the ratio
    seen frame by frame (``lit``, as for :func:`_lit_deficit`) is below ``min_lit_fraction``
    of that deficit."""
    empty = np.zeros(image.shape, dtype=bool)
    if min_depth >= 1.0 and min_wide_depth >= 1.0:
        return empty, []
    min_area = detection.min_area_px
    band = _lit_by_prediction(model, _DEEP_SEARCH_FLOOR) & np.isfinite(image)
    ratio = np.where(band, image / np.where(band, model, 1.0), 1.0)
    deep = band & (ratio < 1.0 - min_depth)
    wide = empty
    if min_wide_depth < 1.0:
        radius = 0.5 * detection.min_radius_px
        reach = math.floor(radius)
        rows, cols = np.mgrid[-reach : reach + 1, -reach : reach + 1]
        disc = np.hypot(rows, cols) <= radius
        wide = ndimage.binary_opening(band & (ratio < 1.0 - min_wide_depth), structure=disc)
        wide &= ~regions_touching(wide, exclude)
    seeds, _ = ndimage.label(deep | wide)
    found = empty.copy()
    shadows = []
    for label, box in enumerate(ndimage.find_objects(seeds), start=1):
        seed_area = np.count_nonzero(seeds[box] == label)
        reach = max(3, round(math.sqrt(seed_area / math.pi)))
        margin = 2 * reach + 3
        window = grown_box(box, margin, image.shape)
        seed = seeds[window] == label
        depth = 1.0 - float(np.median(ratio[window][seed]))
        near = ndimage.binary_dilation(seed, iterations=reach)
        outline = near & (ratio[window] < 1.0 - _DEEP_OUTLINE_LEVEL * depth)
        shadow = regions_touching(outline, seed)
        area = np.count_nonzero(shadow)
        if area < min_area:
            continue
        beyond = ndimage.binary_dilation(shadow, iterations=reach + 2)
        ring = beyond & ~ndimage.binary_dilation(shadow, iterations=2) & band[window]
        fixed_deficit = _deficit(ratio[window], shadow, ring)
        # Hardly deeper than its surroundings, it is an offset of the prediction (a response
        # that misses a steeply vignetted corner), not a shadow; NaN: no surroundings to tell.
        if fixed_deficit < _DEEP_MIN_CONTRAST * depth:
            continue
        lit_deficit = _lit_deficit(lit, window, shadow, ring)
        # Without surroundings (a corner the limb crossed), its depth is what each frame
        # must show.
        shown = depth if math.isnan(fixed_deficit) else fixed_deficit
        if _not_in_each_frame(lit_deficit, shown, min_lit_fraction):
            continue
        found[window] |= shadow
        rows, cols = np.nonzero(shadow)
        shadows.append(
            RatioShadow(
                *_centroid_and_inside(rows, cols, (window[0].start, window[1].start)),
                diameter_px=2.0 * math.sqrt(area / math.pi),
                median_deficit=_deficit(image[window], shadow, ring),
                fixed_deficit=fixed_deficit,
                lit_deficit=lit_deficit,
            )
        )
    return found, shadows


@dataclass(frozen=True)
class DustFreePrediction:
    """The temporal median of the registered frames, and what a dust-free sensor would have
    recorded, both over the same frames at every pixel.

    Attributes
    ----------
    observed : np.ndarray
        (H, W) float32 median of the frames at each pixel, over the frames whose part of the
        scene is known there (NaN where the prediction is unknown).
    predicted : np.ndarray
        (H, W) float32 median, over the same frames, of the scene estimate shifted by each
        frame's displacement (NaN where too few frames see the scene).
    with_excluded : np.ndarray or None
        (H, W) bool, where pixels meant to be left out of the scene estimate (the shadows
        found, in :func:`separate_sensor_fixed`) had to stay in it, because too few frames saw
        that part of the scene through other pixels: there the prediction holds those shadows
        as far as they stayed in the scene estimate. None when no pixel was left out.
    black_level : float
        The frames' pedestal, ADU, which :meth:`carried_to` does not scale.
    lit_ratio : np.ndarray or None
        (H, W) float32 median, over the frames whose prediction lights the pixel (above the
        pedestal, at least ``_LIT_FRAME_LEVEL`` of the brightest of them), of each frame's
        light over its prediction's: what dust leaves of the light frame by frame, with no
        frame on the sky beside a limb in the median. NaN where fewer than
        ``max(_MIN_UNBLOCKED, _MIN_UNBLOCKED_FRACTION * n)`` frames light the pixel; None when
        not computed.
    lit_share : np.ndarray or None
        (H, W) float32 share of the frames the medians are over that light the pixel so
        (NaN where none): below 1, the medians mix frames on the target and off it (beside a
        limb's path), whose ratio a limb bent by seeing moves; None when not computed.

    Notes
    -----
    Near the frame's edges only some frames see a part of the scene that enough others saw
    too. A median over those frames only is biased against the median over all of them
    wherever the scene has a gradient along the drift (by 10 % within 20 px of the edge on
    a limb-darkened disc drifting 80 px), so ``observed / predicted``, not the full median over
    the prediction, is the ratio in which the scene cancels.
    """

    observed: np.ndarray
    predicted: np.ndarray
    with_excluded: np.ndarray | None = None
    black_level: float = 0.0
    lit_ratio: np.ndarray | None = None
    lit_share: np.ndarray | None = None

    @property
    def ratio(self) -> np.ndarray:
        """(H, W) float64 ``observed / predicted``; NaN where unknown or not positive."""
        known = np.isfinite(self.predicted) & (self.predicted > 0) & np.isfinite(self.observed)
        observed = self.observed.astype(np.float64)
        return np.where(known, observed / np.where(known, self.predicted, 1.0), np.nan)

    def carried_to(self, median: np.ndarray) -> np.ndarray:
        """The prediction carried from the frames it was taken over to all the frames of
        ``median``: ``b + (predicted - b) * (median - b) / (observed - b)``, with ``b`` the
        pedestal (:attr:`black_level`).

        Dust multiplies the light of every frame at a pixel by the same transmission, so it
        cancels in ``(median - b) / (observed - b)``, which is what the other frames change.
        That change is large wherever the scene has a gradient along the drift: on a limb,
        whose median over a few dozen frames is softer than over all of them, and near the
        frame's edges, where only some frames see a part of the scene and a limb there lies
        elsewhere in ``predicted`` than in the median (on a synthetic solar disc whose radius
        is half the frame's height, a 53 px donut at the frame's edge got a flat error of 23 %
        rms along the plain prediction, 1.2 % along this one). Dust does not dim the
        pedestal, which left in would pull the ratio towards 1 under a deep shadow (under a
        near-opaque shadow on a synthetic planet's limb, with a pedestal of 4 % of the disc's
        light, the prediction lay 10 % rms from the dust-free median, 3 % without it).
        Where the observed light is below ``_MIN_CARRIED_LIGHT`` of its bright level (the sky,
        the night side) that ratio is noise over noise, and the difference ``median -
        observed`` is carried instead: dust that dark changes it by less than the noise.

        Parameters
        ----------
        median : np.ndarray
            (H, W) temporal median of all the video's frames, in ADU.

        Returns
        -------
        np.ndarray
            (H, W) float32, NaN where the prediction or ``observed`` is unknown.
        """
        black = float(self.black_level)
        observed = self.observed.astype(np.float64)
        light = observed - black
        known = np.isfinite(observed) & np.isfinite(median)
        if not known.any():
            return np.full(observed.shape, np.nan, dtype=np.float32)
        lit = known & (light > _MIN_CARRIED_LIGHT * target_level(light[known]))
        safe_light = np.where(lit, light, 1.0)
        carried = np.where(
            lit,
            black + (self.predicted - black) * ((median - black) / safe_light),
            self.predicted + (median - observed),
        )
        return np.where(known, carried, np.nan).astype(np.float32)


def predict_dust_free(
    frames: Sequence[np.ndarray],
    shifts: np.ndarray,
    shape: tuple[int, int],
    params: MotionTestParams = MotionTestParams(),
    *,
    excluded: np.ndarray | None = None,
    band_rows: int = 64,
    black_level: float = 0.0,
    gain: np.ndarray | None = None,
) -> DustFreePrediction:
    """The temporal median a sensor without dust would have recorded, from registered frames,
    with the observed median over the same frames.

    Parameters
    ----------
    frames : sequence of np.ndarray
        Registered frames, each of ``shape`` (only row bands are read at a time).
    shifts : np.ndarray
        (len(frames), 2) displacement (dy, dx) of the scene in each frame, pixels, as for
        :func:`sensor_fixed_test`.
    shape : tuple of int
        (H, W) of the frames.
    params : MotionTestParams
        ``min_coverage_fraction`` decides where the scene counts as known.
    excluded : np.ndarray, optional
        (H, W) bool, sensor pixels left out of the scene estimate (shadows already found), so
        that they cannot darken it. A part of the scene still counts as known where enough
        frames see it (``min_coverage_fraction``); its estimate then needs at least
        ``max(3, 0.1 * len(frames))`` frames that saw it through other pixels. The observed
        median is unaffected.
    band_rows : int
        Rows computed at a time; the working memory is about
        ``2 * len(frames) * (band_rows + drift) * (W + drift) * 4`` bytes.
    black_level : float
        The frames' pedestal, ADU, recorded for :meth:`DustFreePrediction.carried_to`.
    gain : np.ndarray, optional
        (H, W) positive gain of the sensor measured so far (:func:`fixed_gain`): the scene is
        estimated from each frame's light divided by it (the pedestal ``black_level`` left as
        it is), so that shadows seen by most of the frames of a part of the scene do not
        darken its estimate. The observed median is of the frames as given.

    Returns
    -------
    DustFreePrediction

    Raises
    ------
    ValueError
        For shifts that do not match the frames, non-finite shifts, frames of another shape,
        a bad ``excluded`` mask, a ``gain`` not finite and positive, ``band_rows < 1`` or a
        non-finite ``black_level``.
    """
    offsets = checked_offsets(frames, shifts)
    if band_rows < 1:
        raise ValueError(f"band_rows must be >= 1, got {band_rows}.")
    if not np.isfinite(black_level):
        raise ValueError(f"black_level must be finite, got {black_level}.")
    for index, frame in enumerate(frames):
        if np.shape(frame)[:2] != tuple(shape) or len(np.shape(frame)) != 2:
            raise ValueError(
                f"frame {index} has shape {np.shape(frame)}; every frame must have the shape "
                f"{tuple(shape)}."
            )
    blocked = None
    if excluded is not None:
        blocked = np.asarray(excluded)
        if blocked.shape != tuple(shape) or blocked.dtype != bool:
            raise ValueError(
                f"excluded must be a bool mask of shape {tuple(shape)}, got {blocked.dtype} "
                f"{blocked.shape}."
            )
        if not blocked.any():
            blocked = None
    scene_frames = None
    if gain is not None:
        gain = np.asarray(gain, dtype=np.float32)
        if gain.shape != tuple(shape) or not (np.isfinite(gain) & (gain > 0)).all():
            raise ValueError(
                f"gain must be a finite positive (H, W) image of shape {tuple(shape)}, got "
                f"shape {gain.shape}; measure it with fixed_gain."
            )
        scene_frames = [ResponseCorrectedFrame(frame, gain, black_level) for frame in frames]
    return _prediction_in_bands(
        frames,
        offsets,
        shape,
        params,
        blocked,
        band_rows=band_rows,
        scene_frames=scene_frames,
        black_level=float(black_level),
    )


def _prediction_in_bands(
    frames: Sequence[np.ndarray],
    offsets: np.ndarray,
    shape: tuple[int, int],
    params: MotionTestParams,
    blocked: np.ndarray | None = None,
    *,
    band_rows: int = 64,
    every: int = 1,
    scene_frames: Sequence[np.ndarray] | None = None,
    black_level: float | None = None,
) -> DustFreePrediction:
    """:func:`predict_dust_free` over one band of ``band_rows`` rows in ``every`` (all of
    them by default), NaN in the rows between; with ``black_level``, the frames' pedestal,
    the prediction holds it, its ``lit_ratio`` and its ``lit_share``."""
    observed = np.full(shape, np.nan, dtype=np.float32)
    predicted = np.full(shape, np.nan, dtype=np.float32)
    lit_ratio = lit_share = None
    if black_level is not None:
        lit_ratio = np.full(shape, np.nan, dtype=np.float32)
        lit_share = np.full(shape, np.nan, dtype=np.float32)
    height, width = shape
    windows = [
        (slice(row0, min(row0 + band_rows, height)), slice(0, width))
        for row0 in range(0, height, band_rows * every)
    ]

    def band(window: tuple[slice, slice]) -> DustFreePrediction:
        return _predicted_median(
            frames, offsets, window, shape, params, blocked, scene_frames, black_level
        )

    for window, windowed in zip(windows, in_threads(band, windows), strict=True):
        observed[window], predicted[window] = windowed.observed, windowed.predicted
        if black_level is not None:
            lit_ratio[window], lit_share[window] = windowed.lit_ratio, windowed.lit_share
    return DustFreePrediction(
        observed=observed,
        predicted=predicted,
        black_level=0.0 if black_level is None else black_level,
        lit_ratio=lit_ratio,
        lit_share=lit_share,
    )


def _predicted_median(
    frames: Sequence[np.ndarray],
    offsets: np.ndarray,
    window: tuple[slice, slice],
    shape: tuple[int, int],
    params: MotionTestParams,
    blocked: np.ndarray | None = None,
    scene_frames: Sequence[np.ndarray] | None = None,
    black_level: float | None = None,
) -> DustFreePrediction:
    """Over ``window``: the median of the frames (``observed``), and the temporal median a
    dust-free sensor would record (``predicted``), both over the frames whose part of the
    scene is known (NaN elsewhere), from the scene estimated in the frames' registered median;
    with ``black_level``, also ``lit_ratio`` and ``lit_share`` (None without)."""
    low = offsets.min(axis=0)
    high = offsets.max(axis=0)
    # Scene coordinates needed: every window pixel x minus every frame's displacement.
    scene_y0 = math.floor(window[0].start - high[0]) - 1
    scene_x0 = math.floor(window[1].start - high[1]) - 1
    scene_y1 = math.ceil(window[0].stop - low[0]) + 1
    scene_x1 = math.ceil(window[1].stop - low[1]) + 1
    scene_shape = (scene_y1 - scene_y0, scene_x1 - scene_x0)
    samples = np.empty((len(frames), *scene_shape), dtype=np.float32)
    sources = frames if scene_frames is None else scene_frames
    for index, (frame, (dy, dx)) in enumerate(zip(sources, offsets, strict=True)):
        samples[index] = _shifted_window(
            frame, shape, scene_y0 + dy, scene_x0 + dx, scene_shape, blocked
        )
    minimum = params.min_coverage_fraction * len(frames)
    if blocked is None:
        scene = finite_median(samples, minimum)
    else:
        in_frame = np.count_nonzero(~np.isnan(samples), axis=0)
        scene = finite_median(samples, max(_MIN_UNBLOCKED, _MIN_UNBLOCKED_FRACTION * len(frames)))
        scene[in_frame < minimum] = np.nan
    window_shape = (window[0].stop - window[0].start, window[1].stop - window[1].start)
    projected = samples[:, : window_shape[0], : window_shape[1]]
    for index, (dy, dx) in enumerate(offsets):
        projected[index] = _shifted_window(
            scene,
            scene_shape,
            window[0].start - dy - scene_y0,
            window[1].start - dx - scene_x0,
            window_shape,
        )
    known = np.isfinite(projected)
    observed = np.empty_like(projected)
    for index, frame in enumerate(frames):
        observed[index] = np.asarray(frame[window], dtype=np.float32)
    observed[~known] = np.nan
    observed_median = finite_median(observed, minimum)
    predicted_median = finite_median(projected, minimum)
    if black_level is None:
        return DustFreePrediction(observed=observed_median, predicted=predicted_median)
    lit_ratio, lit_share = _lit_ratio(observed, projected, black_level)
    return DustFreePrediction(
        observed=observed_median,
        predicted=predicted_median,
        black_level=black_level,
        lit_ratio=lit_ratio,
        lit_share=lit_share,
    )


_LIT_FRAME_LEVEL = 0.5
"""Fraction of a pixel's brightest predicted light (above the pedestal) from which a frame
counts as lighting it in :attr:`DustFreePrediction.lit_ratio`: a frame that puts the pixel
on a limb's edge, or beyond it, has too little light for its ratio to mean anything."""


def _lit_ratio(
    observed: np.ndarray, projected: np.ndarray, black_level: float
) -> tuple[np.ndarray, np.ndarray]:
    """:attr:`DustFreePrediction.lit_ratio` and :attr:`DustFreePrediction.lit_share` from the
    frames (n, h, w) and their predictions (n, h, w), both NaN where the scene is unknown;
    both are overwritten."""
    known = np.count_nonzero(np.isfinite(projected), axis=0)
    projected -= np.float32(black_level)
    observed -= np.float32(black_level)
    brightest = np.fmax.reduce(projected, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        lit = (projected > 0) & (projected >= _LIT_FRAME_LEVEL * brightest)
        np.divide(observed, projected, out=observed, where=lit)
        share = (np.count_nonzero(lit, axis=0) / known).astype(np.float32)
    observed[~lit] = np.nan
    minimum = max(_MIN_UNBLOCKED, _MIN_UNBLOCKED_FRACTION * len(observed))
    return finite_median(observed, minimum), share


def _shifted_window(
    image: np.ndarray,
    shape: tuple[int, int],
    row: float,
    col: float,
    size: tuple[int, int],
    blocked: np.ndarray | None = None,
) -> np.ndarray:
    """Bilinear samples of ``image`` (of ``shape``) at rows ``row + i`` and columns
    ``col + j`` for ``i < size[0]``, ``j < size[1]`` (float32); NaN outside the image or
    next to a NaN.

    One sub-pixel offset for the whole window, so the interpolation is four weighted slices;
    ``scipy.ndimage.map_coordinates`` computes weights per sample and is several times slower.
    """
    top, left = _whole(row), _whole(col)
    frac_y, frac_x = row - top, col - left
    if frac_y < _SNAP:
        frac_y = 0.0
    if frac_x < _SNAP:
        frac_x = 0.0
    rows_needed = size[0] + (frac_y > 0)
    cols_needed = size[1] + (frac_x > 0)
    source = np.full((rows_needed, cols_needed), np.nan, dtype=np.float32)
    src_r0, src_r1 = max(0, top), min(shape[0], top + rows_needed)
    src_c0, src_c1 = max(0, left), min(shape[1], left + cols_needed)
    if src_r0 < src_r1 and src_c0 < src_c1:
        inside = (slice(src_r0 - top, src_r1 - top), slice(src_c0 - left, src_c1 - left))
        source[inside] = image[src_r0:src_r1, src_c0:src_c1]
        if blocked is not None:
            source[inside][blocked[src_r0:src_r1, src_c0:src_c1]] = np.inf
    if frac_y > 0:
        source = (1 - frac_y) * source[:-1] + frac_y * source[1:]
    if frac_x > 0:
        source = (1 - frac_x) * source[:, :-1] + frac_x * source[:, 1:]
    return source.astype(np.float32, copy=False)


_MIN_CARRIED_LIGHT = 0.01
"""Fraction of the observed light's bright level above which :meth:`DustFreePrediction.carried_to`
scales the prediction's light; below it (a median of a few dozen frames has a noise of about
1 % of the level at that light) it carries the difference."""

_MIN_UNBLOCKED = 3
_MIN_UNBLOCKED_FRACTION = 0.1
"""Frames that must see a part of the scene through pixels not excluded for its estimate
(at least the larger of the two): a median of fewer is too noisy to stand for the scene."""

_SNAP = 1e-6
"""Sub-pixel fractions closer than this to a whole pixel are whole: accumulated shifts such as
3.9999999999999996 would otherwise need (and lose, at the frame's edge) one more row."""


def _whole(position: float) -> int:
    """``floor(position)``, or the next integer when ``position`` is within ``_SNAP`` below it."""
    nearest = round(position)
    return nearest if abs(position - nearest) < _SNAP else math.floor(position)


def sensor_line_gains(
    prediction: DustFreePrediction,
    mask: np.ndarray,
    *,
    threshold_sigma: float = 5.0,
    dark_fraction: float = 0.05,
) -> LineGains | None:
    """The gains of the sensor's defective columns and rows that the dust-free prediction does
    not hold, measured on the ratio ``observed / predicted`` (pedestal removed).

    The scene cancels in that ratio, so a band of it along the rows (a planet's belts) is not
    taken for a row of different gain, as it would be in the median alone
    (:func:`~astro_assets.science.flatfield.inpaint.median_line_gains`). The scene estimate
    is built from frames registered on the scene, so a line across the drift is smeared out
    of the prediction and stands out in the ratio; a line along the drift stays in the
    prediction and not in the ratio, and a fill along the prediction holds it already.

    Parameters
    ----------
    prediction : DustFreePrediction
        From :func:`separate_sensor_fixed` (``MotionResult.prediction``).
    mask : np.ndarray
        (H, W) dust mask on the prediction's grid; pixels > 0 are left out.
    threshold_sigma : float
        As for :func:`~astro_assets.science.flatfield.dust.line_gains`.
    dark_fraction : float
        Pixels whose prediction is darker than this fraction of its bright level are left out.

    Returns
    -------
    LineGains or None
        On the prediction's grid; None when no line is defective or nothing is measured.
    """
    light = _light_on_target(prediction, dark_fraction, leave_out=np.asarray(mask) > 0)
    if light is None:
        return None
    observed, predicted, lit = light
    usable = lit & (observed > 0)
    ratio = np.ones(observed.shape)
    np.divide(observed, predicted, out=ratio, where=usable)
    return line_gains(ratio, usable, threshold_sigma)
