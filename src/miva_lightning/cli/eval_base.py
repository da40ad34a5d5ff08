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
    from miva_lightning.training.base_eval import best_captions, caption_control, evaluate_base, motion_table
    from miva_lightning.utils import atomic_write_json, peak_rss_mb
    from miva_lightning.world import ALL_MOTIONS, BASE_MOTIONS, GENERIC_CAPTION, caption_for, split_of

    torch.set_num_threads(int(cfg.num_threads))
    start = time.time()
    backbone = build_backbone(cfg.backbone)
    backbone.unet.to(cfg.device)
    backbone.text_encoder.to(cfg.device)
    result = evaluate_base(
        backbone, cfg.eval.n_per_motion, cfg.eval.num_inference_steps, cfg.eval.guidance_scale, cfg.eval.seed,
        negative_prompt=cfg.eval.negative_prompt,
    )
    n_control = int(cfg.eval.get("caption_control_n", 0))
    captions = [caption_for(m) for m in BASE_MOTIONS] + [GENERIC_CAPTION, ""]
    control = (
        caption_control(backbone, captions, n_control, cfg.eval.num_inference_steps, cfg.eval.guidance_scale,
                        cfg.eval.seed)
        if n_control else {}
    )
    record = {
        "per_motion_accuracy": result["per_motion_accuracy"],
        "per_motion_accuracy_ci": result["per_motion_accuracy_ci"],
        "per_motion_fidelity": result["per_motion_fidelity"],
        "mean_accuracy": result["mean_accuracy"],
        "mean_accuracy_ci": result["mean_accuracy_ci"],
        "split": {m: split_of(m) for m in ALL_MOTIONS},
        "caption_control": control,
        "caption_control_n": n_control,
        "best_caption": best_captions(control, [m for m in ALL_MOTIONS if m not in BASE_MOTIONS]),
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
    for caption, shares in control.items():
        print(f"{caption or '(empty prompt)':<36} " + ", ".join(f"{m} {v:.0%}" for m, v in shares.items()))
    return record


@hydra.main(config_path=str(CONFIG_DIR), config_name="eval_base", version_base="1.3")
@report_input_errors
def _hydra_main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    run_cli(_hydra_main)


if __name__ == "__main__":
    main()
