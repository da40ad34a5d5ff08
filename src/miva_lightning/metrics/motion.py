"""Weight-free motion metrics from OpenCV Farneback dense flow (the backend is in every metric name).

Flow convention: `flow[t]` (2, h, w) holds (dx, dy) in pixels, x right and y down, such that
frame_t(p) ~ frame_{t+1}(p + flow[t](p)). Farneback returns zero flow on flat regions and its values are
not comparable with RAFT's (METRICS.md), hence names like `flow_farneback_mean`.

Metrics (mean over videos of a per-video score):
- `flow_farneback_mean` / `flow_farneback_top5`: mean flow magnitude, or mean of the top 5 % magnitudes of
  each frame pair (VBench-style), averaged over pairs, in pixels per frame at the input size, leaving out
  a border of max(2, min(h, w) // 10) px where content enters the view;
- `flow_farneback_dynamic_pixels` / `flow_farneback_dynamic_pairs`: share of pixels moving faster than a
  threshold, or share of frame pairs whose top-5 % magnitude exceeds it;
- `flow_farneback_agreement_pooled`: cosine between the generated and reference clips' time-averaged
  flow fields pooled to a coarse grid;
- `flow_farneback_agreement_similarity`: cosine between fitted global similarity motions
  (translation, zoom and rotation expressed as pixel displacements at the frame border);
- `motion_param_error_farneback_{translation_px,log_scale,rotation_deg}`: error of the fitted motion
  against the motion world's ground truth (`batch["params"]`, camera motions only).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from miva_lightning.metrics.registry import register_metric
from miva_lightning.metrics.video_mean import VideoMeanMetric, video_from_batch

BACKEND = "farneback"
TOP_FRACTION = 0.05
DEFAULT_THRESHOLD_PX = 0.5
POOL_GRID = 4
STATIC_RMS_PX = 0.05  # a pooled flow below this RMS (px/frame) counts as "no motion" for agreement
LUMA = (0.299, 0.587, 0.114)


# ---------------------------------------------------------------- flow and fitted motion


def farneback_flow(video: Tensor) -> Tensor:
    """Dense flow `(f-1, 2, h, w)` between consecutive frames of one clip `f c h w` in [0, 1].

    OpenCV is used because it is weight-free, well kept and fast on CPU. The window scales with the
    frame size so small test frames (32 px) and real frames (256 px+) both work.
    """
    if video.ndim != 4 or video.shape[0] < 2:
        raise ValueError(f"flow needs one clip f c h w with at least 2 frames; got shape {tuple(video.shape)}")
    gray = _to_gray_uint8(video)
    h, w = gray.shape[-2:]
    window = max(5, (min(h, w) // 8) | 1)
    levels = max(1, min(4, int(math.log2(min(h, w) / 8))))
    flows = [
        cv2.calcOpticalFlowFarneback(gray[t], gray[t + 1], None, 0.5, levels, window, 5, 5, 1.1, 0)
        for t in range(gray.shape[0] - 1)
    ]
    return torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2).contiguous()


def _to_gray_uint8(video: Tensor) -> np.ndarray:
    video = video.detach().to("cpu", torch.float32).clamp(0, 1)
    if video.shape[1] == 3:
        gray = torch.einsum("fchw,c->fhw", video, torch.tensor(LUMA))
    elif video.shape[1] == 1:
        gray = video[:, 0]
    else:
        raise ValueError(f"frames must have 1 or 3 channels; got {video.shape[1]}")
    return (gray * 255.0).round().to(torch.uint8).numpy()


def border_px(h: int, w: int) -> int:
    """Width of the frame border left out of flow statistics: there content enters or leaves the view
    and Farneback returns unreliable flow (a 1 px/frame pan at 32 px read 1.30 px top-5 % with the border,
    1.06 without 3 px of it; at 48 px 1.02)."""
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


def texture_weights(video: Tensor) -> Tensor:
    """Per-pixel weights `(f-1, h, w)` for fitting global motion, zero at the border.

    Farneback flow is only informative where there is texture and is biased toward zero on smooth
    regions, so the weight is the SQUARE of the local gradient energy (box-averaged |grad I|^2 of the
    first frame of each pair). Measured on motion-world pans (32 and 64 px): speed error -6..-15 % with
    the energy as weight, -1..+3 % with its square."""
    gray = torch.from_numpy(_to_gray_uint8(video[:-1])).float()[:, None] / 255.0
    gx = F.pad(gray[..., :, 2:] - gray[..., :, :-2], (1, 1, 0, 0)) / 2
    gy = F.pad(gray[..., 2:, :] - gray[..., :-2, :], (0, 0, 1, 1)) / 2
    energy = F.avg_pool2d(gx**2 + gy**2, 5, stride=1, padding=2, count_include_pad=False)[:, 0]
    b = border_px(*energy.shape[-2:])
    energy[:, :b], energy[:, -b:], energy[:, :, :b], energy[:, :, -b:] = 0, 0, 0, 0
    return energy**2


def fit_similarity(flow: Tensor, weights: Tensor | None = None) -> Tensor:
    """Weighted least-squares global similarity motion of each flow field: `(n, 2, h, w)` -> `(n, 4)`.

    Model about the image centre, with centred pixel coordinates (x, y):
        dx = tx + a x - b y,   dy = ty + b x + a y,
    i.e. the content moves by s R(theta) with s = |(1 + a, b)|, theta = atan2(b, 1 + a) (y down, so
    theta > 0 is clockwise on screen, as in the motion world). Returns (tx, ty, a, b).
    """
    n, _, h, w = flow.shape
    flow = flow.double()
    weights = torch.ones(n, h, w, dtype=torch.float64) if weights is None else weights.double()
    y, x = torch.meshgrid(
        torch.arange(h, dtype=torch.float64) - (h - 1) / 2, torch.arange(w, dtype=torch.float64) - (w - 1) / 2,
        indexing="ij",
    )
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    design_u = torch.stack([one, zero, x, -y], dim=-1)  # h w 4
    design_v = torch.stack([zero, one, y, x], dim=-1)
    normal = torch.einsum("nhw,hwi,hwj->nij", weights, design_u, design_u) + torch.einsum(
        "nhw,hwi,hwj->nij", weights, design_v, design_v
    )
    target = torch.einsum("nhw,hwi,nhw->ni", weights, design_u, flow[:, 0]) + torch.einsum(
        "nhw,hwi,nhw->ni", weights, design_v, flow[:, 1]
    )
    ridge = 1e-9 * torch.eye(4, dtype=torch.float64) * (normal.diagonal(dim1=1, dim2=2).amax(dim=1)[:, None, None] + 1)
    return torch.linalg.solve(normal + ridge, target).float()


def similarity_to_params(coefficients: Tensor) -> dict[str, Tensor]:
    """(n, 4) fitted (tx, ty, a, b) -> per-pair dx_px, dy_px, scale, angle_deg (the world's parameters)."""
    tx, ty, a, b = coefficients.unbind(dim=-1)
    return {
        "dx_px": tx,
        "dy_px": ty,
        "scale": torch.hypot(1 + a, b),
        "angle_deg": torch.rad2deg(torch.atan2(b, 1 + a)),
    }


def estimate_similarity(video: Tensor) -> Tensor:
    """Fitted (tx, ty, a, b) of each consecutive frame pair of one clip `f c h w`: `(f-1, 4)`."""
    return fit_similarity(farneback_flow(video), texture_weights(video))


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

    def clip_score(self, flow: Tensor) -> Tensor:
        raise NotImplementedError


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

    def pair_score(self, generated: Tensor, reference: Tensor) -> Tensor:
        raise NotImplementedError

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
    """Time-mean flow of a clip pooled to `grid x grid` cells, flattened `(2 * grid * grid,)`, in px/frame."""
    mean_flow = farneback_flow(clip).mean(dim=0, keepdim=True)
    return F.adaptive_avg_pool2d(mean_flow, grid).flatten()


class SimilarityMotionAgreement(ReferenceAgreement):
    name = f"flow_{BACKEND}_agreement_similarity"
    definition = (
        "cosine between generated and reference fitted global motion (tx, ty, a*R, b*R; a, b the zoom/rotation "
        "coefficients, R half the shorter side, so all four are px/frame), averaged over frame pairs (1 if both "
        "static, 0 if one is), mean over videos"
    )

    def pair_score(self, generated: Tensor, reference: Tensor) -> Tensor:
        vectors = [border_displacement(estimate_similarity(clip).mean(dim=0), clip.shape[-2:]) for clip in (generated, reference)]
        return _cosine_or_static(*vectors, static_norm=STATIC_RMS_PX)


def border_displacement(coefficients: Tensor, size: Sequence[int]) -> Tensor:
    """(tx, ty, a, b) -> (tx, ty, a R, b R): zoom and rotation as displacement (px) at half the shorter side."""
    radius = min(size) / 2
    return coefficients * torch.tensor([1.0, 1.0, radius, radius])


# ---------------------------------------------------------------- ground truth of the motion world


class MotionParameterError(VideoMeanMetric):
    """Error of the fitted global motion against the world's ground truth `batch["params"]` (one dict per
    video, as `world.render_clip(...).params`: dx_px, dy_px, scale, angle_deg per frame, and "size").
    Camera motions only: local motions (rain, birds...) have no global ground truth and are skipped."""

    requires = ("generated", "params")
    higher_is_better = False
    components = {
        "translation_px": "|(dx, dy) - (dx, dy)_true| in px/frame at the ground truth's size",
        "log_scale": "|log scale - log scale_true| per frame",
        "rotation_deg": "|angle - angle_true| in degrees per frame",
    }

    def __init__(self, component: str = "translation_px", **kwargs: Any) -> None:
        if component not in self.components:
            raise ValueError(f"component={component!r}; choose one of {', '.join(self.components)}")
        super().__init__(**kwargs)
        self.component = component
        self.name = f"motion_param_error_{BACKEND}_{component}"
        self.definition = f"{self.components[component]}, mean over frame pairs and camera-motion videos"

    def update(self, batch: Mapping[str, Any]) -> None:
        if any(key not in batch for key in self.requires):
            return
        video, params = video_from_batch(batch), batch["params"]
        if len(params) != video.shape[0]:
            raise ValueError(f"{self.name}: {len(params)} ground-truth params for {video.shape[0]} videos")
        camera = [i for i, p in enumerate(params) if p.get("kind", "camera") == "camera"]
        scores = [self.clip_error(video[i], params[i]) for i in camera]
        self._accumulate(torch.stack(scores) if scores else torch.zeros(0), video, skipped=len(params) - len(camera))

    def clip_error(self, clip: Tensor, truth: Mapping[str, float]) -> Tensor:
        fitted = similarity_to_params(estimate_similarity(clip))
        if self.component == "translation_px":
            size_ratio = truth.get("size", clip.shape[-1]) / clip.shape[-1]  # compare at the ground truth's size
            error = torch.hypot(fitted["dx_px"] * size_ratio - truth["dx_px"], fitted["dy_px"] * size_ratio - truth["dy_px"])
        elif self.component == "log_scale":
            error = (fitted["scale"].log() - math.log(truth["scale"])).abs()
        else:
            error = (fitted["angle_deg"] - truth["angle_deg"]).abs()
        return error.mean()

    def describe_extra(self) -> dict[str, Any]:
        return {"flow_backend": BACKEND, "fit": "weighted least-squares similarity about the centre"}


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
