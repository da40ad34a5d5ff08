"""95 % intervals for reported numbers: Wilson for rates, Student's t for means over clips.

Wilson rather than the normal approximation because our rates sit near 0 and 1 with n of 10-20, where
p +- 1.96 sqrt(p (1 - p) / n) collapses to zero width or leaves [0, 1].
"""

from __future__ import annotations

import math
from typing import Sequence

from scipy import stats

CONFIDENCE = 0.95


def finite_or_none(value: float, digits: int | None = 6) -> float | None:
    """A reported number as JSON can hold it: NaN/inf (fidelity of static or firework, an unavailable metric)
    become null; `digits` rounds (None keeps the float as it is)."""
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return None
    return value if digits is None else round(value, digits)


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval of a rate successes / n; (nan, nan) when n = 0."""
    if n <= 0:
        return (math.nan, math.nan)
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} must lie in [0, n={n}]")
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): Student's t interval of the mean over finite values (NaNs are left out);
    the interval is (mean, mean) for one value and all NaN for none."""
    finite = [float(v) for v in values if not math.isnan(float(v))]
    if not finite:
        return (math.nan, math.nan, math.nan)
    n = len(finite)
    mean = sum(finite) / n
    if n == 1:
        return (mean, mean, mean)
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1))
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    return (mean, mean - half, mean + half)


def paired_difference_interval(
    differences: Sequence[float], confidence: float = CONFIDENCE, resamples: int = 9999, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high) of paired per-clip differences (e.g. correct_ablation - correct_reference in {-1, 0, 1},
    the same first frame and noise on both sides): scipy's percentile bootstrap over the pairs, seeded.

    The pairs are clips; the variation between training runs (seeds) is only in it through the clips each run
    contributes, so with few seeds the interval is too narrow for "another training run" (report both).
    (nan, nan, nan) for no pairs; (mean, mean, mean) when every difference is equal (nothing to resample).
    """
    import numpy as np

    values = np.asarray([float(v) for v in differences if not math.isnan(float(v))])
    if values.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(values.mean())
    if np.all(values == values[0]):
        return (mean, mean, mean)
    result = stats.bootstrap(
        (values,), np.mean, confidence_level=confidence, n_resamples=resamples, method="percentile",
        random_state=np.random.default_rng(seed),
    )  # fmt: skip
    return (mean, float(result.confidence_interval.low), float(result.confidence_interval.high))
