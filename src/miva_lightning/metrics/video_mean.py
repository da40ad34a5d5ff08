"""Base of the per-video metrics (CLIP, motion, fidelity): the mean over videos of one score per video.

Streaming and DDP-exact: float64 sums with `dist_reduce_fx="sum"`. `describe()` says how the number was
made (definition, backend, n videos, frames, resolution) so every reported value carries its recipe.
Registry contract (metrics/registry.py): a batch that lacks a key in `requires` is skipped; a key that is
present but malformed is an error.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor

from miva_lightning.metrics.registry import BatchMetric


def _checked_tensor(batch: Mapping[str, Any], key: str, layout: str, what: str) -> Tensor:
    """`batch[key]` checked to be a float tensor with the named `layout` (values in [0, 1])."""
    if not isinstance(batch, Mapping) or key not in batch:
        keys = list(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise KeyError(f"metric needs batch[{key!r}] ({what}, {layout} in [0, 1]); got keys {keys}")
    value = batch[key]
    if not torch.is_tensor(value) or value.ndim != len(layout.split()) or not value.is_floating_point():
        shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
        raise ValueError(f"batch[{key!r}] must be a float tensor {layout} in [0, 1]; got {shape}")
    return value


def video_from_batch(batch: Mapping[str, Any], key: str = "generated") -> Tensor:
    """`batch[key]` checked to be a float video batch `b f c h w` (values in [0, 1])."""
    return _checked_tensor(batch, key, "b f c h w", "a video batch")


def images_from_batch(batch: Mapping[str, Any], key: str = "images") -> Tensor:
    """`batch[key]` checked to be a float image batch `b c h w` (values in [0, 1])."""
    return _checked_tensor(batch, key, "b c h w", "the input images")


class VideoMeanMetric(BatchMetric):
    """Mean over all videos seen of the per-video score that the subclass's `video_scores` returns."""

    full_state_update = False
    requires: tuple[str, ...] = ("generated",)
    higher_is_better: bool | None = None
    name = "video_mean"
    definition = ""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("score_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("score_sq_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")  # for the interval
        self.add_state("n_videos", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_skipped", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.frames: int | None = None
        self.resolution: tuple[int, int] | None = None

    @property
    def available(self) -> bool:
        """False when the metric cannot be computed here (e.g. weights missing): it then reports NaN."""
        return True

    def update(self, batch: Mapping[str, Any]) -> None:
        if not self.available or any(key not in batch for key in self.requires):
            return
        video = video_from_batch(batch)
        self._accumulate(self.video_scores(video, batch), video)

    def video_scores(self, video: Tensor, batch: Mapping[str, Any]) -> Tensor:
        """One score per video, shape (b,). Metrics that override `update` instead need not define it."""
        raise NotImplementedError(f"{type(self).__name__} must define video_scores or override update")

    def _accumulate(self, per_video: Tensor, video: Tensor | None = None, skipped: int = 0) -> None:
        """Add one score per video (b,), and remember the video shape for `describe()`."""
        per_video = per_video.detach().to(torch.float64).reshape(-1)
        self.score_sum += per_video.sum().to(self.score_sum.device)
        self.score_sq_sum += per_video.square().sum().to(self.score_sq_sum.device)
        self.n_videos += per_video.numel()
        self.n_skipped += skipped
        if video is not None:
            self.frames, self.resolution = int(video.shape[1]), (int(video.shape[-2]), int(video.shape[-1]))

    def compute(self) -> Tensor:
        if not self.available or self.n_videos == 0:
            return torch.tensor(float("nan"), dtype=torch.float64)
        return self.score_sum / self.n_videos

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Student's t interval of the mean over videos (from the summed states, so exact under DDP)."""
        from scipy import stats

        n = int(self.n_videos)
        if not self.available or n < 2:
            mean = float(self.compute())
            return (mean, mean)
        mean = float(self.score_sum) / n
        variance = max(0.0, (float(self.score_sq_sum) - n * mean * mean) / (n - 1))
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * (variance / n) ** 0.5
        return (mean - half, mean + half)

    def describe_extra(self) -> dict[str, Any]:
        """Subclass settings (backend, thresholds, feature network) merged into `describe()`."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {
            "metric": self.name,
            "class": type(self).__qualname__,
            "requires": list(self.requires),
            "available": self.available,
            "definition": self.definition,
            "n_videos": int(self.n_videos),
            "n_skipped": int(self.n_skipped),
            "ci95": list(self.interval()),
            "frames": self.frames,
            "resolution": list(self.resolution) if self.resolution else None,
            **self.describe_extra(),
        }
