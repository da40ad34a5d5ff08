"""Which frames to read (start, stride, count) and what size to decode them at."""

from __future__ import annotations

import math

from miva_lightning.data.readers.errors import ClipTooShortError, VideoTooLargeError

OVERSIZE_CHOICES = ("downscale", "error")


def validate_sampling(num_frames: int | None, stride: int, start: int) -> None:
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be >= 1 (or None for all frames), got {num_frames}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")


def frames_needed(num_frames: int, stride: int, start: int = 0) -> int:
    """How many frames a clip must have to supply `num_frames` frames `stride` apart from `start`."""
    return start + (num_frames - 1) * stride + 1


def largest_stride_that_fits(total: int, num_frames: int, stride: int) -> int:
    """`stride`, or the largest smaller one (at least 1) with which `total` frames supply `num_frames`
    frames: min(stride, (total - 1) // (num_frames - 1)). The caller checks that `num_frames` fit at all."""
    if num_frames <= 1:
        return stride
    return max(1, min(stride, (total - 1) // (num_frames - 1)))


def frame_indices(path, total: int, num_frames: int | None, stride: int, start: int) -> list[int]:
    """Indices `start, start + stride, ...`: `num_frames` of them, or all that fit when None."""
    validate_sampling(num_frames, stride, start)
    if num_frames is None:
        if start >= total:
            raise too_short(path, total, 1, stride, start)
        return list(range(start, total, stride))
    if frames_needed(num_frames, stride, start) > total:
        raise too_short(path, total, num_frames, stride, start)
    return [start + i * stride for i in range(num_frames)]


def too_short(path, total: int, num_frames: int, stride: int, start: int) -> ClipTooShortError:
    needed = frames_needed(num_frames, stride, start)
    usable = total - start
    hints = []
    if usable >= 1:
        hints.append(f"num_frames <= {(usable - 1) // stride + 1} at stride {stride}")
        if num_frames > 1 and usable >= num_frames:
            hints.append(f"stride <= {(usable - 1) // (num_frames - 1)} at num_frames {num_frames}")
    fix = "use " + " or ".join(hints) if hints else "use a longer clip or remove it"
    return ClipTooShortError(
        path,
        f"clip has {total} frames, but num_frames={num_frames} with stride={stride} from start={start} "
        f"needs {needed}; {fix}",
        num_available=total,
    )


def decode_size(path, height: int, width: int, max_pixels: int | None, oversize: str) -> tuple[int, int]:
    """The (height, width) to decode at: the stored size, or a downscaled one within `max_pixels`."""
    if oversize not in OVERSIZE_CHOICES:
        raise ValueError(f"oversize must be one of {OVERSIZE_CHOICES}, got {oversize!r}")
    if max_pixels is None or height * width <= max_pixels:
        return height, width
    if oversize == "error":
        raise VideoTooLargeError(
            path,
            f"frames are {width}x{height} = {height * width} pixels, above max_pixels={max_pixels}; "
            "raise max_pixels, pass oversize='downscale', or resize the file",
        )
    scale = math.sqrt(max_pixels / (height * width))
    return max(1, int(height * scale)), max(1, int(width * scale))
