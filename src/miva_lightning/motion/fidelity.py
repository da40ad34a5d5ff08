"""Motion fidelity: how much of an intended motion a clip shows, and at what speed (1 = all of it).

The class judge answers "which motion?" and calls a clip static below a speed floor, so a sample that
zooms out at half the data's rate and one that does not move both count as misses. Fidelity is the
continuous answer beside it:

- camera motions: the clip's fitted global motion g = (dx, dy, ln s R, a R) (reference px/frame,
  medians over frame pairs, R = the judge's TYPICAL_RADIUS_PX) projected on the class's nominal motion
  m at the world's class speed: <g, m> / <m, m>. 1 = the right motion at the class speed, 0.5 = half
  speed, 0 = no motion (or only motion at right angles to it), < 0 = the opposite motion (zoom in
  for zoom out). Motion along other directions does not lower it: the class judge covers that.
- local motions with one direction (rain, waterfall: down; birds, clouds: sideways, either heading,
  since the world draws it at random): the moving pixels' mean flow along that direction / the class
  speed, and 0 when a camera motion explains the change (the whole frame moves; no layer does).
  Limits (measured in benchmarks/bench_estimator.py): only pixels faster than MOVING_PX count, so a
  layer slower than ~0.5 px/frame reads 0, and the share of the frame that moves is not in it.
- firework (radial, no single direction) and static (nothing to be faithful to) have no fidelity: NaN.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from miva_lightning.motion.classify import CAMERA_GAIN, TYPICAL_RADIUS_PX
from miva_lightning.motion.estimator import MotionEstimate, estimate_motion
from miva_lightning.world import motions as M

# direction of the moving pixels' flow (x right, y down) and class speed, reference px/frame
LOCAL_DIRECTIONS = {
    "rain": ((0.0, 1.0), M.RAIN_SPEED_PX),
    "waterfall": ((0.0, 1.0), M.WATERFALL_SPEED_PX),
    "birds": ((1.0, 0.0), M.BIRD_SPEED_PX),
    "clouds": ((1.0, 0.0), M.CLOUD_SPEED_PX),
}
SIGN_FREE = ("birds", "clouds")  # the world draws their heading left or right at random


def nominal_camera_vector(motion: str) -> np.ndarray:
    """m = (dx, dy, ln s R, a R) of a camera class at its world speed, reference px/frame."""
    M.check_motion(motion)
    if motion not in M.CAMERA_MOTIONS or motion == "static":
        raise ValueError(f"{motion!r} has no camera motion vector; use one of {', '.join(M.CAMERA_MOTIONS[1:])}")
    vector = np.zeros(4)
    if motion in M.PAN_DIRECTIONS:
        vector[:2] = np.array(M.PAN_DIRECTIONS[motion]) * M.PAN_SPEED_PX
    elif motion.startswith("zoom"):
        vector[2] = math.log(1 + M.ZOOM_RATE) * TYPICAL_RADIUS_PX * (1 if motion == "zoom_in" else -1)
    else:
        vector[3] = math.radians(M.ROTATE_DEG) * TYPICAL_RADIUS_PX * (1 if motion == "rotate_cw" else -1)
    return vector


def motion_vector(dx: float, dy: float, scale: float, angle_deg: float) -> np.ndarray:
    """(dx, dy, ln s R, a R) of a similarity motion given in reference px/frame, scale and degrees per frame."""
    return np.array(
        [dx, dy, math.log(max(scale, 1e-6)) * TYPICAL_RADIUS_PX, math.radians(angle_deg) * TYPICAL_RADIUS_PX]
    )


def global_motion_vector(estimate: MotionEstimate) -> np.ndarray:
    """g of an estimate's fitted global motion (medians over frame pairs)."""
    s = estimate.summary
    return motion_vector(s.dx, s.dy, s.scale, s.angle_deg)


def speed_fraction(vector: np.ndarray, motion: str) -> float:
    """A motion vector projected on `motion`'s nominal vector, over that vector's size squared."""
    target = nominal_camera_vector(motion)
    return float(vector @ target / (target @ target))


def fidelity_of_estimate(estimate: MotionEstimate, motion: str) -> float:
    """`motion_fidelity` from an existing estimate (see the module docstring); NaN when undefined."""
    M.check_motion(motion)
    if motion == "static" or motion == "firework":
        return math.nan
    if motion in M.CAMERA_MOTIONS:
        return speed_fraction(global_motion_vector(estimate), motion)
    if estimate.span_gain >= CAMERA_GAIN:  # a camera motion explains the change: no layer moves alone
        return 0.0
    (ux, uy), speed = LOCAL_DIRECTIONS[motion]
    along = estimate.summary.moving_dx * ux + estimate.summary.moving_dy * uy
    return float((abs(along) if motion in SIGN_FREE else along) / speed)


def motion_fidelity(video: Tensor, motion: str) -> float:
    """How much of `motion` the clip `f c h w` (float in [0, 1], any size) shows: 1 = the world's class
    speed, 0 = none, < 0 = the opposite; NaN for static and firework (see the module docstring)."""
    M.check_motion(motion)
    return fidelity_of_estimate(estimate_motion(video), motion)
