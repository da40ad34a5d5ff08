"""One MIVA: its config and trainable parameters, built for an unmodified diffusers denoiser by module name: a
`UNetMotionModel` (tiny, AnimateDiff) or a `WanTransformer3DModel` (Wan2.1 DiT; the DiT-specific parts live in
`adapters/wan_dit.py`). Attaching one or several to the denoiser: `adapters/attach.py`.

Layers are found by name. UNet: spatial self-attention `...attentions.j.transformer_blocks.k.attn1` (CFA),
spatial text cross-attention `...attn2` (CA), temporal attention projections inside `motion_modules`
(LoRA), and `time_embedding` (the implicit prompt's time-route offset, on UNets that have that route).
DiT: `blocks.i.attn1` (CFA), `blocks.i.attn2` (CA), `blocks.i.attn1.{to_q,to_k,to_v,to_out.0}` (LoRA).
Parameters live in the `Miva` under the layer name with dots replaced by "_".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from miva_lightning.adapters.cross_frame_attention import CFA_VARIANTS, CrossFrameAdapter
from miva_lightning.adapters.implicit_prompt import BASE_BRANCHES, ImplicitPrompt
from miva_lightning.adapters.implicit_time_condition import ImplicitTimeCondition, time_condition_dim
from miva_lightning.adapters.temporal_lora import LORA_INITS, LoraPair, temporal_lora_targets
from miva_lightning.adapters.wan_dit import CFA_ROPE_MODES, dit_attention_names, dit_time_embedding_dim
from miva_lightning.adapters.weighting import WEIGHTING_KINDS
from miva_lightning.backbones.base import denoiser_family

@dataclass
class MivaConfig:
    """Which components a MIVA has and how they are shaped (every switch is an ablation)."""

    name: str = "miva"
    cross_frame: bool = True  # CFA beside every spatial attn1
    cfa_variant: str = "joint"  # joint | separate
    weighting: str = "adaptive"  # adaptive | fixed | linear
    tau: float = 0.2
    fixed_weight: float = 0.5
    num_train_timesteps: int = 1000  # T of the linear weighting w = t / T
    cfa_rope: str = "positions"  # DiT only: positions (queries/keys rotated like attn1's) | none (the authors')
    implicit_prompt: bool = True  # CA in place of every spatial attn2
    ca_rank: int = 64
    base_branch: str = "none"  # none (METHOD: attn2 replaced) | empty_prompt (frozen attn2 kept, CA added)
    implicit_time_cond: bool = True  # learned offset of the caption->timestep route (only on UNets that have one)
    temporal_lora: bool = True
    lora_rank: int = 32
    lora_alpha: float | None = None  # dW scaled by lora_alpha / lora_rank; None = scale 1 (authors: 1.0 -> 1/rank)
    lora_init: str = "kaiming"  # init of LoRA's A: kaiming (peft's) | normal (authors': N(0, std=1/rank))

    def __post_init__(self) -> None:
        for value, allowed, key in (
            (self.cfa_variant, CFA_VARIANTS, "cfa_variant"),
            (self.weighting, WEIGHTING_KINDS, "weighting"),
            (self.base_branch, BASE_BRANCHES, "base_branch"),
            (self.lora_init, LORA_INITS, "lora_init"),
            (self.cfa_rope, CFA_ROPE_MODES, "cfa_rope"),
        ):
            if value not in allowed:
                raise ValueError(f"MivaConfig.{key}='{value}' is not one of {allowed}")
        for key in ("ca_rank", "lora_rank", "num_train_timesteps"):
            if int(getattr(self, key)) <= 0:
                raise ValueError(f"MivaConfig.{key} must be a positive integer, got {getattr(self, key)}")
        if self.lora_alpha is not None:
            self.lora_alpha = float(self.lora_alpha)
            if not (math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
                raise ValueError(f"MivaConfig.lora_alpha must be a finite number > 0 or null, got {self.lora_alpha}")
        if not self.tau > 0:
            raise ValueError(f"MivaConfig.tau must be > 0, got {self.tau}")
        if not 0.0 <= self.fixed_weight <= 1.0:
            raise ValueError(f"MivaConfig.fixed_weight must be in [0, 1], got {self.fixed_weight}")
        if not (self.cross_frame or self.implicit_prompt or self.temporal_lora or self.implicit_time_cond):
            raise ValueError(
                "MivaConfig enables no component: turn on cross_frame, implicit_prompt, temporal_lora or implicit_time_cond"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "MivaConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown MivaConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**values)


COMPONENTS = ("cross_frame", "implicit_prompt", "temporal_lora", "time_condition")
TIME_CONDITION_KEY = "time_embedding"


def layer_key(module_name: str) -> str:
    """Module name -> ModuleDict key (dots are not allowed there)."""
    return module_name.replace(".", "_")


def spatial_attention_names(unet: nn.Module, which: str) -> list[str]:
    """Names of the spatial transformer blocks' `attn1` or `attn2` (motion modules excluded)."""
    names = []
    for name, _ in unet.named_modules():
        parts = name.split(".")
        if parts[-1] == which and parts[-3:-2] == ["transformer_blocks"] and "attentions" in parts:
            if "motion_modules" not in parts:
                names.append(name)
    return names


def cfa_layer_names(unet: nn.Module) -> list[str]:
    """Where CFA attaches: the UNet's spatial `attn1`s, or every DiT block's `attn1`."""
    return dit_attention_names(unet, "attn1") if denoiser_family(unet) == "dit" else spatial_attention_names(unet, "attn1")


def ca_layer_names(unet: nn.Module) -> list[str]:
    """Where the implicit prompt attaches: the UNet's spatial `attn2`s, or every DiT block's `attn2`."""
    return dit_attention_names(unet, "attn2") if denoiser_family(unet) == "dit" else spatial_attention_names(unet, "attn2")


def time_embedding_dim(unet: nn.Module) -> int:
    """Width of the denoiser's own timestep embedding temb(t) (what w(t) reads)."""
    if denoiser_family(unet) == "dit":
        return dit_time_embedding_dim(unet)
    return unet.time_embedding.linear_2.out_features


def _linear(layer: nn.Module) -> nn.Module:
    return getattr(layer, "base_layer", layer)  # the base Linear behind a peft wrapper


class Miva(nn.Module):
    """The trainable parameters of ONE motion adapter, keyed by the denoiser layer they attach to."""

    def __init__(
        self,
        config: MivaConfig,
        cross_frame: dict[str, CrossFrameAdapter] | None = None,
        implicit_prompt: dict[str, ImplicitPrompt] | None = None,
        temporal_lora: dict[str, LoraPair] | None = None,
        time_condition: dict[str, ImplicitTimeCondition] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.cross_frame = nn.ModuleDict(cross_frame or {})
        self.implicit_prompt = nn.ModuleDict(implicit_prompt or {})
        self.temporal_lora = nn.ModuleDict(temporal_lora or {})
        self.time_condition = nn.ModuleDict(time_condition or {})  # at most one entry: "time_embedding"

    @classmethod
    def from_unet(cls, unet: nn.Module, config: MivaConfig | None = None, init_from_base: bool = True) -> "Miva":
        """A fresh (zero-effect) MIVA shaped for `unet` (a UNetMotionModel or a Wan DiT), on its device; Wq'
        (and its bias, where attn1 has one) starts as attn1's Wq.

        `init_from_base=False` only builds the shapes (used on the meta device to check a file)."""
        config = config or MivaConfig()
        cross_frame, implicit_prompt, temporal_lora, time_condition = {}, {}, {}, {}
        if config.cross_frame:
            for name in cfa_layer_names(unet):
                attn1 = unet.get_submodule(name)
                query = _linear(attn1.to_q)
                adapter = CrossFrameAdapter(
                    query.in_features,
                    query.out_features,
                    time_embedding_dim(unet),
                    config.cfa_variant,
                    config.weighting,
                    config.tau,
                    config.fixed_weight,
                    config.num_train_timesteps,
                    query_bias=query.bias is not None,
                )
                if init_from_base:
                    adapter.init_from(attn1)
                cross_frame[layer_key(name)] = adapter
        if config.implicit_prompt:
            for name in ca_layer_names(unet):
                attn2 = unet.get_submodule(name)
                implicit_prompt[layer_key(name)] = ImplicitPrompt(
                    attn2.to_q.out_features, attn2.to_out[0].out_features, config.ca_rank
                )
        if config.temporal_lora:
            for name, linear in temporal_lora_targets(unet).items():
                temporal_lora[layer_key(name)] = LoraPair(
                    linear.in_features, linear.out_features, config.lora_rank, config.lora_init
                )
        if config.implicit_time_cond and (cond_dim := time_condition_dim(unet)):
            time_condition[TIME_CONDITION_KEY] = ImplicitTimeCondition(cond_dim)
        if not (cross_frame or implicit_prompt or temporal_lora or time_condition):
            raise ValueError(f"{type(unet).__name__} has no spatial attention or motion modules to adapt")
        miva = cls(config, cross_frame, implicit_prompt, temporal_lora, time_condition)
        return miva.to(device=next(unet.parameters()).device) if init_from_base else miva

    @classmethod
    def from_shapes(cls, config: MivaConfig, shapes: dict[str, tuple[int, ...]]) -> "Miva":
        """Rebuild an (uninitialised) MIVA from its state-dict shapes, e.g. when loading without a UNet."""

        def shape(key: str) -> tuple[int, ...]:
            if key not in shapes:
                raise KeyError(f"lacks tensor '{key}' (truncated, or written by another version?)")
            return tuple(shapes[key])

        def layers(prefix: str) -> list[str]:
            return sorted({key.split(".")[1] for key in shapes if key.startswith(prefix + ".")})

        cross_frame, implicit_prompt, temporal_lora, time_condition = {}, {}, {}, {}
        for key in layers("cross_frame"):
            inner, query = shape(f"cross_frame.{key}.to_q.weight")
            temb = shape(f"cross_frame.{key}.weighting.proj.weight")[1] if config.weighting == "adaptive" else 1
            cross_frame[key] = CrossFrameAdapter(
                query, inner, temb, config.cfa_variant, config.weighting, config.tau,
                config.fixed_weight, config.num_train_timesteps,
                query_bias=f"cross_frame.{key}.to_q.bias" in shapes,
            )  # fmt: skip
        for key in layers("implicit_prompt"):
            rank, inner = shape(f"implicit_prompt.{key}.down.weight")
            out = shape(f"implicit_prompt.{key}.up.weight")[0]
            implicit_prompt[key] = ImplicitPrompt(inner, out, rank)
        for key in layers("temporal_lora"):
            rank, in_features = shape(f"temporal_lora.{key}.A.weight")
            out_features = shape(f"temporal_lora.{key}.B.weight")[0]
            temporal_lora[key] = LoraPair(in_features, out_features, rank)
        for key in layers("time_condition"):
            time_condition[key] = ImplicitTimeCondition(shape(f"time_condition.{key}.offset")[0])
        return cls(config, cross_frame, implicit_prompt, temporal_lora, time_condition)

    def parameter_counts(self) -> dict[str, int]:
        counts = {
            part: sum(p.numel() for p in getattr(self, part).parameters())
            for part in COMPONENTS
        }
        counts["total"] = sum(counts.values())
        return counts


def trainable_parameters(miva: Miva) -> list[nn.Parameter]:
    """What an optimizer trains for one MIVA (everything in the denoiser stays frozen)."""
    return [p for p in miva.parameters() if p.requires_grad]


def expected_shapes(unet: nn.Module, config: MivaConfig) -> dict[str, tuple[int, ...]]:
    """Tensor shapes a MIVA with `config` must have to fit `unet` (built on the meta device: no memory)."""
    with torch.device("meta"):
        template = Miva.from_unet(unet, config, init_from_base=False)
    return {key: tuple(value.shape) for key, value in template.state_dict().items()}


def check_fits(miva: Miva, unet: nn.Module) -> None:
    """Raise if `miva` was built for a differently shaped UNet; names the layer and both shapes."""
    expected = expected_shapes(unet, miva.config)
    actual = {key: tuple(value.shape) for key, value in miva.state_dict().items()}
    missing, unexpected = sorted(set(expected) - set(actual)), sorted(set(actual) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"MIVA '{miva.config.name}' does not fit this UNet: missing {missing[:4]}, unexpected {unexpected[:4]} "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors). Was it trained on another base?"
        )
    for key, shape in expected.items():
        if actual[key] != shape:
            raise ValueError(
                f"MIVA '{miva.config.name}' does not fit this UNet: layer '{key}' has shape {actual[key]} "
                f"but this UNet needs {shape}. Was it trained on another base?"
            )
