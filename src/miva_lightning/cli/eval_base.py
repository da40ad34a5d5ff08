"""miva-eval-base: judged per-motion accuracy of a saved tiny base, in a few minutes."""

from __future__ import annotations

import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from miva_lightning.cli_errors import report_input_errors, run_cli
from miva_lightning.config import CONFIG_DIR
from miva_lightning.inputs import check_base_eval_config


def run(cfg: DictConfig) -> dict:
    check_base_eval_config(cfg)  # the saved base exists, sane numbers: before torch and the model load
    import torch

    from miva_lightning.backbones.factory import build_backbone
    from miva_lightning.training.base_eval import evaluate_base, motion_table
    from miva_lightning.utils import atomic_write_json, peak_rss_mb

    torch.set_num_threads(int(cfg.num_threads))
    start = time.time()
    backbone = build_backbone(cfg.backbone)
    backbone.unet.to(cfg.device)
    backbone.text_encoder.to(cfg.device)
    result = evaluate_base(
        backbone, cfg.eval.n_per_motion, cfg.eval.num_inference_steps, cfg.eval.guidance_scale, cfg.eval.seed,
        negative_prompt=cfg.eval.negative_prompt,
    )
    record = {
        "per_motion_accuracy": result["per_motion_accuracy"],
        "mean_accuracy": result["mean_accuracy"],
        "n_per_motion": result["n_per_motion"],
        "seed": cfg.eval.seed,
        "n": result["n_per_motion"] * len(result["per_motion_accuracy"]),
        "steps": cfg.eval.num_inference_steps,
        "guidance": cfg.eval.guidance_scale,
        "negative_prompt": cfg.eval.negative_prompt,
        "how": result["how"],
        "confusion": result["confusion"],
        "base": backbone.config.get("pretrained_dir"),
        "wall_time_s": round(time.time() - start, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    atomic_write_json(Path(cfg.paths.results) / "base_eval.json", record)
    print(motion_table(record["per_motion_accuracy"], record["n_per_motion"], record.get("per_motion_fidelity")))
    return record


@hydra.main(config_path=str(CONFIG_DIR), config_name="eval_base", version_base="1.3")
@report_input_errors
def _hydra_main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    run_cli(_hydra_main)


if __name__ == "__main__":
    main()
