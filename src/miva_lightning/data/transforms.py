"""Clip transforms on `f c h w` tensors: resize the shorter side, centre crop, flip.

Written with torch ops because torchvision is not allowed here (it replaces the CPU torch wheel).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def resize_and_center_crop(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Scale `f c h w` so it covers `height x width` (aspect kept), then crop the centre.

    Downscaling is antialiased (`antialias=True`), so thin structures do not alias.
    """
    if height < 1 or width < 1:
        raise ValueError(f"target size must be positive, got {height}x{width}")
    frames, channels, source_h, source_w = video.shape
    if (source_h, source_w) != (height, width):
        scale = max(height / source_h, width / source_w)
        new_h = max(height, math.ceil(source_h * scale - 1e-6))
        new_w = max(width, math.ceil(source_w * scale - 1e-6))
        if (new_h, new_w) != (source_h, source_w):
            video = F.interpolate(video.float(), size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
        top, left = (video.shape[-2] - height) // 2, (video.shape[-1] - width) // 2
        video = video[..., top : top + height, left : left + width]
    return video.clamp(0, 1)


def to_uint8(video: torch.Tensor) -> torch.Tensor:
    return (video.clamp(0, 1) * 255).round().to(torch.uint8)


def to_float(video: torch.Tensor) -> torch.Tensor:
    return video.float() / 255.0
