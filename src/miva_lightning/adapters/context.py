"""Per-call state that MIVA processors need but diffusers never hands them.

Attention processors only receive `cross_attention_kwargs`, and the motion modules receive nothing
extra at all. So a forward pre-hook on the denoiser records, before every call, what the processors
read: the timesteps, the number of frames, the batch size and the denoiser's own timestep embedding
temb(t), computed the way its forward does:
- UNetMotionModel: time_embedding(time_proj(t)) (sinusoids in float32, cast to the UNet's dtype). A
  `timestep_cond` (text-to-time conditioning) is deliberately left out: w(t) depends on the noise level only.
- WanTransformer3DModel: condition_embedder.time_embedder(condition_embedder.timesteps_proj(t)) in the time
  embedder's dtype (the `temb` Wan modulates its blocks with); frames and the token grid are the latent
  patch grid (f', h', w') = (f / p_t, h / p_h, w / p_w) that orders the DiT's `b (f' h' w') d` tokens.

The state is kept after the call on purpose: gradient checkpointing re-runs processors during
backward, after the UNet forward has returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


@dataclass
class CallContext:
    """What the latest UNet forward looked like (read by every MIVA processor)."""

    timesteps: torch.Tensor | None = None  # (b,) float, one per video
    temb: torch.Tensor | None = None  # (b, temb_dim): the UNet's own timestep embedding
    num_frames: int | None = None  # latent frames (UNet: video frames; DiT: patch-grid frames f')
    batch_size: int | None = None
    grid: tuple[int, int, int] | None = None  # DiT only: (f', h', w') of the token sequence `b (f' h' w') d`
    hooks: list[RemovableHandle] = field(default_factory=list, repr=False)

    def require(self) -> "CallContext":
        if self.temb is None or self.num_frames is None or self.batch_size is None:
            raise RuntimeError(
                "MIVA processors ran outside a UNet forward (no timestep/frame state captured). "
                "Call the UNet itself after attach_mivas(), not its attention modules alone."
            )
        return self

    def frame_batch(self, tokens: torch.Tensor) -> int:
        """Number of videos in a `(b f) n c` token tensor; checks it agrees with the captured frames."""
        self.require()
        if tokens.shape[0] % self.num_frames:
            raise RuntimeError(
                f"token batch {tokens.shape[0]} is not a multiple of num_frames={self.num_frames}; "
                "MIVA expects spatial tokens laid out as `(b f) n c`."
            )
        return tokens.shape[0] // self.num_frames

    def per_video(self, values: torch.Tensor, video_count: int) -> torch.Tensor:
        """Repeat a per-video tensor when the token batch holds more videos (e.g. a guidance batch)."""
        if values.shape[0] == video_count:
            return values
        if video_count % values.shape[0]:
            raise RuntimeError(f"cannot broadcast {values.shape[0]} timestep rows over {video_count} videos")
        return values.repeat_interleave(video_count // values.shape[0], dim=0)


def _argument(args: tuple, kwargs: dict[str, Any], position: int, name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else None


class CaptureCallState:
    """Forward pre-hook of the UNet that fills a `CallContext` (a class, not a closure, so a UNet with
    MIVAs attached can still be deep-copied or pickled consistently)."""

    def __init__(self, context: CallContext) -> None:
        self.context = context

    def __call__(self, unet: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        sample = _argument(args, kwargs, 0, "sample")
        timestep = _argument(args, kwargs, 1, "timestep")
        if sample is None or sample.ndim != 5:
            raise ValueError("MIVA needs the UNet sample as a 5-D tensor `b c f h w`")
        batch = sample.shape[0]
        timesteps = torch.as_tensor(timestep, device=sample.device).reshape(-1)
        timesteps = timesteps.expand(batch) if timesteps.numel() == 1 else timesteps
        with torch.no_grad():  # the base's time embedding is frozen: a constant input for w(t)
            sinusoids = unet.time_proj(timesteps).to(dtype=unet.dtype)
            self.context.temb = unet.time_embedding(sinusoids)
        self.context.timesteps = timesteps.float()
        self.context.num_frames = int(sample.shape[2])
        self.context.batch_size = int(batch)


class CaptureWanCallState:
    """Forward pre-hook of a WanTransformer3DModel that fills a `CallContext` (see the module docstring)."""

    def __init__(self, context: CallContext) -> None:
        self.context = context

    def __call__(self, model: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        sample = _argument(args, kwargs, 0, "hidden_states")
        timestep = _argument(args, kwargs, 1, "timestep")
        if sample is None or sample.ndim != 5:
            raise ValueError("MIVA needs the Wan transformer input as a 5-D tensor `b c f h w`")
        timesteps = torch.as_tensor(timestep, device=sample.device)
        if timesteps.ndim > 1:
            raise ValueError("per-token timesteps `b L` (Wan2.2 TI2V) are not supported by MIVA: pass one timestep per video")
        batch = sample.shape[0]
        timesteps = timesteps.reshape(-1)
        timesteps = timesteps.expand(batch) if timesteps.numel() == 1 else timesteps
        p_t, p_h, p_w = model.config.patch_size
        embedder = model.condition_embedder
        with torch.no_grad():  # the base's time embedding is frozen: a constant input for w(t)
            sinusoids = embedder.timesteps_proj(timesteps)
            self.context.temb = embedder.time_embedder(sinusoids.to(next(embedder.time_embedder.parameters()).dtype))
        self.context.timesteps = timesteps.float()
        self.context.grid = (sample.shape[2] // p_t, sample.shape[3] // p_h, sample.shape[4] // p_w)
        self.context.num_frames = self.context.grid[0]
        self.context.batch_size = int(batch)


def install_context(unet: nn.Module) -> CallContext:
    """Hook the denoiser (UNet or Wan DiT) so that each forward refreshes one `CallContext`; `remove_context`
    undoes it."""
    from miva_lightning.backbones.base import denoiser_family

    context = CallContext()
    capture = CaptureWanCallState if denoiser_family(unet) == "dit" else CaptureCallState
    context.hooks.append(unet.register_forward_pre_hook(capture(context), with_kwargs=True))
    return context


def remove_context(context: CallContext) -> None:
    for hook in context.hooks:
        hook.remove()
    context.hooks.clear()
