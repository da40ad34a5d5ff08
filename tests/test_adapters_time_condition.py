"""The implicit prompt's time route: a learned offset of the caption->timestep conditioning (tiny UNet)."""

import copy

import pytest
import torch

from miva_lightning.adapters import Miva, MivaConfig, attach_mivas, detach_mivas, load_miva, save_miva, set_weights
from miva_lightning.adapters.io import base_identity
from tiny_components import tiny_unet

FRAMES = 3
COND = 32
ONLY_TIME = MivaConfig(cross_frame=False, implicit_prompt=False, temporal_lora=False, implicit_time_cond=True)


@pytest.fixture(scope="module")
def shared_unet():
    return tiny_unet(time_cond_proj_dim=COND)


@pytest.fixture
def unet(shared_unet):
    return copy.deepcopy(shared_unet)


@pytest.fixture
def inputs():
    generator = torch.Generator().manual_seed(3)
    sample = torch.randn(2, 4, FRAMES, 8, 8, generator=generator)
    timesteps = torch.tensor([40, 900])
    prompt = torch.randn(2 * FRAMES, 5, 32, generator=generator)
    condition = torch.randn(2, COND, generator=generator)
    return sample, timesteps, prompt, condition


def run(unet, inputs, condition=None):
    sample, timesteps, prompt, default_condition = inputs
    cond = default_condition if condition is None else condition
    with torch.no_grad():
        return unet(sample, timesteps, encoder_hidden_states=prompt, timestep_cond=cond).sample


def with_offset(miva: Miva, seed: int) -> Miva:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        miva.time_condition["time_embedding"].offset.copy_(torch.randn(COND, generator=generator))
    return miva


def test_created_only_where_the_unet_has_the_route():
    assert len(Miva.from_unet(tiny_unet(time_cond_proj_dim=COND)).time_condition) == 1
    assert len(Miva.from_unet(tiny_unet()).time_condition) == 0  # SD1.5 layout: no text-to-time route
    assert len(Miva.from_unet(tiny_unet(time_cond_proj_dim=COND), MivaConfig(implicit_time_cond=False)).time_condition) == 0


def test_zero_init_is_identity_and_detach_restores(unet, inputs):
    reference = run(unet, inputs)
    handle = attach_mivas(unet, [(Miva.from_unet(unet, ONLY_TIME), 1.0)])
    assert (run(unet, inputs) - reference).abs().max() <= 1e-6
    detach_mivas(handle)
    assert not unet.time_embedding._forward_pre_hooks
    assert torch.equal(run(unet, inputs), reference)


def test_offset_equals_shifting_the_condition(unet, inputs):
    """Known answer: the adapter at weight w == the base called with condition + w * offset."""
    miva = with_offset(Miva.from_unet(unet, ONLY_TIME), seed=1)
    offset = miva.time_condition["time_embedding"].offset.detach()
    expected = run(unet, inputs, condition=inputs[3] + 0.6 * offset)
    attach_mivas(unet, [(miva, 0.6)])
    assert torch.allclose(run(unet, inputs), expected, atol=1e-6)


def test_weighted_copies_sum_like_one_adapter(unet, inputs):
    miva = with_offset(Miva.from_unet(unet), seed=2)
    handle = attach_mivas(unet, [(miva, 1.0)], lora_mode="residual")
    single = run(unet, inputs)
    detach_mivas(handle)
    handle = attach_mivas(unet, [(miva, 0.25), (copy.deepcopy(miva), 0.75)], lora_mode="residual")
    assert torch.allclose(run(unet, inputs), single, atol=1e-5)
    set_weights(handle, [0.0, 0.0])  # weights 0: only the (zero) rest of the adapter remains
    unchanged = run(unet, inputs)
    detach_mivas(handle)
    handle = attach_mivas(unet, [(Miva.from_unet(unet), 1.0)])
    assert torch.allclose(unchanged, run(unet, inputs), atol=1e-6)


def test_offset_trains_and_the_base_does_not(unet, inputs):
    miva = Miva.from_unet(unet, ONLY_TIME)
    attach_mivas(unet, [(miva, 1.0)])
    sample, timesteps, prompt, condition = inputs
    unet(sample, timesteps, encoder_hidden_states=prompt, timestep_cond=condition).sample.square().mean().backward()
    grad = miva.time_condition["time_embedding"].offset.grad
    assert grad is not None and grad.abs().sum() > 0
    assert all(p.grad is None for p in unet.parameters())


def test_round_trip_keeps_the_offset(unet, inputs, tmp_path):
    miva = with_offset(Miva.from_unet(unet), seed=4)
    path = save_miva(tmp_path / "m.safetensors", miva, base_identity(unet, "tiny-test"))
    loaded, metadata = load_miva(path, unet)
    assert metadata["config"]["implicit_time_cond"] is True
    assert torch.equal(loaded.time_condition["time_embedding"].offset, miva.time_condition["time_embedding"].offset)
    handle = attach_mivas(unet, [(miva, 1.0)], lora_mode="residual")
    first = run(unet, inputs)
    detach_mivas(handle)
    attach_mivas(unet, [(loaded, 1.0)], lora_mode="residual")
    assert torch.equal(run(unet, inputs), first)
