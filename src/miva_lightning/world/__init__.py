"""The procedural motion world: smooth scenes moved by known motions, rendered exactly from seeds.

See `motions.py` for the classes, split and sign conventions, `clips.py` for rendering.
"""

from miva_lightning.world.clips import (
    HELDOUT_SEED_START,
    MotionClip,
    heldout_first_frames,
    heldout_scene_seeds,
    render_clip,
    render_first_frame,
    training_scene_seeds,
)
from miva_lightning.world.datasets import MotionWorldClips, MotionWorldDataset, MotionWorldStream
from miva_lightning.world.lamp_layout import write_lamp_layout
from miva_lightning.world.motions import (
    ALL_MOTIONS,
    BASE_MOTIONS,
    CAMERA_MOTIONS,
    CAPTIONED_MOTIONS,
    GENERIC_CAPTION,
    HELD_OUT_MOTIONS,
    IN_PRIOR_MOTIONS,
    LOCAL_MOTIONS,
    NOVEL_MOTIONS,
    SPLITS,
    caption_for,
    motion_id,
    split_of,
)

__all__ = [
    "ALL_MOTIONS",
    "BASE_MOTIONS",
    "CAMERA_MOTIONS",
    "CAPTIONED_MOTIONS",
    "GENERIC_CAPTION",
    "HELD_OUT_MOTIONS",
    "IN_PRIOR_MOTIONS",
    "HELDOUT_SEED_START",
    "LOCAL_MOTIONS",
    "MotionClip",
    "MotionWorldClips",
    "MotionWorldDataset",
    "MotionWorldStream",
    "NOVEL_MOTIONS",
    "SPLITS",
    "caption_for",
    "heldout_first_frames",
    "heldout_scene_seeds",
    "motion_id",
    "render_clip",
    "render_first_frame",
    "split_of",
    "training_scene_seeds",
    "write_lamp_layout",
]
