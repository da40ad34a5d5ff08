"""Pretraining: Lightning fast_dev_run end to end, saved base reused by config hash, results written."""

import json

import pytest

from miva_lightning.backbones.factory import build_backbone
from miva_lightning.pipelines import pretrain
from miva_lightning.config import compose

TINY = [
    "backbone.unet.block_out_channels=[16,32]",
    "backbone.unet.norm_num_groups=8",
    "backbone.unet.num_attention_heads=2",
    "backbone.unet.motion_num_attention_heads=2",
    "backbone.text.hidden_size=16",
    "backbone.text.num_layers=1",
    "data.batch_size=2",
    "eval.at_minutes=[0.0]",
    "eval.n_per_motion=1",
    "eval.final_n_per_motion=1",
    "eval.num_inference_steps=2",
    "logger=none",
]


@pytest.fixture
def cfg(tmp_path):
    return compose(
        "pretrain",
        TINY + [f"paths.root={tmp_path}", f"paths.output_dir={tmp_path}/out", "+trainer.fast_dev_run=true"],
    )


@pytest.mark.slow
def test_pretrain_fast_dev_run_saves_reuses_and_reports(cfg, tmp_path, capsys):
    record = pretrain.run(cfg)
    folder, digest = pretrain.base_folder(cfg)
    assert folder.is_dir() and digest in folder.name
    saved = json.loads((tmp_path / "results" / "pretrain.json").read_text())
    for key in ("per_motion_accuracy", "n_per_motion", "wall_time_s", "peak_rss_mb", "config_hash", "learning_curve"):
        assert key in saved
    assert saved["config_hash"] == digest and saved["steps"] == 1
    assert set(saved["per_motion_accuracy"]) == set(pretrain.BASE_MOTIONS)
    assert [p["steps"] for p in saved["learning_curve"]] == [1, 1]  # the 0-minute mark and the final point
    index = json.loads((tmp_path / "artifacts" / "base" / "tiny.json").read_text())
    assert index["folder"] == folder.name

    stamp = (folder / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    again = pretrain.run(cfg)
    assert "reusing" in capsys.readouterr().out
    assert again["config_hash"] == record["config_hash"]
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp

    latest = build_backbone({**dict(cfg.backbone), "pretrained": "latest", "artifacts_dir": str(tmp_path / "artifacts")})
    assert latest.config["pretrained_dir"] == str(folder)


def test_config_hash_ignores_paths_but_not_recipe(tmp_path):
    base = compose("pretrain", TINY + [f"paths.root={tmp_path}"])
    moved = compose("pretrain", TINY + [f"paths.root={tmp_path}/elsewhere"])
    changed = compose("pretrain", TINY + [f"paths.root={tmp_path}", "recipe.lr=0.5"])
    assert pretrain.base_folder(base)[1] == pretrain.base_folder(moved)[1]
    assert pretrain.base_folder(base)[1] != pretrain.base_folder(changed)[1]


@pytest.mark.slow
def test_eval_base_remeasures_a_saved_base(tmp_path):
    from miva_lightning.backbones.tiny import save_tiny_backbone
    from miva_lightning.pipelines import base_eval

    cfg = compose("eval_base", [f"paths.root={tmp_path}", "eval.n_per_motion=1", "eval.num_inference_steps=2",
                                "eval.caption_control_n=1"])
    small = compose("pretrain", TINY + [f"paths.root={tmp_path}"]).backbone
    folder = save_tiny_backbone(build_backbone({**dict(small), "pretrained": None}), tmp_path / "tiny-x", {})
    cfg.backbone = small
    cfg.backbone.pretrained = str(folder)
    record = base_eval.run(cfg)
    saved = json.loads((tmp_path / "results" / "base_eval.json").read_text())
    assert saved["per_motion_accuracy"] == record["per_motion_accuracy"]
    assert saved["n_per_motion"] == 1 and saved["steps"] == 2 and saved["seed"] == 0
    assert saved["base"] == str(folder)
    assert saved["split"]["rain"] == "captioned" and saved["split"]["waterfall"] == "in_prior"
    assert set(saved["caption_control"]) == {"a still scene", "camera pans left", "camera pans right", "camera pans up",
                                             "camera pans down", "camera zooms in", "the scene rotates clockwise",
                                             "rain falls", "a video", ""}
    assert all(sum(shares.values()) == pytest.approx(1.0) for shares in saved["caption_control"].values())
    assert set(saved["best_caption"]) == {"zoom_out", "rotate_ccw", "waterfall", "birds", "firework", "clouds"}


def test_base_v2_config_has_sd15_routes_and_web_like_data():
    cfg = compose("pretrain", ["backbone=tiny2", "experiment=pretrain_v2"])
    assert cfg.backbone.name == "tiny2" and not cfg.backbone.first_frame_concat and not cfg.backbone.text_to_time
    assert list(cfg.backbone.unet.down_block_types) == ["CrossAttnDownBlockMotion", "DownBlockMotion"]
    assert list(cfg.data.in_prior_motions) == ["rotate_ccw", "waterfall", "clouds"]
    assert cfg.trainer.max_steps == cfg.recipe.cosine_decay_steps and cfg.recipe.budget_minutes is None
    unet = build_backbone({**dict(compose("pretrain", ["backbone=tiny2"] + TINY).backbone), "pretrained": None}).unet
    assert unet.config.in_channels == 48 and unet.config.time_cond_proj_dim is None  # no image channels, no text->time
    assert [type(b).__name__ for b in unet.down_blocks] == ["CrossAttnDownBlockMotion", "DownBlockMotion"]


def test_a_second_stage_continues_a_saved_base_and_checks_its_architecture(tmp_path):
    """recipe.init_from: the stage starts from the saved weights (equal tensors), it must name an existing base
    of the same architecture, and a stage is a different config hash from its parent."""
    import torch

    from miva_lightning.backbones.tiny import build_tiny_backbone, save_tiny_backbone

    overrides = TINY + [f"paths.root={tmp_path}", "backbone=tiny2"]
    parent_cfg = compose("pretrain", overrides)
    parent = build_tiny_backbone({**dict(parent_cfg.backbone), "pretrained": None})
    save_tiny_backbone(parent, tmp_path / "artifacts" / "base" / "tiny2-parent", {"steps": 7, "config_hash": "parent"})

    stage = compose("pretrain", overrides + ["+recipe.init_from=tiny2-parent"])
    loaded, recipe = pretrain.parent_base(stage)
    assert recipe["steps"] == 7
    for name, tensor in parent.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[name], tensor), name
    assert pretrain.base_folder(stage)[1] != pretrain.base_folder(parent_cfg)[1]

    with pytest.raises(FileNotFoundError, match="recipe.init_from='missing'"):
        pretrain.parent_base(compose("pretrain", overrides + ["+recipe.init_from=missing"]))
    wider = compose("pretrain", overrides + ["+recipe.init_from=tiny2-parent", "backbone.text.hidden_size=32"])
    with pytest.raises(ValueError, match="other backbone settings"):
        pretrain.parent_base(wider)
