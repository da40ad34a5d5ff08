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
from miva_lightning.data.readers.errors import unusable_clips_error
from miva_lightning.data.readers.sampling import frames_needed, largest_stride_that_fits, too_short
from miva_lightning.data.transforms import resize_and_center_crop, to_float, to_uint8


class FewShotClipDataset(Dataset):
    """Items: `{"video": f c h w float32 [0, 1], "motion": str, "caption": str, "path": str}`.

    `cache=True` decodes each clip once (resized and cropped, kept as uint8) when the dataset is
    built; `cache=False` reads only the sampled frames on every access.

    A clip with fewer than `(num_frames - 1) * stride + 1` frames is read at the largest stride that fits
    (at least 1), with one warning naming the file and that stride, as the authors' LAMP loader does
    (`shrink_stride=False`: refused instead). A clip shorter than `num_frames` is refused either way
    (`ClipTooShortError`; skipped with a warning under on_error="skip").
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
        shrink_stride: bool = True,
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if not 0 <= flip_p <= 1:
            raise ValueError(f"flip_p must be in [0, 1], got {flip_p}")
        self.num_frames, self.stride, self.height, self.width = num_frames, stride, height, width
        self.train, self.flip_p, self.seed, self.cache = train, flip_p, seed, cache
        self.read_options = dict(read_options or {})
        self.on_error = on_error
        self.shrink_stride = shrink_stride
        self.needed = frames_needed(num_frames, stride)
        self.entries: list[ClipEntry] = []
        self.frame_counts: list[int] = []
        self.strides: list[int] = []  # per clip: `stride`, or a smaller one for a short clip
        self.cached: list[torch.Tensor] = []  # uint8 f c h w per clip, when caching
        errors: list[VideoReadError] = []
        for entry in entries:
            checked = self.try_check(entry, errors)
            if checked is not None:
                self.add(entry, *checked)
        self.raise_if_needed(errors)

    def check(self, entry: ClipEntry) -> tuple[int, torch.Tensor | None, int]:
        """Read `entry` as this dataset will: `(frames it has, uint8 video to cache or None, stride)`.
        Raises `VideoReadError` naming the file when it cannot be used."""
        if self.cache:
            video = entry.load(**self.read_options)
            total = video.shape[0]
        else:
            total = entry.count(timeout_s=self.read_options.get("timeout_s", 60.0))
        stride = self.stride_for(entry, total)
        if not self.cache:  # count() decodes with PyAV: make sure the chosen backend reads it too
            entry.load(num_frames=self.num_frames, stride=stride, **self.read_options)
            return total, None, stride
        return total, to_uint8(resize_and_center_crop(video, self.height, self.width)), stride

    def stride_for(self, entry: ClipEntry, total: int) -> int:
        """The stride `entry` (with `total` frames) is read at: `self.stride`, or for a clip too short for it
        the largest that fits, with a warning; `ClipTooShortError` when `num_frames` do not fit at stride 1
        (or when shrinking is off)."""
        if total >= self.needed:
            return self.stride
        if not self.shrink_stride or total < self.num_frames:
            raise too_short(entry.path, total, self.num_frames, self.stride, 0)
        stride = largest_stride_that_fits(total, self.num_frames, self.stride)
        warnings.warn(
            f"{entry.path}: clip has {total} frames, fewer than the {self.needed} that num_frames={self.num_frames} "
            f"at stride={self.stride} needs; reading it at stride {stride}",
            stacklevel=2,
        )
        return stride

    def try_check(self, entry: ClipEntry, errors: list[VideoReadError]) -> tuple[int, torch.Tensor | None, int] | None:
        """`check(entry)`, or None after adding its error to `errors` (with a warning naming the
        file when skipping)."""
        try:
            return self.check(entry)
        except VideoReadError as error:
            errors.append(error)
            if self.on_error == "skip":
                warnings.warn(f"skipping clip: {error}", stacklevel=3)
            return None

    def raise_if_needed(self, errors: list[VideoReadError]) -> None:
        """With on_error='raise': one error naming every clip in `errors`."""
        if errors and self.on_error == "raise":
            raise unusable_clips_error(errors)

    def add(self, entry: ClipEntry, total: int, video: torch.Tensor | None, stride: int | None = None) -> None:
        self.entries.append(entry)
        self.frame_counts.append(total)
        self.strides.append(self.stride if stride is None else stride)
        if video is not None:
            self.cached.append(video)

    def __len__(self) -> int:
        return len(self.entries)

    def window_starts(self, index: int) -> int:
        """How many start frames clip `index` offers (its frames minus the window's, plus one)."""
        return self.frame_counts[index] - frames_needed(self.num_frames, self.strides[index]) + 1

    def draw(self, index: int, epoch: int) -> tuple[int, bool]:
        """`(start frame, flip)` of clip `index` in `epoch`: a pure function of (seed, epoch, index)."""
        generator = torch.Generator().manual_seed(_item_seed(self.seed, epoch, index))
        start = int(torch.randint(self.window_starts(index), (1,), generator=generator)) if self.train else 0
        flip = self.train and float(torch.rand((), generator=generator)) < self.flip_p
        return start, flip

    def clip_frames(self, index: int) -> torch.Tensor:
        """Every frame of clip `index` as items show them (resized, cropped): float `f c h w` in [0, 1]."""
        if self.cache:
            return to_float(self.cached[index])
        return resize_and_center_crop(self.entries[index].load(**self.read_options), self.height, self.width)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        entry = self.entries[index]
        stride = self.strides[index]
        needed = frames_needed(self.num_frames, stride)
        start, flip = self.draw(index, epoch)
        if self.cache:
            video = to_float(self.cached[index][start : start + needed : stride])
        else:
            raw = entry.load(num_frames=self.num_frames, stride=stride, start=start, **self.read_options)
            video = resize_and_center_crop(raw, self.height, self.width)
        if flip:
            video = video.flip(-1)
        return {"video": video.contiguous(), "motion": entry.motion, "caption": entry.caption, "path": entry.path}


def train_val_datasets(
    candidates: dict[str, list[ClipEntry]],
    max_clips: int | None,
    val_fraction: float = 0.0,
    num_val: int | None = None,
    flip_p: float = 0.0,
    on_error: str = "raise",
    **options,
) -> tuple[FewShotClipDataset, FewShotClipDataset]:
    """Per motion, fill the validation split (`num_val` clips, else `round(val_fraction * clips)`)
    and then the training split (at most `max_clips`) with usable clips, tried in `candidates`
    order (a seeded shuffle, so the same seed picks the same clips).

    Why clips are read while picking: taking `max_clips` names first and skipping the bad ones
    afterwards silently trained on fewer clips although good ones were left over. Here the next
    usable clip takes a bad one's place. With on_error="skip" each bad clip gets a warning naming
    it, clips past those needed are never read, and a motion left short gets one warning saying
    how many it found and why; with "raise" every clip is read and one error names all bad ones.
    `options` go to both `FewShotClipDataset`s.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    train = FewShotClipDataset([], train=True, flip_p=flip_p, on_error=on_error, **options)
    val = FewShotClipDataset([], train=False, flip_p=0.0, on_error=on_error, **options)
    errors: list[VideoReadError] = []
    for motion, clips in candidates.items():
        n_val = num_val if num_val is not None else round(val_fraction * len(clips))
        if n_val >= len(clips):
            raise ValueError(f"motion {motion!r} has {len(clips)} clips, so num_val/val_fraction leaves none to train on; lower them")
        n_train = len(clips) - n_val if max_clips is None else max_clips
        slots = [val] * n_val + [train] * min(n_train, len(clips))  # filled in this order
        bad_before = len(errors)
        for entry in clips:
            if not slots and on_error == "skip":
                break  # enough usable clips: the rest are never read
            checked = train.try_check(entry, errors)
            if checked is not None and slots:
                slots.pop(0).add(entry, *checked)
        bad = len(errors) - bad_before
        found = sum(entry.motion == motion for entry in train.entries)
        if bad and on_error == "skip" and 0 < found < n_train:  # none: the error below says so
            warnings.warn(
                f"motion {motion!r}: found {found} usable training clips of the {n_train} wanted "
                f"(max_clips={max_clips}{f', after {n_val} for validation' if n_val else ''}): {bad} of its "
                f"{len(clips)} clips cannot be used (each named in a warning above); training goes on with "
                f"{found}. Fix or replace those files to train on more.",
                stacklevel=2,
            )
    train.raise_if_needed(errors)
    for motion in candidates:
        if not any(entry.motion == motion for entry in train.entries):
            raise ValueError(
                f"every training clip of motion {motion!r} was skipped as unreadable or too short "
                "(see the warnings); fix the clips or lower num_frames/stride"
            )
    return train, val


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
