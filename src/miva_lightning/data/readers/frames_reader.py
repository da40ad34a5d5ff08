"""Folder-of-images backend: `<clip>/*.png|jpg|...`, sorted naturally (frame2 before frame10)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from PIL import Image

from miva_lightning.data.readers.errors import VideoReadError
from miva_lightning.data.readers.images import pil_to_rgb_float, pillow_errors
from miva_lightning.data.readers.sampling import decode_size, frame_indices

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_frame_files(folder) -> list[Path]:
    """Image files in `folder`, naturally sorted; hidden files (e.g. partial writes) ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoReadError(folder, "not a folder of frames")
    try:
        names = list(folder.iterdir())
    except OSError as error:  # e.g. no permission to list it
        raise VideoReadError(folder, f"cannot list the frame folder ({error})") from error
    files = [p for p in names if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    if not files:
        found = sorted(p.name for p in names)[:10]
        raise VideoReadError(folder, f"no frame images ({', '.join(IMAGE_SUFFIXES)}) in the folder; found: {found or 'nothing'}")
    return sorted(files, key=lambda p: natural_key(p.name))


def count_frames_folder(folder) -> int:
    return len(list_frame_files(folder))


def read_frames_folder(
    folder,
    num_frames: int | None = None,
    stride: int = 1,
    start: int = 0,
    max_pixels: int | None = None,
    oversize: str = "downscale",
) -> torch.Tensor:
    files = list_frame_files(folder)
    indices = frame_indices(folder, len(files), num_frames, stride, start)
    frames, size = [], None
    for index in indices:
        with pillow_errors(files[index], "not a readable image"), Image.open(files[index]) as image:
            if size is None:
                size = decode_size(files[index], image.height, image.width, max_pixels, oversize)
                first_size = image.size
            elif image.size != first_size:
                raise VideoReadError(
                    files[index],
                    f"frame is {image.size[0]}x{image.size[1]} but {files[indices[0]].name} is "
                    f"{first_size[0]}x{first_size[1]}; all frames of a clip must have one size",
                )
            frames.append(pil_to_rgb_float(image, size))
    return rearrange(torch.from_numpy(np.stack(frames)), "f h w c -> f c h w")
