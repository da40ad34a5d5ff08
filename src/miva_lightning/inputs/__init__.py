"""Input checks that run BEFORE any model is loaded: images, adapter files and weights, data folders,
numeric settings and the base an adapter was made for.

Every check raises `InputError` (a `ValueError`) whose message names the problem and says what to
change, in one line; the command-line entry points print it as `error: <message>` and exit with code 2
(`miva_lightning.cli_errors`). The package imports only the standard library (plus Pillow for images and
PyYAML/OmegaConf for a saved base's config), so a bad input is reported in well under a second instead of
after the 5-7 s of importing torch/diffusers and building the backbone.
- `errors.py`: InputError; `files.py`: images, adapter files and weights, the base an adapter was made for;
  `settings.py`: numbers, choices, data folders, world motions and each command's config checks.
"""

from miva_lightning.inputs.errors import InputError, InputFileNotFoundError
from miva_lightning.inputs.files import (
    MIVA_FORMAT,
    MIVA_FORMAT_VERSION,
    MIVA_METADATA_KEY,
    check_adapter_base,
    check_adapter_file,
    check_adapter_weight,
    check_adapters,
    check_image_inputs,
    check_image_path,
    configured_base,
    parse_adapter_spec,
    read_safetensors_header,
    safetensors_fingerprint,
    tiny_base_folder,
)
from miva_lightning.inputs.settings import (
    LORA_MODE_NAMES,
    SCHEDULER_NAMES,
    check_animate_config,
    check_base_eval_config,
    check_choice,
    check_data_folder,
    check_eval_config,
    check_given,
    check_number,
    check_pretrain_config,
    check_train_config,
    check_world_motions,
    world_motion_names,
)

__all__ = [
    "MIVA_FORMAT",
    "MIVA_FORMAT_VERSION",
    "LORA_MODE_NAMES",
    "MIVA_METADATA_KEY",
    "SCHEDULER_NAMES",
    "InputError",
    "InputFileNotFoundError",
    "check_adapter_base",
    "check_adapter_file",
    "check_adapter_weight",
    "check_adapters",
    "check_animate_config",
    "check_base_eval_config",
    "check_choice",
    "check_data_folder",
    "check_eval_config",
    "check_given",
    "check_image_inputs",
    "check_image_path",
    "check_number",
    "check_pretrain_config",
    "check_train_config",
    "check_world_motions",
    "configured_base",
    "parse_adapter_spec",
    "read_safetensors_header",
    "safetensors_fingerprint",
    "tiny_base_folder",
    "world_motion_names",
]
