"""FewShotModule: what every few-shot method of the comparison shares (MIVA, MotionLoRA, LAMP, full FT).

A subclass names the tensors it trains (`trainable_parameters`, `trainable_modules`, `trainable_state_keys`);
everything else of the backbone (UNet, codec, text encoder) is frozen: requires_grad False, kept in eval mode
even when Lightning calls `train()`, never given to the optimizer, never written to a checkpoint. Shared:
- the diffusion loss on frames 2..F with frame 1 clean, conditioned on the empty prompt (`prompt="empty"`,
  MIVA and full FT) or on each clip's caption (`prompt="caption"`), noise from the module's own generator;
- AdamW with warmup and schedule from `MivaOptimization`; the mean of the recent training losses;
- checkpoints with the trained tensors only, plus the RNG states: with `StepKeyedBatches` a resumed run
  repeats an uninterrupted one exactly;
- batches of pixels (`"video"`) or of precomputed latents (`"latents"`, `data/latent_cache.py`); with the
  latter `park_encoders()` keeps the codec and text encoder off the training device except for previews;
- validation samples preview videos from held-out first frames (the `MivaPreviews` callback writes them).
"""

from __future__ import annotations

import abc
import warnings
from collections import deque
from typing import Any

import lightning as L
import torch
from torch import nn

from miva_lightning.backbones import Backbone
from miva_lightning.sampling.noise_init import as_noise_init
from miva_lightning.training.diffusion_loss import diffusion_loss
from miva_lightning.training.optimization import MivaOptimization, as_optimization, optimizer_and_schedule
from miva_lightning.training.rng_states import RNG_STATES_KEY, capture_rng_states, restore_rng_states

RECENT_LOSSES = 50  # how many training losses `recent_loss` averages (one batch of 10 clips is noisy)
PROMPT_MODES = ("empty", "caption")


class FewShotModule(L.LightningModule, abc.ABC):
    """Backbone with a subclass-chosen trainable part; see the module docstring."""

    trained_part = "trained part"  # how errors name what trains ("MIVA", "UNet", ...)

    def __init__(
        self,
        backbone: Backbone,
        optimization: MivaOptimization | dict | None = None,
        noise_seed: int = 0,
        timestep_distribution: str = "uniform",
        high_noise_power: float = 2.0,
        preview_num_frames: int | None = None,
        preview_steps: int = 25,
        preview_seed: int = 0,
        noise_init: Any = None,
        prompt: str = "empty",
        preview_prompt: str | None = None,
        preview_guidance: float = 1.0,
    ):
        super().__init__()
        if prompt not in PROMPT_MODES:
            raise ValueError(f"prompt={prompt!r}: use one of {PROMPT_MODES}")
        self.optimization = as_optimization(optimization)
        self.backbone = backbone
        # Registered as children so Lightning moves them to the device; filtered out of checkpoints below.
        self.unet = backbone.unet
        self.codec = backbone.codec if isinstance(backbone.codec, nn.Module) else None
        self.text_encoder = backbone.text_encoder
        for frozen in self.frozen_modules():
            frozen.requires_grad_(False)
            frozen.eval()
        self.register_buffer("empty_prompt", self._empty_prompt_embeds(), persistent=False)
        self.prompt_mode = prompt
        self.noise_seed = int(noise_seed)
        self.noise_generator = torch.Generator().manual_seed(self.noise_seed)
        self.timestep_distribution = timestep_distribution
        self.high_noise_power = float(high_noise_power)
        self.preview_num_frames = preview_num_frames or int(backbone.config.get("num_frames", 8))
        self.preview_steps = int(preview_steps)
        self.preview_seed = int(preview_seed)
        self.preview_prompt = preview_prompt
        self.preview_guidance = float(preview_guidance)
        self.noise_init = as_noise_init(noise_init)
        self.strict_loading = False  # checkpoints carry the trained tensors only; on_load_checkpoint checks them
        self.recent_losses: deque[torch.Tensor] = deque(maxlen=RECENT_LOSSES)  # detached training losses
        self.parked: list[nn.Module] = []  # codec / text encoder kept off the device (`park_encoders`)

    # ----------------------------------------------------------------- what trains (subclasses)
    @abc.abstractmethod
    def trainable_parameters(self) -> list[nn.Parameter]:
        """The parameters the optimizer holds."""

    def trainable_modules(self) -> list[nn.Module]:
        """Modules put in train mode by `train()` (everything else of the backbone stays in eval mode)."""
        return []

    @abc.abstractmethod
    def trainable_state_keys(self) -> set[str]:
        """The `state_dict` keys a checkpoint keeps."""

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [{"params": self.trainable_parameters(), "lr": self.optimization.lr, "name": "trainable"}]

    # ----------------------------------------------------------------- frozen base
    def frozen_modules(self) -> list[nn.Module]:
        return [m for m in (self.unet, self.codec, self.text_encoder) if m is not None]

    def check_only_trainable_part_trains(self) -> None:
        """Call at the end of a subclass's __init__, once its tensors have requires_grad set."""
        trainable_ids = {id(p) for p in self.trainable_parameters()}
        stray = [n for n, p in self.named_parameters() if p.requires_grad and id(p) not in trainable_ids]
        if stray:
            raise RuntimeError(f"parameters outside the {self.trained_part} would train: {stray[:5]} (the rest must stay frozen)")
        if not trainable_ids:
            raise RuntimeError(f"the {self.trained_part} has no trainable parameters: check the config")

    def train(self, mode: bool = True) -> "FewShotModule":
        """Lightning switches modes around validation; the frozen base stays in eval mode regardless."""
        super().train(mode)
        for frozen in self.frozen_modules():
            frozen.eval()
        for module in self.trainable_modules():
            module.train(mode)
        return self

    @torch.no_grad()
    def _empty_prompt_embeds(self) -> torch.Tensor:
        """Embedding `1 L D` of the empty prompt (the denoiser always expects the tensor)."""
        has_text = self.backbone.text_encoder is not None and self.backbone.tokenizer is not None
        if has_text or getattr(self.backbone, "prompt_encoder", None) is not None:
            from miva_lightning.backbones import encode_prompts

            return encode_prompts(self.backbone, [""]).detach()
        dim = self.unet.config.cross_attention_dim
        return torch.zeros(1, 1, dim)

    def prompt_embeds(self, batch_size: int) -> torch.Tensor:
        return self.empty_prompt.expand(batch_size, -1, -1)

    @torch.no_grad()
    def training_prompt_embeds(self, batch: dict[str, Any], batch_size: int) -> torch.Tensor:
        if self.prompt_mode == "empty":
            return self.prompt_embeds(batch_size)
        if "prompt_embeds" in batch:  # embedded once with the cached latents
            return batch["prompt_embeds"]
        from miva_lightning.backbones import encode_prompts

        return encode_prompts(self.backbone, list(batch["caption"])).to(self.empty_prompt.device)

    # ----------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        latents = batch.get("latents")  # b c f h w, precomputed (LatentClipDataset): the codec is not called
        video = batch["video"] if latents is None else None  # b f c h w in [0, 1]
        size = (video if latents is None else latents).shape[0]
        denoiser_dtype = next(self.unet.parameters()).dtype  # as the sampler: a bf16 base gets bf16 prompts
        loss = diffusion_loss(
            self.backbone,
            video,
            self.training_prompt_embeds(batch, size).to(denoiser_dtype),
            generator=self.noise_generator,
            timestep_distribution=self.timestep_distribution,
            high_noise_power=self.high_noise_power,
            latents=latents,
        )
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.recent_losses.append(loss.detach())
        return loss

    # ----------------------------------------------------------------- encoders off the device
    def park_encoders(self) -> None:
        """For training from precomputed latents and prompt embeddings: the codec and the text encoder stop
        being children of the module, so Lightning never moves them to the training device (nor do DDP or
        DeepSpeed wrap or cast them). They wait on the CPU; previews bring them to the device and back."""
        self.parked = [m.cpu() for m in (self.codec, self.text_encoder) if m is not None]
        self.codec = self.text_encoder = None

    def on_validation_start(self) -> None:
        for module in self.parked:
            module.to(self.device)

    def on_validation_end(self) -> None:
        for module in self.parked:
            module.cpu()

    def recent_loss(self) -> float | None:
        """Mean of the last RECENT_LOSSES training losses (None before the first step)."""
        if not self.recent_losses:
            return None
        return float(torch.stack(list(self.recent_losses)).float().mean())

    def configure_optimizers(self) -> dict[str, Any]:
        return optimizer_and_schedule(self.parameter_groups(), self.optimization, self._trainer)  # None: no Trainer

    # ----------------------------------------------------------------- previews
    @torch.no_grad()
    def sample(self, first_frames: torch.Tensor, generator: torch.Generator, progress: bool = False) -> torch.Tensor:
        """Animate first frames `b c h w` in [0, 1] with the module as trained so far -> video `b f c h w`."""
        from miva_lightning.sampling.sampler import sample_video

        embeds = self.prompt_embeds(first_frames.shape[0])
        if self.preview_prompt:
            from miva_lightning.backbones import encode_prompts

            embeds = encode_prompts(self.backbone, [self.preview_prompt] * first_frames.shape[0])
        return sample_video(
            self.backbone,
            first_frames,
            num_frames=self.preview_num_frames,
            prompt_embeds=embeds.to(first_frames.device, first_frames.dtype),
            num_inference_steps=self.preview_steps,
            guidance_scale=self.preview_guidance,
            generator=generator,
            noise_init=self.noise_init,
            progress=progress,
        )

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        first_frames = batch["first_frame"]
        # A private generator per batch: previews repeat across runs and never touch the training RNGs.
        generator = torch.Generator().manual_seed(self.preview_seed + batch_idx)
        video = self.sample(first_frames, generator)
        psnr = first_frame_psnr(video[:, 0], first_frames)
        self.log("val/first_frame_psnr_db", psnr, batch_size=first_frames.shape[0], sync_dist=True)
        return {"video": video.cpu(), "first_frame": first_frames.cpu()}

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = self.trainable_state_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint[RNG_STATES_KEY] = capture_rng_states(self.noise_generator)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # without "state_dict", DeepSpeed restores the weights itself (`AdapterOnlyDeepSpeedStrategy`)
        saved, expected = set(checkpoint.get("state_dict", {})), self.trainable_state_keys()
        missing, unexpected = (expected - saved, saved - expected) if "state_dict" in checkpoint else ((), ())
        if missing or unexpected:
            raise ValueError(
                f"checkpoint does not match this {self.trained_part}: "
                f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}; "
                "resume with the same method and adapter config the checkpoint was trained with"
            )
        states = checkpoint.get(RNG_STATES_KEY)
        if states is None:
            warnings.warn("checkpoint has no RNG states: the resumed run will not repeat the original", stacklevel=2)
            return
        restore_rng_states(states, self.noise_generator)


def first_frame_psnr(generated: torch.Tensor, reference: torch.Tensor, cap_db: float = 100.0) -> torch.Tensor:
    """Mean PSNR (dB, data range 1) over frames `b c h w`; identical frames (infinite PSNR) count as `cap_db`."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    per_frame = peak_signal_noise_ratio(
        generated.float(), reference.float(), data_range=1.0, reduction="none", dim=(1, 2, 3)
    )
    return per_frame.clamp(max=cap_db).mean()
