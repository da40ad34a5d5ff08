"""Training: the shared diffusion loss, base pretraining (and MIVA training modules)."""

from miva_lightning.training.diffusion_loss import diffusion_loss, sample_timesteps

__all__ = ["diffusion_loss", "sample_timesteps"]
