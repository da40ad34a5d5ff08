"""Training from precomputed latents, so that the VAE and the text encoder need not sit on the training device.

`LatentClipDataset(dataset, codec)` encodes, once and before training, every window a `FewShotClipDataset`
can yield, and then serves the same items with `"latents"` (`c f' h w`) in place of `"video"`. The training
step passes them to `diffusion_loss(latents=...)` and never calls the codec; the module parks the codec and
the text encoder on the CPU until a preview needs them (`FewShotModule.park_encoders`). A few-shot set is
small, so encoding it all up front is cheap; it pays off with a real VAE (SD1.5, Wan), not with the embedded
pixel codec, which is lossless and costs nothing.

Items are those of the pixel dataset exactly: the same (seed, epoch, index) draw of start frame and flip
(`FewShotClipDataset.draw`). What is cached, and why it is exact:
- frame-wise codecs (`temporal_downscale == 1`: the SD VAE, the pixel codec) encode each frame alone, so every
  frame of a clip is encoded once (and once more mirrored when `flip_p > 0`: the latent of a mirrored frame
  is not the mirrored latent), and an item slices its window out of them (`start : start + needed : stride`);
- temporal codecs (Wan's causal VAE) see a window's frames together: one latent per (clip, start, flip).
Both need a deterministic encode (`vae_sample_posterior: false`, the posterior mean): a cache would freeze one
posterior sample per window, where training from pixels draws a fresh one every step.
With `prompt_encoder` (captions -> `b L D`), each distinct caption is embedded once too (`"prompt_embeds"`).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import Dataset

from miva_lightning.data.clip_dataset import FewShotClipDataset
from miva_lightning.data.readers.sampling import frames_needed


class LatentClipDataset(Dataset):
    """Keys `index` or `(index, epoch)` as `FewShotClipDataset`; items `{"latents", "motion", "caption", "path"}`
    (+ `"prompt_embeds"` `L D` with a `prompt_encoder`). Latents stay in the codec's dtype, on the CPU."""

    def __init__(
        self,
        dataset: FewShotClipDataset,
        codec: Any,
        prompt_encoder: Callable[[Sequence[str]], torch.Tensor] | None = None,
    ):
        if getattr(codec, "sample_posterior", False):
            warnings.warn(
                "latent cache with vae_sample_posterior=true: each window keeps ONE posterior sample for the whole run "
                "(training from pixels draws a new one every step); set backbone.vae_sample_posterior=false",
                stacklevel=2,
            )
        self.dataset = dataset
        self.frame_wise = int(getattr(codec, "temporal_downscale", 1)) == 1
        flips = (False, True) if dataset.train and dataset.flip_p > 0 else (False,)
        self.latents: dict[tuple, torch.Tensor] = {}
        with torch.no_grad():
            for index in range(len(dataset)):
                frames = dataset.clip_frames(index)
                for flip in flips:
                    mirrored = frames.flip(-1) if flip else frames
                    if self.frame_wise:  # in chunks of one window: the memory a step from pixels needs
                        parts = mirrored.split(dataset.num_frames)
                        self.latents[index, flip] = torch.cat([self._encode(codec, part) for part in parts], dim=1)
                        continue
                    for start in range(dataset.window_starts(index) if dataset.train else 1):
                        self.latents[index, start, flip] = self._encode(codec, mirrored[self._window(index, start)])
            captions = sorted({entry.caption for entry in dataset.entries})
            embeds = prompt_encoder(captions).detach().cpu() if prompt_encoder is not None and captions else None
        self.prompt_embeds = {} if embeds is None else dict(zip(captions, embeds))

    @staticmethod
    def _encode(codec: Any, frames: torch.Tensor) -> torch.Tensor:
        return codec.encode(frames[None])[0].detach().cpu()  # f c h w -> c f' h w

    def _window(self, index: int, start: int) -> slice:
        stride = self.dataset.strides[index]
        return slice(start, start + frames_needed(self.dataset.num_frames, stride), stride)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        start, flip = self.dataset.draw(index, epoch)
        if self.frame_wise:
            latents = self.latents[index, flip][:, self._window(index, start)]
        else:
            latents = self.latents[index, start, flip]
        entry = self.dataset.entries[index]
        item = {"latents": latents.contiguous(), "motion": entry.motion, "caption": entry.caption, "path": entry.path}
        if entry.caption in self.prompt_embeds:
            item["prompt_embeds"] = self.prompt_embeds[entry.caption]
        return item
