"""The `large_data` baseline: "a model trained on much larger data" than the ten few-shot clips.

`PretrainModule` continued from the saved base (every UNet and text-encoder weight trains, captions dropped
with the recipe's probability so guidance keeps working) on fresh world clips of the chosen motions WITH their
captions (`large_data_clips`: the world stream restricted to those motions, captions from
`world.caption_for`), one model for all of them. Checkpoints add the RNG states, so with `StepKeyedBatches`
a resumed run repeats an uninterrupted one. The export is a folder `unet/` + `text_encoder/`
(`save_pretrained`, safetensors) + `method.json`; `load_large_data(folder, backbone)` returns a copy of the
backbone with both replaced.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from miva_lightning.backbones import Backbone
from miva_lightning.training.fewshot_module import RECENT_LOSSES
from miva_lightning.training.full_finetune_module import read_method_record, save_model_folder
from miva_lightning.training.pretrain_module import PretrainModule
from miva_lightning.training.rng_states import RNG_STATES_KEY, capture_rng_states, restore_rng_states


def large_data_clips(motions: Sequence[str], num_clips: int, size: int, num_frames: int, seed: int):
    """`num_clips` fresh training clips of `motions` (uniform), each with its motion's caption."""
    from miva_lightning.world import MotionWorldClips, MotionWorldStream, caption_for

    stream = MotionWorldStream(list(motions), size=size, num_frames=num_frames, seed=seed,
                               captions={m: caption_for(m) for m in motions})  # fmt: skip
    return MotionWorldClips(stream, num_clips)


class ContinuedPretrainModule(PretrainModule):
    """PretrainModule over a trained `backbone`, with RNG states in checkpoints and recent-loss bookkeeping."""

    def __init__(self, backbone: Backbone, recipe: Mapping[str, Any]):
        super().__init__(dict(backbone.config), recipe, backbone=backbone)
        for trained in (self.unet, self.text_encoder):
            trained.requires_grad_(True)
        if isinstance(self.codec, nn.Module):
            self.codec.requires_grad_(False)  # a VAE codec stays frozen
        self.strict_loading = False  # checkpoints hold the UNet and text encoder, not a frozen codec
        self.recent_losses: deque[torch.Tensor] = deque(maxlen=RECENT_LOSSES)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = super().training_step(batch, batch_idx)
        self.recent_losses.append(loss.detach())
        return loss

    def recent_loss(self) -> float | None:
        return float(torch.stack(list(self.recent_losses)).float().mean()) if self.recent_losses else None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = {f"{part}.{k}" for part in ("unet", "text_encoder") for k in getattr(self, part).state_dict()}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint[RNG_STATES_KEY] = capture_rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if RNG_STATES_KEY in checkpoint:
            restore_rng_states(checkpoint[RNG_STATES_KEY])


def save_large_data(folder: str | Path, backbone: Backbone, base: dict[str, Any], motions: Sequence[str]) -> Path:
    parts = {"unet": backbone.unet, "text_encoder": backbone.text_encoder}
    return save_model_folder(folder, parts, {"method": "large_data", "motions": list(motions), "base": base})


def load_large_data(folder: str | Path, backbone: Backbone) -> Backbone:
    """A copy of `backbone` (shared codec, tokenizer, schedulers) with the continued UNet and text encoder."""
    read_method_record(folder, "large_data", backbone)
    device = next(backbone.unet.parameters()).device
    unet = type(backbone.unet).from_pretrained(Path(folder) / "unet")
    text_encoder = type(backbone.text_encoder).from_pretrained(Path(folder) / "text_encoder")
    frozen = [m.to(device).eval().requires_grad_(False) for m in (unet, text_encoder)]
    return dataclasses.replace(backbone, unet=frozen[0], text_encoder=frozen[1])
