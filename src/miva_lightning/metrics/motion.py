"""Weight-free motion metrics from OpenCV Farneback dense flow (the backend is in every metric name).

Flow convention: `flow[t]` (2, h, w) holds (dx, dy) in pixels, x right and y down, such that
frame_t(p) ~ frame_{t+1}(p + flow[t](p)). Farneback returns zero flow on flat regions and its values are
not comparable with RAFT's (docs/METRICS.md), hence names like `flow_farneback_mean`.

Metrics (mean over videos of a per-video score):
- `flow_farneback_mean` / `flow_farneback_top5`: mean flow magnitude, or mean of the top 5 % magnitudes of
  each frame pair (VBench-style), averaged over pairs, in pixels per frame at the input size, leaving out
  a border of max(2, min(h, w) // 10) px where content enters the view;
- `flow_farneback_dynamic_pixels` / `flow_farneback_dynamic_pairs`: share of pixels moving faster than a
  threshold, or share of frame pairs whose top-5 % magnitude exceeds it;
- `flow_farneback_agreement_pooled`: cosine between the generated and reference clips' time-averaged
  flow fields pooled to a coarse grid;
- `flow_farneback_agreement_similarity`: cosine between fitted global similarity motions
  (translation, zoom and rotation expressed as displacements in reference pixels);
- `motion_param_error_farneback_{translation_refpx,log_scale,rotation_deg}`: error of the fitted motion
  against the motion world's ground truth (`batch["params"]`, camera motions only);
- `motion_class_accuracy_farneback_judge`: share of videos the rule-based judge puts in their intended
  class (`batch["motions"]`).
Flow, fitted global motion and the judge come from `miva_lightning.motion`.
"""

from __future__ import annotations

import abc
import math
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from miva_lightning.metrics.registry import BATCH_KEYS, register_metric
from miva_lightning.metrics.video_mean import VideoMeanMetric, video_from_batch
from miva_lightning.motion import classify_motion, estimate_motion, farneback_flow, motion_fidelity
from miva_lightning.motion.estimator import REFERENCE_WIDTH
from miva_lightning.world.motions import ALL_MOTIONS

BACKEND = "farneback"
TOP_FRACTION = 0.05
DEFAULT_THRESHOLD_PX = 0.5
POOL_GRID = 4
STATIC_RMS_PX = 0.05  # motion below this RMS (reference px/frame) counts as "no motion" for agreement
REFERENCE_RADIUS = REFERENCE_WIDTH / 2  # zoom/rotation as displacement at this radius (reference px)


# ---------------------------------------------------------------- flow statistics


def border_px(h: int, w: int) -> int:
    """Width of the frame border left out of flow statistics: there content enters or leaves the view
    and Farneback returns unreliable flow (a 3 px/frame pan at 32 px reads a top-5 % magnitude of 3.26
    with the border, 3.12 without these 3 px; the mean magnitude is within 0.4 % either way)."""
    return max(2, min(h, w) // 10)


def interior(field: Tensor) -> Tensor:
    """`field` (..., h, w) without its `border_px` border."""
    b = border_px(*field.shape[-2:])
    return field[..., b:-b, b:-b]


def flow_magnitude(flow: Tensor) -> Tensor:
    """Per-pixel speed `(n, h, w)` of flows `(n, 2, h, w)`."""
    return flow.norm(dim=1)


def top_fraction_mean(values: Tensor, fraction: float = TOP_FRACTION) -> Tensor:
    """Mean of the largest `fraction` of each row's values: (n, ...) -> (n,)."""
    flat = values.reshape(values.shape[0], -1)
    k = max(1, int(round(fraction * flat.shape[1])))
    return flat.topk(k, dim=1).values.mean(dim=1)


# ---------------------------------------------------------------- magnitude and dynamics


class FlowVideoMetric(VideoMeanMetric):
    """Per-video score from the Farneback flow of the generated clip."""

    def describe_extra(self) -> dict[str, Any]:
        return {
            "flow_backend": BACKEND,
            "units": "pixels per frame at the input resolution",
            "border_px_excluded": "max(2, min(h, w) // 10)",
        }

    def video_scores(self, video: Tensor, batch: Mapping[str, Any]) -> Tensor:
        return torch.stack([self.clip_score(farneback_flow(clip)) for clip in video])

    @abc.abstractmethod
    def clip_score(self, flow: Tensor) -> Tensor:
        """One score for one clip's flow `(f-1) 2 h w`."""


class FlowMagnitude(FlowVideoMetric):
    """Mean over frame pairs of the mean (`statistic="mean"`) or top-5 % (`"top5"`) flow magnitude."""

    def __init__(self, statistic: str = "mean", **kwargs: Any) -> None:
        if statistic not in ("mean", "top5"):
            raise ValueError(f"statistic={statistic!r}; choose 'mean' or 'top5'")
        super().__init__(**kwargs)
        self.statistic = statistic
        self.name = f"flow_{BACKEND}_{statistic}"
        what = "mean" if statistic == "mean" else f"mean of the top {TOP_FRACTION:.0%}"
        self.definition = f"{what} Farneback flow magnitude per frame pair (px/frame), mean over pairs and videos"

    def clip_score(self, flow: Tensor) -> Tensor:
        speed = interior(flow_magnitude(flow))
        per_pair = speed.flatten(1).mean(dim=1) if self.statistic == "mean" else top_fraction_mean(speed)
        return per_pair.mean()


class DynamicFraction(FlowVideoMetric):
    """Share of moving pixels (`unit="pixels"`) or of moving frame pairs (`unit="pairs"`, a pair moves when
    its top-5 % flow magnitude exceeds the threshold, as in VBench's dynamic degree)."""

    higher_is_better = None

    def __init__(self, unit: str = "pixels", threshold_px: float = DEFAULT_THRESHOLD_PX, **kwargs: Any) -> None:
        if unit not in ("pixels", "pairs"):
            raise ValueError(f"unit={unit!r}; choose 'pixels' or 'pairs'")
        if threshold_px <= 0:
            raise ValueError(f"threshold_px={threshold_px} must be > 0 (pixels per frame at the input size)")
        super().__init__(**kwargs)
        self.unit, self.threshold_px = unit, float(threshold_px)
        self.name = f"flow_{BACKEND}_dynamic_{unit}"
        self.definition = (
            f"share of {'pixels' if unit == 'pixels' else 'frame pairs'} whose "
            f"{'flow magnitude' if unit == 'pixels' else f'top-{TOP_FRACTION:.0%} flow magnitude'} exceeds "
            f"{self.threshold_px} px/frame, mean over videos"
        )

    def clip_score(self, flow: Tensor) -> Tensor:
        speed = interior(flow_magnitude(flow))
        if self.unit == "pixels":
            return (speed > self.threshold_px).float().mean()
        return (top_fraction_mean(speed) > self.threshold_px).float().mean()

    def describe_extra(self) -> dict[str, Any]:
        return {**super().describe_extra(), "threshold_px": self.threshold_px}


# ---------------------------------------------------------------- agreement with reference clips


def _cosine_or_static(a: Tensor, b: Tensor, static_norm: Tensor | float) -> Tensor:
    """Cosine of two motion vectors; 1 when both are (near) static, 0 when only one is."""
    a_static, b_static = a.norm() < static_norm, b.norm() < static_norm
    if a_static or b_static:
        return torch.tensor(1.0 if (a_static and b_static) else 0.0)
    return F.cosine_similarity(a.double(), b.double(), dim=0).float()


class ReferenceAgreement(VideoMeanMetric):
    """Pairs generated video i with reference clip i of the same batch (same motion, e.g. the few-shot
    clips or the motion world's clip of the same scene)."""

    requires = ("generated", "reference")
    higher_is_better = True

    def video_scores(self, video: Tensor, batch: Mapping[str, Any]) -> Tensor:
        reference = video_from_batch(batch, "reference")
        if reference.shape[0] != video.shape[0]:
            raise ValueError(
                f"{self.name} pairs generated[i] with reference[i]; got {video.shape[0]} generated and "
                f"{reference.shape[0]} reference clips (give one reference clip per generated video)"
            )
        return torch.stack([self.pair_score(g, r) for g, r in zip(video, reference)])

    @abc.abstractmethod
    def pair_score(self, generated: Tensor, reference: Tensor) -> Tensor:
        """One score for a generated clip against its reference clip."""

    def describe_extra(self) -> dict[str, Any]:
        return {"flow_backend": BACKEND, "static_rms_px": STATIC_RMS_PX}


class PooledFlowAgreement(ReferenceAgreement):
    name = f"flow_{BACKEND}_agreement_pooled"
    definition = (
        f"cosine between generated and reference time-mean Farneback flow, each pooled to a {POOL_GRID}x{POOL_GRID} "
        "grid (1 if both static, 0 if one is), mean over videos"
    )

    def pair_score(self, generated: Tensor, reference: Tensor) -> Tensor:
        pooled_g, pooled_r = (pooled_flow(clip) for clip in (generated, reference))
        static_norm = STATIC_RMS_PX * math.sqrt(pooled_g.numel())
        return _cosine_or_static(pooled_g, pooled_r, static_norm)


def pooled_flow(clip: Tensor, grid: int = POOL_GRID) -> Tensor:
    """Time-mean flow of a clip pooled to `grid x grid` cells, flattened `(2 * grid * grid,)`, in reference
    px/frame (frame width 32), so clips of different sizes compare on one scale."""
    mean_flow = farneback_flow(clip).mean(dim=0, keepdim=True) * (REFERENCE_WIDTH / clip.shape[-1])
    return F.adaptive_avg_pool2d(mean_flow, grid).flatten()


class SimilarityMotionAgreement(ReferenceAgreement):
    name = f"flow_{BACKEND}_agreement_similarity"
    definition = (
        "cosine between generated and reference fitted global motion (dx, dy, ln(scale) R, angle_rad R), all in "
        f"reference px/frame (frame width {REFERENCE_WIDTH}, R = {REFERENCE_RADIUS:g}), medians over frame pairs from "
        "motion.estimate_motion (1 if both static, 0 if one is), mean over videos"
    )

    def pair_score(self, generated: Tensor, reference: Tensor) -> Tensor:
        return _cosine_or_static(global_motion_vector(generated), global_motion_vector(reference), STATIC_RMS_PX)


def global_motion_vector(clip: Tensor) -> Tensor:
    """(dx, dy, ln s * R, angle * R) of the clip's fitted global motion, in reference px per frame."""
    s = estimate_motion(clip).summary
    return torch.tensor(
        [s.dx, s.dy, math.log(s.scale) * REFERENCE_RADIUS, math.radians(s.angle_deg) * REFERENCE_RADIUS]
    )


# ---------------------------------------------------------------- ground truth of the motion world
# These read batch keys beyond part A's first contract: "params" (one ground-truth dict per video, as
# `world.render_clip(...).params`) and "motions" (the intended class of each video). They are registered
# once `registry.BATCH_KEYS` lists those keys.


def _register_when_keys_known(name: str, requires: tuple[str, ...]):
    if set(requires) <= set(BATCH_KEYS):
        return register_metric(name, requires=requires)
    return lambda factory: factory


class MotionParameterError(VideoMeanMetric):
    """Error of the fitted global motion (`motion.estimate_motion`, medians over frame pairs) against the
    world's ground truth `batch["params"]` (dx_px, dy_px at the rendered "size", scale, angle_deg per frame).
    Camera motions only: local motions (rain, birds...) have no global ground truth and are skipped."""

    requires = ("generated", "params")
    higher_is_better = False
    components = {
        "translation_refpx": f"|(dx, dy) - (dx, dy)_true| in reference px/frame (frame width {REFERENCE_WIDTH})",
        "log_scale": "|ln scale - ln scale_true| per frame",
        "rotation_deg": "|angle - angle_true| in degrees per frame",
    }

    def __init__(self, component: str = "translation_refpx", **kwargs: Any) -> None:
        if component not in self.components:
            raise ValueError(f"component={component!r}; choose one of {', '.join(self.components)}")
        super().__init__(**kwargs)
        self.component = component
        self.name = f"motion_param_error_{BACKEND}_{component}"
        self.definition = f"{self.components[component]}, mean over camera-motion videos"

    def update(self, batch: Mapping[str, Any]) -> None:
        if any(key not in batch for key in self.requires):
            return
        video, params = video_from_batch(batch), batch["params"]
        if len(params) != video.shape[0]:
            raise ValueError(f"{self.name}: {len(params)} ground-truth params for {video.shape[0]} videos")
        camera = [i for i, p in enumerate(params) if p.get("kind", "camera") == "camera"]
        scores = [self.clip_error(video[i], params[i]) for i in camera]
        self._accumulate(torch.tensor(scores), video, skipped=len(params) - len(camera))

    def clip_error(self, clip: Tensor, truth: Mapping[str, float]) -> float:
        fitted = estimate_motion(clip).summary
        if self.component == "translation_refpx":
            to_reference = REFERENCE_WIDTH / truth.get("size", clip.shape[-1])
            return math.hypot(fitted.dx - truth["dx_px"] * to_reference, fitted.dy - truth["dy_px"] * to_reference)
        if self.component == "log_scale":
            return abs(math.log(fitted.scale) - math.log(truth["scale"]))
        return abs(fitted.angle_deg - truth["angle_deg"])

    def describe_extra(self) -> dict[str, Any]:
        return {"flow_backend": BACKEND, "estimator": "miva_lightning.motion.estimate_motion (robust fit + ECC)"}


class MotionClassAccuracy(VideoMeanMetric):
    """Share of generated videos that the rule-based judge (`motion.classify_motion`) puts in their intended
    class `batch["motions"]`; "invalid" and "other" verdicts count as wrong."""

    name = f"motion_class_accuracy_{BACKEND}_judge"
    requires = ("generated", "motions")
    higher_is_better = True

    def __init__(self, classes: Sequence[str] = ALL_MOTIONS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.classes = tuple(classes)
        self.definition = f"share of videos judged as their intended motion among {len(self.classes)} classes"

    def video_scores(self, video: Tensor, batch: Mapping[str, Any]) -> Tensor:
        labels = batch["motions"]
        if isinstance(labels, str) or len(labels) != video.shape[0]:
            raise ValueError(f"{self.name} needs batch['motions']: a list of {video.shape[0]} class names")
        unknown = sorted(set(labels) - set(self.classes))
        if unknown:
            raise ValueError(f"{self.name}: labels {unknown} are not among the judged classes {self.classes}")
        return torch.tensor([float(classify_motion(clip, self.classes) == label) for clip, label in zip(video, labels)])

    def describe_extra(self) -> dict[str, Any]:
        return {"flow_backend": BACKEND, "judge": "miva_lightning.motion.classify_motion", "classes": list(self.classes)}


class MotionFidelityMetric(VideoMeanMetric):
    """Mean `motion.motion_fidelity` of generated videos for their intended motion `batch["motions"]`:
    1 = the motion at the world's class speed, 0 = none, < 0 = the opposite. Videos whose motion has no
    fidelity (static, firework) are skipped and counted in `n_skipped`."""

    name = f"motion_fidelity_{BACKEND}"
    requires = ("generated", "motions")
    higher_is_better = True
    definition = (
        "fitted global motion projected on the intended camera class's nominal motion / its size (local "
        "rain/waterfall/birds/clouds: moving pixels' flow along the layer direction / class speed), mean over videos"
    )

    def update(self, batch: Mapping[str, Any]) -> None:
        if any(key not in batch for key in self.requires):
            return
        video, labels = video_from_batch(batch), batch["motions"]
        if isinstance(labels, str) or len(labels) != video.shape[0]:
            raise ValueError(f"{self.name} needs batch['motions']: a list of {video.shape[0]} class names")
        scores = [motion_fidelity(clip, label) for clip, label in zip(video, labels)]
        defined = [s for s in scores if not math.isnan(s)]
        self._accumulate(torch.tensor(defined), video, skipped=len(scores) - len(defined))

    def describe_extra(self) -> dict[str, Any]:
        return {"flow_backend": BACKEND, "fidelity": "miva_lightning.motion.motion_fidelity"}


# ---------------------------------------------------------------- names for the registry


@register_metric(f"flow_{BACKEND}_mean", requires=("generated",))
def flow_farneback_mean() -> FlowMagnitude:
    """Mean Farneback flow magnitude (px/frame), mean over frame pairs and videos."""
    return FlowMagnitude("mean")


@register_metric(f"flow_{BACKEND}_top5", requires=("generated",))
def flow_farneback_top5() -> FlowMagnitude:
    """Mean of the top 5 % Farneback flow magnitudes per frame pair (px/frame)."""
    return FlowMagnitude("top5")


@register_metric(f"flow_{BACKEND}_dynamic_pixels", requires=("generated",))
def flow_farneback_dynamic_pixels(threshold_px: float = DEFAULT_THRESHOLD_PX) -> DynamicFraction:
    """Share of pixels whose Farneback flow exceeds threshold_px per frame."""
    return DynamicFraction("pixels", threshold_px)


@register_metric(f"flow_{BACKEND}_dynamic_pairs", requires=("generated",))
def flow_farneback_dynamic_pairs(threshold_px: float = DEFAULT_THRESHOLD_PX) -> DynamicFraction:
    """Share of frame pairs whose top-5 % Farneback flow exceeds threshold_px."""
    return DynamicFraction("pairs", threshold_px)


@register_metric(f"flow_{BACKEND}_agreement_pooled", requires=("generated", "reference"))
def flow_farneback_agreement_pooled() -> PooledFlowAgreement:
    """Cosine of pooled time-mean Farneback flow, generated vs reference clip."""
    return PooledFlowAgreement()


@register_metric(f"flow_{BACKEND}_agreement_similarity", requires=("generated", "reference"))
def flow_farneback_agreement_similarity() -> SimilarityMotionAgreement:
    """Cosine of fitted global motion (translation, zoom, rotation), generated vs reference clip."""
    return SimilarityMotionAgreement()


@_register_when_keys_known(f"motion_param_error_{BACKEND}_translation_refpx", ("generated", "params"))
def motion_param_error_farneback_translation_refpx() -> MotionParameterError:
    """Motion world: translation error of the fitted global motion (reference px/frame)."""
    return MotionParameterError("translation_refpx")


@_register_when_keys_known(f"motion_param_error_{BACKEND}_log_scale", ("generated", "params"))
def motion_param_error_farneback_log_scale() -> MotionParameterError:
    """Motion world: |ln scale| error of the fitted global motion per frame."""
    return MotionParameterError("log_scale")


@_register_when_keys_known(f"motion_param_error_{BACKEND}_rotation_deg", ("generated", "params"))
def motion_param_error_farneback_rotation_deg() -> MotionParameterError:
    """Motion world: rotation error of the fitted global motion (degrees per frame)."""
    return MotionParameterError("rotation_deg")


@_register_when_keys_known(f"motion_class_accuracy_{BACKEND}_judge", ("generated", "motions"))
def motion_class_accuracy_farneback_judge() -> MotionClassAccuracy:
    """Motion world: share of videos the rule-based judge puts in their intended class."""
    return MotionClassAccuracy()


@_register_when_keys_known(f"motion_fidelity_{BACKEND}", ("generated", "motions"))
def motion_fidelity_farneback() -> MotionFidelityMetric:
    """Motion world: how much of the intended motion the videos show (1 = class speed, 0 = none)."""
    return MotionFidelityMetric()
