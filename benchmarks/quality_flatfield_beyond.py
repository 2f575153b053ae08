"""Quality of the classical dust flat-field pipeline beyond the grid of ``quality_flatfield.py``.

Sets of videos with truth, each scored like the grid (precision, recall and
deficit-weighted recall of the binary core against the true dust support, flat rms inside it):

1. **A real texture.** The scene is ``skimage.data.moon()``, a 512 x 512 8-bit photograph of
   the lunar surface shipped with scikit-image (nothing is downloaded), enlarged 2x by cubic
   interpolation and blurred by a 1 px Gaussian. Its craters and their shadows are dark
   features of every size, some larger than half the drift, which the median keeps as streaks
   along it; the synthetic scenes of the grid have none. The scene drifts by 82 px in a
   seeded random direction with 0.8 px of jitter over 40 frames of 512 x 384 px, under three
   shadows drawn by ``random_dust`` for f/10, f/30 and f/60, 10 % vignetting, Poisson noise
   (20,000 e- at the 99.5th percentile of the scene) and 3 e- of read noise, 16-bit.
2. **Shadows larger than the drift.** Four shadows of 70-120 px (25 % deep discs, 15 % deep
   donuts or 8 % deep discs) on the synthetic Sun of the grid drifting by 26, 40 or 82 px.
3. **A planet in phase.** The grid's planet (radius 115 px) drifting by 83 px, lit from the
   right at phase angles of 60, 100 and 140 degrees (gibbous, a thick and a thin crescent):
   a terminator crosses the disk and its night side is as dark as the sky. Four 10 px, 80 %
   deep shadows sit on the disk at fixed places from its right limb inwards
   (``PHASE_LAYOUT``); those on the night side hide nothing and are not scored, nor are those
   the drifting target leaves dark in the median (below the 5 % of its bright level under
   which no flat is measured): a thin crescent drifting across its own width lights few
   pixels in more than half of the frames. Recall, deficit-weighted recall and flat error
   are means over the seeds that have dust lit in the median; the other columns over all.
4. **An 8-bit capture.** The grid's planet (f/60, near-opaque spots) and Sun (f/30) drifting by
   83 px over 100 frames, reduced to 8 bits by rounding ``frame / 256`` (the planet's disc
   then spans about 170 levels above a black level of 4), run with the exact temporal median
   and with the median interpolated within its level (``ser_median``'s default for 8-bit
   videos, ``science.flatfield.quantized``), against the same videos at 16 bits, scored where
   the dust-free median is lit, as the phase set.
5. **Strong vignetting.** The grid's Sun filling the frame (a surface close-up) under f/30 dust,
   and without dust, vignetted by 70 % at the corners (``vignetting=0.7``; the grid has 10 %),
   as a small blocking filter or a large sensor on a small refractor does, drifting by 83 px.
6. **Sensor defects.** The grid's Sun under f/30 dust, and without dust, drifting by 82 px,
   with what a real sensor adds that is fixed on it (``sensor_defects``): hot pixels (0.05 %,
   +2,000 to +30,000 ADU), cold pixels (0.01 %, at 10 % gain), a column of 4 % lower gain
   through the frame's third and a row of 3 % lower gain through its middle, six more columns
   1-2 px wide at 1-10 % lower gain, three hot columns (+200 to +2,000 ADU), three rows at
   1-5 % lower gain; and row banding that changes from frame to frame (20 ADU rms a row).
   With the defects, also with their line gains measured on the median instead of the ratio
   to the dust-free prediction, and not kept in the fill (``inpainted``'s ``line_defects``).
7. **Few frames.** The grid's Sun under f/30 dust, and without dust, drifting by 83 px over
   3, 5, 8 and 16 frames (``ser_median`` warns below ``FEW_VIDEO_FRAMES``).
8. **Clouds.** The grid's Sun under f/30 dust, and without dust, drifting by 83 px over 40
   frames whose light changes (``SolarVideoParams.transparency``, frames drawn from the seed):
   4 frames at 30 % (a thick cloud), 10 frames at 60 % (a thin one), a haze that takes the
   light from 100 % to 60 % over the video, 3 blank frames at the start of the capture, 30
   frames of 40 at 40 % (a capture mostly under thin cloud) and every frame at 30-100 % (clouds
   passing all along).
   The dusty videos also without the frames' transparency measured and divided out
   (``MotionTestParams.transparency_correction``).
9. **Differential seeing.** The grid's Sun (one sunspot) under f/30 dust, and without dust,
   drifting by 83 px over 40 frames, each frame bent by a smooth random displacement field of
   its own (``SolarVideoParams.seeing_warp_px`` 0.75, 1.5 and 2.5 px rms, in patches of
   ``seeing_scale_px`` 32 px): what a registration of the whole frame cannot follow. The
   dusty videos at 1.5 and 2.5 px also without shadows checked in the ratio seen frame by
   frame (``MotionTestParams.min_lit_fraction`` 0).

Usage::

    .venv/bin/python benchmarks/quality_flatfield_beyond.py            # print the tables
    .venv/bin/python benchmarks/quality_flatfield_beyond.py --record   # also update README.md
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
from typing import Any

import numpy as np
import skimage.data
from quality_flatfield import README, classical_flat, replace_section
from scipy import ndimage

from astro_assets.samples.solar import (
    PLANET_FLATTENING,
    DustSpec,
    SolarVideoParams,
    SyntheticSolarVideo,
    dust_transmission,
    random_dust,
    vignetting_map,
)
from astro_assets.science.flatfield import metrics
from astro_assets.science.flatfield.flatfield import FlatParams, signal_level
from astro_assets.science.flatfield.motion import MotionTestParams

HEADING = "## Flat-field quality beyond the grid"
SEEDS = (0, 1, 2)
LUNAR_SHAPE = (384, 512)
LUNAR_FRAMES = 40
LUNAR_DRIFT_PX = 82.0
FULL_WELL = 20000.0
BLACK_ADU = 1024.0
LARGE_DRIFTS_PX = (82.0, 40.0, 26.0)
LARGE_KINDS = (("disc", 0.25), ("donut", 0.15), ("disc", 0.08))
LARGE_LAYOUT = (
    (190.0, 130.0, 120.0),
    (120.0, 380.0, 90.0),
    (310.0, 400.0, 70.0),
    (40.0, 40.0, 75.0),
)
"""Row, column and diameter (px) of the four large shadows in a 512 x 384 frame."""

FINDINGS = """Findings (2026-11-22, 2 cores x86_64, 24 GiB):

- Candidates confirmed frame by frame (2026-11-25, `motion._judge`): a candidate the ratio
  of the medians shows is kept only if each frame, set against its own prediction, shows at
  least `min_lit_fraction` of its deficit; one each frame shows but the ratio less than
  `min_deficit_ratio` of the median's deficit (down to half of that) is left undecided.
  Sets 1 (lunar), 8 (clouds) and 9 (seeing) run again with it. With the transparency not
  divided out, the clouds' residues went: 4 frames at 30 % precision 0.74 -> 0.88, core
  outside the dust 0.197 -> 0.072 %; 10 frames at 60 % 0.80 -> 0.98, 0.154 -> 0.012 %; every
  frame at 30-100 % 0.95 -> 1.00, 0.030 -> 0.000 %; 30 of 40 frames at 40 % flat rms in dust
  2.37 -> 2.14 %. With it divided out (the default) only the haze moved (0.57 -> 0.56 %).
  Lunar texture: one candidate of one f/10 seed is now undecided, every score the same.
  Seeing 2.5 px rms: precision 0.92 -> 0.95, core outside the dust 0.048 -> 0.028 %, masked
  5.00 -> 4.79 %; the other seeing rows did not move. The other sets, run with the first form
  of the change (before the no-surroundings check and the gate on the drift), matched the
  table to the digit but for the sensor-defect rows with dust (flat rms 0.55 -> 0.54 %,
  0.56 -> 0.55 %), left as recorded.
- A monochrome median's guided regions are filled in the ratio above the pedestal where the
  prediction is lit (2026-11-24), as a colour plane's were: flat rms in dust on the planet in
  phase 0.97 -> 0.90 % (60 degrees), 1.05 -> 1.02 % (100), 1.90 -> 1.75 % (140), over 100
  frames at 16 bits 1.21 -> 1.15 %. The 8-bit rows, the large shadows on the Sun, the lunar
  texture and the strong vignetting, run again, did not move (those targets fill the frame:
  their pedestal is 0); the other sets (sensor defects, few frames, clouds, seeing, all on
  the Sun) were not run again.
- Differential seeing (set 9, 2026-11-24). Each frame bent by its own smooth displacement
  field, 32 px patches. Where a limb's path crossed a corner midway through the video, the
  median and its prediction each take a frame near the crossing, whose limbs the seeing put
  apart: their ratio fell by 20-60 % along that line, which the deep and limb searches took
  for shadows. Shadows over pixels that not every frame of the medians lights are now
  checked in the ratio seen frame by frame (`min_lit_fraction`). At 1.5 px rms: precision
  0.96 -> 0.99, core outside the dust 0.017 -> 0.004 % of the frame, recall and flat rms in
  dust unchanged (0.90, 0.75 %); nothing masked without dust. The same check took the
  precision of the cloud rows with the transparency not divided out from 0.68, 0.71 and
  0.94 to 0.74, 0.79 and 0.98 (this is the first full run with it). At 2.5 px rms what failed
  was the registration's closure: two seeds of three disagreed by 4.1 and 3.0 px, above the
  2 px limit, so every candidate was kept undecided (precision 0.44, 1.5 % of the frame
  outside the dust). Registrations that fail it are now made again on frames smoothed by
  2 px (closures 1.4 and 1.5 px): precision 0.44 -> 0.92, core outside the dust 1.536 ->
  0.048 % of the frame, no candidate undecided (3 before), flat rms in dust 1.35 -> 1.29 %
  (one seed's precision 0.80, the others' 0.99). Smoothing every registration would have
  moved a 96 x 72 px frame's rigid drift by 2.8 px, so it is only a retry.
  At 0.75 px one seed's eye candidate had grown along the frame's edge beside a true
  shadow (as it does with no seeing at all); kept candidates are now cut to the ratio made
  without them: precision 0.95 -> 0.99, flat rms in dust 1.01 -> 0.63 %.
- Lunar texture. Before the motion test decided a candidate almost as long as the drift from
  its known rim, two crater streaks of about 4,000 px each at the frame's edges (extent
  93-99 px over the 83 px drift) were kept as undecided on one seed of three. On that seed
  precision was 0.36, 0.10 and 0.03 at f/10, f/30 and f/60, with 3.9-4.2 % of the frame in
  the core outside the dust. Now both streaks are dropped as moving with the scene. No
  candidate is left undecided; the worst seed's precision is 0.86, 0.99 and 0.81, with at
  most 0.64 % of the frame outside the dust (f/10). Flat rms in dust is unchanged
  (0.33-0.68 %). No true shadow was dropped by the new rule, here or in the large-shadow set.
- Large shadows. Before, a region the median shows could be filled along a prediction whose
  scene estimate still held up to all of a shadow larger than the drift (too few frames see
  its part of the scene through other pixels), and the fill put the shadow back. Such a
  region is now continued from its surroundings where the median lies deeper below the
  continuation there than the continuation misses the region's ring. Flat rms in dust,
  before -> after, at drifts of 82, 40 and 26 px:
  - 25 % discs: 18.7, 24.7, 24.4 % -> 6.7, 10.7, 5.3 %;
  - 15 % donuts: 8.9, 11.7, 12.4 % -> 5.9, 6.0, 5.8 %;
  - 8 % discs: 6.5, 7.0, 7.1 % -> 5.5, 5.3, 5.0 %.
- Large shadows, outlines. The detector outlines a candidate in a window around its strongest
  filter response, which on the textured plateau of a 70-120 px shadow can come from a 5-7 px
  filter: the shape was the fragment inside that window (16 px across for a 90 px shadow),
  dropped as not round, and the shadow was lost. The window now grows until the shape no
  longer reaches its border. Before -> after (recall; flat rms in dust), at drifts of 82, 40
  and 26 px:
  - 25 % discs: 0.79, 0.65, 0.74 -> 0.82, 0.79, 0.78; 6.74, 10.69, 5.33 -> 5.71, 5.67, 5.58 %;
  - 15 % donuts: 0.85, 0.76, 0.74 -> 0.86, 0.79, 0.77; 5.90, 5.99, 5.83 -> 5.89, 5.85, 5.81 %;
  - 8 % discs: 0.57, 0.40, 0.40 -> 0.74, 0.42, 0.41; 5.51, 5.30, 5.03 -> 4.57, 5.40, 5.02 %.
  The lunar rows are unchanged but for rounding (f/30 flat rms 0.33 -> 0.34 %).
- Large shadows, across the limb. Most of the flat error left was one shadow, the 75 px one
  across the limb in the frame's corner (10-14 % rms there with 25 % discs). Its mask covers
  the whole limb in the corner, so the fill's trend, fitted to the disc's inner side alone,
  did not follow the limb's steepening fall: next to the limb the fill was up to 1.5 times
  too bright. A region within its own diameter of the fitted limb is now filled in the
  median's ratio to the target's radial profile (its median at each depth below the limb,
  measured along the rest of the limb) and multiplied back. Flat rms in dust, before ->
  after, at drifts of 82, 40 and 26 px:
  - 25 % discs: 5.71, 5.67, 5.58 -> 2.37, 2.09, 2.13 % (the corner shadow: 1.8-5.2 %);
  - 15 % donuts: 5.89, 5.85, 5.81 -> 2.17, 2.13, 2.18 %;
  - 8 % discs: 4.57, 5.40, 5.02 -> 2.70, 4.81, 4.75 %.
  Detection is unchanged; the lunar rows, on a target that fills the frame, are identical.
  The profile is measured on lit pixels only, so that a target in phase has the profile of
  its lit part; the limb of a target in phase is fitted to the larger part of its edge
  (`science.flatfield.limb.fit_limb`). Neither moved a figure here by more than 0.01 %.
- A planet in phase (new set): at 60 degrees (gibbous) precision 0.95, deficit-weighted recall
  0.99 and flat rms in dust 0.93 %, as on the grid's full planet. At 100 degrees, a thick
  crescent, precision was 0.43 (0.16 and 0.11 on two seeds, 1.0-1.5 % of the frame in the core
  outside the dust): the sensor's response, a polynomial fitted where the frames are lit, was
  extrapolated over the sky to 0.15 in the frame's corners, so the frames divided by it made
  the sky look lit to the ratio search, which found shadows there. The response is now held
  within the range it takes where it was measured: precision 1.00, no core outside the dust,
  flat rms in dust 1.12 -> 1.03 % (60 degrees: 0.89 -> 0.93 %). The detector does not use a
  limb fitted to a target in phase: inside such a limb the night side is as dark as opaque
  dust, and the rule that fills dark notches well inside the limb took it for a 619 px shadow
  on a dust-free crescent.
- A thin crescent (140 degrees, 20-30 px wide). On two seeds of three the drift runs across
  the crescent and the median keeps no light at any of the scored shadows; on the third it
  runs along it and both shadows there are lit. Two faults, now mended:
  - The median of a crossing crescent lights 0.1-1 % of the frame, so its 99th percentile,
    the bright level every threshold was a fraction of, was the sky's pedestal: the whole sky
    counted as target, and on one seed a 156 px region of the sky, 0.03 % deep, was kept as a
    shadow (9.8 % of the frame in the core). The bright level is now the 99th percentile of
    the target's own pixels once at least 0.1 % of the frame is 4 times brighter than the
    frame's 99th percentile (``science.flatfield.levels.target_level``), in the detector, the
    motion test, the response, the inpainting and the synthesis alike.
  - On the seed where the shadows are lit, neither was found: they are dark notches open to
    the sky in the detector's view, and the ratio search did not run because the check that
    the prediction explains the scene measured nothing. Its coarse scale (a 20 px Gaussian)
    asked for half its weight on the target, which a 20-30 px crescent never gives; a tenth
    now suffices (about 250 pixels of the target). Both shadows are found in the ratio.
  Before -> after, scored as above: precision 0.33 -> 1.00 (the old core lay on the sky and on
  pixels the median leaves dark), deficit-weighted recall 0.00 -> 0.97, flat rms in dust
  276 -> 4.9 %, core outside the dust 3.3 -> 0.0 % of the frame. The 4.9 % lies at the
  shadows' edges (largest errors 11 and 14 %): across a crescent this thin the fill does not
  follow the steep fall of the smeared median there. The grid, the lunar and the large-shadow
  rows, and the phase rows at 60 and 100 degrees, are identical.
- Shadows shallower than the detector's `min_depth` (0.5 %) are no longer outlined (see
  `quality_detect_low_noise.py`). Here one row moved: with 25 % discs at an 82 px drift, on
  one seed recall 0.826 -> 0.828 and flat rms in dust 2.077 -> 2.083 %, the expanded mask 30.47
  -> 30.49 % of the frame in the mean; the grid is identical.
- An 8-bit capture (new set). Detection is the same as at 16 bits; the flat's rms error in
  dust on the planet is 3.63 % at 16 bits, 4.18 % at 8 bits with the exact median and 3.72 %
  with the median interpolated within its level (on one seed 0.67, 1.30 and 0.91 %); on the
  Sun 0.64, 0.67 and 0.66 %. The rest of the planet's error is a shadow on its limb: on
  the seed with 6.5 % (16 bits), 11.5 % rms over that shadow and 18 % over its 28 pixels
  where the limb falls below half the disc's level, against 0.7 % for the other two.
- The pedestal. The dust-free prediction is taken over the 32 frames the drift is measured on
  and carried to the median of all of them by the change of their median at each pixel, in
  which the dust cancels. That change is large on a limb: the median of 32 frames of a steep
  limb drifting past is softer than that of 100. Dust dims the light but not the sensor's
  pedestal (1,024 ADU, 4 % of the planet's light), and the carry and the sensor's response
  scaled both, which pulled the carry towards 1 under a deep shadow: on the planet's limb
  shadow above, the prediction lay 10 % rms from the true dust-free median (6.5 % below it on
  the mean). Both now scale only the light above the pedestal (the `dust_mask` config's
  `black_level`, by default the median's sky): 3 % there, and the flat's rms error over that
  shadow 11.5 -> 2.3 %. The 8-bit set is now scored, like the phase set, only where the
  dust-free median is lit (a flat is measured nowhere else); the code before this change,
  scored so, had a flat rms in dust on the planet of 3.36 % at 16 bits, 3.84 % at 8 bits with
  the exact median and 3.42 % interpolated (on the seeds: 0.67, 6.49 and 2.91 % at 16 bits),
  now 1.20 %, 10.37 % and 10.24 % (0.70, 1.42 and 1.48 %). At 8 bits one seed's mean holds two
  pixels at the limb's edge under shadows of 58 and 82 % whose dust-free reference, now within
  5 % of the truth, falls 0.1-0.4 level below 5 % of the bright level, where the flat is forced
  to 1.0 as too dark to measure (errors of 137 and 458 %); the reference biased high kept them
  measured before. The other 300 pixels there have 3.1 % rms (3.5 % before). On the Sun 0.64,
  0.67 and 0.66 % -> 0.60, 0.63 and 0.63 %; at 140 degrees the thin crescent 4.94 -> 3.62 %;
  the other rows moved by at most 0.02 %.
- Strong vignetting (new set). The sensor's response is a polynomial of degree 4 in the log,
  which misses a fall-off of 70 % at the corners by up to 11 % (`science.flatfield.response`),
  and it was held within the range it took at its outermost samples, up to a sampling step
  inside the frame's edge: in the corners along the drift the ratio fell to 0.79-0.81. On one
  seed of three, the search for deep and wide shadows took a corner for a shadow though it lay
  no deeper than its surroundings (-0.3 % against them), and the ratio search took another,
  5 % deep. A deep or wide shadow must now lie half its depth below its surroundings, and the
  response's range reaches a sampling step around its samples. Before -> after: core outside
  the dust 0.093 -> 0.031 % of the frame with f/30 dust (precision 0.87 -> 0.94, flat rms in
  dust 0.51 % both) and 0.082 -> 0.031 % without dust (masked 0.43 -> 0.20 %), all of it on
  that seed. Raising the response's degree to 8 alone had hardly changed them (on that seed
  0.278 -> 0.275 % with dust). The other rows are the same, but for the masked area with 25 %
  discs and 15 % donuts at an 82 px drift (30.50 -> 30.41 %, 31.00 -> 30.98 %).
- Sensor defects (set 6). Before line defects were taken out of the detector's deficit and
  the drift was measured again on the frames less their static pattern, the defects cost a
  shadow on one seed of three (recall 0.59, deficit-weighted recall 0.81, flat rms in dust
  4.4 %); the means with defects were 0.79, 0.93 and 2.03 %. With those steps they are 0.90,
  0.99 and 0.85 % when the lines' gains are kept out of the fill, against 0.90, 0.99 and
  0.68 % on the same videos without defects: inside the mask the flat then also corrects the
  line defects that cross the dust, which the truth does not hold. ``inpainted`` now keeps
  the gains in what it fills (``line_defects``): the flat's rms in dust with the defects is
  0.68 % with the gains ``dust_mask`` measures on the ratio to the dust-free prediction (the
  default; seed 1: 0.88 -> 0.38 %, 0.38 % without the defects) and 0.69 % with gains
  measured on the median. Nothing else moves, but for one clean video (seed 1 without
  defects), on whose ratio a column at 0.17 % is taken for a defect: its flat's rms in dust
  0.3759 -> 0.3758 %. The grid's scores are unchanged. Measured apart on one video, the hot
  and cold pixels and the row banding alone cost nothing; the 4 % column and the 3 % row
  did. Without dust nothing is masked, with or without defects. The other sets moved by
  little: the gibbous planet's precision 0.95 -> 0.98 (core outside the dust 0.011 -> 0.005
  %, flat rms in dust 0.95 -> 0.97 %); 15 % donuts at 26 px, core outside the dust 0.448 ->
  0.423 % and masked 29.15 -> 28.86 %; the masked areas of the 8 % discs by 0.01-0.02
  points.
- Large shallow shadows. The detector's background, a quadratic fitted with 48 px Gaussian
  weights, followed part of the depth of a shadow about as wide as that scale: over an 8 %
  deep, 120 px disc the first pass measured 2-3 %, so only the disc's middle stood above the
  grow level and was left out of the second fit, and the second pass measured 3.8-5.8 % at
  its centre for a true 7.8 % (six seeds, 40 px drift). A candidate whose best filter's
  radius reaches the background's scale now also leaves out of the next fit the pixels
  darker than the background within half that radius of it, its shallow rim
  (now ``dust._first_pass_regions``): 6.3-8.4 % on the same seeds. Before -> after (recall,
  deficit-weighted recall, flat rms in dust):
  - 8 % discs at 40 px drift: 0.42 -> 0.54, 0.50 -> 0.64, 4.81 -> 3.95 %;
  - at 82 px: 0.74 (unchanged), 0.84 -> 0.86, 2.69 -> 2.67 %; at 26 px: 0.41 -> 0.43,
    0.50 -> 0.51, 4.75 % both;
  - 15 % donuts at 40 px: 0.79 -> 0.81, 0.91 -> 0.93, 2.13 -> 2.15 %; the other large rows
    moved by at most 0.01 (masked areas by up to 4 points with the 8 % discs).
  A skirt of every pixel within that radius, dark or not, found as much of the 8 % discs
  but drew a 120 px donut's outline 15 px too wide and lost the 75 px shadow across the limb
  in the corner (on one 15 % donut video at 26 px, that shadow's flat rms 2.2 -> 12 %).
  Skirts on candidates of every radius, not only those as wide as the background, cost the
  grid's f/10 donuts a shadow: the ratio search's background, extrapolated along the frame's
  edge, joined it to the edge (deficit-weighted recall 0.89 -> 0.76). With the dark pixels
  of the wide candidates alone the grid and the low-noise detector set are identical, and
  of the lunar videos one moved (f/30, seed 2: precision 0.994 -> 0.999, recall 0.88 ->
  0.90, flat rms in dust 0.375 -> 0.368 %), so the f/30 worst-seed row now shows seed 1 and
  the mean's flat rms reads 0.33 % (0.34 %). The other sets are identical.
- Large shallow shadows below the seed level. On three of the six videos with 8 % discs at
  26 and 40 px drift the 120 px disc was still missed: the first pass measured it under the
  seed level of 5 sigma (4.98 and 4.88 at most on two videos), or its peak above that level
  came from a 7 px filter on its texture (5.18 on the third, where the wide filters reached
  4.98), so the second fit did not leave it out and followed it down again (1.5-2.7 % at its
  centre for 7.8 %). The first pass, which only decides what the next
  fit leaves out, now also keeps a region whose filters as wide as the background reach 0.8
  of the seed level and 0.8 of the region's own peak, with its dark skirt
  (``dust._first_pass_regions``). The detector now finds the 120 px disc on all six videos
  (0.94-0.98 of it in its core, 6.3-7.1 % at its centre). Before -> after (recall,
  deficit-weighted recall, flat rms in dust):
  - 8 % discs at 26 px drift: 0.43 -> 0.64, 0.51 -> 0.77, 4.75 -> 3.19 %; the core outside the
    dust 0.009 -> 0.050 % of the frame (on seed 1, 242 px in two pieces 7-8 px outside the
    70 px disc's edge, on its penumbra: transmission 0.998-0.999, where the score's support
    ends at 0.995);
  - at 40 px: 0.54 -> 0.64, 0.64 -> 0.76, 3.95 -> 2.83 %;
  - at 82 px: 0.74 -> 0.76, 0.86 -> 0.87, 2.67 -> 2.65 %.
  Elsewhere the lunar f/10 rows' flat rms in dust read 0.68 -> 0.69 % (core outside the dust
  0.441 -> 0.443 %) and the 8-bit planet's recall 0.81 -> 0.82; the other rows are identical.
  On the grid one small-Sun video lost 37 px of one shadow's rim in the ratio search (recall
  0.917 -> 0.886, deficit-weighted recall 0.993 -> 0.990, flat rms in dust 0.53 % both), the
  drifting f/30 flat's largest error in dust reads 1.8 -> 1.7 %, and on one f/10 video one
  more candidate is dropped as moving; every target is still met. Judged wide from its wide
  filters alone, whatever its peak, a region took a skirt on the grid's drifting f/10 donuts
  (about half the background's scale), whose deficit-weighted recall fell 0.89 -> 0.83, below
  the target: hence the condition on the peak.
- What is left there:
  - Where a deep shadow lies on the edge of a limb, the flat is forced to 1.0 on the pixels
    whose dust-free reference is below 5 % of the bright level (``FlatParams.dark_fraction``):
    there the dust stays in the data, and whether a pixel just at that level is measured
    turns on the reference's noise.
  - At 26-40 px drift the 8 % discs' recall is 0.57-0.70 per video. In the detector's core
    the 75 px disc across the limb in the corner is found on one video of six (0.70 of it,
    0-0.09 on the others), and on one video the 70 px disc at 40 px drift (0.19); the motion
    test cannot tell a shadow three to five times wider than the drift.
  - On one seed a 25 % deep, 90 px disc over a 40 px drift is judged to move: its deficit in
    the ratio is 0.49 of that in the median, against 0.5. The frames that see its part of the
    scene just outside its outline see it through its penumbra.
- Shadows cut by the frame's edge, and threads cut off every outline (2026-11-23; README, the
  classical eye). The lunar rows, run again, are identical but for f/10: core outside the dust
  0.443 -> 0.450 % of the frame, masked 10.91 -> 10.94 %. The other sets were not run again
  with this code.
- A guide in other units (2026-11-22). Where there is no dust-free prediction, the ratio of
  the median to it that the guided inpainting continues stood at 1.0, the value of a guide in
  the median's own units; the trend of a region's fill reaches out there. A colour plane at
  0.4 of the luminance's level that guides it was filled up to 38 % off (``test_inpaint``),
  and on a 320 x 240 RGB video whose planes had gains 1, 0.8 and 0.5 the flat's error in dust
  was 5.5, 1.0 and 20.8 % rms by plane. The ratio now stands at its median where there is a
  guide: 1.23, 1.48 and 2.25 % on that video. Mono videos, whose guide is in their own
  units, are unchanged but for one row here (phase 140 degrees, flat rms in dust 3.62 -> 3.61
  %); the grid, run again with this code, is identical in every quality column.
- Few frames (set 7, 2026-11-23). Over 3 and 5 frames the median keeps each frame's
  texture, and the motion test cannot show a candidate fixed on the sensor or moving with the
  scene: at most about a third of the frames may put a shadow on the same part of the scene,
  which one frame of three (or two neighbours of five) already does. The eye's candidates on
  the granulation stay undecided and are kept: 1.96 % and 2.12 % of a dust-free frame in the
  core (5.1-5.4 % masked), precision 0.47 and 0.40 with f/30 dust. From 8 frames nothing is
  masked without dust (precision 0.96 with dust at 8 frames, 0.99 at 16; flat rms in dust
  1.13 and 0.58 %). ``ser_median`` now warns below 8 frames (``FEW_VIDEO_FRAMES``).
- Large shadows, run again (2026-11-23) with the code after the frame-edge and thread rules
  (these rows were last recorded before them) and after the detector's noise thread: at 40 px
  drift the 8 % discs' recall 0.64 -> 0.68, deficit-weighted recall 0.76 -> 0.81, flat rms in
  dust 2.83 -> 2.49 % (core outside the dust 0.000 -> 0.033 %); at 82 px 2.65 -> 2.64 %; the
  other rows are unchanged. The same rows with and without the prediction's completion near
  the frame's edge (`science.flatfield.motion._completed_near`), to the table's last digit.
  On the 640 x 480 demo Sun (`sun_f30_drift`, classical pipeline), that completion guides a
  region 120 px from the frame's right edge along the prediction instead of continuing it:
  that shadow's flat rms 1.29 -> 0.49 % at the sample's 60 px drift (all three 0.86 -> 0.58
  %); at a 100 px drift another region is guided (0.53 -> 0.32 %), while the one 37 px from
  the top edge is judged on its ring and still continued (2.6 %).
- All sets run again (2026-11-23, the code of that date: the detector's noise thread, row
  bands and local feather, which are bit-identical, and the prediction's completion near the
  frame's edge). The sensor-defect videos' flat rms in dust fell 0.68 -> 0.55 % (without
  defects), 0.68 -> 0.55 % (with), 0.69 -> 0.56 % (gains on the median) and 0.85 -> 0.71 %
  (gains not kept). One dust-free seed of three (seed 2) with defects now has a false region:
  0.066 % of the frame in the core and 0.74 % masked on that seed (means 0.022 % and 0.25 %,
  above the grid's 0.1 % target for dust-free videos; it was nothing when the set was
  recorded on 2026-11-22). The dust-free vignetted Sun's core outside the dust 0.031 ->
  0.070 % (masked 0.20 -> 0.41 %), the 3- and 5-frame rows' flat rms in dust 2.00 -> 2.25 %
  and 1.51 -> 1.19 %, the gibbous planet's precision 0.98 -> 0.99; every other row is the
  same to its last digit. Bisected on that seed, the false region first appears with the rule
  that judges a shadow cut by the frame's edge by the better of its visible part and its
  mirror image across the edge (``dust``, 2026-11-22); the code just before it masks nothing
  there. Whether the vignetted Sun's larger false core has the same cause is not measured.
- Causes of those two false regions (2026-11-23, probes on the two seeds):
  - Sensor defects, seed 2. The region (14 x 11 px at rows 105-119, columns 501-512) lies on
    the right edge, where the limb runs just outside the frame; its deficit there is 1-2 %
    against about 0 a few pixels inside, and its matched-filter significance 5.5. It is not
    the mirror image (with ``_mirrored_across_frame_edges`` disabled it is found the same) but
    the other half of that rule: the responses on the frame's border band no longer suppress
    the maxima beside them. That border band's responses are judged against the noise of the
    whole tile, since ``_matched_significance`` splits its noise cells by the distance to
    unusable pixels only; on a frame the target fills, that distance is measured to the pixel
    above the top-left corner, so its bands are arcs around that corner. Counting the frame's
    border as unusable there (the padded mask ``_hysteresis`` already uses for its seeds), the
    region is gone (false core 0.066 % -> 0 on that seed). On a surface filling a 96 x 128
    frame whose outer 14 px carry 10 times the texture of the rest, false regions over 8 seeds
    fell 52 -> 12, and to 5 when a noise cell with too few samples (the band within one radius
    of a straight edge) takes the larger of its tile's spread and its band's spread over the
    frame. On the grid all targets stay met, but rows move: f10 donuts drifting precision
    0.88 -> 0.86, recall 0.93 -> 0.97, false-positive area 0.469 -> 0.598 %; f60 spots
    drifting precision 0.95 -> 1.00, recall 0.85 -> 0.81; planet recall 0.79 -> 0.81. Two
    ratio-search tests of ``test_motion.py`` failed with it, and a third with the fallback;
    the next finding says why and what is now in the code.
  - Strong vignetting, seed 2. Both false regions come from the ratio search, not the eye:
    shadows 3.1-3.5 % deep in the ratio (significance 11-17) in the top-right and bottom-left
    corners, the corners along the drift of (-68, +49) px, where the response misses the 70 %
    fall-off (why it misses is found below: not its degree). The top-right one is found with
    or without the mirror rule; the bottom-left one, a wedge cut by both edges along a
    diagonal, passes the shape prior only as judged with its pockets filled and mirrored
    (filled: solidity 0.88, elongation 1.92; as outlined it fails). Leaving the ratio
    unsearched where the response is extrapolated does not help: the pixels no pair of frames
    compares are the two other corners (top-left and bottom-right, 33 x 24 px each).
- The frame's border bounds the noise bands (2026-11-23, ``dust._squared_distance_to_edge``).
  Of the three ratio-search tests that failed with it, one was a real loss: a 28 px shadow,
  now 29 times the noise at its centre instead of 9 (its own response no longer sets the
  noise of an arc-shaped band it filled), was outlined along the 1-2 px edge of a scene bar's
  remnant in the ratio into the remnant and declined as not round. The ratio search's
  outlines are now cut of threads narrower than the smallest filter, as the median's are.
  The fallback over the frame applies only to the two bands one radius wide: over a small
  frame the wider bands held little but a large shadow's surroundings, which made the
  third test's 28 px, 20 % shadow three deep pieces. The second test's extra shadow was a
  bar remnant at the frame's edge 0.5 % deep at 1.9 times the ratio's noise around it,
  which ``min_ratio_significance`` (3) drops; that test now searches as the motion test
  does. The first test found the shadow in the first ratio already, at 2.3 % of its 6 %
  (none before), and now asserts that depth.
- Strong vignetting, the cause (2026-11-23). The degree of the response was not it: fitted
  to the same frames, degree 8 put the response within 0.7 % of the truth at those corners
  where degree 4 missed by 9 %, yet the ratio there still read 0.80-0.87 and both regions
  stayed (with the true response divided out instead, the ratio read 1.00-1.02 and nothing
  was found). The motion test sampled the response only where both frames of a pair were
  above the detector's target level (``dark_fraction``, 0.4 of the bright level); the
  corners along the drift, vignetted to 30 %, were left unmeasured and the response held at
  its value at the samples' edge, 22 % too bright there, while the ratio search looks
  wherever the prediction reaches 0.4. The response is now sampled wherever the frames are
  lit (its own ``dark_fraction``, 0.05). On a 256 x 192 version (``test_motion``), the old
  sampling gave 283 and 506 px of false shadow on two seeds of four, now none.
- All sets run again with both changes (2026-11-23). Before -> after, the rows that moved:
  - strong vignetting, dust-free: core outside the dust 0.070 -> 0.000 %, masked 0.41 ->
    0.00 %; with f/30 dust precision 0.89 -> 1.00, core outside the dust 0.072 -> 0.002 %,
    masked 4.72 -> 4.32 %, recall 0.88 -> 0.89, flat rms in dust 0.51 % both;
  - sensor defects, dust-free with defects (all three variants): core outside the dust
    0.022 -> 0.000 %, masked 0.25 -> 0.00 %; with dust and defects recall 0.90 -> 0.89;
  - lunar f/10: precision 0.89 -> 0.88, recall 0.87 -> 0.95, deficit-weighted recall 0.89
    -> 0.95, flat rms in dust 0.69 -> 0.53 %, core outside the dust 0.450 -> 0.521 %; f/60
    precision 0.94 -> 0.91, recall 0.82 -> 0.84, core outside the dust 0.009 -> 0.014 %;
  - large shadows: 8 % discs at 40 px drift recall 0.68 -> 0.65, deficit-weighted recall
    0.81 -> 0.77, flat rms in dust 2.49 -> 2.97 % (seed 0 loses the 90 px disc at row 120,
    column 380, deficit-weighted recall 0.79 -> 0.56, while seed 1 gains, 0.78 -> 0.88); at
    26 px flat rms 3.19 -> 3.02 %; 15 % donuts at 82 px recall 0.86 -> 0.83, at 40 px flat
    rms 2.15 -> 2.04 %. These come from the noise bands: with the bands of the code before
    (and the threads cut) the 8 % row at 40 px reads 0.68, 0.81 and 2.49 % again. The eye
    no longer finds that disc in the median: its 10 and 14 px filters judge it in the band
    beyond 8 radii of the frame's border, a smaller part of its tile than the arcs' band was,
    so the disc's own response weighs more in that cell's spread (6.5e-3 -> 9.3e-3 for the
    10 px filter) and its peak falls from 6.04 to 4.86 sigma, under the seed level of 5;
  - a planet in phase: 100 degrees flat rms in dust 1.03 -> 1.10 %, 140 degrees 3.61 ->
    2.79 %;
  - 8 bits: the planet with the exact median flat rms in dust 10.37 -> 13.09 % (also from
    the noise bands; the interpolated median's 10.24 % is unchanged), the Sun at 8 bits
    recall 0.90 -> 0.92;
  - few frames: with f/30 dust over 3 frames precision 0.47 -> 0.21, core outside the dust
    1.44 -> 1.95 % (dust-free 1.96 -> 2.08 %; ``ser_median`` warns below 8 frames); at 5
    and 16 frames within 0.01 in precision and recall.
  Every other row moved by at most 0.03 in precision or recall and 0.07 points in flat rms
  in dust (the table against the one recorded before).
- The eye's local noise sigma-clipped (2026-11-23; the lunar and large-shadow sets run
  again, the table above not recorded again): the 8 % discs at 40 px drift recall 0.65 ->
  0.71, deficit-weighted recall 0.77 -> 0.85, flat rms in dust 2.97 -> 2.4 % (seed 0 finds
  the 90 px disc again: 0.56 -> 0.79); at 82 px 0.76 -> 0.74, 0.87 -> 0.85, 2.65 -> 2.6 %;
  15 % donuts recall 0.83 -> 0.85 (82 px), 0.79 -> 0.81 (40 px), 0.80 -> 0.83 (26 px),
  core outside the dust 0.36-0.44 -> 0.4-0.5 %; the 25 % discs and the lunar rows within
  0.01 in precision and recall.
- Clouds (set 8, new, 2026-11-23). A frame dimmed by a cloud weighs in the dust-free
  prediction of some pixels and not of others, and the ratio to it showed shadows that are
  not there: without the frames' transparency divided out, precision 0.68 (4 frames at
  30 %) and 0.71 (10 at 60 %), false shadow over 0.25 % of the frame, flat rms in dust 3.7
  and 4.8 %; under a haze from 100 to 60 % the prediction is darker where the later frames
  weigh in, and recall fell to 0.71 (flat rms 4.7 %). Divided out (frames under half the
  light left out): precision 0.98-0.99, recall 0.88-0.90, flat rms in dust 0.55-0.58 %, as
  on the clear video of set 6 (0.99, 0.89, 0.55 %); nothing masked on the dust-free videos.
  The gains are measured to 0.1 % of the truth (``test_transparency``).
- Three blank frames at the start of the capture. Before, the drift was registered against
  the blank first frame: on seed 0 it read 108 px for 83 (precision 0.61, flat rms in dust
  7 %), on seed 1 it was not registered (every candidate undecided). The drift measurement
  left them out (precision 0.99, recall 0.80, flat rms in dust 3.97 %; seed 0 11.0 %: it
  lost an 18 % shadow of 435 px at the frame's left edge, which only the ratio shows, as
  the blank frames in the median moved the eye's candidates).
- Blank frames left out of the median too (2026-11-23; ``ser_median``'s
  ``min_signal_fraction``, every frame screened): the row above recall 0.80 -> 0.90, flat
  rms in dust 3.97 -> 1.78 %, seed 0 11.0 -> 4.37 % (0.39 and 0.58 % on the others). Seed 0
  is now what the same video cut to frames 3-39 gives (the edge shadow's flat rms 6.22
  against 6.20 %): the shadow is found (0.81 of its pixels) and its ratio to the dust-free
  prediction is right to 0.9 % rms, but it lies on the disc's edge in the median, where the
  disc was off the frame for part of the video: on 23 % of its pixels the dust-free level is
  under 5 % of the bright level, where no flat is measured and it is 1.0 by design (5.5 % of them
  with all 40 frames lit, flat rms 1.6 %).
  Every other row is as recorded before: no frame of the other videos is left out. Since
  the drift is sampled from the frames the median kept (set 8 run again), this row's masked
  area is 4.34 % (4.35 %) and seed 0's flat rms in dust 4.35 % (4.37 %); the others as above.
- Cloud most of the time (2026-11-24, two new rows; set 8's other rows ran again identical). With
  30 of 40 frames at 40 % the clear frames still set the typical frame's spread, and every
  frame is kept (a fifth of it is the threshold); with every frame at 30-100 % (passing
  clouds) as well. Precision 0.99, recall 0.89 and 0.88, deficit-weighted recall 0.99, flat
  rms in dust 0.63 and 0.99 % (the worst seed 1.73 %, passing clouds), nothing masked on the
  dust-free videos. Without the transparency divided out: precision 0.94 and 0.84, flat rms
  in dust 2.37 and 5.00 % (11 % on one seed of the passing clouds, recall 0.52 there).
- The other sets run again with the transparency divided out, against the code before it
  (the sets that the table above had not yet recorded since the clipping of the eye's noise
  were run with that code too): only the phase rows moved, 100 degrees flat rms in dust
  1.11 -> 1.05 % and recall 0.77 -> 0.76, 140 degrees 2.25 -> 1.90 %. On the clear videos
  the gains lie within 0.03-0.2 % of 1 and are taken as 1 (``GAIN_TOLERANCE``); divided out,
  they had taken the lunar f/10 core outside the dust from 0.52 to 0.58 % and the strong
  vignetting row's precision from 1.00 to 0.96 (before the gains were measured again on
  frames divided by the response). The table above is the first record since the clipping:
  the large-shadow rows hold its changes (above), and with it the planet's recall fell from
  0.82 to 0.79 at 16 and 8 bits, the 8-bit planet's flat rms in dust with the exact median
  from 13.08 to 10.37 %, the 140 degree crescent's from 2.79 to 2.25 % and the 5-frame
  video's precision from 0.41 to 0.39; the other rows moved by at most 0.01 in precision and
  recall and 0.2 points of flat rms in dust.
- Every set run again (2026-11-24) after the inpainting guide completes the prediction
  around a held-out ring it misses in part (`motion._judge_on_ring`). Two kinds of rows
  moved, in flat rms in dust only: the lunar texture at f/30 0.33 -> 0.30 % and at f/60
  0.50 -> 0.48 % (its worst seed 0.52 -> 0.47 %), and the Sun under passing clouds (every
  frame at 30-100 %) 0.99 -> 0.66 %, its worst seed 1.73 -> 0.81 %. Every other row,
  precision, recall and masked area included, is identical to the last digit.
- Every set run again (2026-11-24) after the detector measures a noise cell, tile or band
  that the footprints of sources cover by half or more as one with too few samples
  (`dust._local_spread`). Rows that moved: the large shadows found more of themselves (8 %
  discs at 82 px: recall 0.74 -> 0.76, deficit-weighted 0.85 -> 0.88; 15 % donuts at 40 px:
  recall 0.81 -> 0.83; at 26 px: 0.83 -> 0.86, precision 0.97 -> 0.96, flat rms in dust 2.12
  -> 2.10 %), with their core outside dust up by at most 0.12 points and their masked area by
  0.1-0.8 points; the uncorrected transparency rows lost false area (every frame at 30-100 %:
  precision 0.84 -> 0.95, flat rms in dust 5.00 -> 4.88 %, core outside dust 0.073 -> 0.030
  %; 10 frames at 60 %: 4.82 -> 4.79 %); the planet at 60 degrees 0.96 -> 0.97 %; the 3- and
  5-frame videos' false area fell by 0.01-0.02 points. The other rows are identical.
"""


@functools.cache
def _lunar_scene() -> np.ndarray:
    """The enlarged, blurred photograph, 1.0 at its 99.5th percentile before the blur (read
    only: every video shifts it)."""
    scene = np.clip(ndimage.zoom(skimage.data.moon().astype(np.float64), 2.0, order=3), 0, None)
    scene = ndimage.gaussian_filter(scene / np.percentile(scene, 99.5), 1.0)
    scene.flags.writeable = False
    return scene


def _lunar_video(focal_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (n, h, w) uint16, transmission (h, w) and the noiseless scene at zero shift
    (h, w), 1.0 at the 99.5th percentile of the enlarged photograph."""
    scene = _lunar_scene()
    height, width = LUNAR_SHAPE
    rng = np.random.default_rng(seed)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    along = np.linspace(-0.5, 0.5, LUNAR_FRAMES)[:, np.newaxis]
    shifts = LUNAR_DRIFT_PX * along * np.array([np.sin(angle), np.cos(angle)])
    shifts += 0.8 * rng.standard_normal(shifts.shape)
    top, left = (scene.shape[0] - height) // 2, (scene.shape[1] - width) // 2
    params = SolarVideoParams(
        width=width,
        height=height,
        n_frames=2,
        focal_ratio=focal_ratio,
        n_sunspots=0,
        disk_radius_frac=5.0,
        seed=seed,
    )
    transmission = dust_transmission(random_dust(params), LUNAR_SHAPE).astype(np.float64)
    electrons = FULL_WELL * vignetting_map(LUNAR_SHAPE, 0.1) * transmission
    gain = (0.7 * 65535 - BLACK_ADU) / FULL_WELL
    frames = np.empty((LUNAR_FRAMES, height, width), dtype=np.uint16)
    for index, (dy, dx) in enumerate(shifts):
        moved = ndimage.shift(scene, (dy, dx), order=3, mode="nearest")
        crop = np.clip(moved[top : top + height, left : left + width], 0.0, None)
        adu = BLACK_ADU + gain * rng.poisson(electrons * crop)
        adu += 3.0 * gain * rng.standard_normal(adu.shape)
        frames[index] = np.clip(np.rint(adu), 0, 65535)
    return frames, transmission, scene[top : top + height, left : left + width]


def _scores(outcome: dict, transmission: np.ndarray, lit: np.ndarray) -> dict:
    support = (transmission < 0.995) & lit
    transmission = np.where(lit, transmission, 1.0)
    core = outcome["core"]
    scores = metrics.mask_scores(core, support)
    return {
        "precision": scores["precision"],
        "recall": scores["recall"],
        "dwr": metrics.deficit_weighted_recall(core, transmission),
        "flat_rms": metrics.flat_errors(outcome["flat"].flat, transmission, support)["rms"],
        "false_core": float(np.mean(core & ~support)),
        "masked": float(np.mean(outcome["mask"] > 0)),
        "undecided": sum(v.undecided for v in outcome["separated"].verdicts),
    }


def _video_params(seed: int, **overrides) -> SolarVideoParams:
    """The generated sets' video, 40 frames of 512 x 384 px with 0.8 px of jitter, with
    ``overrides``."""
    return SolarVideoParams(
        **{"width": 512, "height": 384, "n_frames": 40, "jitter_px": 0.8, "seed": seed, **overrides}
    )


def _generated(params: SolarVideoParams) -> tuple[np.ndarray, Any, np.ndarray]:
    """Frames (n, h, w) uint16, the truth, and the pixels its scene lights."""
    video = SyntheticSolarVideo(params)
    frames = np.stack([video.frame(i) for i in range(params.n_frames)])
    truth = video.truth
    return frames, truth, truth.scene > 0.05 * np.percentile(truth.scene, 99)


def _synthetic_scores(
    params: SolarVideoParams,
    *,
    lit_in_median: bool = False,
    motion: MotionTestParams | None = None,
) -> dict:
    """The classical pipeline on a generated video, scored on the pixels its scene lights
    (with ``lit_in_median``, only those its dust-free median lights too: see
    :func:`_lit_in_median`); ``dust_px`` counts the dust pixels scored. ``motion``: the motion
    test's parameters (its defaults when None)."""
    frames, truth, lit = _generated(params)
    outcome = classical_flat(frames, truth.black_level_adu, motion=motion)
    if lit_in_median:
        lit &= _lit_in_median(params)
    scores = _scores(outcome, truth.transmission, lit)
    return {**scores, "dust_px": int(np.count_nonzero((truth.transmission < 0.995) & lit))}


def _lit_in_median(params: SolarVideoParams) -> np.ndarray:
    """Where the noiseless median of the video without dust is above ``FlatParams``'s
    ``dark_fraction`` of its signal level: the only pixels where a flat is measured at all. A
    thin crescent drifting across its own width leaves most of its scene dark there."""
    clean = SyntheticSolarVideo(dataclasses.replace(params, dust=()))
    median = np.median([clean.expected_electrons(i) for i in range(params.n_frames)], axis=0)
    return median > FlatParams().dark_fraction * signal_level(median)


def _mean(rows: list[dict]) -> dict:
    return {key: statistics.fmean(row[key] for row in rows) for key in rows[0]}


def _row(name: str, score: dict) -> str:
    return (
        f"| {name} | {score['precision']:.2f} | {score['recall']:.2f} | {score['dwr']:.2f} | "
        f"{100 * score['flat_rms']:.2f} % | {100 * score['false_core']:.3f} % | "
        f"{100 * score['masked']:.2f} % | {score['undecided']:.1f} |"
    )


HEADER = (
    "| case | precision | recall | deficit-weighted recall | flat rms in dust | "
    "core outside dust | masked (expanded) | undecided candidates |\n"
    "|---|---|---|---|---|---|---|---|"
)


def lunar_rows() -> list[str]:
    rows = []
    for focal_ratio in (10.0, 30.0, 60.0):
        per_seed = []
        for seed in SEEDS:
            frames, transmission, scene = _lunar_video(focal_ratio, seed)
            outcome = classical_flat(frames, BLACK_ADU)
            per_seed.append(_scores(outcome, transmission, scene > 0.05))
            print(f"lunar f/{focal_ratio:g} seed {seed}: {per_seed[-1]}", flush=True)
        rows.append(_row(f"lunar texture, f/{focal_ratio:g}", _mean(per_seed)))
        worst = min(per_seed, key=lambda score: score["precision"])
        rows.append(_row(f"lunar texture, f/{focal_ratio:g}, worst seed", worst))
    return rows


def large_rows() -> list[str]:
    rows = []
    for drift in LARGE_DRIFTS_PX:
        for kind, depth in LARGE_KINDS:
            dust = tuple(
                DustSpec(x=col, y=row, diameter_px=diameter, depth=depth, kind=kind)
                for row, col, diameter in LARGE_LAYOUT
            )
            per_seed = []
            for seed in SEEDS:
                params = _video_params(seed, drift_px=drift, dust=dust, n_sunspots=0)
                per_seed.append(_synthetic_scores(params))
                print(f"large {kind} {depth} drift {drift:g} seed {seed}: {per_seed[-1]}")
            name = f"{depth:.0%} {kind}s 70-120 px, drift {drift:g} px"
            rows.append(_row(name, _mean(per_seed)))
    return rows


PHASE_ANGLES_DEG = (60.0, 100.0, 140.0)
PHASE_LAYOUT = ((0.93, 0.0), (0.8, 0.35), (0.5, -0.5), (0.2, 0.2))
"""Shadow centres in units of the planet's radius from its centre (x to the light, y down)."""


def phase_rows() -> list[str]:
    radius = 0.3 * 384
    dust = tuple(
        DustSpec(
            x=256 + radius * x,
            y=192 + radius * (1.0 - PLANET_FLATTENING) * y,
            diameter_px=10.0,
            depth=0.8,
            kind="disc",
        )
        for x, y in PHASE_LAYOUT
    )
    rows = []
    for angle in PHASE_ANGLES_DEG:
        per_seed = []
        for seed in SEEDS:
            params = _video_params(
                seed,
                target="planet",
                disk_radius_frac=0.3,
                disk_center_frac=(256 / 511, 192 / 383),
                phase_angle_deg=angle,
                dust=dust,
                drift_px=83.0,
            )
            per_seed.append(_synthetic_scores(params, lit_in_median=True))
            print(f"phase {angle:g} seed {seed}: {per_seed[-1]}", flush=True)
        with_dust = [score for score in per_seed if score["dust_px"]]
        # Dust the median leaves dark cannot be found, nor its flat measured: recall and flat
        # error are means over the seeds with lit dust, the rest over every seed.
        score = _mean(per_seed)
        lit_only = _mean(with_dust) if with_dust else dict.fromkeys(score, float("nan"))
        score.update({key: lit_only[key] for key in ("recall", "dwr", "flat_rms")})
        name = (
            f"planet f/60, phase {angle:g} deg, drift 83 px "
            f"({len(with_dust)} of {len(per_seed)} seeds with dust lit in the median)"
        )
        rows.append(_row(name, score))
    return rows


EIGHT_BIT_CASES = (
    ("planet f/60", {"target": "planet", "focal_ratio": 60.0}),
    ("Sun f/30", {"focal_ratio": 30.0, "n_sunspots": 0}),
)
EIGHT_BIT_FRAMES = 100


def eight_bit_rows() -> list[str]:
    runs = (
        ("16 bits", False, False),
        ("8 bits, exact median", True, False),
        ("8 bits, interpolated median", True, True),
    )
    rows = []
    for name, case in EIGHT_BIT_CASES:
        per_run: dict[str, list[dict]] = {label: [] for label, *_ in runs}
        for seed in SEEDS:
            params = _video_params(seed, n_frames=EIGHT_BIT_FRAMES, drift_px=83.0, **case)
            frames, truth, lit = _generated(params)
            lit &= _lit_in_median(params)
            for label, eight_bit, interpolate in runs:
                data, black = frames, truth.black_level_adu
                if eight_bit:
                    data = np.clip(np.rint(frames / 256.0), 0, 255).astype(np.uint8)
                    black = truth.black_level_adu / 256.0
                outcome = classical_flat(data, black, interpolate_levels=interpolate)
                per_run[label].append(_scores(outcome, truth.transmission, lit))
                print(f"{name} seed {seed} {label}: {per_run[label][-1]}", flush=True)
        for label, *_ in runs:
            rows.append(_row(f"{name}, drift 83 px, {label}", _mean(per_run[label])))
    return rows


STRONG_VIGNETTING = 0.7


def vignetting_rows() -> list[str]:
    rows = []
    for name, dust in (("f/30", {}), ("dust-free", {"dust": ()})):
        per_seed = []
        for seed in SEEDS:
            params = _video_params(
                seed,
                focal_ratio=30.0,
                n_sunspots=0,
                drift_px=83.0,
                disk_radius_frac=5.0,
                vignetting=STRONG_VIGNETTING,
                **dust,
            )
            per_seed.append(_synthetic_scores(params))
            print(f"vignetting {name} seed {seed}: {per_seed[-1]}", flush=True)
        label = f"Sun surface, {name}, {STRONG_VIGNETTING:.0%} vignetting, drift 83 px"
        rows.append(_row(label, _mean(per_seed)))
    return rows


FEW_FRAME_COUNTS = (3, 5, 8, 16)


def few_frame_rows() -> list[str]:
    rows = []
    for n_frames in FEW_FRAME_COUNTS:
        for name, dust in (("f/30", {}), ("dust-free", {"dust": ()})):
            per_seed = []
            for seed in SEEDS:
                params = _video_params(
                    seed, n_frames=n_frames, focal_ratio=30.0, drift_px=83.0, **dust
                )
                per_seed.append(_synthetic_scores(params))
                print(f"{n_frames} frames {name} seed {seed}: {per_seed[-1]}", flush=True)
            rows.append(_row(f"Sun, {name}, drift 83 px, {n_frames} frames", _mean(per_seed)))
    return rows


CLOUD_FRAMES = 40


def cloud_transparency(kind: str, seed: int) -> tuple[float, ...]:
    """Each frame's share of the light for the clouds of set 8, frames drawn from ``seed``."""
    rng = np.random.default_rng([seed, 8])
    shares = np.ones(CLOUD_FRAMES)
    if kind == "thick":
        shares[rng.choice(CLOUD_FRAMES, 4, replace=False)] = 0.3
    elif kind == "thin":
        shares[rng.choice(CLOUD_FRAMES, 10, replace=False)] = 0.6
    elif kind == "haze":
        shares = np.linspace(1.0, 0.6, CLOUD_FRAMES)
    elif kind == "blank":
        shares[:3] = 0.0
    elif kind == "mostly thin":
        shares[rng.choice(CLOUD_FRAMES, 30, replace=False)] = 0.4
    elif kind == "passing":
        shares = rng.uniform(0.3, 1.0, CLOUD_FRAMES)
    return tuple(float(share) for share in shares)


CLOUD_KINDS = {
    "thick": "4 frames at 30 %",
    "thin": "10 frames at 60 %",
    "haze": "haze 100 -> 60 %",
    "blank": "3 blank frames first",
    "mostly thin": "30 of 40 frames at 40 %",
    "passing": "every frame at 30-100 %",
}


def cloud_rows() -> list[str]:
    rows = []
    uncorrected = MotionTestParams(transparency_correction=False)
    for kind, label in CLOUD_KINDS.items():
        runs = [("f/30", {}, None), ("dust-free", {"dust": ()}, None)]
        runs.append(("f/30, transparency not divided out", {}, uncorrected))
        for name, dust, motion in runs:
            per_seed = []
            for seed in SEEDS:
                params = _video_params(
                    seed,
                    n_frames=CLOUD_FRAMES,
                    focal_ratio=30.0,
                    n_sunspots=0,
                    drift_px=83.0,
                    transparency=cloud_transparency(kind, seed),
                    **dust,
                )
                per_seed.append(_synthetic_scores(params, motion=motion))
                print(f"clouds {kind} {name} seed {seed}: {per_seed[-1]}", flush=True)
            rows.append(_row(f"Sun, {name}, drift 83 px, {label}", _mean(per_seed)))
    return rows


SEEING_SCALE_PX = 32.0


def seeing_rows() -> list[str]:
    rows = []
    unchecked = MotionTestParams(min_lit_fraction=0.0)
    runs = (
        ("f/30", {}, 0.75, None),
        ("f/30", {}, 1.5, None),
        ("f/30", {}, 1.5, unchecked),
        ("f/30", {}, 2.5, None),
        ("f/30", {}, 2.5, unchecked),
        ("dust-free", {"dust": ()}, 1.5, None),
    )
    for name, dust, warp, motion in runs:
        per_seed = []
        for seed in SEEDS:
            params = _video_params(
                seed,
                focal_ratio=30.0,
                drift_px=83.0,
                seeing_warp_px=warp,
                seeing_scale_px=SEEING_SCALE_PX,
                **dust,
            )
            per_seed.append(_synthetic_scores(params, motion=motion))
            print(f"seeing {warp} {name} {motion is None} seed {seed}: {per_seed[-1]}", flush=True)
        label = f"Sun, {name}, drift 83 px, seeing {warp:g} px rms"
        if motion is not None:
            label += ", not checked frame by frame"
        rows.append(_row(label, _mean(per_seed)))
    return rows


def sensor_defects(frames: np.ndarray, seed: int) -> np.ndarray:
    """``frames`` (n, h, w) uint16 with the sensor defects of set 6, drawn from ``seed``."""
    rng = np.random.default_rng(100 + seed)
    count, height, width = frames.shape
    out = frames.astype(np.float64)
    flat = out.reshape(count, -1)
    hot = rng.choice(height * width, size=int(5e-4 * height * width), replace=False)
    flat[:, hot] += rng.uniform(2000.0, 30000.0, size=hot.size)
    cold = rng.choice(height * width, size=int(1e-4 * height * width), replace=False)
    flat[:, cold] *= 0.1
    out[:, :, width // 3] *= 0.96
    out[:, height // 2, :] *= 0.97
    for column in rng.choice(width - 2, size=6, replace=False):
        out[:, :, column : column + rng.integers(1, 3)] *= rng.uniform(0.9, 0.99)
    for column in rng.choice(width, size=3, replace=False):
        out[:, :, column] += rng.uniform(200.0, 2000.0)
    for row in rng.choice(height, size=3, replace=False):
        out[:, row, :] *= rng.uniform(0.95, 0.99)
    out += rng.normal(0.0, 20.0, size=(count, height, 1))
    return np.clip(np.rint(out), 0, 65535).astype(np.uint16)


def defect_rows() -> list[str]:
    rows = []
    variants = (
        ("without sensor defects", False, "ratio"),
        ("with sensor defects", True, "ratio"),
        ("with sensor defects, line gains measured on the median", True, "median"),
        ("with sensor defects, line gains not kept in the fill", True, "off"),
    )
    for name, dust in (("f/30", {}), ("dust-free", {"dust": ()})):
        for variant, defects, line_defects in variants:
            per_seed = []
            for seed in SEEDS:
                params = _video_params(seed, focal_ratio=30.0, n_sunspots=0, drift_px=82.0, **dust)
                frames, truth, lit = _generated(params)
                if defects:
                    frames = sensor_defects(frames, seed)
                outcome = classical_flat(frames, truth.black_level_adu, line_defects=line_defects)
                per_seed.append(_scores(outcome, truth.transmission, lit))
                print(f"{variant}, {name}, seed {seed}: {per_seed[-1]}", flush=True)
            rows.append(_row(f"Sun, {name}, drift 82 px, {variant}", _mean(per_seed)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="update benchmarks/README.md")
    parser.add_argument(
        "--set",
        choices=(
            "lunar",
            "large",
            "phase",
            "eight",
            "vignetting",
            "defects",
            "frames",
            "clouds",
            "seeing",
        ),
        help="run one set only",
    )
    args = parser.parse_args()
    intro = (
        "`quality_flatfield_beyond.py`: the classical pipeline with default parameters on "
        "videos the grid does not hold (see the script's docstring), mean over seeds "
        f"{list(SEEDS)}; the worst seed by precision is shown for the lunar texture."
    )
    rows = lunar_rows() if args.set in (None, "lunar") else []
    rows += large_rows() if args.set in (None, "large") else []
    rows += phase_rows() if args.set in (None, "phase") else []
    rows += eight_bit_rows() if args.set in (None, "eight") else []
    rows += vignetting_rows() if args.set in (None, "vignetting") else []
    rows += defect_rows() if args.set in (None, "defects") else []
    rows += few_frame_rows() if args.set in (None, "frames") else []
    rows += cloud_rows() if args.set in (None, "clouds") else []
    rows += seeing_rows() if args.set in (None, "seeing") else []
    body = "\n".join([intro, "", HEADER, *rows, "", FINDINGS.rstrip("\n"), ""])
    print(body)
    if args.record and args.set is None:
        README.write_text(replace_section(README.read_text(), HEADING, body))


if __name__ == "__main__":
    main()
