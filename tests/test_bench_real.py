"""benchmarks/bench_real_size.py on tiny models of the real classes (meta device and small CPU models only).

- The exact counts it reports at full size come from the meta device: on tiny configurations they equal the
  counts of real (allocated) models, counted independently of the script.
- A MIVA (and MotionLoRA) trains none of the base's weights; optimizer-state bytes are 8 per trainable parameter
  for fp32 AdamW, checked against a real AdamW's states after one step.
- `--tiny` runs end to end and writes a JSON with the keys later sessions read.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch

from miva_lightning.adapters import Miva, MivaConfig
from miva_lightning.config import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "bench_real_size.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_real_size", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("backbone", ["sd15", "wan21"])
@pytest.mark.parametrize("method", ["miva", "full_ft", "motion_lora"])
def test_meta_counts_equal_real_tiny_models(bench, backbone, method):
    size = bench.tiny_size(backbone)
    on_meta = bench.count_method(size, method, "meta")
    on_cpu = bench.count_method(size, method, "cpu")
    assert on_meta == on_cpu

    # independently of the script's attach path: a real model's own parameter count / a real Miva's size
    real = bench.build_denoiser(size, "cpu")
    assert on_meta["denoiser_params"] == sum(p.numel() for p in real.parameters())
    if method == "full_ft":
        assert on_meta["trainable_params"] == sum(p.numel() for p in real.parameters())
    else:
        config = MivaConfig.from_dict({**bench.adapter_config(method).to_dict(), **size.miva_overrides})
        assert on_meta["trainable_params"] == Miva.from_unet(real, config).parameter_counts()["total"]
    assert on_meta["optimizer_state_bytes"] == 8 * on_meta["trainable_params"]


def test_method_configs_follow_the_yaml(bench):
    miva, lora = bench.adapter_config("miva"), bench.adapter_config("motion_lora")
    assert miva.cross_frame and miva.implicit_prompt and miva.temporal_lora and miva.lora_rank == 32 and miva.ca_rank == 64
    assert lora.temporal_lora and not (lora.cross_frame or lora.implicit_prompt or lora.implicit_time_cond)
    assert bench.adapter_config("full_ft") is None


@pytest.mark.parametrize("backbone", ["sd15", "wan21"])
@pytest.mark.parametrize("method", ["miva", "motion_lora"])
def test_adapter_trains_no_base_weight(bench, backbone, method):
    size = bench.tiny_size(backbone)
    denoiser = bench.build_denoiser(size, "cpu")
    base = {id(p): name for name, p in denoiser.named_parameters()}
    attached = bench.attach_method(denoiser, method, size.miva_overrides)
    try:
        assert attached.params and not {id(p) for p in attached.params} & set(base)
        assert not [name for name, p in denoiser.named_parameters() if id(p) in base and p.requires_grad]
        backbone_ = bench.bare_backbone(size, denoiser)
        latents, embeds = bench.inputs(size, torch.device("cpu"))
        from miva_lightning.training.diffusion_loss import diffusion_loss

        diffusion_loss(backbone_, None, embeds, generator=torch.Generator().manual_seed(0), latents=latents).backward()
        assert all(p.grad is None for p in denoiser.parameters() if id(p) in base)
        assert all(p.grad is not None for p in attached.params)
    finally:
        attached.detach(denoiser)


@pytest.mark.parametrize("method", ["miva", "full_ft"])
def test_adamw_state_bytes_are_eight_per_trainable_parameter(bench, method):
    size = bench.tiny_size("sd15")
    denoiser = bench.build_denoiser(size, "cpu")
    attached = bench.attach_method(denoiser, method, size.miva_overrides)
    try:
        optimizer = torch.optim.AdamW(attached.params, lr=1e-5)
        for p in attached.params:
            p.grad = torch.ones_like(p)
        optimizer.step()
        moments = sum(
            state[key].numel() * state[key].element_size()
            for state in optimizer.state.values()
            for key in ("exp_avg", "exp_avg_sq")
        )
        trainable = sum(p.numel() for p in attached.params)
        assert moments == bench.adamw_state_bytes(attached.params) == 8 * trainable
        assert bench.count_method(size, method, "meta")["optimizer_state_bytes"] == moments
    finally:
        attached.detach(denoiser)


def test_adamw8bit_state_bytes_formula(bench):
    small, large = torch.empty(4095), torch.empty(5000)  # below / above bitsandbytes' min_8bit_size (4096)
    assert bench.adamw8bit_state_bytes([small]) == 8 * 4095
    assert bench.adamw8bit_state_bytes([large]) == 2 * 5000 + 2 * 4 * 20  # ceil(5000 / 256) = 20 blocks


def test_memory_estimate_parts(bench):
    size = bench.tiny_size("wan21")
    with_ckpt = bench.estimate_peak(size, "full_ft", grad_ckpt=True, precision="fp32")
    without = bench.estimate_peak(size, "full_ft", grad_ckpt=False, precision="fp32")
    parts = ("weights_bytes", "gradients_bytes", "optimizer_state_bytes", "activations_bytes", "weight_copies_bytes")
    assert with_ckpt["estimate_bytes"] == sum(with_ckpt[key] for key in parts)
    trainable = bench.count_method(size, "full_ft")["trainable_params"]
    assert with_ckpt["gradients_bytes"] == 4 * trainable and with_ckpt["optimizer_state_bytes"] == 8 * trainable
    assert with_ckpt["weight_copies_bytes"] == 0  # fp32: a saved weight is the weight itself
    assert 0 < with_ckpt["activations_bytes"] < without["activations_bytes"]
    miva = bench.estimate_peak(size, "miva", grad_ckpt=False, precision="bf16-mixed")
    assert miva["weight_copies_bytes"] > 0 and miva["gradients_bytes"] < with_ckpt["gradients_bytes"]


def test_tiny_run_writes_the_json(bench, tmp_path):
    out = tmp_path / "bench_real.json"
    bench.main(["--tiny", "--device", "cpu", "--steps", "1", "--warmup", "0", "--json", str(out)])
    data = json.loads(out.read_text())
    assert {"commit", "dirty", "machine", "busy_before", "busy_after", "settings", "summary"} <= set(data)
    assert data["busy_before"]["load_average_1_5_15"] is None or len(data["busy_before"]["load_average_1_5_15"]) == 3
    for backbone in ("sd15", "wan21"):
        result = data["backbones"][backbone]
        assert set(result["inference"]) == {"1", "2", "4"} and all(s > 0 for s in result["inference"].values())
        assert set(result["inference_by_lora_mode"]) == {"merge", "residual", "merged_cfa"}
        for method in ("miva", "full_ft", "motion_lora"):
            row = result["methods"][method]
            required = ("trainable_params", "optimizer_state_bytes", "peak_mem_bytes", "peak_mem_how", "step_s", "clip", "device")
            assert not [key for key in required if key not in row], (backbone, method)
            assert row["peak_mem_bytes"] is None and row["device"] == "cpu" and row["step_s"] > 0
            assert row["peak_mem_estimate_bytes"] > 0
        ratios = data["summary"][backbone]
        assert 0 < ratios["optimizer_state_miva_over_full_ft"] < 1
        assert ratios["peak_memory_by"].startswith("computed")


@pytest.mark.parametrize("backbone", ["sd15", "wan21"])
def test_inference_flops_count_each_adapter_once_and_match_a_real_model(bench, backbone):
    """Every extra MIVA adds the same work (merge mode: its CFA and CA branches; its LoRA is folded into the
    weights), residual mode adds a temporal attention per adapter on top, and the meta-device count equals the
    count of the same forward on an allocated model."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from miva_lightning.adapters import attach_mivas, detach_mivas
    from miva_lightning.backbones.forward import unet_predict

    size = bench.tiny_size(backbone)
    counted = bench.count_inference_flops(size)
    base, merge = counted["inference_flops_base"], counted["inference_flops_by_lora_mode"]["merge"]
    residual = counted["inference_flops_by_lora_mode"]["residual"]
    per_adapter = merge["2"] - merge["1"]
    assert merge["1"] > base and per_adapter > 0 and merge["4"] - merge["2"] == 2 * per_adapter
    assert residual["2"] > merge["2"] and residual["4"] > merge["4"]
    merged_cfa = counted["inference_flops_by_lora_mode"]["merged_cfa"]  # one CFA for all: only the CA grows with K
    assert merged_cfa["1"] == merge["1"] and merged_cfa["4"] - merged_cfa["1"] < (merge["4"] - merge["1"]) / 2

    denoiser = bench.build_denoiser(size, "cpu")
    backbone_ = bench.bare_backbone(size, denoiser)
    latents, embeds = bench.inputs(size, torch.device("cpu"))
    miva = bench.make_miva(denoiser, "miva", size.miva_overrides)
    handle = attach_mivas(denoiser, [(miva, 1.0)], lora_mode="merge")
    try:
        # the math backend: FlopCounterMode does not count CPU's fused flash-attention op (meta runs the math path)
        with FlopCounterMode(display=False) as counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            timesteps = torch.tensor([500.0 if size.family == "dit" else 500])
            unet_predict(backbone_, latents, timesteps, embeds, latents[:, :, 0])
    finally:
        detach_mivas(handle)
    assert counter.get_total_flops() == merge["1"]
