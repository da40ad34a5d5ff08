"""Backbones: the Backbone contract, the tiny embedded base, and the factory for every kind."""

from miva_lightning.backbones.base import Backbone, LatentCodec
from miva_lightning.backbones.factory import build_backbone
from miva_lightning.backbones.forward import unet_predict
from miva_lightning.backbones.pixel_codec import PixelShuffleCodec
from miva_lightning.backbones.tokenizer import encode_prompts

__all__ = ["Backbone", "LatentCodec", "PixelShuffleCodec", "build_backbone", "encode_prompts", "unet_predict"]
