"""I3D Kinetics-400 features for FVD, from a LOCAL weights file (nothing is ever downloaded).

Supported file: StyleGAN-V's TorchScript port `i3d_torchscript.pt` (shown equal to the TF-Hub network
FVD was defined with), called as `net(x, rescale=False, resize=False, return_features=True)` on
`b c t h w` -> 400-d logits. Preprocessing is done here, explicitly: the first 16 frames, each resized
directly (bilinear, no crop) to 224x224, values mapped from [0, 1] to [-1, 1].

Not supported (reported unavailable with the reason): state-dict ports such as TATS'
`i3d_pretrained_400.pt` (they need the InceptionI3d code, not written yet), and pytorch-i3d's
`rgb_imagenet.pt`, which is a DIFFERENT network (not FVD).

Weights are identified by SHA-256. `PINNED_SHA256` holds hashes verified by the project; it is empty
because no verified hash was available when this was written (none is invented). An unpinned file is
used, its hash is recorded in every result, and a warning says it is unpinned.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from miva_lightning.config import REPO_ROOT
from miva_lightning.metrics.extractors import VideoFeatureExtractor, check_videos
from miva_lightning.utils import file_sha256

WEIGHTS_ENV = "MIVA_I3D_WEIGHTS"
DEFAULT_WEIGHTS = REPO_ROOT / "artifacts" / "metrics" / "weights" / "i3d_torchscript.pt"
PINNED_SHA256: dict[str, str] = {}  # sha256 -> description; add only hashes checked against TF-Hub FVD
NOT_FVD_FILES = {"rgb_imagenet.pt": "pytorch-i3d's rgb_imagenet.pt is a different network, not FVD's"}
CLIP_FRAMES = 16
INPUT_SIZE = 224
_warned_unpinned: set[str] = set()


def preprocess_for_i3d(videos: Tensor) -> Tensor:
    """`b f c h w` in [0, 1] -> `b c 16 224 224` in [-1, 1]: first 16 frames, direct bilinear resize."""
    check_videos(videos, CLIP_FRAMES)
    frames = rearrange(videos[:, :CLIP_FRAMES].float(), "b f c h w -> (b f) c h w")
    frames = F.interpolate(frames, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    frames = frames.clamp(0, 1) * 2 - 1
    return rearrange(frames, "(b f) c h w -> b c f h w", b=videos.shape[0])


class I3DFeatures(VideoFeatureExtractor):
    """400-d I3D logits of 16-frame clips; `available` is False (with a reason) when weights are missing."""

    name = "i3d_k400_torchscript"
    num_features = 400
    per_frame = False

    def __init__(self, network: torch.jit.ScriptModule | None, path: Path | None, sha256: str | None) -> None:
        super().__init__()
        self.network = network
        self.path, self.sha256 = path, sha256

    @torch.no_grad()
    def forward(self, videos: Tensor) -> Tensor:
        if self.network is None:
            raise RuntimeError(f"I3D is unavailable: {self.unavailable_reason}")
        logits = self.network(preprocess_for_i3d(videos), rescale=False, resize=False, return_features=True)
        return logits.reshape(videos.shape[0], self.num_features)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "weights_path": str(self.path) if self.path else None,
            "weights_sha256": self.sha256,
            "weights_pinned": self.sha256 in PINNED_SHA256 if self.sha256 else False,
            "preprocessing": f"first {CLIP_FRAMES} frames, bilinear resize to {INPUT_SIZE}x{INPUT_SIZE} (no crop), [-1, 1]",
        }


def resolve_weights_path(weights_path: str | os.PathLike | None) -> Path:
    if weights_path:
        return Path(weights_path)
    return Path(os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS)


def load_i3d_extractor(weights_path: str | os.PathLike | None = None) -> I3DFeatures:
    """The I3D extractor from a local file: argument, else $MIVA_I3D_WEIGHTS, else DEFAULT_WEIGHTS.

    Never raises for a missing or unusable file: the extractor is marked unavailable with the reason,
    and metrics built on it report NaN.
    """
    path = resolve_weights_path(weights_path)
    if not path.is_file():
        extractor = I3DFeatures(None, None, None)
        extractor.mark_unavailable(
            f"I3D weights not found at {path}; put StyleGAN-V's i3d_torchscript.pt there or set {WEIGHTS_ENV}"
        )
        return extractor
    sha256 = file_sha256(path)
    if path.name in NOT_FVD_FILES:
        extractor = I3DFeatures(None, path, sha256)
        extractor.mark_unavailable(NOT_FVD_FILES[path.name])
        return extractor
    try:
        network = torch.jit.load(str(path), map_location="cpu").eval()
    except RuntimeError as error:
        extractor = I3DFeatures(None, path, sha256)
        extractor.mark_unavailable(
            f"{path} is not a TorchScript archive ({str(error).splitlines()[0]}); only StyleGAN-V's "
            "i3d_torchscript.pt is supported (state-dict ports such as TATS' are not)"
        )
        return extractor
    if sha256 not in PINNED_SHA256 and sha256 not in _warned_unpinned:
        _warned_unpinned.add(sha256)
        warnings.warn(
            f"I3D weights {path} have sha256 {sha256}, which is not pinned as the TF-Hub FVD network; "
            "the hash is recorded with every number, check it before comparing with published FVDs"
        )
    return I3DFeatures(network, path, sha256)
