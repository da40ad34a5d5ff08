"""Read and write clips.

Layout everywhere: a clip is `f c h w`, torch.float32 in [0, 1], RGB (3 channels).
- Grey sources are repeated to 3 channels; 16-bit sources are scaled by 65535.
- Alpha is composited on black (rgb * alpha) by the PyAV, GIF and frame-folder backends;
  decord cannot see alpha and returns the stored colour.
- Frames larger than `max_pixels` are downscaled on read (aspect kept), or refused with
  `oversize="error"`.

Backends: "decord", "pyav", "gif" (Pillow), "frames" (a folder of images), and "auto", which
picks "frames" for folders, "gif" for .gif, and for videos tries decord (when installed) and
falls back to PyAV on any decord failure or timeout.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from miva_lightning.data.readers import (
    IMAGE_SUFFIXES,
    UnsupportedFormatError,
    VideoReadError,
    count_frames_folder,
    count_frames_gif,
    count_frames_pyav,
    decord_available,
    read_decord,
    read_frames_folder,
    read_gif,
    read_pyav,
)
from miva_lightning.data.readers.sampling import validate_sampling
from miva_lightning.data.writer import WRITABLE_SUFFIXES, write_frames, write_video

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".m4v")
CLIP_SUFFIXES = (*VIDEO_SUFFIXES, ".gif")
BACKENDS = ("auto", "decord", "pyav", "gif", "frames")
DEFAULT_MAX_PIXELS = 3840 * 2160


def read_video(
    path: str | os.PathLike,
    backend: str = "auto",
    num_frames: int | None = None,
    stride: int = 1,
    start: int = 0,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    oversize: str = "downscale",
    timeout_s: float = 60.0,
) -> torch.Tensor:
    """Frames `start, start + stride, ...` (`num_frames` of them, or all when None) of a video
    file, GIF or frame folder, as float32 `f c h w` in [0, 1].

    Raises `VideoReadError` (or a subclass: `ClipTooShortError`, `UnsupportedFormatError`,
    `VideoTooLargeError`, `DecodeTimeoutError`) naming the file and what to change.
    """
    validate_sampling(num_frames, stride, start)
    path = Path(path)
    kind = _kind(path, backend)
    options = dict(num_frames=num_frames, stride=stride, start=start, max_pixels=max_pixels, oversize=oversize)
    if kind == "frames":
        return read_frames_folder(path, **options)
    if kind == "gif":
        return read_gif(path, **options)
    if kind == "decord":
        return read_decord(path, timeout_s=timeout_s, **options)
    if kind == "pyav":
        return read_pyav(path, timeout_s=timeout_s, **options)
    # auto on a video file
    if decord_available():
        try:
            return read_decord(path, timeout_s=timeout_s, **options)
        except Exception as error:  # PyAV decodes in order and gives the authoritative answer
            log.info("decord failed on %s (%s); reading with PyAV", path, error)
    return read_pyav(path, timeout_s=timeout_s, **options)


def count_frames(path: str | os.PathLike, timeout_s: float = 60.0) -> int:
    """Frames a clip really has: decoded by PyAV (never the header's claim), within `timeout_s`."""
    path = Path(path)
    kind = _kind(path, "auto")
    if kind == "frames":
        return count_frames_folder(path)
    if kind == "gif":
        return count_frames_gif(path)
    return count_frames_pyav(path, timeout_s=timeout_s)


def is_clip_path(path: Path) -> bool:
    return path.suffix.lower() in CLIP_SUFFIXES or path.is_dir()


def _kind(path: Path, backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not path.exists():
        raise VideoReadError(path, "no such file or folder")
    if path.is_dir():
        if backend not in ("auto", "frames"):
            raise VideoReadError(path, f"is a folder (frame images); use backend='frames' or 'auto', not {backend!r}")
        return "frames"
    suffix = path.suffix.lower()
    if suffix not in CLIP_SUFFIXES:
        raise UnsupportedFormatError(
            path,
            f"unsupported extension {suffix!r}; supported: {', '.join(CLIP_SUFFIXES)} files, "
            f"or folders of {', '.join(IMAGE_SUFFIXES)} frames",
        )
    if backend == "auto":
        return "gif" if suffix == ".gif" else "auto"
    if backend == "gif" and suffix != ".gif":
        raise UnsupportedFormatError(path, "backend='gif' reads only .gif files; use backend='auto'")
    if backend == "frames":
        raise VideoReadError(path, "backend='frames' reads folders of images; use backend='auto' for files")
    return backend


__all__ = [
    "BACKENDS",
    "CLIP_SUFFIXES",
    "VIDEO_SUFFIXES",
    "WRITABLE_SUFFIXES",
    "count_frames",
    "is_clip_path",
    "read_video",
    "write_frames",
    "write_video",
]
