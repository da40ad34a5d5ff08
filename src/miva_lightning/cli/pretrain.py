"""miva-pretrain: pretrain (or reuse) the tiny base, measure it, write results/pretrain.json.

The base is saved atomically to artifacts/base/<name>-<config_hash>/ and indexed by
artifacts/base/<name>.json (what `backbone.pretrained=latest` loads). When that folder already exists
for this config hash, training is skipped and the stored measurements are reported again.
The work is `miva_lightning.pipelines.pretrain.run`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from miva_lightning.cli_errors import report_input_errors, run_cli
from miva_lightning.config import CONFIG_DIR
from miva_lightning.pipelines.pretrain import run, summary


@hydra.main(config_path=str(CONFIG_DIR), config_name="pretrain", version_base="1.3")
@report_input_errors
def _hydra_main(cfg: DictConfig) -> None:
    print(summary(cfg, run(cfg)))


def main() -> None:
    run_cli(_hydra_main)


if __name__ == "__main__":
    main()
