"""miva-train / miva-animate and the animate() API on a tiny saved base: outputs, frame 1, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from miva_lightning.adapters import Miva, MivaConfig, base_identity, load_miva, save_miva
from miva_lightning.animate import animate, check_adapter_weights, load_image
from miva_lightning.backbones import build_backbone
from miva_lightning.backbones.tiny import load_tiny_backbone, save_tiny_backbone
from miva_lightning.pipelines.animate import parse_adapter_spec, pop_adapter_flags
from miva_lightning.config import REPO_ROOT, compose
from tiny_components import TINY_BACKBONE, TINY_MIVA



@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    """A saved tiny base folder (random weights), as `miva-pretrain` would write it."""
    torch.manual_seed(0)
    cfg = compose("train", ["backbone.pretrained=null", "paths.output_dir=unused", *TINY_BACKBONE])
    folder = tmp_path_factory.mktemp("base") / "tiny-test"
    return save_tiny_backbone(build_backbone(cfg.backbone), folder, recipe={"purpose": "tests"})


def adapter_with_effect(base: Path, path: Path) -> Path:
    """A MIVA whose zero-initialised output layers were filled, so it changes the base's output."""
    backbone = load_tiny_backbone(base)
    torch.manual_seed(3)
    miva = Miva.from_unet(backbone.unet, MivaConfig(ca_rank=8, lora_rank=4))
    with torch.no_grad():
        for name, p in miva.named_parameters():
            if torch.count_nonzero(p) == 0:
                p.normal_(0, 0.2)
    return save_miva(path, miva, base_identity(backbone.unet, backbone.name))


def stripes_image(path: Path, width: int = 64, height: int = 32) -> Path:
    """Left half red, right half blue: the centre crop of a 2:1 image keeps a quarter of each."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2, 0] = 255
    pixels[:, width // 2 :, 2] = 255
    Image.fromarray(pixels).save(path)
    return path


def test_load_image_resizes_shorter_side_and_centre_crops(tmp_path):
    image = load_image(stripes_image(tmp_path / "stripes.png", width=128, height=64), 32)
    assert image.shape == (3, 32, 32)
    # 128x64 -> 64x32, centre crop keeps columns 16..47: red on the left half, blue on the right half
    assert image[0, :, :15].min() > 0.99 and image[2, :, :15].max() < 0.01
    assert image[2, :, 17:].min() > 0.99 and image[0, :, 17:].max() < 0.01


def test_animate_frame_one_is_the_input_and_the_adapter_moves_the_video(tiny_base, tmp_path):
    backbone = load_tiny_backbone(tiny_base)
    adapter = adapter_with_effect(tiny_base, tmp_path / "a.safetensors")
    photo = stripes_image(tmp_path / "photo.png", width=96, height=48)
    expected_first = load_image(photo, 32)

    with_adapter = animate(photo, adapters=[(adapter, 1.0)], backbone=backbone, num_frames=4, steps=2, seed=1)
    base_only = animate(photo, adapters=[], backbone=backbone, num_frames=4, steps=2, seed=1)

    assert with_adapter.shape == (4, 3, 32, 32)
    assert 0.0 <= with_adapter.min() and with_adapter.max() <= 1.0
    torch.testing.assert_close(with_adapter[0], expected_first, atol=1e-5, rtol=0)
    torch.testing.assert_close(base_only[0], expected_first, atol=1e-5, rtol=0)
    assert (with_adapter[1:] - base_only[1:]).abs().mean() > 1e-3, "the adapter had no effect"
    # same seed, same result; the UNet is the plain base again after animate()
    again = animate(photo, adapters=[], backbone=backbone, num_frames=4, steps=2, seed=1)
    assert torch.equal(again, base_only)
    # adapter guidance: s = 0 gives the plain base's video, s = 1 the adapter's, s = 2 goes past it
    at_zero = animate(photo, adapters=[(adapter, 1.0)], backbone=backbone, num_frames=4, steps=2, seed=1,
                      adapter_guidance=0.0)
    torch.testing.assert_close(at_zero, base_only, atol=1e-5, rtol=0)
    at_two = animate(photo, adapters=[(adapter, 1.0)], backbone=backbone, num_frames=4, steps=2, seed=1,
                     adapter_guidance=2.0)
    assert (at_two - with_adapter).abs().mean() > 1e-3
    torch.testing.assert_close(at_two[0], expected_first, atol=1e-5, rtol=0)
    # a Miva object works like its file
    miva, _ = load_miva(adapter, backbone.unet)
    from_object = animate(photo, adapters=[(miva, 1.0)], backbone=backbone, num_frames=4, steps=2, seed=1)
    torch.testing.assert_close(from_object, with_adapter)
    # another scheduler by name and initial-noise options as a plain dict
    other = animate(photo, adapters=[(adapter, 1.0)], backbone=backbone, num_frames=4, steps=2, seed=1,
                    scheduler="dpmsolver++", noise_init={"shared_noise_ratio": 0.05})
    torch.testing.assert_close(other[0], expected_first, atol=1e-5, rtol=0)
    assert (other[1:] - with_adapter[1:]).abs().mean() > 1e-4


def test_miva_animate_on_a_folder_writes_one_video_per_image(tiny_base, tmp_path, monkeypatch):
    """image=<folder>: every PNG/JPG in it (sorted by name), batch_size images per sampling loop, each written
    as <out>/<image stem>.{mp4,gif}; other files are left alone."""
    import miva_lightning.animate as animate_module
    from miva_lightning.pipelines.animate import run_animate

    folder = tmp_path / "first_frames"
    folder.mkdir()
    colours = {"b.png": (255, 0, 0), "a.jpg": (0, 255, 0), "c.PNG": (0, 0, 255)}
    for name, colour in colours.items():
        Image.fromarray(np.full((40, 60, 3), colour, dtype=np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    adapter = adapter_with_effect(tiny_base, tmp_path / "a.safetensors")
    videos, write = {}, animate_module.write_outputs

    def recording_write(video, stem, **kwargs):
        videos[Path(stem).name] = video
        return write(video, stem, **kwargs)

    monkeypatch.setattr(animate_module, "write_outputs", recording_write)
    cfg = compose("animate", [
        f"image={folder}", f"backbone.pretrained={tiny_base}", *TINY_BACKBONE, "steps=2", "batch_size=2",
        f"adapters=['{adapter}:0.8']", f"out={tmp_path / 'videos'}", "paths.output_dir=unused",
    ])  # fmt: skip
    written = run_animate(cfg)
    assert [p.name for p in written] == ["a.mp4", "a.gif", "b.mp4", "b.gif", "c.mp4", "c.gif"]
    assert all(p.parent == tmp_path / "videos" and p.stat().st_size > 0 for p in written)
    for name, colour in colours.items():  # frame 1 of each video is its own image
        expected = torch.tensor(colour, dtype=torch.float32).view(3, 1, 1) / 255
        assert videos[Path(name).stem].shape == (4, 3, 32, 32)
        assert (videos[Path(name).stem][0] - expected).abs().max() < 0.03  # JPEG is lossy
    # the last batch holds c alone: its video is the one animate() gives for c by itself
    alone = animate(folder / "c.PNG", adapters=[(adapter, 0.8)], backbone=load_tiny_backbone(tiny_base),
                    num_frames=4, steps=2, seed=0)  # fmt: skip
    torch.testing.assert_close(videos["c"], alone)


def test_scheduler_options_rebuild_the_sampler_and_unknown_ones_are_refused(tiny_base):
    from miva_lightning.animate import with_scheduler_options

    backbone = load_tiny_backbone(tiny_base)
    assert with_scheduler_options(backbone, {}) is backbone and with_scheduler_options(backbone, None) is backbone
    changed = with_scheduler_options(backbone, {"set_alpha_to_one": False})
    assert changed.sample_scheduler.config.set_alpha_to_one is False and changed.unet is backbone.unet
    assert backbone.sample_scheduler.config.set_alpha_to_one is True  # the backbone itself is left as it was
    assert changed.sample_scheduler.final_alpha_cumprod < 1.0
    with pytest.raises(ValueError, match=r"\['alpha_to_one'\] are not settings of DDIMScheduler"):
        with_scheduler_options(backbone, {"alpha_to_one": True})


@pytest.mark.parametrize(
    "weight, error, match",
    [(float("nan"), ValueError, "finite"), (-0.5, ValueError, "negative"), ("abc", ValueError, "not a number")],
)
def test_bad_adapter_weights_are_refused(tmp_path, weight, error, match):
    path = tmp_path / "a.safetensors"
    path.write_bytes(b"placeholder")
    with pytest.raises(error, match=match):
        check_adapter_weights([(path, weight)])


def test_missing_or_wrong_adapter_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_adapter_weights([(tmp_path / "missing.safetensors", 1.0)])
    pickle_like = tmp_path / "adapter.ckpt"
    pickle_like.write_bytes(b"x")
    with pytest.raises(ValueError, match=".safetensors"):
        check_adapter_weights([(pickle_like, 1.0)])
    with pytest.raises(ValueError, match="pair"):
        check_adapter_weights([str(pickle_like)])


def test_bad_images_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image(tmp_path / "nope.png", 32)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    with pytest.raises(ValueError, match="PNG or JPG"):
        load_image(not_an_image, 32)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_image(torch.full((3, 8, 8), 2.0), 8)


def test_adapter_specs_and_flags_parse():
    assert parse_adapter_spec("runs/a.safetensors:0.7") == ("runs/a.safetensors", 0.7)
    assert parse_adapter_spec("a.safetensors") == ("a.safetensors", 1.0)
    assert parse_adapter_spec("C:/runs/a.safetensors") == ("C:/runs/a.safetensors", 1.0)
    assert parse_adapter_spec({"path": "b.safetensors", "weight": 0.25}) == ("b.safetensors", 0.25)
    with pytest.raises(ValueError, match="not a number"):
        parse_adapter_spec("a.safetensors:strong")
    rest, specs = pop_adapter_flags(["image=x.png", "--adapter", "a.safetensors:0.5", "--adapter=b.safetensors", "steps=2"])
    assert rest == ["image=x.png", "steps=2"] and specs == ["a.safetensors:0.5", "b.safetensors"]


def run_cli(module: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MIVA_ROOT=str(cwd), HF_HUB_OFFLINE="1", WANDB_MODE="offline")
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_miva_train_then_miva_animate_from_the_command_line(tiny_base, tmp_path):
    from miva_lightning.world import write_lamp_layout

    write_lamp_layout(tmp_path / "lamp", ["waterfall"], clips_per_motion=3, size=48, num_frames=6)  # LAMP layout
    train = run_cli(
        "miva_lightning.cli.train",
        [
            f"backbone.pretrained={tiny_base}", *TINY_BACKBONE, *TINY_MIVA, "motion=waterfall",
            "data=fewshot_folder", f"data.root={tmp_path / 'lamp'}", "data.batch_size=2", "trainer=cpu",
            "trainer.max_steps=2", "checkpoint.every_n_steps=2", "preview.every_n_steps=2",
            "preview.num_first_frames=1", "preview.steps=2", "logger=csv", f"hydra.run.dir={tmp_path / 'run'}",
        ],  # fmt: skip
        tmp_path,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    adapter = tmp_path / "run" / "waterfall.safetensors"
    assert f"adapter: {adapter}" in train.stdout
    miva, metadata = load_miva(adapter, load_tiny_backbone(tiny_base).unet)
    assert metadata["config"]["ca_rank"] == 8
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    assert sorted(p.name for p in (tmp_path / "run" / "previews" / "step_000002").iterdir()) == [
        "preview_0.gif", "preview_0.mp4",
    ]  # fmt: skip

    photo = stripes_image(tmp_path / "photo.png")
    animate_run = run_cli(
        "miva_lightning.cli.animate",
        [
            f"image={photo}", "--adapter", f"{adapter}:0.7", f"backbone.pretrained={tiny_base}", *TINY_BACKBONE,
            "steps=2", "scheduler=euler", f"out={tmp_path / 'anim' / 'photo'}", f"hydra.run.dir={tmp_path / 'anim_run'}",
        ],  # fmt: skip
        tmp_path,
    )
    assert animate_run.returncode == 0, animate_run.stderr[-3000:]
    for suffix in (".mp4", ".gif"):
        assert (tmp_path / "anim" / f"photo{suffix}").stat().st_size > 0

    bad = run_cli(
        "miva_lightning.cli.animate",
        [f"image={photo}", "--adapter", f"{adapter}:-1", f"backbone.pretrained={tiny_base}", *TINY_BACKBONE,
         f"hydra.run.dir={tmp_path / 'bad_run'}"],  # fmt: skip
        tmp_path,
    )
    assert bad.returncode != 0 and "negative weight" in bad.stderr
