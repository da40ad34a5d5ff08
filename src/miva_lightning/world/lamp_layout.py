"""Write world clips in the LAMP folder layout: <root>/<motion>/<i>.mp4 plus params.json."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from miva_lightning.utils import atomic_write_json
from miva_lightning.world.clips import render_clip
from miva_lightning.world.datasets import MotionWorldDataset


def write_lamp_layout(
    root: str | os.PathLike,
    motions: Sequence[str],
    clips_per_motion: int,
    size: int = 32,
    num_frames: int = 8,
    seed: int = 0,
    split: str = "train",
    fps: float = 8,
) -> dict[str, list[Path]]:
    """Render `clips_per_motion` clips per motion and write them as videos with ground truth.

    `<root>/<motion>/params.json` lists, per clip file, its caption, scene seed and ground-truth
    motion parameters (see `render_clip`). Returns the written video paths per motion.
    """
    from miva_lightning.data.video_io import write_video  # imported late: the data package is heavier

    dataset = MotionWorldDataset(motions, clips_per_motion, size=size, num_frames=num_frames, split=split, seed=seed)
    written: dict[str, list[Path]] = {}
    for m, motion in enumerate(dataset.motions):
        folder = Path(root) / motion
        records, paths = [], []
        for i, scene_seed in enumerate(dataset.scene_seeds[m]):
            clip = render_clip(motion, scene_seed, size=size, num_frames=num_frames)
            path = write_video(folder / f"{i}.mp4", clip.video, fps=fps)
            paths.append(Path(path))
            records.append({"file": f"{i}.mp4", "caption": clip.caption, "scene_seed": scene_seed, "params": clip.params})
        atomic_write_json(
            folder / "params.json",
            {"motion": motion, "split": split, "seed": seed, "size": size, "num_frames": num_frames, "clips": records},
        )
        written[motion] = paths
    return written
