"""Feature-distance metrics by name: honest names, NaN + one warning when weights are missing,
explicit I3D preprocessing, and the registry contract."""

import warnings

import pytest
import torch

from miva_lightning.metrics import available_metrics, build_metric
from miva_lightning.metrics.i3d import load_i3d_extractor, preprocess_for_i3d


def _videos(n, frames=16, size=16, seed=0):
    return torch.rand(n, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_registry_lists_the_distance_metrics_under_honest_names():
    names = set(available_metrics())
    assert {"fd_randproj", "kvd_randproj", "fvd_i3d", "kvd_i3d", "fd_motionworld", "kvd_motionworld"} <= names
    with pytest.raises(KeyError, match="registered metrics"):
        build_metric("fvd")  # no silent alias for a different network


def test_missing_i3d_weights_give_nan_with_one_warning(tmp_path):
    metric = build_metric("fvd_i3d", weights_path=str(tmp_path / "absent.pt"))
    metric.update({"reference": _videos(3), "generated": _videos(3, seed=1)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = metric.compute(), metric.compute()
        metric.reset()
        metric.update({"reference": _videos(2), "generated": _videos(2, seed=1)})
        third = metric.compute()
    assert torch.isnan(first) and torch.isnan(second) and torch.isnan(third)
    assert len([w for w in caught if "I3D weights not found" in str(w.message)]) == 1
    info = metric.describe()
    assert info["available"] is False and "absent.pt" in info["unavailable_reason"]
    assert info["features"]["weights_sha256"] is None


def test_missing_motionworld_artifact_gives_nan(tmp_path):
    metric = build_metric("fd_motionworld", artifact_dir=str(tmp_path))
    metric.update({"reference": _videos(3), "generated": _videos(3, seed=1)})
    with pytest.warns(UserWarning, match="motion-world feature net not found"):
        assert torch.isnan(metric.compute())


def test_i3d_preprocessing_is_16_frames_224_bilinear_in_minus_one_one():
    videos = _videos(2, frames=20, size=32)
    x = preprocess_for_i3d(videos)
    assert x.shape == (2, 3, 16, 224, 224)
    assert x.min() >= -1 and x.max() <= 1
    # direct resize, no crop: the mean colour of every frame is kept
    assert torch.allclose(x.mean(dim=(-2, -1)), (videos[:, :16] * 2 - 1).mean(dim=(-2, -1)).transpose(1, 2), atol=0.02)


class _FakeI3D(torch.nn.Module):
    """Stands in for the TorchScript file (same call signature); not a real I3D."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(3, 400))

    def forward(self, x: torch.Tensor, rescale: bool, resize: bool, return_features: bool) -> torch.Tensor:
        assert not rescale and not resize and return_features
        assert x.shape[1:] == (3, 16, 224, 224)
        return x.mean(dim=(2, 3, 4)) @ self.weight


def test_torchscript_file_is_hashed_and_reported_unpinned(tmp_path):
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(_FakeI3D()).save(str(path))
    with pytest.warns(UserWarning, match="not pinned"):
        extractor = load_i3d_extractor(path)
    assert extractor.available and extractor.describe()["weights_pinned"] is False
    assert len(extractor.describe()["weights_sha256"]) == 64
    metric = build_metric("fvd_i3d", weights_path=str(path))
    metric.update({"reference": _videos(3, size=8), "generated": _videos(3, size=8, seed=2)})
    value = metric.compute()
    assert torch.isfinite(value) and value >= 0
    too_short = build_metric("kvd_i3d", weights_path=str(path))
    too_short.update({"reference": _videos(3, frames=8), "generated": _videos(3, frames=8)})
    with pytest.warns(UserWarning, match="at least 16 frames"):
        assert torch.isnan(too_short.compute())


def test_not_a_torchscript_file_is_unavailable_with_reason(tmp_path):
    path = tmp_path / "i3d_pretrained_400.pt"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    extractor = load_i3d_extractor(path)
    assert not extractor.available and "TorchScript" in extractor.unavailable_reason


def test_randproj_distance_is_zero_for_identical_sets_and_grows_with_a_shift():
    videos = _videos(24, frames=8)
    same = build_metric("fd_randproj")
    same.update({"reference": videos, "generated": videos})
    shifted = build_metric("fd_randproj")
    shifted.update({"reference": videos, "generated": (videos + 0.3).clamp(0, 1)})
    assert abs(float(same.compute())) < 1e-6 < float(shifted.compute())
    assert same.describe()["features"]["name"].startswith("randproj")


def test_committed_motionworld_net_separates_motions_but_not_scene_samples():
    from miva_lightning.world.clips import heldout_scene_seeds, render_clip

    seeds = heldout_scene_seeds(24, seed=5)

    def clips(motion, scene_seeds):
        return torch.stack([render_clip(motion, s, size=32, num_frames=8).video for s in scene_seeds])

    reference = clips("pan_left", seeds[:12])
    distances = {}
    for name, generated in {
        "same": reference,
        "pan_left_other_scenes": clips("pan_left", seeds[12:]),
        "zoom_in_same_scenes": clips("zoom_in", seeds[:12]),
    }.items():
        metric = build_metric("fd_motionworld")
        assert metric.describe()["features"]["heldout_accuracy"] > 0.9
        metric.update({"reference": reference, "generated": generated})
        distances[name] = float(metric.compute())
    assert abs(distances["same"]) < 1e-3
    assert distances["zoom_in_same_scenes"] > 5 * distances["pan_left_other_scenes"]
