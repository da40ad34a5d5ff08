"""Crash-safe checkpoints: atomic saves, the newest-complete-checkpoint resolver, the step progress bar."""

from __future__ import annotations

import os
import warnings
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from miva_lightning.callbacks.progress import StepProgressBar, train_description
from miva_lightning.config import compose
from miva_lightning.training.checkpoints import (
    LIGHTNING_KEYS,
    AtomicCheckpointIO,
    newest_complete_checkpoint,
    resolve_resume,
    step_checkpoints,
)
from miva_lightning.utils.lightning_setup import build_trainer


def fake_checkpoint(step: int) -> dict:
    checkpoint = {key: {} for key in LIGHTNING_KEYS}
    checkpoint.update(global_step=step, epoch=0, state_dict={"w": torch.full((64,), float(step))})
    return checkpoint


def save(path, step: int):
    torch.save(fake_checkpoint(step), path)
    return path


def truncate(path, keep: int = 300):
    path.write_bytes(path.read_bytes()[:keep])


def test_resolver_skips_a_truncated_newest_checkpoint_and_needs_no_last_ckpt(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    for step in (2, 4, 6):
        save(folder / f"step_{step:06d}.ckpt", step)
    truncate(folder / "step_000006.ckpt")  # killed mid-write by a non-atomic writer; no last.ckpt yet
    (folder / ".last.ckpt.partial-x1y2.ckpt").write_bytes(b"half")  # an atomic write that was killed
    (folder / "notes.txt").write_text("not a checkpoint")

    with pytest.warns(UserWarning, match="step_000006.ckpt: it does not load"):
        assert newest_complete_checkpoint(folder) == folder / "step_000004.ckpt"
    with pytest.warns(UserWarning, match="does not load"):
        assert resolve_resume("auto", tmp_path / "run") == str(folder / "step_000004.ckpt")
    assert not (folder / ".last.ckpt.partial-x1y2.ckpt").exists(), "auto removes leftovers of killed writes"
    with pytest.warns(UserWarning):  # a run folder or its checkpoints folder: the same newest complete one
        assert resolve_resume(tmp_path / "run", "elsewhere") == str(folder / "step_000004.ckpt")
        assert resolve_resume(folder, "elsewhere") == str(folder / "step_000004.ckpt")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="damaged or incomplete"):
        resolve_resume(folder / "step_000006.ckpt", "elsewhere")

    # last.ckpt is found by the step inside it; at equal steps it wins, a newer step checkpoint beats it
    save(folder / "last.ckpt", 4)
    with pytest.warns(UserWarning):
        assert newest_complete_checkpoint(folder) == folder / "last.ckpt"
    save(folder / "step_000008.ckpt", 8)
    assert newest_complete_checkpoint(folder) == folder / "step_000008.ckpt"
    # loads but lacks what a resume needs: skipped too
    incomplete = fake_checkpoint(10)
    del incomplete["optimizer_states"]
    torch.save(incomplete, folder / "step_000010.ckpt")
    with pytest.warns(UserWarning, match="lacks \\['optimizer_states'\\]"):
        assert newest_complete_checkpoint(folder) == folder / "step_000008.ckpt"


def test_resolver_without_checkpoints(tmp_path):
    assert newest_complete_checkpoint(tmp_path / "missing") is None
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    assert newest_complete_checkpoint(tmp_path / "run" / "checkpoints") is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_resume("auto", tmp_path / "run") is None  # fresh start
        assert resolve_resume("auto", tmp_path / "never_ran") is None
        assert resolve_resume(None, tmp_path / "run") is None
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        resolve_resume(tmp_path / "run", "elsewhere")
    with pytest.raises(FileNotFoundError, match="resume_from=<run dir>"):
        resolve_resume(tmp_path / "run" / "checkpoints" / "last.ckpt", "elsewhere")


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full")


def test_atomic_save_failing_mid_write_keeps_the_previous_last_ckpt(tmp_path):
    io = AtomicCheckpointIO()
    last = tmp_path / "last.ckpt"
    io.save_checkpoint(fake_checkpoint(2), last)
    before = last.read_bytes()
    broken = fake_checkpoint(4)
    broken["callbacks"] = {"big": torch.zeros(10_000), "then": Unpicklable()}  # fails after bytes were written
    with pytest.raises(RuntimeError, match="disk full"):
        io.save_checkpoint(broken, last)
    assert last.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt"], "the temporary file is removed"
    assert io.load_checkpoint(last)["global_step"] == 2
    io.save_checkpoint(fake_checkpoint(6), last)
    assert io.load_checkpoint(last)["global_step"] == 6 and sorted(os.listdir(tmp_path)) == ["last.ckpt"]


def test_build_trainer_saves_atomically_and_shows_steps(tmp_path):
    cfg = compose("train", ["backbone.pretrained=null", f"paths.output_dir={tmp_path}", "logger=none"])
    trainer = build_trainer(cfg)
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert isinstance(trainer.progress_bar_callback, StepProgressBar)
    quiet = build_trainer(cfg, enable_progress_bar=False)
    assert quiet.progress_bar_callback is None


def test_step_checkpoints_resume_keeps_names_and_train_description(tmp_path):
    assert train_description(SimpleNamespace(max_steps=500, max_epochs=-1, current_epoch=0)) == "Steps"
    assert train_description(SimpleNamespace(max_steps=-1, max_epochs=-1, current_epoch=3)) == "Epoch 3"
    assert train_description(SimpleNamespace(max_steps=-1, max_epochs=None, current_epoch=0)) == "Epoch 0"
    assert train_description(SimpleNamespace(max_steps=-1, max_epochs=10, current_epoch=2)) == "Epoch 2/9"

    def fit(max_steps: int, ckpt_path=None) -> L.Trainer:
        bar = StepProgressBar()
        trainer = L.Trainer(
            max_steps=max_steps, max_epochs=-1, callbacks=[step_checkpoints(tmp_path / "ckpt", 2), bar],
            plugins=[AtomicCheckpointIO()], logger=False, enable_model_summary=False, default_root_dir=tmp_path,
            limit_val_batches=0, accelerator="cpu", devices=1,
        )  # fmt: skip
        trainer.fit(BoringModel(), ckpt_path=ckpt_path)
        assert bar.train_progress_bar.total == max_steps and bar.train_progress_bar.n == max_steps
        return trainer

    fit(6)
    names = sorted(os.listdir(tmp_path / "ckpt"))
    assert names == ["last.ckpt", "step_000002.ckpt", "step_000004.ckpt", "step_000006.ckpt"]
    assert resolve_resume("auto", tmp_path, ["state_dict"]) is None  # `auto` looks in <run>/checkpoints only
    # resume from an older step checkpoint: steps are saved again under the same names, no "-v1" copies,
    # and last.ckpt is replaced
    trainer = fit(8, ckpt_path=tmp_path / "ckpt" / "step_000002.ckpt")
    assert trainer.global_step == 8
    assert sorted(os.listdir(tmp_path / "ckpt")) == names + ["step_000008.ckpt"]
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 8
