"""Throughput of every registered metric on this CPU (16 frames at 64x64), and the FD engine's cost
relative to feature extraction, all measured in one run.

    python benchmarks/bench_metrics.py [--videos 16] [--threads 1] [--json results/bench_metrics.json]

Videos are held-out motion-world clips (so ground-truth `params` and `motions` exist); each metric
gets the same batch as both generated and reference. Throughput = generated videos scored per second
(update of both sides + compute). Unavailable metrics (weights missing) are listed as such.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings

import torch


def world_clips(n: int, frames: int, size: int):
    from miva_lightning.world.clips import heldout_scene_seeds, render_clip
    from miva_lightning.world.motions import ALL_MOTIONS

    clips = [
        render_clip(ALL_MOTIONS[i % len(ALL_MOTIONS)], seed, size=size, num_frames=frames)
        for i, seed in enumerate(heldout_scene_seeds(n))
    ]
    batch = {
        "generated": torch.stack([c.video for c in clips]),
        "reference": torch.stack([c.video for c in clips]).flip(0),
        "images": torch.stack([c.video[0] for c in clips]),
        "prompts": [c.caption for c in clips],
        "motions": [c.motion for c in clips],
        "params": [c.params for c in clips],
    }
    return batch


def time_metric(name: str, batch: dict) -> dict:
    from miva_lightning.metrics import build_metric, describe_metric

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = build_metric(name)
        started = time.perf_counter()
        metric.update(batch)
        value = float(metric.compute())
        seconds = time.perf_counter() - started
        info = describe_metric(metric)
    n = batch["generated"].shape[0]
    available = info.get("available", True) and not math.isnan(value)
    return {
        "metric": name,
        "available": available,
        "videos_per_s": n / seconds if available else None,
        "seconds": seconds,
        "value": value,
        "reason": info.get("unavailable_reason", ""),
    }


def engine_ratio(batch: dict) -> dict:
    """Seconds of FD (update + compute) over seconds of extracting the features it needs."""
    from miva_lightning.metrics.frechet import FrechetDistance
    from miva_lightning.metrics.motion_features import load_motionworld_extractor

    extractor = load_motionworld_extractor(kind="video")
    videos = torch.cat([batch["generated"], batch["reference"]])
    rows = {}
    if extractor.available:
        started = time.perf_counter()
        features = extractor(videos)
        extract_s = time.perf_counter() - started
        real, fake = features.chunk(2)
        started = time.perf_counter()
        engine = FrechetDistance(features.shape[1])
        engine.update(real=real, fake=fake)
        engine.compute()
        engine_s = time.perf_counter() - started
        rows["motionworld_d128"] = {"extract_s": extract_s, "fd_engine_s": engine_s, "ratio": engine_s / extract_s}
    # FVD-sized features (d = 400): the engine cost alone (I3D extraction needs weights not present here)
    d = 400
    real, fake = torch.randn(len(videos) // 2, d), torch.randn(len(videos) // 2, d)
    started = time.perf_counter()
    engine = FrechetDistance(d)
    engine.update(real=real, fake=fake)
    engine.compute()
    rows["engine_only_d400"] = {"fd_engine_s": time.perf_counter() - started}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the rows here (atomic)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from miva_lightning.metrics import available_metrics

    batch = world_clips(args.videos, args.frames, args.size)
    rows = [time_metric(name, batch) for name in available_metrics()]
    ratio = engine_ratio(batch)
    print(f"# {args.videos} videos x {args.frames} frames x {args.size}x{args.size}, {args.threads} thread(s)")
    print(f"{'metric':52s} {'videos/s':>10s}  note")
    for row in rows:
        speed = f"{row['videos_per_s']:10.2f}" if row["available"] else f"{'n/a':>10s}"
        print(f"{row['metric']:52s} {speed}  {row['reason'][:70]}")
    for name, r in ratio.items():
        if "ratio" in r:
            print(f"FD engine vs extraction ({name}): extract {r['extract_s']:.3f} s, FD {r['fd_engine_s']:.4f} s, "
                  f"ratio {r['ratio']:.3f}")  # fmt: skip
        else:
            print(f"FD engine alone ({name}, n={args.videos} per side): {r['fd_engine_s']:.4f} s")
    if args.json:
        from miva_lightning.utils import atomic_write_json

        atomic_write_json(args.json, {"settings": vars(args), "metrics": rows, "fd_engine": ratio})


if __name__ == "__main__":
    main()
