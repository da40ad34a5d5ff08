"""`LatentCodec` around a diffusers `AutoencoderKL` (the Stable Diffusion VAE).

Videos are encoded frame by frame: `b f c h w` in [0, 1] -> `(b f) c h w` in [-1, 1] -> VAE -> latents
scaled by the VAE's `scaling_factor` (0.18215 for SD1.5) -> `b c f h w`. Frames go through the VAE in
chunks of `frames_per_encode` / `frames_per_decode` (None = all at once) to bound activation memory.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL
from einops import rearrange
from torch import nn


class VaeLatentCodec(nn.Module):
    def __init__(
        self,
        vae: AutoencoderKL,
        frames_per_encode: int | None = None,
        frames_per_decode: int | None = None,
        sample_posterior: bool = False,
        tiling: bool = False,
    ):
        """`sample_posterior=False` encodes to the posterior mean: deterministic, and for the SD VAE the
        posterior std is tiny, so sampling adds almost nothing but irreproducibility."""
        super().__init__()
        for name, value in (("frames_per_encode", frames_per_encode), ("frames_per_decode", frames_per_decode)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive number of frames or None (all at once), got {value}")
        self.vae = vae
        self.frames_per_encode = frames_per_encode
        self.frames_per_decode = frames_per_decode
        self.sample_posterior = sample_posterior
        self.latent_channels: int = vae.config.latent_channels
        self.downscale: int = 2 ** (len(vae.config.block_out_channels) - 1)
        self.temporal_downscale: int = 1  # frame by frame
        self.scaling_factor: float = float(vae.config.scaling_factor)
        self.shift_factor: float = float(getattr(vae.config, "shift_factor", None) or 0.0)
        if tiling:
            vae.enable_tiling()

    def _check_video(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[2] != self.vae.config.in_channels:
            raise ValueError(
                f"VaeLatentCodec.encode expects `b f c h w` with c={self.vae.config.in_channels}, "
                f"got shape {tuple(video.shape)}"
            )
        h, w = video.shape[-2:]
        if h % self.downscale or w % self.downscale:
            raise ValueError(f"frame size {h}x{w} must be divisible by the VAE downscale {self.downscale}")

    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """`b f c h w` float in [0, 1] -> latents `b c f h w` in the VAE's dtype, scaled for the UNet."""
        self._check_video(video)
        frames = rearrange(video, "b f c h w -> (b f) c h w")
        frames = frames.to(device=self.vae.device, dtype=self.vae.dtype) * 2.0 - 1.0
        chunk = self.frames_per_encode or frames.shape[0]
        latents = torch.cat([self._encode_frames(part, generator) for part in frames.split(chunk)])
        return rearrange(latents, "(b f) c h w -> b c f h w", b=video.shape[0])

    def _encode_frames(self, frames: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        posterior = self.vae.encode(frames).latent_dist
        latents = posterior.sample(generator) if self.sample_posterior else posterior.mode()
        return (latents - self.shift_factor) * self.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents `b c f h w` -> video `b f c h w` float32 in [0, 1]."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError(
                f"VaeLatentCodec.decode expects `b c f h w` with c={self.latent_channels}, got {tuple(latents.shape)}"
            )
        frames = rearrange(latents, "b c f h w -> (b f) c h w")
        frames = frames.to(device=self.vae.device, dtype=self.vae.dtype) / self.scaling_factor + self.shift_factor
        chunk = self.frames_per_decode or frames.shape[0]
        images = torch.cat([self.vae.decode(part).sample for part in frames.split(chunk)])
        images = (images.float() / 2.0 + 0.5).clamp(0.0, 1.0)
        return rearrange(images, "(b f) c h w -> b f c h w", b=latents.shape[0])
