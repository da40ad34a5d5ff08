"""Wan2.1 backbone and MIVA on its DiT, on TINY random components of the real classes (no downloads, CPU).

The denoiser is diffusers' `WanTransformer3DModel` (2 blocks, 2 heads of 16, patch (1, 2, 2)), the VAE
`AutoencoderKLWan` (base_dim 8, the real 4x time / 8x space layout), the text encoder transformers'
`UMT5EncoderModel` (1 layer) with an in-code word tokenizer. Videos are 9 frames of 64x64 -> 3 latent frames
of 8x8 -> 3 x 4 x 4 tokens. Identity references are stated per test (bit-identical where the base is
untouched; the base with attn2 dropped, to 1e-6, where the implicit prompt replaces attn2).
"""

from __future__ import annotations

import copy
import math
import re

import lightning as L
import pytest
import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler, WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanAttnProcessor
from omegaconf import OmegaConf
from torch import nn
from transformers import UMT5Config, UMT5EncoderModel

from miva_lightning.adapters import Miva, MivaConfig, attach_mivas, base_identity, detach_mivas, load_miva, save_miva
from miva_lightning.adapters.context import CallContext
from miva_lightning.adapters.attach import MIVA_PROCESSORS
from miva_lightning.adapters.miva import layer_key
from miva_lightning.adapters.temporal_lora import temporal_lora_targets
from miva_lightning.adapters.wan_dit import DiTCrossFrameAttnProcessor, dit_attention_names
from miva_lightning.backbones import build_backbone, encode_prompts
from miva_lightning.backbones.tokenizer import build_word_tokenizer
from miva_lightning.backbones.wan import (
    CONFIG_FILE,
    WAN21_T2V_1_3B_TRANSFORMER,
    WanConfig,
    WanVaeCodec,
    assemble_wan_backbone,
    load_wan21,
)
from miva_lightning.config import CONFIG_DIR
from miva_lightning.inputs import InputError
from miva_lightning.sampling import sample_video
from miva_lightning.sampling.schedulers import set_sampling_timesteps
from miva_lightning.training.diffusion_loss import bell_weight, flow_matching_loss, flow_sigmas
from miva_lightning.training.miva_module import MivaModule

FRAMES, SIZE, TEXT_LEN = 9, 64, 8
SETTINGS = {"num_frames": FRAMES, "image_size": SIZE, "text_max_length": TEXT_LEN, "text_encoder_dtype": "fp32"}
TINY_MIVA = MivaConfig(ca_rank=8, lora_rank=4)


def tiny_transformer(seed: int = 0) -> WanTransformer3DModel:
    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4,
        text_dim=32, freq_dim=16, ffn_dim=64, num_layers=2, rope_max_seq_len=32,
    )  # fmt: skip


def tiny_parts(seed: int = 0):
    transformer = tiny_transformer(seed)
    vae = AutoencoderKLWan(
        base_dim=8, z_dim=4, dim_mult=[1, 2, 4, 4], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[0.1, -0.2, 0.0, 0.3], latents_std=[1.5, 2.0, 0.5, 1.0],
    )  # fmt: skip
    tokenizer = build_word_tokenizer(["a", "waterfall", "flows", "birds", "fly"], max_length=TEXT_LEN)
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=len(tokenizer.get_vocab()), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
        relative_attention_num_buckets=8, pad_token_id=1, eos_token_id=1, decoder_start_token_id=0,
    ))  # fmt: skip
    return transformer, vae, text_encoder, tokenizer


@pytest.fixture(scope="module")
def template():
    return assemble_wan_backbone(*tiny_parts(), SETTINGS)


@pytest.fixture
def backbone(template):
    return copy.deepcopy(template)  # attaching mutates the transformer


@pytest.fixture(scope="module")
def inputs():
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 4, 3, 8, 8, generator=generator)
    return latents, torch.tensor([120.0, 870.0]), torch.randn(2, TEXT_LEN, 32, generator=generator)


def run(model, inputs):
    with torch.no_grad():
        return model(*inputs, return_dict=False)[0]


def perturbed(miva: Miva, seed: int) -> Miva:
    """As after training: every parameter moved away from its (partly zero) initial value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in miva.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return miva


class DropOutput:
    """Reference processor: the attention contributes nothing (removes attn2 from the base)."""

    def __call__(self, attn, hidden_states, *args, **kwargs):
        return torch.zeros_like(hidden_states)


# ----------------------------------------------------------------------------------------- backbone
def save_layout(folder, parts) -> None:
    transformer, vae, text_encoder, tokenizer = parts
    transformer.save_pretrained(folder / "transformer")
    vae.save_pretrained(folder / "vae")
    text_encoder.save_pretrained(folder / "text_encoder")
    tokenizer.save_pretrained(folder / "tokenizer")


def test_loads_a_diffusers_layout_folder_frozen_with_flow_schedulers(tmp_path):
    parts = tiny_parts(seed=3)
    save_layout(tmp_path, parts)
    loaded = build_backbone({"kind": "wan", "pretrained_model_path": str(tmp_path), **SETTINGS})
    assert isinstance(loaded.unet, WanTransformer3DModel) and loaded.family == "dit"
    assert isinstance(loaded.codec, WanVaeCodec) and isinstance(loaded.text_encoder, UMT5EncoderModel)
    assert (loaded.codec.downscale, loaded.codec.temporal_downscale) == (8, 4)
    key = "blocks.1.attn1.to_q.weight"
    assert torch.equal(loaded.unet.state_dict()[key], parts[0].state_dict()[key])
    for module in (loaded.unet, loaded.codec, loaded.text_encoder):
        assert not module.training and not any(p.requires_grad for p in module.parameters())
    assert isinstance(loaded.noise_scheduler, FlowMatchEulerDiscreteScheduler) and loaded.noise_scheduler.config.shift == 5.0
    assert isinstance(loaded.sample_scheduler, FlowMatchEulerDiscreteScheduler)
    # prompts as WanPipeline encodes them: padded to L, positions past the prompt zeroed
    embeds = encode_prompts(loaded, ["", "a waterfall flows"])
    assert embeds.shape == (2, TEXT_LEN, 32)
    assert embeds[0, 2:].abs().max() == 0 and embeds[0, :2].abs().min() > 0  # "" = BOS, EOS
    assert embeds[1, 5:].abs().max() == 0 and embeds[1, :5].abs().min() > 0
    unipc = build_backbone({"kind": "wan", "pretrained_model_path": str(tmp_path), **SETTINGS,
                            "sample_scheduler": "unipc", "load_text_encoder": False})  # fmt: skip
    assert isinstance(unipc.sample_scheduler, UniPCMultistepScheduler) and unipc.text_encoder is None
    assert encode_prompts(unipc, [""]).abs().max() == 0  # no text encoder: only the (all-zero) empty prompt
    with pytest.raises(ValueError, match="load_text_encoder"):
        encode_prompts(unipc, ["birds fly"])


def test_missing_folder_or_subfolder_names_what_to_fix(tmp_path):
    missing = tmp_path / "no_such_wan"
    with pytest.raises(FileNotFoundError, match=rf"pretrained_model_path.*{re.escape(str(missing))}.*wan21_t2v_1_3b\.yaml"):
        load_wan21({"pretrained_model_path": str(missing)})
    tiny_transformer().save_pretrained(tmp_path / "partial" / "transformer")
    with pytest.raises(FileNotFoundError, match=r"no `vae/` subfolder.*transformer/, vae/, text_encoder/, tokenizer/"):
        load_wan21({"pretrained_model_path": str(tmp_path / "partial"), **SETTINGS})
    with pytest.raises(ValueError, match="unknown Wan backbone settings"):
        WanConfig.from_config({"pretrained_modle_path": "x"})
    with pytest.raises(ValueError, match="4k \\+ 1"):
        WanConfig.from_config({"num_frames": 16})
    settings = WanConfig.from_config(OmegaConf.load(CONFIG_DIR / "backbone" / "wan21_t2v_1_3b.yaml"))
    assert (settings.kind, settings.flow_shift, settings.num_frames, settings.sample_scheduler) == ("wan", 5.0, 17, "flow_euler")
    assert CONFIG_FILE == "configs/backbone/wan21_t2v_1_3b.yaml"


def test_causal_vae_encodes_the_first_frame_alone(template):
    codec = template.codec
    video = torch.rand(2, FRAMES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        latents = codec.encode(video)
        assert latents.shape == (2, 4, 3, 8, 8)
        assert torch.equal(latents[:, :, :1], codec.encode(video[:, :1]))  # latent frame 1 = the image alone
        decoded = codec.decode(latents)
        assert decoded.shape == video.shape and 0 <= decoded.min() and decoded.max() <= 1
        assert torch.equal(decoded[:, :1], codec.decode(latents[:, :, :1]))  # and decodes alone
    with pytest.raises(ValueError, match="1 \\+ 4 k"):
        codec.encode(video[:, :8])


# ----------------------------------------------------------------------------------------- adapters
def test_miva_attaches_by_name_where_the_authors_put_each_component(backbone):
    model = backbone.unet
    miva = Miva.from_unet(model, TINY_MIVA)
    assert sorted(miva.cross_frame) == [layer_key(n) for n in dit_attention_names(model, "attn1")]
    assert sorted(miva.cross_frame) == ["blocks_0_attn1", "blocks_1_attn1"]
    assert sorted(miva.implicit_prompt) == ["blocks_0_attn2", "blocks_1_attn2"]
    projections = ("to_k", "to_out.0", "to_q", "to_v")
    assert sorted(temporal_lora_targets(model)) == [f"blocks.{i}.attn1.{p}" for i in (0, 1) for p in projections]
    assert len(miva.time_condition) == 0  # Wan has no text-to-time route
    cfa = miva.cross_frame["blocks_0_attn1"]
    attn1 = model.blocks[0].attn1
    assert torch.equal(cfa.to_q.weight, attn1.to_q.weight) and torch.equal(cfa.to_q.bias, attn1.to_q.bias)
    assert cfa.to_out.weight.abs().max() == 0 and cfa.weighting.proj.in_features == 32  # Wan's temb width
    handle = attach_mivas(model, [miva])
    assert isinstance(attn1.processor, DiTCrossFrameAttnProcessor)
    assert not any(p.requires_grad for n, p in model.named_parameters() if ".lora_" not in n)
    detach_mivas(handle)
    assert all(type(p) is WanAttnProcessor for p in model.attn_processors.values())
    assert all(type(model.get_submodule(n)) is nn.Linear for n in temporal_lora_targets(model))
    assert not model._forward_pre_hooks and "peft_config" not in vars(model)


@pytest.mark.parametrize("lora_mode", ["merge", "residual"])
def test_zero_init_keeping_attn2_is_bit_identical_to_the_base(backbone, inputs, lora_mode):
    # reference: the base itself (base_branch=empty_prompt keeps the frozen attn2 on the given prompt)
    base = run(backbone.unet, inputs)
    attach_mivas(backbone.unet, [Miva.from_unet(backbone.unet, MivaConfig(base_branch="empty_prompt"))], lora_mode)
    assert torch.equal(run(backbone.unet, inputs), base)


def test_zero_init_replacing_attn2_is_the_base_without_attn2(backbone, inputs):
    # reference: the base with every attn2 output removed (METHOD: the implicit prompt replaces attn2); to 1e-6
    reference = copy.deepcopy(backbone.unet)
    for name in dit_attention_names(reference, "attn2"):
        reference.get_submodule(name).set_processor(DropOutput())
    without_attn2 = run(reference, inputs)
    assert (without_attn2 - run(backbone.unet, inputs)).abs().max() > 1e-3  # attn2 matters: the test can fail
    attach_mivas(backbone.unet, [Miva.from_unet(backbone.unet, TINY_MIVA)])
    assert (run(backbone.unet, inputs) - without_attn2).abs().max() <= 1e-6


@pytest.mark.parametrize("lora_mode,cfa_mode", [("merge", "sum"), ("residual", "sum"), ("merge", "merge")])
def test_copies_with_weights_summing_to_one_equal_one_adapter(backbone, inputs, lora_mode, cfa_mode):
    miva = perturbed(Miva.from_unet(backbone.unet, TINY_MIVA), seed=3)
    handle = attach_mivas(backbone.unet, [(miva, 1.0)], lora_mode=lora_mode)
    alone = run(backbone.unet, inputs)
    detach_mivas(handle)
    assert (alone - run(backbone.unet, inputs)).abs().max() > 1e-3  # the trained adapter does something
    attach_mivas(backbone.unet, [(copy.deepcopy(miva), w) for w in (0.2, 0.3, 0.5)], lora_mode=lora_mode,
                 cfa_mode=cfa_mode)
    assert (run(backbone.unet, inputs) - alone).abs().max() <= 1e-5


def test_lora_modes_agree_for_one_adapter_and_cfa_keys_stay_frozen(backbone, inputs):
    """Merge (LoRA always on) and residual (LoRA switched on per run) agree only if the CFA, which shares attn1
    with the LoRA, reads its keys/values from the frozen projections underneath the LoRA."""
    miva = perturbed(Miva.from_unet(backbone.unet, TINY_MIVA), seed=13)
    outputs = {}
    for mode in ("merge", "residual"):
        handle = attach_mivas(backbone.unet, [miva], lora_mode=mode)
        outputs[mode] = run(backbone.unet, inputs)
        detach_mivas(handle)
    assert (outputs["merge"] - outputs["residual"]).abs().max() <= 1e-5


@pytest.mark.parametrize("rope", ["positions", "none"])
def test_cfa_at_init_is_half_the_base_attention_restricted_to_frames_1_and_previous(template, rope):
    """Token layout and RoPE: with Wq' = Wq and w = 1/2, the CFA of latent frame i attends to the keys of
    frames 1 and i - 1 exactly as attn1 itself would (same q/k norms, same 3-D RoPE) when cfa_rope=positions."""
    model = copy.deepcopy(template.unet)
    attn = model.blocks[0].attn1
    attn.to_out[0] = nn.Identity()  # compare attention outputs before the (different) output projections
    adapter = Miva.from_unet(template.unet, MivaConfig(cfa_rope=rope)).cross_frame["blocks_0_attn1"]
    with torch.no_grad():
        adapter.to_out.weight.copy_(torch.eye(32))
    frames, h, w = 3, 4, 4
    latents = torch.randn(1, 4, frames, 2 * h, 2 * w, generator=torch.Generator().manual_seed(4))
    rotary = model.rope(latents)
    tokens = torch.randn(1, frames * h * w, 32, generator=torch.Generator().manual_seed(5))
    context = CallContext(
        timesteps=torch.tensor([400.0]), temb=torch.randn(1, 32), num_frames=frames, batch_size=1, grid=(frames, h, w)
    )
    processor = DiTCrossFrameAttnProcessor(WanAttnProcessor(), [adapter], [1.0], context, rope)
    frame_of = torch.arange(frames).repeat_interleave(h * w)
    allowed = (frame_of[None, :] == 0) | (frame_of[None, :] == (frame_of[:, None] - 1).clamp(min=0))
    with torch.no_grad():
        branch = processor(attn, tokens, None, None, rotary) - WanAttnProcessor()(attn, tokens, None, None, rotary)
        restricted = WanAttnProcessor()(attn, tokens, None, allowed, rotary)
    gap = (branch - 0.5 * restricted).abs().max()
    assert gap <= 1e-5 if rope == "positions" else gap > 1e-3


def test_save_load_round_trip_and_refusal_for_another_base(backbone, inputs, tmp_path):
    miva = perturbed(Miva.from_unet(backbone.unet, MivaConfig(name="waterfall", ca_rank=8, lora_rank=4, cfa_rope="none")), seed=6)
    path = save_miva(tmp_path / "waterfall.safetensors", miva, base_identity(backbone.unet, "wan-tiny"))
    loaded, metadata = load_miva(path, unet=backbone.unet)
    assert loaded.config == miva.config and metadata["base"]["name"] == "wan-tiny"
    assert "cross_frame.blocks_0_attn1.to_q.bias" in loaded.state_dict()
    outputs = []
    for adapter in (miva, loaded):
        handle = attach_mivas(backbone.unet, [adapter])
        outputs.append(run(backbone.unet, inputs))
        detach_mivas(handle)
    assert torch.equal(*outputs)
    other = tiny_transformer(seed=9)  # same shapes, other weights: another base
    with pytest.raises(InputError, match="was trained on base 'wan-tiny'"):
        load_miva(path, unet=other)


def test_attach_rolls_back_when_a_processor_fails(backbone, inputs, monkeypatch):
    base = run(backbone.unet, inputs)
    processors = dict(backbone.unet.attn_processors)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(DiTCrossFrameAttnProcessor, "__init__", broken)
    with pytest.raises(RuntimeError, match="boom"):
        attach_mivas(backbone.unet, [Miva.from_unet(backbone.unet, TINY_MIVA)], lora_mode="residual")
    assert backbone.unet.attn_processors == processors  # same processor objects again
    assert all(type(backbone.unet.get_submodule(n)) is nn.Linear for n in temporal_lora_targets(backbone.unet))
    assert not any(isinstance(p, MIVA_PROCESSORS) for p in backbone.unet.attn_processors.values())
    assert torch.equal(run(backbone.unet, inputs), base)


def test_parameter_count_at_wan21_1_3b_size():
    """On the meta device (no memory): the real 1.3B shapes, 30 blocks of width 1536."""
    with torch.device("meta"):
        model = WanTransformer3DModel(**WAN21_T2V_1_3B_TRANSFORMER)
        counts = Miva.from_unet(model, MivaConfig(), init_from_base=False).parameter_counts()
    d, blocks = 1536, 30
    assert counts["cross_frame"] == blocks * (2 * (d * d + d) + 2 * d + 2)  # Wq'+b, Wo'+b, Linear(temb, 2)
    assert counts["implicit_prompt"] == blocks * (2 * 64 * d + 2 * 64)
    assert counts["temporal_lora"] == blocks * 4 * 2 * 32 * d
    assert 150e6 < counts["total"] < 165e6  # about 11 % of the 1.42 B transformer


# ----------------------------------------------------------------------------------------- loss, training, sampling
def test_flow_grid_and_bell_weight_match_the_schedulers():
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=5.0)
    grid = flow_sigmas(torch.arange(1000), 1000, 5.0)
    torch.testing.assert_close(grid.flip(0), scheduler.sigmas[:1000], atol=1e-6, rtol=0)  # diffusers' training grid
    weights = bell_weight(grid, 1000, 5.0)
    assert abs(weights.mean().item() - 1.0) < 1e-5 and weights.min() == 0  # normalised over the grid
    assert weights[grid.sub(0.5).abs().argmin()] == weights.max()  # peak at tau = T / 2
    euler = FlowMatchEulerDiscreteScheduler(shift=5.0)
    set_sampling_timesteps(euler, 50)
    s = torch.linspace(1, 0, 51)[:-1]
    torch.testing.assert_close(euler.sigmas[:-1], 5 * s / (1 + 4 * s))  # the authors' grid, then a last step to 0
    assert euler.sigmas[-1] == 0 and len(euler.timesteps) == 50


@pytest.mark.parametrize("weighting", ["bell", "none"])
def test_flow_loss_keeps_latent_frame_1_clean_and_regresses_the_velocity(template, weighting):
    """Known answer: recompute the loss from what the transformer received and returned."""
    latents = torch.randn(2, 4, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    seen = {}
    model = template.unet
    pre = model.register_forward_pre_hook(lambda m, a, k: seen.update(x=a[0].clone(), t=a[1].clone()), with_kwargs=True)
    post = model.register_forward_hook(lambda m, a, k, out: seen.update(v=out[0].clone()), with_kwargs=True)
    try:
        with torch.no_grad():
            embeds, generator = torch.zeros(2, TEXT_LEN, 32), torch.Generator().manual_seed(8)
            loss = flow_matching_loss(template, latents, embeds, generator, weighting=weighting)
    finally:
        pre.remove(), post.remove()
    assert torch.equal(seen["x"][:, :, 0], latents[:, :, 0])  # latent frame 1 clean
    sigma = seen["t"] / 1000
    grid = flow_sigmas(torch.arange(1000), 1000, 5.0)
    assert (sigma[:, None] - grid[None, :]).abs().min(dim=1).values.max() < 1e-6  # on the shifted training grid
    s = sigma.view(2, 1, 1, 1, 1)
    noise = (seen["x"] - (1 - s) * latents) / s
    target = noise - latents
    per_video = (seen["v"][:, :, 1:] - target[:, :, 1:]).pow(2).mean(dim=(1, 2, 3, 4))
    if weighting == "bell":
        per_video = per_video * bell_weight(sigma, 1000, 5.0)
    assert math.isclose(loss.item(), per_video.mean().item(), rel_tol=1e-4)


def test_gradient_checkpointing_gives_the_adapter_the_same_gradients(template):
    """Real training needs checkpointing (`enable_gradient_checkpointing`): blocks are recomputed in backward,
    the MIVA processors with them, from the call state the context keeps after the forward."""
    latents = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(14))
    grads = []
    for checkpointing in (False, True):
        backbone = copy.deepcopy(template)
        torch.manual_seed(15)  # LoRA's A is drawn from the global RNG
        miva = perturbed(Miva.from_unet(backbone.unet, TINY_MIVA), seed=15)
        if checkpointing:
            backbone.unet.enable_gradient_checkpointing()
        attach_mivas(backbone.unet, [miva])
        flow_matching_loss(backbone, latents, torch.zeros(1, TEXT_LEN, 32), torch.Generator().manual_seed(16)).backward()
        grads.append(torch.cat([p.grad.flatten() for p in miva.parameters()]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-4)


class Clips(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict:
        return {"video": torch.rand(FRAMES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(index))}


def test_one_lightning_training_step_moves_only_the_adapter(backbone, tmp_path):
    torch.manual_seed(1)
    module = MivaModule(backbone, Miva.from_unet(backbone.unet, TINY_MIVA), optimization={"lr": 1e-2, "warmup_steps": 0})
    adapter_ids = {id(p) for p in module.miva.parameters()}
    base_before = {n: p.detach().clone() for n, p in module.named_parameters() if id(p) not in adapter_ids}
    adapter_before = {k: v.clone() for k, v in module.miva.state_dict().items()}
    assert base_before and not any(p.requires_grad for n, p in module.named_parameters() if id(p) not in adapter_ids)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=str(tmp_path),
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(Clips(), batch_size=1))
    assert math.isfinite(module.recent_loss())
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(p) for p in module.adapter_parameters()}
    for name, parameter in module.named_parameters():
        if id(parameter) not in adapter_ids:
            assert not parameter.requires_grad and torch.equal(parameter, base_before[name]), name
    moved = [k for k, v in module.miva.state_dict().items() if not torch.equal(v, adapter_before[k])]
    assert any(k.startswith("cross_frame") for k in moved) and any(k.startswith("temporal_lora") for k in moved)


@pytest.mark.parametrize("kind", ["flow_euler", "unipc"])
def test_sampling_keeps_frame_1_and_repeats(backbone, kind):
    if kind == "unipc":
        backbone.sample_scheduler = UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0
        )
    attach_mivas(backbone.unet, [perturbed(Miva.from_unet(backbone.unet, TINY_MIVA), seed=11)])
    image = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(12))
    sample = lambda seed: sample_video(  # noqa: E731
        backbone, image, FRAMES, num_inference_steps=3, generator=torch.Generator().manual_seed(seed), progress=False
    )
    video = sample(0)
    assert video.shape == (1, FRAMES, 3, SIZE, SIZE) and torch.isfinite(video).all()
    with torch.no_grad():
        round_trip = backbone.codec.decode(backbone.codec.encode(image[:, None]))[:, 0]
    assert (video[:, 0] - round_trip).abs().max() <= 1e-6  # frame 1 = the image through the VAE
    assert torch.equal(video, sample(0)) and not torch.equal(video[:, 1:], sample(1)[:, 1:])
    with pytest.raises(ValueError, match="1 \\+ 4 k"):
        sample_video(backbone, image, 8, num_inference_steps=1, progress=False)
