"""The shared diffusion loss: finite, frame 1 excluded, reproducible from a generator."""

import pytest
import torch

from miva_lightning.backbones import build_backbone, encode_prompts
from miva_lightning.training.diffusion_loss import diffusion_loss, diffusion_target, sample_timesteps
from tests.test_backbone_tiny import tiny_cfg


@pytest.fixture(scope="module")
def backbone():
    return build_backbone(tiny_cfg())


def test_loss_is_finite_and_reproducible(backbone):
    video = torch.rand(2, 4, 3, 32, 32)
    embeds = encode_prompts(backbone, ["camera pans left", "rain falls"])
    losses = [diffusion_loss(backbone, video, embeds, torch.Generator().manual_seed(7)) for _ in range(2)]
    other = diffusion_loss(backbone, video, embeds, torch.Generator().manual_seed(8))
    assert torch.isfinite(losses[0])
    assert losses[0].item() == losses[1].item()
    assert other.item() != losses[0].item()
    losses[0].backward()
    assert all(p.grad is not None for p in backbone.unet.conv_in.parameters())


def test_loss_ignores_frame_one_prediction(backbone, monkeypatch):
    """Whatever the UNet predicts for frame 1 does not change the loss."""
    video = torch.rand(1, 4, 3, 32, 32)
    embeds = encode_prompts(backbone, ["camera zooms in"])
    original = backbone.unet.forward

    def corrupt_frame_one(*args, **kwargs):
        out = original(*args, **kwargs)[0].clone()
        out[:, :, 0] = 1e3
        return (out,)

    base = diffusion_loss(backbone, video, embeds, torch.Generator().manual_seed(3))
    monkeypatch.setattr(backbone.unet, "forward", corrupt_frame_one)
    corrupted = diffusion_loss(backbone, video, embeds, torch.Generator().manual_seed(3))
    assert torch.allclose(base, corrupted)


def test_noisy_input_keeps_frame_one_clean(backbone, monkeypatch):
    video = torch.rand(1, 4, 3, 32, 32)
    seen = {}
    original = backbone.unet.forward

    def record(sample, *args, **kwargs):
        seen["sample"] = sample
        return original(sample, *args, **kwargs)

    monkeypatch.setattr(backbone.unet, "forward", record)
    diffusion_loss(backbone, video, encode_prompts(backbone, ["x"]), torch.Generator().manual_seed(0))
    clean = backbone.codec.encode(video)[:, :, 0]
    c = clean.shape[1]
    assert torch.equal(seen["sample"][:, :c, 0], clean)  # noisy latents: frame 1 clean
    assert torch.equal(seen["sample"][:, c:, 3], clean)  # concatenated first-frame channels
    assert not torch.equal(seen["sample"][:, :c, 1], backbone.codec.encode(video)[:, :, 1])


def test_high_noise_timesteps_are_biased_upwards():
    gen = torch.Generator().manual_seed(0)
    uniform = sample_timesteps(4000, 1000, "uniform", generator=gen).float().mean()
    high = sample_timesteps(4000, 1000, "high_noise", 2.0, generator=gen).float().mean()
    assert 470 < uniform < 530 and 630 < high < 700  # E[1 - u^2] = 2/3
    with pytest.raises(ValueError, match="uniform"):
        sample_timesteps(2, 1000, "lognormal")


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_targets_follow_prediction_type(prediction_type):
    scheduler = build_backbone(tiny_cfg(prediction_type=prediction_type)).noise_scheduler
    latents, noise = torch.randn(2, 3, 2, 4, 4), torch.randn(2, 3, 2, 4, 4)
    t = torch.tensor([100, 900])
    target = diffusion_target(scheduler, latents, noise, t)
    alphas = scheduler.alphas_cumprod[t].sqrt().view(2, 1, 1, 1, 1)
    sigmas = (1 - scheduler.alphas_cumprod[t]).sqrt().view(2, 1, 1, 1, 1)
    expected = {"epsilon": noise, "v_prediction": alphas * noise - sigmas * latents, "sample": latents}
    assert torch.allclose(target, expected[prediction_type], atol=1e-6)
