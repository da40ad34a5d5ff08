"""miva-train killed with SIGKILL five times and re-run with `resume_from=auto` ends bit-identical to one run."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from miva_lightning.training.checkpoints import MIVA_KEYS, newest_complete_checkpoint
from tiny_components import TINY_BACKBONE, TINY_MIVA

MAX_STEPS = 30
TRAIN_ARGS = [
    "backbone.pretrained=null", *TINY_BACKBONE, *TINY_MIVA, "experiment=miva_quick", "motion=zoom_out",
    "trainer=cpu", f"trainer.max_steps={MAX_STEPS}", "checkpoint.every_n_steps=2", "preview.every_n_steps=8",
    "preview.num_first_frames=1", "preview.steps=2", "preview.formats=[gif]", "num_threads=1",
    "data.max_clips=3", "data.world_clips_per_motion=3", "resume_from=auto",
]  # fmt: skip
STEP = re.compile(r"step_(\d+)")


def start(run_dir: Path, cwd: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MIVA_ROOT=str(cwd), HF_HUB_OFFLINE="1", WANDB_MODE="offline")
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "miva_lightning.cli.train", *TRAIN_ARGS, f"hydra.run.dir={run_dir}"],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def expected_resume(run_dir: Path) -> Path | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # damaged files are skipped; there should be none
        return newest_complete_checkpoint(run_dir / "checkpoints", MIVA_KEYS)


def check_resume_line(log: Path, expected: Path | None) -> None:
    text = log.read_text()
    if expected is None:
        assert "no complete checkpoint" in text and "starting a fresh run" in text, text[-3000:]
    else:
        assert f"resume_from=auto: resuming from {expected}" in text, text[-3000:]


def steps_seen(folder: Path, partial: bool) -> set[int]:
    """Steps of the finished step checkpoints in `folder`, plus those being written (temporary files) if `partial`."""
    try:
        names = [n for n in os.listdir(folder) if partial or not n.startswith(".")]
    except FileNotFoundError:
        return set()
    return {int(m[1]) for m in map(STEP.search, names) if m}


def folder_state(folder: Path) -> str:
    """What a kill left: newest step checkpoint, the step in last.ckpt, unfinished writes."""
    steps = steps_seen(folder, partial=False)
    last = folder / "last.ckpt"
    last_step = torch.load(last, weights_only=True)["global_step"] if last.exists() else None
    partials = [n for n in os.listdir(folder) if n.startswith(".")]
    return f"newest step_{max(steps, default=0)}, last.ckpt at {last_step}, {len(partials)} unfinished write(s)"


def run_to_end(run_dir: Path, cwd: Path, log: Path) -> None:
    expected = expected_resume(run_dir)
    process = start(run_dir, cwd, log)
    assert process.wait(timeout=300) == 0, log.read_text()[-3000:]
    check_resume_line(log, expected)


@pytest.mark.slow
def test_killed_five_times_then_resumed_ends_bit_identical(tmp_path):
    run_to_end(tmp_path / "reference", tmp_path, tmp_path / "reference.log")
    reference = load_file(tmp_path / "reference" / "zoom_out.safetensors")

    run_dir, rng = tmp_path / "killed", random.Random(20240611)
    # Each round waits for 1-2 new step checkpoints, then kills after a delay: at once when the temporary
    # file of a step checkpoint appears (mid-write), at once when the step checkpoint is finished (before
    # last.ckpt is replaced), a few ms later, or during the next steps / a preview.
    kills = [("writing", 0.0), ("written", 0.0), ("written", rng.uniform(0.0, 0.01)),
             ("written", rng.uniform(0.05, 0.15)), ("written", rng.uniform(0.15, 0.3))]  # fmt: skip
    rng.shuffle(kills)
    history = []
    for round_, (trigger, delay) in enumerate(kills):
        expected = expected_resume(run_dir)
        log = tmp_path / f"killed_{round_}.log"
        partial = trigger == "writing"
        before = steps_seen(run_dir / "checkpoints", partial)
        process = start(run_dir, tmp_path, log)
        new_checkpoints = rng.randint(1, 2)
        deadline = time.monotonic() + 300
        while process.poll() is None and len(steps_seen(run_dir / "checkpoints", partial) - before) < new_checkpoints:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.001)
        time.sleep(delay)
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        returncode = process.wait(timeout=60)
        check_resume_line(log, expected)
        history.append(f"{trigger} +{delay * 1000:.0f} ms: rc {returncode}, {folder_state(run_dir / 'checkpoints')}")
    print("kills:", *history, sep="\n  ")
    assert sum(f"rc {-signal.SIGKILL}," in line for line in history) >= 4, history

    run_to_end(run_dir, tmp_path, tmp_path / "final.log")
    resumed = load_file(run_dir / "zoom_out.safetensors")
    assert resumed.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(tensor, resumed[name]), f"{name} differs from the uninterrupted run's"

    # killed after training but before the adapter was written: auto resumes at the last step and re-exports
    (run_dir / "zoom_out.safetensors").unlink()
    run_to_end(run_dir, tmp_path, tmp_path / "after_end.log")
    assert "resuming from" in (tmp_path / "after_end.log").read_text()
    again = load_file(run_dir / "zoom_out.safetensors")
    assert all(torch.equal(tensor, again[name]) for name, tensor in reference.items())
