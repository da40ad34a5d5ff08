"""A lossless 'latent' codec for the tiny backbone: space-to-depth on pixels.

The tiny base diffuses pixels, but a 32x32x3 frame is folded into 16x16x12 (factor 2) or 8x8x48
(factor 4) so that the UNet runs at a small spatial size, where steps are cheap and a 3x3 convolution
already covers shifts of several pixels. No weights, nothing learned: decode(encode(x)) == x up to
float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class PixelShuffleCodec(nn.Module):
    """`LatentCodec` that maps video `b f c h w` in [0, 1] to latents `b (c s s) f (h/s) (w/s)` in [-1, 1]."""

    def __init__(self, factor: int = 2, image_channels: int = 3):
        super().__init__()
        if factor < 1:
            raise ValueError(f"codec factor must be >= 1, got {factor}")
        self.factor = int(factor)
        self.image_channels = int(image_channels)
        self.latent_channels = self.image_channels * self.factor**2
        self.downscale = self.factor
        self.temporal_downscale = 1  # frame by frame

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        if video.ndim != 5:
            raise ValueError(f"encode expects a video `b f c h w`, got shape {tuple(video.shape)}")
        b, f, c, h, w = video.shape
        if c != self.image_channels:
            raise ValueError(f"encode expects {self.image_channels} colour channels, got {c} (layout must be b f c h w)")
        if h % self.factor or w % self.factor:
            raise ValueError(f"frame size {h}x{w} is not divisible by the codec factor {self.factor}")
        frames = rearrange(video, "b f c h w -> (b f) c h w")
        folded = F.pixel_unshuffle(frames, self.factor) * 2.0 - 1.0
        return rearrange(folded, "(b f) c h w -> b c f h w", b=b)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError(
                f"decode expects latents `b {self.latent_channels} f h w`, got shape {tuple(latents.shape)}"
            )
        b = latents.shape[0]
        folded = rearrange(latents, "b c f h w -> (b f) c h w")
        frames = F.pixel_shuffle((folded + 1.0) / 2.0, self.factor).clamp(0.0, 1.0)
        return rearrange(frames, "(b f) c h w -> b f c h w", b=b)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.encode(video)
