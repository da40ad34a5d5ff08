"""`make ablations`' machinery: ablation configs as cells of the Table 2 engine (configs/ablations.yaml), the
shared training of inference ablations, the paired deltas and curves of the ablation report (known answers), and
the micro grid run as a user runs it (`miva-table2 --config-name ablations --multirun`, then `miva-report`)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from miva_lightning.benchmark.ablation_report import ablation_rows, ablation_summary, build_ablation_report, curves
from miva_lightning.benchmark.identity import cell_identity, cell_label, work_dir
from miva_lightning.config import CONFIG_DIR, REPO_ROOT, compose
from miva_lightning.metrics.intervals import paired_difference_interval
from test_table2 import MICRO, env_for

ABLATIONS = sorted(p.stem for p in (CONFIG_DIR / "ablation").glob("*.yaml"))
ABLATION_MICRO = ["ablation_grid=micro", *[o for o in MICRO if not o.startswith("table2_grid=")]]


def ablation_cfg(name: str, *extra: str):
    return compose("ablations", [f"ablation={name}", "motion=rotate_ccw", "seed=0", *extra])


def test_every_ablation_changes_the_cell_and_only_inference_ablations_share_the_trained_adapter():
    reference = ablation_cfg("none")
    assert cell_label(reference) == "miva" and reference.method.name == "miva"
    for name in ABLATIONS:
        if name == "none":
            continue
        cfg = ablation_cfg(name)
        kind = cfg.ablation.kind
        assert kind in ("training", "inference") and cell_label(cfg) == name, name
        assert cell_identity(cfg) != cell_identity(reference), f"{name} changes nothing"
        shares = work_dir(cfg) == work_dir(reference)
        if cfg.method.name == "miva":  # composed ablations train the miva cells' adapters (their own folders)
            assert shares == (kind == "inference"), name


def test_an_ablation_overrides_the_settings_it_names():
    assert ablation_cfg("no_cfa").method.adapter.cross_frame is False
    assert ablation_cfg("ddim_50").sample.steps == 50 and ablation_cfg("none").sample.steps == 25
    assert ablation_cfg("noise_dct").method.sample.noise_init.dct_lowfreq_cutoff == 0.23
    assert ablation_cfg("lora_alpha_1").method.adapter.lora_alpha == 1.0
    residual = ablation_cfg("composed_residual")
    assert residual.method.name == "miva_composed" and residual.method.sample.lora_mode == "residual"


def test_the_components_grid_runs_every_ablation_on_a_camera_and_a_local_motion_with_two_seeds():
    from miva_lightning.world.motions import LOCAL_MOTIONS

    grid = OmegaConf.load(CONFIG_DIR / "ablation_grid" / "components.yaml").hydra.sweeper.params
    assert sorted(str(grid.ablation).split(",")) == ABLATIONS
    motions = str(grid.motion).split(",")
    assert any(m in LOCAL_MOTIONS for m in motions) and any(m not in LOCAL_MOTIONS for m in motions)
    assert str(grid.seed).split(",") == ["0", "1"]
    partners = compose("ablations", ["ablation_grid=components"]).composed_partner
    assert {partners[m] for m in motions} <= set(motions)  # composed cells reuse this grid's miva adapters


def cell(label: str, motion: str, seed: int, predictions: list[str], kind: str | None = "training", **extra) -> dict:
    correct = sum(p == motion for p in predictions)
    return {
        "method": "miva", "label": label, "motion": motion, "split": "in_prior", "seed": seed, "status": "ok",
        "n_eval": len(predictions), "n_correct": correct, "accuracy": correct / len(predictions),
        "accuracy_ci": [0.0, 1.0], "predictions": predictions, "fidelity": 0.5, "fd_motionworld": {"value": 2.0},
        "trainable_params": 10, "steps": 4, "train_time_s": 1.0, "config_hash": f"{label}{seed}", "ablation": {"kind": kind},
        "config": {"budget": {"num_clips": 10, "steps": 4}}, **extra,
    }  # fmt: skip


def test_deltas_are_paired_clip_by_clip_against_the_reference_of_the_same_motion_and_seed():
    r, s = "rotate_ccw", "static"
    cells = [
        cell("miva", r, 0, [r, r, s, s], kind="reference"),
        cell("miva", r, 1, [r, s, s, s], kind="reference"),
        cell("no_cfa", r, 0, [r, s, s, r]),  # pairs: 0, -1, 0, +1
        cell("no_cfa", r, 1, [s, s, s, s]),  # pairs: -1, 0, 0, 0
    ]
    rows = {(row["ablation"], row["seed"]): row for row in ablation_rows(cells, "miva")}
    assert rows[("no_cfa", 0)]["delta_vs_miva"] == 0.0 and rows[("no_cfa", 1)]["delta_vs_miva"] == -0.25
    summary = {(row["ablation"], row["motion"]): row for row in ablation_summary(cells, "miva")}
    no_cfa = summary[("no_cfa", r)]
    assert no_cfa["n_pairs"] == 8 and no_cfa["delta_vs_miva"] == -0.125 and no_cfa["accuracy"] == 0.25
    expected = paired_difference_interval([0, -1, 0, 1, -1, 0, 0, 0])
    assert no_cfa["delta_ci"] == [round(expected[1], 4), round(expected[2], 4)]
    assert summary[("miva", r)]["delta_vs_miva"] == 0.0 and summary[("miva", r)]["delta_ci"] == [0.0, 0.0]


def test_a_missing_or_failed_reference_gives_no_delta_and_a_failed_cell_is_listed():
    r = "waterfall"
    failed = {**cell("no_lora", r, 0, [r, r]), "status": "failed: training: boom"}
    report = build_ablation_report([cell("no_cfa", r, 0, [r, r]), failed], "miva", "abc", {})
    assert report["rows"][0]["delta_vs_miva"] is None and report["summary"][0]["n_pairs"] == 0
    assert report["n_failed"] == 1 and report["failed"] == ["no_lora/waterfall/seed0: failed: training: boom"]


def test_curves_pool_seeds_per_point_and_split_into_fewshot_and_budget_series():
    r, s = "rotate_ccw", "static"

    def point(method: str, clips: int, steps: int, seed: int, predictions: list[str]) -> dict:
        c = cell(f"curve_{method}_clips{clips}_steps{steps}", r, seed, predictions)
        c["method"], c["config"] = method, {"budget": {"num_clips": clips, "steps": steps}}
        return c

    cells = [point("miva", 1, 300, 0, [s, s]), point("miva", 1, 300, 1, [r, s]), point("miva", 10, 300, 0, [r, r]),
             point("full_ft", 10, 100, 0, [s, r]), point("full_ft", 10, 300, 0, [r, s])]  # fmt: skip
    data = curves(cells, fewshot_steps=300, budget_clips=10)
    assert [(p["num_clips"], p["accuracy"], p["seeds"]) for p in data["fewshot"]["miva"]] == [(1, 0.25, [0, 1]), (10, 1.0, [0])]
    assert [(p["steps"], p["accuracy"]) for p in data["budget"]["full_ft"]] == [(100, 0.5), (300, 0.5)]
    assert [p["steps"] for p in data["budget"]["miva"]] == [300]  # the 10-clip, 300-step point is on both curves
    assert build_ablation_report(copy.deepcopy(cells), "miva", "abc", {})["n_cells"] == 0  # curves are not ablations


def test_micro_ablation_grid_and_report_as_a_user_runs_them(tmp_path):
    """Reference, one training and one inference ablation through `miva-table2 --config-name ablations
    --multirun`, then `miva-report --config-name ablations`: one JSON per cell, the inference ablation sampled
    with the reference's trained adapter (one training folder for both), the report's files and rows."""
    runs = [["miva_lightning.cli.table2", "--multirun", "--config-name", "ablations", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
            ["miva_lightning.cli.report", "--config-name", "ablations"]]  # fmt: skip
    for command in runs:
        result = subprocess.run(
            [sys.executable, "-m", *command, *ABLATION_MICRO], cwd=REPO_ROOT, env=env_for(tmp_path),
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "results" / "ablations_micro"
    cells = {p.parent.parent.name: json.loads(p.read_text()) for p in (out / "cells").glob("*/*/seed0.json")}
    assert set(cells) == {"miva", "no_cfa", "noise_forward"}
    assert all(c["status"] == "ok" for c in cells.values()), [c["status"] for c in cells.values()]
    assert cells["noise_forward"]["ablation"]["kind"] == "inference"
    assert cells["noise_forward"]["export_path"] == cells["miva"]["export_path"]  # the same trained adapter
    assert cells["no_cfa"]["export_path"] != cells["miva"]["export_path"]
    assert cells["no_cfa"]["trainable_params"] < cells["miva"]["trainable_params"]
    report = json.loads((out / "ablations.json").read_text())
    assert {"rows", "summary", "commit", "config_hash", "machine", "reference"} <= set(report)
    for row in report["rows"]:
        assert {"ablation", "motion", "seed", "accuracy", "accuracy_ci", "delta_vs_miva", "fd_motionworld"} <= set(row)
    assert {r["ablation"]: r["delta_vs_miva"] for r in report["rows"]}["miva"] == 0.0
    assert set(json.loads((out / "curves.json").read_text())) >= {"fewshot", "budget"}
    for name in ("ablations.csv", "ablations.md", "ablations.png"):
        assert (out / name).stat().st_size > 0, name
