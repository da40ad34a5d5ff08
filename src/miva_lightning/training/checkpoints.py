"""Crash-safe training checkpoints, and the newest complete one to resume from.

A run may be killed at any moment (kill -9, OOM killer, preemption). Two things keep it resumable:

- Every checkpoint file appears under its final name complete or not at all: `AtomicCheckpointIO` (the
  Trainer's checkpoint plugin, installed by `build_trainer`) writes to a temporary file in the same folder,
  fsyncs it and renames it over the final name (`utils.atomic_path`). `last.ckpt` is a full save, never a
  link or a copy, so it is replaced the same way and an old `last.ckpt` survives a failed write.
- `resolve_resume` turns `resume_from` into a checkpoint path: `auto` takes the newest complete checkpoint
  of this run's `checkpoints/` folder (or starts fresh when there is none), a folder the newest complete one
  in it. "Complete" means it loads (`torch.load(weights_only=True)`, as resume does) and holds the keys a
  resume needs; anything else (a file truncated by an older writer, a disk error) is skipped with a warning.
  Kill between a step checkpoint and `last.ckpt`, and the step checkpoint is what `auto` resumes from.
- DeepSpeed (`trainer=deepspeed`) saves folders, not files: a step folder counts once DeepSpeed has written
  its `latest` file, the last thing a save writes; its `last.ckpt` folder is rewritten in place, so `auto`
  never takes it (pass it explicitly to resume from it).
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Optional

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from miva_lightning.utils.atomic import atomic_path

log = logging.getLogger(__name__)

RESUME_AUTO = "auto"
CHECKPOINT_DIR = "checkpoints"  # `<run folder>/checkpoints/`
STEP_FILENAME = "step_{step:06d}"
_STEP_NAME = re.compile(r"step_(\d+)(?:-v\d+)?\.ckpt")
_PARTIAL_MARK = ".partial-"  # temporary files of `atomic_path` are named `.<final name>.partial-<random>...`
# What any Lightning training checkpoint holds, and what a MivaModule checkpoint adds (miva_module.py).
LIGHTNING_KEYS = ("state_dict", "global_step", "epoch", "loops", "optimizer_states", "lr_schedulers", "callbacks")
MIVA_KEYS = LIGHTNING_KEYS + ("miva_rng_states",)


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local saves go to a temporary file that is fsynced and renamed into place."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        if not _is_local_file_protocol(path):  # object stores: Lightning's own transactional write
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def step_checkpoints(dirpath: str | os.PathLike, every_n_steps: int, keep: int = -1) -> ModelCheckpoint:
    """`step_NNNNNN.ckpt` every `every_n_steps` training steps plus `last.ckpt`, in `dirpath`.

    No version counter: a resumed run that saves a step again replaces the file (atomically) instead of
    adding `-v1` copies, and `last.ckpt` stays `last.ckpt` whichever checkpoint the run resumed from.
    """
    return ModelCheckpoint(
        dirpath=str(dirpath),
        filename=STEP_FILENAME,
        every_n_train_steps=int(every_n_steps),
        save_top_k=int(keep),
        save_last=True,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )


def load_complete_checkpoint(path: str | os.PathLike, required_keys: Iterable[str] = LIGHTNING_KEYS) -> dict | None:
    """The checkpoint at `path` (on CPU), or None with a warning when it does not load or lacks a key."""
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, unpickling error, I/O error
        warnings.warn(f"skipping checkpoint {path}: it does not load ({type(error).__name__}: {error})", stacklevel=2)
        return None
    missing = [key for key in required_keys if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        warnings.warn(f"skipping checkpoint {path}: incomplete, it lacks {missing}", stacklevel=2)
        return None
    return checkpoint


def checkpoint_files(folder: str | os.PathLike) -> list[Path]:
    """The `*.ckpt` files of `folder`, without the temporary files of unfinished writes, and its DeepSpeed
    step folders (`step_000100.ckpt/`)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.glob("*.ckpt")
        if not p.name.startswith(".") and (p.is_file() or (p.is_dir() and _STEP_NAME.fullmatch(p.name)))
    )  # fmt: skip


def deepspeed_checkpoint_complete(path: str | os.PathLike) -> bool:
    """A DeepSpeed checkpoint folder whose save finished (DeepSpeed writes `latest` after everything else)."""
    return Path(path).is_dir() and (Path(path) / "latest").is_file()


def newest_complete_checkpoint(
    folder: str | os.PathLike, required_keys: Iterable[str] = LIGHTNING_KEYS
) -> Path | None:
    """The complete checkpoint of `folder` with the highest global step (None when there is none).

    Files are tried newest first and loading stops at the first complete one: the step comes from the name
    (`step_000120.ckpt`) or, for other names (`last.ckpt`), from the file. At equal steps `last.ckpt` wins
    (it is written after the step checkpoint of the same step), then the newer file.
    """
    required_keys = tuple(required_keys)
    loaded: dict[Path, dict | None] = {}

    def order(path: Path) -> tuple[int, int, float]:
        named = _STEP_NAME.fullmatch(path.name)
        if named:
            step = int(named[1])
        else:
            loaded[path] = load_complete_checkpoint(path, required_keys)
            step = int(loaded[path]["global_step"]) if loaded[path] is not None else -1
        return step, int(path.name.startswith("last")), path.stat().st_mtime

    for path in sorted(checkpoint_files(folder), key=order, reverse=True):
        if path.is_dir():
            if deepspeed_checkpoint_complete(path):
                return path
            warnings.warn(f"skipping DeepSpeed checkpoint {path}: its save did not finish (no `latest` file)",
                          stacklevel=2)  # fmt: skip
            continue
        checkpoint = loaded[path] if path in loaded else load_complete_checkpoint(path, required_keys)
        if checkpoint is not None:
            return path
    return None


def remove_partial_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed writes left in `folder` (their content is incomplete)."""
    folder = Path(folder)
    removed = [p for p in folder.glob(f".*{_PARTIAL_MARK}*") if p.is_file()] if folder.is_dir() else []
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def resolve_resume(
    resume_from: str | os.PathLike | None,
    run_dir: str | os.PathLike,
    required_keys: Iterable[str] = LIGHTNING_KEYS,
) -> str | None:
    """The checkpoint `trainer.fit(ckpt_path=...)` should resume from, or None to start fresh.

    `resume_from`: None (start fresh); `auto` (the newest complete checkpoint in `<run_dir>/checkpoints`,
    or a fresh start when there is none, e.g. the first run with a fixed `hydra.run.dir`); a run folder or a
    checkpoints folder (its newest complete checkpoint; an error when it has none); a checkpoint file (used
    when complete, an error otherwise).
    """
    if resume_from is None or str(resume_from).strip() in ("", "null", "None"):
        return None
    required_keys = tuple(required_keys)
    if str(resume_from).strip().lower() == RESUME_AUTO:
        folder = Path(run_dir) / CHECKPOINT_DIR
        found = _newest_in(folder, required_keys)
        if found is None:
            _info(f"resume_from=auto: no complete checkpoint in {folder}, starting a fresh run "
                  "(re-run with the same hydra.run.dir to resume it)")
            return None
        _info(f"resume_from=auto: resuming from {found}")
        return str(found)

    target = Path(resume_from).expanduser()
    if target.is_dir() and target.suffix == ".ckpt":  # a DeepSpeed checkpoint folder
        if not deepspeed_checkpoint_complete(target):
            raise ValueError(
                f"resume_from={resume_from}: this DeepSpeed checkpoint has no `latest` file, its save did not finish; "
                f"pass the run folder to resume from its newest complete checkpoint"
            )
        return str(target)
    if target.is_dir():
        folder = target / CHECKPOINT_DIR if (target / CHECKPOINT_DIR).is_dir() else target
        found = _newest_in(folder, required_keys)
        if found is None:
            raise FileNotFoundError(f"resume_from={resume_from}: no complete checkpoint (*.ckpt) in {folder}")
        _info(f"resume_from={resume_from}: resuming from {found}")
        return str(found)
    if not target.is_file():
        raise FileNotFoundError(
            f"resume_from={resume_from}: no such checkpoint. Pass the run folder (resume_from=<run dir>) to take "
            f"its newest complete checkpoint, or resume_from=auto with the run's hydra.run.dir"
        )
    if load_complete_checkpoint(target, required_keys) is None:
        raise ValueError(
            f"resume_from={resume_from}: the checkpoint is damaged or incomplete (see the warning above); pass "
            f"the run folder (resume_from={target.parent.parent if target.parent.name == CHECKPOINT_DIR else target.parent}) "
            f"to resume from its newest complete checkpoint"
        )
    return str(target)


def _newest_in(folder: Path, required_keys: tuple[str, ...]) -> Path | None:
    if rank_zero_only.rank == 0:  # DDP: every process resolves; one tidies up
        for path in remove_partial_files(folder):
            _info(f"removed {path.name}, left by an interrupted checkpoint write")
    return newest_complete_checkpoint(folder, required_keys)


def _info(message: str) -> None:
    if rank_zero_only.rank == 0:
        log.info(message)
