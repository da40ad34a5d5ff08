"""`miva-train`: train one MIVA (or another method of the comparison) on a few-shot set and export it.

    miva-train motion=waterfall                       # ten clips of a novel world motion
    miva-train data=fewshot_folder data.root=/data/lamp motion=birds_fly
    miva-train experiment=miva_quick trainer.max_steps=50
    miva-train hydra.run.dir=outputs/run1 resume_from=auto   # after any kill: continues exactly from the newest complete checkpoint
    miva-train method=full_ft motion=zoom_out               # a baseline on the same clips and budget (configs/method/)

The run folder (Hydra's output dir) gets checkpoints/ (adapter-only Lightning checkpoints every N steps),
previews/ (GIF/MP4 from held-out first frames), the logger's files and `<motion>.safetensors`.
The work is `miva_lightning.pipelines.train.train_method`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from miva_lightning.cli_errors import report_input_errors, run_cli
from miva_lightning.config import CONFIG_DIR
from miva_lightning.pipelines.train import train_method


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
@report_input_errors
def _hydra_main(cfg: DictConfig) -> None:
    summary = train_method(cfg)
    if summary["global_rank"] != 0:
        return
    what = "MIVA" if summary["method"] == "miva" else summary["method"]
    print(
        f"trained {what} '{summary['motion']}' for {summary['steps']} steps in {summary['train_time_s']:.1f} s "
        f"(peak RSS {summary['peak_rss_mb']:.0f} MiB)"
    )
    print(f"adapter: {summary['adapter_path']}" if "adapter_path" in summary else f"export: {summary['export_path']}")


def main() -> None:
    run_cli(_hydra_main)


if __name__ == "__main__":
    main()
