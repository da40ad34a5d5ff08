"""Every entry-point config composes, with its groups, and takes command-line overrides."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from miva_lightning.config import CONFIG_DIR, compose

TOP_LEVEL = sorted(p.stem for p in Path(CONFIG_DIR).glob("*.yaml"))
GROUP_FILES = sorted((p.parent.name, p.stem) for p in Path(CONFIG_DIR).glob("*/*.yaml") if p.parent.name != "hydra")


def test_there_are_entry_point_configs():
    assert TOP_LEVEL, f"no top-level configs in {CONFIG_DIR}"


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_entry_point_config_composes(name):
    cfg = compose(name)
    raw = OmegaConf.load(Path(CONFIG_DIR) / f"{name}.yaml")
    runs_as_hydra_app = any(isinstance(d, dict) and "hydra" in d for d in raw.get("defaults", []))
    if runs_as_hydra_app:  # its run folder is outputs/<task_name>/<time>
        assert "task_name" in cfg, f"configs/{name}.yaml has no task_name"
    # Resolve everything that does not need a running Hydra app.
    OmegaConf.to_container(cfg.get("paths", {}), resolve=False)


@pytest.mark.parametrize("group,option", GROUP_FILES)
def test_every_group_option_is_valid_yaml(group, option):
    node = OmegaConf.load(Path(CONFIG_DIR) / group / f"{option}.yaml")
    assert node is not None


def test_overrides_and_group_swaps_apply():
    name = "train" if "train" in TOP_LEVEL else TOP_LEVEL[0]
    cfg = compose(name, ["logger=wandb", "trainer=cpu", "seed=7"])
    assert cfg.seed == 7
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.logger.wandb.offline is True


def test_real_backbone_gives_train_and_animate_their_clip_geometry():
    """Configs that take frame count and size from the backbone resolve with the SD1.5 backbone too."""
    for name in ("train", "animate"):
        cfg = compose(name, ["backbone=animatediff_sd15", "paths.output_dir=unused"])
        resolved = OmegaConf.to_container(cfg, resolve=True)
        assert resolved["backbone"]["num_frames"] == 16 and resolved["backbone"]["image_size"] == 512
    train = compose("train", ["backbone=animatediff_sd15", "paths.output_dir=unused"])
    assert (train.data.num_frames, train.data.height, train.data.width) == (16, 512, 512)
