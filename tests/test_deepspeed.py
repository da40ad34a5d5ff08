"""`trainer=deepspeed` (ZeRO-2, CUDA only) as far as a CPU goes: the config builds the strategy with its stage and
options, a CPU run is refused with a clear error, checkpoints keep the adapter alone, and resume finds them.
DeepSpeed itself trains only on CUDA GPUs: the save below runs DeepSpeed's own `module_state_dict` on a stand-in
engine, not a DeepSpeed engine."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from miva_lightning.config import compose
from miva_lightning.training.checkpoints import resolve_resume
from tiny_components import TINY_BACKBONE, TINY_MIVA

pytest.importorskip("deepspeed")  # the pinned requirements install it (DS_BUILD_OPS=0: no CUDA ops compiled)


def deepspeed_cfg(*overrides: str):
    return compose("train", ["backbone.pretrained=null", *TINY_BACKBONE, *TINY_MIVA, "trainer=deepspeed",
                             "paths.output_dir=unused", "logger=none", "callbacks=none", *overrides])  # fmt: skip


@pytest.fixture
def cuda_claimed(monkeypatch):
    """The strategy refuses to be built without CUDA; these tests build it anyway to look at it."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_config_builds_zero_stage_2_with_adapter_only_checkpoints(cuda_claimed):
    from miva_lightning.training.deepspeed_strategy import AdapterOnlyDeepSpeedStrategy

    cfg = deepspeed_cfg()
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "32-true"
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, AdapterOnlyDeepSpeedStrategy)
    zero = strategy.config["zero_optimization"]
    assert zero["stage"] == 2 and "offload_optimizer" not in zero
    assert zero["allgather_bucket_size"] == zero["reduce_bucket_size"] == 200_000_000
    assert strategy.exclude_frozen_parameters and strategy.config["zero_allow_untested_optimizer"]


def test_a_machine_without_cuda_gets_a_clear_error():
    from miva_lightning.utils.lightning_setup import build_trainer

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for overrides in ((), ("trainer.accelerator=cpu", "trainer.devices=1")):
        with pytest.raises(Exception, match=r"trainer=deepspeed: DeepSpeed ZeRO trains on CUDA GPUs only") as error:
            build_trainer(deepspeed_cfg(*overrides))
        assert "trainer=ddp trainer.accelerator=cpu" in str(error.value)


class StandInEngine:
    """What `DeepSpeedStrategy.save_checkpoint` uses of a DeepSpeed engine, saving as DeepSpeed does: its own
    `module_state_dict` (the real method) plus Lightning's client state in `<dir>/<tag>/mp_rank_00_model_states.pt`,
    then the `latest` file."""

    from deepspeed.runtime.engine import DeepSpeedEngine

    module_state_dict = DeepSpeedEngine.module_state_dict

    def __init__(self, module):
        self.module = module

    def random_ltd_enabled(self) -> bool:
        return False

    def save_checkpoint(self, save_dir, client_state, tag, exclude_frozen_parameters=False) -> None:
        (Path(save_dir) / tag).mkdir(parents=True)
        state = {"module": self.module_state_dict(exclude_frozen_parameters=exclude_frozen_parameters), **client_state}
        torch.save(state, Path(save_dir) / tag / "mp_rank_00_model_states.pt")
        (Path(save_dir) / "latest").write_text(tag)


def test_checkpoints_hold_the_adapter_alone_and_resume(tmp_path, cuda_claimed):
    from miva_lightning.backbones import build_backbone
    from miva_lightning.pipelines.train import build_module

    cfg = deepspeed_cfg()
    module = build_module(cfg, build_backbone(cfg.backbone))
    strategy = instantiate(cfg.trainer.strategy)
    strategy.connect(module)
    engine = strategy.model = StandInEngine(module)
    adapter = module.trainable_state_keys()
    deepspeed_keeps = set(engine.module_state_dict(exclude_frozen_parameters=True))
    assert deepspeed_keeps - adapter  # DeepSpeed alone would keep the base's buffers (and LoRA aliases)

    checkpoint = {"state_dict": module.state_dict(), "optimizer_states": [{}], "global_step": 3, "epoch": 0,
                  "loops": {}, "callbacks": {}, "lr_schedulers": []}  # fmt: skip
    module.on_save_checkpoint(checkpoint)
    folder = tmp_path / "checkpoints" / "step_000003.ckpt"
    strategy.save_checkpoint(checkpoint, folder)
    saved = torch.load(folder / "checkpoint" / "mp_rank_00_model_states.pt", weights_only=False)
    assert set(saved["module"]) == adapter
    assert "state_dict" not in saved and "optimizer_states" not in saved and saved["global_step"] == 3
    assert "module_state_dict" not in vars(engine)  # the engine's own method again

    module.on_load_checkpoint(saved)  # DeepSpeed restored the tensors: the module takes the rest (RNG states)
    assert resolve_resume("auto", tmp_path, ()) == str(folder)


def test_resume_takes_finished_deepspeed_folders_only(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    for name, finished in (("step_000002.ckpt", True), ("step_000004.ckpt", False), ("last.ckpt", True)):
        (checkpoints / name / "checkpoint").mkdir(parents=True)
        if finished:
            (checkpoints / name / "latest").write_text("checkpoint")
    with pytest.warns(UserWarning, match="step_000004.ckpt: its save did not finish"):
        assert resolve_resume("auto", tmp_path) == str(checkpoints / "step_000002.ckpt")
    with pytest.raises(ValueError, match="did not finish"):
        resolve_resume(checkpoints / "step_000004.ckpt", tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_resume(checkpoints / "last.ckpt", tmp_path) == str(checkpoints / "last.ckpt")
