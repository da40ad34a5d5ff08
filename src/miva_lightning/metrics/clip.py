"""CLIP-family metrics (LAMP definitions) computed with a LOCAL CLIP folder.

- text alignment (CLIP-T): mean over frames of 100 cos(img(frame), txt(prompt));
- frame consistency, two named variants: all frame pairs (LAMP) or consecutive pairs;
- image alignment: mean over frames 2..f of 100 cos(img(frame), img(input image));
- diversity (LAMP): mean over pairs of different videos of 100 cos between frame-averaged embeddings
  (a similarity: LOWER means more diverse).

Without weights (`clip_path` None or missing) a metric reports NaN with one warning; it never runs a
random network under these names. `tiny_random_clip_encoder()` is a seeded random CLIP for plumbing
tests, and its metrics are named `clip_plumbing_randinit_*`.
"""

from __future__ import annotations

import json
import string
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from miva_lightning.metrics.registry import register_metric
from miva_lightning.metrics.video_mean import VideoMeanMetric, images_from_batch, video_from_batch
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
_WARNED: set[tuple[str, str]] = set()


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


# ---------------------------------------------------------------- metrics


class ClipVideoMetric(VideoMeanMetric):
    """A per-video CLIP score; NaN (with one warning) when the CLIP weights are missing."""

    kind = ""
    higher_is_better = True

    def __init__(self, clip_path: str | Path | None = None, *, encoder: ClipEncoder | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        resolved = encoder if encoder is not None else load_clip_encoder(clip_path)
        # kept out of the module tree: a frozen feature network is not metric state (nor checkpoint content)
        self._encoder_box = (resolved,)
        self.clip_path = None if clip_path is None else str(clip_path)
        self.name = f"{resolved.name if resolved is not None else REAL_NAME}_{self.kind}"
        if resolved is None:
            _warn_once(self.name, self.clip_path)

    @property
    def encoder(self) -> ClipEncoder | None:
        return self._encoder_box[0]

    @property
    def available(self) -> bool:
        return self.encoder is not None

    def _frame_embeddings(self, video: Tensor) -> Tensor:
        """Unit embeddings `b f d` of every frame, on the encoder's device (moved to the video's)."""
        encoder = self.encoder.to(video.device)
        b = video.shape[0]
        return rearrange(encoder.encode_images(rearrange(video, "b f c h w -> (b f) c h w")), "(b f) d -> b f d", b=b)

    def describe_extra(self) -> dict[str, Any]:
        if not self.available:
            return {"reason": f"no CLIP folder at {self.clip_path!r}", "feature_network": None}
        return self.encoder.describe()


def _warn_once(name: str, clip_path: str | None) -> None:
    if (name, str(clip_path)) not in _WARNED:
        _WARNED.add((name, str(clip_path)))
        warnings.warn(
            f"{name}: no CLIP weights (clip_path={clip_path!r} is not a folder); the metric reports NaN. "
            "Pass the folder of a local CLIP (e.g. ViT-B/32 or ViT-L/14 saved by transformers).",
            RuntimeWarning,
            stacklevel=3,
        )


class ClipTextAlignment(ClipVideoMetric):
    kind = "text_alignment"
    requires = ("generated", "prompts")
    definition = "mean over frames of 100*cos(CLIP_img(frame), CLIP_txt(prompt)) (LAMP CLIP-T), mean over videos"

    def video_scores(self, video: Tensor, batch: Mapping[str, Any]) -> Tensor:
        prompts = batch.get("prompts")
        if prompts is None or isinstance(prompts, str) or len(prompts) != video.shape[0]:
            raise ValueError(f"{self.name} needs batch['prompts']: a list of {video.shape[0]} strings, one per video")
        frames = self._frame_embeddings(video)
        texts = self.encoder.encode_texts(prompts).to(frames.device)
        return 100.0 * torch.einsum("bfd,bd->bf", frames, texts).mean(dim=1)


class ClipFrameConsistency(ClipVideoMetric):
    """`pairs="all"`: mean over all frame pairs i<j (LAMP); `pairs="consecutive"`: over (t, t+1)."""

    definitions = {
        "all": "mean over all frame pairs i<j of 100*cos(CLIP_img(frame_i), CLIP_img(frame_j)) (LAMP), mean over videos",
        "consecutive": "mean over consecutive frames of 100*cos(CLIP_img(frame_t), CLIP_img(frame_t+1)), mean over videos",
    }

    def __init__(self, clip_path: str | Path | None = None, *, pairs: str = "all", **kwargs: Any):
        if pairs not in self.definitions:
            raise ValueError(f"pairs={pairs!r}; choose 'all' (LAMP) or 'consecutive'")
        self.pairs = pairs
        self.kind = "frame_consistency_all_pairs" if pairs == "all" else "frame_consistency_consecutive"
        self.definition = self.definitions[pairs]
        super().__init__(clip_path, **kwargs)

    def video_scores(self, video: Tensor, batch: Mapping[str, Any]) -> Tensor:
        if video.shape[1] < 2:
            raise ValueError(f"{self.name} needs at least 2 frames per video; got {video.shape[1]}")
        frames = self._frame_embeddings(video)
        similarity = 100.0 * torch.einsum("bfd,bgd->bfg", frames, frames)
        offset_mask = torch.ones(video.shape[1], video.shape[1], dtype=torch.bool, device=frames.device)
        mask = offset_mask.triu(1) if self.pairs == "all" else offset_mask.triu(1) & ~offset_mask.triu(2)
        return similarity[:, mask].mean(dim=1)


class ClipImageAlignment(ClipVideoMetric):
    """Frame 1 is the (clean) input image in image-to-video, so it is left out unless asked for."""

    kind = "image_alignment"
    requires = ("generated", "images")

    def __init__(self, clip_path: str | Path | None = None, *, include_first_frame: bool = False, **kwargs: Any):
        self.include_first_frame = include_first_frame
        frames = "1..f" if include_first_frame else "2..f"
        self.definition = f"mean over frames {frames} of 100*cos(CLIP_img(frame), CLIP_img(input image)), mean over videos"
        super().__init__(clip_path, **kwargs)

    def video_scores(self, video: Tensor, batch: Mapping[str, Any]) -> Tensor:
        images = images_from_batch(batch)
        if images.shape[0] != video.shape[0]:
            raise ValueError(f"{self.name}: {images.shape[0]} input images for {video.shape[0]} videos")
        start = 0 if self.include_first_frame or video.shape[1] == 1 else 1
        frames = self._frame_embeddings(video[:, start:])
        inputs = self.encoder.encode_images(images).to(frames.device)
        return 100.0 * torch.einsum("bfd,bd->bf", frames, inputs).mean(dim=1)


class ClipDiversity(ClipVideoMetric):
    """Keeps one frame-averaged embedding per video (gathered by concatenation under DDP)."""

    kind = "diversity"
    higher_is_better = False
    definition = (
        "mean over pairs of different videos of 100*cos(mean_t CLIP_img(frame_t)) (LAMP; a similarity, "
        "lower = more diverse)"
    )

    def __init__(self, clip_path: str | Path | None = None, **kwargs: Any):
        super().__init__(clip_path, **kwargs)
        self.add_state("video_embeddings", [], dist_reduce_fx="cat")

    def update(self, batch: Mapping[str, Any]) -> None:
        if not self.available or "generated" not in batch:
            return
        video = video_from_batch(batch)
        self.video_embeddings.append(self._frame_embeddings(video).mean(dim=1).double())
        self._accumulate(torch.zeros(video.shape[0]), video)

    def compute(self) -> Tensor:
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        if not self.available or not self.video_embeddings:
            return nan
        stacked = self.video_embeddings
        embeddings = F.normalize(torch.cat(stacked) if isinstance(stacked, list) else stacked, dim=-1)
        n = embeddings.shape[0]
        if n < 2:
            return nan
        upper = torch.ones(n, n, dtype=torch.bool, device=embeddings.device).triu(1)
        return 100.0 * (embeddings @ embeddings.T)[upper].mean()


# ---------------------------------------------------------------- names for the registry
# Real names take `clip_path` (NaN + one warning without it). Plumbing names build the seeded tiny random
# CLIP and say so in their name.

TEXT, IMAGES, VIDEOS = ("generated", "prompts"), ("generated", "images"), ("generated",)


@register_metric("clip_text_alignment", requires=TEXT)
def clip_text_alignment(clip_path: str | None = None) -> ClipVideoMetric:
    """LAMP CLIP-T: mean over frames of 100 cos(image, prompt); needs a local CLIP folder."""
    return ClipTextAlignment(clip_path)


@register_metric("clip_frame_consistency_all_pairs", requires=VIDEOS)
def clip_frame_consistency_all_pairs(clip_path: str | None = None) -> ClipVideoMetric:
    """LAMP frame consistency: mean 100 cos over all frame pairs; needs a local CLIP folder."""
    return ClipFrameConsistency(clip_path, pairs="all")


@register_metric("clip_frame_consistency_consecutive", requires=VIDEOS)
def clip_frame_consistency_consecutive(clip_path: str | None = None) -> ClipVideoMetric:
    """Frame consistency over consecutive frame pairs (100 cos); needs a local CLIP folder."""
    return ClipFrameConsistency(clip_path, pairs="consecutive")


@register_metric("clip_image_alignment", requires=IMAGES)
def clip_image_alignment(clip_path: str | None = None, include_first_frame: bool = False) -> ClipVideoMetric:
    """Mean 100 cos(frame, input image) over frames 2..f; needs a local CLIP folder."""
    return ClipImageAlignment(clip_path, include_first_frame=include_first_frame)


@register_metric("clip_diversity", requires=VIDEOS)
def clip_diversity(clip_path: str | None = None) -> ClipVideoMetric:
    """LAMP diversity: mean 100 cos between videos' frame-averaged embeddings (lower = more diverse)."""
    return ClipDiversity(clip_path)


@register_metric(f"{PLUMBING_NAME}_text_alignment", requires=TEXT)
def clip_plumbing_text_alignment(seed: int = 0) -> ClipVideoMetric:
    """Plumbing only: text alignment with a seeded random tiny CLIP."""
    return ClipTextAlignment(encoder=tiny_random_clip_encoder(seed))


@register_metric(f"{PLUMBING_NAME}_frame_consistency_all_pairs", requires=VIDEOS)
def clip_plumbing_frame_consistency_all_pairs(seed: int = 0) -> ClipVideoMetric:
    """Plumbing only: all-pairs frame consistency with a seeded random tiny CLIP."""
    return ClipFrameConsistency(encoder=tiny_random_clip_encoder(seed), pairs="all")


@register_metric(f"{PLUMBING_NAME}_frame_consistency_consecutive", requires=VIDEOS)
def clip_plumbing_frame_consistency_consecutive(seed: int = 0) -> ClipVideoMetric:
    """Plumbing only: consecutive-pair frame consistency with a seeded random tiny CLIP."""
    return ClipFrameConsistency(encoder=tiny_random_clip_encoder(seed), pairs="consecutive")


@register_metric(f"{PLUMBING_NAME}_image_alignment", requires=IMAGES)
def clip_plumbing_image_alignment(seed: int = 0) -> ClipVideoMetric:
    """Plumbing only: image alignment with a seeded random tiny CLIP."""
    return ClipImageAlignment(encoder=tiny_random_clip_encoder(seed))


@register_metric(f"{PLUMBING_NAME}_diversity", requires=VIDEOS)
def clip_plumbing_diversity(seed: int = 0) -> ClipVideoMetric:
    """Plumbing only: diversity with a seeded random tiny CLIP."""
    return ClipDiversity(encoder=tiny_random_clip_encoder(seed))


CLIP_METRICS = {
    "clip_text_alignment": clip_text_alignment,
    "clip_frame_consistency_all_pairs": clip_frame_consistency_all_pairs,
    "clip_frame_consistency_consecutive": clip_frame_consistency_consecutive,
    "clip_image_alignment": clip_image_alignment,
    "clip_diversity": clip_diversity,
}
CLIP_PLUMBING_METRICS = {
    f"{PLUMBING_NAME}_text_alignment": clip_plumbing_text_alignment,
    f"{PLUMBING_NAME}_frame_consistency_all_pairs": clip_plumbing_frame_consistency_all_pairs,
    f"{PLUMBING_NAME}_frame_consistency_consecutive": clip_plumbing_frame_consistency_consecutive,
    f"{PLUMBING_NAME}_image_alignment": clip_plumbing_image_alignment,
    f"{PLUMBING_NAME}_diversity": clip_plumbing_diversity,
}
