"""The contract every backbone (tiny embedded, AnimateDiff SD1.5, Wan2.1 T2V 1.3B) fulfils.

A `Backbone` bundles the frozen pieces of a text-to-video diffusion model. Training code, MIVA
adapters and the sampler only talk to this object, so tiny and real models share one code path.

Two denoiser families exist (`Backbone.family`, read off the model class, never configured):
- "unet": diffusers `UNetMotionModel` (tiny, AnimateDiff SD1.5). Latents `b c f h w`, one latent frame per
  video frame; the prompt is repeated per frame; spatial tokens `(b f) (h w) d`; DDPM-family schedulers.
- "dit": diffusers `WanTransformer3DModel` (Wan2.1). Latents `b c f' h w` from a causal 3-D VAE
  (f' = (f - 1) / 4 + 1: latent frame 1 encodes video frame 1 alone); one prompt per video; tokens
  `b (f' h' w') d` with 3-D RoPE; flow-matching schedulers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

DENOISER_FAMILIES = ("unet", "dit")


@runtime_checkable
class LatentCodec(Protocol):
    """Maps pixel videos to the denoiser's latent space and back.

    encode: video `b f c h w` float in [0, 1]  ->  latents `b c f' h' w'` (already scaled for the denoiser)
    decode: latents `b c f' h' w'`             ->  video `b f c h w` float in [0, 1]

    `downscale` is the spatial factor (h = downscale * h'); `temporal_downscale` the temporal one: 1 for
    frame-wise codecs (f' = f), 4 for Wan's causal VAE (f' = (f - 1) / 4 + 1, so f must be 4k + 1).
    """

    latent_channels: int
    downscale: int
    temporal_downscale: int

    def encode(self, video: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...


def latent_frame_count(codec: Any, num_frames: int) -> int:
    """Latent frames for a clip of `num_frames` video frames (f' = (f - 1) / t + 1); refuses impossible counts."""
    step = int(getattr(codec, "temporal_downscale", 1))
    if num_frames < 1 or (num_frames - 1) % step:
        raise ValueError(
            f"{num_frames} frames cannot be encoded by this codec (temporal downscale {step}): "
            f"use 1 + {step} k frames, e.g. {1 + step * max(1, (num_frames - 1) // step)}"
        )
    return (num_frames - 1) // step + 1


def denoiser_family(model: nn.Module) -> str:
    """"dit" for diffusers' WanTransformer3DModel, "unet" otherwise (UNetMotionModel)."""
    from diffusers import WanTransformer3DModel

    return "dit" if isinstance(model, WanTransformer3DModel) else "unet"


@dataclass
class Backbone:
    # The denoiser, an unmodified diffusers class: UNetMotionModel ("unet" family) or WanTransformer3DModel
    # ("dit" family). The field keeps its historical name; `denoiser` is the neutral alias.
    unet: nn.Module
    noise_scheduler: Any  # training scheduler: DDPMScheduler (unet) or FlowMatchEulerDiscreteScheduler (dit)
    sample_scheduler: Any  # inference scheduler: DDIM (unet) or flow-matching Euler / UniPC (dit)
    codec: LatentCodec
    text_encoder: nn.Module | None
    tokenizer: Any | None
    # When True the UNet's input is cat([noisy latents, first-frame latent repeated over frames], dim=1).
    first_frame_concat: bool = False
    name: str = "unnamed"
    config: dict[str, Any] = field(default_factory=dict)
    # prompts -> embeddings `b L D` when the text side needs more than tokenizer + last hidden state
    # (Wan: attention mask and zeroed padding, as diffusers' WanPipeline); None = `encode_prompts`' default.
    prompt_encoder: Callable[[Sequence[str]], torch.Tensor] | None = None

    @property
    def denoiser(self) -> nn.Module:
        return self.unet

    @property
    def family(self) -> str:
        return denoiser_family(self.unet)
