"""MIVA on Wan's DiT (diffusers `WanTransformer3DModel`): where each component attaches, and the CFA's token layout.

Every `blocks.i` (a `WanTransformerBlock`) gets, by module name, as on the UNet:
- CFA beside the self-attention `blocks.i.attn1` (a processor wrapping attn1's own): attn1's output becomes
  `SA(x) + sum_k w_k CFA_k(x)`, x = the block's modulated, normalised tokens; the block then gates the sum
  with its `gate_msa` and adds it to the residual stream, exactly as it does with SA alone.
- the implicit prompt in place of the text cross-attention `blocks.i.attn2` (`ImplicitPromptProcessor`;
  its queries are attn2's `norm_q(to_q(h))`, h = `norm2` of the residual stream).
- the temporal LoRA on `blocks.i.attn1.{to_q,to_k,to_v,to_out.0}` (`temporal_lora.py`): the DiT's only
  attention across frames is this full 3-D self-attention.
No time-route offset: Wan has no text-to-time conditioning.

Token layout. The DiT's tokens are `b (f h w) d` over the latent patch grid (f, h, w) = (f'/1, h'/2, w'/2)
that the context hook records; the CFA regroups them per latent frame, `b (f n) d -> (b f) n d` with
n = h w, and frame f is a LATENT frame. Wan's VAE is causal: latent frame 1 encodes the input image alone,
later latent frames cover 4 video frames each, so "previous frame" means the previous group of 4 frames.

Queries, keys and values, per head (h heads of width d):
- Q = norm_q(x Wq' + bq'), Wq' / bq' trainable copies of attn1's, norm_q attn1's frozen RMS norm;
- K = norm_k(x Wk + bk), V = x Wv + bv: attn1's frozen projections (underneath any LoRA) and norm;
- RoPE (`cfa_rope`): "positions" (default) rotates Q and K exactly as attn1 does, each token by its own
  (frame, row, column) position; a key of frame 1 seen from frame i therefore keeps its temporal offset i - 1,
  and at initialisation (Wq' = Wq, w = 1/2) the CFA is half of the base's own attention restricted to the
  keys of frames 1 and i - 1. "none" uses no RoPE in the CFA (the authors' Wan code).
Then `CrossFrameAdapter.attend` (shared with the UNet) mixes the two key sets with w(t), w(t) read off
Wan's own time embedding temb (1536-d on the 1.3B model), and projects with the zero-initialised Wo'.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from einops import rearrange
from torch import nn

from miva_lightning.adapters.context import CallContext
from miva_lightning.adapters.cross_frame_attention import (
    CrossFrameAdapter,
    MergedCrossFrameCache,
    SharedFrameKV,
    check_cfa_mode,
    frozen_linear,
)

CFA_ROPE_MODES = ("positions", "none")


def dit_attention_names(model: nn.Module, which: str) -> list[str]:
    """Names of every DiT block's `attn1` (self-attention) or `attn2` (text cross-attention)."""
    names = []
    for name, _ in model.named_modules():
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit() and parts[2] == which:
            names.append(name)
    return names


def dit_time_embedding_dim(model: nn.Module) -> int:
    """Width of Wan's timestep embedding temb (what w(t) reads)."""
    return model.condition_embedder.time_embedder.linear_2.out_features


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding on `b s h d` (pairs of adjacent channels rotated by the position's angle).

    cos / sin `1 s 1 d` as `WanRotaryPosEmbed` returns them (each angle repeated for the two channels of its
    pair). Computed in the buffers' precision and cast back, as diffusers' WanAttnProcessor does.
    """
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos, sin = cos[..., 0::2], sin[..., 1::2]
    rotated = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    return rotated.to(x.dtype)


def _tokens_per_frame(tokens: torch.Tensor, context: CallContext) -> int:
    context.require()
    if context.grid is None:
        raise RuntimeError("the DiT CFA needs the token grid: attach with attach_mivas() to a WanTransformer3DModel")
    frames, height, width = context.grid
    if tokens.ndim != 3 or tokens.shape[1] != frames * height * width:
        raise ValueError(
            f"DiT CFA expects attn1 tokens `b (f h w) d` with f h w = {frames}*{height}*{width}, got {tuple(tokens.shape)}"
        )
    return height * width


def _heads(tensor: torch.Tensor, heads: int, rotary_emb) -> torch.Tensor:
    """`b s (h d)` -> `b s h d`, rotated when `rotary_emb` is given."""
    tensor = tensor.unflatten(2, (heads, -1))
    return rotate(tensor, *rotary_emb) if rotary_emb is not None else tensor


def dit_frame_kv(attn1: nn.Module, tokens: torch.Tensor, rotary_emb, context: CallContext) -> SharedFrameKV:
    """Frozen K = norm_k(to_k x) and V = to_v x of `b (f n) d` tokens, regrouped per latent frame."""
    n = _tokens_per_frame(tokens, context)
    keys = _heads(attn1.norm_k(frozen_linear(attn1.to_k)(tokens)), attn1.heads, rotary_emb)
    values = _heads(frozen_linear(attn1.to_v)(tokens), attn1.heads, None)
    per_frame = lambda t: rearrange(t, "b (f n) h d -> b f h n d", n=n)  # noqa: E731
    return SharedFrameKV.from_frames(per_frame(keys), per_frame(values), scale=keys.shape[-1] ** -0.5)


def dit_frame_query(adapter: CrossFrameAdapter, attn1: nn.Module, tokens: torch.Tensor, rotary_emb, n: int) -> torch.Tensor:
    """Q = norm_q(x Wq' + bq') of `b (f n) d` tokens (rotated like attn1's) -> `(b f) h n d` in the adapter's dtype."""
    query = adapter.to_q(tokens.to(adapter.to_q.weight.dtype))
    norm = attn1.norm_q
    query = norm(query.to(norm.weight.dtype)).to(query.dtype) if getattr(norm, "weight", None) is not None else norm(query)
    return rearrange(_heads(query, attn1.heads, rotary_emb), "b (f n) h d -> (b f) h n d", n=n)


class DiTCrossFrameAttnProcessor:
    """Wraps a DiT attn1's processor and adds the weighted CFA branches of all attached adapters.

    Called as Wan's attention calls its processor: `(attn, hidden_states, encoder_hidden_states,
    attention_mask, rotary_emb)`. A plain object, not an nn.Module, so no adapter parameter is registered
    in the transformer.
    """

    def __init__(
        self,
        base_processor: Any,
        adapters: Sequence[CrossFrameAdapter | None],
        weights: list[float],
        context: CallContext,
        rope: str = "positions",
        cfa_mode: str = "sum",
    ) -> None:
        if rope not in CFA_ROPE_MODES:
            raise ValueError(f"unknown cfa_rope '{rope}'; choose one of {CFA_ROPE_MODES}")
        self.base_processor = base_processor
        self.adapters = list(adapters)
        self.weights = weights  # shared list, updated in place by set_weights
        self.context = context
        self.rope = rope
        self.merged = MergedCrossFrameCache() if check_cfa_mode(cfa_mode) == "merge" else None

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        output = self.base_processor(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb, **kwargs)
        active = [(a, w) for a, w in zip(self.adapters, self.weights) if a is not None and w != 0]
        if not active:
            return output
        rope = rotary_emb if self.rope == "positions" else None
        if self.rope == "positions" and rope is None:
            raise RuntimeError("cfa_rope='positions' but attn1 received no rotary embedding")
        n = _tokens_per_frame(hidden_states, self.context)
        shared = dit_frame_kv(attn, hidden_states, rope, self.context)
        if self.merged is not None:
            active = self.merged.active(active)
        for adapter, weight in active:
            query = dit_frame_query(adapter, attn, hidden_states, rope, n)
            branch = rearrange(adapter.attend(query, shared, self.context), "(b f) n d -> b (f n) d", f=shared.frames)
            output = output + weight * branch.to(output.dtype)
        return output
