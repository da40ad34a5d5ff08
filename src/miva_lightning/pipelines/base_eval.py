"""Re-measuring a saved base (`miva-eval-base`): config -> results/base_eval.json.

`run(cfg)` takes a composed `eval_base` config, builds the saved base, measures it with
`training.base_eval.evaluate_base` (judged per-motion accuracy) and `caption_control` (each known caption,
the generic caption and the empty prompt on the same held-out frames), writes the record and returns it;
`summary(record)` is its printed report. The measurements themselves live in `training/base_eval.py`.
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig

from miva_lightning.inputs import check_base_eval_config


def run(cfg: DictConfig) -> dict:
    check_base_eval_config(cfg)  # the saved base exists, sane numbers: before torch and the model load
    import torch

    from miva_lightning.backbones.factory import build_backbone
    from miva_lightning.training.base_eval import best_captions, caption_control, evaluate_base
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
    return record


def summary(record: dict) -> str:
    """The per-motion table, then each caption's share of judged motions (what `miva-eval-base` prints)."""
    from miva_lightning.training.base_eval import motion_table

    lines = [motion_table(record["per_motion_accuracy"], record["n_per_motion"], record.get("per_motion_fidelity"))]
    for caption, shares in record["caption_control"].items():
        lines.append(f"{caption or '(empty prompt)':<36} " + ", ".join(f"{m} {v:.0%}" for m, v in shares.items()))
    return "\n".join(lines)

