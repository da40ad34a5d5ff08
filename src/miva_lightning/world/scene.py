"""Smooth procedural scenes, defined as continuous functions on the whole plane.

A scene is sampled at arbitrary coordinates, so a camera motion is rendered EXACTLY by sampling the
scene at transformed coordinates (no resampling of pixels, no borders to fill).
Coordinates are normalised: the image spans [-1, 1] in x (right) and y (down); one pixel is
2 / size units, so a scene looks the same at every size.

Layers (painted back to front): a soft two-colour background gradient, two low-frequency colour
octaves (sums of plane waves), then soft-edged shapes of distinct colours (disks, ellipses, rounded
rectangles): 3-6 inside the view, plus a few beyond it that pans and zoom-outs reveal.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

EDGE_SOFTNESS = 0.04  # logistic edge width in normalised units (0.64 px at 32 px)


SHAPE_COLUMNS = ("centre_x", "centre_y", "cos", "sin", "stretch_x", "stretch_y", "half_x", "half_y", "radius")
CULL_EDGES = 12.0  # a shape farther than this many edge widths from every sampled point is skipped
# (its coverage there is below sigmoid(-12) = 6e-6, so skipping it changes no value by more than that)


@dataclass(frozen=True)
class SceneSpec:
    """All random draws of one scene."""

    gradient_colours: Tensor  # (2, 3) start and end colour
    gradient_direction: Tensor  # (2,) unit vector times sharpness
    wave_frequencies: Tensor  # (k, 2) radians per unit
    wave_phases: Tensor  # (k,)
    wave_colours: Tensor  # (k, 3) colour amplitude of each wave
    shapes: np.ndarray  # (s, 9) float32, columns SHAPE_COLUMNS, painted in row order
    shape_colours: np.ndarray  # (s, 3) float32
    shape_reach: np.ndarray  # (s,) distance from the centre beyond which a shape's coverage is ~0


def distinct_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """n saturated colours with evenly spaced hues (random offset), so shapes are told apart."""
    offset = rng.uniform()
    colours = []
    for i in range(n):
        hue = (offset + i / n + rng.uniform(-0.04, 0.04)) % 1.0
        colours.append(colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 0.95), rng.uniform(0.55, 1.0)))
    return np.asarray(colours)


def _random_shapes(rng: np.random.Generator, n: int, centre_low: float, centre_high: float):
    """Shape parameters; centres at radius in [centre_low, centre_high] (max-norm) from the origin."""
    centres, stretch, half, corner = [], [], [], []
    for _ in range(n):
        while True:
            c = rng.uniform(-centre_high, centre_high, size=2)
            if np.abs(c).max() >= centre_low:
                break
        centres.append(c)
        kind = rng.integers(3)
        if kind == 0:  # disk
            r = rng.uniform(0.18, 0.34)
            stretch.append((1.0, 1.0)), half.append((r, r)), corner.append(r)
        elif kind == 1:  # ellipse: a disk of radius m in coordinates stretched by (m/a, m/b)
            a, b = rng.uniform(0.2, 0.42), rng.uniform(0.12, 0.24)
            m = min(a, b)
            stretch.append((m / a, m / b)), half.append((m, m)), corner.append(m)
        else:  # rounded rectangle
            a, b = rng.uniform(0.16, 0.4), rng.uniform(0.14, 0.32)
            stretch.append((1.0, 1.0)), half.append((a, b)), corner.append(rng.uniform(0.03, 0.6) * min(a, b))
    return centres, stretch, half, corner


def make_scene(scene_seed: int) -> SceneSpec:
    """Draw a scene from its seed (deterministic: numpy's PCG64 stream of `scene_seed`)."""
    rng = np.random.default_rng([scene_seed, 0x5CE7E])
    c_start, c_end = rng.uniform(0.15, 0.85, size=3), rng.uniform(0.15, 0.85, size=3)
    angle = rng.uniform(0, 2 * math.pi)
    direction = np.array([math.cos(angle), math.sin(angle)]) * rng.uniform(1.0, 2.0)

    # two octaves of three plane waves each: ~0.5-0.8 and ~1-1.6 cycles per image width
    freqs, phases, wave_colours = [], [], []
    for cycles, amplitude in ((0.3, 0.10), (0.65, 0.06)):
        for _ in range(3):
            theta = rng.uniform(0, 2 * math.pi)
            f = 2 * math.pi * cycles * rng.uniform(0.8, 1.25)
            freqs.append((f * math.cos(theta), f * math.sin(theta)))
            phases.append(rng.uniform(0, 2 * math.pi))
            wave_colours.append(rng.normal(0, amplitude, size=3))

    n_inner, n_outer = int(rng.integers(3, 7)), int(rng.integers(4, 8))
    outer = _random_shapes(rng, n_outer, 1.05, 2.0)
    inner = _random_shapes(rng, n_inner, 0.0, 0.75)
    centres, stretch, half, corner = (o + i for o, i in zip(outer, inner))  # outer painted first
    colours = np.concatenate([distinct_colours(rng, n_outer), distinct_colours(rng, n_inner)])
    rot = rng.uniform(0, 2 * math.pi, size=len(centres))

    def t(x) -> Tensor:
        return torch.as_tensor(np.asarray(x), dtype=torch.float32)

    stretch, half, corner = np.asarray(stretch), np.asarray(half), np.asarray(corner)
    shapes = np.column_stack([np.asarray(centres), np.cos(rot), np.sin(rot), stretch, half, corner])
    reach = (half / stretch).max(axis=1) + CULL_EDGES * EDGE_SOFTNESS / stretch.min(axis=1)
    return SceneSpec(
        gradient_colours=t([c_start, c_end]),
        gradient_direction=t(direction),
        wave_frequencies=t(freqs),
        wave_phases=t(phases),
        wave_colours=t(wave_colours),
        shapes=shapes.astype(np.float32),
        shape_colours=colours.astype(np.float32),
        shape_reach=reach.astype(np.float32),
    )


def rounded_box_alpha(x: Tensor, y: Tensor, boxes: dict[str, Tensor], softness: float) -> Tensor:
    """Soft coverage of rotated, stretched rounded boxes (disks and ellipses are special cases).

    x, y: point coordinates; every entry of `boxes` (centre_x, centre_y, cos, sin, stretch_x,
    stretch_y, half_x, half_y, radius) broadcasts against them, e.g. points (n,) and boxes (s, 1)
    give (s, n). Exact signed distance of a rounded box, then a logistic edge of width `softness`.
    Layout is box-major so every op runs on contiguous rows (3x faster than point-major here).
    """
    dx, dy = x - boxes["centre_x"], y - boxes["centre_y"]
    cos, sin, radius = boxes["cos"], boxes["sin"], boxes["radius"]
    qx = ((cos * dx + sin * dy) * boxes["stretch_x"]).abs_().sub_(boxes["half_x"] - radius)
    qy = ((cos * dy - sin * dx) * boxes["stretch_y"]).abs_().sub_(boxes["half_y"] - radius)
    inside = torch.maximum(qx, qy).clamp_(max=0)
    outside = torch.hypot(qx.clamp_(min=0), qy.clamp_(min=0))
    return torch.sigmoid(outside.add_(inside).sub_(radius).mul_(-1.0 / softness))


def sample_scene(spec: SceneSpec, xy: Tensor) -> Tensor:
    """Scene colour (..., 3) in [0, 1] at normalised points xy (..., 2)."""
    x, y = xy[..., 0].reshape(-1), xy[..., 1].reshape(-1)
    direction = spec.gradient_direction
    ramp = torch.sigmoid(x * direction[0] + y * direction[1])
    start, end = spec.gradient_colours
    colour = start[:, None] + (end - start)[:, None] * ramp  # (3, n)
    f = spec.wave_frequencies
    waves = torch.sin(f[:, :1] * x + f[:, 1:] * y + spec.wave_phases[:, None])  # (k, n)
    colour = colour + spec.wave_colours.T @ waves
    # skip shapes that cannot reach any sampled point (most of the off-view ones)
    low = torch.stack([x.min(), y.min()]).numpy()
    high = torch.stack([x.max(), y.max()]).numpy()
    centres, reach = spec.shapes[:, :2], spec.shape_reach[:, None]
    visible = ((centres > low - reach) & (centres < high + reach)).all(axis=1)
    if visible.any():
        rows = torch.from_numpy(spec.shapes[visible]).T[:, :, None]  # (9, s, 1)
        boxes = dict(zip(SHAPE_COLUMNS, rows))
        alphas = rounded_box_alpha(x, y, boxes, EDGE_SOFTNESS)  # (s, n)
        for alpha, shape_colour in zip(alphas, torch.from_numpy(spec.shape_colours[visible])):
            colour.lerp_(shape_colour[:, None].expand_as(colour), alpha)  # paint back to front
    return colour.clamp_(0.0, 1.0).T.reshape(*xy.shape[:-1], 3)


@functools.lru_cache(maxsize=16)
def pixel_grid(size: int) -> Tensor:
    """Normalised pixel-centre coordinates (h, w, 2) as (x, y), x right and y down (cached: do not modify)."""
    axis = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([x, y], dim=-1)
