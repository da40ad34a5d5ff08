"""What names a cell and decides its numbers: (label, motion, seed), the config hash, where its files go.

A cell's label is its row: the method's name in Table 2, the ablation's or sweep run's name in the grids built
on the same engine (`label` in the config; null = the method's name). The label names files, never numbers.

The config hash covers everything that changes a cell's numbers (method settings, motion, seed, budget,
evaluation and sampling settings, backbone architecture and the base weights it loads) and nothing that does
not (labels, output paths, thread counts). A finished cell with the same hash is reused.
A training run folder is keyed by the TRAINING hash: the same minus what only sampling and evaluation read
(`sample`, `method.sample`, `n_eval`, `n_retention`, `eval_seed`), so cells that differ only in how they sample
(the inference ablations, DDIM steps) share one trained adapter, and a changed training config never resumes
from another config's checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def method_name(cfg: DictConfig) -> str:
    """`cfg.method` is a configs/method node (with `name`), or a bare name."""
    method = cfg.method
    return str(method if isinstance(method, str) else method.name)


def cell_label(cfg: DictConfig) -> str:
    """The cell's row name: `cfg.label`, else the method's name."""
    label = cfg.get("label")
    return str(label) if label else method_name(cfg)


def cell_relpath(label: str, motion: str, seed: int) -> Path:
    return Path(label) / motion / f"seed{seed}"


def cell_path(cfg: DictConfig) -> Path:
    """`<out_dir>/cells/<label>/<motion>/seed<seed>.json`"""
    return Path(cfg.out_dir) / "cells" / cell_relpath(cell_label(cfg), str(cfg.motion), int(cfg.seed)).with_suffix(".json")


def sample_path(cfg: DictConfig) -> Path:
    """`<out_dir>/samples/<label>/<motion>/seed<seed>.gif`: the first held-out video (the report's GIF grid)."""
    return Path(cfg.out_dir) / "samples" / cell_relpath(cell_label(cfg), str(cfg.motion), int(cfg.seed)).with_suffix(".gif")


def base_of(backbone_cfg: dict[str, Any]) -> dict[str, Any]:
    """The base weights a cell runs on: the resolved folder and the hash of its checksum list (a retrained base
    changes every cell's hash), or "random-init" (seeded by the cell seed, as training seeds it); for a real
    backbone, the two locations it loads (the weights themselves are too large to hash per cell)."""
    from miva_lightning.backbones.factory import resolve_pretrained
    from miva_lightning.utils import file_sha256

    if backbone_cfg.get("kind") == "animatediff":
        return {k: str(backbone_cfg.get(k)) for k in ("pretrained_model_path", "motion_adapter_path", "revision")}

    try:
        folder = resolve_pretrained(backbone_cfg)
    except FileNotFoundError as missing:
        return {"folder": f"missing ({missing})"}
    if folder is None:
        return {"folder": "random-init"}
    sums = Path(folder) / "SHA256SUMS"
    return {"folder": Path(folder).name, "sha256sums": file_sha256(sums) if sums.is_file() else None}


def _plain(cfg: DictConfig, key: str) -> Any:
    value = cfg[key]
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def cell_identity(cfg: DictConfig) -> dict[str, Any]:
    """Everything that decides a cell's numbers; `config_hash(cell_identity(cfg))` is the cell's hash."""
    backbone = _plain(cfg, "backbone")
    base = base_of(backbone)
    identity = {
        "method": _plain(cfg, "method"),
        "motion": str(cfg.motion),
        "seed": int(cfg.seed),
        "budget": _plain(cfg, "budget"),
        "n_eval": int(cfg.n_eval),
        "n_retention": int(cfg.n_retention),
        "eval_seed": int(cfg.eval_seed),
        "sample": _plain(cfg, "sample"),
        "backbone": {k: v for k, v in backbone.items() if k not in ("pretrained", "artifacts_dir")},
        "base": base,
    }
    evaluation = cfg.get("evaluation")
    if evaluation is not None and evaluation.get("kind", "world") != "world":  # world cells keep their hashes
        identity["evaluation"] = _plain(cfg, "evaluation")
    if method_name(cfg) == "miva_composed":
        identity["composed_partner"] = str(cfg.composed_partner[str(cfg.motion)])
    return identity


EVALUATION_ONLY = ("n_eval", "n_retention", "eval_seed", "sample")


def training_identity(cfg: DictConfig) -> dict[str, Any]:
    """What decides a cell's TRAINING: its identity without the sampling and evaluation settings."""
    identity = {k: v for k, v in cell_identity(cfg).items() if k not in EVALUATION_ONLY and k != "composed_partner"}
    if isinstance(identity["method"], dict):
        identity["method"] = {k: v for k, v in identity["method"].items() if k != "sample"}
    return identity


def config_hash_of(cfg: DictConfig) -> str:
    from miva_lightning.utils import config_hash

    return config_hash(cell_identity(cfg))


def work_dir(cfg: DictConfig) -> Path:
    """The training run folder of a cell: `<work_root>/<method>/<motion>/seed<seed>-<training hash>`."""
    from miva_lightning.utils import config_hash

    return Path(cfg.work_root) / method_name(cfg) / str(cfg.motion) / (
        f"seed{int(cfg.seed)}-{config_hash(training_identity(cfg))}"
    )
