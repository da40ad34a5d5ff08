"""Animating one image with MIVAs (`miva-animate`): `run_animate(cfg, extra_adapters)` checks the inputs,
builds the base, samples and writes `<out>.mp4` / `<out>.gif` atomically; `pop_adapter_flags` takes the
repeatable `--adapter PATH[:WEIGHT]` flags out of argv (weights parsed by `inputs.parse_adapter_spec`).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from miva_lightning.inputs import InputError, check_animate_config, parse_adapter_spec

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

    from miva_lightning.animate import animate, write_outputs
    from miva_lightning.backbones import build_backbone

    size = cfg.size if cfg.size is None or isinstance(cfg.size, int) else tuple(cfg.size)
    backbone = build_backbone(cfg.backbone)
    video = animate(
        cfg.image,
        adapters=adapters,
        backbone=backbone,
        num_frames=int(cfg.num_frames),
        steps=int(cfg.steps),
        seed=int(cfg.seed),
        noise_init=cfg.noise_init,
        scheduler=cfg.get("scheduler"),
        lora_mode=cfg.lora_mode,
        size=size,
        prompt=cfg.prompt,
        guidance_scale=float(cfg.guidance_scale),
        progress=True,
        adapter_guidance=float(cfg.get("adapter_guidance", 1.0)),
    )
    stem = cfg.out or Path(cfg.paths.output_dir) / Path(str(cfg.image)).stem
    return write_outputs(video, stem, fps=float(cfg.fps), formats=tuple(cfg.formats))

