"""Read and write clips. Public entry points: `write_video`, `write_frames`.

Layout everywhere: a clip is `f c h w`, torch.float32 in [0, 1], RGB.
"""

from miva_lightning.data.writer import WRITABLE_SUFFIXES, write_frames, write_video

__all__ = ["WRITABLE_SUFFIXES", "write_frames", "write_video"]
