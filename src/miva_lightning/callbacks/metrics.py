"""Video metrics during validation/test, kept OUTSIDE the LightningModule.

The metric objects and their frozen feature networks live in this callback, so they never enter the
module's state_dict and checkpoints stay adapter-sized. Only the requested metrics are built and run.

Per batch (`on_validation_batch_end` / `on_test_batch_end`) the callback forms the registry's batch
dict and updates every metric:
- "generated": `generate(batch)` when a callable is given; else the `generated_key` entry of what
  `validation_step` returned (MivaModule returns {"video": samples, ...}), so nothing samples twice;
- "reference": `batch[reference_key]` when present, and/or fixed `reference_videos` given once
  (fed at epoch end, e.g. the few-shot clips of the motion);
- "images": `batch[image_key]`, else frame 1 of the generated videos; "prompts": `batch[prompt_key]`;
  "motions": `batch[motion_key]` or the fixed `motion` (intended class); "params": `batch[params_key]`.
At epoch end each metric is computed, logged as `<stage>/<name>`, kept in `results` with its
`describe()`, and reset.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import lightning as L
import torch
from torch import Tensor

from miva_lightning.metrics.registry import build_metrics, describe_metric


class VideoMetricsCallback(L.Callback):
    def __init__(
        self,
        metrics: Sequence[str] | Mapping[str, Mapping[str, Any] | None],
        generate: Callable[[dict], Tensor] | None = None,
        reference_videos: Tensor | None = None,
        generated_key: str = "video",
        reference_key: str = "reference_video",
        image_key: str = "first_frame",
        prompt_key: str = "caption",
        motion_key: str = "motion",
        params_key: str = "params",
        motion: str | None = None,
        run_on_sanity_check: bool = False,
    ) -> None:
        super().__init__()
        self.metric_spec = metrics
        self.metrics = build_metrics(metrics)
        self.generate = generate
        self.reference_videos = reference_videos
        self.keys = {
            "generated": generated_key, "reference": reference_key, "images": image_key, "prompts": prompt_key,
            "motions": motion_key, "params": params_key,
        }  # fmt: skip
        self.motion = motion
        self.run_on_sanity_check = run_on_sanity_check
        self.results: dict[str, dict[str, Any]] = {}  # last epoch's values with describe()

    # ---- batch assembly -------------------------------------------------------------------------

    def metric_batch(self, batch: Any, outputs: Any) -> dict[str, Any]:
        batch = batch if isinstance(batch, Mapping) else {}
        if self.generate is not None:
            generated = self.generate(batch)
        elif isinstance(outputs, Mapping) and self.keys["generated"] in outputs:
            generated = outputs[self.keys["generated"]]
        else:
            raise ValueError(
                f"VideoMetricsCallback found no generated videos: pass generate=callable(batch) -> b f c h w, "
                f"or return {{'{self.keys['generated']}': videos}} from validation_step/test_step"
            )
        metric_batch: dict[str, Any] = {"generated": generated.detach().float()}
        if self.keys["reference"] in batch:
            metric_batch["reference"] = batch[self.keys["reference"]].detach().float()
        images = batch.get(self.keys["images"])
        metric_batch["images"] = (images if images is not None else generated[:, 0]).detach().float()
        for key in ("prompts", "motions", "params"):
            if self.keys[key] in batch:
                metric_batch[key] = list(batch[self.keys[key]])
        if self.motion is not None:
            metric_batch["motions"] = [self.motion] * generated.shape[0]
        return metric_batch

    # ---- shared stage logic ---------------------------------------------------------------------

    def _skip(self, trainer: L.Trainer) -> bool:
        return trainer.sanity_checking and not self.run_on_sanity_check

    def _move(self, device: torch.device) -> None:
        for metric in self.metrics.values():
            metric.to(device)

    def _update(self, trainer, pl_module, outputs, batch) -> None:
        if self._skip(trainer):
            return
        self._move(pl_module.device)
        metric_batch = self.metric_batch(batch, outputs)
        for metric in self.metrics.values():
            metric.update(metric_batch)

    def _finish(self, trainer, pl_module, stage: str) -> None:
        if self._skip(trainer):
            return
        if self.reference_videos is not None:
            references = self.reference_videos.to(pl_module.device).float()
            for metric in self.metrics.values():
                metric.update({"reference": references})
        self.results = {}
        for name, metric in self.metrics.items():
            value = float(metric.compute())
            self.results[name] = {"value": value, **describe_metric(metric)}
            pl_module.log(f"{stage}/{name}", value, sync_dist=False)  # already synced by the metric
            metric.reset()

    # ---- Lightning hooks --------------------------------------------------------------------------

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._update(trainer, pl_module, outputs, batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._finish(trainer, pl_module, "val")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._update(trainer, pl_module, outputs, batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._finish(trainer, pl_module, "test")


# The judge's metrics on every validation's previews: on by default (configs/callbacks/default.yaml) for a
# motion-world class, because judging the default 4 previews of 8 frames costs ~0.25 s against seconds of
# sampling them; they give sweeps and early stopping a signal (`val/motion_class_accuracy_farneback_judge`).
MOTION_JUDGE_METRICS = ("motion_class_accuracy_farneback_judge", "motion_fidelity_farneback")


def motion_judge_callback(motion: str | None) -> VideoMetricsCallback | None:
    """The judge's accuracy and motion fidelity of the previews for a world motion; None (no callback) for any
    other motion, e.g. a LAMP folder's, which the weight-free judge has no class for."""
    from miva_lightning.world import ALL_MOTIONS

    if motion not in ALL_MOTIONS:
        return None
    return VideoMetricsCallback(list(MOTION_JUDGE_METRICS), motion=str(motion))
