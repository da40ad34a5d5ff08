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

.PHONY: setup test test-full pretrain eval-base demo train animate evaluate benchmarks metrics-net clean-venv

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

# Rebuild the motion-feature network behind fd_motionworld / kvd_motionworld (artifacts/metrics/).
metrics-net: setup
	$(BIN)/python -m miva_lightning.metrics.motion_features

benchmarks: setup
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
