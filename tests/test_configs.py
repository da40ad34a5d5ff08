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


AUTHORS_NOISE = dict(first_frame_forward_t=975, dct_lowfreq_cutoff=0.23, shared_noise_ratio=0.05,
                     shared_noise_formula="linear", adain_to_first_frame=True)  # fmt: skip


def test_each_backbone_gets_its_inference_recipe_and_the_command_line_overrides_it():
    """configs/inference/: AnimateDiff samples with the authors' recipe, the tiny bases (and any backbone
    without a file there) with the embedded default; a recipe or one setting can be swapped."""
    from miva_lightning.sampling import NoiseInit, as_noise_init

    real = compose("animate", ["backbone=animatediff_sd15", "image=x.png"])
    assert (real.inference.recipe, real.steps, real.guidance_scale, real.lora_mode) == ("authors", 50, 1.0, "auto")
    assert as_noise_init(real.noise_init) == NoiseInit(**AUTHORS_NOISE)
    assert OmegaConf.to_container(real.scheduler_options) == {"set_alpha_to_one": True}
    embedded = compose("animate", ["image=x.png"])
    assert (embedded.inference.recipe, embedded.steps, embedded.guidance_scale, embedded.lora_mode) == ("embedded", 25, 1.0, "merge")
    assert embedded.noise_init is None and not embedded.scheduler_options
    # the fallback node of animate.yaml is configs/inference/embedded.yaml
    assert OmegaConf.load(CONFIG_DIR / "animate.yaml").inference == OmegaConf.load(CONFIG_DIR / "inference" / "embedded.yaml")
    for backbone in sorted(p.stem for p in (CONFIG_DIR / "backbone").glob("*.yaml")):
        assert compose("animate", [f"backbone={backbone}", "image=x.png"]).inference.recipe in ("authors", "embedded", "wan")
    wan = compose("animate", ["backbone=wan21_t2v_1_3b", "image=x.png"])  # flow matching: no DDPM-timestep noise options
    assert (wan.inference.recipe, wan.steps, wan.lora_mode, wan.noise_init) == ("wan", 50, "auto", None)

    swapped = compose("animate", ["backbone=animatediff_sd15", "inference=embedded", "image=x.png"])
    assert (swapped.steps, swapped.lora_mode, swapped.noise_init) == (25, "merge", None)
    tuned = compose("animate", ["backbone=animatediff_sd15", "steps=30", "lora_mode=residual",
                                "inference.noise_init.shared_noise_ratio=0.1", "image=x.png"])  # fmt: skip
    assert (tuned.steps, tuned.lora_mode) == (30, "residual")
    assert as_noise_init(tuned.noise_init) == NoiseInit(**{**AUTHORS_NOISE, "shared_noise_ratio": 0.1})
    authors_on_tiny = compose("animate", ["inference=authors", "image=x.png"])
    assert (authors_on_tiny.steps, authors_on_tiny.lora_mode) == (50, "auto")


def test_the_real_base_experiment_previews_with_the_authors_recipe():
    from miva_lightning.sampling import NoiseInit, as_noise_init

    lamp = compose("train", ["experiment=miva_animatediff_lamp"])
    assert lamp.preview.steps == 50 and as_noise_init(lamp.noise_init) == NoiseInit(**AUTHORS_NOISE)
    assert lamp.backbone.sample_scheduler.set_alpha_to_one is True  # diffusers' DDIM default, as the authors'
    assert lamp.data.shrink_stride is True and lamp.data.stride == 4  # short LAMP clips get a smaller stride


def test_cfa_mode_defaults_to_the_exact_sum_and_a_wrong_one_is_named():
    from miva_lightning.inputs import InputError
    from miva_lightning.inputs.settings import check_animate_config

    assert compose("animate", ["image=x.png"]).cfa_mode == "sum"
    assert compose("demo", []).combine.cfa_mode == "sum"
    with pytest.raises(InputError, match="cfa_mode='fused' is not valid: use one of sum, merge"):
        check_animate_config(compose("animate", ["image=assets/photos/chelsea.png", "cfa_mode=fused"]))
