"""The one dispatch point between the benchmark and the few-shot methods (`pipelines.train`).

A cell needs three things of a method: train it on the motion's few-shot clips (`train`: `train_method`), animate
held-out first frames with the result (`sample`: `sample_method`), and animate them prompted with each
captioned motion's caption, to see what the adaptation left of the base (`retention_backbone`).

- miva_composed trains nothing of its own: it composes the motion's MIVA with the MIVA of a partner motion
  (`composed_partner` in configs/table2.yaml). Both come from the run folders the `miva` cells of the same seed
  use (same config, same hash): finished there, they are resumed at their last step and only re-exported;
  missing, they are trained here, so no cell depends on the order the grid runs in.
- Retention: adapter methods (and the prompted base) leave the base untouched, and an adapter at weight 0 must
  give the base exactly. With MIVA's default `base_branch: none`, a MIVA ATTACHED at weight 0 still replaces
  the text cross-attention (measured: outputs differ by up to 0.2), so "weight 0" means here what a user does:
  the adapter is not attached, and retention is measured on the base (tests/test_table2.py checks this path
  is the base bit for bit). Methods that change the base's weights (full_ft, large_data, lamp) are measured on
  the adapted model, prompted with the caption at the benchmark's guidance, whatever prompt they sample with.
"""

from __future__ import annotations

import contextlib
import fcntl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from omegaconf import DictConfig, OmegaConf

from miva_lightning.benchmark.identity import method_name, work_dir
from miva_lightning.config import compose
from miva_lightning.pipelines.methods import BACKBONE_METHODS

if TYPE_CHECKING:
    import torch



@dataclass
class Trained:
    """What a cell keeps of training (zeros and None for a method that trains nothing)."""

    export: Any = None  # a path, or for miva_composed the two MIVA paths
    steps: int = 0
    train_time_s: float = 0.0
    trainable_params: int = 0
    bytes_on_disk: int = 0
    final_loss: float | None = None
    parts: list[dict[str, Any]] = field(default_factory=list)  # miva_composed: the two MIVAs' summaries


def training_config(cfg: DictConfig) -> DictConfig:
    """The `miva-train` config of this cell: its method, motion, seed and budget, the cell's backbone node
    verbatim (training and sampling must use the same base), a run folder keyed by the cell's config hash and
    `resume_from=auto`, so a killed cell continues from its newest checkpoint instead of starting over."""
    budget, motion, run_dir = cfg.budget, str(cfg.motion), work_dir(cfg)
    overrides = [
        f"method={method_name(cfg)}",
        f"motion={motion}",
        f"seed={int(cfg.seed)}",
        f"num_threads={cfg.num_threads if cfg.get('num_threads') else 'null'}",
        f"trainer={budget.trainer}",
        "logger=csv",
        f"paths.root={cfg.paths.root}",
        f"paths.output_dir={run_dir}",
        f"adapter_out={run_dir / (motion + '.safetensors')}",
        "resume_from=auto",
        *data_overrides(cfg),
        f"trainer.max_steps={budget.steps}",
        "trainer.enable_progress_bar=false",
        f"optimization.lr={budget.lr}",
        f"optimization.warmup_steps={budget.warmup_steps}",
        f"checkpoint.every_n_steps={budget.checkpoint_every_n_steps}",
        "checkpoint.keep=1",
        "preview.num_first_frames=1",
        f"preview.every_n_steps={int(budget.steps) + 1}",  # no previews: the cell samples its own videos
        "preview.at_end=false",
        *list(budget.train_overrides),
    ]
    train_cfg = compose("train", overrides)
    train_cfg.backbone = OmegaConf.create(OmegaConf.to_container(cfg.backbone, resolve=True))
    train_cfg.method = OmegaConf.create(OmegaConf.to_container(cfg.method, resolve=True))
    return train_cfg


def data_overrides(cfg: DictConfig) -> list[str]:
    """The few-shot clips of the cell: rendered world clips, or a LAMP-layout folder (`evaluation.kind: folder`)."""
    from miva_lightning.benchmark.folder_evaluation import kind_of, training_data_overrides
    from miva_lightning.world.motions import FLIP_CHANGES_CLASS

    budget, motion = cfg.budget, str(cfg.motion)
    source = training_data_overrides(cfg) if kind_of(cfg) == "folder" else [
        f"data.world_clips_per_motion={budget.num_clips}",
        f"data.world_num_frames={budget.world_num_frames}",
    ]  # fmt: skip
    return [
        *source,
        f"data.max_clips={budget.num_clips}",
        f"data.batch_size={budget.batch_size}",
        f"data.flip_p={0.0 if motion in FLIP_CHANGES_CLASS else budget.flip_p}",
    ]


@contextlib.contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    """One process at a time per run folder: with a parallel launcher (joblib, submitit) a miva_composed cell and
    the miva cell whose adapter it reuses may start the same training at once; the second waits, then resumes
    the finished run (no work) instead of training beside it in the same folder."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.with_name(run_dir.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def train_in_cell_folder(cfg: DictConfig) -> dict[str, Any]:
    from miva_lightning.pipelines.train import train_method

    with exclusive(work_dir(cfg)):
        return train_method(training_config(cfg))


def _trained(summary: dict[str, Any]) -> Trained:
    return Trained(
        export=summary.get("export_path"),
        steps=int(summary["steps"]),
        train_time_s=float(summary["train_time_s"]),
        trainable_params=int(summary["trainable_params"]),
        bytes_on_disk=int(summary["bytes_on_disk"] or 0),
        final_loss=summary.get("final_loss"),
    )


def miva_cell(cfg: DictConfig, motion: str) -> DictConfig:
    """The config of the `miva` cell of `motion` with this cell's seed and settings."""
    from miva_lightning.pipelines.methods import method_config

    sibling = OmegaConf.merge(cfg, {"motion": motion})
    sibling.method = method_config("miva")
    return sibling


def train(cfg: DictConfig) -> Trained:
    """Train the cell's method (nothing for base_prompted; two MIVAs for miva_composed)."""
    method = method_name(cfg)
    if method == "base_prompted":
        return Trained()
    if method == "miva_composed":
        motions = [str(cfg.motion), str(cfg.composed_partner[str(cfg.motion)])]
        parts = [train_in_cell_folder(miva_cell(cfg, m)) for m in motions]
        return Trained(
            export=[p["export_path"] for p in parts],
            steps=max(int(p["steps"]) for p in parts),
            train_time_s=0.0,  # trains nothing of its own: the MIVAs' time belongs to the miva cells
            trainable_params=sum(int(p["trainable_params"]) for p in parts),
            bytes_on_disk=sum(int(p["bytes_on_disk"] or 0) for p in parts),
            parts=[{k: p[k] for k in ("motion", "export_path", "steps", "trainable_params")} for p in parts],
        )
    return _trained(train_in_cell_folder(cfg))


def sample(cfg: DictConfig, trained: Trained, backbone, frames: torch.Tensor, motion: str) -> torch.Tensor:
    """Held-out first frames `b c h w` -> videos `b f c h w` in [0, 1], animated with the trained method."""
    from miva_lightning.pipelines.train import sample_method

    s = cfg.sample
    return sample_method(cfg.method, trained.export, backbone, frames, motion, int(s.num_frames), int(s.steps), int(s.seed))


def retention_backbone(cfg: DictConfig, trained: Trained, backbone):
    """The model retention is measured on: the base itself for adapter methods (adapter off), the adapted copy
    of the base for methods that change its weights (see the module docstring)."""
    if method_name(cfg) not in BACKBONE_METHODS:
        return backbone
    from miva_lightning.pipelines.train import load_trained

    return load_trained(trained.export, backbone, cfg.method)


def sample_prompted(cfg: DictConfig, backbone, frames: torch.Tensor, motion: str) -> torch.Tensor:
    """`backbone` prompted with `motion`'s caption at the benchmark's guidance (no adapter attached)."""
    from miva_lightning.animate import animate_batch
    from miva_lightning.world import caption_for

    s = cfg.sample
    return animate_batch(
        frames, [], backbone, num_frames=int(s.num_frames), steps=int(s.steps), seed=int(s.seed),
        prompt=caption_for(motion), guidance_scale=float(s.guidance_scale),
    )  # fmt: skip
