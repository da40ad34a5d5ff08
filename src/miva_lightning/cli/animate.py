"""`miva-animate`: animate one image with MIVAs, writing `<out>.mp4` and `<out>.gif` atomically, or every
PNG/JPG of a folder, writing `<out>/<image stem>.mp4` and `.gif`.

    miva-animate image=photo.jpg --adapter waterfall.safetensors:1.0 --adapter clouds.safetensors:0.6
    miva-animate image=photo.jpg 'adapters=[waterfall.safetensors:0.8]' steps=50 seed=3
    miva-animate backbone=animatediff_sd15 image=benchmark_images/ --adapter waterfall.safetensors out=videos batch_size=4

`--adapter PATH[:WEIGHT]` (weight 1 when left out) may repeat; it adds to the Hydra list `adapters`.
The work is `miva_lightning.pipelines.animate.run_animate`.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from miva_lightning.cli_errors import report_input_errors, run_cli
from miva_lightning.config import CONFIG_DIR
from miva_lightning.pipelines.animate import pop_adapter_flags, run_animate

_FLAG_ADAPTERS: list[str] = []  # filled from `--adapter` flags before Hydra parses the rest


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
