"""Sampling: the image-to-video sampler and its initial-noise options."""

from miva_lightning.sampling.noise_init import NoiseInit, as_noise_init, finalize_latents, prepare_initial_latents
from miva_lightning.sampling.sampler import sample_video

__all__ = ["NoiseInit", "as_noise_init", "finalize_latents", "prepare_initial_latents", "sample_video"]
