"""Attaching one or several MIVAs (with user weights) to an unmodified denoiser, and undoing it exactly.

`attach_mivas` installs the temporal LoRA and the attention processors and returns a `MivaHandle` recording what
it changed; `set_weights` changes the weights in place; `detach_mivas` restores the denoiser (processors, linear
layers, hooks, requires_grad flags). A failure half-way through attaching rolls back what was already done.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from torch import nn

from miva_lightning.adapters.context import CallContext, install_context, remove_context
from miva_lightning.adapters.cross_frame_attention import CrossFrameAttnProcessor, check_cfa_mode
from miva_lightning.adapters.implicit_prompt import ImplicitPromptProcessor
from miva_lightning.adapters.implicit_time_condition import TimeConditionHook
from miva_lightning.adapters.miva import (
    TIME_CONDITION_KEY,
    Miva,
    ca_layer_names,
    cfa_layer_names,
    check_fits,
    layer_key,
)
from miva_lightning.adapters.temporal_lora import (
    LORA_MODE_CHOICES,
    ResidualLoraProcessor,
    TemporalLoraAttachment,
    resolve_lora_mode,
    temporal_lora_targets,
)
from miva_lightning.adapters.wan_dit import DiTCrossFrameAttnProcessor
from miva_lightning.backbones.base import denoiser_family

MIVA_PROCESSORS = (CrossFrameAttnProcessor, DiTCrossFrameAttnProcessor, ImplicitPromptProcessor, ResidualLoraProcessor)


def validate_weights(weights: Sequence[float], count: int) -> list[float]:
    values = [float(w) for w in weights]
    if len(values) != count:
        raise ValueError(f"got {len(values)} adapter weights for {count} attached MIVAs")
    for index, value in enumerate(values):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"adapter weight #{index} is {value}: weights must be finite and >= 0")
    return values


@dataclass
class MivaHandle:
    """What attach_mivas changed, so detach_mivas can undo exactly that."""

    unet: nn.Module
    mivas: list[Miva]
    weights: list[float]  # shared with every processor; change via set_weights
    lora_mode: str
    context: CallContext
    cfa_mode: str = "sum"
    original_processors: dict[str, Any] = field(default_factory=dict)
    lora: TemporalLoraAttachment | None = None
    hooks: list[Any] = field(default_factory=list)  # removable forward hooks (time-condition route)
    unet_requires_grad: dict[str, bool] = field(default_factory=dict)
    attached: bool = True


def _as_pairs(mivas: Iterable[Miva | tuple[Miva, float]]) -> tuple[list[Miva], list[float]]:
    adapters, weights = [], []
    for item in mivas:
        miva, weight = (item, 1.0) if isinstance(item, Miva) else item
        if not isinstance(miva, Miva):
            raise TypeError(f"attach_mivas takes Miva objects or (Miva, weight) pairs, got {type(miva).__name__}")
        adapters.append(miva)
        weights.append(weight)
    if not adapters:
        raise ValueError("attach_mivas needs at least one MIVA")
    return adapters, weights


def _check_device(miva: Miva, unet: nn.Module) -> None:
    unet_device = next(unet.parameters()).device
    for tensor in miva.parameters():
        if tensor.device != unet_device:
            raise ValueError(
                f"MIVA '{miva.config.name}' is on {tensor.device} but the UNet is on {unet_device}: "
                "move it with miva.to(device) before attaching"
            )
        break


def _base_branch(mivas: list[Miva]) -> str:
    branches = {m.config.base_branch for m in mivas if m.config.implicit_prompt}
    if len(branches) > 1:
        raise ValueError(f"attached MIVAs disagree on implicit-prompt base_branch {sorted(branches)}; use one")
    return branches.pop() if branches else "none"


def _cfa_rope(mivas: list[Miva]) -> str:
    modes = {m.config.cfa_rope for m in mivas if m.config.cross_frame}
    if len(modes) > 1:
        raise ValueError(f"attached MIVAs disagree on cfa_rope {sorted(modes)} (their CFAs share keys); use one")
    return modes.pop() if modes else "positions"


def attach_mivas(
    unet: nn.Module, mivas: Iterable[Miva | tuple[Miva, float]], lora_mode: str = "merge", cfa_mode: str = "sum"
) -> MivaHandle:
    """Attach MIVAs (with user weights) to an unmodified UNetMotionModel or Wan DiT; undo with `detach_mivas`.

    The temporal LoRA goes in first and the attention processors second, so that on the DiT (where both
    sit on attn1) the CFA processor wraps the LoRA's; `detach_mivas` undoes them in the reverse order.
    `lora_mode`: merge | residual | auto (merge for one temporal LoRA, residual for several; the reasons
    are in `temporal_lora.resolve_lora_mode`); `handle.lora_mode` records the mode used.
    `cfa_mode`: sum (METHOD, exact) | merge (one CFA for all adapters: an inference approximation whose cost does
    not grow with K; `cross_frame_attention.CFA_MODES`)."""
    adapters, weights = _as_pairs(mivas)
    check_cfa_mode(cfa_mode)
    weights = validate_weights(weights, len(adapters))
    if lora_mode not in LORA_MODE_CHOICES:
        raise ValueError(f"unknown lora_mode '{lora_mode}'; choose one of {LORA_MODE_CHOICES}")
    lora_mode = resolve_lora_mode(lora_mode, sum(bool(m.config.temporal_lora) for m in adapters))
    for name, module in unet.named_modules():
        if isinstance(getattr(module, "processor", None), MIVA_PROCESSORS):
            raise RuntimeError(f"MIVAs are already attached to this UNet ({name}); detach_mivas() first")
    for miva in adapters:
        check_fits(miva, unet)
        _check_device(miva, unet)
    miva_requires_grad = [[p.requires_grad for p in m.parameters()] for m in adapters]
    handle = MivaHandle(
        unet=unet,
        mivas=adapters,
        weights=weights,
        lora_mode=lora_mode,
        cfa_mode=cfa_mode,
        context=install_context(unet),
        unet_requires_grad={name: p.requires_grad for name, p in unet.named_parameters()},
    )
    try:
        if any(m.config.temporal_lora for m in adapters):
            lora_sets = [{n: m.temporal_lora[layer_key(n)] for n in temporal_lora_targets(unet)}
                         if m.config.temporal_lora else None for m in adapters]  # fmt: skip
            alphas = [m.config.lora_alpha for m in adapters]
            handle.lora = TemporalLoraAttachment(unet, lora_sets, handle.weights, lora_mode, alphas=alphas)
        _install_processors(handle)
    except BaseException:
        detach_mivas(handle)
        raise
    # peft marks adapters trainable and the base frozen; keep the caller's choices instead.
    _restore_requires_grad(handle)
    for miva, flags in zip(adapters, miva_requires_grad):
        for parameter, flag in zip(miva.parameters(), flags):
            parameter.requires_grad_(flag)
    return handle


def _install_processors(handle: MivaHandle) -> None:
    unet, mivas = handle.unet, handle.mivas
    if any(m.config.cross_frame for m in mivas):
        dit, rope = denoiser_family(unet) == "dit", _cfa_rope(mivas)
        for name in cfa_layer_names(unet):
            attention = unet.get_submodule(name)
            adapters = [m.cross_frame[layer_key(name)] if m.config.cross_frame else None for m in mivas]
            handle.original_processors[name] = attention.processor
            if dit:
                processor = DiTCrossFrameAttnProcessor(attention.processor, adapters, handle.weights, handle.context, rope,
                                                       handle.cfa_mode)
            else:
                processor = CrossFrameAttnProcessor(attention.processor, adapters, handle.weights, handle.context,
                                                    handle.cfa_mode)
            attention.set_processor(processor)
    if any(m.config.implicit_prompt for m in mivas):
        base_branch = _base_branch(mivas)
        for name in ca_layer_names(unet):
            attention = unet.get_submodule(name)
            prompts = [m.implicit_prompt[layer_key(name)] if m.config.implicit_prompt else None for m in mivas]
            handle.original_processors[name] = attention.processor
            attention.set_processor(ImplicitPromptProcessor(attention.processor, prompts, handle.weights, base_branch))
    if any(len(m.time_condition) for m in mivas):
        offsets = [m.time_condition[TIME_CONDITION_KEY] if len(m.time_condition) else None for m in mivas]
        hook = TimeConditionHook(offsets, handle.weights)
        handle.hooks.append(unet.time_embedding.register_forward_pre_hook(hook, with_kwargs=True))


def _restore_requires_grad(handle: MivaHandle) -> None:
    for name, parameter in handle.unet.named_parameters():
        original_name = name.replace(".base_layer.", ".")  # peft's wrapper renames the layers it adapts
        if ".lora_" not in name and original_name in handle.unet_requires_grad:
            parameter.requires_grad_(handle.unet_requires_grad[original_name])


def set_weights(handle: MivaHandle, weights: Sequence[float]) -> None:
    """Change the attached MIVAs' weights (e.g. motion intensity) without re-attaching."""
    if not handle.attached:
        raise RuntimeError("these MIVAs were detached; attach them again")
    handle.weights[:] = validate_weights(weights, len(handle.mivas))
    if handle.lora is not None:
        handle.lora.apply_weights()


def detach_mivas(handle: MivaHandle) -> None:
    """Restore the denoiser exactly: original processors, original linear layers, no hooks (in the reverse
    order of attaching: the processors first, then the LoRA)."""
    if not handle.attached:
        return
    for name, processor in handle.original_processors.items():
        handle.unet.get_submodule(name).set_processor(processor)
    handle.original_processors.clear()
    if handle.lora is not None:
        handle.lora.detach()
    for hook in handle.hooks:
        hook.remove()
    handle.hooks.clear()
    remove_context(handle.context)
    _restore_requires_grad(handle)
    handle.attached = False


detach = detach_mivas  # the short name used in the design notes
