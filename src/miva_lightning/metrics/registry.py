"""Metric registry: a name -> factory mapping shared by the callback and `miva-eval`.

Contract every registered metric follows (so callers never special-case one):
- it is a `torchmetrics.Metric` (subclass `BatchMetric` below);
- `update(batch)` takes ONE dict with any of these keys, and uses only the keys it needs:
    "generated": b f c h w float32 [0, 1]   videos made by the model (the "fake" side)
    "reference": b f c h w float32 [0, 1]   real clips (the "real" side; may come in other batches)
    "images":    b c h w   float32 [0, 1]   input (conditioning) images of the generated videos
    "prompts":   list[str] of length b      text prompts of the generated videos
    "motions":   list[str] of length b      intended motion class of each generated video (world names)
    "params":    list[dict] of length b     ground-truth motion of each generated video, as
                                            `world.render_clip(...).params` (synthetic data only)
  A metric that needs a key absent from the batch skips that side (it never fails);
- `compute()` returns a scalar tensor (NaN when the metric is unavailable, e.g. weights missing);
- `describe()` returns a JSON-able dict saying how the number was made (feature network, weights
  SHA-256, counts, sizes, availability and the reason when unavailable).

Registration: decorate a factory, `@register_metric("fd_motionworld", requires=("generated", "reference"))`.
Modules listed in `BUILTIN_MODULES` register themselves when imported; they are imported lazily on
the first lookup, so importing the registry stays cheap and free of cycles.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from torchmetrics import Metric

BATCH_KEYS = ("generated", "reference", "images", "prompts", "motions", "params")

# Modules whose import registers metrics. A module not written yet is skipped (only that exact
# ModuleNotFoundError); any other import error is raised, so broken metric code is never hidden.
BUILTIN_MODULES = (
    "miva_lightning.metrics.extractors",
    "miva_lightning.metrics.clip",
    "miva_lightning.metrics.motion",
    "miva_lightning.metrics.fidelity",
)


class BatchMetric(Metric):
    """Base class of registered metrics: `update(batch: dict)`, `compute() -> scalar`, `describe()`."""

    full_state_update = False
    requires: tuple[str, ...] = ()  # batch keys the metric reads

    def describe(self) -> dict[str, Any]:
        return {"class": type(self).__qualname__, "requires": list(self.requires), "available": True}


@dataclass(frozen=True)
class MetricEntry:
    name: str
    factory: Callable[..., Metric]
    requires: tuple[str, ...]
    summary: str


_REGISTRY: dict[str, MetricEntry] = {}
_builtins_loaded = False


def register_metric(
    name: str, requires: Iterable[str] = (), summary: str = ""
) -> Callable[[Callable[..., Metric]], Callable[..., Metric]]:
    """Decorator: register `factory(**kwargs) -> Metric` under `name` (names are unique)."""
    requires = tuple(requires)
    unknown = set(requires) - set(BATCH_KEYS)
    if unknown:
        raise ValueError(f"metric {name!r} requires unknown batch keys {sorted(unknown)}; known: {BATCH_KEYS}")

    def decorate(factory: Callable[..., Metric]) -> Callable[..., Metric]:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.factory is not factory:
            same_origin = (existing.factory.__module__, existing.factory.__qualname__) == (
                factory.__module__,
                factory.__qualname__,
            )
            if not same_origin:  # re-import of the same module (e.g. importlib.reload) is fine
                raise ValueError(f"metric name {name!r} is already registered by {existing.factory.__module__}")
        doc_lines = (factory.__doc__ or "").strip().splitlines()
        summary_text = summary or (doc_lines[0] if doc_lines else "")
        _REGISTRY[name] = MetricEntry(name, factory, requires, summary_text)
        return factory

    return decorate


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module in BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:
                raise


def available_metrics() -> dict[str, MetricEntry]:
    """All registered metrics, by name (sorted)."""
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


def build_metric(name: str, **kwargs: Any) -> Metric:
    """A fresh metric instance. Unknown names fail with the list of known ones."""
    _load_builtins()
    if name not in _REGISTRY:
        raise KeyError(f"unknown metric {name!r}; registered metrics: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name].factory(**kwargs)


def build_metrics(spec: Iterable[str] | Mapping[str, Mapping[str, Any] | None]) -> dict[str, Metric]:
    """Build several metrics from a list of names or a mapping name -> kwargs (None = defaults)."""
    if isinstance(spec, str):
        raise TypeError("pass a list of metric names (or a mapping name -> kwargs), not one string")
    if isinstance(spec, Mapping):
        return {name: build_metric(name, **dict(kwargs or {})) for name, kwargs in spec.items()}
    return {name: build_metric(name) for name in spec}


def describe_metric(metric: Metric) -> dict[str, Any]:
    """`metric.describe()` when present, else its class name (torchmetrics built-ins)."""
    describe = getattr(metric, "describe", None)
    return describe() if callable(describe) else {"class": type(metric).__qualname__, "available": True}
