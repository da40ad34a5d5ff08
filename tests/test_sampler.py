"""The image-to-video sampler: frame 1 is the input image, equal generators give equal videos."""

import torch

from miva_lightning.backbones import build_backbone, encode_prompts
from miva_lightning.sampling import NoiseInit, sample_video
from tests.test_backbone_tiny import tiny_cfg


def test_sampler_keeps_first_frame_and_is_deterministic():
    torch.manual_seed(0)
    backbone = build_backbone(tiny_cfg())
    first = torch.rand(2, 3, 32, 32)
    embeds = encode_prompts(backbone, ["camera pans up", "a still scene"])
    run = lambda seed, g=1.0: sample_video(  # noqa: E731
        backbone, first, 4, embeds, num_inference_steps=3, guidance_scale=g,
        generator=torch.Generator().manual_seed(seed), progress=False,
    )
    video = run(0)
    assert video.shape == (2, 4, 3, 32, 32)
    assert video.min() >= 0 and video.max() <= 1
    assert torch.allclose(video[:, 0], first, atol=1e-6)
    assert torch.equal(video, run(0))
    assert not torch.equal(video[:, 1:], run(1)[:, 1:])
    guided = run(0, g=3.0)
    assert torch.allclose(guided[:, 0], first, atol=1e-6)
    assert not torch.equal(guided[:, 1:], video[:, 1:])


def test_sampler_uses_empty_prompt_by_default_and_noise_init():
    backbone = build_backbone(tiny_cfg())
    first = torch.rand(1, 3, 32, 32)
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    default = sample_video(backbone, first, 3, None, 2, generator=gen(), progress=False)
    empty = sample_video(backbone, first, 3, encode_prompts(backbone, [""]), 2, generator=gen(), progress=False)
    assert torch.equal(default, empty)
    adain = sample_video(backbone, first, 3, None, 2, generator=gen(), noise_init=NoiseInit(adain_to_first_frame=True), progress=False)
    assert torch.allclose(adain[:, 0], first, atol=1e-6)
