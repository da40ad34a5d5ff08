"""`miva-sweep`: a W&B sweep file run offline, each run a cell of the benchmark (no W&B server needed).

    miva-sweep file=experiments/sweeps/miva_adapter_ablations.yaml          # a grid: every run
    miva-sweep file=experiments/sweeps/miva_lr_rank_tau.yaml max_runs=20    # bayes / random: a run cap
    wandb sync results/sweeps/miva_lr_rank_tau/wandb/offline-run-*         # upload the runs later

Finished cells are reused, so re-running the same command resumes the sweep. The work is
`miva_lightning.benchmark.sweep.run_sweep`; online, the same file goes to `wandb sweep` + `wandb agent`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from miva_lightning.benchmark.sweep import run_sweep
from miva_lightning.cli_errors import report_input_errors, run_cli
from miva_lightning.config import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="sweep")
@report_input_errors
def _hydra_main(cfg: DictConfig) -> None:
    summary = run_sweep(cfg)
    metric = summary["metric"]["name"]
    best = summary["runs"][0] if summary["runs"] else None
    if best is not None and best[metric] is not None:
        print(f"sweep {summary['sweep']}: best {metric} {best[metric]:.2f} (n={best['n']}) with {best['params']} -> {best['cell']}")
    print(f"summary: {summary['out_dir']}/summary.md ({len(summary['runs'])} runs)")


def main() -> None:
    run_cli(_hydra_main)


if __name__ == "__main__":
    main()
