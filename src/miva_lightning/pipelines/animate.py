"""Animating images with MIVAs (`miva-animate`): `run_animate(cfg, extra_adapters)` checks the inputs,
builds the base, samples and writes `<out>.mp4` / `<out>.gif` atomically for one image, or
`<out>/<image stem>.{mp4,gif}` for every PNG/JPG of a folder (sorted by name, `batch_size` images per
sampling loop); `pop_adapter_flags` takes the repeatable `--adapter PATH[:WEIGHT]` flags out of argv
(weights parsed by `inputs.parse_adapter_spec`). The sampling defaults come from the backbone's recipe
(configs/inference/, docs/METHOD.md "Inference defaults").
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from miva_lightning.inputs import InputError, check_animate_config, parse_adapter_spec
from miva_lightning.inputs.files import image_folder_files

__all__ = ["parse_adapter_spec", "pop_adapter_flags", "run_animate"]


def pop_adapter_flags(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split `--adapter X` / `--adapter=X` flags out of argv; returns (remaining argv, adapter specs)."""
    remaining, specs, index = [], [], 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--adapter":
            if index + 1 >= len(argv):
                raise InputError("--adapter needs a value: --adapter path.safetensors:WEIGHT")
            specs.append(argv[index + 1])
            index += 2
            continue
        if arg.startswith("--adapter="):
            specs.append(arg.split("=", 1)[1])
        else:
            remaining.append(arg)
        index += 1
    return remaining, specs


def run_animate(cfg: DictConfig, extra_adapters: list[str] = ()) -> list[Path]:
    adapters = check_animate_config(cfg, extra_adapters)  # before torch is imported or a model is built
    image = Path(str(cfg.image))
    from_folder = image.is_dir()
    images = image_folder_files(image) if from_folder else [image]  # checked above: PNG/JPG files, unique stems

    import torch

    from miva_lightning.animate import animate_batch, backbone_size, load_adapters, load_image, write_outputs
    from miva_lightning.backbones import build_backbone

    backbone = build_backbone(cfg.backbone)
    size = backbone_size(backbone) if cfg.size is None else cfg.size if isinstance(cfg.size, int) else tuple(cfg.size)
    mivas = load_adapters(adapters, backbone.unet)  # once, not once per batch
    batch_size = int(cfg.get("batch_size") or 1) if from_folder else 1
    out_dir = Path(cfg.out or cfg.paths.output_dir) if from_folder else None
    written = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        videos = animate_batch(
            torch.stack([load_image(path, size) for path in batch]),
            mivas,
            backbone,
            num_frames=int(cfg.num_frames),
            steps=int(cfg.steps),
            seed=int(cfg.seed),
            noise_init=cfg.noise_init,
            lora_mode=str(cfg.lora_mode),
            cfa_mode=str(cfg.get("cfa_mode", "sum")),
            prompt=cfg.prompt,
            guidance_scale=float(cfg.guidance_scale),
            progress=True,
            adapter_guidance=float(cfg.get("adapter_guidance", 1.0)),
            scheduler=cfg.get("scheduler"),
            scheduler_options=cfg.get("scheduler_options"),
        )
        for path, video in zip(batch, videos):
            stem = out_dir / path.stem if from_folder else cfg.out or Path(cfg.paths.output_dir) / path.stem
            written += write_outputs(video, stem, fps=float(cfg.fps), formats=tuple(cfg.formats))
    return written
