"""DeepSpeed ZeRO for adapter training on CUDA GPUs (`trainer=deepspeed`), with adapter-only checkpoints.

ZeRO stage 2 shards the gradients and optimizer states of what trains across the GPUs; the frozen base is
replicated, as under DDP. Lightning runs DeepSpeed on CUDA only: without CUDA the strategy refuses to be built
(`CUDA_ONLY`). Set `DS_BUILD_OPS=0` where DeepSpeed cannot compile its CUDA ops.

A DeepSpeed checkpoint is a folder, not a file: `<name>.ckpt/checkpoint/mp_rank_00_model_states.pt` (the
module's tensors and Lightning's loop, callback and RNG state) plus `zero_pp_rank_<r>_mp_rank_00_optim_states.pt`
per rank (that rank's shard of the optimizer state), and `<name>.ckpt/latest` once the save has finished.
DeepSpeed would store the whole module there; this strategy stores the tensors `trainable_state_keys()` names
and nothing else, like the single-file checkpoints of DDP and single-device runs.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.strategies import DeepSpeedStrategy

CUDA_ONLY = (
    "trainer=deepspeed: DeepSpeed ZeRO trains on CUDA GPUs only, and this machine has none "
    "(torch.cuda.is_available() is False). On CPUs use trainer=cpu, or trainer=ddp trainer.accelerator=cpu "
    "for several processes."
)


class AdapterOnlyDeepSpeedStrategy(DeepSpeedStrategy):
    """Lightning's `DeepSpeedStrategy` (any stage; configs/trainer/deepspeed.yaml uses 2) saving only what trains."""

    def __init__(self, *args: Any, **kwargs: Any):
        if not torch.cuda.is_available():  # said at once, not after the model has loaded
            raise RuntimeError(CUDA_ONLY)
        kwargs.setdefault("exclude_frozen_parameters", True)  # no frozen parameter or its ZeRO fragments
        super().__init__(*args, **kwargs)

    def save_checkpoint(self, checkpoint: dict, filepath: Any, storage_options: Any = None) -> None:
        # `exclude_frozen_parameters` still leaves the frozen base's persistent buffers in the module state:
        # filter DeepSpeed's module state dict for this save to the trained tensors.
        engine, keep = self.deepspeed_engine, adapter_state_keys(self.lightning_module)
        full_state = engine.module_state_dict

        def trained_state(*args: Any, **kwargs: Any) -> dict:
            return {name: tensor for name, tensor in full_state(*args, **kwargs).items() if name in keep}

        engine.module_state_dict = trained_state
        try:
            super().save_checkpoint(checkpoint, filepath, storage_options)
        finally:
            del engine.module_state_dict  # the engine's own method again


def adapter_state_keys(module: Any) -> set[str]:
    """The state keys a checkpoint keeps: `trainable_state_keys()` of the few-shot modules, else every
    trainable parameter."""
    if hasattr(module, "trainable_state_keys"):
        return set(module.trainable_state_keys())
    return {name for name, parameter in module.named_parameters() if parameter.requires_grad}
