"""The diffusion loss shared by base pretraining and MIVA training (image-to-video form).

Frame 1 is the conditioning image: it stays clean in the noisy input and is excluded from the loss.
Two objectives, chosen by the backbone's training scheduler:
- DDPM family (tiny, AnimateDiff): the scheduler's `add_noise` and its prediction type (epsilon, v, x0).
- flow matching (Wan2.1, `FlowMatchEulerDiscreteScheduler`): `flow_matching_loss` below. On Wan "frame 1"
  is the first LATENT frame, which the causal VAE computes from the first video frame alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

from miva_lightning.backbones.forward import unet_predict
from miva_lightning.sampling.schedulers import is_flow_matching

TIMESTEP_DISTRIBUTIONS = ("uniform", "high_noise")
FLOW_LOSS_WEIGHTINGS = ("bell", "none")


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
    if is_flow_matching(backbone.noise_scheduler):
        return flow_matching_loss(
            backbone, latents, prompt_embeds, generator, timestep_distribution, high_noise_power,
            weighting=backbone.config.get("flow_loss_weighting", "none"),
        )  # fmt: skip
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


def flow_sigmas(indices: torch.Tensor, num_train_timesteps: int, shift: float) -> torch.Tensor:
    """Noise levels of integer training timesteps t in [0, T - 1]: s = (t + 1) / T, sigma = shift s / (1 + (shift - 1) s).

    Uniform t is uniform over the grid {1/T, ..., 1} shifted, the grid diffusers' FlowMatchEulerDiscreteScheduler
    trains on and the authors' DiffSynth scheduler draws from (`set_timesteps(1000, training=True)`, shift 5).
    """
    s = (indices.double() + 1.0) / num_train_timesteps
    return (shift * s / (1.0 + (shift - 1.0) * s)).float()


def bell_weight(sigmas: torch.Tensor, num_train_timesteps: int, shift: float) -> torch.Tensor:
    """The authors' flow-matching loss weight per noise level (DiffSynth's `training_weight`, re-derived):
    y(tau) = exp(-2 ((tau - T/2) / T)^2) at tau = sigma T, shifted so the grid's smallest y is 0 and scaled
    so the weights average 1 over the training grid; a sigma off the grid takes its nearest grid point's."""
    grid = flow_sigmas(torch.arange(num_train_timesteps), num_train_timesteps, shift).double() * num_train_timesteps
    y = torch.exp(-2.0 * ((grid - num_train_timesteps / 2) / num_train_timesteps) ** 2)
    y = y - y.min()
    weights = y * (num_train_timesteps / y.sum())
    nearest = (grid[None, :] - sigmas.double().cpu()[:, None] * num_train_timesteps).abs().argmin(dim=1)
    return weights[nearest].float().to(sigmas.device)


def flow_matching_loss(
    backbone,
    latents: torch.Tensor,
    prompt_embeds: torch.Tensor,
    generator: torch.Generator | None = None,
    timestep_distribution: str = "uniform",
    high_noise_power: float = 2.0,
    weighting: str = "none",
) -> torch.Tensor:
    """Rectified-flow loss on latent frames 2..F with latent frame 1 clean (MIVA's image condition).

    latents `b c f h w` (clean, from the codec). Per video: sigma from `flow_sigmas` (t drawn as in
    `sample_timesteps`, large t = noisy), x_t = (1 - sigma) x0 + sigma eps, then x_t[:, :, 0] = x0[:, :, 0];
    the denoiser sees timestep sigma * T and predicts v; target eps - x0; MSE over frames 2..F per video,
    times `bell_weight(sigma)` when weighting="bell" (the authors'), averaged over the batch.
    """
    if weighting not in FLOW_LOSS_WEIGHTINGS:
        raise ValueError(f"flow loss weighting {weighting!r} unknown; use one of {FLOW_LOSS_WEIGHTINGS}")
    scheduler = backbone.noise_scheduler
    if scheduler.config.get("use_dynamic_shifting"):
        raise ValueError("flow_matching_loss needs a fixed shift (use_dynamic_shifting=False)")
    num_train_timesteps, shift = int(scheduler.config.num_train_timesteps), float(scheduler.config.shift)
    b = latents.shape[0]
    noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    indices = sample_timesteps(b, num_train_timesteps, timestep_distribution, high_noise_power, generator, latents.device)
    sigmas = flow_sigmas(indices, num_train_timesteps, shift).to(latents.device)
    sigma = sigmas.to(latents.dtype).view(b, 1, 1, 1, 1)
    noisy = (1.0 - sigma) * latents + sigma * noise
    noisy = torch.cat([latents[:, :, :1], noisy[:, :, 1:]], dim=2)  # latent frame 1 stays clean
    prediction = unet_predict(backbone, noisy, sigmas * num_train_timesteps, prompt_embeds, latents[:, :, 0])
    target = noise - latents
    per_video = ((prediction[:, :, 1:].float() - target[:, :, 1:].float()) ** 2).mean(dim=(1, 2, 3, 4))
    if weighting == "bell":
        per_video = per_video * bell_weight(sigmas, num_train_timesteps, shift)
    return per_video.mean()
