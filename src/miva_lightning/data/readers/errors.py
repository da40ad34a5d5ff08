"""Errors raised while reading clips. Each message names the file and says what to change."""

from __future__ import annotations


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
