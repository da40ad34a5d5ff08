"""MIVA components on a tiny, real diffusers UNetMotionModel (CPU, seconds).

Identity references, stated per test:
- base_branch="empty_prompt" and CA disabled: the base UNet itself;
- base_branch="none" (METHOD: CA replaces attn2): the base UNet with every spatial attn2 output removed.
"""

import copy
from dataclasses import replace

import pytest
import torch
from einops import rearrange

from miva_lightning.adapters import (
    Miva,
    MivaConfig,
    attach_mivas,
    detach_mivas,
    set_weights,
    trainable_parameters,
)
from miva_lightning.adapters.context import CallContext
from miva_lightning.adapters.cross_frame_attention import CrossFrameAdapter, SharedFrameKV
from miva_lightning.adapters.miva import layer_key, spatial_attention_names
from miva_lightning.adapters.temporal_lora import temporal_lora_targets
from miva_lightning.adapters.weighting import AdaptiveWeighting, LinearWeighting
from tiny_components import tiny_unet

FRAMES = 3


@pytest.fixture(scope="module")
def shared_unet():
    return tiny_unet()


@pytest.fixture
def unet(shared_unet):
    return copy.deepcopy(shared_unet)


@pytest.fixture
def inputs():
    generator = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 4, FRAMES, 8, 8, generator=generator)
    timesteps = torch.tensor([17, 803])
    prompt = torch.randn(2 * FRAMES, 7, 32, generator=generator)
    return sample, timesteps, prompt


def run(unet, inputs):
    with torch.no_grad():
        return unet(*inputs).sample


def perturbed(miva: Miva, seed: int) -> Miva:
    """A MIVA as after training: every parameter moved away from its (partly zero) initial value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in miva.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return miva


class DropOutput:
    """Reference processor: the attention contributes nothing (used to remove attn2 from the base)."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        return hidden_states.new_zeros(*hidden_states.shape[:-1], attn.out_dim)


def base_without_attn2(unet, inputs):
    reference = copy.deepcopy(unet)
    for name in spatial_attention_names(reference, "attn2"):
        reference.get_submodule(name).set_processor(DropOutput())
    return run(reference, inputs)


@pytest.mark.parametrize("cfa_variant", ["joint", "separate"])
@pytest.mark.parametrize("lora_mode", ["merge", "residual"])
def test_zero_init_with_empty_prompt_branch_is_exactly_the_base(unet, inputs, cfa_variant, lora_mode):
    # reference: the base UNet itself (frozen attn2 kept on the given prompt)
    base = run(unet, inputs)
    miva = Miva.from_unet(unet, MivaConfig(base_branch="empty_prompt", cfa_variant=cfa_variant))
    attach_mivas(unet, [(miva, 1.0)], lora_mode=lora_mode)
    assert (run(unet, inputs) - base).abs().max() <= 1e-6


@pytest.mark.parametrize("lora_init", ["kaiming", "normal"])
@pytest.mark.parametrize("lora_alpha", [None, 1.0])
def test_zero_init_is_the_base_with_either_lora_init_and_scale(unet, inputs, lora_init, lora_alpha):
    # reference: the base UNet itself (B = 0, whatever A and the scale are)
    base = run(unet, inputs)
    config = MivaConfig(base_branch="empty_prompt", lora_init=lora_init, lora_alpha=lora_alpha)
    attach_mivas(unet, [Miva.from_unet(unet, config)])
    assert (run(unet, inputs) - base).abs().max() <= 1e-6


def test_zero_init_without_ca_is_exactly_the_base(unet, inputs):
    # reference: the base UNet itself (attn2 untouched when CA is off)
    base = run(unet, inputs)
    miva = Miva.from_unet(unet, MivaConfig(implicit_prompt=False))
    attach_mivas(unet, [miva])
    assert (run(unet, inputs) - base).abs().max() <= 1e-6


def test_zero_init_method_ca_equals_base_without_attn2(unet, inputs):
    # reference: the base with every spatial attn2 output removed (METHOD: CA replaces attn2)
    reference = base_without_attn2(unet, inputs)
    assert (reference - run(unet, inputs)).abs().max() > 1e-3  # attn2 matters, so the test can fail
    miva = Miva.from_unet(unet, MivaConfig(base_branch="none"))
    attach_mivas(unet, [miva])
    assert (run(unet, inputs) - reference).abs().max() <= 1e-6


@pytest.mark.parametrize("lora_mode", ["merge", "residual"])
def test_all_weights_zero_is_the_base(unet, inputs, lora_mode):
    # reference: the base itself (empty_prompt keeps attn2; trained adapters switched off by weight 0)
    base = run(unet, inputs)
    config = MivaConfig(base_branch="empty_prompt")
    first = perturbed(Miva.from_unet(unet, config), seed=1)
    second = perturbed(Miva.from_unet(unet, config), seed=2)
    handle = attach_mivas(unet, [(first, 0.0), (second, 0.0)], lora_mode=lora_mode)
    assert (run(unet, inputs) - base).abs().max() <= 1e-6
    set_weights(handle, [1.0, 0.0])
    assert (run(unet, inputs) - base).abs().max() > 1e-3  # a trained adapter does change the output


@pytest.mark.parametrize("lora_mode,cfa_mode", [("merge", "sum"), ("residual", "sum"), ("merge", "merge")])
def test_copies_with_weights_summing_to_one_equal_the_adapter_alone(unet, inputs, lora_mode, cfa_mode):
    miva = perturbed(Miva.from_unet(unet, MivaConfig()), seed=3)
    handle = attach_mivas(unet, [(miva, 1.0)], lora_mode=lora_mode)
    alone = run(unet, inputs)
    detach_mivas(handle)
    copies = [(copy.deepcopy(miva), weight) for weight in (0.2, 0.3, 0.5)]
    attach_mivas(unet, copies, lora_mode=lora_mode, cfa_mode=cfa_mode)
    combined = run(unet, inputs)
    assert (combined - alone).abs().max() <= 1e-5


def test_merged_cfa_is_exact_for_one_adapter_and_approximates_several(unet, inputs):
    """cfa_mode="merge": one adapter at any weight is exactly cfa_mode="sum"; two different adapters give a
    different output (the softmax of the mean query is not the mean of the softmaxes), and set_weights rebuilds
    the merged branch (weights (1, 0) = the first adapter alone)."""
    config = MivaConfig(implicit_prompt=False, temporal_lora=False)
    first, second = (perturbed(Miva.from_unet(unet, config), seed=s) for s in (21, 22))
    outputs = {}
    for mode in ("sum", "merge"):
        handle = attach_mivas(unet, [(first, 0.7)], cfa_mode=mode)
        outputs[mode, 1] = run(unet, inputs)
        detach_mivas(handle)
        handle = attach_mivas(unet, [(first, 0.6), (second, 0.8)], cfa_mode=mode)
        outputs[mode, 2] = run(unet, inputs)
        set_weights(handle, [1.0, 0.0])
        outputs[mode, "first"] = run(unet, inputs)
        detach_mivas(handle)
    assert (outputs["merge", 1] - outputs["sum", 1]).abs().max() <= 1e-6
    assert (outputs["merge", "first"] - outputs["sum", "first"]).abs().max() <= 1e-6
    difference = (outputs["merge", 2] - outputs["sum", 2]).abs().max()
    assert 1e-5 < difference < (outputs["sum", 2] - outputs["sum", "first"]).abs().max()
    assert all(p.requires_grad for m in (first, second) for p in m.parameters())  # merging froze none of theirs


def test_merged_cfa_refuses_to_train(unet, inputs):
    first, second = (Miva.from_unet(unet, MivaConfig()) for _ in range(2))
    attach_mivas(unet, [first, second], cfa_mode="merge")
    with pytest.raises(RuntimeError, match="inference approximation"):
        unet(*inputs)
    with pytest.raises(ValueError, match="cfa_mode"):
        attach_mivas(copy.deepcopy(unet), [first], cfa_mode="fused")


@pytest.mark.parametrize("lora_alpha,lora_init", [(None, "kaiming"), (1.0, "normal")])
def test_lora_modes_agree_for_one_adapter(unet, inputs, lora_alpha, lora_init):
    config = MivaConfig(cross_frame=False, implicit_prompt=False, lora_alpha=lora_alpha, lora_init=lora_init)
    miva = perturbed(Miva.from_unet(unet, config), seed=4)
    outputs = {}
    for mode in ("merge", "residual"):
        handle = attach_mivas(unet, [miva], lora_mode=mode)
        outputs[mode] = run(unet, inputs)
        detach_mivas(handle)
    assert (outputs["merge"] - outputs["residual"]).abs().max() <= 1e-5
    assert (outputs["merge"] - run(unet, inputs)).abs().max() > 1e-3


LORA_ONLY = MivaConfig(cross_frame=False, implicit_prompt=False, lora_rank=4)


def test_auto_lora_mode_merges_one_lora_and_runs_several_as_residual(unet, inputs):
    """lora_mode="auto" (temporal_lora.resolve_lora_mode): one temporal LoRA -> merge, several -> residual;
    that residual equals merge for one adapter at weight 1 is test_lora_modes_agree_for_one_adapter."""
    first, second = (perturbed(Miva.from_unet(unet, LORA_ONLY), seed=seed) for seed in (6, 7))

    def attached(pairs, mode):
        handle = attach_mivas(unet, pairs, lora_mode=mode)
        try:
            return handle.lora_mode, run(unet, inputs)
        finally:
            detach_mivas(handle)

    one = [(first, 0.6)]
    mode, auto_one = attached(one, "auto")
    assert mode == "merge" and torch.equal(auto_one, attached(one, "merge")[1])
    two = [(first, 0.6), (second, 0.7)]  # weights not summing to 1
    mode, auto_two = attached(two, "auto")
    assert mode == "residual" and torch.equal(auto_two, attached(two, "residual")[1])
    assert (attached(two, "merge")[1] - auto_two).abs().max() > 1e-3  # the choice matters here
    # a partner without temporal LoRA leaves one LoRA to combine
    no_lora = perturbed(Miva.from_unet(unet, MivaConfig(temporal_lora=False, ca_rank=4)), seed=8)
    assert attached([(first, 1.0), (no_lora, 0.5)], "auto")[0] == "merge"
    with pytest.raises(ValueError, match="auto"):
        attach_mivas(unet, one, lora_mode="sum")


def test_lora_alpha_one_scales_the_update_by_one_over_rank(unet):
    # known answer on one temporal projection: dW x = B A x (alpha null = scale 1), B A x / r (alpha 1)
    target = sorted(temporal_lora_targets(unet))[0]
    x = torch.randn(5, unet.get_submodule(target).in_features, generator=torch.Generator().manual_seed(2))
    miva = perturbed(Miva.from_unet(unet, LORA_ONLY), seed=12)
    authors = copy.deepcopy(miva)  # equal A and B
    authors.config = replace(LORA_ONLY, lora_alpha=1.0)
    pair = miva.temporal_lora[layer_key(target)]
    with torch.no_grad():
        expected = pair.B(pair.A(x))
    deltas = {}
    for name, adapter in (("none", miva), ("one", authors)):
        handle = attach_mivas(unet, [adapter])
        layer = unet.get_submodule(target)
        with torch.no_grad():
            deltas[name] = layer(x) - layer.base_layer(x)
        detach_mivas(handle)
    assert expected.abs().max() > 1e-3
    assert torch.allclose(deltas["none"], expected, rtol=1e-4, atol=1e-6)
    assert torch.allclose(deltas["one"], expected / 4, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("lora_mode", ["merge", "residual"])
def test_each_adapter_applies_its_own_lora_scale(unet, inputs, lora_mode):
    # alpha 1 at rank 4 (scale 1/4) with B x 4 is the same function as alpha null with B
    first = perturbed(Miva.from_unet(unet, LORA_ONLY), seed=10)
    second = perturbed(Miva.from_unet(unet, LORA_ONLY), seed=11)
    rescaled = copy.deepcopy(second)
    rescaled.config = replace(LORA_ONLY, lora_alpha=1.0)
    with torch.no_grad():
        for pair in rescaled.temporal_lora.values():
            pair.B.weight.mul_(4)
    outputs = []
    for mixture in ([(first, 0.4), (second, 0.9)], [(first, 0.4), (rescaled, 0.9)]):
        handle = attach_mivas(unet, mixture, lora_mode=lora_mode)
        outputs.append(run(unet, inputs))
        detach_mivas(handle)
    assert (outputs[0] - outputs[1]).abs().max() <= 1e-5
    unscaled = copy.deepcopy(second)  # the scale alone (same A, B) must change the output
    unscaled.config = rescaled.config
    handle = attach_mivas(unet, [(first, 0.4), (unscaled, 0.9)], lora_mode=lora_mode)
    assert (run(unet, inputs) - outputs[0]).abs().max() > 1e-4
    detach_mivas(handle)


def test_normal_lora_init_draws_a_with_std_one_over_rank(unet):
    torch.manual_seed(0)
    rank = 32
    for lora_init, check in (
        ("normal", lambda std: abs(std - 1 / rank) < 0.05 / rank),
        ("kaiming", lambda std: std > 2 / rank),  # 1 / sqrt(3 fan_in) on this tiny UNet (fan_in 32, 64)
    ):
        config = MivaConfig(cross_frame=False, implicit_prompt=False, lora_rank=rank, lora_init=lora_init)
        miva = Miva.from_unet(unet, config)
        a = torch.cat([pair.A.weight.flatten() for pair in miva.temporal_lora.values()])
        assert a.numel() > 10_000 and check(a.std().item()), (lora_init, a.std().item())
        assert all(not pair.B.weight.any() for pair in miva.temporal_lora.values())


def _count_calls(module):
    calls = []
    return calls, module.register_forward_hook(lambda *args: calls.append(1))


def test_frozen_projections_are_computed_once_for_any_number_of_adapters(unet, inputs):
    attn1 = unet.get_submodule(spatial_attention_names(unet, "attn1")[0])
    attn2 = unet.get_submodule(spatial_attention_names(unet, "attn2")[0])
    counts = {}
    for adapters in (1, 3):
        mivas = [(perturbed(Miva.from_unet(unet), seed=k), 0.3) for k in range(adapters)]
        handle = attach_mivas(unet, mivas)
        key_calls, key_hook = _count_calls(attn1.to_k)
        value_calls, value_hook = _count_calls(attn1.to_v)
        query_calls, query_hook = _count_calls(attn2.to_q)
        run(unet, inputs)
        counts[adapters] = (len(key_calls), len(value_calls), len(query_calls))
        for hook in (key_hook, value_hook, query_hook):
            hook.remove()
        detach_mivas(handle)
    # attn1: once inside the frozen attention, once shared by all CFAs; attn2 (replaced): once, shared
    assert counts[1] == counts[3] == (2, 2, 1)


@pytest.mark.parametrize("lora_mode", ["merge", "residual"])
def test_training_moves_only_adapter_parameters(unet, inputs, lora_mode):
    before = {name: tensor.clone() for name, tensor in unet.state_dict().items()}
    miva = Miva.from_unet(unet, MivaConfig())
    initial = {name: p.detach().clone() for name, p in miva.named_parameters()}
    handle = attach_mivas(unet, [(miva, 1.0)], lora_mode=lora_mode)
    optimizer = torch.optim.AdamW(trainable_parameters(miva), lr=1e-3)
    sample, timesteps, prompt = inputs
    target = torch.randn_like(sample)
    for _ in range(3):
        loss = torch.nn.functional.mse_loss(unet(sample, timesteps, prompt).sample, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    moved = [name for name, p in miva.named_parameters() if not torch.equal(p, initial[name])]
    assert sorted(moved) == sorted(initial)  # every adapter parameter trained
    assert len(trainable_parameters(miva)) == len(initial)
    assert all(p.grad is None for name, p in unet.named_parameters() if ".lora_" not in name)
    detach_mivas(handle)
    after = unet.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[name], before[name]) for name in before)  # base bit-identical


def test_detach_restores_the_unet_exactly(unet, inputs):
    base = run(unet, inputs)
    processors = {name: module.processor for name, module in unet.named_modules() if hasattr(module, "processor")}
    modules = {name: module for name, module in unet.named_modules()}
    keys = list(unet.state_dict())
    miva = perturbed(Miva.from_unet(unet), seed=5)
    for mode in ("merge", "residual"):
        handle = attach_mivas(unet, [(miva, 0.7), (copy.deepcopy(miva), 0.4)], lora_mode=mode)
        assert (run(unet, inputs) - base).abs().max() > 1e-3
        detach_mivas(handle)
        assert {n: m.processor for n, m in unet.named_modules() if hasattr(m, "processor")} == processors
        assert {n: m for n, m in unet.named_modules()} == modules
        assert list(unet.state_dict()) == keys
        assert not unet._forward_pre_hooks and not hasattr(unet, "peft_config")
        assert torch.equal(run(unet, inputs), base)


def test_attach_twice_and_bad_weights_are_refused(unet):
    miva = Miva.from_unet(unet)
    handle = attach_mivas(unet, [miva])
    with pytest.raises(RuntimeError, match="already attached"):
        attach_mivas(unet, [copy.deepcopy(miva)])
    for weights, message in (([float("nan")], "finite"), ([-0.5], ">= 0"), ([0.5, 0.5], "2 adapter weights")):
        with pytest.raises(ValueError, match=message):
            set_weights(handle, weights)
    detach_mivas(handle)
    with pytest.raises(ValueError, match="finite"):
        attach_mivas(unet, [(miva, float("inf"))])


def test_unknown_variants_are_refused():
    with pytest.raises(ValueError, match="cfa_variant"):
        MivaConfig(cfa_variant="diagonal")
    with pytest.raises(ValueError, match="base_branch"):
        MivaConfig(base_branch="text")
    with pytest.raises(ValueError, match="lora_init"):
        MivaConfig(lora_init="gaussian")
    for alpha in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="lora_alpha"):
            MivaConfig(lora_alpha=alpha)
    with pytest.raises(ValueError, match="no component"):
        MivaConfig(cross_frame=False, implicit_prompt=False, temporal_lora=False, implicit_time_cond=False)


def test_weighting_starts_at_one_half_and_linear_is_t_over_T():
    context = CallContext(timesteps=torch.tensor([0.0, 250.0, 999.0]), temb=torch.randn(3, 16), num_frames=2, batch_size=3)
    assert torch.equal(AdaptiveWeighting(16)(context), torch.full((3,), 0.5))
    assert torch.allclose(LinearWeighting(1000)(context), torch.tensor([0.0, 0.25, 0.999]))


def naive_cross_frame(adapter, tokens, attn_heads, to_k, to_v, first_weight, frames, variant):
    """Frame-by-frame reference of the CFA formulas in docs/METHOD.md (explicit loops, no sharing)."""
    videos = tokens.shape[0] // frames
    x = rearrange(tokens, "(b f) n c -> b f n c", f=frames)
    outputs = torch.zeros(videos, frames, tokens.shape[1], adapter.to_out.out_features)
    split = lambda t: rearrange(t, "n (h d) -> h n d", h=attn_heads)  # noqa: E731
    for b in range(videos):
        w = first_weight[b]
        for i in range(frames):
            previous = max(i - 1, 0)
            q = split(adapter.to_q(x[b, i]))
            k1, v1 = split(to_k(x[b, 0])), split(to_v(x[b, 0]))
            kp, vp = split(to_k(x[b, previous])), split(to_v(x[b, previous]))
            scale = q.shape[-1] ** -0.5
            if variant == "joint":
                probs = torch.softmax(q @ torch.cat([k1, kp], 1).transpose(1, 2) * scale, dim=-1)
                mixed = probs @ torch.cat([w * v1, (1 - w) * vp], 1)
            else:
                first = torch.softmax(q @ k1.transpose(1, 2) * scale, dim=-1) @ v1
                prev = torch.softmax(q @ kp.transpose(1, 2) * scale, dim=-1) @ vp
                mixed = w * first + (1 - w) * prev
            outputs[b, i] = adapter.to_out(rearrange(mixed, "h n d -> n (h d)"))
    return rearrange(outputs, "b f n c -> (b f) n c")


@pytest.mark.parametrize("variant", ["joint", "separate"])
def test_cross_frame_attention_matches_the_formula(unet, variant):
    attn1 = unet.get_submodule(spatial_attention_names(unet, "attn1")[0])
    dim, frames = attn1.to_q.in_features, 4
    adapter = perturbed(CrossFrameAdapter(dim, dim, 16, variant=variant), seed=6)
    context = CallContext(timesteps=torch.tensor([10.0, 900.0]), temb=torch.randn(2, 16), num_frames=frames, batch_size=2)
    tokens = torch.randn(2 * frames, 6, dim)
    with torch.no_grad():
        got = adapter(tokens, SharedFrameKV(attn1, tokens, context), context)
        first_weight = adapter.weighting(context)
        want = naive_cross_frame(adapter, tokens, attn1.heads, attn1.to_k, attn1.to_v, first_weight, frames, variant)
    assert not torch.allclose(first_weight, torch.full_like(first_weight, 0.5))  # w(t) really varies
    assert torch.allclose(got, want, atol=1e-5)
    # frame 2 sees only frames 1 and 1; changing frame 3 must not change it, but must change frame 4
    changed = rearrange(tokens.clone(), "(b f) n c -> b f n c", f=frames)
    changed[:, 2] += 1.0
    changed = rearrange(changed, "b f n c -> (b f) n c")
    with torch.no_grad():
        again = adapter(changed, SharedFrameKV(attn1, changed, context), context)
    per_frame = lambda t: rearrange(t, "(b f) n c -> b f n c", f=frames)  # noqa: E731
    assert torch.equal(per_frame(again)[:, :2], per_frame(got)[:, :2])
    assert not torch.allclose(per_frame(again)[:, 3], per_frame(got)[:, 3])


def test_parameter_counts_per_component(unet):
    config = MivaConfig(ca_rank=8, lora_rank=4)
    counts = Miva.from_unet(unet, config).parameter_counts()
    attn1 = [unet.get_submodule(n) for n in spatial_attention_names(unet, "attn1")]
    temb = unet.time_embedding.linear_2.out_features
    # CFA: Wq' (no bias) + Wo' (with bias) + Linear(temb, 2)
    assert counts["cross_frame"] == sum(2 * a.to_q.in_features ** 2 + a.to_q.in_features + 2 * temb + 2 for a in attn1)
    # CA: W2 (d x r) + LayerNorm_r + W3 (r x d), no biases
    assert counts["implicit_prompt"] == sum(2 * a.to_q.in_features * 8 + 2 * 8 for a in attn1)
    assert counts["total"] == sum(p.numel() for p in Miva.from_unet(unet, config).parameters())


def test_float32_adapter_on_a_bfloat16_base(unet, inputs):
    miva = perturbed(Miva.from_unet(unet), seed=8)
    unet.to(torch.bfloat16)
    attach_mivas(unet, [miva])
    sample, timesteps, prompt = inputs
    output = run(unet, (sample.to(torch.bfloat16), timesteps, prompt.to(torch.bfloat16)))
    assert output.dtype == torch.bfloat16 and torch.isfinite(output).all()


def test_an_attached_unet_deep_copies_with_its_adapters(unet, inputs):
    handle = attach_mivas(unet, [(perturbed(Miva.from_unet(unet), seed=9), 0.8)], lora_mode="residual")
    twin = copy.deepcopy(unet)
    assert torch.equal(run(twin, inputs), run(unet, inputs))
    detach_mivas(handle)
    assert not torch.equal(run(twin, inputs), run(unet, inputs))  # the copy keeps its own adapters


def test_every_adapter_config_file_is_a_valid_miva_config():
    from omegaconf import OmegaConf

    from miva_lightning.config import CONFIG_DIR, compose

    names = sorted(path.stem for path in (CONFIG_DIR / "adapter").glob("*.yaml"))
    assert "miva" in names and len(names) > 1
    configs = {}
    for name in names:
        values = OmegaConf.to_container(compose(f"adapter/{name}").adapter, resolve=True)
        assert values.pop("lora_mode") in ("merge", "residual")
        configs[name] = MivaConfig.from_dict(values)
    assert configs["miva"] == MivaConfig(name="miva")  # the default file is METHOD's configuration
    assert not configs["no_lora"].temporal_lora and configs["ca_keep_text"].base_branch == "empty_prompt"
    assert (configs["miva"].lora_alpha, configs["miva"].lora_init) == (None, "kaiming")  # scale 1, as before
    assert (configs["lora_authors"].lora_alpha, configs["lora_authors"].lora_init) == (1.0, "normal")
    lamp = compose("train", ["experiment=miva_animatediff_lamp"]).adapter
    assert (lamp.lora_alpha, lamp.lora_init, lamp.lora_rank) == (1.0, "normal", 32)


def test_attach_keeps_the_callers_requires_grad_choices(unet):
    unet.requires_grad_(True)  # e.g. a user fine-tuning the base together with the adapter
    miva = Miva.from_unet(unet)
    miva.implicit_prompt.requires_grad_(False)
    handle = attach_mivas(unet, [miva])
    base_flags = [p.requires_grad for n, p in unet.named_parameters() if ".lora_" not in n]
    assert base_flags and all(base_flags)  # peft would have frozen them
    assert not any(p.requires_grad for p in miva.implicit_prompt.parameters())
    assert all(p.requires_grad for p in miva.temporal_lora.parameters())
    detach_mivas(handle)
    assert all(p.requires_grad for p in unet.parameters())
