"""Torch datasets of world clips: a fixed map-style set and an endless training stream."""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from miva_lightning.world import motions as M
from miva_lightning.world.clips import HELDOUT_SEED_START, heldout_scene_seeds, render_clip, training_scene_seeds

SPLITS = ("train", "heldout")


def _check_motions(motions: Sequence[str]) -> tuple[str, ...]:
    if isinstance(motions, str):
        raise TypeError(f"motions must be a sequence of names, got the string {motions!r}; wrap it in a list")
    if len(motions) == 0:
        raise ValueError("motions is empty; pass e.g. world.BASE_MOTIONS")
    for motion in motions:
        M.check_motion(motion)
    return tuple(motions)


def clip_item(motion: str, scene_seed: int, motion_seed: int | None, size: int, num_frames: int) -> dict:
    clip = render_clip(motion, scene_seed, motion_seed, size=size, num_frames=num_frames)
    return {
        "video": clip.video,
        "motion": motion,
        "motion_id": M.motion_id(motion),
        "caption": clip.caption,
        "scene_seed": scene_seed,
    }


class MotionWorldDataset(Dataset):
    """`clips_per_motion` clips of each motion, item i = motion i // clips_per_motion.

    split="train" draws scene seeds below HELDOUT_SEED_START (independent per clip);
    split="heldout" uses `heldout_scene_seeds(clips_per_motion, seed)`, the SAME first frames for
    every motion, so classes are compared on identical scenes. Items are dicts with `video`
    (f c h w float32 in [0, 1]), `motion`, `motion_id` (index in ALL_MOTIONS), `caption`, `scene_seed`.
    """

    def __init__(
        self,
        motions: Sequence[str],
        clips_per_motion: int,
        size: int = 32,
        num_frames: int = 8,
        split: str = "train",
        seed: int = 0,
    ):
        if split not in SPLITS:
            raise ValueError(f"split={split!r}; use one of {SPLITS}")
        if clips_per_motion < 1:
            raise ValueError(f"clips_per_motion={clips_per_motion}; use at least 1")
        self.motions = _check_motions(motions)
        self.clips_per_motion, self.size, self.num_frames, self.split = clips_per_motion, size, num_frames, split
        if split == "heldout":
            shared = heldout_scene_seeds(clips_per_motion, seed)
            self.scene_seeds = [shared for _ in self.motions]
        else:
            flat = training_scene_seeds(len(self.motions) * clips_per_motion, seed)
            self.scene_seeds = [flat[i * clips_per_motion : (i + 1) * clips_per_motion] for i in range(len(self.motions))]

    def __len__(self) -> int:
        return len(self.motions) * self.clips_per_motion

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        m, j = divmod(index, self.clips_per_motion)
        return clip_item(self.motions[m], self.scene_seeds[m][j], None, self.size, self.num_frames)


def _probabilities(motions: tuple[str, ...], weights: Mapping[str, float]) -> np.ndarray:
    values = np.array([float(weights.get(motion, 1.0)) for motion in motions])
    if not np.all(np.isfinite(values)) or np.any(values < 0) or values.sum() <= 0:
        raise ValueError(f"motion weights {dict(weights)} must be finite, >= 0 and not all 0 (1 = the uniform share)")
    return values / values.sum()


class MotionWorldStream(IterableDataset):
    """Fresh random training clips forever (uniform over `motions` unless `weights`, training scene seeds only).

    Deterministic from `seed`; each DataLoader worker draws its own stream (seeded by its id), so
    workers never repeat each other. `captions` replaces the caption of some motions (web-like
    pretraining gives the in-prior motions one generic caption, see world/motions.py). `weights` makes some
    motions more frequent (relative weights, 1 for motions not named; None keeps the uniform draw, whose
    stream is then the same as before weights existed).
    """

    def __init__(
        self,
        motions: Sequence[str],
        size: int = 32,
        num_frames: int = 8,
        seed: int = 0,
        captions: Mapping[str, str] | None = None,
        weights: Mapping[str, float] | None = None,
    ):
        self.motions = _check_motions(motions)
        self.size, self.num_frames, self.seed = size, num_frames, seed
        self.captions = dict(captions or {})
        for what, named in (("captions", self.captions), ("weights", weights or {})):
            unknown = sorted(set(named) - set(self.motions))
            if unknown:
                raise ValueError(f"{what} given for motions {unknown} that are not in the stream's motions {self.motions}")
        self.probabilities = None if not weights else _probabilities(self.motions, weights)

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        rng = np.random.default_rng([self.seed, worker, 0x57AEA])
        while True:
            yield self.draw(rng)

    def draw(self, rng: np.random.Generator) -> dict:
        """One fresh clip: a motion (uniform, or by `weights`), a training scene seed, a random motion seed, from `rng`."""
        if self.probabilities is None:
            motion = self.motions[int(rng.integers(len(self.motions)))]
        else:
            motion = self.motions[int(rng.choice(len(self.motions), p=self.probabilities))]
        scene_seed = int(rng.integers(0, HELDOUT_SEED_START))
        motion_seed = int(rng.integers(0, 2**32))
        item = clip_item(motion, scene_seed, motion_seed, self.size, self.num_frames)
        item["caption"] = self.captions.get(motion, item["caption"])
        return item


class MotionWorldClips(Dataset):
    """The first `num_clips` draws of a stream's distribution as a map-style dataset: item i is
    `stream.draw` from a generator seeded by (stream.seed, i) alone, so `StepKeyedBatches` can resume it
    exactly. With num_clips = steps x batch every training clip is fresh (the `large_data` method)."""

    def __init__(self, stream: MotionWorldStream, num_clips: int):
        if num_clips < 1:
            raise ValueError(f"num_clips={num_clips}; use at least 1")
        self.stream, self.num_clips = stream, int(num_clips)

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_clips:
            raise IndexError(f"index {index} out of range for {self.num_clips} clips")
        return self.stream.draw(np.random.default_rng([self.stream.seed, index, 0xC11B5]))
