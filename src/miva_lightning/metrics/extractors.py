"""Feature extractors for distance metrics, the metric that pairs one with FD or KVD, and their names.

An extractor maps videos `b f c h w` in [0, 1] to features `(n, d)`: one row per video for video
networks, one row per frame for per-frame (image) networks. An extractor whose weights are missing
stays constructible but `available` is False and says why; its metrics then report NaN (one warning),
never numbers from a random network under the real name.

Registered names (the distance first, then the feature network):
- `fvd_i3d`, `kvd_i3d`: I3D Kinetics-400 logits (local weights, see i3d.py): FVD and KVD proper.
- `fd_motionworld`, `kvd_motionworld`: penultimate features of the project's motion-world network.
- `fd_frames_motionworld`: per-frame FD on that network's spatial stem (appearance, not motion).
- `fd_randproj`, `kvd_randproj`: seeded random projection (plumbing tests only, not a quality metric).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from miva_lightning.metrics.frechet import FrechetDistance
from miva_lightning.metrics.kernel import KernelDistance
from miva_lightning.metrics.registry import BatchMetric, register_metric


class FeatureInputError(ValueError):
    """The videos cannot be fed to this extractor (e.g. too few frames); the metric becomes NaN."""


class VideoFeatureExtractor(nn.Module):
    """Frozen network: `forward(videos b f c h w in [0, 1]) -> (n, num_features)`."""

    name: str = "abstract"
    num_features: int = 0
    per_frame: bool = False  # True: one feature row per frame, False: one per video

    def __init__(self) -> None:
        super().__init__()
        self.available = True
        self.unavailable_reason = ""

    def mark_unavailable(self, reason: str) -> None:
        self.available = False
        self.unavailable_reason = reason

    def describe(self) -> dict[str, Any]:
        info = {"name": self.name, "num_features": self.num_features, "per_frame": self.per_frame}
        info["available"] = self.available
        if not self.available:
            info["unavailable_reason"] = self.unavailable_reason
        return info

    def train(self, mode: bool = True) -> "VideoFeatureExtractor":
        return super().train(False)  # frozen networks always run in eval mode


def check_videos(videos: Tensor, min_frames: int = 1) -> None:
    if videos.ndim != 5 or videos.shape[2] != 3:
        raise ValueError(f"videos must be b f c h w with c = 3, got shape {tuple(videos.shape)}")
    if videos.shape[1] < min_frames:
        raise FeatureInputError(f"needs at least {min_frames} frames per video, got {videos.shape[1]}")


class RandomProjectionExtractor(VideoFeatureExtractor):
    """Seeded random linear map of a downsampled video: for plumbing tests, never a quality number."""

    per_frame = False

    def __init__(self, num_features: int = 64, frames: int = 8, size: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.name = f"randproj_seed{seed}"
        self.num_features, self.frames, self.size, self.seed = num_features, frames, size, seed
        generator = torch.Generator().manual_seed(seed)
        inputs = 3 * frames * size * size
        weight = torch.randn(inputs, num_features, generator=generator) / math.sqrt(inputs)
        self.register_buffer("projection", weight, persistent=False)

    @torch.no_grad()
    def forward(self, videos: Tensor) -> Tensor:
        check_videos(videos)
        x = rearrange(videos.float(), "b f c h w -> b c f h w")
        x = F.interpolate(x, size=(self.frames, self.size, self.size), mode="trilinear", align_corners=False)
        return rearrange(x, "b c f h w -> b (c f h w)") @ self.projection

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "seed": self.seed, "weights_sha256": None, "note": "random projection"}


class FeatureDistanceMetric(BatchMetric):
    """FD or KVD between features of batch["reference"] (real) and batch["generated"] (fake).

    The two sides may come in different batches (streaming). Unavailable extractor, unusable input
    or too few samples: `compute()` is NaN and `describe()["unavailable_reason"]` says why.
    """

    requires = ("generated", "reference")
    higher_is_better = False

    def __init__(self, extractor: VideoFeatureExtractor, distance: str = "frechet", chunk_size: int = 16) -> None:
        super().__init__()
        if distance not in ("frechet", "kernel"):
            raise ValueError(f"distance must be 'frechet' or 'kernel', got {distance!r}")
        self.extractor = extractor.eval().requires_grad_(False)
        self.distance = distance
        self.chunk_size = chunk_size
        engine_class = FrechetDistance if distance == "frechet" else KernelDistance
        self.engine = engine_class(extractor.num_features) if extractor.num_features else None
        self.add_state("real_videos", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("fake_videos", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.input_shapes: dict[str, list[int]] = {}  # last seen b f c h w per side (for the report)
        self.input_error = ""
        self._warned = False

    @torch.no_grad()
    def _features(self, videos: Tensor) -> Tensor:
        return torch.cat([self.extractor(chunk) for chunk in videos.split(self.chunk_size)])

    def update(self, batch: dict) -> None:
        for side, key in (("real", "reference"), ("fake", "generated")):
            videos = batch.get(key)
            if videos is None:
                continue
            self.input_shapes[side] = list(videos.shape)
            setattr(self, f"{side}_videos", getattr(self, f"{side}_videos") + videos.shape[0])
            if not self.extractor.available or self.input_error:
                continue
            try:
                features = self._features(videos.to(self.real_videos.device))
            except FeatureInputError as error:
                self.input_error = f"{self.extractor.name}: {error}"
                continue
            self.engine.update(**{side: features})

    def unavailable_reason(self) -> str:
        if not self.extractor.available:
            return self.extractor.unavailable_reason
        if self.input_error:
            return self.input_error
        counts = (int(self.real_videos), int(self.fake_videos))
        if min(counts) < 2:
            return f"needs at least 2 real and 2 generated videos, got {counts[0]} real, {counts[1]} generated"
        return ""

    def compute(self) -> Tensor:
        reason = self.unavailable_reason()
        if reason:
            if not self._warned:
                warnings.warn(f"{type(self).__name__}({self.extractor.name}, {self.distance}) is NaN: {reason}")
                self._warned = True
            return torch.tensor(float("nan"), dtype=torch.float64)
        return self.engine.compute()

    def reset(self) -> None:
        super().reset()
        if self.engine is not None:
            self.engine.reset()
        self.input_error = ""

    def describe(self) -> dict[str, Any]:
        info = {
            **super().describe(),
            "distance": "frechet (FD)" if self.distance == "frechet" else "kernel (unbiased MMD^2, (x.y/d+1)^3)",
            "features": self.extractor.describe(),
            "n_real_videos": int(self.real_videos),
            "n_generated_videos": int(self.fake_videos),
            "real_shape_bfchw": self.input_shapes.get("real"),
            "generated_shape_bfchw": self.input_shapes.get("fake"),
        }
        reason = self.unavailable_reason()
        info["available"] = not reason
        if reason:
            info["unavailable_reason"] = reason
        return info


# ---- registered names --------------------------------------------------------------------------


@register_metric("fd_randproj", requires=("generated", "reference"))
def fd_randproj(num_features: int = 64, seed: int = 0) -> FeatureDistanceMetric:
    """FD on a seeded random projection (plumbing only, not a quality metric)."""
    return FeatureDistanceMetric(RandomProjectionExtractor(num_features, seed=seed), "frechet")


@register_metric("kvd_randproj", requires=("generated", "reference"))
def kvd_randproj(num_features: int = 64, seed: int = 0) -> FeatureDistanceMetric:
    """KVD on a seeded random projection (plumbing only, not a quality metric)."""
    return FeatureDistanceMetric(RandomProjectionExtractor(num_features, seed=seed), "kernel")


@register_metric("fvd_i3d", requires=("generated", "reference"))
def fvd_i3d(weights_path: str | None = None) -> FeatureDistanceMetric:
    """FVD: FD on I3D Kinetics-400 logits (16 frames, 224x224, [-1, 1]); NaN when weights are missing."""
    from miva_lightning.metrics.i3d import load_i3d_extractor

    return FeatureDistanceMetric(load_i3d_extractor(weights_path), "frechet", chunk_size=8)


@register_metric("kvd_i3d", requires=("generated", "reference"))
def kvd_i3d(weights_path: str | None = None) -> FeatureDistanceMetric:
    """KVD on I3D Kinetics-400 logits; NaN when weights are missing."""
    from miva_lightning.metrics.i3d import load_i3d_extractor

    return FeatureDistanceMetric(load_i3d_extractor(weights_path), "kernel", chunk_size=8)


@register_metric("fd_motionworld", requires=("generated", "reference"))
def fd_motionworld(artifact_dir: str | None = None) -> FeatureDistanceMetric:
    """FD on penultimate features of the project's motion-world classifier."""
    from miva_lightning.metrics.motion_features import load_motionworld_extractor

    return FeatureDistanceMetric(load_motionworld_extractor(artifact_dir, "video"), "frechet")


@register_metric("kvd_motionworld", requires=("generated", "reference"))
def kvd_motionworld(artifact_dir: str | None = None) -> FeatureDistanceMetric:
    """KVD on penultimate features of the project's motion-world classifier."""
    from miva_lightning.metrics.motion_features import load_motionworld_extractor

    return FeatureDistanceMetric(load_motionworld_extractor(artifact_dir, "video"), "kernel")


@register_metric("fd_frames_motionworld", requires=("generated", "reference"))
def fd_frames_motionworld(artifact_dir: str | None = None) -> FeatureDistanceMetric:
    """Per-frame FD on the motion-world network's spatial stem (appearance features, one row per frame)."""
    from miva_lightning.metrics.motion_features import load_motionworld_extractor

    return FeatureDistanceMetric(load_motionworld_extractor(artifact_dir, "frames"), "frechet")
