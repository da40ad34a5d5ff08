"""Which diffusers scheduler samples a video: the backbone's own (DDIM for tiny and AnimateDiff, flow-matching
Euler or UniPC on flow sigmas for Wan) or, on DDPM-family backbones, one by name.

Every named scheduler is built with `from_config` from the backbone's sampling scheduler, so it shares
its betas, zero-SNR rescaling, timestep spacing and prediction type (diffusers ignores the keys a class
does not use). All of them step the same `b c f h w` latents; the sampler keeps frame 1 clean itself.
"""

from __future__ import annotations

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

# Schedulers for DDPM-family backbones (noise schedules from betas): tiny, AnimateDiff SD1.5.
SCHEDULERS = {
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler_ancestral": EulerAncestralDiscreteScheduler,
    "dpmsolver++": DPMSolverMultistepScheduler,
    "unipc": UniPCMultistepScheduler,
}


def is_flow_matching(scheduler) -> bool:
    """Flow-matching schedulers (Wan): diffusers' FlowMatch* classes, and UniPC run on flow sigmas."""
    config = getattr(scheduler, "config", {})
    return "FlowMatch" in type(scheduler).__name__ or config.get("prediction_type") == "flow_prediction"


def set_sampling_timesteps(scheduler, num_inference_steps: int, device=None) -> None:
    """`scheduler.set_timesteps` for one sampling run. The flow-matching Euler scheduler gets the sigma grid
    linspace(1, 0, N + 1)[:-1] (before its shift; the step after the last goes to 0), which is the authors'
    DiffSynth sampling grid for Wan; every other scheduler uses its own default spacing."""
    if isinstance(scheduler, FlowMatchEulerDiscreteScheduler) and not scheduler.config.get("use_dynamic_shifting"):
        sigmas = torch.linspace(1.0, 0.0, num_inference_steps + 1)[:-1].tolist()
        scheduler.set_timesteps(sigmas=sigmas, device=device)
    else:
        scheduler.set_timesteps(num_inference_steps, device=device)


def build_scheduler(backbone_scheduler, name: str | None = None):
    """A fresh scheduler for one sampling call: a copy of `backbone_scheduler` (name None) or `name`'s class."""
    if name is None:
        return type(backbone_scheduler).from_config(backbone_scheduler.config)
    key = str(name).lower()
    if key not in SCHEDULERS:
        raise ValueError(f"scheduler {name!r} unknown; use one of {sorted(SCHEDULERS)} or null (the backbone's own)")
    if is_flow_matching(backbone_scheduler):
        raise ValueError(
            f"scheduler {name!r} is for noise-prediction (DDPM-family) backbones, but this backbone samples with "
            f"{type(backbone_scheduler).__name__} (flow matching): set scheduler to null"
        )
    check_prediction_type(SCHEDULERS[key], backbone_scheduler.config)
    return SCHEDULERS[key].from_config(backbone_scheduler.config)


def check_prediction_type(scheduler_class, config) -> None:
    """Refuse a scheduler that cannot step this backbone's prediction type (e.g. Euler ancestral has no
    `sample` branch), found by one step on a throwaway instance rather than a copy of diffusers' tables."""
    probe = scheduler_class.from_config(config)
    probe.set_timesteps(2)
    x = torch.zeros(1, 1, 1, 1)
    try:
        probe.step(x, probe.timesteps[0], x, return_dict=False)
    except NotImplementedError as missing:
        raise ValueError(
            f"scheduler {scheduler_class.__name__} cannot sample a model that predicts "
            f"{config.get('prediction_type')!r} ({missing}); choose another scheduler"
        ) from None
