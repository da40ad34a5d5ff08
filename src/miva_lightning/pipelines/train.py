"""Training one method of the MIVA comparison on a few-shot set and exporting it (`miva-train method=...`).

    train_method(cfg) -> summary   cfg: a composed `train` config; `cfg.method` (configs/method/) picks the
                                   method: miva (default), motion_lora, lamp, full_ft, large_data,
                                   base_prompted and miva_composed (nothing to train: a summary with 0 steps)
    sample_method(method, export, backbone, first_frames, motion, num_frames, steps, seed) -> b f c h w
    load_trained(summary_or_export, backbone, method=None)   (both in pipelines/methods.py, re-exported here)
    train_miva(cfg)                the historical name (the demo's): the same as train_method

Every trained method takes the MIVA's data path: same clips, windows, flips, seed, `StepKeyedBatches`, batch
size, step budget and optimizer recipe (`optimization`, with the method's lr), checkpoints every N steps plus
last.ckpt holding only what trains, with RNG states (`resume_from=auto` continues exactly), previews.
large_data trains on fresh world clips of its motions instead (that is the method), with the same seed,
batch size and steps. The run folder (`cfg.paths.output_dir`) gets checkpoints/, previews/, the logger's
files and the export: `<motion>.safetensors` (miva, motion_lora: MIVA files), `<motion>.lamp.safetensors`,
`<motion>.full_ft/` or `large_data/` (folders with `method.json` and safetensors weights).
`cache_latents=true` trains from latents (and caption embeddings) encoded once before training, with the codec and
text encoder parked on the CPU between previews (`data/latent_cache.py`; few-shot methods only).
Summary: method, motion, steps, train_time_s, peak_rss_mb, trainable_params, bytes_on_disk (the export: what
is stored per motion), export_path, final_loss (mean of the last 50 losses), run_dir, previews, global_rank;
MIVA files add adapter_path and adapter_parameters; large_data adds motions and clips_per_motion.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from miva_lightning.inputs import InputError, check_train_config
from miva_lightning.pipelines.methods import (
    MIVA_FILE_METHODS,
    UNTRAINED_METHODS,
    bytes_on_disk,
    caption_of,
    load_trained,
    method_config,
    sample_method,
)

__all__ = ["load_trained", "sample_method", "train_method", "train_miva"]

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


def method_of(cfg: DictConfig) -> DictConfig:
    """The configured method's settings (`cfg.method`; configs composed before methods existed: miva)."""
    return method_config(cfg.get("method"))


def optimization_of(cfg: DictConfig, method: DictConfig) -> dict[str, Any]:
    optimization = OmegaConf.to_container(cfg.optimization, resolve=True)
    optimization.update(OmegaConf.to_container(OmegaConf.create(method.get("optimization") or {}), resolve=True))
    if method.get("lr") is not None:
        optimization["lr"] = float(method.lr)
    return optimization


def build_module(cfg: DictConfig, backbone, method: DictConfig | None = None):
    """The LightningModule of `method` (default: cfg's) over `backbone`, with the shared recipe."""
    method = method if method is not None else method_of(cfg)
    common = dict(
        optimization=optimization_of(cfg, method),
        noise_seed=int(cfg.seed),
        timestep_distribution=cfg.loss.timestep_distribution,
        high_noise_power=float(cfg.loss.high_noise_power),
        preview_num_frames=int(cfg.preview.num_frames),
        preview_steps=int(cfg.preview.steps),
        preview_seed=int(cfg.preview.seed),
        noise_init=cfg.get("noise_init"),
    )
    if method.module == "miva":
        from miva_lightning.adapters import Miva, MivaConfig
        from miva_lightning.training.miva_module import MivaModule

        adapter_cfg = OmegaConf.to_container(OmegaConf.merge(cfg.adapter, method.get("adapter") or {}), resolve=True)
        adapter_cfg.pop("lora_mode", None)  # an inference-time choice; training attaches one MIVA at weight 1
        miva = Miva.from_unet(backbone.unet, MivaConfig.from_dict(adapter_cfg))
        return MivaModule(backbone, miva, **common)
    prompts = dict(
        prompt=str(method.prompt),
        preview_prompt=caption_of(str(cfg.motion)) if method.sample.prompt == "caption" else None,
        preview_guidance=float(method.sample.guidance_scale),
    )
    if method.module == "full_ft":
        from miva_lightning.training.full_finetune_module import FullFinetuneModule

        return FullFinetuneModule(backbone, **common, **prompts)
    if method.module == "lamp":
        from miva_lightning.training.lamp_module import LampModule

        return LampModule(backbone, **common, **prompts)
    raise ValueError(f"method {method.name!r} (module {method.module!r}) is not trained on the few-shot clips")


def base_identity_of(backbone) -> Any:
    from miva_lightning.adapters import base_identity

    return base_identity(backbone.unet, backbone.name)


def export_path_of(cfg: DictConfig, method: DictConfig, run_dir: Path) -> Path:
    if method.name in MIVA_FILE_METHODS:
        return Path(cfg.get("adapter_out") or run_dir / f"{cfg.motion}.safetensors")
    if method.name == "lamp":
        return run_dir / f"{cfg.motion}.lamp.safetensors"
    return run_dir / (f"{cfg.motion}.full_ft" if method.name == "full_ft" else "large_data")


def export(module, method: DictConfig, path: Path, base: dict[str, Any], motion: str) -> Path:
    """Write what must be stored of a trained module (see the module docstring)."""
    if method.name in MIVA_FILE_METHODS:
        from miva_lightning.adapters import save_miva

        return save_miva(path, module.miva.cpu(), base)
    if method.name == "lamp":
        from miva_lightning.training.lamp_module import save_lamp

        return save_lamp(path, module.lamp_tensors(), base, motion)
    from miva_lightning.training.full_finetune_module import save_full_finetune

    return save_full_finetune(path, module.unet, base, motion)


def loggable_config(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain values; unresolved where an interpolation needs a running Hydra app."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - e.g. ${hydra:runtime.output_dir} in a config composed by a test
        return OmegaConf.to_container(cfg, resolve=False)


def fit(cfg: DictConfig, module, batches, run_dir: Path, callbacks: list, previews=None):
    """trainer.fit with step checkpoints, the batch position and `resume_from`; returns (trainer, seconds)."""
    from miva_lightning.training.checkpoints import CHECKPOINT_DIR, MIVA_KEYS, resolve_resume, step_checkpoints
    from miva_lightning.training.resumable_batches import BatchPosition
    from miva_lightning.utils.lightning_setup import build_trainer

    checkpoints = step_checkpoints(
        run_dir / CHECKPOINT_DIR, every_n_steps=int(cfg.checkpoint.every_n_steps), keep=int(cfg.checkpoint.keep)
    )
    trainer = build_trainer(cfg, extra_callbacks=[BatchPosition(batches), checkpoints, *callbacks])
    for logger in trainer.loggers:  # the run's whole config beside its metrics (W&B: the run's config, sweeps too)
        logger.log_hyperparams(loggable_config(cfg))
    started = time.perf_counter()
    resume = resolve_resume(cfg.get("resume_from"), run_dir, MIVA_KEYS)  # null | auto | a run folder | a .ckpt
    trainer.fit(module, train_dataloaders=batches, val_dataloaders=previews, ckpt_path=resume)
    return trainer, time.perf_counter() - started


def summary_of(cfg, method, trainer, module, seconds, export_path, run_dir, trainable) -> dict[str, Any]:
    from miva_lightning.utils import peak_rss_mb

    final_loss = module.recent_loss()
    return {
        "method": str(method.name),
        "motion": cfg.motion,
        "steps": int(trainer.global_step),
        "train_time_s": round(seconds, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "trainable_params": int(sum(p.numel() for p in trainable)),
        "bytes_on_disk": bytes_on_disk(export_path) if export_path.exists() else None,
        "export_path": str(export_path),
        "final_loss": None if final_loss is None else round(final_loss, 6),  # mean of the last 50 steps' losses
        "run_dir": str(run_dir),
        "global_rank": int(trainer.global_rank),
    }


def train_method(cfg: DictConfig) -> dict[str, Any]:
    """Train and export the configured method (`cfg.method`, default miva); returns its summary."""
    check_train_config(cfg)  # data folder, numbers, base: one line, before torch is imported or a model loads
    method = method_of(cfg)
    if method.name in UNTRAINED_METHODS:
        return untrained_summary(cfg, method)
    import lightning as L
    import torch

    # The frozen base is in eval mode on purpose; Lightning warns about that at every fit.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    L.seed_everything(int(cfg.seed), workers=True)
    if method.module == "large_data":
        return train_large_data(cfg, method)
    return train_fewshot(cfg, method)


train_miva = train_method  # miva-train's and the demo's historical name


def train_fewshot(cfg: DictConfig, method: DictConfig) -> dict[str, Any]:
    import torch
    from torch.utils.data import DataLoader

    from miva_lightning.backbones import build_backbone
    from miva_lightning.callbacks.previews import MivaPreviews
    from miva_lightning.data.clip_dataset import FewShotClipDataset
    from miva_lightning.data.latent_cache import LatentClipDataset
    from miva_lightning.training.resumable_batches import StepKeyedBatches

    run_dir = Path(cfg.paths.output_dir)
    backbone = build_backbone(cfg.backbone)
    base = base_identity_of(backbone)  # of the base as loaded: full_ft and lamp change the UNet in place
    module = build_module(cfg, backbone, method)

    dataset = training_dataset(build_datamodule(cfg))
    if cfg.get("cache_latents"):
        dataset = cached_latents(dataset, backbone, module)
    batches = StepKeyedBatches(
        dataset,
        batch_size=int(cfg.data.batch_size),
        seed=int(cfg.seed),
        epoch_keys=isinstance(dataset, (FewShotClipDataset, LatentClipDataset)),
    )
    previews = DataLoader(
        FirstFrames(preview_first_frames(cfg, int(cfg.data.height), int(cfg.data.width))),
        batch_size=int(cfg.preview.batch_size),
        generator=torch.Generator().manual_seed(0),  # iterating must not consume the global torch RNG
    )
    preview_writer = MivaPreviews(
        dirpath=str(run_dir / "previews"), formats=list(cfg.preview.formats), fps=float(cfg.preview.fps)
    )
    trainer, seconds = fit(cfg, module, batches, run_dir, [preview_writer], previews)
    trainable = module.trainable_parameters()
    if cfg.preview.at_end and trainer.global_step % int(cfg.preview.every_n_steps) != 0:
        trainer.validate(module, dataloaders=previews, verbose=False)

    export_path = export_path_of(cfg, method, run_dir)
    if trainer.is_global_zero:  # DDP: every process holds the same weights; one writes them
        export(module, method, export_path, base, str(cfg.motion))
    summary = summary_of(cfg, method, trainer, module, seconds, export_path, run_dir, trainable)
    summary["previews"] = [str(p) for p in preview_writer.written]
    if method.name in MIVA_FILE_METHODS:
        summary.update(adapter_path=str(export_path), adapter_parameters=summary["trainable_params"])
    return summary


def cached_latents(dataset, backbone, module):
    """`cache_latents=true`: the clips' latents (and caption embeddings, when the method trains on captions),
    encoded once; the module then parks the codec and text encoder on the CPU (data/latent_cache.py)."""
    from miva_lightning.backbones import encode_prompts
    from miva_lightning.data.clip_dataset import FewShotClipDataset
    from miva_lightning.data.latent_cache import LatentClipDataset

    if not isinstance(dataset, FewShotClipDataset):
        raise InputError(f"cache_latents=true needs few-shot clips (FewShotClipDataset), not {type(dataset).__name__}")
    captions = (lambda texts: encode_prompts(backbone, texts)) if module.prompt_mode == "caption" else None
    latents = LatentClipDataset(dataset, backbone.codec, prompt_encoder=captions)
    module.park_encoders()
    return latents


def train_large_data(cfg: DictConfig, method: DictConfig) -> dict[str, Any]:
    from miva_lightning.backbones import build_backbone
    from miva_lightning.training.large_data_module import ContinuedPretrainModule, large_data_clips, save_large_data
    from miva_lightning.training.resumable_batches import StepKeyedBatches

    if cfg.data.get("source") != "motion_world":
        raise InputError("method=large_data trains on fresh world clips: use data=motion_world_fewshot (world motions)")
    if cfg.get("cache_latents"):
        raise InputError("cache_latents=true caches few-shot clips; method=large_data sees fresh clips every step")
    motions = [str(m) for m in (method.get("motions") or [cfg.motion])]
    batch_size = int(method.get("batch_size") or cfg.data.batch_size)
    steps = int(cfg.trainer.max_steps)
    num_clips = steps * batch_size if steps > 0 else 10**6  # every clip fresh
    if num_clips / len(motions) < float(method.min_clips_per_motion):
        warnings.warn(
            f"large_data sees {num_clips / len(motions):.0f} clips per motion (< {method.min_clips_per_motion}): "
            "raise trainer.max_steps or method.batch_size", stacklevel=2
        )
    if int(cfg.data.height) != int(cfg.data.width):
        raise InputError("method=large_data renders square world clips: set data.height == data.width")
    run_dir = Path(cfg.paths.output_dir)
    backbone = build_backbone(cfg.backbone)
    base = base_identity_of(backbone)
    recipe = {
        **OmegaConf.to_container(method.recipe, resolve=True),
        "lr": float(optimization_of(cfg, method)["lr"]),
        "timestep_distribution": cfg.loss.timestep_distribution,
        "high_noise_power": float(cfg.loss.high_noise_power),
    }
    module = ContinuedPretrainModule(backbone, recipe)
    clips = large_data_clips(motions, num_clips, int(cfg.data.height), int(cfg.data.num_frames), int(cfg.seed))
    batches = StepKeyedBatches(clips, batch_size=batch_size, seed=int(cfg.seed))
    trainer, seconds = fit(cfg, module, batches, run_dir, [])
    trainable = module.trainable_parameters()
    export_path = export_path_of(cfg, method, run_dir)
    if trainer.is_global_zero:
        module.unet.to("cpu")
        module.text_encoder.to("cpu")
        save_large_data(export_path, module.backbone, base, motions)
    summary = summary_of(cfg, method, trainer, module, seconds, export_path, run_dir, trainable)
    clips_seen = int(trainer.global_step) * batch_size
    summary.update(motion=cfg.motion if len(motions) == 1 else "+".join(motions), motions=motions,
                   clips_per_motion=round(clips_seen / len(motions), 1), previews=[])  # fmt: skip
    return summary


def untrained_summary(cfg: DictConfig, method: DictConfig) -> dict[str, Any]:
    """base_prompted and miva_composed train nothing: their cells sample the base / two miva exports."""
    from miva_lightning.utils import peak_rss_mb

    return {
        "method": str(method.name), "motion": cfg.motion, "steps": 0, "train_time_s": 0.0,
        "peak_rss_mb": round(peak_rss_mb(), 1), "trainable_params": 0, "bytes_on_disk": 0, "export_path": None,
        "final_loss": None, "run_dir": str(cfg.paths.output_dir), "previews": [], "global_rank": 0,
    }  # fmt: skip
