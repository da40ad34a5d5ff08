"""Evaluation metrics: Fréchet/kernel distances, feature extractors, and the metric registry.

Every metric is a torchmetrics `Metric` built by name with `build_metric(name)`; see `registry.py`
for the batch contract shared by all metrics (and by part B's CLIP, motion and fidelity metrics).
"""

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
    "BATCH_KEYS",
    "BatchMetric",
    "available_metrics",
    "build_metric",
    "build_metrics",
    "describe_metric",
    "register_metric",
]
