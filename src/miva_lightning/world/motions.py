"""Motion classes of the world: names (the labels used everywhere), split, captions and speeds.

Conventions (all parameters describe how the CONTENT moves on screen, in image coordinates with
x to the right and y DOWN, measured in pixels of the rendered size):
- `pan_left` means the camera pans left, so the content flows RIGHT (dx_px > 0); `pan_up` means the
  camera tilts up, so the content flows DOWN (dy_px > 0).
- `zoom_in` enlarges the content about the image centre (scale per frame > 1), `zoom_out` shrinks it.
- `rotate_cw` turns the content clockwise on screen about the centre (angle_deg per frame > 0).
Speeds below are at the 32 px reference size; pixel speeds scale linearly with the size
(zoom and rotation rates are size-free).
"""

from __future__ import annotations

CAMERA_MOTIONS = (
    "static",
    "pan_left",
    "pan_right",
    "pan_up",
    "pan_down",
    "zoom_in",
    "zoom_out",
    "rotate_cw",
    "rotate_ccw",
)
LOCAL_MOTIONS = ("rain", "waterfall", "firework", "birds", "clouds")

BASE_MOTIONS = ("static", "pan_left", "pan_right", "pan_up", "pan_down", "zoom_in", "rotate_cw", "rain")
NOVEL_MOTIONS = ("zoom_out", "rotate_ccw", "waterfall", "birds", "firework", "clouds")
ALL_MOTIONS = BASE_MOTIONS + NOVEL_MOTIONS

# Web-like pretraining (base v2) splits the world's motions three ways, as a web-trained base sees them:
# - captioned: learned with their own caption (the BASE motions);
# - in prior: in the pretraining stream (a real share of the clips) under one generic caption, so the base
#   can produce them but no prompt asks for one of them: the setting MIVA is built for;
# - held out: never in pretraining (novel motion patterns: the paper's hardest claim).
# Each of the last two holds a camera and a local motion.
CAPTIONED_MOTIONS = BASE_MOTIONS
IN_PRIOR_MOTIONS = ("rotate_ccw", "waterfall", "clouds")
HELD_OUT_MOTIONS = ("zoom_out", "birds", "firework")
GENERIC_CAPTION = "a video"  # the caption every in-prior clip carries in web-like pretraining
SPLITS = {"captioned": CAPTIONED_MOTIONS, "in_prior": IN_PRIOR_MOTIONS, "held_out": HELD_OUT_MOTIONS}

CAPTIONS = {
    "static": "a still scene",
    "pan_left": "camera pans left",
    "pan_right": "camera pans right",
    "pan_up": "camera pans up",
    "pan_down": "camera pans down",
    "zoom_in": "camera zooms in",
    "zoom_out": "camera zooms out",
    "rotate_cw": "the scene rotates clockwise",
    "rotate_ccw": "the scene rotates counterclockwise",
    "rain": "rain falls",
    "waterfall": "a waterfall flows down",
    "firework": "a firework bursts",
    "birds": "birds fly across",
    "clouds": "clouds drift across the sky",
}

REFERENCE_SIZE = 32  # pixel speeds below are at this size
SPEED_JITTER = 0.1  # every speed is drawn uniformly within +-10 % of its class speed
PAN_SPEED_PX = 2.0  # content shift per frame
ZOOM_RATE = 0.07  # zoom_in scale per frame = 1 + rate; zoom_out = 1 / (1 + rate)
ROTATE_DEG = 5.0  # degrees per frame about the centre
RAIN_SPEED_PX = 4.0
WATERFALL_SPEED_PX = 2.5
FIREWORK_SPEED_PX = 2.0  # outer ring radius growth per frame (inner ring: half)
BIRD_SPEED_PX = 3.0
CLOUD_SPEED_PX = 1.5

# a horizontal flip turns these into another class (pan left <-> pan right, cw <-> ccw): no flip augmentation
FLIP_CHANGES_CLASS = ("rotate_ccw", "rotate_cw", "pan_left", "pan_right")

# content flow direction (unit dx, dy) of each pan, following the convention above
PAN_DIRECTIONS = {"pan_left": (1.0, 0.0), "pan_right": (-1.0, 0.0), "pan_up": (0.0, 1.0), "pan_down": (0.0, -1.0)}


def caption_for(motion: str) -> str:
    """The short text phrase of a motion class."""
    check_motion(motion)
    return CAPTIONS[motion]


def split_of(motion: str) -> str:
    """"captioned", "in_prior" or "held_out" (see SPLITS)."""
    check_motion(motion)
    return next(name for name, motions in SPLITS.items() if motion in motions)


def motion_id(motion: str) -> int:
    """Stable integer id: the index in ALL_MOTIONS (the same id in every split)."""
    check_motion(motion)
    return ALL_MOTIONS.index(motion)


def check_motion(motion: str) -> None:
    if motion not in CAPTIONS:
        raise ValueError(f"unknown motion {motion!r}; choose one of {', '.join(ALL_MOTIONS)}")
