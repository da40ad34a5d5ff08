"""Input files checked without torch: images, adapter files (safetensors header, MIVA metadata), adapter
weights, and the base an adapter was made for."""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from pathlib import Path
from typing import Any, Iterable, Mapping

from miva_lightning.inputs.errors import InputError, InputFileNotFoundError, _quote

# What `adapters/io.py::save_miva` writes (kept equal to adapters.io.FORMAT / FORMAT_VERSION / METADATA_KEY;
# a test checks it); not imported from there because that module imports torch.
MIVA_FORMAT = "miva"
MIVA_FORMAT_VERSION = 1
MIVA_METADATA_KEY = "miva"

_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
_MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit


# --------------------------------------------------------------------------------------------- images


def check_image_path(path: Any, option: str = "image") -> Path:
    """An existing, readable image file that Pillow can decode; returns it as a Path."""
    hint = f"({option}=... must be a PNG/JPG file)"
    if path is None or str(path) in ("", "???"):
        raise InputError(f"no input image given: pass {option}=photo.png {hint}")
    path = Path(str(path))
    if not path.exists():
        raise InputFileNotFoundError(f"image {_quote(path)} does not exist {hint}")
    if path.is_dir():
        raise InputError(f"image {_quote(path)} is a folder, not a file {hint}")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()  # decodes the pixels: truncated files fail here, not after the model loaded
    except PermissionError:
        raise InputError(f"image {_quote(path)} is not readable (permission denied) {hint}") from None
    except UnidentifiedImageError:
        raise InputError(f"image {_quote(path)} is not an image Pillow can read {hint}") from None
    except (OSError, SyntaxError, ValueError) as error:  # truncated / corrupt image data
        raise InputError(f"image {_quote(path)} is corrupt or truncated ({error}) {hint}") from None
    return path


ANIMATE_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # what a folder given as `image=` contributes


def image_folder_files(folder: Path) -> list[Path]:
    """The PNG/JPG files directly in `folder`, sorted by name (hidden files left out)."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in ANIMATE_IMAGE_SUFFIXES and not p.name.startswith(".")
    )  # fmt: skip


def check_image_inputs(path: Any, option: str = "image") -> list[Path]:
    """One PNG/JPG file, or every PNG/JPG file of a folder (sorted by name), each checked like
    `check_image_path`. A folder without such files, or with two of one stem (`a.png`, `a.jpg`: both would
    be written as `<out>/a.mp4`), is an InputError."""
    if path is None or str(path) in ("", "???") or not Path(str(path)).is_dir():
        return [check_image_path(path, option)]
    folder = Path(str(path))
    files = image_folder_files(folder)
    if not files:
        raise InputError(
            f"image folder {_quote(folder)} has no PNG/JPG images ({option}=... must be a PNG/JPG file or a folder of them)"
        )
    seen: dict[str, Path] = {}
    for file in files:
        if file.stem in seen:
            raise InputError(
                f"image folder {_quote(folder)} has {seen[file.stem].name} and {file.name}: both would be written as "
                f"{file.stem}.mp4/.gif; rename one"
            )
        seen[file.stem] = file
    return [check_image_path(file, option) for file in files]


# ------------------------------------------------------------------------------------ adapter weights


def check_adapter_weight(weight: Any, source: Any = None) -> float:
    """A finite number >= 0 (0 switches the adapter off); returns it as a float."""
    where = f"adapter {_quote(source)}: " if source is not None else ""
    hint = "use PATH:WEIGHT with a number >= 0, e.g. a.safetensors:0.7"
    if isinstance(weight, bool):
        raise InputError(f"{where}weight {weight!r} is not a number ({hint})")
    try:
        value = float(weight)
    except (TypeError, ValueError):
        raise InputError(f"{where}weight {weight!r} is not a number ({hint})") from None
    if not math.isfinite(value):
        raise InputError(f"{where}weight {value} is not a finite number ({hint})")
    if value < 0:
        raise InputError(f"{where}negative weight {value:g} (weights must be >= 0, e.g. a.safetensors:0.7; 0 turns it off)")
    return value


def parse_adapter_spec(spec: Any) -> tuple[str, float]:
    """`path[:weight]` or {path, weight} -> (path, weight); the weight must be a finite number >= 0."""
    if isinstance(spec, Mapping) or hasattr(spec, "keys"):
        if "path" not in spec:
            raise InputError(f"adapter entry {dict(spec)} needs a `path` (and optionally a `weight`)")
        path = str(spec["path"])
        return path, check_adapter_weight(spec.get("weight", 1.0), path)
    text = str(spec)
    path, sep, weight = text.rpartition(":")
    if not sep or "/" in weight or "\\" in weight:  # no weight given (or the colon belongs to the path)
        return text, 1.0
    return path, check_adapter_weight(weight, path)


# -------------------------------------------------------------------------------------- adapter files


def _is_pickle(source: bytes | Path) -> bool:
    """A pickle (protocol 2+) or a torch.save zip archive, from the first bytes (or the file's)."""
    if isinstance(source, Path):
        try:
            with open(source, "rb") as handle:
                source = handle.read(2)
        except OSError:
            return False
    return source[:1] == b"\x80" or source[:2] == b"PK"


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, Any], int]:
    """(header, data offset) of a safetensors file, read with the standard library only.

    Refuses pickles (torch.save / Lightning .ckpt files), files that are not safetensors, and files whose
    tensors run past the end of the file (a truncated copy)."""
    path = Path(path)
    what = f"adapter file {_quote(path)}"
    hint = "pass a MIVA .safetensors file written by miva-train"
    if not path.exists():
        raise InputFileNotFoundError(f"{what} does not exist ({hint}: --adapter PATH.safetensors[:WEIGHT])")
    if path.is_dir():
        raise InputError(f"{what} is a folder, not a file ({hint})")
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if _is_pickle(prefix):
                raise InputError(
                    f"{what} is a pickle / torch.save file (e.g. a Lightning .ckpt), not a MIVA: {hint} "
                    "(<run folder>/<motion>.safetensors); checkpoints are only for resume_from"
                )
            if len(prefix) < 8:
                raise InputError(f"{what} is empty or truncated ({size} bytes): copy it again or re-export it")
            (header_size,) = struct.unpack("<Q", prefix)
            if header_size > _MAX_HEADER_BYTES:
                raise InputError(f"{what} is not a safetensors file (its header is unreadable): {hint}")
            if 8 + header_size > size:
                raise InputError(f"{what} is truncated ({size} bytes, its header alone needs {8 + header_size}): "
                                 "copy it again or re-export it")  # fmt: skip
            raw = handle.read(header_size)
    except PermissionError:
        raise InputError(f"{what} is not readable (permission denied)") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{what} is not a safetensors file (its header is not JSON): {hint}") from None
    if not isinstance(header, dict):
        raise InputError(f"{what} is not a safetensors file (its header is not a table of tensors): {hint}")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = (int(v) for v in entry["data_offsets"])
            numel = math.prod(int(n) for n in entry["shape"])
            itemsize = _DTYPE_BYTES[entry["dtype"]]
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{what} is not a valid safetensors file (bad entry for tensor {name!r}): {hint}") from None
        if stop - start != numel * itemsize or start < 0:
            raise InputError(f"{what} is not a valid safetensors file (tensor {name!r} has a wrong size): {hint}")
        end = max(end, stop)
    expected = 8 + header_size + end
    if size < expected:
        raise InputError(f"{what} is truncated ({size} of {expected} bytes): copy it again or re-export it")
    if size > expected:
        raise InputError(f"{what} is corrupt ({size - expected} bytes after its last tensor): copy it again")
    return header, 8 + header_size


def check_adapter_file(path: Any) -> dict[str, Any]:
    """An existing, readable MIVA file (safetensors with the metadata `save_miva` writes, not truncated);
    returns that metadata ({"format", "format_version", "config", "base", ...}).

    The tensors themselves (names, shapes, finite values) are checked by `adapters.io.load_miva`."""
    if path is None or str(path) in ("", "???"):
        raise InputError("an adapter needs a path: --adapter PATH.safetensors[:WEIGHT]")
    path = Path(str(path))
    what = f"adapter file {_quote(path)}"
    if path.suffix != ".safetensors" and path.is_file() and not _is_pickle(path):  # a pickle gets its own hint
        raise InputError(f"{what} must be a .safetensors file (MIVA files are safetensors, as miva-train writes them)")
    header, _ = read_safetensors_header(path)
    raw = (header.get("__metadata__") or {}).get(MIVA_METADATA_KEY)
    if raw is None:
        raise InputError(f"{what} is a safetensors file but not a MIVA (no '{MIVA_METADATA_KEY}' metadata): "
                         "pass an adapter written by miva-train")  # fmt: skip
    try:
        metadata = json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        raise InputError(f"{what} has unreadable MIVA metadata: re-export it with miva-train") from None
    if not isinstance(metadata, dict) or "config" not in metadata:
        raise InputError(f"{what} has incomplete MIVA metadata (no config): re-export it with miva-train")
    if metadata.get("format") != MIVA_FORMAT or metadata.get("format_version") != MIVA_FORMAT_VERSION:
        raise InputError(
            f"{what} has format {metadata.get('format')} v{metadata.get('format_version')}; this code reads "
            f"{MIVA_FORMAT} v{MIVA_FORMAT_VERSION}: re-export it with this version of miva-train"
        )
    return metadata


# ----------------------------------------------------------------------------------------- the base


def safetensors_fingerprint(path: str | os.PathLike, length: int = 16) -> str | None:
    """`utils.tensor_fingerprint` of the tensors in a safetensors file, computed from the file's bytes
    (the same SHA-256 over sorted names, shapes and float32 values); None when a tensor is not stored as
    float32 (the fingerprint then needs the loaded model)."""
    header, offset = read_safetensors_header(path)
    header.pop("__metadata__", None)
    if any(entry["dtype"] != "F32" for entry in header.values()) or struct.pack("=f", 1.0) != struct.pack("<f", 1.0):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for name in sorted(header):
            start, stop = header[name]["data_offsets"]
            handle.seek(offset + start)
            digest.update(name.encode("utf-8"))
            digest.update(str(tuple(int(n) for n in header[name]["shape"])).encode("utf-8"))
            digest.update(handle.read(stop - start))
    return digest.hexdigest()[:length]


def _plain(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return dict(cfg or {})


def tiny_base_folder(backbone_cfg: Any) -> Path | None:
    """The saved tiny base `backbone.pretrained` selects (as `backbones.factory.resolve_pretrained` does),
    checked to exist; None for random init."""
    from miva_lightning.config import REPO_ROOT

    cfg = _plain(backbone_cfg)
    choice = cfg.get("pretrained")
    if choice in (None, "", "none"):
        return None
    if choice == "latest":
        artifacts = Path(cfg.get("artifacts_dir") or REPO_ROOT / "artifacts")
        index = artifacts / "base" / f"{cfg.get('name', 'tiny')}.json"
        if not index.is_file():
            raise InputFileNotFoundError(
                f"backbone.pretrained=latest but {index} does not exist: run `make pretrain` (miva-pretrain) first, "
                "or set backbone.pretrained=<saved base folder> (or null for random init)"
            )
        try:
            folder = index.parent / json.loads(index.read_text())["folder"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise InputError(f"{index} is not a base index ({{\"folder\": ...}}): re-run `make pretrain`") from None
    else:
        folder = Path(str(choice))
    if not (folder / "backbone.yaml").is_file():
        raise InputFileNotFoundError(
            f"backbone.pretrained: no saved tiny base at {_quote(folder)} (expected backbone.yaml, unet/, ...): "
            "pass a folder written by miva-pretrain, latest, or null"
        )
    return folder


def configured_base(backbone_cfg: Any) -> dict[str, Any]:
    """What can be known of the configured base without building it: {"name", "fingerprint", "where"}.

    For a saved tiny base the fingerprint is computed from its unet safetensors file (a few MB, ~50 ms),
    so an adapter of another base is refused before anything is built. For AnimateDiff (two sources, GBs of
    weights, possibly fp16) and for a randomly initialised tiny base the fingerprint only exists after the
    backbone is built: it is None here, and `adapters.io.load_miva` checks it after loading."""
    cfg = _plain(backbone_cfg)
    kind = cfg.get("kind", "tiny")
    if kind not in ("tiny", "animatediff"):
        raise InputError(f"unknown backbone kind {kind!r}: use backbone=tiny or backbone=animatediff_sd15")
    name = cfg.get("name", "tiny" if kind == "tiny" else None)
    if kind != "tiny":
        return {"name": name, "fingerprint": None, "where": f"backbone {name!r}"}
    folder = tiny_base_folder(cfg)
    if folder is None:
        return {"name": name, "fingerprint": None, "where": f"backbone {name!r} (random init)"}
    import yaml

    try:
        saved = yaml.safe_load((folder / "backbone.yaml").read_text()) or {}
    except yaml.YAMLError as error:
        raise InputError(f"{folder / 'backbone.yaml'} is not valid YAML ({error}): the saved base is corrupt") from None
    name = saved.get("name", "tiny")  # load_tiny_backbone takes the name from the saved folder
    unet_file = folder / "unet" / "diffusion_pytorch_model.safetensors"
    fingerprint = None
    if unet_file.is_file():
        try:
            fingerprint = safetensors_fingerprint(unet_file)
        except InputError:
            fingerprint = None  # a damaged base is reported by its checksum check when it is loaded
    return {"name": name, "fingerprint": fingerprint, "where": f"base {name!r} at {folder}"}


def check_adapter_base(path: Any, metadata: Mapping[str, Any], base: Mapping[str, Any]) -> None:
    """Refuse an adapter whose recorded base (`save_miva`'s metadata["base"]) is not the configured one.

    Compares fingerprints when both are known, else the base names; when neither settles it, the check
    after loading (`adapters.io.load_miva`, over the loaded UNet's weights) still runs."""
    recorded = dict(metadata.get("base") or {})
    name, fingerprint = recorded.get("name"), recorded.get("fingerprint")
    hint = "use the base it was made for (backbone=..., backbone.pretrained=...) or train the adapter on this base"
    if fingerprint and base.get("fingerprint"):
        if fingerprint != base["fingerprint"]:
            raise InputError(
                f"adapter {_quote(path)} was made for another base ({name!r}, fingerprint {fingerprint}) than the "
                f"configured {base['where']} (fingerprint {base['fingerprint']}): {hint}"
            )
        return
    if name and base.get("name") and name != base["name"]:
        raise InputError(f"adapter {_quote(path)} was made for base {name!r}, not the configured {base['where']}: {hint}")


def check_adapters(specs: Iterable[Any], backbone_cfg: Any = None) -> list[tuple[str, float]]:
    """Parse `path[:weight]` specs and check every weight, file and (with `backbone_cfg`) base."""
    adapters = [parse_adapter_spec(spec) for spec in specs]
    base = configured_base(backbone_cfg) if backbone_cfg is not None and adapters else None
    for path, _ in adapters:
        metadata = check_adapter_file(path)
        if base is not None:
            check_adapter_base(path, metadata, base)
    return adapters
