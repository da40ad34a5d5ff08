"""Training one MIVA on a few-shot set and exporting it as a `.safetensors` adapter.

`train_miva(cfg)` takes a composed `train` config (configs/train.yaml); `miva-train` (cli/train.py) and the
demo call it. The run folder (`cfg.paths.output_dir`) gets checkpoints/ (adapter-only Lightning checkpoints
every N steps), previews/ (GIF/MP4 from held-out first frames), the logger's files and `<motion>.safetensors`.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from miva_lightning.inputs import check_train_config

if TYPE_CHECKING:  # torch/lightning are imported where used: bad input is reported before they load
    import torch
    from torch.utils.data import Dataset


class FirstFrames:
    """Preview inputs: `{"first_frame": c h w}` items (a map-style dataset for DataLoader)."""

    def __init__(self, frames: torch.Tensor):
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"first_frame": self.frames[index]}


def preview_first_frames(cfg: DictConfig, height: int, width: int) -> torch.Tensor:
    """Held-out first frames of the procedural world, plus any images listed in `preview.images`, at the
    training size (world frames are rendered square and centre-cropped for other aspect ratios)."""
    import torch

    from miva_lightning.animate import load_image
    from miva_lightning.data.transforms import resize_and_center_crop
    from miva_lightning.world import heldout_first_frames

    count = int(cfg.preview.num_first_frames)
    world = heldout_first_frames(count, size=max(height, width), seed=int(cfg.preview.seed)) if count else None
    frames = [resize_and_center_crop(world, height, width)] if world is not None else []
    frames += [load_image(path, (height, width))[None] for path in cfg.preview.get("images") or []]
    if not frames:
        raise ValueError("no preview inputs: set preview.num_first_frames > 0 or list preview.images")
    return torch.cat(frames)


def build_datamodule(cfg: DictConfig):
    from hydra.utils import instantiate

    if "_target_" in cfg.data:
        return instantiate(cfg.data)
    from miva_lightning.data import FewShotMotionDataModule

    return FewShotMotionDataModule(**OmegaConf.to_container(cfg.data, resolve=True))


def training_dataset(datamodule) -> Dataset:
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule.train_dataloader().dataset


def build_module(cfg: DictConfig, backbone):
    from miva_lightning.adapters import Miva, MivaConfig
    from miva_lightning.training.miva_module import MivaModule

    adapter_cfg = OmegaConf.to_container(cfg.adapter, resolve=True)
    adapter_cfg.pop("lora_mode", None)  # an inference-time choice; training attaches one MIVA at weight 1
    miva = Miva.from_unet(backbone.unet, MivaConfig.from_dict(adapter_cfg))
    return MivaModule(
        backbone,
        miva,
        optimization=OmegaConf.to_container(cfg.optimization, resolve=True),
        noise_seed=int(cfg.seed),
        timestep_distribution=cfg.loss.timestep_distribution,
        high_noise_power=float(cfg.loss.high_noise_power),
        preview_num_frames=int(cfg.preview.num_frames),
        preview_steps=int(cfg.preview.steps),
        preview_seed=int(cfg.preview.seed),
        noise_init=cfg.get("noise_init"),
    )


def base_identity_of(backbone) -> Any:
    from miva_lightning.adapters import base_identity

    return base_identity(backbone.unet, backbone.name)


def train_miva(cfg: DictConfig) -> dict[str, Any]:
    """Train and export one MIVA as `cfg` says; returns {adapter_path, train_time_s, steps, run_dir, ...}."""
    check_train_config(cfg)  # data folder, numbers, base: one line, before torch is imported or a model loads
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from miva_lightning.adapters import save_miva
    from miva_lightning.backbones import build_backbone
    from miva_lightning.callbacks.previews import MivaPreviews
    from miva_lightning.data.clip_dataset import FewShotClipDataset
    from miva_lightning.training.checkpoints import CHECKPOINT_DIR, MIVA_KEYS, resolve_resume, step_checkpoints
    from miva_lightning.training.resumable_batches import BatchPosition, StepKeyedBatches
    from miva_lightning.utils import peak_rss_mb
    from miva_lightning.utils.lightning_setup import build_trainer

    # The frozen base is in eval mode on purpose; Lightning warns about that at every fit.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    run_dir = Path(cfg.paths.output_dir)
    L.seed_everything(int(cfg.seed), workers=True)
    backbone = build_backbone(cfg.backbone)
    module = build_module(cfg, backbone)

    dataset = training_dataset(build_datamodule(cfg))
    batches = StepKeyedBatches(
        dataset,
        batch_size=int(cfg.data.batch_size),
        seed=int(cfg.seed),
        epoch_keys=isinstance(dataset, FewShotClipDataset),
    )
    previews = DataLoader(
        FirstFrames(preview_first_frames(cfg, int(cfg.data.height), int(cfg.data.width))),
        batch_size=int(cfg.preview.batch_size),
        generator=torch.Generator().manual_seed(0),  # iterating must not consume the global torch RNG
    )
    checkpoints = step_checkpoints(
        run_dir / CHECKPOINT_DIR, every_n_steps=int(cfg.checkpoint.every_n_steps), keep=int(cfg.checkpoint.keep)
    )
    preview_writer = MivaPreviews(
        dirpath=str(run_dir / "previews"), formats=list(cfg.preview.formats), fps=float(cfg.preview.fps)
    )
    trainer = build_trainer(cfg, extra_callbacks=[BatchPosition(batches), checkpoints, preview_writer])

    started = time.perf_counter()
    resume = resolve_resume(cfg.get("resume_from"), run_dir, MIVA_KEYS)  # null | auto | a run folder | a .ckpt
    trainer.fit(module, train_dataloaders=batches, val_dataloaders=previews, ckpt_path=resume)
    train_time_s = time.perf_counter() - started
    final_loss = module.recent_loss()
    if cfg.preview.at_end and trainer.global_step % int(cfg.preview.every_n_steps) != 0:
        trainer.validate(module, dataloaders=previews, verbose=False)

    adapter_path = Path(cfg.get("adapter_out") or run_dir / f"{cfg.motion}.safetensors")
    if trainer.is_global_zero:  # DDP: every process holds the same adapter; one writes it
        save_miva(adapter_path, module.miva.cpu(), base_identity_of(backbone))
    summary = {
        "adapter_path": str(adapter_path),
        "motion": cfg.motion,
        "steps": int(trainer.global_step),
        "train_time_s": round(train_time_s, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "run_dir": str(run_dir),
        "adapter_parameters": int(sum(p.numel() for p in module.adapter_parameters())),
        "final_loss": None if final_loss is None else round(final_loss, 6),  # mean of the last 50 steps' losses
        "previews": [str(p) for p in preview_writer.written],
        "global_rank": int(trainer.global_rank),
    }
    return summary

