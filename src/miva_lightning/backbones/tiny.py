"""The tiny embedded backbone: a small diffusers UNetMotionModel over space-to-depth pixels.

Everything is built from `configs/backbone/tiny.yaml` (no downloads). A pretrained tiny base is a folder
`artifacts/base/<name>-<config_hash>/` written by `save_tiny_backbone` and read by `load_tiny_backbone`:
unet/, text_encoder/, tokenizer/, scheduler/ (diffusers / transformers `save_pretrained` layouts),
backbone.yaml (the config it was built from), recipe.json (how it was trained), SHA256SUMS.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from diffusers import DDIMScheduler, DDPMScheduler, UNetMotionModel
from omegaconf import DictConfig, OmegaConf
from transformers import CLIPTextModel, CLIPTokenizer

from miva_lightning.backbones.base import Backbone
from miva_lightning.backbones.pixel_codec import PixelShuffleCodec
from miva_lightning.backbones.tokenizer import build_text_encoder, build_word_tokenizer, caption_words
from miva_lightning.utils import atomic_folder, atomic_write_json, atomic_write_text, file_sha256

PARTS = ("unet", "text_encoder", "tokenizer", "scheduler")


def _plain(cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def tokenizer_vocabulary(cfg: Mapping[str, Any]) -> list[str]:
    """Words of the tokenizer, from the config (kept there, not derived, so a saved base never changes)."""
    return caption_words([" ".join(cfg["text"]["words"])])


def build_schedulers(cfg: Mapping[str, Any]) -> tuple[DDPMScheduler, DDIMScheduler]:
    sched = dict(cfg["scheduler"])
    train = DDPMScheduler(
        num_train_timesteps=sched["num_train_timesteps"],
        beta_schedule=sched["beta_schedule"],
        beta_start=sched["beta_start"],
        beta_end=sched["beta_end"],
        prediction_type=cfg["prediction_type"],
        rescale_betas_zero_snr=sched.get("rescale_betas_zero_snr", False),
        timestep_spacing=sched.get("timestep_spacing", "leading"),
        clip_sample=False,
    )
    return train, DDIMScheduler.from_config(train.config, set_alpha_to_one=True, steps_offset=0)


def build_tiny_unet(cfg: Mapping[str, Any], text_dim: int) -> UNetMotionModel:
    unet_cfg = dict(cfg["unet"])
    codec_channels = 3 * cfg["codec"]["factor"] ** 2
    in_channels = codec_channels * (2 if cfg["first_frame_concat"] else 1)
    return UNetMotionModel(
        sample_size=cfg["image_size"] // cfg["codec"]["factor"],
        in_channels=in_channels,
        out_channels=codec_channels,
        block_out_channels=tuple(unet_cfg["block_out_channels"]),
        layers_per_block=unet_cfg["layers_per_block"],
        down_block_types=tuple(unet_cfg["down_block_types"]),
        up_block_types=tuple(unet_cfg["up_block_types"]),
        norm_num_groups=unet_cfg["norm_num_groups"],
        num_attention_heads=unet_cfg["num_attention_heads"],
        motion_num_attention_heads=unet_cfg["motion_num_attention_heads"],
        motion_max_seq_length=unet_cfg.get("motion_max_seq_length", 32),
        use_motion_mid_block=unet_cfg.get("use_motion_mid_block", True),
        cross_attention_dim=text_dim,
        time_cond_proj_dim=text_dim if cfg.get("text_to_time", False) else None,
    )


def build_tiny_backbone(cfg: Mapping[str, Any] | DictConfig) -> Backbone:
    """A freshly initialised tiny backbone (random weights; use `load_tiny_backbone` for a trained one)."""
    cfg = _plain(cfg)
    text = cfg["text"]
    tokenizer = build_word_tokenizer(tokenizer_vocabulary(cfg), max_length=text["max_length"])
    text_encoder = build_text_encoder(
        vocab_size=len(tokenizer.get_vocab()),
        hidden_size=text["hidden_size"],
        num_layers=text["num_layers"],
        num_heads=text["num_heads"],
        max_length=text["max_length"],
    )
    noise_scheduler, sample_scheduler = build_schedulers(cfg)
    return Backbone(
        unet=build_tiny_unet(cfg, text["hidden_size"]),
        noise_scheduler=noise_scheduler,
        sample_scheduler=sample_scheduler,
        codec=PixelShuffleCodec(cfg["codec"]["factor"]),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        first_frame_concat=bool(cfg["first_frame_concat"]),
        name=cfg.get("name", "tiny"),
        config=cfg,
    )


def save_tiny_backbone(backbone: Backbone, folder: str | Path, recipe: Mapping[str, Any]) -> Path:
    """Write the backbone atomically: everything goes to a temporary sibling folder renamed at the end."""
    with atomic_folder(folder) as tmp:
        backbone.unet.save_pretrained(tmp / "unet")
        backbone.text_encoder.save_pretrained(tmp / "text_encoder")
        backbone.tokenizer.save_pretrained(tmp / "tokenizer")
        backbone.noise_scheduler.save_pretrained(tmp / "scheduler")
        config = {k: v for k, v in backbone.config.items() if k != "pretrained_dir"}
        atomic_write_text(tmp / "backbone.yaml", OmegaConf.to_yaml(OmegaConf.create(config)))
        atomic_write_json(tmp / "recipe.json", dict(recipe))
        sums = sorted(
            (str(path.relative_to(tmp)), file_sha256(path)) for path in tmp.rglob("*") if path.is_file()
        )
        atomic_write_text(tmp / "SHA256SUMS", "".join(f"{digest}  {name}\n" for name, digest in sums))
    return Path(folder)


def verify_checksums(folder: Path) -> None:
    listing = folder / "SHA256SUMS"
    if not listing.exists():
        raise FileNotFoundError(f"{folder} has no SHA256SUMS: not a saved tiny base (run `make pretrain`)")
    for line in listing.read_text().splitlines():
        digest, name = line.split("  ", 1)
        if file_sha256(folder / name) != digest:
            raise ValueError(f"checksum mismatch for {folder / name}: the saved base is corrupt, re-run pretraining")


def load_tiny_backbone(folder: str | Path, verify: bool = True) -> Backbone:
    folder = Path(folder)
    if not (folder / "backbone.yaml").exists():
        raise FileNotFoundError(f"no saved tiny base at {folder} (expected backbone.yaml, unet/, ...)")
    if verify:
        verify_checksums(folder)
    cfg = OmegaConf.to_container(OmegaConf.load(folder / "backbone.yaml"), resolve=True)
    noise_scheduler = DDPMScheduler.from_pretrained(folder / "scheduler")
    sample_scheduler = DDIMScheduler.from_config(noise_scheduler.config, set_alpha_to_one=True, steps_offset=0)
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    tokenizer.model_max_length = cfg["text"]["max_length"]
    backbone = Backbone(
        unet=UNetMotionModel.from_pretrained(folder / "unet"),
        noise_scheduler=noise_scheduler,
        sample_scheduler=sample_scheduler,
        codec=PixelShuffleCodec(cfg["codec"]["factor"]),
        text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder"),
        tokenizer=tokenizer,
        first_frame_concat=bool(cfg["first_frame_concat"]),
        name=cfg.get("name", "tiny"),
        config=cfg,
    )
    backbone.config["pretrained_dir"] = str(folder)
    return backbone


def read_recipe(folder: str | Path) -> dict[str, Any]:
    """How a saved base was trained (recipe.json), or {} when absent."""
    path = Path(folder) / "recipe.json"
    return json.loads(path.read_text()) if path.exists() else {}
