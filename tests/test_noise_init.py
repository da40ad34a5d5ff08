"""Initial-noise options: Gaussian default, LAMP shared noise, DCT split, forward diffusion, AdaIN."""

import pytest
import scipy.fft
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler

from miva_lightning.sampling.noise_init import (
    NoiseInit,
    as_noise_init,
    dct_matrix,
    finalize_latents,
    prepare_initial_latents,
    shared_noise_statistics,
    spatial_dct,
    spatial_idct,
    split_frequencies,
)


def _ddim():
    return DDIMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def test_gaussian_default_unit_std_and_reproducible():
    first = torch.randn(2, 4, 32, 32)
    a = prepare_initial_latents(first, 8, _ddim(), NoiseInit(), _gen(3))
    b = prepare_initial_latents(first, 8, _ddim(), None, _gen(3))
    c = prepare_initial_latents(first, 8, _ddim(), NoiseInit(), _gen(4))
    assert a.shape == (2, 4, 8, 32, 32)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert abs(a.std().item() - 1.0) < 0.02 and abs(a.mean().item()) < 0.02


def test_gaussian_default_scaled_by_init_noise_sigma():
    euler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    euler.set_timesteps(25)
    first = torch.zeros(1, 4, 16, 16)
    scaled = prepare_initial_latents(first, 4, euler, NoiseInit(), _gen(0))
    plain = prepare_initial_latents(first, 4, _ddim(), NoiseInit(), _gen(0))
    assert euler.init_noise_sigma > 1.5
    torch.testing.assert_close(scaled, plain * euler.init_noise_sigma)


# Known answers of the two mixing formulas (noise_init.py, point 1): (variance, inter-frame correlation).
CLOSED_FORM = {
    ("variance", 0.05): (1.0, 0.05),
    ("variance", 0.5): (1.0, 0.5),
    ("linear", 0.05): (0.05**2 + 0.95**2, 0.05**2 / (0.05**2 + 0.95**2)),  # 0.905, 0.00276
    ("linear", 0.5): (0.5, 0.5),  # 0.25 + 0.25; 0.25 / 0.5
}


@pytest.mark.parametrize("formula, ratio", sorted(CLOSED_FORM))
def test_shared_noise_matches_its_closed_form_on_a_large_draw(formula, ratio):
    variance, correlation = CLOSED_FORM[(formula, ratio)]
    assert shared_noise_statistics(ratio, formula) == pytest.approx((variance, correlation))
    options = NoiseInit(shared_noise_ratio=ratio, shared_noise_formula=formula)
    latents = prepare_initial_latents(torch.zeros(4, 4, 128, 128), 8, _ddim(), options, _gen(1))
    frames = latents.transpose(0, 2).reshape(8, -1)  # f, (c b h w): 262144 values per frame
    measured = torch.corrcoef(frames)[~torch.eye(8, dtype=torch.bool)].mean().item()
    assert abs(measured - correlation) < 0.008  # standard error of one pair ~ 0.002
    assert abs(latents.var().item() / variance - 1.0) < 0.01


def test_the_two_formulas_differ_about_eighteenfold_at_the_authors_ratio():
    _, variance_formula = shared_noise_statistics(0.05, "variance")
    _, linear_formula = shared_noise_statistics(0.05, "linear")
    assert 18.0 < variance_formula / linear_formula < 18.2  # 0.05 / 0.00276


@pytest.mark.parametrize("formula", ["variance", "linear"])
def test_all_off_is_plain_gaussian_noise_under_either_formula(formula):
    first = torch.zeros(2, 4, 32, 32)
    plain = prepare_initial_latents(first, 6, _ddim(), NoiseInit(), _gen(2))
    off = prepare_initial_latents(first, 6, _ddim(), NoiseInit(shared_noise_formula=formula), _gen(2))
    assert torch.equal(off, plain)
    assert torch.equal(plain, torch.randn(2, 4, 6, 32, 32, generator=_gen(2)))


def test_no_shared_noise_means_uncorrelated_frames():
    latents = prepare_initial_latents(torch.zeros(1, 4, 64, 64), 6, _ddim(), NoiseInit(), _gen(1))
    correlation = torch.corrcoef(latents[0].transpose(0, 1).reshape(6, -1))
    assert correlation[~torch.eye(6, dtype=torch.bool)].abs().max() < 0.04


def test_dct_matrix_matches_scipy_and_is_orthonormal():
    x = torch.randn(3, 12, 20, dtype=torch.float64)
    expected = scipy.fft.dctn(x.numpy(), type=2, norm="ortho", axes=(-2, -1))
    torch.testing.assert_close(spatial_dct(x), torch.from_numpy(expected))
    torch.testing.assert_close(spatial_idct(spatial_dct(x)), x)
    d = dct_matrix(9, dtype=torch.float64)
    torch.testing.assert_close(d @ d.T, torch.eye(9, dtype=torch.float64))


def test_dct_low_high_is_exact_partition():
    x = torch.randn(2, 4, 8, 40, 64)
    low, high = split_frequencies(x, 0.23)
    torch.testing.assert_close(low + high, x, atol=1e-5, rtol=1e-5)
    # a constant image lives entirely in the lowest frequency
    constant = torch.full((1, 1, 1, 16, 16), 2.5)
    low, high = split_frequencies(constant, 0.23)
    torch.testing.assert_close(low, constant)
    assert high.abs().max() < 1e-5
    # the low part keeps exactly int(h*cutoff) x int(w*cutoff) coefficients
    low_coefficients = spatial_dct(split_frequencies(x, 0.23)[0])
    assert (low_coefficients[..., 9:, :].abs().max() < 1e-4) and (low_coefficients[..., :, 14:].abs().max() < 1e-4)
    assert low_coefficients[..., :9, :14].abs().min() >= 0 and low_coefficients[..., :9, :14].abs().mean() > 0.1


def test_forward_diffusion_matches_scheduler_add_noise():
    scheduler = _ddim()
    first = torch.randn(2, 4, 16, 24)
    latents = prepare_initial_latents(first, 5, scheduler, NoiseInit(first_frame_forward_t=975), _gen(7))
    noise = torch.randn(2, 4, 5, 16, 24, generator=_gen(7))
    static = first[:, :, None].expand(-1, -1, 5, -1, -1)
    expected = scheduler.add_noise(static, noise, torch.tensor([975, 975]))
    torch.testing.assert_close(latents, expected)
    # at a small t the start is close to the image itself
    early = prepare_initial_latents(first, 5, scheduler, NoiseInit(first_frame_forward_t=0), _gen(7))
    assert (early - static).std() < 0.05  # sqrt(1 - alpha_bar_0) = 0.029


def test_dct_mix_takes_low_from_noised_and_high_from_fresh():
    scheduler = _ddim()
    first = torch.randn(1, 4, 32, 32)
    options = NoiseInit(first_frame_forward_t=975, dct_lowfreq_cutoff=0.23)
    mixed = prepare_initial_latents(first, 4, scheduler, options, _gen(5))
    generator = _gen(5)
    noise = torch.randn(1, 4, 4, 32, 32, generator=generator)
    fresh = torch.randn(1, 4, 4, 32, 32, generator=generator)
    noised = scheduler.add_noise(first[:, :, None].expand(-1, -1, 4, -1, -1), noise, torch.tensor([975]))
    torch.testing.assert_close(split_frequencies(mixed, 0.23)[0], split_frequencies(noised, 0.23)[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(split_frequencies(mixed, 0.23)[1], split_frequencies(fresh, 0.23)[1], atol=1e-5, rtol=1e-5)
    again = prepare_initial_latents(first, 4, scheduler, options, _gen(5))
    assert torch.equal(mixed, again)


def test_adain_matches_first_frame_stats():
    first = torch.randn(2, 4, 16, 16) * 3 + 1
    latents = torch.randn(2, 4, 6, 16, 16) * 0.5 - 2
    out = finalize_latents(latents, first, NoiseInit(adain_to_first_frame=True))
    for f in range(6):
        torch.testing.assert_close(out[:, :, f].mean(dim=(-2, -1)), first.mean(dim=(-2, -1)), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out[:, :, f].std(dim=(-2, -1)), first.std(dim=(-2, -1)), atol=1e-4, rtol=1e-4)
    assert finalize_latents(latents, first, NoiseInit()) is latents


def test_bad_options_give_clear_errors():
    with pytest.raises(ValueError, match="first_frame_forward_t"):
        NoiseInit(dct_lowfreq_cutoff=0.23)
    with pytest.raises(ValueError, match="shared_noise_ratio"):
        NoiseInit(shared_noise_ratio=1.5)
    with pytest.raises(ValueError, match=r"shared_noise_formula.*'variance', 'linear'"):
        NoiseInit(shared_noise_ratio=0.05, shared_noise_formula="sqrt")
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        prepare_initial_latents(torch.zeros(1, 4, 8, 8), 2, _ddim(), NoiseInit(first_frame_forward_t=1000))
    with pytest.raises(ValueError, match="b c h w"):
        prepare_initial_latents(torch.zeros(1, 4, 2, 8, 8), 2, _ddim())


def test_options_from_a_mapping_equal_the_dataclass():
    from omegaconf import OmegaConf

    wanted = NoiseInit(first_frame_forward_t=975, dct_lowfreq_cutoff=0.23)
    assert as_noise_init({"first_frame_forward_t": 975, "dct_lowfreq_cutoff": 0.23}) == wanted
    assert as_noise_init(OmegaConf.create({"first_frame_forward_t": 975, "dct_lowfreq_cutoff": 0.23})) == wanted
    assert as_noise_init(wanted) is wanted
    authors = {"shared_noise_ratio": 0.05, "shared_noise_formula": "linear"}
    assert as_noise_init(authors) == NoiseInit(shared_noise_ratio=0.05, shared_noise_formula="linear")
    assert as_noise_init(None) is None and as_noise_init({}) is None
    with pytest.raises(ValueError, match="forward_t"):  # a typo names the valid keys
        as_noise_init({"forward_t": 975})
    with pytest.raises(TypeError, match="mapping"):
        as_noise_init(975)


def test_flow_matching_scheduler_plain_noise_and_clear_error_for_forward_t():
    from diffusers import FlowMatchEulerDiscreteScheduler

    flow = FlowMatchEulerDiscreteScheduler()
    first = torch.zeros(1, 4, 8, 8)
    plain = prepare_initial_latents(first, 3, flow, NoiseInit(), _gen(2))
    torch.testing.assert_close(plain, prepare_initial_latents(first, 3, _ddim(), NoiseInit(), _gen(2)))
    with pytest.raises(ValueError, match="first_frame_forward_t to null"):
        prepare_initial_latents(first, 3, flow, NoiseInit(first_frame_forward_t=975), _gen(2))
