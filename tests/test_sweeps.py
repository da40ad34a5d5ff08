"""W&B sweeps online and offline: every sweep file under experiments/sweeps/ passes W&B's engine and builds a valid
`miva-train` command line (as `wandb agent` builds it) whose metrics callback logs the sweep's metric; `miva-sweep`
runs a tiny grid as benchmark cells, writes its summary and offline W&B runs, and reuses every cell on a re-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from miva_lightning.benchmark.sweep import _sweeps, engine_rng, load_sweep, run_sweep, seeded_rng
from miva_lightning.config import REPO_ROOT, compose
from miva_lightning.inputs import InputError
from tiny_components import TINY_BACKBONE, TINY_MIVA

SWEEP_FILES = sorted((REPO_ROOT / "experiments" / "sweeps").glob("*.yaml"))
MICRO = [
    "table2_grid=micro",  # 2 held-out frames, 2 DDIM steps, 2 clips (configs/table2_grid/micro.yaml)
    "backbone.pretrained=null",
    *TINY_BACKBONE,
    "backbone.num_frames=8",  # fd_motionworld's network reads 8 frames
    "budget.train_overrides=[" + ",".join(repr(o) for o in TINY_MIVA) + "]",
    "num_threads=1",
]
METRIC = "val/motion_class_accuracy_farneback_judge"


def agent_command(sweep: dict, params: dict) -> list[str]:
    """The command `wandb agent` runs for one suggested run (wandb's own helpers; ${env} and the program dropped)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    variables = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    line = []
    for part in map(str, create_sweep_command(list(sweep["command"]))):
        is_macro = part.startswith("${") and part.endswith("}")
        line += (variables.get(part[2:-1]) or []) if is_macro else [part]
    assert line[0] == "miva-train"
    return line[1:]


def test_sweep_files_are_found():
    assert {p.name for p in SWEEP_FILES} >= {"miva_lr_rank_tau.yaml", "miva_adapter_ablations.yaml"}


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.stem)
def test_sweep_file_is_valid_for_the_engine_and_its_command_composes_and_logs_the_metric(path):
    from hydra.utils import instantiate

    from miva_lightning.world import render_clip

    sweep, sweeps = load_sweep(path), _sweeps()
    assert sweep["metric"] == {"name": METRIC, "goal": "maximize"}
    runs = []
    for value in (0.2, 0.6, 0.4):  # suggestions after finished runs too (bayes fits its model to them)
        with engine_rng(seeded_rng(0)):
            suggestion = sweeps.next_run(sweep, runs, validate=True)
        params = {k: v["value"] for k, v in suggestion.config.items()}
        cfg = compose("train", agent_command(sweep, params))
        runs.append(sweeps.SweepRun(state=sweeps.RunState.finished, config=suggestion.config, summary_metrics={METRIC: value}))
    assert cfg.backbone.name == "tiny2" and cfg.trainer.max_steps == 300 and cfg.logger.wandb.offline is False
    for name, value in params.items():
        assert name == "adapter" or OmegaConf.select(cfg, name) == value, name
    if "adapter" in params:
        assert cfg.adapter == compose("train", [f"adapter={params['adapter']}"]).adapter

    # the default judge callback logs the sweep's metric under that exact name (real clips: judged right)
    callback = instantiate(cfg.callbacks.motion_judge)
    videos = torch.stack([render_clip(cfg.motion, seed, size=32, num_frames=8).video for seed in (0, 1)])
    logged = {}
    module = SimpleNamespace(device=torch.device("cpu"), log=lambda name, value, **_: logged.setdefault(name, value))
    trainer = SimpleNamespace(sanity_checking=False)
    callback.on_validation_batch_end(trainer, module, {"video": videos}, {"first_frame": videos[:, 0]}, 0)
    callback.on_validation_epoch_end(trainer, module)
    assert logged[METRIC] == 1.0


def test_bayes_suggestions_repeat_with_the_engine_seed_whatever_the_global_rng():
    import numpy as np

    sweep, sweeps = load_sweep(REPO_ROOT / "experiments" / "sweeps" / "miva_lr_rank_tau.yaml"), _sweeps()

    def suggestions(global_seed: int) -> list[dict]:
        np.random.seed(global_seed)  # what training's seed_everything does between suggestions
        rng, runs = seeded_rng(0), []
        for value in (0.1, 0.5, 0.3):
            with engine_rng(rng):
                run = sweeps.next_run(sweep, runs, validate=True)
            runs.append(sweeps.SweepRun(state=sweeps.RunState.finished, config=run.config, summary_metrics={METRIC: value}))
        return [r.config for r in runs]

    assert suggestions(1) == suggestions(2)


def tiny_sweep(tmp_path: Path, parameters: dict | None = None, command: list | None = None) -> Path:
    sweep = {
        "name": "tiny", "method": "grid", "metric": {"name": METRIC, "goal": "maximize"},
        "parameters": parameters or {"adapter.tau": {"values": [0.1, 0.2, 1.0]}},
        "command": command or ["${env}", "miva-train", "backbone=tiny2", "motion=zoom_out", "trainer.max_steps=2",
                               "logger=wandb", "${args_no_hyphens}"],
    }  # fmt: skip
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def sweep_cfg(tmp_path: Path, *extra: str):
    return compose("sweep", [*MICRO, f"file={tiny_sweep(tmp_path)}", f"paths.root={tmp_path}", *extra])


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_offline_grid_runs_three_cells_writes_summary_and_wandb_runs_then_reuses_them(tmp_path, one_thread):
    cfg = sweep_cfg(tmp_path)
    summary = run_sweep(cfg)
    out = tmp_path / "results" / "sweeps" / "tiny"
    assert summary["out_dir"] == str(out) and json.loads((out / "summary.json").read_text()) == summary
    runs = summary["runs"]
    assert sorted(r["params"]["adapter.tau"] for r in runs) == [0.1, 0.2, 1.0]
    values = [r[METRIC] for r in runs]
    assert all(0 <= v <= 1 for v in values) and values == sorted(values, reverse=True)  # maximize: best first
    for r in runs:
        cell = json.loads(Path(r["cell"]).read_text())
        assert r["status"] == cell["status"] == "ok" and not r["reused"] and r["n"] == 2 and r["seed"] == 0
        assert r[METRIC] == cell["accuracy"] and r["config_hash"] == cell["config_hash"] and cell["steps"] == 2
        assert cell["label"] == r["label"] and r["label"].startswith("tiny-") and Path(r["cell"]).is_relative_to(out)
        assert f"adapter.tau={r['params']['adapter.tau']}" in cell["config"]["budget"]["train_overrides"]
    assert len({r["label"] for r in runs}) == 3 and "| rank | label |" in (out / "summary.md").read_text()
    offline = sorted((out / "wandb").glob("offline-run-*"))
    assert len(offline) == 3 and all(any(d.glob("*.wandb")) for d in offline)

    mtimes = {r["cell"]: Path(r["cell"]).stat().st_mtime_ns for r in runs}
    again = run_sweep(cfg)
    assert all(r["reused"] for r in again["runs"]) and [r["label"] for r in again["runs"]] == [r["label"] for r in runs]
    assert {r["cell"]: Path(r["cell"]).stat().st_mtime_ns for r in again["runs"]} == mtimes
    assert len(list((out / "wandb").glob("offline-run-*"))) == 3  # one W&B run per cell


@pytest.mark.parametrize(
    ("parameters", "command", "message"),
    [
        ({"adapter.lora_rnk": {"values": [8]}}, None, "adapter.lora_rnk=8 is not a valid miva-train override"),
        (None, ["${env}", "miva-train", "method=nope", "motion=zoom_out", "${args_no_hyphens}"], "no config 'method/nope'"),
        (None, ["${env}", "miva-train", "backbone=tiny", "motion=zoom_out", "${args_no_hyphens}"], "pass backbone=tiny"),
    ],
    ids=["unknown-key", "unknown-method", "other-backbone"],
)
def test_bad_sweeps_are_one_line_input_errors(tmp_path, parameters, command, message):
    cfg = compose("sweep", [*MICRO, f"file={tiny_sweep(tmp_path, parameters, command)}", f"paths.root={tmp_path}"])
    with pytest.raises(InputError, match=message):
        run_sweep(cfg)
    assert not (tmp_path / "results").exists()  # nothing ran


def test_cli_reports_a_missing_sweep_file_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "miva_lightning.cli.sweep", f"file={tmp_path / 'missing.yaml'}", f"paths.root={tmp_path}"],
        cwd=REPO_ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [f"error: sweep file '{tmp_path / 'missing.yaml'}' not found "
                                                  "(pass file=<a W&B sweep YAML>, e.g. experiments/sweeps/)"]
