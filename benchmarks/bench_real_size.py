"""MIVA vs full fine-tuning vs MotionLoRA on the REAL-SIZE bases (random weights, nothing downloaded), in one run.

    python benchmarks/bench_real_size.py --device cuda [--steps 10] [--json results/bench_real.json]
    python benchmarks/bench_real_size.py --device cpu  [--steps 3]    # reduced sizes, stated in the output
    python benchmarks/bench_real_size.py --tiny                       # tiny same-class models, a few seconds
    python benchmarks/bench_real_size.py --count-only                 # exact counts + memory estimates (meta)

Bases, built from their published configurations with random weights:
- `sd15`: SD1.5 `UNet2DConditionModel` (block_out_channels 320/640/1280/1280, cross_attention_dim 768,
  attention_head_dim 8, layers_per_block 2) + the AnimateDiff v3 `MotionAdapter`
  (configs/backbone/animatediff_sd15.yaml) merged by `UNetMotionModel.from_unet2d`, as `load_animatediff` does.
- `wan21`: Wan2.1-T2V-1.3B `WanTransformer3DModel` (30 layers, 12 heads of 128, ffn 8960, text_dim 4096, ...:
  `wan21_1_3b()` below, every value written out, not the class defaults, which are the 14B model's).
Methods: `miva` (configs/adapter/miva.yaml), `motion_lora` (a MIVA with only its temporal LoRA,
configs/method/motion_lora.yaml), `full_ft` (every denoiser weight trains).

What is measured, and how:
- Trainable parameters and optimizer-state bytes: exact, counted on the meta device at full size with the method
  attached (`attach_mivas`; the same code path as training). AdamW: 2 fp32 states per trainable parameter (its
  per-tensor step counters left out). bitsandbytes AdamW8bit: per tensor of n >= 4096 elements 2 n bytes (two
  uint8 states) + 2 x 4 ceil(n / 256) bytes (fp32 absmax per 256-element block); smaller tensors keep fp32 states.
- One training step (the MIVA's diffusion loss with frame 1 clean / Wan's flow-matching loss, backward,
  gradient clipping 1.0, AdamW step): median over `--steps` after `--warmup` steps. On CUDA at the paper's clip
  size, peak memory `torch.cuda.max_memory_allocated` over the measured steps (everything live counts: weights,
  gradients, optimizer states, activations). On CPU at a stated reduced size, no memory measurement.
- A computed estimate of the full-size peak of every method (both devices): fp32 weights + fp32 gradients +
  optimizer states + activations, the activations being the bytes autograd saves for backward in one forward at
  full size, counted on the meta device (tensors deduplicated by storage; attention saved as a fused kernel
  saves it, q/k/v/output/logsumexp, not the score matrix; with gradient checkpointing: the tensors saved outside
  the checkpointed blocks + each block's inputs + the largest block's own saves, re-made in backward), plus,
  under bf16 autocast, the bf16 weight copies those saves hold. Not counted: workspaces, the allocator's
  fragmentation, the CUDA context. An estimate, labelled as one.
- Inference: one denoiser call (one denoising step, batch 1, no guidance) with K = 1, 2, 4 MIVAs attached, with
  the temporal LoRAs merged and as residual branches (`lora_mode`), median over `--steps`; "auto" (the sampling
  default) is merge at K = 1 and residual at K > 1.
Ratios printed: MIVA / full FT optimizer-state bytes and peak memory (target <= 0.5), step time (<= 0.8),
K = 4 / K = 1 inference time per step (<= 1.3), and whether MIVA on SD1.5 at 16 x 512x320 fits 24 GiB (by the
measured CUDA peak, or by the computed estimate on CPU; the summary says which).

Sizes and costs: CUDA measures at full size (bf16 autocast over fp32 weights as trainer=gpu, gradient checkpointing
as experiment=miva_animatediff_lamp; a few minutes on one large GPU, within 10). The CPU default measures at the
reduced sizes of `reduced_size` in fp32 (~15 minutes on 2 cores, ~14 GiB of RAM for the reduced SD1.5's full
fine-tuning); `--count-only` takes about a minute. Logs go to stderr, the one JSON to stdout and `--json`.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
BACKBONES = ("sd15", "wan21")
METHODS = ("miva", "full_ft", "motion_lora")
INFERENCE_KS = (1, 2, 4)
# inference modes: label -> (lora_mode, cfa_mode). "merge" / "residual": METHOD's exact sum of the K CFA branches
# with the temporal LoRAs merged into the weights or run per adapter; "merged_cfa": LoRAs merged AND one CFA for
# all K adapters (cross_frame_attention.CFA_MODES "merge", an approximation).
MODE_SETTINGS = {"merge": ("merge", "sum"), "residual": ("residual", "sum"), "merged_cfa": ("merge", "merge")}
GIB = 2**30
FIT_BUDGET_BYTES = 24 * GIB  # a 24 GB consumer GPU (RTX 3090 / 4090: 24 GiB)
TARGETS = {"optimizer_state": 0.5, "peak_memory": 0.5, "step_time": 0.8, "inference_k4_over_k1": 1.3}

# SD1.5's UNet2DConditionModel (unet/config.json of stable-diffusion-v1-5), every architecture value written out.
SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
# Wan2.1-T2V-1.3B: the backbone's own transformer settings (backbones/wan.py; diffusers' class defaults are the
# 14B model's), plus three more values of the same config.json.
def wan21_1_3b() -> dict[str, Any]:
    from miva_lightning.backbones.wan import WAN21_T2V_1_3B_TRANSFORMER

    return {**WAN21_T2V_1_3B_TRANSFORMER, "image_dim": None, "added_kv_proj_dim": None, "rope_max_seq_len": 1024}


def sd15_motion_adapter() -> dict[str, Any]:
    """AnimateDiff v3's MotionAdapter settings, as configs/backbone/animatediff_sd15.yaml states them."""
    from omegaconf import OmegaConf

    config = OmegaConf.load(REPO / "configs" / "backbone" / "animatediff_sd15.yaml").motion_adapter_config
    return dict(OmegaConf.to_container(config))


@dataclass
class Size:
    """One backbone at one size: the denoiser's configuration and the clip it sees."""

    backbone: str  # sd15 | wan21
    family: str  # unet | dit
    model: dict[str, Any]  # unet: {"unet": UNet2DConditionModel kwargs, "motion_adapter": MotionAdapter kwargs}
    latent: tuple[int, int, int, int]  # c f h w (one video)
    video: str  # what the latent stands for, in words
    text: tuple[int, int]  # prompt embedding L x D
    label: str  # "full" | "reduced: ..." | "tiny"
    miva_overrides: dict[str, Any] = field(default_factory=dict)


def full_size(backbone: str) -> Size:
    if backbone == "sd15":
        return Size("sd15", "unet", {"unet": dict(SD15_UNET), "motion_adapter": sd15_motion_adapter()},
                    (4, 16, 40, 64), "16 frames at 512x320 (W x H), the paper's clip; latents 16 x 4 x 40 x 64",
                    (77, 768), "full")  # fmt: skip
    return Size("wan21", "dit", wan21_1_3b(), (16, 5, 60, 104),
                "17 frames at 832x480 (W x H) -> 5 latent frames of 60 x 104 (5 x 30 x 52 = 7800 tokens)",
                (512, 4096), "full")  # fmt: skip


def reduced_size(backbone: str, sd15_layers_per_block: int = 1) -> Size:
    """The CPU sizes: real widths, fewer layers, small clips (full FT of the real SD1.5 needs ~21 GB of weights,
    gradients and AdamW states alone, more than a 24 GiB CPU machine can hold beside the activations)."""
    full = full_size(backbone)
    if backbone == "sd15":
        lpb = int(sd15_layers_per_block)
        model = {"unet": {**full.model["unet"], "layers_per_block": lpb},
                 "motion_adapter": {**full.model["motion_adapter"], "motion_layers_per_block": lpb}}  # fmt: skip
        return replace(full, model=model, latent=(4, 4, 32, 32), video="4 frames at 256x256; latents 4 x 4 x 32 x 32",
                       label=f"reduced: SD1.5 widths, heads and text width, layers_per_block {lpb} (real: 2)")  # fmt: skip
    return replace(full, model={**full.model, "num_layers": 2}, latent=(16, 3, 16, 16),
                   video="9 frames at 128x128 -> 3 latent frames of 16 x 16 (3 x 8 x 8 = 192 tokens)",
                   label="reduced: 2 of the 30 layers at the real width (1536, 12 heads, ffn 8960, text 4096)")  # fmt: skip


def tiny_size(backbone: str) -> Size:
    """Tiny models of the same classes (for tests and a quick end-to-end run)."""
    tiny_miva = {"ca_rank": 8, "lora_rank": 4}
    if backbone == "sd15":
        unet = {"sample_size": 16, "in_channels": 4, "out_channels": 4, "block_out_channels": (32, 64),
                "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
                "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
                "layers_per_block": 1, "cross_attention_dim": 32, "attention_head_dim": 4, "norm_num_groups": 8}  # fmt: skip
        motion = {"block_out_channels": (32, 64), "motion_layers_per_block": 1, "motion_num_attention_heads": 4,
                  "motion_norm_num_groups": 8, "motion_max_seq_length": 32, "use_motion_mid_block": False}  # fmt: skip
        return Size("sd15", "unet", {"unet": unet, "motion_adapter": motion}, (4, 4, 8, 8),
                    "4 frames; latents 4 x 4 x 8 x 8", (8, 32), "tiny", tiny_miva)  # fmt: skip
    model = {"patch_size": (1, 2, 2), "num_attention_heads": 2, "attention_head_dim": 16, "in_channels": 4,
             "out_channels": 4, "text_dim": 32, "freq_dim": 16, "ffn_dim": 64, "num_layers": 2,
             "rope_max_seq_len": 32}  # fmt: skip
    return Size("wan21", "dit", model, (4, 3, 8, 8), "3 latent frames of 8 x 8 (48 tokens)", (8, 32), "tiny", tiny_miva)


# ----------------------------------------------------------------------------------------------- building
def build_denoiser(
    size: Size, device: str | torch.device = "meta", dtype: torch.dtype = torch.float32, seed: int = 0
) -> nn.Module:
    """The frozen denoiser of `size` with random weights, built directly on `device` (meta: shapes only)."""
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel, WanTransformer3DModel

    torch.manual_seed(seed)
    device = torch.device(device)
    if size.family == "unet":
        with torch.device("meta"):  # from_unet2d reads only the two configs when load_weights=False
            unet2d = UNet2DConditionModel(**size.model["unet"])
            adapter = MotionAdapter(**size.model["motion_adapter"])
        with torch.device(device):
            model = UNetMotionModel.from_unet2d(unet2d, adapter, load_weights=False)
    else:
        with torch.device(device):
            model = WanTransformer3DModel(**size.model)
    if dtype != torch.float32:  # meta-device estimates in the compute dtype (diffusers' fp32-module warning is moot)
        from diffusers.utils import logging as diffusers_logging

        verbosity = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()
        try:
            model = model.to(dtype)
        finally:
            diffusers_logging.set_verbosity(verbosity)
    if size.family == "unet":
        from diffusers.models.attention_processor import AttnProcessor2_0

        model.set_attn_processor(AttnProcessor2_0())  # backbone.attention: sdpa (load_animatediff's default)
    return model.eval().requires_grad_(False)


def adapter_config(method: str, overrides: dict[str, Any] | None = None):
    """The MivaConfig a method trains: configs/adapter/miva.yaml merged with configs/method/<method>.yaml's
    `adapter` node (as `pipelines.train.build_module` merges them); None for full fine-tuning."""
    from omegaconf import OmegaConf

    from miva_lightning.adapters import MivaConfig

    if method == "full_ft":
        return None
    base = OmegaConf.load(REPO / "configs" / "adapter" / "miva.yaml")
    method_cfg = OmegaConf.load(REPO / "configs" / "method" / f"{method}.yaml")
    merged = OmegaConf.to_container(OmegaConf.merge(base, method_cfg.get("adapter") or {}, overrides or {}))
    merged.pop("lora_mode", None)  # an inference choice; training attaches one MIVA at weight 1 (merge)
    return MivaConfig.from_dict(merged)


@dataclass
class Attached:
    """A method attached to a denoiser: what the optimizer gets, and how to undo it."""

    method: str
    params: list[nn.Parameter]
    miva: nn.Module | None = None
    handle: Any = None
    base_ids: set[int] = field(default_factory=set)  # ids of the denoiser's own weights (before attaching)

    def detach(self, denoiser: nn.Module) -> None:
        from miva_lightning.adapters import detach_mivas

        if self.handle is not None:
            detach_mivas(self.handle)
        denoiser.requires_grad_(False)


def make_miva(denoiser: nn.Module, method: str, overrides: dict[str, Any] | None = None):
    from miva_lightning.adapters import Miva

    device = next(denoiser.parameters()).device
    config = adapter_config(method, overrides)
    with torch.device(device):  # on meta: shapes only (copying attn1's Wq out of a meta tensor is impossible)
        miva = Miva.from_unet(denoiser, config, init_from_base=device.type != "meta")
    return miva.to(device=device, dtype=next(denoiser.parameters()).dtype)


def attach_method(denoiser: nn.Module, method: str, overrides: dict[str, Any] | None = None) -> Attached:
    """Attach `method` the way its training module does: full_ft trains every denoiser weight; miva / motion_lora
    attach one MIVA at weight 1 in merge mode (MivaModule) and train only its tensors."""
    from miva_lightning.adapters import attach_mivas, trainable_parameters

    base_ids = {id(p) for p in denoiser.parameters()}
    if method == "full_ft":
        denoiser.requires_grad_(True)
        return Attached(method, list(denoiser.parameters()), base_ids=base_ids)
    denoiser.requires_grad_(False)
    miva = make_miva(denoiser, method, overrides).requires_grad_(True)
    handle = attach_mivas(denoiser, [(miva, 1.0)], lora_mode="merge")
    params = trainable_parameters(miva)
    trains = {id(p) for p in denoiser.parameters() if p.requires_grad} | {id(p) for p in params}
    if trains != {id(p) for p in params} or trains & base_ids:
        raise RuntimeError(f"{method}: tensors outside the adapter would train")
    return Attached(method, params, miva, handle, base_ids)


# ----------------------------------------------------------------------------------------------- counting
def adamw_state_bytes(params) -> int:
    """torch AdamW: exp_avg and exp_avg_sq in fp32 per trainable element (per-tensor step counters left out)."""
    return sum(8 * p.numel() for p in params)


def adamw8bit_state_bytes(params, min_8bit_size: int = 4096, block: int = 256) -> int:
    """bitsandbytes AdamW8bit (block-wise, its defaults): two uint8 states + two fp32 absmax per 256-element block
    for tensors of >= 4096 elements; fp32 states below that (the quantisation maps are shared, 2 KiB in all)."""
    total = 0
    for p in params:
        n = p.numel()
        total += 8 * n if n < min_8bit_size else 2 * n + 8 * math.ceil(n / block)
    return total


def count_method(size: Size, method: str, device: str = "meta") -> dict[str, int]:
    """Exact counts of `method` on the denoiser of `size` (built on `device`; meta costs no memory)."""
    denoiser = build_denoiser(size, device)
    attached = attach_method(denoiser, method, size.miva_overrides)
    unique = {id(p): p for p in attached.params}.values()
    base_params = sum(p.numel() for p in denoiser.parameters() if id(p) in attached.base_ids)
    counts = {
        "trainable_params": sum(p.numel() for p in unique),
        "trainable_tensors": len(unique),
        "denoiser_params": base_params,
        "adapter_params": 0 if attached.miva is None else sum(p.numel() for p in attached.miva.parameters()),
        "optimizer_state_bytes": adamw_state_bytes(unique),
        "optimizer_state_bytes_adamw8bit": adamw8bit_state_bytes(unique),
    }
    attached.detach(denoiser)
    return counts


# ----------------------------------------------------------------------------------------------- memory estimate
def _fused_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """SDPA as a fused kernel saves it for backward (q, k, v, output, logsumexp), for counting on the meta device."""
    bias = attn_mask
    if bias is not None and bias.dtype == torch.bool:
        bias = torch.zeros(bias.shape, dtype=query.dtype, device=query.device).masked_fill(~bias, float("-inf"))
    out = torch.ops.aten._scaled_dot_product_efficient_attention(
        query, key, value, bias, True, dropout_p, is_causal, scale=scale
    )
    return out[0]


class SavedTensorCounter:
    """Bytes autograd saves for backward, by storage; parameters' storages go to their own bucket."""

    def __init__(self, parameter_storages: set[int], weight_copies: bool = True) -> None:
        self.parameter_storages = parameter_storages
        self.weight_copies = weight_copies  # under bf16 autocast a saved weight is a bf16 copy; in fp32 the weight itself
        self.outside: dict[int, int] = {}
        self.weights: dict[int, int] = {}
        self.kept_inputs: dict[int, int] = {}
        self.blocks: list[int] = []
        self._block: dict[int, int] | None = None

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key in self.parameter_storages:
            if not self.weight_copies:
                return tensor
            bucket = self.weights if self._block is None else self._block
        else:
            bucket = self.outside if self._block is None else self._block
        bucket[key] = storage.nbytes()
        return tensor

    def checkpoint(self, module: Callable, *args):
        """Stands in for diffusers' gradient checkpointing function: runs the block and books what a
        non-reentrant checkpoint keeps (the inputs) and re-makes in backward (the block's own saves)."""
        if self._block is not None:  # nested: part of the outer block
            return module(*args)
        for arg in args:
            if isinstance(arg, torch.Tensor) and arg.untyped_storage()._cdata not in self.parameter_storages:
                self.kept_inputs[arg.untyped_storage()._cdata] = arg.untyped_storage().nbytes()
        self._block = {}
        try:
            return module(*args)
        finally:
            self.blocks.append(sum(self._block.values()))
            self._block = None

    def activations(self) -> int:
        kept = {k: v for k, v in self.kept_inputs.items() if k not in self.outside}
        return sum(self.outside.values()) + sum(kept.values()) + max(self.blocks, default=0)


def estimate_peak(size: Size, method: str, grad_ckpt: bool = True, precision: str = "bf16-mixed",
                  eight_bit: bool = False) -> dict[str, Any]:  # fmt: skip
    """Computed full-size training peak of `method` (see the module docstring: how, and what is left out)."""
    from miva_lightning.backbones.forward import unet_predict

    compute = torch.bfloat16 if precision == "bf16-mixed" else torch.float32
    denoiser = build_denoiser(size, "meta", compute)
    attached = attach_method(denoiser, method, size.miva_overrides)
    unique = list({id(p): p for p in attached.params}.values())
    adapter = [] if attached.miva is None else list(attached.miva.parameters())
    everything = {id(p): p for p in list(denoiser.parameters()) + adapter}
    counter = SavedTensorCounter({p.untyped_storage()._cdata for p in everything.values()}, compute != torch.float32)
    if grad_ckpt:
        denoiser.enable_gradient_checkpointing(gradient_checkpointing_func=counter.checkpoint)
    backbone = bare_backbone(size, denoiser)
    latents = torch.empty((1, *size.latent), device="meta", dtype=compute)
    embeds = torch.empty((1, *size.text), device="meta", dtype=compute)
    timesteps = torch.empty((1,), device="meta", dtype=torch.float32 if size.family == "dit" else torch.long)
    original_sdpa = torch.nn.functional.scaled_dot_product_attention
    torch.nn.functional.scaled_dot_product_attention = _fused_sdpa
    try:
        with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda tensor: tensor):
            prediction = unet_predict(backbone, latents, timesteps, embeds, latents[:, :, 0])
            (prediction[:, :, 1:].float() ** 2).mean()
    finally:
        torch.nn.functional.scaled_dot_product_attention = original_sdpa
        if grad_ckpt:
            denoiser.disable_gradient_checkpointing()
        attached.detach(denoiser)
    parts = {
        "weights_bytes": 4 * sum(p.numel() for p in everything.values()),
        "gradients_bytes": 4 * sum(p.numel() for p in unique),
        "optimizer_state_bytes": adamw8bit_state_bytes(unique) if eight_bit else adamw_state_bytes(unique),
        "activations_bytes": counter.activations(),
        "weight_copies_bytes": sum(counter.weights.values()),
    }
    return {
        "estimate_bytes": sum(parts.values()),
        **parts,
        "settings": {"precision": precision, "grad_ckpt": grad_ckpt, "optimizer": "AdamW8bit" if eight_bit else "AdamW fp32",
                     "clip": size.video, "batch": 1},  # fmt: skip
        "how": (
            "estimate: fp32 weights (denoiser + adapter) + fp32 gradients + optimizer states + the bytes autograd "
            "saves for backward in one forward at this size, counted on the meta device (by storage; attention as a "
            "fused kernel saves it; with gradient checkpointing: saves outside the checkpointed blocks + block "
            "inputs + the largest block's saves)"
            + (" + the bf16 weight copies autocast saves" if compute != torch.float32 else "")
            + "; all counted live at once; workspaces (e.g. the optimizer's foreach temporaries), fragmentation and "
            "the CUDA context not counted"
        ),
    }


# ----------------------------------------------------------------------------------------------- measuring
def bare_backbone(size: Size, denoiser: nn.Module):
    """A `Backbone` around a denoiser only (latents are made directly; no codec or text encoder), with the
    base's own training and sampling schedulers."""
    from miva_lightning.backbones.base import Backbone

    if size.family == "unet":
        from miva_lightning.backbones.animatediff import AnimateDiffConfig, build_schedulers

        train, sample = build_schedulers(AnimateDiffConfig())
        config = {"name": size.backbone}
    else:
        from miva_lightning.backbones.wan import WanConfig, build_wan_schedulers

        settings = WanConfig()
        train, sample = build_wan_schedulers(settings)
        config = {"name": size.backbone, "flow_loss_weighting": settings.flow_loss_weighting}
    return Backbone(unet=denoiser, noise_scheduler=train, sample_scheduler=sample, codec=None, text_encoder=None,
                    tokenizer=None, name=size.backbone, config=config)  # fmt: skip


class Clock:
    """Wall time of a callable, synchronising CUDA before and after."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def __call__(self, fn: Callable[[], Any]) -> float:
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - start


def autocast(device: torch.device, precision: str):
    if precision == "bf16-mixed":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def inputs(size: Size, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean latents `1 c f h w` and the prompt embedding `1 L D` (SD1.5: a random stand-in for CLIP's empty
    prompt; Wan: zeros, what `load_text_encoder: false` gives)."""
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn((1, *size.latent), generator=generator).to(device)
    embeds = torch.randn((1, *size.text), generator=generator) if size.family == "unet" else torch.zeros((1, *size.text))
    return latents, embeds.to(device)


def measure_training(size: Size, denoiser: nn.Module, method: str, device: torch.device, args) -> dict[str, Any]:
    """Median step time (and on CUDA the peak memory) of `method`'s training step on `denoiser`."""
    from miva_lightning.training.diffusion_loss import diffusion_loss
    from miva_lightning.training.optimization import MivaOptimization, build_adamw

    backbone = bare_backbone(size, denoiser)
    latents, embeds = inputs(size, device)
    attached = attach_method(denoiser, method, size.miva_overrides)
    if method == "full_ft":
        denoiser.train()  # FullFinetuneModule's trainable module; the frozen bases stay in eval mode
    if args.grad_ckpt:
        denoiser.enable_gradient_checkpointing()
    optimizer = build_adamw(attached.params, MivaOptimization(lr=1e-5, eight_bit=args.eight_bit))
    generator = torch.Generator().manual_seed(0)
    clock = Clock(device)
    times, forward_backward, optimizer_times = [], [], []

    def forward_backward_pass() -> None:
        with autocast(device, args.precision):
            loss = diffusion_loss(backbone, None, embeds, generator=generator, latents=latents)
        loss.backward()

    def optimizer_pass() -> None:
        torch.nn.utils.clip_grad_norm_(attached.params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    try:
        for index in range(args.warmup + args.steps):
            if index == args.warmup and device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            fb, opt = clock(forward_backward_pass), clock(optimizer_pass)
            if index >= args.warmup:
                forward_backward.append(fb)
                optimizer_times.append(opt)
                times.append(fb + opt)
        result = {
            "step_s": statistics.median(times),
            "step_s_all": times,
            "forward_backward_s": statistics.median(forward_backward),
            "optimizer_s": statistics.median(optimizer_times),
            "optimizer": type(optimizer).__module__ + "." + type(optimizer).__name__,
            "measured_trainable_params": sum(p.numel() for p in {id(p): p for p in attached.params}.values()),
        }
        if device.type == "cuda":
            result["peak_mem_bytes"] = torch.cuda.max_memory_allocated(device)
            result["peak_mem_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
        return result
    finally:
        if args.grad_ckpt:
            denoiser.disable_gradient_checkpointing()
        denoiser.eval()
        optimizer.zero_grad(set_to_none=True)
        attached.detach(denoiser)
        del optimizer, attached
        release(device, args)


def over_inference_modes(denoiser: nn.Module, size: Size, measure: Callable[[], Any],
                         after_each: Callable[[str, int], None] | None = None) -> tuple[Any, dict[str, dict[str, Any]]]:
    """`measure()` on the bare denoiser, then with K = 1, 2, 4 fresh MIVAs at weight 1 attached in every inference
    mode (`MODE_SETTINGS`); `after_each(mode, k)` runs while they are attached. Returns (base, {mode: {K: value}})."""
    from miva_lightning.adapters import attach_mivas, detach_mivas

    mivas = [make_miva(denoiser, "miva", size.miva_overrides) for _ in range(max(INFERENCE_KS))]
    base = measure()
    by_mode: dict[str, dict[str, Any]] = {mode: {} for mode in MODE_SETTINGS}
    for mode, (lora_mode, cfa_mode) in MODE_SETTINGS.items():
        for k in INFERENCE_KS:
            handle = attach_mivas(denoiser, [(miva, 1.0) for miva in mivas[:k]], lora_mode=lora_mode, cfa_mode=cfa_mode)
            try:
                by_mode[mode][str(k)] = measure()
                if after_each is not None:
                    after_each(mode, k)
            finally:
                detach_mivas(handle)
    return base, by_mode


@torch.no_grad()
def measure_inference(size: Size, denoiser: nn.Module, device: torch.device, args) -> dict[str, Any]:
    """Seconds per denoising step (one denoiser call, batch 1) with 0 (the base) and K = 1, 2, 4 MIVAs."""
    from miva_lightning.backbones.forward import unet_predict

    backbone = bare_backbone(size, denoiser)
    latents, embeds = inputs(size, device)
    timesteps = torch.tensor([500.0 if size.family == "dit" else 500], device=device)
    clock = Clock(device)

    def per_step() -> float:
        def call() -> None:
            with autocast(device, args.precision):
                unet_predict(backbone, latents, timesteps, embeds, latents[:, :, 0])

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        samples = [clock(call) for _ in range(args.warmup + args.steps)][args.warmup :]
        return statistics.median(samples)

    peaks: dict[str, int] = {}

    def record_peak(mode: str, k: int) -> None:
        if device.type == "cuda":
            peaks[f"{mode}_{k}"] = torch.cuda.max_memory_allocated(device)

    base, by_mode = over_inference_modes(denoiser, size, per_step, record_peak)
    release(device, args)
    auto = {str(k): by_mode["merge" if k == 1 else "residual"][str(k)] for k in INFERENCE_KS}
    return {
        "inference": auto,
        "inference_base_s": base,
        "inference_by_lora_mode": by_mode,
        "inference_peak_mem_bytes": peaks or None,
        "inference_how": (
            "seconds per denoising step = one denoiser call (batch 1, no guidance, median over "
            f"{args.steps} after {args.warmup} warm-up) with K fresh MIVAs at weight 1; `inference` is lora_mode auto "
            "(merge at K = 1, residual at K > 1, the sampling default); `inference_by_lora_mode` has every mode "
            "(merged_cfa: LoRAs merged and one cross-frame attention for all K adapters, an approximation)"
        ),
    }


@torch.no_grad()
def count_inference_flops(size: Size) -> dict[str, Any]:
    """FLOPs of one denoising step (batch 1, no guidance) at `size` with 0 and K = 1, 2, 4 MIVAs, counted on the meta
    device by torch's FlopCounterMode (matmuls, convolutions and attention; elementwise work left out). On hardware
    whose step time follows its FLOPs (a GPU at the paper's clip size) the K = 4 / K = 1 time ratio cannot fall far
    below this ratio, whatever the kernels: it is what the method asks for, not what an implementation spends."""
    from torch.utils.flop_counter import FlopCounterMode

    from miva_lightning.backbones.forward import unet_predict

    denoiser = build_denoiser(size, "meta")
    backbone = bare_backbone(size, denoiser)
    latents = torch.empty((1, *size.latent), device="meta")
    embeds = torch.empty((1, *size.text), device="meta")
    timesteps = torch.tensor([500.0 if size.family == "dit" else 500], device="meta")

    def flops() -> int:
        with FlopCounterMode(display=False) as counter:
            unet_predict(backbone, latents, timesteps, embeds, latents[:, :, 0])
        return int(counter.get_total_flops())

    base, by_mode = over_inference_modes(denoiser, size, flops)
    return {
        "inference_flops_base": base,
        "inference_flops_by_lora_mode": by_mode,
        "inference_flops_how": f"torch.utils.flop_counter.FlopCounterMode on the meta device, {size.label} size, "
                               f"{size.video}, batch 1, no guidance, K fresh MIVAs at weight 1",
    }


def release(device: torch.device, args) -> None:
    """Free what a measurement left (the next one's peak must not include it); tiny runs skip the slow gc pass."""
    if not args.tiny:
        gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------- the run
def machine(device: torch.device) -> dict[str, Any]:
    import diffusers

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "gpu_memory_bytes": torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None,
    }
    try:
        import bitsandbytes  # noqa: F401

        info["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        info["bitsandbytes"] = None
    return info


def commit() -> dict[str, Any]:
    def git(*argv: str) -> str | None:
        try:
            return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    head = git("rev-parse", "HEAD") or os.environ.get("MIVA_COMMIT")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": head, "dirty": None if status is None else bool(status)}


def busy() -> dict[str, Any]:
    """Load average and the busiest other processes (command names only), to tell what else was running."""
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    top = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lines = subprocess.run(["ps", "-eo", "pcpu,comm", "--sort=-pcpu"], capture_output=True, text=True, timeout=10,
                               check=True).stdout.splitlines()[1:6]  # fmt: skip
        top = [line.strip() for line in lines]
    return {"load_average_1_5_15": load, "top_processes_pcpu_comm": top}


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def run_backbone(name: str, args, device: torch.device, log: Callable[[str], None]) -> dict[str, Any]:
    full = tiny_size(name) if args.tiny else full_size(name)
    measured = full if (args.tiny or not args.reduced) else reduced_size(name, args.sd15_layers_per_block)
    result: dict[str, Any] = {
        "full_size": {"label": full.label, "clip": full.video, "latent_cfhw": list(full.latent), "model": jsonable(full.model)},
        "measured_size": {"label": measured.label, "clip": measured.video, "latent_cfhw": list(measured.latent),
                          "model": jsonable(measured.model)},  # fmt: skip
        "methods": {},
    }
    estimate_precision = args.precision if device.type == "cuda" else "bf16-mixed"  # the GPU reference: trainer=gpu
    for method in METHODS:
        counts = count_method(full, method, "meta")
        estimates = {
            "grad_ckpt": estimate_peak(full, method, True, estimate_precision, args.eight_bit),
            "no_grad_ckpt": estimate_peak(full, method, False, estimate_precision, args.eight_bit),
        }
        chosen = estimates["grad_ckpt" if args.grad_ckpt else "no_grad_ckpt"]
        row = result["methods"][method] = {
            **counts,
            "counted_on": "meta device, full size, method attached",
            "peak_mem_bytes": None,
            "peak_mem_how": f"not measured ({'count-only run' if args.count_only else 'CPU run'}); see peak_mem_estimate_bytes",
            "peak_mem_estimate_bytes": chosen["estimate_bytes"],
            "peak_mem_estimate_how": f"full size, {estimate_precision}, gradient checkpointing "
                                     f"{'on' if args.grad_ckpt else 'off'}; {chosen['how']}",
            "peak_mem_estimates": estimates,
            "device": str(device),
            "clip": measured.video,
            "latent_cfhw": list(measured.latent),
            "model": measured.label,
        }
        if measured is not full:
            at_measured = estimate_peak(measured, method, args.grad_ckpt, args.precision, args.eight_bit)
            row["peak_mem_estimate_measured_size_bytes"] = at_measured["estimate_bytes"]
            row["peak_mem_estimate_measured_size"] = at_measured
        at_size = row.get("peak_mem_estimate_measured_size_bytes")
        log(f"{name} {method}: {counts['trainable_params']:,} trainable, "
            f"AdamW states {counts['optimizer_state_bytes'] / GIB:.3f} GiB, "
            f"estimated full-size peak {chosen['estimate_bytes'] / GIB:.2f} GiB"
            + ("" if at_size is None else f" (at the measured size: {at_size / GIB:.2f} GiB)"))  # fmt: skip
    if not args.tiny or args.flops:
        started = time.perf_counter()
        result.update(count_inference_flops(full))
        log(f"{name} inference FLOPs at full size: base {result['inference_flops_base'] / 1e12:.3f} T, "
            f"{result['inference_flops_by_lora_mode']} [{time.perf_counter() - started:.0f} s]")
    if args.count_only:
        return result
    started = time.perf_counter()
    denoiser = build_denoiser(measured, device)
    log(f"{name}: built the {measured.label} denoiser on {device} in {time.perf_counter() - started:.1f} s")
    try:
        for method in METHODS:
            started = time.perf_counter()
            row = result["methods"][method]
            row.update(measure_training(measured, denoiser, method, device, args))
            if device.type == "cuda":
                row["peak_mem_how"] = (
                    "measured: torch.cuda.max_memory_allocated over the measured steps (after warm-up) at "
                    f"{measured.video}, batch 1, {args.precision}, gradient checkpointing {'on' if args.grad_ckpt else 'off'}, "
                    f"{row['optimizer']}"
                )
            row["step_how"] = (
                f"median of {args.steps} steps after {args.warmup} warm-up: diffusion loss forward + backward + clip 1.0 + "
                f"optimizer step; {args.precision}, gradient checkpointing {'on' if args.grad_ckpt else 'off'}, batch 1, "
                f"{measured.video}, model {measured.label}"
            )
            log(f"{name} {method}: step {row['step_s']:.3f} s (fwd+bwd {row['forward_backward_s']:.3f}, optimizer "
                f"{row['optimizer_s']:.3f})"
                + (f", peak {row['peak_mem_bytes'] / GIB:.2f} GiB" if row.get("peak_mem_bytes") else "")
                + f" [{time.perf_counter() - started:.0f} s]")  # fmt: skip
        started = time.perf_counter()
        result.update(measure_inference(measured, denoiser, device, args))
        log(f"{name} inference s/step: base {result['inference_base_s']:.4f}, {result['inference_by_lora_mode']} "
            f"[{time.perf_counter() - started:.0f} s]")  # fmt: skip
    finally:
        del denoiser
        release(device, args)
    return result


def summarise(results: dict[str, Any], args) -> dict[str, Any]:
    """The ratios against their targets, and whether MIVA on SD1.5 at the paper's clip fits 24 GiB."""
    summary: dict[str, Any] = {}
    for name, backbone in results["backbones"].items():
        methods = backbone["methods"]
        miva, full, lora = methods["miva"], methods["full_ft"], methods["motion_lora"]
        measured_peak = miva.get("peak_mem_bytes") is not None and full.get("peak_mem_bytes") is not None
        peak_key = "peak_mem_bytes" if measured_peak else "peak_mem_estimate_bytes"
        rows = {
            "optimizer_state_miva_over_full_ft": ratio(miva["optimizer_state_bytes"], full["optimizer_state_bytes"]),
            "peak_memory_miva_over_full_ft": ratio(miva[peak_key], full[peak_key]),
            "peak_memory_by": ("measured (CUDA, reduced size)" if args.reduced else "measured (CUDA)") if measured_peak
                              else "computed estimate (full size)",
            "step_time_miva_over_full_ft": ratio(miva.get("step_s"), full.get("step_s")),
            "step_time_motion_lora_over_full_ft": ratio(lora.get("step_s"), full.get("step_s")),
            "trainable_miva_over_full_ft": ratio(miva["trainable_params"], full["trainable_params"]),
        }
        inference = backbone.get("inference")
        if inference:
            modes = backbone["inference_by_lora_mode"]
            rows["inference_k4_over_k1_auto"] = ratio(inference["4"], inference["1"])
            rows.update({f"inference_k4_over_k1_{mode}": ratio(modes[mode]["4"], modes[mode]["1"]) for mode in MODE_SETTINGS})
        flops = backbone.get("inference_flops_by_lora_mode")
        if flops:
            rows.update({f"inference_flops_k4_over_k1_{mode}": ratio(flops[mode]["4"], flops[mode]["1"]) for mode in MODE_SETTINGS})
            rows["inference_flops_k1_over_base"] = ratio(flops["merge"]["1"], backbone["inference_flops_base"])
        rows["meets"] = {
            "optimizer_state": _meets(rows["optimizer_state_miva_over_full_ft"], TARGETS["optimizer_state"]),
            "peak_memory": _meets(rows["peak_memory_miva_over_full_ft"], TARGETS["peak_memory"]),
            "step_time": _meets(rows["step_time_miva_over_full_ft"], TARGETS["step_time"]),
            "inference_k4_over_k1_auto": _meets(rows.get("inference_k4_over_k1_auto"), TARGETS["inference_k4_over_k1"]),
            "inference_k4_over_k1_merge": _meets(rows.get("inference_k4_over_k1_merge"), TARGETS["inference_k4_over_k1"]),
            "inference_k4_over_k1_merged_cfa": _meets(rows.get("inference_k4_over_k1_merged_cfa"),
                                                      TARGETS["inference_k4_over_k1"]),
        }
        summary[name] = rows
    sd15 = results["backbones"].get("sd15")
    if sd15 is not None and not args.tiny:
        miva = sd15["methods"]["miva"]
        if miva.get("peak_mem_bytes") is not None and not args.reduced:
            used, by = miva.get("peak_mem_reserved_bytes") or miva["peak_mem_bytes"], "measured (CUDA max_memory_reserved)"
            settings = {"precision": args.precision, "grad_ckpt": args.grad_ckpt, "optimizer": miva["optimizer"]}
        else:
            used, by = miva["peak_mem_estimate_bytes"], "computed estimate"
            settings = miva["peak_mem_estimates"]["grad_ckpt" if args.grad_ckpt else "no_grad_ckpt"]["settings"]
        summary["miva_sd15_fits_24gib"] = {
            "fits": used <= FIT_BUDGET_BYTES, "bytes": used, "budget_bytes": FIT_BUDGET_BYTES, "by": by,
            "clip": full_size("sd15").video, "settings": settings,
        }  # fmt: skip
    summary["targets"] = TARGETS
    return summary


def _meets(value: float | None, target: float) -> bool | None:
    return None if value is None else value <= target


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def print_table(results: dict[str, Any]) -> None:
    for name, backbone in results["backbones"].items():
        print(f"# {name}: counted at full size ({backbone['full_size']['clip']}); "
              f"measured at {backbone['measured_size']['label']}, {backbone['measured_size']['clip']}", file=sys.stderr)
        print(f"{'method':12s} {'trainable':>14s} {'AdamW GiB':>10s} {'8bit GiB':>9s} {'peak GiB':>9s} {'est GiB':>8s} "
              f"{'step s':>8s}", file=sys.stderr)  # fmt: skip
        for method, row in backbone["methods"].items():
            peak = row.get("peak_mem_bytes")
            step = row.get("step_s")
            print(f"{method:12s} {row['trainable_params']:>14,d} {row['optimizer_state_bytes'] / GIB:>10.3f} "
                  f"{row['optimizer_state_bytes_adamw8bit'] / GIB:>9.3f} {'-' if peak is None else f'{peak / GIB:.2f}':>9s} "
                  f"{row['peak_mem_estimate_bytes'] / GIB:>8.2f} {'-' if step is None else f'{step:.3f}':>8s}",
                  file=sys.stderr)  # fmt: skip
        if backbone.get("inference"):
            print(f"inference s/step: base {backbone['inference_base_s']:.4f}; " + "; ".join(
                f"{mode} " + ", ".join(f"K={k} {s:.4f}" for k, s in by_k.items())
                for mode, by_k in backbone["inference_by_lora_mode"].items()), file=sys.stderr)  # fmt: skip
    for name, rows in results["summary"].items():
        if name in results["backbones"]:
            shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows.items()}
            print(f"ratios {name}: {shown}", file=sys.stderr)
    if "miva_sd15_fits_24gib" in results["summary"]:
        fit = results["summary"]["miva_sd15_fits_24gib"]
        print(f"MIVA on SD1.5 at {fit['clip']}: {fit['bytes'] / GIB:.2f} GiB by {fit['by']} -> "
              f"{'fits' if fit['fits'] else 'does NOT fit'} 24 GiB", file=sys.stderr)  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cuda | cpu (default: cuda when present)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--reduced", action="store_true", default=None, help="measure at the reduced sizes (the CPU default)")
    size.add_argument("--full", dest="reduced", action="store_false", help="measure at full size (the CUDA default)")
    parser.add_argument("--tiny", action="store_true", help="tiny models of the same classes (tests; a few seconds)")
    parser.add_argument("--count-only", action="store_true", help="only the exact counts and estimates (meta device)")
    parser.add_argument("--flops", action="store_true", help="count inference FLOPs also with --tiny (at the tiny size; otherwise always at full size)")
    parser.add_argument("--steps", type=int, default=None, help="measured steps (default: cuda 10, cpu 3)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: cuda 3, cpu 1)")
    parser.add_argument("--skip-wan", action="store_true")
    parser.add_argument("--skip-sd15", action="store_true")
    parser.add_argument("--precision", choices=("bf16-mixed", "fp32"), default=None,
                        help="training/inference compute (default: cuda bf16-mixed as trainer=gpu, cpu fp32)")
    parser.add_argument("--no-grad-ckpt", dest="grad_ckpt", action="store_false",
                        help="without gradient checkpointing (experiment=miva_animatediff_lamp turns it on)")
    parser.add_argument("--eight-bit", action="store_true", help="bitsandbytes AdamW8bit (falls back to AdamW without it)")
    parser.add_argument("--sd15-layers-per-block", type=int, default=1, help="the reduced SD1.5's depth (real: 2)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--json", default=str(REPO / "results" / "bench_real.json"), help="'' to write nothing")
    args = parser.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    cuda = device.type == "cuda"
    if args.reduced is None:
        args.reduced = not cuda
    args.steps = args.steps or (2 if args.tiny else 10 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny or not cuda else 3)
    args.precision = args.precision or ("bf16-mixed" if cuda else "fp32")
    if args.threads:
        torch.set_num_threads(args.threads)
    log = (lambda text: print(text, file=sys.stderr, flush=True))

    started = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "benchmarks/bench_real_size.py",
        **commit(),
        "machine": machine(device),
        "busy_before": busy(),
        "settings": {**vars(args), "device": str(device)},
        "backbones": {},
    }
    names = [n for n in BACKBONES if not (n == "wan21" and args.skip_wan) and not (n == "sd15" and args.skip_sd15)]
    for name in names:
        results["backbones"][name] = run_backbone(name, args, device, log)
    results["summary"] = summarise(results, args)
    results["busy_after"] = busy()
    results["wall_s"] = time.perf_counter() - started
    print_table(results)
    text = json.dumps(jsonable(results), indent=2)
    print(text)
    if args.json:
        from miva_lightning.utils import atomic_write_json

        atomic_write_json(args.json, jsonable(results))
    return results


if __name__ == "__main__":
    main()
