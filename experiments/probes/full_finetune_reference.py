"""Reference probe: FULL fine-tuning of the tiny base on the demo's ten clips of one motion.

Why it exists: the demo's MIVAs reproduce base motions from ten clips (controls) but not novel ones.
That leaves two explanations: the adapter is too small / trains too slowly, or ten clips and this
base's prior are not enough for any method. This probe trains EVERY UNet weight (1.8 M, no adapter)
on exactly the demo's data (same clips, windows, flips, batch, seed and minutes; empty prompt as the
MIVA sees) and judges it on the same held-out first frames with the same sampler and judge. If full
fine-tuning fails too, the limit is the data and the base, not the adapter.

It is a measurement, not a baseline implementation: the baseline is `FullFinetuneModule`
(`miva-train method=full_ft`, checkpoints and exact resume, lr 2e-4 and no weight decay as here). This probe
stays for what it adds: the demo's time budget and accuracy on the training first frames beside the held-out
ones. Plain torch loop: nothing here needs resuming.

    .venv/bin/python experiments/probes/full_finetune_reference.py motion=zoom_out [lr=2e-4] [any demo override]

Writes results/probe_full_finetune_<motion>.json (accuracy on held-out AND on the training first frames,
which tells memorisation from generalisation) and prints it.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import torch


def probe(overrides: list[str]) -> dict:
    from miva_lightning.backbones import encode_prompts
    from miva_lightning.pipelines.demo import load_or_pretrain_base, sample_settings, train_overrides
    from miva_lightning.pipelines.train import build_datamodule
    from miva_lightning.config import compose
    from miva_lightning.motion import judge_accuracy
    from miva_lightning.sampling.sampler import sample_video
    from miva_lightning.training.diffusion_loss import diffusion_loss
    from miva_lightning.utils import atomic_write_json
    from miva_lightning.world import heldout_first_frames

    own = {key: value for key, value in (o.split("=", 1) for o in overrides) if key in ("motion", "lr")}
    groups = [o.split("=", 1)[1] for o in overrides if o.startswith("backbone=")]  # training loads the same base
    cfg = compose("demo", [o for o in overrides if o.split("=", 1)[0] not in own] + [f"backbone_group={g}" for g in groups[-1:]])
    motion, lr = own.get("motion", "zoom_out"), float(own.get("lr", 2e-4))
    torch.set_num_threads(int(cfg.num_threads))
    torch.manual_seed(int(cfg.seed))
    backbone = load_or_pretrain_base(cfg)
    train_cfg = compose("train", train_overrides(cfg, motion, Path("/tmp/unused")))
    data = build_datamodule(train_cfg)
    data.setup("fit")

    unet = backbone.unet.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(int(cfg.seed))
    empty = encode_prompts(backbone, [""]).detach()
    started, steps, losses, epoch = time.perf_counter(), 0, [], 0
    # the demo's budget: train.max_steps, and train.max_minutes when set (null = steps only)
    budget_s = float(cfg.train.max_minutes) * 60 if cfg.train.get("max_minutes") else float("inf")
    max_steps = int(cfg.train.max_steps)
    loader = data.train_dataloader()
    while time.perf_counter() - started < budget_s and steps < max_steps:
        loader.sampler.set_epoch(epoch)  # fresh windows and flips every epoch, as Lightning does
        for batch in loader:
            video = batch["video"]
            loss = diffusion_loss(backbone, video, empty.expand(video.shape[0], -1, -1), generator=generator)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
            steps += 1
            if time.perf_counter() - started >= budget_s or steps >= max_steps:
                break
        epoch += 1
    train_s = time.perf_counter() - started
    unet.eval().requires_grad_(False)

    s = sample_settings(cfg)
    size = int(cfg.backbone.image_size)
    sets = {
        "heldout": heldout_first_frames(int(cfg.n_eval), size=size, seed=int(cfg.eval_seed)),
        "training": torch.stack([data.train_set[i]["video"][0] for i in range(len(data.train_set))]),
    }
    accuracy = {}
    for name, frames in sets.items():
        videos = sample_video(
            backbone, frames, s["num_frames"], None, s["steps"], 1.0, torch.Generator().manual_seed(s["seed"]),
            noise_init=s["noise_init"], progress=False,
        )
        judged = judge_accuracy(videos, [motion] * len(frames))
        accuracy[name] = {"accuracy": round(judged["accuracy"], 4), "n": len(frames), "predictions": dict(Counter(judged["predictions"]))}
    result = {
        "motion": motion,
        "method": "full fine-tuning of every UNet weight (no adapter), empty prompt",
        "lr": lr,
        "steps": steps,
        "train_time_s": round(train_s, 1),
        "final_loss": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 6),
        "accuracy": accuracy,
        "how": {
            "data": f"demo config: {cfg.train.num_clips} world clips, seed {cfg.seed}, batch {cfg.train.batch_size}, "
            f"<= {cfg.train.max_steps} steps, <= {cfg.train.max_minutes} min, {cfg.num_threads} threads",
            "base": cfg.backbone_group,
            "eval": f"held-out first frames world.heldout_first_frames({cfg.n_eval}, seed={cfg.eval_seed}); DDIM {s['steps']}, "
            f"sample seed {s['seed']}; judge classify_motion over all 14 classes",
            "overrides": overrides,
        },
    }
    out = Path(cfg.paths.results) / f"probe_full_finetune_{motion}.json"
    atomic_write_json(out, result)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    probe(sys.argv[1:])
