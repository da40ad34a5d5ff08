"""`build_backbone(cfg)`: one entry point for every backbone kind.

cfg.kind: `tiny` (embedded, built from config or loaded from a saved base), `animatediff` (local
SD1.5 + AnimateDiff folders) or `wan` (a local diffusers-layout Wan2.1 T2V folder, `backbones/wan.py`).
For `tiny`, cfg.pretrained selects the weights:
  null      -> random init (what pretraining starts from)
  latest    -> the base named in artifacts/base/<name>.json (written by `miva-pretrain`)
  <folder>  -> that saved base folder
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from miva_lightning.backbones.base import Backbone
from miva_lightning.config import REPO_ROOT


def base_index_path(artifacts_dir: str | Path, name: str) -> Path:
    return Path(artifacts_dir) / "base" / f"{name}.json"


def resolve_pretrained(cfg: Mapping[str, Any]) -> Path | None:
    choice = cfg.get("pretrained")
    if choice in (None, "", "none"):
        return None
    if choice != "latest":
        return Path(choice)
    artifacts = Path(cfg.get("artifacts_dir") or REPO_ROOT / "artifacts")
    index = base_index_path(artifacts, cfg.get("name", "tiny"))
    if not index.exists():
        raise FileNotFoundError(
            f"backbone.pretrained=latest but {index} does not exist: run `make pretrain` first, "
            "or set backbone.pretrained=null (random init) or to a saved base folder"
        )
    return index.parent / json.loads(index.read_text())["folder"]


def build_backbone(cfg: Mapping[str, Any] | DictConfig) -> Backbone:
    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    kind = plain.get("kind", "tiny")
    if kind == "tiny":
        from miva_lightning.backbones.tiny import build_tiny_backbone, load_tiny_backbone

        folder = resolve_pretrained(plain)
        return build_tiny_backbone(plain) if folder is None else load_tiny_backbone(folder)
    if kind == "animatediff":
        from miva_lightning.backbones.animatediff import load_animatediff

        return load_animatediff(cfg)
    if kind == "wan":
        from miva_lightning.backbones.wan import load_wan21

        return load_wan21(cfg)
    raise ValueError(f"unknown backbone kind {kind!r}: use 'tiny', 'animatediff' or 'wan'")
