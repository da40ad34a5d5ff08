"""`miva-report`: aggregate the Table 2 cells into <out_dir>/table2.{json,csv,md}, PNG plots and a GIF grid;
with `--config-name ablations`, the ablation cells into ablations.{json,csv,md}, curves.json and PNGs.

    miva-report                        # results/table2 (the full grid)
    miva-report table2_grid=quick      # results/table2_quick
    miva-report --config-name ablations [ablation_grid=quick]

Same config as `miva-table2` (configs/table2.yaml, configs/ablations.yaml); the work is
`miva_lightning.benchmark.report.run_report` / `benchmark.ablation_report.run_ablation_report`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from miva_lightning.benchmark.ablation_report import run_ablation_report
from miva_lightning.benchmark.report import run_report
from miva_lightning.cli_errors import report_input_errors, run_cli
from miva_lightning.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="table2")
@report_input_errors
def _hydra_main(cfg: DictConfig) -> None:
    print(run_ablation_report(cfg) if cfg.task_name == "ablations" else run_report(cfg), flush=True)


def main() -> None:
    run_cli(_hydra_main)


if __name__ == "__main__":
    main()
