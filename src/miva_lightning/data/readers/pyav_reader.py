"""PyAV backend: decodes frames in order, so it never trusts the header's frame count.

It is the reference backend: `count_frames` and the decord fallback both rely on it.
A stream that breaks part-way (a truncated download) yields the frames before the break, with
a warning naming the file.
"""

from __future__ import annotations

import time
import warnings
from contextlib import closing
from typing import Iterator

import av
import numpy as np
import torch

from miva_lightning.data.layout import uint8_to_float
from miva_lightning.data.readers.errors import DecodeTimeoutError, VideoReadError
from miva_lightning.data.readers.sampling import decode_size, too_short, validate_sampling


def count_frames_pyav(path, timeout_s: float = 60.0) -> int:
    """Frames that actually decode (not the header's claim), within `timeout_s` seconds."""
    return sum(1 for _ in _decoded_frames(path, timeout_s))


def read_pyav(
    path,
    num_frames: int | None = None,
    stride: int = 1,
    start: int = 0,
    max_pixels: int | None = None,
    oversize: str = "downscale",
    timeout_s: float = 60.0,
) -> torch.Tensor:
    validate_sampling(num_frames, stride, start)
    kept: list[np.ndarray] = []
    total = 0
    with closing(_decoded_frames(path, timeout_s)) as frames:
        for index, frame in enumerate(frames):
            total = index + 1
            if index < start or (index - start) % stride:
                continue
            try:
                kept.append(_to_rgb_uint8(path, frame, max_pixels, oversize))
            except VideoReadError:  # too large: already says what to change
                raise
            except (av.FFmpegError, ValueError) as error:  # an odd pixel format or a broken frame
                raise VideoReadError(path, f"frame {index} cannot be converted to RGB ({error}); re-encode it (e.g. to H.264 .mp4) or remove it") from error
            if num_frames is not None and len(kept) == num_frames:
                break
    if not kept or (num_frames is not None and len(kept) < num_frames):
        raise too_short(path, total, num_frames or 1, stride, start)
    return uint8_to_float(np.stack(kept))


def _decoded_frames(path, timeout_s: float) -> Iterator[av.VideoFrame]:
    deadline = time.monotonic() + timeout_s
    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError) as error:
        raise VideoReadError(path, f"not a readable video ({error}); re-encode it (e.g. to H.264 .mp4) or remove it") from error
    with container:
        if not container.streams.video:
            raise VideoReadError(path, "the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_count = 1  # tiny clips; cores are shared
        decoded = 0
        try:
            for frame in container.decode(stream):
                if time.monotonic() > deadline:
                    raise DecodeTimeoutError(path, f"decoding took longer than {timeout_s} s; raise timeout_s or shorten the file")
                decoded += 1
                yield frame
        except av.FFmpegError as error:
            if decoded == 0:
                raise VideoReadError(path, f"no frame could be decoded ({error}); the file is corrupt, re-encode or remove it") from error
            warnings.warn(f"{path}: stream is damaged after frame {decoded} ({error}); using the first {decoded} frames", stacklevel=3)


def _to_rgb_uint8(path, frame: av.VideoFrame, max_pixels: int | None, oversize: str) -> np.ndarray:
    height, width = decode_size(path, frame.height, frame.width, max_pixels, oversize)
    if len(frame.format.components) in (2, 4):  # grey+alpha or colour+alpha: composite on black
        rgba = frame.to_ndarray(format="rgba", width=width, height=height).astype(np.float32)
        return np.round(rgba[..., :3] * (rgba[..., 3:4] / 255.0)).astype(np.uint8)
    return frame.to_ndarray(format="rgb24", width=width, height=height)
