"""Real-size SD1.5 + AnimateDiff v3 structure, without weights (none can be downloaded here).

The fast test builds on the meta device (no memory); the slow one builds random bf16 weights, merges them
the way `load_animatediff` does (`UNetMotionModel.from_unet2d`) and runs one small forward.
"""

import pytest
import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

from miva_lightning.backbones.animatediff import V3_MOTION_ADAPTER_CONFIG


def _sd15_unet() -> UNet2DConditionModel:
    # SD1.5 differs from the class defaults only in its text width (CLIP ViT-L/14: 768) and sample size.
    return UNet2DConditionModel(cross_attention_dim=768, sample_size=64)


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_real_size_parameter_count_on_meta_device():
    with torch.device("meta"):
        unet2d = _sd15_unet()
        adapter = MotionAdapter(**V3_MOTION_ADAPTER_CONFIG)
        unet = UNetMotionModel.from_unet2d(unet2d, adapter, load_weights=False)
    assert _count(unet2d) == pytest.approx(859.5e6, rel=1e-3)  # the known SD1.5 UNet size
    assert _count(unet) == _count(unet2d) + _count(adapter)  # nothing lost or added in the merge
    assert _count(unet) == pytest.approx(1.28e9, rel=0.01)
    assert unet.config.motion_max_seq_length == 32 and not unet.config.use_motion_mid_block


@pytest.mark.slow
def test_real_size_random_weights_forward():
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # halves the ~5 GB of fp32 weights on a shared machine
    try:
        unet2d = _sd15_unet()
        adapter = MotionAdapter(**V3_MOTION_ADAPTER_CONFIG)
        unet = UNetMotionModel.from_unet2d(unet2d, adapter).requires_grad_(False).eval()
    finally:
        torch.set_default_dtype(default_dtype)
    torch.testing.assert_close(unet.conv_in.weight, unet2d.conv_in.weight)
    del unet2d
    assert _count(unet) == pytest.approx(1.28e9, rel=0.01)
    b, f = 1, 2
    latents = torch.randn(b, 4, f, 8, 8, dtype=torch.bfloat16)
    text = torch.randn(b * f, 77, 768, dtype=torch.bfloat16)
    with torch.no_grad():
        out = unet(latents, torch.tensor([500]), encoder_hidden_states=text).sample
    assert out.shape == latents.shape and torch.isfinite(out.float()).all()
