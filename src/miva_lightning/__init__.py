"""miva-lightning: few-shot motion adapters for video diffusion models."""

__version__ = "0.1.0"
