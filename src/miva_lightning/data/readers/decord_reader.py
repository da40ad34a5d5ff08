"""decord backend: fast random access, but unmaintained.

decord trusts the container's frame count and can hang on files where it is wrong, so every
call runs in a daemon thread with a deadline; past it a `DecodeTimeoutError` is raised (the
`auto` backend then re-reads with PyAV). A hung decord thread cannot be killed from Python;
it is left behind as a daemon and dies with the process.
decord is optional (no wheels for some platforms): `decord_available()` says whether it imports.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from miva_lightning.data.layout import uint8_to_float
from miva_lightning.data.readers.errors import DecodeTimeoutError, VideoReadError
from miva_lightning.data.readers.sampling import decode_size, frame_indices


def decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def count_frames_decord(path, timeout_s: float = 60.0) -> int:
    """The header's frame count as decord sees it (may be wrong; `count_frames` uses PyAV)."""

    def count() -> int:
        with _decord_errors(path, "decord cannot read it"):
            return len(_open(path))

    return _with_deadline(path, timeout_s, count)


def read_decord(
    path,
    num_frames: int | None = None,
    stride: int = 1,
    start: int = 0,
    max_pixels: int | None = None,
    oversize: str = "downscale",
    timeout_s: float = 60.0,
) -> torch.Tensor:
    def read() -> np.ndarray:
        # every decord call can fail on a damaged file (the first frame included), not only opening
        with _decord_errors(path, "decord failed to decode"):
            reader = _open(path)
            indices = frame_indices(path, len(reader), num_frames, stride, start)
            height, width = reader[0].shape[:2]
            target = decode_size(path, height, width, max_pixels, oversize)
            if target == (height, width):
                return reader.get_batch(indices).asnumpy()  # numpy bridge: no global set_bridge state
            # decord's own resize (VideoReader(width=, height=)) fails on some sizes; shrink one
            # frame at a time so a huge clip never sits in memory at full size
            return np.stack([_shrink(reader[index].asnumpy(), target) for index in indices])

    frames = _with_deadline(path, timeout_s, read)
    return uint8_to_float(frames)


def _shrink(frame: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize((size_hw[1], size_hw[0]), Image.Resampling.BOX))


def _open(path):
    import decord

    with _decord_errors(path, "decord cannot open it"):
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)


@contextmanager
def _decord_errors(path, what: str) -> Iterator[None]:
    """decord raises DECORDError, RuntimeError (some files) or IndexError (no frames): name the file."""
    import decord

    try:
        yield
    except (decord.DECORDError, RuntimeError, IndexError) as error:
        first_line = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise VideoReadError(path, f"{what} ({first_line})") from error


def _with_deadline(path, timeout_s: float, work):
    result: dict = {}

    def run() -> None:
        try:
            result["value"] = work()
        except BaseException as error:  # handed to the caller's thread
            result["error"] = error

    thread = threading.Thread(target=run, name=f"decord:{path}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise DecodeTimeoutError(
            path, f"decord did not finish within {timeout_s} s (wrong frame count in the header?); use backend='pyav'"
        )
    if "error" in result:
        raise result["error"]
    return result["value"]
