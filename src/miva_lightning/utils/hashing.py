"""Stable identities: of configs (artifact folder keys), files (metric weights) and tensors
(the base model an adapter was trained on)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch


def config_hash(config: Mapping[str, Any], length: int = 10) -> str:
    """Hash of a JSON-able mapping, independent of key order."""
    blob = json.dumps(config, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:length]


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def tensor_fingerprint(named_tensors: Iterable[tuple[str, torch.Tensor]], length: int = 16) -> str:
    """SHA-256 over names, shapes and float32 bytes of tensors, in sorted name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(named_tensors, key=lambda item: item[0]):
        digest.update(name.encode("utf-8"))
        digest.update(str(tuple(tensor.shape)).encode("utf-8"))
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:length]
