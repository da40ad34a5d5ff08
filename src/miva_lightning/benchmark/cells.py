"""One cell of Table 2: (method, motion, seed) -> ONE JSON file, written atomically.

`run_cell(cfg)` takes a composed `table2` config (configs/table2.yaml; the ablation and sweep grids run the
same cells under their own `label`) and
1. returns the cell's existing JSON untouched when it finished (status "ok") with the same config hash, so a
   re-run after any kill recomputes only what is missing (`force=true` recomputes);
2. trains the method (`methods.train`; its run folder is keyed by the training hash and resumes from its newest
   checkpoint), animates `n_eval` held-out first frames, measures them (`measures`), measures retention;
3. writes `<out_dir>/cells/<label>/<motion>/seed<seed>.json` and a GIF of the first held-out video.
A training or evaluation that raises is written as status "failed: <stage>: <error>" with the traceback's
tail, never dropped; only a killed process leaves no JSON (and the next run computes the cell).
`train_time_s` and `final_loss` describe the training done by the process that finished the cell: after a
resume they cover the steps run since (the numbers measured on the videos are those of an uninterrupted run).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from miva_lightning.benchmark import methods
from miva_lightning.benchmark.identity import cell_identity, cell_label, cell_path, method_name, sample_path
from miva_lightning.benchmark.provenance import PeakMemory, git_commit

_BASE_RETENTION: dict[str, dict[str, Any]] = {}  # adapter methods share the base's retention (per process)


@dataclass
class CellOutcome:
    record: dict[str, Any]
    path: Path
    reused: bool


def read_cell(path: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def failure(stage: str, error: BaseException) -> dict[str, Any]:
    reason = f"{type(error).__name__}: {error}".strip().splitlines()[0][:500]
    lines = "".join(traceback.format_exception(type(error), error, error.__traceback__)).splitlines()
    kept = lines if len(lines) <= 30 else [lines[0], "  ...", *lines[-28:]]  # the header and the innermost frames
    return {"status": f"failed: {stage}: {reason}", "error": "\n".join(kept)}


def load_backbone(cfg: DictConfig):
    """The cell's base on its device; seeded like training, so a random-init base is the one trained on."""
    import torch

    from miva_lightning.backbones import build_backbone

    torch.manual_seed(int(cfg.seed))
    backbone = build_backbone(cfg.backbone)
    for part in (backbone.unet, backbone.text_encoder):
        if part is not None:
            part.to(cfg.device)
    return backbone


def retention(cfg: DictConfig, trained: methods.Trained, backbone, frames) -> tuple[dict[str, Any], str]:
    """Retention on the captioned motions; the base's (adapter methods) is measured once per process."""
    from miva_lightning.adapters import base_identity
    from miva_lightning.benchmark.measures import measure_retention
    from miva_lightning.utils import config_hash
    from miva_lightning.world import CAPTIONED_MOTIONS

    model = methods.retention_backbone(cfg, trained, backbone)
    sample = lambda motion: methods.sample_prompted(cfg, model, frames, motion)  # noqa: E731
    if model is not backbone:
        return measure_retention(sample, CAPTIONED_MOTIONS), "computed (adapted model)"
    key = config_hash({
        "base": base_identity(backbone.unet, backbone.name)["fingerprint"], "n": len(frames),
        "eval_seed": int(cfg.eval_seed), "sample": OmegaConf.to_container(cfg.sample, resolve=True),
    })  # fmt: skip
    if key in _BASE_RETENTION:
        return dict(_BASE_RETENTION[key]), "reused: the base's retention, measured by an earlier cell of this process"
    _BASE_RETENTION[key] = measure_retention(sample, CAPTIONED_MOTIONS)
    return dict(_BASE_RETENTION[key]), "computed (the base: adapter off)"


def evaluate_on_folder(cfg: DictConfig, trained: methods.Trained, backbone, timings: dict[str, float]) -> dict[str, Any]:
    """A real-clip cell (benchmark/folder_evaluation.py): FVD, CLIP-T/CLIP-I, first frame, flicker, drift."""
    from miva_lightning.benchmark import folder_evaluation
    from miva_lightning.data import write_video
    from miva_lightning.pipelines.methods import caption_of

    clock, motion = time.perf_counter(), str(cfg.motion)
    frames = folder_evaluation.first_frames(cfg)
    videos = methods.sample(cfg, trained, backbone, frames, motion)
    timings["sample_s"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    reference = folder_evaluation.reference_clips(cfg, videos.shape[1])
    measured = folder_evaluation.measure_videos(videos, frames, caption_of(motion), reference, cfg)
    write_video(sample_path(cfg), videos[0], fps=float(cfg.fps))
    timings["measure_s"] = round(time.perf_counter() - clock, 2)
    return {**measured, "sample_gif": str(sample_path(cfg))}


def evaluate(cfg: DictConfig, trained: methods.Trained, timings: dict[str, float]) -> dict[str, Any]:
    from miva_lightning.animate import backbone_size
    from miva_lightning.benchmark.folder_evaluation import kind_of
    from miva_lightning.benchmark.measures import measure_videos, reference_clips
    from miva_lightning.data import write_video
    from miva_lightning.world import heldout_first_frames

    clock = time.perf_counter()
    backbone = load_backbone(cfg)
    if kind_of(cfg) == "folder":
        return evaluate_on_folder(cfg, trained, backbone, timings)
    size, motion = backbone_size(backbone)[0], str(cfg.motion)
    frames = heldout_first_frames(int(cfg.n_eval), size=size, seed=int(cfg.eval_seed))
    videos = methods.sample(cfg, trained, backbone, frames, motion)
    timings["sample_s"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    reference = reference_clips(motion, len(frames), size, videos.shape[1], int(cfg.eval_seed))
    measured = measure_videos(videos, frames, motion, reference)
    write_video(sample_path(cfg), videos[0], fps=float(cfg.fps))
    timings["measure_s"] = round(time.perf_counter() - clock, 2)
    clock = time.perf_counter()
    retained, source = retention(cfg, trained, backbone, frames[: int(cfg.n_retention)])
    timings["retention_s"] = round(time.perf_counter() - clock, 2)
    return {**measured, **retained, "retention_source": source, "sample_gif": str(sample_path(cfg))}


def run_cell(cfg: DictConfig) -> CellOutcome:
    """Compute (or reuse) the cell `cfg` names; see the module docstring."""
    from miva_lightning.utils import atomic_write_json, config_hash
    from miva_lightning.world import split_of

    method, motion, seed = method_name(cfg), str(cfg.motion), int(cfg.seed)
    path, identity = cell_path(cfg), cell_identity(cfg)
    digest = config_hash(identity)
    existing = read_cell(path)
    if existing and existing.get("status") == "ok" and existing.get("config_hash") == digest and not cfg.get("force"):
        return CellOutcome(existing, path, reused=True)

    import torch

    from miva_lightning.benchmark import folder_evaluation

    if folder_evaluation.kind_of(cfg) == "folder":
        folder_evaluation.check_inputs(cfg)  # a missing file is the user's to fix: an error, not a failed cell
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))
    started, memory = time.perf_counter(), PeakMemory(str(cfg.device)).start()
    split = split_of(motion) if folder_evaluation.kind_of(cfg) == "world" else "real"
    record: dict[str, Any] = {"method": method, "motion": motion, "split": split, "seed": seed, "status": "ok"}
    if cell_label(cfg) != method:
        record["label"] = cell_label(cfg)
    if cfg.get("ablation"):
        record["ablation"] = OmegaConf.to_container(cfg.ablation, resolve=True)
    timings: dict[str, float] = {}
    trained = methods.Trained()
    try:
        trained = methods.train(cfg)
        timings["train_s"] = round(time.perf_counter() - started, 2)
        record.update(evaluate(cfg, trained, timings))
    except Exception as error:  # noqa: BLE001 - every failure is recorded in the cell, then the grid goes on
        record.update(failure("training" if "train_s" not in timings else "evaluation", error))
    timings["total_s"] = round(time.perf_counter() - started, 2)
    record.update(
        trainable_params=trained.trainable_params, bytes_on_disk=trained.bytes_on_disk, steps=trained.steps,
        train_time_s=round(trained.train_time_s, 2), final_loss=trained.final_loss, export_path=trained.export,
        peak_mem_mb=memory.stop(), peak_mem_kind=memory.kind, n_eval=int(cfg.n_eval), config_hash=digest,
        commit=git_commit(), timings=timings, config=identity,
    )  # fmt: skip
    if trained.parts:
        record["composed_of"] = trained.parts
    atomic_write_json(path, record)
    return CellOutcome(record, path, reused=False)


def cell_line(outcome: CellOutcome) -> str:
    """One line per cell for the console."""
    r = outcome.record
    name = f"{r.get('label', r['method'])}/{r['motion']}/seed{r['seed']}"
    if r["status"] != "ok":
        return f"table2 cell {name}: {r['status']} -> {outcome.path}"
    if r["accuracy"] is None:  # a real-clip cell: no judge
        fvd = (r.get("fvd_i3d") or {}).get("value")
        measured = f"FVD {'-' if fvd is None else format(fvd, '.1f')} n={r['n_eval']}, CLIP-T {r.get('clip_text_alignment')}"
    else:
        low, high = r["accuracy_ci"]
        measured = (
            f"accuracy {r['accuracy']:.2f} [{low:.2f}, {high:.2f}] n={r['n_eval']}, retention {r['retention']:.2f}"
        )
    return (
        f"table2 cell {name} ({r['split']}): {measured}, {r['steps']} steps, {r['timings']['total_s']:.0f} s"
        f"{' (reused)' if outcome.reused else ''} -> {outcome.path}"
    )
