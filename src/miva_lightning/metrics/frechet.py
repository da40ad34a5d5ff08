"""Fréchet distance between Gaussians fitted to two feature sets, as a streaming torchmetrics Metric.

FD = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))

States are float64 sufficient statistics (sum of features, sum of outer products, count) reduced
with "sum", so streaming in chunks and DDP reduction give exactly the one-batch result. Mean and
covariance are formed only in `compute`.

Matrix square root: Tr((S_r S_g)^(1/2)) = Tr((A S_g A)^(1/2)) with A = S_r^(1/2), which is symmetric
positive semi-definite, so two `eigh` calls suffice (no scipy.linalg.sqrtm: slow, and its
`disp=False` route goes away in SciPy 1.18). Tiny negative eigenvalues from round-off clamp to 0.
torchmetrics' FrechetInceptionDistance is tied to an image network and a fixed feature size, hence
this small engine.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


def _symmetric_sqrt(matrix: Tensor) -> Tensor:
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return (eigenvectors * eigenvalues.clamp_min(0).sqrt()) @ eigenvectors.T


def frechet_distance_from_moments(mu_r: Tensor, cov_r: Tensor, mu_g: Tensor, cov_g: Tensor) -> Tensor:
    """FD between N(mu_r, cov_r) and N(mu_g, cov_g) (float64 recommended)."""
    sqrt_r = _symmetric_sqrt(cov_r)
    middle = sqrt_r @ cov_g @ sqrt_r
    middle = (middle + middle.T) / 2
    trace_sqrt = torch.linalg.eigvalsh(middle).clamp_min(0).sqrt().sum()
    mean_term = (mu_r - mu_g).square().sum()
    return mean_term + torch.trace(cov_r) + torch.trace(cov_g) - 2 * trace_sqrt


class FrechetDistance(Metric):
    """Streaming FD between a real and a fake feature set; `update(real=(n, d), fake=(m, d))`."""

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, num_features: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        self.num_features = num_features
        for side in ("real", "fake"):
            self.add_state(f"{side}_sum", torch.zeros(num_features, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(
                f"{side}_outer", torch.zeros(num_features, num_features, dtype=torch.float64), dist_reduce_fx="sum"
            )
            self.add_state(f"{side}_count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def _accumulate(self, side: str, features: Tensor) -> None:
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(
                f"{side} features must be (n, {self.num_features}), got {tuple(features.shape)}; "
                "flatten extra axes into n before calling update"
            )
        x = features.detach().to(torch.float64)
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + x.sum(0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + x.T @ x)
        setattr(self, f"{side}_count", getattr(self, f"{side}_count") + x.shape[0])

    def update(self, real: Tensor | None = None, fake: Tensor | None = None) -> None:
        if real is not None:
            self._accumulate("real", real)
        if fake is not None:
            self._accumulate("fake", fake)

    def _moments(self, side: str) -> tuple[Tensor, Tensor]:
        count = getattr(self, f"{side}_count")
        if count < 2:
            raise RuntimeError(f"FD needs at least 2 {side} feature vectors, got {int(count)}")
        mean = getattr(self, f"{side}_sum") / count
        cov = (getattr(self, f"{side}_outer") - count * torch.outer(mean, mean)) / (count - 1)
        return mean, (cov + cov.T) / 2

    def compute(self) -> Tensor:
        mu_r, cov_r = self._moments("real")
        mu_g, cov_g = self._moments("fake")
        return frechet_distance_from_moments(mu_r, cov_r, mu_g, cov_g)


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """FD between two feature sets of shape (n, d) and (m, d)."""
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected (n, d) and (m, d) features, got {tuple(real.shape)} and {tuple(fake.shape)}")
    metric = FrechetDistance(real.shape[1])
    metric.update(real=real, fake=fake)
    return float(metric.compute())
