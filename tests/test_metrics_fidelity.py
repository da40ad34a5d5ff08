"""Fidelity and stability metrics with known answers: PSNR/SSIM, flicker, motion-compensated drift."""

import math

import cv2
import pytest
import torch
import torch.nn.functional as F

from miva_lightning.metrics import build_metric
from miva_lightning.metrics import fidelity as Fi

cv2.setNumThreads(1)


def texture(size, seed=0):
    noise = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    smooth = F.avg_pool2d(noise, 5, stride=1, padding=2, count_include_pad=False)[0]
    return (smooth - smooth.min()) / (smooth.max() - smooth.min())


def pan(dx=2, size=40, frames=5, seed=0):
    margin = 4 + abs(dx) * frames
    big = texture(size + 2 * margin, seed)
    return torch.stack([big[:, margin : margin + size, margin + t * dx : margin + t * dx + size] for t in range(frames)])


def test_psnr_of_identical_first_frame_is_the_documented_cap_and_ssim_is_one():
    video = torch.stack([pan(), pan(seed=1)])
    batch = {"generated": video, "images": video[:, 0].clone()}
    psnr, ssim = build_metric("first_frame_psnr"), build_metric("first_frame_ssim")
    psnr.update(batch)
    ssim.update(batch)
    assert psnr.compute().item() == Fi.PSNR_CAP_DB == psnr.describe()["psnr_cap_db"]
    assert ssim.compute().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("sigma", [0.1, 0.03])
def test_psnr_of_a_known_noise_level(sigma):
    """+-sigma noise (random signs, no clipping) has MSE sigma^2 exactly, so PSNR = -20 log10(sigma)."""
    images = 0.2 + 0.6 * texture(32)[None]
    signs = torch.randint(0, 2, images.shape, generator=torch.Generator().manual_seed(1)) * 2.0 - 1.0
    first = images + sigma * signs
    video = torch.cat([first[:, None], images[:, None].expand(-1, 3, -1, -1, -1)], dim=1)
    metric = build_metric("first_frame_psnr")
    metric.update({"generated": video, "images": images})
    assert metric.compute().item() == pytest.approx(-20 * math.log10(sigma), abs=1e-4)
    ssim = build_metric("first_frame_ssim")
    ssim.update({"generated": video, "images": images})
    assert ssim.compute().item() < 0.99


def test_first_frame_metrics_skip_without_images_and_reject_mismatched_sizes():
    metric = build_metric("first_frame_psnr")
    metric.update({"generated": pan()[None]})
    assert math.isnan(metric.compute().item())
    with pytest.raises(ValueError, match="resize the input images"):
        metric.update({"generated": pan()[None], "images": torch.rand(1, 3, 20, 20)})


def test_flicker_of_a_constant_video_is_zero_and_of_alternating_frames_is_known():
    constant = texture(16)[None, None].expand(1, 4, -1, -1, -1)
    metric = build_metric("flicker_mean_abs_diff")
    metric.update({"generated": constant})
    assert metric.compute().item() == 0.0
    alternating = torch.stack([torch.full((3, 8, 8), 0.2 + 0.3 * (t % 2)) for t in range(5)])[None]
    blinking = build_metric("flicker_mean_abs_diff")
    blinking.update({"generated": alternating})
    assert blinking.compute().item() == pytest.approx(0.3, abs=1e-6)


def test_drift_of_a_pure_pan_is_near_zero_and_of_a_fade_is_positive():
    panning = pan(dx=2)
    fade = panning[:1] * torch.linspace(1.0, 0.5, 5).view(5, 1, 1, 1)  # still content, dimming to half
    drift_pan, drift_fade = build_metric("drift_farneback_l1"), build_metric("drift_farneback_l1")
    drift_pan.update({"generated": panning[None]})
    drift_fade.update({"generated": fade[None]})
    naive = (panning[1:] - panning[:1]).abs().mean().item()  # without motion compensation
    assert drift_pan.compute().item() < 0.02 < naive
    # mean |(1 - k) * frame_1| over frames 2..5 with k = 0.875, 0.75, 0.625, 0.5
    expected_fade = fade[0].mean().item() * (0.125 + 0.25 + 0.375 + 0.5) / 4
    assert drift_fade.compute().item() == pytest.approx(expected_fade, rel=0.2)


def test_warp_to_first_frame_with_an_exact_flow_recovers_frame_one_and_masks_what_left():
    clip = pan(dx=2, frames=3)
    exact_flow = torch.zeros(2, 2, 40, 40)
    exact_flow[:, 0] = -2.0  # content moves 2 px left per frame
    warped, inside = Fi.warp_to_first_frame(clip, exact_flow)
    assert warped.shape == (2, 3, 40, 40) and inside.shape == (2, 40, 40)
    assert not inside[0, :, :2].any() and inside[0, :, 2:].all()
    assert not inside[1, :, :4].any() and inside[1, :, 4:].all()
    assert torch.allclose(warped[1][:, inside[1]], clip[0][:, inside[1]], atol=1e-5)
