"""MIVA adapter components attached by module name to an unmodified diffusers UNetMotionModel or Wan DiT
(WanTransformer3DModel; DiT placement in `wan_dit.py`).

    miva = Miva.from_unet(unet, MivaConfig())                   # one adapter, zero effect at start
    handle = attach_mivas(unet, [(miva, 1.0)])                   # train: optimizer on trainable_parameters(miva)
    set_weights(handle, [0.7]); detach_mivas(handle)             # the UNet is exactly the base again
    save_miva("waterfall.safetensors", miva, base_identity(unet, "tiny"))
"""

from miva_lightning.adapters.attach import MivaHandle, attach_mivas, detach_mivas, set_weights
from miva_lightning.adapters.miva import Miva, MivaConfig, trainable_parameters
from miva_lightning.adapters.io import base_identity, load_miva, save_miva

__all__ = [
    "base_identity",
    "load_miva",
    "save_miva",
    "Miva",
    "MivaConfig",
    "MivaHandle",
    "attach_mivas",
    "detach_mivas",
    "set_weights",
    "trainable_parameters",
]
