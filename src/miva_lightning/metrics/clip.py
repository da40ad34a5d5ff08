"""CLIP-family metrics (LAMP definitions) computed with a LOCAL CLIP folder.

- text alignment (CLIP-T): mean over frames of 100 cos(img(frame), txt(prompt));
- frame consistency, two named variants: all frame pairs (LAMP) or consecutive pairs;
- image alignment: mean over frames 2..f of 100 cos(img(frame), img(input image));
- diversity (LAMP): mean over pairs of different videos of 100 cos between frame-averaged embeddings
  (a similarity: LOWER means more diverse).

Without weights (`clip_path` None or missing) a metric reports NaN with one warning; it never runs a
random network under these names. `tiny_random_clip_encoder()` is a seeded random CLIP for plumbing
tests, and its metrics are named `clip_plumbing_randinit_*`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from miva_lightning.metrics.clip_encoder import (  # noqa: F401  (re-exported: the encoder API lives there)
    PLUMBING_NAME,
    REAL_NAME,
    ClipEncoder,
    load_clip_encoder,
    tiny_random_clip_encoder,
)
from miva_lightning.metrics.registry import register_metric
from miva_lightning.metrics.video_mean import VideoMeanMetric, images_from_batch, video_from_batch



class ClipVideoMetric(VideoMeanMetric):
    """A per-video CLIP score; NaN (with one warning) when the CLIP weights are missing."""

    kind = ""
    higher_is_better = True

    def __init__(self, clip_path: str | Path | None = None, *, encoder: ClipEncoder | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        resolved = encoder if encoder is not None else load_clip_encoder(clip_path)
        # kept out of the module tree: a frozen feature network is not metric state (nor checkpoint content)
        self._encoder_box = (resolved,)
        self.clip_path = None if clip_path is None else str(clip_path)
        self.name = f"{resolved.name if resolved is not None else REAL_NAME}_{self.kind}"
        if resolved is None:
            _warn_once(self.name, self.clip_path)

    @property
    def encoder(self) -> ClipEncoder | None:
        return self._encoder_box[0]

    @property
    def available(self) -> bool:
        return self.encoder is not None

    def _frame_embeddings(self, video: Tensor) -> Tensor:
        """Unit embeddings `b f d` of every frame, on the encoder's device (moved to the video's)."""
        encoder = self.encoder.to(video.device)
        b = video.shape[0]
        return rearrange(encoder.encode_images(rearrange(video, "b f c h w -> (b f) c h w")), "(b f) d -> b f d", b=b)

    def describe_extra(self) -> dict[str, Any]:
        if not self.available:
            return {"reason": f"no CLIP folder at {self.clip_path!r}", "feature_network": None}
        return self.encoder.describe()


_WARNED: set[tuple[str, str]] = set()


def _warn_once(name: str, clip_path: str | None) -> None:
    if (name, str(clip_path)) not in _WARNED:
        _WARNED.add((name, str(clip_path)))
        warnings.warn(
            f"{name}: no CLIP weights (clip_path={clip_path!r} is not a folder); the metric reports NaN. "
            "Pass the folder of a local CLIP (e.g. ViT-B/32 or ViT-L/14 saved by transformers).",
            RuntimeWarning,
            stacklevel=3,
        )


class ClipTextAlignment(ClipVideoMetric):
    kind = "text_alignment"
    requires = ("generated", "prompts")
    definition = "mean over frames of 100*cos(CLIP_img(frame), CLIP_txt(prompt)) (LAMP CLIP-T), mean over videos"

    def video_scores(self, video: Tensor, batch: Mapping[str, Any]) -> Tensor:
        prompts = batch.get("prompts")
        if prompts is None or isinstance(prompts, str) or len(prompts) != video.shape[0]:
            raise ValueError(f"{self.name} needs batch['prompts']: a list of {video.shape[0]} strings, one per video")
        frames = self._frame_embeddings(video)
        texts = self.encoder.encode_texts(prompts).to(frames.device)
        return 100.0 * torch.einsum("bfd,bd->bf", frames, texts).mean(dim=1)


class ClipFrameConsistency(ClipVideoMetric):
    """`pairs="all"`: mean over all frame pairs i<j (LAMP); `pairs="consecutive"`: over (t, t+1)."""

    definitions = {
        "all": "mean over all frame pairs i<j of 100*cos(CLIP_img(frame_i), CLIP_img(frame_j)) (LAMP), mean over videos",
        "consecutive": "mean over consecutive frames of 100*cos(CLIP_img(frame_t), CLIP_img(frame_t+1)), mean over videos",
    }

    def __init__(self, clip_path: str | Path | None = None, *, pairs: str = "all", **kwargs: Any):
        if pairs not in self.definitions:
            raise ValueError(f"pairs={pairs!r}; choose 'all' (LAMP) or 'consecutive'")
        self.pairs = pairs
        self.kind = "frame_consistency_all_pairs" if pairs == "all" else "frame_consistency_consecutive"
        self.definition = self.definitions[pairs]
        super().__init__(clip_path, **kwargs)

    def video_scores(self, video: Tensor, batch: Mapping[str, Any]) -> Tensor:
        if video.shape[1] < 2:
            raise ValueError(f"{self.name} needs at least 2 frames per video; got {video.shape[1]}")
        frames = self._frame_embeddings(video)
        similarity = 100.0 * torch.einsum("bfd,bgd->bfg", frames, frames)
        offset_mask = torch.ones(video.shape[1], video.shape[1], dtype=torch.bool, device=frames.device)
        mask = offset_mask.triu(1) if self.pairs == "all" else offset_mask.triu(1) & ~offset_mask.triu(2)
        return similarity[:, mask].mean(dim=1)


class ClipImageAlignment(ClipVideoMetric):
    """Frame 1 is the (clean) input image in image-to-video, so it is left out unless asked for."""

    kind = "image_alignment"
    requires = ("generated", "images")

    def __init__(self, clip_path: str | Path | None = None, *, include_first_frame: bool = False, **kwargs: Any):
        self.include_first_frame = include_first_frame
        frames = "1..f" if include_first_frame else "2..f"
        self.definition = f"mean over frames {frames} of 100*cos(CLIP_img(frame), CLIP_img(input image)), mean over videos"
        super().__init__(clip_path, **kwargs)

    def video_scores(self, video: Tensor, batch: Mapping[str, Any]) -> Tensor:
        images = images_from_batch(batch)
        if images.shape[0] != video.shape[0]:
            raise ValueError(f"{self.name}: {images.shape[0]} input images for {video.shape[0]} videos")
        start = 0 if self.include_first_frame or video.shape[1] == 1 else 1
        frames = self._frame_embeddings(video[:, start:])
        inputs = self.encoder.encode_images(images).to(frames.device)
        return 100.0 * torch.einsum("bfd,bd->bf", frames, inputs).mean(dim=1)


class ClipDiversity(ClipVideoMetric):
    """Keeps one frame-averaged embedding per video (gathered by concatenation under DDP)."""

    kind = "diversity"
    higher_is_better = False
    definition = (
        "mean over pairs of different videos of 100*cos(mean_t CLIP_img(frame_t)) (LAMP; a similarity, "
        "lower = more diverse)"
    )

    def __init__(self, clip_path: str | Path | None = None, **kwargs: Any):
        super().__init__(clip_path, **kwargs)
        self.add_state("video_embeddings", [], dist_reduce_fx="cat")

    def update(self, batch: Mapping[str, Any]) -> None:
        if not self.available or "generated" not in batch:
            return
        video = video_from_batch(batch)
        self.video_embeddings.append(self._frame_embeddings(video).mean(dim=1).double())
        self._accumulate(torch.zeros(video.shape[0]), video)

    def compute(self) -> Tensor:
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        if not self.available or not self.video_embeddings:
            return nan
        stacked = self.video_embeddings
        embeddings = F.normalize(torch.cat(stacked) if isinstance(stacked, list) else stacked, dim=-1)
        n = embeddings.shape[0]
        if n < 2:
            return nan
        upper = torch.ones(n, n, dtype=torch.bool, device=embeddings.device).triu(1)
        return 100.0 * (embeddings @ embeddings.T)[upper].mean()


# ---------------------------------------------------------------- names for the registry
# Real names take `clip_path` (NaN + one warning without it). Plumbing names build the seeded tiny random
# CLIP and say so in their name.

TEXT, IMAGES, VIDEOS = ("generated", "prompts"), ("generated", "images"), ("generated",)


@register_metric("clip_text_alignment", requires=TEXT)
def clip_text_alignment(clip_path: str | None = None) -> ClipVideoMetric:
    """LAMP CLIP-T: mean over frames of 100 cos(image, prompt); needs a local CLIP folder."""
    return ClipTextAlignment(clip_path)


@register_metric("clip_frame_consistency_all_pairs", requires=VIDEOS)
def clip_frame_consistency_all_pairs(clip_path: str | None = None) -> ClipVideoMetric:
    """LAMP frame consistency: mean 100 cos over all frame pairs; needs a local CLIP folder."""
    return ClipFrameConsistency(clip_path, pairs="all")


@register_metric("clip_frame_consistency_consecutive", requires=VIDEOS)
def clip_frame_consistency_consecutive(clip_path: str | None = None) -> ClipVideoMetric:
    """Frame consistency over consecutive frame pairs (100 cos); needs a local CLIP folder."""
    return ClipFrameConsistency(clip_path, pairs="consecutive")


@register_metric("clip_image_alignment", requires=IMAGES)
def clip_image_alignment(clip_path: str | None = None, include_first_frame: bool = False) -> ClipVideoMetric:
    """Mean 100 cos(frame, input image) over frames 2..f; needs a local CLIP folder."""
    return ClipImageAlignment(clip_path, include_first_frame=include_first_frame)


@register_metric("clip_diversity", requires=VIDEOS)
def clip_diversity(clip_path: str | None = None) -> ClipVideoMetric:
    """LAMP diversity: mean 100 cos between videos' frame-averaged embeddings (lower = more diverse)."""
    return ClipDiversity(clip_path)


@register_metric(f"{PLUMBING_NAME}_text_alignment", requires=TEXT)
def clip_plumbing_text_alignment(seed: int = 0) -> ClipVideoMetric:
    """Plumbing only: text alignment with a seeded random tiny CLIP."""
    return ClipTextAlignment(encoder=tiny_random_clip_encoder(seed))


@register_metric(f"{PLUMBING_NAME}_frame_consistency_all_pairs", requires=VIDEOS)
def clip_plumbing_frame_consistency_all_pairs(seed: int = 0) -> ClipVideoMetric:
    """Plumbing only: all-pairs frame consistency with a seeded random tiny CLIP."""
    return ClipFrameConsistency(encoder=tiny_random_clip_encoder(seed), pairs="all")


@register_metric(f"{PLUMBING_NAME}_frame_consistency_consecutive", requires=VIDEOS)
def clip_plumbing_frame_consistency_consecutive(seed: int = 0) -> ClipVideoMetric:
    """Plumbing only: consecutive-pair frame consistency with a seeded random tiny CLIP."""
    return ClipFrameConsistency(encoder=tiny_random_clip_encoder(seed), pairs="consecutive")


@register_metric(f"{PLUMBING_NAME}_image_alignment", requires=IMAGES)
def clip_plumbing_image_alignment(seed: int = 0) -> ClipVideoMetric:
    """Plumbing only: image alignment with a seeded random tiny CLIP."""
    return ClipImageAlignment(encoder=tiny_random_clip_encoder(seed))


@register_metric(f"{PLUMBING_NAME}_diversity", requires=VIDEOS)
def clip_plumbing_diversity(seed: int = 0) -> ClipVideoMetric:
    """Plumbing only: diversity with a seeded random tiny CLIP."""
    return ClipDiversity(encoder=tiny_random_clip_encoder(seed))


CLIP_METRICS = {
    "clip_text_alignment": clip_text_alignment,
    "clip_frame_consistency_all_pairs": clip_frame_consistency_all_pairs,
    "clip_frame_consistency_consecutive": clip_frame_consistency_consecutive,
    "clip_image_alignment": clip_image_alignment,
    "clip_diversity": clip_diversity,
}
CLIP_PLUMBING_METRICS = {
    f"{PLUMBING_NAME}_text_alignment": clip_plumbing_text_alignment,
    f"{PLUMBING_NAME}_frame_consistency_all_pairs": clip_plumbing_frame_consistency_all_pairs,
    f"{PLUMBING_NAME}_frame_consistency_consecutive": clip_plumbing_frame_consistency_consecutive,
    f"{PLUMBING_NAME}_image_alignment": clip_plumbing_image_alignment,
    f"{PLUMBING_NAME}_diversity": clip_plumbing_diversity,
}
