"""A training progress bar that counts optimizer steps when the run is bounded by `max_steps`.

Training here is one endless epoch stopped by `trainer.max_steps` (`max_epochs: -1`), so Lightning's bars
show a meaningless epoch total (`Epoch 0/-2`) and no total at all. This bar shows `Steps: n/max_steps`
(resumed runs start at the restored step) and falls back to epochs when no step limit is set.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import TQDMProgressBar


def counts_steps(trainer: Any) -> bool:
    return bool(trainer.max_steps) and trainer.max_steps > 0


def train_description(trainer: Any) -> str:
    """`Steps` when the bar counts up to max_steps; else `Epoch e`, with `/last epoch` only when it is known."""
    if counts_steps(trainer):
        return "Steps"
    if trainer.max_epochs is None or trainer.max_epochs < 0:
        return f"Epoch {trainer.current_epoch}"
    return f"Epoch {trainer.current_epoch}/{trainer.max_epochs - 1}"


class StepProgressBar(TQDMProgressBar):
    def on_train_start(self, trainer: Any, *args: Any) -> None:
        super().on_train_start(trainer, *args)
        self._configure(trainer)  # a run resumed mid-epoch gets no on_train_epoch_start

    def on_train_epoch_start(self, trainer: Any, *args: Any) -> None:
        super().on_train_epoch_start(trainer, *args)
        self._configure(trainer)

    def _configure(self, trainer: Any) -> None:
        bar = self.train_progress_bar
        if counts_steps(trainer):
            bar.total = trainer.max_steps
            self._show(bar, trainer.global_step)
        bar.set_description(train_description(trainer))

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not counts_steps(trainer):
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        bar, step = self.train_progress_bar, trainer.global_step
        if bar is not None and self.is_enabled and (step % self.refresh_rate == 0 or step >= trainer.max_steps):
            self._show(bar, step)
            bar.set_postfix(self.get_metrics(trainer, pl_module))

    @staticmethod
    def _show(bar: Any, n: int) -> None:
        if not bar.disable:
            bar.n = n
            bar.refresh()
