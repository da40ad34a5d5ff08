"""Memory levers, each a switch, on tiny components of the real classes: where a lever must not change the result
(gradient checkpointing, the attention implementation, the latent cache) it is compared with the lever off."""

from __future__ import annotations

import logging
import sys
import warnings

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from miva_lightning.adapters import Miva, MivaConfig
from miva_lightning.backbones.animatediff import load_animatediff
from miva_lightning.data.clip_dataset import FewShotClipDataset
from miva_lightning.data.clip_sources import motion_world_clip_entries
from miva_lightning.data.latent_cache import LatentClipDataset
from miva_lightning.training import optimization
from miva_lightning.training.miva_module import MivaModule
from miva_lightning.training.optimization import MivaOptimization, build_adamw
from miva_lightning.training.resumable_batches import StepKeyedBatches
from test_backbone_animatediff import _cfg, tiny_weights  # noqa: F401 - the fixture is used by name
from tiny_components import TINY_BACKBONE, TINY_MIVA

MIVA = MivaConfig(ca_rank=4, lora_rank=2)


def trained_like(miva: Miva, seed: int = 3) -> Miva:
    """Every adapter parameter moved off its (partly zero) initial value, so every gradient is non-zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in miva.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator).to(parameter.dtype))
    return miva


def module_on(backbone, reference: Miva | None = None) -> MivaModule:
    """A MivaModule whose MIVA equals `reference` (or a fresh trained-like one)."""
    miva = Miva.from_unet(backbone.unet, MIVA)
    miva.load_state_dict((reference or trained_like(Miva.from_unet(backbone.unet, MIVA))).state_dict())
    return MivaModule(backbone, miva, noise_seed=5)


def clips(flip_p: float = 0.5, frames: int = 3, clip_frames: int = 6) -> FewShotClipDataset:
    """World clips longer than the window (random start frames) with random flips, 16x16 (VAE factor 2)."""
    entries = motion_world_clip_entries(["zoom_out"], clips_per_motion=3, size=16, num_frames=clip_frames, seed=0)
    return FewShotClipDataset(entries, num_frames=frames, height=16, width=16, flip_p=flip_p, seed=1)


def loss_and_grads(module: MivaModule, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    module.miva.zero_grad(set_to_none=True)
    loss = module.training_step(batch, 0)
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in module.miva.named_parameters() if p.grad is not None}


# ---------------------------------------------------------------------------------------- gradient checkpointing
def test_gradient_checkpointing_gives_the_same_loss_and_adapter_gradients(tiny_weights):  # noqa: F811
    """`enable_gradient_checkpointing` recomputes the frozen UNet's blocks in backward (also in eval mode, where
    the frozen base stays); the MIVA's processors run again there and must give the same gradients."""
    plain = load_animatediff(_cfg(tiny_weights))
    checkpointed = load_animatediff(_cfg(tiny_weights, enable_gradient_checkpointing=True))
    reference = module_on(plain)
    modules = {"plain": reference, "checkpointed": module_on(checkpointed, reference.miva)}
    batch = {"video": torch.rand(2, 3, 3, 16, 16, generator=torch.Generator().manual_seed(0))}
    results, resnet_calls = {}, {}
    for name, module in modules.items():
        calls = []
        hook = module.unet.down_blocks[1].resnets[0].register_forward_pre_hook(lambda *_: calls.append(1))
        results[name] = loss_and_grads(module, batch)
        hook.remove()
        resnet_calls[name] = len(calls)
    # a block after the first adapter is recomputed in backward: the lever is on
    assert resnet_calls == {"plain": 1, "checkpointed": 2}
    (loss, grads), (loss_ckpt, grads_ckpt) = results["plain"], results["checkpointed"]
    torch.testing.assert_close(loss_ckpt, loss)
    assert grads.keys() == grads_ckpt.keys() and len(grads) == len(list(reference.miva.parameters()))
    for name, grad in grads.items():
        assert grad.abs().sum() > 0, name
        torch.testing.assert_close(grads_ckpt[name], grad, atol=1e-6, rtol=1e-4, msg=name)


# ---------------------------------------------------------------------------------------- bf16 base, fp32 adapter
def test_bf16_base_trains_fp32_adapters(tiny_weights):  # noqa: F811
    """`backbone.dtype=bf16`: the frozen base (UNet, VAE, text encoder) in bf16, the MIVA and its gradients and
    optimizer states in fp32; training steps run on a CPU with bf16 weights, and under bf16 autocast."""
    backbone = load_animatediff(_cfg(tiny_weights, dtype="bf16"))
    assert {p.dtype for p in backbone.unet.parameters()} == {torch.bfloat16}
    assert backbone.codec.vae.dtype == torch.bfloat16 and backbone.text_encoder.dtype == torch.bfloat16
    module = module_on(backbone)
    assert {p.dtype for p in module.miva.parameters()} == {torch.float32}

    loss, grads = loss_and_grads(module, {"video": torch.rand(2, 3, 3, 16, 16)})
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert grads and all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads.values())

    before = {name: p.detach().clone() for name, p in module.miva.named_parameters()}
    batches = StepKeyedBatches(clips(), batch_size=2, seed=0, epoch_keys=True)
    trainer = L.Trainer(accelerator="cpu", precision="bf16-mixed", max_steps=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, train_dataloaders=batches)
    assert trainer.global_step == 2 and all(torch.isfinite(x) for x in module.recent_losses)
    assert {p.dtype for p in module.miva.parameters()} == {torch.float32}
    assert {p.dtype for p in module.unet.parameters() if not p.requires_grad} == {torch.bfloat16}  # never converted
    optimizer_states = [s for state in trainer.optimizers[0].state.values() for s in state.values() if s.ndim > 0]
    assert optimizer_states and {s.dtype for s in optimizer_states} == {torch.float32}
    assert any(not torch.equal(before[name], p) for name, p in module.miva.named_parameters())


# ---------------------------------------------------------------------------------------- 8-bit AdamW fallback
def test_eight_bit_adamw_without_bitsandbytes_warns_once_and_says_what_to_install(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # `import bitsandbytes` raises ImportError
    monkeypatch.setattr(optimization, "_eight_bit_fallback_reported", False)
    params = [torch.nn.Parameter(torch.zeros(3))]
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")  # counting our own once-only rule, not Python's
        optimizers = [build_adamw(params, MivaOptimization(eight_bit=True)) for _ in range(3)]
    fallback = [w for w in caught if "bitsandbytes" in str(w.message)]
    assert len(fallback) == 1 and fallback[0].category is UserWarning
    message = str(fallback[0].message)
    assert "pip install -e '.[bnb]'" in message and "torch.optim.AdamW" in message
    assert sum("bitsandbytes is not installed" in r.getMessage() for r in caplog.records) == 1
    assert all(type(o) is torch.optim.AdamW for o in optimizers)


# ---------------------------------------------------------------------------------------- attention implementation
def test_sdpa_sliced_and_eager_attention_agree(tiny_weights):  # noqa: F811
    """`backbone.attention`: torch SDPA, sliced and eager attention compute one function, with a MIVA attached
    (its CFA wraps attn1's processor) and without."""
    from miva_lightning.adapters import attach_mivas

    reference = trained_like(Miva.from_unet(load_animatediff(_cfg(tiny_weights, load_text_encoder=False)).unet, MIVA))
    generator = torch.Generator().manual_seed(0)
    latents, text = torch.randn(2, 4, 3, 16, 16, generator=generator), torch.randn(6, 12, 32, generator=generator)
    outputs = {}
    for attention in ("sdpa", "sliced", "eager"):
        unet = load_animatediff(_cfg(tiny_weights, attention=attention, load_text_encoder=False)).unet
        with torch.no_grad():
            bare = unet(latents, torch.tensor([700, 30]), encoder_hidden_states=text).sample
            miva = Miva.from_unet(unet, MIVA)
            miva.load_state_dict(reference.state_dict())
            attach_mivas(unet, [(miva, 1.0)])
            adapted = unet(latents, torch.tensor([700, 30]), encoder_hidden_states=text).sample
        outputs[attention] = bare, adapted
    assert not torch.allclose(outputs["sdpa"][0], outputs["sdpa"][1], atol=1e-3)  # the MIVA changes the output
    for attention in ("sliced", "eager"):
        for sdpa, other in zip(outputs["sdpa"], outputs[attention]):
            torch.testing.assert_close(other, sdpa, atol=1e-5, rtol=1e-4, msg=attention)


# ---------------------------------------------------------------------------------------- latent cache
def test_training_from_cached_latents_gives_the_pixel_loss(tiny_weights):  # noqa: F811
    """Random windows and flips: the cache holds every frame of every clip, plain and mirrored, and serves the
    window and flip the pixel dataset would draw; with the VAE's posterior mean the loss is the same."""
    backbone = load_animatediff(_cfg(tiny_weights))
    pixels = clips()
    assert max(pixels.window_starts(i) for i in range(len(pixels))) == 4
    cache = LatentClipDataset(pixels, backbone.codec)
    assert set(cache.latents) == {(i, flip) for i in range(3) for flip in (False, True)}
    assert cache.latents[0, False].shape == (4, 6, 8, 8)  # c, every frame of the clip, h/2, w/2
    module = module_on(backbone)
    from_pixels = StepKeyedBatches(pixels, batch_size=2, seed=0, epoch_keys=True)
    from_latents = StepKeyedBatches(cache, batch_size=2, seed=0, epoch_keys=True)
    draws = set()
    for position in range(6):  # four passes over the three clips: several start frames, both flips
        pixel_batch, latent_batch = from_pixels.batch(position), from_latents.batch(position)
        assert "video" not in latent_batch and latent_batch["path"] == pixel_batch["path"]
        with torch.no_grad():
            encoded = backbone.codec.encode(pixel_batch["video"])
        torch.testing.assert_close(latent_batch["latents"], encoded, atol=1e-5, rtol=1e-4)
        state = module.noise_generator.get_state()
        loss_pixels = module.training_step(pixel_batch, 0).detach()
        module.noise_generator.set_state(state)
        loss_latents = module.training_step(latent_batch, 0).detach()
        torch.testing.assert_close(loss_latents, loss_pixels, atol=1e-5, rtol=1e-4)
        flat = position * 2
        draws |= {pixels.draw(*from_pixels.sample_key(flat + slot)) for slot in range(2)}
    assert {flip for _, flip in draws} == {False, True} and len({start for start, _ in draws}) > 1


class CausalStandIn:
    """A codec whose latent frames mix several video frames, as Wan's causal VAE does: frame 1 alone, then
    each group of 4 frames averaged (`temporal_downscale` 4)."""

    temporal_downscale = 4

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        first, rest = video[:, :1], video[:, 1:]
        groups = rest.reshape(rest.shape[0], -1, 4, *rest.shape[2:]).mean(dim=2)
        return torch.cat([first, groups], dim=1).transpose(1, 2)  # b c f' h w


def test_a_temporal_codec_caches_one_latent_per_window_and_flip():
    pixels = clips(frames=5, clip_frames=7)
    cache = LatentClipDataset(pixels, CausalStandIn())
    assert set(cache.latents) == {(i, start, flip) for i in range(3) for start in range(3) for flip in (False, True)}
    for key in [(index, epoch) for index in range(3) for epoch in range(4)]:
        expected = CausalStandIn().encode(pixels[key]["video"][None])[0]
        assert torch.equal(cache[key]["latents"], expected), key


class EncoderWatch(L.Callback):
    """Counts, per phase, the calls into the VAE and the text encoder, and whether they are part of the module."""

    def __init__(self, backbone):
        self.parts = {"codec": backbone.codec, "text_encoder": backbone.text_encoder}
        self.calls: dict[str, int] = {"train": 0, "validation": 0}
        self.phase = "setup"
        self.in_module_during_training: set[str] = set()
        for part in (backbone.codec.vae.encoder, backbone.codec.vae.decoder, backbone.text_encoder):
            part.register_forward_pre_hook(lambda *_: self._count())

    def _count(self) -> None:
        if self.phase in self.calls:
            self.calls[self.phase] += 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.phase = "train"
        children = {id(m) for m in pl_module.modules()}
        parameters = {id(p) for p in pl_module.parameters()}
        for name, part in self.parts.items():
            if id(part) in children or any(id(p) in parameters for p in part.parameters()):
                self.in_module_during_training.add(name)

    def on_validation_start(self, trainer, pl_module) -> None:
        self.phase = "validation"

    def on_validation_end(self, trainer, pl_module) -> None:
        self.phase = "after validation"


@pytest.mark.parametrize("prompt", ["empty", "caption"])
def test_training_from_cached_latents_leaves_the_encoders_off_the_module(tiny_weights, prompt):  # noqa: F811
    """Parked encoders are not children of the module (Lightning's device moves, DDP and DeepSpeed never reach
    them) and are never called by a training step, also when the method trains on captions (LAMP: embedded
    once with the latents); previews still decode with the VAE."""
    from miva_lightning.backbones import encode_prompts
    from miva_lightning.pipelines.train import FirstFrames
    from miva_lightning.training.lamp_module import LampModule

    backbone = load_animatediff(_cfg(tiny_weights))
    module = module_on(backbone) if prompt == "empty" else LampModule(backbone, prompt="caption")
    captions = (lambda texts: encode_prompts(backbone, texts)) if prompt == "caption" else None
    cache = LatentClipDataset(clips(), backbone.codec, prompt_encoder=captions)
    assert ("prompt_embeds" in cache[0]) == (prompt == "caption")
    watch = EncoderWatch(backbone)
    module.park_encoders()
    assert module.codec is None and module.text_encoder is None
    previews = DataLoader(FirstFrames(torch.rand(1, 3, 16, 16)), batch_size=1)
    module.preview_num_frames, module.preview_steps = 3, 2
    trainer = L.Trainer(accelerator="cpu", max_steps=2, val_check_interval=2, check_val_every_n_epoch=None,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[watch])  # fmt: skip
    trainer.fit(module, train_dataloaders=StepKeyedBatches(cache, batch_size=2, seed=0, epoch_keys=True),
                val_dataloaders=previews)  # fmt: skip
    assert trainer.global_step == 2
    assert watch.in_module_during_training == set()
    assert watch.calls["train"] == 0 and watch.calls["validation"] > 0
    assert all(p.device.type == "cpu" for part in module.parked for p in part.parameters())


@pytest.mark.parametrize("method", ["miva", "lamp"])
def test_miva_train_with_cache_latents_matches_training_from_pixels(tmp_path, method):
    """`cache_latents=true` through miva-train on the embedded base (lossless pixel codec): the same losses and
    export as from pixels. LAMP trains on captions: their embeddings are cached with the latents."""
    from safetensors.torch import load_file

    from miva_lightning.config import compose
    from miva_lightning.pipelines.train import train_method

    summaries = {}
    for cached in (False, True):
        run = tmp_path / f"cached_{cached}"
        cfg = compose("train", [
            "backbone.pretrained=null", *TINY_BACKBONE, *TINY_MIVA, "trainer=cpu", "trainer.max_steps=3",
            "trainer.enable_progress_bar=false", "logger=none", "callbacks=none", "checkpoint.every_n_steps=3",
            "preview.every_n_steps=3", "preview.num_first_frames=1", "preview.steps=2", "preview.formats=[gif]",
            "data.max_clips=2", "data.world_clips_per_motion=2", f"method={method}", f"cache_latents={cached}",
            f"paths.output_dir={run}",
        ])  # fmt: skip
        summaries[cached] = train_method(cfg)
    assert summaries[True]["steps"] == summaries[False]["steps"] == 3
    assert summaries[True]["final_loss"] == pytest.approx(summaries[False]["final_loss"], rel=1e-5)
    plain, cached = (load_file(summaries[c]["export_path"]) for c in (False, True))
    assert plain.keys() == cached.keys()
    for name, tensor in plain.items():
        torch.testing.assert_close(cached[name], tensor, atol=1e-6, rtol=1e-5, msg=name)
    assert summaries[True]["previews"]
