"""Optimizer and learning-rate schedule shared by every few-shot method (MIVA, MotionLoRA, LAMP, full FT)."""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

LR_SCHEDULES = ("constant", "cosine", "linear")


@dataclass
class MivaOptimization:
    """Optimizer and learning-rate schedule (gradient clipping and precision live in the Trainer config)."""

    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    eight_bit: bool = False  # bitsandbytes AdamW8bit when installed
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # after warmup: constant | cosine | linear (to min_lr_ratio * lr at total_steps)
    min_lr_ratio: float = 0.0
    total_steps: int | None = None  # defaults to trainer.max_steps
    # Learning-rate multipliers per MIVA component (cross_frame, implicit_prompt, temporal_lora,
    # time_condition). The time-condition offset is one free vector that must travel as far as a caption
    # embedding does (rms ~1 per element on the tiny base): at the matrices' lr it would move ~0.2 in
    # 600 steps, so it gets a textual-inversion-like rate. Methods without MIVA components ignore it.
    component_lr_scale: dict[str, float] = field(default_factory=lambda: {"time_condition": 30.0})

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule {self.lr_schedule!r} unknown; use one of {LR_SCHEDULES}")
        if self.lr <= 0 or self.warmup_steps < 0:
            raise ValueError(f"need lr > 0 and warmup_steps >= 0, got lr={self.lr}, warmup_steps={self.warmup_steps}")
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.component_lr_scale = dict(self.component_lr_scale or {})
        for component, scale in self.component_lr_scale.items():
            if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
                raise ValueError(f"component_lr_scale[{component!r}] = {scale!r}: use a finite number > 0")


def as_optimization(optimization: MivaOptimization | dict | None) -> MivaOptimization:
    return optimization if isinstance(optimization, MivaOptimization) else MivaOptimization(**(optimization or {}))


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (linear warmup, then the schedule)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant" or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * decay


EIGHT_BIT_FALLBACK = (
    "optimization.eight_bit=true but bitsandbytes is not installed: training uses torch.optim.AdamW with "
    "32-bit optimizer states instead (4x their memory). For 8-bit AdamW install the extra on a CUDA machine: "
    "pip install -e '.[bnb]' (or pip install bitsandbytes)"
)
_eight_bit_fallback_reported = False  # the fallback is reported once per process, not at every fit


def build_adamw(params: list[nn.Parameter] | list[dict[str, Any]], opt: MivaOptimization) -> torch.optim.Optimizer:
    """AdamW; bitsandbytes' AdamW8bit when `opt.eight_bit` and bitsandbytes is installed (extra `bnb`)."""
    global _eight_bit_fallback_reported
    if opt.eight_bit:
        try:
            import bitsandbytes as bnb  # optional: the `bnb` extra, not a pinned dependency

            return bnb.optim.AdamW8bit(params, lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay)
        except ImportError:
            if not _eight_bit_fallback_reported:
                _eight_bit_fallback_reported = True
                log.warning(EIGHT_BIT_FALLBACK)
                warnings.warn(EIGHT_BIT_FALLBACK, UserWarning, stacklevel=2)
    return torch.optim.AdamW(params, lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay)


def optimizer_and_schedule(groups: list[dict[str, Any]], opt: MivaOptimization, trainer) -> dict[str, Any]:
    """Lightning's `configure_optimizers` answer: AdamW over `groups`, warmup + schedule stepped per step."""
    optimizer = build_adamw(groups, opt)
    total = opt.total_steps or (trainer.max_steps if trainer and trainer.max_steps > 0 else 0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, opt.warmup_steps, total, opt.lr_schedule, opt.min_lr_ratio)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
