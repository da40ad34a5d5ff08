"""Write clips to .mp4/.mov/.mkv/.avi (H.264), .webm (VP9), .gif, or a folder of PNG frames.

Every file goes through `utils.atomic_path`, so a crash never leaves half a video behind.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

from miva_lightning.data.layout import to_uint8_fhwc
from miva_lightning.utils import atomic_path

H264_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi")
WRITABLE_SUFFIXES = (*H264_SUFFIXES, ".webm", ".gif")
GIF_COMMENT_PREFIX = "miva-fps="


def write_video(
    path: str | os.PathLike, video: torch.Tensor | np.ndarray, fps: float = 8, crf: int = 12
) -> Path:
    """Write `video` (float `f c h w` in [0, 1], or uint8 numpy `f h w c`) to `path`.

    The format follows the suffix. H.264 uses yuv420p (plays everywhere) when height and width
    are even, and yuv444p otherwise (yuv420p cannot hold odd sizes; some players cannot show
    4:4:4, but the exact size survives). `crf` is x264's quality (0 lossless, 23 its default);
    12 keeps tiny synthetic clips close to the input. Returns the path.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITABLE_SUFFIXES:
        raise ValueError(
            f"cannot write {path}: unsupported suffix {suffix!r}; use one of {', '.join(WRITABLE_SUFFIXES)} "
            "(or write_frames for a folder of PNGs)"
        )
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    frames = to_uint8_fhwc(video)
    if len(frames) == 0:
        raise ValueError(f"cannot write {path}: the video has no frames")
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            _write_gif(tmp, frames, fps)
        else:
            _write_with_pyav(tmp, frames, fps, suffix, crf)
    return path


def write_frames(folder: str | os.PathLike, video: torch.Tensor | np.ndarray, suffix: str = ".png") -> Path:
    """Write one image per frame, `00000.png`, `00001.png`, ... into `folder` (created)."""
    folder = Path(folder)
    for index, frame in enumerate(to_uint8_fhwc(video)):
        with atomic_path(folder / f"{index:05d}{suffix}") as tmp:
            Image.fromarray(frame).save(tmp)
    return folder


def _write_with_pyav(tmp: Path, frames: np.ndarray, fps: float, suffix: str, crf: int) -> None:
    height, width = frames.shape[1:3]
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(tmp), mode="w") as container:
        if suffix == ".webm":
            stream = container.add_stream("libvpx-vp9", rate=rate, options={"crf": str(crf), "b": "0"})
            stream.pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
        else:
            stream = container.add_stream("libx264", rate=rate, options={"crf": str(crf)})
            stream.pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
        stream.width, stream.height = width, height
        stream.codec_context.thread_count = 1  # tiny clips; the machine's cores are shared
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder
            container.mux(packet)


def _write_gif(tmp: Path, frames: np.ndarray, fps: float) -> None:
    # Pillow merges identical consecutive frames into one longer frame; the fps comment lets
    # the GIF reader expand them back to the written frame count.
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(
        tmp,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=round(1000 / fps),
        loop=0,
        comment=f"{GIF_COMMENT_PREFIX}{fps:g}",
    )
