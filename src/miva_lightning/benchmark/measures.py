"""What a cell measures on its videos, with the counts and intervals every reported number carries.

- the weight-free motion judge (`motion.judge_accuracy`): accuracy with its Wilson interval, motion fidelity
  with its t interval, and the per-clip predictions and fidelities (the report pools clips across cells);
- `fd_motionworld` against the real held-out world clips of the same motion rendered from the SAME held-out
  scenes as the generated videos' first frames (so the reference is their ground-truth continuation); FD is
  biased at small n, so n (generated and reference) and the feature network's hash are stored beside it;
- first-frame PSNR / SSIM against the input image, flicker (mean |frame_{t+1} - frame_t|) and the
  motion-compensated drift (`drift_farneback_l1`), each a mean over videos with its t interval;
- retention: the judge's accuracy on the captioned base motions, the adapted model prompted with each caption.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from miva_lightning.metrics.intervals import finite_or_none

if TYPE_CHECKING:
    import torch


def reference_clips(motion: str, n: int, size: int, num_frames: int, seed: int) -> torch.Tensor:
    """Real world clips `n f c h w` of `motion` on `heldout_scene_seeds(n, seed)`: the scenes whose first
    frames the cell animates (`heldout_first_frames(n, size, seed)`)."""
    import torch

    from miva_lightning.world import heldout_scene_seeds, render_clip

    return torch.stack([render_clip(motion, s, size=size, num_frames=num_frames).video for s in heldout_scene_seeds(n, seed)])


def mean_metric(name: str, batch: dict, **kwargs: Any) -> dict[str, Any]:
    """A registered per-video-mean metric on one batch: its value and 95 % interval (null where it has none)."""
    from miva_lightning.metrics import build_metric

    metric = build_metric(name, **kwargs)
    metric.update(batch)
    interval = getattr(metric, "interval", None)
    low, high = interval() if callable(interval) else (float("nan"), float("nan"))
    return {"value": finite_or_none(metric.compute()), "ci": [finite_or_none(low), finite_or_none(high)]}


def fd_motionworld(videos: torch.Tensor, reference: torch.Tensor) -> dict[str, Any]:
    from miva_lightning.metrics import build_metric

    metric = build_metric("fd_motionworld")
    metric.update({"reference": reference})
    metric.update({"generated": videos})
    info = metric.describe()
    return {
        "value": finite_or_none(metric.compute()),
        "n_generated": info["n_generated_videos"],
        "n_reference": info["n_real_videos"],
        "weights_sha256": info["features"].get("weights_sha256"),
        **({"unavailable_reason": info["unavailable_reason"]} if "unavailable_reason" in info else {}),
    }


def measure_videos(videos: torch.Tensor, frames: torch.Tensor, motion: str, reference: torch.Tensor) -> dict[str, Any]:
    """Every per-cell number on the cell's videos (`b f c h w`) generated from `frames` (`b c h w`)."""
    from miva_lightning.motion import judge_accuracy

    judged = judge_accuracy(videos, [motion] * len(videos))
    return {
        "n_eval": len(videos),
        "n_correct": sum(p == motion for p in judged["predictions"]),
        "accuracy": finite_or_none(judged["accuracy"]),
        "accuracy_ci": [finite_or_none(v) for v in judged["accuracy_ci"]],
        "fidelity": finite_or_none(judged["fidelity"]),
        "fidelity_ci": [finite_or_none(v) for v in judged["fidelity_ci"]],
        "predictions": list(judged["predictions"]),
        "fidelities": [finite_or_none(v) for v in judged["fidelities"]],
        "fd_motionworld": fd_motionworld(videos, reference),
        **frame_quality(videos, frames),
    }


def frame_quality(videos: torch.Tensor, frames: torch.Tensor) -> dict[str, Any]:
    """First-frame PSNR / SSIM against the input images, flicker and motion-compensated drift, each a mean over
    videos with its t interval (world and real-clip cells alike)."""
    batch = {"generated": videos, "images": frames}
    measured: dict[str, Any] = {}
    for key, metric in (("first_frame_psnr_db", "first_frame_psnr"), ("first_frame_ssim", "first_frame_ssim"),
                        ("flicker", "flicker_mean_abs_diff"), ("drift", "drift_farneback_l1")):  # fmt: skip
        value = mean_metric(metric, batch)
        measured[key], measured[f"{key}_ci"] = value["value"], value["ci"]
    return measured


def measure_retention(sample: Callable[[str], torch.Tensor], motions: Sequence[str]) -> dict[str, Any]:
    """Judge `sample(motion)` (videos prompted with the motion's caption) for every captioned motion."""
    import torch

    from miva_lightning.motion import judge_accuracy

    videos = [sample(motion) for motion in motions]
    labels = [motion for motion, batch in zip(motions, videos) for _ in range(len(batch))]
    judged = judge_accuracy(torch.cat(videos), labels)
    return {
        "retention": finite_or_none(judged["accuracy"]),
        "retention_ci": [finite_or_none(v) for v in judged["accuracy_ci"]],
        "retention_n": len(labels),
        "retention_n_correct": sum(p == label for p, label in zip(judged["predictions"], labels)),
        "retention_per_motion": {m: finite_or_none(v, 4) for m, v in judged["per_class"].items()},
    }
