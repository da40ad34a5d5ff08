"""`load_animatediff` on tiny components of the real diffusers/transformers classes, saved like SD1.5."""

import re
from pathlib import Path

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    MotionAdapter,
    UNet2DConditionModel,
    UNetMotionModel,
)
from diffusers.models.attention_processor import AttnProcessor2_0, SlicedAttnProcessor
from omegaconf import OmegaConf
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from miva_lightning.backbones.animatediff import AnimateDiffConfig, load_animatediff
from miva_lightning.backbones.base import Backbone, LatentCodec
from miva_lightning.config import CONFIG_DIR

TINY_ADAPTER = dict(
    block_out_channels=(32, 64), motion_layers_per_block=1, motion_norm_num_groups=8,
    motion_num_attention_heads=4, motion_max_seq_length=32, use_motion_mid_block=False,
)


def _tiny_tokenizer(max_length: int = 12) -> CLIPTokenizer:
    words = ["a", "video", "of", "waterfall", "birds", "flying"]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in sorted(set("".join(words))):
        vocab.setdefault(letter, len(vocab))
        vocab.setdefault(letter + "</w>", len(vocab))
    vocab["er"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[("e", "r")], model_max_length=max_length)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> dict[str, Path]:
    """Tiny SD1.5-layout folder + motion adapter folder + the same adapter as one file."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny_animatediff")
    sd = root / "sd15"
    UNet2DConditionModel(
        sample_size=16, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, norm_num_groups=8, attention_head_dim=4,
    ).save_pretrained(sd / "unet")
    AutoencoderKL(
        block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8, sample_size=32,
    ).save_pretrained(sd / "vae")
    tokenizer = _tiny_tokenizer()
    CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer.get_vocab()), hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=tokenizer.model_max_length, bos_token_id=0, eos_token_id=1,
        pad_token_id=1,
    )).save_pretrained(sd / "text_encoder")
    tokenizer.save_pretrained(sd / "tokenizer")
    DDPMScheduler().save_pretrained(sd / "scheduler")
    adapter = MotionAdapter(**TINY_ADAPTER)
    adapter.save_pretrained(root / "motion_adapter")
    save_file(adapter.state_dict(), str(root / "motion_adapter.safetensors"))
    save_file(_to_original_animatediff_keys(adapter.state_dict()), str(root / "mm_original_keys.safetensors"))
    return {"sd": sd, "adapter_dir": root / "motion_adapter", "adapter_file": root / "motion_adapter.safetensors",
            "adapter_original": root / "mm_original_keys.safetensors", "root": root}


def _to_original_animatediff_keys(state_dict):
    """Rename diffusers MotionAdapter keys back to the original AnimateDiff checkpoint names."""
    renamed = {}
    for key, value in state_dict.items():
        key = re.sub(r"(motion_modules\.\d+)\.", r"\1.temporal_transformer.", key)
        key = key.replace(".norm1", ".norms.0").replace(".norm2", ".norms.1").replace(".norm3", ".ff_norm")
        key = key.replace(".attn1", ".attention_blocks.0").replace(".attn2", ".attention_blocks.1")
        renamed[key] = value.clone()
    return renamed


def _cfg(weights, **overrides):
    cfg = OmegaConf.load(CONFIG_DIR / "backbone" / "animatediff_sd15.yaml")
    cfg.pretrained_model_path = str(weights["sd"])
    cfg.motion_adapter_path = str(weights["adapter_dir"])
    cfg.motion_adapter_config = dict(TINY_ADAPTER)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value)
    return cfg


@pytest.fixture(scope="module")
def backbone(tiny_weights) -> Backbone:
    return load_animatediff(_cfg(tiny_weights))


def test_loads_classes_from_sd15_layout(backbone):
    assert isinstance(backbone.unet, UNetMotionModel)
    assert isinstance(backbone.noise_scheduler, DDPMScheduler)
    assert isinstance(backbone.sample_scheduler, DDIMScheduler)
    assert isinstance(backbone.codec, LatentCodec)
    assert isinstance(backbone.text_encoder, CLIPTextModel)
    assert isinstance(backbone.tokenizer, CLIPTokenizer)
    assert backbone.first_frame_concat is False and backbone.name == "animatediff_sd15"
    assert backbone.codec.latent_channels == 4 and backbone.codec.downscale == 2


def test_schedulers_match_method(backbone):
    for scheduler in (backbone.noise_scheduler, backbone.sample_scheduler):
        assert scheduler.config.num_train_timesteps == 1000
        assert scheduler.config.beta_schedule == "scaled_linear"
        assert scheduler.config.prediction_type == "epsilon"
        assert scheduler.betas[0].item() == pytest.approx(0.00085)
        assert scheduler.betas[-1].item() == pytest.approx(0.012)
    assert backbone.sample_scheduler.config.clip_sample is False


def test_everything_frozen_and_in_eval(backbone):
    for module in (backbone.unet, backbone.codec, backbone.text_encoder):
        assert not any(p.requires_grad for p in module.parameters())
        assert not module.training


def test_weights_come_from_saved_files(backbone, tiny_weights):
    unet2d = UNet2DConditionModel.from_pretrained(tiny_weights["sd"], subfolder="unet")
    adapter = MotionAdapter.from_pretrained(tiny_weights["adapter_dir"])
    torch.testing.assert_close(backbone.unet.conv_in.weight, unet2d.conv_in.weight)
    loaded_motion = backbone.unet.down_blocks[0].motion_modules[0].transformer_blocks[0].attn1.to_q.weight
    torch.testing.assert_close(loaded_motion, adapter.down_blocks[0].motion_modules[0].transformer_blocks[0].attn1.to_q.weight)


def test_unet_forward_on_video_latents(backbone):
    b, f = 2, 4
    latents = torch.randn(b, 4, f, 16, 16)
    tokens = backbone.tokenizer(["a video of birds flying"] * b, padding="max_length", truncation=True,
                                max_length=backbone.tokenizer.model_max_length, return_tensors="pt")
    with torch.no_grad():
        text = backbone.text_encoder(tokens.input_ids).last_hidden_state
        text = text.repeat_interleave(f, dim=0)  # (b f) l d, as UNetMotionModel expects
        out = backbone.unet(latents, torch.tensor([500, 20]), encoder_hidden_states=text).sample
    assert out.shape == latents.shape
    assert torch.isfinite(out).all()


def test_codec_round_trip_shapes_and_range(backbone):
    video = torch.rand(2, 3, 3, 32, 48)
    with torch.no_grad():
        latents = backbone.codec.encode(video)
        again = backbone.codec.encode(video)
        decoded = backbone.codec.decode(latents)
    assert latents.shape == (2, 4, 3, 16, 24)
    assert torch.equal(latents, again)  # posterior mean: deterministic
    assert decoded.shape == video.shape and decoded.dtype == torch.float32
    assert decoded.min() >= 0 and decoded.max() <= 1


def test_codec_chunking_matches_single_pass(backbone, tiny_weights):
    chunked = load_animatediff(_cfg(tiny_weights, vae_frames_per_encode=1, vae_frames_per_decode=2,
                                    load_text_encoder=False)).codec
    video = torch.rand(1, 5, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(chunked.encode(video), backbone.codec.encode(video), atol=1e-5, rtol=1e-4)
        latents = backbone.codec.encode(video)
        torch.testing.assert_close(chunked.decode(latents), backbone.codec.decode(latents), atol=1e-5, rtol=1e-4)


def test_codec_rejects_wrong_layout(backbone):
    with pytest.raises(ValueError, match="b f c h w"):
        backbone.codec.encode(torch.rand(1, 3, 4, 16, 16))  # b c f h w by mistake
    with pytest.raises(ValueError, match="divisible"):
        backbone.codec.encode(torch.rand(1, 2, 3, 15, 16))


@pytest.mark.parametrize("adapter_key", ["adapter_file", "adapter_original"])
def test_single_file_motion_adapter(tiny_weights, backbone, adapter_key):
    from safetensors import safe_open

    with safe_open(str(tiny_weights[adapter_key]), "pt") as file:
        has_original_names = any(".temporal_transformer." in key for key in file.keys())
    assert has_original_names == (adapter_key == "adapter_original")
    loaded = load_animatediff(_cfg(tiny_weights, motion_adapter_path=str(tiny_weights[adapter_key]),
                                   load_text_encoder=False))
    for (name, a), (_, b) in zip(loaded.unet.named_parameters(), backbone.unet.named_parameters()):
        assert torch.equal(a, b), name


def test_single_file_with_wrong_architecture_says_what_to_fix(tiny_weights):
    cfg = _cfg(tiny_weights, motion_adapter_path=str(tiny_weights["adapter_file"]))
    cfg.motion_adapter_config.use_motion_mid_block = True
    with pytest.raises(ValueError, match="motion_adapter_config"):
        load_animatediff(cfg)


def test_dtype_and_memory_settings(tiny_weights):
    loaded = load_animatediff(_cfg(tiny_weights, dtype="bf16", vae_dtype="fp32", attention="sliced",
                                   enable_gradient_checkpointing=True, load_text_encoder=False))
    assert loaded.unet.dtype == torch.bfloat16
    assert loaded.codec.vae.dtype == torch.float32
    assert loaded.unet.is_gradient_checkpointing
    assert all(isinstance(p, SlicedAttnProcessor) for p in loaded.unet.attn_processors.values())
    assert loaded.text_encoder is None and loaded.tokenizer is None


def test_default_attention_is_sdpa(backbone):
    assert all(isinstance(p, AttnProcessor2_0) for p in backbone.unet.attn_processors.values())


def test_missing_sd_folder_names_the_setting(tiny_weights, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pretrained_model_path.*animatediff_sd15\.yaml"):
        load_animatediff(_cfg(tiny_weights, pretrained_model_path=str(tmp_path / "no_such_sd15")))


def test_missing_subfolder_names_it(tiny_weights, tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(FileNotFoundError, match=r"config\.json|unet"):
        load_animatediff(_cfg(tiny_weights, pretrained_model_path=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="no `vae/`"):
        broken = tmp_path / "sd_without_vae"
        broken.mkdir()
        (broken / "unet").symlink_to(tiny_weights["sd"] / "unet")
        load_animatediff(_cfg(tiny_weights, pretrained_model_path=str(broken)))


def test_uncached_hub_id_offline_names_the_setting(tiny_weights, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"motion_adapter_path.*animatediff_sd15\.yaml"):
        load_animatediff(_cfg(tiny_weights, motion_adapter_path="nobody-here/no-such-motion-adapter"))


def test_unknown_and_bad_settings_are_rejected(tiny_weights):
    with pytest.raises(ValueError, match="unknown AnimateDiff backbone settings"):
        AnimateDiffConfig.from_config({"pretrained_modle_path": "x"})
    with pytest.raises(ValueError, match="attention"):
        AnimateDiffConfig.from_config({"attention": "flash"})
    with pytest.raises(ValueError, match="dtype"):
        AnimateDiffConfig.from_config({"dtype": "fp8"})


def test_shipped_config_composes():
    settings = AnimateDiffConfig.from_config(OmegaConf.load(CONFIG_DIR / "backbone" / "animatediff_sd15.yaml"))
    assert settings.kind == "animatediff"
    assert settings.noise_scheduler["beta_schedule"] == "scaled_linear"


def test_factory_and_shared_forward_path(tiny_weights):
    """The team's entry points (build_backbone, encode_prompts, unet_predict) work on the real loader."""
    from miva_lightning.backbones import build_backbone, encode_prompts, unet_predict

    loaded = build_backbone(_cfg(tiny_weights))
    assert isinstance(loaded.unet, UNetMotionModel)
    first_frame = torch.rand(2, 1, 3, 32, 32)
    with torch.no_grad():
        first_latent = loaded.codec.encode(first_frame)[:, :, 0]
        embeds = encode_prompts(loaded, ["a video of birds flying", ""])
        out = unet_predict(loaded, torch.randn(2, 4, 3, 16, 16), torch.tensor([10, 900]), embeds, first_latent)
    assert out.shape == (2, 4, 3, 16, 16)


def test_gradient_checkpointing_keeps_input_gradients(tiny_weights, backbone):
    """Adapters train through the frozen UNet: checkpointing must recompute, not drop, their gradients."""
    checkpointed = load_animatediff(_cfg(tiny_weights, enable_gradient_checkpointing=True, load_text_encoder=False))
    text = torch.randn(2, 12, 32)
    grads = []
    for unet in (backbone.unet, checkpointed.unet):
        latents = torch.randn(1, 4, 2, 16, 16, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        unet(latents, torch.tensor([300]), encoder_hidden_states=text).sample.square().mean().backward()
        grads.append(latents.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-4)
