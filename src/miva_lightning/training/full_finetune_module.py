"""FullFinetuneModule: the paper's "fully fine-tuned" baseline: EVERY UNet weight trains on the few-shot clips.

Same loss, data, prompt (empty, like the MIVA), optimizer recipe and checkpoints as `MivaModule`
(`FewShotModule`); the codec and text encoder stay frozen. Checkpoints hold the UNet's weights (all of them
train) with optimizer, schedule and RNG states. The export is a folder: `unet/` (diffusers `save_pretrained`,
safetensors) and `method.json` (method, the base it started from); `load_full_finetune(folder, backbone)`
returns a copy of `backbone` with that UNet, ready for sampling.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from miva_lightning.backbones import Backbone
from miva_lightning.training.fewshot_module import FewShotModule
from miva_lightning.utils import atomic_folder, atomic_write_json

METHOD_FILE = "method.json"


class FullFinetuneModule(FewShotModule):
    trained_part = "UNet"

    def __init__(self, backbone: Backbone, **kwargs: Any):
        super().__init__(backbone, **kwargs)
        self.unet.requires_grad_(True)
        self.check_only_trainable_part_trains()

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.unet.parameters())

    def trainable_modules(self) -> list[nn.Module]:
        return [self.unet]

    def trainable_state_keys(self) -> set[str]:
        return {f"unet.{name}" for name in self.unet.state_dict()}


def save_model_folder(folder: str | Path, parts: dict[str, nn.Module], record: dict[str, Any]) -> Path:
    """Write `parts` ({subfolder: model with save_pretrained}) and `method.json` into `folder`, atomically."""
    with atomic_folder(folder) as tmp:
        for name, model in parts.items():
            model.save_pretrained(tmp / name, safe_serialization=True)
        atomic_write_json(tmp / METHOD_FILE, record)
    return Path(folder)


def read_method_record(folder: str | Path, method: str, backbone: Backbone) -> dict[str, Any]:
    """`method.json` of an export folder; refuses another method's folder, warns on another base's name."""
    path = Path(folder) / METHOD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a {method} export (no {METHOD_FILE})")
    record = json.loads(path.read_text())
    if record.get("method") != method:
        raise ValueError(f"{folder} holds method {record.get('method')!r}, not {method!r}")
    if record.get("base", {}).get("name") not in (None, backbone.name):
        warnings.warn(f"{folder} was trained from base {record['base']['name']!r}, loading it over {backbone.name!r}", stacklevel=3)
    return record


def save_full_finetune(folder: str | Path, unet: nn.Module, base: dict[str, Any], motion: str) -> Path:
    return save_model_folder(folder, {"unet": unet}, {"method": "full_ft", "motion": motion, "base": base})


def load_full_finetune(folder: str | Path, backbone: Backbone) -> Backbone:
    """A copy of `backbone` (shared codec, text encoder, schedulers) whose UNet is the fine-tuned one."""
    read_method_record(folder, "full_ft", backbone)
    reference = next(backbone.unet.parameters())
    unet = type(backbone.unet).from_pretrained(Path(folder) / "unet", torch_dtype=reference.dtype).to(reference.device)
    return dataclasses.replace(backbone, unet=unet.eval().requires_grad_(False))
