"""The weight-free motion judge: flow units, fitted parameters, classes, refusal of noise."""

import math

import pytest
import torch

from miva_lightning.config import REPO_ROOT
from miva_lightning.motion import classify_motion, estimate_motion, farneback_flow, judge_accuracy
from miva_lightning.motion.validation import evaluate_clips, load_photo, photo_clip, photo_clips, world_clips
from miva_lightning.world import ALL_MOTIONS, heldout_scene_seeds, render_clip, render_first_frame

PHOTOS = sorted((REPO_ROOT / "assets" / "photos").glob("*.png"))


def test_farneback_flow_is_in_input_pixels():
    clip = render_clip("pan_right", heldout_scene_seeds(1)[0], size=32)
    flow = farneback_flow(clip.video)
    assert flow.shape == (7, 2, 32, 32) and flow.dtype == torch.float32
    moving = flow.norm(dim=1) > 0.5
    assert moving.float().mean() > 0.3
    assert flow[:, 0][moving].median() == pytest.approx(clip.params["dx_px"], abs=0.3)
    assert flow[:, 1][moving].abs().median() < 0.2


@pytest.mark.parametrize("motion,size", [("pan_up", 32), ("zoom_out", 32), ("rotate_cw", 32), ("pan_left", 64)])
def test_fitted_global_motion_matches_ground_truth(motion, size):
    clip = render_clip(motion, heldout_scene_seeds(2)[1], size=size)
    s = estimate_motion(clip.video).summary
    unit = 32 / size  # the estimate is in 32-px reference pixels
    assert s.dx == pytest.approx(clip.params["dx_px"] * unit, abs=0.25)
    assert s.dy == pytest.approx(clip.params["dy_px"] * unit, abs=0.25)
    assert s.scale == pytest.approx(clip.params["scale"], abs=0.01)
    assert s.angle_deg == pytest.approx(clip.params["angle_deg"], abs=0.6)
    assert estimate_motion(clip.video).span_gain > 0.8


def test_every_world_class_is_recognised():
    seed = heldout_scene_seeds(4)[3]
    videos = [render_clip(m, seed).video for m in ALL_MOTIONS]
    report = judge_accuracy(videos, list(ALL_MOTIONS))
    assert report["predictions"] == list(ALL_MOTIONS), report["confusion"]
    assert report["accuracy"] == 1.0 and report["invalid"] == 0


def test_copies_and_noise_are_not_motion():
    first = render_first_frame(heldout_scene_seeds(1)[0])
    assert classify_motion(first[None].repeat(8, 1, 1, 1)) == "static"
    g = torch.Generator().manual_seed(0)
    assert classify_motion(torch.rand(8, 3, 32, 32, generator=g)) == "invalid"
    after_first = torch.cat([first[None], torch.rand(7, 3, 32, 32, generator=g)])
    assert classify_motion(after_first) == "invalid"


def test_restricted_classes_and_report():
    seed = heldout_scene_seeds(1)[0]
    clouds = render_clip("clouds", seed).video
    assert classify_motion(clouds, classes=("static", "pan_left")) == "other"
    batch = torch.stack([render_clip("pan_left", seed).video, clouds])
    report = judge_accuracy(batch, ["pan_left", "birds"])
    assert report["per_class"] == {"pan_left": 1.0, "birds": 0.0}
    assert report["confusion"]["birds"] == {"clouds": 1} and math.isclose(report["accuracy"], 0.5)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="f c h w"):
        classify_motion(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="at least 2 frames"):
        estimate_motion(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="labels"):
        judge_accuracy([torch.zeros(2, 3, 16, 16)], ["static", "rain"])


def test_mild_pixel_noise_does_not_change_the_class():
    g = torch.Generator().manual_seed(1)
    seed = heldout_scene_seeds(2)[1]
    for motion in ("static", "pan_down", "zoom_in", "birds"):
        video = render_clip(motion, seed).video
        noisy = (video + 0.02 * torch.randn(video.shape, generator=g)).clamp(0, 1)
        assert classify_motion(noisy) == motion


def test_real_photo_warped_with_known_motion():
    assert PHOTOS, "assets/photos/*.png are missing"
    photo = load_photo(PHOTOS[0])
    for motion in ("pan_right", "zoom_out", "rotate_cw", "rain"):
        video, params = photo_clip(photo, motion, size=32, motion_seed=3)
        assert video.shape == (8, 3, 32, 32) and torch.equal(video[0], photo_clip(photo, "static", 32)[0][0])
        estimate = estimate_motion(video)
        assert classify_motion(video) == motion
        if motion == "pan_right":
            assert estimate.summary.dx == pytest.approx(params["dx_px"], abs=0.15)
        if motion == "rotate_cw":
            assert estimate.summary.angle_deg == pytest.approx(params["angle_deg"], abs=0.3)


@pytest.mark.slow
@pytest.mark.parametrize("size", [32, 64])
def test_judge_on_30_heldout_world_clips_per_class(size):
    report = evaluate_clips(world_clips(size, clips_per_class=30, seed=0))
    assert min(report["per_class"].values()) >= 0.95, report["confusion"]
    for motion, errors in report["camera_mean_abs_errors"].items():
        px = size / 32
        assert errors["dx_px"] < 0.2 * px and errors["dy_px"] < 0.2 * px, (motion, errors)
        assert errors["scale"] < 0.01 and errors["angle_deg"] < 0.5, (motion, errors)


@pytest.mark.slow
@pytest.mark.parametrize("size", [32, 64])
def test_judge_on_real_photos(size):
    photos = [load_photo(p) for p in PHOTOS]
    report = evaluate_clips(photo_clips(photos, size, clips_per_photo=3))
    assert report["accuracy"] >= 0.95, report["confusion"]
    for motion, errors in report["camera_mean_abs_errors"].items():
        assert errors["scale"] < 0.01 and errors["angle_deg"] < 0.5, (motion, errors)
