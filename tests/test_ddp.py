"""miva-train with `trainer=ddp` as two CPU processes (gloo), started by Lightning or by torchrun: each rank
trains on its own slice of the batches, the ranks end with the same adapter, rank 0 alone exports it, and
metrics are reduced across the ranks. About 25 s per launcher on 2 busy cores."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from miva_lightning.config import compose
from miva_lightning.metrics.registry import build_metrics
from miva_lightning.pipelines.train import build_datamodule, training_dataset
from miva_lightning.training.resumable_batches import StepKeyedBatches
from tiny_components import TINY_BACKBONE, TINY_MIVA

TESTS = Path(__file__).parent
STEPS = 4
DATA = ["motion=zoom_out", "data.max_clips=3", "data.world_clips_per_motion=3", "data.batch_size=2"]
TRAIN_ARGS = [
    "backbone.pretrained=null", *TINY_BACKBONE, *TINY_MIVA, *DATA, "trainer=ddp", "trainer.accelerator=cpu",
    "trainer.devices=2", "trainer.strategy.process_group_backend=gloo", f"trainer.max_steps={STEPS}",
    "trainer.enable_progress_bar=false", f"checkpoint.every_n_steps={STEPS}", f"preview.every_n_steps={STEPS}",
    "preview.num_first_frames=2", "preview.batch_size=1", "preview.steps=2", "preview.formats=[gif]", "num_threads=1",
    "callbacks=video_metrics", "callbacks.video_metrics.metrics=[flicker_mean_abs_diff]",
    "+callbacks.probe._target_=ddp_probe.RankProbe",
]  # fmt: skip
METRIC = "flicker_mean_abs_diff"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launcher(kind: str) -> list[str]:
    """`lightning`: miva-train starts the second process itself; `torchrun`: the README's multi-node command
    on one node (Lightning then only joins the processes torchrun started)."""
    if kind == "lightning":
        return [sys.executable, "-m", "miva_lightning.cli.train"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2"]
    return [*torchrun, f"--master-port={free_port()}", "-m", "miva_lightning.cli.train", "trainer.num_nodes=1"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lightning", "torchrun"])
def test_two_cpu_processes_train_one_adapter(tmp_path, kind):
    run = tmp_path / "run"
    args = [
        *TRAIN_ARGS, f"+callbacks.probe.dirpath={tmp_path}", f"hydra.run.dir={run}",
        # each process names its own export: only rank 0's may appear
        f"adapter_out={run}/zoom_out_rank${{oc.env:LOCAL_RANK,0}}.safetensors",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", MIVA_ROOT=str(tmp_path), HF_HUB_OFFLINE="1", WANDB_MODE="offline",
               PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))  # fmt: skip
    started = time.monotonic()
    done = subprocess.run([*launcher(kind), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    print(f"2-process DDP run ({kind}): {time.monotonic() - started:.1f} s")

    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["world_size"], r["backend"]) for r in reports] == [(0, 2, "gloo"), (1, 2, "gloo")]
    probes = [load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1)]

    # rank 0 alone exports; the export is the adapter both ranks hold, and it trained
    assert sorted(p.name for p in run.glob("zoom_out_rank*")) == ["zoom_out_rank0.safetensors"]
    exported = load_file(run / "zoom_out_rank0.safetensors")
    for name, tensor in exported.items():
        assert torch.equal(probes[0][f"final.{name}"], tensor) and torch.equal(probes[1][f"final.{name}"], tensor), name
    assert any(not torch.equal(probes[1][f"initial.{n}"], t) for n, t in exported.items())

    # data: each rank draws its own slice of the step-keyed order (global batch = 2 x batch_size)
    cfg = compose("train", [*TINY_BACKBONE, *DATA, "paths.output_dir=unused"])
    dataset = training_dataset(build_datamodule(cfg))
    batches = StepKeyedBatches(dataset, batch_size=2, seed=int(cfg.seed), epoch_keys=True)
    for rank in (0, 1):
        assert torch.equal(probes[rank]["first_batch"], batches.batch(0, rank=rank, world_size=2)["video"])
    assert not torch.equal(probes[0]["first_batch"], probes[1]["first_batch"])

    # metrics: each rank previewed its own first frame; both report the value over both ranks' samples
    values = [r["metrics"][METRIC] for r in reports]
    assert values[0] == values[1]
    both = build_metrics([METRIC])[METRIC]
    both.update({"generated": torch.cat([probes[0]["previews"], probes[1]["previews"]])})
    assert values[0] == pytest.approx(float(both.compute()), rel=1e-5)
    local = []
    for probe in probes:
        alone = build_metrics([METRIC])[METRIC]
        alone.update({"generated": probe["previews"]})
        local.append(float(alone.compute()))
    assert local[0] != pytest.approx(local[1], rel=1e-3)  # the reduction is visible
