"""The diffusion loss shared by base pretraining and MIVA training (image-to-video form).

Frame 1 is the conditioning image: it stays clean in the noisy input and is excluded from the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

from miva_lightning.backbones.forward import unet_predict

TIMESTEP_DISTRIBUTIONS = ("uniform", "high_noise")


def sample_timesteps(
    batch: int,
    num_train_timesteps: int,
    distribution: str = "uniform",
    high_noise_power: float = 2.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Integer timesteps `b`. `high_noise`: t = T (1 - u^p), u ~ U(0,1), so large t (high noise) is likelier."""
    gen_device = generator.device if generator is not None else device
    u = torch.rand(batch, generator=generator, device=gen_device)
    if distribution == "uniform":
        fraction = u
    elif distribution == "high_noise":
        fraction = 1.0 - u**high_noise_power
    else:
        raise ValueError(f"timestep distribution {distribution!r} unknown; use one of {TIMESTEP_DISTRIBUTIONS}")
    t = (fraction * num_train_timesteps).long().clamp(0, num_train_timesteps - 1)
    return t.to(device)


def diffusion_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    prediction_type = scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    if prediction_type == "sample":
        return latents
    raise ValueError(f"prediction_type {prediction_type!r} is not supported (epsilon, v_prediction, sample)")


def diffusion_loss(
    backbone,
    video: torch.Tensor,
    prompt_embeds: torch.Tensor,
    generator: torch.Generator | None = None,
    timestep_distribution: str = "uniform",
    high_noise_power: float = 2.0,
    latents: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE between the UNet prediction and the scheduler's target on frames 2..F.

    video `b f c h w` in [0, 1] (ignored when precomputed `latents` `b c f h w` are given);
    prompt_embeds `b L D`. Noise and timesteps come from `generator` when given (reproducible).
    """
    if latents is None:
        if video.ndim != 5:
            raise ValueError(f"video must be `b f c h w`, got shape {tuple(video.shape)}")
        latents = backbone.codec.encode(video)
    if latents.shape[2] < 2:
        raise ValueError("the diffusion loss needs at least 2 frames (frame 1 is the clean condition)")
    scheduler = backbone.noise_scheduler
    b = latents.shape[0]
    noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    timesteps = sample_timesteps(
        b, scheduler.config.num_train_timesteps, timestep_distribution, high_noise_power, generator, latents.device
    )
    noisy = scheduler.add_noise(latents, noise, timesteps)
    first_latent = latents[:, :, 0]
    noisy = torch.cat([first_latent[:, :, None], noisy[:, :, 1:]], dim=2)  # frame 1 stays clean
    prediction = unet_predict(backbone, noisy, timesteps, prompt_embeds, first_latent)
    target = diffusion_target(scheduler, latents, noise, timesteps)
    return F.mse_loss(prediction[:, :, 1:].float(), target[:, :, 1:].float())
