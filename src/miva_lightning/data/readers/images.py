"""Pillow images -> float RGB arrays: grey repeated, alpha composited on black, 16-bit kept."""

from __future__ import annotations

import struct
import zlib
from contextlib import contextmanager
from typing import Iterator

import numpy as np
from PIL import Image

from miva_lightning.data.readers.errors import VideoReadError

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")

# What Pillow raises on damaged files: not only OSError (a truncated GIF raises IndexError from
# inside Pillow, a broken PNG chunk SyntaxError, a huge one DecompressionBombError).
PILLOW_ERRORS = (
    OSError, EOFError, SyntaxError, IndexError, KeyError, ValueError, struct.error, zlib.error,
    Image.DecompressionBombError,
)


@contextmanager
def pillow_errors(path, what: str) -> Iterator[None]:
    """Turn any Pillow failure inside the block into a `VideoReadError` naming `path`."""
    try:
        yield
    except VideoReadError:  # already names its file (and is a ValueError: keep it as it is)
        raise
    except PILLOW_ERRORS as error:
        raise VideoReadError(path, f"{what} ({type(error).__name__}: {error}); replace or remove it") from error


def pil_to_rgb_float(image: Image.Image, size_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Return float32 `h w 3` in [0, 1].

    Transparent pixels are composited on black (rgb * alpha), so fully transparent areas
    read as black whatever colour the file stores under them.
    """
    if size_hw is not None and size_hw != (image.height, image.width):
        image = _resize(image, size_hw)
    if image.mode in SIXTEEN_BIT_MODES:
        grey = np.asarray(image, dtype=np.float32) / 65535.0  # 16-bit grey PNGs open as I;16 / I
        return np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=-1)
    if image.mode == "F":
        grey = np.asarray(image, dtype=np.float32)
        return np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=-1)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    rgba = np.asarray(image.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
    if not has_alpha:
        return rgba
    return rgba[..., :3] * rgba[..., 3:4]


def _resize(image: Image.Image, size_hw: tuple[int, int]) -> Image.Image:
    if image.mode in SIXTEEN_BIT_MODES:
        image = image.convert("I")  # keeps 16-bit range; Pillow resizes I but not I;16 everywhere
    elif image.mode in ("P", "1"):
        image = image.convert("RGBA")
    return image.resize((size_hw[1], size_hw[0]), Image.Resampling.BOX)
