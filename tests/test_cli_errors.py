"""Bad input on the command line: one line on stderr, exit code 2, no model loaded, nothing written.

Every CLI case runs the entry point as a subprocess (as a user would) with `hydra.run.dir` under tmp_path,
and checks: exit code 2, exactly one `error: ...` line on stderr naming the problem, no output file, torch
never imported (the check ran before any model code), and the wall time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from miva_lightning.adapters import Miva, MivaConfig, base_identity, save_miva
from miva_lightning.backbones.tiny import load_tiny_backbone
from miva_lightning.cli_errors import input_error_line
from miva_lightning.config import REPO_ROOT
from miva_lightning.inputs import (
    LORA_MODE_NAMES,
    SCHEDULER_NAMES,
    InputError,
    check_adapter_file,
    check_adapters,
    configured_base,
    safetensors_fingerprint,
)
from tiny_components import tiny_unet

# Interpreter start + Hydra + composing the config take ~0.3 s on a quiet machine (measured); the limit
# leaves room for a loaded one. Loading a model (torch alone is ~1 s, the base 5-7 s) would exceed it.
MAX_SECONDS = float(os.environ.get("MIVA_CLI_ERROR_MAX_S", "2.0"))
BASE = REPO_ROOT / "artifacts" / "base" / json.loads((REPO_ROOT / "artifacts" / "base" / "tiny.json").read_text())["folder"]

# Runs a CLI module as `python -m` would, and reports at exit whether torch was ever imported.
_RUNNER = (
    "import atexit, runpy, sys\n"
    "atexit.register(lambda: sys.stdout.write('\\n[torch imported]' if 'torch' in sys.modules else '\\n[no torch]'))\n"
    "sys.argv = [sys.argv[1]] + sys.argv[2:]\n"
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
)


def run_cli(module: str, args: list[str], tmp_path: Path, **env_extra: str) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MIVA_ROOT=str(tmp_path), HF_HUB_OFFLINE="1", WANDB_MODE="offline")
    env.pop("HYDRA_FULL_ERROR", None)
    env.update(env_extra)
    command = [sys.executable, "-c", _RUNNER, f"miva_lightning.cli.{module}", *args, f"hydra.run.dir={tmp_path / 'run'}"]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    return proc, time.perf_counter() - started


def assert_one_line_error(proc, elapsed: float, *words: str, out_dir: Path | None = None) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert len(lines[0]) < 400, lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert proc.stdout.strip().endswith("[no torch]"), "the input was checked only after torch was imported"
    assert elapsed < MAX_SECONDS, f"{elapsed:.2f} s to report: {lines[0]}"
    if out_dir is not None:
        assert not out_dir.exists() or not any(out_dir.iterdir()), sorted(out_dir.iterdir())
    return lines[0]


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def base_unet():
    return load_tiny_backbone(BASE).unet


@pytest.fixture(scope="module")
def good_adapter(tmp_path_factory, base_unet) -> Path:
    """A valid MIVA for the committed base."""
    miva = Miva.from_unet(base_unet, MivaConfig(ca_rank=4, lora_rank=2))
    return save_miva(tmp_path_factory.mktemp("good") / "good.safetensors", miva, base_identity(base_unet, "tiny"))


@pytest.fixture(scope="module")
def other_base_adapter(tmp_path_factory) -> Path:
    """A valid MIVA file made for another base (the tiny test UNet), recorded under the same base name."""
    unet = tiny_unet()
    miva = Miva.from_unet(unet, MivaConfig(ca_rank=4, lora_rank=2))
    return save_miva(tmp_path_factory.mktemp("other") / "other.safetensors", miva, base_identity(unet, "tiny"))


@pytest.fixture()
def photo(tmp_path) -> Path:
    path = tmp_path / "photo.png"
    Image.fromarray(np.full((32, 48, 3), 128, dtype=np.uint8)).save(path)
    return path


def animate(tmp_path: Path, image: Path | str, *adapters: str, extra: tuple[str, ...] = (), **env: str):
    args = [f"image={image}", f"backbone.pretrained={BASE}", f"out={tmp_path / 'out' / 'photo'}", *extra]
    for spec in adapters:
        args += ["--adapter", spec]
    return run_cli("animate", args, tmp_path, **env)


# ------------------------------------------------------------------------------------------ images


def test_missing_image(tmp_path):
    proc, elapsed = animate(tmp_path, tmp_path / "nope.png")
    assert_one_line_error(proc, elapsed, "nope.png", "does not exist", "image=", out_dir=tmp_path / "out")


def test_unreadable_image(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    proc, elapsed = animate(tmp_path, text)
    assert_one_line_error(proc, elapsed, "notes.png", "not an image", "PNG/JPG", out_dir=tmp_path / "out")


def test_image_folder_without_images(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    proc, elapsed = animate(tmp_path, folder)
    assert_one_line_error(proc, elapsed, "frames", "no PNG/JPG images", "image=", out_dir=tmp_path / "out")


def test_image_folder_with_two_images_of_one_stem(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("a.png", "a.jpg"):
        Image.fromarray(np.full((8, 8, 3), 128, dtype=np.uint8)).save(folder / name)
    proc, elapsed = animate(tmp_path, folder)
    assert_one_line_error(proc, elapsed, "a.jpg", "a.png", "rename one", out_dir=tmp_path / "out")


def test_image_folder_with_a_broken_image(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(np.full((8, 8, 3), 128, dtype=np.uint8)).save(folder / "a.png")
    (folder / "b.jpg").write_text("not an image")
    proc, elapsed = animate(tmp_path, folder)
    assert_one_line_error(proc, elapsed, "b.jpg", "not an image", out_dir=tmp_path / "out")


# ---------------------------------------------------------------------------------------- adapters


def test_missing_adapter_file(tmp_path, photo):
    proc, elapsed = animate(tmp_path, photo, f"{tmp_path / 'absent.safetensors'}:0.5")
    assert_one_line_error(proc, elapsed, "absent.safetensors", "does not exist", out_dir=tmp_path / "out")


def test_garbage_adapter_file(tmp_path, photo):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"definitely not a tensor file, just some words")
    proc, elapsed = animate(tmp_path, photo, str(garbage))
    assert_one_line_error(proc, elapsed, "garbage.safetensors", "not a safetensors file", out_dir=tmp_path / "out")


def test_truncated_adapter_file(tmp_path, photo, good_adapter):
    data = good_adapter.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    proc, elapsed = animate(tmp_path, photo, f"{truncated}:1")
    assert_one_line_error(proc, elapsed, "truncated.safetensors", "truncated", out_dir=tmp_path / "out")


@pytest.mark.parametrize("name", ["adapter.ckpt", "adapter.safetensors"])
def test_pickle_adapter_file(tmp_path, photo, name):
    pickled = tmp_path / name
    torch.save({"state_dict": {"w": torch.zeros(2)}}, pickled)
    proc, elapsed = animate(tmp_path, photo, f"{pickled}:1")
    assert_one_line_error(proc, elapsed, name, "pickle", ".safetensors", out_dir=tmp_path / "out")


def test_adapter_of_another_base(tmp_path, photo, other_base_adapter):
    proc, elapsed = animate(tmp_path, photo, f"{other_base_adapter}:1")
    line = assert_one_line_error(proc, elapsed, "other.safetensors", "another base", out_dir=tmp_path / "out")
    assert safetensors_fingerprint(BASE / "unet" / "diffusion_pytorch_model.safetensors") in line


@pytest.mark.parametrize(
    "weight, words",
    [("nan", ("not a finite number",)), ("-0.5", ("negative weight", ">= 0")), ("strong", ("'strong'", "not a number"))],
)
def test_bad_adapter_weight(tmp_path, photo, good_adapter, weight, words):
    proc, elapsed = animate(tmp_path, photo, f"{good_adapter}:{weight}")
    assert_one_line_error(proc, elapsed, "good.safetensors", *words, out_dir=tmp_path / "out")


# ------------------------------------------------------------------------------------- config keys


def test_misspelled_key_in_miva_train(tmp_path):
    proc, elapsed = run_cli("train", ["trainer.max_stepz=5"], tmp_path)
    assert_one_line_error(proc, elapsed, "trainer.max_stepz", "did you mean trainer.max_steps")


def test_misspelled_key_in_miva_animate(tmp_path, photo):
    proc, elapsed = animate(tmp_path, photo, extra=("stepz=3",))
    assert_one_line_error(proc, elapsed, "'stepz'", "did you mean steps", out_dir=tmp_path / "out")


def test_unknown_config_group_option(tmp_path):
    proc, elapsed = run_cli("train", ["data=fewshot_foldr"], tmp_path)
    assert_one_line_error(proc, elapsed, "data/fewshot_foldr", "did you mean data=fewshot_folder")


# -------------------------------------------------------------------------------------- miva-train


def train(tmp_path: Path, *args: str):
    out = tmp_path / "out"
    return run_cli("train", [f"backbone.pretrained={BASE}", f"adapter_out={out / 'a.safetensors'}", *args], tmp_path)


def test_empty_data_folder(tmp_path):
    (tmp_path / "lamp").mkdir()
    proc, elapsed = train(tmp_path, "data=fewshot_folder", f"data.root={tmp_path / 'lamp'}")
    assert_one_line_error(proc, elapsed, "lamp", "no motion folders", "data.root=", out_dir=tmp_path / "out")


def test_missing_motion_folder(tmp_path):
    (tmp_path / "lamp" / "waterfall").mkdir(parents=True)
    (tmp_path / "lamp" / "waterfall" / "clip.mp4").write_bytes(b"")
    proc, elapsed = train(tmp_path, "data=fewshot_folder", f"data.root={tmp_path / 'lamp'}", "motion=birds")
    assert_one_line_error(proc, elapsed, "birds", "does not exist", "waterfall", out_dir=tmp_path / "out")


def test_obviously_wrong_training_numbers(tmp_path):
    proc, elapsed = train(tmp_path, "optimization.lr=-1e-4")
    assert_one_line_error(proc, elapsed, "optimization.lr=-0.0001", "> 0", out_dir=tmp_path / "out")


# --------------------------------------------------------------------------- tracebacks on request


@pytest.mark.parametrize("how", ["flag", "env"])
def test_verbose_or_hydra_full_error_show_the_traceback(tmp_path, how):
    args, env = (["--verbose"], {}) if how == "flag" else ([], {"HYDRA_FULL_ERROR": "1"})
    proc, _ = animate(tmp_path, tmp_path / "nope.png", extra=tuple(args), **env)
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr and "InputFileNotFoundError" in proc.stderr


def test_a_bug_keeps_hydras_traceback(tmp_path):
    app = (
        "import hydra\n"
        "from miva_lightning.cli_errors import report_input_errors, run_cli\n"
        "@hydra.main(version_base='1.3', config_path=None)\n"
        "@report_input_errors\n"
        "def app(cfg):\n"
        "    raise RuntimeError('a genuine bug')\n"
        "run_cli(app)\n"
    )
    proc = subprocess.run([sys.executable, "-c", app, f"hydra.run.dir={tmp_path}"], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "RuntimeError: a genuine bug" in proc.stderr and "error: " not in proc.stderr


def test_bugs_are_not_input_errors():
    assert input_error_line(RuntimeError("a bug")) is None
    assert input_error_line(KeyError("x")) is None
    assert input_error_line(InputError("bad\n  input")) == "bad input"


# ------------------------------------------------------------------------- the library checks alone


def test_fingerprint_from_the_file_equals_the_loaded_base(base_unet):
    from_file = safetensors_fingerprint(BASE / "unet" / "diffusion_pytorch_model.safetensors")
    assert from_file == base_identity(base_unet, "tiny")["fingerprint"]
    assert configured_base({"kind": "tiny", "pretrained": str(BASE)})["fingerprint"] == from_file


def test_a_good_adapter_passes_every_check(good_adapter, other_base_adapter):
    backbone = {"kind": "tiny", "name": "tiny", "pretrained": str(BASE)}
    assert check_adapters([f"{good_adapter}:0.5"], backbone) == [(str(good_adapter), 0.5)]
    assert check_adapter_file(good_adapter)["base"]["name"] == "tiny"
    with pytest.raises(InputError, match="another base"):
        check_adapters([str(other_base_adapter)], backbone)
    # without a known fingerprint (random init or AnimateDiff) the base NAME is compared; the after-load check remains
    assert check_adapters([str(other_base_adapter)], {"kind": "tiny", "name": "tiny", "pretrained": None})
    with pytest.raises(InputError, match="made for base 'tiny'"):
        check_adapters([str(other_base_adapter)], {"kind": "animatediff", "name": "animatediff_sd15"})


def test_scheduler_names_match_the_sampling_module():
    from miva_lightning.sampling.schedulers import SCHEDULERS

    assert sorted(SCHEDULER_NAMES) == sorted(SCHEDULERS)


def test_lora_mode_names_match_the_adapters_module():
    from miva_lightning.adapters.temporal_lora import LORA_MODE_CHOICES
    from miva_lightning.animate import LORA_MODES

    assert sorted(LORA_MODE_NAMES) == sorted(LORA_MODE_CHOICES) == sorted(LORA_MODES)


def test_cfa_mode_names_match_the_adapters_module():
    from miva_lightning.adapters.cross_frame_attention import CFA_MODES
    from miva_lightning.animate import CFA_MODES as ANIMATE_CFA_MODES
    from miva_lightning.inputs.settings import CFA_MODE_NAMES

    assert sorted(CFA_MODE_NAMES) == sorted(CFA_MODES) == sorted(ANIMATE_CFA_MODES)
