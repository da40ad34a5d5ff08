"""Where clips come from: a LAMP-layout folder, or the procedural motion world (no files).

A `ClipEntry` names one clip and knows how to load it; the dataset decides what to keep.
LAMP layout: `<root>/<motion>/<clip>.{mp4,gif,webm,avi,mov,...}` or `<root>/<motion>/<clip>/*.png|jpg`.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from miva_lightning.data.readers import IMAGE_SUFFIXES, UnsupportedFormatError, VideoReadError
from miva_lightning.data.readers.frames_reader import natural_key
from miva_lightning.data.video_io import CLIP_SUFFIXES, count_frames, read_video

# Files that may sit beside clips (captions, notes) and are not clips.
SIDECAR_SUFFIXES = (".txt", ".json", ".csv", ".md", ".yaml", ".yml")


@dataclass
class ClipEntry:
    path: str  # a file or folder, or `motion_world://<split>/<motion>/scene<seed>` for generated clips
    motion: str
    caption: str
    load: Callable[..., torch.Tensor] = field(repr=False)  # (num_frames, stride, start, **read options) -> `f c h w`
    count: Callable[..., int] = field(repr=False)  # (timeout_s) -> frames the clip has


def motion_names(motion: str | Sequence[str] | None) -> list[str] | None:
    if motion is None:
        return None
    return [motion] if isinstance(motion, str) else list(motion)


def folder_clip_entries(
    root: str | Path,
    motions: Sequence[str] | None,
    captions: dict[str, str] | None = None,
    on_error: str = "raise",
) -> list[ClipEntry]:
    """Clips of the chosen motions (all motion folders when None), naturally sorted per motion."""
    root = Path(root)
    if not root.is_dir():
        raise VideoReadError(
            root, "data root does not exist or is not a folder; set data.root to a folder laid out as <root>/<motion>/<clips>"
        )
    available = sorted((p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_key)
    chosen = available if motions is None else list(motions)
    if not chosen:
        raise VideoReadError(root, "no motion folders found; expected <root>/<motion>/<clips>")
    entries = []
    for motion in chosen:
        if motion not in available:
            raise VideoReadError(
                root / motion, f"no folder for motion {motion!r}; motions found under {root}: {available or 'none'}"
            )
        clips = _clips_in(root / motion, on_error)
        if not clips:
            found = sorted(p.name for p in (root / motion).iterdir())[:20]
            raise VideoReadError(
                root / motion,
                f"no clips for motion {motion!r}; expected files ending in {', '.join(CLIP_SUFFIXES)} or folders of "
                f"{', '.join(IMAGE_SUFFIXES)} frames; found: {found or 'nothing'}",
            )
        caption = (captions or {}).get(motion, motion.replace("_", " "))
        for clip in clips:
            entries.append(
                ClipEntry(
                    str(clip),
                    motion,
                    caption,
                    load=lambda clip=clip, **options: read_video(clip, **options),
                    count=lambda clip=clip, timeout_s=60.0: count_frames(clip, timeout_s=timeout_s),
                )
            )
    return entries


def _clips_in(folder: Path, on_error: str) -> list[Path]:
    clips = []
    for path in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        suffix = path.suffix.lower()
        if path.name.startswith(".") or suffix in SIDECAR_SUFFIXES:
            continue
        if path.is_dir() or suffix in CLIP_SUFFIXES:
            clips.append(path)
            continue
        error = UnsupportedFormatError(
            path, f"unsupported extension {suffix!r}; clips must end in {', '.join(CLIP_SUFFIXES)} or be folders of frames"
        )
        if on_error == "raise":
            raise error
        warnings.warn(f"skipping {error}", stacklevel=3)
    return clips


def motion_world_clip_entries(
    motions: Sequence[str], clips_per_motion: int, size: int, num_frames: int, split: str = "train", seed: int = 0
) -> list[ClipEntry]:
    """Clips rendered in memory by `miva_lightning.world.MotionWorldDataset` (no files on disk)."""
    try:
        from miva_lightning.world import MotionWorldDataset
    except ImportError as error:
        raise ImportError(f"source='motion_world' needs miva_lightning.world.MotionWorldDataset ({error})") from error
    world = MotionWorldDataset(
        motions=list(motions), clips_per_motion=clips_per_motion, size=size, num_frames=num_frames, split=split, seed=seed
    )
    entries = []
    for index in range(len(world)):
        item = world[index]  # rendered once here: world clips are tiny
        video = item["video"]
        motion = item["motion"]
        caption = item.get("caption", motion.replace("_", " "))
        entries.append(
            ClipEntry(
                f"motion_world://{split}/{motion}/" + (f"scene{item['scene_seed']}" if "scene_seed" in item else str(index)),
                motion,
                caption,
                load=lambda video=video, **options: _slice(video, **options),
                count=lambda video=video, **_: video.shape[0],
            )
        )
    return entries


def _slice(video: torch.Tensor, num_frames: int | None = None, stride: int = 1, start: int = 0, **_) -> torch.Tensor:
    stop = None if num_frames is None else start + (num_frames - 1) * stride + 1
    return video[start:stop:stride]


def shuffled_by_motion(entries: list[ClipEntry], seed: int) -> dict[str, list[ClipEntry]]:
    """Each motion's clips in a seeded order: the order in which the splits try them."""
    by_motion: dict[str, list[ClipEntry]] = {}
    for entry in entries:
        by_motion.setdefault(entry.motion, []).append(entry)
    for motion, clips in by_motion.items():
        random.Random(f"{seed}/{motion}").shuffle(clips)
    return by_motion
