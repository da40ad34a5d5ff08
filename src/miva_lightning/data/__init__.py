"""Video data: readers (decord, PyAV, GIF, frame folders), `write_video`, few-shot datamodules."""

from miva_lightning.data.video_io import write_frames, write_video

__all__ = ["write_frames", "write_video"]
