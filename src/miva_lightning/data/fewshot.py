"""`FewShotMotionDataModule`: a handful of clips of one (or a few) motions, for MIVA training.

Two sources with one batch format:
- `source="folder"`: a LAMP-layout folder `<root>/<motion>/<clip>.{mp4,gif,...}` or
  `<root>/<motion>/<clip>/*.png|jpg`.
- `source="motion_world"`: clips rendered in memory by `miva_lightning.world` (no files).

Batches: `{"video": b f c h w float32 [0, 1], "motion": [str], "caption": [str], "path": [str]}`.
Training items start at a random frame and may be flipped; validation items start at frame 0
and are never flipped. Both are fixed by `seed` and fresh every epoch (see clip_dataset.py).
"""

from __future__ import annotations

import logging
from typing import Sequence

import lightning as L
from torch.utils.data import DataLoader

from miva_lightning.data.clip_dataset import EpochSampler, FewShotClipDataset, train_val_datasets
from miva_lightning.data.clip_sources import (
    ClipEntry,
    folder_clip_entries,
    motion_names,
    motion_world_clip_entries,
    shuffled_by_motion,
)
from miva_lightning.data.readers.sampling import OVERSIZE_CHOICES, frames_needed
from miva_lightning.data.video_io import BACKENDS

log = logging.getLogger(__name__)

SOURCES = ("folder", "motion_world")


class FewShotMotionDataModule(L.LightningDataModule):
    def __init__(
        self,
        source: str = "folder",
        root: str | None = None,
        motion: str | Sequence[str] | None = None,
        num_frames: int = 16,
        stride: int = 1,
        height: int = 32,
        width: int = 32,
        flip_p: float = 0.0,
        max_clips: int | None = 10,
        val_fraction: float = 0.0,
        num_val: int | None = None,
        batch_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
        cache: bool = True,
        backend: str = "auto",
        max_pixels: int | None = 3840 * 2160,
        oversize: str = "downscale",
        decode_timeout_s: float = 60.0,
        on_error: str = "raise",
        shrink_stride: bool = True,
        captions: dict[str, str] | None = None,
        world_clips_per_motion: int = 10,
        world_size: int | None = None,
        world_num_frames: int | None = None,
        world_split: str = "train",
    ):
        """`motion`: one name, a list, or None for every motion folder (folder source).
        `max_clips`: training clips per motion (taken after the validation clips are set
        aside); both splits hold usable clips only. `on_error`: "raise" reads every clip and
        raises one error naming all the bad ones; "skip" warns for each bad clip and takes the
        next one in the seeded order instead (see `train_val_datasets`). `shrink_stride`: a clip
        too short for `stride` is read at the largest stride that fits, with a warning naming it
        (False: refused like a clip shorter than `num_frames`, which always is). `world_*`: the
        motion-world source renders `world_clips_per_motion` clips per motion of `world_size`
        pixels (default: max(height, width)) and `world_num_frames` frames (default: exactly
        what num_frames and stride need)."""
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if source == "folder" and root is None:
            raise ValueError("source='folder' needs root=<folder laid out as <root>/<motion>/<clips>>")
        if source == "motion_world" and motion is None:
            raise ValueError("source='motion_world' needs motion=<name or list of names> from miva_lightning.world")
        if num_frames < 1 or stride < 1:
            raise ValueError(f"num_frames and stride must be >= 1, got num_frames={num_frames}, stride={stride}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if oversize not in OVERSIZE_CHOICES:
            raise ValueError(f"oversize must be one of {OVERSIZE_CHOICES}, got {oversize!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self.save_hyperparameters(logger=False)
        self.motions = motion_names(motion)
        self.train_set: FewShotClipDataset | None = None
        self.val_set: FewShotClipDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        hp = self.hparams
        self.train_set, self.val_set = train_val_datasets(
            shuffled_by_motion(self._entries(), hp.seed),
            max_clips=hp.max_clips,
            val_fraction=hp.val_fraction,
            num_val=hp.num_val,
            flip_p=hp.flip_p,
            on_error=hp.on_error,
            shrink_stride=hp.shrink_stride,
            num_frames=hp.num_frames,
            stride=hp.stride,
            height=hp.height,
            width=hp.width,
            seed=hp.seed,
            cache=hp.cache,
            read_options=dict(
                backend=hp.backend, max_pixels=hp.max_pixels, oversize=hp.oversize, timeout_s=hp.decode_timeout_s
            ),
        )
        log.info("few-shot data: %d training clips %s, %d validation clips", len(self.train_set), self.clip_paths("train"), len(self.val_set))

    def _entries(self) -> list[ClipEntry]:
        hp = self.hparams
        if hp.source == "folder":
            return folder_clip_entries(hp.root, self.motions, captions=hp.captions, on_error=hp.on_error)
        return motion_world_clip_entries(
            self.motions,
            clips_per_motion=hp.world_clips_per_motion,
            size=hp.world_size or max(hp.height, hp.width),
            num_frames=hp.world_num_frames or frames_needed(hp.num_frames, hp.stride),
            split=hp.world_split,
            seed=hp.seed,
        )

    def clip_paths(self, split: str = "train") -> list[str]:
        """Which clips each split uses (log them next to results)."""
        dataset = self.train_set if split == "train" else self.val_set
        return [entry.path for entry in dataset.entries]

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, shuffle=False) if len(self.val_set) else []

    def _loader(self, dataset: FewShotClipDataset, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        hp = self.hparams
        return DataLoader(
            dataset,
            batch_size=hp.batch_size,
            sampler=EpochSampler(dataset, shuffle=shuffle, seed=hp.seed),
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
            drop_last=False,
        )
