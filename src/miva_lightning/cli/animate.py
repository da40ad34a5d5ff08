"""`miva-animate`: animate one image with MIVAs, writing `<out>.mp4` and `<out>.gif` atomically.

    miva-animate image=photo.jpg --adapter waterfall.safetensors:1.0 --adapter clouds.safetensors:0.6
    miva-animate image=photo.jpg 'adapters=[waterfall.safetensors:0.8]' steps=50 seed=3

`--adapter PATH[:WEIGHT]` (weight 1 when left out) may repeat; it adds to the Hydra list `adapters`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from miva_lightning.cli_errors import report_input_errors, run_cli
from miva_lightning.config import CONFIG_DIR
from miva_lightning.inputs import InputError, check_animate_config, parse_adapter_spec

_FLAG_ADAPTERS: list[str] = []  # filled from `--adapter` flags before Hydra parses the rest

__all__ = ["parse_adapter_spec", "pop_adapter_flags", "run_animate", "main"]


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


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="animate")
@report_input_errors
def _hydra_main(cfg: DictConfig) -> None:
    for path in run_animate(cfg, _FLAG_ADAPTERS):
        print(f"wrote {path}")


def main() -> None:
    def entry() -> None:
        sys.argv[1:], specs = pop_adapter_flags(sys.argv[1:])
        _FLAG_ADAPTERS[:] = specs
        _hydra_main()

    run_cli(entry)


if __name__ == "__main__":
    main()
