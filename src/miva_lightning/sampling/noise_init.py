"""Initial-noise options of image-to-video sampling (docs/METHOD.md, "Inference").

All options off gives plain Gaussian noise `b c f h w` scaled by the scheduler's `init_noise_sigma`.
The switches, applied in this order:

1. `shared_noise_ratio` r (LAMP): every Gaussian draw below mixes `shared`, one `b c 1 h w` draw
   broadcast over frames, into the per-frame noise; `shared_noise_formula` says how:
   - "variance" (this project's reading: r is a share of the variance):
     `sqrt(r) * shared + sqrt(1 - r) * per_frame`, unit variance, inter-frame correlation exactly r.
   - "linear" (the authors' code, after LAMP): `r * shared + (1 - r) * per_frame`. NOT unit variance:
     the variance is r^2 + (1 - r)^2 and the inter-frame correlation r^2 / (r^2 + (1 - r)^2). At
     r = 0.05: variance 0.905, correlation 0.00276, so "variance" at the same r correlates the frames
     about 18x more. (Their `shared` is frame 1's own draw, which frame 1 keeps unmixed and then loses
     to the clean image latent; for frames 2..F that is the same as a separate shared draw.)
2. `first_frame_forward_t`: the clean first-frame latent repeated over all frames is forward-diffused
   to timestep t with `scheduler.add_noise` (so frames start from a noisy copy of the image).
3. `dct_lowfreq_cutoff` (needs 2.): keep the low spatial DCT frequencies of that noised latent and take
   the high frequencies from fresh noise. The filter is SPATIAL ONLY, per frame and channel: the
   reference lineage (LAMP-style code) applies a 2-D DCT to the last two axes of `b c f h w` and keeps
   the top-left rectangle of `int(h * cutoff) x int(w * cutoff)` coefficients. Over frames the noised
   static video differs only by its noise, so a temporal low-pass would mostly average noise. (The
   authors' code takes the high frequencies from the draw it forward-diffused, not a fresh one; the low
   and high DCT coefficients of Gaussian noise are independent, so the distribution is the same.)
4. `adain_to_first_frame` (after the last step, `finalize_latents`): every frame's per-channel
   mean/std over (h, w) is set to those of the clean first-frame latent.

The sampler decides from which timestep the schedule starts; these functions only build tensors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from diffusers.utils.torch_utils import randn_tensor
from einops import repeat

SHARED_NOISE_FORMULAS = ("variance", "linear")


@dataclass
class NoiseInit:
    """All off = plain Gaussian noise."""

    first_frame_forward_t: int | None = None  # e.g. 975
    dct_lowfreq_cutoff: float | None = None  # e.g. 0.23, fraction of DCT coefficients kept per spatial axis
    shared_noise_ratio: float = 0.0  # e.g. 0.05: how much of the noise all frames share (see the formula)
    shared_noise_formula: str = "variance"  # "variance" (unit variance, correlation r) | "linear" (the authors')
    adain_to_first_frame: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.shared_noise_ratio <= 1.0:
            raise ValueError(f"NoiseInit.shared_noise_ratio must be in [0, 1], got {self.shared_noise_ratio}")
        if self.shared_noise_formula not in SHARED_NOISE_FORMULAS:
            raise ValueError(
                f"NoiseInit.shared_noise_formula must be one of {SHARED_NOISE_FORMULAS}, got {self.shared_noise_formula!r}"
            )
        if self.dct_lowfreq_cutoff is not None:
            if not 0.0 <= self.dct_lowfreq_cutoff <= 1.0:
                raise ValueError(f"NoiseInit.dct_lowfreq_cutoff must be in [0, 1], got {self.dct_lowfreq_cutoff}")
            if self.first_frame_forward_t is None:
                raise ValueError(
                    "NoiseInit.dct_lowfreq_cutoff mixes the low frequencies of the forward-diffused first frame: "
                    "set first_frame_forward_t too (e.g. 975) or set dct_lowfreq_cutoff to null"
                )


def as_noise_init(value: NoiseInit | Mapping | None) -> NoiseInit | None:
    """A `NoiseInit` from what users pass: None / {} (plain noise), a NoiseInit, or a mapping of its fields
    (a Hydra/OmegaConf node or a dict such as {"first_frame_forward_t": 975})."""
    if value is None or isinstance(value, NoiseInit):
        return value
    if isinstance(value, Mapping):
        if not value:
            return None
        known = set(NoiseInit.__dataclass_fields__)
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"noise_init keys {unknown} unknown; use some of {sorted(known)}")
        return NoiseInit(**value)
    raise TypeError(f"noise_init must be None, a NoiseInit or a mapping of its fields, got {type(value).__name__}")


def shared_noise_weights(ratio: float, formula: str = "variance") -> tuple[float, float]:
    """(weight of the shared draw, weight of the per-frame draw) of `formula` at `ratio`."""
    if formula == "variance":
        return math.sqrt(ratio), math.sqrt(1.0 - ratio)
    if formula == "linear":
        return ratio, 1.0 - ratio
    raise ValueError(f"shared_noise_formula must be one of {SHARED_NOISE_FORMULAS}, got {formula!r}")


def shared_noise_statistics(ratio: float, formula: str = "variance") -> tuple[float, float]:
    """Closed form (variance of every element, correlation between two frames) of the mixed noise."""
    shared, per_frame = shared_noise_weights(ratio, formula)
    variance = shared**2 + per_frame**2
    return variance, shared**2 / variance


def draw_noise(
    shape: tuple[int, ...], shared_noise_ratio: float, generator, device, dtype, formula: str = "variance"
) -> torch.Tensor:
    """Gaussian noise `b c f h w` whose frames share `shared_noise_ratio` of it by `formula` (module doc);
    ratio 0 is plain unit Gaussian noise under either formula."""
    per_frame = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
    if shared_noise_ratio == 0.0:
        return per_frame
    b, c, _, h, w = shape
    shared = randn_tensor((b, c, 1, h, w), generator=generator, device=device, dtype=dtype)
    shared_weight, per_frame_weight = shared_noise_weights(shared_noise_ratio, formula)
    return shared_weight * shared + per_frame_weight * per_frame


def dct_matrix(n: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Orthonormal DCT-II matrix D (n x n): coefficients = D @ signal, signal = D.T @ coefficients.

    Hand-written because torch has no DCT; a matrix is exact, differentiable, runs on any device, and
    latent sides (<= 128) keep it cheap. Checked against scipy.fft.dct(norm="ortho") in the tests.
    """
    k = torch.arange(n, device=device, dtype=torch.float64)[:, None]
    i = torch.arange(n, device=device, dtype=torch.float64)[None, :]
    basis = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    basis[0] /= math.sqrt(2.0)
    return basis.to(dtype)


def spatial_dct(x: torch.Tensor) -> torch.Tensor:
    """2-D DCT-II over the last two axes (h, w)."""
    dh = dct_matrix(x.shape[-2], x.device, x.dtype)
    dw = dct_matrix(x.shape[-1], x.device, x.dtype)
    return dh @ x @ dw.T


def spatial_idct(coefficients: torch.Tensor) -> torch.Tensor:
    """Inverse of `spatial_dct`."""
    dh = dct_matrix(coefficients.shape[-2], coefficients.device, coefficients.dtype)
    dw = dct_matrix(coefficients.shape[-1], coefficients.device, coefficients.dtype)
    return dh.T @ coefficients @ dw


def lowfreq_mask(h: int, w: int, cutoff: float, device=None) -> torch.Tensor:
    """1 on the top-left `int(h * cutoff) x int(w * cutoff)` DCT coefficients, 0 elsewhere."""
    mask = torch.zeros(h, w, device=device)
    mask[: int(h * cutoff), : int(w * cutoff)] = 1.0
    return mask


def split_frequencies(x: torch.Tensor, cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) spatial-frequency parts of `... h w`; `low + high == x` up to rounding."""
    original_dtype = x.dtype
    coefficients = spatial_dct(x.float())
    mask = lowfreq_mask(x.shape[-2], x.shape[-1], cutoff, x.device)
    low = spatial_idct(coefficients * mask)
    high = spatial_idct(coefficients * (1.0 - mask))
    return low.to(original_dtype), high.to(original_dtype)


def prepare_initial_latents(
    first_latent: torch.Tensor,
    num_frames: int,
    scheduler,
    noise_init: NoiseInit | None = None,
    generator: torch.Generator | list[torch.Generator] | None = None,
) -> torch.Tensor:
    """Starting latents `b c f h w` for sampling, from the clean first-frame latent `b c h w`.

    Pure noise is multiplied by `scheduler.init_noise_sigma`; a forward-diffused latent is not, because
    `scheduler.add_noise` already returns it at the scheduler's own scale.
    """
    if first_latent.ndim != 4:
        raise ValueError(f"first_latent must be `b c h w`, got shape {tuple(first_latent.shape)}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    noise_init = noise_init or NoiseInit()
    b, c, h, w = first_latent.shape
    shape = (b, c, num_frames, h, w)
    device, dtype = first_latent.device, first_latent.dtype

    init_noise_sigma = getattr(scheduler, "init_noise_sigma", 1.0)  # flow-matching schedulers have none
    mix = (noise_init.shared_noise_ratio, generator, device, dtype, noise_init.shared_noise_formula)
    noise = draw_noise(shape, *mix)
    if noise_init.first_frame_forward_t is None:
        return noise * init_noise_sigma
    if not hasattr(scheduler, "add_noise"):
        raise ValueError(
            f"{type(scheduler).__name__} has no add_noise: first_frame_forward_t needs a DDPM/DDIM-style "
            "scheduler; set noise_init.first_frame_forward_t to null for this backbone"
        )

    t = int(noise_init.first_frame_forward_t)
    num_train_timesteps = scheduler.config.num_train_timesteps
    if not 0 <= t < num_train_timesteps:
        raise ValueError(f"NoiseInit.first_frame_forward_t must be in [0, {num_train_timesteps - 1}], got {t}")
    static_video = repeat(first_latent, "b c h w -> b c f h w", f=num_frames)
    timesteps = torch.full((b,), t, device=device, dtype=torch.long)
    noised = scheduler.add_noise(static_video, noise, timesteps)
    if noise_init.dct_lowfreq_cutoff is None:
        return noised

    fresh = draw_noise(shape, *mix) * init_noise_sigma
    low_of_noised, _ = split_frequencies(noised, noise_init.dct_lowfreq_cutoff)
    _, high_of_fresh = split_frequencies(fresh, noise_init.dct_lowfreq_cutoff)
    return low_of_noised + high_of_fresh


def adain_to_reference(latents: torch.Tensor, reference: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Give every frame of `b c f h w` the per-channel mean/std over (h, w) of `reference` `b c h w`."""
    mean = latents.mean(dim=(-2, -1), keepdim=True)
    std = latents.std(dim=(-2, -1), keepdim=True)
    ref_mean = reference.mean(dim=(-2, -1), keepdim=True)[:, :, None]
    ref_std = reference.std(dim=(-2, -1), keepdim=True)[:, :, None]
    return (latents - mean) / (std + eps) * ref_std + ref_mean


def finalize_latents(
    latents: torch.Tensor, first_latent: torch.Tensor, noise_init: NoiseInit | None = None
) -> torch.Tensor:
    """Post-process the final latents `b c f h w` (AdaIN to the first frame if asked)."""
    noise_init = noise_init or NoiseInit()
    if not noise_init.adain_to_first_frame:
        return latents
    return adain_to_reference(latents, first_latent)
