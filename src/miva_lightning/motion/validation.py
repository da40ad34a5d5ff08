"""Validate the judge on clips with known motion: world clips and real photographs warped exactly.

Photographs: the clip shows the central PHOTO_VIEW fraction of the photo, so camera motions of a
clip (pans up to ~16 px at 32 px, zoom-outs to 0.6x) stay inside the photo. Frames are sampled
with `grid_sample` at the world's camera coordinates (the same ground truth as world clips), from
a copy of the photo antialiased to the clip's resolution. Local motions are the world's layers
composited over the still photo.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from miva_lightning.motion.classify import classify_estimate
from miva_lightning.motion.estimator import REFERENCE_WIDTH, estimate_motion
from miva_lightning.world import motions as M
from miva_lightning.world.clips import camera_coordinates, camera_params, heldout_scene_seeds, render_clip
from miva_lightning.world.local_motions import LOCAL_LAYERS
from miva_lightning.world.scene import pixel_grid

PHOTO_VIEW = 0.5  # the clip spans this fraction of the photo's width and height
CAMERA_ERROR_KEYS = ("dx_px", "dy_px", "scale", "angle_deg")


def load_photo(path: str | Path) -> Tensor:
    """An RGB image file as (3, h, w) float32 in [0, 1], centre-cropped to a square."""
    from PIL import Image

    image = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    h, w, _ = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return torch.from_numpy(image[top : top + side, left : left + side]).permute(2, 0, 1).contiguous()


def photo_clip(photo: Tensor, motion: str, size: int = 32, num_frames: int = 8, motion_seed: int = 0):
    """(video f c h w, ground-truth params) of `motion` applied to a square photo (3, H, W)."""
    M.check_motion(motion)
    rng = np.random.default_rng([motion_seed, 0x0A0710])
    source_size = int(round(size / PHOTO_VIEW))
    source = F.interpolate(photo[None], size=(source_size, source_size), mode="bilinear", antialias=True, align_corners=False)
    grid = pixel_grid(size)
    frames = torch.arange(num_frames, dtype=torch.float32)
    if motion in M.LOCAL_MOTIONS:
        params = {"dx_px": 0.0, "dy_px": 0.0, "scale": 1.0, "angle_deg": 0.0}
        coordinates = grid[None].expand(num_frames, -1, -1, -1)
    else:
        params = camera_params(motion, rng, size)
        coordinates = camera_coordinates(params, grid, frames, size)
    video = F.grid_sample(
        source.expand(num_frames, -1, -1, -1), coordinates * PHOTO_VIEW, mode="bicubic", align_corners=False
    ).clamp(0, 1)
    if motion in M.LOCAL_MOTIONS:
        x, y = grid[..., 0].reshape(-1), grid[..., 1].reshape(-1)
        premultiplied, alpha, local = LOCAL_LAYERS[motion](rng, x, y, num_frames, size)
        still = video.flatten(2).transpose(1, 2)  # (f, n, 3)
        layered = (still * (1 - alpha) + premultiplied).transpose(1, 2).reshape(num_frames, 3, size, size)
        video = torch.cat([video[:1], layered[1:]])
        params.update(local)
    return video.contiguous(), params


def evaluate_clips(clips: Iterable[tuple[Tensor, str, dict]]) -> dict:
    """Accuracy per class and mean absolute camera-parameter errors of (video, motion, params) clips.

    Parameter errors are in the clip's own pixels (dx, dy), scale units and degrees, over camera
    clips only; they measure the fitted global motion whatever class the judge picked.
    """
    hits, counts = defaultdict(int), defaultdict(int)
    errors: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    confusion: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for video, motion, params in clips:
        estimate = estimate_motion(video)
        prediction = classify_estimate(estimate)
        counts[motion] += 1
        hits[motion] += prediction == motion
        confusion[motion][prediction] += 1
        if motion in M.CAMERA_MOTIONS:
            s, px = estimate.summary, video.shape[-1] / REFERENCE_WIDTH
            measured = {"dx_px": s.dx * px, "dy_px": s.dy * px, "scale": s.scale, "angle_deg": s.angle_deg}
            for key in CAMERA_ERROR_KEYS:
                errors[motion][key].append(abs(measured[key] - params[key]))
    total = sum(counts.values())
    return {
        "accuracy": sum(hits.values()) / max(total, 1),
        "n": total,
        "per_class": {m: hits[m] / counts[m] for m in counts},
        "counts": dict(counts),
        "confusion": {m: {p: n for p, n in c.items() if p != m} for m, c in confusion.items()},
        "camera_mean_abs_errors": {m: {k: float(np.mean(v)) for k, v in e.items()} for m, e in errors.items()},
    }


def world_clips(size: int, clips_per_class: int, seed: int = 0, motions: Sequence[str] = M.ALL_MOTIONS):
    """Held-out world clips: (video, motion, params) for every motion on the same scene seeds."""
    for motion in motions:
        for scene_seed in heldout_scene_seeds(clips_per_class, seed):
            clip = render_clip(motion, scene_seed, size=size)
            yield clip.video, motion, clip.params


def photo_clips(photos: Sequence[Tensor], size: int, clips_per_photo: int, motions: Sequence[str] = M.ALL_MOTIONS):
    """Each photo moved by each motion `clips_per_photo` times (different motion seeds)."""
    for motion in motions:
        for p, photo in enumerate(photos):
            for j in range(clips_per_photo):
                video, params = photo_clip(photo, motion, size=size, motion_seed=1000 * p + j)
                yield video, motion, params
