"""A small video network trained by the project to classify the motion world's motions.

Why: FVD's I3D weights are not available offline, and I3D barely reacts to temporal corruption. A
network trained on the world's own motion classes gives features that do separate motions; its
penultimate features feed `fd_motionworld` / `kvd_motionworld`, its per-frame spatial stem feeds
`fd_frames_motionworld`. These numbers are project-internal (comparable only with the same artifact,
identified by its SHA-256), not FVD.

Architecture (69 k parameters): [per-frame 2D stem, 3x5x5 spatio-temporal stem on raw frames
and on Lucas-Kanade gradient products] -> two (2+1)D blocks of a spatial 1x3x3 conv (stride 2) then
a temporal 3x1x1 conv -> mean over t and a 2x2 spatial grid -> 128-d features -> linear classifier.
Input: the first 8 frames, resized to 32x32, values mapped to [-1, 1].

Rebuild the committed artifact: `python -m miva_lightning.metrics.motion_features` (about 2 CPU
minutes on 1 thread); it writes `artifacts/metrics/motionworld_net/{model.safetensors,config.json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from miva_lightning.config import REPO_ROOT
from miva_lightning.metrics.extractors import VideoFeatureExtractor, check_videos
from miva_lightning.utils import atomic_path, atomic_write_json, file_sha256

DEFAULT_ARTIFACT_DIR = REPO_ROOT / "artifacts" / "metrics" / "motionworld_net"


@dataclass(frozen=True)
class MotionNetConfig:
    classes: tuple[str, ...]
    clip_frames: int = 8
    input_size: int = 32
    stem_channels: int = 24
    block_channels: tuple[int, int] = (48, 32)


class MotionWorldNet(nn.Module):
    """(2+1)D classifier; `video_features` (b, 128) and `frame_features` (b*f, 24) feed the metrics."""

    def __init__(self, config: MotionNetConfig) -> None:
        super().__init__()
        self.config = config
        c0, (c1, c2) = config.stem_channels, config.block_channels
        self.stem = nn.Sequential(
            nn.Conv2d(3, c0, 3, padding=1), nn.ReLU(), nn.Conv2d(c0, c0, 3, stride=2, padding=1), nn.ReLU()
        )
        # spatio-temporal filters on the raw frames plus Lucas-Kanade products (see motion_products):
        # with those products, flow direction is a LINEAR function of the input, so a tiny net learns it
        self.motion_stem = nn.Sequential(
            nn.Conv3d(3 + 6, c0, (3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2)), nn.GroupNorm(8, c0), nn.ReLU()
        )
        self.blocks = nn.Sequential(
            nn.Conv3d(2 * c0, c1, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)), nn.GroupNorm(8, c1), nn.ReLU(),
            nn.Conv3d(c1, c1, (3, 1, 1), padding=(1, 0, 0)), nn.GroupNorm(8, c1), nn.ReLU(),
            nn.Conv3d(c1, c2, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)), nn.GroupNorm(8, c2), nn.ReLU(),
            nn.Conv3d(c2, c2, (3, 1, 1), padding=(1, 0, 0)), nn.GroupNorm(8, c2), nn.ReLU(),
        )  # fmt: skip
        # pooled to a 2x2 grid, not to one vector: zoom and rotation differ only in WHERE flow points
        self.pool = nn.AdaptiveAvgPool3d((1, 2, 2))
        self.head = nn.Linear(4 * c2, len(config.classes))

    def preprocess(self, videos: Tensor) -> Tensor:
        """`b f c h w` [0, 1] -> `(b f) c s s` in [-1, 1] of the first clip_frames frames."""
        check_videos(videos, self.config.clip_frames)
        frames = rearrange(videos[:, : self.config.clip_frames].float(), "b f c h w -> (b f) c h w")
        size = self.config.input_size
        if frames.shape[-2:] != (size, size):
            frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return frames * 2 - 1

    def frame_features(self, videos: Tensor) -> Tensor:
        """Per-frame appearance features `(b f) c0`: the 2D stem, averaged over space."""
        return self.stem(self.preprocess(videos)).mean(dim=(-2, -1))

    def video_features(self, videos: Tensor) -> Tensor:
        frames = self.preprocess(videos)
        appearance = rearrange(self.stem(frames), "(b f) c h w -> b c f h w", b=videos.shape[0])
        clip = rearrange(frames, "(b f) c h w -> b c f h w", b=videos.shape[0])
        motion = self.motion_stem(torch.cat([clip, motion_products(clip)], dim=1))
        x = self.pool(self.blocks(torch.cat([appearance, motion], dim=1)))
        return rearrange(x, "b c 1 h w -> b (c h w)")

    def forward(self, videos: Tensor) -> Tensor:
        return self.head(self.video_features(videos))


PRODUCT_SCALE = 100.0  # image gradients are ~0.05 per pixel; their products ~1e-3 before scaling


def motion_products(clip: Tensor) -> Tensor:
    """`b c f h w` -> `b 6 f h w`: Ix*It, Iy*It, Ix*Ix, Iy*Iy, Ix*Iy, It*It of the grey frames.

    These are the entries of the Lucas-Kanade normal equations (flow = -(sum grad grad^T)^-1 sum grad It),
    so local flow is readable from local sums of them. It at frame 0 is 0 (no previous frame).
    """
    grey = clip.mean(dim=1)  # b f h w
    ix = torch.zeros_like(grey)
    iy = torch.zeros_like(grey)
    ix[..., 1:-1] = (grey[..., 2:] - grey[..., :-2]) / 2
    iy[..., 1:-1, :] = (grey[..., 2:, :] - grey[..., :-2, :]) / 2
    it = torch.cat([torch.zeros_like(grey[:, :1]), grey[:, 1:] - grey[:, :-1]], dim=1)
    products = torch.stack([ix * it, iy * it, ix * ix, iy * iy, ix * iy, it * it], dim=1)
    return products * PRODUCT_SCALE


# ---- the extractor used by the metrics ---------------------------------------------------------


class MotionWorldFeatures(VideoFeatureExtractor):
    """Features of the committed MotionWorldNet: kind "video" (penultimate) or "frames" (stem)."""

    def __init__(self, net: MotionWorldNet | None, kind: str, info: dict[str, Any]) -> None:
        super().__init__()
        if kind not in ("video", "frames"):
            raise ValueError(f"kind must be 'video' or 'frames', got {kind!r}")
        self.net, self.kind, self.info = net, kind, info
        self.per_frame = kind == "frames"
        self.name = "motionworld_net_penultimate" if kind == "video" else "motionworld_net_frame_stem"
        if net is not None:
            self.num_features = 4 * net.config.block_channels[-1] if kind == "video" else net.config.stem_channels

    @torch.no_grad()
    def forward(self, videos: Tensor) -> Tensor:
        if self.net is None:
            raise RuntimeError(f"motion-world net unavailable: {self.unavailable_reason}")
        return self.net.video_features(videos) if self.kind == "video" else self.net.frame_features(videos)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self.info}


def load_motionworld_net(artifact_dir: str | os.PathLike | None = None) -> tuple[MotionWorldNet, dict[str, Any]]:
    """Load and SHA-256-verify the artifact; raises FileNotFoundError / ValueError with what to do."""
    folder = Path(artifact_dir) if artifact_dir else DEFAULT_ARTIFACT_DIR
    weights, config_file = folder / "model.safetensors", folder / "config.json"
    if not weights.is_file() or not config_file.is_file():
        raise FileNotFoundError(
            f"motion-world feature net not found in {folder}; rebuild it with "
            "`python -m miva_lightning.metrics.motion_features`"
        )
    record = json.loads(config_file.read_text())
    sha256 = file_sha256(weights)
    if sha256 != record["sha256"]:
        raise ValueError(f"{weights} has sha256 {sha256}, but {config_file} pins {record['sha256']}; rebuild it")
    architecture = dict(record["architecture"])
    architecture["classes"] = tuple(architecture["classes"])
    architecture["block_channels"] = tuple(architecture["block_channels"])
    net = MotionWorldNet(MotionNetConfig(**architecture))
    try:
        net.load_state_dict(load_file(str(weights)))
    except RuntimeError as error:  # the code's architecture changed since the artifact was built
        raise ValueError(f"{weights} does not fit MotionWorldNet ({str(error).splitlines()[0]}); rebuild it") from error
    info = {
        "weights_path": str(weights),
        "weights_sha256": sha256,
        "heldout_accuracy": record.get("heldout_accuracy"),
        "preprocessing": f"first {net.config.clip_frames} frames, resize to {net.config.input_size}^2, [-1, 1]",
    }
    return net.eval().requires_grad_(False), info


def load_motionworld_extractor(artifact_dir: str | os.PathLike | None = None, kind: str = "video") -> MotionWorldFeatures:
    """The extractor, or an unavailable one (reason given) when the artifact is missing or altered."""
    try:
        net, info = load_motionworld_net(artifact_dir)
    except (FileNotFoundError, ValueError) as error:
        extractor = MotionWorldFeatures(None, kind, {})
        extractor.mark_unavailable(str(error))
        return extractor
    return MotionWorldFeatures(net, kind, info)


# ---- training (the rebuild entry) --------------------------------------------------------------


@dataclass
class TrainSettings:
    scenes_per_class: int = 32
    heldout_scenes_per_class: int = 12
    render_sizes: tuple[int, ...] = (32, 48, 64)  # rendered larger then resized, like generated videos
    epochs: int = 12
    batch_size: int = 16
    learning_rate: float = 3e-3
    seed: int = 0
    threads: int = 1
    extra: dict = field(default_factory=dict)


def render_dataset(classes, scene_seeds_per_class, frames: int, sizes, seed: int) -> tuple[Tensor, Tensor]:
    """Clips `n f c s s` (resized to the net's input size by the net itself) and labels `n`."""
    from miva_lightning.world.clips import render_clip

    rng = np.random.default_rng(seed)
    videos, labels = [], []
    for label, motion in enumerate(classes):
        for scene_seed in scene_seeds_per_class[label]:
            size = int(rng.choice(sizes))
            video = render_clip(motion, scene_seed, size=size, num_frames=frames).video
            if size != 32:
                video = F.interpolate(video, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
            videos.append(video)
            labels.append(label)
    return torch.stack(videos), torch.tensor(labels)


MIRROR_PAIRS = (("pan_left", "pan_right"), ("rotate_cw", "rotate_ccw"))  # labels swapped by a left-right flip


def mirror_label_map(classes: tuple[str, ...]) -> Tensor:
    """Label of each class after flipping the video left-right (birds and clouds head either way)."""
    mapping = list(range(len(classes)))
    for a, b in MIRROR_PAIRS:
        mapping[classes.index(a)], mapping[classes.index(b)] = classes.index(b), classes.index(a)
    return torch.tensor(mapping)


@torch.no_grad()
def accuracy(net: MotionWorldNet, videos: Tensor, labels: Tensor) -> float:
    net.eval()
    predictions = torch.cat([net(chunk).argmax(-1) for chunk in videos.split(64)])
    return float((predictions == labels).float().mean())


def train_motionworld_net(out_dir: str | os.PathLike = DEFAULT_ARTIFACT_DIR, settings: TrainSettings | None = None) -> dict:
    """Render the world, train the classifier, save safetensors + config.json (with sha256)."""
    from miva_lightning.world.clips import heldout_scene_seeds, training_scene_seeds
    from miva_lightning.world.motions import ALL_MOTIONS

    settings = settings or TrainSettings()
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    config = MotionNetConfig(classes=tuple(ALL_MOTIONS))
    k, m = settings.scenes_per_class, settings.heldout_scenes_per_class
    train_seeds = training_scene_seeds(k * len(ALL_MOTIONS), seed=settings.seed)
    heldout_seeds = heldout_scene_seeds(m * len(ALL_MOTIONS), seed=settings.seed + 1)
    started = time.perf_counter()
    train_x, train_y = render_dataset(
        ALL_MOTIONS, [train_seeds[i * k : (i + 1) * k] for i in range(len(ALL_MOTIONS))],
        config.clip_frames, settings.render_sizes, settings.seed,
    )  # fmt: skip
    test_x, test_y = render_dataset(
        ALL_MOTIONS, [heldout_seeds[i * m : (i + 1) * m] for i in range(len(ALL_MOTIONS))],
        config.clip_frames, settings.render_sizes, settings.seed + 1,
    )  # fmt: skip
    render_seconds = time.perf_counter() - started

    net = MotionWorldNet(config)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate, weight_decay=1e-4)
    steps = settings.epochs * (len(train_x) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, settings.learning_rate, total_steps=steps)
    generator = torch.Generator().manual_seed(settings.seed)
    mirrored = mirror_label_map(config.classes)
    for epoch in range(settings.epochs):
        net.train()
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order) - settings.batch_size + 1, settings.batch_size):
            index = order[start : start + settings.batch_size]
            videos, labels = train_x[index], train_y[index]
            flip = torch.rand(len(index), generator=generator) < 0.5  # augmentation: mirror half the clips
            videos = torch.where(flip[:, None, None, None, None], videos.flip(-1), videos)
            labels = torch.where(flip, mirrored[labels], labels)
            loss = F.cross_entropy(net(videos), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"epoch {epoch + 1}/{settings.epochs} loss {loss.item():.3f}", flush=True)
    train_seconds = time.perf_counter() - started - render_seconds

    out_dir = Path(out_dir)
    weights = out_dir / "model.safetensors"
    with atomic_path(weights) as tmp:
        save_file({name: t.contiguous() for name, t in net.state_dict().items()}, str(tmp))
    record = {
        "what": "MotionWorldNet: (2+1)D classifier of the motion world's classes; features for fd/kvd_motionworld",
        "architecture": asdict(config),
        "parameters": sum(p.numel() for p in net.parameters()),
        "training": asdict(settings),
        "n_train_clips": len(train_x),
        "n_heldout_clips": len(test_x),
        "train_accuracy": accuracy(net, train_x, train_y),
        "heldout_accuracy": accuracy(net, test_x, test_y),
        "heldout_split": "world.clips.heldout_scene_seeds (scene seeds never used in training)",
        "render_seconds": round(render_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "torch_version": torch.__version__,
        "sha256": file_sha256(weights),
    }
    atomic_write_json(out_dir / "config.json", record)
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rebuild the motion-world feature network artifact.")
    parser.add_argument("--out", default=str(DEFAULT_ARTIFACT_DIR))
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--scenes-per-class", type=int, default=TrainSettings.scenes_per_class)
    parser.add_argument("--threads", type=int, default=TrainSettings.threads)
    args = parser.parse_args(argv)
    settings = TrainSettings(epochs=args.epochs, scenes_per_class=args.scenes_per_class, threads=args.threads)
    record = train_motionworld_net(args.out, settings)
    print(json.dumps({k: record[k] for k in ("train_accuracy", "heldout_accuracy", "train_seconds", "sha256")}))


if __name__ == "__main__":
    main()
