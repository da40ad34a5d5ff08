"""Cross-attention with an implicit prompt (CA, "CA adapter"), in place of the text cross-attention
`attn2` of every spatial transformer block:

    CA(h) = W3 GELU(LayerNorm_r(W2 (Wq_frozen h)))        (h = attn2's input, already LN2-normalised)

The r rows of W2 act as r learned key tokens and W3 as their values: a motion-specific prompt learned
instead of text. Wq_frozen is attn2's own query, computed once and shared by all adapters: its projection
and, on attentions that have one (Wan's `norm_q`, an RMS norm across heads), its query norm.
The UNet's attn2 sees `(b f) n c` tokens, Wan's `b (f n) c`; the CA is per token, so both work unchanged.

`base_branch` decides what stays of the frozen text cross-attention:
- "none" (METHOD): attn2 is replaced, its output is `sum_k w_k CA_k(h)` (zero for a zero-init adapter);
- "empty_prompt": the frozen attn2 still runs on the `encoder_hidden_states` the UNet receives (e.g. the
  empty prompt) and the implicit prompts are added, so a zero-init adapter leaves the base unchanged.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

BASE_BRANCHES = ("none", "empty_prompt")


class ImplicitPrompt(nn.Module):
    """One adapter's trainable part of one CA layer: W2 (d -> r), LayerNorm_r, W3 (r -> d, zero-init)."""

    def __init__(self, query_inner_dim: int, out_dim: int, rank: int = 64) -> None:
        super().__init__()
        if rank <= 0:
            raise ValueError(f"CA rank must be > 0, got {rank}")
        self.down = nn.Linear(query_inner_dim, rank, bias=False)  # W2: the r learned key tokens
        self.norm = nn.LayerNorm(rank)
        self.up = nn.Linear(rank, out_dim, bias=False)  # W3: their values
        nn.init.zeros_(self.up.weight)

    def forward(self, queries: torch.Tensor) -> torch.Tensor:
        """queries `(b f) n d_inner` (attn2.to_q of the tokens) -> `(b f) n d_out`."""
        queries = queries.to(self.down.weight.dtype)
        return self.up(F.gelu(self.norm(self.down(queries))))


class ImplicitPromptProcessor:
    """Replaces (or, with base_branch="empty_prompt", extends) attn2's processor. Plain object, no params."""

    def __init__(
        self,
        base_processor: Any,
        prompts: Sequence[ImplicitPrompt | None],
        weights: list[float],
        base_branch: str = "none",
    ) -> None:
        if base_branch not in BASE_BRANCHES:
            raise ValueError(f"unknown CA base_branch '{base_branch}'; choose one of {BASE_BRANCHES}")
        self.base_processor = base_processor
        self.prompts = list(prompts)
        self.weights = weights  # shared list, updated in place by set_weights
        self.base_branch = base_branch

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        """`*args` carries what some attentions pass positionally after the mask (Wan: `rotary_emb`, None here)."""
        if self.base_branch == "empty_prompt":
            output = self.base_processor(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)
        else:
            output = hidden_states.new_zeros(*hidden_states.shape[:-1], attn.to_out[0].out_features)
        active = [(p, w) for p, w in zip(self.prompts, self.weights) if p is not None and w != 0]
        if not active:
            return output
        queries = attn.to_q(hidden_states)  # frozen, shared by all adapters
        if getattr(attn, "norm_q", None) is not None:  # Wan: RMS norm of the query (None on SD1.5's attn2)
            queries = attn.norm_q(queries)
        for prompt, weight in active:
            output = output + weight * prompt(queries).to(output.dtype)
        return output
