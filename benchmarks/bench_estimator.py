"""The world's rendering speed and the motion judge's accuracy and parameter errors, in one run.

    python benchmarks/bench_estimator.py [--clips 30] [--photo-clips 3] [--sizes 32 64] [--json PATH]
    python benchmarks/bench_estimator.py --sweep-only [--sweep-clips 9] [--sweep-frames 8 16]

- Rendering: CPU time per 8-frame clip of each motion at 32x32 (time.process_time, 1 thread).
- Judge on world clips: `clips` held-out scenes per class (the same scenes for every class).
- Judge on real photos (assets/photos/*.png): every photo moved by every class `photo-clips` times.
Accuracy per class, confusions, and mean absolute errors of the fitted camera parameters (dx, dy in
the clip's pixels, scale, degrees) over camera clips.
- Speed sweep (the judge's speed floor): every camera class at 0.25x-2x its class speed on world scenes
  and on the photos, at every size and 8/16 frames, plus still clips: detection rate (Wilson 95 %),
  `motion_fidelity` (mean, t 95 %) and its worst error against each clip's true speed fraction. Targets:
  detection >= 90 % at 0.35x and 1x, still clips static, fidelity within 0.15 of the true fraction.
"""

from __future__ import annotations

import argparse
import json
import sys
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
    parser.add_argument("--sweep-clips", type=int, default=9, help="world scenes per class and speed (photos: a third)")
    parser.add_argument("--sweep-frames", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--sweep-only", action="store_true", help="skip rendering speed and the 1x judge tables")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from miva_lightning.config import REPO_ROOT
    from miva_lightning.motion.validation import evaluate_clips, load_photo, photo_clips, world_clips

    photos = [load_photo(p) for p in sorted((REPO_ROOT / "assets" / "photos").glob("*.png"))]
    results = {"speed_sweep": speed_sweep(photos, args.sizes, args.sweep_frames, args.sweep_clips)}
    if args.sweep_only:
        return finish(results, args)
    results.update({"render_ms_per_clip_32px_8f": render_speed(), "world": {}, "photos": {}})
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
    finish(results, args)


def speed_sweep(photos, sizes, frame_counts, clips_per_class: int) -> dict:
    """Rows of `motion.validation.evaluate_speed_sweep` for every size and frame count, printed as a table."""
    from miva_lightning.motion.validation import evaluate_speed_sweep, speed_sweep_clips

    rows, start = [], time.perf_counter()
    for size in sizes:
        for frames in frame_counts:
            rows += evaluate_speed_sweep(speed_sweep_clips(photos, size, frames, clips_per_class))
    print(f"speed sweep: {sum(r['n'] for r in rows)} clips in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print(f"{'source':6} {'size':>4} {'f':>3} {'motion':11} {'speed':>5} {'n':>3} {'detect':>6} {'fidelity':>8} {'95% CI':>15} {'max err':>7}  misses")
    for r in sorted(rows, key=lambda r: (r["source"], r["size"], r["frames"], r["motion"], r["speed"])):
        low, high = r["fidelity_ci"]
        print(
            f"{r['source']:6} {r['size']:>4} {r['frames']:>3} {r['motion']:11} {r['speed']:>5.2f} {r['n']:>3} "
            f"{r['detection']:>6.0%} {r['fidelity']:>8.3f} [{low:>6.3f},{high:>6.3f}] {r['fidelity_max_abs_error']:>7.3f}  {r['misses'] or ''}"
        )
    return {"rows": rows, "clips_per_class": clips_per_class, "photos": len(photos), "heldout_seed": 0}


def finish(results: dict, args) -> None:
    text = json.dumps(results, indent=2, default=float)
    if not args.sweep_only:
        print(text)
    if args.json:
        from miva_lightning.utils import atomic_write_json

        atomic_write_json(args.json, results)


if __name__ == "__main__":
    main()
