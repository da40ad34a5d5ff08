"""Video data: readers (decord, PyAV, GIF, frame folders), `write_video`, few-shot datamodules.

`FewShotMotionDataModule` is imported lazily, so reading and writing videos does not pay
for importing Lightning.
"""

from miva_lightning.data.readers import (
    ClipTooShortError,
    DecodeTimeoutError,
    UnsupportedFormatError,
    VideoReadError,
    VideoTooLargeError,
)
from miva_lightning.data.video_io import count_frames, read_video, write_frames, write_video

__all__ = [
    "ClipTooShortError",
    "DecodeTimeoutError",
    "FewShotMotionDataModule",
    "UnsupportedFormatError",
    "VideoReadError",
    "VideoTooLargeError",
    "count_frames",
    "read_video",
    "write_frames",
    "write_video",
]


def __getattr__(name: str):
    if name == "FewShotMotionDataModule":
        from miva_lightning.data.fewshot import FewShotMotionDataModule

        return FewShotMotionDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
