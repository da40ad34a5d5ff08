"""The methods of the MIVA comparison (`configs/method/`): settings, loading an export, sampling with it.

    load_trained(summary_or_export, backbone, method=None) -> Miva | [(Miva, weight), ...] | Backbone
    sample_method(method, export, backbone, first_frames, motion, num_frames, steps, seed) -> b f c h w in [0, 1]

`method` is a name of METHODS or a method node (`cfg.method`); `export` is what `train_method` exported
(`summary["export_path"]`) or a loaded object:
- miva, motion_lora: a MIVA `.safetensors` file (or a `Miva`), animated with `animate.animate_batch` at weight 1;
- miva_composed: two MIVA files, or (file, weight) pairs (plain files take the config's `weights`);
- full_ft, large_data: an export folder (`method.json` + `unet/` [+ `text_encoder/`]); lamp: a LAMP
  `.safetensors`; each loads as a copy of `backbone` with the trained weights (or pass that Backbone);
- base_prompted: None (the base itself).
Prompt and guidance come from the method's `sample` node: the motion's caption (`caption_of`) with guidance
2 for base_prompted, large_data and lamp; the empty prompt without guidance for the others.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from miva_lightning.config import CONFIG_DIR

if TYPE_CHECKING:
    import torch

METHODS = ("base_prompted", "full_ft", "large_data", "motion_lora", "lamp", "miva", "miva_composed")
MIVA_FILE_METHODS = ("miva", "motion_lora")  # exported as MIVA files, sampled as attached adapters
UNTRAINED_METHODS = ("base_prompted", "miva_composed")
BACKBONE_METHODS = ("full_ft", "lamp", "large_data")  # their export loads as a modified copy of the base


def _method_file(name: str) -> DictConfig:
    node = OmegaConf.load(Path(CONFIG_DIR) / "method" / f"{name}.yaml")
    parents = [d for d in node.pop("defaults", []) if d != "_self_"]  # same-group defaults only (`- miva`)
    return OmegaConf.merge(*[_method_file(p) for p in parents], node)


def method_config(method: str | Mapping | DictConfig | None) -> DictConfig:
    """The settings of a method: configs/method/<name>.yaml, or a method node (merged over its file)."""
    if method is None:
        return _method_file("miva")
    node = OmegaConf.create({"name": method}) if isinstance(method, str) else OmegaConf.create(
        OmegaConf.to_container(method, resolve=True) if isinstance(method, DictConfig) else dict(method)
    )
    name = node.get("name")
    if name not in METHODS:
        raise ValueError(f"method {name!r} unknown; use one of {', '.join(METHODS)}")
    return OmegaConf.merge(_method_file(name), node)


def caption_of(motion: str) -> str:
    """The caption a motion is trained and prompted with: the world's caption, else the name with spaces
    (the default caption of a LAMP-layout folder)."""
    from miva_lightning.world import ALL_MOTIONS, caption_for

    return caption_for(motion) if motion in ALL_MOTIONS else str(motion).replace("_", " ")


def bytes_on_disk(path: str | os.PathLike | None) -> int:
    """Size of an export: a file, or every file under a folder."""
    if path is None:
        return 0
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def method_of_export(export: Any) -> str:
    """Which method wrote `export` (a summary, a path, a list of MIVA files or None)."""
    if isinstance(export, Mapping):
        return str(export["method"])
    if export is None:
        return "base_prompted"
    if isinstance(export, (list, tuple)):
        return "miva_composed"
    path = Path(export)
    if path.is_dir():
        import json

        return json.loads((path / "method.json").read_text())["method"]
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as reader:
        metadata = reader.metadata() or {}
    if "lamp" in metadata:
        return "lamp"
    if "miva" in metadata:
        return "miva"
    raise ValueError(f"{path} is neither a MIVA, a LAMP export nor an export folder")


def load_trained(summary_or_export: Any, backbone, method: str | Mapping | None = None) -> Any:
    """What `sample_method` animates with: a `Miva` (miva, motion_lora), [(Miva, weight), (Miva, weight)]
    (miva_composed), or a Backbone (full_ft, lamp, large_data: a copy of `backbone` with the trained
    weights; base_prompted: `backbone` itself). Loaded objects pass through unchanged."""
    from miva_lightning.adapters import Miva, load_miva
    from miva_lightning.backbones import Backbone

    export = summary_or_export
    if isinstance(export, (Miva, Backbone)):
        return export
    if isinstance(export, Mapping) and "export_path" in export:
        method = method or export["method"]
        export = export["export_path"]
    spec = method_config(method if method is not None else method_of_export(export))
    name = spec.name
    if name == "base_prompted":
        return backbone
    if name in MIVA_FILE_METHODS:
        return load_miva(export, backbone.unet)[0]
    if name == "miva_composed":
        return composed_adapters(export, spec, backbone)
    if name == "full_ft":
        from miva_lightning.training.full_finetune_module import load_full_finetune

        return load_full_finetune(export, backbone)
    if name == "lamp":
        from miva_lightning.training.lamp_module import load_lamp

        return load_lamp(export, backbone)
    from miva_lightning.training.large_data_module import load_large_data

    return load_large_data(export, backbone)


def composed_adapters(export: Sequence[Any], spec: DictConfig, backbone) -> list[tuple[Any, float]]:
    from miva_lightning.adapters import Miva, load_miva

    weights = list(spec.get("weights") or [])
    pairs = []
    for index, item in enumerate(export):
        source, weight = item if isinstance(item, (list, tuple)) else (item, weights[index] if index < len(weights) else 1.0)
        pairs.append((source if isinstance(source, Miva) else load_miva(source, backbone.unet)[0], float(weight)))
    return pairs


def sample_method(
    method: str | Mapping,
    export: Any,
    backbone,
    first_frames: torch.Tensor,
    motion: str,
    num_frames: int,
    steps: int,
    seed: int,
) -> torch.Tensor:
    """Animate first frames `b c h w` (at the backbone's size) with a method's export -> `b f c h w` in [0, 1];
    frame 1 is the input. One generator seeded with `seed` draws the whole batch's noise."""
    from miva_lightning.animate import animate_batch

    spec = method_config(method)
    settings = spec.sample
    trained = load_trained(export, backbone, spec)
    adapters, sampling_backbone = [], backbone
    if spec.name in MIVA_FILE_METHODS:
        adapters = [(trained, 1.0)]
    elif spec.name == "miva_composed":
        adapters = trained
    else:
        sampling_backbone = trained
    return animate_batch(
        first_frames,
        adapters,
        sampling_backbone,
        num_frames=int(num_frames),
        steps=int(steps),
        seed=int(seed),
        noise_init=settings.get("noise_init"),
        lora_mode=str(settings.get("lora_mode", "merge")),
        cfa_mode=str(settings.get("cfa_mode", "sum")),
        prompt=caption_of(motion) if settings.get("prompt") == "caption" else None,
        guidance_scale=float(settings.get("guidance_scale", 1.0)),
    )
