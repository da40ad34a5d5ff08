"""Farneback motion metrics on synthetic warps with known answers."""

import math

import cv2
import pytest
import torch
import torch.nn.functional as F

from miva_lightning.metrics import available_metrics, build_metric
from miva_lightning.metrics import motion as Mo

cv2.setNumThreads(1)


def texture(size, seed=0):
    """A smooth random RGB texture (3, size, size) spanning [0, 1]: Farneback needs texture to see motion."""
    noise = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    smooth = F.avg_pool2d(noise, 5, stride=1, padding=2, count_include_pad=False)[0]
    return (smooth - smooth.min()) / (smooth.max() - smooth.min())


def pan(dx=2, dy=0, size=32, frames=5, seed=0):
    """A window moving over a larger texture: content flows by (-dx, -dy) px per frame, exactly."""
    margin = 4 + max(abs(dx), abs(dy)) * frames
    big = texture(size + 2 * margin, seed)
    return torch.stack(
        [big[:, margin + t * dy : margin + t * dy + size, margin + t * dx : margin + t * dx + size] for t in range(frames)]
    )


def test_flow_of_a_known_shift_has_that_magnitude_and_direction():
    flow = Mo.farneback_flow(pan(dx=2))
    assert flow.shape == (4, 2, 32, 32)
    inner = flow[..., 4:-4, 4:-4]
    assert inner[:, 0].mean().item() == pytest.approx(-2.0, abs=0.1)  # content moves left
    assert inner[:, 1].abs().mean().item() < 0.15


@pytest.mark.parametrize("shift", [1, 3])
def test_flow_magnitude_metrics_report_the_shift(shift):
    batch = {"generated": torch.stack([pan(dx=shift, size=48), pan(dx=0, dy=shift, size=48, seed=1)])}
    for name, tolerance in (("flow_farneback_mean", 0.02), ("flow_farneback_top5", 0.05)):
        metric = build_metric(name)
        metric.update(batch)
        assert metric.compute().item() == pytest.approx(shift, rel=tolerance), name
    dynamic = build_metric("flow_farneback_dynamic_pixels", threshold_px=shift / 2)
    dynamic.update(batch)
    assert dynamic.compute().item() > 0.9


def test_static_video_has_zero_flow_and_no_dynamics():
    still = texture(32)[None].expand(4, -1, -1, -1)[None]
    for name in ("flow_farneback_mean", "flow_farneback_top5", "flow_farneback_dynamic_pixels", "flow_farneback_dynamic_pairs"):
        metric = build_metric(name)
        metric.update({"generated": still})
        assert metric.compute().item() == pytest.approx(0.0, abs=1e-3), name  # Farneback: ~5e-5 px


def test_dynamic_pairs_counts_moving_pairs():
    frames = pan(dx=2, frames=5)
    half_still = torch.cat([frames[:3], frames[2:3].expand(2, -1, -1, -1)])  # 2 moving pairs, 2 still pairs
    metric = build_metric("flow_farneback_dynamic_pairs", threshold_px=1.0)
    metric.update({"generated": half_still[None]})
    assert metric.compute().item() == pytest.approx(0.5)
    assert metric.describe()["threshold_px"] == 1.0 and metric.describe()["flow_backend"] == "farneback"


def test_fit_similarity_recovers_exact_parameters_from_a_synthetic_field():
    h, w = 20, 30
    ys, xs = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")
    tx, ty, a, b = 1.5, -0.5, 0.05, -0.03
    flow = torch.stack([tx + a * xs - b * ys, ty + b * xs + a * ys])[None]
    fitted = Mo.fit_similarity(flow)[0]
    assert torch.allclose(fitted, torch.tensor([tx, ty, a, b]), atol=1e-5)
    params = Mo.similarity_to_params(fitted[None])
    assert params["scale"].item() == pytest.approx(math.hypot(1 + a, b), rel=1e-6)
    assert params["angle_deg"].item() == pytest.approx(math.degrees(math.atan2(b, 1 + a)), rel=1e-5)


def test_agreement_with_reference_same_opposite_and_static():
    right, left, still = pan(dx=2), pan(dx=-2, seed=3), texture(32, seed=4)[None].expand(5, -1, -1, -1)
    for name in ("flow_farneback_agreement_pooled", "flow_farneback_agreement_similarity"):
        same, opposite, both_still, one_still = (build_metric(name) for _ in range(4))
        same.update({"generated": right[None], "reference": pan(dx=2, seed=5)[None]})
        opposite.update({"generated": right[None], "reference": left[None]})
        both_still.update({"generated": still[None], "reference": still[None]})
        one_still.update({"generated": still[None], "reference": right[None]})
        assert same.compute().item() > 0.95, name
        assert opposite.compute().item() < -0.95, name
        assert both_still.compute().item() == 1.0 and one_still.compute().item() == 0.0, name
        skipped = build_metric(name)
        skipped.update({"generated": right[None]})  # no reference in this batch: skipped
        assert math.isnan(skipped.compute().item())


def test_motion_world_ground_truth_error_is_small_for_the_true_clip():
    from miva_lightning.world.clips import render_clip

    clips = [render_clip(m, 7, size=32, num_frames=5) for m in ("pan_left", "zoom_in", "rotate_cw", "rain")]
    batch = {"generated": torch.stack([c.video for c in clips]), "params": [c.params for c in clips]}
    limits = {"translation_px": 0.3, "log_scale": 0.02, "rotation_deg": 1.0}
    for component, limit in limits.items():
        metric = Mo.MotionParameterError(component)
        metric.update(batch)
        assert metric.compute().item() < limit, component
        assert metric.describe()["n_videos"] == 3 and metric.describe()["n_skipped"] == 1  # rain: local motion
    wrong = Mo.MotionParameterError("translation_px")
    wrong.update({"generated": batch["generated"][:1], "params": [clips[1].params]})  # a pan judged as a zoom
    assert wrong.compute().item() > 1.5


def test_registered_motion_names_carry_the_backend():
    names = [n for n in available_metrics() if n.startswith(("flow_", "motion_param"))]
    assert names and all("farneback" in n for n in names)
