"""A CLIP image/text encoder loaded from a LOCAL folder (transformers, offline), with CLIP's preprocessing
done in torch, plus a seeded tiny random CLIP for plumbing tests (never reported under a real name).
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from miva_lightning.utils import file_sha256, tensor_fingerprint

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
REAL_NAME = "clip"
PLUMBING_NAME = "clip_plumbing_randinit"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
ENCODE_CHUNK = 64  # frames per CLIP forward, to bound memory on long or many videos


class ClipEncoder(nn.Module):
    """Frozen CLIP: images `n c h w` in [0, 1] and prompts -> unit-norm embeddings `n d`.

    Preprocessing follows CLIPImageProcessor, done in torch: resize the shortest side to `resize_to`
    (bicubic, antialiased), centre-crop `crop_to`, normalise with the CLIP mean/std.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        name: str,
        resize_to: int,
        crop_to: int,
        mean: Sequence[float] = OPENAI_CLIP_MEAN,
        std: Sequence[float] = OPENAI_CLIP_STD,
        weights_path: str | None = None,
        weights_sha256: str | None = None,
    ) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.resize_to, self.crop_to = int(resize_to), int(crop_to)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.weights_path = weights_path
        self.weights_sha256 = weights_sha256

    def preprocess(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"CLIP takes RGB images n 3 h w in [0, 1]; got shape {tuple(images.shape)}")
        h, w = images.shape[-2:]
        scale = self.resize_to / min(h, w)
        new_h, new_w = max(self.crop_to, round(h * scale)), max(self.crop_to, round(w * scale))
        x = images.float()
        if (new_h, new_w) != (h, w):
            x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False)
        top, left = (new_h - self.crop_to) // 2, (new_w - self.crop_to) // 2
        x = x[..., top : top + self.crop_to, left : left + self.crop_to].clamp(0.0, 1.0)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def encode_images(self, images: Tensor) -> Tensor:
        device = self.mean.device
        chunks = [
            _pooled(self.model.get_image_features(pixel_values=self.preprocess(chunk.to(device))))
            for chunk in images.split(ENCODE_CHUNK)
        ]
        return F.normalize(torch.cat(chunks).float(), dim=-1)

    @torch.no_grad()
    def encode_texts(self, prompts: Sequence[str]) -> Tensor:
        tokens = self.tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt")
        tokens = {key: value.to(self.mean.device) for key, value in tokens.items()}
        return F.normalize(_pooled(self.model.get_text_features(**tokens)).float(), dim=-1)

    def describe(self) -> dict[str, Any]:
        return {
            "feature_network": self.name,
            "weights_path": self.weights_path,
            "weights_sha256": self.weights_sha256,
            "preprocess": f"resize shortest side {self.resize_to} bicubic antialias, centre crop {self.crop_to}, "
            "CLIP mean/std",
        }


def _pooled(output: Any) -> Tensor:
    """transformers 5 returns a model output whose pooler_output is the projected embedding."""
    return output if torch.is_tensor(output) else output.pooler_output


# ---------------------------------------------------------------- loading


_ENCODERS: dict[str, ClipEncoder] = {}


def load_clip_encoder(clip_path: str | Path | None) -> ClipEncoder | None:
    """The CLIP in a local folder (transformers layout), cached per path; None when the folder is absent.

    A folder that exists but does not load is an error (it is a broken install, not missing weights).
    """
    if clip_path is None or not Path(clip_path).expanduser().is_dir():
        return None
    folder = Path(clip_path).expanduser().resolve()
    key = str(folder)
    if key not in _ENCODERS:
        from transformers import AutoTokenizer, CLIPModel

        try:
            model = CLIPModel.from_pretrained(folder, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"{folder} exists but is not a loadable CLIP folder (needs config.json, weights and tokenizer "
                f"files as saved by CLIPModel/CLIPProcessor.save_pretrained): {error}"
            ) from error
        resize_to, crop_to, mean, std = _preprocessing_from_folder(folder, model.config.vision_config.image_size)
        _ENCODERS[key] = ClipEncoder(
            model, tokenizer, name=REAL_NAME, resize_to=resize_to, crop_to=crop_to, mean=mean, std=std,
            weights_path=key, weights_sha256=_weights_sha256(folder),
        )
    return _ENCODERS[key]


def _preprocessing_from_folder(folder: Path, image_size: int) -> tuple[int, int, list[float], list[float]]:
    """Resize/crop sizes and mean/std from preprocessor_config.json, else CLIP's defaults."""
    config_file = folder / "preprocessor_config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    size, crop = config.get("size", image_size), config.get("crop_size", image_size)
    resize_to = size.get("shortest_edge", image_size) if isinstance(size, dict) else size
    crop_to = crop.get("height", image_size) if isinstance(crop, dict) else crop
    return resize_to, crop_to, config.get("image_mean", OPENAI_CLIP_MEAN), config.get("image_std", OPENAI_CLIP_STD)


def _weights_sha256(folder: Path) -> str | None:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return file_sha256(folder / name)
    return None


def tiny_random_clip_encoder(seed: int = 0, image_size: int = 32) -> ClipEncoder:
    """A seeded random tiny CLIP (~50 k parameters, character tokenizer) for plumbing tests only."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    chars = list(string.ascii_lowercase + string.digits + ".,'-!?")
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({f"{c}</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=32)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)
    text_config = dict(
        small, vocab_size=len(vocab), max_position_embeddings=32, bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"],
    )
    config = CLIPConfig(
        text_config=text_config, vision_config=dict(small, image_size=image_size, patch_size=8), projection_dim=16
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = CLIPModel(config)
    torch.random.set_rng_state(generator_state)
    return ClipEncoder(
        model, tokenizer, name=PLUMBING_NAME, resize_to=image_size, crop_to=image_size,
        weights_path=None, weights_sha256=f"randinit-seed{seed}-{tensor_fingerprint(model.named_parameters())}",
    )
