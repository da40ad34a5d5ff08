"""The demo's work (`make demo MOTIONS=default|all|<name>`): does a MIVA learn a NEW motion from ten clips?

For every chosen novel motion of the procedural world:
1. ensure the tiny base exists (the committed one; otherwise run pretraining),
2. train one MIVA on ten clips (`pipelines.train.train_miva`, `miva-train`'s code path, in this process),
3. animate `n_eval` held-out first frames with the MIVA, and with the base prompted by the motion's
   caption (no adapter) as the baseline; animate the photographs in assets/photos,
4. judge every clip with the weight-free motion classifier and measure first-frame PSNR.
Then two MIVAs are combined with weights and the combined clips' estimated motion is reported.
`run_demo(demo_config(overrides))` writes results/demo.json and the videos under outputs/demo/ and returns
the results; `print_table(results)` is the summary the entry point (cli/demo.py) prints.
"""

from __future__ import annotations

import glob
import json
import math
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from omegaconf import DictConfig, OmegaConf

from miva_lightning.config import compose
from miva_lightning.inputs import InputError, world_motion_names

if TYPE_CHECKING:  # torch is imported where used: bad input is reported before it loads
    import torch


def chosen_motions(cfg: DictConfig) -> list[str]:
    NOVEL_MOTIONS = world_motion_names("NOVEL_MOTIONS")  # miva_lightning.world's, without importing torch

    choice = cfg.motions
    if choice == "default":
        motions = list(cfg.default_motions)
    elif choice == "all":
        motions = list(NOVEL_MOTIONS)
    elif isinstance(choice, str):
        motions = [m.strip() for m in choice.split(",") if m.strip()]
    else:
        motions = list(choice)
    unknown = [m for m in motions if m not in NOVEL_MOTIONS]
    if unknown:
        raise InputError(f"motions {unknown} are not novel world motions; use default, all or some of {list(NOVEL_MOTIONS)}")
    return motions


def chosen_controls(cfg: DictConfig) -> list[str]:
    """Base motions trained exactly like the novel ones: can a MIVA evoke a motion the base already knows?"""
    BASE_MOTIONS = world_motion_names("BASE_MOTIONS")

    controls = list(cfg.get("controls") or [])
    unknown = [m for m in controls if m not in BASE_MOTIONS or m == "static"]
    if unknown:
        raise InputError(f"controls {unknown} are not moving base motions; choose from {list(BASE_MOTIONS[1:])}")
    return controls


def load_or_pretrain_base(cfg: DictConfig):
    """The committed/cached tiny base; when missing (and allowed), run the pretraining entry first."""
    from miva_lightning.backbones import build_backbone

    try:
        return build_backbone(cfg.backbone)
    except FileNotFoundError as missing:
        if not cfg.pretrain_if_missing:
            raise
        print(f"no pretrained base ({missing}); running `python -m miva_lightning.cli.pretrain` first", flush=True)
        subprocess.run([sys.executable, "-m", "miva_lightning.cli.pretrain"], check=True)
        return build_backbone(cfg.backbone)


def train_overrides(cfg: DictConfig, motion: str, motion_dir: Path) -> list[str]:
    t = cfg.train
    return [
        f"backbone={cfg.backbone_group}",
        f"motion={motion}",
        f"seed={cfg.seed}",
        f"num_threads={cfg.num_threads if cfg.get('num_threads') else 'null'}",
        f"trainer={t.trainer}",
        "logger=csv",
        f"paths.root={cfg.paths.root}",
        f"paths.output_dir={motion_dir / 'train'}",
        f"adapter_out={motion_dir / (motion + '.safetensors')}",
        f"data.max_clips={t.num_clips}",
        f"data.world_clips_per_motion={t.num_clips}",
        f"data.batch_size={t.batch_size}",
        f"data.flip_p={0.0 if motion in t.no_flip_motions else t.flip_p}",  # a flip turns pan_left into pan_right
        f"data.world_num_frames={t.world_num_frames}",
        f"trainer.max_steps={t.max_steps}",
        *([f"++trainer.max_time='{max_time(float(t.max_minutes))}'"] if t.get("max_minutes") else []),
        f"optimization.lr={t.lr}",
        f"optimization.warmup_steps={t.warmup_steps}",
        f"loss.timestep_distribution={t.timestep_distribution}",
        f"checkpoint.every_n_steps={t.checkpoint_every_n_steps}",
        f"preview.every_n_steps={t.preview_every_n_steps}",
        f"preview.steps={cfg.sample.steps}",
        *[f"backbone.{key}={value}" for key, value in backbone_overrides(cfg).items()],
        *list(t.overrides),
    ]


def max_time(minutes: float) -> str:
    """Lightning's `max_time` string DD:HH:MM:SS (whole seconds)."""
    seconds = max(1, round(minutes * 60))
    return f"{seconds // 86400:02d}:{seconds % 86400 // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def backbone_overrides(cfg: DictConfig) -> dict[str, Any]:
    """The demo's backbone choices that the training config must share."""
    shared = {"num_frames": cfg.backbone.num_frames, "image_size": cfg.backbone.image_size}
    if cfg.backbone.get("pretrained") not in (None, "latest"):
        shared["pretrained"] = cfg.backbone.pretrained
    return shared


def train_motion(cfg: DictConfig, motion: str, motion_dir: Path) -> dict[str, Any]:
    from miva_lightning.pipelines.train import train_miva
    from miva_lightning.utils import atomic_write_json

    adapter = motion_dir / f"{motion}.safetensors"
    summary_path = motion_dir / "train_summary.json"
    if cfg.reuse_adapters and adapter.exists() and summary_path.exists():
        print(f"[{motion}] reusing {adapter}", flush=True)
        return json.loads(summary_path.read_text())
    print(f"[{motion}] training a MIVA on {cfg.train.num_clips} clips (<= {cfg.train.max_minutes} min)", flush=True)
    summary = train_miva(compose("train", train_overrides(cfg, motion, motion_dir)))
    atomic_write_json(summary_path, summary)
    return summary


def first_frame_psnr_db(videos: torch.Tensor, first_frames: torch.Tensor) -> float:
    from miva_lightning.training.miva_module import first_frame_psnr

    return round(float(first_frame_psnr(videos[:, 0], first_frames)), 2)


def write_clips(folder: Path, videos: torch.Tensor, fps: float, stem: str = "heldout") -> None:
    from miva_lightning.animate import write_outputs

    for index, video in enumerate(videos):
        write_outputs(video, folder / f"{stem}_{index:02d}", fps=fps)


def evaluate_motion(cfg: DictConfig, backbone, motion: str, adapter: Path, frames: torch.Tensor, motion_dir: Path):
    from miva_lightning.animate import animate_batch
    from miva_lightning.metrics.intervals import finite_or_none
    from miva_lightning.motion import judge_accuracy
    from miva_lightning.world import GENERIC_CAPTION, caption_for, split_of

    sample = sample_settings(cfg)
    labels = [motion] * len(frames)
    miva_videos = animate_batch(frames, [(str(adapter), 1.0)], backbone, **sample)
    miva_judge = judge_accuracy(miva_videos, labels)
    # The base prompted with the motion's caption and, for motions it learned without one (in prior), with the
    # generic caption of web-like pretraining: the best of them stands beside the MIVA.
    prompts = [caption_for(motion)] + ([GENERIC_CAPTION] if cfg.base.get("generic_caption", True) else [])
    prompted = {}
    for prompt in prompts:
        videos = animate_batch(
            frames, [], backbone, prompt=prompt, guidance_scale=float(cfg.base.guidance_scale), **sample
        )
        prompted[prompt] = (videos, judge_accuracy(videos, labels))
    base_prompt = max(prompted, key=lambda p: prompted[p][1]["accuracy"])
    base_videos, base_judge = prompted[base_prompt]
    write_clips(motion_dir / "miva", miva_videos, cfg.fps)
    write_clips(motion_dir / "base_prompted", base_videos, cfg.fps)
    return {
        "split": split_of(motion),
        "base_accuracy_per_prompt": {p: round(j["accuracy"], 4) for p, (_, j) in prompted.items()},
        "miva_accuracy": round(miva_judge["accuracy"], 4),
        "miva_accuracy_ci": [round(v, 4) for v in miva_judge["accuracy_ci"]],
        "miva_fidelity": finite_or_none(miva_judge["fidelity"], 4),
        "miva_fidelity_ci": [finite_or_none(v, 4) for v in miva_judge["fidelity_ci"]],
        "base_accuracy": round(base_judge["accuracy"], 4),
        "base_accuracy_ci": [round(v, 4) for v in base_judge["accuracy_ci"]],
        "base_fidelity": finite_or_none(base_judge["fidelity"], 4),
        "first_frame_psnr_db": first_frame_psnr_db(miva_videos, frames),
        "base_first_frame_psnr_db": first_frame_psnr_db(base_videos, frames),
        "miva_predictions": dict(Counter(miva_judge["predictions"])),
        "base_predictions": dict(Counter(base_judge["predictions"])),
        "base_prompt": base_prompt,
    }


def sample_settings(cfg: DictConfig) -> dict[str, Any]:
    from miva_lightning.sampling.noise_init import as_noise_init

    s = cfg.sample
    noise_init = as_noise_init(s.get("noise_init"))
    return {
        "num_frames": int(s.num_frames),
        "steps": int(s.steps),
        "seed": int(s.seed),
        "noise_init": noise_init,
        "adapter_guidance": float(s.get("adapter_guidance", 1.0)),
    }


def combine_modes(cfg: DictConfig) -> dict[str, str]:
    """How several MIVAs combine when the demo attaches them together (`combine.lora_mode`, `combine.cfa_mode`)."""
    return {"lora_mode": str(cfg.combine.lora_mode), "cfa_mode": str(cfg.combine.get("cfa_mode", "sum"))}


def photo_paths(cfg: DictConfig) -> list[Path]:
    root = Path(cfg.paths.root)
    found = sorted({Path(p) for pattern in cfg.photos for p in glob.glob(str(root / pattern))})
    return found


def evaluate_photos(cfg: DictConfig, backbone, adapters: Sequence[tuple[str, float]], folder: Path) -> dict[str, Any]:
    """Animate every photograph (one batch); report the judged motion and first-frame PSNR of each."""
    import torch

    from miva_lightning.animate import animate_batch, backbone_size, load_image, write_outputs
    from miva_lightning.motion import classify_motion

    paths = photo_paths(cfg)
    if not paths:
        return {}
    frames = torch.stack([load_image(path, backbone_size(backbone)) for path in paths])
    videos = animate_batch(frames, list(adapters), backbone, **combine_modes(cfg), **sample_settings(cfg))
    results = {}
    for path, frame, video in zip(paths, frames, videos):
        written = write_outputs(video, folder / path.stem, fps=cfg.fps)
        results[path.name] = {
            "predicted_motion": classify_motion(video),
            "first_frame_psnr_db": first_frame_psnr_db(video[None], frame[None]),
            "video": str(written[0]),
        }
    return results


def combined_components(videos: torch.Tensor, motions: Sequence[str]) -> dict[str, Any]:
    """How often each component motion is visible in the combined clips.

    A camera motion counts as visible when its own part of the fitted global motion (its pan axis and sign,
    zoom or rotation) is visible, even if another part is stronger; a local motion when the flow left after
    removing the global motion looks like it (classifier rules).
    """
    from miva_lightning.motion import estimate_motion
    from miva_lightning.motion.classify import camera_components, local_class
    from miva_lightning.world import LOCAL_MOTIONS

    estimates = [estimate_motion(video) for video in videos]
    summaries = [e.summary for e in estimates if e.valid]
    visible = {}
    for motion in motions:
        if motion in LOCAL_MOTIONS:
            hits = [local_class(s) == motion for s in summaries]
        else:
            hits = [motion in camera_components(s.dx, s.dy, s.scale, s.angle_deg) for s in summaries]
        visible[motion] = round(sum(hits) / len(videos), 4)

    def median(field: str) -> float | None:
        return round(statistics.median(getattr(s, field) for s in summaries), 4) if summaries else None

    return {
        "visible_fraction": visible,
        "valid_fraction": round(len(summaries) / len(videos), 4),
        "median_global": {k: median(k) for k in ("dx", "dy", "scale", "angle_deg", "global_gain")},
        "median_local": {k: median(k) for k in ("moving_fraction", "moving_dx", "moving_dy", "extent_x", "divergence")},
    }


def evaluate_combination(cfg: DictConfig, backbone, adapters: dict[str, Path], frames: torch.Tensor) -> dict | None:
    from miva_lightning.animate import animate_batch
    from miva_lightning.motion import classify_motion

    motions, weights = list(cfg.combine.motions), [float(w) for w in cfg.combine.weights]
    if len(motions) != 2 or len(weights) != 2:
        raise InputError(f"combine.motions and combine.weights need two entries each, got {motions} / {weights}")
    if any(m not in adapters for m in motions):
        print(f"multi-adapter step skipped: {motions} were not all trained in this run", flush=True)
        return None
    pairs = [(str(adapters[m]), w) for m, w in zip(motions, weights)]
    videos = animate_batch(frames, pairs, backbone, **combine_modes(cfg), **sample_settings(cfg))
    folder = Path(cfg.out_dir) / ("+".join(motions))
    write_clips(folder, videos, cfg.fps)
    return {
        "motions": motions,
        "weights": weights,
        **combine_modes(cfg),
        "n": len(videos),
        "predictions": dict(Counter(classify_motion(v) for v in videos)),
        **combined_components(videos, motions),
        "first_frame_psnr_db": first_frame_psnr_db(videos, frames),
        "photos": evaluate_photos(cfg, backbone, pairs, folder / "photos"),
    }


def print_table(results: dict[str, Any]) -> None:
    header = f"{'motion':<12}{'MIVA acc':>10}{'95% CI':>14}{'fidelity':>10}{'base acc':>10}{'PSNR f1 dB':>12}{'train s':>10}{'steps':>8}"
    print("\n" + header + "\n" + "-" * len(header))
    for group in ("motions", "controls"):
        if results.get(group):
            print(f"{'novel motions' if group == 'motions' else 'controls (base motions)'}:")
        for motion, row in results.get(group, {}).items():
            low, high = row.get("miva_accuracy_ci", [math.nan, math.nan])
            fidelity = row.get("miva_fidelity")
            print(
                f"{motion:<12}{row['miva_accuracy']:>10.2f}{f'[{low:.2f}, {high:.2f}]':>14}"
                f"{'-' if fidelity is None else f'{fidelity:.2f}':>10}{row['base_accuracy']:>10.2f}"
                f"{row['first_frame_psnr_db']:>12.1f}{row['train_time_s']:>10.0f}{row['steps']:>8d}"
            )
    combo = results.get("multi_adapter")
    if combo:
        print(
            f"\n{' + '.join(f'{m} x{w:g}' for m, w in zip(combo['motions'], combo['weights']))}: "
            f"visible {combo['visible_fraction']}, judged {combo['predictions']}"
        )
    print(f"(n_eval={results['n_eval']} held-out first frames per motion, seed={results['seed']})")


def run_demo(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    motions, controls = chosen_motions(cfg), chosen_controls(cfg)  # bad choices: one line, before any model
    import torch

    from miva_lightning.animate import backbone_size
    from miva_lightning.utils import atomic_write_json, config_hash
    from miva_lightning.world import heldout_first_frames

    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    backbone = load_or_pretrain_base(cfg)
    height, _ = backbone_size(backbone)
    frames = heldout_first_frames(int(cfg.n_eval), size=height, seed=int(cfg.eval_seed))
    out_dir = Path(cfg.out_dir)
    plain_cfg = OmegaConf.to_container(cfg, resolve=True)
    results: dict[str, Any] = {
        "motions": {},
        "n_eval": int(cfg.n_eval),
        "seed": int(cfg.seed),
        "config": plain_cfg,
        "config_hash": config_hash(plain_cfg),
        "base": {"name": backbone.name, "folder": backbone.config.get("pretrained_dir")},
        "judge": "miva_lightning.motion.classify_motion (Farneback flow, rule-based; invalid/other never correct)",
    }
    if controls:
        results["controls"] = {}
    adapters: dict[str, Path] = {}
    for motion in motions + controls:
        group = "motions" if motion in motions else "controls"
        motion_dir = out_dir / motion
        summary = train_motion(cfg, motion, motion_dir)
        adapters[motion] = Path(summary["adapter_path"])
        row = evaluate_motion(cfg, backbone, motion, adapters[motion], frames, motion_dir)
        row.update(
            train_time_s=summary["train_time_s"], train_steps=summary["steps"], steps=summary["steps"],
            adapter_path=summary["adapter_path"],
        )
        row["photos"] = evaluate_photos(cfg, backbone, [(str(adapters[motion]), 1.0)], motion_dir / "photos")
        results[group][motion] = row
        atomic_write_json(cfg.results_path, results)  # partial results survive an interrupted run
        print(
            f"[{motion}] MIVA accuracy {row['miva_accuracy']:.2f} (fidelity {row['miva_fidelity']}), "
            f"base {row['base_accuracy']:.2f}",
            flush=True,
        )
    results["multi_adapter"] = evaluate_combination(cfg, backbone, adapters, frames)
    results["total_time_s"] = round(time.perf_counter() - started, 1)
    atomic_write_json(cfg.results_path, results)
    return results


def demo_config(overrides: Sequence[str]) -> DictConfig:
    """The demo config (configs/demo.yaml) with command-line overrides."""
    overrides = list(overrides)
    # training composes train.yaml itself: it must load the same backbone group as the demo
    groups = [o.split("=", 1)[1] for o in overrides if o.startswith("backbone=")]
    return compose("demo", overrides + ["paths.output_dir=${out_dir}"] + [f"backbone_group={g}" for g in groups[-1:]])
