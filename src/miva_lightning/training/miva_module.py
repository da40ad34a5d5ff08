"""MivaModule: trains ONE MIVA on a frozen backbone with the shared diffusion loss (no text).

What the module guarantees:
- The backbone (UNet, codec, text encoder) is frozen: requires_grad False, kept in eval mode even when
  Lightning calls `train()`, never given to the optimizer, never written to a checkpoint.
- Checkpoints hold only the adapter's tensors (plus Lightning's optimizer / scheduler / loop state) and the
  RNG states this module uses: torch, numpy, python and the noise generator of the loss. With
  `StepKeyedBatches` for data, a resumed run repeats an uninterrupted one exactly.
- Validation samples preview videos from held-out first frames (`validation_step` returns them; the
  `MivaPreviews` callback writes and logs them).
"""

from __future__ import annotations

import math
import random
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from miva_lightning.backbones import Backbone
from miva_lightning.sampling.noise_init import as_noise_init
from miva_lightning.training.diffusion_loss import diffusion_loss

LR_SCHEDULES = ("constant", "cosine", "linear")
RECENT_LOSSES = 50  # how many training losses `recent_loss` averages (one batch of 10 clips is noisy)


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
    # 600 steps, so it gets a textual-inversion-like rate.
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


def lr_factor(step: int, warmup_steps: int, total_steps: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (linear warmup, then the schedule)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant" or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * decay


def parameter_groups(miva: nn.Module, opt: MivaOptimization) -> list[dict[str, Any]]:
    """One AdamW group per MIVA component (trainable parameters only), with its lr multiplier applied."""
    from miva_lightning.adapters.miva import COMPONENTS

    unknown = sorted(set(opt.component_lr_scale) - set(COMPONENTS))
    if unknown:
        raise ValueError(f"component_lr_scale names unknown components {unknown}; known: {list(COMPONENTS)}")
    groups = []
    for component in COMPONENTS:
        params = [p for p in getattr(miva, component).parameters() if p.requires_grad]
        if params:
            groups.append({"params": params, "lr": opt.lr * opt.component_lr_scale.get(component, 1.0), "name": component})
    return groups


def build_adamw(params: list[nn.Parameter] | list[dict[str, Any]], opt: MivaOptimization) -> torch.optim.Optimizer:
    if opt.eight_bit:
        try:
            import bitsandbytes as bnb  # optional: not a pinned dependency

            return bnb.optim.AdamW8bit(params, lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay)
        except ImportError:
            warnings.warn(
                "optimizer.eight_bit=true but bitsandbytes is not installed: falling back to torch AdamW "
                "(install bitsandbytes on a CUDA machine for 8-bit optimizer states)",
                stacklevel=2,
            )
    return torch.optim.AdamW(params, lr=opt.lr, betas=opt.betas, eps=opt.eps, weight_decay=opt.weight_decay)


TRAINING_LORA_MODE = "merge"


class MivaModule(L.LightningModule):
    """Frozen `backbone` + one trainable `miva` (attached with weight 1)."""

    def __init__(
        self,
        backbone: Backbone,
        miva: nn.Module,
        optimization: MivaOptimization | dict | None = None,
        noise_seed: int = 0,
        timestep_distribution: str = "uniform",
        high_noise_power: float = 2.0,
        preview_num_frames: int | None = None,
        preview_steps: int = 25,
        preview_seed: int = 0,
        noise_init: Any = None,
    ):
        super().__init__()
        from miva_lightning.adapters import attach_mivas

        self.optimization = (
            optimization if isinstance(optimization, MivaOptimization) else MivaOptimization(**(optimization or {}))
        )
        self.backbone = backbone
        # Registered as children so Lightning moves them to the device; filtered out of checkpoints below.
        self.unet = backbone.unet
        self.codec = backbone.codec if isinstance(backbone.codec, nn.Module) else None
        self.text_encoder = backbone.text_encoder
        for frozen in self.frozen_modules():
            frozen.requires_grad_(False)
            frozen.eval()
        self.miva = miva
        self.miva.requires_grad_(True)
        # One adapter at weight 1: "merge" (W + dW through peft's differentiable LoRA layers) is the same
        # function with the same gradients as "residual", which would run every temporal attention twice
        # (measured on the tiny base, batch 4, 2 threads: 0.32 vs 0.51 s per step).
        self.attachment = attach_mivas(self.unet, [(self.miva, 1.0)], lora_mode=TRAINING_LORA_MODE)
        self._check_only_adapter_trains()

        self.register_buffer("empty_prompt", self._empty_prompt_embeds(), persistent=False)
        self.noise_seed = int(noise_seed)
        self.noise_generator = torch.Generator().manual_seed(self.noise_seed)
        self.timestep_distribution = timestep_distribution
        self.high_noise_power = float(high_noise_power)
        self.preview_num_frames = preview_num_frames or int(backbone.config.get("num_frames", 8))
        self.preview_steps = int(preview_steps)
        self.preview_seed = int(preview_seed)
        self.noise_init = as_noise_init(noise_init)
        self.strict_loading = False  # checkpoints carry the adapter only; on_load_checkpoint checks its keys
        self.recent_losses: deque[torch.Tensor] = deque(maxlen=RECENT_LOSSES)  # detached training losses

    # ----------------------------------------------------------------- frozen base
    def frozen_modules(self) -> list[nn.Module]:
        return [m for m in (self.unet, self.codec, self.text_encoder) if m is not None]

    def adapter_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.miva.parameters() if p.requires_grad]

    def _check_only_adapter_trains(self) -> None:
        adapter_ids = {id(p) for p in self.miva.parameters()}
        stray = [n for n, p in self.named_parameters() if p.requires_grad and id(p) not in adapter_ids]
        if stray:
            raise RuntimeError(f"parameters outside the MIVA would train: {stray[:5]} (the base must stay frozen)")
        if not self.adapter_parameters():
            raise RuntimeError("the MIVA has no trainable parameters: check the adapter config")

    def train(self, mode: bool = True) -> "MivaModule":
        """Lightning switches modes around validation; the frozen base stays in eval mode regardless."""
        super().train(mode)
        for frozen in self.frozen_modules():
            frozen.eval()
        self.miva.train(mode)
        return self

    @torch.no_grad()
    def _empty_prompt_embeds(self) -> torch.Tensor:
        """Embedding `1 L D` of the empty prompt: MIVA uses no text, but the UNet still expects the tensor."""
        if self.backbone.text_encoder is not None and self.backbone.tokenizer is not None:
            from miva_lightning.backbones import encode_prompts

            return encode_prompts(self.backbone, [""]).detach()
        dim = self.unet.config.cross_attention_dim
        return torch.zeros(1, 1, dim)

    def prompt_embeds(self, batch_size: int) -> torch.Tensor:
        return self.empty_prompt.expand(batch_size, -1, -1)

    # ----------------------------------------------------------------- training
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        video = batch["video"]  # b f c h w in [0, 1]
        loss = diffusion_loss(
            self.backbone,
            video,
            self.prompt_embeds(video.shape[0]).to(video.dtype),
            generator=self.noise_generator,
            timestep_distribution=self.timestep_distribution,
            high_noise_power=self.high_noise_power,
        )
        self.log("train/loss", loss, prog_bar=True, batch_size=video.shape[0])
        self.recent_losses.append(loss.detach())
        return loss

    def recent_loss(self) -> float | None:
        """Mean of the last RECENT_LOSSES training losses (None before the first step)."""
        if not self.recent_losses:
            return None
        return float(torch.stack(list(self.recent_losses)).float().mean())

    def configure_optimizers(self) -> dict[str, Any]:
        opt = self.optimization
        optimizer = build_adamw(parameter_groups(self.miva, opt), opt)
        total = opt.total_steps or (self.trainer.max_steps if self.trainer and self.trainer.max_steps > 0 else 0)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, opt.warmup_steps, total, opt.lr_schedule, opt.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ----------------------------------------------------------------- previews
    @torch.no_grad()
    def sample(self, first_frames: torch.Tensor, generator: torch.Generator, progress: bool = False) -> torch.Tensor:
        """Animate first frames `b c h w` in [0, 1] with the attached MIVA -> video `b f c h w`."""
        from miva_lightning.sampling.sampler import sample_video

        return sample_video(
            self.backbone,
            first_frames,
            num_frames=self.preview_num_frames,
            prompt_embeds=self.prompt_embeds(first_frames.shape[0]).to(first_frames.dtype),
            num_inference_steps=self.preview_steps,
            guidance_scale=1.0,
            generator=generator,
            noise_init=self.noise_init,
            progress=progress,
        )

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        first_frames = batch["first_frame"]
        # A private generator per batch: previews repeat across runs and never touch the training RNGs.
        generator = torch.Generator().manual_seed(self.preview_seed + batch_idx)
        video = self.sample(first_frames, generator)
        psnr = first_frame_psnr(video[:, 0], first_frames)
        self.log("val/first_frame_psnr_db", psnr, batch_size=first_frames.shape[0], sync_dist=True)
        return {"video": video.cpu(), "first_frame": first_frames.cpu()}

    # ----------------------------------------------------------------- checkpoints
    def adapter_state_keys(self) -> set[str]:
        return {f"miva.{name}" for name in self.miva.state_dict()}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = self.adapter_state_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint["miva_rng_states"] = {
            "torch": torch.get_rng_state(),
            "numpy": numpy_state_as_tensors(),
            "python": random.getstate(),
            "noise_generator": self.noise_generator.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = set(checkpoint.get("state_dict", {}))
        missing = self.adapter_state_keys() - saved
        unexpected = saved - self.adapter_state_keys()
        if missing or unexpected:
            raise ValueError(
                "checkpoint does not match this MIVA: "
                f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}; "
                "resume with the same adapter config the checkpoint was trained with"
            )
        states = checkpoint.get("miva_rng_states")
        if states is None:
            warnings.warn("checkpoint has no RNG states: the resumed run will not repeat the original", stacklevel=2)
            return
        torch.set_rng_state(states["torch"])
        restore_numpy_state(states["numpy"])
        random.setstate(states["python"])
        self.noise_generator.set_state(states["noise_generator"])
        if states.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


def numpy_state_as_tensors() -> dict[str, Any]:
    """numpy's global RNG state in types `torch.load(weights_only=True)` accepts (no numpy arrays)."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "kind": kind,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def restore_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["kind"], keys, state["position"], state["has_gauss"], state["cached_gaussian"]))


def first_frame_psnr(generated: torch.Tensor, reference: torch.Tensor, cap_db: float = 100.0) -> torch.Tensor:
    """Mean PSNR (dB, data range 1) over frames `b c h w`; identical frames (infinite PSNR) count as `cap_db`."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    per_frame = peak_signal_noise_ratio(
        generated.float(), reference.float(), data_range=1.0, reduction="none", dim=(1, 2, 3)
    )
    return per_frame.clamp(max=cap_db).mean()
