"""Tiny backbone: lossless codec, word tokenizer, UNet from config, save/load round trip."""

import pytest
import torch
from omegaconf import OmegaConf

from miva_lightning.backbones import PixelShuffleCodec, build_backbone, encode_prompts, unet_predict
from miva_lightning.backbones.factory import resolve_pretrained
from miva_lightning.backbones.tiny import load_tiny_backbone, save_tiny_backbone, tokenizer_vocabulary
from miva_lightning.backbones.tokenizer import build_word_tokenizer
from miva_lightning.config import CONFIG_DIR
from miva_lightning.world import ALL_MOTIONS, caption_for


def tiny_cfg(**overrides):
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "backbone" / "tiny.yaml"))
    cfg.update(pretrained=None, artifacts_dir=None)
    cfg["unet"].update(block_out_channels=[16, 32], norm_num_groups=8, num_attention_heads=2, motion_num_attention_heads=2)
    cfg["text"].update(hidden_size=16, num_layers=1, num_heads=2)
    cfg.update(overrides)
    return cfg


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_codec_round_trip_is_lossless(factor):
    codec = PixelShuffleCodec(factor)
    video = torch.randint(0, 256, (2, 3, 3, 32, 32)).float() / 255
    latents = codec.encode(video)
    assert latents.shape == (2, 3 * factor**2, 3, 32 // factor, 32 // factor)
    assert latents.min() >= -1 and latents.max() <= 1
    decoded = codec.decode(latents)
    assert torch.allclose(decoded, video, atol=1e-6)
    assert torch.equal((decoded * 255).round(), (video * 255).round())


def test_codec_keeps_pixels_in_place():
    """Latent channel block (dy, dx) at token (i, j) is pixel (i*s+dy, j*s+dx): a local, invertible fold."""
    codec = PixelShuffleCodec(2)
    video = torch.zeros(1, 1, 3, 4, 4)
    video[0, 0, 0, 3, 2] = 1.0
    latents = codec.encode(video)
    assert (latents > 0).sum() == 1
    assert latents[0, :, 0, 1, 1].argmax().item() == 2  # channel 0 * 4 + dy 1 * 2 + dx 0


def test_codec_rejects_bad_layout():
    with pytest.raises(ValueError, match="b f c h w"):
        PixelShuffleCodec(2).encode(torch.zeros(1, 3, 8, 32, 32))
    with pytest.raises(ValueError, match="divisible"):
        PixelShuffleCodec(4).encode(torch.zeros(1, 2, 3, 30, 30))


def test_tokenizer_makes_each_world_word_one_token_and_round_trips():
    tokenizer = build_word_tokenizer(tokenizer_vocabulary(tiny_cfg()))
    for motion in ALL_MOTIONS:
        caption = caption_for(motion)
        ids = tokenizer(caption)["input_ids"]
        assert len(ids) == len(caption.split()) + 2, (motion, tokenizer.convert_ids_to_tokens(ids))
        assert tokenizer.decode(ids, skip_special_tokens=True).strip() == caption


def test_tokenizer_resolves_merge_conflicts():
    tokenizer = build_word_tokenizer(["an", "pan", "in", "rain"])
    assert [len(tokenizer.tokenize(w)) for w in ["an", "pan", "in", "rain"]] == [1, 1, 1, 1]
    assert tokenizer.tokenize("nap") != []  # unknown words fall back to letters


def test_factory_builds_unet_from_config():
    cfg = tiny_cfg()
    backbone = build_backbone(cfg)
    factor = cfg["codec"]["factor"]
    assert backbone.unet.config.in_channels == 2 * 3 * factor**2  # noisy latents + first-frame latents
    assert backbone.unet.config.out_channels == 3 * factor**2
    assert backbone.unet.config.time_cond_proj_dim == cfg["text"]["hidden_size"]
    assert backbone.noise_scheduler.config.prediction_type == cfg["prediction_type"]
    assert backbone.sample_scheduler.config.prediction_type == cfg["prediction_type"]
    embeds = encode_prompts(backbone, ["camera pans left", ""])
    assert embeds.shape == (2, cfg["text"]["max_length"], cfg["text"]["hidden_size"])
    latents = backbone.codec.encode(torch.rand(2, 3, 3, 32, 32))
    out = unet_predict(backbone, latents, torch.tensor([10, 500]), embeds, latents[:, :, 0])
    assert out.shape == latents.shape


def test_factory_rejects_unknown_kind_and_missing_base(tmp_path):
    with pytest.raises(ValueError, match="unknown backbone kind"):
        build_backbone({"kind": "nope"})
    with pytest.raises(FileNotFoundError, match="make pretrain"):
        resolve_pretrained({"pretrained": "latest", "artifacts_dir": str(tmp_path), "name": "tiny"})


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    backbone = build_backbone(tiny_cfg())
    folder = save_tiny_backbone(backbone, tmp_path / "tiny-abc", {"note": "test"})
    assert not list(tmp_path.glob(".*partial*"))
    loaded = load_tiny_backbone(folder)
    prompts = ["camera zooms in", "rain falls"]
    latents = backbone.codec.encode(torch.rand(2, 4, 3, 32, 32))
    with torch.no_grad():
        outputs = [
            unet_predict(b, latents, torch.tensor([3, 900]), encode_prompts(b, prompts), latents[:, :, 0])
            for b in (backbone, loaded)
        ]
    assert torch.equal(outputs[0], outputs[1])
    assert loaded.tokenizer("camera zooms in")["input_ids"] == backbone.tokenizer("camera zooms in")["input_ids"]
    (folder / "unet" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="checksum"):
        load_tiny_backbone(folder)
