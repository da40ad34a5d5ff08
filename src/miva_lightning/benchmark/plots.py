"""The reports' figures: accuracy with intervals per method and split, accuracy against trainable parameters,
and a GIF grid (methods x motions) of the first held-out video of every cell (the same first frame everywhere);
for the ablation report, each ablation's paired delta to MIVA and the few-shot / budget curves.

matplotlib (Agg, no display) is imported here only, so the cells and the tables never need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from miva_lightning.utils import atomic_path

SPLIT_STYLE = {"in_prior": ("tab:blue", "o"), "held_out": ("tab:orange", "s"), "captioned": ("tab:green", "^")}
TILE_SCALE = 3  # 32 px tiles are tiny: nearest-neighbour upscaling keeps their pixels honest


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, bbox_inches="tight")
    _pyplot().close(figure)
    return path


def _error(row: dict[str, Any]) -> list[float]:
    low, high = row["accuracy_ci"]
    return [row["accuracy"] - low, high - row["accuracy"]]


def accuracy_by_split(summary: Sequence[dict[str, Any]], path: Path) -> Path:
    """Pooled accuracy with its Wilson 95 % interval, one marker per split, methods along x."""
    plt = _pyplot()
    rows = [r for r in summary if r["accuracy"] is not None]
    methods = list(dict.fromkeys(r["method"] for r in summary))
    splits = list(dict.fromkeys(r["split"] for r in rows))
    figure, axes = plt.subplots(figsize=(1.3 * max(len(methods), 3) + 1, 3.6))
    for index, split in enumerate(splits):
        color, marker = SPLIT_STYLE.get(split, ("tab:gray", "d"))
        chosen = [r for r in rows if r["split"] == split]
        x = [methods.index(r["method"]) + (index - (len(splits) - 1) / 2) * 0.18 for r in chosen]
        errors = list(zip(*[_error(r) for r in chosen])) if chosen else [[], []]
        axes.errorbar(x, [r["accuracy"] for r in chosen], yerr=errors, fmt=marker, color=color, capsize=3, label=split)
    axes.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    axes.set_ylim(-0.03, 1.03)
    axes.set_ylabel("judged motion accuracy")
    axes.set_title("Table 2: accuracy per method and split (Wilson 95 %)")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(frameon=False)
    return _save(figure, path)


def accuracy_vs_params(summary: Sequence[dict[str, Any]], path: Path) -> Path:
    """Accuracy against trainable parameters (symlog x: the prompted base trains none)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 3.8))
    for split in dict.fromkeys(r["split"] for r in summary):
        color, marker = SPLIT_STYLE.get(split, ("tab:gray", "d"))
        rows = [r for r in summary if r["split"] == split and r["accuracy"] is not None]
        if not rows:
            continue
        params = [r["trainable_params"] or 0 for r in rows]
        errors = list(zip(*[_error(r) for r in rows]))
        axes.errorbar(params, [r["accuracy"] for r in rows], yerr=errors, fmt=marker, color=color, capsize=3, label=split)
        for p, r in zip(params, rows):
            axes.annotate(r["method"], (p, r["accuracy"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axes.set_xscale("symlog", linthresh=1)  # 0 (the prompted base) stays on the axis
    axes.set_ylim(-0.03, 1.03)
    axes.set_xlabel("trainable parameters")
    axes.set_ylabel("judged motion accuracy")
    axes.grid(alpha=0.3)
    axes.legend(frameon=False)
    return _save(figure, path)


def _label(text: str, width: int, height: int):
    import numpy as np
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).text((2, max(0, height // 2 - 6)), text, fill="black")
    return np.asarray(image)


def gif_grid(cells: Sequence[dict[str, Any]], path: Path, fps: float = 4.0) -> Path | None:
    """Rows: methods; columns: motions; each tile the lowest seed's sample GIF (blank when missing)."""
    import imageio.v3 as iio
    import numpy as np

    methods = list(dict.fromkeys(c["method"] for c in cells))
    splits = list(SPLIT_STYLE)  # in_prior, held_out, captioned: the table's order
    by_split = sorted(cells, key=lambda c: (splits.index(c["split"]) if c["split"] in splits else len(splits), c["motion"]))
    motions = list(dict.fromkeys(c["motion"] for c in by_split))
    clips: dict[tuple[str, str], Any] = {}
    for cell in sorted(cells, key=lambda c: int(c["seed"])):
        gif = cell.get("sample_gif")
        key = (cell["method"], cell["motion"])
        if key not in clips and cell["status"] == "ok" and gif and Path(gif).is_file():
            clips[key] = np.asarray(iio.imread(gif, index=None))[..., :3]
    if not clips:
        return None
    frames, tile_h, tile_w = (max(len(c) for c in clips.values()), *next(iter(clips.values())).shape[1:3])
    tile_h, tile_w = tile_h * TILE_SCALE, tile_w * TILE_SCALE
    label_w, label_h = 90, 14
    grid = np.full((frames, label_h + len(methods) * tile_h, label_w + len(motions) * tile_w, 3), 255, np.uint8)
    for j, motion in enumerate(motions):
        grid[:, :label_h, label_w + j * tile_w : label_w + (j + 1) * tile_w] = _label(motion, tile_w, label_h)
    for i, method in enumerate(methods):
        top = label_h + i * tile_h
        grid[:, top : top + tile_h, :label_w] = _label(method, label_w, tile_h)
        for j, motion in enumerate(motions):
            clip = clips.get((method, motion))
            if clip is None:
                continue
            clip = clip.repeat(TILE_SCALE, axis=1).repeat(TILE_SCALE, axis=2)
            clip = np.concatenate([clip, np.repeat(clip[-1:], frames - len(clip), axis=0)])  # hold the last frame
            grid[:, top : top + tile_h, label_w + j * tile_w : label_w + (j + 1) * tile_w] = clip
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, grid, extension=".gif", duration=1000 / fps, loop=0)
    return path


def ablation_deltas(summary: Sequence[dict[str, Any]], reference: str, path: Path) -> Path:
    """Each ablation's accuracy delta to the reference with its paired 95 % interval, a marker per motion."""
    plt = _pyplot()
    rows = [r for r in summary if r["ablation"] != reference and r["delta_vs_miva"] is not None]
    labels = list(dict.fromkeys(r["ablation"] for r in rows))
    motions = list(dict.fromkeys(r["motion"] for r in rows))
    figure, axes = plt.subplots(figsize=(6.0, 0.32 * max(len(labels), 4) + 1.2))
    for index, motion in enumerate(motions):
        chosen = [r for r in rows if r["motion"] == motion]
        y = [labels.index(r["ablation"]) + (index - (len(motions) - 1) / 2) * 0.2 for r in chosen]
        deltas = [r["delta_vs_miva"] for r in chosen]
        errors = [[d - r["delta_ci"][0] for d, r in zip(deltas, chosen)], [r["delta_ci"][1] - d for d, r in zip(deltas, chosen)]]
        style = "ko" if motion == "all" else "o"
        axes.errorbar(deltas, y, xerr=errors, fmt=style, capsize=2, markersize=4, label=motion)
    axes.axvline(0.0, color="gray", linewidth=0.8)
    axes.set_yticks(range(len(labels)), labels)
    axes.invert_yaxis()
    axes.set_xlim(-1.05, 1.05)
    axes.set_xlabel(f"accuracy - {reference} (paired per clip, 95 % bootstrap)")
    axes.grid(axis="x", alpha=0.3)
    axes.legend(frameon=False, fontsize=7)
    return _save(figure, path)


def curve_panels(curve_data: dict[str, Any], path: Path) -> Path:
    """Accuracy (Wilson 95 %) vs training clips and vs optimizer steps, a line per method."""
    plt = _pyplot()
    panels = [(name, axis) for name, axis in (("fewshot", "num_clips"), ("budget", "steps")) if curve_data[name]]
    figure, all_axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for axes, (name, axis) in zip(all_axes[0], panels):
        for method, points in curve_data[name].items():
            x = [p[axis] for p in points]
            y = [p["accuracy"] for p in points]
            errors = [[a - p["accuracy_ci"][0] for a, p in zip(y, points)], [p["accuracy_ci"][1] - a for a, p in zip(y, points)]]
            axes.errorbar(x, y, yerr=errors, marker="o", capsize=3, label=method)
        axes.set_xscale("log")
        axes.set_xticks(sorted({p[axis] for pts in curve_data[name].values() for p in pts}))
        axes.get_xaxis().set_major_formatter(plt.matplotlib.ticker.ScalarFormatter())
        axes.set_ylim(-0.03, 1.03)
        axes.set_xlabel("training clips" if name == "fewshot" else "optimizer steps")
        axes.set_ylabel("judged motion accuracy")
        fixed = f"{curve_data['fewshot_steps']} steps" if name == "fewshot" else f"{curve_data['budget_clips']} clips"
        axes.set_title(f"{', '.join(curve_data['motions'])} ({fixed})", fontsize=9)
        axes.grid(alpha=0.3)
        axes.legend(frameon=False)
    return _save(figure, path)
