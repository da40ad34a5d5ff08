"""Hydra `--multirun` sweeps run offline: one job per value, each with its own run folder and adapter."""

import os
import subprocess
import sys

from miva_lightning.config import REPO_ROOT
from tiny_components import TINY_BACKBONE, TINY_MIVA

TINY = [
    "backbone.pretrained=null",
    *TINY_BACKBONE,
    *TINY_MIVA,
    "data.batch_size=1",
    "data.max_clips=2",
    "data.world_clips_per_motion=2",
    "trainer=cpu",
    "trainer.max_steps=1",
    "checkpoint.every_n_steps=1",
    "preview.every_n_steps=1000",
    "preview.at_end=false",
    "logger=csv",
]


def test_multirun_sweep_runs_offline(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MIVA_ROOT=str(tmp_path), HF_HUB_OFFLINE="1", WANDB_MODE="offline")
    result = subprocess.run(
        [sys.executable, "-m", "miva_lightning.cli.train", "--multirun", "seed=1,2", "motion=zoom_out", *TINY,
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],  # fmt: skip
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    adapters = sorted(p.relative_to(tmp_path / "sweep").as_posix() for p in (tmp_path / "sweep").glob("*/*.safetensors"))
    assert adapters == ["0/zoom_out.safetensors", "1/zoom_out.safetensors"]
