"""The paper's Table 2 as a resumable benchmark suite (`make reproduce-table2`).

A *cell* is one (method, motion, seed): train the method on the motion's few-shot clips, animate held-out
first frames, measure, and write ONE JSON file. Cells are independent Hydra jobs, so `miva-table2 --multirun`
runs a grid with whatever launcher Hydra is given (basic, joblib, submitit) and a re-run after any kill only
computes the cells that have no finished JSON. The report reads nothing but those JSON files.

- `cells`: one cell, from config to `<out_dir>/cells/<method>/<motion>/seed<seed>.json` (reuse, failures)
- `methods`: the one dispatch point between the benchmark and the few-shot methods (train, sample, retention)
- `measures`: what a cell measures on its videos (judge, FD, first-frame PSNR/SSIM, flicker, drift, retention)
- `report`: cell JSONs -> table2.{json,csv,md} with per method x split summaries and intervals
- `plots`: PNG plots and the GIF grid of the report
- `provenance`: commit, machine, peak memory, config composition inside or outside a Hydra app
"""
