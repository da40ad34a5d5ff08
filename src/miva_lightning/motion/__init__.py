"""Weight-free motion estimation: Farneback flow, fitted global motion, local-flow statistics and a
rule-based classifier into the world's motion classes (the judge of generated clips)."""

from miva_lightning.motion.classify import INVALID, OTHER, classify_estimate, classify_motion, judge_accuracy
from miva_lightning.motion.estimator import MotionEstimate, PairMotion, estimate_motion
from miva_lightning.motion.fidelity import fidelity_of_estimate, motion_fidelity
from miva_lightning.motion.flow import farneback_flow

__all__ = [
    "INVALID",
    "OTHER",
    "MotionEstimate",
    "PairMotion",
    "classify_estimate",
    "classify_motion",
    "estimate_motion",
    "farneback_flow",
    "fidelity_of_estimate",
    "judge_accuracy",
    "motion_fidelity",
]
