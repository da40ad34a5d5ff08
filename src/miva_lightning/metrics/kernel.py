"""Kernel distance (KVD / KID): unbiased MMD^2 with the polynomial kernel k(x, y) = (x.y / d + 1)^3.

Unlike FD, MMD^2 has no small set of sufficient statistics for an unbiased estimate, so the metric
stores the features themselves (list states, concatenated across DDP ranks: memory grows as
n x d floats, about 3 MB per 1000 vectors of 400-d in float64). That is fine at evaluation sizes
(hundreds to a few thousand videos). The estimate uses ALL pairs (no random subsets), so it is
deterministic; it is unbiased, hence can be slightly negative when both sets come from one law.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def polynomial_kernel(x: Tensor, y: Tensor) -> Tensor:
    return (x @ y.T / x.shape[1] + 1) ** 3


def _mean_off_diagonal(gram: Tensor) -> Tensor:
    n = gram.shape[0]
    return (gram.sum() - gram.diagonal().sum()) / (n * (n - 1))


def unbiased_mmd2(real: Tensor, fake: Tensor) -> Tensor:
    """Unbiased MMD^2 between (n, d) and (m, d) features with the cubic polynomial kernel."""
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise RuntimeError(f"KVD needs at least 2 vectors per side, got {real.shape[0]} real, {fake.shape[0]} fake")
    real, fake = real.to(torch.float64), fake.to(torch.float64)
    return (
        _mean_off_diagonal(polynomial_kernel(real, real))
        + _mean_off_diagonal(polynomial_kernel(fake, fake))
        - 2 * polynomial_kernel(real, fake).mean()
    )


class KernelDistance(Metric):
    """Streaming KVD: `update(real=(n, d), fake=(m, d))`, features kept until `compute`."""

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(self, num_features: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_features = num_features
        self.add_state("real_features", [], dist_reduce_fx="cat")
        self.add_state("fake_features", [], dist_reduce_fx="cat")

    def _check(self, side: str, features: Tensor) -> Tensor:
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"{side} features must be (n, {self.num_features}), got {tuple(features.shape)}")
        return features.detach().to(torch.float64)

    def update(self, real: Tensor | None = None, fake: Tensor | None = None) -> None:
        if real is not None:
            self.real_features.append(self._check("real", real))
        if fake is not None:
            self.fake_features.append(self._check("fake", fake))

    def counts(self) -> tuple[int, int]:
        def count(state) -> int:
            if isinstance(state, Tensor):  # after a DDP sync a list state is one concatenated tensor
                return state.shape[0]
            return sum(x.shape[0] for x in state)

        return count(self.real_features), count(self.fake_features)

    def compute(self) -> Tensor:
        if min(self.counts()) == 0:
            raise RuntimeError("KVD needs both real and fake features; update both sides before compute")
        return unbiased_mmd2(dim_zero_cat(self.real_features), dim_zero_cat(self.fake_features))


def kernel_distance(real: Tensor, fake: Tensor) -> float:
    """KVD (unbiased MMD^2, cubic polynomial kernel) between (n, d) and (m, d) features."""
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected (n, d) and (m, d) features, got {tuple(real.shape)} and {tuple(fake.shape)}")
    return float(unbiased_mmd2(real, fake))
