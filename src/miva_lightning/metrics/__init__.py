"""Evaluation metrics: Fréchet/kernel distances, feature extractors, and the metric registry.

Every metric is a torchmetrics `Metric` built by name with `build_metric(name)`; see `registry.py`
for the batch contract shared by all metrics (and by part B's CLIP, motion and fidelity metrics).
"""

from miva_lightning.metrics.frechet import FrechetDistance, frechet_distance
from miva_lightning.metrics.kernel import KernelDistance, kernel_distance
from miva_lightning.metrics.registry import (
    BATCH_KEYS,
    BatchMetric,
    available_metrics,
    build_metric,
    build_metrics,
    describe_metric,
    register_metric,
)

__all__ = [
    "FrechetDistance",
    "KernelDistance",
    "frechet_distance",
    "kernel_distance",
    "BATCH_KEYS",
    "BatchMetric",
    "available_metrics",
    "build_metric",
    "build_metrics",
    "describe_metric",
    "register_metric",
]
