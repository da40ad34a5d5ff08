"""miva-eval-base: judged per-motion accuracy of a saved tiny base, in a few minutes.

Writes results/base_eval.json; the work is `miva_lightning.pipelines.base_eval.run`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from miva_lightning.cli_errors import report_input_errors, run_cli
from miva_lightning.config import CONFIG_DIR
from miva_lightning.pipelines.base_eval import run, summary


@hydra.main(config_path=str(CONFIG_DIR), config_name="eval_base", version_base="1.3")
@report_input_errors
def _hydra_main(cfg: DictConfig) -> None:
    print(summary(run(cfg)))


def main() -> None:
    run_cli(_hydra_main)


if __name__ == "__main__":
    main()
