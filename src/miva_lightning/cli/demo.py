"""The demo (`make demo MOTIONS=default|all|<name>`): does a MIVA learn a NEW motion from ten clips?

For every chosen novel motion of the procedural world: ensure the tiny base exists, train one MIVA on ten
clips, animate held-out first frames and the photographs in assets/photos with it and with the prompted
base, judge every clip with the weight-free motion classifier; then combine two MIVAs. Writes
results/demo.json and the videos under outputs/demo/; the work is `miva_lightning.pipelines.demo.run_demo`.

    python -m miva_lightning.cli.demo motions=waterfall train.max_minutes=2 n_eval=8
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from miva_lightning.cli_errors import run_cli
from miva_lightning.pipelines.demo import demo_config, print_table, run_demo


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cfg = demo_config(sys.argv[1:] if argv is None else argv)  # Hydra's compose API: configs/demo.yaml
    results = run_demo(cfg)
    print_table(results)
    print(f"results: {cfg.results_path}; videos: {Path(cfg.out_dir)}")
    return results


if __name__ == "__main__":
    run_cli(main)  # input errors (unknown motions, misspelled keys): one line and exit code 2
