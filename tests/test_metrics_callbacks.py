"""The metrics callback: updates only requested metrics, logs them, and stays out of the module's state."""

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from miva_lightning.callbacks.metrics import VideoMetricsCallback


class _Clips(Dataset):
    def __init__(self, n=8):
        generator = torch.Generator().manual_seed(0)
        self.videos = torch.rand(n, 8, 3, 16, 16, generator=generator)

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, i):
        return {"reference_video": self.videos[i], "first_frame": self.videos[i, 0], "caption": f"clip {i}"}


class _TinyGenerator(L.LightningModule):
    """Returns {"video": ...} from validation_step, as MivaModule does."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(0.5))

    def validation_step(self, batch, batch_idx):
        return {"video": (batch["reference_video"] * self.gain).clamp(0, 1)}


def _validate(callback, module=None):
    module = module or _TinyGenerator()
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[callback],
    )  # fmt: skip
    trainer.validate(module, DataLoader(_Clips(), batch_size=4), verbose=False)
    return trainer, module


def test_callback_logs_requested_metrics_and_keeps_them_out_of_the_module(tmp_path):
    callback = VideoMetricsCallback(["fd_randproj", "kvd_randproj"])
    trainer, module = _validate(callback)
    assert set(callback.results) == {"fd_randproj", "kvd_randproj"}
    assert callback.results["fd_randproj"]["n_real_videos"] == 8
    assert callback.results["fd_randproj"]["n_generated_videos"] == 8
    assert callback.results["fd_randproj"]["value"] > 0  # generated = half-brightness references
    assert trainer.callback_metrics["val/fd_randproj"] == pytest.approx(callback.results["fd_randproj"]["value"])
    assert set(module.state_dict()) == {"gain"}
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert set(checkpoint["state_dict"]) == {"gain"}
    assert "projection" not in str(checkpoint.get("callbacks", {}))


def test_callback_resets_between_epochs_and_matches_a_direct_metric():
    callback = VideoMetricsCallback({"fd_randproj": {"seed": 3}})
    trainer, module = _validate(callback)
    first = callback.results["fd_randproj"]["value"]
    trainer.validate(module, DataLoader(_Clips(), batch_size=4), verbose=False)
    assert callback.results["fd_randproj"]["value"] == pytest.approx(first, rel=1e-12)
    assert callback.results["fd_randproj"]["n_real_videos"] == 8  # reset, not accumulated to 16

    from miva_lightning.metrics import build_metric

    direct = build_metric("fd_randproj", seed=3)
    videos = _Clips().videos
    direct.update({"reference": videos, "generated": (videos * 0.5).clamp(0, 1)})
    assert float(direct.compute()) == pytest.approx(first, rel=1e-6)  # float32 features, other batching


def test_generate_callable_and_fixed_references_are_used():
    fixed = torch.rand(6, 8, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    calls = []

    def generate(batch):
        calls.append(len(batch["first_frame"]))
        return batch["first_frame"][:, None].expand(-1, 8, -1, -1, -1)  # a frozen video

    callback = VideoMetricsCallback(["fd_randproj"], generate=generate, reference_videos=fixed, reference_key="none")
    _validate(callback)
    assert calls == [4, 4]
    assert callback.results["fd_randproj"]["n_real_videos"] == 6
    assert callback.results["fd_randproj"]["n_generated_videos"] == 8


def test_missing_generated_videos_fail_with_what_to_do():
    class _Silent(_TinyGenerator):
        def validation_step(self, batch, batch_idx):
            return None

    with pytest.raises(ValueError, match="generate=callable"):
        _validate(VideoMetricsCallback(["fd_randproj"]), _Silent())


class _WorldPans(Dataset):
    """Held-out world clips panning up at the class speed: motion fidelity should read about 1."""

    def __init__(self):
        from miva_lightning.world import heldout_scene_seeds, render_clip

        self.videos = torch.stack([render_clip("pan_up", s).video for s in heldout_scene_seeds(4)])

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, i):
        return {"reference_video": self.videos[i], "first_frame": self.videos[i, 0], "caption": "pan"}


def test_callback_logs_motion_fidelity_and_judged_accuracy_for_a_fixed_motion():
    class _Copy(_TinyGenerator):
        def validation_step(self, batch, batch_idx):
            return {"video": batch["reference_video"]}

    callback = VideoMetricsCallback(["motion_fidelity_farneback", "motion_class_accuracy_farneback_judge"], motion="pan_up")
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[callback],
    )  # fmt: skip
    trainer.validate(_Copy(), DataLoader(_WorldPans(), batch_size=2), verbose=False)
    assert trainer.callback_metrics["val/motion_class_accuracy_farneback_judge"] == pytest.approx(1.0)
    assert trainer.callback_metrics["val/motion_fidelity_farneback"] == pytest.approx(1.0, abs=0.12)
    assert callback.results["motion_fidelity_farneback"]["n_videos"] == 4


def test_the_motion_judge_is_on_by_default_for_world_motions_only():
    """configs/callbacks/default.yaml: judged accuracy and fidelity of the previews for a world motion (the
    sweeps' metric), no callback for a LAMP folder's motion, which the judge has no class for."""
    from miva_lightning.callbacks.metrics import MOTION_JUDGE_METRICS, VideoMetricsCallback
    from miva_lightning.config import compose
    from miva_lightning.utils.lightning_setup import _instantiate_group

    world = [c for c in _instantiate_group(compose("train", ["motion=zoom_out"]).callbacks) if isinstance(c, VideoMetricsCallback)]
    assert len(world) == 1 and world[0].motion == "zoom_out" and tuple(world[0].metrics) == MOTION_JUDGE_METRICS
    folder = compose("train", ["data=fewshot_folder", "motion=birds_fly"]).callbacks
    assert not any(isinstance(c, VideoMetricsCallback) for c in _instantiate_group(folder))
