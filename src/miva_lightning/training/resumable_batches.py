"""Training batches that depend only on (seed, batch position), so a resumed run sees the same data.

Lightning restarts a plain DataLoader from its first batch when a run resumes mid-epoch, and its
prefetching makes "batches yielded so far" one ahead of "batches trained on". Both break exact resume.
Here the batch at position k is a pure function of (seed, k): the flat sample order is a sequence of
seeded permutations of the dataset (one per pass), and every item is loaded under global RNGs seeded from
(seed, flat position), so random augmentations inside the dataset repeat too and the process-wide RNG
streams are left untouched. `BatchPosition` (a callback) counts the batches actually trained on and
keeps that count in the checkpoint; on resume it moves the loader there before Lightning iterates it.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any, Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate


@contextlib.contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed torch/numpy/python global RNGs inside the block; restore their previous states after it."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class StepKeyedBatches:
    """An endless iterable of collated batches; batch k is a pure function of (dataset, seed, k).

    One Lightning "epoch" never ends: stop training with `max_steps` (or `max_time`). Under DDP every
    process draws its own slice of the same order, so the global batch is `batch_size * world_size`.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int = 0, epoch_keys: bool = False):
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise ValueError("the training dataset is empty: check the data folder / motion name")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        # Datasets that draw augmentations from (seed, epoch, index) take `(index, epoch)` keys.
        self.epoch_keys = bool(epoch_keys)
        self.start_position = 0  # first batch position the next iterator yields

    def sample_key(self, flat_position: int) -> int | tuple[int, int]:
        """Dataset key of the sample at a flat position: one seeded permutation per pass over the data."""
        n = len(self.dataset)  # type: ignore[arg-type]
        epoch, offset = divmod(flat_position, n)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
        index = int(order[offset])
        return (index, epoch) if self.epoch_keys else index

    def batch(self, position: int, rank: int = 0, world_size: int = 1) -> Any:
        """Batch `position` of process `rank`: ranks take consecutive, disjoint slices of the sample order."""
        items = []
        for slot in range(self.batch_size):
            flat = (position * world_size + rank) * self.batch_size + slot
            with seeded_global_rngs(self.seed * 7_919 + flat):
                items.append(self.dataset[self.sample_key(flat)])
        return default_collate(items)

    def __iter__(self) -> Iterator[Any]:
        # Read at iteration time: under DDP the process group only exists once the Trainer has set it up.
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        rank = torch.distributed.get_rank() if distributed else 0
        world_size = torch.distributed.get_world_size() if distributed else 1
        position = self.start_position
        while True:
            yield self.batch(position, rank, world_size)
            position += 1


class BatchPosition(L.Callback):
    """Counts trained batches of a `StepKeyedBatches` and restores the loader's position on resume."""

    def __init__(self, loader: StepKeyedBatches):
        self.loader = loader
        self.trained_batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.trained_batches += 1

    def state_dict(self) -> dict[str, Any]:
        return {"trained_batches": self.trained_batches, "seed": self.loader.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("seed") != self.loader.seed:
            raise ValueError(
                f"the checkpoint was trained with data seed {state_dict.get('seed')}, this run uses "
                f"{self.loader.seed}: resume with the same `seed`"
            )
        self.trained_batches = int(state_dict["trained_batches"])
        self.loader.start_position = self.trained_batches
