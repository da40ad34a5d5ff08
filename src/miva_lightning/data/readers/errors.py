"""Errors raised while reading clips. Each message names the file and says what to change."""

from __future__ import annotations

import os


class VideoReadError(ValueError):
    """A clip could not be read (missing, corrupt, unsupported, too large, too short)."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")


class UnsupportedFormatError(VideoReadError):
    pass


class VideoTooLargeError(VideoReadError):
    pass


class ClipTooShortError(VideoReadError):
    def __init__(self, path, message: str, num_available: int):
        self.num_available = num_available
        super().__init__(path, message)


class DecodeTimeoutError(VideoReadError):
    pass


def unusable_clips_error(errors: list[VideoReadError]) -> VideoReadError:
    """One error for every clip that could not be used; a single one is returned as it is."""
    if len(errors) == 1:
        return errors[0]
    try:
        folder = os.path.commonpath([error.path for error in errors])
    except ValueError:  # absolute and relative paths mixed
        folder = "data"
    listed = "\n".join(f"  {error}" for error in errors)
    return VideoReadError(
        folder,
        f"{len(errors)} clips cannot be used:\n{listed}\n"
        "fix or remove these files, or set data.on_error=skip to train on the usable clips only",
    )
