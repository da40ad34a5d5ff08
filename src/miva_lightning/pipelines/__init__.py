"""The jobs behind the console entry points: each module does one job from a composed config to its
results; `cli/` holds only thin Hydra wrappers over these (and nothing imports a `cli/` module).

- `train`: train one method (default: a MIVA) on a few-shot set and export it (`train_method`, alias
  `train_miva`; `miva-train [method=...]`)
- `methods`: the comparison's methods (`configs/method/`): `method_config`, `load_trained`, `sample_method`
- `animate`: animate one image with MIVAs and write MP4/GIF (`run_animate`; `miva-animate`)
- `evaluate`: score generated videos against reference clips (`evaluate_folders`, `run`; `miva-eval`)
- `demo`: train, animate and judge novel motions and a combination (`run_demo`; `cli/demo.py`, `make demo`)
- `pretrain`: pretrain or reuse the tiny base and measure it (`run`; `miva-pretrain`)
- `base_eval`: re-measure a saved base into results/base_eval.json (`run`; `miva-eval-base`); the measures
  themselves are `training/base_eval.py`'s

Like the entry points, these modules import torch, Lightning and the model code only inside the functions
that need them, after the inputs are checked (`miva_lightning.inputs`): bad input fails in one line, fast.
"""
