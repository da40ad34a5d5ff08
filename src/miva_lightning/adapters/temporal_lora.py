"""Temporal LoRA ("s-TA adapter"): LoRA on q, k, v, out of the AnimateDiff motion modules' temporal
attention, injected with peft (one named peft adapter per attached MIVA).

On Wan's DiT there is no separate temporal attention: every block's self-attention `attn1` attends over
all `f' h' w'` tokens at once, so it is the base's temporal (spatio-temporal) attention, and the LoRA goes on
its q, k, v, out projections (`blocks.i.attn1.{to_q,to_k,to_v,to_out.0}`). The CFA of the same attn1 reads
its keys/values from the frozen base projections underneath the LoRA.

The LoRA matrices are owned by the `Miva` (so one optimizer / one file holds a whole adapter): after
peft wraps the target linears, each adapter's `lora_A` / `lora_B` entries are pointed at the Miva's own
modules. Two ways to combine several adapters:
- "merge":    W + sum_k w_k dW_k, done by giving peft adapter k the scale w_k (the same function as
              merging the weighted sum into W, without touching the frozen weights);
- "residual": Attn_W + sum_k w_k (Attn_{W+dW_k} - Attn_W), one attention run per adapter. It equals
              the METHOD's sum_k w_k Attn_{W+dW_k} whenever the weights sum to 1, and it gives back the
              base when all weights are 0.
- "auto" (`attach_mivas` only): merge when at most one attached MIVA carries a temporal LoRA, residual
  when several do (`resolve_lora_mode`).
Each adapter's update is also scaled by its own lora_alpha / rank (peft multiplies the scale set here by
alpha / r), so mixed adapters keep the scale they were trained with.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Sequence

import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn

LORA_MODES = ("merge", "residual")
LORA_MODE_CHOICES = ("auto", *LORA_MODES)  # what attach_mivas / animate / miva-animate accept
LORA_INITS = ("kaiming", "normal")
TEMPORAL_TARGETS = re.compile(r".*motion_modules.*\.(to_q|to_k|to_v|to_out\.0)$")
DIT_SELF_ATTENTION_TARGETS = re.compile(r"^blocks\.\d+\.attn1\.(to_q|to_k|to_v|to_out\.0)$")


def temporal_lora_targets(unet: nn.Module) -> dict[str, nn.Linear]:
    """Names -> Linear layers that carry the temporal LoRA: the motion modules' attention projections
    (q, k, v, out) of a UNet, or every DiT block's self-attention projections (Wan)."""
    from miva_lightning.backbones.base import denoiser_family

    pattern = DIT_SELF_ATTENTION_TARGETS if denoiser_family(unet) == "dit" else TEMPORAL_TARGETS
    targets = {name: module for name, module in unet.named_modules() if pattern.match(name)}
    for name, module in targets.items():
        if not isinstance(module, nn.Linear):
            raise TypeError(
                f"{name} is {type(module).__name__}, not nn.Linear: detach other LoRA/PEFT adapters "
                "from the UNet before attaching MIVAs"
            )
    return targets


def resolve_lora_mode(mode: str, num_loras: int) -> str:
    """The LoRA combination used for `num_loras` attached temporal LoRAs; "auto" picks one:

    - one LoRA (or none): "merge". W + w dW is how every MIVA is trained (one adapter at weight 1 in
      merge mode) and how the authors' code runs a single adapter; it costs one attention run, and at
      w = 1 it is exactly the residual form (Attn_W + 1 (Attn_{W+dW} - Attn_W)), which runs two.
    - several: "residual". Merging sums the updates into one attention, W + sum_k w_k dW_k, a weighted
      average of weights no adapter was trained with (queries of one adapter meet keys of another inside
      the softmax). Residual runs each adapter's attention as trained and adds the outputs: it equals the
      authors' default multi-adapter form sum_k w_k Attn_{W+dW_k} when the weights sum to 1, and when they
      do not it keeps the base's attention whole (Attn_W + sum_k w_k (Attn_{W+dW_k} - Attn_W)) where that
      form would scale the whole temporal attention by sum_k w_k.
    The rule looks only at how many LoRAs are attached, not at the weights, so `set_weights` never
    needs a different mode."""
    if mode not in LORA_MODE_CHOICES:
        raise ValueError(f"unknown lora_mode '{mode}'; choose one of {LORA_MODE_CHOICES}")
    if mode != "auto":
        return mode
    return "residual" if num_loras > 1 else "merge"


def attention_of(target_name: str) -> str:
    """`...attn1.to_out.0` -> `...attn1`."""
    return re.sub(r"\.(to_q|to_k|to_v|to_out\.0)$", "", target_name)


class LoraPair(nn.Module):
    """One adapter's LoRA for one linear layer: dW = B A, B zero-initialised (dW = 0 at start).

    Two inits of A, because with B starting at zero, A's size and the LoRA scale set how fast dW grows:
    "kaiming" is peft's default (Kaiming-uniform, this project's default, used with scale 1);
    "normal" is the authors' N(0, std = 1 / rank), used with their scale alpha / rank = 1 / rank."""

    def __init__(self, in_features: int, out_features: int, rank: int = 32, init: str = "kaiming") -> None:
        super().__init__()
        if rank <= 0:
            raise ValueError(f"LoRA rank must be > 0, got {rank}")
        if init not in LORA_INITS:
            raise ValueError(f"unknown LoRA init '{init}'; choose one of {LORA_INITS}")
        self.A = nn.Linear(in_features, rank, bias=False)  # nn.Linear's default init is Kaiming-uniform
        if init == "normal":
            nn.init.normal_(self.A.weight, std=1.0 / rank)
        self.B = nn.Linear(rank, out_features, bias=False)
        nn.init.zeros_(self.B.weight)


class TemporalLoraAttachment:
    """Injects one peft adapter per MIVA into the UNet's temporal attention and removes them again."""

    def __init__(
        self,
        unet: nn.Module,
        adapters: Sequence[dict[str, LoraPair] | None],
        weights: list[float],
        mode: str,
        prefix: str = "miva",
        alphas: Sequence[float | None] | None = None,
    ) -> None:
        if mode not in LORA_MODES:
            raise ValueError(f"unknown lora_mode '{mode}'; choose one of {LORA_MODES}")
        self.unet = unet
        self.mode = mode
        self.weights = weights  # shared list, updated in place by set_weights
        self.targets = temporal_lora_targets(unet)  # original Linear objects, restored on detach
        self.had_peft_config = "peft_config" in vars(unet)
        self.adapter_names: list[str | None] = []
        self.original_processors: dict[str, Any] = {}
        alphas = list(alphas) if alphas is not None else [None] * len(adapters)
        try:
            for index, (pairs, alpha) in enumerate(zip(adapters, alphas, strict=True)):
                self.adapter_names.append(None if pairs is None else self._inject(f"{prefix}{index}", pairs, alpha))
            self.layers = {name: unet.get_submodule(name) for name in self.targets}
            active = [name for name in self.adapter_names if name is not None]
            for layer in self.layers.values():
                layer.set_adapter(active)
            if mode == "residual":
                self._install_residual_processors()
            self.apply_weights()
        except BaseException:
            self.detach()  # leave the UNet as it was
            raise

    def _inject(self, adapter_name: str, pairs: dict[str, LoraPair], alpha: float | None) -> str:
        missing = sorted(set(self.targets) - set(pairs))
        if missing:
            raise KeyError(f"MIVA has no temporal LoRA for {missing[:3]}... (built for another UNet?)")
        rank = next(iter(pairs.values())).A.out_features
        # peft scales dW by lora_alpha / r (times the scale set_scale gives); alpha None = rank = scale 1
        alpha = rank if alpha is None else alpha
        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=sorted(self.targets), lora_dropout=0.0)
        with warnings.catch_warnings():  # several named adapters in one model is intended here
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            inject_adapter_in_model(config, self.unet, adapter_name=adapter_name, low_cpu_mem_usage=True)
        for name, pair in pairs.items():
            layer = self.unet.get_submodule(name)
            layer.lora_A[adapter_name] = pair.A
            layer.lora_B[adapter_name] = pair.B
        return adapter_name

    def _install_residual_processors(self) -> None:
        for attention_name in sorted({attention_of(name) for name in self.targets}):
            attention = self.unet.get_submodule(attention_name)
            self.original_processors[attention_name] = attention.processor
            layers = [layer for name, layer in self.layers.items() if attention_of(name) == attention_name]
            attention.set_processor(ResidualLoraProcessor(attention.processor, layers, self))

    def set_scales(self, scales: Sequence[float]) -> None:
        for layer in self.layers.values():
            for name, scale in zip(self.adapter_names, scales):
                if name is not None:
                    layer.set_scale(name, float(scale))

    def apply_weights(self) -> None:
        # merge: every adapter always on with its user weight; residual: switched per call.
        self.set_scales(self.weights if self.mode == "merge" else [0.0] * len(self.weights))

    def detach(self) -> None:
        for attention_name, processor in self.original_processors.items():
            self.unet.get_submodule(attention_name).set_processor(processor)
        for name, original in self.targets.items():
            parent_name, _, child = name.rpartition(".")
            setattr(self.unet.get_submodule(parent_name), child, original)
        peft_config = vars(self.unet).get("peft_config")
        if isinstance(peft_config, dict):
            for adapter_name in self.adapter_names:
                peft_config.pop(adapter_name, None)
            if not self.had_peft_config:
                del self.unet.peft_config


class ResidualLoraProcessor:
    """Runs the wrapped temporal attention once without LoRA and once per adapter; adds weighted deltas."""

    def __init__(self, base_processor: Any, layers: list[nn.Module], attachment: TemporalLoraAttachment) -> None:
        self.base_processor = base_processor
        self.layers = layers
        self.attachment = attachment

    def _only(self, active: str | None) -> None:
        for layer in self.layers:
            for name in self.attachment.adapter_names:
                if name is not None:
                    layer.set_scale(name, 1.0 if name == active else 0.0)

    def __call__(self, attn: nn.Module, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        self._only(None)
        base = self.base_processor(attn, hidden_states, *args, **kwargs)
        output = base
        for name, weight in zip(self.attachment.adapter_names, self.attachment.weights):
            if name is None or weight == 0:
                continue
            self._only(name)
            output = output + weight * (self.base_processor(attn, hidden_states, *args, **kwargs) - base)
        self._only(None)
        return output
