"""Judged motion accuracy of a text-to-video base: held-out first frames x base motions -> classify_motion."""

from __future__ import annotations

import time
from collections import Counter
from typing import Sequence

import torch

from miva_lightning.backbones.tokenizer import encode_prompts
from miva_lightning.metrics.intervals import finite_or_none
from miva_lightning.motion import classify_motion, judge_accuracy
from miva_lightning.sampling.sampler import sample_video
from miva_lightning.world import BASE_MOTIONS, caption_for, heldout_first_frames


@torch.no_grad()
def sample_prompted(
    backbone,
    first_frames: torch.Tensor,
    prompts: Sequence[str],
    num_inference_steps: int = 20,
    guidance_scale: float = 2.0,
    seed: int = 0,
    num_frames: int = 8,
    batch_size: int = 32,
    negative_prompt: str | None = None,
) -> torch.Tensor:
    """Videos `b f c h w` of the base, video i from `first_frames[i]` prompted with `prompts[i]`.

    Noise comes from generators seeded by `seed` and the batch position (reproducible for equal settings).
    """
    was_training = backbone.unet.training
    backbone.unet.eval()
    if backbone.text_encoder is not None:
        backbone.text_encoder.eval()
    videos = []
    for start_index in range(0, len(prompts), batch_size):
        chunk = list(prompts[start_index : start_index + batch_size])
        first = first_frames[start_index : start_index + len(chunk)]
        embeds = encode_prompts(backbone, chunk)
        negative = None if negative_prompt is None else encode_prompts(backbone, [negative_prompt] * len(chunk))
        generator = torch.Generator().manual_seed(seed * 100_003 + start_index)
        videos.append(
            sample_video(backbone, first, num_frames, embeds, num_inference_steps, guidance_scale, generator,
                         progress=False, negative_prompt_embeds=negative).cpu()
        )
    if was_training:
        backbone.unet.train()
        if backbone.text_encoder is not None:
            backbone.text_encoder.train()
    return torch.cat(videos)


def evaluate_base(
    backbone,
    n_per_motion: int = 8,
    num_inference_steps: int = 20,
    guidance_scale: float = 2.0,
    seed: int = 0,
    motions: Sequence[str] = BASE_MOTIONS,
    num_frames: int = 8,
    batch_size: int = 32,
    negative_prompt: str | None = None,
) -> dict:
    """Prompt each motion's caption on the same `n_per_motion` held-out first frames; judge the videos.

    Returns {"mean_accuracy", "mean_accuracy_ci", "per_motion_accuracy", "per_motion_accuracy_ci" (Wilson 95 %),
    "per_motion_fidelity", "per_motion_fidelity_ci" (motion_fidelity, t 95 %; None for static and firework),
    "n_per_motion", "confusion", "invalid", "how", "eval_s"}.
    `negative_prompt` replaces the empty prompt as the guidance reference (None = empty prompt).
    """
    start = time.time()
    size = int(backbone.config.get("image_size", 32))
    frames = heldout_first_frames(n_per_motion, size=size, seed=seed)
    labels = [motion for motion in motions for _ in range(n_per_motion)]  # every motion on every frame
    videos = sample_prompted(
        backbone, frames.repeat(len(motions), 1, 1, 1), [caption_for(m) for m in labels], num_inference_steps,
        guidance_scale, seed, num_frames, batch_size, negative_prompt,
    )
    judged = judge_accuracy(videos, labels)
    return {
        "mean_accuracy": judged["accuracy"],
        "mean_accuracy_ci": judged["accuracy_ci"],
        "per_motion_accuracy": {m: judged["per_class"][m] for m in motions},
        "per_motion_accuracy_ci": {m: judged["per_class_ci"][m] for m in motions},
        "per_motion_fidelity": {m: finite_or_none(judged["per_class_fidelity"][m], None) for m in motions},
        "per_motion_fidelity_ci": {m: [finite_or_none(v, None) for v in judged["per_class_fidelity_ci"][m]] for m in motions},
        "n_per_motion": n_per_motion,
        "confusion": judged["confusion"],
        "invalid": judged["invalid"],
        "how": {
            "seed": seed,
            "heldout_first_frames": f"world.heldout_first_frames({n_per_motion}, seed={seed})",
            "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale,
            "negative_prompt": negative_prompt,
            "sampler": type(backbone.sample_scheduler).__name__,
            "num_frames": num_frames,
            "judge": "miva_lightning.motion.classify_motion over ALL_MOTIONS",
        },
        "eval_s": round(time.time() - start, 1),
    }


def caption_control(
    backbone,
    captions: Sequence[str],
    n_per_caption: int = 10,
    num_inference_steps: int = 20,
    guidance_scale: float = 2.0,
    seed: int = 0,
    num_frames: int = 8,
    batch_size: int = 32,
) -> dict[str, dict[str, float]]:
    """Which motions each caption produces: {caption: {judged class: share of the samples}} on the same
    `n_per_caption` held-out first frames per caption ("" = the empty prompt, guidance off: the prior).

    The question web-like pretraining asks: does some caption select an in-prior motion reliably (it should
    not), and does the prior hold it at all (the empty prompt produces it sometimes)?
    """
    size = int(backbone.config.get("image_size", 32))
    frames = heldout_first_frames(n_per_caption, size=size, seed=seed)
    prompts = [caption for caption in captions for _ in range(n_per_caption)]
    table = {}
    for index, caption in enumerate(captions):  # the empty prompt has nothing to guide away from: scale 1
        chunk = prompts[index * n_per_caption : (index + 1) * n_per_caption]
        videos = sample_prompted(backbone, frames, chunk, num_inference_steps, guidance_scale if caption else 1.0,
                                 seed, num_frames, batch_size)
        judged = Counter(classify_motion(video) for video in videos)
        table[caption] = {label: count / n_per_caption for label, count in judged.most_common()}
    return table


def best_captions(control: dict[str, dict[str, float]], motions: Sequence[str]) -> dict[str, dict]:
    """For each motion, the caption of `caption_control`'s table that produces it most often, and how often."""
    best = {}
    for motion in motions:
        caption = max(control, key=lambda c: control[c].get(motion, 0.0), default=None)
        if caption is not None:
            best[motion] = {"caption": caption, "share": control[caption].get(motion, 0.0)}
    return best


def motion_table(per_motion: dict[str, float], n: int, fidelity: dict[str, float | None] | None = None) -> str:
    lines = [f"{'motion':<12} accuracy (n={n})" + ("  fidelity" if fidelity else "")]
    for m, acc in per_motion.items():
        value = None if fidelity is None else fidelity.get(m)
        lines.append(f"{m:<12} {acc:6.1%}" + ("" if fidelity is None else f"  {'-' if value is None else f'{value:8.2f}'}"))
    lines.append(f"{'mean':<12} {sum(per_motion.values()) / max(1, len(per_motion)):6.1%}")
    return "\n".join(lines)
