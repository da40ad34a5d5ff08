"""A Table 2 cell on real clips (`evaluation.kind: folder`, configs/table2_real.yaml): the LAMP protocol.

The world cells (`kind: world`) have a ground truth for motion (the judge) and for the continuation of every
first frame; real clips have neither, so a folder cell measures what LAMP and MIVA report instead:
- FVD (`fvd_i3d`, I3D Kinetics-400 from a LOCAL TorchScript file) of the generated videos against every clip
  of `<data_root>/<motion>` (the motion's real distribution; n of both sides stored, FD is biased at small n);
- CLIP-T (`clip_text_alignment`: frames vs the motion's caption), CLIP-I (`clip_image_alignment`: frames
  2..f vs the input image) and LAMP's frame consistency (all frame pairs) from a LOCAL CLIP folder;
- first-frame PSNR / SSIM, flicker and motion-compensated drift, as world cells.
No judged accuracy and no retention (there are no captioned reference motions): `n_judged` is 0 and the
report leaves those columns empty for these cells.
Every path is checked before anything loads (`check_inputs`): a missing one is an error naming what to set.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from miva_lightning.metrics.intervals import finite_or_none

if TYPE_CHECKING:
    import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def kind_of(cfg: DictConfig) -> str:
    """`world` (the embedded default) unless the config says otherwise."""
    evaluation = cfg.get("evaluation")
    return str(evaluation.kind) if evaluation is not None and evaluation.get("kind") else "world"


def image_paths(folder: str | Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def check_inputs(cfg: DictConfig) -> None:
    """Every local file a folder cell needs, checked before any model loads; InputError names the setting."""
    from miva_lightning.inputs import InputError

    ev, motion = cfg.evaluation, str(cfg.motion)
    clips = Path(ev.data_root) / motion
    if not clips.is_dir():
        raise InputError(
            f"no clips folder {clips} for motion {motion!r}: set evaluation.data_root to a LAMP-layout folder "
            "<data_root>/<motion>/<clips> (or choose a motion that has a folder there)"
        )
    frames = Path(ev.first_frames)
    if not frames.is_dir() or not image_paths(frames):
        raise InputError(
            f"no first frames in {frames}: set evaluation.first_frames to a folder of PNG/JPG images "
            "(the held-out first frames every cell animates, e.g. LAMP's benchmark images)"
        )
    if not Path(ev.i3d_weights).is_file():
        raise InputError(
            f"I3D weights not found at {ev.i3d_weights}: put StyleGAN-V's i3d_torchscript.pt there or set "
            "evaluation.i3d_weights (or MIVA_I3D_WEIGHTS); nothing is downloaded"
        )
    if not (Path(ev.clip_folder) / "config.json").is_file():
        raise InputError(
            f"no CLIP model in {ev.clip_folder} (expected a transformers folder with config.json, e.g. a copy of "
            "openai/clip-vit-large-patch14): set evaluation.clip_folder (or MIVA_CLIP_PATH); nothing is downloaded"
        )


def first_frames(cfg: DictConfig) -> torch.Tensor:
    """The first `n_eval` images of `evaluation.first_frames` (sorted by name) -> `b c h w` in [0, 1]."""
    import torch

    from miva_lightning.animate import load_image

    ev = cfg.evaluation
    paths = image_paths(ev.first_frames)[: int(cfg.n_eval)]
    return torch.stack([load_image(p, (int(ev.height), int(ev.width))) for p in paths])


def reference_clips(cfg: DictConfig, num_frames: int) -> torch.Tensor:
    """Every clip of `<data_root>/<motion>` -> `n f c h w`: `num_frames` frames at `evaluation.stride`, the stride
    shrunk (with a warning) for a clip too short for it; a clip shorter than `num_frames` is left out."""
    import torch

    from miva_lightning.data.clip_sources import folder_clip_entries
    from miva_lightning.data.readers.sampling import largest_stride_that_fits
    from miva_lightning.data.transforms import resize_and_center_crop

    ev = cfg.evaluation
    clips = []
    for entry in folder_clip_entries(ev.data_root, [str(cfg.motion)]):
        count = entry.count()
        if count < num_frames:
            warnings.warn(f"FVD reference: {entry.path} has {count} frames < {num_frames}; left out", stacklevel=2)
            continue
        stride = largest_stride_that_fits(count, num_frames, int(ev.stride))
        if stride < int(ev.stride):
            warnings.warn(f"FVD reference: {entry.path} ({count} frames) read at stride {stride}, not {ev.stride}", stacklevel=2)
        video = entry.load(num_frames=num_frames, stride=stride)
        clips.append(resize_and_center_crop(video, int(ev.height), int(ev.width)))
    if not clips:
        raise ValueError(f"no clip of {Path(ev.data_root) / str(cfg.motion)} has {num_frames} frames: FVD has no reference")
    return torch.stack(clips)


def measure_videos(videos: torch.Tensor, frames: torch.Tensor, caption: str, reference: torch.Tensor, cfg: DictConfig) -> dict[str, Any]:
    """Every per-cell number of a folder cell on its videos `b f c h w` generated from `frames` `b c h w`."""
    from miva_lightning.benchmark.measures import frame_quality, mean_metric
    from miva_lightning.metrics import build_metric

    ev = cfg.evaluation
    fvd = build_metric("fvd_i3d", weights_path=str(ev.i3d_weights))
    fvd.update({"reference": reference})
    fvd.update({"generated": videos})
    info = fvd.describe()
    batch = {"generated": videos, "images": frames, "prompts": [caption] * len(videos)}
    clip_t = mean_metric("clip_text_alignment", batch, clip_path=str(ev.clip_folder))
    clip_i = mean_metric("clip_image_alignment", batch, clip_path=str(ev.clip_folder))
    consistency = mean_metric("clip_frame_consistency_all_pairs", batch, clip_path=str(ev.clip_folder))
    return {
        "n_eval": len(videos),
        "n_judged": 0,  # no motion judge for real clips: accuracy and fidelity stay empty
        "n_correct": 0,
        "accuracy": None,
        "accuracy_ci": [None, None],
        "fidelity": None,
        "fidelity_ci": [None, None],
        "predictions": [],
        "fidelities": [],
        "fd_motionworld": {"value": None, "n_generated": 0, "n_reference": 0, "unavailable_reason": "real clips: see fvd_i3d"},
        "fvd_i3d": {
            "value": finite_or_none(fvd.compute()), "n_generated": info["n_generated_videos"],
            "n_reference": info["n_real_videos"], "weights_sha256": info["features"].get("weights_sha256"),
        },  # fmt: skip
        "clip_text_alignment": clip_t["value"],
        "clip_text_alignment_ci": clip_t["ci"],
        "clip_image_alignment": clip_i["value"],
        "clip_image_alignment_ci": clip_i["ci"],
        "clip_frame_consistency": consistency["value"],
        "clip_frame_consistency_ci": consistency["ci"],
        **frame_quality(videos, frames),
        "retention": None,
        "retention_ci": [None, None],
        "retention_n": 0,
        "retention_n_correct": 0,
        "retention_source": "not measured: real clips have no captioned reference motions",
    }


def training_data_overrides(cfg: DictConfig) -> list[str]:
    """The `miva-train` data source of a folder cell: LAMP-layout clips of the motion at the clip geometry
    (clip count, batch size and flips: `benchmark.methods.data_overrides`, as for world cells)."""
    ev = cfg.evaluation
    return [
        "data=fewshot_folder",
        f"data.root={ev.data_root}",
        f"data.num_frames={ev.num_frames}",
        f"data.stride={ev.stride}",
        f"data.height={ev.height}",
        f"data.width={ev.width}",
    ]
