"""`make reproduce-table2`'s machinery on a micro grid (tiny random base, 2 steps, 2 held-out frames):
one JSON per cell through `miva-table2 --multirun`, the report, reuse of finished cells after a kill, identical
numbers for identical cells, failures recorded, the adapter-off retention path, the report against golden files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from miva_lightning.benchmark import methods
from miva_lightning.benchmark.cells import cell_path, load_backbone, run_cell
from miva_lightning.benchmark.report import build_report, csv_text, load_cells, markdown
from miva_lightning.config import CONFIG_DIR, REPO_ROOT, compose
from miva_lightning.metrics.intervals import wilson_interval
from miva_lightning.pipelines.methods import METHODS
from miva_lightning.world import HELD_OUT_MOTIONS, IN_PRIOR_MOTIONS, heldout_first_frames
from tiny_components import TINY_BACKBONE, TINY_MIVA

GOLDEN = Path(__file__).parent / "data" / "table2"
MICRO = [
    "table2_grid=micro",
    "backbone.pretrained=null",
    *TINY_BACKBONE,
    "backbone.num_frames=8",  # fd_motionworld's network reads 8 frames
    "budget.train_overrides=[" + ",".join(repr(o) for o in TINY_MIVA) + "]",
    "num_threads=1",
]
MICRO_CELLS = [("base_prompted", "zoom_out", 0), ("miva", "zoom_out", 0)]
# what legitimately differs between two computations of one cell: wall clock, memory, where files went, code
# version; and final_loss, the mean of the losses THIS process saw (a resumed training saw only the rest)
VOLATILE = {"timings", "train_time_s", "peak_mem_mb", "peak_mem_kind", "commit", "export_path", "sample_gif",
            "retention_source", "final_loss"}


def env_for(root: Path) -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MIVA_ROOT=str(root), HF_HUB_OFFLINE="1", WANDB_MODE="offline")


def grid_command(root: Path, module: str = "table2", *extra: str) -> list[str]:
    multirun = ["--multirun", f"hydra.sweep.dir={root / 'sweep'}"] if module == "table2" else []
    return [sys.executable, "-m", f"miva_lightning.cli.{module}", *multirun, *MICRO, *extra]


def numbers(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in VOLATILE}


def comparable(report: dict) -> dict:
    return {"summary": [{k: v for k, v in row.items() if k not in {"train_time_s", "peak_mem_mb"}} for row in report["summary"]],
            "cells": [numbers(c) for c in report["cells"]]}


@pytest.fixture(scope="module")
def micro_grid(tmp_path_factory) -> Path:
    """The micro grid run as a user runs it: `miva-table2 --multirun table2_grid=micro`, then `miva-report`."""
    root = tmp_path_factory.mktemp("table2")
    for module in ("table2", "report"):
        result = subprocess.run(grid_command(root, module), cwd=REPO_ROOT, env=env_for(root), capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    return root / "results" / "table2_micro"


def micro_cfg(root: Path, method: str, *extra: str):
    return compose("table2", [*MICRO, f"method={method}", "motion=zoom_out", "seed=0", f"paths.root={root}", *extra])


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_micro_grid_writes_one_json_per_cell_and_the_report(micro_grid):
    cells = {(c["method"], c["motion"], c["seed"]): c for c in load_cells(micro_grid)}
    assert set(cells) == set(MICRO_CELLS)
    for (method, motion, seed), cell in cells.items():
        assert (micro_grid / "cells" / method / motion / f"seed{seed}.json").is_file()
        assert cell["status"] == "ok" and cell["split"] == "held_out" and cell["n_eval"] == 2
        assert cell["accuracy_ci"] == pytest.approx(list(wilson_interval(cell["n_correct"], 2)), abs=1e-6)
        assert cell["fd_motionworld"]["n_generated"] == cell["fd_motionworld"]["n_reference"] == 2
        assert cell["fd_motionworld"]["value"] is not None and cell["first_frame_psnr_db"] > 60  # lossless codec
        assert cell["first_frame_ssim"] is not None and cell["flicker"] is not None and cell["drift"] is not None
        assert cell["retention_n"] == 8 and 0 <= cell["retention"] <= 1  # 8 captioned motions x n_retention=1
        assert cell["peak_mem_mb"] > 0 and len(cell["commit"]) in (40, 7) and len(cell["config_hash"]) == 10
        assert set(cell["timings"]) >= {"train_s", "sample_s", "measure_s", "retention_s", "total_s"}
        assert Path(cell["sample_gif"]).is_file()
    miva, base = cells[("miva", "zoom_out", 0)], cells[("base_prompted", "zoom_out", 0)]
    assert miva["steps"] == 2 and miva["trainable_params"] > 0 and miva["bytes_on_disk"] == os.path.getsize(miva["export_path"])
    assert base["steps"] == 0 and base["trainable_params"] == 0 and base["bytes_on_disk"] == 0
    report = json.loads((micro_grid / "table2.json").read_text())
    assert {"cells", "commit", "config_hash", "machine", "summary"} <= set(report) and len(report["cells"]) == 2
    for name in ("table2.csv", "table2.md", "accuracy_by_split.png", "accuracy_vs_params.png", "grid.gif"):
        assert (micro_grid / name).stat().st_size > 0, name
    assert (micro_grid / "accuracy_by_split.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_cell_twice_gives_identical_numbers_and_a_rerun_reuses_finished_cells(micro_grid, tmp_path, one_thread):
    """A second, independent computation of every cell (own work folders) equals the grid's; then a cell whose
    JSON was never written (killed) is recomputed while the finished one is reused untouched, and the table equals
    the uninterrupted run's."""
    cfgs = [micro_cfg(tmp_path, method) for method, _, _ in MICRO_CELLS]
    first = [run_cell(cfg) for cfg in cfgs]
    reference = {(c["method"], c["motion"], c["seed"]): numbers(c) for c in load_cells(micro_grid)}
    assert not any(o.reused for o in first)
    for outcome in first:
        r = outcome.record
        assert numbers(r) == reference[(r["method"], r["motion"], r["seed"])]

    kept, killed = cell_path(cfgs[0]), cell_path(cfgs[1])
    killed.unlink()
    mtime = kept.stat().st_mtime_ns
    second = [run_cell(cfg) for cfg in cfgs]
    assert [o.reused for o in second] == [True, False]
    assert kept.stat().st_mtime_ns == mtime and killed.is_file()
    machine = {"platform": "test"}
    rerun = build_report(load_cells(tmp_path / "results" / "table2_micro"), "commit", machine)
    uninterrupted = build_report(load_cells(micro_grid), "commit", machine)
    assert comparable(rerun) == comparable(uninterrupted)


def test_a_changed_config_is_recomputed_not_reused(micro_grid, tmp_path, one_thread):
    shutil.copytree(micro_grid / "cells", tmp_path / "results" / "table2_micro" / "cells")
    outcome = run_cell(micro_cfg(tmp_path, "base_prompted", "sample.guidance_scale=3.0"))
    assert not outcome.reused and outcome.record["config_hash"] != load_cells(micro_grid)[0]["config_hash"]


def test_a_training_that_raises_is_written_as_failed_and_reported(tmp_path, one_thread):
    bad = micro_cfg(tmp_path, "miva", "budget.train_overrides=['adapter.lora_rank=0']")
    outcome = run_cell(bad)
    record = json.loads(cell_path(bad).read_text())
    assert record["status"].startswith("failed: training: ") and "lora_rank" in record["status"]
    assert "Traceback" in record["error"] and record == outcome.record
    assert not run_cell(bad).reused  # failed cells are never reused
    report = build_report(load_cells(tmp_path / "results" / "table2_micro"), "commit", {})
    assert report["n_failed"] == 1 and report["summary"][0]["failed"] == [f"zoom_out/seed0: {record['status']}"]
    assert "## Failed cells" in markdown(report)


def test_retention_of_an_adapter_method_is_the_base_bit_for_bit(micro_grid, tmp_path, one_thread):
    """Adapter off (weight 0) = not attached: the benchmark's retention path animates the base itself. (A MIVA
    ATTACHED at weight 0 is not the base when base_branch=none, the METHOD default: attn2 stays replaced.)"""
    from miva_lightning.animate import animate_batch

    cfg = micro_cfg(tmp_path, "miva")
    miva = next(c for c in load_cells(micro_grid) if c["method"] == "miva")
    trained = methods.Trained(export=miva["export_path"])
    base = load_backbone(cfg)
    frames = heldout_first_frames(1, size=32, seed=0)
    model = methods.retention_backbone(cfg, trained, base)
    retained = methods.sample_prompted(cfg, model, frames, "pan_left")
    plain = animate_batch(frames, [], load_backbone(cfg), num_frames=8, steps=2, seed=0, prompt="camera pans left", guidance_scale=2.0)
    assert torch.equal(retained, plain)
    attached_at_zero = animate_batch(frames, [(miva["export_path"], 0.0)], base, num_frames=8, steps=2, seed=0,
                                     prompt="camera pans left", guidance_scale=2.0)  # fmt: skip
    assert not torch.equal(attached_at_zero, plain)


def test_report_from_fixed_cells_matches_the_golden_files():
    """Regenerate after an intended change: UPDATE_GOLDEN=1 pytest tests/test_table2.py -k golden."""
    report = build_report(load_cells(GOLDEN), "0" * 40, {"platform": "golden", "cpu_count": 2, "torch": "x", "device": "cpu"})
    outputs = {"table2.json": json.dumps(report, indent=2) + "\n", "table2.csv": csv_text(report), "table2.md": markdown(report)}
    for name, text in outputs.items():
        if os.environ.get("UPDATE_GOLDEN"):
            (GOLDEN / name).write_text(text)
        assert text == (GOLDEN / name).read_text(), name
    rows = {(r["method"], r["split"]): r for r in report["summary"]}
    miva = rows[("miva", "in_prior")]  # two seeds of rotate_ccw: 7/10 and 5/10 correct, pooled 12/20
    assert miva["accuracy"] == 0.6 and miva["accuracy_ci"] == [round(v, 4) for v in wilson_interval(12, 20)]
    assert miva["n_cells"] == 2 and miva["seeds"] == [0, 1] and miva["fd_motionworld"] == 135.0
    assert rows[("motion_lora", "held_out")]["n_failed"] == 1 and rows[("motion_lora", "held_out")]["accuracy"] is None


def test_a_seed_free_method_counts_each_motion_once():
    """base_prompted trains nothing and samples with the grid's seed: its seed-1 cell repeats seed 0."""
    cells = load_cells(GOLDEN)
    repeated = [{**c, "seed": 1} for c in cells if c["method"] == "base_prompted"]
    machine = {"platform": "golden", "cpu_count": 2, "torch": "x", "device": "cpu"}
    once = {(r["method"], r["split"]): r for r in build_report(cells, "0" * 40, machine)["summary"]}
    twice = {(r["method"], r["split"]): r for r in build_report(cells + repeated, "0" * 40, machine)["summary"]}
    assert twice == once and once[("base_prompted", "held_out")]["n_cells"] == 1


def test_grids_cover_the_stated_cells():
    grids = {name: OmegaConf.load(CONFIG_DIR / "table2_grid" / f"{name}.yaml") for name in ("full", "quick", "micro")}
    params = {name: {k: str(v).split(",") for k, v in g.hydra.sweeper.params.items()} for name, g in grids.items()}
    assert params["full"] == {"method": list(METHODS), "motion": [*IN_PRIOR_MOTIONS, *HELD_OUT_MOTIONS], "seed": ["0", "1"]}
    assert params["quick"]["method"] == list(METHODS) and params["quick"]["seed"] == ["0"]
    assert set(params["quick"]["motion"]) <= set(params["full"]["motion"])
    assert len({OmegaConf.to_container(g)["out_dir"] for g in grids.values()}) == 3  # a quick run never replaces cells of the full one
    for name in ("full", "quick"):  # miva_composed's partner adapters are miva cells of the same grid
        partners = compose("table2", [f"table2_grid={name}"]).composed_partner
        assert {partners[m] for m in params[name]["motion"]} <= set(params[name]["motion"])


@pytest.mark.slow
def test_killed_mid_training_then_rerun_ends_with_the_uninterrupted_table(micro_grid, tmp_path):
    """SIGKILL `miva-table2 --multirun` once the miva cell wrote its first checkpoint; the re-run reuses the finished
    cell, resumes the training and ends with the same table as the uninterrupted grid."""
    process = subprocess.Popen(grid_command(tmp_path), cwd=REPO_ROOT, env=env_for(tmp_path),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    checkpoints = tmp_path / "outputs" / "table2_work" / "miva"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not list(checkpoints.glob("*/*/checkpoints/step_*.ckpt")):  # complete (not .partial-)
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    out = tmp_path / "results" / "table2_micro"
    finished = {p: p.stat().st_mtime_ns for p in (out / "cells").glob("*/*/*.json")}
    assert len(finished) == 1  # base_prompted done, miva killed mid-training
    result = subprocess.run(grid_command(tmp_path), cwd=REPO_ROOT, env=env_for(tmp_path), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resume_from=auto: resuming from" in result.stdout + result.stderr, (result.stdout + result.stderr)[-4000:]
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    machine = {"platform": "test"}
    assert comparable(build_report(load_cells(out), "c", machine)) == comparable(build_report(load_cells(micro_grid), "c", machine))


def test_miva_composed_reuses_the_run_folders_of_the_miva_cells(tmp_path):
    """Its two MIVAs are trained (or resumed, finished) in exactly the folders the miva cells of the grid use."""
    from miva_lightning.benchmark.identity import work_dir

    composed = micro_cfg(tmp_path, "miva_composed", "composed_partner.zoom_out=birds")
    assert work_dir(methods.miva_cell(composed, "zoom_out")) == work_dir(micro_cfg(tmp_path, "miva"))
    birds = compose("table2", [*MICRO, "method=miva", "motion=birds", "seed=0", f"paths.root={tmp_path}"])
    assert work_dir(methods.miva_cell(composed, "birds")) == work_dir(birds)
