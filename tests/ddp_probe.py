"""A callback for tests/test_ddp.py, added through the config (`+callbacks.probe._target_=ddp_probe.RankProbe`):
every DDP process writes what it trained, saw and measured to `<dirpath>/rank<r>.safetensors` and `.json`."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch
from safetensors.torch import save_file

from miva_lightning.callbacks.metrics import VideoMetricsCallback


def adapter_state(module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().clone().contiguous() for name, tensor in module.miva.state_dict().items()}


class RankProbe(L.Callback):
    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)
        self.initial: dict[str, torch.Tensor] = {}
        self.first_batch: torch.Tensor | None = None
        self.previews: list[torch.Tensor] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.initial = adapter_state(pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first_batch is None:
            self.first_batch = batch["video"].detach().cpu().clone()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.previews.append(outputs["video"].detach().cpu())

    def on_fit_end(self, trainer, pl_module) -> None:
        tensors = {f"initial.{k}": v for k, v in self.initial.items()}
        tensors.update({f"final.{k}": v for k, v in adapter_state(pl_module).items()})
        tensors.update(first_batch=self.first_batch, previews=torch.cat(self.previews))
        rank = trainer.global_rank
        save_file(tensors, str(self.dirpath / f"rank{rank}.safetensors"))
        metrics = [c for c in trainer.callbacks if isinstance(c, VideoMetricsCallback)]  # the judge's and the test's
        report = {
            "rank": rank,
            "world_size": trainer.world_size,
            "backend": torch.distributed.get_backend(),
            "metrics": {name: result["value"] for c in metrics for name, result in c.results.items()},
        }
        (self.dirpath / f"rank{rank}.json").write_text(json.dumps(report))
