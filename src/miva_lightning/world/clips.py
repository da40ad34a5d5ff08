"""Render clips of the world: a scene (from its seed) moved by a motion (from its seed)."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from miva_lightning.world import motions as M
from miva_lightning.world.local_motions import LOCAL_LAYERS
from miva_lightning.world.scene import make_scene, pixel_grid, sample_scene

HELDOUT_SEED_START = 1_000_000  # evaluation scene seeds are >= this; training scene seeds are below
SEED_RANGE = 1_000_000


@dataclass
class MotionClip:
    video: Tensor  # f c h w, float32 in [0, 1]; frame 0 is the still scene
    motion: str
    caption: str
    params: dict = field(default_factory=dict)  # JSON-able ground truth
    scene_seed: int = 0


def default_motion_seed(scene_seed: int, motion: str) -> int:
    """A stable per-(scene, motion) seed (crc32, so it is the same in every Python process)."""
    return zlib.crc32(f"{scene_seed}/{motion}".encode())


def _check_sizes(size: int, num_frames: int) -> None:
    if size < 8:
        raise ValueError(f"size={size} is too small; use at least 8 pixels (the world is designed for 32)")
    if num_frames < 2:
        raise ValueError(f"num_frames={num_frames}; a motion clip needs at least 2 frames")


def camera_params(motion: str, rng: np.random.Generator, size: int, speed: float = 1.0) -> dict:
    """Per-frame content motion of a camera class: dx_px, dy_px, scale, angle_deg (see motions.py).

    `speed` multiplies the class speed (pan px/frame, zoom rate, degrees/frame): the judge's speed
    sweep renders 0.25x-2x clips with it; the world's own clips use 1.
    """
    if speed <= 0:
        raise ValueError(f"speed={speed}; use a positive multiple of the class speed (1 = the world's own)")
    params = {"kind": "camera", "dx_px": 0.0, "dy_px": 0.0, "scale": 1.0, "angle_deg": 0.0}
    jitter = float(rng.uniform(1 - M.SPEED_JITTER, 1 + M.SPEED_JITTER)) * speed
    if motion in M.PAN_DIRECTIONS:
        speed = M.PAN_SPEED_PX * size / M.REFERENCE_SIZE * jitter
        ux, uy = M.PAN_DIRECTIONS[motion]
        params["dx_px"], params["dy_px"] = ux * speed, uy * speed
    elif motion == "zoom_in":
        params["scale"] = 1.0 + M.ZOOM_RATE * jitter
    elif motion == "zoom_out":
        params["scale"] = 1.0 / (1.0 + M.ZOOM_RATE * jitter)
    elif motion == "rotate_cw":
        params["angle_deg"] = M.ROTATE_DEG * jitter
    elif motion == "rotate_ccw":
        params["angle_deg"] = -M.ROTATE_DEG * jitter
    return params


def camera_coordinates(params: dict, grid: Tensor, frames: Tensor, size: int) -> Tensor:
    """Scene coordinates (k, h, w, 2) seen by each pixel at frames k.

    Frame k shows the content moved by A_k(q) = s^k R(k a) q + k t about the centre, so pixel p
    samples the scene at q = R(-k a) (p - k t) / s^k (y points down, so a > 0 is clockwise).
    """
    k = frames[:, None, None, None]
    shift = torch.tensor([params["dx_px"], params["dy_px"]], dtype=torch.float32) * (2.0 / size)
    angle = -k * math.radians(params["angle_deg"])
    cos, sin = torch.cos(angle), torch.sin(angle)
    p = grid[None] - k * shift
    x, y = p[..., :1], p[..., 1:]
    rotated = torch.cat([cos * x - sin * y, sin * x + cos * y], dim=-1)
    return rotated / params["scale"] ** k


def render_first_frame(scene_seed: int, size: int = 32) -> Tensor:
    """The still scene of `scene_seed` as (3, h, w) float32 in [0, 1] (frame 0 of every clip)."""
    _check_sizes(size, 2)
    return sample_scene(make_scene(scene_seed), pixel_grid(size)).permute(2, 0, 1).contiguous()


def render_clip(
    motion: str, scene_seed: int, motion_seed: int | None = None, size: int = 32, num_frames: int = 8, speed: float = 1.0
) -> MotionClip:
    """Render `motion` applied to the scene of `scene_seed` (deterministic in both seeds).

    `speed` scales a camera motion's class speed (see `camera_params`); local motions keep theirs.
    """
    M.check_motion(motion)
    _check_sizes(size, num_frames)
    if speed != 1.0 and motion in M.LOCAL_MOTIONS:
        raise ValueError(f"speed={speed} applies to camera motions only; {motion!r} is a local motion")
    if motion_seed is None:
        motion_seed = default_motion_seed(scene_seed, motion)
    rng = np.random.default_rng([motion_seed, 0x0A0710])
    scene = make_scene(scene_seed)
    grid = pixel_grid(size)
    first = sample_scene(scene, grid)  # (h, w, 3), the same computation as render_first_frame
    later = torch.arange(1, num_frames, dtype=torch.float32)

    if motion in M.LOCAL_MOTIONS:
        x, y = grid[..., 0].reshape(-1), grid[..., 1].reshape(-1)
        premultiplied, alpha, local = LOCAL_LAYERS[motion](rng, x, y, num_frames, size)
        rest = (first.reshape(1, -1, 3) * (1.0 - alpha[1:]) + premultiplied[1:]).reshape(num_frames - 1, size, size, 3)
        params = {"kind": "local", "dx_px": 0.0, "dy_px": 0.0, "scale": 1.0, "angle_deg": 0.0, **local}
    else:
        params = camera_params(motion, rng, size, speed)
        if motion == "static":
            rest = first.expand(num_frames - 1, -1, -1, -1)
        else:
            rest = sample_scene(scene, camera_coordinates(params, grid, later, size))
    video = torch.cat([first[None], rest.clamp(0.0, 1.0)], dim=0).permute(0, 3, 1, 2).contiguous()
    params.update(size=size, num_frames=num_frames, motion_seed=int(motion_seed))
    return MotionClip(video=video, motion=motion, caption=M.caption_for(motion), params=params, scene_seed=scene_seed)


def heldout_scene_seeds(n: int, seed: int = 0) -> list[int]:
    """n distinct evaluation scene seeds, all >= HELDOUT_SEED_START (never used for training).

    Prefix-stable: the first m seeds of a longer list are `heldout_scene_seeds(m, seed)`. Seed i is
    an affine bijection (a i + b) mod SEED_RANGE with a coprime to SEED_RANGE, so seeds never repeat.
    """
    if not 0 <= n <= SEED_RANGE:
        raise ValueError(f"n={n}; ask for between 0 and {SEED_RANGE} held-out seeds")
    rng = np.random.default_rng([seed, 0xE7A1])
    a = int(rng.integers(1, SEED_RANGE // 10)) * 10 + int(rng.choice([1, 3, 7, 9]))  # ends in 1/3/7/9: coprime to 10^6
    b = int(rng.integers(SEED_RANGE))
    return [HELDOUT_SEED_START + (a * i + b) % SEED_RANGE for i in range(n)]


def training_scene_seeds(n: int, seed: int = 0) -> list[int]:
    """n training scene seeds, all < HELDOUT_SEED_START (may repeat for very large n)."""
    rng = np.random.default_rng([seed, 0x7EA1])
    return [int(s) for s in rng.integers(0, HELDOUT_SEED_START, size=n)]


def heldout_first_frames(n: int, size: int = 32, seed: int = 0) -> Tensor:
    """First frames (n, 3, h, w) of `heldout_scene_seeds(n, seed)`."""
    return torch.stack([render_first_frame(s, size) for s in heldout_scene_seeds(n, seed)])
