"""GIF backend (Pillow). Frames are composed by Pillow (disposal, partial frames), so each
frame read is the full picture a viewer shows.

GIFs written by `write_video` carry a `miva-fps=` comment: Pillow merges identical consecutive
frames when writing, and the reader repeats such frames by their duration to restore the
written frame count. Other GIFs give one frame per stored frame, as most readers do.
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange
from PIL import Image, ImageSequence

from miva_lightning.data.readers.images import pil_to_rgb_float, pillow_errors
from miva_lightning.data.readers.sampling import decode_size, frame_indices, validate_sampling
from miva_lightning.data.writer import GIF_COMMENT_PREFIX


def count_frames_gif(path) -> int:
    with pillow_errors(path, "not a readable GIF"), Image.open(path) as image:
        return len(_frame_sources(image))


def read_gif(
    path,
    num_frames: int | None = None,
    stride: int = 1,
    start: int = 0,
    max_pixels: int | None = None,
    oversize: str = "downscale",
) -> torch.Tensor:
    validate_sampling(num_frames, stride, start)  # before the block below: its ValueError is no damaged file
    with pillow_errors(path, "not a readable GIF"), Image.open(path) as image:
        size = decode_size(path, image.height, image.width, max_pixels, oversize)
        sources = _frame_sources(image)
        indices = frame_indices(path, len(sources), num_frames, stride, start)
        decoded: dict[int, np.ndarray] = {}
        frames = []
        for index in indices:
            stored = sources[index]
            if stored not in decoded:
                image.seek(stored)
                decoded[stored] = pil_to_rgb_float(image, size)
            frames.append(decoded[stored])
    return rearrange(torch.from_numpy(np.stack(frames)), "f h w c -> f c h w")


def _frame_sources(image: Image.Image) -> list[int]:
    """For each output frame, the stored frame it shows."""
    comment = image.info.get("comment", b"")
    comment = comment.decode(errors="ignore") if isinstance(comment, bytes) else str(comment)
    if not comment.startswith(GIF_COMMENT_PREFIX):
        return list(range(getattr(image, "n_frames", 1)))
    period_ms = 1000 / float(comment[len(GIF_COMMENT_PREFIX):])
    sources = []
    for stored, frame in enumerate(ImageSequence.Iterator(image)):
        repeats = max(1, round(frame.info.get("duration", period_ms) / period_ms))
        sources.extend([stored] * repeats)
    image.seek(0)
    return sources
