"""Conversions between the project's video layout and the uint8 frames codecs want.

Project layout: one clip is `f c h w`, torch.float32 in [0, 1], 3 channels (RGB).
Codec layout: numpy uint8 `f h w c`.
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange

# Float videos a little outside [0, 1] (decoder overshoot) are clipped; further out is a bug
# (typically a [-1, 1] video), so it is refused rather than silently clipped.
RANGE_TOLERANCE = 0.05


def to_uint8_fhwc(video: torch.Tensor | np.ndarray) -> np.ndarray:
    """Accept `f c h w` float in [0, 1] (torch or numpy), `f c h w` uint8 torch, or `f h w c`
    uint8 numpy; return uint8 `f h w 3` (grey repeated to RGB, alpha dropped)."""
    if isinstance(video, np.ndarray) and video.dtype == np.uint8:
        if video.ndim != 4:
            raise ValueError(f"uint8 numpy video must be `f h w c`, got shape {video.shape}")
        frames = video
    else:
        tensor = torch.as_tensor(video)
        if tensor.ndim != 4:
            raise ValueError(f"video must be a 4-d `f c h w` tensor, got shape {tuple(tensor.shape)}")
        if tensor.dtype == torch.uint8:
            frames = rearrange(tensor, "f c h w -> f h w c").numpy()
        else:
            frames = rearrange(float_to_uint8(tensor), "f c h w -> f h w c").numpy()
    channels = frames.shape[-1]
    if channels not in (1, 3, 4):
        raise ValueError(
            f"video must have 1, 3 or 4 channels (got {channels} in shape {frames.shape}); "
            "pass float `f c h w` or uint8 numpy `f h w c`"
        )
    if channels == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return np.ascontiguousarray(frames[..., :3])


def float_to_uint8(video: torch.Tensor) -> torch.Tensor:
    video = video.detach().float().cpu()
    if not torch.isfinite(video).all():
        raise ValueError("video contains NaN or infinite values; refusing to write it")
    low, high = video.min().item(), video.max().item()
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise ValueError(
            f"float video values must lie in [0, 1], got [{low:.3f}, {high:.3f}]"
            + ("; a [-1, 1] video needs (video + 1) / 2 first" if low < 0 else "")
        )
    return (video.clamp(0, 1) * 255).round().to(torch.uint8)


def uint8_to_float(frames: np.ndarray) -> torch.Tensor:
    """uint8 `f h w c` numpy -> float32 `f c h w` in [0, 1]."""
    return rearrange(torch.from_numpy(np.ascontiguousarray(frames)).float() / 255.0, "f h w c -> f c h w")
