"""The real-backbone Table 2 variant (configs/table2_real.yaml) on tiny components of the SAME classes: a tiny
SD1.5-layout folder + MotionAdapter (UNetMotionModel), LAMP-layout clips on disk, a folder of first frames, a
TorchScript stand-in for I3D (same call signature) and a tiny CLIP folder. What is not exercised here: the real
weights, a GPU, 8-bit AdamW, the reference budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from miva_lightning.benchmark.cells import cell_line, run_cell
from miva_lightning.benchmark.methods import training_config
from miva_lightning.config import compose
from miva_lightning.inputs import InputError
from miva_lightning.world import heldout_first_frames
from miva_lightning.world.lamp_layout import write_lamp_layout
from test_backbone_animatediff import TINY_ADAPTER, tiny_weights  # noqa: F401 - the fixture is used by name


class StandInI3D(torch.nn.Module):
    """The call signature of StyleGAN-V's i3d_torchscript.pt (400 logits), random weights: plumbing only."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False):
        return self.head(x.mean(dim=(2, 3, 4)))


@pytest.fixture(scope="module")
def real_files(tmp_path_factory, tiny_weights) -> dict[str, Path]:  # noqa: F811
    from miva_lightning.metrics.clip import tiny_random_clip_encoder

    root = tmp_path_factory.mktemp("real")
    write_lamp_layout(root / "lamp", ["waterfall"], clips_per_motion=3, size=32, num_frames=16)
    frames = root / "first_frames"
    frames.mkdir()
    for i, frame in enumerate(heldout_first_frames(2, size=32, seed=0)):
        Image.fromarray((frame.permute(1, 2, 0) * 255).round().byte().numpy()).save(frames / f"{i}.png")
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(StandInI3D()), str(root / "i3d_standin.pt"))
    clip = tiny_random_clip_encoder(seed=0)
    clip.model.save_pretrained(root / "clip")
    clip.tokenizer.save_pretrained(root / "clip")
    return {"root": root, "lamp": root / "lamp", "frames": frames, "i3d": root / "i3d_standin.pt", "clip": root / "clip", **tiny_weights}


# the reference recipe, then what a CPU needs: no 8-bit AdamW (bitsandbytes is CUDA-only), tiny adapter ranks
TRAIN_OVERRIDES = ["experiment=miva_animatediff_lamp", "optimization.eight_bit=false", "adapter.ca_rank=8", "adapter.lora_rank=4"]


def real_cfg(files: dict[str, Path], method: str = "miva", *extra: str):
    return compose("table2_real", [
        f"method={method}", "motion=waterfall", "seed=0", "device=cpu", "num_threads=1", f"paths.root={files['root']}",
        f"backbone.pretrained_model_path={files['sd']}", f"backbone.motion_adapter_path={files['adapter_dir']}",
        "backbone.image_size=32", "backbone.num_frames=16",
        f"evaluation.data_root={files['lamp']}", f"evaluation.first_frames={files['frames']}",
        f"evaluation.i3d_weights={files['i3d']}", f"evaluation.clip_folder={files['clip']}",
        "evaluation.height=32", "evaluation.width=32", "evaluation.stride=1",
        "budget.steps=2", "budget.num_clips=2", "budget.checkpoint_every_n_steps=1", "budget.trainer=cpu",
        "budget.train_overrides=[" + ",".join(repr(o) for o in TRAIN_OVERRIDES) + "]",
        "n_eval=2", "sample.steps=2", *extra,
    ])  # fmt: skip


def test_config_resolves_to_the_real_backbone_and_the_lamp_protocol():
    cfg = compose("table2_real", ["motion=waterfall"])
    assert cfg.backbone.name == "animatediff_sd15" and cfg.evaluation.kind == "folder"
    assert (cfg.evaluation.num_frames, cfg.evaluation.height, cfg.evaluation.width) == (16, 320, 512)
    assert "experiment=miva_animatediff_lamp" in list(cfg.budget.train_overrides)
    assert set(cfg.composed_partner.values()) <= set(cfg.composed_partner)


def test_training_config_reads_the_lamp_folder_at_the_clip_geometry(real_files):
    train = training_config(real_cfg(real_files))
    assert train.data.source == "folder" and Path(train.data.root) == real_files["lamp"]
    assert (train.data.num_frames, train.data.stride, train.data.height, train.data.width) == (16, 1, 32, 32)
    assert train.backbone.name == "animatediff_sd15" and train.data.max_clips == 2


@pytest.mark.parametrize("setting, message", [
    ("evaluation.data_root", "set evaluation.data_root"),
    ("evaluation.first_frames", "set evaluation.first_frames"),
    ("evaluation.i3d_weights", "set evaluation.i3d_weights"),
    ("evaluation.clip_folder", "set evaluation.clip_folder"),
])  # fmt: skip
def test_a_missing_file_is_an_error_naming_its_setting_before_anything_runs(real_files, tmp_path, setting, message):
    cfg = real_cfg(real_files, "miva", f"{setting}={tmp_path / 'missing'}", f"out_dir={tmp_path / 'out'}")
    with pytest.raises(InputError, match=message) as raised:
        run_cell(cfg)
    assert str(tmp_path / "missing") in str(raised.value) and not (tmp_path / "out").exists()  # nothing written


def test_dry_run_of_a_cell_on_tiny_same_class_components(real_files, tmp_path):
    """One MIVA cell end to end: trains 2 steps on the LAMP folder, animates the folder's first frames, measures
    FVD against the motion's clips, CLIP-T/CLIP-I, first-frame PSNR; no judge and no retention."""
    threads = torch.get_num_threads()
    try:
        outcome = run_cell(real_cfg(real_files, "miva", f"out_dir={tmp_path / 'out'}", f"work_root={tmp_path / 'work'}"))
    finally:
        torch.set_num_threads(threads)
    record = outcome.record
    assert record["status"] == "ok", record.get("error")
    assert record["split"] == "real" and record["steps"] == 2 and record["n_eval"] == 2
    assert record["fvd_i3d"]["n_generated"] == 2 and record["fvd_i3d"]["n_reference"] == 3
    assert record["fvd_i3d"]["value"] is not None and record["clip_text_alignment"] is not None
    assert record["clip_image_alignment"] is not None and record["first_frame_psnr_db"] is not None
    assert record["accuracy"] is None and record["n_judged"] == 0 and record["retention"] is None
    assert json.loads(outcome.path.read_text())["config"]["evaluation"]["kind"] == "folder"
    assert "FVD" in cell_line(outcome)
