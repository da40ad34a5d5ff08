"""Cross-Frame Attention (CFA, "SA adapter"): an extra attention branch beside each spatial
self-attention `attn1`, added to its output: `attn1(x) + sum_k w_k CFA_k(x)`.

For frame i the keys come from frame 1 and frame i-1 (frame 1's previous frame is itself) through
attn1's own frozen Wk / Wv; the query uses a trainable copy of Wq and the output a trainable,
zero-initialised Wo, so an untrained adapter changes nothing. Keys and values are the same for every
attached adapter and are computed once per layer and call; only Q, w(t) and Wo differ per adapter.

This file holds the maths and the UNet's token layout `(b f) n c`; `adapters/wan_dit.py` feeds the same
`CrossFrameAdapter.attend` from the Wan DiT's `b (f n) c` tokens (with its q/k RMS norms and 3-D RoPE).
Keys and values always come from the base's frozen projections, even when a LoRA wraps them (`frozen_linear`).
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from miva_lightning.adapters.context import CallContext
from miva_lightning.adapters.weighting import build_weighting

CFA_VARIANTS = ("joint", "separate")
# How several attached adapters' CFA branches combine:
# - "sum" (METHOD): attn1(x) + sum_k w_k CFA_k(x), exact; each adapter costs its own attention over the first and
#   previous frame's keys (2n keys per query), so K adapters cost K such attentions;
# - "merge" (an approximation, inference only): one CFA whose Wq' is the weight-normalised mean of the adapters'
#   Wq', whose Wo' is sum_k w_k Wo'_k and whose w(t) is the weight-normalised mean of theirs: the cost of one
#   adapter whatever K. Exact for one adapter and for copies of one adapter; otherwise the softmax of the mean
#   query differs from the mean of the softmaxes (measured effect: README, "Several motions at once").
CFA_MODES = ("sum", "merge")


class CrossFrameAdapter(nn.Module):
    """One adapter's trainable part of one CFA layer: Wq', Wo' and its weighting module."""

    def __init__(
        self,
        query_dim: int,
        inner_dim: int,
        temb_dim: int,
        variant: str = "joint",
        weighting: str = "adaptive",
        tau: float = 0.2,
        fixed_weight: float = 0.5,
        num_train_timesteps: int = 1000,
        query_bias: bool = False,
    ) -> None:
        """`query_bias`: Wq' has a bias (copied from attn1's, e.g. Wan's attention; SD1.5's attn1 has none)."""
        super().__init__()
        if variant not in CFA_VARIANTS:
            raise ValueError(f"unknown CFA variant '{variant}'; choose one of {CFA_VARIANTS}")
        self.variant = variant
        self.to_q = nn.Linear(query_dim, inner_dim, bias=query_bias)
        self.to_out = nn.Linear(inner_dim, query_dim, bias=True)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)
        self.weighting = build_weighting(weighting, temb_dim, tau, fixed_weight, num_train_timesteps)

    @torch.no_grad()
    def init_from(self, attn1: nn.Module) -> None:
        """Start Wq' (and its bias, if any) from the frozen self-attention's Wq (the METHOD's initialisation)."""
        source = frozen_linear(attn1.to_q)
        self.to_q.weight.copy_(source.weight)
        if self.to_q.bias is not None:
            self.to_q.bias.copy_(source.bias)

    def forward(self, tokens: torch.Tensor, shared: "SharedFrameKV", context: CallContext) -> torch.Tensor:
        """tokens `(b f) n c` -> CFA output `(b f) n c` (before the user weight)."""
        query = rearrange(self.to_q(tokens.to(self.to_q.weight.dtype)), "bf n (h d) -> bf h n d", h=shared.heads)
        return self.attend(query, shared, context)

    def attend(self, query: torch.Tensor, shared: "SharedFrameKV", context: CallContext) -> torch.Tensor:
        """queries `(b f) h n d` (already projected, normed, rotated as the base does) -> `(b f) n c`."""
        dtype = query.dtype  # the adapter's dtype, or autocast's
        first_weight = context.per_video(self.weighting(context), shared.videos).to(dtype)
        first_weight = rearrange(first_weight, "b -> b 1").expand(-1, shared.frames)
        first_weight = rearrange(first_weight, "b f -> (b f) 1 1 1")
        k_first, v_first, k_prev, v_prev = (t.to(dtype) for t in shared.tensors())
        if self.variant == "joint":
            keys = torch.cat([k_first, k_prev], dim=2)
            values = torch.cat([first_weight * v_first, (1 - first_weight) * v_prev], dim=2)
            mixed = F.scaled_dot_product_attention(query, keys, values, scale=shared.scale)
        else:
            from_first = F.scaled_dot_product_attention(query, k_first, v_first, scale=shared.scale)
            from_prev = F.scaled_dot_product_attention(query, k_prev, v_prev, scale=shared.scale)
            mixed = first_weight * from_first + (1 - first_weight) * from_prev
        return self.to_out(rearrange(mixed, "bf h n d -> bf n (h d)").to(self.to_out.weight.dtype))


class MixedWeighting(nn.Module):
    """w(t) of a merged CFA: sum_k c_k w_k(t) with c_k = the adapters' weights normalised to sum to 1."""

    def __init__(self, weightings: Sequence[nn.Module], shares: Sequence[float]) -> None:
        super().__init__()
        self.weightings = nn.ModuleList(weightings)
        self.shares = [float(c) for c in shares]

    def forward(self, context: CallContext) -> torch.Tensor:
        return sum(c * weighting(context).float() for c, weighting in zip(self.shares, self.weightings))


@torch.no_grad()
def merge_cross_frame(active: Sequence[tuple[CrossFrameAdapter, float]]) -> CrossFrameAdapter:
    """One CrossFrameAdapter standing for `active` (adapter, user weight) pairs at weight 1 (CFA_MODES "merge")."""
    adapters = [adapter for adapter, _ in active]
    variants = {adapter.variant for adapter in adapters}
    if len(variants) > 1:
        raise ValueError(f"cfa_mode='merge' needs one CFA variant, the attached adapters use {sorted(variants)}")
    weights = [float(w) for _, w in active]
    total = sum(weights)
    shares = [w / total for w in weights]
    first = adapters[0]
    merged = copy.deepcopy(first)  # same shapes, device, dtype and variant; every tensor is overwritten below
    merged.to_q.weight.copy_(sum(c * a.to_q.weight for c, a in zip(shares, adapters)))
    if merged.to_q.bias is not None:
        merged.to_q.bias.copy_(sum(c * a.to_q.bias for c, a in zip(shares, adapters)))
    merged.to_out.weight.copy_(sum(w * a.to_out.weight for w, a in zip(weights, adapters)))
    merged.to_out.bias.copy_(sum(w * a.to_out.bias for w, a in zip(weights, adapters)))
    merged.to_q.requires_grad_(False)
    merged.to_out.requires_grad_(False)
    # the adapters' own w(t) modules, shared, not copied: their requires_grad flags stay the caller's
    merged.weighting = MixedWeighting([a.weighting for a in adapters], shares)
    return merged


class MergedCrossFrameCache:
    """The merged CFA of one layer, rebuilt only when the attached adapters' weights change (set_weights); after
    changing an attached adapter's tensors in place, detach and attach again."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.merged: CrossFrameAdapter | None = None

    def active(self, active: list[tuple[CrossFrameAdapter, float]]) -> list[tuple[CrossFrameAdapter, float]]:
        """`active` itself for one adapter, else [(merged, 1.0)]."""
        if len(active) < 2:
            return active
        if torch.is_grad_enabled() and any(p.requires_grad for adapter, _ in active for p in adapter.parameters()):
            raise RuntimeError("cfa_mode='merge' is an inference approximation: it cannot train the adapters it merges; "
                               "attach with cfa_mode='sum' for training")
        key = tuple((id(adapter), weight) for adapter, weight in active)
        if key != self.key:
            self.key, self.merged = key, merge_cross_frame(active)
        return [(self.merged, 1.0)]


def check_cfa_mode(mode: str) -> str:
    if mode not in CFA_MODES:
        raise ValueError(f"unknown cfa_mode '{mode}'; choose one of {CFA_MODES}")
    return mode


def frozen_linear(layer: nn.Module) -> nn.Module:
    """The base Linear behind a peft LoRA wrapper (Wan's LoRA sits on the same attn1 projections), else itself."""
    return getattr(layer, "base_layer", layer)


class SharedFrameKV:
    """Frozen keys/values of frame 1 and of the previous frame, per frame, shared by all adapters."""

    def __init__(self, attn1: nn.Module, tokens: torch.Tensor, context: CallContext) -> None:
        """UNet layout: tokens `(b f) n c` through attn1's own Wk / Wv."""
        frames = context.num_frames
        context.frame_batch(tokens)
        keys = rearrange(frozen_linear(attn1.to_k)(tokens), "(b f) n (h d) -> b f h n d", f=frames, h=attn1.heads)
        values = rearrange(frozen_linear(attn1.to_v)(tokens), "(b f) n (h d) -> b f h n d", f=frames, h=attn1.heads)
        self._gather(keys, values, attn1.scale)

    @classmethod
    def from_frames(cls, keys: torch.Tensor, values: torch.Tensor, scale: float) -> "SharedFrameKV":
        """From keys / values already computed per frame, `b f h n d` (the DiT path)."""
        shared = cls.__new__(cls)
        shared._gather(keys, values, scale)
        return shared

    def _gather(self, keys: torch.Tensor, values: torch.Tensor, scale: float) -> None:
        self.videos, self.frames, self.heads = keys.shape[:3]
        self.scale = scale
        previous = torch.clamp(torch.arange(self.frames, device=keys.device) - 1, min=0)
        self.k_first = self._per_frame(keys[:, :1].expand_as(keys))
        self.v_first = self._per_frame(values[:, :1].expand_as(values))
        self.k_prev = self._per_frame(keys[:, previous])
        self.v_prev = self._per_frame(values[:, previous])

    @staticmethod
    def _per_frame(tensor: torch.Tensor) -> torch.Tensor:
        return rearrange(tensor, "b f h n d -> (b f) h n d")

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.k_first, self.v_first, self.k_prev, self.v_prev


class CrossFrameAttnProcessor:
    """Wraps attn1's original processor and adds the weighted CFA branches of all attached adapters.

    A plain object (not an nn.Module) so the adapters' parameters are never registered in the UNet.
    """

    def __init__(
        self,
        base_processor: Any,
        adapters: Sequence[CrossFrameAdapter | None],
        weights: list[float],
        context: CallContext,
        cfa_mode: str = "sum",
    ) -> None:
        self.base_processor = base_processor
        self.adapters = list(adapters)
        self.weights = weights  # shared list, updated in place by set_weights
        self.context = context
        self.merged = MergedCrossFrameCache() if check_cfa_mode(cfa_mode) == "merge" else None

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        output = self.base_processor(
            attn, hidden_states, encoder_hidden_states=encoder_hidden_states, attention_mask=attention_mask, **kwargs
        )
        active = [(a, w) for a, w in zip(self.adapters, self.weights) if a is not None and w != 0]
        if not active:
            return output
        if hidden_states.ndim != 3:
            raise ValueError(f"CFA expects attn1 tokens `(b f) n c`, got shape {tuple(hidden_states.shape)}")
        shared = SharedFrameKV(attn, hidden_states, self.context)
        if self.merged is not None:
            active = self.merged.active(active)
        for adapter, weight in active:
            output = output + weight * adapter(hidden_states, shared, self.context).to(output.dtype)
        return output
