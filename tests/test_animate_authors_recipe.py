"""`miva-animate backbone=animatediff_sd15` samples with the authors' recipe (configs/inference/authors.yaml), on
tiny components of the SAME classes (SD1.5-layout folder + MotionAdapter): a folder of first frames, two MIVAs.
What is not exercised here: the real weights, a GPU, and whether the recipe gives better videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from miva_lightning.adapters import Miva, MivaConfig, base_identity, save_miva
from miva_lightning.backbones import build_backbone
from miva_lightning.config import compose
from miva_lightning.sampling import NoiseInit, as_noise_init
from test_backbone_animatediff import tiny_weights  # noqa: F401 - the fixture is used by name


def real_overrides(files: dict[str, Path]) -> list[str]:
    return [
        "backbone=animatediff_sd15", f"backbone.pretrained_model_path={files['sd']}",
        f"backbone.motion_adapter_path={files['adapter_dir']}", "backbone.image_size=32", "backbone.num_frames=4",
    ]  # fmt: skip


def saved_miva(backbone, path: Path, seed: int) -> Path:
    """A MIVA whose zero-initialised output layers were filled, so it changes the base's output."""
    torch.manual_seed(seed)
    miva = Miva.from_unet(backbone.unet, MivaConfig(ca_rank=8, lora_rank=4))
    with torch.no_grad():
        for parameter in miva.parameters():
            if torch.count_nonzero(parameter) == 0:
                parameter.normal_(0, 0.2)
    return save_miva(path, miva, base_identity(backbone.unet, backbone.name))


def test_the_real_backbone_animates_a_folder_with_the_authors_recipe(tiny_weights, tmp_path, monkeypatch):  # noqa: F811
    import miva_lightning.adapters as adapters_module
    import miva_lightning.sampling.sampler as sampler_module
    from miva_lightning.pipelines.animate import run_animate

    backbone = build_backbone(compose("animate", [*real_overrides(tiny_weights), "image=x.png"]).backbone)
    first, second = (saved_miva(backbone, tmp_path / f"{name}.safetensors", seed) for name, seed in (("a", 1), ("b", 2)))
    folder = tmp_path / "benchmark_images"
    folder.mkdir()
    for index in range(3):
        pixels = np.random.default_rng(index).integers(0, 256, (40, 56, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")

    seen: dict[str, list] = {"lora_mode": [], "cfa_mode": [], "alpha_to_one": [], "steps": [], "noise_init": []}
    attach, sample = adapters_module.attach_mivas, sampler_module.sample_video

    def spy_attach(unet, mivas, lora_mode="merge", cfa_mode="sum"):
        handle = attach(unet, mivas, lora_mode, cfa_mode)
        seen["lora_mode"].append(handle.lora_mode)
        seen["cfa_mode"].append(handle.cfa_mode)
        return handle

    def spy_sample(sampling_backbone, *args, **kwargs):
        seen["alpha_to_one"].append(sampling_backbone.sample_scheduler.config.set_alpha_to_one)
        seen["steps"].append(kwargs["num_inference_steps"])
        seen["noise_init"].append(as_noise_init(kwargs["noise_init"]))
        return sample(sampling_backbone, *args, **kwargs)

    monkeypatch.setattr(adapters_module, "attach_mivas", spy_attach)
    monkeypatch.setattr(sampler_module, "sample_video", spy_sample)
    cfg = compose("animate", [
        *real_overrides(tiny_weights), f"image={folder}", "batch_size=2", "steps=3",
        "backbone.sample_scheduler.set_alpha_to_one=false",  # the recipe's DDIM setting wins over the backbone's
        f"adapters=['{first}:0.6','{second}:0.7']", f"out={tmp_path / 'videos'}", "paths.output_dir=unused",
    ])  # fmt: skip
    written = run_animate(cfg)

    assert [p.name for p in written] == ["0.mp4", "0.gif", "1.mp4", "1.gif", "2.mp4", "2.gif"]
    assert seen["steps"] == [3, 3]  # two batches; steps=3 overrides the recipe's 50
    assert seen["lora_mode"] == ["residual", "residual"]  # auto, two MIVAs
    assert seen["cfa_mode"] == ["sum", "sum"]  # METHOD's exact sum unless cfa_mode=merge is asked for
    assert seen["alpha_to_one"] == [True, True]  # the recipe's DDIM
    authors = NoiseInit(first_frame_forward_t=975, dct_lowfreq_cutoff=0.23, shared_noise_ratio=0.05,
                        shared_noise_formula="linear", adain_to_first_frame=True)  # fmt: skip
    assert seen["noise_init"] == [authors, authors]
