"""W&B sweeps without a server: the sweep YAML `wandb sweep` takes, run as cells of the benchmark.

`run_sweep(cfg)` (configs/sweep.yaml, `miva-sweep file=experiments/sweeps/<name>.yaml`) reads a sweep file in
W&B's own format, asks W&B's own sweep engine (`sweeps.next_run`: what wandb's local controller runs; grid,
random, bayes) for the next parameters, and computes each suggestion as a Table 2 cell (`cells.run_cell`):
- the cell's method, motion, seed and step budget come from the sweep's `command` (`method=`, default miva;
  `motion=`; `seed=`, default the config's; `trainer.max_steps=`), a swept parameter of the same name wins;
- the command's training overrides (data, optimization, loss, adapter, noise_init) and the other parameters
  go to `budget.train_overrides`, after the cell budget's: the cell trains what the online run trains. The
  rest of the command (logger, callbacks, preview, trainer) only shapes the online run: the cell evaluates
  with its own settings (n_eval held-out first frames, sample.steps DDIM steps);
- label `<sweep name>-<hash of the parameters but seed>`: a re-run reuses every finished cell, and since the
  engine's RNG is private and seeded (`engine_seed`), fed the same numbers it suggests the same runs.
The metric fed back to the engine is the cell's `accuracy`: the judge's motion-class accuracy on n_eval
held-out first frames, the quantity online runs log as `val/motion_class_accuracy_farneback_judge`. Offline
runs are judged once, at the end, so `early_terminate` (hyperband) has no history to act on and is not used;
`metric.target` ends the sweep as W&B's does. Each computed cell is also written as an offline W&B run
(`<out_dir>/wandb/offline-run-*`, uploaded by `wandb sync`), the sweep as `<out_dir>/summary.{json,md}`.
"""

from __future__ import annotations

import contextlib
import random
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from omegaconf import DictConfig, OmegaConf

from miva_lightning.inputs import InputError, InputFileNotFoundError

# Overrides of the sweep command that set the cell itself (not its training overrides).
CELL_KEYS = {"method": "method", "motion": "motion", "seed": "seed", "trainer.max_steps": "steps"}
# Roots of the command's fixed overrides that change training: passed on to the cell.
TRAINING_ROOTS = ("data", "optimization", "loss", "adapter", "noise_init")


def _sweeps():
    """The `sweeps` package, without pydantic 2's warning about its v1-style model config."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import sweeps

    return sweeps


def load_sweep(path: str | Path) -> dict[str, Any]:
    """A W&B sweep YAML, checked against W&B's schema (one-line InputError otherwise)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"sweep file '{path}' not found (pass file=<a W&B sweep YAML>, e.g. experiments/sweeps/)")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise InputError(f"sweep file '{path}' is not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise InputError(f"sweep file '{path}' must hold a mapping (method, metric, parameters, command)")
    problems = _sweeps().schema_violations_from_proposed_config(config)
    if problems:
        raise InputError(f"sweep file '{path}' is not a valid W&B sweep: {'; '.join(problems)}")
    if not config.get("metric", {}).get("name"):
        raise InputError(f"sweep file '{path}' names no metric (metric: {{name: ..., goal: maximize}})")
    return config


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def command_overrides(command: list[Any]) -> list[str]:
    """The Hydra overrides of a sweep `command`: what the agent runs, without macros (`${...}`) and program."""
    return [str(c) for c in command if "=" in str(c) and not str(c).startswith("${")]


def agent_args(params: dict[str, Any]) -> list[str]:
    """`${args_no_hyphens}` as wandb's agent writes it: `key=value` with Python's str of the value."""
    return [f"{name}={value}" for name, value in params.items()]


@dataclass
class SweepPlan:
    """What a sweep file asks of the cells."""

    name: str
    config: dict[str, Any]
    fixed: list[str]  # the command's overrides (the online run's command line, without parameters)
    cell: dict[str, Any] = field(default_factory=dict)  # method, motion, seed, steps set by the command
    train_overrides: list[str] = field(default_factory=list)

    @property
    def metric(self) -> str:
        return str(self.config["metric"]["name"])

    @property
    def maximize(self) -> bool:
        return self.config["metric"].get("goal", "minimize") == "maximize"


def plan_of(config: dict[str, Any], name: str, backbone: str) -> SweepPlan:
    """Read the sweep's command: it must run miva-train, on the cells' backbone, for a motion."""
    command = [str(c) for c in config.get("command") or []]
    if not any(c == "miva-train" or c.endswith("miva_lightning.cli.train") for c in command):
        raise InputError(f"sweep '{name}': its command must run miva-train (command: [${{env}}, miva-train, ..., ${{args_no_hyphens}}])")
    if "${args_no_hyphens}" not in command:
        raise InputError(f"sweep '{name}': end its command with ${{args_no_hyphens}} (the parameters as Hydra overrides)")
    plan = SweepPlan(name=name, config=config, fixed=command_overrides(command))
    for override in plan.fixed:
        key, value = _key(override), override.split("=", 1)[1]
        if key in CELL_KEYS:
            plan.cell[CELL_KEYS[key]] = value
        elif key == "backbone" and value != backbone:
            raise InputError(f"sweep '{name}' trains on backbone={value}, the cells run on backbone={backbone}: pass backbone={value}")
        elif key.split(".")[0] in TRAINING_ROOTS:
            plan.train_overrides.append(override)
    if "motion" not in plan.cell and "motion" not in config["parameters"]:
        raise InputError(f"sweep '{name}': its command sets no motion= (the cells need one motion)")
    return plan


def check_overrides(plan: SweepPlan, params: dict[str, Any]) -> None:
    """The agent's command line for `params` must compose as a `miva-train` config."""
    from miva_lightning.cli_errors import input_error_line
    from miva_lightning.config import compose

    args = agent_args(params)
    try:
        compose("train", [*plan.fixed, *args])
    except Exception as error:  # noqa: BLE001 - Hydra's errors become one line; anything else is a bug
        line = input_error_line(error)
        if line is None:
            raise
        raise InputError(f"sweep '{plan.name}': {' '.join(args)} is not a valid miva-train override: {line}") from None


def cell_config(cfg: DictConfig, plan: SweepPlan, params: dict[str, Any], out_dir: Path) -> DictConfig:
    """The cell of one suggested run (see the module docstring)."""
    from miva_lightning.pipelines.methods import method_config
    from miva_lightning.utils import config_hash

    cell = {**plan.cell, **{CELL_KEYS[k]: v for k, v in params.items() if k in CELL_KEYS}}
    swept = [f"{k}={v}" for k, v in params.items() if k not in CELL_KEYS]
    budget = {"train_overrides": [*cfg.budget.train_overrides, *plan.train_overrides, *swept]}
    if "steps" in cell:
        budget["steps"] = int(cell["steps"])
    row = {k: v for k, v in params.items() if k != "seed"}
    merged = OmegaConf.merge(cfg, {
        "motion": str(cell.get("motion", cfg.motion)), "seed": int(cell.get("seed", cfg.seed)), "budget": budget,
        "label": f"{plan.name}-{config_hash(row, length=8)}", "out_dir": str(out_dir),
    })  # fmt: skip
    if "method" in cell:
        try:
            merged.method = method_config(str(cell["method"]))
        except ValueError as error:
            raise InputError(f"sweep '{plan.name}': {error}") from None
    return merged


@contextlib.contextmanager
def engine_rng(state: dict[str, Any]) -> Iterator[None]:
    """Run the engine on its own RNG state: the sweeps package draws from numpy's and Python's global RNGs,
    which training reseeds (`seed_everything`), so without this a re-run reusing its cells would suggest
    other runs than the first."""
    import numpy as np

    saved = np.random.get_state(), random.getstate()
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    try:
        yield
    finally:
        state["numpy"], state["python"] = np.random.get_state(), random.getstate()
        np.random.set_state(saved[0])
        random.setstate(saved[1])


def seeded_rng(seed: int) -> dict[str, Any]:
    import numpy as np

    return {"numpy": np.random.RandomState(seed).get_state(), "python": random.Random(seed).getstate()}


def log_offline_run(plan: SweepPlan, out_dir: Path, params: dict[str, Any], record: dict[str, Any]) -> Path | None:
    """The cell as an offline W&B run under `<out_dir>/wandb/` (once per cell: its id is the cell's hash)."""
    import wandb

    folder, run_id = out_dir / "wandb", re.sub(r"[^\w-]", "-", f"{plan.name[:40]}-{record['config_hash']}")
    if any(folder.glob(f"offline-run-*-{run_id}")):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    identity = {k: record[k] for k in ("method", "motion", "seed", "config_hash", "n_eval")}
    run = wandb.init(
        mode="offline", dir=str(out_dir), project=str(plan.config.get("project", "miva-lightning")), group=plan.name,
        name=f"{record.get('label', plan.name)}-seed{record['seed']}", id=run_id, job_type="sweep-cell",
        config={**params, "cell": identity, "cell_config": record.get("config", {})},
        settings=wandb.Settings(silent=True, console="off", disable_git=True, x_disable_stats=True),
    )  # fmt: skip
    try:
        low, high = record["accuracy_ci"]
        fd = record.get("fd_motionworld") or {}
        values = {plan.metric: record["accuracy"], "accuracy_ci_low": low, "accuracy_ci_high": high,
                  "n_eval": record["n_eval"], "fidelity": record.get("fidelity"), "fd_motionworld": fd.get("value")}
        run.log({k: v for k, v in values.items() if v is not None})
        if record.get("sample_gif") and Path(record["sample_gif"]).is_file():
            run.log({"sample": wandb.Video(record["sample_gif"], format="gif")})
        return Path(run.dir).parent
    finally:
        run.finish()


def _plain(value: Any) -> Any:
    """numpy scalars (random and bayes suggestions) as Python numbers."""
    return value.item() if hasattr(value, "item") else value


def _row(params: dict[str, Any], outcome, metric: str) -> dict[str, Any]:
    r = outcome.record
    ok = r["status"] == "ok"
    return {
        "label": r.get("label"), "params": params, "status": r["status"], metric: r.get("accuracy") if ok else None,
        "accuracy_ci": r.get("accuracy_ci"), "n": r.get("n_eval"), "seed": r["seed"], "motion": r["motion"],
        "config_hash": r.get("config_hash"), "cell": str(outcome.path), "reused": outcome.reused,
    }  # fmt: skip


def ranked(rows: list[dict[str, Any]], metric: str, maximize: bool) -> list[dict[str, Any]]:
    """Best first (the goal respected); runs without a value last, in run order."""
    scored = [r for r in rows if r[metric] is not None]
    scored.sort(key=lambda r: r[metric], reverse=maximize)
    return scored + [r for r in rows if r[metric] is None]


def markdown(summary: dict[str, Any]) -> str:
    metric = summary["metric"]["name"]
    lines = [
        f"# Sweep {summary['sweep']} ({summary['method']}, {summary['metric']['goal']} {metric})", "",
        f"{summary['metric_is']}. Engine seed {summary['engine_seed']}; {len(summary['runs'])} runs, from `{summary['file']}`.", "",
        "| rank | label | params | seed | metric | 95 % CI | n | config hash | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for rank, r in enumerate(summary["runs"], 1):
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items())
        value = "-" if r[metric] is None else f"{r[metric]:.2f}"
        ci = "-" if not r["accuracy_ci"] else f"[{r['accuracy_ci'][0]:.2f}, {r['accuracy_ci'][1]:.2f}]"
        lines.append(f"| {rank} | {r['label']} | {params} | {r['seed']} | {value} | {ci} | {r['n']} | {r['config_hash']} | {r['status']} |")
    return "\n".join(lines) + "\n"


def run_sweep(cfg: DictConfig) -> dict[str, Any]:
    """Run (or resume) the sweep `cfg.file` offline; returns the summary written to `<out_dir>/summary.json`."""
    from miva_lightning.benchmark.cells import cell_line, run_cell
    from miva_lightning.utils import atomic_write_json, atomic_write_text

    config = load_sweep(cfg.file)
    name = str(cfg.get("name") or config.get("name") or Path(cfg.file).stem)
    plan = plan_of(config, name, str(cfg.backbone.name))
    if cfg.max_runs is None and config["method"] != "grid":
        raise InputError(f"sweep '{name}' ({config['method']} search) never ends by itself: pass max_runs=N")
    out_dir = Path(cfg.out_dir) if cfg.get("out_dir") else Path(cfg.paths.results) / "sweeps" / name
    sweeps, rng = _sweeps(), seeded_rng(int(cfg.engine_seed))
    target = config["metric"].get("target")
    runs, rows = [], []
    while cfg.max_runs is None or len(runs) < int(cfg.max_runs):
        with engine_rng(rng):
            suggestion = sweeps.next_run(config, runs, validate=True)
        if suggestion is None:  # a grid searched to its end
            break
        params = {k: _plain(v["value"]) for k, v in suggestion.config.items()}
        check_overrides(plan, params)
        outcome = run_cell(cell_config(cfg, plan, params, out_dir))
        print(f"sweep run {len(runs) + 1}: {cell_line(outcome)}", flush=True)
        rows.append(_row(params, outcome, plan.metric))
        value = rows[-1][plan.metric]
        state = sweeps.RunState.finished if value is not None else sweeps.RunState.failed
        metrics = {} if value is None else {plan.metric: value}
        runs.append(sweeps.SweepRun(name=rows[-1]["label"], state=state, config=suggestion.config, summary_metrics=metrics))
        if cfg.wandb and value is not None:
            log_offline_run(plan, out_dir, params, outcome.record)
        if target is not None and value is not None and (value >= target if plan.maximize else value <= target):
            break
    summary = {
        "sweep": name, "file": str(cfg.file), "method": config["method"], "engine_seed": int(cfg.engine_seed),
        "metric": {"name": plan.metric, "goal": "maximize" if plan.maximize else "minimize"},
        "metric_is": f"cell accuracy: the judge's motion-class accuracy on n = {int(cfg.n_eval)} held-out first frames "
                     f"(what online runs log as {plan.metric})",
        "command": plan.fixed, "runs": ranked(rows, plan.metric, plan.maximize), "out_dir": str(out_dir),
    }  # fmt: skip
    atomic_write_json(out_dir / "summary.json", summary)
    atomic_write_text(out_dir / "summary.md", markdown(summary))
    return summary
