"""Several MIVAs at once with the exact sum of their cross-frame attentions (cfa_mode="sum", METHOD) against one
merged cross-frame attention (cfa_mode="merge", an approximation whose cost does not grow with K).

    python experiments/probes/cfa_merge_composition.py --adapter a.safetensors --adapter b.safetensors \
        --backbone artifacts/base/tiny2-8f2ad0fbde --out experiments/records/cfa_merge/composition.json

Animates the same held-out first frames with both modes (same noise), judges each video (classify_motion), counts
how often each component motion is visible (the demo's `combined_components`) and compares the two modes' videos
(PSNR of merge against sum). Weights `--weight` each (1 by default), merged temporal LoRAs, DDIM 20 as the demo samples.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections import Counter
from pathlib import Path

import torch

from miva_lightning.adapters.io import load_miva
from miva_lightning.animate import animate_batch
from miva_lightning.backbones.tiny import load_tiny_backbone
from miva_lightning.motion import classify_motion
from miva_lightning.pipelines.demo import combined_components
from miva_lightning.utils import atomic_write_json
from miva_lightning.world import heldout_first_frames


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of two video batches in [0, 1] (torchmetrics), capped at 100 dB for identical ones."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return min(100.0, float(peak_signal_noise_ratio(a, b, data_range=1.0)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", action="append", required=True, help="a MIVA file (repeat: 2 or more)")
    parser.add_argument("--backbone", required=True, help="a saved tiny base folder")
    parser.add_argument("--weight", type=float, default=1.0, help="every adapter's weight")
    parser.add_argument("--n", type=int, default=20, help="held-out first frames")
    parser.add_argument("--seed", type=int, default=0, help="held-out scenes and sampling noise")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    backbone = load_tiny_backbone(args.backbone)
    mivas = [load_miva(path, backbone.unet)[0] for path in args.adapter]
    motions = [Path(path).stem for path in args.adapter]  # the demo names each file after its motion
    frames = heldout_first_frames(args.n, size=int(backbone.config["image_size"]), seed=args.seed)
    videos, rows = {}, {}
    for mode in ("sum", "merge"):
        started = time.perf_counter()
        videos[mode] = animate_batch(frames, [(m, args.weight) for m in mivas], backbone, steps=args.steps, seed=args.seed,
                                     cfa_mode=mode)
        rows[mode] = {
            "seconds": round(time.perf_counter() - started, 2),
            "predictions": dict(Counter(classify_motion(v) for v in videos[mode]).most_common()),
            **combined_components(videos[mode], motions),
        }
        print(mode, rows[mode]["visible_fraction"], rows[mode]["predictions"], flush=True)
    singles = {}
    for miva, motion in zip(mivas, motions):  # each adapter alone: both modes are the same there
        alone = animate_batch(frames, [(miva, 1.0)], backbone, steps=args.steps, seed=args.seed)
        singles[motion] = sum(classify_motion(v) == motion for v in alone) / args.n
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    record = {
        "adapters": args.adapter, "motions": motions, "backbone": args.backbone, "n": args.n, "seed": args.seed,
        "steps": args.steps, "weights": [args.weight] * len(mivas), "lora_mode": "merge", "modes": rows,
        "single_adapter_accuracy": singles, "merge_vs_sum_psnr_db": round(psnr_db(videos["merge"], videos["sum"]), 2),
        "commit": commit, "threads": args.threads,
    }  # fmt: skip
    print(json.dumps({k: record[k] for k in ("single_adapter_accuracy", "merge_vs_sum_psnr_db")}))
    if args.out:
        atomic_write_json(Path(args.out), record)


if __name__ == "__main__":
    main()
