"""Table 2 from the cell JSONs: `<out_dir>/table2.{json,csv,md}`, PNG plots and a GIF grid.

The report reads nothing but `<out_dir>/cells/**/seed*.json`, so it can be rebuilt at any time (also from a
half-finished grid: missing cells are simply absent, failed ones are counted and listed).

Per method x split (in_prior, held_out): accuracy pools the judged clips of all its cells (motions x seeds) with
a Wilson 95 % interval; beside it the mean of the cells' accuracies with a Student t interval over cells, clipped to [0, 1]
(seeds and motions vary, so this one carries the between-run spread that pooled clips hide). Fidelity pools the
per-clip fidelities (t interval); retention pools the judged retention clips (Wilson). FD is the mean over cells
of per-cell FDs at the n stated (FD is biased at small n: compare only equal n). Sizes and times are medians
(trainable parameters, bytes, steps) or means (train seconds) over cells; peak memory is the maximum.
A method that trains nothing (base_prompted) gives the same videos at every seed: its row counts one cell per
motion (the lowest seed), never the same clips twice.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

from miva_lightning.pipelines.methods import METHODS
from miva_lightning.metrics.intervals import mean_interval, wilson_interval

SPLIT_ORDER = ("in_prior", "held_out", "captioned", "real")
# Methods whose videos do not depend on the cell seed: they train nothing and sample with the grid's fixed
# sampling seed, so their seed-1 cell repeats seed 0 clip for clip; pooling both would count each clip twice.
SEED_FREE_METHODS = ("base_prompted",)
CSV_COLUMNS = (
    "method", "split", "n_cells", "n_failed", "n_clips", "accuracy", "accuracy_lo", "accuracy_hi",
    "accuracy_cell_mean", "accuracy_cell_lo", "accuracy_cell_hi", "fidelity", "fidelity_lo", "fidelity_hi",
    "fd_motionworld", "fd_n_generated", "fd_n_reference", "first_frame_psnr_db", "first_frame_ssim", "flicker",
    "drift", "retention", "retention_lo", "retention_hi", "retention_n", "trainable_params", "bytes_on_disk",
    "steps", "train_time_s", "peak_mem_mb", "fvd_i3d", "clip_text_alignment", "clip_image_alignment",
    "clip_frame_consistency",
)  # fmt: skip
REAL_CLIP_METRICS = ("clip_text_alignment", "clip_image_alignment", "clip_frame_consistency")  # folder cells


def _order(value: str, known: Sequence[str]) -> tuple[int, str]:
    return (known.index(value) if value in known else len(known), value)


def cell_sort_key(cell: dict[str, Any]) -> tuple:
    return (_order(cell["method"], METHODS), _order(cell["split"], SPLIT_ORDER), cell["motion"], int(cell["seed"]))


def load_cells(out_dir: str | Path) -> list[dict[str, Any]]:
    """Every cell JSON under `<out_dir>/cells`, in table order (methods as listed, splits, motions, seeds)."""
    paths = sorted((Path(out_dir) / "cells").glob("*/*/seed*.json"))
    return sorted((json.loads(p.read_text()) for p in paths), key=cell_sort_key)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None or value != value else round(float(value), digits)


def _values(cells: Iterable[dict[str, Any]], key: str) -> list[float]:
    return [float(c[key]) for c in cells if c.get(key) is not None]


def _mean(values: list[float], digits: int) -> float | None:
    return _round(statistics.fmean(values), digits) if values else None


def _median(values: list[float]) -> int | None:
    """Counts (parameters, bytes, steps): the median, as a whole number."""
    return int(round(statistics.median(values))) if values else None


def distinct_runs(method: str, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cells that are separate measurements: for a seed-free method, the lowest seed of each motion."""
    if method not in SEED_FREE_METHODS:
        return cells
    lowest: dict[str, dict[str, Any]] = {}
    for cell in sorted(cells, key=lambda c: int(c["seed"])):
        lowest.setdefault(cell["motion"], cell)
    return [c for c in cells if lowest[c["motion"]] is c]


def summarize(method: str, split: str, cells: list[dict[str, Any]]) -> dict[str, Any]:
    """One row of the table: the cells of `method` on motions of `split` (see the module docstring)."""
    cells = distinct_runs(method, cells)
    ok = [c for c in cells if c["status"] == "ok"]
    n_clips, correct = sum(c.get("n_judged", c["n_eval"]) for c in ok), sum(c["n_correct"] for c in ok)
    cell_acc = mean_interval(_values(ok, "accuracy"))
    fidelity = mean_interval([f for c in ok for f in c["fidelities"] if f is not None])
    retention_n, retained = sum(c["retention_n"] for c in ok), sum(c["retention_n_correct"] for c in ok)
    fd = [c["fd_motionworld"] for c in ok if c["fd_motionworld"]["value"] is not None]
    r4 = lambda v: _round(v, 4)  # noqa: E731
    return {
        "method": method,
        "split": split,
        "n_cells": len(cells),
        "n_failed": len(cells) - len(ok),
        "motions": sorted({c["motion"] for c in cells}),
        "seeds": sorted({int(c["seed"]) for c in cells}),
        "n_clips": n_clips,
        "accuracy": r4(correct / n_clips) if n_clips else None,
        "accuracy_ci": [r4(v) for v in wilson_interval(correct, n_clips)] if n_clips else [None, None],
        "accuracy_cell_mean": r4(cell_acc[0]),
        "accuracy_cell_ci": [r4(max(0.0, cell_acc[1])), r4(min(1.0, cell_acc[2]))],  # a rate: clipped to [0, 1]
        "fidelity": r4(fidelity[0]),
        "fidelity_ci": [r4(fidelity[1]), r4(fidelity[2])],
        "fd_motionworld": _mean([f["value"] for f in fd], 3),
        "fd_n_generated": sorted({f["n_generated"] for f in fd}),
        "fd_n_reference": sorted({f["n_reference"] for f in fd}),
        "fvd_i3d": _mean([c["fvd_i3d"]["value"] for c in ok if (c.get("fvd_i3d") or {}).get("value") is not None], 2),
        **{name: _mean(_values(ok, name), 3) for name in REAL_CLIP_METRICS},
        "first_frame_psnr_db": _mean(_values(ok, "first_frame_psnr_db"), 2),
        "first_frame_ssim": _mean(_values(ok, "first_frame_ssim"), 4),
        "flicker": _mean(_values(ok, "flicker"), 4),
        "drift": _mean(_values(ok, "drift"), 4),
        "retention": r4(retained / retention_n) if retention_n else None,
        "retention_ci": [r4(v) for v in wilson_interval(retained, retention_n)] if retention_n else [None, None],
        "retention_n": retention_n,
        "trainable_params": _median(_values(ok, "trainable_params")),
        "bytes_on_disk": _median(_values(ok, "bytes_on_disk")),
        "steps": _median(_values(ok, "steps")),
        "train_time_s": _mean(_values(ok, "train_time_s"), 1),
        "peak_mem_mb": max(_values(ok, "peak_mem_mb"), default=None),
        "failed": [f"{c['motion']}/seed{c['seed']}: {c['status']}" for c in cells if c["status"] != "ok"],
    }


def build_report(cells: list[dict[str, Any]], commit: str, machine: dict[str, Any]) -> dict[str, Any]:
    """The report as a dict (what table2.json holds); pure, so a golden file can pin it."""
    from miva_lightning.utils import config_hash

    cells = sorted(cells, key=cell_sort_key)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault((cell["method"], cell["split"]), []).append(cell)
    summary = [summarize(m, s, group) for (m, s), group in groups.items()]
    keys = [[c["method"], c["motion"], int(c["seed"]), c["config_hash"]] for c in cells]
    return {
        "what": "Table 2: few-shot motion adaptation, one cell = (method, motion, seed); see benchmark/report.py",
        "commit": commit,
        "config_hash": config_hash({"cells": keys}),
        "machine": machine,
        "cell_commits": sorted({c.get("commit", "unknown") for c in cells}),
        "n_cells": len(cells),
        "n_failed": sum(c["status"] != "ok" for c in cells),
        "summary": summary,
        "cells": cells,
    }


def _num(value: Any, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def ci_text(value: Any, ci: Sequence[Any], fmt: str = ".2f") -> str:
    if value is None:
        return "-"
    return f"{value:{fmt}} [{_num(ci[0], fmt)}, {_num(ci[1], fmt)}]"


def _int(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def markdown(report: dict[str, Any]) -> str:
    """table2.md: the summary table, then every cell, then the failures with their reasons."""
    lines = [
        "# Table 2: few-shot motion adaptation",
        "",
        f"commit `{report['commit']}`, report config hash `{report['config_hash']}`, {report['n_cells']} cells "
        f"({report['n_failed']} failed); machine: {report['machine'].get('platform', '?')}, "
        f"{report['machine'].get('cpu_count', '?')} CPUs, torch {report['machine'].get('torch', '?')}, "
        f"device {report['machine'].get('device', '?')}.",
        "",
        "Accuracy: judged clips pooled over the split's motions and seeds, Wilson 95 % interval; cell mean: mean of "
        "the cells' accuracies, t interval over cells (clipped to [0, 1]). Fidelity: per-clip motion fidelity pooled, t interval. FD: "
        "fd_motionworld, mean over cells at the n shown. Retention: accuracy on the captioned base motions "
        "prompted with their captions (Wilson).",
        "",
        "| method | split | cells (failed) | clips | accuracy [95 % CI] | cell mean [95 % CI] | fidelity [95 % CI] "
        "| FD (n gen/ref) | PSNR f1 dB | SSIM f1 | flicker | drift | retention [95 % CI] | trainable params "
        "| bytes | steps | train s | peak MiB |",
        "|" + "---|" * 18,
    ]
    for row in report["summary"]:
        n = "/".join(",".join(map(str, row[k])) for k in ("fd_n_generated", "fd_n_reference")) if row["fd_n_generated"] else "-"
        lines.append(
            f"| {row['method']} | {row['split']} | {row['n_cells']} ({row['n_failed']}) | {row['n_clips']} "
            f"| {ci_text(row['accuracy'], row['accuracy_ci'])} | {ci_text(row['accuracy_cell_mean'], row['accuracy_cell_ci'])} "
            f"| {ci_text(row['fidelity'], row['fidelity_ci'])} | {_num(row['fd_motionworld'], '.1f')} ({n}) "
            f"| {_num(row['first_frame_psnr_db'], '.1f')} | {_num(row['first_frame_ssim'], '.3f')} "
            f"| {_num(row['flicker'], '.3f')} | {_num(row['drift'], '.3f')} | {ci_text(row['retention'], row['retention_ci'])} "
            f"| {_int(row['trainable_params'])} | {_int(row['bytes_on_disk'])} | {_int(row['steps'])} "
            f"| {_num(row['train_time_s'], '.0f')} | {_num(row['peak_mem_mb'], '.0f')} |"
        )
    real = [row for row in report["summary"] if row.get("fvd_i3d") is not None or row.get("clip_text_alignment") is not None]
    if real:  # folder cells (configs/table2_real.yaml): the LAMP protocol's metrics
        lines += ["", "## Real clips: FVD (I3D) and CLIP", "", "| method | split | cells | FVD | CLIP-T | CLIP-I "
                  "| frame consistency |", "|" + "---|" * 7]  # fmt: skip
        for row in real:
            lines.append(
                f"| {row['method']} | {row['split']} | {row['n_cells']} | {_num(row['fvd_i3d'], '.1f')} "
                f"| {_num(row['clip_text_alignment'])} | {_num(row['clip_image_alignment'])} "
                f"| {_num(row['clip_frame_consistency'])} |"
            )
    lines += ["", "## Cells", "", "| method | motion | split | seed | status | accuracy [95 % CI] | fidelity | FD (n) "
              "| PSNR f1 dB | retention | steps | train s | config hash |", "|" + "---|" * 13]  # fmt: skip
    for c in report["cells"]:
        ok = c["status"] == "ok"
        fd = c.get("fd_motionworld") or {}
        lines.append(
            f"| {c['method']} | {c['motion']} | {c['split']} | {c['seed']} | {c['status'] if ok else 'failed'} "
            f"| {ci_text(c.get('accuracy'), c.get('accuracy_ci') or [None, None])} | {_num(c.get('fidelity'))} "
            f"| {_num(fd.get('value'), '.1f')} ({fd.get('n_generated', '-')}) | {_num(c.get('first_frame_psnr_db'), '.1f')} "
            f"| {_num(c.get('retention'))} | {c['steps']} | {_num(c['train_time_s'], '.0f')} | `{c['config_hash']}` |"
        )
    failed = [c for c in report["cells"] if c["status"] != "ok"]
    if failed:
        lines += ["", "## Failed cells", ""]
        lines += [f"- {c['method']}/{c['motion']}/seed{c['seed']}: {c['status']}" for c in failed]
    return "\n".join(lines) + "\n"


def rows_csv(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> str:
    """CSV text of flat rows in `columns` order; None is an empty field."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for flat in rows:
        writer.writerow({k: "" if flat.get(k) is None else flat[k] for k in columns})
    return buffer.getvalue()


def csv_text(report: dict[str, Any]) -> str:
    """table2.csv: the summary rows with intervals as _lo/_hi columns."""
    rows = []
    for row in report["summary"]:
        flat = {k: row[k] for k in CSV_COLUMNS if k in row}
        for key in ("accuracy", "fidelity", "retention"):
            flat[f"{key}_lo"], flat[f"{key}_hi"] = row[f"{key}_ci"]
        flat["accuracy_cell_lo"], flat["accuracy_cell_hi"] = row["accuracy_cell_ci"]
        flat["fd_n_generated"] = "/".join(map(str, row["fd_n_generated"]))
        flat["fd_n_reference"] = "/".join(map(str, row["fd_n_reference"]))
        rows.append(flat)
    return rows_csv(rows, CSV_COLUMNS)


def write_report(
    out_dir: str | Path, commit: str | None = None, machine: dict[str, Any] | None = None, figures: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """Write table2.json/.csv/.md (and, with `figures`, the PNG plots and grid.gif) under `out_dir`."""
    from miva_lightning.benchmark.provenance import git_commit, machine_info
    from miva_lightning.utils import atomic_write_json, atomic_write_text

    out_dir = Path(out_dir)
    report = build_report(load_cells(out_dir), commit or git_commit(), machine or machine_info(device))
    atomic_write_json(out_dir / "table2.json", report)
    atomic_write_text(out_dir / "table2.csv", csv_text(report))
    atomic_write_text(out_dir / "table2.md", markdown(report))
    if figures and report["cells"]:
        from miva_lightning.benchmark.plots import accuracy_by_split, accuracy_vs_params, gif_grid

        accuracy_by_split(report["summary"], out_dir / "accuracy_by_split.png")
        accuracy_vs_params(report["summary"], out_dir / "accuracy_vs_params.png")
        gif_grid(report["cells"], out_dir / "grid.gif")
    return report


def run_report(cfg) -> str:
    """`miva-report`: write the report of `cfg.out_dir`; returns the line the entry point prints."""
    from miva_lightning.inputs import InputError

    out_dir = Path(cfg.out_dir)
    if not (out_dir / "cells").is_dir():
        raise InputError(f"no cells under {out_dir / 'cells'}: run `miva-table2 --multirun table2_grid=...` first")
    report = write_report(out_dir, device=str(cfg.device))
    return (
        f"table2: {report['n_cells']} cells ({report['n_failed']} failed) -> {out_dir / 'table2.md'}, "
        f"table2.json, table2.csv, accuracy_by_split.png, accuracy_vs_params.png, grid.gif"
    )
