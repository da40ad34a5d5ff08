"""One line, not a traceback, for bad input on the command line.

Every entry point (miva-train, miva-animate, miva-eval, miva-pretrain, miva-eval-base, the demo) runs
through `run_cli`, and its Hydra task function is wrapped with `report_input_errors`. An input error
(`inputs.InputError`, the data readers' `VideoReadError`, Hydra's config errors such as a misspelled key,
a mandatory option left at `???`) is printed to stderr as

    error: <what is wrong> (<what to change>)

and the process exits with code 2 (`INPUT_ERROR_EXIT`). Anything else is a bug and keeps Hydra's usual
report (a traceback, exit code 1). `--verbose` on the command line or `HYDRA_FULL_ERROR=1` shows the full
traceback for input errors too.

Where Hydra reports errors: inside `@hydra.main`, Hydra 1.3 runs config composition and the task function
through `hydra._internal.utils.run_and_report`, which catches every exception and prints its own multi-line
report (and, for a failed task, an "Error executing job with overrides" line first). So:
- task errors are caught inside the task function (`report_input_errors`), printed and turned into
  `SystemExit(2)`, which Hydra lets through (it only catches `Exception`);
- composition errors (misspelled key, unknown config group option, override syntax) happen before the
  task function runs; `run_cli` swaps `run_and_report` for the duration of the call with a version that
  reports input errors in one line and hands everything else to Hydra's original, unchanged.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
import re
import sys
from typing import Any, Callable, Iterator

INPUT_ERROR_EXIT = 2
VERBOSE_FLAG = "--verbose"
_FULL_ERROR_ENV = "HYDRA_FULL_ERROR"


def full_errors_requested() -> bool:
    """True when the user asked for tracebacks (`--verbose` or HYDRA_FULL_ERROR=1)."""
    return os.environ.get(_FULL_ERROR_ENV, "") not in ("", "0")


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", text.strip())


def _input_error_types() -> tuple[type, ...]:
    from miva_lightning.inputs import InputError

    types: list[type] = [InputError]
    if "miva_lightning.data.readers.errors" in sys.modules:  # only loaded (with torch) once data was read
        types.append(sys.modules["miva_lightning.data.readers.errors"].VideoReadError)
    return tuple(types)


def _unknown_key_line(error: BaseException) -> str | None:
    """`trainer.max_stepz=5` -> "unknown config key 'trainer.max_stepz' (did you mean trainer.max_steps? ...)"."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause = error.__cause__
    if not isinstance(cause, (ConfigKeyError, ConfigAttributeError)) or "not in struct" not in str(cause):
        return None
    full_key = getattr(cause, "full_key", None) or getattr(cause, "key", None)
    if not full_key:
        return None
    key = str(getattr(cause, "key", full_key))
    parent = getattr(cause, "parent_node", None)
    prefix = full_key[: len(full_key) - len(key)] if full_key.endswith(key) else ""
    suggestion = ""
    try:
        options = [str(k) for k in parent.keys()] if parent is not None else []
    except Exception:  # noqa: BLE001 - a suggestion is optional
        options = []
    close = difflib.get_close_matches(key, options, n=1)
    if close:
        suggestion = f"did you mean {prefix}{close[0]}? "
    return f"unknown config key '{full_key}' ({suggestion}check the spelling; +{full_key}=... adds a new key)"


def _missing_option_line(error: BaseException) -> str | None:
    """`data=fewshot_foldr` -> "no config 'data/fewshot_foldr' (data=... must be one of ...)"."""
    missing = getattr(error, "missing_cfg_file", None)
    if not missing:
        return None
    options = list(getattr(error, "options", None) or [])
    group = missing.rsplit("/", 1)[0] if "/" in missing else None
    if group and options:
        close = difflib.get_close_matches(missing.rsplit("/", 1)[1], options, n=1)
        guess = f"did you mean {group}={close[0]}? " if close else ""
        return f"no config '{missing}' ({guess}{group}=... must be one of: {', '.join(options)})"
    return f"no config '{missing}' (check the spelling of the config name or group option)"


def input_error_line(error: BaseException) -> str | None:
    """The one-line report of an input error, or None when `error` is not one (a bug: show the traceback)."""
    if isinstance(error, _input_error_types()):
        return _one_line(str(error))
    hydra_errors = sys.modules.get("hydra.errors")
    if hydra_errors is not None and isinstance(
        error, (hydra_errors.ConfigCompositionException, hydra_errors.OverrideParseException, hydra_errors.SearchPathException)
    ):
        return _unknown_key_line(error) or _missing_option_line(error) or _one_line(str(error))
    omegaconf_errors = sys.modules.get("omegaconf.errors")
    if omegaconf_errors is not None and isinstance(error, omegaconf_errors.MissingMandatoryValue):
        key = getattr(error, "full_key", None) or "a mandatory option"
        return f"{key} is not set (it is ??? in the config): pass {key}=..."
    return None


def report(line: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()


def exit_with_one_line(error: Exception) -> None:
    """An input error becomes one line on stderr and `SystemExit(2)`; anything else (a bug, or a full
    traceback asked for) returns, and the caller re-raises it."""
    line = input_error_line(error)
    if line is None or full_errors_requested():
        return
    report(line)
    raise SystemExit(INPUT_ERROR_EXIT) from None


def report_input_errors(task: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Hydra task function: input errors become one line on stderr and `SystemExit(2)`."""

    @functools.wraps(task)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except Exception as error:
            exit_with_one_line(error)
            raise

    return wrapped


@contextlib.contextmanager
def _compact_hydra_reports() -> Iterator[None]:
    """Swap Hydra's `run_and_report` (see the module docstring) while the entry point runs."""
    try:
        import hydra._internal.hydra as hydra_core
        import hydra._internal.utils as hydra_utils
    except ImportError:  # pragma: no cover - another Hydra layout: its own reports stay
        yield
        return
    original = getattr(hydra_utils, "run_and_report", None)
    if original is None:  # pragma: no cover
        yield
        return

    def run_and_report(func: Callable[[], Any]) -> Any:
        try:
            return func()
        except Exception as error:
            line = input_error_line(error)
            if line is not None and not full_errors_requested():
                report(line)
                sys.exit(INPUT_ERROR_EXIT)

            def raise_again() -> Any:
                raise error

            return original(raise_again)  # Hydra's own report (or, with HYDRA_FULL_ERROR, the exception)

    patched = [(module, module.run_and_report) for module in (hydra_utils, hydra_core) if hasattr(module, "run_and_report")]
    for module, _ in patched:
        module.run_and_report = run_and_report
    try:
        yield
    finally:
        for module, previous in patched:
            module.run_and_report = previous


def run_cli(entry: Callable[[], Any], argv: list[str] | None = None) -> Any:
    """Run a console entry point (usually a `@hydra.main` function called without arguments).

    Takes `--verbose` out of `argv` (default: `sys.argv`, edited in place since Hydra reads it) and turns
    it into HYDRA_FULL_ERROR=1; reports input errors in one line with exit code 2."""
    args = sys.argv if argv is None else argv
    if VERBOSE_FLAG in args[1:]:
        args[1:] = [arg for arg in args[1:] if arg != VERBOSE_FLAG]
        os.environ[_FULL_ERROR_ENV] = "1"
    with _compact_hydra_reports():
        try:
            return entry()
        except Exception as error:
            exit_with_one_line(error)
            raise
