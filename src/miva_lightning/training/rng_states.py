"""The RNG states a training checkpoint carries so that a resumed run repeats an uninterrupted one exactly:
torch, numpy, python, CUDA and the module's own noise generator (in types `torch.load(weights_only=True)` takes)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

RNG_STATES_KEY = "miva_rng_states"  # the checkpoint key (the name predates the other methods; resume checks it)


def capture_rng_states(noise_generator: torch.Generator | None = None) -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": numpy_state_as_tensors(),
        "python": random.getstate(),
        "noise_generator": None if noise_generator is None else noise_generator.get_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng_states(states: dict[str, Any], noise_generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(states["torch"])
    restore_numpy_state(states["numpy"])
    random.setstate(states["python"])
    if noise_generator is not None and states.get("noise_generator") is not None:
        noise_generator.set_state(states["noise_generator"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def numpy_state_as_tensors() -> dict[str, Any]:
    """numpy's global RNG state in types `torch.load(weights_only=True)` accepts (no numpy arrays)."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "kind": kind,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def restore_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["kind"], keys, state["position"], state["has_gauss"], state["cached_gaussian"]))
