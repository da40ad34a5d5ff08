# Every target depends on `setup`, so each one works on a fresh clone.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
MOTIONS ?= default
ARGS    ?=
export DS_BUILD_OPS := 0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE ?= offline

.PHONY: setup test test-full pretrain eval-base demo train animate evaluate reproduce-table2 ablations benchmarks bench-real metrics-net clean-venv

setup: $(STAMP)

# Reinstall only when the pins or the package metadata change.
$(STAMP): requirements.txt pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

test-full: setup
	$(BIN)/python -m pytest -q -m ""

# Pretrain the tiny embedded base (reuses the committed/cached checkpoint when its config hash matches).
pretrain: setup
	$(BIN)/miva-pretrain $(ARGS)

# Re-measure the committed base: writes results/base_eval.json.
eval-base: setup
	$(BIN)/miva-eval-base $(ARGS)

# The main job on the embedded default: base (pretrained if needed) -> MIVA on ten clips -> animate -> measure.
demo: setup
	$(BIN)/python -m miva_lightning.cli.demo motions=$(MOTIONS) $(ARGS)

train: setup
	$(BIN)/miva-train $(ARGS)

animate: setup
	$(BIN)/miva-animate $(ARGS)

evaluate: setup
	$(BIN)/miva-eval $(ARGS)

# The paper's Table 2 on the embedded base v2 (configs/table2.yaml, results/table2/): one Hydra multirun job per
# (method, motion, seed) cell, each writing one JSON; then the report (table2.{json,csv,md}, plots, grid.gif).
# Full: every few-shot motion of the in_prior and held_out splits x all 7 methods x 2 seeds = 84 cells at
# 300 optimizer steps per trained method, sized for <= 2 h on 2 CPU cores (measured 0.16-0.20 s/step for every
# method: 72 trained cells x 300 steps ~ 72 min, plus ~12 s of sampling and judging per cell ~ 17 min; see
# configs/table2_grid/full.yaml). QUICK=1: rotate_ccw (in_prior) and zoom_out (held_out) x all methods x seed 0
# = 14 cells at 120 steps, <= 15 min (results/table2_quick/).
# Interrupted? Run the same command again: finished cells are reused, a killed training resumes.
# It runs on base v2's first stage, committed (artifacts/base/tiny2-d03effa7d1, configs/backbone/tiny2_stage1.yaml:
# the base of the committed records); rebuild it with `make pretrain ARGS="backbone=tiny2 experiment=pretrain_v2"`.
TABLE2_GRID := $(if $(QUICK),quick,full)
reproduce-table2: setup
	$(BIN)/miva-table2 --multirun table2_grid=$(TABLE2_GRID) $(ARGS)
	$(BIN)/miva-report table2_grid=$(TABLE2_GRID)

# MIVA's ablations and the few-shot / budget curves on base v2 (configs/ablations.yaml, results/ablations/): the
# same cells as Table 2 (one JSON per (ablation or curve point, motion, seed), reused after any kill), three
# multiruns, then the report (ablations.{json,csv,md}, ablations.png, curves.json, curves.png).
# Full: 22 ablations (13 trained, 8 sampling-only on the reference's adapters) on rotate_ccw (camera) and
# waterfall (local) x 2 seeds, 300 steps; MIVA and full fine-tuning at 1/3/5/10/20 clips and 100/300/900 steps
# on rotate_ccw x 2 seeds. QUICK=1: 6 ablations and 4 curve points on rotate_ccw, seed 0, 120 steps.
ABLATION_GRIDS := $(if $(QUICK),quick quick_curves,components fewshot budget)
ablations: setup
	for grid in $(ABLATION_GRIDS); do \
		$(BIN)/miva-table2 --multirun --config-name ablations ablation_grid=$$grid $(ARGS) || exit 1; done
	$(BIN)/miva-report --config-name ablations ablation_grid=$(firstword $(ABLATION_GRIDS))

# Rebuild the motion-feature network behind fd_motionworld / kvd_motionworld (artifacts/metrics/).
metrics-net: setup
	$(BIN)/python -m miva_lightning.metrics.motion_features

benchmarks: setup
	for b in $(filter-out benchmarks/bench_real_size.py,$(wildcard benchmarks/bench_*.py)); do $(BIN)/python $$b || exit 1; done

# MIVA vs full fine-tuning vs MotionLoRA on real-size SD1.5 + AnimateDiff v3 and Wan2.1-T2V-1.3B (random weights):
# exact trainable parameters and optimizer-state bytes, step time, peak memory (CUDA) or a computed estimate
# (CPU, at stated reduced sizes), inference with K = 1, 2, 4 MIVAs -> results/bench_real.json. CPU: ~15 min, ~14 GiB.
bench-real: setup
	$(BIN)/python benchmarks/bench_real_size.py --json results/bench_real.json $(ARGS)

clean-venv:
	rm -rf $(VENV)
