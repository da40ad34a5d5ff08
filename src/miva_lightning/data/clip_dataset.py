"""A map-style dataset of few-shot clips with epoch-fresh, seed-deterministic augmentation.

Randomness per item comes from (seed, epoch, index), never from worker seeds: the same seed
gives the same batches, and every epoch draws new start frames and flips (with
`seed_everything(workers=True)` alone, persistent workers can repeat one epoch's choices).
The epoch reaches the workers inside the sampled keys: `EpochSampler` yields
`(index, epoch)` pairs, and Lightning calls its `set_epoch` at the start of every epoch.
"""

from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

from miva_lightning.data.clip_sources import ClipEntry
from miva_lightning.data.readers import VideoReadError
from miva_lightning.data.readers.sampling import frames_needed, too_short
from miva_lightning.data.transforms import resize_and_center_crop, to_float, to_uint8


class FewShotClipDataset(Dataset):
    """Items: `{"video": f c h w float32 [0, 1], "motion": str, "caption": str, "path": str}`.

    `cache=True` decodes each clip once (resized and cropped, kept as uint8) when the dataset is
    built; `cache=False` reads only the sampled frames on every access.
    """

    def __init__(
        self,
        entries: list[ClipEntry],
        num_frames: int,
        stride: int = 1,
        height: int = 32,
        width: int = 32,
        train: bool = True,
        flip_p: float = 0.0,
        seed: int = 0,
        cache: bool = True,
        read_options: dict | None = None,
        on_error: str = "raise",
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if not 0 <= flip_p <= 1:
            raise ValueError(f"flip_p must be in [0, 1], got {flip_p}")
        self.num_frames, self.stride, self.height, self.width = num_frames, stride, height, width
        self.train, self.flip_p, self.seed, self.cache = train, flip_p, seed, cache
        self.read_options = dict(read_options or {})
        self.needed = frames_needed(num_frames, stride)
        self.entries: list[ClipEntry] = []
        self.frame_counts: list[int] = []
        self.cached: list[torch.Tensor] = []  # uint8 f c h w per clip, when caching
        for entry in entries:
            try:
                self._admit(entry)
            except VideoReadError as error:
                if on_error == "raise":
                    raise
                warnings.warn(f"skipping clip: {error}", stacklevel=2)

    def _admit(self, entry: ClipEntry) -> None:
        if self.cache:
            video = entry.load(**self.read_options)
            total = video.shape[0]
        else:
            total = entry.count(timeout_s=self.read_options.get("timeout_s", 60.0))
        if total < self.needed:
            raise too_short(entry.path, total, self.num_frames, self.stride, 0)
        if self.cache:
            self.cached.append(to_uint8(resize_and_center_crop(video, self.height, self.width)))
        self.entries.append(entry)
        self.frame_counts.append(total)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        entry = self.entries[index]
        generator = torch.Generator().manual_seed(_item_seed(self.seed, epoch, index))
        latest_start = self.frame_counts[index] - self.needed
        start = int(torch.randint(latest_start + 1, (1,), generator=generator)) if self.train else 0
        flip = self.train and float(torch.rand((), generator=generator)) < self.flip_p
        if self.cache:
            video = to_float(self.cached[index][start : start + self.needed : self.stride])
        else:
            raw = entry.load(num_frames=self.num_frames, stride=self.stride, start=start, **self.read_options)
            video = resize_and_center_crop(raw, self.height, self.width)
        if flip:
            video = video.flip(-1)
        return {"video": video.contiguous(), "motion": entry.motion, "caption": entry.caption, "path": entry.path}


def _item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class EpochSampler(DistributedSampler):
    """Yields `(index, epoch)`; shuffles with (seed, epoch); shards across DDP ranks itself.

    Subclassing DistributedSampler keeps Lightning from wrapping it (the wrapper would hide
    `set_epoch` from this sampler).
    """

    def __init__(
        self,
        dataset: Dataset,
        shuffle: bool,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        """`num_replicas` / `rank` default to the initialised process group (1 / 0 without one)."""
        distributed = dist.is_available() and dist.is_initialized()
        super().__init__(
            dataset,
            num_replicas=num_replicas if num_replicas is not None else (dist.get_world_size() if distributed else 1),
            rank=rank if rank is not None else (dist.get_rank() if distributed else 0),
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((index, self.epoch) for index in super().__iter__())
