"""Helpers shared by the real-model loaders (AnimateDiff SD1.5 now, Wan2.1 later).

They settle three questions every loader has: where the weights are (local folder, local file or a hub
id that must already be in the local cache when offline), which torch dtype a config name means, and
how to freeze a module. Nothing here downloads when `HF_HUB_OFFLINE` is set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

_DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}

T = TypeVar("T")


def torch_dtype(name: str | torch.dtype) -> torch.dtype:
    """`"fp16"` / `"bf16"` / `"fp32"` (or long names) -> torch dtype."""
    if isinstance(name, torch.dtype):
        return name
    try:
        return _DTYPES[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use one of {sorted(_DTYPES)}") from None


def hub_offline() -> bool:
    """True when the Hugging Face hub must not be contacted (`HF_HUB_OFFLINE=1`)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@dataclass(frozen=True)
class PretrainedLocation:
    """Where one set of weights comes from, and how to name it in an error message."""

    location: str  # local path (expanded) or hub id
    is_local: bool
    config_key: str  # e.g. "pretrained_model_path"
    config_file: str  # e.g. "configs/backbone/animatediff_sd15.yaml"

    @property
    def local_files_only(self) -> bool:
        return self.is_local or hub_offline()

    def how_to_fix(self) -> str:
        return (
            f"set `{self.config_key}` in {self.config_file} (or override `backbone.{self.config_key}=...`) "
            "to a local folder holding the weights, or to a hub id already in the local Hugging Face cache"
        )


def _looks_like_hub_id(text: str) -> bool:
    """`org/name` (one slash, no path prefix) could be a hub id; `./x`, `/x`, `~/x`, `a/b/c` are paths."""
    if text.startswith((".", "/", "~")) or "\\" in text:
        return False
    return text.count("/") == 1 and all(part for part in text.split("/"))


def resolve_location(value: Any, config_key: str, config_file: str) -> PretrainedLocation:
    """Decide whether `value` is an existing local path or a hub id; raise a clear error otherwise."""
    if value is None or str(value).strip() == "":
        raise FileNotFoundError(f"`{config_key}` is empty: set it in {config_file}")
    text = os.path.expandvars(str(value).strip())
    path = Path(text).expanduser()
    if path.exists():
        return PretrainedLocation(str(path), True, config_key, config_file)
    if _looks_like_hub_id(text):
        return PretrainedLocation(text, False, config_key, config_file)
    raise FileNotFoundError(
        f"`{config_key}` points to {str(path)!r}, which does not exist. Set `{config_key}` in {config_file} "
        f"(or override `backbone.{config_key}=...`) to the local folder or file holding those weights."
    )


def load_or_explain(where: PretrainedLocation, what: str, load: Callable[[], T]) -> T:
    """Run `load()`; turn "not found" style failures into one error that says which setting to change."""
    try:
        return load()
    except (OSError, ValueError) as error:  # diffusers/transformers raise OSError/EnvironmentError for missing files
        offline = " (the hub is offline: HF_HUB_OFFLINE is set, nothing is downloaded)" if hub_offline() else ""
        raise FileNotFoundError(
            f"could not load the {what} from {where.location!r}{offline}: {error}\nFix: {where.how_to_fix()}."
        ) from error


def freeze(module: nn.Module) -> nn.Module:
    """requires_grad False on every parameter, and eval mode (no dropout)."""
    module.requires_grad_(False)
    module.eval()
    return module


def plain_dict(cfg: Any) -> dict[str, Any]:
    """A DictConfig / Mapping / None as a plain, resolved dict."""
    if cfg is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if isinstance(cfg, Mapping):
        return {key: plain_dict(value) if isinstance(value, Mapping) else value for key, value in cfg.items()}
    raise TypeError(f"expected a mapping for the backbone config, got {type(cfg).__name__}")


Settings = TypeVar("Settings")


def settings_from_config(cls: type[Settings], cfg: Any, what: str, config_file: str) -> Settings:
    """A backbone settings dataclass from a config node: unknown keys are an error naming the known ones
    (keys starting with "_" are Hydra's), then the dataclass's own `validate()`."""
    import dataclasses

    values = {key: value for key, value in plain_dict(cfg).items() if not str(key).startswith("_")}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} backbone settings {unknown}; known: {sorted(known)} ({config_file})")
    settings = cls(**values)
    settings.validate()
    return settings
