"""Validate the judge on clips with known motion: world clips and real photographs warped exactly.

Photographs: the clip shows the central PHOTO_VIEW fraction of the photo, so camera motions of a
clip (pans up to ~16 px at 32 px, zoom-outs to 0.6x) stay inside the photo; a faster or longer
motion that would leave it shows a smaller central part instead (never the zero padding). Frames are sampled
with `grid_sample` at the world's camera coordinates (the same ground truth as world clips), from
a copy of the photo antialiased to the clip's resolution. Local motions are the world's layers
composited over the still photo.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from miva_lightning.metrics.intervals import mean_interval, wilson_interval
from miva_lightning.motion.classify import classify_estimate
from miva_lightning.motion.estimator import REFERENCE_WIDTH, estimate_motion
from miva_lightning.motion.fidelity import fidelity_of_estimate, motion_vector, speed_fraction
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


def photo_clip(photo: Tensor, motion: str, size: int = 32, num_frames: int = 8, motion_seed: int = 0, speed: float = 1.0):
    """(video f c h w, ground-truth params) of `motion` applied to a square photo (3, H, W);
    `speed` scales a camera motion's class speed."""
    M.check_motion(motion)
    if speed != 1.0 and motion in M.LOCAL_MOTIONS:
        raise ValueError(f"speed={speed} applies to camera motions only; {motion!r} is a local motion")
    rng = np.random.default_rng([motion_seed, 0x0A0710])
    grid = pixel_grid(size)
    frames = torch.arange(num_frames, dtype=torch.float32)
    if motion in M.LOCAL_MOTIONS:
        params = {"dx_px": 0.0, "dy_px": 0.0, "scale": 1.0, "angle_deg": 0.0}
        coordinates = grid[None].expand(num_frames, -1, -1, -1)
    else:
        params = camera_params(motion, rng, size, speed)
        coordinates = camera_coordinates(params, grid, frames, size)
    view = min(PHOTO_VIEW, 0.98 / float(coordinates.abs().max()))  # every sampled point inside the photo
    source_size = int(round(size / view))
    source = F.interpolate(photo[None], size=(source_size, source_size), mode="bilinear", antialias=True, align_corners=False)
    video = F.grid_sample(
        source.expand(num_frames, -1, -1, -1), coordinates * view, mode="bicubic", align_corners=False
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


# ---------------------------------------------------------------- speed sweep (the judge's speed floor)

SWEEP_SPEEDS = (0.25, 0.35, 0.5, 1.0, 2.0)  # multiples of each camera class's world speed


def true_fraction(params: dict, motion: str, size: int) -> float:
    """The speed fraction a clip was rendered with: its ground-truth motion projected on the class's
    nominal motion, as `motion_fidelity` measures it (0.35 for a 0.35x clip, up to the +-10 % jitter)."""
    to_reference = REFERENCE_WIDTH / size
    truth = motion_vector(params["dx_px"] * to_reference, params["dy_px"] * to_reference, params["scale"], params["angle_deg"])
    return speed_fraction(truth, motion)


def speed_sweep_clips(
    photos: Sequence[Tensor],
    size: int,
    num_frames: int,
    clips_per_class: int,
    speeds: Sequence[float] = SWEEP_SPEEDS,
    seed: int = 0,
):
    """(source, video, motion, speed, params): every moving camera class at every speed, on
    `clips_per_class` held-out world scenes and on each photo (`clips_per_class // 3` motion seeds,
    at least 1), plus still clips of the same scenes and photos (motion "static", speed 0)."""
    per_photo = max(1, clips_per_class // 3)
    scenes = heldout_scene_seeds(clips_per_class, seed)
    for motion in M.CAMERA_MOTIONS:
        for speed in speeds if motion != "static" else (0.0,):
            factor = speed or 1.0
            for scene in scenes:
                clip = render_clip(motion, scene, size=size, num_frames=num_frames, speed=factor)
                yield "world", clip.video, motion, speed, clip.params
            for p, photo in enumerate(photos):
                for j in range(per_photo):
                    video, params = photo_clip(photo, motion, size, num_frames, motion_seed=1000 * p + j, speed=factor)
                    yield "photo", video, motion, speed, params


def evaluate_speed_sweep(clips: Iterable[tuple[str, Tensor, str, float, dict]]) -> list[dict]:
    """One row per (source, motion, speed): how often the judge names the class (`detection`), and
    `motion_fidelity` against each clip's true speed fraction (mean, 95 % interval, worst error)."""
    groups: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for source, video, motion, speed, params in clips:
        estimate = estimate_motion(video)
        group = groups[(source, motion, speed, video.shape[0], video.shape[-1])]
        prediction = classify_estimate(estimate)
        group["hit"].append(prediction == motion)
        group["prediction"].append(prediction)
        if motion != "static":
            truth = true_fraction(params, motion, video.shape[-1])
            fidelity = fidelity_of_estimate(estimate, motion)
            group["fidelity"].append(fidelity)
            group["error"].append(abs(fidelity - truth))
        else:  # a still clip should read 0 for every camera class
            group["error"].append(max(abs(fidelity_of_estimate(estimate, m)) for m in M.CAMERA_MOTIONS[1:]))
    rows = []
    for (source, motion, speed, frames, size), group in groups.items():
        n, hits = len(group["hit"]), sum(group["hit"])
        mean, low, high = mean_interval(group["fidelity"]) if group["fidelity"] else (0.0, 0.0, 0.0)
        rows.append(
            {
                "source": source,
                "size": size,
                "frames": frames,
                "motion": motion,
                "speed": speed,
                "n": n,
                "detection": hits / n,
                "detection_ci": list(wilson_interval(hits, n)),
                "fidelity": mean,
                "fidelity_ci": [low, high],
                "fidelity_max_abs_error": max(group["error"]),
                "misses": dict(Counter(p for p in group["prediction"] if p != motion)),
            }
        )
    return rows
