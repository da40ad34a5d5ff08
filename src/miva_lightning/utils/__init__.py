"""Small helpers shared by every package: atomic file writes, hashing, peak memory, building the Lightning Trainer."""

from miva_lightning.utils.atomic import atomic_folder, atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text
from miva_lightning.utils.lightning_setup import build_trainer
from miva_lightning.utils.hashing import config_hash, file_sha256, tensor_fingerprint
from miva_lightning.utils.resources import peak_rss_mb

__all__ = [
    "atomic_folder",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "build_trainer",
    "config_hash",
    "file_sha256",
    "tensor_fingerprint",
    "peak_rss_mb",
]
