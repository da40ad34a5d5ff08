"""MIVA files: safetensors only (no pickles), with the config and the identity of the base UNet the
adapter was trained on in the file's metadata, written atomically.

A file that cannot be used (missing, a pickle, not a MIVA, made for another base) raises
`inputs.InputError` (a ValueError), which the command-line tools print as one line. `inputs.check_adapter_file`
runs the header checks without torch, before any model is built."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from miva_lightning.adapters.miva import Miva, MivaConfig, check_fits
from miva_lightning.inputs import MIVA_FORMAT, MIVA_FORMAT_VERSION, MIVA_METADATA_KEY, InputError, InputFileNotFoundError
from miva_lightning.utils import atomic_path, tensor_fingerprint

FORMAT = MIVA_FORMAT  # "miva"
FORMAT_VERSION = MIVA_FORMAT_VERSION  # 1
METADATA_KEY = MIVA_METADATA_KEY  # "miva"


def base_named_tensors(unet: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The base UNet's own weights, with any attached peft LoRA left out and peft's renaming undone."""
    return [
        (name.replace(".base_layer.", "."), tensor)
        for name, tensor in unet.state_dict().items()
        if ".lora_" not in name
    ]


def base_identity(unet: nn.Module, name: str) -> dict[str, str]:
    """`{"name", "fingerprint"}` of a base UNet (fingerprint over names, shapes and float32 values)."""
    return {"name": str(name), "fingerprint": tensor_fingerprint(base_named_tensors(unet))}


def save_miva(path: str | Path, miva: Miva, base_identity: dict[str, Any]) -> Path:
    """Write `miva` to `path` (must end in .safetensors); metadata = JSON of config + base identity."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"MIVA files are safetensors only: name the file '*.safetensors', not '{path.name}'")
    if "fingerprint" not in base_identity:
        raise ValueError("base_identity needs a 'fingerprint' (use adapters.io.base_identity(unet, name))")
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in miva.state_dict().items()}
    _check_finite(tensors, str(path))
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": miva.config.to_dict(),
        "base": dict(base_identity),
        "parameter_counts": miva.parameter_counts(),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    return path


def load_miva(
    path: str | Path, unet: nn.Module | None = None, strict_base: bool = True
) -> tuple[Miva, dict[str, Any]]:
    """Read a MIVA file. With `unet`, check that it fits that UNet (layer names and shapes) and that it
    is the base the adapter was trained on (fingerprint; `strict_base=False` only warns)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"no MIVA file at '{path}'")
    tensors, metadata = _read_safetensors(path)
    _check_finite(tensors, str(path))
    config_values = dict(metadata["config"])
    config_values.setdefault("implicit_time_cond", False)  # files written before that component existed
    # files written before lora_alpha / lora_init existed lack them: the defaults (scale 1, kaiming) were theirs
    config = MivaConfig.from_dict(config_values)
    shapes = {key: tuple(value.shape) for key, value in tensors.items()}
    try:
        miva = Miva.from_shapes(config, shapes)
    except KeyError as error:
        raise InputError(f"'{path}' {error.args[0]}") from error
    expected = set(miva.state_dict())
    unknown, missing = sorted(set(tensors) - expected), sorted(expected - set(tensors))
    if unknown or missing:
        raise InputError(f"'{path}' has unknown tensors {unknown[:4]} and lacks {missing[:4]}: not a MIVA of this version")
    _check_components(config, miva, path)
    if unet is not None:
        try:
            check_fits(miva, unet)
        except ValueError as error:
            raise InputError(f"'{path}': {error}") from error
        _check_base(path, metadata.get("base", {}), unet, strict_base)
    miva.load_state_dict(tensors, strict=True)
    if unet is not None:
        miva.to(device=next(unet.parameters()).device)
    return miva, metadata


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    with open(path, "rb") as handle:
        head = handle.read(9)
    # safetensors: an 8-byte little-endian header length, then the JSON header ("{"). Only a file that is not
    # that and starts like a pickle (0x80 + protocol) or a zip (torch.save) is refused as a pickle: the length's
    # first byte alone may be 0x80 (a header of 128 + 256 k bytes).
    looks_safetensors = head[8:9] == b"{"
    if not looks_safetensors and (head[:1] == b"\x80" or head[:2] == b"PK"):
        raise InputError(f"'{path}' is a pickle / torch.save file: MIVA files are safetensors only (pickles can run code)")
    try:
        with safe_open(str(path), framework="pt") as reader:
            raw = reader.metadata() or {}
            tensors = {key: reader.get_tensor(key) for key in reader.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(f"'{path}' is not a readable safetensors file: {error}") from error
    if METADATA_KEY not in raw:
        raise InputError(f"'{path}' is a safetensors file but not a MIVA (no '{METADATA_KEY}' metadata)")
    metadata = json.loads(raw[METADATA_KEY])
    if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"'{path}' has format {metadata.get('format')} v{metadata.get('format_version')}; "
            f"this code reads {FORMAT} v{FORMAT_VERSION}"
        )
    return tensors, metadata


def _check_finite(tensors: dict[str, torch.Tensor], where: str) -> None:
    for key, value in tensors.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise InputError(f"MIVA tensor '{key}' in {where} contains NaN or inf: the adapter diverged; use an earlier checkpoint")


def _check_components(config: MivaConfig, miva: Miva, path: Path) -> None:
    for part, enabled in (
        ("cross_frame", config.cross_frame),
        ("implicit_prompt", config.implicit_prompt),
        ("temporal_lora", config.temporal_lora),
    ):
        present = len(getattr(miva, part)) > 0
        if present != enabled:
            raise InputError(f"'{path}': config says {part}={enabled} but the file {'has' if present else 'lacks'} its tensors")
    # enabled without tensors is fine here: the base the adapter was trained on had no time-condition route
    if len(miva.time_condition) and not config.implicit_time_cond:
        raise InputError(f"'{path}': config says implicit_time_cond=False but the file has its tensors")


def _check_base(path: Path, recorded: dict[str, Any], unet: nn.Module, strict: bool) -> None:
    actual = tensor_fingerprint(base_named_tensors(unet))
    if recorded.get("fingerprint") == actual:
        return
    message = (
        f"'{path}' was trained on base '{recorded.get('name')}' (fingerprint {recorded.get('fingerprint')}), "
        f"but this UNet's weights have fingerprint {actual}. Load the matching base, or pass strict_base=False "
        "to use the adapter anyway."
    )
    if strict:
        raise InputError(message)
    warnings.warn(message, stacklevel=3)
