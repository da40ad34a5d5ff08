"""MivaModule through a real Lightning Trainer on a tiny random backbone: what trains, what is saved,
and that a resumed run ends exactly where an uninterrupted one does."""

from __future__ import annotations

import copy
import math
import sys

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import Dataset

from miva_lightning.adapters import Miva, MivaConfig
from miva_lightning.backbones import build_backbone
from miva_lightning.config import compose
from miva_lightning.training.miva_module import MivaModule, MivaOptimization, build_adamw, lr_factor
from miva_lightning.training.resumable_batches import BatchPosition, StepKeyedBatches

import tiny_components

TINY_BACKBONE = ["backbone.pretrained=null", *tiny_components.TINY_BACKBONE, "paths.output_dir=unused"]
TINY_MIVA = MivaConfig(ca_rank=8, lora_rank=4)


@pytest.fixture(scope="module")
def template_backbone():
    torch.manual_seed(0)
    return build_backbone(compose("train", TINY_BACKBONE).backbone)


def fresh_module(template, **kwargs) -> MivaModule:
    """A new backbone copy (attaching mutates the UNet) and a freshly seeded MIVA."""
    backbone = copy.deepcopy(template)
    torch.manual_seed(1)
    return MivaModule(backbone, Miva.from_unet(backbone.unet, TINY_MIVA), **kwargs)


class RandomClips(Dataset):
    """Fixed random videos `f c h w`; a random flip drawn from the global RNG (like a real augmentation)."""

    def __init__(self, n: int = 5, frames: int = 4, size: int = 32):
        self.videos = torch.rand(n, frames, 3, size, size, generator=torch.Generator().manual_seed(7))

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict:
        video = self.videos[index]
        return {"video": video.flip(-1) if torch.rand(()) < 0.5 else video}


def make_trainer(root, max_steps: int, callbacks=(), **kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=str(root),
        gradient_clip_val=1.0,
        callbacks=list(callbacks),
        **kwargs,
    )


def base_tensors(module: MivaModule) -> dict[str, torch.Tensor]:
    adapter_ids = {id(p) for p in module.miva.parameters()}
    return {
        name: p.detach().clone()
        for name, p in module.unet.named_parameters()
        if id(p) not in adapter_ids
    } | {f"text.{n}": p.detach().clone() for n, p in module.text_encoder.named_parameters()}


def test_only_adapter_trains_base_stays_bit_identical_and_checkpoint_is_adapter_only(template_backbone, tmp_path):
    module = fresh_module(template_backbone, optimization={"lr": 1e-2})
    before_base = base_tensors(module)
    before_adapter = {k: v.clone() for k, v in module.miva.state_dict().items()}

    grads_seen: dict[str, bool] = {}

    class RecordGrads(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            for name, p in pl_module.named_parameters():
                grads_seen[name] = grads_seen.get(name, False) or p.grad is not None

    batches = StepKeyedBatches(RandomClips(), batch_size=2, seed=0)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1, save_last=True)
    trainer = make_trainer(tmp_path, max_steps=2, callbacks=[RecordGrads(), BatchPosition(batches), checkpoint])
    assert module.recent_loss() is None
    trainer.fit(module, train_dataloaders=batches)
    assert len(module.recent_losses) == 2 and math.isfinite(module.recent_loss())

    # gradients reach the adapter only; the optimizer holds the adapter only
    adapter_ids = {id(p) for p in module.miva.parameters()}
    names_with_grads = {n for n, seen in grads_seen.items() if seen}
    params = dict(module.named_parameters())
    assert names_with_grads and all(id(params[n]) in adapter_ids for n in names_with_grads)
    optimizer_params = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimizer_params == {id(p) for p in module.adapter_parameters()}
    # the base is bit-identical, the adapter moved
    for name, tensor in base_tensors(module).items():
        assert torch.equal(tensor, before_base[name]), f"frozen base weight {name} changed"
    changed = [k for k, v in module.miva.state_dict().items() if not torch.equal(v, before_adapter[k])]
    assert changed, "no adapter weight moved after 2 AdamW steps"

    # the checkpoint: adapter tensors, optimizer, scheduler, step, RNG states; no base weights
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    keys = set(saved["state_dict"])
    assert keys == {f"miva.{k}" for k in module.miva.state_dict()}
    assert not any(k.startswith(("unet.", "text_encoder.", "codec.")) for k in keys)
    assert saved["global_step"] == 2
    assert saved["optimizer_states"] and saved["lr_schedulers"]
    assert set(saved["miva_rng_states"]) >= {"torch", "numpy", "python", "noise_generator"}
    assert sum(v.numel() for v in saved["state_dict"].values()) < sum(p.numel() for p in module.unet.parameters()) / 4


def test_train_mode_keeps_frozen_base_in_eval(template_backbone):
    module = fresh_module(template_backbone)
    module.train()
    assert not module.unet.training and not module.text_encoder.training
    adapter_modules = set(module.miva.modules())
    assert all(not m.training for m in module.unet.modules() if m not in adapter_modules)
    assert module.miva.training
    module.eval()
    assert not module.miva.training


class StopAt(L.Callback):
    """Simulates a crash: stop after `step` optimizer steps (the schedule still plans for max_steps)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def run_steps(template, root, max_steps: int, resume_from=None, checkpoint_every: int | None = None, stop_at=None):
    L.seed_everything(42)
    module = fresh_module(template, optimization={"lr": 5e-3, "warmup_steps": 2, "lr_schedule": "cosine"},
                          noise_seed=42)
    batches = StepKeyedBatches(RandomClips(), batch_size=2, seed=3)
    callbacks = [BatchPosition(batches)] + ([StopAt(stop_at)] if stop_at else [])
    if checkpoint_every:
        callbacks.append(ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=checkpoint_every, save_top_k=-1))
    trainer = make_trainer(root, max_steps=max_steps, callbacks=callbacks)
    trainer.fit(module, train_dataloaders=batches, ckpt_path=resume_from)
    return module


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(template_backbone, tmp_path):
    total, interrupt_at = 5, 3
    straight = run_steps(template_backbone, tmp_path / "straight", total)
    first = run_steps(template_backbone, tmp_path / "first", total, checkpoint_every=interrupt_at, stop_at=interrupt_at)
    assert first.trainer.global_step == interrupt_at
    ckpt = next((tmp_path / "first" / "ckpt").glob("*.ckpt"))
    # Disturb every global RNG: the checkpoint must bring them back.
    torch.manual_seed(999)
    resumed = run_steps(template_backbone, tmp_path / "second", total, resume_from=str(ckpt))
    assert resumed.trainer.global_step == total
    for key, value in straight.miva.state_dict().items():
        assert torch.equal(value, resumed.miva.state_dict()[key]), f"{key} differs after resume"


def test_step_keyed_batches_are_a_function_of_position():
    batches = StepKeyedBatches(RandomClips(), batch_size=2, seed=5)
    first = [b["video"] for _, b in zip(range(4), batches)]
    batches.start_position = 2
    again = [b["video"] for _, b in zip(range(2), batches)]
    assert torch.equal(first[2], again[0]) and torch.equal(first[3], again[1])
    state = torch.get_rng_state()
    batches.batch(0)
    assert torch.equal(state, torch.get_rng_state()), "loading a batch must not consume the global RNG"


def test_lr_schedule_warmup_then_cosine_known_values():
    assert lr_factor(0, 4, 100, "cosine", 0.0) == pytest.approx(0.25)
    assert lr_factor(3, 4, 100, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor(4, 4, 100, "cosine", 0.0) == pytest.approx(1.0)
    assert lr_factor(52, 4, 100, "cosine", 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 4, 100, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(52, 4, 100, "linear", 0.0) == pytest.approx(0.5)
    assert lr_factor(80, 4, 100, "constant", 0.0) == 1.0
    with pytest.raises(ValueError, match="lr_schedule"):
        MivaOptimization(lr_schedule="step")


def test_eight_bit_without_bitsandbytes_warns_and_falls_back(monkeypatch):
    from miva_lightning.training import optimization

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # not installed, wherever the test runs
    monkeypatch.setattr(optimization, "_eight_bit_fallback_reported", False)  # reported once per process
    params = [torch.nn.Parameter(torch.zeros(3))]
    with pytest.warns(UserWarning, match="bitsandbytes is not installed"):
        optimizer = build_adamw(params, MivaOptimization(eight_bit=True))
    assert isinstance(optimizer, torch.optim.AdamW)
    assert math.isclose(optimizer.param_groups[0]["lr"], 1e-4)


def test_validation_writes_previews_without_touching_training_rngs(template_backbone, tmp_path):
    from torch.utils.data import DataLoader

    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from miva_lightning.callbacks.previews import MivaPreviews
    from miva_lightning.pipelines.train import FirstFrames
    from miva_lightning.world import heldout_first_frames

    module = fresh_module(template_backbone, preview_num_frames=3, preview_steps=2)
    frames = heldout_first_frames(2, size=32)
    loader = DataLoader(FirstFrames(frames), batch_size=2, generator=torch.Generator().manual_seed(0))
    previews = MivaPreviews(dirpath=str(tmp_path / "previews"), formats=("gif", "mp4"), fps=4)
    logger = TensorBoardLogger(str(tmp_path), name="tb")
    trainer = L.Trainer(accelerator="cpu", logger=logger, enable_progress_bar=False, callbacks=[previews],
                        default_root_dir=str(tmp_path))
    rng_before, noise_before = torch.get_rng_state(), module.noise_generator.get_state()
    metrics = trainer.validate(module, loader, verbose=False)[0]

    assert torch.equal(rng_before, torch.get_rng_state())
    assert torch.equal(noise_before, module.noise_generator.get_state())
    assert sorted(p.name for p in (tmp_path / "previews" / "step_000000").iterdir()) == [
        "preview_0.gif", "preview_0.mp4", "preview_1.gif", "preview_1.mp4",
    ]
    assert metrics["val/first_frame_psnr_db"] > 60.0  # frame 1 is the clean input (lossless pixel codec)
    logger.experiment.flush()
    events = EventAccumulator(logger.log_dir)
    events.Reload()
    assert set(events.Tags()["images"]) == {"previews/0", "previews/1"}
    with pytest.raises(ValueError, match="formats"):
        MivaPreviews(formats=("avi",))


def test_step_keyed_batches_give_ranks_disjoint_slices():
    batches = StepKeyedBatches(RandomClips(n=8), batch_size=2, seed=1)
    single = torch.cat([batches.batch(0)["video"], batches.batch(1)["video"]])
    two_ranks = torch.cat([batches.batch(0, rank=0, world_size=2)["video"], batches.batch(0, rank=1, world_size=2)["video"]])
    assert torch.equal(single, two_ranks)


def test_parameter_groups_scale_the_lr_per_component():
    from miva_lightning.training.miva_module import parameter_groups
    from tiny_components import tiny_unet

    miva = Miva.from_unet(tiny_unet(time_cond_proj_dim=32), MivaConfig(ca_rank=4, lora_rank=2))
    opt = MivaOptimization(lr=1e-3, component_lr_scale={"time_condition": 10.0, "temporal_lora": 0.5})
    groups = {g["name"]: g for g in parameter_groups(miva, opt)}
    assert set(groups) == {"cross_frame", "implicit_prompt", "temporal_lora", "time_condition"}
    assert groups["time_condition"]["lr"] == pytest.approx(1e-2)
    assert groups["temporal_lora"]["lr"] == pytest.approx(5e-4)
    assert groups["cross_frame"]["lr"] == pytest.approx(1e-3)
    every = [p for g in groups.values() for p in g["params"]]
    assert len(every) == len({id(p) for p in every}) == len(list(miva.parameters()))
    with pytest.raises(ValueError, match="unknown components"):
        parameter_groups(miva, MivaOptimization(component_lr_scale={"cfa": 2.0}))
    with pytest.raises(ValueError, match="finite number > 0"):
        MivaOptimization(component_lr_scale={"time_condition": -1.0})


def test_training_lora_mode_has_the_residual_modes_loss_and_gradients(template_backbone):
    """Training attaches its one MIVA in merge mode (one attention run); it must equal residual mode exactly."""
    from miva_lightning.adapters import attach_mivas, detach_mivas
    from miva_lightning.backbones import encode_prompts
    from miva_lightning.training.diffusion_loss import diffusion_loss
    from miva_lightning.training.miva_module import TRAINING_LORA_MODE

    assert TRAINING_LORA_MODE == "merge"
    backbone = copy.deepcopy(template_backbone)
    backbone.unet.requires_grad_(False)
    torch.manual_seed(3)
    miva = Miva.from_unet(backbone.unet, TINY_MIVA)
    with torch.no_grad():  # leave zero init, so LoRA, CFA and CA all change the output and get gradients
        for p in miva.parameters():
            p.add_(0.05 * torch.randn_like(p))
    video = torch.rand(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    embeds = encode_prompts(backbone, ["", ""]).detach()
    results = {}
    for mode in ("residual", "merge"):
        handle = attach_mivas(backbone.unet, [(miva, 1.0)], lora_mode=mode)
        loss = diffusion_loss(backbone, video, embeds, generator=torch.Generator().manual_seed(5))
        grads = torch.autograd.grad(loss, list(miva.parameters()), allow_unused=True)
        detach_mivas(handle)
        results[mode] = (loss.detach(), grads)
    torch.testing.assert_close(results["merge"][0], results["residual"][0], atol=1e-6, rtol=1e-5)
    lora_grads = 0
    for name, g_merge, g_residual in zip(
        [n for n, _ in miva.named_parameters()], results["merge"][1], results["residual"][1]
    ):
        assert (g_merge is None) == (g_residual is None), name
        if g_merge is not None:
            torch.testing.assert_close(g_merge, g_residual, atol=1e-6, rtol=1e-4)
            lora_grads += "lora" in name and g_merge.abs().sum() > 0
    assert lora_grads > 0, "no temporal LoRA gradient was compared"
