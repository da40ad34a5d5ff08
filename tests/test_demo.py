"""The demo driver: motion choice, the training config it composes, the combined-motion measure on
ground-truth clips, and (slow) a whole tiny run that writes results/demo.json and videos."""

from __future__ import annotations

import json

import pytest
import torch

from miva_lightning.backbones import build_backbone
from miva_lightning.backbones.tiny import save_tiny_backbone
from miva_lightning.pipelines.demo import (
    chosen_controls, chosen_motions, combined_components, demo_config, run_demo, train_overrides,
)
from miva_lightning.config import REPO_ROOT, compose
from miva_lightning.world import NOVEL_MOTIONS, render_clip, training_scene_seeds


def demo_cfg(*overrides: str):
    return compose("demo", [*overrides, "paths.output_dir=${out_dir}"])


def test_motion_choices():
    assert chosen_motions(demo_cfg()) == ["zoom_out", "waterfall"]
    assert chosen_motions(demo_cfg("motions=all")) == list(NOVEL_MOTIONS)
    assert chosen_motions(demo_cfg("motions=birds")) == ["birds"]
    assert chosen_motions(demo_cfg("motions='birds,clouds'")) == ["birds", "clouds"]
    with pytest.raises(ValueError, match="not novel world motions"):
        chosen_motions(demo_cfg("motions=pan_left"))
    assert chosen_controls(demo_cfg()) == ["pan_left", "pan_up"]
    assert chosen_controls(demo_cfg("controls=[]")) == []
    with pytest.raises(ValueError, match="not moving base motions"):
        chosen_controls(demo_cfg("controls=[zoom_out]"))


def test_direction_dependent_controls_are_not_flipped(tmp_path):
    cfg = demo_cfg()
    flips = {m: compose("train", train_overrides(cfg, m, tmp_path / m)).data.flip_p for m in ("pan_left", "pan_up", "zoom_out")}
    assert flips == {"pan_left": 0.0, "pan_up": 0.5, "zoom_out": 0.5}


def test_training_config_follows_the_demo_settings(tmp_path):
    cfg = demo_cfg("train.max_steps=7", "train.max_minutes=3", "train.num_clips=6", "seed=5",
                   "train.overrides=['adapter.lora_rank=8']")
    train_cfg = compose("train", train_overrides(cfg, "birds", tmp_path / "birds"))
    assert train_cfg.motion == "birds" and train_cfg.data.motion == "birds"
    assert train_cfg.trainer.max_steps == 7 and train_cfg.trainer.max_time == "00:00:03:00"
    assert train_cfg.data.max_clips == 6 and train_cfg.data.world_clips_per_motion == 6
    assert train_cfg.seed == 5 and train_cfg.adapter.lora_rank == 8
    assert train_cfg.adapter_out == str(tmp_path / "birds" / "birds.safetensors")


def test_combined_components_on_ground_truth_clips():
    seeds = training_scene_seeds(4, seed=11)
    zooms = torch.stack([render_clip("zoom_out", s).video for s in seeds])
    falls = torch.stack([render_clip("waterfall", s).video for s in seeds])
    on_zoom = combined_components(zooms, ["zoom_out", "waterfall"])
    on_falls = combined_components(falls, ["zoom_out", "waterfall"])
    assert on_zoom["visible_fraction"] == {"zoom_out": 1.0, "waterfall": 0.0}
    assert on_falls["visible_fraction"]["waterfall"] >= 0.75 and on_falls["visible_fraction"]["zoom_out"] == 0.0
    assert on_zoom["median_global"]["scale"] < 0.97


def test_combined_camera_motions_show_each_component():
    """A diagonal pan (content flowing right and down) shows pan_left and pan_up at once."""
    from miva_lightning.motion.classify import camera_components

    assert camera_components(1.0, 0.8, 1.0, 0.0) == {"pan_left", "pan_up"}
    assert camera_components(-0.1, 0.05, 0.95, 0.0) == {"zoom_out"}
    assert camera_components(0.5, 0.0, 1.0, 3.0) == {"pan_left", "rotate_cw"}
    assert camera_components(0.1, 0.1, 1.001, 0.1) == set()


@pytest.mark.slow
def test_tiny_demo_end_to_end(tmp_path):
    torch.manual_seed(0)
    tiny = ["backbone.num_frames=4", "backbone.unet.block_out_channels=[16,32]", "backbone.unet.norm_num_groups=8",
            "backbone.text.hidden_size=32", "backbone.text.num_layers=1"]
    base_cfg = compose("train", ["backbone.pretrained=null", "paths.output_dir=unused", *tiny])
    base = save_tiny_backbone(build_backbone(base_cfg.backbone), tmp_path / "base", recipe={"purpose": "tests"})
    results_path = tmp_path / "results" / "demo.json"
    results = run_demo(demo_config([
        f"backbone.pretrained={base}", "backbone.num_frames=4", f"out_dir={tmp_path / 'out'}",
        f"results_path={results_path}", "n_eval=2", "sample.steps=2", "train.max_steps=2", "train.num_clips=2",
        "train.batch_size=2", "train.checkpoint_every_n_steps=2", "train.preview_every_n_steps=2",
        "train.trainer=cpu", "train.overrides=['adapter.ca_rank=8','adapter.lora_rank=4','preview.num_first_frames=1']",
        f"photos=[{REPO_ROOT}/assets/photos/*.png]",
    ]))  # fmt: skip
    saved = json.loads(results_path.read_text())
    assert saved["n_eval"] == 2 and saved["seed"] == 42 and set(saved["motions"]) == {"zoom_out", "waterfall"}
    assert set(saved["controls"]) == {"pan_left", "pan_up"}
    for motion, row in [*saved["motions"].items(), *saved["controls"].items()]:
        assert 0.0 <= row["miva_accuracy"] <= 1.0 and 0.0 <= row["base_accuracy"] <= 1.0
        assert row["first_frame_psnr_db"] > 60.0  # frame 1 is the input (lossless pixel codec)
        assert row["train_time_s"] > 0 and row["steps"] == 2
        assert (tmp_path / "out" / motion / f"{motion}.safetensors").exists()
        assert (tmp_path / "out" / motion / "miva" / "heldout_01.mp4").exists()
        assert len(row["photos"]) >= 1
    combo = saved["multi_adapter"]
    assert combo["motions"] == ["pan_left", "pan_up"] and set(combo["visible_fraction"]) == set(combo["motions"])
    assert (tmp_path / "out" / "pan_left+pan_up" / "heldout_00.gif").exists()
    assert results["config"]["n_eval"] == 2
