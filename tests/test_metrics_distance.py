"""Known answers of the Fréchet and kernel distance engines (docs/METRICS.md), no weights needed."""

import numpy as np
import pytest
import scipy.linalg
import torch

from miva_lightning.metrics import frechet_distance, kernel_distance
from miva_lightning.metrics.frechet import FrechetDistance
from miva_lightning.metrics.kernel import KernelDistance


def _gaussian(n, d, seed, mean=0.0, std=1.0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=generator, dtype=torch.float64) * std + mean


def test_fd_of_a_set_with_itself_is_zero():
    x = _gaussian(500, 64, seed=1)
    assert abs(frechet_distance(x, x)) < 1e-3


def test_fd_of_shifted_gaussians_is_squared_mean_shift():
    d, n = 32, 40_000
    mu = torch.linspace(-1, 1, d, dtype=torch.float64)
    value = frechet_distance(_gaussian(n, d, seed=2), _gaussian(n, d, seed=3, mean=mu))
    expected = float(mu.square().sum())  # 11.3; finite-n bias is about d^2 / n ~ 0.03
    assert value == pytest.approx(expected, rel=0.02)


def test_fd_of_scaled_gaussians_matches_closed_form():
    # N(0, aI) vs N(0, bI) -> d (sqrt(a) - sqrt(b))^2 = 400 * (sqrt 2 - sqrt 0.5)^2 = 200
    d, n, a, b = 400, 20_000, 2.0, 0.5
    value = frechet_distance(_gaussian(n, d, seed=4, std=a**0.5), _gaussian(n, d, seed=5, std=b**0.5))
    assert value == pytest.approx(200.0, rel=0.05)


def test_streaming_chunks_and_two_rank_sum_equal_one_batch():
    real, fake = _gaussian(300, 24, seed=6, mean=0.3), _gaussian(250, 24, seed=7, std=1.5)
    one_batch = frechet_distance(real, fake)

    chunked = FrechetDistance(24)
    for r, f in zip(real.chunk(7), fake.chunk(7)):
        chunked.update(real=r, fake=f)
    assert float(chunked.compute()) == pytest.approx(one_batch, abs=1e-10)

    # two ranks each see half; DDP "sum" reduction of every state is what the metric declares
    ranks = [FrechetDistance(24), FrechetDistance(24)]
    ranks[0].update(real=real[:100], fake=fake[:200])
    ranks[1].update(real=real[100:], fake=fake[200:])
    for name, reduce in ranks[0]._reductions.items():
        assert reduce.__name__ == "dim_zero_sum", f"state {name} must be sum-reduced for exact DDP"
    merged = ranks[0]
    merged.merge_state(ranks[1])  # the same reduction DDP sync applies
    assert float(merged.compute()) == pytest.approx(one_batch, abs=1e-10)


def test_fd_agrees_with_scipy_sqrtm_reference():
    generator = np.random.default_rng(8)
    real = generator.normal(size=(200, 16)) @ generator.normal(size=(16, 16))
    fake = generator.normal(size=(180, 16)) * 0.7 + 0.2
    mu_r, mu_g = real.mean(0), fake.mean(0)
    cov_r, cov_g = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    root = scipy.linalg.sqrtm(cov_r @ cov_g).real
    reference = float(((mu_r - mu_g) ** 2).sum() + np.trace(cov_r + cov_g - 2 * root))
    ours = frechet_distance(torch.from_numpy(real), torch.from_numpy(fake))
    assert ours == pytest.approx(reference, rel=1e-6)


def test_fd_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        frechet_distance(torch.zeros(4, 3), torch.zeros(4, 5))
    with pytest.raises(RuntimeError, match="at least 2"):
        frechet_distance(torch.zeros(1, 3), torch.zeros(4, 3))


def _numpy_mmd2(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    sum_xx = sum(kxx[i, j] for i in range(n) for j in range(n) if i != j)
    sum_yy = sum(kyy[i, j] for i in range(m) for j in range(m) if i != j)
    return sum_xx / (n * (n - 1)) + sum_yy / (m * (m - 1)) - 2 * kxy.mean()


def test_kvd_matches_direct_numpy_mmd_and_streams():
    generator = np.random.default_rng(9)
    real, fake = generator.normal(size=(40, 12)), generator.normal(size=(30, 12)) * 1.3 + 0.4
    expected = _numpy_mmd2(real, fake)
    assert kernel_distance(torch.from_numpy(real), torch.from_numpy(fake)) == pytest.approx(expected, rel=1e-10)
    streaming = KernelDistance(12)
    for r, f in zip(np.array_split(real, 3), np.array_split(fake, 3)):
        streaming.update(real=torch.from_numpy(r), fake=torch.from_numpy(f))
    assert float(streaming.compute()) == pytest.approx(expected, rel=1e-10)


def test_kvd_is_near_zero_for_one_law_and_positive_for_two():
    same = kernel_distance(_gaussian(400, 16, seed=10), _gaussian(400, 16, seed=11))
    different = kernel_distance(_gaussian(400, 16, seed=10), _gaussian(400, 16, seed=12, mean=0.5))
    assert abs(same) < 0.05 < different
