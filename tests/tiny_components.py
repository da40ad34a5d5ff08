"""Tiny real diffusers components shared by the tests (the diffusers `get_dummy_components()` idea)."""

import torch
from diffusers import UNetMotionModel


def tiny_unet(seed: int = 0, block_out_channels=(32, 64), time_cond_proj_dim: int | None = None) -> UNetMotionModel:
    """A frozen UNetMotionModel of ~1 M parameters with the real SD1.5 + AnimateDiff module layout
    (`time_cond_proj_dim` adds the text-to-time route the embedded tiny base has)."""
    torch.manual_seed(seed)
    unet = UNetMotionModel(
        sample_size=16,
        block_out_channels=block_out_channels,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlockMotion", "DownBlockMotion"),
        up_block_types=("UpBlockMotion", "CrossAttnUpBlockMotion"),
        cross_attention_dim=32,
        norm_num_groups=8,
        num_attention_heads=4,
        motion_num_attention_heads=4,
        time_cond_proj_dim=time_cond_proj_dim,
    )
    return unet.eval().requires_grad_(False)


# Hydra overrides that shrink the tiny embedded backbone / a MIVA further, for fast CLI and module tests.
TINY_BACKBONE = [
    "backbone.num_frames=4",
    "backbone.unet.block_out_channels=[16,32]",
    "backbone.unet.norm_num_groups=8",
    "backbone.text.hidden_size=32",
    "backbone.text.num_layers=1",
]
TINY_MIVA = ["adapter.ca_rank=8", "adapter.lora_rank=4"]
