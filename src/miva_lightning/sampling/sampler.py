"""Image-to-video sampling: the input image is frame 1, kept clean after every denoising step.

One loop for every backbone. Its rule, per step t of the scheduler's schedule:
1. the denoiser sees the current latents with latent frame 1 replaced by the clean image latent (clean and
   unscaled, as in training);
2. the scheduler steps all frames (DDPM family: DDIM / Euler / ... on the predicted eps, v or x0; flow matching:
   Euler x <- x + (sigma_next - sigma) v on the predicted velocity, or UniPC on flow sigmas);
3. latent frame 1 is reset to the clean image latent.
The first latent frame is the image's latent. On frame-wise codecs that is video frame 1; on Wan's causal VAE
it is latent frame 1, which the VAE computes from video frame 1 alone, so the decoded frame 1 is the image
through the VAE round trip.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import torch
from tqdm.auto import tqdm

from miva_lightning.backbones.base import latent_frame_count
from miva_lightning.backbones.forward import unet_predict
from miva_lightning.backbones.tokenizer import encode_prompts
from miva_lightning.sampling.noise_init import NoiseInit, as_noise_init, finalize_latents, prepare_initial_latents
from miva_lightning.sampling.schedulers import build_scheduler, set_sampling_timesteps


def _with_clean_first(latents: torch.Tensor, first_latent: torch.Tensor) -> torch.Tensor:
    return torch.cat([first_latent[:, :, None], latents[:, :, 1:]], dim=2)


def _empty_prompt_embeds(backbone, batch: int, device: torch.device) -> torch.Tensor:
    return encode_prompts(backbone, [""] * batch).to(device)


@torch.no_grad()
def sample_video(
    backbone,
    first_frame: torch.Tensor,
    num_frames: int,
    prompt_embeds: torch.Tensor | None = None,
    num_inference_steps: int = 25,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    noise_init: NoiseInit | Mapping | None = None,
    progress: bool = True,
    negative_prompt_embeds: torch.Tensor | None = None,
    scheduler: str | None = None,
) -> torch.Tensor:
    """Animate `first_frame` `b c h w` in [0, 1] into a video `b f c h w` in [0, 1].

    prompt_embeds `b L D` (None = the empty prompt). guidance_scale > 1 adds classifier-free guidance
    against the empty prompt (or against `negative_prompt_embeds` `b L D` when given). Each call steps a
    fresh scheduler: a copy of `backbone.sample_scheduler` (DDIM for tiny and AnimateDiff, flow-matching Euler
    or UniPC for Wan), or the one named by `scheduler` (`sampling.schedulers.SCHEDULERS`, DDPM-family
    backbones only). Equal generators give equal videos. `num_frames` counts video frames (Wan: 4k + 1).
    `noise_init`: a NoiseInit or a mapping of its fields (`as_noise_init`; Wan: no `first_frame_forward_t`).
    """
    noise_init = as_noise_init(noise_init)
    if first_frame.ndim != 4:
        raise ValueError(f"first_frame must be `b c h w` in [0, 1], got shape {tuple(first_frame.shape)}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2 (frame 1 is the input image), got {num_frames}")
    latent_frames = latent_frame_count(backbone.codec, num_frames)
    device = next(backbone.unet.parameters()).device
    dtype = next(backbone.unet.parameters()).dtype
    b = first_frame.shape[0]
    first_latent = backbone.codec.encode(first_frame[:, None].to(device, torch.float32))[:, :, 0].to(dtype)

    if prompt_embeds is None:
        prompt_embeds = _empty_prompt_embeds(backbone, b, device)
    if prompt_embeds.shape[0] != b:
        raise ValueError(f"prompt_embeds has batch {prompt_embeds.shape[0]} but first_frame has batch {b}")
    prompt_embeds = prompt_embeds.to(device, dtype)
    use_cfg = guidance_scale > 1.0
    if use_cfg:
        if negative_prompt_embeds is None:
            negative_prompt_embeds = _empty_prompt_embeds(backbone, b, device)
        prompt_embeds = torch.cat([negative_prompt_embeds.to(device, dtype), prompt_embeds])

    sched = build_scheduler(backbone.sample_scheduler, scheduler)
    set_sampling_timesteps(sched, num_inference_steps, device=device)
    latents = prepare_initial_latents(first_latent, latent_frames, sched, noise_init, generator)
    latents = _with_clean_first(latents.to(device, dtype), first_latent)
    # Stochastic schedulers (DDPM, Euler ancestral) draw from `generator`; deterministic ones take no such argument.
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(sched.step).parameters else {}

    for t in tqdm(sched.timesteps, disable=not progress, desc="sampling", leave=False):
        model_input = torch.cat([latents, latents]) if use_cfg else latents
        anchor = torch.cat([first_latent, first_latent]) if use_cfg else first_latent
        timesteps = t.expand(model_input.shape[0]).to(device)
        # Frame 1 enters the UNet exactly as in training: clean and unscaled (Euler-type schedulers scale
        # the whole input by 1 / sqrt(sigma^2 + 1); DDIM's scaling is the identity; flow matching has none).
        if hasattr(sched, "scale_model_input"):
            model_input = sched.scale_model_input(model_input, t)
        model_input = _with_clean_first(model_input, anchor)
        prediction = unet_predict(backbone, model_input, timesteps, prompt_embeds, anchor)
        if use_cfg:
            uncond, cond = prediction.chunk(2)
            prediction = uncond + guidance_scale * (cond - uncond)
        latents = sched.step(prediction, t, latents, return_dict=False, **step_kwargs)[0]
        latents = _with_clean_first(latents, first_latent)

    latents = finalize_latents(latents, first_latent, noise_init)
    return backbone.codec.decode(_with_clean_first(latents, first_latent).float())
