"""The motion world: determinism, exact ground truth, splits, datasets, speed."""

import json
import math
import time

import pytest
import torch
from omegaconf import OmegaConf

from miva_lightning.config import CONFIG_DIR
from miva_lightning.world import (
    ALL_MOTIONS,
    BASE_MOTIONS,
    HELDOUT_SEED_START,
    NOVEL_MOTIONS,
    MotionWorldDataset,
    MotionWorldStream,
    caption_for,
    heldout_first_frames,
    heldout_scene_seeds,
    render_clip,
    render_first_frame,
    training_scene_seeds,
)
from miva_lightning.world.scene import make_scene, pixel_grid, sample_scene


def test_split_is_a_partition_and_config_matches():
    assert set(BASE_MOTIONS).isdisjoint(NOVEL_MOTIONS)
    assert ALL_MOTIONS == BASE_MOTIONS + NOVEL_MOTIONS and len(ALL_MOTIONS) == 14
    cfg = OmegaConf.load(CONFIG_DIR / "data" / "motion_world.yaml")
    assert tuple(cfg.base_motions) == BASE_MOTIONS and tuple(cfg.novel_motions) == NOVEL_MOTIONS
    assert cfg.heldout_seed_start == HELDOUT_SEED_START
    assert caption_for("pan_left") == "camera pans left" and caption_for("rain") == "rain falls"
    with pytest.raises(ValueError, match="unknown motion"):
        caption_for("dance")


@pytest.mark.parametrize("motion", ALL_MOTIONS)
def test_clip_shape_range_determinism_and_first_frame(motion):
    clip = render_clip(motion, scene_seed=17)
    again = render_clip(motion, scene_seed=17)
    assert clip.video.shape == (8, 3, 32, 32) and clip.video.dtype == torch.float32
    assert 0.0 <= clip.video.min() and clip.video.max() <= 1.0
    assert torch.equal(clip.video, again.video) and clip.params == again.params
    assert torch.equal(clip.video[0], render_first_frame(17))
    json.dumps(clip.params)  # ground truth is JSON-able
    assert clip.caption == caption_for(motion) and clip.motion == motion and clip.scene_seed == 17
    moved = (clip.video[1:] - clip.video[0]).abs().amax(dim=(1, 2, 3))
    if motion == "static":
        assert moved.max() == 0
    else:  # every later frame visibly differs from frame 0
        assert moved.min() > 0.2, moved


def test_seeds_change_scene_and_motion():
    a = render_clip("pan_left", 1, motion_seed=5).video
    assert not torch.allclose(a, render_clip("pan_left", 2, motion_seed=5).video)
    b = render_clip("rain", 1, motion_seed=5).video
    assert not torch.allclose(b, render_clip("rain", 1, motion_seed=6).video)
    assert torch.equal(b[0], render_clip("rain", 1, motion_seed=6).video[0])


def test_pan_frames_are_the_scene_at_shifted_coordinates():
    clip = render_clip("pan_left", 3, size=32)
    dx = clip.params["dx_px"]
    assert 1.5 <= dx <= 2.5 and clip.params["dy_px"] == 0  # camera pans left: content flows right
    scene, grid = make_scene(3), pixel_grid(32)
    for k in (1, 4, 7):
        shifted = grid - torch.tensor([k * dx * 2 / 32, 0.0])
        expected = sample_scene(scene, shifted).permute(2, 0, 1)
        torch.testing.assert_close(clip.video[k], expected, atol=1e-5, rtol=0)
    # independent of the sampler: a shift of exactly 4 px moves the pixel grid by 4 columns
    shifted_scene = sample_scene(scene, grid - torch.tensor([4 * 2 / 32, 0.0]))
    torch.testing.assert_close(shifted_scene[:, 4:], sample_scene(scene, grid)[:, :-4], atol=1e-5, rtol=0)
    static = render_clip("static", 3).video
    assert all(torch.equal(static[k], static[0]) for k in range(8))


def test_zoom_and_rotation_ground_truth_and_speeds_scale_with_size():
    zoom, rot = render_clip("zoom_in", 4), render_clip("rotate_ccw", 4)
    assert 1.06 <= zoom.params["scale"] <= 1.08 and -5.5 <= rot.params["angle_deg"] <= -4.5
    # the centre pixel barely moves under zoom/rotation about the centre; corners move a lot
    for clip in (zoom, rot):
        centre = (clip.video[1, :, 15:17, 15:17] - clip.video[0, :, 15:17, 15:17]).abs().mean()
        assert centre < 0.05
    small, large = render_clip("pan_up", 9, size=32), render_clip("pan_up", 9, size=64)
    assert math.isclose(large.params["dy_px"], 2 * small.params["dy_px"])
    # the same scene at twice the size, averaged down, is close to the small render
    down = torch.nn.functional.avg_pool2d(large.video, 2)
    assert (down - small.video).abs().mean() < 0.03


def test_local_motions_leave_most_of_the_scene_still():
    for motion in ("rain", "waterfall", "firework", "birds", "clouds"):
        video = render_clip(motion, 21).video
        changed = ((video[1:] - video[0]).abs().amax(dim=1) > 0.05).float().mean(dim=(1, 2))
        assert 0.02 < changed.mean() < 0.6, (motion, changed)


def test_heldout_and_training_seeds_are_disjoint():
    heldout = heldout_scene_seeds(200, seed=0)
    assert len(set(heldout)) == 200 and min(heldout) >= HELDOUT_SEED_START
    assert heldout == heldout_scene_seeds(200, seed=0) and heldout != heldout_scene_seeds(200, seed=1)
    assert max(training_scene_seeds(1000, seed=3)) < HELDOUT_SEED_START
    assert heldout_scene_seeds(3, seed=0) == heldout[:3]
    frames = heldout_first_frames(3, size=16)
    assert frames.shape == (3, 3, 16, 16)
    assert torch.equal(frames[1], render_first_frame(heldout[1], size=16))


def test_dataset_items_and_splits():
    train = MotionWorldDataset(["pan_left", "rain"], clips_per_motion=2, size=16, num_frames=4, split="train", seed=0)
    heldout = MotionWorldDataset(["pan_left", "rain"], clips_per_motion=2, size=16, num_frames=4, split="heldout")
    assert len(train) == 4
    item = train[3]
    assert item["video"].shape == (4, 3, 16, 16) and item["motion"] == "rain"
    assert item["motion_id"] == ALL_MOTIONS.index("rain") and item["caption"] == "rain falls"
    assert all(s < HELDOUT_SEED_START for seeds in train.scene_seeds for s in seeds)
    assert heldout[0]["scene_seed"] == heldout[2]["scene_seed"] >= HELDOUT_SEED_START  # same first frames
    assert torch.equal(heldout[0]["video"][0], heldout[2]["video"][0])
    with pytest.raises(ValueError, match="split"):
        MotionWorldDataset(["static"], 1, split="test")
    with pytest.raises(TypeError, match="sequence"):
        MotionWorldDataset("static", 1)


def test_stream_is_deterministic_and_worker_aware():
    def take(stream, n):
        it = iter(stream)
        return [next(it) for _ in range(n)]

    a = take(MotionWorldStream(BASE_MOTIONS, size=16, num_frames=4, seed=1), 6)
    b = take(MotionWorldStream(BASE_MOTIONS, size=16, num_frames=4, seed=1), 6)
    c = take(MotionWorldStream(BASE_MOTIONS, size=16, num_frames=4, seed=2), 6)
    assert [x["scene_seed"] for x in a] == [x["scene_seed"] for x in b] != [x["scene_seed"] for x in c]
    assert all(torch.equal(x["video"], y["video"]) for x, y in zip(a, b))
    assert all(x["motion"] in BASE_MOTIONS and x["scene_seed"] < HELDOUT_SEED_START for x in a)
    loader = torch.utils.data.DataLoader(MotionWorldStream(BASE_MOTIONS, 16, 4, seed=1), batch_size=3)
    batch = next(iter(loader))
    assert batch["video"].shape == (3, 4, 3, 16, 16) and len(batch["motion"]) == 3


def test_rendering_is_fast():
    """Median time per 8x32x32 clip over all motions (target < 2 ms; the bound leaves room for a busy machine)."""
    for motion in ALL_MOTIONS:
        render_clip(motion, 0)
    times = []
    for i in range(3):
        for motion in ALL_MOTIONS:
            start = time.process_time()
            render_clip(motion, i)
            times.append(time.process_time() - start)
    assert sorted(times)[len(times) // 2] < 0.010


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="num_frames"):
        render_clip("static", 0, num_frames=1)
    with pytest.raises(ValueError, match="size"):
        render_clip("static", 0, size=4)


def test_lamp_layout_round_trip(tmp_path):
    from miva_lightning.data.video_io import read_video
    from miva_lightning.world import write_lamp_layout

    written = write_lamp_layout(tmp_path, ["pan_right", "birds"], clips_per_motion=2, size=32, num_frames=4, seed=3)
    assert sorted(p.name for p in written["birds"]) == ["0.mp4", "1.mp4"]
    meta = json.loads((tmp_path / "pan_right" / "params.json").read_text())
    assert meta["motion"] == "pan_right" and len(meta["clips"]) == 2
    clip = meta["clips"][1]
    assert clip["params"]["dx_px"] < 0 and clip["caption"] == "camera pans right"
    expected = render_clip("pan_right", clip["scene_seed"], size=32, num_frames=4).video
    video = read_video(tmp_path / "pan_right" / "1.mp4")
    assert video.shape == expected.shape
    error = (video - expected).abs().mean()
    assert error < 0.03, error  # lossy H.264 with 4:2:0 chroma, but the same clip


def test_web_like_splits_partition_the_world_and_the_stream_recaptions_in_prior_motions():
    from miva_lightning.world import GENERIC_CAPTION, HELD_OUT_MOTIONS, IN_PRIOR_MOTIONS, SPLITS, split_of
    from miva_lightning.world.motions import CAMERA_MOTIONS as CAMERA, LOCAL_MOTIONS as LOCAL

    assert sorted(m for motions in SPLITS.values() for m in motions) == sorted(ALL_MOTIONS)
    for split in (IN_PRIOR_MOTIONS, HELD_OUT_MOTIONS):  # a camera and a local motion in each
        assert set(split) & set(CAMERA) and set(split) & set(LOCAL)
    assert split_of("pan_left") == "captioned" and split_of("clouds") == "in_prior" and split_of("birds") == "held_out"
    stream = MotionWorldStream(["pan_left", "clouds"], seed=1, captions={"clouds": GENERIC_CAPTION})
    items = [item for _, item in zip(range(12), stream)]
    assert {i["caption"] for i in items if i["motion"] == "clouds"} == {GENERIC_CAPTION}
    assert {i["caption"] for i in items if i["motion"] == "pan_left"} == {"camera pans left"}
    with pytest.raises(ValueError, match="not in the stream"):
        MotionWorldStream(["pan_left"], captions={"birds": "a video"})


def test_stream_motion_weights_shift_the_draw_and_reject_bad_weights():
    import numpy as np

    stream = MotionWorldStream(["pan_left", "rain"], size=8, num_frames=2, seed=0, weights={"rain": 3.0})
    rng = np.random.default_rng(0)
    drawn = [stream.draw(rng)["motion"] for _ in range(200)]
    assert 0.65 < drawn.count("rain") / 200 < 0.85  # expected 3/4
    uniform = MotionWorldStream(["pan_left", "rain"], size=8, num_frames=2, seed=0)
    assert uniform.probabilities is None  # no weights: the same draw as before weights existed
    with pytest.raises(ValueError, match="not in the stream"):
        MotionWorldStream(["pan_left"], weights={"rain": 2.0})
    with pytest.raises(ValueError, match=">= 0"):
        MotionWorldStream(["pan_left", "rain"], weights={"rain": -1.0})
