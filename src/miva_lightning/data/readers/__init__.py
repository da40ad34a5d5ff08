"""One module per backend; `miva_lightning.data.video_io` picks between them."""

from miva_lightning.data.readers.decord_reader import count_frames_decord, decord_available, read_decord
from miva_lightning.data.readers.errors import (
    ClipTooShortError,
    DecodeTimeoutError,
    UnsupportedFormatError,
    VideoReadError,
    VideoTooLargeError,
)
from miva_lightning.data.readers.frames_reader import IMAGE_SUFFIXES, count_frames_folder, list_frame_files, read_frames_folder
from miva_lightning.data.readers.gif_reader import count_frames_gif, read_gif
from miva_lightning.data.readers.pyav_reader import count_frames_pyav, read_pyav

__all__ = [
    "ClipTooShortError",
    "DecodeTimeoutError",
    "IMAGE_SUFFIXES",
    "UnsupportedFormatError",
    "VideoReadError",
    "VideoTooLargeError",
    "count_frames_decord",
    "count_frames_folder",
    "count_frames_gif",
    "count_frames_pyav",
    "decord_available",
    "list_frame_files",
    "read_decord",
    "read_frames_folder",
    "read_gif",
    "read_pyav",
]
