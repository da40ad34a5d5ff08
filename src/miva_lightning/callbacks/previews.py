"""Write and log the preview videos that `MivaModule.validation_step` samples.

Each validation writes `<dirpath>/step_<global step>/preview_<k>.<fmt>` (GIF and/or MP4, atomically) and
sends the videos to loggers that take them: W&B as videos, TensorBoard as a film strip image per preview
(TensorBoard's own video support needs moviepy, which is not a dependency). Loggers without media
support (CSV) only get the scalar metrics the module logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import lightning as L
import torch
from einops import rearrange

from miva_lightning.data import write_video

PREVIEW_FORMATS = ("gif", "mp4", "webm")


class MivaPreviews(L.Callback):
    def __init__(self, dirpath: str | None = None, formats: Sequence[str] = ("gif", "mp4"), fps: float = 4.0):
        unknown = [fmt for fmt in formats if fmt not in PREVIEW_FORMATS]
        if unknown:
            raise ValueError(f"preview formats {unknown} unknown; use some of {PREVIEW_FORMATS}")
        self.dirpath = dirpath
        self.formats = tuple(formats)
        self.fps = float(fps)
        self._videos: list[torch.Tensor] = []
        self.written: list[Path] = []  # files of the latest validation

    def folder(self, trainer: L.Trainer) -> Path:
        root = Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "previews"
        return root / f"step_{trainer.global_step:06d}"

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._videos = []

    def on_validation_batch_end(self, trainer, pl_module, outputs: Any, batch, batch_idx, dataloader_idx=0) -> None:
        if isinstance(outputs, dict) and "video" in outputs:
            self._videos.extend(outputs["video"].detach().float().cpu())

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not self._videos:
            return
        folder = self.folder(trainer)
        # Under DDP each process previews its own share of the first frames and writes it itself.
        prefix = f"preview_rank{trainer.global_rank}_" if trainer.world_size > 1 else "preview_"
        self.written = [
            write_video(folder / f"{prefix}{index}.{fmt}", video, fps=self.fps)
            for index, video in enumerate(self._videos)
            for fmt in self.formats
        ]
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                self._log_to(logger, trainer.global_step)
        self._videos = []

    def _log_to(self, logger, step: int) -> None:
        name = type(logger).__name__
        if name == "WandbLogger":
            # The files just written (wandb encoding numpy videos itself would need moviepy).
            files = [str(p) for p in self.written if p.suffix == ".gif"] or [
                str(p) for p in self.written if p.suffix == ".mp4"
            ]
            if files:
                logger.log_video("previews", videos=files, step=step)
        elif name == "TensorBoardLogger":
            for index, video in enumerate(self._videos):
                strip = rearrange(video.clamp(0, 1), "f c h w -> c h (f w)")
                logger.experiment.add_image(f"previews/{index}", strip, global_step=step)
