"""The implicit prompt's second route: a learned offset to the UNet's text-to-time conditioning.

Some bases feed the caption into the UNet twice: through cross-attention (attn2, replaced by the CA
adapter) and, token-averaged, through the timestep embedding (`time_cond_proj_dim`, diffusers'
`TimestepEmbedding.cond_proj`; the embedded tiny base does this, SD1.5 + AnimateDiff and Wan2.1 do
not). A MIVA uses no text, so with CA alone that second route would keep receiving the empty prompt,
i.e. the base's "no motion asked for" signal, which the adapter would then have to fight. This
component learns what that route receives instead:

    condition' = condition + sum_k w_k offset_k        (offset_k: one vector per adapter, zero at init)

It is an addition (not a replacement) so that a zero-initialised MIVA leaves the base unchanged. On a
UNet without a time-conditioning route nothing is created or attached.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn


def time_condition_dim(unet: nn.Module) -> int | None:
    """Width of the UNet's text-to-time conditioning input, or None when it has no such route."""
    dim = getattr(getattr(unet, "config", None), "time_cond_proj_dim", None)
    return int(dim) if dim else None


class ImplicitTimeCondition(nn.Module):
    """One adapter's learned offset of the time-conditioning vector (zero-initialised)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim <= 0:
            raise ValueError(f"time-condition width must be > 0, got {dim}")
        self.offset = nn.Parameter(torch.zeros(dim))


class TimeConditionHook:
    """Forward pre-hook of `unet.time_embedding`: shifts its `condition` argument by the weighted offsets.

    Calls without a condition (e.g. the MIVA context computing the noise-level-only temb(t)) pass through.
    A class, not a closure, so a UNet with MIVAs attached can still be deep-copied.
    """

    def __init__(self, offsets: Sequence[ImplicitTimeCondition | None], weights: list[float]) -> None:
        self.offsets = list(offsets)
        self.weights = weights  # shared list, updated in place by set_weights

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]):
        in_kwargs = "condition" in kwargs
        condition = kwargs["condition"] if in_kwargs else (args[1] if len(args) > 1 else None)
        if condition is None:
            return None
        active = [(o, w) for o, w in zip(self.offsets, self.weights) if o is not None and w != 0]
        if not active:
            return None
        shift = sum(w * o.offset for o, w in active)
        shifted = condition + shift.to(dtype=condition.dtype, device=condition.device)
        if in_kwargs:
            return args, {**kwargs, "condition": shifted}
        return (args[0], shifted, *args[2:]), kwargs
