"""Dense optical flow with OpenCV's Farneback method (weight-free, always available).

Small frames are upsampled before the flow and the flow is brought back to the input grid in
INPUT-pixel units. Work size 64 (x2 at 32 px) measured best on the smooth world scenes: at 128 px
Farneback's polynomial windows see almost no structure on smooth shapes and return near-zero flow
there (pan error 1.2 px/frame at 128 vs 0.15 at 64 over 6 held-out clips at 32 px).
Flow is computed on lightly blurred luminance, contrast-stretched over the whole clip so dim clips use the full
8-bit range.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

WORK_SIZE = 64  # frames are upsampled (integer factor) so that their shorter side is at least this
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.1, flags=0)
LUMA = (0.299, 0.587, 0.114)
DENOISE_SIGMA = 1.0  # Gaussian blur before the flow, in pixels at 32 px (scaled with the width)


def check_video(video: Tensor) -> Tensor:
    if not isinstance(video, torch.Tensor) or video.ndim != 4 or video.shape[1] not in (1, 3):
        shape = tuple(video.shape) if hasattr(video, "shape") else type(video).__name__
        raise ValueError(f"expected one clip as a tensor `f c h w` with c = 1 or 3, got {shape}")
    if video.shape[0] < 2:
        raise ValueError(f"a clip needs at least 2 frames for motion, got {video.shape[0]}")
    return video.detach().to("cpu", torch.float32)


def luminance_uint8(video: Tensor) -> np.ndarray:
    """Grey frames (f, h, w) uint8, lightly blurred, stretched to the clip's own min..max range.

    The blur (DENOISE_SIGMA reference pixels) keeps pixel noise of generated clips from turning into
    flow: without it 2 % Gaussian noise dropped the judge from 100 % to 33 % on world clips.
    """
    video = check_video(video)
    grey = video[:, 0] if video.shape[1] == 1 else torch.einsum("fchw,c->fhw", video, torch.tensor(LUMA))
    sigma = DENOISE_SIGMA * grey.shape[-1] / 32
    grey = torch.from_numpy(np.stack([cv2.GaussianBlur(g, (0, 0), sigma) for g in grey.numpy()]))
    low, high = float(grey.min()), float(grey.max())
    scaled = (grey - low) / max(high - low, 1e-6)
    return (scaled.numpy() * 255.0 + 0.5).astype(np.uint8)


def work_scale(h: int, w: int) -> int:
    """Integer upsampling factor so the shorter side reaches WORK_SIZE (1 for large frames)."""
    return max(1, int(np.ceil(WORK_SIZE / min(h, w))))


def upsample(grey: np.ndarray) -> list[np.ndarray]:
    """Frames (f, h, w) uint8 -> list of frames at the work scale (bicubic)."""
    _, h, w = grey.shape
    k = work_scale(h, w)
    if k == 1:
        return list(grey)
    return [cv2.resize(g, (w * k, h * k), interpolation=cv2.INTER_CUBIC) for g in grey]


def flow_between(big: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """Farneback flow (f-1, 2, h, w) in input pixels from frames at the work scale."""
    k = big[0].shape[1] // w
    flows = []
    for a, b in zip(big[:-1], big[1:]):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, **FARNEBACK)  # (h k, w k, 2), work pixels
        if k > 1:
            flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA) / k
        flows.append(flow.transpose(2, 0, 1))
    return np.stack(flows)


def farneback_flow(video: Tensor) -> Tensor:
    """Flow between consecutive frames: (f-1, 2, h, w) as (dx, dy) in input pixels, x right, y down.

    Flow t maps frame t to frame t+1: a point at p in frame t is at p + flow[t, :, p] in frame t+1.
    """
    grey = luminance_uint8(video)
    _, h, w = grey.shape
    return torch.from_numpy(flow_between(upsample(grey), h, w))
