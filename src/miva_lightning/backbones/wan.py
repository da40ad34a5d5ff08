"""The real Wan2.1 text-to-video backbone (T2V 1.3B), all frozen: DiT, causal video VAE, UMT5 text encoder.

Source (nothing is downloaded when `HF_HUB_OFFLINE` is set): `pretrained_model_path`, a diffusers-layout
folder as published in `Wan-AI/Wan2.1-T2V-1.3B-Diffusers` (`transformer/`, `vae/`, `text_encoder/`,
`tokenizer/`; `scheduler/` is not read), or a hub id already in the local cache. Same location rules and
errors as the SD1.5 backbone (`backbones/pretrained.py`).

Pieces and tensor layouts:
- denoiser: diffusers `WanTransformer3DModel` (unmodified class). Input latents `b c f' h' w'`, float
  timesteps `b` (sigma * 1000), prompt embeddings `b L D_text`; output the flow-matching velocity
  `b c f' h' w'`. Inside, tokens are `b (f' h'/2 w'/2) d` (patch (1, 2, 2)) with 3-D RoPE.
- codec: `WanVaeCodec` around `AutoencoderKLWan`: video `b f c h w` in [0, 1] with f = 4k + 1 ->
  latents `b 16 f' h/8 w/8`, f' = k + 1, normalised per channel with the VAE's `latents_mean` /
  `latents_std` (as diffusers' Wan pipelines do). The VAE is causal in time: latent frame 1 depends on
  video frame 1 only, so the input image alone encodes to exactly the first latent frame of any video
  that starts with it (MIVA's clean first latent frame).
- text: transformers `UMT5EncoderModel` + tokenizer, prompts encoded like diffusers' `WanPipeline`
  (attention mask, padding positions zeroed, L = `text_max_length` = 512). Prompt cleaning (ftfy,
  whitespace) is not applied.
- schedulers, built from the config (not read from the folder), so training and sampling use what the
  config says: training `FlowMatchEulerDiscreteScheduler(shift=flow_shift)` (x_t = (1 - s) x0 + s eps,
  target eps - x0); sampling the same Euler rule (the authors' DiffSynth sampler: 50 steps, shift 5,
  sigma grid linspace(1, 0, N + 1)[:-1] before the shift) or `unipc` (diffusers' WanPipeline default).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler, WanTransformer3DModel
from einops import rearrange
from torch import nn

from miva_lightning.backbones.base import Backbone, latent_frame_count
from miva_lightning.backbones.pretrained import (
    PretrainedLocation,
    freeze,
    load_or_explain,
    settings_from_config,
    resolve_location,
    torch_dtype,
)

CONFIG_FILE = "configs/backbone/wan21_t2v_1_3b.yaml"
LAYOUT = ("transformer", "vae", "text_encoder", "tokenizer")
SAMPLE_SCHEDULERS = ("flow_euler", "unipc")
FLOW_LOSS_WEIGHTINGS = ("bell", "none")

# WanTransformer3DModel settings of Wan2.1-T2V-1.3B (transformer/config.json of the diffusers release).
WAN21_T2V_1_3B_TRANSFORMER = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 12,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 8960,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
}


@dataclass
class WanConfig:
    """Every setting `load_wan21` reads; unknown keys are an error (typos would be silent otherwise)."""

    pretrained_model_path: str = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    kind: str = "wan"
    name: str = "wan21_t2v_1_3b"
    revision: str | None = None
    variant: str | None = None
    dtype: str = "fp32"  # transformer: fp32 | fp16 | bf16
    vae_dtype: str = "fp32"  # diffusers' Wan examples keep the VAE in fp32
    text_encoder_dtype: str = "bf16"  # UMT5-XXL encoder, ~5.7 B parameters
    device: str = "cpu"
    load_text_encoder: bool = True  # false: the empty prompt becomes all-zero embeddings (see WanPromptEncoder)
    text_max_length: int = 512
    enable_gradient_checkpointing: bool = False
    vae_sample_posterior: bool = False
    vae_tiling: bool = False
    vae_slicing: bool = False
    first_frame_concat: bool = False
    num_frames: int = 17  # video frames, 4k + 1 (17 -> 5 latent frames)
    image_size: int = 480
    num_train_timesteps: int = 1000
    flow_shift: float = 5.0  # sigma shift of training (and of sampling unless sample_flow_shift is set)
    sample_flow_shift: float | None = None
    sample_scheduler: str = "flow_euler"  # flow_euler (the authors') | unipc (diffusers' WanPipeline)
    flow_loss_weighting: str = "bell"  # bell (the authors' DiffSynth training weight) | none

    @classmethod
    def from_config(cls, cfg: Any) -> WanConfig:
        return settings_from_config(cls, cfg, "Wan", CONFIG_FILE)

    def validate(self) -> None:
        if self.sample_scheduler not in SAMPLE_SCHEDULERS:
            raise ValueError(f"backbone.sample_scheduler must be one of {SAMPLE_SCHEDULERS}, got {self.sample_scheduler!r}")
        if self.flow_loss_weighting not in FLOW_LOSS_WEIGHTINGS:
            raise ValueError(
                f"backbone.flow_loss_weighting must be one of {FLOW_LOSS_WEIGHTINGS}, got {self.flow_loss_weighting!r}"
            )
        if self.first_frame_concat:
            raise ValueError("Wan2.1 T2V has a 16-channel input: first_frame_concat must be false (MIVA keeps frame 1 clean)")
        if self.num_frames < 1 or (self.num_frames - 1) % 4:
            raise ValueError(f"backbone.num_frames must be 4k + 1 for Wan's VAE (e.g. 17), got {self.num_frames}")
        if self.image_size % 16:
            raise ValueError(f"backbone.image_size must be a multiple of 16 (VAE 8 x patch 2), got {self.image_size}")
        for key in ("flow_shift", "sample_flow_shift"):
            value = getattr(self, key)
            if value is not None and not float(value) > 0:
                raise ValueError(f"backbone.{key} must be > 0, got {value}")
        for name in (self.dtype, self.vae_dtype, self.text_encoder_dtype):
            torch_dtype(name)


class WanVaeCodec(nn.Module):
    """`LatentCodec` around diffusers' `AutoencoderKLWan` (causal 3-D VAE).

    encode: video `b f c h w` in [0, 1], f = 1 + t k  ->  latents `b z (k + 1) h/s w/s`, (z - mean) / std
    decode: latents `b z f' h' w'`                     ->  video `b (1 + t (f' - 1)) c (s h') (s w')` in [0, 1]
    with t = `temporal_downscale` (4 for Wan2.1) and s = `downscale` (8).
    `sample_posterior=False` encodes to the posterior mode (deterministic).
    """

    def __init__(self, vae: AutoencoderKLWan, sample_posterior: bool = False, tiling: bool = False, slicing: bool = False):
        super().__init__()
        self.vae = vae
        config = vae.config
        self.latent_channels: int = int(config.z_dim)
        self.downscale: int = 2 ** (len(config.dim_mult) - 1)
        self.temporal_downscale: int = 2 ** sum(bool(flag) for flag in config.temperal_downsample)
        self.sample_posterior = sample_posterior
        shape = (1, self.latent_channels, 1, 1, 1)
        self.register_buffer("latents_mean", torch.tensor(config.latents_mean, dtype=torch.float32).view(shape), persistent=False)
        self.register_buffer("latents_std", torch.tensor(config.latents_std, dtype=torch.float32).view(shape), persistent=False)
        if tiling:
            vae.enable_tiling()
        if slicing:
            vae.enable_slicing()

    def encode(self, video: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"WanVaeCodec.encode expects `b f c h w` with c=3, got shape {tuple(video.shape)}")
        latent_frame_count(self, video.shape[1])
        h, w = video.shape[-2:]
        if h % self.downscale or w % self.downscale:
            raise ValueError(f"frame size {h}x{w} must be divisible by the VAE downscale {self.downscale}")
        pixels = rearrange(video, "b f c h w -> b c f h w").to(device=self.vae.device, dtype=self.vae.dtype) * 2.0 - 1.0
        posterior = self.vae.encode(pixels).latent_dist
        latents = posterior.sample(generator) if self.sample_posterior else posterior.mode()
        return (latents.float() - self.latents_mean) / self.latents_std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError(
                f"WanVaeCodec.decode expects `b c f h w` with c={self.latent_channels}, got {tuple(latents.shape)}"
            )
        raw = latents.float() * self.latents_std + self.latents_mean
        pixels = self.vae.decode(raw.to(device=self.vae.device, dtype=self.vae.dtype)).sample
        video = (pixels.float() / 2.0 + 0.5).clamp(0.0, 1.0)
        return rearrange(video, "b c f h w -> b f c h w")


class WanPromptEncoder:
    """Prompts -> embeddings `b L D` as diffusers' `WanPipeline` makes them: UMT5 run with the attention mask,
    every position past a prompt's own length set to zero, L = `max_length` (512).

    Without a text encoder (`load_text_encoder: false`) only empty prompts are accepted and they become all-zero
    embeddings `b L D` (`D` = the transformer's `text_dim`). That is NOT the exact UMT5 empty prompt (whose first
    token is non-zero); it is harmless for a MIVA whose implicit prompt replaces the text cross-attention, and
    wrong for anything that runs the frozen attn2 (base_branch=empty_prompt, prompted baselines).
    A class (not a closure) so that deep copies of a Backbone point at their own copied text encoder.
    """

    def __init__(self, text_encoder: nn.Module | None, tokenizer: Any | None, max_length: int, text_dim: int) -> None:
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.text_dim = int(text_dim)

    def __call__(self, prompts: Sequence[str]) -> torch.Tensor:
        prompts = list(prompts)
        if self.text_encoder is None or self.tokenizer is None:
            if any(prompt.strip() for prompt in prompts):
                raise ValueError(
                    "this Wan backbone was loaded without its text encoder (load_text_encoder: false): only the empty "
                    f"prompt is available; set backbone.load_text_encoder=true in {CONFIG_FILE} to encode text"
                )
            return torch.zeros(len(prompts), self.max_length, self.text_dim)
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        device = next(self.text_encoder.parameters()).device
        mask = tokens.attention_mask.to(device)
        hidden = self.text_encoder(tokens.input_ids.to(device), attention_mask=mask).last_hidden_state
        return hidden * mask[..., None].to(hidden.dtype)  # right padding: the same as keeping u[:len] then zeros


def build_wan_schedulers(settings: WanConfig):
    """Flow-matching Euler for training, and the configured sampler, both on the same shift."""
    train = FlowMatchEulerDiscreteScheduler(num_train_timesteps=settings.num_train_timesteps, shift=float(settings.flow_shift))
    shift = float(settings.sample_flow_shift or settings.flow_shift)
    if settings.sample_scheduler == "flow_euler":
        sample = FlowMatchEulerDiscreteScheduler(num_train_timesteps=settings.num_train_timesteps, shift=shift)
    else:
        sample = UniPCMultistepScheduler(
            num_train_timesteps=settings.num_train_timesteps,
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=shift,
        )
    return train, sample


def assemble_wan_backbone(
    transformer: WanTransformer3DModel,
    vae: AutoencoderKLWan,
    text_encoder: nn.Module | None,
    tokenizer: Any | None,
    cfg: Any = None,
) -> Backbone:
    """Freeze the four parts, move them to `device` and wrap them as a `Backbone` (used by `load_wan21` and
    by tests). The parts keep the dtypes they come with: `load_wan21` loads them in the configured ones
    (diffusers then keeps Wan's norms, RoPE and time embedder in fp32), which a plain `.to(dtype)` would undo."""
    settings = cfg if isinstance(cfg, WanConfig) else WanConfig.from_config(cfg or {})
    device = torch.device(settings.device)
    transformer = freeze(transformer.to(device))
    if settings.enable_gradient_checkpointing:
        # frozen weights still need activations for the adapters' gradients: recompute instead of storing
        transformer.enable_gradient_checkpointing()
    vae = freeze(vae.to(device))
    codec = freeze(WanVaeCodec(vae, settings.vae_sample_posterior, settings.vae_tiling, settings.vae_slicing).to(device))
    if text_encoder is not None:
        text_encoder = freeze(text_encoder.to(device))
    noise_scheduler, sample_scheduler = build_wan_schedulers(settings)
    return Backbone(
        unet=transformer,
        noise_scheduler=noise_scheduler,
        sample_scheduler=sample_scheduler,
        codec=codec,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        first_frame_concat=False,
        name=settings.name,
        config=dataclasses.asdict(settings),
        prompt_encoder=WanPromptEncoder(text_encoder, tokenizer, settings.text_max_length, transformer.config.text_dim),
    )


def load_wan21(cfg: Any) -> Backbone:
    """Load Wan2.1 T2V (DiT + VAE + UMT5) from a local diffusers-layout folder as a frozen `Backbone`."""
    settings = WanConfig.from_config(cfg)
    where = resolve_location(settings.pretrained_model_path, "pretrained_model_path", CONFIG_FILE)
    if where.is_local and not Path(where.location).is_dir():
        raise FileNotFoundError(
            f"`pretrained_model_path` is the file {where.location!r}; it must be a diffusers-layout Wan2.1 folder "
            f"({', '.join(part + '/' for part in LAYOUT)}), e.g. a copy of Wan-AI/Wan2.1-T2V-1.3B-Diffusers. "
            f"Set it in {CONFIG_FILE}."
        )
    transformer = _load_component(WanTransformer3DModel, where, "transformer", settings, torch_dtype(settings.dtype))
    vae = _load_component(AutoencoderKLWan, where, "vae", settings, torch_dtype(settings.vae_dtype))
    text_encoder = tokenizer = None
    if settings.load_text_encoder:
        from transformers import AutoTokenizer, UMT5EncoderModel

        text_encoder = _load_component(
            UMT5EncoderModel, where, "text_encoder", settings, torch_dtype(settings.text_encoder_dtype)
        )
        _require_subfolder(where, "tokenizer")
        tokenizer = load_or_explain(
            where, "Wan2.1 tokenizer", lambda: AutoTokenizer.from_pretrained(
                where.location, subfolder="tokenizer", revision=settings.revision, local_files_only=where.local_files_only
            )
        )
    return assemble_wan_backbone(transformer, vae, text_encoder, tokenizer, settings)


def _require_subfolder(where: PretrainedLocation, subfolder: str) -> None:
    if where.is_local and not (Path(where.location) / subfolder).is_dir():
        raise FileNotFoundError(
            f"the Wan2.1 folder {where.location!r} has no `{subfolder}/` subfolder (expected diffusers layout: "
            f"{', '.join(part + '/' for part in LAYOUT)}). Fix: {where.how_to_fix()}."
        )


def _load_component(model_class, where: PretrainedLocation, subfolder: str, settings: WanConfig, dtype: torch.dtype):
    """`model_class.from_pretrained(<folder>/<subfolder>)` with offline rules and a clear error."""
    _require_subfolder(where, subfolder)
    options: dict[str, Any] = {"subfolder": subfolder, "local_files_only": where.local_files_only}
    is_transformers = model_class.__module__.startswith("transformers")
    options["dtype" if is_transformers else "torch_dtype"] = dtype
    if settings.revision:
        options["revision"] = settings.revision
    if settings.variant:
        options["variant"] = settings.variant
    return load_or_explain(where, f"Wan2.1 {subfolder}", lambda: model_class.from_pretrained(where.location, **options))
