"""One denoiser call shared by the diffusion loss and the sampler, so training and inference condition alike."""

from __future__ import annotations

import torch
from einops import repeat


def unet_predict(
    backbone,
    noisy_latents: torch.Tensor,
    timesteps: torch.Tensor,
    prompt_embeds: torch.Tensor,
    first_latent: torch.Tensor,
) -> torch.Tensor:
    """Run the backbone's denoiser on `b c f h w` latents; returns the raw prediction `b c f h w`.

    UNet family (UNetMotionModel):
    - `prompt_embeds` `b L D` is repeated per frame to `(b f) L D` (UNetMotionModel's layout).
    - With `backbone.first_frame_concat` the clean first-frame latent `b c h w` is appended as extra input
      channels on every frame.
    - When the UNet was built with `time_cond_proj_dim`, the token-mean of the prompt embedding is added to
      its timestep embedding (a second, global route for the caption).
    DiT family (WanTransformer3DModel): one `b L D` prompt per video, float timesteps `b` (sigma * 1000 for
    flow matching); the output is the flow-matching velocity. `first_latent` is unused (frame 1 is already
    the clean latent inside `noisy_latents`).
    """
    b, _, f, _, _ = noisy_latents.shape
    if prompt_embeds.shape[0] != b:
        raise ValueError(f"prompt_embeds has batch {prompt_embeds.shape[0]} but latents have batch {b}")
    if backbone.family == "dit":
        if backbone.first_frame_concat:
            raise ValueError("first_frame_concat is not supported on a DiT backbone (Wan2.1 T2V has 16 input channels)")
        dtype = backbone.unet.dtype  # Wan's codec returns float32 latents; a bf16 transformer needs bf16 inputs
        return backbone.unet(
            noisy_latents.to(dtype), timesteps, encoder_hidden_states=prompt_embeds.to(dtype), return_dict=False
        )[0]
    unet_input = noisy_latents
    if backbone.first_frame_concat:
        unet_input = torch.cat([noisy_latents, repeat(first_latent, "b c h w -> b c f h w", f=f)], dim=1)
    timestep_cond = None
    if getattr(backbone.unet.config, "time_cond_proj_dim", None):
        timestep_cond = prompt_embeds.mean(dim=1)
    per_frame_embeds = repeat(prompt_embeds, "b l d -> (b f) l d", f=f)
    return backbone.unet(
        unet_input,
        timesteps,
        encoder_hidden_states=per_frame_embeds,
        timestep_cond=timestep_cond,
        return_dict=False,
    )[0]
