"""The ablation table and the few-shot / budget curves from the cells of `miva-table2 --config-name ablations`.

Reads nothing but `<out_dir>/cells/<label>/<motion>/seed*.json` (like the Table 2 report), so it can be rebuilt
from a half-finished grid at any time, and writes `ablations.{json,csv,md}`, `ablations.png`, `curves.json` and
`curves.png`.

- Ablation cells: every label that is not a curve point (`curve_*`). Each is compared with the reference label
  (`miva`) on the same motion and seed: the same held-out first frames and sampling noise on both sides, so the
  difference is paired clip by clip (correct_ablation - correct_reference in {-1, 0, 1}) and its 95 % interval is
  a percentile bootstrap over those pairs (metrics.intervals.paired_difference_interval). The interval covers
  the clips; the spread between training runs shows in the per-seed rows (2 seeds do not make an interval).
- Curve cells (`curve_<method>_clips<n>_steps<k>`): the few-shot series holds the points at `fewshot_steps`
  (accuracy vs clips), the budget series those at `budget_clips` (accuracy vs steps); each point pools its
  seeds' clips (Wilson) and averages their FDs.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

from miva_lightning.benchmark.report import ci_text, load_cells, rows_csv
from miva_lightning.metrics.intervals import paired_difference_interval, wilson_interval

CURVE_PREFIX = "curve_"
CSV_COLUMNS = (
    "ablation", "kind", "motion", "seeds", "n_clips", "accuracy", "accuracy_lo", "accuracy_hi", "delta_vs_miva",
    "delta_lo", "delta_hi", "n_pairs", "fidelity", "fd_motionworld", "trainable_params", "steps", "train_time_s",
)  # fmt: skip


def label_of(cell: dict[str, Any]) -> str:
    return str(cell.get("label") or cell["method"])


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or value != value else round(float(value), digits)


def _fd(cell: dict[str, Any]) -> float | None:
    fd = cell.get("fd_motionworld") or {}
    return _r(fd.get("value"), 3)


def _correct(cell: dict[str, Any]) -> list[int]:
    return [int(p == cell["motion"]) for p in cell.get("predictions") or []]


def _mean(values: Iterable[float | None], digits: int = 4) -> float | None:
    finite = [float(v) for v in values if v is not None]
    return _r(statistics.fmean(finite), digits) if finite else None


def _pooled(cells: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy of the judged clips of `cells` pooled (Wilson), with the FD and fidelity means."""
    n, correct = sum(int(c["n_eval"]) for c in cells), sum(int(c["n_correct"]) for c in cells)
    return {
        "n_clips": n,
        "accuracy": _r(correct / n) if n else None,
        "accuracy_ci": [_r(v) for v in wilson_interval(correct, n)] if n else [None, None],
        "fidelity": _mean(c.get("fidelity") for c in cells),
        "fd_motionworld": _mean((_fd(c) for c in cells), 3),
    }


def _delta(cells: Sequence[dict[str, Any]], references: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """Paired per-clip difference to the reference cells of the same motion and seed."""
    pairs: list[int] = []
    for cell in cells:
        reference = references.get((cell["motion"], int(cell["seed"])))
        if reference is not None and len(_correct(reference)) == len(_correct(cell)):
            pairs += [a - b for a, b in zip(_correct(cell), _correct(reference))]
    mean, low, high = paired_difference_interval(pairs)
    return {"delta_vs_miva": _r(mean), "delta_ci": [_r(low), _r(high)], "n_pairs": len(pairs)}


def ablation_rows(cells: Sequence[dict[str, Any]], reference: str) -> list[dict[str, Any]]:
    """One row per ablation cell (the issue's `rows`): accuracy, its interval, the delta to the reference cell
    of the same motion and seed (null when that cell is missing or failed), FD."""
    references = {(c["motion"], int(c["seed"])): c for c in cells if label_of(c) == reference and c["status"] == "ok"}
    rows = []
    for cell in cells:
        ok = cell["status"] == "ok"
        base = references.get((cell["motion"], int(cell["seed"])))
        rows.append({
            "ablation": label_of(cell),
            "kind": (cell.get("ablation") or {}).get("kind"),
            "motion": cell["motion"],
            "seed": int(cell["seed"]),
            "status": cell["status"],
            "accuracy": cell.get("accuracy") if ok else None,
            "accuracy_ci": cell.get("accuracy_ci") if ok else [None, None],
            "delta_vs_miva": _r(cell["accuracy"] - base["accuracy"]) if ok and base else None,
            "fidelity": cell.get("fidelity") if ok else None,
            "fd_motionworld": _fd(cell) if ok else None,
            "n": int(cell.get("n_eval", 0)),
            "steps": cell.get("steps"),
            "config_hash": cell.get("config_hash"),
        })  # fmt: skip
    return rows


def ablation_summary(cells: Sequence[dict[str, Any]], reference: str) -> list[dict[str, Any]]:
    """Per ablation: one row per motion and one over all its motions ("all"), seeds pooled."""
    ok = [c for c in cells if c["status"] == "ok"]
    references = {(c["motion"], int(c["seed"])): c for c in ok if label_of(c) == reference}
    labels = list(dict.fromkeys([reference] + [label_of(c) for c in cells]))
    summary = []
    for label in labels:
        mine = [c for c in ok if label_of(c) == label]
        if not mine:
            continue
        meta = mine[0].get("ablation") or {}
        motions = sorted({c["motion"] for c in mine})
        for motion in motions + (["all"] if len(motions) > 1 else []):
            chosen = [c for c in mine if motion in ("all", c["motion"])]
            summary.append({
                "ablation": label, "kind": meta.get("kind"), "what": meta.get("what"), "motion": motion,
                "seeds": sorted({int(c["seed"]) for c in chosen}), **_pooled(chosen), **_delta(chosen, references),
                "trainable_params": chosen[0].get("trainable_params"), "steps": chosen[0].get("steps"),
                "train_time_s": _mean((c.get("train_time_s") for c in chosen), 1),
            })  # fmt: skip
    return summary


def curve_point(cell: dict[str, Any]) -> tuple[str, int, int]:
    """(method, clips, steps) of a curve cell, read from its recorded config."""
    budget = cell["config"]["budget"]
    return cell["method"], int(budget["num_clips"]), int(budget["steps"])


def curves(cells: Sequence[dict[str, Any]], fewshot_steps: int, budget_clips: int) -> dict[str, Any]:
    """{"fewshot": {method: [points by clips]}, "budget": {method: [points by steps]}} from the curve cells."""
    points: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for cell in cells:
        if label_of(cell).startswith(CURVE_PREFIX) and cell["status"] == "ok":
            points.setdefault(curve_point(cell), []).append(cell)
    series: dict[str, dict[str, list[dict[str, Any]]]] = {"fewshot": {}, "budget": {}}
    for (method, clips, steps), group in sorted(points.items()):
        point = {"num_clips": clips, "steps": steps, "seeds": sorted({int(c["seed"]) for c in group}), **_pooled(group)}
        if steps == fewshot_steps:
            series["fewshot"].setdefault(method, []).append(point)
        if clips == budget_clips:
            series["budget"].setdefault(method, []).append(point)
    return {
        "fewshot_steps": fewshot_steps, "budget_clips": budget_clips,
        "motions": sorted({c["motion"] for group in points.values() for c in group}), **series,
    }  # fmt: skip


def build_ablation_report(
    cells: list[dict[str, Any]], reference: str, commit: str, machine: dict[str, Any]
) -> dict[str, Any]:
    """ablations.json as a dict; pure, so fixed cells give a fixed report."""
    from miva_lightning.utils import config_hash

    ablation_cells = [c for c in cells if not label_of(c).startswith(CURVE_PREFIX)]
    keys = [[label_of(c), c["motion"], int(c["seed"]), c["config_hash"]] for c in ablation_cells]
    return {
        "what": "MIVA ablations: one cell = (ablation, motion, seed); deltas paired clip by clip against the "
        f"'{reference}' cell of the same motion and seed (benchmark/ablation_report.py)",
        "commit": commit,
        "config_hash": config_hash({"cells": keys}),
        "machine": machine,
        "reference": reference,
        "n_cells": len(ablation_cells),
        "n_failed": sum(c["status"] != "ok" for c in ablation_cells),
        "failed": [f"{label_of(c)}/{c['motion']}/seed{c['seed']}: {c['status']}" for c in ablation_cells if c["status"] != "ok"],
        "summary": ablation_summary(ablation_cells, reference),
        "rows": ablation_rows(ablation_cells, reference),
    }


def markdown(report: dict[str, Any], curve_data: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        "# MIVA ablations",
        "",
        f"commit `{report['commit']}`, report config hash `{report['config_hash']}`, {report['n_cells']} cells "
        f"({report['n_failed']} failed); machine: {machine.get('platform', '?')}, {machine.get('cpu_count', '?')} "
        f"CPUs, device {machine.get('device', '?')}. Reference: `{report['reference']}`.",
        "",
        "Accuracy: judged held-out clips pooled over seeds (Wilson 95 %). Delta: paired per clip against the "
        "reference cell of the same motion and seed (same first frames and noise), percentile bootstrap 95 % over "
        "the pairs (run-to-run spread: see the per-seed rows in ablations.json).",
        "",
        "| ablation | kind | motion | seeds | clips | accuracy [95 % CI] | delta vs miva [95 % CI] | fidelity | FD "
        "| trainable params | steps | train s |",
        "|" + "---|" * 12,
    ]
    for row in report["summary"]:
        lines.append(
            f"| {row['ablation']} | {row['kind'] or '-'} | {row['motion']} | {','.join(map(str, row['seeds']))} "
            f"| {row['n_clips']} | {ci_text(row['accuracy'], row['accuracy_ci'])} "
            f"| {ci_text(row['delta_vs_miva'], row['delta_ci'], '+.2f')} "
            f"| {'-' if row['fidelity'] is None else format(row['fidelity'], '.2f')} "
            f"| {'-' if row['fd_motionworld'] is None else format(row['fd_motionworld'], '.1f')} "
            f"| {'-' if row['trainable_params'] is None else format(int(row['trainable_params']), ',')} "
            f"| {row['steps']} | {'-' if row['train_time_s'] is None else format(row['train_time_s'], '.0f')} |"
        )
    if report["failed"]:
        lines += ["", "## Failed cells", "", *[f"- {f}" for f in report["failed"]]]
    for name, axis in (("fewshot", "num_clips"), ("budget", "steps")):
        if curve_data[name]:
            fixed = f"{curve_data['fewshot_steps']} steps" if name == "fewshot" else f"{curve_data['budget_clips']} clips"
            lines += ["", f"## Curve: accuracy vs {axis} ({fixed}; motions {', '.join(curve_data['motions'])})", "",
                      f"| method | {axis} | seeds | clips judged | accuracy [95 % CI] | FD |", "|" + "---|" * 6]  # fmt: skip
            for method, points in curve_data[name].items():
                for p in points:
                    lines.append(
                        f"| {method} | {p[axis]} | {','.join(map(str, p['seeds']))} | {p['n_clips']} "
                        f"| {ci_text(p['accuracy'], p['accuracy_ci'])} "
                        f"| {'-' if p['fd_motionworld'] is None else format(p['fd_motionworld'], '.1f')} |"
                    )
    return "\n".join(lines) + "\n"


def csv_text(report: dict[str, Any]) -> str:
    """ablations.csv: the summary rows with intervals as _lo/_hi columns."""
    rows = []
    for row in report["summary"]:
        flat = {k: row.get(k) for k in CSV_COLUMNS}
        flat["seeds"] = "/".join(map(str, row["seeds"]))
        flat["accuracy_lo"], flat["accuracy_hi"] = row["accuracy_ci"]
        flat["delta_lo"], flat["delta_hi"] = row["delta_ci"]
        rows.append(flat)
    return rows_csv(rows, CSV_COLUMNS)


def write_ablation_report(
    out_dir: str | Path, reference: str, fewshot_steps: int, budget_clips: int, device: str = "cpu",
    figures: bool = True, commit: str | None = None, machine: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write ablations.{json,csv,md}, curves.json and (with `figures`) ablations.png and curves.png."""
    from miva_lightning.benchmark.provenance import git_commit, machine_info
    from miva_lightning.utils import atomic_write_json, atomic_write_text

    out_dir = Path(out_dir)
    cells = load_cells(out_dir)
    report = build_ablation_report(cells, reference, commit or git_commit(), machine or machine_info(device))
    curve_data = curves(cells, fewshot_steps, budget_clips)
    atomic_write_json(out_dir / "ablations.json", report)
    atomic_write_json(out_dir / "curves.json", curve_data)
    atomic_write_text(out_dir / "ablations.csv", csv_text(report))
    atomic_write_text(out_dir / "ablations.md", markdown(report, curve_data))
    if figures:
        from miva_lightning.benchmark.plots import ablation_deltas, curve_panels

        if report["summary"]:
            ablation_deltas(report["summary"], reference, out_dir / "ablations.png")
        if curve_data["fewshot"] or curve_data["budget"]:
            curve_panels(curve_data, out_dir / "curves.png")
    return report, curve_data


def run_ablation_report(cfg) -> str:
    """`miva-report --config-name ablations`: the report of `cfg.out_dir`; returns the line to print."""
    from miva_lightning.inputs import InputError

    out_dir = Path(cfg.out_dir)
    if not (out_dir / "cells").is_dir():
        raise InputError(
            f"no cells under {out_dir / 'cells'}: run `miva-table2 --config-name ablations --multirun "
            "ablation_grid=...` first (or `make ablations`)"
        )
    report, curve_data = write_ablation_report(
        out_dir, str(cfg.reference), int(cfg.curves.fewshot_steps), int(cfg.curves.budget_clips), str(cfg.device)
    )
    points = sum(len(p) for series in ("fewshot", "budget") for p in curve_data[series].values())
    return (
        f"ablations: {report['n_cells']} cells ({report['n_failed']} failed), {points} curve points -> "
        f"{out_dir / 'ablations.md'}, ablations.json, ablations.csv, curves.json, ablations.png, curves.png"
    )
