"""The methods of the comparison (configs/method/) on a tiny saved base: what each trains, what its checkpoint
and export hold, that the export loads back and samples, determinism, and large_data's stream."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from miva_lightning.backbones import build_backbone
from miva_lightning.backbones.tiny import load_tiny_backbone, save_tiny_backbone
from miva_lightning.config import compose
from miva_lightning.pipelines.train import build_module, load_trained, sample_method, train_method
from miva_lightning.training.lamp_module import lamp_parameter_names
from tiny_components import TINY_BACKBONE, TINY_MIVA

TRAINED = ("miva", "motion_lora", "lamp", "full_ft")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = compose("train", ["backbone.pretrained=null", "paths.output_dir=unused", *TINY_BACKBONE])
    return save_tiny_backbone(build_backbone(cfg.backbone), tmp_path_factory.mktemp("base") / "tiny", {"purpose": "tests"})


def method_cfg(base: Path, method: str, out: Path, *extra: str):
    return compose("train", [
        f"backbone.pretrained={base}", *TINY_BACKBONE, *TINY_MIVA, f"method={method}", "motion=zoom_out",
        "data.world_clips_per_motion=3", "data.max_clips=3", "data.batch_size=2", "trainer=cpu", "trainer.max_steps=2",
        "trainer.enable_progress_bar=false", "checkpoint.every_n_steps=1", "preview.every_n_steps=1000",
        "preview.at_end=false", "logger=none", "callbacks=none", f"paths.output_dir={out}", *extra,
    ])  # fmt: skip


@pytest.fixture(scope="module")
def runs(tiny_base, tmp_path_factory) -> dict:
    """One 2-step run per trainable few-shot method (shared by the tests below)."""
    root = tmp_path_factory.mktemp("runs")
    return {m: train_method(method_cfg(tiny_base, m, root / m)) for m in TRAINED}


def checkpoint_keys(summary: dict) -> set[str]:
    saved = torch.load(Path(summary["run_dir"]) / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 2 and saved["optimizer_states"] and "miva_rng_states" in saved
    return set(saved["state_dict"])


def test_every_trainable_method_trains_and_checkpoints_only_what_it_trains(runs, tiny_base):
    unet = load_tiny_backbone(tiny_base).unet
    for method, summary in runs.items():
        assert summary["method"] == method and summary["steps"] == 2 and summary["final_loss"] > 0
        assert summary["trainable_params"] > 0 and summary["bytes_on_disk"] > 0 and Path(summary["export_path"]).exists()
    miva, lora = checkpoint_keys(runs["miva"]), checkpoint_keys(runs["motion_lora"])
    assert all(k.startswith("miva.") for k in miva) and any(k.startswith("miva.cross_frame.") for k in miva)
    assert lora and all(k.startswith("miva.temporal_lora.") for k in lora)  # MotionLoRA: temporal LoRA only
    assert lora < miva
    assert checkpoint_keys(runs["lamp"]) == {f"unet.{n}" for n in lamp_parameter_names(unet)}
    assert checkpoint_keys(runs["full_ft"]) == {f"unet.{n}" for n in unet.state_dict()}  # no text encoder
    sizes = {m: s["trainable_params"] for m, s in runs.items()}
    assert sizes["motion_lora"] < sizes["miva"] < sizes["full_ft"] and sizes["lamp"] < sizes["full_ft"]
    assert sizes["full_ft"] == sum(p.numel() for p in unet.parameters())


def test_lamp_trains_exactly_motion_modules_and_spatial_queries(tiny_base):
    unet = load_tiny_backbone(tiny_base).unet
    names = set(lamp_parameter_names(unet))
    motion = {n for n, _ in unet.named_parameters() if ".motion_modules." in f".{n}"}
    queries = names - motion
    assert motion <= names and queries
    assert all(".attn1.to_q." in n and ".attentions." in n for n in queries)
    spatial_attn1 = {n for n, _ in unet.named_parameters() if ".attn1.to_q." in n and n not in motion}
    assert queries == spatial_attn1


def test_optimizers_hold_what_trains(tiny_base):
    cfg = method_cfg(tiny_base, "miva", Path("unused"), "+optimization.total_steps=10")

    def optimizer_ids(method: str) -> tuple[set[int], object]:
        backbone = load_tiny_backbone(tiny_base)
        module = build_module(cfg, backbone, compose("train", [f"method={method}", "paths.output_dir=x"]).method)
        optimizer = module.configure_optimizers()["optimizer"]
        return {id(p) for g in optimizer.param_groups for p in g["params"]}, module

    full, module = optimizer_ids("full_ft")
    assert full == {id(p) for p in module.unet.parameters()}
    miva_ids, module = optimizer_ids("miva")
    adapter = {id(p) for p in module.miva.parameters()}
    base_weights = {id(p) for p in module.unet.parameters()} - adapter
    assert miva_ids == adapter and not miva_ids & base_weights
    lamp_ids, module = optimizer_ids("lamp")
    named = dict(module.unet.named_parameters())
    assert lamp_ids == {id(named[n]) for n in lamp_parameter_names(module.unet)}
    assert not any(p.requires_grad for p in module.text_encoder.parameters())


def test_each_export_loads_back_and_samples_with_frame_one_the_input(runs, tiny_base):
    backbone = load_tiny_backbone(tiny_base)
    frames = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    base_video = sample_method("base_prompted", None, backbone, frames, "zoom_out", 4, 2, 0)
    exports = {m: s["export_path"] for m, s in runs.items()}
    exports["miva_composed"] = [(exports["miva"], 0.5), (exports["motion_lora"], 0.5)]  # any two MIVA files
    for method, export in exports.items():
        video = sample_method(method, export, backbone, frames, "zoom_out", 4, 2, 0)
        assert video.shape == (2, 4, 3, 32, 32) and 0 <= video.min() and video.max() <= 1
        torch.testing.assert_close(video[:, 0], frames, atol=1e-5, rtol=0)
        if method in ("lamp", "full_ft"):  # trained weights were loaded (the MIVAs' zero-init outputs barely move)
            assert (video[:, 1:] - base_video[:, 1:]).abs().max() > 0
    # the caller's backbone is untouched: loading returns copies
    assert torch.equal(sample_method("base_prompted", None, backbone, frames, "zoom_out", 4, 2, 0), base_video)
    assert isinstance(load_trained(runs["lamp"], backbone).unet, type(backbone.unet))
    assert load_trained(runs["lamp"], backbone).unet is not backbone.unet


@pytest.mark.parametrize("method", ["lamp", "full_ft"])
def test_same_seed_gives_identical_exports(runs, tiny_base, tmp_path, method):
    again = train_method(method_cfg(tiny_base, method, tmp_path / "again"))

    def tensors(summary: dict) -> dict[str, torch.Tensor]:
        path = Path(summary["export_path"])
        return load_file(path if path.is_file() else path / "unet" / "diffusion_pytorch_model.safetensors")

    first, second = tensors(runs[method]), tensors(again)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert again["final_loss"] == runs[method]["final_loss"]


def test_full_ft_resume_repeats_an_uninterrupted_run(runs, tiny_base, tmp_path):
    first = train_method(method_cfg(tiny_base, "full_ft", tmp_path / "run", "trainer.max_steps=1"))
    assert first["steps"] == 1
    resumed = train_method(method_cfg(tiny_base, "full_ft", tmp_path / "run", "resume_from=auto"))
    assert resumed["steps"] == 2
    # it resumed: this process trained step 2 only, so its loss mean differs from the straight run's two steps
    assert resumed["final_loss"] != runs["full_ft"]["final_loss"]
    folder = "unet/diffusion_pytorch_model.safetensors"
    straight = load_file(Path(runs["full_ft"]["export_path"]) / folder)
    again = load_file(Path(resumed["export_path"]) / folder)
    assert all(torch.equal(straight[k], again[k]) for k in straight)


def test_large_data_stream_holds_only_the_chosen_motions_with_their_captions():
    from miva_lightning.training.large_data_module import large_data_clips
    from miva_lightning.world import caption_for

    clips = large_data_clips(["zoom_out", "waterfall"], 24, size=32, num_frames=4, seed=0)
    items = [clips[i] for i in range(len(clips))]
    assert {item["motion"] for item in items} == {"zoom_out", "waterfall"}
    assert all(item["caption"] == caption_for(item["motion"]) for item in items)
    assert len({item["scene_seed"] for item in items}) == len(items)  # every clip fresh
    assert torch.equal(clips[5]["video"], items[5]["video"])  # item i is a function of (seed, i)


def test_large_data_trains_one_model_for_several_motions(tiny_base, tmp_path):
    cfg = method_cfg(tiny_base, "large_data", tmp_path / "large", "method.motions=[zoom_out,waterfall]",
                     "method.min_clips_per_motion=0")  # fmt: skip
    summary = train_method(cfg)
    assert summary["motions"] == ["zoom_out", "waterfall"] and summary["steps"] == 2
    assert summary["clips_per_motion"] == 2.0
    keys = checkpoint_keys(summary)
    assert {k.split(".")[0] for k in keys} == {"unet", "text_encoder"}
    backbone = load_tiny_backbone(tiny_base)
    trained = load_trained(summary, backbone)
    assert trained.unet is not backbone.unet and trained.text_encoder is not backbone.text_encoder
    frames = torch.rand(1, 3, 32, 32)
    video = sample_method("large_data", summary["export_path"], backbone, frames, "waterfall", 4, 2, 0)
    assert video.shape == (1, 4, 3, 32, 32)
    torch.testing.assert_close(video[:, 0], frames, atol=1e-5, rtol=0)


def test_untrained_methods_return_an_empty_summary(tiny_base, tmp_path):
    for method in ("base_prompted", "miva_composed"):
        summary = train_method(method_cfg(tiny_base, method, tmp_path / method))
        assert summary["method"] == method and summary["steps"] == 0 and summary["export_path"] is None


def test_default_method_is_the_miva_and_unknown_methods_are_refused():
    from miva_lightning.pipelines.methods import method_config

    cfg = compose("train", ["paths.output_dir=x"])
    assert cfg.method.name == "miva" and cfg.method.lr is None and not cfg.method.adapter
    with pytest.raises(ValueError, match="unknown"):
        method_config("dreambooth")


@pytest.mark.slow
def test_miva_train_method_lamp_from_the_command_line(tiny_base, tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1", MIVA_ROOT=str(tmp_path), HF_HUB_OFFLINE="1", WANDB_MODE="offline")
    args = [
        f"backbone.pretrained={tiny_base}", *TINY_BACKBONE, "method=lamp", "motion=zoom_out", "data.batch_size=2",
        "trainer=cpu", "trainer.max_steps=2", "checkpoint.every_n_steps=2", "preview.every_n_steps=2",
        "preview.num_first_frames=1", "preview.steps=2", "preview.formats=[gif]", f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    run = subprocess.run([sys.executable, "-m", "miva_lightning.cli.train", *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    export = tmp_path / "run" / "zoom_out.lamp.safetensors"
    assert f"export: {export}" in run.stdout and "trained lamp" in run.stdout
    assert (tmp_path / "run" / "previews" / "step_000002" / "preview_0.gif").exists()  # captioned, guided previews
    assert load_trained(str(export), load_tiny_backbone(tiny_base)).unet is not None
