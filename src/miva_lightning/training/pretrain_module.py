"""LightningModule that pretrains the tiny text-to-video base (UNet + text encoder) on the world's base motions.

Image-to-video form from the start: frame 1 is clean (see `diffusion_loss`), captions are dropped to the
empty prompt with probability `caption_dropout` so that classifier-free guidance works at sampling time.
"""

from __future__ import annotations

import math
import time
from typing import Any, Mapping

import lightning as L
import torch

from miva_lightning.backbones.base import Backbone
from miva_lightning.backbones.tiny import build_tiny_backbone
from miva_lightning.backbones.tokenizer import encode_prompts
from miva_lightning.training.diffusion_loss import diffusion_loss


class PretrainModule(L.LightningModule):
    """Trains every UNet and text-encoder weight; `backbone` (optional) continues a trained base instead of
    building a fresh one from `backbone_cfg` (the `large_data` method, `training/large_data_module.py`)."""

    def __init__(self, backbone_cfg: Mapping[str, Any], recipe: Mapping[str, Any], backbone: Backbone | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["backbone"])
        self.recipe = dict(recipe)
        self.backbone = build_tiny_backbone(backbone_cfg) if backbone is None else backbone
        # registered as submodules so Lightning moves, trains and checkpoints them
        self.unet = self.backbone.unet
        self.text_encoder = self.backbone.text_encoder
        self.codec = self.backbone.codec

    def drop_captions(self, captions: list[str]) -> list[str]:
        keep = torch.rand(len(captions)) >= self.recipe["caption_dropout"]
        return [caption if k else "" for caption, k in zip(captions, keep.tolist())]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        embeds = encode_prompts(self.backbone, self.drop_captions(list(batch["caption"])))
        loss = diffusion_loss(
            self.backbone,
            batch["video"],
            embeds,
            timestep_distribution=self.recipe["timestep_distribution"],
            high_noise_power=self.recipe["high_noise_power"],
        )
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=self.recipe["lr"], weight_decay=self.recipe["weight_decay"], betas=(0.9, 0.99)
        )
        warmup = max(1, int(self.recipe["warmup_steps"]))
        decay_steps = self.recipe.get("cosine_decay_steps")

        def lr_factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if not decay_steps:
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, decay_steps - warmup))
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class TrainingBudget(L.Callback):
    """Stops after `budget_minutes` of training (evaluation time excluded) and evaluates at minute marks.

    `evaluate(module, minutes, steps)` is called at each mark in `eval_at_minutes` and at the end; its
    results form the learning curve.
    """

    def __init__(self, budget_minutes: float | None, eval_at_minutes: list[float], evaluate):
        self.budget_minutes = budget_minutes
        self.marks = sorted(float(m) for m in eval_at_minutes)
        self.evaluate = evaluate
        self.train_seconds = 0.0
        self.learning_curve: list[dict] = []
        self._last = 0.0

    @property
    def minutes(self) -> float:
        return self.train_seconds / 60.0

    def on_train_start(self, trainer, module):
        self._last = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        now = time.perf_counter()
        self.train_seconds += now - self._last  # data loading + step; evaluation time is left out
        while self.marks and self.minutes >= self.marks[0]:
            self.marks.pop(0)
            self.learning_curve.append(self.evaluate(module, self.minutes, trainer.global_step))
        if self.budget_minutes is not None and self.minutes >= self.budget_minutes:
            trainer.should_stop = True
        self._last = time.perf_counter()
