"""Build a Lightning Trainer with its loggers and callbacks from the composed Hydra config."""

from __future__ import annotations

from typing import Any, Sequence

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig


def _instantiate_group(group: DictConfig | None) -> list[Any]:
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node is not None and "_target_" in node]


def build_trainer(cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = (), **overrides: Any) -> L.Trainer:
    """`cfg.trainer` holds Trainer arguments; `cfg.logger` and `cfg.callbacks` hold named nodes."""
    loggers = _instantiate_group(cfg.get("logger"))
    callbacks = _instantiate_group(cfg.get("callbacks")) + list(extra_callbacks)
    return instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, **overrides)
