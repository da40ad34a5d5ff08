"""The real AnimateDiff backbone: Stable Diffusion 1.5 + an AnimateDiff motion module, all frozen.

Sources (nothing is downloaded when `HF_HUB_OFFLINE` is set):
- `pretrained_model_path`: SD1.5 in diffusers layout (`unet/`, `vae/`, `text_encoder/`, `tokenizer/`),
  a local folder or a hub id already in the local cache.
- `motion_adapter_path`: a diffusers `MotionAdapter` folder (`config.json` + weights), a hub id, or one
  `.safetensors` / `.ckpt` file (original AnimateDiff key names are converted; the architecture then
  comes from `motion_adapter_config`, checked against the file).

The 2-D UNet and the motion adapter become one `UNetMotionModel` (`from_unet2d`). Schedulers are built
from the config, not read from the SD folder, so training and sampling use exactly what the config says.
`load_wan21` (`backbones/wan.py`) follows the same rules through `backbones/pretrained.py`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, MotionAdapter, UNet2DConditionModel, UNetMotionModel
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0, SlicedAttnProcessor
from transformers import CLIPTextModel, CLIPTokenizer

from miva_lightning.backbones.base import Backbone
from miva_lightning.backbones.pretrained import (
    PretrainedLocation,
    freeze,
    load_or_explain,
    settings_from_config,
    resolve_location,
    torch_dtype,
)
from miva_lightning.backbones.vae_codec import VaeLatentCodec

CONFIG_FILE = "configs/backbone/animatediff_sd15.yaml"
ATTENTION_CHOICES = ("sdpa", "sliced", "eager")

# AnimateDiff v3 (SD1.5) motion module, used when the adapter comes as a single file.
V3_MOTION_ADAPTER_CONFIG = {
    "block_out_channels": [320, 640, 1280, 1280],
    "motion_layers_per_block": 2,
    "motion_num_attention_heads": 8,
    "motion_norm_num_groups": 32,
    "motion_max_seq_length": 32,
    "use_motion_mid_block": False,
}

DEFAULT_NOISE_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
}
DEFAULT_SAMPLE_SCHEDULER = {"clip_sample": False, "set_alpha_to_one": True, "steps_offset": 1}  # as the authors' DDIM


@dataclass
class AnimateDiffConfig:
    """Every setting `load_animatediff` reads; unknown keys are an error (typos would be silent otherwise)."""

    pretrained_model_path: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    motion_adapter_path: str = "guoyww/animatediff-motion-adapter-v1-5-3"
    motion_adapter_config: dict[str, Any] = field(default_factory=lambda: dict(V3_MOTION_ADAPTER_CONFIG))
    kind: str = "animatediff"
    name: str = "animatediff_sd15"
    revision: str | None = None
    variant: str | None = None  # e.g. "fp16" for repos that ship *.fp16.safetensors
    dtype: str = "fp32"  # UNet and text encoder: fp32 | fp16 | bf16
    vae_dtype: str | None = None  # None = same as dtype
    device: str = "cpu"
    load_text_encoder: bool = True
    enable_gradient_checkpointing: bool = False
    attention: str = "sdpa"  # sdpa (torch scaled_dot_product_attention) | sliced | eager
    attention_slice_size: int = 8  # heads*batch rows per slice when attention == "sliced"
    forward_chunk_size: int | None = None  # feed-forward chunking over tokens (memory lever)
    vae_frames_per_encode: int | None = None
    vae_frames_per_decode: int | None = 8
    vae_sample_posterior: bool = False
    vae_tiling: bool = False
    first_frame_concat: bool = False
    num_frames: int = 16  # default clip geometry for configs that read it from the backbone (train, animate)
    image_size: int = 512
    noise_scheduler: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_NOISE_SCHEDULER))
    sample_scheduler: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SAMPLE_SCHEDULER))

    @classmethod
    def from_config(cls, cfg: Any) -> AnimateDiffConfig:
        return settings_from_config(cls, cfg, "AnimateDiff", CONFIG_FILE)

    def validate(self) -> None:
        if self.attention not in ATTENTION_CHOICES:
            raise ValueError(f"backbone.attention must be one of {ATTENTION_CHOICES}, got {self.attention!r}")
        if self.first_frame_concat:
            raise ValueError(
                "AnimateDiff SD1.5 has a 4-channel UNet input: first_frame_concat must be false "
                "(MIVA keeps frame 1 clean instead)"
            )
        torch_dtype(self.dtype)
        torch_dtype(self.vae_dtype or self.dtype)


def load_animatediff(cfg: Any) -> Backbone:
    """Load SD1.5 + AnimateDiff motion module from local weights as a frozen `Backbone`."""
    settings = AnimateDiffConfig.from_config(cfg)
    dtype = torch_dtype(settings.dtype)
    vae_dtype = torch_dtype(settings.vae_dtype or settings.dtype)
    device = torch.device(settings.device)
    sd = resolve_location(settings.pretrained_model_path, "pretrained_model_path", CONFIG_FILE)
    if sd.is_local and not Path(sd.location).is_dir():
        raise FileNotFoundError(
            f"`pretrained_model_path` is the file {sd.location!r}; it must be a diffusers-layout SD1.5 folder "
            f"(unet/, vae/, text_encoder/, tokenizer/). Set it in {CONFIG_FILE}."
        )

    unet2d = _load_component(UNet2DConditionModel, sd, "unet", settings, dtype)
    motion_adapter = load_motion_adapter(settings)
    unet = UNetMotionModel.from_unet2d(unet2d, motion_adapter)
    del unet2d, motion_adapter
    unet = freeze(unet.to(device=device, dtype=dtype))
    _apply_memory_settings(unet, settings)

    vae = freeze(_load_component(AutoencoderKL, sd, "vae", settings, vae_dtype).to(device))
    codec = VaeLatentCodec(
        vae,
        frames_per_encode=settings.vae_frames_per_encode,
        frames_per_decode=settings.vae_frames_per_decode,
        sample_posterior=settings.vae_sample_posterior,
        tiling=settings.vae_tiling,
    )
    freeze(codec)
    text_encoder = tokenizer = None
    if settings.load_text_encoder:
        text_encoder = freeze(_load_component(CLIPTextModel, sd, "text_encoder", settings, dtype).to(device))
        tokenizer = load_or_explain(
            sd, "tokenizer", lambda: CLIPTokenizer.from_pretrained(
                sd.location, subfolder="tokenizer", revision=settings.revision, local_files_only=sd.local_files_only
            )
        )
    noise_scheduler, sample_scheduler = build_schedulers(settings)
    return Backbone(
        unet=unet,
        noise_scheduler=noise_scheduler,
        sample_scheduler=sample_scheduler,
        codec=codec,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        first_frame_concat=False,
        name=settings.name,
        config=dataclasses.asdict(settings),
    )


def _load_component(model_class, sd: PretrainedLocation, subfolder: str, settings: AnimateDiffConfig, dtype):
    """`model_class.from_pretrained(<sd>/<subfolder>)` with offline rules and a clear error."""
    if sd.is_local and not (Path(sd.location) / subfolder).is_dir():
        raise FileNotFoundError(
            f"the SD1.5 folder {sd.location!r} has no `{subfolder}/` subfolder (expected diffusers layout: "
            f"unet/, vae/, text_encoder/, tokenizer/). Fix: {sd.how_to_fix()}."
        )
    options: dict[str, Any] = {"subfolder": subfolder, "local_files_only": sd.local_files_only}
    options["torch_dtype" if model_class is not CLIPTextModel else "dtype"] = dtype
    if settings.revision:
        options["revision"] = settings.revision
    if settings.variant:
        options["variant"] = settings.variant
    return load_or_explain(sd, f"SD1.5 {subfolder}", lambda: model_class.from_pretrained(sd.location, **options))


def load_motion_adapter(settings: AnimateDiffConfig) -> MotionAdapter:
    """A diffusers `MotionAdapter` from a folder, a hub id, or one `.safetensors` / `.ckpt` file."""
    where = resolve_location(settings.motion_adapter_path, "motion_adapter_path", CONFIG_FILE)
    if where.is_local and Path(where.location).is_file():
        return _motion_adapter_from_file(Path(where.location), settings.motion_adapter_config, where)
    options: dict[str, Any] = {"local_files_only": where.local_files_only}
    if settings.variant:
        options["variant"] = settings.variant
    return load_or_explain(where, "motion adapter", lambda: MotionAdapter.from_pretrained(where.location, **options))


def _motion_adapter_from_file(path: Path, config: dict[str, Any], where: PretrainedLocation) -> MotionAdapter:
    """Single-file motion module. Key names may be diffusers' or the original AnimateDiff ones.

    diffusers' own converter renames the original keys; `MotionAdapter.from_single_file` would also work
    but needs the architecture config from the hub, which we take from `motion_adapter_config` instead.
    """
    from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

    state_dict = load_or_explain(where, "motion adapter file", lambda: _read_state_dict(path))
    state_dict = convert_animatediff_checkpoint_to_diffusers(state_dict)
    adapter = MotionAdapter(**config)
    missing, unexpected = adapter.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"the motion adapter file {str(path)!r} does not match `motion_adapter_config` "
            f"({len(missing)} missing keys, e.g. {missing[:3]}; {len(unexpected)} unexpected, e.g. {unexpected[:3]}). "
            f"Fix `motion_adapter_config` in {CONFIG_FILE} (v3 SD1.5 is the default; v2 needs use_motion_mid_block: true)."
        )
    return adapter


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix in {".ckpt", ".pt", ".pth", ".bin"}:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        return state.get("state_dict", state)
    raise ValueError(f"unsupported motion adapter file type {path.suffix!r}: use .safetensors or .ckpt")


def _apply_memory_settings(unet: UNetMotionModel, settings: AnimateDiffConfig) -> None:
    """Attention implementation, gradient checkpointing and feed-forward chunking on the frozen UNet."""
    if settings.attention == "sdpa":
        unet.set_attn_processor(AttnProcessor2_0())
    elif settings.attention == "sliced":
        unet.set_attn_processor(SlicedAttnProcessor(settings.attention_slice_size))
    else:
        unet.set_attn_processor(AttnProcessor())
    if settings.enable_gradient_checkpointing:
        # Frozen weights still need activations for the adapters' gradients: recompute instead of storing.
        unet.enable_gradient_checkpointing()
    if settings.forward_chunk_size:
        unet.enable_forward_chunking(chunk_size=settings.forward_chunk_size, dim=1)


def build_schedulers(settings: AnimateDiffConfig) -> tuple[DDPMScheduler, DDIMScheduler]:
    """DDPM for training and DDIM for sampling, on the same beta schedule."""
    train_options = {**DEFAULT_NOISE_SCHEDULER, **settings.noise_scheduler}
    shared_keys = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type")
    sample_options = {key: train_options[key] for key in shared_keys}
    sample_options.update({**DEFAULT_SAMPLE_SCHEDULER, **settings.sample_scheduler})
    return DDPMScheduler(**train_options), DDIMScheduler(**sample_options)
