"""Local motions: a layer that moves over a still scene (rain, waterfall, firework, birds, clouds).

Each function draws its layer's parameters from `rng` and returns, for frames k = 0..f-1 at the
flat pixel coordinates x, y (n,), the layer's premultiplied colour (f, n, 3), its coverage alpha
(f, n, 1) and JSON-able ground truth. The clip renderer drops the layer from frame 0, so frame 0 is
the still scene for every motion. Sizes and speeds are in normalised units (2 units = image width);
`PX` converts from pixels at the 32 px reference size. Every layer is thick (>= ~1.5 px at 32 px),
contrasting and moves several pixels per frame, so that it can be judged at 32x32.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
import torch
from torch import Tensor

from miva_lightning.world import motions as M
from miva_lightning.world.scene import rounded_box_alpha

PX = 2.0 / M.REFERENCE_SIZE  # normalised units per pixel at the reference size


def _jitter(rng: np.random.Generator) -> float:
    return float(rng.uniform(1 - M.SPEED_JITTER, 1 + M.SPEED_JITTER))


def _frames(f: int) -> Tensor:
    return torch.arange(f, dtype=torch.float32)


def _tensor(values) -> Tensor:
    return torch.as_tensor(np.asarray(values), dtype=torch.float32)


def _one_colour(alphas: Tensor, colour) -> tuple[Tensor, Tensor]:
    """Union of s same-coloured layers: alphas (s, f, n) -> premultiplied (f, n, 3), alpha (f, n, 1)."""
    alpha = (1.0 - torch.prod(1.0 - alphas, dim=0)).unsqueeze(-1)
    return alpha * _tensor(colour), alpha


def _disks(radius: float, count: int) -> dict[str, Tensor]:
    """Unrotated disk parameters for `count` sprites (centres are filled in by the caller)."""
    one, zero, r = torch.ones(count, 1, 1), torch.zeros(count, 1, 1), torch.full((count, 1, 1), radius)
    return {"cos": one, "sin": zero, "stretch_x": one, "stretch_y": one, "half_x": r, "half_y": r, "radius": r}


def _ellipses(half_x: float, half_y: float, count: int) -> dict[str, Tensor]:
    """Axis-aligned ellipses: a disk of radius min(half) in coordinates stretched per axis."""
    m = min(half_x, half_y)
    boxes = _disks(m, count)
    boxes["stretch_x"], boxes["stretch_y"] = boxes["cos"] * (m / half_x), boxes["cos"] * (m / half_y)
    return boxes


def rain(rng: np.random.Generator, x: Tensor, y: Tensor, f: int, size: int):
    n, period = 16, 2.8
    speed = M.RAIN_SPEED_PX * PX * _jitter(rng)
    streak_x = _tensor(rng.uniform(-1.1, 1.1, n))[:, None, None]
    streak_y0 = _tensor(rng.uniform(-1.4, 1.4, n))[:, None, None]
    streak_y = torch.remainder(streak_y0 + _frames(f)[:, None] * speed + 1.4, period) - 1.4  # wraps around
    along = ((y - streak_y).abs_() - 2.5 * PX).clamp_(min=0)  # capsules 5 px long, 1.6 px thick
    distance = torch.hypot(x - streak_x, along).sub_(0.8 * PX)
    alphas = torch.sigmoid(distance.mul_(-1.0 / (0.6 * PX))).mul_(0.9)
    premultiplied, alpha = _one_colour(alphas, [0.88, 0.93, 1.0])
    params = {"speed_px": speed * size / 2, "direction": [0.0, 1.0], "streaks": n}
    return premultiplied, alpha, params


def waterfall(rng: np.random.Generator, x: Tensor, y: Tensor, f: int, size: int):
    speed = M.WATERFALL_SPEED_PX * PX * _jitter(rng)
    x0, half_width = float(rng.uniform(-0.5, 0.5)), 4.0 * PX
    phases = rng.uniform(0, 2 * math.pi, size=3)
    x_rel = x - x0
    y_flow = y - _frames(f)[:, None] * speed  # (f, n): the texture moves down
    texture = (
        0.5
        + 0.25 * torch.sin(2 * math.pi * y_flow / 0.62 + 4.0 * x_rel + phases[0])
        + 0.17 * torch.sin(2 * math.pi * y_flow / 0.95 - 6.0 * x_rel + phases[1])
        + 0.08 * torch.sin(2 * math.pi * y_flow / 1.7 + 9.0 * x_rel + phases[2])
    ).unsqueeze(-1)
    deep, foam = _tensor([0.12, 0.28, 0.62]), _tensor([0.93, 0.97, 1.0])
    colour = deep + (foam - deep) * texture
    band = 0.95 * torch.sigmoid((half_width - x_rel.abs()) / (0.6 * PX))
    alpha = band[None, :, None].expand(f, -1, 1)
    params = {
        "speed_px": speed * size / 2,
        "direction": [0.0, 1.0],
        "region": {"x_centre_px": (x0 + 1) * size / 2, "width_px": 2 * half_width * size / 2},
    }
    return colour * alpha, alpha, params


def firework(rng: np.random.Generator, x: Tensor, y: Tensor, f: int, size: int):
    speed = M.FIREWORK_SPEED_PX * PX * _jitter(rng)
    centre = np.array([rng.uniform(-0.4, 0.4), rng.uniform(-0.5, 0.15)])
    rings = [(12, speed, rng.uniform(0, 2 * math.pi)), (8, 0.5 * speed, rng.uniform(0, 2 * math.pi))]
    angles = _tensor(np.concatenate([offset + 2 * math.pi * np.arange(n) / n for n, _, offset in rings]))
    speeds = _tensor(np.concatenate([[v] * n for n, v, _ in rings]))
    radius = speeds[:, None] * _frames(f)  # (p, f)
    centre_x = (centre[0] + radius * torch.cos(angles)[:, None])[..., None]
    centre_y = (centre[1] + radius * torch.sin(angles)[:, None])[..., None]
    distance = torch.hypot(x - centre_x, y - centre_y)  # (p, f, n)
    # each spark: a bright core (radius 1.4 px) in a dark halo (2.4 px), so it contrasts with any
    # background in luminance, which is what the judge's flow sees (a pastel spark on a pastel
    # scene was invisible to it)
    halo = torch.sigmoid((2.4 * PX - distance) / (0.5 * PX)).mul_(0.6)
    core = torch.sigmoid((1.4 * PX - distance) / (0.5 * PX))
    colour = _tensor(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 0.5), 1.0))
    halo_alpha = (1.0 - torch.prod(1.0 - halo, dim=0)).unsqueeze(-1)
    core_alpha = (1.0 - torch.prod(1.0 - core, dim=0)).unsqueeze(-1)
    premultiplied = halo_alpha * (1 - core_alpha) * _tensor([0.05, 0.04, 0.08]) + core_alpha * colour
    alpha = 1.0 - (1.0 - halo_alpha) * (1.0 - core_alpha)
    params = {"speed_px": speed * size / 2, "centre_px": [float((c + 1) * size / 2) for c in centre], "particles": len(angles)}
    return premultiplied, alpha, params


def birds(rng: np.random.Generator, x: Tensor, y: Tensor, f: int, size: int):
    n = int(rng.integers(2, 5))
    heading = float(rng.choice([-1.0, 1.0]))
    speeds = np.array([M.BIRD_SPEED_PX * PX * _jitter(rng) for _ in range(n)])
    rows = np.linspace(-0.75, 0.3, n) + rng.uniform(-0.08, 0.08, n)
    starts = -heading * rng.uniform(0.45, 1.0, n)
    bird_x = _tensor(starts)[:, None] + heading * _tensor(speeds)[:, None] * _frames(f)  # (n, f)
    alphas = []
    # each bird: a dark body ellipse plus wider, thinner wings just above it
    for half_x, half_y, lift in ((3.0, 1.6, 0.0), (4.5, 0.9, 1.0)):
        boxes = _ellipses(half_x * PX, half_y * PX, n)
        boxes["centre_x"] = bird_x[..., None]
        boxes["centre_y"] = _tensor(rows - lift * PX)[:, None, None]
        alphas.append(rounded_box_alpha(x, y, boxes, 0.5 * PX))
    premultiplied, alpha = _one_colour(torch.maximum(*alphas), [0.06, 0.05, 0.08])
    params = {
        "speed_px": float(speeds.mean() * size / 2),
        "direction": [heading, 0.0],
        "count": n,
        "rows_px": [float((r + 1) * size / 2) for r in rows],
    }
    return premultiplied, alpha, params


def clouds(rng: np.random.Generator, x: Tensor, y: Tensor, f: int, size: int):
    n = int(rng.integers(3, 5))
    heading = float(rng.choice([-1.0, 1.0]))
    speed = M.CLOUD_SPEED_PX * PX * _jitter(rng)
    # separate puffs spread beyond the view, each a grey body with a bright crown: the gaps and
    # the crown give the flow edges to follow (a uniform soft layer would show no flow)
    x0 = -1.7 + 3.4 * (np.arange(n) + rng.uniform(0.3, 0.7, n)) / n
    y0 = rng.uniform(-0.75, -0.4, n)
    radii = rng.uniform(0.2, 0.28, n)
    drift = heading * speed * _frames(f)
    premultiplied, transmit = torch.zeros(f, x.shape[-1], 3), torch.ones(f, x.shape[-1], 1)
    for scale, lift, grey in ((1.0, 0.0, rng.uniform(0.68, 0.8)), (0.55, 0.35, 1.0)):
        boxes = _disks(1.0, n)
        r = _tensor(scale * radii)[:, None, None]
        boxes.update(half_x=r, half_y=r, radius=r, stretch_x=boxes["cos"] / 1.5)  # 1.5x wider than tall
        boxes["centre_x"] = (_tensor(x0)[:, None] + drift)[..., None]
        boxes["centre_y"] = _tensor(y0 - lift * radii)[:, None, None]
        alpha = 0.85 * (1.0 - torch.prod(1.0 - rounded_box_alpha(x, y, boxes, 0.8 * PX), dim=0)).unsqueeze(-1)
        premultiplied = premultiplied * (1 - alpha) + alpha * _tensor([grey, grey, min(1.0, grey + 0.04)])
        transmit = transmit * (1 - alpha)
    params = {
        "speed_px": speed * size / 2,
        "direction": [heading, 0.0],
        "region": {"y_max_px": float((y0.max() + radii.max() + 1) * size / 2)},
    }
    return premultiplied, 1.0 - transmit, params


LOCAL_LAYERS = {"rain": rain, "waterfall": waterfall, "firework": firework, "birds": birds, "clouds": clouds}
