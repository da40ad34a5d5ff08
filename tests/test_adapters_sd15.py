"""MIVA at real SD1.5 + AnimateDiff v3 size, built on the meta device (shapes only, no memory)."""

import pytest
import torch
from diffusers import UNetMotionModel

from miva_lightning.adapters import Miva, MivaConfig, attach_mivas, detach_mivas
from miva_lightning.adapters.miva import spatial_attention_names
from miva_lightning.adapters.temporal_lora import temporal_lora_targets


def sd15_animatediff_unet() -> UNetMotionModel:
    """SD1.5 UNet + AnimateDiff v3 motion modules (no motion mid block), random shapes on meta."""
    with torch.device("meta"):
        return UNetMotionModel(
            cross_attention_dim=768,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            motion_num_attention_heads=8,
            motion_max_seq_length=32,
            use_motion_mid_block=False,
        )


def test_parameter_count_at_sd15_size():
    unet = sd15_animatediff_unet()
    with torch.device("meta"):
        counts = Miva.from_unet(unet, MivaConfig(), init_from_base=False).parameter_counts()
    unet_total = sum(p.numel() for p in unet.parameters())
    spatial_unet = sum(p.numel() for n, p in unet.named_parameters() if "motion_modules" not in n)
    attn1 = [unet.get_submodule(n) for n in spatial_attention_names(unet, "attn1")]
    lora = temporal_lora_targets(unet).values()
    assert len(attn1) == 16 and len(lora) == 20 * 2 * 4  # 16 spatial blocks; 20 motion modules x 2 attn x qkvo
    # CFA: Wq' + Wo' (+bias) + Linear(1280, 2); CA: W2 + LayerNorm(64) + W3; LoRA: r (in + out)
    assert counts["cross_frame"] == sum(2 * a.to_q.in_features ** 2 + a.to_q.in_features + 2 * 1280 + 2 for a in attn1)
    assert counts["implicit_prompt"] == sum(2 * a.to_q.in_features * 64 + 2 * 64 for a in attn1)
    assert counts["temporal_lora"] == sum(32 * (l.in_features + l.out_features) for l in lora)
    print(
        f"\nMIVA at SD1.5+AnimateDiff v3 size: {counts} = {counts['total'] / 1e6:.2f} M; "
        f"{100 * counts['total'] / unet_total:.2f} % of the UNetMotionModel ({unet_total / 1e6:.0f} M), "
        f"{100 * counts['total'] / spatial_unet:.2f} % of the SD1.5 2-D UNet part ({spatial_unet / 1e6:.0f} M)"
    )
    assert 30e6 < counts["total"] < 40e6  # docs/METHOD.md estimates ~35 M


@pytest.mark.slow
def test_two_mivas_run_through_the_sd15_size_unet_on_meta():
    unet = sd15_animatediff_unet()
    with torch.device("meta"):
        mivas = [(Miva.from_unet(unet, MivaConfig(), init_from_base=False), 0.5) for _ in range(2)]
        for mode in ("merge", "residual"):
            handle = attach_mivas(unet, mivas, lora_mode=mode)
            sample = unet(torch.empty(1, 4, 4, 32, 32), torch.tensor([500]), torch.empty(4, 77, 768)).sample
            detach_mivas(handle)
            assert sample.shape == (1, 4, 4, 32, 32)
