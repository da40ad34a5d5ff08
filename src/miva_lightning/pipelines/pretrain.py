"""Pretraining (or reusing) the tiny base, measuring it and writing results/pretrain.json (`miva-pretrain`).

The base is saved atomically to artifacts/base/<name>-<config_hash>/ and indexed by
artifacts/base/<name>.json (what `backbone.pretrained=latest` loads). When that folder already exists
for this config hash, training is skipped and the stored measurements are reported again. `run(cfg)` takes
a composed `pretrain` config and returns the results record; `summary(cfg, record)` is its printed report.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from miva_lightning.inputs import check_pretrain_config

# torch, lightning and the model code are imported where used: bad input is reported before they load.
PATH_KEYS = ("pretrained", "artifacts_dir")


def __getattr__(name: str) -> Any:  # `pretrain.BASE_MOTIONS`, imported on first use
    if name == "BASE_MOTIONS":
        from miva_lightning.world import BASE_MOTIONS

        return BASE_MOTIONS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def identity(cfg: DictConfig) -> dict[str, Any]:
    """What determines the weights: backbone (minus paths), data, recipe, seed, steps, precision."""
    backbone = {k: v for k, v in OmegaConf.to_container(cfg.backbone, resolve=True).items() if k not in PATH_KEYS}
    return {
        "backbone": backbone,
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "recipe": OmegaConf.to_container(cfg.recipe, resolve=True),
        "seed": cfg.seed,
        "max_steps": cfg.trainer.max_steps,
        "precision": str(cfg.trainer.precision),
    }


def base_folder(cfg: DictConfig) -> tuple[Path, str]:
    from miva_lightning.utils.hashing import config_hash

    digest = config_hash(identity(cfg))
    return Path(cfg.paths.artifacts) / "base" / f"{cfg.backbone.name}-{digest}", digest


def results_record(recipe: dict) -> dict:
    final = recipe["final_eval"]
    return {
        "per_motion_accuracy": final["per_motion_accuracy"],
        "per_motion_accuracy_ci": final.get("per_motion_accuracy_ci"),
        "per_motion_fidelity": final.get("per_motion_fidelity"),
        "mean_accuracy": final["mean_accuracy"],
        "n_per_motion": final["n_per_motion"],
        "wall_time_s": recipe["wall_time_s"],
        "train_minutes": recipe["train_minutes"],
        "steps": recipe["steps"],
        "peak_rss_mb": recipe["peak_rss_mb"],
        "config_hash": recipe["config_hash"],
        "learning_curve": recipe["learning_curve"],
        "final_eval_how": final["how"],
        "confusion": final["confusion"],
        "base_folder": recipe["base_folder"],
    }


def parent_base(cfg: DictConfig):
    """`recipe.init_from`: a saved base (folder name under artifacts/base, or a path) that this run continues
    (a second pretraining stage with another data mix or recipe), or None to start from random weights.
    Returns (backbone, its recipe.json) after checking that its architecture is this config's."""
    from miva_lightning.backbones.tiny import load_tiny_backbone, read_recipe

    name = cfg.recipe.get("init_from")
    if not name:
        return None, None
    folder = Path(name) if Path(name).is_absolute() else Path(cfg.paths.artifacts) / "base" / str(name)
    if not (folder / "backbone.yaml").exists():
        raise FileNotFoundError(f"recipe.init_from={name!r}: no saved base at {folder}; pretrain that stage first "
                                "or set recipe.init_from to a folder under artifacts/base")
    backbone = load_tiny_backbone(folder)
    wanted = {k: v for k, v in OmegaConf.to_container(cfg.backbone, resolve=True).items() if k not in PATH_KEYS}
    differing = sorted(k for k in wanted if k in backbone.config and backbone.config[k] != wanted[k])
    if differing:
        raise ValueError(f"recipe.init_from={name!r} was trained with other backbone settings ({differing}); "
                         f"continue it with the backbone it was built with ({backbone.config.get('name')})")
    return backbone, read_recipe(folder)


def train_base(cfg: DictConfig, folder: Path, digest: str) -> dict:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from miva_lightning.backbones.tiny import save_tiny_backbone
    from miva_lightning.training.base_eval import evaluate_base
    from miva_lightning.training.pretrain_module import PretrainModule, TrainingBudget
    from miva_lightning.utils import peak_rss_mb
    from miva_lightning.utils.lightning_setup import build_trainer
    from miva_lightning.world import BASE_MOTIONS, MotionWorldStream

    start = time.time()
    parent, parent_recipe = parent_base(cfg)
    L.seed_everything(cfg.seed, workers=True)
    module = PretrainModule(OmegaConf.to_container(cfg.backbone, resolve=True), OmegaConf.to_container(cfg.recipe),
                            backbone=parent)
    evals_dir = Path(cfg.paths.output_dir) / "checkpoints"

    def evaluate_mark(mod: PretrainModule, minutes: float, steps: int) -> dict:
        result = evaluate_base(
            mod.backbone, cfg.eval.n_per_motion, cfg.eval.num_inference_steps, cfg.eval.guidance_scale, cfg.eval.seed,
            negative_prompt=cfg.eval.negative_prompt,
        )
        save_tiny_backbone(mod.backbone, evals_dir / f"step{steps:06d}", {"config_hash": digest, "steps": steps})
        point = {"minutes": round(minutes, 2), "steps": steps, "mean_accuracy": result["mean_accuracy"],
                 "per_motion_accuracy": result["per_motion_accuracy"], "n_per_motion": result["n_per_motion"],
                 "eval_s": result["eval_s"]}
        print(f"[pretrain] {minutes:.1f} min, step {steps}: mean accuracy {result['mean_accuracy']:.1%} "
              f"{result['per_motion_accuracy']}", flush=True)
        return point

    # web-like pretraining (base v2): in-prior motions join the stream under one generic caption
    in_prior = tuple(cfg.data.get("in_prior_motions") or ())
    budget = TrainingBudget(cfg.recipe.budget_minutes, list(cfg.eval.at_minutes), evaluate_mark)
    loader = DataLoader(
        MotionWorldStream(BASE_MOTIONS + in_prior, size=cfg.backbone.image_size, num_frames=cfg.backbone.num_frames,
                          seed=cfg.data.stream_seed, captions={m: cfg.data.in_prior_caption for m in in_prior},
                          weights=OmegaConf.to_container(cfg.data.motion_weights) if cfg.data.get("motion_weights") else None),
        batch_size=cfg.data.batch_size,
        num_workers=cfg.data.num_workers,
    )
    trainer = build_trainer(cfg, extra_callbacks=[budget])
    trainer.fit(module, train_dataloaders=loader)

    final = evaluate_base(module.backbone, cfg.eval.final_n_per_motion, cfg.eval.num_inference_steps,
                          cfg.eval.guidance_scale, cfg.eval.seed, negative_prompt=cfg.eval.negative_prompt)
    final_point = {"minutes": round(budget.minutes, 2), "steps": trainer.global_step,
                   "mean_accuracy": final["mean_accuracy"], "per_motion_accuracy": final["per_motion_accuracy"],
                   "n_per_motion": final["n_per_motion"], "eval_s": final["eval_s"]}
    recipe = {
        "config_hash": digest,
        "identity": identity(cfg),
        "base_folder": str(folder),
        "steps": trainer.global_step,
        "train_minutes": round(budget.minutes, 2),
        "wall_time_s": round(time.time() - start, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "num_threads": torch.get_num_threads(),
        "device": str(module.device),
        "learning_curve": budget.learning_curve + [final_point],
        "final_eval": final,
    }
    if parent_recipe is not None:  # a second stage: what it continued, and the total cost of both
        recipe["parent"] = {k: parent_recipe.get(k) for k in ("config_hash", "base_folder", "steps", "train_minutes", "wall_time_s")}
        recipe["total_steps"] = recipe["steps"] + int(parent_recipe.get("total_steps") or parent_recipe.get("steps") or 0)
    module.backbone.unet.to("cpu")
    module.backbone.text_encoder.to("cpu")
    save_tiny_backbone(module.backbone, folder, recipe)
    return recipe


def run(cfg: DictConfig) -> dict:
    check_pretrain_config(cfg)  # obviously wrong numbers: one line, before torch and the model load
    import torch

    from miva_lightning.backbones.factory import base_index_path
    from miva_lightning.backbones.tiny import read_recipe, verify_checksums
    from miva_lightning.utils import atomic_write_json

    torch.set_num_threads(int(cfg.num_threads))
    folder, digest = base_folder(cfg)
    if folder.exists() and not cfg.force:
        verify_checksums(folder)
        recipe = read_recipe(folder)
        print(f"[pretrain] reusing {folder} (config hash {digest}); pass force=true to retrain")
    else:
        recipe = train_base(cfg, folder, digest)
    atomic_write_json(base_index_path(cfg.paths.artifacts, cfg.backbone.name),
                      {"folder": folder.name, "config_hash": digest})
    record = results_record(recipe)
    atomic_write_json(Path(cfg.paths.results) / "pretrain.json", record)
    return record


def summary(cfg: DictConfig, record: dict) -> str:
    """The per-motion table and the base's folder, steps, time and memory (what `miva-pretrain` prints)."""
    from miva_lightning.training.base_eval import motion_table

    folder, _ = base_folder(cfg)
    return (
        motion_table(record["per_motion_accuracy"], record["n_per_motion"], record.get("per_motion_fidelity"))
        + f"\n[pretrain] base: {folder}  steps {record['steps']}  train {record['train_minutes']} min  "
        f"wall {record['wall_time_s']} s  peak RSS {record['peak_rss_mb']} MiB"
    )

