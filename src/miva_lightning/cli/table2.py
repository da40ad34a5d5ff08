"""`miva-table2`: one cell of the paper's Table 2 (method, motion, seed) -> one JSON; a grid is a multirun.

    miva-table2 method=miva motion=zoom_out seed=0
    miva-table2 --multirun table2_grid=full          # every cell of `make reproduce-table2`, resumable
    miva-table2 --multirun table2_grid=quick hydra/launcher=joblib

A finished cell is reused, a failed one is written with its error; the work is
`miva_lightning.benchmark.cells.run_cell`. `miva-report` aggregates the cells.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from miva_lightning.benchmark.cells import cell_line, run_cell
from miva_lightning.cli_errors import report_input_errors, run_cli
from miva_lightning.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="table2")
@report_input_errors
def _hydra_main(cfg: DictConfig) -> None:
    print(cell_line(run_cell(cfg)), flush=True)


def main() -> None:
    run_cli(_hydra_main)


if __name__ == "__main__":
    main()
