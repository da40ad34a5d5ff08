"""Timestep weighting w(t): how much a CFA layer listens to the first frame (appearance) versus the
previous frame (smoothness). Returns w per video; the previous frame gets 1 - w."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from miva_lightning.adapters.context import CallContext

WEIGHTING_KINDS = ("adaptive", "fixed", "linear")


class AdaptiveWeighting(nn.Module):
    """`[a, b] = Linear(SiLU(temb))`, `(w, 1 - w) = softmax([a, b] / tau)`.

    Zero-initialised, so a fresh module gives w = 0.5 exactly at every timestep.
    """

    def __init__(self, temb_dim: int, tau: float = 0.2) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"weighting tau must be > 0, got {tau}")
        self.tau = tau
        self.proj = nn.Linear(temb_dim, 2)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, context: CallContext) -> torch.Tensor:
        temb = context.require().temb.to(self.proj.weight.dtype)
        logits = self.proj(F.silu(temb))
        return torch.softmax(logits / self.tau, dim=-1)[:, 0]


class FixedWeighting(nn.Module):
    """Constant w (0.5 balances first and previous frame equally)."""

    def __init__(self, value: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"fixed weighting value must be in [0, 1], got {value}")
        self.value = value

    def forward(self, context: CallContext) -> torch.Tensor:
        timesteps = context.require().timesteps
        return torch.full_like(timesteps, self.value, dtype=torch.float32)


class LinearWeighting(nn.Module):
    """w = t / T: the first frame dominates at high noise, the previous frame near the end."""

    def __init__(self, num_train_timesteps: int = 1000) -> None:
        super().__init__()
        if num_train_timesteps <= 0:
            raise ValueError(f"num_train_timesteps must be > 0, got {num_train_timesteps}")
        self.num_train_timesteps = num_train_timesteps

    def forward(self, context: CallContext) -> torch.Tensor:
        timesteps = context.require().timesteps.float()
        return (timesteps / self.num_train_timesteps).clamp(0.0, 1.0)


def build_weighting(kind: str, temb_dim: int, tau: float, fixed_value: float, num_train_timesteps: int) -> nn.Module:
    if kind == "adaptive":
        return AdaptiveWeighting(temb_dim, tau)
    if kind == "fixed":
        return FixedWeighting(fixed_value)
    if kind == "linear":
        return LinearWeighting(num_train_timesteps)
    raise ValueError(f"unknown weighting '{kind}'; choose one of {WEIGHTING_KINDS}")
