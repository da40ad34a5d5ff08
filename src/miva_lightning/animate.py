"""Animate a still image with one or several MIVAs: the Python API behind `miva-animate`.

    from miva_lightning.animate import animate
    video = animate("photo.jpg", adapters=[("waterfall.safetensors", 1.0), ("clouds.safetensors", 0.6)])
    # video: f c h w float32 in [0, 1]; frame 1 is the (resized, centre-cropped) input image

With no adapters the frozen base animates the image alone (optionally prompted with `prompt`): the
baseline that MIVAs are compared against.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
from PIL import Image
from torch import nn

from miva_lightning.backbones import Backbone
from miva_lightning.inputs import InputError, InputFileNotFoundError, check_adapter_file, check_adapter_weight

AdapterSource = Union[str, os.PathLike, Any]  # a .safetensors path or a Miva object
ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]
LORA_MODES = ("auto", "merge", "residual")  # adapters.temporal_lora.LORA_MODE_CHOICES (a test keeps them equal)
CFA_MODES = ("sum", "merge")  # adapters.cross_frame_attention.CFA_MODES (the same test)


def backbone_size(backbone: Backbone) -> tuple[int, int]:
    """(height, width) of the frames the backbone generates."""
    cfg = backbone.config or {}
    if cfg.get("height") and cfg.get("width"):
        return int(cfg["height"]), int(cfg["width"])
    if cfg.get("image_size"):
        return int(cfg["image_size"]), int(cfg["image_size"])
    raise ValueError(f"backbone {backbone.name!r} does not state its frame size: pass size=(height, width)")


def load_image(image: ImageSource, size: int | tuple[int, int]) -> torch.Tensor:
    """Any PNG/JPG path, PIL image, uint8 `h w c` array or float `c h w` tensor -> `c h w` float in [0, 1],
    resized on its shorter side to cover `size` and centre-cropped to it."""
    from miva_lightning.data.readers.images import pil_to_rgb_float
    from miva_lightning.data.transforms import resize_and_center_crop

    height, width = (size, size) if isinstance(size, int) else size
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InputFileNotFoundError(f"input image {path} does not exist (pass a PNG/JPG file)")
        try:
            with Image.open(path) as opened:
                pixels = torch.from_numpy(pil_to_rgb_float(opened)).permute(2, 0, 1)
        except Image.UnidentifiedImageError as error:
            raise InputError(f"{path} is not an image Pillow can read (use PNG or JPG)") from error
    elif isinstance(image, Image.Image):
        pixels = torch.from_numpy(pil_to_rgb_float(image)).permute(2, 0, 1)
    elif isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] not in (3, 4) or image.dtype != np.uint8:
            raise ValueError(f"numpy images must be uint8 `h w 3`, got {image.dtype} {image.shape}")
        pixels = torch.from_numpy(image[..., :3].astype(np.float32) / 255.0).permute(2, 0, 1)
    elif isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"tensor images must be float `c h w` with 3 channels, got shape {tuple(image.shape)}")
        pixels = image.detach().float().cpu()
        if pixels.min() < 0 or pixels.max() > 1:
            raise ValueError("tensor images must hold values in [0, 1]")
    else:
        raise TypeError(f"cannot read an image from {type(image).__name__}: pass a path, PIL image, array or tensor")
    return resize_and_center_crop(pixels[None], height, width)[0].contiguous()


def check_adapter_weights(adapters: Sequence[tuple[AdapterSource, float]]) -> list[tuple[AdapterSource, float]]:
    """Refuse NaN / infinite / negative / non-numeric weights and missing, pickled, truncated or non-MIVA
    files (`inputs.InputError`) before any model work starts."""
    checked = []
    for index, item in enumerate(adapters):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise InputError(f"adapter #{index} must be a (path_or_Miva, weight) pair, got {item!r}")
        source, weight = item
        is_path = isinstance(source, (str, os.PathLike))
        weight = check_adapter_weight(weight, source if is_path else f"#{index}")
        if is_path:
            check_adapter_file(source)
        checked.append((source, weight))
    return checked


def load_adapters(adapters: Sequence[tuple[AdapterSource, float]], unet) -> list[tuple[Any, float]]:
    from miva_lightning.adapters import Miva, load_miva

    loaded = []
    for source, weight in adapters:
        miva = source if isinstance(source, Miva) else load_miva(source, unet)
        if isinstance(miva, tuple):  # load_miva may return (miva, metadata)
            miva = miva[0]
        device = next(unet.parameters()).device
        loaded.append((miva.to(device), weight))
    return loaded


def default_backbone() -> Backbone:
    """The committed tiny base (configs/animate.yaml's backbone)."""
    from miva_lightning.backbones import build_backbone
    from miva_lightning.config import compose

    return build_backbone(compose("animate").backbone)


@torch.no_grad()
def animate(
    image: ImageSource,
    adapters: Sequence[tuple[AdapterSource, float]] = (),
    backbone: Backbone | None = None,
    num_frames: int = 8,
    steps: int = 25,
    seed: int = 0,
    noise_init: Any = None,
    lora_mode: str = "merge",
    size: int | tuple[int, int] | None = None,
    prompt: str | None = None,
    guidance_scale: float = 1.0,
    progress: bool = False,
    adapter_guidance: float = 1.0,
    scheduler: str | None = None,
    scheduler_options: Any = None,
    cfa_mode: str = "sum",
) -> torch.Tensor:
    """Animate `image` with `adapters` [(path_or_Miva, weight), ...]; returns video `f c h w` in [0, 1].

    `prompt` is for the base alone (MIVAs replace the text cross-attention, so text has no effect on them).
    `adapter_guidance` s > 1 extrapolates the adapters' effect: prediction = base + s (with MIVAs - base)
    (an extension, not in docs/METHOD.md; it costs a second UNet pass per step).
    `noise_init`: a `sampling.NoiseInit` or a dict of its fields, e.g. {"first_frame_forward_t": 975}.
    `scheduler`: None = the backbone's sampler (DDIM), or a name from `sampling.schedulers.SCHEDULERS`;
    `scheduler_options`: settings of that scheduler to change, e.g. {"set_alpha_to_one": True}.
    `lora_mode`: merge | residual | auto (`adapters.temporal_lora.resolve_lora_mode`).
    `cfa_mode`: sum (METHOD, exact) | merge (one cross-frame attention for all adapters: K adapters cost about
    one; an approximation, `adapters.cross_frame_attention.CFA_MODES`).
    The defaults here are the embedded base's; `miva-animate` takes each backbone's own recipe from
    configs/inference/ (AnimateDiff: the authors', e.g. steps=50, lora_mode="auto", noise_init with
    shared_noise_formula="linear", scheduler_options={"set_alpha_to_one": True}; docs/METHOD.md).
    """
    adapters = check_adapter_weights(adapters)
    backbone = backbone or default_backbone()
    first_frame = load_image(image, size or backbone_size(backbone))
    video = animate_batch(
        first_frame[None], adapters, backbone, num_frames, steps, seed, noise_init, lora_mode, prompt,
        guidance_scale, progress, adapter_guidance, scheduler, scheduler_options, cfa_mode,
    )  # fmt: skip
    return video[0]


@torch.no_grad()
def animate_batch(
    first_frames: torch.Tensor,
    adapters: Sequence[tuple[AdapterSource, float]],
    backbone: Backbone,
    num_frames: int = 8,
    steps: int = 25,
    seed: int = 0,
    noise_init: Any = None,
    lora_mode: str = "merge",
    prompt: str | None = None,
    guidance_scale: float = 1.0,
    progress: bool = False,
    adapter_guidance: float = 1.0,
    scheduler: str | None = None,
    scheduler_options: Any = None,
    cfa_mode: str = "sum",
) -> torch.Tensor:
    """Animate first frames `b c h w` (already at the backbone's size) in one sampling loop -> `b f c h w`.

    The noise of the whole batch comes from one generator seeded with `seed`."""
    if lora_mode not in LORA_MODES:
        raise ValueError(f"lora_mode={lora_mode!r} unknown; use one of {LORA_MODES}")
    if cfa_mode not in CFA_MODES:
        raise ValueError(f"cfa_mode={cfa_mode!r} unknown; use one of {CFA_MODES}")
    if num_frames < 2:
        raise ValueError(f"num_frames={num_frames}: a video needs at least 2 frames")
    if steps < 1:
        raise ValueError(f"steps={steps}: use at least 1 sampling step")
    if not (math.isfinite(adapter_guidance) and adapter_guidance >= 0):
        raise ValueError(f"adapter_guidance={adapter_guidance}: use a finite number >= 0 (1 = off)")
    if first_frames.ndim != 4 or first_frames.shape[1] != 3:
        raise ValueError(f"first_frames must be `b 3 h w`, got shape {tuple(first_frames.shape)}")
    adapters = check_adapter_weights(adapters)
    backbone = with_scheduler_options(backbone, scheduler_options)
    device = next(backbone.unet.parameters()).device
    prompt_embeds = prompt_embeddings(backbone, prompt)
    if prompt_embeds is not None:
        prompt_embeds = prompt_embeds.expand(first_frames.shape[0], -1, -1)

    from miva_lightning.adapters import attach_mivas, detach_mivas
    from miva_lightning.sampling.sampler import sample_video

    handle = attach_mivas(backbone.unet, load_adapters(adapters, backbone.unet), lora_mode, cfa_mode) if adapters else None
    sampling_backbone = backbone
    if handle is not None and adapter_guidance != 1.0:
        sampling_backbone = dataclasses.replace(backbone, unet=AdapterGuidedUNet(backbone.unet, handle, adapter_guidance))
    try:
        video = sample_video(
            sampling_backbone,
            first_frames.to(device),
            num_frames=num_frames,
            prompt_embeds=prompt_embeds,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=torch.Generator().manual_seed(int(seed)),
            noise_init=noise_init,
            progress=progress,
            scheduler=scheduler,
        )
    finally:
        if handle is not None:
            detach_mivas(handle)
    return video.float().cpu()


def with_scheduler_options(backbone: Backbone, options: Any) -> Backbone:
    """`backbone` with its sampling scheduler rebuilt with `options` changed (e.g. {"set_alpha_to_one": True});
    `backbone` itself when there are none. A name the scheduler class does not take is a ValueError."""
    if not options:
        return backbone
    import inspect

    options = dict(options)
    scheduler = backbone.sample_scheduler
    accepted = set(inspect.signature(type(scheduler).__init__).parameters) - {"self", "args", "kwargs"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"scheduler_options {unknown} are not settings of {type(scheduler).__name__} (the backbone's sampler); "
            f"use some of {sorted(accepted)}"
        )
    return dataclasses.replace(backbone, sample_scheduler=type(scheduler).from_config(scheduler.config, **options))


class AdapterGuidedUNet(nn.Module):
    """Runs the UNet with the attached MIVAs and as the plain base; returns base + s (with MIVAs - base)."""

    def __init__(self, unet: nn.Module, handle, scale: float):
        super().__init__()
        self.unet, self.handle, self.scale = unet, handle, float(scale)

    @property
    def config(self):
        return self.unet.config

    def forward(self, *args, **kwargs):
        with_adapters = self.unet(*args, **kwargs)[0]
        with plain_base(self.handle):
            base = self.unet(*args, **kwargs)[0]
        return (base + self.scale * (with_adapters - base),)


@contextlib.contextmanager
def plain_base(handle):
    """Temporarily the frozen base: original attention processors back, LoRA weights at 0."""
    from miva_lightning.adapters import set_weights

    unet, weights = handle.unet, list(handle.weights)
    adapted = {name: unet.get_submodule(name).processor for name in handle.original_processors}
    for name, processor in handle.original_processors.items():
        unet.get_submodule(name).set_processor(processor)
    set_weights(handle, [0.0] * len(weights))
    try:
        yield
    finally:
        for name, processor in adapted.items():
            unet.get_submodule(name).set_processor(processor)
        set_weights(handle, weights)


def prompt_embeddings(backbone: Backbone, prompt: str | None) -> torch.Tensor | None:
    """`1 L D` embedding of `prompt` (the empty prompt when None), or None when the backbone has no text side."""
    if backbone.text_encoder is None or backbone.tokenizer is None:
        if prompt:
            raise ValueError(f"backbone {backbone.name!r} has no text encoder, so it cannot take prompt={prompt!r}")
        return None
    from miva_lightning.backbones import encode_prompts

    return encode_prompts(backbone, [prompt or ""])


def write_outputs(video: torch.Tensor, stem: str | os.PathLike, fps: float = 8.0, formats=("mp4", "gif")) -> list[Path]:
    """Write `video` (f c h w) as `<stem>.mp4` / `<stem>.gif` (each atomically); returns the paths."""
    from miva_lightning.data import write_video

    return [write_video(Path(f"{stem}.{fmt}"), video, fps=fps) for fmt in formats]
