"""Build a Lightning Trainer with its loggers and callbacks from the composed Hydra config."""

from __future__ import annotations

from typing import Any, Sequence

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig


def _instantiate_group(group: DictConfig | None) -> list[Any]:
    if not group:
        return []
    built = (instantiate(node) for node in group.values() if node is not None and "_target_" in node)
    return [callback for callback in built if callback is not None]  # a factory may decline (None)


def build_trainer(cfg: DictConfig, extra_callbacks: Sequence[L.Callback] = (), **overrides: Any) -> L.Trainer:
    """`cfg.trainer` holds Trainer arguments; `cfg.logger` and `cfg.callbacks` hold named nodes.

    Every trainer saves checkpoints atomically (`AtomicCheckpointIO`, unless the config brings its own
    CheckpointIO) and, with the progress bar on, shows training progress as `Steps: n/max_steps`.
    """
    from lightning.fabric.plugins import CheckpointIO
    from lightning.pytorch.callbacks import ProgressBar

    from miva_lightning.callbacks.progress import StepProgressBar
    from miva_lightning.training.checkpoints import AtomicCheckpointIO

    loggers = _instantiate_group(cfg.get("logger"))
    callbacks = _instantiate_group(cfg.get("callbacks")) + list(extra_callbacks)
    if overrides.get("enable_progress_bar", cfg.trainer.get("enable_progress_bar", True)) and not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(StepProgressBar())
    plugins = overrides.pop("plugins", None)
    if plugins is None:
        node = cfg.trainer.get("plugins")
        plugins = [] if node is None else instantiate(node, _convert_="all")
    plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if not any(isinstance(p, CheckpointIO) for p in plugins):
        plugins.append(AtomicCheckpointIO())
    return instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks, plugins=plugins, **overrides)
