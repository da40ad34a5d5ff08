"""The image-to-video sampler: frame 1 is the input image, equal generators give equal videos."""

import pytest
import torch
from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler, FlowMatchEulerDiscreteScheduler

from miva_lightning.backbones import build_backbone, encode_prompts
from miva_lightning.sampling import NoiseInit, sample_video
from miva_lightning.sampling.schedulers import SCHEDULERS, build_scheduler
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


@pytest.mark.parametrize("name", sorted(set(SCHEDULERS) - {"euler_ancestral"}))
def test_every_named_scheduler_keeps_frame_one_and_repeats(name):
    """The tiny base predicts x0 (`sample`); every scheduler that steps it keeps frame 1 and repeats."""
    backbone = build_backbone(tiny_cfg())
    first = torch.rand(1, 3, 32, 32)
    run = lambda: sample_video(  # noqa: E731
        backbone, first, 3, None, 3, generator=torch.Generator().manual_seed(2), progress=False, scheduler=name
    )
    video = run()
    assert video.shape == (1, 3, 3, 32, 32) and torch.isfinite(video).all()
    assert torch.allclose(video[:, 0], first, atol=1e-6)
    assert torch.equal(video, run())


def test_unet_sees_clean_unscaled_first_frame_with_euler():
    """Euler scales the model input by 1/sqrt(sigma^2+1); frame 1 must still reach the UNet as in training."""
    backbone = build_backbone(tiny_cfg())
    first = torch.rand(1, 3, 32, 32)
    first_latent = backbone.codec.encode(first[:, None])[:, :, 0]
    seen = []
    hook = backbone.unet.register_forward_pre_hook(lambda module, args: seen.append(args[0][:, :first_latent.shape[1], 0]))
    try:
        sample_video(backbone, first, 3, None, 3, generator=torch.Generator().manual_seed(0), progress=False, scheduler="euler")
    finally:
        hook.remove()
    assert len(seen) == 3
    for frame_one in seen:
        assert torch.allclose(frame_one, first_latent, atol=1e-6)


def test_scheduler_choice_errors_are_clear():
    backbone = build_backbone(tiny_cfg())
    with pytest.raises(ValueError, match="unknown; use one of"):
        build_scheduler(backbone.sample_scheduler, "heun3")
    with pytest.raises(ValueError, match="cannot sample a model that predicts 'sample'"):
        build_scheduler(backbone.sample_scheduler, "euler_ancestral")  # diffusers has no x0 branch for it
    epsilon_model = DDIMScheduler(prediction_type="epsilon", rescale_betas_zero_snr=True, timestep_spacing="trailing")
    assert isinstance(build_scheduler(epsilon_model, "euler_ancestral"), EulerAncestralDiscreteScheduler)
    with pytest.raises(ValueError, match="flow matching"):
        build_scheduler(FlowMatchEulerDiscreteScheduler(), "ddim")
    assert isinstance(build_scheduler(backbone.sample_scheduler, None), type(backbone.sample_scheduler))
