"""Classify a clip into the world's motion classes from its `MotionEstimate` (rules, no weights).

Decision, in order (thresholds are readable constants below; the margins quoted are the ranges
measured on held-out world clips at 32 and 64 px, 6-10 clips per class, medians over frame pairs):
1. "invalid": some consecutive frames correlate below 0.5 (noise or unrelated frames). Never correct.
2. "static": the largest flows stay below STILL_PX (still world clips and photos: top-5 % flow
   <= 0.04 px; the slowest camera motion the judge must see, zoom out at 0.35x its class speed,
   >= 0.30 px on world scenes). A clip that repeats its first frame lands here.
3. camera: the fitted global motion explains the image change over half the clip in every half of
   the frame (`span_gain` >= CAMERA_GAIN; camera classes measured >= 0.84 clean and >= 0.45 with
   5 % pixel noise, >= 0.58 at 0.25x class speed; local classes <= 0.08 either way). The class is the
   largest of translation |t|, zoom |ln s| R and rotation |a| R, with R = TYPICAL_RADIUS_PX
   (the displacement each causes at a typical distance from the centre), then its sign:
   content flowing right = the camera pans LEFT (world convention, see world/motions.py).
   A camera motion is seen when that largest part reaches MIN_GLOBAL_PX and the frame pairs agree
   on its sign (STEADY_PAIRS): the speed sweep in benchmarks/bench_estimator.py chose the floor
   (slowest required case, zoom out at 0.35x: >= 0.19 px on world scenes; still clips with 5 % pixel
   noise <= 0.12 px), and the agreement keeps a shaking camera (random jitter, no net motion) static.
   When the global motion explains the change but is below the floor, the clip is "static", never a
   local class: a slow zoom of a photo with radial structure used to fall through to "firework".
4. local (a layer moving over a still scene), from the moving pixels' flow:
   - firework: flow points away from its centre (divergence >= 0.5; firework >= 0.69, others <= 0.07)
     in many directions (coherence < 0.8; firework <= 0.58, other local classes >= 0.97);
   - downward flow: waterfall when the movers are a narrow band (x spread < 0.4; waterfall <= 0.33,
     rain >= 0.47), else rain;
   - sideways flow: birds darken the scene and clouds lighten it (mean grey change against frame 0
     where it changed, beyond +-LAYER_TONE); when the tone is undecided, clouds if the movers sit
     high and flat (centroid y < -0.4 and y spread < 0.38; clouds <= -0.51 / <= 0.28, birds
     >= -0.28 / >= 0.47), else birds. (Geometry alone failed on photos: dark birds over a dark
     region are invisible, and the one visible bird sits high like a cloud.)
5. Flow with no net motion (mean flow of the moving pixels < MIN_LOCAL_PX; world local classes
   >= 1.06), no burst and no global motion is jitter (noise of a still clip): "static".
6. "other": moves, but like none of the classes (e.g. a layer moving up).
A class outside the caller's `classes` is reported as "other", never forced into an allowed class.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Iterable, Sequence

import torch
from torch import Tensor

from miva_lightning.motion.estimator import MotionEstimate, estimate_motion
from miva_lightning.world.motions import ALL_MOTIONS

INVALID, OTHER = "invalid", "other"
STILL_PX = 0.15  # reference px/frame
CAMERA_GAIN = 0.3
MIN_GLOBAL_PX = 0.15
STEADY_PAIRS = 0.75  # share of frame pairs whose own motion has the sign of the clip's camera class
TYPICAL_RADIUS_PX = 10.0
FIREWORK_DIVERGENCE, FIREWORK_COHERENCE = 0.5, 0.8
WATERFALL_MAX_SPREAD_X = 0.4
CLOUDS_MAX_CENTROID_Y, CLOUDS_MAX_SPREAD_Y = -0.4, 0.38
LAYER_TONE = 0.1  # |mean grey change against frame 0| that names a dark (birds) or light (clouds) layer
MIN_LOCAL_PX = 0.5  # mean flow of the moving pixels needed for a local motion (world: >= 1.06)


def camera_class(dx: float, dy: float, scale: float, angle_deg: float) -> str | None:
    """The camera class of a global motion, or None when it is negligible."""
    translation = math.hypot(dx, dy)
    zoom = abs(math.log(max(scale, 1e-6))) * TYPICAL_RADIUS_PX
    rotation = abs(math.radians(angle_deg)) * TYPICAL_RADIUS_PX
    strongest = max(translation, zoom, rotation)
    if strongest < MIN_GLOBAL_PX:
        return None
    if strongest == translation:
        if abs(dx) >= abs(dy):
            return "pan_left" if dx > 0 else "pan_right"
        return "pan_up" if dy > 0 else "pan_down"
    if strongest == zoom:
        return "zoom_in" if scale > 1 else "zoom_out"
    return "rotate_cw" if angle_deg > 0 else "rotate_ccw"


def camera_components(dx: float, dy: float, scale: float, angle_deg: float) -> set[str]:
    """Every camera class whose OWN part of a global motion is visible (at least MIN_GLOBAL_PX), not only
    the strongest: a diagonal pan shows both its pans, a zoom while panning shows the zoom and the pan.
    Used to check that a combination of adapters shows each of its motions."""
    visible = set()
    if abs(dx) >= MIN_GLOBAL_PX:
        visible.add("pan_left" if dx > 0 else "pan_right")
    if abs(dy) >= MIN_GLOBAL_PX:
        visible.add("pan_up" if dy > 0 else "pan_down")
    if abs(math.log(max(scale, 1e-6))) * TYPICAL_RADIUS_PX >= MIN_GLOBAL_PX:
        visible.add("zoom_in" if scale > 1 else "zoom_out")
    if abs(math.radians(angle_deg)) * TYPICAL_RADIUS_PX >= MIN_GLOBAL_PX:
        visible.add("rotate_cw" if angle_deg > 0 else "rotate_ccw")
    return visible


def camera_component(pair, label: str) -> float:
    """The signed part of a pair's (or summary's) global motion that `label` is about."""
    if label in ("pan_left", "pan_right"):
        return pair.dx
    if label in ("pan_up", "pan_down"):
        return pair.dy
    if label in ("zoom_in", "zoom_out"):
        return math.log(max(pair.scale, 1e-6))
    return pair.angle_deg


def is_steady(estimate: MotionEstimate, label: str) -> bool:
    """Do at least STEADY_PAIRS of the frame pairs move the way of the clip's camera class?"""
    sign = math.copysign(1.0, camera_component(estimate.summary, label))
    agree = sum(camera_component(pair, label) * sign > 0 for pair in estimate.pairs)
    return agree >= STEADY_PAIRS * len(estimate.pairs)


def local_class(s) -> str:
    """The local class of a summary whose global motion does not explain the change."""
    if s.divergence >= FIREWORK_DIVERGENCE and s.direction_coherence < FIREWORK_COHERENCE:
        return "firework"
    dx, dy = s.moving_dx, s.moving_dy
    if math.hypot(dx, dy) < MIN_LOCAL_PX:  # flow that goes nowhere: jitter/noise of a still clip
        return "static"
    if dy > 2 * abs(dx):
        return "waterfall" if s.extent_x < WATERFALL_MAX_SPREAD_X else "rain"
    if abs(dx) > 2 * abs(dy):
        if abs(s.change_sign) >= LAYER_TONE:  # dark sprites or a light layer
            return "birds" if s.change_sign < 0 else "clouds"
        high_and_flat = s.centroid_y < CLOUDS_MAX_CENTROID_Y and s.extent_y < CLOUDS_MAX_SPREAD_Y
        return "clouds" if high_and_flat else "birds"
    return OTHER


def classify_estimate(estimate: MotionEstimate, classes: Sequence[str] = ALL_MOTIONS) -> str:
    if not estimate.valid:
        return INVALID
    s = estimate.summary
    if s.top5_magnitude < STILL_PX:
        label = "static"
    elif estimate.span_gain >= CAMERA_GAIN:
        camera = camera_class(s.dx, s.dy, s.scale, s.angle_deg)
        label = camera if camera is not None and is_steady(estimate, camera) else "static"
    else:
        label = local_class(s)
    return label if label in classes else OTHER


def classify_motion(video: Tensor, classes: Sequence[str] = ALL_MOTIONS) -> str:
    """One of `classes`, "invalid" (noise-like clip) or "other" (moves like none of `classes`)."""
    return classify_estimate(estimate_motion(video), classes)


def _clips(videos: Tensor | Iterable[Tensor]) -> Iterable[Tensor]:
    if isinstance(videos, torch.Tensor):
        if videos.ndim != 5:
            raise ValueError(f"expected a batch `b f c h w` or a list of `f c h w` clips, got shape {tuple(videos.shape)}")
        return list(videos)
    return videos


def judge_accuracy(videos: Tensor | Iterable[Tensor], labels: Sequence[str], classes: Sequence[str] = ALL_MOTIONS) -> dict:
    """Motion-class accuracy of clips against their intended labels, with motion fidelity beside it.

    Returns {"accuracy", "accuracy_ci" (Wilson 95 %), "n", "per_class": {label: accuracy},
    "per_class_ci", "counts": {label: n}, "invalid": number of invalid clips, "predictions": [...],
    "confusion": {label: {pred: n}}, "fidelity" / "fidelity_ci" (mean and t 95 % interval of
    `motion_fidelity` over the clips whose label has one), "per_class_fidelity", "per_class_fidelity_ci",
    "fidelities": [...] (NaN where undefined)}. Invalid and "other" predictions are never correct.
    """
    # imported here: fidelity.py builds on this module's constants, and metrics/ imports motion/
    from miva_lightning.metrics.intervals import mean_interval, wilson_interval
    from miva_lightning.motion.fidelity import fidelity_of_estimate

    estimates = [estimate_motion(v) for v in _clips(videos)]
    if len(estimates) != len(labels):
        raise ValueError(f"got {len(estimates)} videos but {len(labels)} labels")
    if not estimates:
        raise ValueError("no videos to judge")
    predictions = [classify_estimate(e, classes) for e in estimates]
    fidelities = [fidelity_of_estimate(e, label) for e, label in zip(estimates, labels)]
    confusion: dict[str, Counter] = defaultdict(Counter)
    by_label: dict[str, list[float]] = defaultdict(list)
    for label, prediction, fidelity in zip(labels, predictions, fidelities):
        confusion[label][prediction] += 1
        by_label[label].append(fidelity)
    counts = {label: sum(c.values()) for label, c in confusion.items()}
    correct = sum(confusion[label][label] for label in confusion)
    fidelity, fidelity_low, fidelity_high = mean_interval(fidelities)
    per_class_fidelity = {label: mean_interval(values) for label, values in by_label.items()}
    return {
        "accuracy": correct / len(labels),
        "accuracy_ci": list(wilson_interval(correct, len(labels))),
        "n": len(labels),
        "per_class": {label: confusion[label][label] / counts[label] for label in confusion},
        "per_class_ci": {label: list(wilson_interval(confusion[label][label], counts[label])) for label in confusion},
        "counts": counts,
        "invalid": predictions.count(INVALID),
        "predictions": predictions,
        "confusion": {label: dict(c) for label, c in confusion.items()},
        "fidelity": fidelity,
        "fidelity_ci": [fidelity_low, fidelity_high],
        "per_class_fidelity": {label: m for label, (m, _, _) in per_class_fidelity.items()},
        "per_class_fidelity_ci": {label: [lo, hi] for label, (_, lo, hi) in per_class_fidelity.items()},
        "fidelities": fidelities,
    }
