"""Input settings checked before any model loads: numbers, choices, data folders, world motions, and the
checks each command runs on its composed config."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from miva_lightning.inputs.errors import InputError, InputFileNotFoundError, _quote
from miva_lightning.inputs.files import check_adapters, check_image_inputs, check_image_path, configured_base

# Files beside clips that are not clips (the folder source skips them too, see data/clip_sources.py).
_SIDECAR_SUFFIXES = (".txt", ".json", ".csv", ".md", ".yaml", ".yml")
# The names `sampling.schedulers.SCHEDULERS` knows (that module imports diffusers; a test keeps both equal).
SCHEDULER_NAMES = ("ddim", "ddpm", "euler", "euler_ancestral", "dpmsolver++", "unipc")
# `adapters.temporal_lora.LORA_MODE_CHOICES` (that module imports peft; a test keeps both equal).
LORA_MODE_NAMES = ("auto", "merge", "residual")
# `adapters.cross_frame_attention.CFA_MODES` (the same test keeps both equal).
CFA_MODE_NAMES = ("sum", "merge")


# -------------------------------------------------------------------------------------------- numbers


def _select(cfg: Any, key: str) -> Any:
    from omegaconf import OmegaConf

    if OmegaConf.is_config(cfg):
        return OmegaConf.select(cfg, key, default=None)
    value = cfg
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def check_number(
    cfg: Any,
    key: str,
    minimum: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
    optional: bool = False,
    exclusive_minimum: bool = False,
    also: Sequence[Any] = (),
) -> float | int | None:
    """`cfg.<key>` must be a (finite) number in range; `also` lists extra allowed values (e.g. -1)."""
    value = _select(cfg, key)
    if value is None and optional:
        return None
    if value in also and not isinstance(value, bool):
        return value
    kind = "an integer" if integer else "a number"
    bounds = []
    if minimum is not None:
        bounds.append(f"{'>' if exclusive_minimum else '>='} {minimum:g}")
    if maximum is not None:
        bounds.append(f"<= {maximum:g}")
    allowed = " and ".join(bounds)
    requirement = f"{kind}{' ' + allowed if allowed else ''}{''.join(f' (or {a})' for a in also)}"
    problem = InputError(f"{key}={value!r} is not valid: use {requirement}")
    if isinstance(value, bool) or value is None:
        raise problem
    if integer:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise problem
    else:
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise problem from None
        if not math.isfinite(value):
            raise problem
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        raise problem
    if maximum is not None and value > maximum:
        raise problem
    return value


def check_choice(cfg: Any, key: str, choices: Sequence[Any], optional: bool = False) -> Any:
    value = _select(cfg, key)
    if optional and value is None:
        return value
    if value not in choices:
        raise InputError(f"{key}={value!r} is not valid: use one of {', '.join(map(str, choices))}")
    return value


def check_given(cfg: Any, key: str, example: str) -> Any:
    """A mandatory option (`???` in the YAML) must be set on the command line."""
    if _is_missing(cfg, key) or _select(cfg, key) in (None, ""):
        raise InputError(f"{key} is not set: pass {key}={example}")
    return _select(cfg, key)


# ----------------------------------------------------------------------------------------------- data


def check_data_folder(root: Any, motions: str | Sequence[str] | None) -> Path:
    """A LAMP-layout folder `<root>/<motion>/<clips>` holding the chosen motions (None = every folder).

    Only the layout is checked here (cheaply, without decoding); clip formats and lengths are checked by
    the data module when it reads the clips (`VideoReadError`)."""
    hint = "data.root=... must be a folder laid out as <root>/<motion>/<clip files or frame folders>"
    if root is None or str(root) in ("", "???"):
        raise InputError(f"no data folder given: {hint}")
    root = Path(str(root))
    if not root.exists():
        raise InputFileNotFoundError(f"data folder {_quote(root)} does not exist ({hint})")
    if not root.is_dir():
        raise InputError(f"data folder {_quote(root)} is a file, not a folder ({hint})")
    available = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not available:
        raise InputError(f"data folder {_quote(root)} has no motion folders ({hint})")
    chosen = available if motions is None else [motions] if isinstance(motions, str) else list(motions)
    for motion in chosen:
        folder = root / str(motion)
        if str(motion) not in available:
            shown = ", ".join(available[:10]) + (", ..." if len(available) > 10 else "")
            raise InputFileNotFoundError(
                f"motion folder {_quote(folder)} does not exist (motion={motion} must be a folder under data.root; "
                f"found: {shown})"
            )
        clips = [p for p in folder.iterdir() if not p.name.startswith(".") and p.suffix.lower() not in _SIDECAR_SUFFIXES]
        if not clips:
            raise InputError(f"motion folder {_quote(folder)} has no clips (put video files or folders of frames there)")
    return root


def world_motion_names(group: str = "ALL_MOTIONS") -> tuple[str, ...]:
    """ALL_MOTIONS (or BASE_MOTIONS, NOVEL_MOTIONS) of `world/motions.py`, read without importing the
    `world` package (its __init__ imports torch): that file is plain Python with no imports."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "world" / "motions.py"
    spec = importlib.util.spec_from_file_location("_miva_world_motion_names", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(getattr(module, group))


def check_world_motions(motions: str | Sequence[str] | None) -> None:
    """The motions chosen for the procedural-world source exist."""
    known = world_motion_names()
    chosen = [motions] if isinstance(motions, str) else list(motions or [])
    if not chosen:
        raise InputError("motion is not set: pass motion=<name> (one of " + ", ".join(known) + ")")
    for motion in chosen:
        if motion not in known:
            raise InputError(
                f"motion={motion} is not a motion of the procedural world (use one of {', '.join(known)}; "
                "for your own clips: data=fewshot_folder data.root=<folder> motion=<subfolder>)"
            )


# --------------------------------------------------------------------------------- per-command checks


def check_animate_config(cfg: Any, extra_adapters: Sequence[Any] = ()) -> list[tuple[str, float]]:
    """miva-animate's inputs: image (a file or a folder of them), adapters (file, weight, base), sampling
    numbers. Returns the adapters."""
    check_image_inputs(_select(cfg, "image"))  # None when missing (`???`): "no input image given"
    check_number(cfg, "batch_size", minimum=1, integer=True, optional=True)
    check_number(cfg, "steps", minimum=1, integer=True)
    check_number(cfg, "num_frames", minimum=2, integer=True)
    check_number(cfg, "seed", integer=True)
    check_number(cfg, "fps", minimum=0, exclusive_minimum=True)
    check_number(cfg, "guidance_scale", minimum=0)
    check_number(cfg, "adapter_guidance", minimum=0, optional=True)
    check_choice(cfg, "lora_mode", LORA_MODE_NAMES)
    check_choice(cfg, "cfa_mode", CFA_MODE_NAMES, optional=True)
    options = _select(cfg, "scheduler_options")
    if options is not None and not isinstance(options, Mapping):
        raise InputError(f"scheduler_options={options!r} is not valid: use a mapping such as {{set_alpha_to_one: true}} (or {{}})")
    scheduler = _select(cfg, "scheduler")
    if scheduler is not None and str(scheduler).lower() not in SCHEDULER_NAMES:
        raise InputError(f"scheduler={scheduler} is not valid: use one of {', '.join(SCHEDULER_NAMES)} or null (the backbone's own)")
    formats = _select(cfg, "formats") or []
    unknown = [f for f in formats if str(f) not in ("mp4", "gif")]
    if unknown or not formats:
        raise InputError(f"formats={list(formats)} is not valid: use a non-empty list of mp4 and gif")
    size = _select(cfg, "size")
    if size is not None:
        values = [size] if isinstance(size, (int, float, str)) else list(size)
        if len(values) not in (1, 2) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            raise InputError(f"size={size!r} is not valid: use one positive int or [height, width] (or null)")
    specs = list(_select(cfg, "adapters") or []) + list(extra_adapters)
    return check_adapters(specs, _select(cfg, "backbone"))


def check_train_config(cfg: Any) -> None:
    """miva-train's inputs: base, data (folder layout), obviously wrong numbers, preview images."""
    check_number(cfg, "seed", integer=True)
    check_number(cfg, "num_threads", minimum=1, integer=True, optional=True)
    check_number(cfg, "trainer.max_steps", minimum=1, integer=True, also=(-1,))
    check_number(cfg, "data.batch_size", minimum=1, integer=True)
    check_number(cfg, "data.num_frames", minimum=2, integer=True)
    check_number(cfg, "data.height", minimum=1, integer=True)
    check_number(cfg, "data.width", minimum=1, integer=True)
    check_number(cfg, "data.max_clips", minimum=1, integer=True, optional=True)
    check_number(cfg, "data.flip_p", minimum=0, maximum=1, optional=True)
    check_number(cfg, "optimization.lr", minimum=0, exclusive_minimum=True)
    check_number(cfg, "optimization.weight_decay", minimum=0, optional=True)
    check_number(cfg, "optimization.warmup_steps", minimum=0, integer=True, optional=True)
    check_number(cfg, "checkpoint.every_n_steps", minimum=1, integer=True)
    check_number(cfg, "preview.every_n_steps", minimum=1, integer=True)
    check_number(cfg, "preview.num_first_frames", minimum=0, integer=True)
    check_number(cfg, "preview.batch_size", minimum=1, integer=True)
    check_number(cfg, "preview.steps", minimum=1, integer=True)
    for image in _select(cfg, "preview.images") or []:
        check_image_path(image, option="preview.images")
    adapter_out = _select(cfg, "adapter_out")
    if adapter_out and Path(str(adapter_out)).suffix != ".safetensors":
        raise InputError(f"adapter_out={adapter_out} is not valid: name it *.safetensors (MIVA files are safetensors)")
    if not str(_select(cfg, "motion") or "").strip():
        raise InputError("motion is not set: pass motion=<name> (a world motion, or a folder under data.root)")
    data = _select(cfg, "data") or {}
    if _select(data, "source") == "folder":
        check_data_folder(_select(data, "root"), _select(data, "motion"))
    elif _select(data, "source") == "motion_world":
        check_world_motions(_select(data, "motion"))
    configured_base(_select(cfg, "backbone"))  # the saved base exists (reading it is the slow part)


def check_eval_config(cfg: Any) -> None:
    """miva-eval's inputs: both clip folders, the optional prompts file and images folder, numbers."""
    for key in ("generated_dir", "reference_dir"):
        folder = check_given(cfg, key, "<folder of clips>")
        if not Path(str(folder)).is_dir():
            raise InputFileNotFoundError(f"{key} {_quote(folder)} does not exist or is not a folder ({key}=... "
                                         "must be a folder of video files, GIFs or frame folders)")  # fmt: skip
        if not any(not p.name.startswith(".") for p in Path(str(folder)).iterdir()):
            # file formats are checked when the clips are listed (pipelines/evaluate.py list_clips)
            raise InputFileNotFoundError(f"no clips (video files, GIFs or frame folders) in {folder} ({key}=...)")
    for key, kind in (("prompts", "file"), ("images_dir", "folder")):
        value = _select(cfg, key)
        if value and not (Path(str(value)).is_file() if kind == "file" else Path(str(value)).is_dir()):
            raise InputFileNotFoundError(f"{key} {_quote(value)} does not exist (pass an existing {kind}, or null)")
    check_number(cfg, "num_frames", minimum=1, integer=True)
    check_number(cfg, "stride", minimum=1, integer=True)
    check_number(cfg, "batch_size", minimum=1, integer=True)
    check_number(cfg, "resolution", minimum=1, integer=True, optional=True)


def check_base_eval_config(cfg: Any) -> None:
    """miva-eval-base's inputs: the saved base and the evaluation numbers."""
    configured_base(_select(cfg, "backbone"))
    check_number(cfg, "num_threads", minimum=1, integer=True)
    check_number(cfg, "eval.n_per_motion", minimum=1, integer=True)
    check_number(cfg, "eval.num_inference_steps", minimum=1, integer=True)
    check_number(cfg, "eval.guidance_scale", minimum=0)


def check_pretrain_config(cfg: Any) -> None:
    """miva-pretrain's obviously wrong numbers."""
    check_number(cfg, "num_threads", minimum=1, integer=True)
    check_number(cfg, "trainer.max_steps", minimum=1, integer=True, also=(-1,))
    check_number(cfg, "data.batch_size", minimum=1, integer=True)
    check_number(cfg, "recipe.lr", minimum=0, exclusive_minimum=True)
    check_number(cfg, "recipe.budget_minutes", minimum=0, exclusive_minimum=True, optional=True)
    check_number(cfg, "eval.n_per_motion", minimum=1, integer=True)
    check_number(cfg, "eval.final_n_per_motion", minimum=1, integer=True)
    check_number(cfg, "eval.num_inference_steps", minimum=1, integer=True)


def _is_missing(cfg: Any, key: str) -> bool:
    from omegaconf import OmegaConf

    return OmegaConf.is_config(cfg) and OmegaConf.is_missing(cfg, key)
