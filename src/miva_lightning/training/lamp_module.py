"""LampModule: LAMP-style few-shot tuning (Wu et al., "LAMP: Learn A Motion Pattern for Few-Shot-Based Video
Generation"; code github RQ-Wu/LAMP), on the same data and loss as the MIVA.

What trains, as the LAMP paper and code do: the temporal layers (here every parameter of the AnimateDiff
motion modules) and the query projection of every spatial self-attention (`attn1.to_q` of the spatial
transformer blocks); everything else is frozen. The first frame is kept clean by the shared loss. LAMP is
text-prompted: by default it trains and samples with the clip's caption (`configs/method/lamp.yaml`).
Checkpoints and the export hold only those tensors: a safetensors dict UNet name -> tensor with the base's
identity in its metadata; `load_lamp(path, backbone)` applies them to a copy of a fresh base.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from miva_lightning.backbones import Backbone
from miva_lightning.training.fewshot_module import FewShotModule
from miva_lightning.utils import atomic_path

LAMP_FORMAT = "lamp"
METADATA_KEY = "lamp"


def is_motion_module_parameter(name: str) -> bool:
    return "motion_modules" in name.split(".")


def lamp_parameter_names(unet: nn.Module) -> list[str]:
    """UNet parameter names LAMP trains: every motion-module parameter and each spatial `attn1.to_q`."""
    from miva_lightning.adapters.miva import spatial_attention_names

    queries = {f"{attn}.to_q." for attn in spatial_attention_names(unet, "attn1")}
    names = [
        name
        for name, _ in unet.named_parameters()
        if is_motion_module_parameter(name) or any(name.startswith(q) for q in queries)
    ]
    if not any(is_motion_module_parameter(n) for n in names) or not queries:
        raise ValueError("this UNet has no motion modules or no spatial self-attention: LAMP needs both")
    return names


class LampModule(FewShotModule):
    trained_part = "LAMP tensors (motion modules + spatial attn1.to_q)"

    def __init__(self, backbone: Backbone, **kwargs: Any):
        super().__init__(backbone, **kwargs)
        self.lamp_names = lamp_parameter_names(self.unet)
        for parameter in self.trainable_parameters():
            parameter.requires_grad_(True)
        self.check_only_trainable_part_trains()

    def trainable_parameters(self) -> list[nn.Parameter]:
        named = dict(self.unet.named_parameters())
        return [named[name] for name in self.lamp_names]

    def trainable_modules(self) -> list[nn.Module]:
        return [m for name, m in self.unet.named_modules() if name.split(".")[-1] == "motion_modules"]

    def trainable_state_keys(self) -> set[str]:
        return {f"unet.{name}" for name in self.lamp_names}

    def lamp_tensors(self) -> dict[str, torch.Tensor]:
        named = dict(self.unet.named_parameters())
        return {name: named[name].detach().to("cpu").contiguous() for name in self.lamp_names}


def save_lamp(path: str | Path, tensors: dict[str, torch.Tensor], base: dict[str, Any], motion: str) -> Path:
    """Write the LAMP tensors (UNet name -> tensor) as safetensors; metadata: format, motion, base identity."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"LAMP exports are safetensors: name the file *.safetensors, not {path.name}")
    metadata = {"format": LAMP_FORMAT, "motion": motion, "base": dict(base)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    return path


def read_lamp(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    with safe_open(str(path), framework="pt") as reader:
        raw = (reader.metadata() or {}).get(METADATA_KEY)
        if raw is None:
            raise ValueError(f"{path} is not a LAMP export (no '{METADATA_KEY}' metadata)")
        return {key: reader.get_tensor(key) for key in reader.keys()}, json.loads(raw)


def load_lamp(path: str | Path, backbone: Backbone, strict_base: bool = True) -> Backbone:
    """A copy of `backbone` whose UNet (a deep copy) carries the LAMP tensors of `path`. The file must hold
    exactly this UNet's LAMP tensors, and (`strict_base`) come from a base with this UNet's fingerprint."""
    from miva_lightning.adapters import base_identity

    tensors, metadata = read_lamp(path)
    recorded = metadata.get("base", {}).get("fingerprint")
    actual = base_identity(backbone.unet, backbone.name)["fingerprint"]
    if strict_base and recorded != actual:
        raise ValueError(f"{path} was trained on base fingerprint {recorded}, this UNet is {actual}: load the matching base")
    unet = copy.deepcopy(backbone.unet)
    expected = set(lamp_parameter_names(unet))
    if set(tensors) != expected:
        raise ValueError(
            f"{path} does not hold this UNet's LAMP tensors: missing {sorted(expected - set(tensors))[:3]}, "
            f"unexpected {sorted(set(tensors) - expected)[:3]}"
        )
    named = dict(unet.named_parameters())
    with torch.no_grad():
        for name, tensor in tensors.items():
            if named[name].shape != tensor.shape:
                raise ValueError(f"{path}: {name} has shape {tuple(tensor.shape)}, the UNet {tuple(named[name].shape)}")
            named[name].copy_(tensor)
    return dataclasses.replace(backbone, unet=unet.eval().requires_grad_(False))
