"""The contract every backbone (tiny embedded, AnimateDiff SD1.5, later Wan2.1) fulfils.

A `Backbone` bundles the frozen pieces of a text-to-video diffusion model. Training code, MIVA
adapters and the sampler only talk to this object, so tiny and real models share one code path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class LatentCodec(Protocol):
    """Maps pixel videos to the UNet's latent space and back.

    encode: video `b f c h w` float in [0, 1]  ->  latents `b c f h w` (already scaled for the UNet)
    decode: latents `b c f h w`                ->  video `b f c h w` float in [0, 1]
    """

    latent_channels: int
    downscale: int

    def encode(self, video: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Backbone:
    unet: nn.Module  # diffusers UNetMotionModel (unmodified class)
    noise_scheduler: Any  # training scheduler (DDPMScheduler): add_noise, get_velocity, config
    sample_scheduler: Any  # inference scheduler (DDIMScheduler by default)
    codec: LatentCodec
    text_encoder: nn.Module | None
    tokenizer: Any | None
    # When True the UNet's input is cat([noisy latents, first-frame latent repeated over frames], dim=1).
    first_frame_concat: bool = False
    name: str = "unnamed"
    config: dict[str, Any] = field(default_factory=dict)
