"""The world's rendering speed and the motion judge's accuracy and parameter errors, in one run.

    python benchmarks/bench_estimator.py [--clips 30] [--photo-clips 3] [--sizes 32 64] [--json PATH]

- Rendering: CPU time per 8-frame clip of each motion at 32x32 (time.process_time, 1 thread).
- Judge on world clips: `clips` held-out scenes per class (the same scenes for every class).
- Judge on real photos (assets/photos/*.png): every photo moved by every class `photo-clips` times.
Accuracy per class, confusions, and mean absolute errors of the fitted camera parameters (dx, dy in
the clip's pixels, scale, degrees) over camera clips.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def render_speed(size: int = 32, repeats: int = 20) -> dict:
    from miva_lightning.world import ALL_MOTIONS, render_clip

    speed = {}
    for motion in ALL_MOTIONS:
        render_clip(motion, 0, size=size)
        start = time.process_time()
        for seed in range(repeats):
            render_clip(motion, seed, size=size)
        speed[motion] = (time.process_time() - start) / repeats * 1000
    speed["mean"] = sum(speed.values()) / len(speed)
    return speed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=30)
    parser.add_argument("--photo-clips", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from miva_lightning.config import REPO_ROOT
    from miva_lightning.motion.validation import evaluate_clips, load_photo, photo_clips, world_clips

    results = {"render_ms_per_clip_32px_8f": render_speed(), "world": {}, "photos": {}}
    photos = [load_photo(p) for p in sorted((REPO_ROOT / "assets" / "photos").glob("*.png"))]
    for size in args.sizes:
        start = time.perf_counter()
        results["world"][size] = evaluate_clips(world_clips(size, args.clips))
        results["world"][size]["seconds_per_clip"] = (time.perf_counter() - start) / results["world"][size]["n"]
        if photos:
            results["photos"][size] = evaluate_clips(photo_clips(photos, size, args.photo_clips))
    results["how"] = {
        "world_clips_per_class": args.clips,
        "photo_clips_per_class": args.photo_clips * len(photos),
        "photos": [p.name for p in sorted((REPO_ROOT / "assets" / "photos").glob("*.png"))],
        "frames": 8,
        "threads": args.threads,
        "heldout_seed": 0,
    }
    text = json.dumps(results, indent=2, default=float)
    print(text)
    if args.json:
        from miva_lightning.utils import atomic_write_json

        atomic_write_json(args.json, results)


if __name__ == "__main__":
    main()
